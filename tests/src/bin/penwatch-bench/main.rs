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
//! - `durable-influx`: the durable consumer forwarding each committed batch to InfluxDB as
//!   the fast consumer's minimal points: the simplest exactly-once consumer end to end;
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

mod child_rows;
mod consumers;
mod durable;
mod gateway_rows;
mod load;
mod points;
mod probe;
mod report;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use penwatch_tests::InfluxV1;

use gateway_rows::{EXTRA_CONFIG, GatewayReport};
use penwatch_tests::load::Plan;

/// Ingest benchmark: the gateway against a bare subscriber, a fast non-durable consumer and
/// the simplest durable ones.
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
        default_value = "bare,fast,durable,durable-influx,durable-log,gateway,gateway-influx,backlog"
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
    DurableInflux,
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
        /// Forward what is committed to this InfluxDB (with `--db`).
        #[arg(long, requires = "db")]
        influx: Option<String>,
        #[arg(long)]
        db: Option<String>,
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
            influx,
            db,
            expect,
        }) => {
            let forward = influx
                .zip(db)
                .map(|(influx, db)| durable::Forward { influx, db });
            return durable::run(port, dir, store, forward, expect).await;
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
                Row::Bare => vec![child_rows::bare(plan).await?],
                Row::Fast => vec![child_rows::fast(plan).await?],
                Row::Durable => vec![child_rows::durable(plan, durable::Store::Sqlite).await?],
                Row::DurableInflux => vec![child_rows::durable_influx(plan).await?],
                Row::DurableLog => vec![child_rows::durable(plan, durable::Store::Log).await?],
                Row::Gateway => vec![gateway_rows::gateway(plan, false, cli.rss_every_s).await?],
                Row::GatewayInflux => {
                    vec![gateway_rows::gateway(plan, true, cli.rss_every_s).await?]
                }
                Row::GatewayNats => vec![gateway_rows::gateway_nats(plan, cli.rss_every_s).await?],
                Row::Backlog => vec![gateway_rows::backlog(plan, cli.rss_every_s).await?],
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
