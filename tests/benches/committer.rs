//! The committer alone: decoded messages handed to `Pipeline::commit` in batches as a burst
//! fills them, with no broker (the load is decoded on a thread of its own, as the MQTT task
//! does, and not timed). What it prints is the ceiling of ingest on this machine (the
//! committer is ingest's one serial stage) and its CPU per message.
//!
//! `cargo bench -p penwatch-tests --bench committer` (release build). The load is
//! `penwatch-bench`'s ([`Plan`]: 1,000 pens, sessions of 50 samples that open and close),
//! decoded by the gateway's decoder; batches of 8,000, the default policy, a journal with
//! `sync = "full"` in a temporary directory. `PENWATCH_BENCH_MESSAGES` (default
//! 600,000), `PENWATCH_BENCH_PENS`, `PENWATCH_BENCH_SESSION_SAMPLES` (default 50) and
//! `PENWATCH_BENCH_BATCH` change it.

use std::time::{Duration, Instant};

use penwatch_gateway::decode::Limits;
use penwatch_gateway::journal::{Sync, Writer};
use penwatch_gateway::metrics::Metrics;
use penwatch_gateway::pipeline::{
    Inflight, IngestConfig, Pipeline, Receipt, SessionsConfig, Settings,
};
use penwatch_gateway::policy::{Policy, PolicyHandle};
use penwatch_gateway::source;
use penwatch_tests::env_or;
use penwatch_tests::load::Plan;

/// The gateway's allocator (see its `main.rs`): with the system allocator instead, the
/// committer spent about a third more CPU per message here.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The load's `n`-th message as the MQTT task hands it to the committer: decoded and
/// validated by the gateway's own decoder.
fn inflight(plan: &Plan, n: u64, limits: &Limits) -> Inflight {
    let (topic, payload) = plan.message(n);
    let receipt = Receipt::Mqtt {
        generation: 1,
        pkid: Some((n % 65_535 + 1) as u16),
    };
    source::inflight(topic, payload.into(), receipt, limits)
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() -> anyhow::Result<()> {
    let messages: u64 = env_or("PENWATCH_BENCH_MESSAGES", 600_000);
    let pens: u32 = env_or("PENWATCH_BENCH_PENS", 1_000);
    let batch_max: u64 = env_or("PENWATCH_BENCH_BATCH", 8_000);
    let session_samples: u32 = env_or("PENWATCH_BENCH_SESSION_SAMPLES", 50);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("journal.db");
    let writer = Writer::open(&path, Sync::Full)?;
    let policy = Policy::defaults();
    let limits = Limits {
        max_payload_bytes: IngestConfig::default().max_payload_bytes,
        mechanical_max_mm: policy.mechanical_max_mm(),
    };
    let settings = Settings::new(&IngestConfig::default(), &SessionsConfig::default(), None);
    let mut pipeline = Pipeline::open(
        writer,
        PolicyHandle::new(policy),
        Metrics::new(),
        settings,
        penwatch_gateway::live::channel(),
    )?;
    let plan = Plan {
        messages,
        pens,
        session_samples,
        connections: 1,
        rate: None,
        start_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64
            - 86_400_000,
    };
    // Decoded on a thread of their own, as the MQTT task does, a batch or two ahead.
    let (tx, batches) = std::sync::mpsc::sync_channel::<Vec<Inflight>>(2);
    let producer = std::thread::spawn(move || {
        let mut n = 0;
        while n < messages {
            let batch: Vec<Inflight> = (n..(n + batch_max).min(messages))
                .map(|i| inflight(&plan, i, &limits))
                .collect();
            n += batch.len() as u64;
            if tx.send(batch).is_err() {
                return;
            }
        }
    });
    let (mut wall, mut cpu, mut closed) = (Duration::ZERO, Duration::ZERO, 0);
    for batch in batches {
        let (started, cpu_started) = (Instant::now(), thread_cpu());
        let outcome = pipeline.commit(&batch)?;
        cpu += thread_cpu() - cpu_started;
        wall += started.elapsed();
        closed += outcome.closed;
        anyhow::ensure!(
            outcome.accepted == batch.len() as u64,
            "every message journaled once"
        );
    }
    producer.join().expect("the load's thread");
    let per = |d: Duration| d.as_secs_f64() * 1e6 / messages as f64;
    println!(
        "committer alone: {messages} messages from {pens} pens ({closed} sessions closed) in \
         batches of {batch_max}: {:.0} msg/s committed, {:.2} µs per message ({:.2} µs on its CPU)",
        messages as f64 / wall.as_secs_f64(),
        per(wall),
        per(cpu)
    );
    Ok(())
}
