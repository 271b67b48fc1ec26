//! Amendment rows against their entries and the closed records they amend, and the messages
//! each amendment added against its digest.

use std::collections::HashSet;

use super::{Broken, Chained, Key, first_missing};
use crate::audit::lines::DigestSample;
use crate::audit::{Amendment, Verification};
use crate::journal::{Reader, Result, rows, schema};

impl Reader {
    /// Hands `f` each message an amendment added, as its digest covers them, in digest order.
    pub fn for_each_amendment_digest_sample(
        &self,
        a: &Amendment,
        mut f: impl FnMut(DigestSample) -> Result<()>,
    ) -> Result<()> {
        rows::digest_samples(
            &self.conn,
            &a.device_id,
            &a.session_id,
            (a.first_seq, a.last_seq),
            (a.after_sample_id, a.last_sample_id),
            |_, s| f(s),
        )
    }

    /// Amendment rows against their entries, entries against their rows, and each entry
    /// against the closed record it amends.
    pub(super) fn check_amendments(&self, chained: &Chained) -> Result<Broken> {
        if let Some(broken) = &chained.misnumbered {
            return Ok(Some(broken.clone()));
        }
        let mut ordered: Vec<_> = chained.amendments.iter().collect();
        ordered.sort_by_key(|(_, (seq, _))| *seq);
        for ((key, _), (seq, a)) in &ordered {
            let amends_own = chained.session_entries.get(&a.amends) == Some(key);
            if !amends_own || a.amends >= *seq {
                return Ok(Some((
                    *seq,
                    format!(
                        "amendment {} of session {}/{} does not reference the session's closed record",
                        a.number, key.0, key.1
                    ),
                )));
            }
        }
        if schema::version(&self.conn)? < 9 {
            return Ok(ordered.first().map(|((key, n), (seq, _))| {
                (
                    *seq,
                    format!("amendment {n} of session {}/{} is not stored", key.0, key.1),
                )
            }));
        }
        let mut stmt = self.conn.prepare(
            "SELECT device_id, session_id, number, audit_seq, amends_seq, reason, committed_ms,
                messages, last_sample_id, max_depth_mm, exceeded, new_violation, record
             FROM amendments",
        )?;
        let mut rows = stmt.query([])?;
        let mut stored = HashSet::new();
        while let Some(r) = rows.next()? {
            let key: Key = (r.get("device_id")?, r.get("session_id")?);
            let number = r.get::<_, i64>("number")? as u64;
            let id = (key.clone(), number);
            let Some((seq, a)) = chained.amendments.get(&id) else {
                return Ok(Some((
                    0,
                    format!(
                        "amendment {number} of session {}/{} has no audit entry",
                        key.0, key.1
                    ),
                )));
            };
            stored.insert(id);
            let record: Option<Amendment> =
                serde_json::from_str(&r.get::<_, String>("record")?).ok();
            let matches = record.as_ref() == Some(a)
                && r.get::<_, i64>("audit_seq")? == *seq
                && r.get::<_, i64>("amends_seq")? == a.amends
                && r.get::<_, String>("reason")? == a.reason
                && r.get::<_, i64>("committed_ms")? == a.committed_ms
                && r.get::<_, i64>("messages")? as u64 == a.messages
                && r.get::<_, i64>("last_sample_id")? == a.last_sample_id
                && r.get::<_, f64>("max_depth_mm")? == a.max_depth_mm
                && r.get::<_, bool>("exceeded")? == a.exceeded
                && r.get::<_, bool>("new_violation")? == a.new_violation;
            if !matches {
                return Ok(Some((
                    *seq,
                    format!(
                        "amendment {number} of session {}/{} as stored differs from its audit entry",
                        key.0, key.1
                    ),
                )));
            }
        }
        Ok(
            first_missing(&chained.amendments, &stored).map(|((key, n), seq)| {
                (
                    seq,
                    format!(
                        "amendment {n} of session {}/{} is in the chain but not stored",
                        key.0, key.1
                    ),
                )
            }),
        )
    }

    /// Every amendment's added messages against its digest; pruned ones are unchecked.
    pub(super) fn check_amendment_digests(
        &self,
        chained: &Chained,
        v: &mut Verification,
    ) -> Result<Broken> {
        let mut ordered: Vec<_> = chained.amendments.values().collect();
        ordered.sort_by_key(|(seq, _)| *seq);
        for (seq, a) in ordered {
            let (found, _, recomputed) = rows::samples_digest(
                &self.conn,
                &a.device_id,
                &a.session_id,
                (a.first_seq, a.last_seq),
                (a.after_sample_id, a.last_sample_id),
            )?;
            let pruned = chained
                .pruned_before
                .is_some_and(|cutoff| a.last_ms < cutoff);
            if found == 0 && pruned {
                v.digests_unchecked += 1;
            } else if found != a.messages || recomputed != a.samples_digest {
                return Ok(Some((
                    *seq,
                    format!(
                        "samples added by amendment {} of session {}/{} do not match its digest",
                        a.number, a.device_id, a.session_id
                    ),
                )));
            }
        }
        Ok(None)
    }
}
