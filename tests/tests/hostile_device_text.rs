//! Text a device sends cannot be turned against the people who read it: ids that a
//! spreadsheet would run as formulas and model or firmware strings holding terminal escape
//! sequences are quarantined at the gateway; what an older journal may still hold is
//! neutralised in the CSV export and escaped by `penwatch`; a plaintext API beyond loopback
//! is refused while tokens are configured.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use penwatch_gateway::journal::Reader;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_tests::{Gateway, Mosquitto, binary, wait_for};
use prost::Message;
use rumqttc::{AsyncClient, QoS};

/// How long a test waits for the gateway.
const WAIT: Duration = Duration::from_secs(20);

const ADMIN: &str = "token-admin-0123456789";
const TOPIC: &str = "clinics/c01/pens/pen-h1/telemetry";
const HYPERLINK: &str = "=HYPERLINK(\"evil.example\",\"click\")";
const CLEAR_SCREEN: &str = "\u{1b}[2J";
const OSC_TITLE: &str = "\u{1b}]0;owned\u{7}";

fn telemetry(seq: u64, event: Event, depth_mm: f64) -> Telemetry {
    Telemetry {
        device_id: "pen-h1".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Salon.into(),
        model: "SalonPen".into(),
        firmware: "1.0.0".into(),
        operator_id: "op-x".into(),
        session_id: "s-1".into(),
        cartridge_id: "cart-1".into(),
        cartridge_model: "NANO".into(),
        seq,
        timestamp_ms: 1_790_000_000_000 + seq as i64 * 1000,
        event: event.into(),
        depth_mm,
        session_strokes: seq * 100,
        cartridge_strokes: seq * 100,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: Zone::Cheek.into(),
    }
}

async fn publisher(port: u16) -> AsyncClient {
    penwatch_tests::publisher(port, "hostile-pub")
}

async fn publish(client: &AsyncClient, topic: &str, payload: Vec<u8>) {
    client
        .publish(topic, QoS::AtLeastOnce, false, payload)
        .await
        .expect("publish");
}

/// Publishes `bad` (topic, payload) and one good message after them, waits until all were
/// handled, stops the gateway and returns the quarantine reasons and the samples journaled.
async fn quarantined(bad: Vec<(String, Vec<u8>)>) -> (Vec<String>, u64, f64) {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateway = Gateway::start(&broker.url(), dir.path(), &[]).expect("gateway");
    let client = publisher(broker.port()).await;
    for (topic, payload) in &bad {
        publish(&client, topic, payload.clone()).await;
    }
    publish(
        &client,
        TOPIC,
        telemetry(1, Event::SessionStart, 0.0).encode_to_vec(),
    )
    .await;
    let total = bad.len() + 1;
    wait_for("every message", WAIT, || {
        gateway.metric("penwatch_messages_received_total") >= total as f64
    });
    let counted = gateway.metric("penwatch_messages_quarantined_total{reason=\"field\"}");
    assert!(gateway.terminate().expect("terminate"), "{}", gateway.log());
    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    let reasons = journal
        .quarantine(100, None)
        .expect("quarantine")
        .into_iter()
        .map(|q| q.reason)
        .collect();
    (reasons, journal.counts().expect("counts").samples, counted)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_publishing_ids_that_begin_like_a_formula_is_quarantined() {
    let formula_pen = Telemetry {
        device_id: "=pen".into(),
        ..telemetry(2, Event::Sample, 0.5)
    };
    let bad = vec![
        (
            "clinics/c01/pens/=pen/telemetry".to_owned(),
            formula_pen.encode_to_vec(),
        ),
        (
            "clinics/c01/pens/=pen/status".to_owned(),
            b"online".to_vec(),
        ),
        (
            TOPIC.to_owned(),
            Telemetry {
                operator_id: HYPERLINK.into(),
                ..telemetry(3, Event::Sample, 0.5)
            }
            .encode_to_vec(),
        ),
        (
            TOPIC.to_owned(),
            penwatch_proto::json::encode(&Telemetry {
                session_id: "-cmd|calc!A0".into(),
                ..telemetry(4, Event::Sample, 0.5)
            }),
        ),
        (
            TOPIC.to_owned(),
            Telemetry {
                cartridge_id: "@SUM(1)".into(),
                ..telemetry(5, Event::Sample, 0.5)
            }
            .encode_to_vec(),
        ),
        (
            TOPIC.to_owned(),
            Telemetry {
                cartridge_model: "=1-1".into(),
                ..telemetry(6, Event::Sample, 0.5)
            }
            .encode_to_vec(),
        ),
    ];
    let n = bad.len();
    let (reasons, samples, counted) = quarantined(bad).await;
    assert_eq!(samples, 1, "only the good message is journaled");
    assert_eq!(reasons.len(), n, "{reasons:?}");
    assert_eq!(counted, n as f64, "counted as bad fields");
    for field in [
        "device_id",
        "operator_id",
        "session_id",
        "cartridge_id",
        "cartridge_model",
    ] {
        assert!(
            reasons
                .iter()
                .any(|r| r.starts_with(&format!("field {field}: "))
                    && r.contains("may not begin with = + - @")),
            "{field}: {reasons:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_sending_terminal_escape_sequences_in_model_or_firmware_is_quarantined() {
    let bad = vec![
        (
            TOPIC.to_owned(),
            Telemetry {
                model: format!("{CLEAR_SCREEN}SalonPen"),
                ..telemetry(2, Event::Sample, 0.5)
            }
            .encode_to_vec(),
        ),
        (
            TOPIC.to_owned(),
            Telemetry {
                firmware: format!("1.0{OSC_TITLE}"),
                ..telemetry(3, Event::Sample, 0.5)
            }
            .encode_to_vec(),
        ),
        (
            TOPIC.to_owned(),
            br#"{"device_id":"pen-h1","clinic_id":"c01","device_class":"salon","seq":4,"timestamp_ms":1790000004000,"event":"sample","model":"\u001b[31mred","session_id":"s-1"}"#
                .to_vec(),
        ),
    ];
    let n = bad.len();
    let (reasons, samples, counted) = quarantined(bad).await;
    assert_eq!(samples, 1, "only the good message is journaled");
    assert_eq!(reasons.len(), n, "{reasons:?}");
    assert_eq!(counted, n as f64);
    for r in &reasons {
        assert!(
            (r.starts_with("field model: ") || r.starts_with("field firmware: "))
                && r.contains("holds control characters"),
            "{reasons:?}"
        );
        assert!(!r.contains('\u{1b}'), "the reason itself is escaped: {r:?}");
    }
}

/// A gateway whose journal, written before ids and model strings were validated, holds
/// hostile text: an open session of pen-h1 by a formula-looking operator, and a model,
/// firmware and cartridge model with terminal escape sequences. Returns the broker, the
/// gateway (running again on that journal) and its directory.
async fn old_journal_with_hostile_text() -> (Mosquitto, Gateway, tempfile::TempDir) {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[[api.tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"),
    )
    .expect("config");
    let mut gateway = Gateway::start(
        &broker.url(),
        dir.path(),
        &["--config", &config.display().to_string()],
    )
    .expect("gateway");
    let client = publisher(broker.port()).await;
    let messages = [
        telemetry(1, Event::CartridgeInserted, 0.0),
        telemetry(2, Event::SessionStart, 0.0),
        telemetry(3, Event::Sample, 0.5),
        telemetry(4, Event::Sample, 0.75),
    ];
    for t in &messages {
        publish(&client, TOPIC, t.encode_to_vec()).await;
    }
    wait_for("every message", WAIT, || {
        gateway.metric("penwatch_messages_accepted_total") >= messages.len() as f64
    });
    assert!(gateway.terminate().expect("terminate"), "{}", gateway.log());

    let conn = rusqlite::Connection::open(gateway.journal_path()).expect("open");
    let model = format!("{CLEAR_SCREEN}SalonPen");
    let firmware = format!("1.0{OSC_TITLE}");
    let cartridge_model = "N\u{1b}[5m";
    for (sql, value) in [
        (
            "UPDATE sample_contexts SET operator_id = ?1 WHERE device_id = 'pen-h1'",
            HYPERLINK,
        ),
        (
            "UPDATE sessions SET operator_id = ?1, \
             record = json_set(record, '$.operator_id', ?1) WHERE device_id = 'pen-h1'",
            HYPERLINK,
        ),
        (
            "UPDATE sample_contexts SET model = ?1 WHERE device_id = 'pen-h1'",
            &model,
        ),
        (
            "UPDATE devices SET record = json_set(record, '$.model', ?1) WHERE device_id = 'pen-h1'",
            &model,
        ),
        (
            "UPDATE sample_contexts SET firmware = ?1 WHERE device_id = 'pen-h1'",
            &firmware,
        ),
        (
            "UPDATE devices SET record = json_set(record, '$.firmware', ?1) WHERE device_id = 'pen-h1'",
            &firmware,
        ),
        (
            "UPDATE sample_contexts SET cartridge_model = ?1 WHERE device_id = 'pen-h1'",
            cartridge_model,
        ),
        (
            "UPDATE cartridges SET model = ?1, record = json_set(record, '$.model', ?1)",
            cartridge_model,
        ),
    ] {
        let changed = conn.execute(sql, [value]).expect(sql);
        assert!(changed >= 1, "{sql}");
    }
    drop(conn);
    gateway.restart().expect("gateway on the old journal");
    (broker, gateway, dir)
}

fn penwatch(gateway: &Gateway, args: &[&str]) -> Output {
    let out = Command::new(binary("penwatch").expect("penwatch built"))
        .args(args)
        .env(
            "PENWATCH_GATEWAY",
            format!("http://127.0.0.1:{}", gateway.api_port()),
        )
        .env("PENWATCH_TOKEN", ADMIN)
        .env_remove("PENWATCH_CA_CERT")
        .output()
        .expect("run penwatch");
    assert!(
        out.status.success(),
        "penwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn penwatch_fleet_and_cartridges_print_no_raw_escape_even_from_an_old_journal() {
    let (_broker, gateway, _dir) = old_journal_with_hostile_text().await;
    for args in [
        &["fleet"][..],
        &["cartridges"],
        &["fleet", "--json"],
        &["cartridges", "--json"],
    ] {
        let out = penwatch(&gateway, args);
        let stdout = String::from_utf8(out.stdout).expect("UTF-8");
        assert!(
            !stdout.chars().any(|c| c != '\n' && c.is_control()),
            "{args:?} printed a control character: {stdout:?}"
        );
        let shown = if args.contains(&"--json") {
            "\\u001b["
        } else {
            "\\u{1b}["
        };
        assert!(
            stdout.contains(shown),
            "{args:?} shows the escape: {stdout}"
        );
    }
    let json = penwatch(&gateway, &["fleet", "--json"]).stdout;
    let fleet: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
    assert_eq!(
        fleet[0]["firmware"],
        format!("1.0{OSC_TITLE}"),
        "--json keeps the exact value"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_export_of_an_old_journal_neutralises_formula_cells() {
    let (_broker, gateway, _dir) = old_journal_with_hostile_text().await;
    let out = penwatch(&gateway, &["export", "--format", "csv", "--samples"]);
    let mut reader = csv::Reader::from_reader(out.stdout.as_slice());
    let headers = reader.headers().expect("header").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).expect("column");
    let (record, operator) = (column("record"), column("operator_id"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert!(
        rows.iter().any(|r| &r[record] == "session"),
        "the open session is exported"
    );
    assert!(
        rows.iter().any(|r| &r[record] == "sample"),
        "with its samples"
    );
    for row in &rows {
        if matches!(&row[record], "session" | "sample") {
            assert_eq!(row[operator], format!("'{HYPERLINK}"), "{row:?}");
        }
        for cell in row {
            assert!(
                !penwatch_proto::text::starts_like_formula(cell),
                "{cell:?} in {row:?}"
            );
        }
    }
}

fn gateway_with(dir: &Path, api: &str, command: &[&str]) -> Output {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\n{api}\n[[api.tokens]]\nname = \"admin\"\ntoken = \"{ADMIN}\"\nrole = \"admin\"\n"
        ),
    )
    .expect("config");
    Command::new(binary("penwatch-gateway").expect("built"))
        .args(["--config", &config.display().to_string()])
        .args(["--journal", &dir.join("journal.db").display().to_string()])
        .args(command)
        .env_remove("PENWATCH_API_LISTEN")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run penwatch-gateway")
}

#[test]
fn a_plaintext_api_beyond_loopback_with_tokens_is_refused_by_check_config_and_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let listen = "listen = \"0.0.0.0:0\"";
    for command in [&["check-config"][..], &[]] {
        let out = gateway_with(dir.path(), listen, command);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(78),
            "EX_CONFIG; {command:?}: {stderr}"
        );
        assert!(
            stderr.contains("api.listen: 0.0.0.0:0 is not a loopback address"),
            "{stderr}"
        );
        assert!(
            stderr.contains("api.tls_cert") && stderr.contains("allow_plaintext = true in [api]"),
            "names the keys and the fix: {stderr}"
        );
    }
    let out = gateway_with(
        dir.path(),
        &format!("{listen}\nallow_plaintext = true"),
        &["check-config"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = gateway_with(dir.path(), "listen = \"127.0.0.1:0\"", &["check-config"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
