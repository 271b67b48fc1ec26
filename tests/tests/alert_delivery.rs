//! Alerts reach people: a violation goes to a signed webhook and to a real Alertmanager, a
//! long excursion is one alert that updates, and a gateway killed with undelivered alerts
//! delivers them all after its restart, each idempotency key standing for one alert revision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use penwatch_proto::v1 as pb;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry};
use penwatch_tests::alerting::{Alertmanager, Received, WebhookReceiver};
use penwatch_tests::{Gateway, Mosquitto};
use prost::Message;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde_json::Value;

const SECRET: &str = "test-webhook-secret-0123456789";
const CLINIC: &str = "c01";

/// Writes a gateway config with `[alerts]` sending to `webhook` (violations only) and, if
/// given, to Alertmanager (everything).
fn config(dir: &Path, webhook: &str, alertmanager: Option<&str>, extra: &str) -> String {
    let path = dir.join("gateway.toml");
    let mut text = format!(
        "[alerts]\npoll_ms = 100\n{extra}\n\
         [[alerts.webhooks]]\nname = \"front-desk\"\nurl = \"{webhook}\"\nsecret = \"{SECRET}\"\n\
         kinds = [\"violation\"]\n"
    );
    if let Some(url) = alertmanager {
        text.push_str(&format!("[alerts.alertmanager]\nurl = \"{url}\"\n"));
    }
    std::fs::write(&path, text).expect("config");
    path.display().to_string()
}

/// A home pen (0.5 mm permitted) publishing over MQTT.
struct Pen {
    mqtt: AsyncClient,
    device: String,
    seq: u64,
    strokes: u64,
    base_ms: i64,
    /// The cartridge of every session (default: one per session).
    cartridge: Option<String>,
}

impl Pen {
    fn new(broker: &Mosquitto, device: &str) -> Self {
        let mut options = MqttOptions::new(format!("pub-{device}"), "127.0.0.1", broker.port());
        options.set_max_packet_size(1024 * 1024, 1024 * 1024);
        let (mqtt, mut eventloop) = AsyncClient::new(options, 1000);
        tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_millis() as i64;
        Self {
            mqtt,
            device: device.into(),
            seq: 0,
            strokes: 0,
            base_ms: now - 3_600_000,
            cartridge: None,
        }
    }

    async fn send(&mut self, session: &str, event: Event, depth_mm: f64) {
        self.seq += 1;
        if event == Event::Sample {
            self.strokes += 100;
        }
        let t = Telemetry {
            device_id: self.device.clone(),
            clinic_id: CLINIC.into(),
            device_class: DeviceClass::Home.into(),
            model: "HomePen".into(),
            firmware: "1.0.0".into(),
            operator_id: "op-c01-1".into(),
            session_id: session.into(),
            cartridge_id: self
                .cartridge
                .clone()
                .unwrap_or_else(|| format!("cart-{}-{session}", self.device)),
            cartridge_model: "N12".into(),
            seq: self.seq,
            timestamp_ms: self.base_ms + self.seq as i64 * 100,
            event: event.into(),
            depth_mm,
            session_strokes: self.strokes,
            cartridge_strokes: self.strokes,
            speed_hz: 120.0,
            battery_pct: 80.0,
            zone: pb::Zone::Cheek.into(),
        };
        self.mqtt
            .publish(
                format!("clinics/{CLINIC}/pens/{}/telemetry", self.device),
                QoS::AtLeastOnce,
                false,
                t.encode_to_vec(),
            )
            .await
            .expect("publish");
    }

    async fn status(&mut self, payload: &str) {
        self.mqtt
            .publish(
                format!("clinics/{CLINIC}/pens/{}/status", self.device),
                QoS::AtLeastOnce,
                true,
                payload.as_bytes().to_vec(),
            )
            .await
            .expect("publish");
    }

    /// A whole session: start, `n` samples at `depth_mm`, end.
    async fn session(&mut self, session: &str, n: usize, depth_mm: f64) {
        self.send(session, Event::SessionStart, 0.0).await;
        for _ in 0..n {
            self.send(session, Event::Sample, depth_mm).await;
        }
        self.send(session, Event::SessionEnd, 0.0).await;
    }
}

/// Waits up to 30 s for `done`, naming `what` and showing the gateway's log if it never is.
async fn wait_for(gateway: &Gateway, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; gateway log:\n{}",
            gateway.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The violation deliveries the receiver got.
fn violations(webhook: &WebhookReceiver) -> Vec<Received> {
    webhook
        .received()
        .into_iter()
        .filter(|r| r.json()["kind"] == "violation")
        .collect()
}

fn signed_correctly(r: &Received) -> bool {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).expect("key");
    mac.update(&r.body);
    let expected = format!("sha256={}", hex_lower(&mac.finalize().into_bytes()));
    r.header("x-penwatch-signature") == expected
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn am_alert(am: &Alertmanager, kind: &str, device: &str) -> Option<Value> {
    am.alerts()
        .into_iter()
        .find(|a| a["labels"]["kind"] == kind && a["labels"]["device"] == device)
}

fn am_violation(am: &Alertmanager, device: &str) -> Option<Value> {
    am_alert(am, "violation", device)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_violation_reaches_a_signed_webhook_and_alertmanager_and_resolves_when_its_session_ends()
{
    let broker = Mosquitto::start().expect("broker");
    let am = Alertmanager::start().expect("alertmanager");
    let webhook = WebhookReceiver::start().expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let config = config(dir.path(), &webhook.url(), Some(&am.url()), "");
    let gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &config]).expect("gateway");
    let mut pen = Pen::new(&broker, "pen-home-1");

    pen.send("s1", Event::SessionStart, 0.0).await;
    for _ in 0..5 {
        pen.send("s1", Event::Sample, 0.8).await;
    }
    wait_for(&gateway, "a firing violation at the webhook", || {
        violations(&webhook)
            .iter()
            .any(|r| r.json()["status"] == "firing")
    })
    .await;
    let first = violations(&webhook).remove(0);
    let body = first.json();
    assert!(signed_correctly(&first), "signature: {:?}", first.headers);
    assert_eq!(first.header("idempotency-key"), body["idempotency_key"]);
    assert_eq!(first.header("content-type"), "application/json");
    assert_eq!(body["clinic_id"], CLINIC);
    assert_eq!(body["device_id"], "pen-home-1");
    assert_eq!(body["session_id"], "s1");
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["key"], "violation/pen-home-1/s1");
    assert_eq!(body["details"]["limit_mm"], 0.5);
    assert_eq!(body["details"]["final"], false);
    assert!(body["ends_at"].is_null());

    wait_for(&gateway, "the violation in Alertmanager", || {
        am_violation(&am, "pen-home-1").is_some()
    })
    .await;
    let in_am = am_violation(&am, "pen-home-1").expect("alert");
    assert_eq!(in_am["labels"]["clinic"], CLINIC);
    assert_eq!(in_am["labels"]["severity"], "critical");
    assert_eq!(in_am["labels"]["session"], "s1");
    assert_eq!(in_am["status"]["state"], "active");

    pen.send("s1", Event::SessionEnd, 0.0).await;
    wait_for(&gateway, "the final violation at the webhook", || {
        violations(&webhook)
            .iter()
            .any(|r| r.json()["status"] == "resolved")
    })
    .await;
    let last = violations(&webhook).pop().expect("final").json();
    assert_eq!(last["status"], "resolved");
    assert_eq!(last["key"], body["key"]);
    assert_eq!(last["details"]["final"], true);
    assert_eq!(last["details"]["peak_depth_mm"], 0.8);
    assert_eq!(last["details"]["samples_above"], 5);
    assert!(last["ends_at"].is_string());
    wait_for(&gateway, "the violation resolved in Alertmanager", || {
        am_violation(&am, "pen-home-1").is_none()
    })
    .await;
    assert!(
        violations(&webhook).iter().all(signed_correctly),
        "every delivery is signed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_excursion_is_one_alert_that_updates_not_one_per_sample() {
    let broker = Mosquitto::start().expect("broker");
    let webhook = WebhookReceiver::start().expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let config = config(dir.path(), &webhook.url(), None, "update_interval_s = 1");
    let gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &config]).expect("gateway");
    let mut pen = Pen::new(&broker, "pen-home-2");

    pen.send("long", Event::SessionStart, 0.0).await;
    for _ in 0..300 {
        pen.send("long", Event::Sample, 0.9).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    pen.send("long", Event::SessionEnd, 0.0).await;
    wait_for(&gateway, "the final violation", || {
        violations(&webhook)
            .iter()
            .any(|r| r.json()["status"] == "resolved")
    })
    .await;
    let got: Vec<Value> = violations(&webhook).iter().map(Received::json).collect();
    let keys: BTreeSet<&str> = got.iter().filter_map(|b| b["key"].as_str()).collect();
    assert_eq!(keys.len(), 1, "one alert: {keys:?}");
    assert!(
        (2..=15).contains(&got.len()),
        "300 samples above the limit over about 3 s are a handful of deliveries, not hundreds: {}",
        got.len()
    );
    let revisions: Vec<i64> = got.iter().filter_map(|b| b["revision"].as_i64()).collect();
    assert!(
        revisions.windows(2).all(|w| w[0] < w[1]),
        "each delivery is a newer revision: {revisions:?}"
    );
    let last = got.last().expect("final");
    assert_eq!(last["status"], "resolved");
    assert_eq!(last["details"]["samples_above"], 300);
    assert_eq!(last["details"]["strokes_above"], 300 * 100);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_killed_mid_delivery_delivers_every_alert_after_restart_under_the_same_keys() {
    let broker = Mosquitto::start().expect("broker");
    let webhook = WebhookReceiver::start().expect("receiver");
    // Records each request at once but answers only after a minute: the gateway is killed
    // while it waits.
    webhook.set_delay(Duration::from_secs(60));
    let dir = tempfile::tempdir().expect("dir");
    let config = config(dir.path(), &webhook.url(), None, "timeout_s = 120");
    let mut gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &config]).expect("gateway");
    // The broker queues the sessions while the gateway is away; it commits them at its start.
    // (A moment first: the gateway takes SIGTERM once its subscription and handlers are up.)
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        gateway.terminate().expect("stop"),
        "clean stop: {}",
        gateway.log()
    );
    let pens = ["pen-k1", "pen-k2", "pen-k3"];
    for device in pens {
        let mut pen = Pen::new(&broker, device);
        pen.session("s", 10, 1.2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    gateway.restart().expect("start");
    wait_for(&gateway, "a delivery in flight", || {
        !webhook.received().is_empty()
    })
    .await;
    let in_flight = webhook.received()[0].json();
    gateway.kill();

    webhook.set_delay(Duration::ZERO);
    gateway.restart().expect("restart after kill -9");
    wait_for(&gateway, "every pen's final violation", || {
        let finals: BTreeSet<String> = violations(&webhook)
            .iter()
            .map(Received::json)
            .filter(|b| b["status"] == "resolved")
            .filter_map(|b| b["device_id"].as_str().map(str::to_owned))
            .collect();
        finals.len() == pens.len()
    })
    .await;

    // The receiver keeps the first body of each idempotency key and drops the rest.
    let mut by_key: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    for r in violations(&webhook) {
        assert!(signed_correctly(&r));
        by_key
            .entry(r.header("idempotency-key").to_owned())
            .or_default()
            .push(r.body.clone());
    }
    for (key, bodies) in &by_key {
        assert!(
            bodies.windows(2).all(|w| w[0] == w[1]),
            "a key stands for one content: {key}"
        );
    }
    let in_flight_key = in_flight["idempotency_key"].as_str().expect("key");
    assert_eq!(
        by_key.get(in_flight_key).map(Vec::len),
        Some(2),
        "the delivery cut by the kill is sent again under the same key (and dropped as a \
         duplicate by the receiver): {by_key:?}"
    );
    let alerts: BTreeSet<String> = by_key
        .values()
        .map(|b| serde_json::from_slice::<Value>(&b[0]).expect("json")["key"].to_string())
        .collect();
    assert_eq!(alerts.len(), pens.len(), "one alert per session");
    assert_eq!(
        by_key.len(),
        pens.len(),
        "after deduplication each alert was received once, in its final revision"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reused_cartridge_an_unknown_operator_and_a_pen_offline_mid_session_are_routed_by_clinic_and_kind()
 {
    let broker = Mosquitto::start().expect("broker");
    let am = Alertmanager::start().expect("alertmanager");
    let other_clinic = WebhookReceiver::start().expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(
        &path,
        format!(
            "[alerts]\npoll_ms = 100\n\
             [[alerts.webhooks]]\nname = \"c02-only\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\nclinics = [\"c02\"]\n\
             [alerts.alertmanager]\nurl = \"{}\"\nrefresh_s = 1\nkinds = [\"cartridge_reused\", \"pen_offline\", \"unknown_operator\"]\n",
            other_clinic.url(),
            am.url()
        ),
    )
    .expect("config");
    let config = path.display().to_string();
    let gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &config]).expect("gateway");
    let mut pen = Pen::new(&broker, "pen-home-3");
    pen.cartridge = Some("cart-shared".into());
    pen.status("online").await;
    pen.session("a", 3, 0.3).await;
    pen.send("b", Event::SessionStart, 0.0).await;
    pen.send("b", Event::Sample, 0.3).await;
    pen.status("offline").await;

    wait_for(&gateway, "all three kinds in Alertmanager", || {
        ["cartridge_reused", "pen_offline", "unknown_operator"]
            .iter()
            .all(|k| am_alert(&am, k, "pen-home-3").is_some())
    })
    .await;
    let offline = am_alert(&am, "pen_offline", "pen-home-3").expect("offline");
    assert_eq!(offline["labels"]["severity"], "critical");
    assert_eq!(offline["labels"]["clinic"], CLINIC);
    assert_eq!(offline["labels"]["session"], "b");
    assert!(
        am_alert(&am, "violation", "pen-home-3").is_none(),
        "no violation at 0.3 mm, and none routed here anyway"
    );
    // A lasting state is sent again, so Alertmanager keeps it active past its resolve_timeout.
    let updated = offline["updatedAt"].clone();
    wait_for(&gateway, "pen_offline refreshed in Alertmanager", || {
        am_alert(&am, "pen_offline", "pen-home-3").is_some_and(|a| a["updatedAt"] != updated)
    })
    .await;

    pen.status("online").await;
    wait_for(
        &gateway,
        "pen_offline resolved when the pen is back",
        || am_alert(&am, "pen_offline", "pen-home-3").is_none(),
    )
    .await;
    assert!(
        other_clinic.received().is_empty(),
        "a webhook for clinic c02 takes nothing from c01"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pen_silent_during_its_session_raises_an_alert_that_its_next_message_resolves() {
    let broker = Mosquitto::start().expect("broker");
    let am = Alertmanager::start().expect("alertmanager");
    let webhook = WebhookReceiver::start().expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let config = config(
        dir.path(),
        &webhook.url(),
        Some(&am.url()),
        "silent_after_s = 1",
    );
    let gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &config]).expect("gateway");
    let mut pen = Pen::new(&broker, "pen-home-4");
    pen.send("quiet", Event::SessionStart, 0.0).await;
    pen.send("quiet", Event::Sample, 0.3).await;

    wait_for(&gateway, "pen_silent in Alertmanager", || {
        am_alert(&am, "pen_silent", "pen-home-4").is_some()
    })
    .await;
    let silent = am_alert(&am, "pen_silent", "pen-home-4").expect("silent");
    assert_eq!(silent["labels"]["session"], "quiet");
    assert_eq!(silent["labels"]["severity"], "warning");

    pen.send("quiet", Event::Sample, 0.3).await;
    wait_for(&gateway, "pen_silent resolved by the next message", || {
        am_alert(&am, "pen_silent", "pen-home-4").is_none()
    })
    .await;
    assert!(
        violations(&webhook).is_empty(),
        "the webhook takes violations only"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pen_reusing_its_seqs_with_other_content_is_one_seq_conflict_alert_that_counts() {
    let broker = Mosquitto::start().expect("broker");
    let am = Alertmanager::start().expect("alertmanager");
    let webhook = WebhookReceiver::start().expect("receiver");
    let dir = tempfile::tempdir().expect("dir");
    let config = config(
        dir.path(),
        &webhook.url(),
        Some(&am.url()),
        "update_interval_s = 0",
    );
    let gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &config]).expect("gateway");
    let mut pen = Pen::new(&broker, "pen-home-5");
    pen.send("s", Event::SessionStart, 0.0).await;
    pen.send("s", Event::Sample, 0.3).await;
    pen.send("s", Event::Sample, 0.3).await;
    // Two more messages on the journaled seqs 2 and 3, with other depths.
    pen.seq = 1;
    pen.send("s", Event::Sample, 0.2).await;
    pen.send("s", Event::Sample, 0.2).await;

    wait_for(&gateway, "one seq_conflict alert counting both", || {
        am_alert(&am, "seq_conflict", "pen-home-5").is_some_and(|a| {
            a["annotations"]["summary"]
                .as_str()
                .is_some_and(|s| s.contains(": 2 messages reusing a seq"))
        })
    })
    .await;
    let conflicts: Vec<Value> = am
        .alerts()
        .into_iter()
        .filter(|a| a["labels"]["kind"] == "seq_conflict")
        .collect();
    assert_eq!(conflicts.len(), 1, "one alert per pen: {conflicts:?}");
    assert_eq!(
        conflicts[0]["annotations"]["key"],
        "seq_conflict/pen-home-5"
    );
}
