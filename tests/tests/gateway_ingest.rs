//! The gateway against a real broker: good messages journaled once, bad ones quarantined
//! with a reason, duplicates recognised, sessions closed into the audit chain.

use std::time::Duration;

use penwatch_gateway::journal::Reader;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_tests::{Gateway, Mosquitto, wait_for};
use prost::Message;
use rumqttc::{AsyncClient, QoS};

/// How long a test waits for the gateway.
const WAIT: Duration = Duration::from_secs(20);

const TOPIC: &str = "clinics/c01/pens/pen-h1/telemetry";

fn telemetry(seq: u64, event: Event, depth_mm: f64, strokes: u64) -> Telemetry {
    Telemetry {
        device_id: "pen-h1".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Home.into(),
        model: "HomePen".into(),
        firmware: "1.0.0".into(),
        operator_id: "op-x".into(),
        session_id: "s-1".into(),
        cartridge_id: "cart-1".into(),
        cartridge_model: "NANO".into(),
        seq,
        timestamp_ms: 1_790_000_000_000 + seq as i64 * 1000,
        event: event.into(),
        depth_mm,
        session_strokes: strokes,
        cartridge_strokes: strokes,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: Zone::Cheek.into(),
    }
}

async fn publisher(port: u16) -> AsyncClient {
    penwatch_tests::publisher(port, "test-pub")
}

#[tokio::test(flavor = "multi_thread")]
async fn good_bad_and_duplicate_messages() {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateway = Gateway::start(&broker.url(), dir.path(), &[]).expect("gateway");
    let client = publisher(broker.port()).await;

    let good = [
        telemetry(1, Event::SessionStart, 0.0, 0),
        telemetry(2, Event::Sample, 0.5, 120),
        telemetry(3, Event::Sample, 0.75, 240),
        telemetry(4, Event::Sample, 0.75, 360),
        telemetry(5, Event::Sample, 0.25, 480),
    ];
    for t in &good {
        client
            .publish(TOPIC, QoS::AtLeastOnce, false, t.encode_to_vec())
            .await
            .expect("publish");
    }
    client
        .publish(TOPIC, QoS::AtLeastOnce, false, good[2].encode_to_vec())
        .await
        .expect("duplicate");
    let json = penwatch_proto::json::encode(&telemetry(6, Event::Sample, 0.5, 600));
    client
        .publish(TOPIC, QoS::AtLeastOnce, false, json)
        .await
        .expect("json");
    let bad: Vec<Vec<u8>> = vec![
        good[1].encode_to_vec()[..4].to_vec(),
        telemetry(7, Event::Sample, f64::NAN, 600).encode_to_vec(),
        br#"{"device_id":"pen-h1","clinic_id":"c01","depth_mm":"deep"}"#.to_vec(),
        Telemetry {
            device_id: "pen-other".into(),
            ..telemetry(7, Event::Sample, 0.5, 600)
        }
        .encode_to_vec(),
        vec![b' '; 70 * 1024],
    ];
    for b in &bad {
        client
            .publish(TOPIC, QoS::AtLeastOnce, false, b.clone())
            .await
            .expect("bad");
    }
    let end = telemetry(7, Event::SessionEnd, 0.0, 600);
    client
        .publish(TOPIC, QoS::AtLeastOnce, false, end.encode_to_vec())
        .await
        .expect("end");

    let total = good.len() + 1 + 1 + bad.len() + 1;
    wait_for("every message", WAIT, || {
        gateway.metric("penwatch_messages_received_total") >= total as f64
    });
    assert_eq!(gateway.metric("penwatch_messages_duplicate_total"), 1.0);
    assert!(
        gateway.terminate().expect("terminate"),
        "clean exit; log:\n{}",
        gateway.log()
    );

    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    let counts = journal.counts().expect("counts");
    assert_eq!(counts.samples, 7, "5 protobuf + 1 JSON + session_end");
    assert_eq!(counts.quarantined, 5);
    let reasons: Vec<String> = journal
        .quarantine(10, None)
        .expect("quarantine")
        .into_iter()
        .map(|q| q.reason)
        .collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("payload of 71680 bytes exceeds")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r == "field depth_mm: is NaN"),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("topic says device_id")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("not a valid protobuf")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.starts_with("field depth_mm: expected a number")),
        "{reasons:?}"
    );

    let (session, state) = journal
        .session("pen-h1", "s-1")
        .expect("query")
        .expect("session");
    assert_eq!(state, "closed");
    assert!(
        session.unknown_operator,
        "no policy file: every operator is unknown"
    );
    let evidence = session
        .violation
        .expect("0.75 mm on a home pen exceeds 0.5 mm")
        .worst;
    assert_eq!((evidence.peak_depth_mm, evidence.limit_mm), (0.75, 0.5));
    assert_eq!(evidence.binding, "class");
    assert_eq!(evidence.samples_above, 2);
    assert_eq!(evidence.strokes_above, 240);
    assert_eq!(session.strokes, 600);
    let v = journal.verify().expect("verify");
    assert!(v.ok(), "{v:?}");
    assert_eq!(
        v.entries, 3,
        "the chain's scope, one violation and one session record"
    );
}

/// The broker goes away and comes back: the gateway says so in its metrics, reconnects with
/// backoff, resumes its persistent session, and what pens publish afterwards is journaled.
#[tokio::test(flavor = "multi_thread")]
async fn reconnects_after_a_broker_restart() {
    let mut broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = Gateway::start(&broker.url(), dir.path(), &[]).expect("gateway");
    let before = publisher(broker.port()).await;
    before
        .publish(
            TOPIC,
            QoS::AtLeastOnce,
            false,
            telemetry(1, Event::SessionStart, 0.0, 0).encode_to_vec(),
        )
        .await
        .expect("publish");
    wait_for("the first message", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 1.0
    });

    broker.restart().expect("broker restarts");
    wait_for("the cut-off to be reported", WAIT, || {
        gateway.metric("penwatch_mqtt_disconnects_total") >= 1.0
    });
    wait_for("the reconnection", WAIT, || {
        gateway.metric("penwatch_mqtt_connected") == 1.0
    });
    let after = publisher(broker.port()).await;
    for seq in 2..=4 {
        after
            .publish(
                TOPIC,
                QoS::AtLeastOnce,
                false,
                telemetry(seq, Event::Sample, 0.25, seq * 100).encode_to_vec(),
            )
            .await
            .expect("publish");
    }
    wait_for("the messages after the restart", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 4.0
    });
}

/// A session whose pen stops sending is closed after the inactivity timeout, with its final
/// record in the audit chain.
#[tokio::test(flavor = "multi_thread")]
async fn idle_sessions_close_after_the_inactivity_timeout() {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, "[sessions]\ninactivity_timeout_s = 1\n").expect("config");
    let mut gateway = Gateway::start(
        &broker.url(),
        dir.path(),
        &["--config", &config.display().to_string()],
    )
    .expect("gateway");
    let client = publisher(broker.port()).await;
    for t in [
        telemetry(1, Event::SessionStart, 0.0, 0),
        telemetry(2, Event::Sample, 0.25, 120),
    ] {
        client
            .publish(TOPIC, QoS::AtLeastOnce, false, t.encode_to_vec())
            .await
            .expect("publish");
    }
    // The session opens with these commits (and may close a second later, before a look at
    // the gauge would see it open).
    wait_for("both messages committed", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 2.0
    });
    wait_for("the session to close", WAIT, || {
        gateway.metric("penwatch_sessions_open") == 0.0
    });
    assert!(gateway.terminate().expect("terminate"));
    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    let (session, state) = journal
        .session("pen-h1", "s-1")
        .expect("query")
        .expect("session");
    assert_eq!(state, "closed");
    assert!(!session.ended, "closed by the timeout, not by the pen");
    assert_eq!(
        journal.verify().expect("verify").entries,
        2,
        "the chain's scope and the session record"
    );
}
