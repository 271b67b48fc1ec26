//! `verify` covers every row the API, CLI, dashboard and export serve as final: on a copy of a
//! journal written by the gateway from the simulator's traffic, every deletion, edit and flip
//! of a sample, session, violation, cartridge event, access log entry, review signature or
//! chain entry is caught.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use penwatch_proto::v1 as pb;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{Scenario, SimConfig};
use penwatch_tests::api::{REVIEWER, req};
use penwatch_tests::{Gateway, Mosquitto, binary, fleet_pens};

const SEED: u64 = 23;

/// A journal from two sessions per pen of a 3 × 3 fleet, some over depth, some reusing a
/// cartridge.
async fn journal(dir: &Path) -> PathBuf {
    let broker = Mosquitto::start_authenticated(fleet_pens(SEED, 3, 3)).expect("broker");
    let policy = dir.join("policy.toml");
    let fleet = Fleet::generate(SEED, 3, 3);
    std::fs::write(&policy, penwatch_sim::policy::policy_toml(&fleet)).expect("policy");
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\n[[api.tokens]]\nname = \"reviewer\"\ntoken = \"{REVIEWER}\"\nrole = \"reviewer\"\n"
        ),
    )
    .expect("config");
    let mut gateway = Gateway::start_on(
        &broker,
        dir,
        &[
            "--policy",
            &policy.display().to_string(),
            "--config",
            &config.display().to_string(),
        ],
    )
    .expect("gateway");
    let truth = penwatch_sim::run(
        SimConfig {
            broker: broker.url().parse().expect("broker url"),
            credentials: broker.credentials_file(),
            clinics: 3,
            pens_per_clinic: 3,
            seed: SEED,
            scenarios: vec![
                Scenario::Normal,
                Scenario::OverDepth,
                Scenario::CartridgeReuse,
            ],
            speed: 2000.0,
            sessions_per_pen: Some(2),
            ..SimConfig::default()
        },
        std::future::pending::<()>(),
    )
    .await
    .expect("sim");
    let deadline = Instant::now() + Duration::from_secs(30);
    while gateway.metric("penwatch_messages_accepted_total") < truth.telemetry_valid as f64 {
        assert!(Instant::now() < deadline, "gateway did not commit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // A refused call, so the access log holds an entry too.
    let mut api = penwatch_proto::v1::pen_watch_client::PenWatchClient::connect(format!(
        "http://127.0.0.1:{}",
        gateway.api_port()
    ))
    .await
    .expect("API");
    let refused = api
        .list_sessions(penwatch_proto::v1::ListSessionsRequest::default())
        .await;
    assert!(refused.is_err(), "no token, no sessions");
    let journal = gateway.journal_path();
    // A signed review of one clinic's day.
    let clinic: String = rusqlite::Connection::open(&journal)
        .and_then(|c| c.query_row("SELECT clinic_id FROM sessions LIMIT 1", [], |r| r.get(0)))
        .expect("a clinic");
    api.sign_review(req(
        pb::SignReviewRequest {
            clinic_id: clinic,
            from_ms: 1_795_132_800_000,
            until_ms: 1_795_219_200_000,
            meaning: "approved".into(),
            signer: "Dr Ann Example".into(),
            head_hash: String::new(),
        },
        REVIEWER,
    ))
    .await
    .expect("signed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while rusqlite::Connection::open(&journal)
        .and_then(|c| {
            c.query_row("SELECT COUNT(*) FROM access_log", [], |r| {
                r.get::<_, i64>(0)
            })
        })
        .unwrap_or(0)
        == 0
    {
        assert!(Instant::now() < deadline, "the refusal was not recorded");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(gateway.terminate().expect("terminate"), "{}", gateway.log());
    journal
}

fn verify(journal: &Path) -> Output {
    Command::new(binary("penwatch-gateway").expect("built"))
        .args(["--journal", &journal.display().to_string(), "verify"])
        .env("RUST_LOG", "off")
        .output()
        .expect("verify runs")
}

/// The journal copied to `name` in `dir`, with `sql` applied.
fn mutated(original: &Path, dir: &Path, name: &str, sql: &str) -> PathBuf {
    let copy = dir.join(format!("{name}.db"));
    std::fs::copy(original, &copy).expect("copy");
    let conn = rusqlite::Connection::open(&copy).expect("open copy");
    let changed = conn.execute(sql, []).expect(name);
    assert!(changed > 0, "{name} changes a row");
    copy
}

/// A closed session's rowid (one that exceeded, with `exceeded`).
fn closed(exceeded: bool) -> String {
    format!(
        "(SELECT rowid FROM sessions WHERE state = 'closed' AND exceeded = {} ORDER BY rowid LIMIT 1)",
        u8::from(exceeded)
    )
}

/// A sample of a closed session.
const SAMPLE_OF_CLOSED: &str = "(SELECT s.id FROM samples s JOIN sessions x \
    ON x.device_id = s.device_id AND x.session_id = s.session_id \
    WHERE x.state = 'closed' AND s.event = 'sample' ORDER BY s.id LIMIT 1)";

#[tokio::test(flavor = "multi_thread")]
async fn every_deletion_edit_and_flip_of_a_served_row_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = journal(dir.path()).await;
    let ok = verify(&original);
    assert!(
        ok.status.success(),
        "the untouched journal verifies: {}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let conn = rusqlite::Connection::open(&original).expect("open");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert!(count("SELECT COUNT(*) FROM violations WHERE final = 1") > 0);
    assert!(count("SELECT COUNT(*) FROM cartridge_events") > 0);
    drop(conn);

    let mutations = [
        ("sample deleted", format!("DELETE FROM sample_rows WHERE id = {SAMPLE_OF_CLOSED}")),
        (
            "sample depth edited",
            format!("UPDATE sample_rows SET depth_mm = depth_mm + 0.1 WHERE id = {SAMPLE_OF_CLOSED}"),
        ),
        (
            "sample operator edited in its context",
            format!(
                "UPDATE sample_contexts SET operator_id = 'op-forged' \
                 WHERE id = (SELECT context FROM sample_rows WHERE id = {SAMPLE_OF_CLOSED})"
            ),
        ),
        (
            "sample verdict flipped",
            "UPDATE sample_rows SET exceeded = 0 WHERE id = (SELECT MIN(id) FROM sample_rows WHERE exceeded = 1)"
                .to_owned(),
        ),
        (
            "a recent session's samples all deleted",
            format!(
                "DELETE FROM sample_rows WHERE id IN (SELECT s.id FROM samples s JOIN sessions x \
                 USING (device_id, session_id) WHERE x.rowid = {})",
                closed(false)
            ),
        ),
        (
            "session exceeded flipped",
            format!("UPDATE sessions SET exceeded = 0 WHERE rowid = {}", closed(true)),
        ),
        (
            "session deepest sample edited",
            format!("UPDATE sessions SET max_depth_mm = 0.1 WHERE rowid = {}", closed(true)),
        ),
        (
            "session record edited",
            format!(
                "UPDATE sessions SET record = json_set(record, '$.strokes', 1) WHERE rowid = {}",
                closed(false)
            ),
        ),
        (
            "session deleted",
            format!("DELETE FROM sessions WHERE rowid = {}", closed(false)),
        ),
        (
            "violation deleted",
            "DELETE FROM violations WHERE rowid = (SELECT MIN(rowid) FROM violations)".to_owned(),
        ),
        (
            "violation peak edited",
            "UPDATE violations SET peak_depth_mm = peak_depth_mm - 0.2 \
             WHERE rowid = (SELECT MIN(rowid) FROM violations)"
                .to_owned(),
        ),
        (
            "violation made not final",
            "UPDATE violations SET final = 0 WHERE rowid = (SELECT MIN(rowid) FROM violations)"
                .to_owned(),
        ),
        (
            "cartridge event deleted",
            "DELETE FROM cartridge_events WHERE id = (SELECT MIN(id) FROM cartridge_events)"
                .to_owned(),
        ),
        (
            "cartridge event edited",
            "UPDATE cartridge_events SET detail = 'nothing to see' \
             WHERE id = (SELECT MIN(id) FROM cartridge_events)"
                .to_owned(),
        ),
        (
            "access log entry deleted",
            "DELETE FROM access_log WHERE id = (SELECT MIN(id) FROM access_log)".to_owned(),
        ),
        (
            "access log entry edited",
            "UPDATE access_log SET token = 'someone-else' WHERE id = (SELECT MAX(id) FROM access_log)"
                .to_owned(),
        ),
        ("review deleted", "DELETE FROM reviews".to_owned()),
        ("review signer edited", "UPDATE reviews SET signer = 'Someone Else'".to_owned()),
        ("review meaning edited", "UPDATE reviews SET meaning = 'reviewed'".to_owned()),
        (
            "review period stretched",
            "UPDATE reviews SET until_ms = until_ms + 86400000".to_owned(),
        ),
        (
            "review copied to another clinic",
            "INSERT INTO reviews (signed_ms, signer, token, role, meaning, clinic_id, from_ms, \
             until_ms, head_seq, head_hash) SELECT signed_ms, signer, token, role, meaning, \
             'c-other', from_ms, until_ms, head_seq, head_hash FROM reviews"
                .to_owned(),
        ),
        (
            "chain entry edited",
            "UPDATE audit_chain SET body = replace(body, '\"exceeded\":true', '\"exceeded\":false') \
             WHERE seq = (SELECT MIN(seq) FROM audit_chain WHERE body LIKE '%\"exceeded\":true%')"
                .to_owned(),
        ),
        (
            "last chain entry deleted",
            "DELETE FROM audit_chain WHERE seq = (SELECT MAX(seq) FROM audit_chain)".to_owned(),
        ),
    ];
    let mut missed = Vec::new();
    for (name, sql) in &mutations {
        let copy = mutated(&original, dir.path(), &name.replace(' ', "-"), sql);
        let out = verify(&copy);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() || !stdout.contains("BROKEN") {
            missed.push(format!("{name}: {stdout}"));
        }
    }
    assert!(missed.is_empty(), "not caught:\n{}", missed.join("\n"));
}

/// A message of session `session` of salon pen `pen-late` (limit 1.0 mm).
fn late_message(
    session: &str,
    seq: u64,
    event: penwatch_proto::v1::Event,
    depth_mm: f64,
) -> penwatch_proto::v1::Telemetry {
    use penwatch_proto::v1::{DeviceClass, Zone};
    penwatch_proto::v1::Telemetry {
        device_id: "pen-late".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Salon.into(),
        model: "Pen-X".into(),
        firmware: "2.1.0".into(),
        operator_id: "op-1".into(),
        session_id: session.into(),
        cartridge_id: format!("cart-{session}"),
        cartridge_model: "N12".into(),
        seq,
        timestamp_ms: 1_790_000_000_000 + seq as i64 * 1000,
        event: event.into(),
        depth_mm,
        session_strokes: seq * 120,
        cartridge_strokes: seq * 120,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: Zone::Cheek.into(),
    }
}

/// A journal holding a session ended within its limit, then amended by two late batches (the
/// first raising a violation the record did not have, the second growing it).
async fn amended_journal(dir: &Path) -> PathBuf {
    use penwatch_proto::v1::Event;
    use prost::Message;
    let broker = Mosquitto::start().expect("broker");
    let mut gateway = Gateway::start(&broker.url(), dir, &[]).expect("gateway");
    let client = penwatch_tests::publisher(broker.port(), "late-pub");
    let mut sent = 0.0;
    let batches: [&[(u64, Event, f64)]; 3] = [
        &[
            (1, Event::SessionStart, 0.0),
            (2, Event::Sample, 0.5),
            (3, Event::SessionEnd, 0.0),
        ],
        &[(4, Event::Sample, 1.3)],
        &[(5, Event::Sample, 1.6)],
    ];
    for batch in batches {
        for (seq, event, depth) in batch {
            let t = late_message("s-late", *seq, *event, *depth);
            client
                .publish(
                    "clinics/c01/pens/pen-late/telemetry",
                    rumqttc::QoS::AtLeastOnce,
                    false,
                    t.encode_to_vec(),
                )
                .await
                .expect("publish");
            sent += 1.0;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while gateway.metric("penwatch_messages_accepted_total") < sent {
            assert!(Instant::now() < deadline, "gateway did not commit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(gateway.terminate().expect("terminate"), "{}", gateway.log());
    gateway.journal_path()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_deletion_and_edit_of_an_amendment_is_caught() {
    let dir = tempfile::tempdir().expect("temp dir");
    let original = amended_journal(dir.path()).await;
    let ok = verify(&original);
    assert!(
        ok.status.success(),
        "the untouched journal verifies: {}",
        String::from_utf8_lossy(&ok.stdout)
    );
    let conn = rusqlite::Connection::open(&original).expect("open");
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(count("SELECT COUNT(*) FROM amendments"), 2);
    assert_eq!(
        count("SELECT COUNT(*) FROM audit_chain WHERE kind = 'session'"),
        1
    );
    assert_eq!(count("SELECT amendment FROM violations"), 2);
    drop(conn);

    let late_sample = "(SELECT MAX(id) FROM sample_rows WHERE seq = 4)";
    let mutations = [
        (
            "late sample deleted",
            format!("DELETE FROM sample_rows WHERE id = {late_sample}"),
        ),
        (
            "late sample depth edited",
            format!("UPDATE sample_rows SET depth_mm = 0.9 WHERE id = {late_sample}"),
        ),
        (
            "amendment deleted",
            "DELETE FROM amendments WHERE number = 1".to_owned(),
        ),
        (
            "amendment record edited",
            "UPDATE amendments SET record = json_set(record, '$.max_depth_mm', 0.9) \
             WHERE number = 2"
                .to_owned(),
        ),
        (
            "amendment column edited",
            "UPDATE amendments SET new_violation = 0 WHERE number = 1".to_owned(),
        ),
        (
            "amendment made to reference another entry",
            "UPDATE amendments SET amends_seq = amends_seq + 1 WHERE number = 1".to_owned(),
        ),
        (
            "amended violation peak edited",
            "UPDATE violations SET peak_depth_mm = 1.1".to_owned(),
        ),
        (
            "amended violation passed off as the record's",
            "UPDATE violations SET amendment = 0".to_owned(),
        ),
        (
            "session record flipped to exceeded",
            "UPDATE sessions SET exceeded = 1".to_owned(),
        ),
        (
            "amendment entry deleted",
            "DELETE FROM audit_chain WHERE seq = (SELECT MAX(seq) FROM audit_chain)".to_owned(),
        ),
        (
            "amendment entries renumbered",
            "UPDATE amendments SET number = number + 10".to_owned(),
        ),
    ];
    let mut missed = Vec::new();
    for (name, sql) in &mutations {
        let copy = mutated(&original, dir.path(), &name.replace(' ', "-"), sql);
        let out = verify(&copy);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if out.status.success() || !stdout.contains("BROKEN") {
            missed.push(format!("{name}: {stdout}"));
        }
    }
    assert!(missed.is_empty(), "not caught:\n{}", missed.join("\n"));
}
