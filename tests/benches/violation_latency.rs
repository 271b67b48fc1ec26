//! Violation latency: from publishing an over-depth sample to the broker until the
//! `WatchViolations` stream delivers it, and until the violation alert reaches a webhook,
//! through a real mosquitto and gateway process.
//!
//! Every 20 ms a new session starts and exceeds at once (one sample in flight at a time on the
//! stream), beside a background load from the simulator (`PENWATCH_BENCH_BACKGROUND_RATE`
//! messages/s, default 3000; 0 for none); the webhook receiver notes when each alert arrives.
//! Prints p50 / p99 / max of both. Run (builds the gateway first):
//!     cargo build --workspace --bins && cargo bench -p penwatch-tests --bench violation_latency --profile dev
//! or with `--release` after `cargo build --release --workspace --bins`. Samples: env
//! `PENWATCH_BENCH_SAMPLES` (default 500).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use penwatch_proto::v1::pen_watch_client::PenWatchClient;
use penwatch_proto::v1::{self as pb, DeviceClass, Event, Telemetry};
use penwatch_tests::alerting::WebhookReceiver;
use penwatch_tests::{Gateway, Mosquitto, env_or};
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

fn sample(seq: u64, session: &str, depth_mm: f64, event: Event) -> Telemetry {
    Telemetry {
        device_id: "pen-bench".into(),
        clinic_id: "c01".into(),
        device_class: DeviceClass::Salon.into(),
        model: "Pen-X".into(),
        firmware: "2.1.0".into(),
        operator_id: "op-bench".into(),
        session_id: session.into(),
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
    let n: u64 = env_or("PENWATCH_BENCH_SAMPLES", 500);
    let rate: u64 = env_or("PENWATCH_BENCH_BACKGROUND_RATE", 3000);
    let broker = Mosquitto::start()?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("gateway.toml");
    let webhook = WebhookReceiver::start()?;
    std::fs::write(
        &config,
        format!(
            "[[api.tokens]]\nname = \"bench\"\ntoken = \"{TOKEN}\"\nrole = \"reviewer\"\n\
             [[alerts.webhooks]]\nname = \"bench\"\nurl = \"{}\"\n\
             secret = \"bench-webhook-secret-0123456789\"\nkinds = [\"violation\"]\n",
            webhook.url()
        ),
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
    let mut published = Vec::with_capacity(n as usize);
    for i in 0..n {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let session = format!("s-bench-{i}");
        let seq = 3 * i + 1;
        mqtt.publish(
            topic,
            QoS::AtLeastOnce,
            false,
            sample(seq, &session, 0.0, Event::SessionStart).encode_to_vec(),
        )
        .await?;
        let started = Instant::now();
        mqtt.publish(
            topic,
            QoS::AtLeastOnce,
            false,
            sample(seq + 1, &session, 1.5, Event::Sample).encode_to_vec(),
        )
        .await?;
        published.push((format!("\"{session}\""), started));
        loop {
            let v = tokio::time::timeout(Duration::from_secs(10), violations.next())
                .await
                .context("no violation within 10 s")?
                .context("stream ended")??;
            if v.session_id == session {
                latencies.push(started.elapsed());
                break;
            }
        }
        mqtt.publish(
            topic,
            QoS::AtLeastOnce,
            false,
            sample(seq + 2, &session, 0.0, Event::SessionEnd).encode_to_vec(),
        )
        .await?;
    }
    let webhook_latencies = webhook_arrivals(&webhook, &published).await?;
    let background_rate = (gateway.metric("penwatch_messages_received_total") - received_before)
        / load_started.elapsed().as_secs_f64();
    if let Some(mut child) = background {
        let _ = child.kill();
        let _ = child.wait();
    }
    for (what, mut l) in [
        ("violation stream (WatchViolations)", latencies),
        ("violation alert at the webhook", webhook_latencies),
    ] {
        l.sort();
        println!(
            "{what}, publish -> receipt, {} violations, one every 20 ms, beside \
             {background_rate:.0} msg/s of background load: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            percentile(&l, 0.50).as_secs_f64() * 1e3,
            percentile(&l, 0.99).as_secs_f64() * 1e3,
            l.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }
    Ok(())
}

/// For each published violation (the session id as it appears in JSON, and when its sample
/// was published), how long until its first alert reached the webhook.
async fn webhook_arrivals(
    webhook: &WebhookReceiver,
    published: &[(String, Instant)],
) -> anyhow::Result<Vec<Duration>> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let received = webhook.received();
        let firsts: Vec<Option<Duration>> = published
            .iter()
            .map(|(session, started)| {
                received
                    .iter()
                    .find(|r| String::from_utf8_lossy(&r.body).contains(session.as_str()))
                    .map(|r| r.at.saturating_duration_since(*started))
            })
            .collect();
        let missing = firsts.iter().filter(|f| f.is_none()).count();
        if missing == 0 {
            return Ok(firsts.into_iter().flatten().collect());
        }
        if Instant::now() > deadline {
            bail!("{missing} violation alerts never reached the webhook");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
