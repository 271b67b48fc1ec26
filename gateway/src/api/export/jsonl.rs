//! The JSONL export, verifiable offline (`penwatch verify-export`): each closed session,
//! final violation and chained cartridge event is written as its audit chain entry, each
//! closed session's samples as its digest covers them, then the run of chain entries from the
//! first one a line names to the head, and the head (line shapes: `audit::lines`).
//!
//! After the sessions come the policy versions in force during the period (journaled, not
//! chained: written as the CSV's records) and the review signatures whose clinic and period
//! overlap the export's, each as its chain entry, with the entry it is bound to covered too.
//!
//! Open sessions (not final) and what belongs to them, and cartridge events journaled before
//! the chain covered them, are written as the CSV's records, without a chain entry. For a
//! caller who does not see every clinic, the bodies of entries about other records are
//! withheld: such an export names what it cannot prove.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::encoder::Encoder;
use super::records::{policy_record, session_record, violation_record};
use super::{CHUNK_BYTES, ExportError, PAGE};
use crate::api::auth::Caller;
use crate::audit::lines::{self, ChainLine, HeadLine};
use crate::audit::{ChainedCartridgeEvent, Entry, Record};
use crate::journal::Reader;
use crate::journal::queries::{Order, Selection, StoredSession};

type Key = (String, String);

/// The chain read in the export's snapshot, with the entry that covers each record.
struct ChainIndex {
    entries: Vec<Entry>,
    /// The last entry of each session (a reopened session has several), by index.
    sessions: HashMap<Key, (usize, i64)>,
    violations: HashMap<Key, usize>,
    cartridge_events: HashMap<i64, usize>,
    reviews: HashMap<i64, usize>,
    amendments: HashMap<(Key, u64), usize>,
    /// Entries a line names.
    covered: HashSet<usize>,
}

impl ChainIndex {
    fn new(entries: Vec<Entry>) -> Self {
        let mut index = ChainIndex {
            entries: Vec::new(),
            sessions: HashMap::new(),
            violations: HashMap::new(),
            cartridge_events: HashMap::new(),
            reviews: HashMap::new(),
            amendments: HashMap::new(),
            covered: HashSet::new(),
        };
        for (i, e) in entries.iter().enumerate() {
            // A body that does not parse breaks the verification the export reports.
            match Record::parse(&e.kind, &e.body) {
                Ok(Some(Record::Session(s))) => {
                    index
                        .sessions
                        .insert((s.device_id, s.session_id), (i, s.last_sample_id));
                }
                Ok(Some(Record::Violation(v))) => {
                    index.violations.insert((v.device_id, v.session_id), i);
                }
                Ok(Some(Record::CartridgeEvent(c))) => {
                    index.cartridge_events.insert(c.id, i);
                }
                Ok(Some(Record::Review(r))) => {
                    index.reviews.insert(r.id, i);
                }
                Ok(Some(Record::Amendment(a))) => {
                    index
                        .amendments
                        .insert(((a.device_id, a.session_id), a.number), i);
                }
                _ => {}
            }
        }
        index.entries = entries;
        index
    }

    /// The line of entry `i`, which is now covered.
    fn line(&mut self, i: usize) -> Result<String, ExportError> {
        self.covered.insert(i);
        Ok(lines::chained_line(&self.entries[i])?)
    }

    /// Covers the entry at chain position `seq` (a review's bound head), so the export holds
    /// it.
    fn cover_seq(&mut self, seq: i64) {
        if let Some(i) = self.entries.iter().position(|e| e.seq == seq) {
            self.covered.insert(i);
        }
    }

    /// The chain lines from the first covered entry to the head, then the head line.
    fn tail(&self, every_clinic: bool) -> Result<Vec<String>, ExportError> {
        let from = self.covered.iter().min().copied();
        let from = from.unwrap_or(self.entries.len().saturating_sub(1));
        let mut out = Vec::new();
        for (i, e) in self.entries.iter().enumerate().skip(from) {
            let about_records =
                matches!(e.kind.as_str(), "session" | "violation" | "cartridge_event");
            let withheld = !every_clinic && about_records && !self.covered.contains(&i);
            out.push(lines::encode(&ChainLine::new(e, withheld))?);
        }
        if let Some(head) = self.entries.last() {
            out.push(lines::encode(&HeadLine {
                record: "head".into(),
                seq: head.seq,
                hash: head.hash.clone(),
            })?);
        }
        Ok(out)
    }
}

/// A cartridge event the chain does not cover, as a line.
fn unchained_event(e: &ChainedCartridgeEvent) -> Result<String, ExportError> {
    let mut value = serde_json::to_value(e).map_err(lines::LineError::from)?;
    if let Value::Object(fields) = &mut value {
        fields.insert(lines::RECORD.into(), "cartridge_event".into());
    }
    Ok(value.to_string())
}

/// Writes the selection as verifiable JSON lines, handing each full chunk to `emit`;
/// `Ok(false)` when `emit` asked to stop.
pub(super) fn export(
    j: &Reader,
    sel: &Selection,
    include_samples: bool,
    caller: &Caller,
    out: &mut Encoder,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<bool, ExportError> {
    let mut chain = ChainIndex::new(j.chain()?);
    let mut events: HashMap<Key, Vec<ChainedCartridgeEvent>> = HashMap::new();
    for e in j.cartridge_events_from(0)? {
        events
            .entry((e.device_id.clone(), e.session_id.clone()))
            .or_default()
            .push(e);
    }
    let mut after = None;
    loop {
        let page = j.sessions_page(sel, Order::OldestFirst, after.as_ref(), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        for s in &page {
            let key = (s.session.device_id.clone(), s.session.session_id.clone());
            let upto = session(j, s, &key, &mut chain, caller, out)?;
            for e in events.get(&key).into_iter().flatten() {
                match chain.cartridge_events.get(&e.id) {
                    Some(&i) => out.line(&chain.line(i)?),
                    None => out.line(&unchained_event(e)?),
                }
            }
            if include_samples && !samples(j, &key, upto, out, emit)? {
                return Ok(false);
            }
            if s.amendments > 0 && !amendments(j, &key, &mut chain, include_samples, out, emit)? {
                return Ok(false);
            }
            if out.len() >= CHUNK_BYTES && !emit(out.take()) {
                return Ok(false);
            }
        }
    }
    for p in j.policy_versions_in(sel.from_ms, sel.to_ms)? {
        out.write(policy_record(&p, caller))?;
    }
    for r in j.reviews(sel.clinics.as_deref(), sel.from_ms, sel.to_ms)? {
        if let Some(&i) = chain.reviews.get(&r.id) {
            chain.cover_seq(r.head_seq);
            out.line(&chain.line(i)?);
        }
    }
    for line in chain.tail(caller.sees_every_clinic())? {
        out.line(&line);
    }
    Ok(true)
}

/// Writes a session's line and its violation's; returns the last journal id its samples
/// may have (for a closed session, the last its digest covers).
fn session(
    j: &Reader,
    s: &StoredSession,
    key: &Key,
    chain: &mut ChainIndex,
    caller: &Caller,
    out: &mut Encoder,
) -> Result<i64, ExportError> {
    let chained = (!s.open)
        .then(|| chain.sessions.get(key).copied())
        .flatten();
    let upto = match chained {
        Some((i, last_sample_id)) => {
            out.line(&chain.line(i)?);
            last_sample_id
        }
        None => {
            out.write(session_record(s, caller))?;
            i64::MAX
        }
    };
    if s.session.exceeded() {
        match (chained, chain.violations.get(key).copied()) {
            (Some(_), Some(i)) => out.line(&chain.line(i)?),
            _ => {
                if let Some(v) = j.session_violation(&key.0, &key.1)? {
                    out.write(violation_record(&v, caller))?;
                }
            }
        }
    }
    Ok(upto)
}

/// Writes a session's samples as its digest covers them; `Ok(false)` when `emit` asked to
/// stop.
fn samples(
    j: &Reader,
    key: &Key,
    upto: i64,
    out: &mut Encoder,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<bool, ExportError> {
    write_samples(out, emit, |f| {
        j.for_each_digest_sample(&key.0, &key.1, upto, f)
    })
}

/// Writes the sample lines `walk` hands its callback, handing each full chunk to `emit`;
/// `Ok(false)` when `emit` asked to stop.
fn write_samples(
    out: &mut Encoder,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
    walk: impl FnOnce(
        &mut dyn FnMut(lines::DigestSample) -> crate::journal::Result<()>,
    ) -> crate::journal::Result<()>,
) -> Result<bool, ExportError> {
    let mut stopped = false;
    let mut failed = None;
    walk(&mut |sample| {
        match lines::encode(&SampleLine::new(sample)) {
            Ok(line) => out.line(&line),
            Err(e) => failed = failed.take().or(Some(e)),
        }
        if out.len() >= CHUNK_BYTES && !stopped {
            stopped = !emit(out.take());
        }
        Ok(())
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(!stopped)
}

/// Writes a closed session's amendments, each as its chain entry followed (with samples) by
/// the samples it added as its digest covers them; `Ok(false)` when `emit` asked to stop.
fn amendments(
    j: &Reader,
    key: &Key,
    chain: &mut ChainIndex,
    include_samples: bool,
    out: &mut Encoder,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<bool, ExportError> {
    for stored in j.amendments(&key.0, &key.1)? {
        let a = &stored.amendment;
        let Some(&i) = chain.amendments.get(&(key.clone(), a.number)) else {
            continue;
        };
        out.line(&chain.line(i)?);
        if include_samples
            && !write_samples(out, emit, |f| j.for_each_amendment_digest_sample(a, f))?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A sample's line: its record tag and what the digest covers.
#[derive(serde::Serialize)]
struct SampleLine {
    record: &'static str,
    #[serde(flatten)]
    sample: lines::DigestSample,
}

impl SampleLine {
    fn new(sample: lines::DigestSample) -> Self {
        SampleLine {
            record: "sample",
            sample,
        }
    }
}
