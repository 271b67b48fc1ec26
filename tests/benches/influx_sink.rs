//! Sustained points/s from a pre-filled journal to InfluxDB 1.6 (v1 API, gzip, ns precision),
//! for several batch sizes. Each batch size drains the whole journal into its own database.
//!
//! `cargo bench -p penwatch-tests --bench influx_sink` (release build); the number of samples
//! and the batch sizes can be set with `PENWATCH_BENCH_POINTS` and `PENWATCH_BENCH_BATCHES`
//! (comma-separated).

use std::time::{Duration, Instant};

use penwatch_gateway::decode::{Encoding, Reading};
use penwatch_gateway::journal::{Sync, Upkeep, Writer};
use penwatch_gateway::metrics::Metrics;
use penwatch_gateway::sessions::Verdict;
use penwatch_gateway::sink::{Api, Forwarder, InfluxConfig, SAMPLES_CURSOR};
use penwatch_proto::v1::{DeviceClass, Event, Zone};
use penwatch_tests::{InfluxV1, env_or, http_status};
use tokio_util::sync::CancellationToken;

const DEVICES: u64 = 20;

fn fill(journal: &mut Writer, points: u64) -> anyhow::Result<()> {
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64
        - 86_400_000;
    let mut i = 0;
    while i < points {
        let batch = journal.batch()?;
        let mut samples = batch.samples()?;
        for _ in 0..10_000.min(points - i) {
            let (device, seq) = (i % DEVICES, i / DEVICES + 1);
            let r = Reading {
                device_id: format!("pen-{device:03}"),
                clinic_id: format!("c{:02}", device % 4),
                claimed_class: DeviceClass::Medical,
                model: "ProPen".into(),
                firmware: "2.1.0".into(),
                operator_id: format!("op-{}", device % 8),
                session_id: format!("s-{device}-{}", seq / 2000),
                cartridge_id: format!("cart-{device}-{}", seq / 2000),
                cartridge_model: "C36".into(),
                seq,
                timestamp_ms: base + seq as i64 * 10,
                event: Event::Sample,
                depth_mm: 0.25 * (seq % 8) as f64,
                session_strokes: seq * 12,
                cartridge_strokes: seq * 12,
                speed_hz: 110.0,
                battery_pct: 75.5,
                zone: Some(Zone::Forehead),
                encoding: Encoding::Protobuf,
            };
            let v = Verdict {
                permitted_mm: 1.5,
                binding: "class".into(),
                device_class: "medical".into(),
                exceeded: false,
                unknown_operator: false,
                unregistered_device: false,
                class_mismatch: false,
                policy_version: "bench".into(),
            };
            samples.insert(&r, &v, r.timestamp_ms)?;
            i += 1;
        }
        drop(samples);
        batch.commit()?;
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let points: u64 = env_or("PENWATCH_BENCH_POINTS", 300_000);
    let batches: Vec<usize> = std::env::var("PENWATCH_BENCH_BATCHES")
        .unwrap_or_else(|_| "1000,5000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal.db");
    let mut journal = Writer::open(&path, Sync::Normal)?;
    let started = Instant::now();
    fill(&mut journal, points)?;
    eprintln!(
        "journal filled with {points} samples in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(journal);
    let journal = Upkeep::open(&path)?;
    let influx = InfluxV1::start()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    for batch_size in batches {
        let db = format!("bench_{batch_size}");
        let status = http_status(
            influx.port(),
            "POST",
            &format!("/query?q=CREATE%20DATABASE%20{db}"),
        );
        anyhow::ensure!(status == Some(200), "CREATE DATABASE answered {status:?}");
        journal.set_cursor(SAMPLES_CURSOR, 0)?;
        let config = InfluxConfig {
            api: Api::V1,
            url: influx.url(),
            database: db,
            batch_size,
            linger_ms: 10,
            status_interval_s: 0,
            ..InfluxConfig::default()
        };
        let forwarder = Forwarder::new(&config, &path, Metrics::new())?;
        let stop = CancellationToken::new();
        let started = Instant::now();
        let task = runtime.spawn(forwarder.run(stop.clone()));
        while journal.cursor(SAMPLES_CURSOR)? < points as i64 {
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(600),
                "drain did not finish"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let secs = started.elapsed().as_secs_f64();
        stop.cancel();
        runtime.block_on(task)?;
        println!(
            "batch_size {batch_size:>6}: {points} points in {secs:.2} s = {:.0} points/s",
            points as f64 / secs
        );
    }
    Ok(())
}
