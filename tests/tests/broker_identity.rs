//! Pens authenticate and each may publish only as itself: the broker set up as the README's
//! Deployment section says (a password and an ACL entry per pen from `scripts/provision-pen`,
//! the gateway read-only, no anonymous clients) refuses every other client's publish on a
//! pen's topics, so it never reaches the journal; the gateway honours a status only on the
//! pen's own topic.

use std::path::Path;
use std::time::Duration;

use penwatch_gateway::fleet::Device;
use penwatch_gateway::journal::Reader;
use penwatch_proto::topic;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_sim::connection::{ConnectOptions, Connection};
use penwatch_sim::{Scenario, SimConfig, SimError};
use penwatch_tests::{Gateway, Mosquitto, fleet_pens, wait_for};
use prost::Message;

/// How long a test waits for the gateway.
const WAIT: Duration = Duration::from_secs(20);

/// The two pens of the authenticated broker: (clinic, device).
const PEN_A: (&str, &str) = ("c01", "pen-a");
const PEN_B: (&str, &str) = ("c02", "pen-b");

fn telemetry(pen: (&str, &str), session: &str, seq: u64, depth_mm: f64) -> Vec<u8> {
    Telemetry {
        device_id: pen.1.into(),
        clinic_id: pen.0.into(),
        device_class: DeviceClass::Home.into(),
        model: "HomePen".into(),
        firmware: "1.0.0".into(),
        operator_id: "op-1".into(),
        session_id: session.into(),
        cartridge_id: format!("cart-{session}"),
        cartridge_model: "NANO".into(),
        seq,
        timestamp_ms: 1_790_000_000_000 + seq as i64 * 1000,
        event: Event::Sample.into(),
        depth_mm,
        session_strokes: seq * 10,
        cartridge_strokes: seq * 10,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: Zone::Cheek.into(),
    }
    .encode_to_vec()
}

/// Connects as `user` (anonymously without one), waiting for the broker's answer.
async fn connect(
    broker: &Mosquitto,
    user: Option<&str>,
    password: Option<String>,
) -> Result<Connection, SimError> {
    let config = SimConfig {
        broker: broker.url().parse().expect("broker url"),
        username: user.map(str::to_owned),
        password,
        ..SimConfig::default()
    };
    let options = ConnectOptions::from_config(&config, 10, 10)?;
    Connection::open(&options, user.unwrap_or("anonymous"), None, None).await
}

/// Connects as a provisioned pen with its own password.
async fn pen(broker: &Mosquitto, device: &str) -> Connection {
    connect(broker, Some(device), broker.pen_password(device))
        .await
        .expect("a provisioned pen connects")
}

/// Publishes at QoS 1 and waits for the broker's PUBACK (which MQTT 3.1.1 sends for a
/// refused publish too: the broker drops it).
async fn publish(conn: &Connection, topic: &str, retain: bool, payload: Vec<u8>) {
    conn.publish(topic, retain, payload).await.expect("publish");
    conn.settle().await.expect("acknowledged");
}

fn journal(path: &Path) -> Reader {
    Reader::open(path).expect("journal opens")
}

fn device(path: &Path, device_id: &str) -> Option<Device> {
    journal(path)
        .devices()
        .expect("devices")
        .into_iter()
        .find(|d| d.device_id == device_id)
}

fn authenticated() -> Mosquitto {
    Mosquitto::start_authenticated([PEN_A, PEN_B]).expect("authenticated broker")
}

#[tokio::test(flavor = "multi_thread")]
async fn an_anonymous_client_or_a_wrong_password_is_refused_by_the_broker() {
    let broker = authenticated();
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = Gateway::start_on(&broker, dir.path(), &[]).expect("gateway");

    let refused = |r: Result<Connection, SimError>| match r {
        Err(SimError::Connect { source, .. }) => matches!(
            *source,
            rumqttc::ConnectionError::ConnectionRefused(
                rumqttc::ConnectReturnCode::NotAuthorized
                    | rumqttc::ConnectReturnCode::BadUserNamePassword
            )
        ),
        _ => false,
    };
    assert!(refused(connect(&broker, None, None).await), "anonymous");
    assert!(
        refused(connect(&broker, Some(PEN_A.1), Some("not-its-password".into())).await),
        "wrong password"
    );
    assert!(
        refused(connect(&broker, Some("pen-unknown"), Some("x".into())).await),
        "unprovisioned pen"
    );

    // The pen itself gets through, and only its message is journaled.
    let a = pen(&broker, PEN_A.1).await;
    publish(
        &a,
        &topic::telemetry(PEN_A.0, PEN_A.1),
        false,
        telemetry(PEN_A, "s-a", 1, 0.3),
    )
    .await;
    wait_for("the pen's own message", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 1.0
    });
    assert_eq!(gateway.metric("penwatch_messages_received_total"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pen_cannot_publish_as_another_pen_and_its_own_publish_is_journaled() {
    let broker = authenticated();
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = Gateway::start_on(&broker, dir.path(), &[]).expect("gateway");
    let a = pen(&broker, PEN_A.1).await;
    let b = pen(&broker, PEN_B.1).await;

    // pen-b forges pen-a: a harmless session on pen-a's seqs, on pen-a's topic and on a
    // topic of its own clinic naming pen-a.
    let a_topic = topic::telemetry(PEN_A.0, PEN_A.1);
    for seq in 1..=5 {
        publish(&b, &a_topic, false, telemetry(PEN_A, "s-forged", seq, 0.0)).await;
    }
    publish(
        &b,
        &topic::telemetry(PEN_B.0, PEN_A.1),
        false,
        telemetry((PEN_B.0, PEN_A.1), "s-forged", 6, 0.0),
    )
    .await;
    // Then pen-a's real over-depth session on the same seqs: every sample is journaled.
    for seq in 1..=5 {
        publish(&a, &a_topic, false, telemetry(PEN_A, "s-real", seq, 2.0)).await;
    }
    // And pen-b's own message on its own topic.
    publish(
        &b,
        &topic::telemetry(PEN_B.0, PEN_B.1),
        false,
        telemetry(PEN_B, "s-b", 1, 0.2),
    )
    .await;

    wait_for("the pens' own messages", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 6.0
    });
    // The broker sent on, in order, only what each pen published as itself: none of the
    // forgeries arrived before the genuine messages, so none arrived at all.
    assert_eq!(gateway.metric("penwatch_messages_received_total"), 6.0);
    assert_eq!(gateway.metric("penwatch_messages_duplicate_total"), 0.0);
    let path = gateway.journal_path();
    let counts = journal(&path).counts().expect("counts");
    assert_eq!(counts.samples, 6);
    assert_eq!(counts.quarantined, 0);
    let a_now = device(&path, PEN_A.1).expect("pen-a journaled");
    assert_eq!(
        (a_now.clinic_id.as_str(), a_now.session_id.as_str()),
        ("c01", "s-real")
    );
    assert!(counts.violations >= 1, "pen-a's real session exceeded");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_retained_status_from_another_client_is_refused_and_the_pen_stays_online() {
    let broker = authenticated();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateway = Gateway::start_on(&broker, dir.path(), &[]).expect("gateway");
    let a = pen(&broker, PEN_A.1).await;
    let b = pen(&broker, PEN_B.1).await;
    let a_status = topic::status(PEN_A.0, PEN_A.1);

    publish(&a, &a_status, true, b"online".to_vec()).await;
    publish(&b, &a_status, true, b"offline".to_vec()).await;
    publish(&b, &a_status, true, Vec::new()).await;
    assert!(connect(&broker, None, None).await.is_err(), "anonymous");
    // pen-a's next message comes after the forgeries: once it is in, they would be too.
    publish(
        &a,
        &topic::telemetry(PEN_A.0, PEN_A.1),
        false,
        telemetry(PEN_A, "s-a", 1, 0.3),
    )
    .await;
    wait_for("pen-a's telemetry", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= 1.0
    });
    assert_eq!(gateway.metric("penwatch_messages_received_total"), 2.0);
    let path = gateway.journal_path();
    assert_eq!(device(&path, PEN_A.1).and_then(|d| d.online), Some(true));

    // The broker's retained status is still pen-a's own: a restarted gateway, subscribing
    // afresh, is handed `online` again (and nothing else).
    gateway.restart().expect("gateway restarts");
    wait_for("the retained status", WAIT, || {
        gateway.metric("penwatch_messages_received_total") >= 1.0
    });
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(gateway.metric("penwatch_messages_received_total"), 1.0);
    assert_eq!(gateway.metric("penwatch_messages_quarantined_total"), 0.0);
    assert_eq!(device(&path, PEN_A.1).and_then(|d| d.online), Some(true));
}

/// Where the ACL is missing (an open broker), the gateway still honours a pen's status only
/// on its own clinic's topic; a forgery on the pen's own topic it cannot tell apart, which
/// is why the deployment's ACL is required.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_on_another_clinics_topic_is_quarantined_and_leaves_the_pen_as_it_was() {
    let broker = Mosquitto::start().expect("open broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[devices]]\nid = \"pen-r\"\nclinic = \"c01\"\nclass = \"medical\"\n",
    )
    .expect("policy");
    let gateway = Gateway::start_on(
        &broker,
        dir.path(),
        &["--policy", &policy.display().to_string()],
    )
    .expect("gateway");
    let anyone = connect(&broker, None, None).await.expect("anonymous");
    publish(
        &anyone,
        &topic::status(PEN_A.0, PEN_A.1),
        true,
        b"online".to_vec(),
    )
    .await;
    publish(
        &anyone,
        &topic::telemetry(PEN_A.0, PEN_A.1),
        false,
        telemetry(PEN_A, "s-a", 1, 0.3),
    )
    .await;
    publish(
        &anyone,
        &topic::status("c02", PEN_A.1),
        true,
        b"offline".to_vec(),
    )
    .await;
    // pen-r is registered at c01 and has not spoken yet.
    publish(
        &anyone,
        &topic::status("c02", "pen-r"),
        true,
        b"online".to_vec(),
    )
    .await;
    wait_for("the forged statuses", WAIT, || {
        gateway.metric("penwatch_messages_received_total") >= 4.0
    });
    wait_for("their quarantine", WAIT, || {
        gateway.metric("penwatch_messages_quarantined_total{reason=\"status_clinic\"}") >= 2.0
    });
    let path = gateway.journal_path();
    let pen_a = device(&path, PEN_A.1).expect("pen-a");
    assert_eq!(
        (pen_a.clinic_id.as_str(), pen_a.online),
        ("c01", Some(true))
    );
    assert!(device(&path, "pen-r").is_none());
    let quarantined = journal(&path).counts().expect("counts").quarantined;
    assert_eq!(quarantined, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_simulated_fleet_connects_pen_by_pen_with_its_own_credentials_and_is_journaled_whole() {
    let (seed, clinics, pens) = (5, 2, 2);
    let broker = Mosquitto::start_authenticated(fleet_pens(seed, clinics, pens))
        .expect("authenticated broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let gateway = Gateway::start_on(&broker, dir.path(), &[]).expect("gateway");
    let config = SimConfig {
        broker: broker.url().parse().expect("broker url"),
        credentials: broker.credentials_file(),
        clinics,
        pens_per_clinic: pens,
        seed,
        scenarios: vec![Scenario::Normal, Scenario::OfflineBuffer],
        speed: 2000.0,
        sessions_per_pen: Some(1),
        ..SimConfig::default()
    };
    let truth = penwatch_sim::run(config.clone(), std::future::pending::<()>())
        .await
        .expect("every pen connects as itself");
    wait_for("every message", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= truth.telemetry_valid as f64
    });
    let devices = journal(&gateway.journal_path()).devices().expect("devices");
    assert_eq!(devices.len(), (clinics * pens) as usize);
    assert!(
        devices.iter().all(|d| d.online == Some(false)),
        "{devices:?}"
    );

    // Shared connections cannot speak for several pens on this broker.
    let shared = SimConfig {
        rate: Some(10.0),
        connections: Some(1),
        ..config
    };
    let err = penwatch_sim::run(shared, std::future::pending::<()>())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("--connections"), "{err}");
}

#[test]
fn provisioning_gives_a_new_password_and_refuses_a_pen_already_at_another_clinic() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (passwd, acl) = (dir.path().join("passwd"), dir.path().join("acl"));
    let provision = |who: &[&str]| {
        std::process::Command::new(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/provision-pen"),
        )
        .arg("--passwd")
        .arg(&passwd)
        .arg("--acl")
        .arg(&acl)
        .args(who)
        .output()
        .expect("provision-pen runs")
    };
    let first = provision(&["c01", "pen-1"]);
    let again = provision(&["c01", "pen-1"]);
    assert!(first.status.success() && again.status.success());
    let line = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert!(line(&first).starts_with("pen-1:"));
    assert_ne!(line(&first), line(&again), "a new password");
    let entries = std::fs::read_to_string(&acl).expect("acl");
    assert_eq!(entries.matches("user pen-1\n").count(), 1, "{entries}");
    assert!(entries.contains("topic write clinics/c01/pens/pen-1/telemetry\n"));

    let moved = provision(&["c02", "pen-1"]);
    assert!(!moved.status.success());
    assert!(String::from_utf8_lossy(&moved.stderr).contains("already in"));
    let bad = provision(&["c01", "pen/1"]);
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(
        std::fs::read_to_string(&acl).expect("acl"),
        entries,
        "refusals change nothing"
    );
}
