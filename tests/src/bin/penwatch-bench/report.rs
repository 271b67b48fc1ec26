//! What `penwatch-bench` prints: each row as it finishes, then a table of every row and the
//! ratios between rows of the same round (with `--rounds N`, each round's and their median).

use std::time::Duration;

use penwatch_tests::load::Plan;

use crate::{Measured, points};

/// Messages per second over `d`.
pub fn rate(plan: &Plan, d: Duration) -> f64 {
    plan.messages as f64 / d.as_secs_f64().max(1e-9)
}

/// One row's figures, as it finishes.
pub fn print_row(plan: &Plan, r: &Measured) {
    let mut line = format!(
        "{}: {} messages handled {:.2} s after the clock started ({:.0} msg/s)",
        r.row,
        plan.messages,
        r.done.as_secs_f64(),
        rate(plan, r.done)
    );
    if let Some(s) = r.stored {
        line += &format!(
            "; in InfluxDB after {:.2} s ({:.0} msg/s)",
            s.as_secs_f64(),
            rate(plan, s)
        );
    }
    if let Some(p) = r.published {
        line += &format!(
            "; the broker acknowledged the last publish after {:.2} s",
            p.as_secs_f64()
        );
    }
    println!("{line}");
    let cpu: Vec<String> = r
        .cpu
        .iter()
        .map(|(name, s)| format!("{name} {:.1} µs", s * 1e6 / plan.messages as f64))
        .collect();
    println!("  CPU per message: {}", cpu.join(", "));
    if let Some(g) = &r.gateway {
        println!(
            "  batch commit p99 ≤ {:.0} ms; journal {:.0} MiB, WAL {:.0} MiB",
            g.commit_p99_s * 1e3,
            g.journal_mib,
            g.wal_mib
        );
    }
    if let Some(rss) = &r.rss {
        let step = (rss.series.len() / 12).max(1);
        let points: Vec<String> = rss
            .series
            .iter()
            .step_by(step)
            .map(|(t, m)| format!("{:.0}s {m:.0}", t.as_secs_f64()))
            .collect();
        println!(
            "  RSS MiB over time: {}; peak {:.1}, settled {:.1}",
            points.join(", "),
            rss.peak,
            rss.settled
        );
    }
}

/// A ratio between two rows of one round: `numerator`'s rate over `denominator`'s.
struct Ratio {
    label: &'static str,
    numerator: &'static str,
    denominator: &'static str,
    /// Both rows timed to the last point in InfluxDB rather than to the last message handled.
    stored: bool,
}

/// The ratios the summary prints, each where both its rows ran (rows are found by the start
/// of their names).
const RATIOS: &[Ratio] = &[
    Ratio {
        label: "gateway commit / bare subscriber",
        numerator: "gateway, sink off",
        denominator: "bare",
        stored: false,
    },
    Ratio {
        label: "durable consumer / bare subscriber",
        numerator: "durable",
        denominator: "bare",
        stored: false,
    },
    Ratio {
        label: "log consumer / bare subscriber",
        numerator: "log consumer",
        denominator: "bare",
        stored: false,
    },
    Ratio {
        label: "gateway commit / durable consumer",
        numerator: "gateway, sink off",
        denominator: "durable",
        stored: false,
    },
    Ratio {
        label: "gateway end to end / fast consumer",
        numerator: "gateway →",
        denominator: "fast",
        stored: true,
    },
    Ratio {
        label: "durable consumer end to end / fast consumer",
        numerator: "simplest durable",
        denominator: "fast",
        stored: true,
    },
    Ratio {
        label: "gateway end to end / durable consumer end to end",
        numerator: "gateway →",
        denominator: "simplest durable",
        stored: true,
    },
];

impl Ratio {
    fn of(&self, round: &[Measured]) -> Option<f64> {
        let find = |prefix: &str| round.iter().find(|r| r.row.starts_with(prefix));
        let (n, d) = (find(self.numerator)?, find(self.denominator)?);
        let (n, d) = if self.stored {
            (n.stored?, d.stored?)
        } else {
            (n.done, d.done)
        };
        Some(d.as_secs_f64() / n.as_secs_f64())
    }
}

/// Every row in a table, then the ratios within each round.
pub fn print_summary(plan: &Plan, rounds: &[Vec<Measured>]) {
    println!(
        "\n| row | msg/s to handled | msg/s to InfluxDB | CPU µs/msg (own) | peak / settled RSS MiB |"
    );
    println!("| --- | --- | --- | --- | --- |");
    for r in rounds.iter().flatten() {
        let own = r
            .cpu
            .first()
            .map_or(0.0, |(_, s)| s * 1e6 / plan.messages as f64);
        println!(
            "| {} | {:.0} | {} | {own:.1} | {} |",
            r.row,
            rate(plan, r.done),
            r.stored
                .map_or("—".into(), |s| format!("{:.0}", rate(plan, s))),
            r.rss.as_ref().map_or("—".into(), |m| format!(
                "{:.1} / {:.1}",
                m.peak, m.settled
            )),
        );
    }
    if rounds.len() > 1 {
        print_medians(plan, rounds);
    }
    for ratio in RATIOS {
        let each: Vec<f64> = rounds.iter().filter_map(|r| ratio.of(r)).collect();
        if let Some(line) = ratios_line(&each) {
            println!("{}: {line}", ratio.label);
        }
    }
    for round in rounds {
        let find = |prefix: &str| round.iter().find(|r| r.row.starts_with(prefix));
        if let (Some(m), Some(p)) = (
            find("InfluxDB alone: minimal").and_then(|r| points::cpu_per_point(plan, r)),
            find("InfluxDB alone: the gateway's").and_then(|r| points::cpu_per_point(plan, r)),
        ) {
            println!(
                "influxd CPU per point, pen_sample / minimal (InfluxDB alone): {:.2}",
                p / m
            );
        }
    }
}

/// Each row's median over the rounds: msg/s to handled, to InfluxDB, and its own CPU.
fn print_medians(plan: &Plan, rounds: &[Vec<Measured>]) {
    println!("\nmedians over {} rounds:", rounds.len());
    for r in &rounds[0] {
        let same: Vec<&Measured> = rounds.iter().flatten().filter(|m| m.row == r.row).collect();
        let handled = median(same.iter().map(|m| rate(plan, m.done)).collect());
        let stored: Vec<f64> = same
            .iter()
            .filter_map(|m| m.stored.map(|s| rate(plan, s)))
            .collect();
        let own: Vec<f64> = same
            .iter()
            .filter_map(|m| m.cpu.first().map(|(_, s)| s * 1e6 / plan.messages as f64))
            .collect();
        let mut line = format!("  {}: {handled:.0} msg/s", r.row);
        if !stored.is_empty() {
            line += &format!(", {:.0} msg/s in InfluxDB", median(stored));
        }
        if !own.is_empty() {
            line += &format!(", {:.1} µs/msg own CPU", median(own));
        }
        println!("{line}");
    }
}

/// One round's ratio as it is; several rounds' in order, then their median.
fn ratios_line(each: &[f64]) -> Option<String> {
    let listed: Vec<String> = each.iter().map(|r| format!("{r:.2}")).collect();
    match each.len() {
        0 => None,
        1 => Some(listed[0].clone()),
        _ => Some(format!(
            "{} (median {:.2})",
            listed.join(", "),
            median(each.to_vec())
        )),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 0 {
        (v[mid - 1] + v[mid]) / 2.0
    } else {
        v[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_rounds_are_listed_in_order_with_their_median() {
        assert_eq!(
            ratios_line(&[0.72, 1.15, 0.91, 0.81]).as_deref(),
            Some("0.72, 1.15, 0.91, 0.81 (median 0.86)")
        );
        assert_eq!(ratios_line(&[0.7]).as_deref(), Some("0.70"));
        assert_eq!(ratios_line(&[]), None);
    }
}
