//! The gateway's rows: a burst with the sink off or into InfluxDB, through a NATS cluster, and
//! a backlog drained; each on the gateway binary with its defaults (plus `--gateway-config`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use penwatch_tests::load::Plan;
use penwatch_tests::nats::NatsCluster;
use penwatch_tests::{Gateway, InfluxV1, Mosquitto};

use crate::child_rows::ChildConsumer;
use crate::probe::{self, CpuMeter, RssSampler};
use crate::{
    Measured, RssReport, durable, influx_count, influx_query, publisher, start_load, timeout_for,
};

/// What the gateway's own metrics and files say after a row.
pub struct GatewayReport {
    /// 99th percentile of the batch commit time, from the histogram's buckets (upper bound).
    pub commit_p99_s: f64,
    /// The journal database's size, MiB.
    pub journal_mib: f64,
    /// Its WAL's size, MiB.
    pub wal_mib: f64,
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

/// The text of `--gateway-config`, empty without it.
fn extra_config() -> anyhow::Result<String> {
    match EXTRA_CONFIG.get() {
        Some(Some(file)) => {
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
        }
        _ => Ok(String::new()),
    }
}

/// Writes the gateway's configuration under `dir` (`--gateway-config`, then the sink's section
/// where it stores into `influx`); its path.
fn gateway_config(dir: &Path, influx: Option<&InfluxV1>) -> anyhow::Result<String> {
    let path = dir.join("gateway.toml");
    let mut text = extra_config()?;
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
pub static EXTRA_CONFIG: std::sync::OnceLock<Option<std::path::PathBuf>> =
    std::sync::OnceLock::new();

const RECEIVED: &str = "penwatch_messages_received_total";
const WRITTEN: &str = "penwatch_sink_points_written_total{stream=\"samples\"}";

pub async fn gateway(plan: Plan, with_influx: bool, rss_every_s: f64) -> anyhow::Result<Measured> {
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

pub async fn gateway_nats(plan: Plan, rss_every_s: f64) -> anyhow::Result<Measured> {
    let cluster = NatsCluster::start(3)?;
    let dir = tempfile::tempdir()?;
    let extra = extra_config()?;
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

pub async fn backlog(plan: Plan, rss_every_s: f64) -> anyhow::Result<Measured> {
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
        None,
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
        None,
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
