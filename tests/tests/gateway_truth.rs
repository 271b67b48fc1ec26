//! The gateway against the simulator's ground truth, through a real broker: verdicts, crash
//! safety (SIGKILL mid-stream), replayed offline buffers and duplicates, tamper evidence.
//! The broker authenticates as a deployment's must: every pen connects as itself.

mod oracle;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use oracle::assert_journals_hold;
use penwatch_gateway::journal::Reader;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{GroundTruth, Scenario, SimConfig};
use penwatch_tests::{Gateway, Mosquitto, binary, fleet_pens, wait_for};

fn write_policy(dir: &Path, seed: u64, clinics: u32, pens: u32) -> String {
    let path = dir.join("policy.toml");
    let fleet = Fleet::generate(seed, clinics, pens);
    std::fs::write(&path, penwatch_sim::policy::policy_toml(&fleet)).expect("write policy");
    path.display().to_string()
}

/// A broker with the 3 × 3 fleet of `seed` provisioned (a password and an ACL entry each).
fn broker(seed: u64) -> Mosquitto {
    Mosquitto::start_authenticated(fleet_pens(seed, 3, 3)).expect("broker")
}

fn sim_config(broker: &Mosquitto, seed: u64, scenarios: &[Scenario]) -> SimConfig {
    SimConfig {
        broker: broker.url().parse().expect("broker url"),
        credentials: broker.credentials_file(),
        clinics: 3,
        pens_per_clinic: 3,
        seed,
        scenarios: scenarios.to_vec(),
        speed: 2000.0,
        sessions_per_pen: Some(2),
        ..SimConfig::default()
    }
}

/// The API token of the failover test's gateways.
const ADMIN: &str = "admin-token-failover-0001";

fn journal_samples(path: &Path) -> u64 {
    Reader::open(path)
        .and_then(|j| j.counts())
        .map_or(0, |c| c.samples)
}

fn rule(truth: &penwatch_sim::SessionTruth) -> String {
    rule_name(truth.binding_rule)
}

/// A simulator rule by the name the gateway records.
fn rule_name(rule: penwatch_sim::policy::Rule) -> String {
    serde_json::to_value(rule)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// Every session the simulator drove over a limit is flagged with the right rule and
/// evidence; no session it kept within limits is; bad input is quarantined beside it.
#[tokio::test(flavor = "multi_thread")]
async fn verdicts_match_the_simulators_ground_truth() {
    let seed = 11;
    let broker = broker(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), seed, 3, 3);
    let mut gateway =
        Gateway::start_on(&broker, dir.path(), &["--policy", &policy]).expect("gateway");

    let scenarios = [
        Scenario::Normal,
        Scenario::OverDepth,
        Scenario::UnknownOperator,
        Scenario::CartridgeReuse,
        Scenario::Duplicates,
        Scenario::Malformed,
    ];
    let truth: GroundTruth = penwatch_sim::run(
        sim_config(&broker, seed, &scenarios),
        std::future::pending::<()>(),
    )
    .await
    .expect("sim");
    assert!(
        truth.exceeded().count() > 0,
        "the scenario drives some sessions over a limit"
    );
    assert!(
        truth.sessions.iter().any(|s| !s.exceeded),
        "and keeps some within"
    );

    wait_for("every valid message", Duration::from_secs(30), || {
        gateway.metric("penwatch_messages_accepted_total") >= truth.telemetry_valid as f64
    });
    wait_for("every malformed message", Duration::from_secs(10), || {
        gateway
            .metrics()
            .lines()
            .filter(|l| l.starts_with("penwatch_messages_quarantined_total{"))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(0.0)
            })
            .sum::<f64>()
            >= truth.malformed_total() as f64
    });
    assert!(
        gateway.terminate().expect("terminate"),
        "clean exit; log:\n{}",
        gateway.log()
    );

    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    let counts = journal.counts().expect("counts");
    assert_eq!(
        counts.samples, truth.telemetry_valid,
        "every valid message exactly once"
    );
    assert_eq!(
        counts.quarantined,
        truth.malformed_total(),
        "every malformed message quarantined"
    );
    for t in &truth.sessions {
        let (s, state) = journal
            .session(&t.device_id, &t.session_id)
            .expect("query")
            .unwrap_or_else(|| panic!("session {} missing", t.session_id));
        assert_eq!(state, "closed", "{}", t.session_id);
        assert_eq!(
            s.exceeded(),
            t.exceeded,
            "verdict of {} ({t:?})",
            t.session_id
        );
        assert_eq!(s.unknown_operator, t.unknown_operator, "{}", t.session_id);
        assert_eq!(s.strokes, t.strokes, "{}", t.session_id);
        assert_eq!(s.samples, t.samples, "{}", t.session_id);
        if let Some(e) = &s.violation {
            // The simulator's truth covers the whole session: all its excursions together,
            // the rule being that of the first sample above its limit.
            let all = e.excursions();
            let id = &t.session_id;
            assert_eq!(all[0].binding, rule(t), "binding rule of {id}");
            let peak = all.iter().map(|x| x.peak_depth_mm).fold(0.0, f64::max);
            assert_eq!(peak, t.max_depth_mm, "{id}");
            let samples: u64 = all.iter().map(|x| x.samples_above).sum();
            assert_eq!(samples, t.samples_above, "{id}");
            let strokes: u64 = all.iter().map(|x| x.strokes_above).sum();
            assert_eq!(strokes, t.strokes_above, "{id}");
            assert_eq!(Some(all[0].first_above_ms), t.first_above_ms, "{id}");
            let last = all.iter().map(|x| x.last_above_ms).max();
            assert_eq!(last, t.last_above_ms, "{id}");
            // The worst excursion, as the simulator's own fold of its samples has it.
            let worst = t.worst_excursion().expect("the truth has an excursion");
            let w = &e.worst;
            assert_eq!(
                (w.peak_depth_mm, w.limit_mm, w.binding.as_str()),
                (
                    worst.peak_depth_mm,
                    worst.limit_mm,
                    rule_name(worst.rule).as_str()
                ),
                "worst excursion of {id}"
            );
            assert_eq!(
                (
                    w.samples_above,
                    w.strokes_above,
                    w.first_above_ms,
                    w.last_above_ms
                ),
                (worst.samples, worst.strokes, worst.first_ms, worst.last_ms),
                "{id}"
            );
            assert_eq!(e.count(), t.excursions.len() as u64, "{id}");
            assert!(
                all.iter().all(|x| x.excess_mm <= e.worst.excess_mm + 1e-9
                    && (x.excess_mm - (x.peak_depth_mm - x.limit_mm)).abs() < 1e-9),
                "{id}: the worst excursion has the greatest excess over its own limit"
            );
        }
        if t.cartridge_reused {
            let c = journal
                .cartridge(&t.cartridge_id)
                .expect("query")
                .expect("cartridge");
            assert!(
                c.reused(),
                "cartridge {} reused in {}",
                t.cartridge_id,
                t.session_id
            );
        }
    }
    let exceeded = journal
        .sessions()
        .expect("sessions")
        .iter()
        .filter(|(s, _)| s.exceeded())
        .count();
    assert_eq!(
        exceeded,
        truth.exceeded().count(),
        "no session flagged that the simulator kept within limits"
    );
    let v = journal.verify().expect("verify");
    assert!(v.ok(), "{v:?}");
}

/// SIGKILL the gateway twice while pens publish (with offline buffers, duplicates and
/// skewed clocks, in JSON): after restarts every message is journaled exactly once, and
/// replays and duplicates do not double-count strokes or sessions.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_mid_stream_loses_and_doubles_nothing() {
    let seed = 23;
    let broker = broker(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), seed, 3, 3);
    let mut gateway =
        Gateway::start_on(&broker, dir.path(), &["--policy", &policy]).expect("gateway");

    let config = SimConfig {
        speed: 200.0,
        json: true,
        sessions_per_pen: Some(2),
        ..sim_config(
            &broker,
            seed,
            &[
                Scenario::Normal,
                Scenario::OverDepth,
                Scenario::OfflineBuffer,
                Scenario::Duplicates,
                Scenario::ClockSkew,
            ],
        )
    };
    let sim = tokio::spawn(penwatch_sim::run(config, std::future::pending::<()>()));
    let journal_path = gateway.journal_path();
    for _ in 0..2 {
        let before = journal_samples(&journal_path);
        wait_for("progress before the kill", Duration::from_secs(30), || {
            journal_samples(&journal_path) > before + 200
        });
        gateway.kill();
        tokio::time::sleep(Duration::from_millis(300)).await;
        gateway.restart().expect("restart");
    }
    let truth = sim.await.expect("join").expect("sim");
    assert!(
        truth.connection_drops > 0,
        "offline-buffer scenario dropped connections"
    );
    wait_for(
        "every valid message after the crashes",
        Duration::from_secs(30),
        || journal_samples(&journal_path) >= truth.telemetry_valid,
    );
    assert!(
        gateway.terminate().expect("terminate"),
        "clean exit; log:\n{}",
        gateway.log()
    );

    assert_journals_hold(&[journal_path], &truth);
}

/// A gateway and a standby on one journal (`[failover]`) and one broker identity: the
/// gateway killed -9 while pens publish, the standby takes over its persistent session within
/// seconds; the gateway restarted as the journal's home takes it back. Every message is
/// journaled exactly once, every session continues rather than splitting, every verdict is
/// the simulator's; readers reach whichever holds it on the same API address.
#[tokio::test(flavor = "multi_thread")]
async fn a_standby_takes_over_a_killed_gateway_and_hands_the_journal_back_exactly() {
    let seed = 29;
    let broker = broker(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let standby_dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), seed, 3, 3);
    let role = |dir: &Path, role: &str| {
        let path = dir.join("failover.toml");
        std::fs::write(
            &path,
            format!(
                "[failover]\nrole = \"{role}\"\n\n[[api.tokens]]\nname = \"admin\"\n\
                 token = \"{ADMIN}\"\nrole = \"admin\"\n"
            ),
        )
        .expect("config");
        path.display().to_string()
    };
    let home_config = role(dir.path(), "home");
    let mut gateway = Gateway::start_on(
        &broker,
        dir.path(),
        &["--config", &home_config, "--policy", &policy],
    )
    .expect("gateway");
    let journal_path = gateway.journal_path();
    let standby_config = role(standby_dir.path(), "standby");
    // The standby serves the API on the home gateway's address once it holds the journal.
    let api = format!("127.0.0.1:{}", gateway.api_port());
    let mut args = broker.gateway_args();
    args.extend(["--config".into(), standby_config, "--policy".into(), policy]);
    args.extend(["--api-listen".into(), api.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut standby =
        Gateway::start_with_journal(&broker.url(), standby_dir.path(), &journal_path, &args)
            .expect("standby");
    assert_eq!(standby.metric("penwatch_standby"), 1.0);

    let config = SimConfig {
        speed: 200.0,
        sessions_per_pen: Some(2),
        ..sim_config(
            &broker,
            seed,
            &[Scenario::Normal, Scenario::OverDepth, Scenario::Duplicates],
        )
    };
    let sim = tokio::spawn(penwatch_sim::run(config, std::future::pending::<()>()));
    wait_for("progress before the kill", Duration::from_secs(30), || {
        journal_samples(&journal_path) > 300
    });
    gateway.kill();
    let killed = std::time::Instant::now();
    wait_for("the standby takes over", Duration::from_secs(10), || {
        standby.metric("penwatch_mqtt_connected") == 1.0
    });
    eprintln!(
        "standby connected {:.2} s after the kill",
        killed.elapsed().as_secs_f64()
    );
    let before = journal_samples(&journal_path);
    wait_for("the standby commits", Duration::from_secs(10), || {
        journal_samples(&journal_path) > before
    });
    let readers_see_sessions = || {
        let out = Command::new(binary("penwatch").expect("penwatch"))
            .args(["--gateway", &format!("http://{api}"), "sessions", "--json"])
            .env("PENWATCH_TOKEN", ADMIN)
            .output()
            .expect("run penwatch");
        out.status.success() && !out.stdout.is_empty()
    };
    assert!(readers_see_sessions(), "the standby answers readers");
    gateway.restart().expect("home gateway back");
    wait_for(
        "the home gateway takes its journal back",
        Duration::from_secs(20),
        || gateway.metric("penwatch_mqtt_connected") == 1.0,
    );
    wait_for(
        "the standby stands by again",
        Duration::from_secs(5),
        || standby.metric("penwatch_standby") == 1.0,
    );
    wait_for(
        "the home gateway answers readers",
        Duration::from_secs(10),
        readers_see_sessions,
    );
    assert_eq!(
        standby.metric("penwatch_sessions_open"),
        0.0,
        "a standby does not report the journal it handed back"
    );

    let truth = sim.await.expect("join").expect("sim");
    wait_for("every valid message", Duration::from_secs(30), || {
        journal_samples(&journal_path) >= truth.telemetry_valid
    });
    for g in [&mut gateway, &mut standby] {
        assert!(
            g.terminate().expect("terminate"),
            "clean exit; log:\n{}",
            g.log()
        );
    }
    assert_journals_hold(&[journal_path], &truth);
}

/// `penwatch-gateway verify` passes on an untouched journal and names the entry after a
/// sample of an exceeded session is edited.
#[tokio::test(flavor = "multi_thread")]
async fn verify_detects_an_edited_depth_log() {
    let seed = 5;
    let broker = broker(seed);
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = write_policy(dir.path(), seed, 3, 3);
    let mut gateway =
        Gateway::start_on(&broker, dir.path(), &["--policy", &policy]).expect("gateway");
    let truth = penwatch_sim::run(
        SimConfig {
            sessions_per_pen: Some(1),
            ..sim_config(&broker, seed, &[Scenario::OverDepth])
        },
        std::future::pending::<()>(),
    )
    .await
    .expect("sim");
    wait_for("every message", Duration::from_secs(30), || {
        gateway.metric("penwatch_messages_accepted_total") >= truth.telemetry_valid as f64
    });
    assert!(gateway.terminate().expect("terminate"));
    let journal = gateway.journal_path();
    let verify = || {
        Command::new(binary("penwatch-gateway").expect("built"))
            .args(["--journal", &journal.display().to_string(), "verify"])
            .output()
            .expect("verify runs")
    };
    let ok = verify();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let conn = rusqlite::Connection::open(&journal).expect("open");
    let edited = conn
        .execute("UPDATE sample_rows SET depth_mm = 0.1 WHERE id = (SELECT MIN(id) FROM sample_rows WHERE exceeded = 1)", [])
        .expect("edit");
    assert_eq!(edited, 1);
    drop(conn);
    let broken = verify();
    let out = String::from_utf8_lossy(&broken.stdout);
    assert_eq!(broken.status.code(), Some(1), "{out}");
    assert!(out.contains("BROKEN at entry"), "{out}");
}
