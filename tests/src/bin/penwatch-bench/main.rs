//! `penwatch-bench`: the gateway's ingest against comparison consumers, on the same load, in
//! the same run, each timed on one clock that starts at the first publish.
//!
//! Rows (each on a fresh broker and, where used, a fresh InfluxDB 1.6):
//! - `bare`: a QoS 1 subscriber that only counts: what the broker can deliver;
//! - `fast`: the simplest fast consumer that stores into InfluxDB, not durable (see
//!   `consumers.rs`): the practical end-to-end limit;
//! - `durable`: the simplest consumer with the gateway's durability (SQLite, fsync per batch,
//!   acknowledgement after the commit; `durable.rs`) and nothing else: what durability alone
//!   costs here;
//! - `durable-log`: the floor under any consumer that acknowledges after an fsync: each
//!   payload appended to a file as received, fsync per batch, acknowledgement after it, no key,
//!   no index, not exactly-once (`durable.rs`);
//! - `gateway`: the gateway with its defaults, sink off: time to the last message committed;
//! - `gateway-influx`: the gateway with the InfluxDB v1 sink: time to the last message
//!   committed and to the last point in InfluxDB;
//! - `gateway-nats`: the gateway reading a replicated stream (`[nats]`) on a 3-node NATS
//!   cluster whose first node's MQTT listener the load is published to; time to the last
//!   message committed, CPU of the gateway and of each node (not in the default rows);
//! - `backlog`: the load is queued at the broker while the gateway is offline, then the
//!   gateway starts and drains it: time from its start to the last message committed, against
//!   a bare subscriber and the durable consumer draining the same queue;
//! - `influx-points`: no broker and no consumer: the load's samples written straight to a
//!   fresh influxd as minimal points and as the gateway's `pen_sample` points, in 5,000-point
//!   batches (`points.rs`): what InfluxDB alone pays for each (not in the default rows).
//!
//! For each row: messages/s, CPU µs per message of each process (consumer, broker,
//! influxd, and the benchmark itself, which is the publisher), and the gateway's resident
//! memory over time, peak and final.
//!
//! Run in release mode: `cargo build --release --workspace --bins &&
//! target/release/penwatch-bench --messages 300000`.
//!
//! Every row runs on an open broker ([`Mosquitto::start`]), not the authenticated one a
//! deployment needs: the load plays 1,000 pens over 4 shared connections, which per-pen
//! identities forbid, and 1,000 connections (one per pen) would measure the publisher more
//! than the consumers. An ACL's cost falls on the broker (a check per publish and per
//! delivery), the same in every row, not on the consumers compared; the broker's CPU column
//! is measured without it.

mod consumers;
mod durable;
mod load;
mod points;
mod probe;
mod report;

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use penwatch_tests::nats::NatsCluster;
use penwatch_tests::{Gateway, InfluxV1, Mosquitto};

use penwatch_tests::load::Plan;
use probe::{CpuMeter, RssSampler};

/// Ingest benchmark: the gateway against a bare subscriber, a fast non-durable consumer and
/// the simplest durable one.
#[derive(Parser)]
struct Cli {
    /// Messages in the load.
    #[arg(long, default_value_t = 300_000)]
    messages: u64,
    /// Pens.
    #[arg(long, default_value_t = 1000)]
    pens: u32,
    /// Samples per session (each session also sends its start and end).
    #[arg(long, default_value_t = 50)]
    session_samples: u32,
    /// MQTT connections the load is published over.
    #[arg(long, default_value_t = 4)]
    connections: u32,
    /// Paced mode: messages per second; without it the load is a burst.
    #[arg(long)]
    rate: Option<f64>,
    /// Rows to run, in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bare,fast,durable,durable-log,gateway,gateway-influx,backlog"
    )]
    rows: Vec<Row>,
    /// Extra gateway configuration (TOML, without an `[influx]` section) for the gateway rows.
    #[arg(long, value_name = "FILE")]
    gateway_config: Option<std::path::PathBuf>,
    /// Runs the rows this many times in turn and prints each round's ratios and their median:
    /// on a machine whose speed drifts, rows are compared within a round.
    #[arg(long, default_value_t = 1)]
    rounds: u32,
    /// Seconds between resident-memory samples of the gateway.
    #[arg(long, default_value_t = 1.0)]
    rss_every_s: f64,
    #[command(subcommand)]
    child: Option<ChildRole>,
}

/// A comparison row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Row {
    Bare,
    Fast,
    Durable,
    DurableLog,
    Gateway,
    GatewayInflux,
    GatewayNats,
    Backlog,
    InfluxPoints,
}

/// The benchmark runs its comparison consumers as child processes of itself.
#[derive(Subcommand)]
enum ChildRole {
    /// A bare QoS 1 subscriber.
    #[command(name = "consume-bare", hide = true)]
    Bare {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        expect: u64,
    },
    /// The fast non-durable consumer into InfluxDB.
    #[command(name = "consume-fast", hide = true)]
    Fast {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        influx: String,
        #[arg(long)]
        db: String,
        #[arg(long)]
        expect: u64,
    },
    /// The simplest durable consumer.
    #[command(name = "consume-durable", hide = true)]
    Durable {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        dir: std::path::PathBuf,
        #[arg(long, value_enum)]
        store: durable::Store,
        #[arg(long)]
        expect: u64,
    },
}

/// What one row measured.
struct Measured {
    row: &'static str,
    /// From the first publish (or the consumer's start, for a drain) to the last message
    /// handled (committed, for the gateway).
    done: Duration,
    /// To the last point in InfluxDB, where the row stores there.
    stored: Option<Duration>,
    /// Until the broker acknowledged the last publish.
    published: Option<Duration>,
    cpu: Vec<(&'static str, f64)>,
    rss: Option<RssReport>,
    gateway: Option<GatewayReport>,
}

/// What the gateway's own metrics and files say after a row.
struct GatewayReport {
    /// 99th percentile of the batch commit time, from the histogram's buckets (upper bound).
    commit_p99_s: f64,
    /// Journal database and WAL sizes, MiB.
    journal_mib: f64,
    wal_mib: f64,
}

impl GatewayReport {
    fn read(g: &Gateway) -> Self {
        let metrics = g.metrics();
        let mut buckets: Vec<(f64, f64)> = metrics
            .lines()
            .filter_map(|l| l.strip_prefix("penwatch_batch_commit_seconds_bucket{le=\""))
            .filter_map(|l| {
                let (le, n) = l.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, n.trim().parse().ok()?))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let total = buckets.last().map_or(0.0, |b| b.1);
        let commit_p99_s = buckets
            .iter()
            .find(|(_, n)| *n >= total * 0.99)
            .map_or(0.0, |b| b.0);
        let size = |p: std::path::PathBuf| {
            std::fs::metadata(p).map_or(0.0, |m| m.len() as f64 / 1048576.0)
        };
        let journal = g.journal_path();
        Self {
            commit_p99_s,
            journal_mib: size(journal.clone()),
            wal_mib: size(journal.with_extension("db-wal")),
        }
    }
}

struct RssReport {
    series: Vec<(Duration, f64)>,
    peak: f64,
    settled: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.child {
        Some(ChildRole::Bare { port, expect }) => {
            return consumers::bare(port, expect).await;
        }
        Some(ChildRole::Fast {
            port,
            influx,
            db,
            expect,
        }) => return consumers::fast(port, influx, db, expect).await,
        Some(ChildRole::Durable {
            port,
            dir,
            store,
            expect,
        }) => {
            return durable::run(port, dir, store, expect).await;
        }
        None => {}
    }
    rlimit::increase_nofile_limit(65_536).context("raising the open-files limit")?;
    let _ = EXTRA_CONFIG.set(cli.gateway_config.clone());
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        - 3_600_000;
    let plan = Plan {
        messages: cli.messages,
        pens: cli.pens,
        session_samples: cli.session_samples,
        connections: cli.connections,
        rate: cli.rate,
        start_ms,
    };
    let mode = match plan.rate {
        Some(r) => format!("paced at {r:.0} msg/s"),
        None => "burst".to_owned(),
    };
    let (topic, sample) = plan.message(1);
    println!(
        "penwatch-bench: {} messages ({mode}), {} pens, sessions of {} samples ({} close inside the load), \
         JSON payloads of ~{} bytes on {topic}-like topics, QoS 1 over {} connections",
        plan.messages,
        plan.pens,
        plan.session_samples,
        plan.sessions_closed(),
        sample.len(),
        plan.connections
    );
    let mut rounds = Vec::new();
    for round in 1..=cli.rounds.max(1) {
        if cli.rounds > 1 {
            println!("\nround {round} of {}", cli.rounds);
        }
        let mut results = Vec::new();
        for row in &cli.rows {
            let rows = match row {
                Row::Bare => vec![bare(plan).await?],
                Row::Fast => vec![fast(plan).await?],
                Row::Durable => vec![durable(plan, durable::Store::Sqlite).await?],
                Row::DurableLog => vec![durable(plan, durable::Store::Log).await?],
                Row::Gateway => vec![gateway(plan, false, cli.rss_every_s).await?],
                Row::GatewayInflux => vec![gateway(plan, true, cli.rss_every_s).await?],
                Row::GatewayNats => vec![gateway_nats(plan, cli.rss_every_s).await?],
                Row::Backlog => vec![backlog(plan, cli.rss_every_s).await?],
                Row::InfluxPoints => vec![
                    points::row(plan, points::Format::Minimal).await?,
                    points::row(plan, points::Format::PenSample).await?,
                ],
            };
            for r in rows {
                report::print_row(&plan, &r);
                results.push(r);
            }
        }
        rounds.push(results);
    }
    report::print_summary(&plan, &rounds);
    Ok(())
}

/// A comparison consumer in its own process, with its `ready` / `done` lines timestamped.
struct ChildConsumer {
    child: Child,
    lines: std::sync::mpsc::Receiver<(String, Instant)>,
}

impl ChildConsumer {
    fn spawn(args: &[String]) -> anyhow::Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((line, Instant::now())).is_err() {
                    break;
                }
            }
        });
        let c = Self { child, lines };
        c.wait_line("ready", Duration::from_secs(30))?;
        Ok(c)
    }

    /// A bare subscriber on the broker at `port`, counting to `expect`.
    fn bare(port: u16, expect: u64) -> anyhow::Result<Self> {
        Self::spawn(&[
            "consume-bare".into(),
            "--port".into(),
            port.to_string(),
            "--expect".into(),
            expect.to_string(),
        ])
    }

    /// A durable consumer on the broker at `port`, storing `expect` messages under `dir`.
    fn durable(port: u16, dir: &Path, store: durable::Store, expect: u64) -> anyhow::Result<Self> {
        let store = match store {
            durable::Store::Sqlite => "sqlite",
            durable::Store::Log => "log",
        };
        Self::spawn(&[
            "consume-durable".into(),
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--store".into(),
            store.into(),
            "--expect".into(),
            expect.to_string(),
        ])
    }

    fn wait_line(&self, want: &str, timeout: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let (line, at) = self
                .lines
                .recv_timeout(left)
                .with_context(|| format!("consumer did not say {want:?} in {timeout:?}"))?;
            if line == want {
                return Ok(at);
            }
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildConsumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Publishes the plan in the background; returns the instant of its first publish.
async fn start_load(
    port: u16,
    plan: Plan,
) -> anyhow::Result<(
    Instant,
    tokio::task::JoinHandle<anyhow::Result<load::Published>>,
)> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(load::publish(port, plan, tx));
    let first = rx.await.context("the load did not start")?;
    Ok((first, task))
}

/// The benchmark's own process in a CPU meter: it is the publisher (its other work, reading
/// the consumers' lines and metrics, is small beside that).
fn publisher() -> (&'static str, Option<u32>) {
    ("publisher", Some(std::process::id()))
}

fn timeout_for(plan: &Plan) -> Duration {
    Duration::from_secs(120 + plan.messages / 2000)
}

/// A row whose consumer is a child process that says `done` once it has handled the load
/// published to `broker`.
async fn child_row(
    plan: Plan,
    broker: &Mosquitto,
    consumer: ChildConsumer,
    row: &'static str,
) -> anyhow::Result<Measured> {
    let cpu = CpuMeter::start(&[
        ("consumer", Some(consumer.pid())),
        ("broker", broker.pid()),
        publisher(),
    ]);
    let (first, load) = start_load(broker.port(), plan).await?;
    let done = tokio::task::block_in_place(|| consumer.wait_line("done", timeout_for(&plan)))?;
    let cpu = cpu.read();
    let published = load.await??.last_ack - first;
    Ok(Measured {
        published: Some(published),
        row,
        done: done - first,
        stored: None,
        cpu,
        rss: None,
        gateway: None,
    })
}

async fn bare(plan: Plan) -> anyhow::Result<Measured> {
    let broker = Mosquitto::start()?;
    let consumer = ChildConsumer::bare(broker.port(), plan.messages)?;
    child_row(plan, &broker, consumer, "bare subscriber (QoS 1, counts)").await
}

async fn fast(plan: Plan) -> anyhow::Result<Measured> {
    let broker = Mosquitto::start()?;
    let influx = InfluxV1::start()?;
    influx_query(&influx, "CREATE DATABASE bench").await?;
    let consumer = ChildConsumer::spawn(&[
        "consume-fast".into(),
        "--port".into(),
        broker.port().to_string(),
        "--influx".into(),
        influx.url(),
        "--db".into(),
        "bench".into(),
        "--expect".into(),
        plan.messages.to_string(),
    ])?;
    let cpu = CpuMeter::start(&[
        ("consumer", Some(consumer.pid())),
        ("broker", broker.pid()),
        ("influxd", influx.pid()),
        publisher(),
    ]);
    let (first, load) = start_load(broker.port(), plan).await?;
    let done = tokio::task::block_in_place(|| consumer.wait_line("done", timeout_for(&plan)))?;
    let cpu = cpu.read();
    let published = load.await??.last_ack - first;
    let stored = influx_count(&influx, "bench", "SELECT COUNT(depth_mm) FROM pen").await?;
    if stored != plan.messages {
        bail!(
            "fast consumer: InfluxDB holds {stored} of {} points",
            plan.messages
        );
    }
    Ok(Measured {
        published: Some(published),
        row: "fast consumer → InfluxDB (acks on receipt, minimal points)",
        done: done - first,
        stored: Some(done - first),
        cpu,
        rss: None,
        gateway: None,
    })
}

async fn durable(plan: Plan, store: durable::Store) -> anyhow::Result<Measured> {
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let consumer = ChildConsumer::durable(broker.port(), dir.path(), store, plan.messages)?;
    let row = match store {
        durable::Store::Sqlite => {
            "durable consumer (SQLite, fsync per batch, acks after the commit; nothing else)"
        }
        durable::Store::Log => {
            "log consumer (appends payloads to a file, fsync per batch, acks after it; no key, \
             not exactly-once)"
        }
    };
    child_row(plan, &broker, consumer, row).await
}

fn gateway_config(dir: &Path, influx: Option<&InfluxV1>) -> anyhow::Result<String> {
    let path = dir.join("gateway.toml");
    let mut text = match EXTRA_CONFIG.get() {
        Some(Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        _ => String::new(),
    };
    if let Some(i) = influx {
        text += &format!(
            "\n[influx]\napi = \"v1\"\nurl = \"{}\"\ndatabase = \"penwatch\"\nstatus_interval_s = 0\n",
            i.url()
        );
    }
    std::fs::write(&path, text)?;
    Ok(path.display().to_string())
}

/// Polls `metric` of the gateway until it reaches `n`; the instant it was first seen there.
fn wait_metric(g: &Gateway, metric: &str, n: u64, timeout: Duration) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = g.metric(metric) as u64;
        if got >= n {
            return Ok(Instant::now());
        }
        if Instant::now() > deadline {
            let log = g.log();
            let tail: Vec<&str> = log.lines().rev().take(20).collect();
            bail!(
                "gateway: {metric} = {got} of {n} after {timeout:?}; log ends:\n{}",
                tail.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `--gateway-config`, read by every gateway row.
static EXTRA_CONFIG: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();

const RECEIVED: &str = "penwatch_messages_received_total";
const WRITTEN: &str = "penwatch_sink_points_written_total{stream=\"samples\"}";

async fn gateway(plan: Plan, with_influx: bool, rss_every_s: f64) -> anyhow::Result<Measured> {
    let broker = Mosquitto::start()?;
    let influx = if with_influx {
        let i = InfluxV1::start()?;
        influx_query(&i, "CREATE DATABASE penwatch").await?;
        Some(i)
    } else {
        None
    };
    let dir = tempfile::tempdir()?;
    let config = gateway_config(dir.path(), influx.as_ref())?;
    let g = Gateway::start(&broker.url(), dir.path(), &["--config", &config])?;
    let pid = g.pid().context("gateway pid")?;
    let cpu = CpuMeter::start(&[
        ("gateway", Some(pid)),
        ("broker", broker.pid()),
        ("influxd", influx.as_ref().and_then(InfluxV1::pid)),
        publisher(),
    ]);
    let (first, load) = start_load(broker.port(), plan).await?;
    let rss = RssSampler::start(pid, first, Duration::from_secs_f64(rss_every_s));
    let timeout = timeout_for(&plan);
    let committed =
        tokio::task::block_in_place(|| wait_metric(&g, RECEIVED, plan.messages, timeout))?;
    let stored = if with_influx {
        Some(tokio::task::block_in_place(|| {
            wait_metric(&g, WRITTEN, plan.messages, timeout)
        })?)
    } else {
        None
    };
    let cpu = cpu.read();
    let published = load.await??.last_ack - first;
    if let Some(i) = &influx {
        let n = influx_count(i, "penwatch", "SELECT COUNT(depth_mm) FROM pen_sample").await?;
        if n != plan.messages {
            bail!(
                "gateway: InfluxDB holds {n} of {} pen_sample points",
                plan.messages
            );
        }
    }
    let rss = settle_rss(pid, rss).await;
    let report = GatewayReport::read(&g);
    Ok(Measured {
        gateway: Some(report),
        published: Some(published),
        row: if with_influx {
            "gateway → InfluxDB (durable journal, judging, sessions, sink)"
        } else {
            "gateway, sink off (durable journal, judging, sessions)"
        },
        done: committed - first,
        stored: stored.map(|s| s - first),
        cpu,
        rss: Some(rss),
    })
}

async fn gateway_nats(plan: Plan, rss_every_s: f64) -> anyhow::Result<Measured> {
    let cluster = NatsCluster::start(3)?;
    let dir = tempfile::tempdir()?;
    let extra = match EXTRA_CONFIG.get() {
        Some(Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
        }
        _ => String::new(),
    };
    let config = cluster.gateway_config(dir.path(), "")?;
    std::fs::write(
        &config,
        format!("{extra}\n{}", std::fs::read_to_string(&config)?),
    )?;
    let g = Gateway::start(&cluster.mqtt_url(0), dir.path(), &["--config", &config])?;
    let pid = g.pid().context("gateway pid")?;
    let cpu = CpuMeter::start(&[
        ("gateway", Some(pid)),
        ("node 0 (MQTT)", cluster.pid(0)),
        ("node 1", cluster.pid(1)),
        ("node 2", cluster.pid(2)),
        publisher(),
    ]);
    let (first, load) = start_load(cluster.mqtt_port(0), plan).await?;
    let rss = RssSampler::start(pid, first, Duration::from_secs_f64(rss_every_s));
    let committed = tokio::task::block_in_place(|| {
        wait_metric(&g, RECEIVED, plan.messages, timeout_for(&plan))
    })?;
    let cpu = cpu.read();
    let published = load.await??.last_ack - first;
    let rss = settle_rss(pid, rss).await;
    let report = GatewayReport::read(&g);
    Ok(Measured {
        gateway: Some(report),
        published: Some(published),
        row: "gateway reading a replicated NATS stream (3 nodes, R3), sink off",
        done: committed - first,
        stored: None,
        cpu,
        rss: Some(rss),
    })
}

/// Stops the sampler after the gateway has been idle for 3 s, so `settled` is what stays.
async fn settle_rss(pid: u32, sampler: RssSampler) -> RssReport {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let series = sampler.finish();
    RssReport {
        peak: probe::peak_rss_mib(pid).unwrap_or(0.0),
        settled: probe::rss_mib(pid).unwrap_or(0.0),
        series,
    }
}

async fn backlog(plan: Plan, rss_every_s: f64) -> anyhow::Result<Measured> {
    let plan = Plan { rate: None, ..plan };
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let config = gateway_config(dir.path(), None)?;
    // Create the three persistent sessions, then take the consumers offline.
    drop(ChildConsumer::bare(broker.port(), 0)?);
    let durable_dir = tempfile::tempdir()?;
    drop(ChildConsumer::durable(
        broker.port(),
        durable_dir.path(),
        durable::Store::Sqlite,
        0,
    )?);
    let mut g = Gateway::start(&broker.url(), dir.path(), &["--config", &config])?;
    g.terminate()?;
    let (_, load) = start_load(broker.port(), plan).await?;
    load.await??;
    let started = Instant::now();
    let bare = ChildConsumer::bare(broker.port(), plan.messages)?;
    let bare_done = tokio::task::block_in_place(|| bare.wait_line("done", timeout_for(&plan)))?;
    let bare_rate = plan.messages as f64 / (bare_done - started).as_secs_f64();
    drop(bare);
    println!(
        "backlog: a bare subscriber drained the {} queued messages at {bare_rate:.0} msg/s (from its start)",
        plan.messages
    );
    let started = Instant::now();
    let durable = ChildConsumer::durable(
        broker.port(),
        durable_dir.path(),
        durable::Store::Sqlite,
        plan.messages,
    )?;
    let cpu = CpuMeter::start(&[("durable", Some(durable.pid())), ("broker", broker.pid())]);
    let durable_done =
        tokio::task::block_in_place(|| durable.wait_line("done", timeout_for(&plan)))?;
    let cpu: Vec<String> = cpu
        .read()
        .iter()
        .map(|(name, s)| format!("{name} {:.1} µs", s * 1e6 / plan.messages as f64))
        .collect();
    drop(durable);
    println!(
        "backlog: the durable consumer drained them at {:.0} msg/s (from its start; CPU per message: {})",
        plan.messages as f64 / (durable_done - started).as_secs_f64(),
        cpu.join(", ")
    );
    let started = Instant::now();
    g.restart()?;
    let pid = g.pid().context("gateway pid")?;
    let cpu = CpuMeter::start(&[("gateway", Some(pid)), ("broker", broker.pid())]);
    let rss = RssSampler::start(pid, started, Duration::from_secs_f64(rss_every_s));
    let done = tokio::task::block_in_place(|| {
        wait_metric(&g, RECEIVED, plan.messages, timeout_for(&plan))
    })?;
    let cpu = cpu.read();
    let rss = settle_rss(pid, rss).await;
    let report = GatewayReport::read(&g);
    Ok(Measured {
        gateway: Some(report),
        published: None,
        row: "gateway draining a queued backlog (from its start)",
        done: done - started,
        stored: None,
        cpu,
        rss: Some(rss),
    })
}

async fn influx_query(influx: &InfluxV1, q: &str) -> anyhow::Result<String> {
    let r = reqwest::Client::new()
        .post(format!("{}/query", influx.url()))
        .form(&[("q", q)])
        .send()
        .await?;
    let status = r.status();
    let body = r.text().await?;
    if !status.is_success() {
        bail!("InfluxDB {q}: HTTP {status}: {body}");
    }
    Ok(body)
}

async fn influx_count(influx: &InfluxV1, db: &str, q: &str) -> anyhow::Result<u64> {
    let r = reqwest::Client::new()
        .get(format!("{}/query", influx.url()))
        .query(&[("db", db), ("q", q)])
        .send()
        .await?
        .text()
        .await?;
    let v: serde_json::Value = serde_json::from_str(&r)?;
    Ok(v["results"][0]["series"][0]["values"][0][1]
        .as_u64()
        .unwrap_or(0))
}
