//! Policy reload: on SIGHUP and whenever the policy file changes, the file is parsed and
//! validated; a good one replaces the policy in force, a bad one is reported (with its line)
//! and the previous version stays.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyHandle};

/// How often the file's modification time is checked.
const POLL: Duration = Duration::from_secs(1);

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Watches `path` until `stop` is cancelled.
pub async fn watch(
    path: PathBuf,
    handle: PolicyHandle,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP reload unavailable; watching the file only");
            None
        }
    };
    let mut last = modified(&path);
    loop {
        let forced = tokio::select! {
            () = stop.cancelled() => return,
            Some(()) = async { match hangup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
            () = tokio::time::sleep(POLL) => false,
        };
        let now = modified(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        match Policy::load(&path) {
            Ok(loaded) => {
                let version = loaded.version().to_owned();
                if handle.current().version() != version {
                    handle.replace(loaded);
                    tracing::info!(%version, "policy reloaded");
                }
                metrics.policy_reload(true);
            }
            Err(e) => {
                tracing::error!(error = %e, "policy rejected; the previous version stays in force");
                metrics.policy_reload(false);
            }
        }
    }
}
