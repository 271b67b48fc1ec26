//! `verify`: what the API, CLI, dashboard and export can show as final, checked against the
//! audit chain.
//!
//! The chain's links are recomputed first. Then every closed session row, every final
//! violation row, every chained cartridge event row and every signed review must equal its
//! chain entry, and every entry must have its row (a review's bound head must be an earlier
//! entry of the chain); every closed session's samples must match its digest, unless a
//! chained retention run (`pruned`) covers the session, which is then counted as unchecked.
//! Open sessions are not final and not checked; a chained session whose row is open again
//! (late data reopened it, before schema 9) is checked at its next close. Every amendment row
//! must equal its entry and every entry have its row; an amendment must reference an earlier
//! closed record of its session, be numbered 1, 2, … in chain order, and its added messages
//! must match its digest (unless pruned); a violation an amendment raised must equal that
//! amendment's evidence.

use std::collections::{HashMap, HashSet};

use rusqlite::{OptionalExtension, params};

use super::{Reader, Result, rows, schema};
use crate::audit::lines::DigestSample;
use crate::audit::{
    self, AccessBatch, Amendment, ChainedCartridgeEvent, ClosedSession, Entry, FinalViolation,
    Record, Scope, SignedReview, Verification,
};
use crate::sessions::{Excursion, Session};

type Key = (String, String);

/// What the chain says is final, by row.
#[derive(Default)]
struct Chained {
    /// The last entry per session (a reopened and closed again session has several).
    sessions: HashMap<Key, (i64, ClosedSession)>,
    violations: HashMap<Key, (i64, FinalViolation)>,
    cartridge_events: HashMap<i64, (i64, ChainedCartridgeEvent)>,
    cartridge_events_from: Option<i64>,
    /// The latest retention cutoff chained, Unix ms.
    pruned_before: Option<i64>,
    /// The access log's runs.
    access: Vec<(i64, AccessBatch)>,
    /// Every session entry's position, with its session.
    session_entries: HashMap<i64, Key>,
    /// Amendments by session and number.
    amendments: HashMap<(Key, u64), (i64, Amendment)>,
    /// The first amendment entry numbered out of order, if any.
    misnumbered: Option<(i64, String)>,
    /// Signed reviews by row id.
    reviews: HashMap<i64, (i64, SignedReview)>,
}

impl Chained {
    fn read(entries: &[Entry]) -> Result<Self> {
        let mut c = Self::default();
        for e in entries {
            match Record::parse(&e.kind, &e.body)? {
                Some(Record::Session(s)) => {
                    let key = (s.device_id.clone(), s.session_id.clone());
                    c.session_entries.insert(e.seq, key.clone());
                    c.sessions.insert(key, (e.seq, s));
                }
                Some(Record::Amendment(a)) => {
                    let key = (a.device_id.clone(), a.session_id.clone());
                    let previous = c
                        .amendments
                        .keys()
                        .filter(|(k, _)| *k == key)
                        .map(|(_, n)| *n)
                        .max()
                        .unwrap_or(0);
                    if a.number != previous + 1 && c.misnumbered.is_none() {
                        c.misnumbered = Some((
                            e.seq,
                            format!(
                                "amendment {} of session {}/{} follows amendment {previous}",
                                a.number, key.0, key.1
                            ),
                        ));
                    }
                    c.amendments.insert((key, a.number), (e.seq, a));
                }
                Some(Record::Violation(v)) => {
                    c.violations
                        .insert((v.device_id.clone(), v.session_id.clone()), (e.seq, v));
                }
                Some(Record::CartridgeEvent(ev)) => {
                    c.cartridge_events.insert(ev.id, (e.seq, ev));
                }
                Some(Record::Pruned(p)) => {
                    c.pruned_before = c.pruned_before.max(Some(p.cutoff_ms));
                }
                Some(Record::Scope(Scope {
                    cartridge_events_from_id,
                })) => {
                    c.cartridge_events_from
                        .get_or_insert(cartridge_events_from_id);
                }
                Some(Record::Access(a)) => c.access.push((e.seq, a)),
                Some(Record::Review(r)) => {
                    c.reviews.insert(r.id, (e.seq, r));
                }
                None => {}
            }
        }
        Ok(c)
    }
}

/// The earliest chain entry of `chained` whose row is not among `stored`.
fn first_missing<'a, K: Eq + std::hash::Hash, V>(
    chained: &'a HashMap<K, (i64, V)>,
    stored: &HashSet<K>,
) -> Option<(&'a K, i64)> {
    chained
        .iter()
        .filter(|(key, _)| !stored.contains(*key))
        .min_by_key(|(_, (seq, _))| *seq)
        .map(|(key, (seq, _))| (key, *seq))
}

/// A finding: the chain position it concerns (0 for a row with no entry) and what is wrong.
pub(super) type Broken = Option<(i64, String)>;

/// Whether a violation row's columns equal a chained identity (clinic, operator, class) and
/// worst excursion.
fn violation_matches(
    r: &rusqlite::Row<'_>,
    (clinic_id, operator_id, device_class): (&str, &str, &str),
    e: &Excursion,
) -> rusqlite::Result<bool> {
    Ok(r.get::<_, String>("clinic_id")? == clinic_id
        && r.get::<_, String>("operator_id")? == operator_id
        && r.get::<_, String>("device_class")? == device_class
        && r.get::<_, f64>("limit_mm")? == e.limit_mm
        && r.get::<_, String>("binding")? == e.binding
        && r.get::<_, f64>("peak_depth_mm")? == e.peak_depth_mm
        && r.get::<_, i64>("first_above_ms")? == e.first_above_ms
        && r.get::<_, i64>("last_above_ms")? == e.last_above_ms
        && r.get::<_, i64>("strokes_above")? as u64 == e.strokes_above
        && r.get::<_, i64>("samples_above")? as u64 == e.samples_above
        && r.get::<_, String>("policy_version")? == e.policy_version)
}

/// A violation row an amendment raised (amendment `n`) against that amendment's evidence.
fn amended_violation(
    chained: &Chained,
    key: &Key,
    n: u64,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Broken> {
    let found = chained.amendments.get(&(key.clone(), n));
    let Some((seq, Some(e), a)) = found.map(|(seq, a)| (seq, a.violation.as_ref(), a)) else {
        return Ok(Some((
            0,
            format!(
                "violation {}/{} names amendment {n}, which has no evidence in the chain",
                key.0, key.1
            ),
        )));
    };
    let matches = !chained.violations.contains_key(key)
        && r.get::<_, bool>("final")?
        && violation_matches(r, (&a.clinic_id, &a.operator_id, &a.device_class), &e.worst)?;
    Ok((!matches).then(|| {
        (
            *seq,
            format!(
                "violation {}/{} as stored differs from amendment {n}'s evidence",
                key.0, key.1
            ),
        )
    }))
}

impl Reader {
    /// The chain's first scope record, if a gateway wrote one.
    pub(super) fn scope(&self) -> Result<Option<Scope>> {
        let body: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT body FROM audit_chain WHERE kind = 'scope' ORDER BY seq LIMIT 1",
            )?
            .query_row([], |r| r.get("body"))
            .optional()?;
        body.map(|b| Ok(serde_json::from_str(&b)?)).transpose()
    }

    /// The cartridge event rows from journal id `from_id` on, in id order, as chained.
    pub fn cartridge_events_from(&self, from_id: i64) -> Result<Vec<ChainedCartridgeEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, cartridge_id, kind, device_id, session_id, ts_ms, detail
             FROM cartridge_events WHERE id >= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([from_id], |r| {
            Ok(ChainedCartridgeEvent {
                id: r.get("id")?,
                cartridge_id: r.get("cartridge_id")?,
                kind: r.get("kind")?,
                device_id: r.get("device_id")?,
                session_id: r.get("session_id")?,
                ts_ms: r.get("ts_ms")?,
                detail: r.get("detail")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every audit chain entry, in order.
    pub fn chain(&self) -> Result<Vec<Entry>> {
        Ok(self
            .conn
            .prepare("SELECT seq, kind, body, prev_hash, hash FROM audit_chain ORDER BY seq")?
            .query_map([], |r| {
                Ok(Entry {
                    seq: r.get("seq")?,
                    kind: r.get("kind")?,
                    body: r.get("body")?,
                    prev_hash: r.get("prev_hash")?,
                    hash: r.get("hash")?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?)
    }

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

    /// Recomputes the audit chain and checks every final row against it (see the module), in
    /// one read transaction: a gateway writing beside it (the committer, the access log) is
    /// not seen half-way.
    pub fn verify(&self) -> Result<Verification> {
        self.snapshot(Reader::verify_within)
    }

    /// [`Reader::verify`] inside the caller's read transaction ([`Reader::snapshot`]).
    pub fn verify_within(&self) -> Result<Verification> {
        let entries = self.chain()?;
        let mut v = audit::verify_links(&entries);
        if !v.ok() {
            return Ok(v);
        }
        let chained = Chained::read(&entries)?;
        v.first_broken = match self.check_sessions(&chained)? {
            None => match self.check_violations(&chained)? {
                None => match self.check_amendments(&chained)? {
                    None => match self.check_cartridge_events(&chained)? {
                        None => match self.check_access_log(&chained)? {
                            None => match self.check_reviews(&chained.reviews, &entries)? {
                                None => self.check_digests(&chained, &mut v)?,
                                broken => broken,
                            },
                            broken => broken,
                        },
                        broken => broken,
                    },
                    broken => broken,
                },
                broken => broken,
            },
            broken => broken,
        };
        if v.first_broken.is_none() {
            v.first_broken = self.check_amendment_digests(&chained, &mut v)?;
        }
        Ok(v)
    }

    /// Closed session rows against their entries, and entries against their rows.
    fn check_sessions(&self, chained: &Chained) -> Result<Broken> {
        let mut stmt = self.conn.prepare(
            "SELECT device_id, session_id, clinic_id, operator_id, device_class, started_ms,
                last_ms, exceeded, state, close_reason, samples_digest, record, max_depth_mm
             FROM sessions",
        )?;
        let mut rows = stmt.query([])?;
        let mut stored = HashSet::new();
        while let Some(r) = rows.next()? {
            let key: Key = (r.get("device_id")?, r.get("session_id")?);
            stored.insert(key.clone());
            if r.get::<_, String>("state")? != "closed" {
                continue;
            }
            let Some((seq, c)) = chained.sessions.get(&key) else {
                return Ok(Some((
                    0,
                    format!("closed session {}/{} has no audit entry", key.0, key.1),
                )));
            };
            let record: Session = serde_json::from_str(&r.get::<_, String>("record")?)?;
            let columns_match = r.get::<_, String>("clinic_id")? == c.clinic_id
                && r.get::<_, String>("operator_id")? == c.operator_id
                && r.get::<_, String>("device_class")? == c.device_class
                && r.get::<_, i64>("started_ms")? == c.started_ms
                && r.get::<_, i64>("last_ms")? == c.last_ms
                && r.get::<_, bool>("exceeded")? == c.exceeded
                && r.get::<_, Option<String>>("close_reason")?.as_deref()
                    == Some(c.close_reason.as_str())
                && r.get::<_, Option<String>>("samples_digest")?.as_deref()
                    == Some(c.samples_digest.as_str())
                && r.get::<_, f64>("max_depth_mm")? == c.max_depth_mm;
            let record_matches = record.clinic_id == c.clinic_id
                && record.operator_id == c.operator_id
                && record.device_class == c.device_class
                && record.cartridge_id == c.cartridge_id
                && record.started_ms == c.started_ms
                && record.last_ms == c.last_ms
                && record.strokes == c.strokes
                && record.max_depth_mm == c.max_depth_mm
                && record.permitted_mm == c.permitted_mm
                && record.exceeded() == c.exceeded
                && record.conflicting == c.conflicting
                && record.violation.as_ref()
                    == chained.violations.get(&key).map(|(_, v)| &v.evidence);
            if !(columns_match && record_matches) {
                return Ok(Some((
                    *seq,
                    format!(
                        "session {}/{} as stored differs from its audit entry",
                        key.0, key.1
                    ),
                )));
            }
        }
        Ok(first_missing(&chained.sessions, &stored).map(|(key, seq)| {
            (
                seq,
                format!("session {}/{} is in the chain but not stored", key.0, key.1),
            )
        }))
    }

    /// Final violation rows against their entries, and entries against their rows.
    fn check_violations(&self, chained: &Chained) -> Result<Broken> {
        let mut stmt = self.conn.prepare(
            "SELECT v.*, s.state
             FROM violations v LEFT JOIN sessions s
                ON s.device_id = v.device_id AND s.session_id = v.session_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut stored = HashSet::new();
        while let Some(r) = rows.next()? {
            let key: Key = (r.get("device_id")?, r.get("session_id")?);
            let reopened = r.get::<_, Option<String>>("state")?.as_deref() == Some("open");
            // Before schema 9 there is no `amendment` column.
            let amendment = r.get::<_, Option<i64>>("amendment").unwrap_or(None);
            if let Some(n) = amendment.filter(|n| *n > 0) {
                if let Some(broken) = amended_violation(chained, &key, n as u64, r)? {
                    return Ok(Some(broken));
                }
                continue;
            }
            let entry = chained.violations.get(&key);
            stored.insert(key.clone());
            if !r.get::<_, bool>("final")? {
                if entry.is_some() && !reopened {
                    return Ok(Some((
                        entry.map_or(0, |(seq, _)| *seq),
                        format!(
                            "violation {}/{} is chained as final but stored as not",
                            key.0, key.1
                        ),
                    )));
                }
                continue;
            }
            let Some((seq, fv)) = entry else {
                return Ok(Some((
                    0,
                    format!("final violation {}/{} has no audit entry", key.0, key.1),
                )));
            };
            let matches = violation_matches(
                r,
                (&fv.clinic_id, &fv.operator_id, &fv.device_class),
                &fv.evidence.worst,
            )?;
            if !matches {
                return Ok(Some((
                    *seq,
                    format!(
                        "violation {}/{} as stored differs from its audit entry",
                        key.0, key.1
                    ),
                )));
            }
        }
        Ok(
            first_missing(&chained.violations, &stored).map(|(key, seq)| {
                (
                    seq,
                    format!(
                        "violation {}/{} is in the chain but not stored",
                        key.0, key.1
                    ),
                )
            }),
        )
    }

    /// Amendment rows against their entries, entries against their rows, and each entry
    /// against the closed record it amends.
    fn check_amendments(&self, chained: &Chained) -> Result<Broken> {
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
    fn check_amendment_digests(&self, chained: &Chained, v: &mut Verification) -> Result<Broken> {
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

    /// Cartridge event rows the chain covers against their entries, and entries against rows.
    fn check_cartridge_events(&self, chained: &Chained) -> Result<Broken> {
        let Some(from) = chained.cartridge_events_from else {
            return Ok(None);
        };
        let stored = self.cartridge_events_from(from)?;
        for row in &stored {
            match chained.cartridge_events.get(&row.id) {
                None => {
                    return Ok(Some((
                        0,
                        format!("cartridge event {} has no audit entry", row.id),
                    )));
                }
                Some((seq, e)) if e != row => {
                    return Ok(Some((
                        *seq,
                        format!(
                            "cartridge event {} as stored differs from its audit entry",
                            row.id
                        ),
                    )));
                }
                Some(_) => {}
            }
        }
        let ids: HashSet<i64> = stored.iter().map(|e| e.id).collect();
        Ok(
            first_missing(&chained.cartridge_events, &ids).map(|(id, seq)| {
                (
                    seq,
                    format!("cartridge event {id} is in the chain but not stored"),
                )
            }),
        )
    }

    /// Every access log run against its digest, and no entry outside a run.
    fn check_access_log(&self, chained: &Chained) -> Result<Broken> {
        // A journal verified before this gateway first ran on it has no access log yet.
        let present: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'access_log')",
            [],
            |r| r.get(0),
        )?;
        if !present {
            return Ok(None);
        }
        let mut covered = 0;
        for (seq, a) in &chained.access {
            if super::access::digest(&self.conn, a.first_id, a.last_id)? != a.digest {
                return Ok(Some((
                    *seq,
                    format!(
                        "access log entries {} to {} do not match their audit entry",
                        a.first_id, a.last_id
                    ),
                )));
            }
            covered += a.last_id - a.first_id + 1;
        }
        let stored: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM access_log", [], |r| r.get(0))?;
        if stored != covered {
            return Ok(Some((
                0,
                format!("the access log holds {stored} entries, its audit entries cover {covered}"),
            )));
        }
        Ok(None)
    }

    /// Every closed session's samples against its digest; a session whose samples are gone is
    /// unchecked if a chained retention run covers it, and broken otherwise.
    fn check_digests(&self, chained: &Chained, v: &mut Verification) -> Result<Broken> {
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
    use crate::journal::fixtures::{reading, verdict};
    use crate::journal::{Closing, Sync, Upkeep, Writer};
    use crate::sessions::CloseReason;

    /// A journal holding one session of two samples at device times 100 and 200, closed and
    /// chained as the committer does it.
    fn journal(dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("j.db");
        let mut j = Writer::open(&path, Sync::Normal).expect("open");
        let b = j.batch().expect("batch");
        let v = verdict();
        let (r1, r2) = (reading("s", 1, 100), reading("s", 2, 200));
        b.insert_sample(&r1, &v, 100).expect("sample");
        b.insert_sample(&r2, &v, 200).expect("sample");
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
            .execute("DELETE FROM samples", [])
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
            .execute("DELETE FROM samples", [])
            .expect("delete");
        let v = Reader::open(&path)
            .expect("reader")
            .verify()
            .expect("verify");
        assert!(!v.ok());
    }
}
