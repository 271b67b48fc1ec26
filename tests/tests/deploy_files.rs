//! The files in `deploy/` work as shipped: the Prometheus rules pass `promtool` (that they
//! name only metrics the gateway exports is a unit test of `metrics.rs`); every Grafana panel's InfluxQL query returns data from a real
//! influxd 1.6 filled by the simulator through the gateway's sink; the systemd unit passes
//! `systemd-analyze verify` and its command line passes `check-config`; the mosquitto
//! example starts and refuses anonymous clients.

use std::collections::BTreeSet;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use penwatch_gateway::journal::Reader;
use penwatch_sim::fleet::Fleet;
use penwatch_sim::{Scenario, SimConfig};
use penwatch_tests::{
    Gateway, InfluxV1, Mosquitto, binary, fleet_pens, free_port, http_get, http_status,
};
use serde_json::Value;

const DB: &str = "penwatch";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

/// Runs an installed tool; a missing one is reported with the Debian package providing it.
fn tool(name: &str, package: &str, args: &[&str], dir: &Path) -> Output {
    Command::new(name)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{name}: {e}: install the Debian package `{package}` (scripts/install-deps does)"
            )
        })
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

#[test]
fn prometheus_rules_pass_promtool_check_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let check = tool(
        "promtool",
        "prometheus",
        &["check", "rules", "penwatch-rules.yml"],
        &dir,
    );
    assert!(check.status.success(), "{}", text(&check));
    let config = tool(
        "promtool",
        "prometheus",
        &["check", "config", "prometheus.yml"],
        &dir,
    );
    assert!(config.status.success(), "{}", text(&config));
    let unit = tool(
        "promtool",
        "prometheus",
        &["test", "rules", "penwatch-rules.test.yml"],
        &dir,
    );
    assert!(unit.status.success(), "{}", text(&unit));
}

/// The unit with its `ExecStart` binary replaced by the built gateway (verify checks that
/// the binary exists).
fn unit_with_built_binary() -> String {
    let unit =
        std::fs::read_to_string(deploy("systemd/penwatch-gateway.service")).expect("unit file");
    let gateway = binary("penwatch-gateway").expect("built gateway");
    assert!(unit.contains("ExecStart=/usr/local/bin/penwatch-gateway "));
    unit.replace(
        "/usr/local/bin/penwatch-gateway",
        &gateway.display().to_string(),
    )
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("penwatch-gateway.service");
    std::fs::write(&path, unit_with_built_binary()).expect("write unit");
    let out = tool(
        "systemd-analyze",
        "systemd",
        &["verify", &path.display().to_string()],
        dir.path(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "",
        "no warning about the unit"
    );
}

#[test]
fn systemd_unit_command_line_passes_check_config() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (etc, state, creds) = (
        dir.path().join("etc"),
        dir.path().join("state"),
        dir.path().join("creds"),
    );
    for d in [&etc, &state, &creds] {
        std::fs::create_dir(d).expect("dir");
    }
    std::fs::write(
        etc.join("gateway.toml"),
        "[mqtt]\nbroker = \"mqtts://broker.example:8883\"\nusername = \"penwatch-gateway\"\n",
    )
    .expect("config");
    std::fs::write(creds.join("mqtt.password"), "s3cret-password\n").expect("password");
    std::fs::copy(
        root().join("gateway/policy.example.toml"),
        etc.join("policy.toml"),
    )
    .expect("policy");
    let unit = unit_with_built_binary();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let exec = exec
        .replace("/etc/penwatch/", &format!("{}/", etc.display()))
        .replace("/var/lib/penwatch/", &format!("{}/", state.display()))
        .replace("%d/", &format!("{}/", creds.display()));
    let mut words = exec.split_whitespace();
    let program = words.next().expect("program");
    let out = Command::new(program)
        .args(words)
        .arg("check-config")
        .env_remove("PENWATCH_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run gateway");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("configuration valid"), "{}", text(&out));
    assert!(
        !stdout.contains("(0 operators"),
        "the policy is read: {stdout}"
    );
}

/// A mosquitto process killed on drop.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn mosquitto_pub(port: u16, ca: &Path, identity: Option<(&str, &str)>) -> Output {
    let port = port.to_string();
    let ca = ca.display().to_string();
    let mut args = vec![
        "-h",
        "localhost",
        "-p",
        &port,
        "--cafile",
        &ca,
        "-q",
        "1",
        "-t",
        "clinics/c01/pens/pen-c01-01/status",
        "-m",
        "online",
    ];
    if let Some((user, password)) = identity {
        args.extend(["-u", user, "-P", password]);
    }
    tool("mosquitto_pub", "mosquitto-clients", &args, Path::new("."))
}

#[test]
fn mosquitto_example_config_starts_and_refuses_anonymous_clients() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let (passwd, acl) = (d.join("penwatch.passwd"), d.join("penwatch.acl"));
    let provision = |who: &[&str]| {
        let out = Command::new(root().join("scripts/provision-pen"))
            .arg("--passwd")
            .arg(&passwd)
            .arg("--acl")
            .arg(&acl)
            .args(who)
            .output()
            .expect("provision-pen");
        assert!(out.status.success(), "{}", text(&out));
        let line = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        line.split_once(':').expect("NAME:PASSWORD").1.to_owned()
    };
    provision(&["--gateway", "penwatch-gateway"]);
    let pen_password = provision(&["c01", "pen-c01-01"]);

    let tls = root().join("tests/fixtures/tls");
    let port = free_port().expect("port");
    let example =
        std::fs::read_to_string(deploy("mosquitto/penwatch.conf")).expect("mosquitto example");
    let conf = example
        .replace("listener 8883", &format!("listener {port} 127.0.0.1"))
        .replace(
            "/etc/mosquitto/certs/broker.crt",
            &tls.join("server.pem").display().to_string(),
        )
        .replace(
            "/etc/mosquitto/certs/broker.key",
            &tls.join("server.key").display().to_string(),
        )
        .replace(
            "/etc/mosquitto/penwatch.passwd",
            &passwd.display().to_string(),
        )
        .replace("/etc/mosquitto/penwatch.acl", &acl.display().to_string());
    assert!(
        !conf
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("/etc/mosquitto")),
        "every path replaced"
    );
    std::fs::create_dir(d.join("conf.d")).expect("conf.d");
    std::fs::write(d.join("conf.d/penwatch.conf"), conf).expect("conf");
    // What Debian's /etc/mosquitto/mosquitto.conf sets, around the example.
    std::fs::write(
        d.join("mosquitto.conf"),
        format!(
            "persistence true\npersistence_location {dir}/\n# Running as root: keep root, so the temp dir stays writable.\nuser root\n\
             log_dest stderr\ninclude_dir {dir}/conf.d\n",
            dir = d.display()
        ),
    )
    .expect("main conf");
    let log = std::fs::File::create(d.join("mosquitto.log")).expect("log");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(d.join("mosquitto.conf"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mosquitto: install the Debian package `mosquitto`");
    let mut broker = Broker(child);
    let read_log = || std::fs::read_to_string(d.join("mosquitto.log")).unwrap_or_default();
    wait_for("mosquitto to listen", Duration::from_secs(10), || {
        assert!(
            broker.0.try_wait().ok().flatten().is_none(),
            "mosquitto exited: {}",
            read_log()
        );
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });

    let ca = tls.join("ca.pem");
    let anonymous = mosquitto_pub(port, &ca, None);
    assert!(!anonymous.status.success(), "{}", text(&anonymous));
    assert!(
        text(&anonymous).contains("not authorised"),
        "{}",
        text(&anonymous)
    );
    let pen = mosquitto_pub(port, &ca, Some(("pen-c01-01", &pen_password)));
    assert!(pen.status.success(), "{}", text(&pen));
    assert!(
        broker.0.try_wait().ok().flatten().is_none(),
        "{}",
        read_log()
    );
}

/// The dashboards and the InfluxQL queries of their panels and variables.
fn dashboards() -> Vec<(String, Value)> {
    let dir = deploy("grafana/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .expect("dashboards dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("dashboard");
            let v: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (
                p.file_name().expect("name").to_string_lossy().into_owned(),
                v,
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// `(where, query)` of every panel target and template variable of a dashboard.
fn queries(name: &str, d: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().expect("targets") {
            let q = t["query"].as_str().expect("raw InfluxQL query");
            out.push((
                format!("{name} / {} / {}", p["title"], t["refId"]),
                q.to_owned(),
            ));
        }
    }
    for v in d["templating"]["list"].as_array().expect("templating") {
        let q = v["query"].as_str().expect("variable query");
        out.push((format!("{name} / ${}", v["name"]), q.to_owned()));
    }
    out
}

#[test]
fn grafana_dashboards_use_the_provisioned_datasource() {
    let provisioning =
        std::fs::read_to_string(deploy("grafana/provisioning/datasources/penwatch.yml"))
            .expect("datasource provisioning");
    assert!(provisioning.contains("uid: penwatch-influxdb"));
    let boards = dashboards();
    let titles: BTreeSet<&str> = boards
        .iter()
        .map(|(_, d)| d["title"].as_str().expect("title"))
        .collect();
    for want in [
        "Fleet",
        "Depth vs permitted",
        "Violations",
        "Cartridge wear",
    ] {
        assert!(
            titles.iter().any(|t| t.ends_with(want)),
            "a {want} dashboard: {titles:?}"
        );
    }
    let mut uids = BTreeSet::new();
    for (name, d) in &boards {
        assert!(uids.insert(d["uid"].as_str().expect("uid")), "{name}: uid");
        let mut ids = BTreeSet::new();
        for p in d["panels"].as_array().expect("panels") {
            assert!(
                ids.insert(p["id"].as_u64().expect("id")),
                "{name}: panel id"
            );
            assert_eq!(p["datasource"]["uid"], "penwatch-influxdb", "{name}");
            for t in p["targets"].as_array().expect("targets") {
                assert_eq!(t["datasource"]["uid"], "penwatch-influxdb", "{name}");
                assert_eq!(t["rawQuery"], true, "{name}: InfluxQL as written");
            }
        }
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

/// An InfluxQL answer's first result (ms times), if InfluxDB answered 200.
fn try_influxql(port: u16, q: &str) -> Option<Value> {
    let body = http_get(port, &format!("/query?db={DB}&epoch=ms&q={}", enc(q)))?;
    let v: Value = serde_json::from_str(&body).expect("query JSON");
    Some(v["results"][0].clone())
}

/// [`try_influxql`], tried for up to 5 s (a loaded machine can be slow to accept).
fn influxql(port: u16, q: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match try_influxql(port, q) {
            Some(v) => return v,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            None => panic!("InfluxDB did not answer 200 to {q}"),
        }
    }
}

/// The first number of an aggregate's answer; 0 without one (yet).
fn count(port: u16, q: &str) -> u64 {
    try_influxql(port, q).map_or(0, |r| r["series"][0]["values"][0][1].as_u64().unwrap_or(0))
}

/// A query as Grafana sends it for the range `from..to` (Unix ms), with every variable at
/// "All".
fn as_grafana_sends(q: &str, from: i64, to: i64) -> String {
    let interval = ((to - from) / 500).max(1000);
    q.replace(
        "$timeFilter",
        &format!("time >= {from}ms and time <= {to}ms"),
    )
    .replace("$__interval", &format!("{interval}ms"))
    .replace("$clinic", ".*")
    .replace("$device", ".*")
}

#[tokio::test(flavor = "multi_thread")]
async fn every_grafana_panel_query_returns_data_from_a_simulated_fleet() {
    let started = now_ms();
    let seed = 5;
    let influx = InfluxV1::start().expect("influxd");
    assert_eq!(
        http_status(
            influx.port(),
            "POST",
            &format!("/query?q={}", enc(&format!("CREATE DATABASE {DB}")))
        ),
        Some(200)
    );
    let broker = Mosquitto::start_authenticated(fleet_pens(seed, 2, 3)).expect("broker");
    let dir = tempfile::tempdir().expect("temp dir");
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        penwatch_sim::policy::policy_toml(&Fleet::generate(seed, 2, 3)),
    )
    .expect("policy");
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[influx]\napi = \"v1\"\nurl = \"{}\"\ndatabase = \"{DB}\"\nlinger_ms = 100\n\
             status_interval_s = 1\n",
            influx.url()
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

    let truth = penwatch_sim::run(
        SimConfig {
            broker: broker.url().parse().expect("broker url"),
            credentials: broker.credentials_file(),
            clinics: 2,
            pens_per_clinic: 3,
            seed,
            scenarios: vec![
                Scenario::Normal,
                Scenario::OverDepth,
                Scenario::UnknownOperator,
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
    assert!(truth.exceeded().count() > 0, "some sessions exceed");

    let port = influx.port();
    // One field each measurement always has.
    let measurements = [
        ("pen_sample", "depth_mm"),
        ("pen_session", "session_id"),
        ("pen_violation", "session_id"),
        ("cartridge_wear", "cartridge_id"),
        ("device_status", "last_seq"),
    ];
    let state = || {
        let journaled = Reader::open(&gateway.journal_path())
            .and_then(|j| j.counts())
            .map_or(0, |c| c.samples);
        let counts: Vec<u64> = measurements
            .iter()
            .map(|(m, f)| count(port, &format!("SELECT COUNT(\"{f}\") FROM \"{m}\"")))
            .collect();
        (
            gateway.metric("penwatch_messages_accepted_total") as u64,
            journaled,
            counts,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (accepted, journaled, counts) = state();
        if accepted >= truth.telemetry_valid
            && counts[0] == journaled
            && counts[1] == truth.sessions.len() as u64
            && counts.iter().all(|n| *n > 0)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not everything reached InfluxDB: accepted {accepted} of {}, samples {} of {journaled} \
             journaled, sessions {} of {}, points per measurement {counts:?}\nlog:\n{}",
            truth.telemetry_valid,
            counts[0],
            counts[1],
            truth.sessions.len(),
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The dashboard's range: from the test's start to the latest point of any measurement
    // (the simulator's device clocks run ahead of the wall clock).
    let last = measurements
        .iter()
        .map(|(m, f)| {
            influxql(port, &format!("SELECT LAST(\"{f}\") FROM \"{m}\""))["series"][0]["values"][0]
                [0]
            .as_i64()
            .expect("last point time")
        })
        .max()
        .unwrap_or_default();
    let (from, to) = (started - 60_000, last.max(now_ms()) + 60_000);
    let mut checked = 0;
    for (name, d) in dashboards() {
        for (place, q) in queries(&name, &d) {
            let sent = as_grafana_sends(&q, from, to);
            let macro_left = sent
                .split('$')
                .skip(1)
                .any(|rest| rest.starts_with(|c: char| c.is_alphabetic() || c == '_' || c == '{'));
            assert!(!macro_left, "{place}: a macro left in {sent}");
            let result = influxql(port, &sent);
            assert!(result.get("error").is_none(), "{place}: {sent}\n{result}");
            let series = result["series"].as_array().cloned().unwrap_or_default();
            let has_data = series.iter().any(|s| {
                s["values"].as_array().is_some_and(|rows| {
                    rows.iter().any(|r| {
                        r.as_array()
                            .is_some_and(|cells| cells.iter().skip(1).any(|c| !c.is_null()))
                    })
                })
            });
            assert!(has_data, "{place} returned no data: {sent}\n{result}");
            checked += 1;
        }
    }
    assert!(checked >= 20, "{checked} queries");
}
