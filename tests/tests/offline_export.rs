//! A JSONL export from a real gateway after a simulator run, verified offline by
//! `penwatch verify-export` (with no gateway reachable); then every kind of record line is
//! changed, deleted or moved, and each change must be caught and its line named.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use penwatch_proto::v1 as pb;
use penwatch_proto::v1::pen_watch_client::PenWatchClient;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{Scenario, SimConfig};
use penwatch_tests::{Gateway, Mosquitto, fleet_pens};
use serde_json::Value;
use tonic::Request;

const REVIEWER: &str = "token-reviewer-0123456789";
const MANAGER: &str = "token-manager-c01-0123456789";

fn penwatch(gateway: &str, token: &str, args: &[&str]) -> Output {
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    Command::new(cli)
        .args(args)
        .env("PENWATCH_GATEWAY", gateway)
        .env("PENWATCH_TOKEN", token)
        .output()
        .expect("run penwatch")
}

/// `penwatch verify-export FILE` with no gateway to reach.
fn verify_export(file: &Path) -> Output {
    penwatch(
        "http://127.0.0.1:9",
        "",
        &["verify-export", &file.display().to_string()],
    )
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// The export with `edit` applied to its lines, written to `file`.
fn write_edited(file: &Path, lines: &[String], edit: impl FnOnce(&mut Vec<String>)) {
    let mut lines = lines.to_vec();
    edit(&mut lines);
    std::fs::write(file, lines.join("\n") + "\n").expect("write");
}

/// The first line of this record kind (and a filter), its index.
fn find(lines: &[String], record: &str, pred: impl Fn(&Value) -> bool) -> usize {
    lines
        .iter()
        .position(|l| {
            let v: Value = serde_json::from_str(l).expect("json");
            v["record"] == record && pred(&v)
        })
        .unwrap_or_else(|| panic!("a {record} line"))
}

/// A line with one field changed, written canonically (so only its meaning changed).
fn with_field(line: &str, field: &str, f: impl FnOnce(&Value) -> Value) -> String {
    let mut v: Value = serde_json::from_str(line).expect("json");
    v[field] = f(&v[field]);
    v.to_string()
}

fn plus(by: f64) -> impl FnOnce(&Value) -> Value {
    move |v| (v.as_f64().expect("number") + by).into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jsonl_export_verifies_offline_and_every_changed_record_is_caught() {
    let seed = 47;
    let broker = Mosquitto::start_authenticated(fleet_pens(seed, 2, 2)).expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        penwatch_sim::policy::policy_toml(&Fleet::generate(seed, 2, 2)),
    )
    .expect("policy");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[api]\n[[api.tokens]]\nname = \"reviewer\"\ntoken = \"{REVIEWER}\"\nrole = \"reviewer\"\n\
             [[api.tokens]]\nname = \"mgr\"\ntoken = \"{MANAGER}\"\nrole = \"clinic-manager\"\nclinics = [\"c01\"]\n"
        ),
    )
    .expect("config");
    let gateway = Gateway::start_on(
        &broker,
        dir.path(),
        &[
            "--config",
            &config.display().to_string(),
            "--policy",
            &policy.display().to_string(),
        ],
    )
    .expect("gateway");
    let api = format!("http://127.0.0.1:{}", gateway.api_port());
    let truth = penwatch_sim::run(
        SimConfig {
            broker: broker.url().parse().expect("url"),
            credentials: broker.credentials_file(),
            clinics: 2,
            pens_per_clinic: 2,
            seed,
            scenarios: vec![Scenario::OverDepth, Scenario::CartridgeReuse],
            speed: 2000.0,
            sessions_per_pen: Some(3),
            ..SimConfig::default()
        },
        std::future::pending::<()>(),
    )
    .await
    .expect("sim");
    assert!(truth.exceeded().next().is_some(), "some sessions exceeded");

    // Every session closed (chained) before exporting.
    let mut client = PenWatchClient::connect(api.clone()).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut r = Request::new(pb::ListSessionsRequest {
            page_size: 1000,
            ..Default::default()
        });
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {REVIEWER}").parse().expect("ascii"),
        );
        let sessions = client
            .list_sessions(r)
            .await
            .expect("sessions")
            .into_inner();
        if !sessions.sessions.is_empty() && sessions.sessions.iter().all(|s| s.state == "closed") {
            break;
        }
        assert!(Instant::now() < deadline, "sessions still open");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let out = penwatch(
        &api,
        REVIEWER,
        &["export", "--format", "jsonl", "--samples"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let file = dir.path().join("export.jsonl");
    std::fs::write(&file, &out.stdout).expect("write");
    let head = text(&out.stderr);
    let head = head
        .split_whitespace()
        .nth(3)
        .expect("export prints the head");
    let lines: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();

    let ok = verify_export(&file);
    let said = text(&ok.stdout);
    assert!(ok.status.success(), "{said}{}", text(&ok.stderr));
    assert!(said.starts_with("OK: "), "{said}");
    assert!(
        said.contains(head),
        "the head the export was taken at: {said}"
    );
    for kind in [
        "session",
        "violation",
        "sample",
        "cartridge_event",
        "chain",
        "head",
    ] {
        find(&lines, kind, |_| true);
    }

    // An exceeded session's line, its violation's (next) and its first sample's.
    let session = find(&lines, "session", |v| v["exceeded"] == true);
    let id = serde_json::from_str::<Value>(&lines[session]).expect("json")["session_id"].clone();
    let violation = session + 1;
    assert!(lines[violation].contains("\"record\":\"violation\""));
    let sample = find(&lines, "sample", |v| v["session_id"] == id);
    let other_session_sample = find(&lines, "sample", |v| v["session_id"] != id);
    let event = find(&lines, "cartridge_event", |_| true);
    let chain = find(&lines, "chain", |_| true);
    let last_chain = lines.len() - 2;
    let head_line = lines.len() - 1;
    type Edit = Box<dyn FnOnce(&mut Vec<String>)>;
    let mutations: Vec<(&str, Option<usize>, Edit)> = vec![
        (
            "a sample's depth",
            Some(session),
            Box::new(move |l| l[sample] = with_field(&l[sample], "depth_mm", plus(0.1))),
        ),
        (
            "a session's peak",
            Some(session),
            Box::new(move |l| l[session] = with_field(&l[session], "max_depth_mm", plus(-0.1))),
        ),
        (
            "a session's operator",
            Some(session),
            Box::new(move |l| {
                l[session] = with_field(&l[session], "operator_id", |_| "op-x".into())
            }),
        ),
        (
            "a violation's excess",
            Some(violation),
            Box::new(move |l| l[violation] = with_field(&l[violation], "excess_mm", plus(-0.1))),
        ),
        (
            "a cartridge event's detail",
            Some(event),
            Box::new(move |l| l[event] = with_field(&l[event], "detail", |_| "fine".into())),
        ),
        (
            "a chain entry's hash",
            Some(chain),
            Box::new(move |l| {
                l[chain] = with_field(&l[chain], "hash", |h| {
                    let h = h.as_str().expect("hash");
                    format!("{}{}", &h[..63], if h.ends_with('0') { '1' } else { '0' }).into()
                })
            }),
        ),
        (
            "a sample deleted",
            Some(session),
            Box::new(move |l| {
                l.remove(sample);
            }),
        ),
        (
            "a violation deleted",
            Some(session),
            Box::new(move |l| {
                l.remove(violation);
            }),
        ),
        (
            "a chain entry deleted",
            None,
            Box::new(move |l| {
                l.remove(last_chain - 1);
            }),
        ),
        (
            "the head deleted",
            None,
            Box::new(move |l| {
                l.remove(head_line);
            }),
        ),
        (
            "two samples swapped",
            Some(session),
            Box::new(move |l| l.swap(sample, sample + 1)),
        ),
        (
            "a sample moved to another session",
            None,
            Box::new(move |l| {
                let moved = l.remove(other_session_sample);
                l.insert(sample, moved);
            }),
        ),
        (
            "a space added",
            Some(sample),
            Box::new(move |l| l[sample] = l[sample].replacen(':', ": ", 1)),
        ),
    ];
    let edited = dir.path().join("edited.jsonl");
    for (what, line, edit) in mutations {
        write_edited(&edited, &lines, edit);
        let out = verify_export(&edited);
        let said = text(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{what} was not caught: {said}");
        assert!(said.contains("FAILED"), "{what}: {said}");
        if let Some(n) = line {
            assert!(
                said.contains(&format!("line {}:", n + 1)),
                "{what}: line {} named in {said}",
                n + 1
            );
        }
    }

    // A clinic manager's export withholds the other clinics' entries: it says it cannot be
    // verified offline rather than passing.
    let scoped = penwatch(&api, MANAGER, &["export", "--format", "jsonl", "--samples"]);
    assert!(scoped.status.success(), "{}", text(&scoped.stderr));
    let scoped_file = dir.path().join("scoped.jsonl");
    std::fs::write(&scoped_file, &scoped.stdout).expect("write");
    let out = verify_export(&scoped_file);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stdout).contains("withheld"),
        "{}",
        text(&out.stdout)
    );
}
