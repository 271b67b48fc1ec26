//! `penwatch violations --follow` reads like a feed: a growing violation is printed once when
//! raised and once when final; `--updates` adds the updates between.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_tests::api::{REVIEWER, Setup};

/// Follows violations (as JSON lines) while a session with five over-depth samples is
/// published; returns the `feed` mark of every line about it, once its final record arrived.
async fn follow(updates: bool) -> Vec<String> {
    let mut setup = Setup::start().await;
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let mut args = vec!["--json", "violations", "--follow"];
    if updates {
        args.push("--updates");
    }
    let mut child = Command::new(&cli)
        .args(&args)
        .env("PENWATCH_GATEWAY", &setup.api)
        .env("PENWATCH_TOKEN", REVIEWER)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("penwatch --follow");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    // The stream is open once it says so on stderr.
    let mut banner = String::new();
    stderr.read_line(&mut banner).expect("banner");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // One message a commit, so the violation is raised, grows, then ends in separate commits.
    let base_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
        - 60_000;
    let depths = [0.0, 0.75, 0.8, 0.85, 0.9, 0.95, 0.0];
    for (i, depth) in depths.iter().enumerate() {
        let seq = i as u64 + 1;
        let event = match i {
            0 => Event::SessionStart,
            6 => Event::SessionEnd,
            _ => Event::Sample,
        };
        setup
            .publish(&Telemetry {
                device_id: "pen-f".into(),
                clinic_id: "c01".into(),
                device_class: DeviceClass::Home.into(),
                model: "Pen-X".into(),
                firmware: "2.1.0".into(),
                operator_id: "op-c01-1".into(),
                session_id: "s-follow".into(),
                cartridge_id: "cart-follow".into(),
                cartridge_model: "N12".into(),
                seq,
                timestamp_ms: base_ms + seq as i64 * 1000,
                event: event.into(),
                depth_mm: *depth,
                session_strokes: seq * 100,
                cartridge_strokes: seq * 100,
                speed_hz: 120.0,
                battery_pct: 80.0,
                zone: Zone::Cheek.into(),
            })
            .await;
        let committed = Instant::now() + Duration::from_secs(20);
        while setup.gateway().metric("penwatch_messages_accepted_total") < seq as f64 {
            assert!(Instant::now() < committed, "message {seq} not committed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut marks = Vec::new();
    while !marks.iter().any(|m| m == "final") {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).expect("a final record in time");
        let v: serde_json::Value = serde_json::from_str(&line).expect("JSON line");
        if v["session_id"] == "s-follow" {
            marks.push(v["feed"].as_str().unwrap_or_default().to_owned());
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    marks
}

#[tokio::test(flavor = "multi_thread")]
async fn a_growing_violation_is_printed_once_when_raised_and_once_when_final() {
    assert_eq!(follow(false).await, ["new", "final"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn updates_add_the_growing_evidence_between() {
    let marks = follow(true).await;
    assert_eq!(marks.first().map(String::as_str), Some("new"));
    assert_eq!(marks.last().map(String::as_str), Some("final"));
    assert!(
        marks.iter().filter(|m| *m == "update").count() >= 1,
        "{marks:?}"
    );
}
