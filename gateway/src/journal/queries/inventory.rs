//! What the gateway keeps beside sessions: cartridges and their reuse events, the quarantine's
//! size and when a policy version came into force.

use rusqlite::OptionalExtension;

use crate::cartridges::Cartridge;
use crate::journal::{Reader, Result};

/// A cartridge reuse event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReuseRow {
    /// Cartridge id.
    pub cartridge_id: String,
    /// Pen serial of the reusing session.
    pub device_id: String,
    /// Reusing session.
    pub session_id: String,
    /// Device time, Unix ms.
    pub ts_ms: i64,
    /// What happened.
    pub detail: String,
}

impl Reader {
    /// Every cartridge.
    pub fn cartridges(&self) -> Result<Vec<Cartridge>> {
        let mut stmt = self
            .conn
            .prepare("SELECT record FROM cartridges ORDER BY cartridge_id")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.iter().map(|r| Ok(serde_json::from_str(r)?)).collect()
    }

    /// Cartridge reuse events, newest first.
    pub fn reuse_events(&self) -> Result<Vec<ReuseRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT cartridge_id, device_id, session_id, ts_ms, detail FROM cartridge_events \
             WHERE kind = 'reuse' ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ReuseRow {
                cartridge_id: r.get("cartridge_id")?,
                device_id: r.get("device_id")?,
                session_id: r.get("session_id")?,
                ts_ms: r.get("ts_ms")?,
                detail: r.get("detail")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Number of quarantined messages kept.
    pub fn quarantine_total(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// When a policy version last came into force, Unix ms.
    pub fn policy_loaded_ms(&self, version: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT from_ms FROM policy_in_force WHERE version = ?1 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([version], |r| r.get("from_ms"))
            .optional()?)
    }
}
