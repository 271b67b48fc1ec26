//! Pens on a NATS cluster authenticate and each may publish only as itself: the cluster set
//! up as the README's Security section says (a user per pen whose permissions allow only its
//! own subjects, the gateway's own user with its password in a file) refuses anonymous clients and wrong
//! passwords, and drops a pen's publish on another pen's topic, so it never reaches the
//! stream or the journal.

use std::time::Duration;

use penwatch_gateway::journal::Reader;
use penwatch_proto::topic;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry};
use penwatch_sim::connection::{ConnectOptions, Connection};
use penwatch_sim::{SimConfig, SimError};
use penwatch_tests::nats::NatsCluster;
use penwatch_tests::{Gateway, wait_for};
use prost::Message;

/// The two pens: (clinic, device, password).
const PEN_A: (&str, &str, &str) = ("c01", "pen-a", "pw-a-0123456789");
const PEN_B: (&str, &str, &str) = ("c02", "pen-b", "pw-b-0123456789");
const GATEWAY: (&str, &str) = ("penwatch-gateway", "pw-gw-0123456789");

/// Each node's users: a pen may publish only under its own subjects and read nothing.
fn authorization() -> String {
    let pen = |(clinic, device, password): (&str, &str, &str)| {
        format!(
            "{{ user: \"{device}\", password: \"{password}\", permissions: {{ \
             publish: {{ allow: [\"clinics.{clinic}.pens.{device}.>\"] }}, \
             subscribe: {{ deny: [\">\"] }} }} }}"
        )
    };
    format!(
        "authorization {{\n  users = [\n    {}\n    {}\n    {{ user: \"{}\", password: \"{}\" }}\n  ]\n}}\n",
        pen(PEN_A),
        pen(PEN_B),
        GATEWAY.0,
        GATEWAY.1
    )
}

fn telemetry(pen: (&str, &str, &str), seq: u64) -> Vec<u8> {
    Telemetry {
        device_id: pen.1.into(),
        clinic_id: pen.0.into(),
        device_class: DeviceClass::Home.into(),
        model: "HomePen".into(),
        firmware: "1.0.0".into(),
        operator_id: "op-1".into(),
        session_id: "s-1".into(),
        cartridge_id: "cart-1".into(),
        cartridge_model: "NANO".into(),
        seq,
        timestamp_ms: 1_790_000_000_000 + seq as i64 * 1000,
        event: Event::Sample.into(),
        depth_mm: 0.3,
        session_strokes: seq * 10,
        cartridge_strokes: seq * 10,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: 0,
    }
    .encode_to_vec()
}

async fn connect(
    cluster: &NatsCluster,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<Connection, SimError> {
    let config = SimConfig {
        broker: cluster.mqtt_url(1).parse().expect("broker url"),
        username: user.map(str::to_owned),
        password: password.map(str::to_owned),
        ..SimConfig::default()
    };
    let options = ConnectOptions::from_config(&config, 10, 10)?;
    Connection::open(&options, user.unwrap_or("anonymous"), None, None).await
}

async fn publish(conn: &Connection, topic: &str, payload: Vec<u8>) {
    conn.publish(topic, false, payload).await.expect("publish");
    conn.settle().await.expect("acknowledged");
}

/// Anonymous clients and wrong passwords are refused; a pen's publish on another pen's topic
/// is dropped by the cluster; the pens' own messages are journaled by a gateway that
/// authenticates with its own user.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_nats_cluster_a_pen_publishes_only_as_itself() {
    let cluster = NatsCluster::start_with(3, &authorization()).expect("cluster");
    let dir = tempfile::tempdir().expect("temp dir");
    let password = dir.path().join("nats.password");
    std::fs::write(&password, format!("{}\n", GATEWAY.1)).expect("write password");
    let config = cluster
        .gateway_config(
            dir.path(),
            &format!(
                "user = {:?}\npassword_file = {:?}\n",
                GATEWAY.0,
                password.display().to_string()
            ),
        )
        .expect("write config");
    let gateway = Gateway::start(&cluster.mqtt_url(0), dir.path(), &["--config", &config])
        .expect("the gateway authenticates with its own user");

    let refused = |r: Result<Connection, SimError>| matches!(r, Err(SimError::Connect { .. }));
    assert!(refused(connect(&cluster, None, None).await), "anonymous");
    assert!(
        refused(connect(&cluster, Some(PEN_A.1), Some("not-its-password")).await),
        "wrong password"
    );

    let a = connect(&cluster, Some(PEN_A.1), Some(PEN_A.2))
        .await
        .expect("pen-a connects");
    let b = connect(&cluster, Some(PEN_B.1), Some(PEN_B.2))
        .await
        .expect("pen-b connects");
    for seq in 1..=3 {
        publish(
            &a,
            &topic::telemetry(PEN_A.0, PEN_A.1),
            telemetry(PEN_A, seq),
        )
        .await;
    }
    // pen-a forges pen-b, on pen-b's topic: the cluster drops it.
    publish(&a, &topic::telemetry(PEN_B.0, PEN_B.1), telemetry(PEN_B, 7)).await;
    publish(&b, &topic::telemetry(PEN_B.0, PEN_B.1), telemetry(PEN_B, 1)).await;
    wait_for("the pens' own messages", Duration::from_secs(20), || {
        gateway.metric("penwatch_messages_accepted_total") >= 4.0
    });
    // Anything after the forged message has arrived, and nothing more.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gateway.metric("penwatch_messages_received_total"), 4.0);
    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    assert_eq!(journal.counts().expect("counts").samples, 4);
    let forged = journal
        .session(PEN_B.1, "s-1")
        .expect("query")
        .expect("pen-b's session");
    assert_eq!(forged.0.samples, 1, "only pen-b's own sample");
}
