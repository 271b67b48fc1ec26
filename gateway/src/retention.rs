//! Journal housekeeping: deletes raw samples older than `journal.retention_days` (only once
//! forwarded, when a sink is configured) and raises an alarm at 80 % of `journal.max_bytes`.
//!
//! Sessions, violations, cartridges and the audit chain are never pruned. The size bound is an
//! alarm, not a stop: the gateway keeps accepting and acknowledging telemetry beyond it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::journal::JournalConfig;
use crate::journal::{self, Upkeep};
use crate::metrics::Metrics;
use crate::sink::SAMPLES_CURSOR;

/// How often the journal size is checked.
const SIZE_EVERY: Duration = Duration::from_secs(30);
/// Pruning runs once per this many size checks (10 minutes), and at start.
const PRUNE_EVERY_CHECKS: u32 = 20;
const DAY_MS: i64 = 86_400_000;

/// Runs until `stop` is cancelled; `sink` says whether a sink's cursor limits pruning.
pub async fn run(
    config: JournalConfig,
    sink: bool,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let mut journal = match open(&config.path).await {
        Ok(j) => j,
        Err(e) => {
            tracing::error!(error = %e, "journal housekeeping cannot open the journal; retention and the size alarm are off");
            return;
        }
    };
    let mut alarmed = false;
    let mut checks = 0;
    loop {
        let prune = checks % PRUNE_EVERY_CHECKS == 0;
        checks += 1;
        let days = config.retention_days as i64;
        let quarantine_days = config.quarantine_retention_days as i64;
        let result = tokio::task::spawn_blocking(move || {
            let round = (|| {
                let mut pruned = Pruned::default();
                if prune && days > 0 {
                    let cursor = if sink {
                        Some(journal.cursor(SAMPLES_CURSOR)?)
                    } else {
                        None
                    };
                    pruned.samples = journal.prune_samples(
                        now_ms() - days.saturating_mul(DAY_MS),
                        days as u64,
                        cursor,
                    )?;
                }
                if prune && quarantine_days > 0 {
                    pruned.quarantined = journal
                        .prune_quarantine(now_ms() - quarantine_days.saturating_mul(DAY_MS))?;
                }
                Ok::<_, journal::JournalError>((pruned, journal.used_bytes()?))
            })();
            (journal, round)
        })
        .await;
        match result {
            Ok((j, Ok((pruned, used)))) => {
                journal = j;
                if pruned.samples > 0 {
                    tracing::info!(
                        samples = pruned.samples,
                        days,
                        "retention pruned raw samples"
                    );
                    metrics.journal_pruned.inc_by(pruned.samples);
                }
                if pruned.quarantined > 0 {
                    tracing::info!(
                        messages = pruned.quarantined,
                        days = quarantine_days,
                        "retention pruned quarantined messages"
                    );
                }
                alarmed = size_alarm(&config, used, alarmed, &metrics);
            }
            // A failing disk makes a round fail; the next round tries again.
            Ok((j, Err(e))) => {
                journal = j;
                tracing::warn!(error = %e, "journal housekeeping failed; retrying later");
            }
            Err(e) => {
                tracing::error!(error = %e, "journal housekeeping died");
                return;
            }
        }
        tokio::select! {
            () = tokio::time::sleep(SIZE_EVERY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// What one housekeeping round deleted.
#[derive(Default)]
struct Pruned {
    samples: u64,
    quarantined: u64,
}

async fn open(path: &Path) -> Result<Upkeep, String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || Upkeep::open(&path))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// Logs and sets the alarm gauge when `used` crosses 80 % of the bound (and at the bound);
/// returns whether the alarm is on.
fn size_alarm(config: &JournalConfig, used: u64, was: bool, metrics: &Metrics) -> bool {
    if config.max_bytes == 0 {
        return false;
    }
    let on = used.saturating_mul(5) >= config.max_bytes.saturating_mul(4);
    if on && used >= config.max_bytes {
        tracing::error!(
            used_bytes = used,
            max_bytes = config.max_bytes,
            "journal is at its size bound: telemetry is still accepted; free disk, shorten \
             journal.retention_days or fix the sink so forwarded samples can be pruned"
        );
    } else if on && !was {
        tracing::warn!(
            used_bytes = used,
            max_bytes = config.max_bytes,
            "journal above 80 % of journal.max_bytes"
        );
    } else if !on && was {
        tracing::info!(
            used_bytes = used,
            "journal back below 80 % of journal.max_bytes"
        );
    }
    metrics.journal_size_alarm.set(i64::from(on));
    on
}
