//! The InfluxDB sink against real servers: InfluxDB 1.6 over the v1 API, VictoriaMetrics over
//! the v2 API, an InfluxDB outage, and a gateway killed during a backlog drain. Every check
//! counts exact points: nothing missing, nothing duplicated.

use std::path::Path;
use std::time::{Duration, Instant};

use penwatch_gateway::journal::Reader;
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use penwatch_tests::{Gateway, InfluxV1, Mosquitto, VictoriaMetrics, http_get, http_status};
use prost::Message;
use rumqttc::{AsyncClient, QoS};
use serde_json::Value;

const DB: &str = "penwatch";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Sample `seq` (1..=n) of pen `device`: a session from `session_start` to `session_end`,
/// 10 ms apart, depths cycling 0.25..1.0 mm (a home pen's limit is 0.5 mm, so every session
/// has a violation). With `same_ms`, seq 3 carries seq 2's timestamp.
fn telemetry(device: usize, seq: u64, n: u64, base_ms: i64, same_ms: bool) -> Telemetry {
    let event = match seq {
        1 => Event::SessionStart,
        s if s == n => Event::SessionEnd,
        _ => Event::Sample,
    };
    let t = if same_ms && seq == 3 { 2 } else { seq };
    Telemetry {
        device_id: format!("pen-{device:02}"),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Home.into(),
        model: "HomePen".into(),
        firmware: "1.0.0".into(),
        operator_id: "op-x".into(),
        session_id: format!("s-{device}"),
        cartridge_id: format!("cart-{device}"),
        cartridge_model: "NANO".into(),
        seq,
        timestamp_ms: base_ms + t as i64 * 10,
        event: event.into(),
        depth_mm: depth(seq),
        session_strokes: seq * 12,
        cartridge_strokes: seq * 12,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: Zone::Cheek.into(),
    }
}

fn depth(seq: u64) -> f64 {
    0.25 + (seq % 4) as f64 * 0.25
}

async fn publisher(port: u16) -> AsyncClient {
    penwatch_tests::publisher(port, "test-pub")
}

/// Publishes seqs `from..=to` of pens `0..devices` (sessions of `n` samples).
async fn publish(
    client: &AsyncClient,
    devices: usize,
    from: u64,
    to: u64,
    n: u64,
    base_ms: i64,
    same_ms: bool,
) {
    for seq in from..=to {
        for d in 0..devices {
            let t = telemetry(d, seq, n, base_ms, same_ms);
            let topic = format!("clinics/c01/pens/{}/telemetry", t.device_id);
            client
                .publish(topic, QoS::AtLeastOnce, false, t.encode_to_vec())
                .await
                .expect("publish");
        }
    }
}

fn wait_for(what: &str, secs: u64, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
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

/// An InfluxQL query's first series' rows (empty when there is none).
fn influxql(port: u16, q: &str) -> Vec<Vec<Value>> {
    let Some(body) = http_get(port, &format!("/query?db={DB}&epoch=ns&q={}", enc(q))) else {
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

/// A single number from an InfluxQL aggregate (0 when there is no data yet).
fn influx_count(port: u16, q: &str) -> u64 {
    influxql(port, q)
        .first()
        .and_then(|r| r.get(1))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

fn create_db(port: u16) {
    assert_eq!(
        http_status(
            port,
            "POST",
            &format!("/query?q={}", enc(&format!("CREATE DATABASE {DB}")))
        ),
        Some(200)
    );
}

fn config(dir: &Path, influx: &str) -> String {
    let path = dir.join("gateway.toml");
    std::fs::write(&path, format!("[influx]\n{influx}")).expect("config");
    path.display().to_string()
}

fn v1_config(dir: &Path, influx: &InfluxV1, extra: &str) -> String {
    config(
        dir,
        &format!(
            "api = \"v1\"\nurl = \"{}\"\ndatabase = \"{DB}\"\nlinger_ms = 100\nretry_max_s = 1\n\
             halt_retry_s = 1\nstatus_interval_s = 1\n{extra}",
            influx.url()
        ),
    )
}

/// The seqs of pen `device`'s `pen_sample` points, from their timestamps' sub-millisecond
/// digits (`ts_ms × 1,000,000 + seq mod 1,000,000`), in time order.
fn seqs_in_influx(port: u16, device: usize) -> Vec<u64> {
    influxql(
        port,
        &format!("SELECT depth_mm FROM pen_sample WHERE device = 'pen-{device:02}'"),
    )
    .iter()
    .filter_map(|r| r.first().and_then(Value::as_u64))
    .map(|ns| ns % 1_000_000)
    .collect()
}

/// Every seq of every pen is in InfluxDB exactly once, and the totals match the journal.
fn assert_exact(port: u16, gateway: &Gateway, devices: usize, n: u64) {
    let total = devices as u64 * n;
    assert_eq!(
        influx_count(port, "SELECT COUNT(depth_mm) FROM pen_sample"),
        total
    );
    for d in 0..devices {
        let mut seqs = seqs_in_influx(port, d);
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "seqs of pen-{d:02}");
    }
    let journal = Reader::open(&gateway.journal_path()).expect("journal");
    let counts = journal.counts().expect("counts");
    assert_eq!(
        counts.samples, total,
        "the journal holds what was published"
    );
    assert_eq!(
        influx_count(port, "SELECT COUNT(strokes) FROM pen_session"),
        counts.sessions
    );
    assert_eq!(
        influx_count(port, "SELECT COUNT(peak_depth_mm) FROM pen_violation"),
        counts.violations
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn v1_api_forwards_exactly_and_halts_on_a_missing_database() {
    let broker = Mosquitto::start().expect("broker");
    let influx = InfluxV1::start().expect("influxd");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = v1_config(dir.path(), &influx, "batch_size = 500\n");
    let mut gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &cfg]).expect("gateway");
    let client = publisher(broker.port()).await;
    let (devices, n) = (3, 400);
    let base = now_ms() - 600_000;
    publish(&client, devices, 1, n, n, base, true).await;

    // No database yet: a 404 halts the sink loudly, the journal keeps everything.
    // The error is counted before its log line is written: wait for both.
    wait_for("the halt on 404, counted and logged", 20, || {
        gateway.metric("penwatch_sink_errors_total{kind=\"not_found\"}") >= 1.0
            && gateway.metric("penwatch_messages_accepted_total") >= (devices as u64 * n) as f64
            && gateway.log().contains("InfluxDB sink HALTED")
    });
    assert_eq!(gateway.metric("penwatch_sink_up"), 0.0);
    create_db(influx.port());

    let total = devices as u64 * n;
    wait_for("every sample in InfluxDB", 20, || {
        influx_count(influx.port(), "SELECT COUNT(depth_mm) FROM pen_sample") >= total
            && influx_count(influx.port(), "SELECT COUNT(strokes) FROM pen_session")
                >= devices as u64
    });
    assert_exact(influx.port(), &gateway, devices, n);

    // Field values: seq 3 shares seq 2's millisecond and both are there, told apart by
    // their timestamps' sub-millisecond digits.
    let rows = influxql(
        influx.port(),
        "SELECT depth_mm, permitted_mm, exceeded FROM pen_sample WHERE device = 'pen-01' LIMIT 3",
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (i, r) in rows.iter().enumerate() {
        let seq = i as u64 + 1;
        let t = if seq == 3 { 2 } else { seq };
        let ns = (base + t as i64 * 10) as u64 * 1_000_000 + seq;
        assert_eq!(r[0].as_u64(), Some(ns), "{r:?}");
        assert_eq!(r[1].as_f64(), Some(depth(seq)), "{r:?}");
        assert_eq!(r[2].as_f64(), Some(0.5), "a home pen's limit: {r:?}");
        assert_eq!(r[3].as_bool(), Some(depth(seq) > 0.5));
    }
    let s = influxql(
        influx.port(),
        "SELECT strokes, max_depth_mm, exceeded, session_id FROM pen_session WHERE device = 'pen-02'",
    );
    assert_eq!(s.len(), 1, "{s:?}");
    assert_eq!(s[0][1].as_u64(), Some(n * 12));
    assert_eq!(s[0][2].as_f64(), Some(1.0));
    assert_eq!(s[0][3].as_bool(), Some(true));
    assert_eq!(s[0][4].as_str(), Some("s-2"));
    wait_for("a device status snapshot", 10, || {
        influx_count(
            influx.port(),
            "SELECT COUNT(last_seq) FROM device_status WHERE device = 'pen-00'",
        ) >= 1
    });
    wait_for("backlog 0", 10, || {
        gateway
            .metrics()
            .contains("penwatch_sink_backlog{stream=\"samples\"} 0")
    });
    assert_eq!(gateway.metric("penwatch_sink_up"), 1.0);
    assert!(
        gateway.terminate().expect("terminate"),
        "clean exit with the sink running; log:\n{}",
        gateway.log()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn v2_api_writes_to_a_real_v2_server() {
    let broker = Mosquitto::start().expect("broker");
    let vm = VictoriaMetrics::start().expect("victoria-metrics");
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = config(
        dir.path(),
        &format!(
            "api = \"v2\"\nurl = \"{}\"\norg = \"clinic-group\"\nbucket = \"{DB}\"\n\
             token = \"not-checked\"\nbatch_size = 250\nlinger_ms = 100\nretry_max_s = 1\n",
            vm.url()
        ),
    );
    let gateway = Gateway::start(&broker.url(), dir.path(), &["--config", &cfg]).expect("gateway");
    let client = publisher(broker.port()).await;
    let (devices, n) = (2, 300);
    let base = now_ms() - 600_000;
    publish(&client, devices, 1, n, n, base, false).await;

    let port: u16 = vm
        .url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    // VictoriaMetrics stores each field as `<measurement>_<field>`, tags as labels.
    // Each series as (device label, values, timestamps in ms).
    let exported = |metric: &str| -> Vec<(String, Vec<f64>, Vec<i64>)> {
        let path = format!("/api/v1/export?{}={metric}", enc("match[]"));
        http_get(port, &path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(|v| {
                let device = v["metric"]["device"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let values = v["values"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_f64).collect())
                    .unwrap_or_default();
                let times = v["timestamps"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_i64).collect())
                    .unwrap_or_default();
                (device, values, times)
            })
            .collect()
    };
    let count = |metric: &str| -> usize { exported(metric).iter().map(|(_, v, _)| v.len()).sum() };
    wait_for("every sample in VictoriaMetrics", 25, || {
        count("pen_sample_depth_mm") >= devices * n as usize
            && count("pen_session_strokes") >= devices
    });
    assert_eq!(count("pen_sample_depth_mm"), devices * n as usize);
    // VictoriaMetrics keeps milliseconds: each sample's own device time, once.
    for d in 0..devices {
        let mut times: Vec<i64> = exported("pen_sample_depth_mm")
            .into_iter()
            .filter(|(dev, _, _)| *dev == format!("pen-{d:02}"))
            .flat_map(|(_, _, t)| t)
            .collect();
        times.sort_unstable();
        let want: Vec<i64> = (1..=n).map(|seq| base + seq as i64 * 10).collect();
        assert_eq!(times, want, "sample times of pen-{d:02}");
    }
    let strokes: Vec<f64> = exported("pen_session_strokes")
        .into_iter()
        .flat_map(|(_, v, _)| v)
        .collect();
    assert_eq!(strokes, vec![(n * 12) as f64; devices]);
    assert_eq!(count("pen_violation_peak_depth_mm"), devices);
    assert_eq!(gateway.metric("penwatch_sink_up"), 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn outage_loses_and_duplicates_nothing() {
    let broker = Mosquitto::start().expect("broker");
    let mut influx = InfluxV1::start().expect("influxd");
    create_db(influx.port());
    let dir = tempfile::tempdir().expect("temp dir");
    let cfg = v1_config(dir.path(), &influx, "batch_size = 400\n");
    let gateway = Gateway::start(&broker.url(), dir.path(), &["--config", &cfg]).expect("gateway");
    let client = publisher(broker.port()).await;
    let (devices, n) = (2, 1000);
    let base = now_ms() - 600_000;
    publish(&client, devices, 1, 300, n, base, false).await;
    wait_for("the first part forwarded", 20, || {
        influx_count(influx.port(), "SELECT COUNT(depth_mm) FROM pen_sample") >= 600
    });

    influx.stop();
    publish(&client, devices, 301, n, n, base, false).await;
    wait_for("the rest journaled while InfluxDB is down", 20, || {
        gateway.metric("penwatch_messages_accepted_total") >= (devices as u64 * n) as f64
            && gateway.metric("penwatch_sink_up") == 0.0
    });
    let errors: f64 = ["connect", "transport", "timeout"]
        .iter()
        .map(|k| gateway.metric(&format!("penwatch_sink_errors_total{{kind=\"{k}\"}}")))
        .sum();
    assert!(errors >= 1.0, "the outage is counted as a sink error");
    // 1,400 samples journaled after the first 600; at most one more 400-point batch went out
    // before InfluxDB stopped: the gauge shows the rest while the sink cannot write.
    wait_for("the backlog gauge to grow during the outage", 10, || {
        gateway.metric("penwatch_sink_backlog{stream=\"samples\"}") >= 1000.0
    });

    influx.restart().expect("influxd again");
    wait_for("the backlog drained", 25, || {
        influx_count(influx.port(), "SELECT COUNT(depth_mm) FROM pen_sample") >= devices as u64 * n
            && influx_count(influx.port(), "SELECT COUNT(strokes) FROM pen_session")
                >= devices as u64
    });
    assert_exact(influx.port(), &gateway, devices, n);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_during_a_backlog_drain_resumes_from_the_cursor() {
    let broker = Mosquitto::start().expect("broker");
    let influx = InfluxV1::start().expect("influxd");
    let dir = tempfile::tempdir().expect("temp dir");
    // Small batches: the drain takes many requests, so the kill lands in the middle of it.
    let cfg = v1_config(dir.path(), &influx, "batch_size = 100\ngzip = false\n");
    let mut gateway =
        Gateway::start(&broker.url(), dir.path(), &["--config", &cfg]).expect("gateway");
    let client = publisher(broker.port()).await;
    let (devices, n) = (2, 5000);
    publish(&client, devices, 1, n, n, now_ms() - 600_000, false).await;
    let total = devices as u64 * n;
    wait_for(
        "the backlog journaled (database missing: halted)",
        25,
        || gateway.metric("penwatch_messages_accepted_total") >= total as f64,
    );
    create_db(influx.port());
    wait_for("the drain under way", 20, || {
        influx_count(influx.port(), "SELECT COUNT(depth_mm) FROM pen_sample") > 0
    });
    gateway.kill();
    let at_kill = influx_count(influx.port(), "SELECT COUNT(depth_mm) FROM pen_sample");
    eprintln!("killed with {at_kill} of {total} samples forwarded");

    gateway.restart().expect("gateway again");
    wait_for("the backlog drained after the restart", 25, || {
        influx_count(influx.port(), "SELECT COUNT(depth_mm) FROM pen_sample") >= total
            && influx_count(influx.port(), "SELECT COUNT(strokes) FROM pen_session")
                >= devices as u64
    });
    assert_exact(influx.port(), &gateway, devices, n);
}

/// A seeded simulated clinic day through the real broker, gateway and InfluxDB 1.6: the point
/// counts and field values in InfluxDB match the simulator's ground truth exactly.
#[tokio::test(flavor = "multi_thread")]
async fn simulated_clinic_day_matches_the_ground_truth() {
    use penwatch_sim::{Scenario, SimConfig, fleet::Fleet};
    let broker = Mosquitto::start().expect("broker");
    let influx = InfluxV1::start().expect("influxd");
    create_db(influx.port());
    let dir = tempfile::tempdir().expect("temp dir");
    let seed = 41;
    let policy = dir.path().join("policy.toml");
    let fleet = Fleet::generate(seed, 2, 3);
    std::fs::write(&policy, penwatch_sim::policy::policy_toml(&fleet)).expect("policy");
    let cfg = v1_config(dir.path(), &influx, "");
    let policy = policy.display().to_string();
    let _gateway = Gateway::start(
        &broker.url(),
        dir.path(),
        &["--config", &cfg, "--policy", &policy],
    )
    .expect("gateway");
    let truth = penwatch_sim::run(
        SimConfig {
            broker: broker.url().parse().expect("url"),
            clinics: 2,
            pens_per_clinic: 3,
            seed,
            scenarios: vec![Scenario::Normal, Scenario::OverDepth, Scenario::Duplicates],
            speed: 2000.0,
            sessions_per_pen: Some(2),
            ..SimConfig::default()
        },
        std::future::pending::<()>(),
    )
    .await
    .expect("sim");
    let port = influx.port();
    let samples = || influx_count(port, "SELECT COUNT(depth_mm) FROM pen_sample");
    let sessions = || influx_count(port, "SELECT COUNT(session_id) FROM pen_session");
    wait_for("the clinic day in InfluxDB", 30, || {
        samples() >= truth.telemetry_valid && sessions() >= truth.sessions.len() as u64
    });
    assert_eq!(
        samples(),
        truth.telemetry_valid,
        "every valid message once, duplicates not"
    );
    assert_eq!(sessions(), truth.sessions.len() as u64);
    assert_eq!(
        influx_count(port, "SELECT COUNT(session_id) FROM pen_violation"),
        truth.exceeded().count() as u64
    );
    for t in &truth.sessions {
        let rows = influxql(
            port,
            &format!(
                "SELECT strokes, max_depth_mm, exceeded, duration_s FROM pen_session \
                 WHERE session_id = '{}'",
                t.session_id
            ),
        );
        let row = rows
            .first()
            .unwrap_or_else(|| panic!("session {} in InfluxDB", t.session_id));
        assert_eq!(
            row[1].as_u64(),
            Some(t.strokes),
            "strokes of {}",
            t.session_id
        );
        assert_eq!(
            row[2].as_f64(),
            Some(t.max_depth_mm),
            "max depth of {}",
            t.session_id
        );
        assert_eq!(
            row[3].as_bool(),
            Some(t.exceeded),
            "verdict of {}",
            t.session_id
        );
        // A session's samples are its pen's points within its `pen_session` time range.
        let (start_ns, duration_s) = (
            row[0].as_i64().expect("time"),
            row[4].as_f64().expect("duration_s"),
        );
        let start_ms = start_ns / 1_000_000;
        let end_ms = start_ms + (duration_s * 1000.0).round() as i64;
        let inside = influxql(
            port,
            &format!(
                "SELECT MAX(depth_mm) FROM pen_sample WHERE device = '{}' \
                 AND time >= {start_ms}ms AND time < {}ms",
                t.device_id,
                end_ms + 1
            ),
        );
        assert_eq!(
            inside.first().and_then(|r| r[1].as_f64()),
            Some(t.max_depth_mm),
            "the deepest sample in the time range of {}",
            t.session_id
        );
        let above = influx_count(
            port,
            &format!(
                "SELECT COUNT(depth_mm) FROM pen_sample WHERE device = '{}' \
                 AND exceeded = true AND time >= {start_ms}ms AND time < {}ms",
                t.device_id,
                end_ms + 1
            ),
        );
        assert_eq!(above, t.samples_above, "samples above in {}", t.session_id);
    }
    for t in truth.exceeded() {
        // The point describes the worst excursion, as the simulator's own fold has it.
        let worst = t.worst_excursion().expect("an excursion");
        let rows = influxql(
            port,
            &format!(
                "SELECT peak_depth_mm, limit_mm, excess_mm, strokes_above, excursions \
                 FROM pen_violation WHERE session_id = '{}'",
                t.session_id
            ),
        );
        let row = rows
            .first()
            .unwrap_or_else(|| panic!("violation of {} in InfluxDB", t.session_id));
        assert_eq!(
            (row[1].as_f64(), row[2].as_f64()),
            (Some(worst.peak_depth_mm), Some(worst.limit_mm)),
            "peak and limit of {}",
            t.session_id
        );
        let excess = row[3].as_f64().expect("excess_mm");
        assert!(
            (excess - worst.excess_mm()).abs() < 1e-9,
            "excess of {}: {excess}",
            t.session_id
        );
        assert_eq!(
            (row[4].as_u64(), row[5].as_u64()),
            (Some(worst.strokes), Some(t.excursions.len() as u64)),
            "strokes above and excursions in {}",
            t.session_id
        );
    }
}
