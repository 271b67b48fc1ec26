//! The journal's read side: what the API, `verify` and inspection read, on connections of
//! their own that never block the committer (WAL mode).

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, params};

use super::rows;
use super::{Access, Result, connect};
use crate::cartridges::Cartridge;
use crate::fleet::Device;
use crate::sessions::Session;

/// A connection that reads the journal.
pub struct Reader {
    pub(super) conn: Connection,
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

/// A quarantined message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    /// Journal id (newer messages have higher ids).
    pub id: i64,
    /// Gateway time received, Unix ms.
    pub received_ms: i64,
    /// MQTT topic.
    pub topic: String,
    /// The payload's first [`super::QUARANTINE_KEPT_BYTES`] bytes.
    pub payload: Vec<u8>,
    /// The whole payload's size, bytes.
    pub size_bytes: u64,
    /// The whole payload's SHA-256, hex.
    pub sha256: String,
    /// Short label of the reason (`protobuf`, `field`, …).
    pub kind: String,
    /// Reason a person can read.
    pub reason: String,
}

impl Reader {
    /// Opens the journal read-only (for the API, `verify` and inspection beside a running
    /// gateway).
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            conn: connect(path, Access::Read)?,
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
            samples: count("sample_rows")?,
            sessions: count("sessions")?,
            violations: count("violations")?,
            quarantined: count("quarantine")?,
            audit_entries: count("audit_chain")?,
        })
    }

    /// Size of the database file, bytes.
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
        let rows = stmt.query_map([], |r| r.get::<_, String>("record"))?;
        rows.map(|r| Ok(serde_json::from_str(&r?)?)).collect()
    }

    /// One session, open or closed, with `open` / `closed`.
    pub fn session(&self, device_id: &str, session_id: &str) -> Result<Option<(Session, String)>> {
        rows::session(&self.conn, device_id, session_id)
    }

    /// All sessions, oldest first, with `open` / `closed`.
    pub fn sessions(&self) -> Result<Vec<(Session, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT record, state FROM sessions ORDER BY started_ms, device_id")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>("record")?, r.get::<_, String>("state")?))
        })?;
        rows.map(|r| {
            let (rec, state) = r?;
            Ok((serde_json::from_str(&rec)?, state))
        })
        .collect()
    }

    /// Up to `limit` quarantined messages with an id below `before` (all when `None`), newest
    /// first.
    pub fn quarantine(&self, limit: u32, before: Option<i64>) -> Result<Vec<Quarantined>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, received_ms, topic, payload, kind, reason, size_bytes, sha256 FROM quarantine
             WHERE id < ?2 ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit, before.unwrap_or(i64::MAX)], |r| {
            Ok(Quarantined {
                id: r.get("id")?,
                size_bytes: r.get::<_, i64>("size_bytes")? as u64,
                sha256: r.get("sha256")?,
                received_ms: r.get("received_ms")?,
                topic: r.get("topic")?,
                payload: r.get("payload")?,
                kind: r.get("kind")?,
                reason: r.get("reason")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A cartridge's record.
    pub fn cartridge(&self, id: &str) -> Result<Option<Cartridge>> {
        rows::cartridge(&self.conn, id)
    }

    /// The stream sequence the journal is committed up to in the stream `stream` (0: none).
    pub fn stream_position(&self, stream: &str) -> Result<u64> {
        let position: Option<i64> = self
            .conn
            .query_row(
                "SELECT position FROM stream_positions WHERE stream = ?1",
                [stream],
                |r| r.get("position"),
            )
            .optional()?;
        Ok(position.unwrap_or(0) as u64)
    }
}
