//! Session tracking and violation evidence (pure logic).
//!
//! A [`Session`] is a fold over its judged samples. Live, the gateway folds samples as they
//! arrive; when the session closes it folds again over the journal's samples in `seq`
//! order, so the final record is exact even when samples arrived out of order.

use std::collections::BTreeSet;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::Event;
use serde::{Deserialize, Serialize};

use crate::decode::Reading;

/// The policy's verdict on one sample, as stored with it in the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// Permitted depth, mm.
    pub permitted_mm: f64,
    /// The binding rule: `class`, `operator`, `zone` or `out_of_range`.
    pub binding: String,
    /// Effective device class (short name).
    pub device_class: String,
    /// Depth above the permitted depth.
    pub exceeded: bool,
    /// Operator not known to the policy.
    pub unknown_operator: bool,
    /// Device not registered in the policy.
    pub unregistered_device: bool,
    /// Registered class differs from the class the pen claims.
    pub class_mismatch: bool,
    /// Id of the policy version that judged the sample.
    pub policy_version: String,
}

/// Evidence of a session that exceeded its permitted depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Permitted depth at the worst excursion, mm.
    pub limit_mm: f64,
    /// Rule that set that limit.
    pub binding: String,
    /// Deepest offending depth, mm.
    pub peak_depth_mm: f64,
    /// Device time of the first sample above its limit, Unix ms.
    pub first_above_ms: i64,
    /// Device time of the last sample above its limit, Unix ms.
    pub last_above_ms: i64,
    /// Strokes delivered while above the limit.
    pub strokes_above: u64,
    /// Samples above the limit.
    pub samples_above: u64,
    /// Policy version that judged the worst excursion.
    pub policy_version: String,
}

/// Why a session closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The pen sent `session_end`.
    Ended,
    /// No message for longer than the inactivity timeout.
    Inactive,
}

impl CloseReason {
    /// `ended` or `inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Ended => "ended",
            CloseReason::Inactive => "inactive",
        }
    }
}

/// One treatment session of one pen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Opaque session id.
    pub session_id: String,
    /// Pen serial.
    pub device_id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Operator staff id.
    pub operator_id: String,
    /// Effective device class (short name).
    pub device_class: String,
    /// Cartridge used.
    pub cartridge_id: String,
    /// Cartridge model.
    pub cartridge_model: String,
    /// Earliest device time seen, Unix ms.
    pub started_ms: i64,
    /// Latest device time seen, Unix ms.
    pub last_ms: i64,
    /// `sample` messages seen (session and cartridge events not counted).
    pub samples: u64,
    /// Strokes delivered (highest cumulative `session_strokes`).
    pub strokes: u64,
    /// Deepest depth seen, mm.
    pub max_depth_mm: f64,
    /// Most restrictive permitted depth seen while treating, mm.
    pub permitted_mm: Option<f64>,
    /// Rule that set [`Session::permitted_mm`].
    pub binding: Option<String>,
    /// Zones treated (short names).
    pub zones: BTreeSet<String>,
    /// The operator was not known to the policy.
    pub unknown_operator: bool,
    /// The pen is not registered in the policy.
    pub unregistered_device: bool,
    /// The pen's claimed class disagrees with its registered one.
    pub class_mismatch: bool,
    /// The pen sent `session_end`.
    pub ended: bool,
    /// Evidence, if any sample exceeded its permitted depth.
    pub violation: Option<Evidence>,
    /// Lowest and highest `seq` of its samples: every sample of the session lies in this
    /// range of the pen's sequence (0, 0 in records written before it was kept).
    #[serde(default)]
    pub min_seq: u64,
    /// Highest `seq` of its samples.
    #[serde(default)]
    pub max_seq: u64,
    /// Messages of the session journaled beside a different message with the same
    /// `(device_id, seq)`: the record rests on conflicting evidence.
    #[serde(default)]
    pub conflicting: u64,
    last_seq: u64,
    last_strokes: u64,
    /// This record is not a fold of every sample in `seq` order (a sample arrived out of
    /// order, or the record was read back from the journal): closing must refold it.
    #[serde(skip)]
    pub needs_refold: bool,
}

/// What observing one sample changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Change {
    /// This sample made the session exceed for the first time.
    pub newly_exceeded: bool,
    /// The violation evidence changed.
    pub violation_updated: bool,
}

impl Session {
    /// An empty session for the reading's pen and session id.
    pub fn new(r: &Reading, v: &Verdict) -> Self {
        Self {
            session_id: r.session_id.clone(),
            device_id: r.device_id.clone(),
            clinic_id: r.clinic_id.clone(),
            operator_id: r.operator_id.clone(),
            device_class: v.device_class.clone(),
            cartridge_id: r.cartridge_id.clone(),
            cartridge_model: r.cartridge_model.clone(),
            started_ms: r.timestamp_ms,
            last_ms: r.timestamp_ms,
            samples: 0,
            strokes: 0,
            max_depth_mm: 0.0,
            permitted_mm: None,
            binding: None,
            zones: BTreeSet::new(),
            unknown_operator: false,
            unregistered_device: false,
            class_mismatch: false,
            ended: false,
            violation: None,
            min_seq: r.seq,
            max_seq: r.seq,
            last_seq: 0,
            last_strokes: 0,
            needs_refold: false,
            conflicting: 0,
        }
    }

    /// Folds one judged sample into the session.
    pub fn observe(&mut self, r: &Reading, v: &Verdict) -> Change {
        let mut change = Change::default();
        if r.event == Event::Sample {
            self.samples += 1;
        }
        self.started_ms = self.started_ms.min(r.timestamp_ms);
        self.last_ms = self.last_ms.max(r.timestamp_ms);
        self.strokes = self.strokes.max(r.session_strokes);
        if self.operator_id.is_empty() {
            self.operator_id.clone_from(&r.operator_id);
        }
        if self.cartridge_id.is_empty() {
            self.cartridge_id.clone_from(&r.cartridge_id);
            self.cartridge_model.clone_from(&r.cartridge_model);
        }
        if r.event == Event::SessionEnd {
            self.ended = true;
        }
        if let Some(z) = r.zone {
            self.zones.insert(z.short_name());
        }
        self.min_seq = self.min_seq.min(r.seq);
        self.max_seq = self.max_seq.max(r.seq);
        let in_order = r.seq > self.last_seq;
        self.needs_refold |= !in_order;
        let delta = if in_order {
            r.session_strokes.saturating_sub(self.last_strokes)
        } else {
            0
        };
        if in_order {
            self.last_seq = r.seq;
            self.last_strokes = r.session_strokes;
        }
        if r.depth_mm > 0.0 {
            self.max_depth_mm = self.max_depth_mm.max(r.depth_mm);
            self.unknown_operator |= v.unknown_operator;
            self.unregistered_device |= v.unregistered_device;
            self.class_mismatch |= v.class_mismatch;
            if self.permitted_mm.is_none_or(|p| v.permitted_mm < p) {
                self.permitted_mm = Some(v.permitted_mm);
                self.binding = Some(v.binding.clone());
            }
        }
        if v.exceeded {
            change.violation_updated = true;
            let excess = r.depth_mm - v.permitted_mm;
            match &mut self.violation {
                None => {
                    change.newly_exceeded = true;
                    self.violation = Some(Evidence {
                        limit_mm: v.permitted_mm,
                        binding: v.binding.clone(),
                        peak_depth_mm: r.depth_mm,
                        first_above_ms: r.timestamp_ms,
                        last_above_ms: r.timestamp_ms,
                        strokes_above: delta,
                        samples_above: 1,
                        policy_version: v.policy_version.clone(),
                    });
                }
                Some(e) => {
                    if excess > e.peak_depth_mm - e.limit_mm {
                        e.limit_mm = v.permitted_mm;
                        e.binding.clone_from(&v.binding);
                        e.policy_version.clone_from(&v.policy_version);
                    }
                    e.peak_depth_mm = e.peak_depth_mm.max(r.depth_mm);
                    e.first_above_ms = e.first_above_ms.min(r.timestamp_ms);
                    e.last_above_ms = e.last_above_ms.max(r.timestamp_ms);
                    e.strokes_above += delta;
                    e.samples_above += 1;
                }
            }
        }
        change
    }

    /// Whether any sample exceeded its permitted depth.
    pub fn exceeded(&self) -> bool {
        self.violation.is_some()
    }

    /// Duration from first to last device time, ms.
    pub fn duration_ms(&self) -> i64 {
        self.last_ms - self.started_ms
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Encoding;
    use penwatch_proto::v1::{DeviceClass, Zone};

    fn reading(seq: u64, depth: f64, strokes: u64) -> Reading {
        Reading {
            device_id: "pen-1".into(),
            clinic_id: "c01".into(),
            claimed_class: DeviceClass::Salon,
            model: "m".into(),
            firmware: "f".into(),
            operator_id: "op-1".into(),
            session_id: "s-1".into(),
            cartridge_id: "cart-1".into(),
            cartridge_model: "N12".into(),
            seq,
            timestamp_ms: 1_790_000_000_000 + seq as i64 * 1000,
            event: Event::Sample,
            depth_mm: depth,
            session_strokes: strokes,
            cartridge_strokes: strokes,
            speed_hz: 120.0,
            battery_pct: 90.0,
            zone: Some(Zone::Cheek),
            encoding: Encoding::Protobuf,
        }
    }

    fn verdict(depth: f64, permitted: f64) -> Verdict {
        Verdict {
            permitted_mm: permitted,
            binding: "class".into(),
            device_class: "salon".into(),
            exceeded: depth > permitted,
            unknown_operator: false,
            unregistered_device: false,
            class_mismatch: false,
            policy_version: "v1".into(),
        }
    }

    fn fold(samples: &[(u64, f64, u64)]) -> (Session, Vec<Change>) {
        let first = reading(samples[0].0, samples[0].1, samples[0].2);
        let mut s = Session::new(&first, &verdict(0.0, 1.0));
        let changes = samples
            .iter()
            .map(|&(seq, d, st)| s.observe(&reading(seq, d, st), &verdict(d, 1.0)))
            .collect();
        (s, changes)
    }

    #[test]
    fn within_limits_is_not_exceeded() {
        let (s, _) = fold(&[(1, 0.5, 100), (2, 1.0, 220), (3, 0.0, 220)]);
        assert!(!s.exceeded());
        assert_eq!((s.samples, s.strokes, s.max_depth_mm), (3, 220, 1.0));
        assert_eq!(s.permitted_mm, Some(1.0));
    }

    #[test]
    fn evidence_counts_strokes_and_times_above() {
        let (s, changes) = fold(&[(1, 1.0, 100), (2, 1.25, 220), (3, 1.5, 350), (4, 1.0, 470)]);
        assert!(changes[1].newly_exceeded);
        assert!(!changes[2].newly_exceeded && changes[2].violation_updated);
        let e = s.violation.expect("exceeded");
        assert_eq!(e.peak_depth_mm, 1.5);
        assert_eq!(e.limit_mm, 1.0);
        assert_eq!(e.strokes_above, 120 + 130);
        assert_eq!(e.samples_above, 2);
        assert_eq!(e.first_above_ms, 1_790_000_002_000);
        assert_eq!(e.last_above_ms, 1_790_000_003_000);
    }

    #[test]
    fn replaying_in_seq_order_is_exact_where_arrival_order_is_not() {
        let samples = [(1, 1.0, 100), (3, 1.5, 350), (2, 1.25, 220)];
        let (live, _) = fold(&samples);
        let mut sorted = samples;
        sorted.sort_by_key(|s| s.0);
        let (exact, _) = fold(&sorted);
        assert_eq!(exact.violation.as_ref().map(|e| e.strokes_above), Some(250));
        assert_eq!(live.violation.as_ref().map(|e| e.samples_above), Some(2));
        assert_eq!(live.strokes, exact.strokes);
    }
}
