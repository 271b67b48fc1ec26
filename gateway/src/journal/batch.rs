//! The writes of one batch, in one transaction: only the committer makes them.

use std::cell::RefCell;
use std::sync::LazyLock;

use penwatch_proto::names::ShortName;
use rusqlite::{CachedStatement, OptionalExtension, Transaction, params};

use super::Result;
use super::contexts::{Context, Contexts, Keys};
use super::outbox;
use super::rows::{
    self, AMENDMENT_COLUMNS, SAMPLE_COLUMNS, SAMPLE_ROW_COLUMNS, SESSION_COLUMNS,
    VIOLATION_COLUMNS, count, placeholders,
};
use super::schema::Kept;
use crate::alerts::Alert;
use crate::audit;
use crate::cartridges::{Cartridge, CartridgeEvent};
use crate::decode::{Encoding, Reading};
use crate::fleet::Device;
use crate::sessions::{CloseReason, Evidence, Session, Verdict};

static INSERT_SAMPLE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT OR IGNORE INTO sample_rows ({SAMPLE_ROW_COLUMNS}) VALUES ({})",
        placeholders(count(SAMPLE_ROW_COLUMNS))
    )
});

static SAMPLE_VERSIONS: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT version, {SAMPLE_COLUMNS} FROM samples WHERE device_id = ?1 AND seq = ?2")
});

static PUT_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS}) VALUES ({})",
        placeholders(count(SESSION_COLUMNS))
    )
});

static PUT_VIOLATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT OR REPLACE INTO violations ({VIOLATION_COLUMNS}) VALUES ({})",
        placeholders(count(VIOLATION_COLUMNS))
    )
});

static PUT_AMENDMENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO amendments ({AMENDMENT_COLUMNS}) VALUES ({})",
        placeholders(count(AMENDMENT_COLUMNS))
    )
});

static SESSION_SAMPLES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT id, {SAMPLE_COLUMNS} FROM samples \
         WHERE device_id = ?1 AND seq >= ?3 AND session_id = ?2 ORDER BY seq, version"
    )
});

/// How a session closed, as its row keeps it.
#[derive(Debug, Clone, Copy)]
pub struct Closing<'a> {
    /// Why it closed.
    pub reason: CloseReason,
    /// The digest over its samples, as chained.
    pub digest: &'a str,
    /// Chain position of its closed record.
    pub audit_seq: i64,
}

/// A closed session as late data finds it: its final record and what amends it so far.
#[derive(Debug, Clone)]
pub struct ClosedRecord {
    /// The final record (never rewritten).
    pub session: Session,
    /// `ended` or `inactive`.
    pub close_reason: String,
    /// Chain position of the closed record (0 if the chain has none).
    pub audit_seq: i64,
    /// The session's messages with a journal id up to this are covered by its record or an
    /// amendment.
    pub covered_id: i64,
    /// Amendments so far.
    pub amendments: u64,
    /// The latest evidence: the last amendment's, else the record's.
    pub evidence: Option<Evidence>,
}

/// The writes of one batch, in one transaction.
pub struct Batch<'a> {
    pub(super) tx: Transaction<'a>,
    pub(super) contexts: &'a RefCell<Contexts>,
}

/// What became of a sample offered to the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Journaled: the first message with its `(device_id, seq)`.
    New {
        /// Its journal id.
        id: i64,
    },
    /// A message with the same `(device_id, seq)` and the same content was journaled before.
    Duplicate,
    /// Journaled beside a message with the same `(device_id, seq)` and different content.
    Conflict {
        /// This one's version (1 for the first conflicting one).
        version: i64,
        /// Its device time is later than the first version's: the pen's sequence went back,
        /// as after a firmware reset.
        reset: bool,
    },
}

/// Journals a batch's samples through one prepared statement, looked up once per batch
/// rather than once per sample (the statement cache hashes the statement's text).
pub struct Samples<'b, 'a> {
    batch: &'b Batch<'a>,
    insert: CachedStatement<'b>,
}

impl Samples<'_, '_> {
    /// Journals a judged sample, unless the same content is journaled under its
    /// `(device_id, seq)` already; different content is kept beside it as a new version.
    pub fn insert(&mut self, r: &Reading, v: &Verdict, received_ms: i64) -> Result<Inserted> {
        if self.insert_version(r, v, received_ms, 0)? {
            return Ok(Inserted::New {
                id: self.batch.tx.last_insert_rowid(),
            });
        }
        let stored = self
            .batch
            .tx
            .prepare_cached(&SAMPLE_VERSIONS)?
            .query_map(params![r.device_id, r.seq as i64], |row| {
                Ok((row.get::<_, i64>("version")?, rows::sample(row)?.0))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        // The encoding is how it travelled, not what it says.
        if stored.iter().any(|(_, s)| {
            *s == Reading {
                encoding: s.encoding,
                ..r.clone()
            }
        }) {
            return Ok(Inserted::Duplicate);
        }
        let version = stored.iter().map(|(v, _)| *v).max().unwrap_or(0) + 1;
        let first_ms = stored
            .iter()
            .find(|(v, _)| *v == 0)
            .map_or(i64::MAX, |(_, s)| s.timestamp_ms);
        self.insert_version(r, v, received_ms, version)?;
        Ok(Inserted::Conflict {
            version,
            reset: r.timestamp_ms > first_ms,
        })
    }

    /// Inserts a sample as `version` of its `(device_id, seq)`; `false` if that exists.
    fn insert_version(
        &mut self,
        r: &Reading,
        v: &Verdict,
        received_ms: i64,
        version: i64,
    ) -> Result<bool> {
        // What the session digest covers is bound from its fields, so a digest kept as
        // samples are journaled hashes what the journal holds.
        let f = rows::digest_fields(r, v);
        let encoding = if r.encoding == Encoding::Json {
            "json"
        } else {
            "protobuf"
        };
        let keys = self.batch.keys(
            f.device_id,
            [
                &r.session_id,
                &r.clinic_id,
                &v.device_class,
                r.claimed_class.short_name(),
                &r.model,
                &r.firmware,
                f.operator_id,
                f.cartridge_id,
                &r.cartridge_model,
                encoding,
                f.policy_version,
            ],
        )?;
        let n = self.insert.execute(params![
            keys.pen,
            f.seq,
            keys.context,
            f.timestamp_ms,
            received_ms,
            f.event,
            f.depth_mm,
            f.session_strokes,
            f.cartridge_strokes,
            r.speed_hz,
            r.battery_pct,
            r.zone.map(|z| z.short_name()),
            f.permitted_mm,
            f.binding_rule,
            f.exceeded,
            v.unknown_operator,
            v.unregistered_device,
            v.class_mismatch,
            version,
        ])?;
        Ok(n == 1)
    }
}

impl Batch<'_> {
    /// The batch's sample writer.
    pub fn samples(&self) -> Result<Samples<'_, '_>> {
        Ok(Samples {
            batch: self,
            insert: self.tx.prepare_cached(&INSERT_SAMPLE)?,
        })
    }

    /// Keeps a rejected message for inspection: its first 4 KiB, its size and SHA-256, and a
    /// topic cut to 512 bytes.
    pub fn quarantine(
        &self,
        received_ms: i64,
        topic: &str,
        payload: &[u8],
        kind: &str,
        reason: &str,
    ) -> Result<()> {
        let kept = Kept::of(payload);
        self.tx
            .prepare_cached(
                "INSERT INTO quarantine (received_ms, topic, payload, kind, reason, size_bytes, sha256)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                received_ms,
                cut(topic, 512),
                kept.head,
                kind,
                cut(reason, 1024),
                kept.size as i64,
                kept.sha256
            ])?;
        Ok(())
    }

    /// Stores a session's current state (open) or final record (closed).
    pub fn put_session(&self, s: &Session, close: Option<Closing<'_>>) -> Result<()> {
        let (state, reason, digest, audit_seq) = match close {
            Some(c) => (
                "closed",
                Some(c.reason.as_str()),
                Some(c.digest),
                Some(c.audit_seq),
            ),
            None => ("open", None, None, None),
        };
        self.tx.prepare_cached(&PUT_SESSION)?.execute(params![
            s.device_id,
            s.session_id,
            s.clinic_id,
            s.operator_id,
            s.device_class,
            s.started_ms,
            s.last_ms,
            s.exceeded(),
            state,
            reason,
            digest,
            serde_json::to_string(s)?,
            s.min_seq as i64,
            s.max_seq as i64,
            s.max_depth_mm,
            audit_seq,
        ])?;
        if let Some(e) = &s.violation {
            // The worst excursion; the others are in the session's record.
            self.tx.prepare_cached(&PUT_VIOLATION)?.execute(params![
                s.device_id,
                s.session_id,
                s.clinic_id,
                s.operator_id,
                s.device_class,
                e.worst.limit_mm,
                e.worst.binding,
                e.worst.peak_depth_mm,
                e.worst.first_above_ms,
                e.worst.last_above_ms,
                e.worst.strokes_above as i64,
                e.worst.samples_above as i64,
                e.worst.policy_version,
                close.is_some(),
                0,
            ])?;
        }
        Ok(())
    }

    /// A closed session, with what amends it so far; `None` unless it is stored closed.
    pub fn closed_session(
        &self,
        device_id: &str,
        session_id: &str,
    ) -> Result<Option<ClosedRecord>> {
        let row: Option<(String, String, Option<String>, Option<i64>)> = self
            .tx
            .prepare_cached(
                "SELECT record, state, close_reason, audit_seq FROM sessions \
                 WHERE device_id = ?1 AND session_id = ?2",
            )?
            .query_row(params![device_id, session_id], |r| {
                Ok((
                    r.get("record")?,
                    r.get("state")?,
                    r.get("close_reason")?,
                    r.get("audit_seq")?,
                ))
            })
            .optional()?;
        let Some((record, state, close_reason, audit_seq)) = row else {
            return Ok(None);
        };
        if state != "closed" {
            return Ok(None);
        }
        let session: Session = serde_json::from_str(&record)?;
        // Migrated journals have it; one whose closed record is missing from the chain amends
        // entry 0, which `verify` reports.
        let audit_seq = audit_seq.unwrap_or(0);
        let chained = match self.audit_record(audit_seq)? {
            Some(audit::Record::Session(c)) => c.last_sample_id,
            _ => 0,
        };
        let last: Option<String> = self
            .tx
            .prepare_cached(
                "SELECT record FROM amendments WHERE device_id = ?1 AND session_id = ?2 \
                 ORDER BY number DESC LIMIT 1",
            )?
            .query_row(params![device_id, session_id], |r| r.get("record"))
            .optional()?;
        let last: Option<audit::Amendment> = last.map(|a| serde_json::from_str(&a)).transpose()?;
        Ok(Some(ClosedRecord {
            close_reason: close_reason.unwrap_or_default(),
            audit_seq,
            covered_id: last.as_ref().map_or(chained, |a| a.last_sample_id),
            amendments: last.as_ref().map_or(0, |a| a.number),
            evidence: match last {
                Some(a) => a.violation,
                None => session.violation.clone(),
            },
            session,
        }))
    }

    /// The chained record at position `seq`.
    fn audit_record(&self, seq: i64) -> Result<Option<audit::Record>> {
        let entry: Option<(String, String)> = self
            .tx
            .prepare_cached("SELECT kind, body FROM audit_chain WHERE seq = ?1")?
            .query_row([seq], |r| Ok((r.get("kind")?, r.get("body")?)))
            .optional()?;
        Ok(match entry {
            Some((kind, body)) => audit::Record::parse(&kind, &body)?,
            None => None,
        })
    }

    /// Chains an amendment and stores its row; a violation it raised on a session whose
    /// record had none is stored as the session's violation, marked with the amendment.
    pub fn put_amendment(&self, a: &audit::Amendment, record_exceeded: bool) -> Result<i64> {
        let audit_seq = self.append_audit(&audit::Record::Amendment(a.clone()))?;
        self.tx.prepare_cached(&PUT_AMENDMENT)?.execute(params![
            a.device_id,
            a.session_id,
            a.number as i64,
            audit_seq,
            a.amends,
            a.reason,
            a.committed_ms,
            a.messages as i64,
            a.last_sample_id,
            a.max_depth_mm,
            a.exceeded,
            a.new_violation,
            serde_json::to_string(a)?,
        ])?;
        if let (false, true, Some(e)) = (record_exceeded, a.violation_changed, &a.violation) {
            self.tx.prepare_cached(&PUT_VIOLATION)?.execute(params![
                a.device_id,
                a.session_id,
                a.clinic_id,
                a.operator_id,
                a.device_class,
                e.worst.limit_mm,
                e.worst.binding,
                e.worst.peak_depth_mm,
                e.worst.first_above_ms,
                e.worst.last_above_ms,
                e.worst.strokes_above as i64,
                e.worst.samples_above as i64,
                e.worst.policy_version,
                true,
                a.number as i64,
            ])?;
        }
        Ok(audit_seq)
    }

    /// A session as stored: its record and `open` / `closed`.
    pub fn session(&self, device_id: &str, session_id: &str) -> Result<Option<(Session, String)>> {
        rows::session(&self.tx, device_id, session_id)
    }

    /// A session's samples with their verdicts, in `seq` order, and the id of the last one;
    /// `from_seq` is the session's lowest `seq` (or 0 when unknown).
    pub fn session_samples(
        &self,
        device_id: &str,
        session_id: &str,
        from_seq: u64,
    ) -> Result<(Vec<(Reading, Verdict)>, i64)> {
        let mut stmt = self.tx.prepare_cached(&SESSION_SAMPLES)?;
        let mut last_id = 0;
        let rows = stmt
            .query_map(params![device_id, session_id, from_seq as i64], |row| {
                let id: i64 = row.get("id")?;
                Ok((id, rows::sample(row)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let samples = rows
            .into_iter()
            .map(|(id, s)| {
                last_id = last_id.max(id);
                s
            })
            .collect();
        Ok((samples, last_id))
    }

    /// Stores a cartridge's state.
    pub fn put_cartridge(&self, c: &Cartridge) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO cartridges (cartridge_id, model, strokes, wear, reused, record)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![c.id, c.model, c.strokes as i64, c.wear.as_str(), c.reused(), serde_json::to_string(c)?])?;
        Ok(())
    }

    /// A cartridge's stored state.
    pub fn cartridge(&self, id: &str) -> Result<Option<Cartridge>> {
        rows::cartridge(&self.tx, id)
    }

    /// Records a cartridge event (reuse, wear level).
    pub fn cartridge_event(&self, c: &Cartridge, e: &CartridgeEvent, r: &Reading) -> Result<()> {
        let detail = match e {
            CartridgeEvent::Reuse { first, again } => {
                format!("first used in {first}, used again in {again}")
            }
            CartridgeEvent::Wear(_) => {
                format!(
                    "{} strokes of {} rated",
                    c.strokes,
                    c.rated_strokes.unwrap_or_default()
                )
            }
        };
        self.tx
            .prepare_cached(
                "INSERT INTO cartridge_events (cartridge_id, kind, device_id, session_id, ts_ms, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![c.id, e.kind(), r.device_id, r.session_id, r.timestamp_ms, detail])?;
        self.append_audit(&audit::Record::CartridgeEvent(
            audit::ChainedCartridgeEvent {
                id: self.tx.last_insert_rowid(),
                cartridge_id: c.id.clone(),
                kind: e.kind().to_owned(),
                device_id: r.device_id.clone(),
                session_id: r.session_id.clone(),
                ts_ms: r.timestamp_ms,
                detail,
            },
        ))?;
        Ok(())
    }

    /// Stores a device's state.
    pub fn put_device(&self, d: &Device) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO devices (device_id, clinic_id, record) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![d.device_id, d.clinic_id, serde_json::to_string(d)?])?;
        Ok(())
    }

    /// Records that a policy version is in force from `loaded_ms`: its text (once per
    /// version), and a history row unless it is the version already in force (a restart with
    /// the same policy adds nothing).
    pub fn put_policy_version(&self, version: &str, loaded_ms: i64, text: &str) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO policy_versions (version, loaded_ms, text) VALUES (?1, ?2, ?3)")?
            .execute(params![version, loaded_ms, text])?;
        self.tx
            .prepare_cached(
                "INSERT INTO policy_in_force (version, from_ms) SELECT ?1, ?2
                 WHERE IFNULL((SELECT version FROM policy_in_force ORDER BY id DESC LIMIT 1), '')
                    <> ?1",
            )?
            .execute(params![version, loaded_ms])?;
        Ok(())
    }

    /// Records that the stream `stream` is committed up to sequence `seq`, with this batch.
    pub fn set_stream_position(&self, stream: &str, seq: u64) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO stream_positions (stream, position) VALUES (?1, ?2)
                 ON CONFLICT (stream) DO UPDATE SET position = MAX(position, excluded.position)",
            )?
            .execute(params![stream, seq as i64])?;
        Ok(())
    }

    /// Appends a record to the audit chain; returns its position.
    pub fn append_audit(&self, record: &audit::Record) -> Result<i64> {
        rows::append_audit(&self.tx, record)
    }

    /// Digest over a session's samples within the `seq` range `seqs` with a journal id above
    /// `after_id`: how many there were, the highest journal id among them (0 when none) and
    /// the digest.
    pub fn samples_digest(
        &self,
        device_id: &str,
        session_id: &str,
        seqs: (u64, u64),
        after_id: i64,
    ) -> Result<(u64, i64, String)> {
        rows::samples_digest(&self.tx, device_id, session_id, seqs, (after_id, i64::MAX))
    }

    /// Writes an alert to the outbox: a new key raises it (revision 1); a change of its
    /// content or state updates it (its revision + 1, pending delivery again); the same
    /// content again changes nothing.
    pub fn raise_alert(&self, a: &Alert, now_ms: i64) -> Result<()> {
        self.tx.prepare_cached(outbox::RAISE)?.execute(params![
            a.key,
            a.kind.as_str(),
            a.severity.as_str(),
            a.clinic_id,
            a.device_id,
            a.session_id,
            a.summary,
            serde_json::to_string(&a.details)?,
            a.starts_ms,
            a.ends_ms,
            now_ms,
        ])?;
        Ok(())
    }

    /// Resolves the alert `key` if it is firing.
    pub fn resolve_alert(&self, key: &str, now_ms: i64) -> Result<()> {
        self.tx
            .prepare_cached(outbox::RESOLVE)?
            .execute(params![key, now_ms])?;
        Ok(())
    }

    /// A sample's pen and context keys, written in this batch where the journal lacks them.
    pub(super) fn keys(&self, device_id: &str, context: Context<'_>) -> Result<Keys> {
        self.contexts
            .borrow_mut()
            .keys(&self.tx, device_id, context)
    }

    /// Makes the batch durable.
    pub fn commit(self) -> Result<()> {
        self.tx.commit()?;
        self.contexts.borrow_mut().committed();
        Ok(())
    }
}

/// `text` cut to at most `max` bytes, on a character boundary.
fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
