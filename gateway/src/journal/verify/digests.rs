//! Every closed session's samples against its digest: unchecked where a chained retention run
//! pruned them, broken where samples are gone without one.

use rusqlite::{OptionalExtension, params};

use super::{Broken, Chained};
use crate::audit::lines::DigestSample;
use crate::audit::{ClosedSession, Verification};
use crate::journal::{Reader, Result, rows, schema};

impl Reader {
    /// Hands `f` each sample of a session its digest covers (those journaled up to
    /// `last_sample_id`), in digest order.
    pub fn for_each_digest_sample(
        &self,
        device_id: &str,
        session_id: &str,
        last_sample_id: i64,
        mut f: impl FnMut(DigestSample) -> Result<()>,
    ) -> Result<()> {
        let seqs = self.stored_seq_range(device_id, session_id)?;
        rows::digest_samples(
            &self.conn,
            device_id,
            session_id,
            seqs,
            (0, last_sample_id),
            |_, s| f(s),
        )
    }

    /// Every closed session's samples against its digest; a session whose samples are gone is
    /// unchecked if a chained retention run covers it, and broken otherwise.
    pub(super) fn check_digests(&self, chained: &Chained, v: &mut Verification) -> Result<Broken> {
        // A journal not yet migrated to schema 2 (verified before the new gateway first ran
        // on it) has no seq ranges: look at each pen's whole sequence.
        let ranged = schema::version(&self.conn)? >= 2;
        let mut sessions: Vec<&(i64, ClosedSession)> = chained.sessions.values().collect();
        sessions.sort_by_key(|(seq, _)| *seq);
        for (seq, c) in sessions {
            let seqs = if ranged {
                self.stored_seq_range(&c.device_id, &c.session_id)?
            } else {
                (0, u64::MAX)
            };
            let (found, _, recomputed) = rows::samples_digest(
                &self.conn,
                &c.device_id,
                &c.session_id,
                seqs,
                (0, c.last_sample_id),
            )?;
            let pruned = chained
                .pruned_before
                .is_some_and(|cutoff| c.last_ms < cutoff);
            if found == 0 && c.journaled > 0 && pruned {
                v.digests_unchecked += 1;
            } else if found == 0 && c.journaled > 0 {
                return Ok(Some((
                    *seq,
                    format!(
                        "samples of session {}/{} are gone, and no retention run covers it",
                        c.device_id, c.session_id
                    ),
                )));
            } else if recomputed != c.samples_digest || found != c.journaled {
                return Ok(Some((
                    *seq,
                    format!(
                        "samples of session {}/{} do not match the recorded digest",
                        c.device_id, c.session_id
                    ),
                )));
            }
        }
        Ok(None)
    }

    /// A session's `seq` range as stored with it; the whole sequence when unknown.
    fn stored_seq_range(&self, device_id: &str, session_id: &str) -> Result<(u64, u64)> {
        let row: Option<(i64, i64)> = self
            .conn
            .prepare_cached(
                "SELECT min_seq, max_seq FROM sessions WHERE device_id = ?1 AND session_id = ?2",
            )?
            .query_row(params![device_id, session_id], |r| {
                Ok((r.get("min_seq")?, r.get("max_seq")?))
            })
            .optional()?;
        Ok(match row {
            Some((min, max)) if max > 0 => (min as u64, max as u64),
            _ => (0, u64::MAX),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Record;
    use crate::journal::fixtures::{reading, verdict};
    use crate::journal::{Closing, Sync, Upkeep, Writer};
    use crate::sessions::CloseReason;
    use crate::sessions::Session;

    /// A journal holding one session of two samples at device times 100 and 200, closed and
    /// chained as the committer does it.
    fn journal(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("j.db");
        let mut j = Writer::open(&path, Sync::Normal).expect("open");
        let b = j.batch().expect("batch");
        let v = verdict();
        let (r1, r2) = (reading("s", 1, 100), reading("s", 2, 200));
        b.samples()
            .expect("samples")
            .insert(&r1, &v, 100)
            .expect("sample");
        b.samples()
            .expect("samples")
            .insert(&r2, &v, 200)
            .expect("sample");
        let mut s = Session::new(&r1, &v);
        s.observe(&r1, &v);
        s.observe(&r2, &v);
        let (n, last_id, digest) = b
            .samples_digest("pen-1", "s", (0, u64::MAX), 0)
            .expect("digest");
        b.append_audit(&Record::Session(ClosedSession {
            session_id: "s".into(),
            device_id: "pen-1".into(),
            clinic_id: "c01".into(),
            operator_id: "op".into(),
            device_class: "home".into(),
            cartridge_id: "cart".into(),
            started_ms: s.started_ms,
            last_ms: s.last_ms,
            strokes: s.strokes,
            max_depth_mm: s.max_depth_mm,
            permitted_mm: s.permitted_mm,
            exceeded: false,
            close_reason: "ended".into(),
            journaled: n,
            last_sample_id: last_id,
            samples_digest: digest.clone(),
            conflicting: 0,
        }))
        .expect("chain");
        b.put_session(
            &s,
            Some(Closing {
                reason: CloseReason::Ended,
                digest: &digest,
                audit_seq: 1,
            }),
        )
        .expect("session");
        b.commit().expect("commit");
        path
    }

    #[test]
    fn samples_pruned_by_a_chained_retention_run_are_unchecked_not_broken() {
        let dir = tempfile::tempdir().expect("dir");
        let path = journal(dir.path());
        let upkeep = Upkeep::open(&path).expect("upkeep");
        assert_eq!(upkeep.prune_samples(1000, 30, None).expect("prune"), 2);
        let v = Reader::open(&path)
            .expect("reader")
            .verify()
            .expect("verify");
        assert!(v.ok(), "{:?}", v.first_broken);
        assert_eq!(v.digests_unchecked, 1);
    }

    #[test]
    fn samples_deleted_without_a_retention_run_break_the_verification() {
        let dir = tempfile::tempdir().expect("dir");
        let path = journal(dir.path());
        rusqlite::Connection::open(&path)
            .expect("open")
            .execute("DELETE FROM sample_rows", [])
            .expect("delete");
        let v = Reader::open(&path)
            .expect("reader")
            .verify()
            .expect("verify");
        let (_, why) = v.first_broken.expect("broken");
        assert!(why.contains("no retention run covers it"), "{why}");
    }

    #[test]
    fn a_retention_run_covers_only_sessions_that_ended_before_its_cutoff() {
        let dir = tempfile::tempdir().expect("dir");
        let path = journal(dir.path());
        let upkeep = Upkeep::open(&path).expect("upkeep");
        // Nothing is old enough: no run is chained and nothing deleted.
        assert_eq!(upkeep.prune_samples(150, 30, None).expect("prune"), 0);
        rusqlite::Connection::open(&path)
            .expect("open")
            .execute("DELETE FROM sample_rows", [])
            .expect("delete");
        let v = Reader::open(&path)
            .expect("reader")
            .verify()
            .expect("verify");
        assert!(!v.ok());
    }
}
