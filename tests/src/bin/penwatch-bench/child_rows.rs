//! The comparison rows whose consumer is a child process of the benchmark: the bare
//! subscriber, the fast consumer into InfluxDB, and the durable (alone or forwarding to
//! InfluxDB) and log consumers.

use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use penwatch_tests::load::Plan;
use penwatch_tests::{InfluxV1, Mosquitto};

use crate::probe::CpuMeter;
use crate::{Measured, durable, influx_count, influx_query, publisher, start_load, timeout_for};

/// A comparison consumer in its own process, with its `ready` / `done` lines timestamped.
pub struct ChildConsumer {
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
    pub fn bare(port: u16, expect: u64) -> anyhow::Result<Self> {
        Self::spawn(&[
            "consume-bare".into(),
            "--port".into(),
            port.to_string(),
            "--expect".into(),
            expect.to_string(),
        ])
    }

    /// A durable consumer on the broker at `port`, storing `expect` messages under `dir`
    /// and, with `forward` (InfluxDB's URL and a v1 database), forwarding them there.
    pub fn durable(
        port: u16,
        dir: &Path,
        store: durable::Store,
        forward: Option<(String, &str)>,
        expect: u64,
    ) -> anyhow::Result<Self> {
        let store = clap::ValueEnum::to_possible_value(&store).context("store name")?;
        let mut args = vec![
            "consume-durable".into(),
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            dir.display().to_string(),
            "--store".into(),
            store.get_name().into(),
            "--expect".into(),
            expect.to_string(),
        ];
        if let Some((influx, db)) = forward {
            args.extend(["--influx".into(), influx, "--db".into(), db.into()]);
        }
        Self::spawn(&args)
    }

    /// The instant the consumer printed the line `want`, waiting at most `timeout`.
    pub fn wait_line(&self, want: &str, timeout: Duration) -> anyhow::Result<Instant> {
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

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ChildConsumer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A row whose consumer is a child process that says `done` once it has handled the load
/// published to `broker` (CPU measured of `influxd` too, where it stores there).
async fn child_row(
    plan: Plan,
    broker: &Mosquitto,
    consumer: ChildConsumer,
    influxd: Option<u32>,
    row: &'static str,
) -> anyhow::Result<Measured> {
    let cpu = CpuMeter::start(&[
        ("consumer", Some(consumer.pid())),
        ("broker", broker.pid()),
        ("influxd", influxd),
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

pub async fn bare(plan: Plan) -> anyhow::Result<Measured> {
    let broker = Mosquitto::start()?;
    let consumer = ChildConsumer::bare(broker.port(), plan.messages)?;
    child_row(
        plan,
        &broker,
        consumer,
        None,
        "bare subscriber (QoS 1, counts)",
    )
    .await
}

pub async fn fast(plan: Plan) -> anyhow::Result<Measured> {
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
    let row = "fast consumer → InfluxDB (acks on receipt, minimal points)";
    stored_row(plan, &broker, &influx, consumer, row).await
}

pub async fn durable_influx(plan: Plan) -> anyhow::Result<Measured> {
    let broker = Mosquitto::start()?;
    let influx = InfluxV1::start()?;
    influx_query(&influx, "CREATE DATABASE bench").await?;
    let dir = tempfile::tempdir()?;
    let consumer = ChildConsumer::durable(
        broker.port(),
        dir.path(),
        durable::Store::Sqlite,
        Some((influx.url(), "bench")),
        plan.messages,
    )?;
    let row = "simplest durable consumer → InfluxDB (SQLite, acks after the commit, then \
               minimal points)";
    stored_row(plan, &broker, &influx, consumer, row).await
}

/// A row whose consumer says `done` once the InfluxDB v1 database `bench` holds a minimal
/// point for every message; checked by counting them.
async fn stored_row(
    plan: Plan,
    broker: &Mosquitto,
    influx: &InfluxV1,
    consumer: ChildConsumer,
    row: &'static str,
) -> anyhow::Result<Measured> {
    let mut measured = child_row(plan, broker, consumer, influx.pid(), row).await?;
    let stored = influx_count(influx, "bench", "SELECT COUNT(depth_mm) FROM pen").await?;
    if stored != plan.messages {
        bail!("{row}: InfluxDB holds {stored} of {} points", plan.messages);
    }
    measured.stored = Some(measured.done);
    Ok(measured)
}

pub async fn durable(plan: Plan, store: durable::Store) -> anyhow::Result<Measured> {
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let consumer = ChildConsumer::durable(broker.port(), dir.path(), store, None, plan.messages)?;
    let row = match store {
        durable::Store::Sqlite => {
            "durable consumer (SQLite, fsync per batch, acks after the commit; nothing else)"
        }
        durable::Store::Log => {
            "log consumer (appends payloads to a file, fsync per batch, acks after it; no key, \
             not exactly-once)"
        }
    };
    child_row(plan, &broker, consumer, None, row).await
}
