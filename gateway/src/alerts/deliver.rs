//! The delivery task: reads pending alerts from the outbox, decides per target
//! ([`super::routing`]), sends with retries and backoff, records each delivery, and settles
//! an alert once every target has its revision.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use tokio_util::sync::CancellationToken;

use super::SendError;
use super::alertmanager::Alertmanager;
use super::config::AlertsConfig;
use super::health::{Health, Snapshot, conditions};
use super::routing::{Decision, Filter, decide};
use super::types::{Kind, OutboxAlert};
use super::webhook::Webhook;
use crate::clock::now_ms;
use crate::invalid::Invalid;
use crate::journal::{self, Outbox};
use crate::metrics::Metrics;
use crate::sink;

/// Why the delivery task could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A webhook's secret is missing.
    #[error(transparent)]
    Config(#[from] Invalid),
    /// The HTTP client could not be built (TLS setup).
    #[error("alert delivery's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// How often delivered alerts older than `alerts.keep_days` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// Most pending alerts read per round.
const ROUND: usize = 500;

/// Where a target's alerts go.
#[derive(Debug)]
enum Sender {
    Webhook(Webhook),
    Alertmanager(Alertmanager),
}

/// A configured target.
#[derive(Debug)]
struct Target {
    /// `webhook:NAME` or `alertmanager`: the delivery record's name.
    id: String,
    filter: Filter,
    sender: Sender,
    /// Left alone until then after its deliveries kept failing.
    paused_until: Option<Instant>,
}

/// The alert delivery task.
pub struct Deliverer {
    path: PathBuf,
    metrics: Arc<Metrics>,
    sink: bool,
    health: Health,
    health_after_ms: i64,
    backlog_max: i64,
    targets: Vec<Target>,
    update_interval_ms: i64,
    poll: Duration,
    backoff: ExponentialBuilder,
    pause: Duration,
    keep_ms: i64,
    /// How often firing state alerts are sent to Alertmanager again.
    refresh: Duration,
}

impl Deliverer {
    /// The task for a validated `[alerts]` and the journal at `path`; `sink` says whether an
    /// InfluxDB sink runs (its health is then watched).
    pub fn new(
        c: &AlertsConfig,
        path: &Path,
        metrics: Arc<Metrics>,
        sink: bool,
    ) -> Result<Self, SetupError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(c.timeout_s))
            .build()?;
        let mut targets = Vec::new();
        for (i, w) in c.webhooks.iter().enumerate() {
            targets.push(Target {
                id: format!("webhook:{}", w.name),
                filter: Filter::new(&w.route),
                sender: Sender::Webhook(Webhook::new(
                    &w.url,
                    &c.webhook_secret(i)?,
                    client.clone(),
                )),
                paused_until: None,
            });
        }
        if let Some(am) = &c.alertmanager {
            targets.push(Target {
                id: "alertmanager".into(),
                filter: Filter::new(&am.route),
                sender: Sender::Alertmanager(Alertmanager::new(&am.url, client.clone())),
                paused_until: None,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            metrics,
            sink,
            health: Health::default(),
            health_after_ms: (c.health_after_s * 1000) as i64,
            backlog_max: c.sink_backlog_max,
            targets,
            update_interval_ms: (c.update_interval_s * 1000) as i64,
            poll: Duration::from_millis(c.poll_ms),
            backoff: ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(c.retry_max_s))
                .with_max_times(c.attempts.saturating_sub(1))
                .with_jitter(),
            pause: Duration::from_secs(c.retry_max_s),
            keep_ms: (c.keep_days * 86_400_000) as i64,
            refresh: Duration::from_secs(c.alertmanager.as_ref().map_or(60, |am| am.refresh_s)),
        })
    }

    /// Delivers until `stop`; what is not delivered by then goes after the next start.
    pub async fn run(mut self, stop: CancellationToken) {
        let mut outbox = None;
        let mut last_prune: Option<Instant> = None;
        let mut last_refresh = Instant::now();
        while !stop.is_cancelled() {
            if outbox.is_none() {
                match blocking(|| Outbox::open(&self.path)) {
                    Ok(o) => outbox = Some(o),
                    Err(e) => {
                        tracing::error!(error = %e, "alert delivery cannot open the journal; retrying")
                    }
                }
            }
            if let Some(o) = outbox
                .as_mut()
                .filter(|_| last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY))
            {
                last_prune = Some(Instant::now());
                match blocking(|| o.prune(now_ms() - self.keep_ms)) {
                    Ok(n) if n > 0 => {
                        tracing::info!(alerts = n, "delivered alerts pruned from the journal")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "pruning delivered alerts failed; trying again later")
                    }
                }
            }
            let delivered = match outbox.as_mut() {
                Some(o) => tokio::select! {
                    r = self.round(o) => r,
                    () = stop.cancelled() => return,
                },
                None => Ok(0),
            };
            if let Some(o) = outbox
                .as_mut()
                .filter(|_| last_refresh.elapsed() >= self.refresh)
            {
                last_refresh = Instant::now();
                tokio::select! {
                    () = self.refresh_alertmanager(o) => {}
                    () = stop.cancelled() => return,
                }
            }
            let busy = match delivered {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "alert delivery could not read or mark the outbox; retrying");
                    false
                }
            };
            if !busy {
                tokio::select! {
                    () = tokio::time::sleep(self.poll) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }

    /// One round: every target gets what is due of the pending alerts; returns how many
    /// deliveries were made.
    async fn round(&mut self, outbox: &mut Outbox) -> journal::Result<usize> {
        let now = now_ms();
        self.observe_health(now);
        let mut pending = blocking(|| outbox.pending(ROUND))?;
        let journaled = pending.len();
        pending.extend_from_slice(self.health.pending());
        if pending.is_empty() {
            return Ok(0);
        }
        let mut unsettled = vec![false; pending.len()];
        let mut sent = 0;
        for target in &mut self.targets {
            let paused = target.paused_until.is_some_and(|t| Instant::now() < t);
            let mut due = Vec::new();
            for (i, a) in pending.iter().enumerate() {
                let last = if i < journaled {
                    outbox.delivered(&target.id, &a.alert.key)?
                } else {
                    self.health.delivered(&target.id, &a.alert.key)
                };
                match decide(&target.filter, a, last, now, self.update_interval_ms) {
                    Decision::Done => {}
                    Decision::Later => unsettled[i] = true,
                    Decision::Send if paused => unsettled[i] = true,
                    Decision::Send => due.push(i),
                }
            }
            if due.is_empty() {
                continue;
            }
            let alerts: Vec<&OutboxAlert> = due.iter().map(|&i| &pending[i]).collect();
            let (ok, failed) = send(&target.sender, &alerts, self.backoff).await;
            let (from_journal, from_health): (Vec<_>, Vec<_>) =
                due[..ok].iter().partition(|&&i| i < journaled);
            let at = now_ms();
            let pick = |ix: Vec<&usize>| ix.into_iter().map(|&i| &pending[i]).collect::<Vec<_>>();
            self.health
                .mark_delivered(&target.id, &pick(from_health), at);
            let from_journal = pick(from_journal);
            blocking(|| outbox.mark_delivered(&target.id, &from_journal, at))?;
            sent += ok;
            for &i in &due[ok..] {
                unsettled[i] = true;
            }
            target.paused_until = match failed {
                Some(e) => {
                    tracing::error!(
                        target = %target.id,
                        error = %e,
                        undelivered = due.len() - ok,
                        pause_s = self.pause.as_secs(),
                        "alert delivery failed; kept in the outbox, trying again after the pause"
                    );
                    Some(Instant::now() + self.pause)
                }
                None => None,
            };
        }
        let settled = |range: std::ops::Range<usize>| {
            range
                .filter(|&i| !unsettled[i])
                .map(|i| &pending[i])
                .collect::<Vec<_>>()
        };
        self.health.settle(&settled(journaled..pending.len()));
        let settled = settled(0..journaled);
        blocking(|| outbox.settle(&settled))?;
        Ok(sent)
    }

    /// Sends every firing state alert Alertmanager takes again, once (the next refresh
    /// retries), so Alertmanager keeps it active until the gateway resolves it.
    async fn refresh_alertmanager(&self, outbox: &mut Outbox) {
        let Some(target) = self
            .targets
            .iter()
            .find(|t| matches!(t.sender, Sender::Alertmanager(_)))
        else {
            return;
        };
        let Sender::Alertmanager(am) = &target.sender else {
            return;
        };
        let kinds: Vec<Kind> = Kind::ALL.into_iter().filter(|k| k.is_state()).collect();
        let mut firing = match blocking(|| outbox.firing(&kinds)) {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(error = %e, "reading firing alerts failed; refreshing later");
                return;
            }
        };
        firing.extend(
            self.health
                .pending()
                .iter()
                .filter(|a| a.alert.ends_ms.is_none())
                .cloned(),
        );
        let alerts: Vec<&OutboxAlert> = firing.iter().filter(|a| target.filter.takes(a)).collect();
        if alerts.is_empty() {
            return;
        }
        if let Err(e) = am.post(&alerts).await {
            tracing::warn!(error = %e, alerts = alerts.len(), "refreshing firing alerts in Alertmanager failed; trying again later");
        }
    }

    /// Folds the gateway's health, as its metrics say now, into the health alerts.
    fn observe_health(&mut self, now: i64) {
        let m = &self.metrics;
        let snapshot = Snapshot {
            sink: self.sink,
            sink_up: m.sink_up.get() == 1,
            backlog: if self.sink { sink::backlog(m) } else { 0 },
            journal_write_failing: m.journal_write_failing.get() == 1,
            journal_size_alarm: m.journal_size_alarm.get() == 1,
        };
        self.health.observe(
            &conditions(snapshot, self.backlog_max),
            self.health_after_ms,
            now,
        );
    }
}

/// Runs a journal call, which may wait up to seconds for the committer's write lock, without
/// holding up the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// Sends `alerts` in order with retries; returns how many went through, and the error that
/// stopped the rest.
async fn send(
    sender: &Sender,
    alerts: &[&OutboxAlert],
    backoff: ExponentialBuilder,
) -> (usize, Option<SendError>) {
    let retried = |e: &SendError, wait: Duration| {
        tracing::warn!(error = %e, retry_in_ms = wait.as_millis() as u64, "alert delivery failed; retrying");
    };
    match sender {
        Sender::Webhook(w) => {
            for (n, a) in alerts.iter().enumerate() {
                let result = (|| w.post(a))
                    .retry(backoff)
                    .when(SendError::retryable)
                    .notify(retried)
                    .await;
                if let Err(e) = result {
                    return (n, Some(e));
                }
            }
            (alerts.len(), None)
        }
        Sender::Alertmanager(am) => {
            match (|| am.post(alerts))
                .retry(backoff)
                .when(SendError::retryable)
                .notify(retried)
                .await
            {
                Ok(()) => (alerts.len(), None),
                Err(e) => (0, Some(e)),
            }
        }
    }
}
