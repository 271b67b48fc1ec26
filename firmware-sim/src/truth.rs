//! Ground truth: what the fleet really published and did, computed by the simulator's own
//! code so it can check the gateway's verdicts independently.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::policy::Rule;

/// One treatment session as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionTruth {
    /// Opaque session id.
    pub session_id: String,
    /// Pen serial.
    pub device_id: String,
    /// Clinic of the pen.
    pub clinic_id: String,
    /// Operator id as published (an unknown operator's id is not in the policy).
    pub operator_id: String,
    /// Device class short name (`home`, `salon`, `medical`).
    pub device_class: String,
    /// Cartridge used.
    pub cartridge_id: String,
    /// Cartridge model.
    pub cartridge_model: String,
    /// Zones worked, short names, in order of first appearance.
    pub zones: Vec<String>,
    /// Valid `sample` messages of the session (duplicates not counted).
    pub samples: u64,
    /// Final `session_strokes`.
    pub strokes: u64,
    /// Deepest sample, mm.
    pub max_depth_mm: f64,
    /// The limit at the first sample above it when exceeded; otherwise the tightest limit
    /// that applied to any sample (min(class, operator) when there were no samples).
    pub permitted_mm: f64,
    /// The rule that set `permitted_mm`.
    pub binding_rule: Rule,
    /// Whether any sample was above the limit that applied to it.
    pub exceeded: bool,
    /// Samples above their limit.
    pub samples_above: u64,
    /// Strokes delivered by samples above their limit (increase of `session_strokes` at
    /// those samples).
    pub strokes_above: u64,
    /// Device timestamp of the first sample above the limit.
    pub first_above_ms: Option<i64>,
    /// Device timestamp of the last sample above the limit.
    pub last_above_ms: Option<i64>,
    /// The operator is not in the policy (the gateway applies 0.5 mm).
    pub unknown_operator: bool,
    /// The cartridge was used in an earlier session.
    pub cartridge_reused: bool,
    /// The pen's clock is skewed.
    pub skewed_clock: bool,
    /// `session_end` was published.
    pub ended: bool,
    /// Its excursions, in time order: runs of consecutive samples above their limit under
    /// the same limit and rule.
    #[serde(default)]
    pub excursions: Vec<ExcursionTruth>,
    /// The last sample was above its limit (its excursion may go on).
    #[serde(skip)]
    pub(crate) above: bool,
}

/// One excursion as it happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcursionTruth {
    /// The limit of its samples, mm.
    pub limit_mm: f64,
    /// The rule that set it.
    pub rule: Rule,
    /// Its deepest sample, mm.
    pub peak_depth_mm: f64,
    /// Its samples.
    pub samples: u64,
    /// Strokes delivered by them.
    pub strokes: u64,
    /// Device time of its first sample.
    pub first_ms: i64,
    /// Device time of its last sample.
    pub last_ms: i64,
}

impl ExcursionTruth {
    /// How far its peak is above its own limit, mm.
    pub fn excess_mm(&self) -> f64 {
        self.peak_depth_mm - self.limit_mm
    }
}

impl SessionTruth {
    /// Accounts for one valid sample judged against `limit`.
    pub fn observe_sample(
        &mut self,
        depth_mm: f64,
        limit: (f64, Rule),
        strokes_delta: u64,
        timestamp_ms: i64,
        zone: Option<String>,
    ) {
        self.samples += 1;
        self.max_depth_mm = self.max_depth_mm.max(depth_mm);
        if let Some(zone) = zone.filter(|z| !self.zones.contains(z)) {
            self.zones.push(zone);
        }
        if depth_mm > limit.0 {
            if !self.exceeded {
                self.exceeded = true;
                (self.permitted_mm, self.binding_rule) = limit;
                self.first_above_ms = Some(timestamp_ms);
            }
            self.samples_above += 1;
            self.strokes_above += strokes_delta;
            self.last_above_ms = Some(timestamp_ms);
            match self.excursions.last_mut() {
                Some(x) if self.above && x.limit_mm == limit.0 && x.rule == limit.1 => {
                    x.peak_depth_mm = x.peak_depth_mm.max(depth_mm);
                    x.samples += 1;
                    x.strokes += strokes_delta;
                    x.last_ms = timestamp_ms;
                }
                _ => self.excursions.push(ExcursionTruth {
                    limit_mm: limit.0,
                    rule: limit.1,
                    peak_depth_mm: depth_mm,
                    samples: 1,
                    strokes: strokes_delta,
                    first_ms: timestamp_ms,
                    last_ms: timestamp_ms,
                }),
            }
            self.above = true;
        } else {
            self.above = false;
            if !self.exceeded && limit.0 < self.permitted_mm {
                (self.permitted_mm, self.binding_rule) = limit;
            }
        }
    }

    /// The excursion with the greatest excess over its own limit (the earliest on a tie).
    pub fn worst_excursion(&self) -> Option<&ExcursionTruth> {
        self.excursions.iter().fold(None, |worst, x| match worst {
            Some(w) if x.excess_mm() <= w.excess_mm() + 1e-9 => Some(w),
            _ => Some(x),
        })
    }
}

/// A pen at the end of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTruth {
    /// Pen serial.
    pub device_id: String,
    /// Clinic of the pen.
    pub clinic_id: String,
    /// Device class short name.
    pub device_class: String,
    /// Valid telemetry messages published (unique seqs 1..=last_seq).
    pub telemetry_valid: u64,
    /// Highest valid seq published (0 when none).
    pub last_seq: u64,
    /// Offset of the pen's clock, ms.
    pub clock_skew_ms: i64,
    /// Times the pen dropped its connection abruptly (the broker published its last will).
    pub connection_drops: u64,
}

/// Counters of one pen's published messages.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PenCounts {
    /// Unique valid telemetry messages.
    pub valid: u64,
    /// Telemetry publishes, including duplicates and malformed.
    pub published: u64,
    /// Extra copies published by `duplicates`.
    pub duplicates: u64,
    /// Malformed messages by kind name.
    pub malformed: BTreeMap<String, u64>,
}

/// Everything a run published and did, to compare with what the gateway concluded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Seed of the fleet.
    pub seed: u64,
    /// Number of clinics.
    pub clinics: u32,
    /// Number of pens.
    pub pens: u32,
    /// Payload encoding: `protobuf` or `json`.
    pub encoding: String,
    /// Scenarios that ran.
    pub scenarios: Vec<String>,
    /// Unique valid `(device_id, seq)` telemetry messages.
    pub telemetry_valid: u64,
    /// Telemetry publishes, including duplicates and malformed.
    pub telemetry_published: u64,
    /// Extra identical copies published.
    pub duplicates_sent: u64,
    /// Malformed messages by kind.
    pub malformed: BTreeMap<String, u64>,
    /// Retained status messages the pens published (`online`, `offline`), not counting last wills.
    pub status_published: u64,
    /// Abrupt connection drops (each makes the broker publish the pen's last will).
    pub connection_drops: u64,
    /// Sessions started, in pen order then time order.
    pub sessions: Vec<SessionTruth>,
    /// Pens.
    pub devices: Vec<DeviceTruth>,
    /// Real seconds from the first connection to the last acknowledgement.
    pub elapsed_s: f64,
    /// Telemetry publishes per real second while the pens ran.
    pub rate_achieved_msgs_per_s: f64,
}

impl GroundTruth {
    /// Sessions that exceeded their permitted depth.
    pub fn exceeded(&self) -> impl Iterator<Item = &SessionTruth> {
        self.sessions.iter().filter(|s| s.exceeded)
    }

    /// Total malformed messages.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }
}

impl fmt::Display for GroundTruth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "penwatch-sim: seed {} · {} clinics · {} pens · {} · scenarios {}",
            self.seed,
            self.clinics,
            self.pens,
            self.encoding,
            self.scenarios.join(",")
        )?;
        writeln!(
            f,
            "telemetry: {} valid, {} published ({} duplicates, {} malformed), {} status, {} connection drops",
            self.telemetry_valid,
            self.telemetry_published,
            self.duplicates_sent,
            self.malformed_total(),
            self.status_published,
            self.connection_drops
        )?;
        let count = |p: fn(&SessionTruth) -> bool| self.sessions.iter().filter(|s| p(s)).count();
        writeln!(
            f,
            "sessions: {} ({} exceeded, {} unknown operator, {} cartridge reused, {} skewed clock)",
            self.sessions.len(),
            count(|s| s.exceeded),
            count(|s| s.unknown_operator),
            count(|s| s.cartridge_reused),
            count(|s| s.skewed_clock)
        )?;
        for s in self.exceeded() {
            writeln!(
                f,
                "  exceeded {} on {} by {}: {:.2} mm > {:.2} mm ({})",
                s.session_id,
                s.device_id,
                s.operator_id,
                s.max_depth_mm,
                s.permitted_mm,
                match s.binding_rule {
                    Rule::Class => "class",
                    Rule::Operator => "operator",
                    Rule::Zone => "zone",
                }
            )?;
        }
        if !self.malformed.is_empty() {
            let kinds: Vec<String> = self
                .malformed
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(f, "malformed: {}", kinds.join(", "))?;
        }
        write!(
            f,
            "elapsed {:.2} s, {:.0} telemetry msgs/s",
            self.elapsed_s, self.rate_achieved_msgs_per_s
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn truth() -> SessionTruth {
        SessionTruth {
            session_id: "s".into(),
            device_id: "pen".into(),
            clinic_id: "c01".into(),
            operator_id: "op".into(),
            device_class: "medical".into(),
            cartridge_id: "cart".into(),
            cartridge_model: "N12".into(),
            zones: Vec::new(),
            samples: 0,
            strokes: 0,
            max_depth_mm: 0.0,
            permitted_mm: 2.5,
            binding_rule: Rule::Class,
            exceeded: false,
            samples_above: 0,
            strokes_above: 0,
            first_above_ms: None,
            last_above_ms: None,
            unknown_operator: false,
            cartridge_reused: false,
            skewed_clock: false,
            ended: false,
            excursions: Vec::new(),
            above: false,
        }
    }

    #[test]
    fn excursions_split_on_a_sample_within_limits_or_a_change_of_limit() {
        let mut t = truth();
        let zone = (0.5, Rule::Zone);
        let operator = (1.0, Rule::Operator);
        for (i, (depth, limit)) in [
            (0.7, zone),
            (0.75, zone),
            (1.1, operator),
            (0.5, operator),
            (1.25, operator),
        ]
        .into_iter()
        .enumerate()
        {
            t.observe_sample(depth, limit, 100, i as i64 * 1000, None);
        }
        let runs: Vec<(f64, Rule, u64)> = t
            .excursions
            .iter()
            .map(|x| (x.peak_depth_mm, x.rule, x.samples))
            .collect();
        assert_eq!(
            runs,
            [
                (0.75, Rule::Zone, 2),
                (1.1, Rule::Operator, 1),
                (1.25, Rule::Operator, 1)
            ]
        );
        let worst = t.worst_excursion().expect("exceeded");
        assert_eq!((worst.peak_depth_mm, worst.rule), (0.75, Rule::Zone));
    }
}
