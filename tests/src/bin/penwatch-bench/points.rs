//! The `influx-points` rows: what InfluxDB alone pays for the gateway's `pen_sample` point
//! against a minimal one (one tag, one field), both written the same way — the load's
//! samples, in 5,000-point batches, one write at a time, no gzip — each to a fresh influxd.
//! The time is from the first write to the last acknowledged; the CPU is influxd's.

use std::time::Instant;

use anyhow::bail;
use penwatch_gateway::journal::forward::SampleRecord;
use penwatch_gateway::sink::schema::{self, Precision};
use penwatch_tests::InfluxV1;
use penwatch_tests::load::Plan;

use crate::consumers::minimal_line;
use crate::probe::CpuMeter;
use crate::{Measured, influx_count, influx_query};

/// Points per write, as the fast consumer's batches and the sink's default.
const BATCH: usize = 5_000;

/// The two point formats compared.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// `pen`, tag `device`, field `depth_mm`.
    Minimal,
    /// The gateway's `pen_sample`.
    PenSample,
}

/// Writes the load's messages as `format` points to a fresh influxd.
pub async fn row(plan: Plan, format: Format) -> anyhow::Result<Measured> {
    let bodies = bodies(&plan, format);
    let influx = InfluxV1::start()?;
    influx_query(&influx, "CREATE DATABASE bench").await?;
    let http = reqwest::Client::new();
    let url = format!("{}/write?db=bench&precision=ns", influx.url());
    let cpu = CpuMeter::start(&[("influxd", influx.pid())]);
    let first = Instant::now();
    for body in bodies {
        let r = http.post(&url).body(body).send().await?;
        if !r.status().is_success() {
            bail!("influx-points: HTTP {}: {}", r.status(), r.text().await?);
        }
    }
    let done = first.elapsed();
    let cpu = cpu.read();
    let (measurement, row) = match format {
        Format::Minimal => ("pen", "InfluxDB alone: minimal points (1 tag, 1 field)"),
        Format::PenSample => (
            "pen_sample",
            "InfluxDB alone: the gateway's pen_sample points",
        ),
    };
    let stored = influx_count(
        &influx,
        "bench",
        &format!("SELECT COUNT(depth_mm) FROM {measurement}"),
    )
    .await?;
    if stored != plan.messages {
        bail!("{row}: InfluxDB holds {stored} of {} points", plan.messages);
    }
    Ok(Measured {
        row,
        done,
        stored: Some(done),
        published: None,
        cpu,
        rss: None,
        gateway: None,
    })
}

/// The write bodies, made before the clock starts.
fn bodies(plan: &Plan, format: Format) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut body = String::new();
    for n in 0..plan.messages {
        let t = plan.telemetry(n);
        match format {
            Format::Minimal => {
                body += &minimal_line(&t.device_id, t.depth_mm, t.timestamp_ms, t.seq);
                body.push('\n');
            }
            Format::PenSample => {
                // A class-home pen's limit, as the gateway judges the load with its defaults.
                let permitted_mm = 0.5;
                schema::write_sample(
                    &SampleRecord {
                        id: n as i64 + 1,
                        device_id: t.device_id,
                        seq: t.seq as i64,
                        version: 0,
                        clinic_id: t.clinic_id,
                        ts_ms: t.timestamp_ms,
                        depth_mm: t.depth_mm,
                        permitted_mm,
                        exceeded: t.depth_mm > permitted_mm,
                    },
                    Precision::Ns,
                    &mut body,
                );
            }
        }
        if (n as usize + 1) % BATCH == 0 {
            bodies.push(std::mem::take(&mut body));
        }
    }
    if !body.is_empty() {
        bodies.push(body);
    }
    bodies
}

/// influxd's CPU per point, from a row of [`row`].
pub fn cpu_per_point(plan: &Plan, r: &Measured) -> Option<f64> {
    r.cpu
        .iter()
        .find(|(name, _)| *name == "influxd")
        .map(|(_, s)| s * 1e6 / plan.messages as f64)
}
