//! The comparison rows, each run as a child process of the benchmark so its CPU time is its
//! own. A child prints `ready` once subscribed and `done` once it has handled the expected
//! number of messages; the benchmark timestamps those lines on its own clock.
//!
//! - `bare`: a QoS 1 subscriber that acknowledges on receipt and only counts.
//! - `fast`: the simplest fast consumer that stores into InfluxDB: acknowledges on receipt
//!   (no durability), takes the device from the topic and the depth from the JSON payload,
//!   and writes minimal points (one tag, one field) in 5,000-point batches, one write in
//!   flight. No judging, no sessions, no journal.
//! - `durable` (`durable.rs`): the simplest consumer with the gateway's durability.

use std::time::Duration;

use anyhow::{Context, bail};
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};

/// Points per write of the fast consumer.
const FAST_BATCH: usize = 5000;

/// Connects and subscribes (acknowledging each message on receipt, or leaving that to the
/// caller with `manual_acks`); returns the client, its event loop and the messages that
/// arrived before the subscription was confirmed (a persistent session's queue starts at once).
pub async fn subscribe(
    port: u16,
    id: &str,
    manual_acks: bool,
) -> anyhow::Result<(AsyncClient, rumqttc::EventLoop, Vec<rumqttc::Publish>)> {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(false)
        .set_manual_acks(manual_acks)
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut eventloop) = AsyncClient::new(options, 10_000);
    client
        .subscribe(penwatch_proto::topic::ALL_TELEMETRY, QoS::AtLeastOnce)
        .await?;
    let mut early = Vec::new();
    loop {
        match eventloop.poll().await? {
            Event::Incoming(Incoming::SubAck(_)) => break,
            Event::Incoming(Incoming::Publish(p)) => early.push(p),
            _ => {}
        }
    }
    println!("ready");
    Ok((client, eventloop, early))
}

/// The bare subscriber: counts `expect` messages.
pub async fn bare(port: u16, expect: u64) -> anyhow::Result<()> {
    let (client, mut eventloop, early) = subscribe(port, "bench-bare", false).await?;
    let mut n = early.len() as u64;
    while n < expect {
        if let Event::Incoming(Incoming::Publish(_)) = eventloop.poll().await? {
            n += 1;
        }
    }
    println!("done");
    client.disconnect().await?;
    Ok(())
}

/// The fast consumer: stores `expect` minimal points in the InfluxDB v1 database `db`.
pub async fn fast(port: u16, influx: String, db: String, expect: u64) -> anyhow::Result<()> {
    let (client, mut eventloop, early) = subscribe(port, "bench-fast", false).await?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(write_points(influx, db, rx, expect));
    let line = |p: &rumqttc::Publish| -> anyhow::Result<String> {
        let v: serde_json::Value = serde_json::from_slice(&p.payload)?;
        Ok(minimal_line_of(device_of(&p.topic), &v))
    };
    let mut n = 0u64;
    for p in &early {
        n += 1;
        tx.send(line(p)?).ok().context("writer stopped")?;
    }
    while n < expect {
        if let Event::Incoming(Incoming::Publish(p)) = eventloop.poll().await? {
            n += 1;
            tx.send(line(&p)?).ok().context("writer stopped")?;
        }
    }
    // Keep acknowledging while the writer finishes.
    let keep_polling = tokio::spawn(async move { while eventloop.poll().await.is_ok() {} });
    writer.await??;
    // The disconnect goes out through the polling task, which then ends.
    client.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), keep_polling).await;
    Ok(())
}

/// Writes the lines `rx` yields to the InfluxDB v1 database `db` in batches of up to
/// [`FAST_BATCH`], one write in flight, retrying a failed write; says `done` once `expect`
/// points are written.
pub async fn write_points(
    influx: String,
    db: String,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    expect: u64,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let url = format!("{influx}/write?db={db}&precision=ns");
    let mut written = 0u64;
    let mut lines = Vec::with_capacity(FAST_BATCH);
    while written < expect {
        if rx.recv_many(&mut lines, FAST_BATCH).await == 0 {
            bail!("the MQTT side stopped after {written} points");
        }
        let body = lines.join("\n");
        loop {
            match http.post(&url).body(body.clone()).send().await {
                Ok(r) if r.status().is_success() => break,
                Ok(r) => eprintln!("write: HTTP {}", r.status()),
                Err(e) => eprintln!("write: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        written += lines.len() as u64;
        lines.clear();
    }
    println!("done");
    Ok(())
}

/// The pen a telemetry topic names (`clinics/{clinic}/pens/{device}/telemetry`).
pub fn device_of(topic: &str) -> &str {
    topic.split('/').nth(3).unwrap_or("unknown")
}

/// The minimal point of pen `device`'s JSON telemetry message: its depth, time and seq from
/// the payload.
pub fn minimal_line_of(device: &str, v: &serde_json::Value) -> String {
    let depth = v["depth_mm"].as_f64().unwrap_or(0.0);
    let ts = v["timestamp_ms"].as_i64().unwrap_or(0);
    let seq = v["seq"].as_u64().unwrap_or(0);
    minimal_line(device, depth, ts, seq)
}

/// A minimal point (one tag, one field) in line protocol, without its line break, at the
/// gateway's nanosecond timestamp (`ts_ms × 1,000,000 + seq mod 1,000,000`).
pub fn minimal_line(device: &str, depth_mm: f64, ts_ms: i64, seq: u64) -> String {
    let time = ts_ms * 1_000_000 + (seq % 1_000_000) as i64;
    format!("pen,device={device} depth_mm={depth_mm} {time}")
}
