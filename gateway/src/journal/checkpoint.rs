//! WAL checkpoints beside the committer.
//!
//! The committer's connection never checkpoints (it would fsync the database file inside a
//! commit and delay every message and alert behind it). This thread copies committed WAL
//! frames into the database with `PASSIVE` checkpoints, which never block the writer, ten
//! times a second. The WAL restarts from its beginning only when a checkpoint has caught up
//! before the writer's next transaction, which a writer that never pauses does not allow:
//! once the WAL holds more than [`RESTART_FRAMES`], a `RESTART` checkpoint waits for the
//! writer's current commit, copies the few frames left (the passive ones did the rest) and
//! lets the next commit start the WAL over, so its file stays near `journal_size_limit`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use super::Result;

/// How often the WAL is checkpointed.
const EVERY: Duration = Duration::from_millis(100);

/// WAL frames (pages) beyond which the WAL is restarted: 64 MiB of 4 KiB pages.
const RESTART_FRAMES: i64 = 16_384;

/// Starts the checkpoint thread for the journal at `path` (created by the committer
/// first); it stops, after a last checkpoint, once `stop` is cancelled.
pub fn spawn(path: &Path, stop: CancellationToken) -> std::io::Result<std::thread::JoinHandle<()>> {
    let path: PathBuf = path.to_owned();
    std::thread::Builder::new()
        .name("checkpoint".into())
        .spawn(move || run(&path, &stop))
}

fn run(path: &Path, stop: &CancellationToken) {
    let conn = match super::connect(path, super::Access::Checkpoint) {
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

fn checkpoint(conn: &Connection) -> Result<()> {
    let frames: i64 = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get(1))?;
    if frames > RESTART_FRAMES {
        conn.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))?;
    }
    Ok(())
}
