//! What the kernel says about a process: CPU time (all threads) and resident memory.

use std::time::{Duration, Instant};

/// Clock ticks per second of `/proc/PID/stat` (Linux' USER_HZ, 100 on every mainstream
/// architecture).
const TICKS_PER_S: f64 = 100.0;

/// CPU seconds (user + system, all threads) used so far by `pid`.
pub fn cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may contain spaces, start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_S)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// Resident memory now, MiB.
pub fn rss_mib(pid: u32) -> Option<f64> {
    status_kib(pid, "VmRSS:").map(|k| k as f64 / 1024.0)
}

/// Peak resident memory, MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    status_kib(pid, "VmHWM:").map(|k| k as f64 / 1024.0)
}

/// CPU seconds a set of processes used between two readings.
#[derive(Debug, Clone)]
pub struct CpuMeter {
    start: Vec<(&'static str, u32, f64)>,
}

impl CpuMeter {
    /// Starts measuring the named processes (those without a pid are left out).
    pub fn start(procs: &[(&'static str, Option<u32>)]) -> Self {
        Self {
            start: procs
                .iter()
                .filter_map(|(name, pid)| {
                    let pid = (*pid)?;
                    Some((*name, pid, cpu_s(pid)?))
                })
                .collect(),
        }
    }

    /// CPU seconds of each process since the start.
    pub fn read(&self) -> Vec<(&'static str, f64)> {
        self.start
            .iter()
            .map(|(name, pid, s)| (*name, cpu_s(*pid).map_or(0.0, |now| now - s)))
            .collect()
    }
}

/// Resident memory of a process sampled over time (every `every`) by a background thread.
pub struct RssSampler {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, f64)>>,
}

impl RssSampler {
    /// Starts sampling `pid` on a clock that starts at `origin`.
    pub fn start(pid: u32, origin: Instant, every: Duration) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut out = Vec::new();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(r) = rss_mib(pid) {
                    out.push((origin.elapsed(), r));
                }
                std::thread::sleep(every);
            }
            out
        });
        Self { stop, thread }
    }

    /// Stops and returns the samples.
    pub fn finish(self) -> Vec<(Duration, f64)> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or_default()
    }
}
