//! The journal: an embedded SQLite database (WAL mode) that is the gateway's durable record
//! and its store-and-forward buffer.
//!
//! It holds the accepted samples (unique by `(device_id, seq)`, so a redelivered or replayed
//! message is recognised), sessions, violations, cartridges, devices, quarantined input,
//! policy versions, the audit chain and the sinks' forwarding cursors. All writes of one
//! batch go in one transaction: one fsync per batch.
//!
//! Every connection is opened by [`connect`], in one of three roles:
//! - [`Writer`]: the committer's, the only one that commits batches ([`Batch`]);
//! - [`Reader`]: read-only, for the API, `verify` and inspection;
//! - [`Upkeep`]: a reader that also writes its own rows: sink cursors and retention's deletes;
//!   [`Outbox`] is the alert delivery's, which writes only what it delivered; [`Signatures`]
//!   the API's for signed reviews, which writes only those and their chain entries.
//!
//! The checkpoint thread ([`checkpoint`]) has a connection of its own that writes no rows.

use std::path::Path;

use rusqlite::Connection;

mod access;
mod batch;
pub mod checkpoint;
mod config;
mod contexts;
#[cfg(test)]
mod fixtures;
pub mod forward;
mod outbox;
pub mod queries;
mod reader;
mod reviews;
mod rows;
mod schema;
mod verify;
mod writer;

pub use access::{AccessEntry, AccessRecorder, AccessRow};
pub use batch::{Batch, ClosedRecord, Closing, Inserted, Samples};
pub use config::JournalConfig;
pub use forward::Upkeep;
pub use outbox::Outbox;
pub use reader::{Counts, Quarantined, Reader};
pub use reviews::{PolicyVersionRow, ReviewRow, Signatures, SignedBy};
pub use rows::digest_fields;
pub use schema::QUARANTINE_KEPT_BYTES;
pub use writer::Writer;

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
    /// A journal thread could not be started.
    #[error("journal thread: {0}")]
    Thread(std::io::Error),
}

impl JournalError {
    /// What is wrong with the journal's storage, in words an operator can act on, when the
    /// error comes from the disk or the file rather than from the data.
    pub fn storage_cause(&self) -> Option<&'static str> {
        use rusqlite::ErrorCode;
        let Self::Sqlite(rusqlite::Error::SqliteFailure(e, _)) = self else {
            return None;
        };
        Some(match e.code {
            ErrorCode::DiskFull => "the disk holding the journal is full",
            ErrorCode::SystemIoFailure => "the disk holding the journal reported an I/O error",
            ErrorCode::ReadOnly => "the journal file or its directory is read-only",
            ErrorCode::PermissionDenied => "the gateway may not write the journal file",
            ErrorCode::CannotOpen => {
                "the journal file cannot be opened (missing directory or no permission)"
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                "another process holds the journal's write lock"
            }
            _ => return None,
        })
    }
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

/// What a connection is for; it decides how [`connect`] sets the connection up.
#[derive(Debug, Clone, Copy)]
enum Access {
    /// The committer's: creates the file; syncs each commit as configured; never checkpoints.
    Commit(Sync),
    /// Read-only.
    Read,
    /// Sink cursors, retention and alert deliveries: small writes that wait for the
    /// committer's lock (10 s).
    Upkeep,
    /// WAL checkpoints: a `RESTART` waits for the committer's current commit (5 s).
    Checkpoint,
}

/// The one way a journal connection is opened. Every role but [`Access::Commit`] needs the
/// journal to exist (the committer creates it first).
fn connect(path: &Path, access: Access) -> Result<Connection> {
    use rusqlite::OpenFlags;
    // Without SQLite's per-connection mutex, as the default flags have it: a `Connection` is
    // never used by two threads at once (it is not `Sync`), and with the mutex every column
    // read took and released a lock (a sixth of the sink's reading of samples).
    let flags = match access {
        Access::Commit(_) => OpenFlags::default(),
        Access::Read => OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        Access::Upkeep | Access::Checkpoint => {
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
        }
    };
    let mut conn = Connection::open_with_flags(path, flags)?;
    match access {
        Access::Commit(sync) => {
            conn.busy_timeout(std::time::Duration::from_secs(5))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(
                None,
                "synchronous",
                if sync == Sync::Full { "FULL" } else { "NORMAL" },
            )?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            // 16 MiB of page cache: the sample indexes stay in memory under load.
            conn.pragma_update(None, "cache_size", -16_384)?;
            // The committer never checkpoints: a checkpoint copies the WAL into the database
            // and fsyncs it, which would stall a commit (and the alerts behind it) for as long.
            // [`checkpoint`] does it beside the committer; the WAL file is cut back to 64 MiB
            // after each reset.
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
            conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
        }
        Access::Read => conn.busy_timeout(std::time::Duration::from_secs(5))?,
        Access::Upkeep => {
            wait_for_the_committer(&mut conn, 10_000)?;
            // A lost cursor update after a power cut only means a resend, which is idempotent.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            // Checkpoints are the checkpoint thread's: otherwise each small write here (a
            // sink's cursor) would also checkpoint the committer's WAL, on this thread.
            conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        }
        Access::Checkpoint => {
            wait_for_the_committer(&mut conn, 5_000)?;
            conn.pragma_update(None, "synchronous", "FULL")?;
        }
    }
    Ok(conn)
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
