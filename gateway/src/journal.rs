//! The journal: an embedded SQLite database (WAL mode) that is the gateway's durable record
//! and its store-and-forward buffer.
//!
//! It holds the accepted samples (unique by `(device_id, seq)`, so a redelivered or replayed
//! message is recognised), sessions, violations, cartridges, devices, quarantined input,
//! policy versions, the audit chain and the sinks' forwarding cursors. All writes of one
//! batch go in one transaction: one fsync per batch.

use std::path::Path;

pub mod checkpoint;
pub mod forward;
pub mod queries;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{DeviceClass, Event, Zone};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::audit::{self, Entry, SampleDigest, Verification};
use crate::cartridges::{Cartridge, CartridgeEvent};
use crate::decode::{Encoding, Reading};
use crate::fleet::Device;
use crate::sessions::{CloseReason, Session, Verdict};

/// Journal errors.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// SQLite failed.
    #[error("journal database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored JSON record did not decode.
    #[error("journal record: {0}")]
    Record(#[from] serde_json::Error),
    /// The database was written by a newer gateway.
    #[error(
        "journal schema version {found} is newer than this gateway's ({supported}); upgrade the gateway"
    )]
    Schema {
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

/// Result alias.
pub type Result<T> = std::result::Result<T, JournalError>;

/// How hard SQLite syncs on commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Sync {
    /// fsync on every commit: a committed batch survives power loss (default).
    Full,
    /// fsync at WAL checkpoints only: survives a process crash, not a power loss.
    Normal,
}

/// Version 2 keeps each session's `seq` range in `sessions (min_seq, max_seq)` and finds a
/// session's samples through the `(device_id, seq)` index within that range, instead of
/// keeping two more indexes on `samples` (`(device_id, session_id, seq)` and `(ts_ms)`): they
/// cost 30 % of the committer's time per message (measured with the ingest benchmark).
const SCHEMA_VERSION: i64 = 2;

/// From version 1 to 2, in the same transaction as the schema.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE sessions ADD COLUMN min_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN max_seq INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET
    min_seq = IFNULL((SELECT MIN(seq) FROM samples s
        WHERE s.device_id = sessions.device_id AND s.session_id = sessions.session_id), 0),
    max_seq = IFNULL((SELECT MAX(seq) FROM samples s
        WHERE s.device_id = sessions.device_id AND s.session_id = sessions.session_id), 0);
DROP INDEX IF EXISTS samples_session;
DROP INDEX IF EXISTS samples_ts;
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS samples (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    clinic_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    claimed_class TEXT NOT NULL,
    model TEXT NOT NULL,
    firmware TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    cartridge_id TEXT NOT NULL,
    cartridge_model TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    depth_mm REAL NOT NULL,
    session_strokes INTEGER NOT NULL,
    cartridge_strokes INTEGER NOT NULL,
    speed_hz REAL NOT NULL,
    battery_pct REAL NOT NULL,
    zone TEXT,
    encoding TEXT NOT NULL,
    permitted_mm REAL NOT NULL,
    binding TEXT NOT NULL,
    exceeded INTEGER NOT NULL,
    unknown_operator INTEGER NOT NULL,
    unregistered_device INTEGER NOT NULL,
    class_mismatch INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    UNIQUE (device_id, seq)
);
CREATE TABLE IF NOT EXISTS sessions (
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    exceeded INTEGER NOT NULL,
    state TEXT NOT NULL,
    close_reason TEXT,
    samples_digest TEXT,
    record TEXT NOT NULL,
    min_seq INTEGER NOT NULL DEFAULT 0,
    max_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, session_id)
);
CREATE INDEX IF NOT EXISTS sessions_clinic ON sessions (clinic_id, started_ms);
CREATE TABLE IF NOT EXISTS violations (
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    limit_mm REAL NOT NULL,
    binding TEXT NOT NULL,
    peak_depth_mm REAL NOT NULL,
    first_above_ms INTEGER NOT NULL,
    last_above_ms INTEGER NOT NULL,
    strokes_above INTEGER NOT NULL,
    samples_above INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    final INTEGER NOT NULL,
    PRIMARY KEY (device_id, session_id)
);
CREATE TABLE IF NOT EXISTS cartridges (
    cartridge_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    strokes INTEGER NOT NULL,
    wear TEXT NOT NULL,
    reused INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cartridge_events (
    id INTEGER PRIMARY KEY,
    cartridge_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS policy_versions (
    version TEXT PRIMARY KEY,
    loaded_ms INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_chain (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sink_cursors (
    sink TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
";

/// The journal database.
pub struct Journal {
    conn: Connection,
}

/// Counts of what the journal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// Accepted samples and events.
    pub samples: u64,
    /// Sessions (open and closed).
    pub sessions: u64,
    /// Violations.
    pub violations: u64,
    /// Quarantined messages.
    pub quarantined: u64,
    /// Audit chain entries.
    pub audit_entries: u64,
}

impl Journal {
    /// Opens (or creates) the journal at `path`.
    pub fn open(path: &Path, sync: Sync) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(
            None,
            "synchronous",
            if sync == Sync::Full { "FULL" } else { "NORMAL" },
        )?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // 16 MiB of page cache: the sample indexes stay in memory under load.
        conn.pragma_update(None, "cache_size", -16_384)?;
        // The committer never checkpoints: a checkpoint copies the WAL into the database and
        // fsyncs it, which would stall a commit (and the alerts behind it) for as long.
        // [`checkpoint`] does it beside the committer; the WAL file is cut back to 64 MiB
        // after each reset.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(JournalError::Schema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        let migration = if found == 1 { MIGRATE_1_TO_2 } else { "" };
        conn.execute_batch(&format!("BEGIN; {migration} {SCHEMA} COMMIT;"))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(Self { conn })
    }

    /// Opens the journal read-only (for `verify` and inspection beside a running gateway).
    pub fn open_read_only(path: &Path) -> Result<Self> {
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(Self { conn })
    }

    /// Starts a write batch; nothing is durable until [`Batch::commit`].
    pub fn batch(&mut self) -> Result<Batch<'_>> {
        Ok(Batch {
            tx: self.conn.transaction()?,
        })
    }

    /// Counts of stored records.
    pub fn counts(&self) -> Result<Counts> {
        let count = |table: &str| -> Result<u64> {
            let n: i64 =
                self.conn
                    .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))?;
            Ok(n as u64)
        };
        Ok(Counts {
            samples: count("samples")?,
            sessions: count("sessions")?,
            violations: count("violations")?,
            quarantined: count("quarantine")?,
            audit_entries: count("audit_chain")?,
        })
    }

    /// Size of the database file and its WAL, bytes.
    pub fn size_bytes(&self) -> Result<u64> {
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok((pages * size) as u64)
    }

    /// Sessions still open (to resume tracking after a restart).
    pub fn open_sessions(&self) -> Result<Vec<Session>> {
        self.records("SELECT record FROM sessions WHERE state = 'open'")
    }

    /// Every known device.
    pub fn devices(&self) -> Result<Vec<Device>> {
        self.records("SELECT record FROM devices ORDER BY clinic_id, device_id")
    }

    /// The JSON `record` column of every row a query returns, decoded.
    fn records<T: serde::de::DeserializeOwned>(&self, sql: &str) -> Result<Vec<T>> {
        let mut stmt = self.conn.prepare(sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    /// One session, open or closed.
    pub fn session(&self, device_id: &str, session_id: &str) -> Result<Option<(Session, String)>> {
        session_row(&self.conn, device_id, session_id)
    }

    /// All sessions, oldest first.
    pub fn sessions(&self) -> Result<Vec<(Session, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT record, state FROM sessions ORDER BY started_ms, device_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        rows.map(|r| {
            let (rec, state) = r?;
            Ok((serde_json::from_str(&rec)?, state))
        })
        .collect()
    }

    /// Quarantined messages, newest first: (received_ms, topic, payload, kind, reason).
    pub fn quarantine(&self, limit: u32) -> Result<Vec<Quarantined>> {
        let mut stmt = self.conn.prepare(
            "SELECT received_ms, topic, payload, kind, reason FROM quarantine ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit], |r| {
            Ok(Quarantined {
                received_ms: r.get(0)?,
                topic: r.get(1)?,
                payload: r.get(2)?,
                kind: r.get(3)?,
                reason: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A cartridge's record.
    pub fn cartridge(&self, id: &str) -> Result<Option<Cartridge>> {
        cartridge_row(&self.conn, id)
    }

    /// Recomputes the audit chain and every session's sample digest that retention kept.
    pub fn verify(&self) -> Result<Verification> {
        let mut stmt = self
            .conn
            .prepare("SELECT seq, kind, body, prev_hash, hash FROM audit_chain ORDER BY seq")?;
        let entries = stmt
            .query_map([], |r| {
                Ok(Entry {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    body: r.get(2)?,
                    prev_hash: r.get(3)?,
                    hash: r.get(4)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut v = audit::verify_links(&entries);
        if !v.ok() {
            return Ok(v);
        }
        // A journal not yet migrated to schema 2 (verified before the new gateway first ran
        // on it) has no seq ranges: look at each pen's whole sequence.
        let schema: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))?;
        let ranged = schema >= 2;
        for e in entries.iter().filter(|e| e.kind == "session") {
            let Some(audit::Record::Session(c)) = audit::Record::parse(&e.kind, &e.body)? else {
                continue;
            };
            let seqs = if ranged {
                stored_seq_range(&self.conn, &c.device_id, &c.session_id)?
            } else {
                (0, u64::MAX)
            };
            let (found, _, recomputed) = samples_digest(
                &self.conn,
                &c.device_id,
                &c.session_id,
                seqs,
                c.last_sample_id,
            )?;
            if found == 0 && c.journaled > 0 {
                v.digests_unchecked += 1;
            } else if recomputed != c.samples_digest || found != c.journaled {
                v.first_broken = Some((
                    e.seq,
                    format!(
                        "samples of session {}/{} do not match the recorded digest",
                        c.device_id, c.session_id
                    ),
                ));
                return Ok(v);
            }
        }
        Ok(v)
    }
}

/// A quarantined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Gateway time received, Unix ms.
    pub received_ms: i64,
    /// MQTT topic.
    pub topic: String,
    /// Raw payload.
    pub payload: Vec<u8>,
    /// Short label of the reason (`protobuf`, `field`, …).
    pub kind: String,
    /// Reason a person can read.
    pub reason: String,
}

/// The writes of one batch, in one transaction.
pub struct Batch<'a> {
    tx: Transaction<'a>,
}

impl Batch<'_> {
    /// Journals a judged sample; `false` when `(device_id, seq)` was already journaled.
    pub fn insert_sample(&self, r: &Reading, v: &Verdict, received_ms: i64) -> Result<bool> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT OR IGNORE INTO samples (device_id, seq, clinic_id, device_class, claimed_class,
                model, firmware, operator_id, session_id, cartridge_id, cartridge_model, ts_ms,
                received_ms, event, depth_mm, session_strokes, cartridge_strokes, speed_hz,
                battery_pct, zone, encoding, permitted_mm, binding, exceeded, unknown_operator,
                unregistered_device, class_mismatch, policy_version)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
        )?;
        let n = stmt.execute(params![
            r.device_id,
            r.seq as i64,
            r.clinic_id,
            v.device_class,
            r.claimed_class.short_name(),
            r.model,
            r.firmware,
            r.operator_id,
            r.session_id,
            r.cartridge_id,
            r.cartridge_model,
            r.timestamp_ms,
            received_ms,
            r.event.short_name(),
            r.depth_mm,
            r.session_strokes as i64,
            r.cartridge_strokes as i64,
            r.speed_hz,
            r.battery_pct,
            r.zone.map(|z| z.short_name()),
            if r.encoding == Encoding::Json {
                "json"
            } else {
                "protobuf"
            },
            v.permitted_mm,
            v.binding,
            v.exceeded,
            v.unknown_operator,
            v.unregistered_device,
            v.class_mismatch,
            v.policy_version,
        ])?;
        Ok(n == 1)
    }

    /// Keeps a rejected message for inspection.
    pub fn quarantine(
        &self,
        received_ms: i64,
        topic: &str,
        payload: &[u8],
        kind: &str,
        reason: &str,
    ) -> Result<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO quarantine (received_ms, topic, payload, kind, reason) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![received_ms, topic, payload, kind, reason])?;
        Ok(())
    }

    /// Stores a session's current state (open) or final record (closed).
    pub fn put_session(&self, s: &Session, close: Option<(CloseReason, &str)>) -> Result<()> {
        let (state, reason, digest) = match close {
            Some((reason, digest)) => ("closed", Some(reason.as_str()), Some(digest)),
            None => ("open", None, None),
        };
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO sessions (device_id, session_id, clinic_id, operator_id,
                    device_class, started_ms, last_ms, exceeded, state, close_reason, samples_digest,
                    record, min_seq, max_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?
            .execute(params![
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
            ])?;
        if let Some(e) = &s.violation {
            self.tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO violations (device_id, session_id, clinic_id, operator_id,
                        device_class, limit_mm, binding, peak_depth_mm, first_above_ms, last_above_ms,
                        strokes_above, samples_above, policy_version, final)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )?
                .execute(params![
                    s.device_id,
                    s.session_id,
                    s.clinic_id,
                    s.operator_id,
                    s.device_class,
                    e.limit_mm,
                    e.binding,
                    e.peak_depth_mm,
                    e.first_above_ms,
                    e.last_above_ms,
                    e.strokes_above as i64,
                    e.samples_above as i64,
                    e.policy_version,
                    close.is_some(),
                ])?;
        }
        Ok(())
    }

    /// A session as stored: its record and `open` / `closed`.
    pub fn session(&self, device_id: &str, session_id: &str) -> Result<Option<(Session, String)>> {
        session_row(&self.tx, device_id, session_id)
    }

    /// A session's samples with their verdicts, in `seq` order, and the id of the last one;
    /// `from_seq` is the session's lowest `seq` (or 0 when unknown).
    pub fn session_samples(
        &self,
        device_id: &str,
        session_id: &str,
        from_seq: u64,
    ) -> Result<(Vec<(Reading, Verdict)>, i64)> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT id, device_id, clinic_id, claimed_class, model, firmware, operator_id, session_id,
                cartridge_id, cartridge_model, seq, ts_ms, event, depth_mm, session_strokes,
                cartridge_strokes, speed_hz, battery_pct, zone, encoding, permitted_mm, binding,
                device_class, exceeded, unknown_operator, unregistered_device, class_mismatch,
                policy_version
             FROM samples WHERE device_id = ?1 AND seq >= ?3 AND session_id = ?2 ORDER BY seq",
        )?;
        let mut last_id = 0;
        let rows = stmt
            .query_map(params![device_id, session_id, from_seq as i64], |row| {
                let id: i64 = row.get(0)?;
                Ok((id, sample_from_row(row)?))
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
        cartridge_row(&self.tx, id)
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

    /// Records a policy version (once).
    pub fn put_policy_version(&self, version: &str, loaded_ms: i64, text: &str) -> Result<()> {
        self.tx
            .prepare_cached("INSERT OR IGNORE INTO policy_versions (version, loaded_ms, text) VALUES (?1, ?2, ?3)")?
            .execute(params![version, loaded_ms, text])?;
        Ok(())
    }

    /// Appends a record to the audit chain; returns its hash.
    pub fn append_audit(&self, record: &audit::Record) -> Result<String> {
        let (kind, body) = (record.kind(), record.body()?);
        let prev: Option<(i64, String)> = self
            .tx
            .prepare_cached("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (seq, prev_hash) = prev.map_or((1, audit::GENESIS.to_owned()), |(s, h)| (s + 1, h));
        let hash = audit::link_hash(&prev_hash, kind, &body);
        self.tx
            .prepare_cached("INSERT INTO audit_chain (seq, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![seq, kind, body, prev_hash, hash])?;
        Ok(hash)
    }

    /// Digest over a session's samples from `seq` `from_seq` on: how many there were, the
    /// highest journal id among them (0 when none) and the digest.
    pub fn samples_digest(
        &self,
        device_id: &str,
        session_id: &str,
        from_seq: u64,
    ) -> Result<(u64, i64, String)> {
        samples_digest(
            &self.tx,
            device_id,
            session_id,
            (from_seq, u64::MAX),
            i64::MAX,
        )
    }

    /// Makes the batch durable.
    pub fn commit(self) -> Result<()> {
        Ok(self.tx.commit()?)
    }
}

fn session_row(
    conn: &Connection,
    device_id: &str,
    session_id: &str,
) -> Result<Option<(Session, String)>> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT record, state FROM sessions WHERE device_id = ?1 AND session_id = ?2",
        )?
        .query_row(params![device_id, session_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(rec, state)| Ok((serde_json::from_str(&rec)?, state)))
        .transpose()
}

/// Makes a connection beside the committer's wait for the write lock by polling it every
/// millisecond, up to `polls` times: the committer holds the lock for most of each second under
/// load and lets go only between batches, and SQLite's default backoff sleeps past those gaps.
fn wait_for_the_committer(conn: &mut Connection, polls: i32) -> Result<()> {
    conn.busy_handler(Some(move |attempt| {
        std::thread::sleep(std::time::Duration::from_millis(1));
        attempt < polls
    }))?;
    Ok(())
}

/// A session's `seq` range as stored with it; the whole sequence when unknown.
fn stored_seq_range(conn: &Connection, device_id: &str, session_id: &str) -> Result<(u64, u64)> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached(
            "SELECT min_seq, max_seq FROM sessions WHERE device_id = ?1 AND session_id = ?2",
        )?
        .query_row(params![device_id, session_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    Ok(match row {
        Some((min, max)) if max > 0 => (min as u64, max as u64),
        _ => (0, u64::MAX),
    })
}

fn cartridge_row(conn: &Connection, id: &str) -> Result<Option<Cartridge>> {
    let rec: Option<String> = conn
        .prepare_cached("SELECT record FROM cartridges WHERE cartridge_id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    rec.map(|r| Ok(serde_json::from_str(&r)?)).transpose()
}

/// The canonical line of a sample in a session digest.
const DIGEST_COLUMNS: &str = "device_id || '|' || seq || '|' || ts_ms || '|' || event || '|' || \
    printf('%.6f', depth_mm) || '|' || session_strokes || '|' || cartridge_strokes || '|' || \
    operator_id || '|' || cartridge_id || '|' || IFNULL(zone, '') || '|' || \
    printf('%.6f', permitted_mm) || '|' || binding || '|' || exceeded || '|' || policy_version";

/// Digest over a session's samples within the `seq` range `seqs` with a journal id up to
/// `upto`: how many there were, the highest journal id among them and the digest. The range
/// is a superset of the session's samples, looked up through the `(device_id, seq)` index,
/// then filtered by session.
fn samples_digest(
    conn: &Connection,
    device_id: &str,
    session_id: &str,
    seqs: (u64, u64),
    upto: i64,
) -> Result<(u64, i64, String)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT id, {DIGEST_COLUMNS} FROM samples WHERE device_id = ?1 AND seq BETWEEN ?4 AND ?5 \
         AND session_id = ?2 AND id <= ?3 ORDER BY seq"
    ))?;
    let mut digest = SampleDigest::default();
    let (mut n, mut last_id) = (0, 0);
    let mut rows = stmt.query(params![
        device_id,
        session_id,
        upto,
        seqs.0 as i64,
        seqs.1.min(i64::MAX as u64) as i64
    ])?;
    while let Some(row) = rows.next()? {
        last_id = last_id.max(row.get::<_, i64>(0)?);
        digest.add(row.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?);
        n += 1;
    }
    Ok((n, last_id, digest.finish()))
}

fn parse_enum<E: ShortName>(s: &str) -> rusqlite::Result<E> {
    E::parse_name(s).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(0, s.to_owned(), rusqlite::types::Type::Text)
    })
}

fn sample_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Reading, Verdict)> {
    let zone: Option<String> = row.get(18)?;
    let encoding: String = row.get(19)?;
    let reading = Reading {
        device_id: row.get(1)?,
        clinic_id: row.get(2)?,
        claimed_class: parse_enum::<DeviceClass>(&row.get::<_, String>(3)?)?,
        model: row.get(4)?,
        firmware: row.get(5)?,
        operator_id: row.get(6)?,
        session_id: row.get(7)?,
        cartridge_id: row.get(8)?,
        cartridge_model: row.get(9)?,
        seq: row.get::<_, i64>(10)? as u64,
        timestamp_ms: row.get(11)?,
        event: parse_enum::<Event>(&row.get::<_, String>(12)?)?,
        depth_mm: row.get(13)?,
        session_strokes: row.get::<_, i64>(14)? as u64,
        cartridge_strokes: row.get::<_, i64>(15)? as u64,
        speed_hz: row.get(16)?,
        battery_pct: row.get(17)?,
        zone: zone.as_deref().map(parse_enum::<Zone>).transpose()?,
        encoding: if encoding == "json" {
            Encoding::Json
        } else {
            Encoding::Protobuf
        },
    };
    let verdict = Verdict {
        permitted_mm: row.get(20)?,
        binding: row.get(21)?,
        device_class: row.get(22)?,
        exceeded: row.get(23)?,
        unknown_operator: row.get(24)?,
        unregistered_device: row.get(25)?,
        class_mismatch: row.get(26)?,
        policy_version: row.get(27)?,
    };
    Ok((reading, verdict))
}
