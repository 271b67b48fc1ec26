//! Prometheus metrics, served as text at `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Label set with one `kind` label.
type Kind = Vec<(&'static str, String)>;

/// `[metrics]`: the Prometheus endpoint.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`/metrics`); empty to disable.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".to_owned(),
        }
    }
}

impl MetricsConfig {
    /// The endpoint's address, `None` when disabled; the error names the key and the fix.
    pub fn addr(&self) -> Result<Option<SocketAddr>, crate::invalid::Invalid> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen.parse().map(Some).map_err(|_| {
            crate::invalid::Invalid::new(
                "metrics.listen",
                format!(
                    "{:?} is not an address like 127.0.0.1:9464 (empty turns the endpoint off)",
                    self.listen
                ),
            )
        })
    }
}

/// Every metric the gateway exports.
pub struct Metrics {
    registry: Registry,
    /// MQTT messages received.
    pub received: Counter,
    /// Telemetry messages journaled.
    pub accepted: Counter,
    /// Messages quarantined, by reason kind.
    pub quarantined: Family<Kind, Counter>,
    /// Telemetry recognised as already journaled.
    pub duplicates: Counter,
    /// Batch commit latency, seconds.
    pub commit_seconds: Histogram,
    /// Messages per committed batch.
    pub batch_size: Histogram,
    /// Journal database size, bytes.
    pub journal_bytes: Gauge,
    /// Sessions open.
    pub sessions_open: Gauge,
    /// Sessions that exceeded their permitted depth.
    pub violations: Counter,
    /// Amendments: batches of late messages for a closed session.
    pub amendments: Counter,
    /// Cartridge events, by kind (`reuse`, `wear_80`, `wear_100`).
    pub cartridge_events: Family<Kind, Counter>,
    /// 1 while connected to the broker.
    pub mqtt_connected: Gauge,
    /// 1 while waiting as a standby for another gateway's journal (`[failover]`).
    pub standby: Gauge,
    /// Connection losses.
    pub mqtt_disconnects: Counter,
    /// Stream messages that expired before the gateway read them (`[nats]`): lost.
    pub stream_expired: Counter,
    /// Policy reloads, by result (`ok`, `rejected`).
    pub policy_reloads: Family<Kind, Counter>,
    /// Points InfluxDB confirmed, by stream.
    pub sink_points_written: Family<Kind, Counter>,
    /// Points InfluxDB refused as invalid (skipped; they stay in the journal).
    pub sink_points_rejected: Counter,
    /// Journal records not yet forwarded, by stream.
    pub sink_backlog: Family<Kind, Gauge>,
    /// Failed sink writes, by kind (`server`, `throttled`, `timeout`, `connect`, `auth`, …).
    pub sink_errors: Family<Kind, Counter>,
    /// 1 while the last sink write succeeded.
    pub sink_up: Gauge,
    /// Raw samples deleted by retention.
    pub journal_pruned: Counter,
    /// 1 while the journal is at or above 80 % of `journal.max_bytes`.
    pub journal_size_alarm: Gauge,
    /// Messages journaled beside a different message with the same `(device_id, seq)`, by
    /// kind (`conflict`, or `reset` when the device time is later than the first's).
    pub conflicting: Family<Kind, Counter>,
    /// Pens whose `seq` went back while their clock went forward.
    pub seq_resets: Counter,
    /// 1 while the journal cannot commit (disk full, I/O error): nothing is acknowledged.
    pub journal_write_failing: Gauge,
    /// Failed batch commits (each retry counts).
    pub journal_commit_failures: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("penwatch");
        let m = Metrics {
            received: Counter::default(),
            accepted: Counter::default(),
            quarantined: Family::default(),
            duplicates: Counter::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 15)),
            journal_bytes: Gauge::default(),
            sessions_open: Gauge::default(),
            violations: Counter::default(),
            amendments: Counter::default(),
            cartridge_events: Family::default(),
            mqtt_connected: Gauge::default(),
            standby: Gauge::default(),
            mqtt_disconnects: Counter::default(),
            stream_expired: Counter::default(),
            policy_reloads: Family::default(),
            sink_points_written: Family::default(),
            sink_points_rejected: Counter::default(),
            sink_backlog: Family::default(),
            sink_errors: Family::default(),
            sink_up: Gauge::default(),
            journal_pruned: Counter::default(),
            journal_size_alarm: Gauge::default(),
            journal_write_failing: Gauge::default(),
            conflicting: Family::default(),
            seq_resets: Counter::default(),
            journal_commit_failures: Counter::default(),
            registry: Registry::default(),
        };
        registry.register(
            "messages_received",
            "MQTT messages received",
            m.received.clone(),
        );
        registry.register(
            "messages_accepted",
            "Telemetry messages journaled",
            m.accepted.clone(),
        );
        registry.register(
            "messages_quarantined",
            "Messages quarantined, by reason",
            m.quarantined.clone(),
        );
        registry.register(
            "messages_duplicate",
            "Telemetry already journaled (same device and seq)",
            m.duplicates.clone(),
        );
        registry.register(
            "batch_commit_seconds",
            "Journal batch commit latency",
            m.commit_seconds.clone(),
        );
        registry.register(
            "batch_messages",
            "Messages per committed batch",
            m.batch_size.clone(),
        );
        registry.register(
            "journal_bytes",
            "Journal database size",
            m.journal_bytes.clone(),
        );
        registry.register("sessions_open", "Sessions open", m.sessions_open.clone());
        registry.register(
            "violations",
            "Sessions that exceeded their permitted depth",
            m.violations.clone(),
        );
        registry.register(
            "amendments",
            "Amendments of closed sessions by late messages (one per session per batch)",
            m.amendments.clone(),
        );
        registry.register(
            "cartridge_events",
            "Cartridge reuse and wear events",
            m.cartridge_events.clone(),
        );
        registry.register(
            "mqtt_connected",
            "1 while connected to the broker",
            m.mqtt_connected.clone(),
        );
        registry.register(
            "standby",
            "1 while waiting as a standby for another gateway's journal",
            m.standby.clone(),
        );
        registry.register(
            "mqtt_disconnects",
            "Broker connection losses",
            m.mqtt_disconnects.clone(),
        );
        registry.register(
            "stream_expired_messages",
            "Stream messages that expired before the gateway read them ([nats]): lost",
            m.stream_expired.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads, by result",
            m.policy_reloads.clone(),
        );
        registry.register(
            "sink_points_written",
            "Points InfluxDB confirmed, by stream",
            m.sink_points_written.clone(),
        );
        registry.register(
            "sink_points_rejected",
            "Points InfluxDB refused as invalid (skipped, kept in the journal)",
            m.sink_points_rejected.clone(),
        );
        registry.register(
            "sink_backlog",
            "Journal records not yet forwarded to InfluxDB, by stream",
            m.sink_backlog.clone(),
        );
        registry.register(
            "sink_errors",
            "Failed InfluxDB writes, by kind",
            m.sink_errors.clone(),
        );
        registry.register(
            "sink_up",
            "1 while the last InfluxDB write succeeded",
            m.sink_up.clone(),
        );
        registry.register(
            "journal_pruned_samples",
            "Raw samples deleted by retention",
            m.journal_pruned.clone(),
        );
        registry.register(
            "journal_size_alarm",
            "1 while the journal is at or above 80 % of journal.max_bytes",
            m.journal_size_alarm.clone(),
        );
        registry.register(
            "messages_conflicting",
            "Messages journaled beside a different message with the same (device_id, seq), by kind",
            m.conflicting.clone(),
        );
        registry.register(
            "seq_resets",
            "Pens whose seq went back while their clock went forward",
            m.seq_resets.clone(),
        );
        registry.register(
            "journal_write_failing",
            "1 while the journal cannot commit (disk full, I/O error); nothing is acknowledged meanwhile",
            m.journal_write_failing.clone(),
        );
        registry.register(
            "journal_commit_failures",
            "Failed batch commits, each retry counted",
            m.journal_commit_failures.clone(),
        );
        Arc::new(Metrics { registry, ..m })
    }

    /// Zeroes the gauges that describe the journal being served, once this gateway has let
    /// go of it (a standby handing it back): they would otherwise show the last values beside
    /// the gateway that now serves it.
    pub fn journal_released(&self) {
        for g in [
            &self.mqtt_connected,
            &self.sessions_open,
            &self.journal_bytes,
            &self.sink_up,
            &self.journal_size_alarm,
            &self.journal_write_failing,
        ] {
            g.set(0);
        }
        self.sink_backlog.clear();
    }

    /// Counts one conflicting message.
    pub fn conflict(&self, kind: &str) {
        self.conflicting
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// Counts one quarantined message.
    pub fn quarantine(&self, kind: &str) {
        self.quarantined
            .get_or_create(&vec![("reason", kind.to_owned())])
            .inc();
    }

    /// Counts one cartridge event.
    pub fn cartridge_event(&self, kind: &str) {
        self.cartridge_events
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// Counts one policy reload.
    pub fn policy_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "rejected" };
        self.policy_reloads
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// Counts points a sink wrote.
    pub fn sink_written(&self, stream: &str, n: u64) {
        self.sink_points_written
            .get_or_create(&vec![("stream", stream.to_owned())])
            .inc_by(n);
    }

    /// Sets a sink stream's backlog.
    pub fn set_sink_backlog(&self, stream: &str, n: u64) {
        self.sink_backlog
            .get_or_create(&vec![("stream", stream.to_owned())])
            .set(n as i64);
    }

    /// Counts one failed sink write.
    pub fn sink_error(&self, kind: &str) {
        self.sink_errors
            .get_or_create(&vec![("kind", kind.to_owned())])
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Serves `/metrics` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let m = metrics.clone();
            async move {
                (
                    [(
                        axum::http::header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    m.render(),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped alert rules (`deploy/prometheus/penwatch-rules.yml`).
    const RULES: &str = include_str!("../../deploy/prometheus/penwatch-rules.yml");

    #[test]
    fn alert_rules_name_only_metrics_the_gateway_exports() {
        let m = Metrics::new();
        // A family is exported once it has a label set.
        m.quarantine("field");
        m.cartridge_event("reuse");
        m.policy_reload(false);
        m.sink_written("samples", 1);
        m.set_sink_backlog("samples", 1);
        m.sink_error("server");
        m.conflict("reset");
        m.commit_seconds.observe(0.01);
        let text = m.render();
        let mut names = Vec::new();
        for line in RULES
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:"))
        {
            let mut rest = line;
            while let Some(i) = rest.find("penwatch_") {
                let name: String = rest[i..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                rest = &rest[i + name.len()..];
                names.push(name);
            }
        }
        assert!(names.len() >= 10, "{names:?}");
        for name in names {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))),
                "{name} is not exported:\n{text}"
            );
        }
    }
}
