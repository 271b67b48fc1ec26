//! Violation-stream latency: from publishing an over-depth sample to the broker until the
//! `WatchViolations` stream delivers it, through a real mosquitto and gateway process.
//!
//! One sample in flight at a time, every 20 ms, beside a background load from the simulator
//! (`PENWATCH_BENCH_BACKGROUND_RATE` messages/s, default 3000; 0 for none); prints p50 / p99 /
//! max. Run (builds the gateway first):
//!     cargo build --workspace --bins && cargo bench -p penwatch-tests --bench violation_latency --profile dev
//! or with `--release` after `cargo build --release --workspace --bins`. Samples: env
//! `PENWATCH_BENCH_SAMPLES` (default 500).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use penwatch_proto::v1::pen_watch_client::PenWatchClient;
use penwatch_proto::v1::{self as pb, DeviceClass, Event, Telemetry};
use penwatch_tests::{Gateway, Mosquitto};
use prost::Message;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tokio_stream::StreamExt;
use tonic::Request;

const TOKEN: &str = "bench-reviewer-token-0123456789";

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

fn sample(seq: u64, depth_mm: f64, event: Event) -> Telemetry {
    Telemetry {
        device_id: "pen-bench".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Salon.into(),
        model: "Pen-X".into(),
        firmware: "2.1.0".into(),
        operator_id: "op-bench".into(),
        session_id: "s-bench".into(),
        cartridge_id: "cart-bench".into(),
        cartridge_model: "N12".into(),
        seq,
        timestamp_ms: now_ms(),
        event: event.into(),
        depth_mm,
        session_strokes: seq * 10,
        cartridge_strokes: seq * 10,
        speed_hz: 120.0,
        battery_pct: 80.0,
        zone: 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::var("PENWATCH_BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let rate: u64 = std::env::var("PENWATCH_BENCH_BACKGROUND_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[[api.tokens]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nrole = \"reviewer\"\n"),
    )?;
    let gateway = Gateway::start(
        &broker.url(),
        dir.path(),
        &["--config", &config.display().to_string()],
    )?;
    let mut client =
        PenWatchClient::connect(format!("http://127.0.0.1:{}", gateway.api_port())).await?;
    let mut request = Request::new(pb::WatchViolationsRequest {
        filter: Some(pb::Filter {
            device_ids: vec!["pen-bench".into()],
            ..pb::Filter::default()
        }),
    });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse()?);
    let mut violations = client.watch_violations(request).await?.into_inner();

    let mut options = MqttOptions::new("bench-pub", "127.0.0.1", broker.port());
    options.set_max_packet_size(1024 * 1024, 1024 * 1024);
    let (mqtt, mut eventloop) = AsyncClient::new(options, 100);
    tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    let topic = "clinics/c01/pens/pen-bench/telemetry";
    mqtt.publish(
        topic,
        QoS::AtLeastOnce,
        false,
        sample(1, 0.0, Event::SessionStart).encode_to_vec(),
    )
    .await?;

    // Background load: the simulator's load mode, paced, for the whole measurement.
    let background = match rate {
        0 => None,
        _ => Some(
            std::process::Command::new(penwatch_tests::binary("penwatch-sim")?)
                .args([
                    "--broker",
                    &broker.url(),
                    "--clinics",
                    "10",
                    "--pens-per-clinic",
                    "100",
                    "--seed",
                    "3",
                    "--rate",
                    &rate.to_string(),
                    "--connections",
                    "4",
                    "--duration",
                    &format!("{}s", 30 + n / 20),
                ])
                .stdout(std::process::Stdio::null())
                .spawn()?,
        ),
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received_before = gateway.metric("penwatch_messages_received_total");
    let load_started = Instant::now();

    let mut latencies = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let seq = i + 2;
        let started = Instant::now();
        mqtt.publish(
            topic,
            QoS::AtLeastOnce,
            false,
            sample(seq, 1.5, Event::Sample).encode_to_vec(),
        )
        .await?;
        loop {
            let v = tokio::time::timeout(Duration::from_secs(10), violations.next())
                .await
                .context("no violation within 10 s")?
                .context("stream ended")??;
            let above = v.evidence.map_or(0, |e| e.samples_above);
            if above == i + 1 {
                latencies.push(started.elapsed());
                break;
            }
            if above > i + 1 {
                bail!("violation stream ran ahead: {above} samples above after {i}");
            }
        }
    }
    let background_rate = (gateway.metric("penwatch_messages_received_total") - received_before)
        / load_started.elapsed().as_secs_f64();
    if let Some(mut child) = background {
        let _ = child.kill();
        let _ = child.wait();
    }
    latencies.sort();
    println!(
        "violation stream latency, publish -> receipt, {} samples, one every 20 ms, beside \
         {background_rate:.0} msg/s of background load: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    Ok(())
}
