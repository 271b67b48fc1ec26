//! Standby gateways: one journal, written by one gateway at a time, taken over by another when
//! that one stops, and handed back when it returns.
//!
//! The gateway writing a journal holds an exclusive `flock` on `<journal>.lock` beside it,
//! with its pid, host and start time written in the file. The kernel releases the lock when
//! the process ends, however it ends (`kill -9` included), so a standby waiting on the same
//! journal takes it within [`POLL`] of the holder's death, opens it as a restarted gateway
//! would (its open sessions, its stream position or persistent MQTT session) and goes on: the
//! journal's own guarantees make the takeover exact.
//!
//! `[failover] role` says what a gateway does when the lock is held:
//! - none (the section absent): refuse to start, naming the holder;
//! - `standby`: wait, take the journal when it is free, and give it back (an ordered
//!   shutdown, then waiting again) when its home gateway asks;
//! - `home`: ask for it back by keeping `<journal>.handback` fresh, and wait.
//!
//! A request older than [`STALE`] is one whose home gateway died waiting; a standby ignores it.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::FlockOperation;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often a waiting gateway tries the lock, and a home gateway refreshes its request.
pub const POLL: Duration = Duration::from_millis(250);

/// Age after which a hand-back request is taken for one whose gateway is gone.
pub const STALE: Duration = Duration::from_secs(10);

/// What this gateway is to its journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The journal's usual writer: asks a standby holding it to hand it back.
    Home,
    /// Waits while another gateway writes the journal; hands it back to its home gateway.
    Standby,
}

/// `[failover]`
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailoverConfig {
    /// `home` or `standby`.
    pub role: Role,
}

/// Why the journal cannot be taken.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    /// Another gateway writes the journal and this one has no `[failover]` role.
    #[error(
        "the journal {journal} is written by another gateway ({holder}): stop that one first, \
         or set [failover] role = \"standby\" to wait and take over when it stops"
    )]
    Held {
        /// The journal file.
        journal: PathBuf,
        /// Who holds it, as its lock file says.
        holder: String,
    },
    /// The lock or request file could not be used.
    #[error("journal lock {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The right to write a journal, held until dropped.
#[derive(Debug)]
pub struct JournalLock {
    _file: File,
}

impl JournalLock {
    /// Takes the journal's lock if no other process holds it.
    pub fn try_take(journal: &Path) -> Result<Option<Self>, FailoverError> {
        let path = sibling(journal, "lock");
        let io = |source| FailoverError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io)?;
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(io(e.into())),
        }
        file.set_len(0).map_err(io)?;
        writeln!(file, "{}", whoami()).map_err(io)?;
        Ok(Some(Self { _file: file }))
    }
}

/// Who holds the journal, as its lock file says (device-free text, but escaped anyway).
pub fn holder(journal: &Path) -> String {
    let text = std::fs::read_to_string(sibling(journal, "lock")).unwrap_or_default();
    match text.trim() {
        "" => "a process that has not written its name yet".to_owned(),
        t => penwatch_proto::text::escape_controls(t).into_owned(),
    }
}

/// Waits until this gateway may write `journal`, as its `role` says; `None` when `stop` came
/// first. `penwatch_standby` is 1 while it waits.
pub async fn acquire(
    journal: &Path,
    role: Option<Role>,
    metrics: &Metrics,
    stop: &CancellationToken,
) -> Result<Option<JournalLock>, FailoverError> {
    let request = sibling(journal, "handback");
    let mut waiting = false;
    loop {
        let yield_to_home = role == Some(Role::Standby) && fresh(&request);
        if !yield_to_home && let Some(lock) = JournalLock::try_take(journal)? {
            if role == Some(Role::Home) || request.exists() {
                let _ = std::fs::remove_file(&request);
            }
            metrics.standby.set(0);
            return Ok(Some(lock));
        }
        match role {
            None => {
                return Err(FailoverError::Held {
                    journal: journal.to_owned(),
                    holder: holder(journal),
                });
            }
            Some(Role::Home) => {
                std::fs::write(&request, format!("{}\n", whoami())).map_err(|source| {
                    FailoverError::Io {
                        path: request.clone(),
                        source,
                    }
                })?
            }
            Some(Role::Standby) => {}
        }
        if !waiting {
            waiting = true;
            metrics.standby.set(1);
            tracing::info!(
                journal = %journal.display(),
                holder = %holder(journal),
                role = ?role,
                "standing by: another gateway writes the journal"
            );
        }
        tokio::select! {
            () = stop.cancelled() => {
                if role == Some(Role::Home) {
                    let _ = std::fs::remove_file(&request);
                }
                return Ok(None);
            }
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

/// Resolves when the home gateway of `journal` asks for it back (a fresh request).
pub async fn handback_requested(journal: &Path) {
    let request = sibling(journal, "handback");
    while !fresh(&request) {
        tokio::time::sleep(POLL * 2).await;
    }
}

/// Whether a request file exists and was written within [`STALE`].
fn fresh(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age < STALE)
}

/// `<journal>.<suffix>` beside the journal.
fn sibling(journal: &Path, suffix: &str) -> PathBuf {
    let mut name = journal.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

/// This process as its lock file names it.
fn whoami() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "pid {} on {} since {}",
        std::process::id(),
        match host.trim() {
            "" => "an unnamed host",
            h => h,
        },
        humantime::format_rfc3339_seconds(SystemTime::now())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_locked_by_one_holder_cannot_be_taken_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = dir.path().join("journal.db");
        let first = JournalLock::try_take(&journal)
            .expect("lock")
            .expect("free");
        assert!(JournalLock::try_take(&journal).expect("lock").is_none());
        assert!(holder(&journal).starts_with(&format!("pid {} on ", std::process::id())));
        drop(first);
        assert!(JournalLock::try_take(&journal).expect("lock").is_some());
    }

    #[tokio::test]
    async fn without_a_role_a_held_journal_is_refused_naming_its_holder() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = dir.path().join("journal.db");
        let _held = JournalLock::try_take(&journal).expect("lock");
        let err = acquire(&journal, None, &Metrics::new(), &CancellationToken::new())
            .await
            .expect_err("held");
        let text = err.to_string();
        assert!(text.contains("written by another gateway (pid "), "{text}");
        assert!(text.contains("role = \"standby\""), "{text}");
    }

    #[tokio::test]
    async fn a_standby_waits_and_takes_the_journal_once_its_holder_lets_go() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = dir.path().join("journal.db");
        let held = JournalLock::try_take(&journal).expect("lock");
        let metrics = Metrics::new();
        let stop = CancellationToken::new();
        let waiter = {
            let (journal, metrics, stop) = (journal.clone(), metrics.clone(), stop.clone());
            tokio::spawn(
                async move { acquire(&journal, Some(Role::Standby), &metrics, &stop).await },
            )
        };
        tokio::time::sleep(POLL * 3).await;
        assert!(!waiter.is_finished());
        assert_eq!(metrics.standby.get(), 1);
        drop(held);
        let lock = waiter.await.expect("join").expect("acquire");
        assert!(lock.is_some());
        assert_eq!(metrics.standby.get(), 0);
    }

    #[tokio::test]
    async fn a_home_gateway_asks_for_its_journal_and_a_standby_leaves_it_to_it() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = dir.path().join("journal.db");
        let held_by_standby = JournalLock::try_take(&journal).expect("lock");
        let stop = CancellationToken::new();
        let home = {
            let (journal, stop) = (journal.clone(), stop.clone());
            tokio::spawn(async move {
                acquire(&journal, Some(Role::Home), &Metrics::new(), &stop).await
            })
        };
        tokio::time::timeout(Duration::from_secs(5), handback_requested(&journal))
            .await
            .expect("the request is seen");
        drop(held_by_standby);
        let standby = {
            let (journal, stop) = (journal.clone(), stop.clone());
            tokio::spawn(async move {
                acquire(&journal, Some(Role::Standby), &Metrics::new(), &stop).await
            })
        };
        let lock = home.await.expect("join").expect("acquire");
        assert!(lock.is_some(), "the home gateway has its journal back");
        assert!(!sibling(&journal, "handback").exists());
        tokio::time::sleep(POLL * 3).await;
        assert!(!standby.is_finished(), "the standby waits again");
        stop.cancel();
        assert!(standby.await.expect("join").expect("acquire").is_none());
    }

    #[tokio::test]
    async fn a_stale_request_does_not_keep_a_standby_from_a_free_journal() {
        let dir = tempfile::tempdir().expect("dir");
        let journal = dir.path().join("journal.db");
        let request = sibling(&journal, "handback");
        std::fs::write(&request, "pid 1 on gone\n").expect("write");
        let old = SystemTime::now() - STALE * 2;
        File::options()
            .write(true)
            .open(&request)
            .and_then(|f| f.set_modified(old))
            .expect("age");
        let lock = acquire(
            &journal,
            Some(Role::Standby),
            &Metrics::new(),
            &CancellationToken::new(),
        )
        .await
        .expect("acquire");
        assert!(lock.is_some());
        assert!(!request.exists(), "the stale request is removed");
    }
}
