//! `penwatch-bench`: ingest throughput and memory of the gateway, measured in one run on the
//! same real broker with load from the simulator's `--rate` mode.
//!
//! 1. Live: the simulator publishes at a target rate; a bare subscriber (QoS 1, automatic
//!    acknowledgements, does nothing) and the gateway (durable commit, policy, manual acks)
//!    receive the same stream. Reported: messages/s each received.
//! 2. Backlog: both are offline while the simulator queues messages at the broker, then each
//!    drains its queue alone. Reported: messages/s each drained (the consumer's capacity).
//! 3. Memory: many pens, one MQTT connection each, publish for a while; reported: the
//!    gateway's peak resident memory (VmHWM).
//!
//! Run in release mode: `cargo run --release -p penwatch-tests --bin penwatch-bench`.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use penwatch_sim::{Scenario, SimConfig};
use penwatch_tests::{Gateway, Mosquitto};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

/// Ingest benchmark: bare subscriber vs gateway on the same broker and load.
#[derive(Parser)]
struct Cli {
    /// Live phase: target aggregate messages/s from the simulator.
    #[arg(long, default_value_t = 40_000.0)]
    rate: f64,
    /// Live phase: seconds of load.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Backlog phase: messages queued at the broker for each consumer.
    #[arg(long, default_value_t = 200_000)]
    backlog: u64,
    /// Pens in the throughput phases.
    #[arg(long, default_value_t = 500)]
    pens: u32,
    /// Memory phase: pens, one MQTT connection each (0 skips the phase).
    #[arg(long, default_value_t = 10_000)]
    memory_pens: u32,
    /// Memory phase: seconds the pens publish (each pen once per second).
    #[arg(long, default_value_t = 30)]
    memory_seconds: u64,
}

fn sim(
    broker: &Mosquitto,
    pens: u32,
    rate: f64,
    duration: Duration,
    connections: Option<usize>,
) -> anyhow::Result<SimConfig> {
    Ok(SimConfig {
        broker: broker.url().parse()?,
        clinics: pens.div_ceil(100).max(1),
        pens_per_clinic: pens.min(100),
        seed: 1,
        scenarios: vec![Scenario::Normal],
        rate: Some(rate),
        connections,
        duration: Some(duration),
        connect_concurrency: 256,
        ..SimConfig::default()
    })
}

/// A bare QoS 1 subscriber with a persistent session that counts what it receives.
struct Bare {
    options: MqttOptions,
}

impl Bare {
    fn new(port: u16) -> Self {
        let mut options = MqttOptions::new("bench-bare", "127.0.0.1", port);
        options
            .set_clean_session(false)
            .set_keep_alive(Duration::from_secs(30));
        Self { options }
    }

    /// Connects, subscribes, and counts messages until `until` of them or `idle` without any.
    async fn receive(&self, until: u64, idle: Duration) -> anyhow::Result<(u64, Duration)> {
        let (client, mut eventloop) = AsyncClient::new(self.options.clone(), 1000);
        client
            .subscribe(penwatch_proto::topic::ALL_TELEMETRY, QoS::AtLeastOnce)
            .await?;
        let mut n = 0u64;
        let mut first: Option<Instant> = None;
        let mut last = Instant::now();
        while n < until {
            match tokio::time::timeout(idle, eventloop.poll()).await {
                Ok(Ok(Event::Incoming(Incoming::Publish(_)))) => {
                    n += 1;
                    last = Instant::now();
                    first.get_or_insert(last);
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
                Err(_) if first.is_some() || until == 0 => break,
                Err(_) => {}
            }
        }
        client.disconnect().await?;
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            while eventloop.poll().await.is_ok() {}
        })
        .await;
        Ok((n, first.map_or(Duration::ZERO, |f| last - f)))
    }
}

fn rss_peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

fn rate(n: u64, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

/// Waits until the gateway has received `n` messages; returns the time from its first to its
/// `n`th, measured by polling its metrics.
fn gateway_drain(g: &Gateway, n: u64, timeout: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    loop {
        let got = g.metric("penwatch_messages_received_total") as u64;
        if got > 0 {
            first.get_or_insert_with(Instant::now);
        }
        if got >= n {
            return Ok(first.map_or(Duration::ZERO, |f| f.elapsed()));
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "gateway received {got} of {n} messages in {timeout:?}; its log ends:\n{}",
            g.log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    rlimit::increase_nofile_limit(65_536).context("raising the open-files limit")?;
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    println!(
        "penwatch-bench: broker mosquitto (zero-loss config), gateway journal sync=full, batch_max=2000, linger=5ms"
    );

    // Create both persistent sessions (subscribed), then take both offline.
    let bare = Bare::new(broker.port());
    bare.receive(0, Duration::from_millis(200)).await?;
    let mut gateway = Gateway::start(&broker.url(), dir.path(), &[])?;
    gateway.terminate()?;

    // 2. Backlog phase first (both offline): queue messages, then each drains alone.
    let secs = (cli.backlog as f64 / cli.rate.max(1.0)).ceil() as u64 + 1;
    let load = penwatch_sim::run(
        sim(
            &broker,
            cli.pens,
            cli.backlog as f64 / secs as f64 * 1.05,
            Duration::from_secs(secs),
            Some(8),
        )?,
        std::future::pending::<()>(),
    )
    .await?;
    let queued = load.telemetry_valid;
    println!(
        "backlog: simulator queued {queued} messages at {:.0} msg/s",
        load.rate_achieved_msgs_per_s
    );
    let (bare_n, bare_d) = bare.receive(queued, Duration::from_secs(5)).await?;
    gateway.restart()?;
    let gw_d = gateway_drain(&gateway, queued, Duration::from_secs(600))?;
    let (b, g) = (rate(bare_n, bare_d), rate(queued, gw_d));
    println!(
        "backlog: bare subscriber drained {bare_n} at {b:.0} msg/s; gateway drained {queued} at {g:.0} msg/s ({:.0} % of bare)",
        g / b * 100.0
    );
    gateway.terminate()?;

    // 1. Live phase: both online, the simulator publishes at the target rate.
    let mut gateway = Gateway::start(&broker.url(), dir.path(), &[])?;
    let before = gateway.metric("penwatch_messages_received_total") as u64;
    let bare_task = {
        let options = bare.options.clone();
        tokio::spawn(async move {
            Bare { options }
                .receive(u64::MAX, Duration::from_secs(3))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let live = penwatch_sim::run(
        sim(
            &broker,
            cli.pens,
            cli.rate,
            Duration::from_secs(cli.seconds),
            Some(8),
        )?,
        std::future::pending::<()>(),
    )
    .await?;
    let (bare_n, bare_d) = bare_task.await??;
    let gw_d = gateway_drain(
        &gateway,
        before + live.telemetry_valid,
        Duration::from_secs(120),
    )?;
    let sent = live.telemetry_valid;
    println!(
        "live: simulator sent {sent} at {:.0} msg/s; bare subscriber received {bare_n} at {:.0} msg/s; gateway received {sent} at {:.0} msg/s",
        live.rate_achieved_msgs_per_s,
        rate(bare_n, bare_d),
        rate(sent, gw_d.max(Duration::from_secs_f64(live.elapsed_s))),
    );
    gateway.terminate()?;

    // 3. Memory with many pens connected.
    if cli.memory_pens > 0 {
        memory(&broker, dir.path(), cli.memory_pens, cli.memory_seconds).await?;
    }
    Ok(())
}

async fn memory(broker: &Mosquitto, dir: &Path, pens: u32, seconds: u64) -> anyhow::Result<()> {
    let mut gateway = Gateway::start(&broker.url(), dir, &[])?;
    let before = gateway.metric("penwatch_messages_received_total") as u64;
    let truth = penwatch_sim::run(
        sim(
            broker,
            pens,
            f64::from(pens),
            Duration::from_secs(seconds),
            None,
        )?,
        std::future::pending::<()>(),
    )
    .await?;
    gateway_drain(
        &gateway,
        before + truth.telemetry_valid,
        Duration::from_secs(120),
    )?;
    let peak = gateway.pid().and_then(rss_peak_kib).unwrap_or(0);
    println!(
        "memory: {pens} pens connected (one MQTT connection each), {} messages at {:.0} msg/s; gateway peak RSS {:.1} MiB",
        truth.telemetry_valid,
        truth.rate_achieved_msgs_per_s,
        peak as f64 / 1024.0
    );
    gateway.terminate()?;
    Ok(())
}
