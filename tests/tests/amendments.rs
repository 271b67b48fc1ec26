//! Late data for a closed session, against a real broker, InfluxDB 1.6, a webhook receiver and
//! the gateway: the session keeps exactly one final record; what arrives after it closed is an
//! amendment that references it, is chained, raises a violation found only in late data (live
//! stream and alert included), and reaches the API and InfluxDB as an amendment.

use std::time::{Duration, Instant};

use penwatch_gateway::journal::Reader;
use penwatch_proto::v1 as pb;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_tests::alerting::WebhookReceiver;
use penwatch_tests::api::{REVIEWER, Setup, export, export_req, req};
use penwatch_tests::{InfluxV1, http_get, http_status};
use serde_json::Value;

const DB: &str = "penwatch";
const SECRET: &str = "test-webhook-secret-0123456789";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// A message of session `session` of salon pen `pen-a` at clinic c01.
fn message(session: &str, seq: u64, event: Event, depth_mm: f64) -> Telemetry {
    Telemetry {
        device_id: "pen-a".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Salon.into(),
        model: "Pen-X".into(),
        firmware: "2.1.0".into(),
        operator_id: "op-c01-1".into(),
        session_id: session.into(),
        cartridge_id: format!("cart-{session}"),
        cartridge_model: "N12".into(),
        seq,
        timestamp_ms: now_ms() - 600_000 + seq as i64 * 1000,
        event: event.into(),
        depth_mm,
        session_strokes: seq * 120,
        cartridge_strokes: seq * 120,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: Zone::Cheek.into(),
    }
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The rows of an InfluxQL query's first series.
fn influxql(port: u16, q: &str) -> Vec<Vec<Value>> {
    let Some(body) = http_get(port, &format!("/query?db={DB}&q={}", enc(q))) else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&body).expect("query JSON");
    v["results"][0]["series"][0]["values"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .map(|r| r.as_array().cloned().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default()
}

fn influx_count(port: u16, q: &str) -> u64 {
    influxql(port, q)
        .first()
        .and_then(|r| r.get(1))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

/// The chain's entry kinds for one session, in chain order.
fn chained_kinds(setup: &Setup, session: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(setup.gateway().journal_path()).expect("journal");
    let mut stmt = conn
        .prepare(
            "SELECT kind FROM audit_chain WHERE json_extract(body, '$.session_id') = ?1 \
             ORDER BY seq",
        )
        .expect("query");
    stmt.query_map([session], |r| r.get(0))
        .expect("rows")
        .collect::<rusqlite::Result<_>>()
        .expect("kinds")
}

fn wait(setup: &Setup, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(
            Instant::now() < deadline,
            "{what} did not happen; log:\n{}",
            setup.gateway().log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

async fn session_detail(setup: &Setup, session: &str) -> pb::SessionDetail {
    let mut c = setup.client().await;
    c.get_session(req(
        pb::GetSessionRequest {
            device_id: "pen-a".into(),
            session_id: session.into(),
            max_points: 0,
        },
        REVIEWER,
    ))
    .await
    .expect("session")
    .into_inner()
}

/// Runs `penwatch` against the setup's gateway as the reviewer; stdout of a successful run.
fn penwatch(setup: &Setup, args: &[&str]) -> String {
    let out = std::process::Command::new(penwatch_tests::binary("penwatch").expect("built"))
        .args(args)
        .env("PENWATCH_GATEWAY", &setup.api)
        .env("PENWATCH_TOKEN", REVIEWER)
        .output()
        .expect("run penwatch");
    assert!(
        out.status.success(),
        "penwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn verifies(setup: &Setup) {
    // Beside the running gateway, which keeps writing (the access log).
    let v = Reader::open(&setup.gateway().journal_path())
        .expect("journal")
        .verify()
        .expect("verify");
    assert!(v.ok(), "{:?}", v.first_broken);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_late_sample_after_session_end_is_one_amendment_not_a_second_record() {
    let influx = InfluxV1::start().expect("influxd");
    assert_eq!(
        http_status(
            influx.port(),
            "POST",
            &format!("/query?q={}", enc(&format!("CREATE DATABASE {DB}")))
        ),
        Some(200)
    );
    let webhook = WebhookReceiver::start().expect("receiver");
    let mut setup = Setup::start_with_sections(&format!(
        "[influx]\napi = \"v1\"\nurl = \"{}\"\ndatabase = \"{DB}\"\nlinger_ms = 100\n\
         [alerts]\npoll_ms = 100\n[[alerts.webhooks]]\nname = \"desk\"\nurl = \"{}\"\n\
         secret = \"{SECRET}\"\nkinds = [\"violation\"]\n",
        influx.url(),
        webhook.url()
    ))
    .await;
    let mut c = setup.client().await;
    let mut live = c
        .watch_violations(req(pb::WatchViolationsRequest::default(), REVIEWER))
        .await
        .expect("watch")
        .into_inner();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Within the salon limit (1.0 mm), ended; then one sample at 1.4 mm after the end.
    for (seq, event, depth) in [
        (1, Event::SessionStart, 0.0),
        (2, Event::Sample, 0.5),
        (3, Event::Sample, 0.8),
        (4, Event::SessionEnd, 0.0),
    ] {
        setup.publish(&message("s-1", seq, event, depth)).await;
    }
    setup.wait_committed();
    let late = message("s-1", 5, Event::Sample, 1.4);
    setup.publish(&late).await;
    setup.wait_committed();
    // The same message again (a redelivery) is recognised, not a second amendment.
    setup.publish(&late).await;
    setup.wait_committed();

    assert_eq!(
        chained_kinds(&setup, "s-1"),
        ["session", "amendment"],
        "one final record, one amendment"
    );

    // The live stream raises the violation found only in late data, as amendment 1.
    let v = tokio::time::timeout(Duration::from_secs(10), live.message())
        .await
        .expect("a live violation")
        .expect("stream")
        .expect("a violation");
    assert_eq!(
        (v.session_id.as_str(), v.amendment, v.r#final),
        ("s-1", 1, true)
    );
    assert_eq!(v.evidence.expect("evidence").peak_depth_mm, 1.4);

    // The API: the record as closed, and its amendment.
    let detail = session_detail(&setup, "s-1").await;
    let s = detail.session.expect("session");
    assert_eq!(
        (s.state.as_str(), s.close_reason.as_str(), s.exceeded),
        ("closed", "ended", false)
    );
    assert_eq!(
        (s.amendments, s.exceeded_by_amendment, s.max_depth_mm),
        (1, true, 0.8)
    );
    let [a] = detail.amendments.as_slice() else {
        panic!("one amendment: {:?}", detail.amendments);
    };
    assert_eq!((a.number, a.reason.as_str()), (1, "late_after_end"));
    assert_eq!((a.messages, a.first_seq, a.last_seq), (1, 5, 5));
    assert!(a.new_violation && a.violation_changed && a.exceeded && a.ended);
    assert_eq!(a.max_depth_mm, 1.4);
    assert!(a.amends_audit_seq > 0 && a.amends_audit_seq < a.audit_seq);
    let listed = c
        .list_violations(req(pb::ListViolationsRequest::default(), REVIEWER))
        .await
        .expect("violations")
        .into_inner()
        .violations;
    let [lv] = listed.as_slice() else {
        panic!("one violation: {listed:?}");
    };
    assert_eq!(
        (lv.amendment, lv.session_amendments, lv.r#final),
        (1, 1, true)
    );
    verifies(&setup);

    // The command line shows the record and, under it, its amendment.
    let shown = penwatch(&setup, &["session", "pen-a", "s-1"]);
    assert!(
        shown.contains("AMENDMENT 1 (late after end")
            && shown.contains("NEW VIOLATION: peak 1.40 mm over a 1.00 mm limit"),
        "{shown}"
    );
    let listed = penwatch(&setup, &["violations"]);
    assert!(listed.contains("closed, by amendment 1"), "{listed}");

    // The export: the session row as recorded, its violation (raised by amendment 1) and the
    // amendment's own row.
    let (csv, last) = export(&mut c, req(export_req(None, "csv", false), REVIEWER)).await;
    assert!(last.chain_ok);
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let header = rows.headers().expect("header").clone();
    let col = |name: &str| header.iter().position(|h| h == name).expect(name);
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("row")).collect();
    let rows: Vec<&csv::StringRecord> = rows
        .iter()
        .filter(|r| ["session", "violation", "amendment"].contains(&&r[col("record")]))
        .collect();
    let kinds: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (&r[col("record")], &r[col("amendment")]))
        .collect();
    assert_eq!(
        kinds,
        [("session", ""), ("violation", "1"), ("amendment", "1")],
        "{csv}"
    );
    let amendment = &rows[2];
    assert_eq!(&amendment[col("amendment_reason")], "late_after_end");
    assert_eq!(&amendment[col("peak_depth_mm")], "1.4");
    assert_eq!(&amendment[col("new_violation")], "true");
    assert_eq!(&rows[0][col("amendments")], "1");
    assert_eq!(&rows[0][col("exceeded")], "false");
    // The JSONL export of a journal holding an amendment still verifies offline.
    let (jsonl, _) = export(&mut c, req(export_req(None, "jsonl", true), REVIEWER)).await;
    let file = setup
        .gateway()
        .journal_path()
        .with_file_name("export.jsonl");
    std::fs::write(&file, &jsonl).expect("write export");
    let out = std::process::Command::new(penwatch_tests::binary("penwatch").expect("built"))
        .args(["verify-export", &file.display().to_string()])
        .env("PENWATCH_GATEWAY", "http://127.0.0.1:9")
        .output()
        .expect("verify-export");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(", 1 amendments, "), "{said}");
    let amended: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("line"))
        .filter(|v: &serde_json::Value| v["record"] == "amendment")
        .collect();
    assert_eq!(amended.len(), 1, "the amendment is a line of its own");
    assert_eq!(amended[0]["reason"], "late_after_end");
    // The late sample's depth changed in the file: its amendment's digest catches it.
    let late = jsonl
        .lines()
        .skip_while(|l| !l.contains("\"record\":\"amendment\""))
        .find(|l| l.contains("\"record\":\"sample\"") && l.contains("\"depth_mm\":1.4"))
        .expect("the late sample's line");
    std::fs::write(
        &file,
        jsonl.replace(late, &late.replace("\"depth_mm\":1.4", "\"depth_mm\":0.4")),
    )
    .expect("write edited export");
    let out = std::process::Command::new(penwatch_tests::binary("penwatch").expect("built"))
        .args(["verify-export", &file.display().to_string()])
        .output()
        .expect("verify-export");
    assert!(!out.status.success(), "an edited late sample is caught");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("the samples amendment 1 of session"),
        "{said}"
    );

    // With samples: the record's, then the amendment's, marked with it.
    let (csv, _) = export(&mut c, req(export_req(None, "csv", true), REVIEWER)).await;
    let mut rows = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.expect("row")).collect();
    let samples: Vec<(&str, &str, &str)> = rows
        .iter()
        .filter(|r| ["sample", "amendment"].contains(&&r[col("record")]))
        .map(|r| (&r[col("record")], &r[col("seq")], &r[col("amendment")]))
        .collect();
    assert_eq!(
        samples,
        [
            ("sample", "1", ""),
            ("sample", "2", ""),
            ("sample", "3", ""),
            ("sample", "4", ""),
            ("amendment", "", "1"),
            ("sample", "5", "1")
        ],
        "{csv}"
    );

    // The alert carries the amendment.
    wait(&setup, "the amended violation's alert", || {
        webhook
            .received()
            .iter()
            .any(|r| r.json()["details"]["amendment"] == 1)
    });
    let alert = webhook
        .received()
        .into_iter()
        .find(|r| r.json()["details"]["amendment"] == 1)
        .expect("alert")
        .json();
    assert!(
        alert["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("amendment 1 (late after end)")),
        "{alert}"
    );

    // InfluxDB: one pen_session point, one pen_session_amendment point beside it.
    wait(&setup, "the amendment in InfluxDB", || {
        influx_count(
            influx.port(),
            "SELECT COUNT(messages) FROM pen_session_amendment",
        ) >= 1
    });
    assert_eq!(
        influx_count(influx.port(), "SELECT COUNT(strokes) FROM pen_session"),
        1
    );
    let rows = influxql(
        influx.port(),
        "SELECT amendment, new_violation, peak_depth_mm, reason FROM pen_session_amendment",
    );
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        rows[0][1..],
        [
            Value::from(1),
            Value::from(true),
            Value::from(1.4),
            Value::from("late_after_end")
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_closed_for_inactivity_and_completed_by_a_replayed_buffer_keeps_one_record() {
    let mut setup = Setup::start_with_sections("[sessions]\ninactivity_timeout_s = 1\n").await;
    for (seq, event, depth) in [
        (1, Event::SessionStart, 0.0),
        (2, Event::Sample, 0.5),
        (3, Event::Sample, 0.6),
    ] {
        setup.publish(&message("s-2", seq, event, depth)).await;
    }
    setup.wait_committed();
    wait(&setup, "the inactivity close", || {
        chained_kinds(&setup, "s-2") == ["session"]
    });

    // The pen's offline buffer, replayed: more treatment, one sample over 1.0 mm, the end.
    for (seq, event, depth) in [
        (4, Event::Sample, 0.7),
        (5, Event::Sample, 1.2),
        (6, Event::Sample, 0.5),
        (7, Event::SessionEnd, 0.0),
    ] {
        setup.publish(&message("s-2", seq, event, depth)).await;
    }
    setup.wait_committed();
    // Longer than the inactivity timeout: nothing closes the session a second time.
    tokio::time::sleep(Duration::from_millis(2500)).await;

    let kinds = chained_kinds(&setup, "s-2");
    assert_eq!(kinds[0], "session");
    assert!(
        kinds.len() >= 2 && kinds[1..].iter().all(|k| k == "amendment"),
        "one record, then amendments only: {kinds:?}"
    );
    let detail = session_detail(&setup, "s-2").await;
    let s = detail.session.expect("session");
    assert_eq!(
        (s.close_reason.as_str(), s.exceeded, s.amendments as usize),
        ("inactive", false, kinds.len() - 1)
    );
    assert!(
        detail
            .amendments
            .iter()
            .all(|a| a.reason == "replay_after_inactive")
    );
    assert_eq!(
        detail.amendments.iter().map(|a| a.messages).sum::<u64>(),
        4,
        "every replayed message is in exactly one amendment"
    );
    let last = detail.amendments.last().expect("an amendment");
    assert!(last.ended && last.exceeded);
    assert_eq!(last.strokes, 7 * 120);
    assert_eq!(
        detail.amendments.iter().filter(|a| a.new_violation).count(),
        1,
        "the violation is raised once"
    );
    verifies(&setup);
}
