//! One fleet for its readers across several gateways: three gateways on one broker, each
//! subscribed to its own clinic's topics with its own journal and API, fed by the simulator.
//! The `penwatch` command line given the three addresses lists what the three list together,
//! in the order one gateway would, and the simulator's sessions and verdicts; it follows the
//! three live feeds as one; a clinic manager's token sees their clinic only; `verify`
//! checks every chain; `export --out-dir` writes one file per gateway that verifies offline;
//! a stopped gateway makes the command fail naming it.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use penwatch_dashboard::app::{App, Msg};
use penwatch_dashboard::client::Settings;
use penwatch_proto::client::{Connector, Fleet};
use penwatch_sim::fleet::Fleet as SimFleet;
use penwatch_sim::{Scenario, SimConfig};
use penwatch_tests::{Gateway, Mosquitto, wait_for};
use serde_json::Value;

const REVIEWER: &str = "token-reviewer-0123456789";
/// A clinic manager's token, scoped to c02 on every gateway.
const MANAGER_C02: &str = "token-manager-c02-0123456789";
const CLINICS: u32 = 3;
const SEED: u64 = 43;

/// Starts the gateway of clinic `clinic` (`c01`…), subscribed to its topics only.
fn gateway(broker: &Mosquitto, dir: &Path, policy: &Path, clinic: &str) -> Gateway {
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[mqtt]\nclient_id = \"penwatch-{clinic}\"\n\
             topics = [\"clinics/{clinic}/pens/+/telemetry\", \"clinics/{clinic}/pens/+/status\"]\n\
             [api]\n[[api.tokens]]\nname = \"reviewer\"\ntoken = \"{REVIEWER}\"\nrole = \"reviewer\"\n\
             [[api.tokens]]\nname = \"manager-c02\"\ntoken = \"{MANAGER_C02}\"\n\
             role = \"clinic-manager\"\nclinics = [\"c02\"]\n"
        ),
    )
    .expect("config");
    Gateway::start_on(
        broker,
        dir,
        &[
            "--config",
            &config.display().to_string(),
            "--policy",
            &policy.display().to_string(),
        ],
    )
    .expect("gateway")
}

/// `penwatch` against `gateways` (comma-separated) with `token`, not yet run.
fn command(gateways: &str, token: &str, args: &[&str]) -> Command {
    let cli = penwatch_tests::binary("penwatch").expect("penwatch built");
    let mut command = Command::new(cli);
    command
        .args(args)
        .env("PENWATCH_GATEWAY", gateways)
        .env("PENWATCH_TOKEN", token);
    command
}

/// `penwatch` with the reviewer's token against `gateways` (comma-separated).
fn penwatch(gateways: &str, args: &[&str]) -> Output {
    command(gateways, REVIEWER, args)
        .output()
        .expect("run penwatch")
}

/// Its `--json` output, asserting it succeeded.
fn json(gateways: &str, args: &[&str]) -> Value {
    json_as(gateways, REVIEWER, args)
}

/// Its `--json` output with `token`, asserting it succeeded.
fn json_as(gateways: &str, token: &str, args: &[&str]) -> Value {
    let out = command(gateways, token, args)
        .output()
        .expect("run penwatch");
    assert!(
        out.status.success(),
        "penwatch {args:?} on {gateways}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn rows(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// One gateway's rows as a merged list shows them: each with a `"gateway"` member.
fn held_by(rows: &[Value], gateway: &str) -> Vec<Value> {
    rows.iter()
        .map(|r| {
            let mut r = r.clone();
            r["gateway"] = Value::String(gateway.to_owned());
            r
        })
        .collect()
}

/// A row's place in a newest-first list: (started, device, session).
fn position(row: &Value, started: &str) -> (i64, String, String) {
    (
        row[started].as_i64().unwrap_or_default(),
        row["device_id"].as_str().unwrap_or_default().to_owned(),
        row["session_id"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The per-gateway answers together, newest session first as one gateway sorts, each row
/// naming the gateway it came from (`gateways`, one per part).
fn union_newest_first(parts: &[Vec<Value>], gateways: &[String], started: &str) -> Vec<Value> {
    let mut all: Vec<Value> = parts
        .iter()
        .zip(gateways)
        .flat_map(|(rows, gateway)| held_by(rows, gateway))
        .collect();
    all.sort_by_key(|r| std::cmp::Reverse(position(r, started)));
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn three_gateways_read_as_one_fleet_and_a_stopped_one_is_named() {
    let broker = Mosquitto::start().expect("broker");
    let dirs: Vec<tempfile::TempDir> = (0..CLINICS)
        .map(|_| tempfile::tempdir().expect("temp dir"))
        .collect();
    let policy = dirs[0].path().join("policy.toml");
    std::fs::write(
        &policy,
        penwatch_sim::policy::policy_toml(&SimFleet::generate(SEED, CLINICS, 2)),
    )
    .expect("policy");
    let mut gateways: Vec<Gateway> = (0..CLINICS as usize)
        .map(|i| {
            let clinic = format!("c{:02}", i + 1);
            gateway(&broker, dirs[i].path(), &policy, &clinic)
        })
        .collect();
    let addresses: Vec<String> = gateways
        .iter()
        .map(|g| format!("http://127.0.0.1:{}", g.api_port()))
        .collect();
    let all = addresses.join(",");

    // The three gateways' live violation feeds, merged, followed while the simulator runs.
    let mut follow = command(&all, REVIEWER, &["--json", "violations", "--follow"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("penwatch --follow");
    let mut banner = String::new();
    BufReader::new(follow.stderr.take().expect("stderr"))
        .read_line(&mut banner)
        .expect("the feed is open once it says so");
    let (feed_tx, feed) = std::sync::mpsc::channel::<Value>();
    let stdout = follow.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = feed_tx.send(serde_json::from_str(&line).expect("a JSON line"));
        }
    });

    let truth = penwatch_sim::run(
        SimConfig {
            broker: broker.url().parse().expect("url"),
            clinics: CLINICS,
            pens_per_clinic: 2,
            seed: SEED,
            scenarios: vec![Scenario::Normal, Scenario::OverDepth],
            speed: 2000.0,
            sessions_per_pen: Some(2),
            ..SimConfig::default()
        },
        std::future::pending::<()>(),
    )
    .await
    .expect("sim");
    let closed = |g: &str| {
        rows(&json(g, &["--json", "sessions", "--limit", "1000"]))
            .iter()
            .filter(|s| s["state"] == "closed")
            .count()
    };
    wait_for(
        "every session closed on its gateway",
        Duration::from_secs(30),
        || addresses.iter().map(|g| closed(g)).sum::<usize>() == truth.sessions.len(),
    );

    // Sessions: the union of the three, in one gateway's order, and the simulator's.
    let sessions_per: Vec<Vec<Value>> = addresses
        .iter()
        .map(|g| rows(&json(g, &["--json", "sessions", "--limit", "1000"])))
        .collect();
    assert!(
        sessions_per.iter().all(|p| !p.is_empty()),
        "each gateway holds its clinic's sessions"
    );
    let merged = rows(&json(&all, &["--json", "sessions", "--limit", "1000"]));
    assert_eq!(
        merged,
        union_newest_first(&sessions_per, &addresses, "started_ms"),
        "merged, each session naming the gateway that holds it"
    );
    let ids = |rows: &[Value]| -> BTreeSet<String> {
        rows.iter()
            .map(|r| r["session_id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let truth_ids: BTreeSet<String> = truth
        .sessions
        .iter()
        .map(|s| s.session_id.clone())
        .collect();
    assert_eq!(ids(&merged), truth_ids, "the simulator's sessions");
    let limited = rows(&json(&all, &["--json", "sessions", "--limit", "4"]));
    assert_eq!(
        limited,
        merged[..4],
        "a limit keeps the newest over the fleet"
    );

    // Violations: the union, and exactly the sessions the simulator drove over a limit.
    let per: Vec<Vec<Value>> = addresses
        .iter()
        .map(|g| rows(&json(g, &["--json", "violations", "--limit", "1000"])))
        .collect();
    let merged_violations = rows(&json(&all, &["--json", "violations", "--limit", "1000"]));
    assert_eq!(
        merged_violations,
        union_newest_first(&per, &addresses, "session_started_ms")
    );
    let exceeded: BTreeSet<String> = truth.exceeded().map(|s| s.session_id.clone()).collect();
    assert!(!exceeded.is_empty(), "the scenario exceeds somewhere");
    assert_eq!(ids(&merged_violations), exceeded);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut finals = BTreeSet::new();
    while finals != exceeded {
        let line = feed
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the merged feed's finals: {finals:?} of {exceeded:?}"));
        if line["feed"] == "final" {
            finals.insert(line["session_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    let _ = follow.kill();
    let _ = follow.wait();

    // The same token goes to each gateway, which scopes it: a manager of c02 sees c02 only.
    let scoped = rows(&json_as(
        &all,
        MANAGER_C02,
        &["--json", "sessions", "--limit", "1000"],
    ));
    assert_eq!(
        scoped,
        held_by(&sessions_per[1], &addresses[1]),
        "c02's sessions, from c02's gateway"
    );

    // Pens: every gateway's, by clinic then pen.
    let pens = rows(&json(&all, &["--json", "fleet"]));
    let pen_ids: Vec<&str> = pens
        .iter()
        .map(|p| p["device_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(pen_ids.len(), (CLINICS * 2) as usize);
    assert!(pen_ids.is_sorted(), "{pen_ids:?}");
    for p in &pens {
        let clinic = p["clinic_id"].as_str().unwrap_or_default();
        let home: usize = clinic[1..].parse().expect("clinic number");
        assert_eq!(p["gateway"], addresses[home - 1].as_str(), "{p}");
    }

    // One session looked up on whichever gateway holds it.
    let some = &truth.sessions[truth.sessions.len() - 1];
    let detail = json(
        &all,
        &["--json", "session", &some.device_id, &some.session_id],
    );
    assert_eq!(detail["session"]["session_id"], some.session_id.as_str());

    // The shared client pages the fleet by its own token: pages of 3 give the whole list.
    let connectors: Vec<Connector> = addresses
        .iter()
        .map(|g| Connector::new(g, Some(REVIEWER), None).expect("connector"))
        .collect();
    let fleet = Fleet::connect(&connectors).await.expect("connect");
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = fleet
            .list_sessions(None, 3, &token)
            .await
            .complete()
            .expect("page");
        assert!(page.sessions.len() <= 3);
        paged.extend(page.sessions.into_iter().map(|s| s.session_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    let merged_ids: Vec<String> = merged
        .iter()
        .map(|r| r["session_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(paged, merged_ids, "page by page, the same list");

    // Every chain verified, one line per gateway.
    let verify = penwatch(&all, &["verify"]);
    let text = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{text}");
    for g in &addresses {
        let line = text
            .lines()
            .find(|l| l.starts_with(g.as_str()))
            .unwrap_or_else(|| panic!("no line for {g}: {text}"));
        assert!(line.ends_with("verified"), "{line}");
    }

    // Export: one file per gateway, each verifying offline; stdout alone is refused.
    let refused = penwatch(&all, &["export", "--format", "jsonl"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--out-dir"));
    let out_dir = dirs[0].path().join("exports");
    let out_dir_arg = out_dir.display().to_string();
    let export = penwatch(
        &all,
        &[
            "export",
            "--format",
            "jsonl",
            "--samples",
            "--out-dir",
            &out_dir_arg,
        ],
    );
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&out_dir)
        .expect("exports")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(files.len(), CLINICS as usize, "{files:?}");
    for file in &files {
        let check = penwatch(&all, &["verify-export", &file.display().to_string()]);
        assert!(
            check.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&check.stdout)
        );
    }

    // The report: one page, a part per gateway with its own chain head.
    let report = penwatch(
        &all,
        &[
            "report",
            "--clinic",
            "c02",
            "--from",
            "2000-01-01",
            "--until",
            "2100-01-01",
        ],
    );
    assert!(
        report.status.success(),
        "{}",
        String::from_utf8_lossy(&report.stderr)
    );
    let page = String::from_utf8_lossy(&report.stdout);
    for g in &addresses {
        assert!(page.contains(&format!("Gateway {g}")), "a part for {g}");
    }
    assert_eq!(
        page.matches("<span class=\"ok\">Verified</span>").count(),
        2 * addresses.len()
    );

    // The dashboard's client, on all three: every pen listed, none stale.
    let (tx, mut rx) = tokio::sync::mpsc::channel(1024);
    let (_commands, commands_rx) = tokio::sync::mpsc::unbounded_channel();
    let settings = Settings {
        connectors,
        refresh: Duration::from_secs(1),
    };
    let client = tokio::spawn(penwatch_dashboard::client::run(settings, tx, commands_rx));
    let mut app = App::new(0, false);
    loop {
        let msg = next(&mut rx).await;
        let all_listed = matches!(&msg, Msg::FleetList { complete: true, .. });
        app.update(msg);
        if all_listed {
            break;
        }
    }
    let pens_of_the_second: BTreeSet<String> = app
        .devices
        .values()
        .filter(|d| d.clinic_id == "c02")
        .map(|d| d.device_id.clone())
        .collect();
    assert!(!pens_of_the_second.is_empty(), "c02's pens listed");
    assert!(app.unconfirmed.is_empty());

    // A stopped gateway: the command fails, naming it, instead of showing part of the fleet.
    assert!(gateways[1].terminate().expect("terminate"), "clean exit");
    for args in [&["sessions"][..], &["verify"], &["violations"]] {
        let out = penwatch(&all, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{args:?}: {stderr}");
        assert!(stderr.contains(&addresses[1]), "{args:?}: {stderr}");
        assert!(stderr.contains("1 of 3 gateways"), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "nothing partial is printed");
    }

    // The dashboard's client goes on with the two that answer, says which one does not, and
    // shows the stopped gateway's pens as last seen, unconfirmed.
    let answering = [sessions_per[0].clone(), sessions_per[2].clone()];
    let expected: Vec<String> = union_newest_first(
        &answering,
        &[addresses[0].clone(), addresses[2].clone()],
        "started_ms",
    )
    .iter()
    .map(|r| r["session_id"].as_str().unwrap_or_default().to_owned())
    .collect();
    let (mut listed, mut down, mut stale) = (None, None, false);
    while listed.is_none() || down.is_none() || !stale {
        let msg = next(&mut rx).await;
        match &msg {
            Msg::Sessions(page) if down.is_some() => {
                listed = Some(
                    page.sessions
                        .iter()
                        .map(|s| s.session_id.clone())
                        .collect::<Vec<_>>(),
                );
            }
            Msg::Gateways(states) if states.iter().any(|(_, p)| p.is_some()) => {
                down = Some(states.clone());
            }
            Msg::FleetList {
                complete: false, ..
            } => stale = true,
            Msg::Disconnected { reason, .. } => panic!("two gateways answer: {reason}"),
            _ => {}
        }
        app.update(msg);
    }
    assert_eq!(
        listed,
        Some(expected),
        "the answering gateways' sessions, merged"
    );
    assert_eq!(app.answering(), (2, 3));
    let stopped = &app.gateways[1];
    assert_eq!(stopped.address, addresses[1]);
    assert!(
        stopped
            .problem
            .as_deref()
            .is_some_and(|p| p.contains("cannot reach") || p.contains("Unavailable")),
        "{stopped:?}"
    );
    assert_eq!(
        app.unconfirmed.iter().cloned().collect::<BTreeSet<_>>(),
        pens_of_the_second,
        "the stopped gateway's pens, and only they, as last seen"
    );
    drop(rx);
    client.abort();
}

/// The dashboard client's next message.
async fn next(rx: &mut tokio::sync::mpsc::Receiver<Msg>) -> Msg {
    tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("the dashboard's client answers")
        .expect("client running")
}
