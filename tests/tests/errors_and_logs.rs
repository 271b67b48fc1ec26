//! What the programs print when they fail, and what the gateway's logs look like to a file
//! or a log shipper: one `error:` line with its causes, no backtrace, no colour codes.

use std::process::{Command, Output, Stdio};

use penwatch_tests::{Gateway, Mosquitto, binary};
use serde_json::Value;

fn run(program: &str, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary(program).expect("built binaries"))
        .args(args)
        .env_remove("PENWATCH_CONFIG")
        .env_remove("PENWATCH_DASHBOARD_CONFIG")
        .env_remove("PENWATCH_LOG_FORMAT")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run")
}

/// Asserts that stderr is one `error: …` line naming `what`, without a backtrace.
fn one_error_line(out: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    assert!(lines[0].contains(what), "names {what}: {stderr}");
    assert!(!stderr.contains("Caused by"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
}

#[test]
fn a_config_error_is_printed_once_with_no_backtrace_even_with_rust_backtrace_set() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing.toml").display().to_string();
    let backtrace = [("RUST_BACKTRACE", "1"), ("RUST_LIB_BACKTRACE", "1")];

    let out = run(
        "penwatch-gateway",
        &["--config", &missing, "check-config"],
        &backtrace,
    );
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    one_error_line(&out, "missing.toml");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("No such file").count(),
        1,
        "the cause once: {stderr}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[ingest]\nbatch_max = 0\n").expect("config");
    let out = run(
        "penwatch-gateway",
        &["--config", &bad.display().to_string(), "check-config"],
        &backtrace,
    );
    assert_eq!(out.status.code(), Some(78));
    one_error_line(&out, "ingest.batch_max: must be from 1 to 100000");

    // A TOML error keeps the parser's pointer to the line, and is printed once.
    std::fs::write(&bad, "[journal]\nretention_days = -1\n").expect("config");
    let out = run(
        "penwatch-gateway",
        &["--config", &bad.display().to_string(), "check-config"],
        &backtrace,
    );
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("error: config file "), "{stderr}");
    assert_eq!(stderr.matches("retention_days = -1").count(), 1, "{stderr}");
    assert!(!stderr.contains("Caused by"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");

    let out = run("penwatch-dashboard", &["--config", &missing], &backtrace);
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "missing.toml");

    let out = run(
        "penwatch",
        &[
            "--gateway",
            "https://127.0.0.1:1",
            "--ca-cert",
            &missing,
            "--token",
            "x",
            "whoami",
        ],
        &backtrace,
    );
    assert_eq!(out.status.code(), Some(2), "usage");
    one_error_line(&out, "missing.toml");

    let out = run(
        "penwatch-sim",
        &["--credentials", &missing, "--duration", "1s"],
        &backtrace,
    );
    assert_eq!(out.status.code(), Some(1));
    one_error_line(&out, "missing.toml");
}

#[test]
fn a_shared_subscription_is_refused_at_start_with_why_and_what_to_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let journal = dir.path().join("journal.db").display().to_string();
    let out = run(
        "penwatch-gateway",
        &[
            "--journal",
            &journal,
            "--topic",
            "$share/gw/clinics/+/pens/+/telemetry",
            "check-config",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(78), "EX_CONFIG");
    one_error_line(
        &out,
        "mqtt.topics: \"$share/gw/clinics/+/pens/+/telemetry\" is a shared subscription",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Scaling out"), "{stderr}");
}

#[test]
fn gateway_logs_written_to_a_file_have_no_escape_codes() {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateway = Gateway::start_on(&broker, dir.path(), &[]).expect("gateway");
    assert!(gateway.terminate().expect("terminate"));
    let log = gateway.log();
    assert!(log.contains("gateway starting"), "{log}");
    assert!(!log.contains('\u{1b}'), "{log:?}");
}

#[test]
fn gateway_log_format_json_writes_lines_that_parse_as_json() {
    let broker = Mosquitto::start().expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut gateway =
        Gateway::start_on(&broker, dir.path(), &["--log-format", "json"]).expect("gateway");
    assert!(gateway.terminate().expect("terminate"));
    let log = gateway.log();
    let lines: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(lines.len() >= 2, "{log}");
    let start = lines
        .iter()
        .find(|l| l["message"] == "gateway starting")
        .unwrap_or_else(|| panic!("start line: {log}"));
    assert_eq!(start["level"], "INFO");
    assert!(
        start["broker"].is_string(),
        "fields at the top level: {start}"
    );
    assert!(start["timestamp"].is_string(), "{start}");

    // The environment variable does the same, and the final error is a JSON line too.
    let missing = dir.path().join("missing.toml").display().to_string();
    let out = run(
        "penwatch-gateway",
        &["--config", &missing, "check-config"],
        &[("PENWATCH_LOG_FORMAT", "json")],
    );
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line: Value = serde_json::from_str(stderr.trim()).expect("one JSON line");
    assert_eq!(line["level"], "ERROR");
    assert!(
        line["error"]
            .as_str()
            .is_some_and(|e| e.contains("missing.toml")),
        "{line}"
    );
}
