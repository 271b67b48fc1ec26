//! WAL checkpoints beside the committer.
//!
//! The committer's connection never checkpoints (it would fsync the database file inside a
//! commit and delay every message and alert behind it). This thread copies committed WAL
//! frames into the database with `PASSIVE` checkpoints, which never block the writer, twice
//! a second; the WAL restarts from its beginning once a checkpoint has caught up.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use super::Result;

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_millis(100);

/// Starts the checkpoint thread for the journal at `path` (created by the committer
/// first); it stops, after a last checkpoint, once `stop` is cancelled.
pub fn spawn(path: &Path, stop: CancellationToken) -> std::io::Result<std::thread::JoinHandle<()>> {
    let path: PathBuf = path.to_owned();
    std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || run(&path, &stop))
}

fn run(path: &Path, stop: &CancellationToken) {
    let conn = match open(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot open the journal for checkpoints; the WAL will grow until restart");
            return;
        }
    };
    let mut failing = false;
    loop {
        let stopping = stop.is_cancelled();
        match checkpoint(&conn) {
            Ok(()) if failing => {
                tracing::info!("journal checkpoints succeed again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) if !failing => {
                tracing::warn!(error = %e, "journal checkpoint failed; retrying");
                failing = true;
            }
            Err(_) => {}
        }
        if stopping {
            return;
        }
        std::thread::sleep(EVERY);
    }
}

fn open(path: &Path) -> Result<Connection> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

fn checkpoint(conn: &Connection) -> Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}
