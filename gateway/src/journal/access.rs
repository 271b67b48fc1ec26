//! The access log: who read what through the API, and who was refused.
//!
//! The API records an [`AccessEntry`] per call without waiting: entries go over a channel to
//! one thread with its own connection, which writes whatever is pending in one transaction
//! together with an `access` chain entry over them (ids and a digest), so `verify` can tell
//! whether any was removed or edited.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, params};

use super::{Access, Reader, Result, connect, rows};
use crate::audit::{AccessBatch, Record, SampleDigest};

/// One API call as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessEntry {
    /// Gateway time of the call, Unix ms.
    pub at_ms: i64,
    /// Token name (`-` when the call carried no known token).
    pub token: String,
    /// Its role (`-` when unknown).
    pub role: String,
    /// The rpc.
    pub rpc: String,
    /// The request's filter or ids, shortened.
    pub filter: String,
    /// Rows returned (0 for a stream, which is recorded when it opens).
    pub rows: u64,
    /// `ok`, or why the call was refused.
    pub outcome: String,
}

/// A recorded entry with its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRow {
    /// Journal id (newer entries have higher ids).
    pub id: i64,
    /// The entry.
    pub entry: AccessEntry,
}

/// Most entries written in one transaction.
const BATCH: usize = 500;

/// Hands entries to the access log's writer thread; cheap to clone.
#[derive(Clone)]
pub struct AccessRecorder(mpsc::Sender<AccessEntry>);

impl AccessRecorder {
    /// Starts the writer thread on the journal at `path` (created by the committer first);
    /// it ends when the last recorder is dropped, after writing what it holds.
    pub fn spawn(path: &Path) -> Result<Self> {
        let conn = connect(path, Access::Upkeep)?;
        let (tx, rx) = mpsc::channel::<AccessEntry>();
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut entries = vec![first];
                    entries.extend(rx.try_iter().take(BATCH - 1));
                    if let Err(e) = write(&conn, &entries) {
                        tracing::error!(error = %e, lost = entries.len(), "the access log could not be written");
                    }
                }
            })
            .map_err(super::JournalError::Thread)?;
        Ok(Self(tx))
    }

    /// Records `entry` (never waits; dropped only if the writer thread is gone).
    pub fn record(&self, entry: AccessEntry) {
        let _ = self.0.send(entry);
    }
}

/// The canonical line of an entry in its batch's digest.
const LINE: &str = "at_ms || '|' || token || '|' || role || '|' || rpc || '|' || filter || '|' || \
    rows || '|' || outcome";

fn write(conn: &Connection, entries: &[AccessEntry]) -> Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let mut first_id = None;
        let mut last_id = 0;
        for e in entries {
            conn.prepare_cached(
                "INSERT INTO access_log (at_ms, token, role, rpc, filter, rows, outcome)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                e.at_ms,
                e.token,
                e.role,
                e.rpc,
                e.filter,
                e.rows as i64,
                e.outcome
            ])?;
            last_id = conn.last_insert_rowid();
            first_id.get_or_insert(last_id);
        }
        let first_id = first_id.unwrap_or(last_id);
        let digest = digest(conn, first_id, last_id)?;
        rows::append_audit(
            conn,
            &Record::Access(AccessBatch {
                first_id,
                last_id,
                digest,
            }),
        )?;
        Ok(())
    })();
    match result {
        Ok(()) => Ok(conn.execute_batch("COMMIT")?),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// The digest over the entries with ids `first..=last`.
pub(super) fn digest(conn: &Connection, first: i64, last: i64) -> Result<String> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {LINE} AS line FROM access_log WHERE id BETWEEN ?1 AND ?2 ORDER BY id"
    ))?;
    let mut rows = stmt.query(params![first, last])?;
    let mut d = SampleDigest::default();
    while let Some(row) = rows.next()? {
        d.add(
            row.get_ref("line")?
                .as_str()
                .map_err(rusqlite::Error::from)?,
        );
    }
    Ok(d.finish())
}

impl Reader {
    /// Up to `limit` access log entries with an id below `before` (all when `None`), newest
    /// first.
    pub fn access_log(&self, limit: u32, before: Option<i64>) -> Result<Vec<AccessRow>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at_ms, token, role, rpc, filter, rows, outcome FROM access_log
             WHERE id < ?2 ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = stmt.query_map(params![limit, before.unwrap_or(i64::MAX)], |r| {
            Ok(AccessRow {
                id: r.get("id")?,
                entry: AccessEntry {
                    at_ms: r.get("at_ms")?,
                    token: r.get("token")?,
                    role: r.get("role")?,
                    rpc: r.get("rpc")?,
                    filter: r.get("filter")?,
                    rows: r.get::<_, i64>("rows")? as u64,
                    outcome: r.get("outcome")?,
                },
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
