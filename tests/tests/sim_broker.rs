//! The firmware simulator against a real mosquitto: a subscriber that connected first must
//! receive exactly what the simulator's ground truth says was published.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use penwatch_gateway::policy::{Policy, SampleContext};
use penwatch_proto::topic::{self, TopicKind};
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{GroundTruth, Scenario, SimConfig};
use penwatch_tests::Mosquitto;
use prost::Message;
use rumqttc::{AsyncClient, Event as MqttEvent, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

/// Anything larger is not telemetry (the simulator's oversized payloads are 128 KiB).
const MAX_PAYLOAD: usize = 64 * 1024;

/// One message the subscriber received.
struct Received {
    topic: String,
    payload: Vec<u8>,
}

/// A QoS 1 subscriber to every pen's telemetry and status, subscribed before it returns.
async fn subscribe(broker: &Mosquitto) -> mpsc::UnboundedReceiver<Received> {
    let mut opts = MqttOptions::new("sim-broker-test", "127.0.0.1", broker.port());
    opts.set_max_packet_size(2 * 1024 * 1024, 64 * 1024)
        .set_keep_alive(Duration::from_secs(30));
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    client
        .subscribe(topic::ALL_TELEMETRY, QoS::AtLeastOnce)
        .await
        .expect("subscribe telemetry");
    client
        .subscribe(topic::ALL_STATUS, QoS::AtLeastOnce)
        .await
        .expect("subscribe status");
    let mut subacks = 0;
    while subacks < 2 {
        let event = eventloop.poll().await.expect("subscriber connects");
        if let MqttEvent::Incoming(Packet::SubAck(_)) = event {
            subacks += 1;
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let _client = client;
        loop {
            match eventloop.poll().await {
                Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                    let msg = Received {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    };
                    if tx.send(msg).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => panic!("subscriber connection failed: {e}"),
            }
        }
    });
    rx
}

/// Collects messages until `telemetry` telemetry messages arrived, then a short grace period
/// to catch any extra.
async fn collect(rx: &mut mpsc::UnboundedReceiver<Received>, telemetry: u64) -> Vec<Received> {
    let mut all = Vec::new();
    let mut seen = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while seen < telemetry {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => {
                if m.topic.ends_with("/telemetry") {
                    seen += 1;
                }
                all.push(m);
            }
            _ => panic!("only {seen} of {telemetry} telemetry messages arrived"),
        }
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await {
        all.push(m);
    }
    all
}

/// A valid message of the contract on its own topic, or `None`.
fn decode_valid(m: &Received) -> Option<Telemetry> {
    let t = topic::parse(&m.topic).ok()?;
    if t.kind != TopicKind::Telemetry || m.payload.len() > MAX_PAYLOAD {
        return None;
    }
    let decoded = if m.payload.first() == Some(&b'{') {
        penwatch_proto::json::decode(&m.payload).ok()?
    } else {
        Telemetry::decode(m.payload.as_slice()).ok()?
    };
    let class_ok = matches!(
        DeviceClass::try_from(decoded.device_class),
        Ok(DeviceClass::Home | DeviceClass::Salon | DeviceClass::Medical)
    );
    let ok = decoded.device_id == t.device_id
        && decoded.clinic_id == t.clinic_id
        && class_ok
        && (0.0..=3.0).contains(&decoded.depth_mm);
    ok.then_some(decoded)
}

/// What the subscriber saw, checked against the ground truth's counters.
struct Seen {
    /// Every valid message by (device, seq), with how many copies arrived.
    valid: BTreeMap<(String, u64), (Telemetry, u64)>,
    /// Status payloads per device, in arrival order.
    status: BTreeMap<String, Vec<String>>,
}

fn check_counts(truth: &GroundTruth, received: &[Received]) -> Seen {
    let mut valid: BTreeMap<(String, u64), (Telemetry, u64)> = BTreeMap::new();
    let mut status: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut invalid = 0;
    let mut telemetry = 0;
    for m in received {
        let t = topic::parse(&m.topic).expect("pen topic");
        if t.kind == TopicKind::Status {
            let text = String::from_utf8_lossy(&m.payload).into_owned();
            status.entry(t.device_id.to_owned()).or_default().push(text);
            continue;
        }
        telemetry += 1;
        match decode_valid(m) {
            Some(msg) => {
                let entry = valid
                    .entry((msg.device_id.clone(), msg.seq))
                    .or_insert((msg.clone(), 0));
                assert_eq!(
                    entry.0, msg,
                    "copies of ({}, {}) are identical",
                    msg.device_id, msg.seq
                );
                entry.1 += 1;
            }
            None => invalid += 1,
        }
    }
    assert_eq!(
        telemetry, truth.telemetry_published,
        "every publish arrived once"
    );
    assert_eq!(
        valid.len() as u64,
        truth.telemetry_valid,
        "unique valid (device, seq)"
    );
    assert_eq!(
        invalid,
        truth.malformed_total(),
        "malformed messages are invalid"
    );
    let extra: u64 = valid.values().map(|(_, n)| n - 1).sum();
    assert_eq!(extra, truth.duplicates_sent, "duplicate copies");
    for device in &truth.devices {
        let seqs: Vec<u64> = valid
            .keys()
            .filter(|(d, _)| *d == device.device_id)
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(
            seqs,
            (1..=device.last_seq).collect::<Vec<_>>(),
            "{} gap-free",
            device.device_id
        );
        assert_eq!(device.telemetry_valid, device.last_seq);
        let statuses = status.get(&device.device_id).cloned().unwrap_or_default();
        let mut expected = vec!["online".to_owned()];
        for _ in 0..device.connection_drops {
            expected.extend(["offline".to_owned(), "online".to_owned()]);
        }
        expected.push("offline".to_owned());
        assert_eq!(
            statuses, expected,
            "{} status (last wills included)",
            device.device_id
        );
    }
    Seen { valid, status }
}

/// Every session's samples as received agree with its ground truth.
fn check_sessions(truth: &GroundTruth, seen: &Seen) {
    let mut by_session: BTreeMap<&str, Vec<&Telemetry>> = BTreeMap::new();
    for (msg, _) in seen.valid.values() {
        if msg.event == i32::from(Event::Sample) && !msg.session_id.is_empty() {
            by_session
                .entry(msg.session_id.as_str())
                .or_default()
                .push(msg);
        }
    }
    for s in &truth.sessions {
        let samples = by_session
            .get(s.session_id.as_str())
            .cloned()
            .unwrap_or_default();
        assert_eq!(samples.len() as u64, s.samples, "{} samples", s.session_id);
        let max = samples.iter().map(|m| m.depth_mm).fold(0.0, f64::max);
        assert_eq!(max, s.max_depth_mm, "{} max depth", s.session_id);
        let strokes = samples.iter().map(|m| m.session_strokes).max().unwrap_or(0);
        assert_eq!(strokes, s.strokes, "{} strokes", s.session_id);
        if s.exceeded {
            let above = samples
                .iter()
                .filter(|m| m.depth_mm > s.permitted_mm)
                .count() as u64;
            assert!(
                above >= 1,
                "{} exceeded: samples above {} mm",
                s.session_id,
                s.permitted_mm
            );
            assert!(above >= s.samples_above, "{} samples above", s.session_id);
        }
    }
}

/// The gateway's own policy code, loaded with `--print-policy`'s file, reaches the same
/// verdict on every session from the samples the subscriber received.
fn check_gateway_policy_agrees(truth: &GroundTruth, seen: &Seen) {
    let fleet = Fleet::generate(truth.seed, truth.clinics, truth.pens / truth.clinics);
    let policy = Policy::parse(&penwatch_sim::policy::policy_toml(&fleet)).expect("policy parses");
    assert_eq!(policy.devices().len() as u32, truth.pens);
    for s in &truth.sessions {
        let judged: Vec<_> = seen
            .valid
            .values()
            .map(|(m, _)| m)
            .filter(|m| m.session_id == s.session_id && m.event == i32::from(Event::Sample))
            .map(|m| {
                policy.judge(&SampleContext {
                    clinic_id: &m.clinic_id,
                    device_id: &m.device_id,
                    claimed_class: DeviceClass::try_from(m.device_class).expect("class"),
                    operator_id: &m.operator_id,
                    zone: Zone::try_from(m.zone)
                        .ok()
                        .filter(|z| *z != Zone::Unspecified),
                    depth_mm: m.depth_mm,
                })
            })
            .collect();
        let first = judged.iter().find(|j| j.exceeded);
        assert_eq!(first.is_some(), s.exceeded, "{} exceeded", s.session_id);
        if let Some(j) = first {
            assert_eq!(j.permitted_mm, s.permitted_mm, "{} limit", s.session_id);
            let rule = serde_json::to_value(s.binding_rule).expect("rule serializes");
            assert_eq!(rule, j.binding.as_str(), "{} binding rule", s.session_id);
        }
        assert_eq!(
            judged.iter().filter(|j| j.exceeded).count() as u64,
            s.samples_above,
            "{} samples above",
            s.session_id
        );
        if let Some(j) = judged.first() {
            assert_eq!(
                j.unknown_operator, s.unknown_operator,
                "{} unknown operator",
                s.session_id
            );
        }
    }
}

fn config(broker: &Mosquitto, scenarios: Vec<Scenario>) -> SimConfig {
    SimConfig {
        broker: broker.url().parse().expect("broker URL"),
        clinics: 2,
        pens_per_clinic: 3,
        seed: 20_261_123,
        scenarios,
        speed: 2000.0,
        sessions_per_pen: Some(2),
        ..SimConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriber_gets_exactly_the_ground_truth() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let mut rx = subscribe(&broker).await;
    let cfg = config(
        &broker,
        vec![
            Scenario::Normal,
            Scenario::OverDepth,
            Scenario::Duplicates,
            Scenario::Malformed,
        ],
    );
    let truth = penwatch_sim::run(cfg, std::future::pending::<()>())
        .await
        .expect("sim runs");
    assert_eq!((truth.clinics, truth.pens), (2, 6));
    assert_eq!(truth.sessions.len(), 12, "2 sessions per pen");
    assert!(truth.sessions.iter().all(|s| s.ended));
    assert!(truth.duplicates_sent > 0, "duplicates were sent");
    assert!(truth.malformed_total() > 0, "malformed messages were sent");
    assert!(truth.exceeded().count() >= 1, "an over-depth session");
    let received = collect(&mut rx, truth.telemetry_published).await;
    let seen = check_counts(&truth, &received);
    check_sessions(&truth, &seen);
    check_gateway_policy_agrees(&truth, &seen);
    let kinds: BTreeSet<&str> = truth.malformed.keys().map(String::as_str).collect();
    assert!(kinds.len() >= 4, "several malformed kinds: {kinds:?}");
    assert_eq!(seen.status.len(), 6, "every pen published its status");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_pens_with_offline_buffer_replay_in_order() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let mut rx = subscribe(&broker).await;
    let cfg = SimConfig {
        json: true,
        clinics: 1,
        sessions_per_pen: Some(1),
        ..config(
            &broker,
            vec![
                Scenario::Normal,
                Scenario::OfflineBuffer,
                Scenario::CartridgeReuse,
            ],
        )
    };
    let truth = penwatch_sim::run(cfg, std::future::pending::<()>())
        .await
        .expect("sim runs");
    assert_eq!(truth.encoding, "json");
    assert!(truth.connection_drops >= 1, "a pen lost its network");
    let received = collect(&mut rx, truth.telemetry_published).await;
    assert!(
        received
            .iter()
            .filter(|m| m.topic.ends_with("/telemetry"))
            .all(|m| m.payload.starts_with(b"{")),
        "JSON payloads"
    );
    let seen = check_counts(&truth, &received);
    check_sessions(&truth, &seen);
    // Replayed messages keep their order: per pen, seqs arrive increasing.
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for m in &received {
        if let Some(t) = decode_valid(m) {
            let prev = last.insert(t.device_id.clone(), t.seq).unwrap_or(0);
            assert!(t.seq > prev, "{} seq {} after {prev}", t.device_id, t.seq);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_signal_ends_open_sessions_cleanly() {
    let broker = Mosquitto::start().expect("mosquitto starts");
    let mut rx = subscribe(&broker).await;
    let cfg = SimConfig {
        sessions_per_pen: None,
        speed: 500.0,
        ..config(&broker, vec![Scenario::Normal])
    };
    let stop = tokio::time::sleep(Duration::from_millis(1500));
    let truth = penwatch_sim::run(cfg, stop).await.expect("sim runs");
    let received = collect(&mut rx, truth.telemetry_published).await;
    let seen = check_counts(&truth, &received);
    check_sessions(&truth, &seen);
    assert!(
        truth.sessions.iter().all(|s| s.ended),
        "open sessions got a session_end"
    );
}
