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
//!
//! This file reads the chain into [`Chained`] and runs the checks in order; each kind of row
//! is checked in its own file: `sessions` (sessions and violations), `amendments`,
//! `cartridges`, `access` (the access log), `digests` (samples against session digests),
//! and signed reviews beside their rows in the journal's `reviews`.

mod access;
mod amendments;
mod cartridges;
mod digests;
mod sessions;

use std::collections::{HashMap, HashSet};

use rusqlite::OptionalExtension;

use super::{Reader, Result};
use crate::audit::{
    self, AccessBatch, Amendment, ChainedCartridgeEvent, ClosedSession, Entry, FinalViolation,
    Record, Scope, SignedReview, Verification,
};

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
}
