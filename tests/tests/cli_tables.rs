//! What the `penwatch` command line shows a person: unknown operators marked in every list of
//! sessions and violations, export times readable beside the Unix ms, and "no token" when
//! there is none.

use std::time::{Duration, Instant};

use penwatch_proto::v1::DeviceClass;
use penwatch_tests::api::{REVIEWER, Setup};
use serde_json::Value;

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_rfc3339_millis(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_tables_show_unknown_operators_csv_has_rfc3339_time_columns_and_no_token_says_so() {
    let mut setup = Setup::start().await;
    setup.publish_fixture().await;
    // An operator the policy does not know: judged by the most restrictive limit, exceeded.
    setup
        .session(
            "c01",
            "pen-c",
            DeviceClass::Salon,
            "op-temp",
            "s-c1",
            &[0.5, 0.9],
        )
        .await;
    setup.wait_committed();
    // Received is not yet committed: wait until the last session is closed in the journal.
    let deadline = Instant::now() + Duration::from_secs(20);
    let closed = || {
        serde_json::from_str::<Vec<Value>>(&setup.penwatch_ok(REVIEWER, &["sessions", "--json"]))
            .expect("JSON")
            .iter()
            .any(|s| s["session_id"] == "s-c1" && s["state"] == "closed")
    };
    while !closed() {
        assert!(Instant::now() < deadline, "session s-c1 never closed");
        std::thread::sleep(Duration::from_millis(100));
    }

    let sessions = setup.penwatch_ok(REVIEWER, &["sessions"]);
    assert!(sessions.contains("op-temp?"), "{sessions}");
    assert!(!sessions.contains("op-c01-1?"), "{sessions}");
    assert!(
        sessions.contains("? operator unknown to the policy"),
        "{sessions}"
    );
    let violations = setup.penwatch_ok(REVIEWER, &["violations"]);
    assert!(violations.contains("op-temp?"), "{violations}");
    assert!(!violations.contains("op-c01-1?"), "{violations}");
    let json: Vec<Value> =
        serde_json::from_str(&setup.penwatch_ok(REVIEWER, &["violations", "--json"]))
            .expect("JSON");
    for v in &json {
        assert_eq!(v["unknown_operator"], v["operator_id"] == "op-temp", "{v}");
    }

    let csv = setup.penwatch_ok(REVIEWER, &["export", "--format", "csv", "--samples"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().expect("header").clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("column {name}: {headers:?}"))
    };
    let pairs = [
        ("started_ms", "started"),
        ("last_ms", "last"),
        ("first_above_ms", "first_above"),
        ("last_above_ms", "last_above"),
        ("timestamp_ms", "timestamp"),
        ("received_ms", "received"),
    ];
    let mut seen = 0;
    for row in reader.records() {
        let row = row.expect("row");
        for (ms, at) in pairs {
            assert_eq!(column(at), column(ms) + 1, "{at} beside {ms}");
            let (ms, at) = (&row[column(ms)], &row[column(at)]);
            if ms.is_empty() {
                assert_eq!(at, "", "no time, no text");
            } else {
                assert!(is_rfc3339_millis(at), "{at:?} for {ms}");
                let seconds = ms.parse::<i64>().expect("ms") / 1000 % 60;
                assert_eq!(
                    at[17..19].parse::<i64>().ok(),
                    Some(seconds),
                    "{at} is {ms}"
                );
                seen += 1;
            }
        }
    }
    assert!(seen > 10, "{seen} times checked");

    for token in [None, Some(""), Some("  ")] {
        let mut cmd =
            std::process::Command::new(penwatch_tests::binary("penwatch").expect("built"));
        cmd.arg("whoami").env("PENWATCH_GATEWAY", &setup.api);
        match token {
            Some(t) => cmd.env("PENWATCH_TOKEN", t),
            None => cmd.env_remove("PENWATCH_TOKEN"),
        };
        let out = cmd.output().expect("run penwatch");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{token:?}: {stderr}");
        assert_eq!(
            stderr.trim(),
            "error: no token: pass --token or set PENWATCH_TOKEN",
            "{token:?}"
        );
    }
}
