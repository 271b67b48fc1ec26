//! Policy reload through a running gateway: a bad file is rejected with its line and the
//! previous version stays in force; a good one applies to new samples only; SIGHUP reloads.

use std::time::Duration;

use penwatch_gateway::journal::Reader;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry};
use penwatch_tests::{Gateway, Mosquitto, wait_for};
use prost::Message;
use rumqttc::{AsyncClient, QoS};

/// How long a test waits for the gateway.
const WAIT: Duration = Duration::from_secs(20);

const TOPIC: &str = "clinics/c01/pens/pen-1/telemetry";

fn policy(home_mm: f64) -> String {
    format!(
        "[classes]\nhome = {home_mm}\n\n[[operators]]\nid = \"op-1\"\nclinic = \"c01\"\nqualification = \"clinician\"\n"
    )
}

fn message(seq: u64, session: &str, event: Event, depth_mm: f64) -> Vec<u8> {
    Telemetry {
        device_id: "pen-1".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Home.into(),
        operator_id: "op-1".into(),
        session_id: session.into(),
        seq,
        timestamp_ms: 1_790_000_000_000 + seq as i64 * 1000,
        event: event.into(),
        depth_mm,
        session_strokes: seq * 100,
        cartridge_strokes: seq * 100,
        speed_hz: 120.0,
        battery_pct: 90.0,
        ..Telemetry::default()
    }
    .encode_to_vec()
}

async fn session(client: &AsyncClient, first_seq: u64, id: &str) {
    for (i, (event, depth)) in [
        (Event::SessionStart, 0.0),
        (Event::Sample, 0.75),
        (Event::SessionEnd, 0.0),
    ]
    .into_iter()
    .enumerate()
    {
        client
            .publish(
                TOPIC,
                QoS::AtLeastOnce,
                false,
                message(first_seq + i as u64, id, event, depth),
            )
            .await
            .expect("publish");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_policy_is_rejected_good_one_applies_to_new_samples_only() {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy(0.5)).expect("write");
    let p = path.display().to_string();
    let mut gateway =
        Gateway::start(&broker.url(), dir.path(), &["--policy", &p]).expect("gateway");
    let client = penwatch_tests::publisher(broker.port(), "policy-pub");
    let rejected = r#"penwatch_policy_reloads_total{result="rejected"}"#;
    let ok = r#"penwatch_policy_reloads_total{result="ok"}"#;

    std::fs::write(&path, "[classes]\nhome = \"deep\"\n").expect("write bad");
    wait_for("the bad policy to be rejected", WAIT, || {
        gateway.metric(rejected) >= 1.0
    });
    assert!(
        gateway.log().contains("line 2"),
        "the rejection names the line:\n{}",
        gateway.log()
    );
    session(&client, 1, "s-1").await;
    wait_for("the first session", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 3.0
    });

    std::fs::write(&path, policy(1.0)).expect("write good");
    wait_for("the new policy", WAIT, || gateway.metric(ok) >= 1.0);
    session(&client, 4, "s-2").await;
    wait_for("the second session", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 6.0
    });

    let before = gateway.metric(ok);
    gateway.signal("HUP").expect("SIGHUP");
    wait_for("a reload on SIGHUP", WAIT, || gateway.metric(ok) > before);
    assert!(gateway.terminate().expect("terminate"));

    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    let (s1, _) = journal
        .session("pen-1", "s-1")
        .expect("query")
        .expect("s-1");
    let (s2, _) = journal
        .session("pen-1", "s-2")
        .expect("query")
        .expect("s-2");
    let v1 = s1
        .violation
        .expect("0.75 mm over the home limit of 0.5 mm (the bad file changed nothing)");
    assert_eq!(v1.worst.limit_mm, 0.5);
    assert!(
        !s2.exceeded(),
        "0.75 mm within the reloaded home limit of 1.0 mm"
    );
    let first_version = v1.worst.policy_version;
    let (s1_again, _) = journal
        .session("pen-1", "s-1")
        .expect("query")
        .expect("s-1");
    assert_eq!(
        s1_again.violation.map(|v| v.worst.policy_version),
        Some(first_version),
        "past verdicts are not rewritten"
    );
}
