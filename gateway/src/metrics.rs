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
    /// Cartridge events, by kind (`reuse`, `wear_80`, `wear_100`).
    pub cartridge_events: Family<Kind, Counter>,
    /// 1 while connected to the broker.
    pub mqtt_connected: Gauge,
    /// Connection losses.
    pub mqtt_disconnects: Counter,
    /// Policy reloads, by result (`ok`, `rejected`).
    pub policy_reloads: Family<Kind, Counter>,
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
            cartridge_events: Family::default(),
            mqtt_connected: Gauge::default(),
            mqtt_disconnects: Counter::default(),
            policy_reloads: Family::default(),
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
            "mqtt_disconnects",
            "Broker connection losses",
            m.mqtt_disconnects.clone(),
        );
        registry.register(
            "policy_reloads",
            "Policy reloads, by result",
            m.policy_reloads.clone(),
        );
        Arc::new(Metrics { registry, ..m })
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
