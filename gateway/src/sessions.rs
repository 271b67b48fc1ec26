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
    /// The binding rule: `class`, `operator`, `zone`, `out_of_range` or `scotland_2026`.
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

/// Smallest difference of excess that makes one excursion worse than another (mm): equal
/// excesses (up to floating-point noise) go to the earlier excursion.
const EXCESS_EPSILON_MM: f64 = 1e-9;

/// Most other excursions an [`Evidence`] lists: when the list is full, the least bad listed
/// one makes room for the next and is only counted (its samples stay in the journal), so a
/// pen hovering around its limit cannot make every write of the session's record grow
/// without bound.
pub const MAX_LISTED_EXCURSIONS: usize = 100;

/// One excursion: a maximal run of consecutive samples (in `seq` order) above their permitted
/// depth under the same binding rule and limit. Any sample within its limit (retracted
/// needles included), or a change of rule or limit, ends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "StoredExcursion")]
pub struct Excursion {
    /// Permitted depth of the excursion's samples, mm.
    pub limit_mm: f64,
    /// Rule that set that limit.
    pub binding: String,
    /// Deepest depth of the excursion, mm.
    pub peak_depth_mm: f64,
    /// `peak_depth_mm − limit_mm`.
    pub excess_mm: f64,
    /// Device time of its first sample, Unix ms.
    pub first_above_ms: i64,
    /// Device time of its last sample, Unix ms.
    pub last_above_ms: i64,
    /// Strokes delivered during it.
    pub strokes_above: u64,
    /// Its samples.
    pub samples_above: u64,
    /// Policy version that judged its deepest sample.
    pub policy_version: String,
}

/// An excursion as stored: records written before excursions were kept carry no
/// `excess_mm`, which is then recomputed from their peak and limit.
#[derive(Deserialize)]
struct StoredExcursion {
    limit_mm: f64,
    binding: String,
    peak_depth_mm: f64,
    excess_mm: Option<f64>,
    first_above_ms: i64,
    last_above_ms: i64,
    strokes_above: u64,
    samples_above: u64,
    policy_version: String,
}

impl From<StoredExcursion> for Excursion {
    fn from(s: StoredExcursion) -> Self {
        Excursion {
            excess_mm: s.excess_mm.unwrap_or(s.peak_depth_mm - s.limit_mm),
            limit_mm: s.limit_mm,
            binding: s.binding,
            peak_depth_mm: s.peak_depth_mm,
            first_above_ms: s.first_above_ms,
            last_above_ms: s.last_above_ms,
            strokes_above: s.strokes_above,
            samples_above: s.samples_above,
            policy_version: s.policy_version,
        }
    }
}

impl Excursion {
    /// An excursion of one sample above its limit, which delivered `strokes` strokes.
    fn start(r: &Reading, v: &Verdict, strokes: u64) -> Self {
        Excursion {
            limit_mm: v.permitted_mm,
            binding: v.binding.clone(),
            peak_depth_mm: r.depth_mm,
            excess_mm: r.depth_mm - v.permitted_mm,
            first_above_ms: r.timestamp_ms,
            last_above_ms: r.timestamp_ms,
            strokes_above: strokes,
            samples_above: 1,
            policy_version: v.policy_version.clone(),
        }
    }

    /// Whether `next` continues this excursion: same rule, same limit.
    fn continued_by(&self, next: &Excursion) -> bool {
        self.binding == next.binding && self.limit_mm == next.limit_mm
    }

    /// Adds the one-sample excursion `next` (of the same rule and limit).
    fn extend(&mut self, next: Excursion) {
        if next.peak_depth_mm > self.peak_depth_mm {
            self.peak_depth_mm = next.peak_depth_mm;
            self.excess_mm = next.excess_mm;
            self.policy_version = next.policy_version;
        }
        self.first_above_ms = self.first_above_ms.min(next.first_above_ms);
        self.last_above_ms = self.last_above_ms.max(next.last_above_ms);
        self.strokes_above += next.strokes_above;
        self.samples_above += next.samples_above;
    }

    /// Whether this excursion is worse (a greater excess over its own limit) than `other`.
    fn worse_than(&self, other: &Excursion) -> bool {
        self.excess_mm > other.excess_mm + EXCESS_EPSILON_MM
    }
}

/// Evidence of a session that exceeded its permitted depth: its worst excursion (the greatest
/// excess of a sample over that sample's own limit; the earliest on a tie) and the others.
/// A peak is only ever compared with the limit of its own excursion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The worst excursion (its fields are the evidence's top-level fields when stored).
    #[serde(flatten)]
    pub worst: Excursion,
    /// The other excursions, in time order (empty in records written before they were kept),
    /// at most [`MAX_LISTED_EXCURSIONS`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub others: Vec<Excursion>,
    /// Other excursions no longer listed: each was the least bad listed one when the list was
    /// full and another began.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unlisted: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where the excursion the last sample extended sits in the [`Evidence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Worst,
    Other(usize),
}

impl Evidence {
    /// Evidence of one excursion.
    pub fn new(worst: Excursion) -> Self {
        Evidence {
            worst,
            others: Vec::new(),
            unlisted: 0,
        }
    }

    /// How many excursions the session had, listed or not.
    pub fn count(&self) -> u64 {
        1 + self.others.len() as u64 + self.unlisted
    }

    /// Every listed excursion, in time order.
    pub fn excursions(&self) -> Vec<&Excursion> {
        let mut all: Vec<&Excursion> = self.others.iter().collect();
        let at = all.partition_point(|o| o.first_above_ms <= self.worst.first_above_ms);
        all.insert(at, &self.worst);
        all
    }

    fn get_mut(&mut self, slot: Slot) -> &mut Excursion {
        match slot {
            Slot::Worst => &mut self.worst,
            Slot::Other(i) => &mut self.others[i],
        }
    }

    /// Folds a one-sample excursion: it extends the excursion at `open` (the one the previous
    /// sample in `seq` order was in) if rule and limit are the same, else it starts a new one.
    /// Returns where the sample went.
    fn add(&mut self, open: Option<Slot>, sample: Excursion) -> Slot {
        if let Some(slot) = open {
            let x = self.get_mut(slot);
            if x.continued_by(&sample) {
                x.extend(sample);
                return self.promote(slot);
            }
        }
        if self.others.len() >= MAX_LISTED_EXCURSIONS {
            self.drop_least_bad();
        }
        self.others.push(sample);
        self.promote(Slot::Other(self.others.len() - 1))
    }

    /// Stops listing the least bad other excursion (the latest on a tie), counting it.
    fn drop_least_bad(&mut self) {
        let least = self
            .others
            .iter()
            .enumerate()
            .min_by(|(i, a), (j, b)| a.excess_mm.total_cmp(&b.excess_mm).then_with(|| j.cmp(i)))
            .map(|(i, _)| i);
        if let Some(i) = least {
            self.others.remove(i);
            self.unlisted += 1;
        }
    }

    /// Makes the excursion at `slot` the worst one if it is worse; returns its slot.
    fn promote(&mut self, slot: Slot) -> Slot {
        let Slot::Other(i) = slot else {
            return slot;
        };
        if !self.others[i].worse_than(&self.worst) {
            return slot;
        }
        let worse = self.others.remove(i);
        let former = std::mem::replace(&mut self.worst, worse);
        let at = self
            .others
            .partition_point(|o| o.first_above_ms <= former.first_above_ms);
        self.others.insert(at, former);
        Slot::Worst
    }
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
    /// The excursion the last sample in `seq` order was in, if it was above its limit.
    #[serde(skip)]
    open_excursion: Option<Slot>,
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
            open_excursion: None,
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
        if let Some(z) = r.zone.map(|z| z.short_name())
            && !self.zones.contains(z)
        {
            self.zones.insert(z.to_owned());
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
        // An excursion continues only through consecutive samples in `seq` order. A sample
        // out of order starts an excursion of its own if it is above its limit (the session
        // is refolded in order on close) and leaves no excursion open, since adding it may
        // have moved the open one.
        let open = self.open_excursion.take();
        if v.exceeded {
            change.violation_updated = true;
            let sample = Excursion::start(r, v, delta);
            let slot = match &mut self.violation {
                None => {
                    change.newly_exceeded = true;
                    self.violation = Some(Evidence::new(sample));
                    Slot::Worst
                }
                Some(e) => e.add(open.filter(|_| in_order), sample),
            };
            self.open_excursion = in_order.then_some(slot);
        } else if !in_order {
            self.open_excursion = open;
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
        let e = s.violation.expect("exceeded").worst;
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
        assert_eq!(
            exact.violation.as_ref().map(|e| e.worst.strokes_above),
            Some(250)
        );
        assert_eq!(exact.violation.as_ref().map(|e| e.others.len()), Some(0));
        assert_eq!(live.strokes, exact.strokes);
        let live = live.violation.expect("exceeded");
        let samples: u64 = live.excursions().iter().map(|x| x.samples_above).sum();
        assert_eq!(samples, 2);
    }

    /// A sample judged against `permitted` set by `binding`, in `zone`.
    fn judged(seq: u64, depth: f64, strokes: u64, zone: Zone, limit: (f64, &str)) -> Sample {
        let mut r = reading(seq, depth, strokes);
        r.zone = Some(zone);
        let mut v = verdict(depth, limit.0);
        v.binding = limit.1.into();
        (r, v)
    }

    type Sample = (Reading, Verdict);

    fn fold_judged(samples: &[Sample]) -> Session {
        let mut s = Session::new(&samples[0].0, &samples[0].1);
        for (r, v) in samples {
            s.observe(r, v);
        }
        s
    }

    fn summary(x: &Excursion) -> (f64, f64, &str, u64, u64, i64, i64) {
        (
            x.peak_depth_mm,
            x.limit_mm,
            x.binding.as_str(),
            x.samples_above,
            x.strokes_above,
            x.first_above_ms,
            x.last_above_ms,
        )
    }

    const T0: i64 = 1_790_000_000_000;

    #[test]
    fn two_excursions_under_different_rules_are_never_mixed() {
        // 0.7 mm periorbital (zone limit 0.5, 0.2 over), then 1.1 mm on the cheek (operator
        // limit 1.0, 0.1 over): the worst is the zone's, and the peak 1.1 is never set
        // against the zone's 0.5.
        let s = fold_judged(&[
            judged(1, 0.5, 100, Zone::Periorbital, (0.5, "zone")),
            judged(2, 0.7, 220, Zone::Periorbital, (0.5, "zone")),
            judged(3, 1.0, 340, Zone::Cheek, (1.0, "operator")),
            judged(4, 1.1, 470, Zone::Cheek, (1.0, "operator")),
        ]);
        let e = s.violation.expect("exceeded");
        assert_eq!(
            summary(&e.worst),
            (0.7, 0.5, "zone", 1, 120, T0 + 2000, T0 + 2000)
        );
        assert!(
            (e.worst.excess_mm - 0.2).abs() < 1e-9,
            "{}",
            e.worst.excess_mm
        );
        assert_eq!(e.others.len(), 1);
        assert_eq!(
            summary(&e.others[0]),
            (1.1, 1.0, "operator", 1, 130, T0 + 4000, T0 + 4000)
        );
        assert!((e.others[0].excess_mm - 0.1).abs() < 1e-9);
        assert_eq!(s.max_depth_mm, 1.1);
    }

    #[test]
    fn a_later_worse_excursion_becomes_the_worst_and_the_others_stay_in_time_order() {
        let cheek = (1.0, "class");
        let s = fold_judged(&[
            judged(1, 1.2, 100, Zone::Cheek, cheek),
            judged(2, 1.25, 200, Zone::Cheek, cheek),
            judged(3, 0.0, 200, Zone::Cheek, cheek),
            judged(4, 1.1, 300, Zone::Cheek, cheek),
            judged(5, 0.75, 400, Zone::Cheek, cheek),
            judged(6, 1.5, 500, Zone::Cheek, cheek),
            judged(7, 1.25, 600, Zone::Cheek, cheek),
            judged(8, 1.5, 700, Zone::Cheek, cheek),
            judged(9, 1.0, 800, Zone::Cheek, cheek),
        ]);
        let e = s.violation.expect("exceeded");
        assert_eq!(
            summary(&e.worst),
            (1.5, 1.0, "class", 3, 300, T0 + 6000, T0 + 8000)
        );
        let others: Vec<_> = e.others.iter().map(summary).collect();
        assert_eq!(
            others,
            [
                (1.25, 1.0, "class", 2, 200, T0 + 1000, T0 + 2000),
                (1.1, 1.0, "class", 1, 100, T0 + 4000, T0 + 4000),
            ]
        );
        let order: Vec<i64> = e.excursions().iter().map(|x| x.first_above_ms).collect();
        assert_eq!(order, [T0 + 1000, T0 + 4000, T0 + 6000]);
    }

    #[test]
    fn a_change_of_rule_or_limit_ends_an_excursion_and_ties_go_to_the_earlier() {
        let s = fold_judged(&[
            judged(1, 0.75, 100, Zone::Forehead, (0.5, "zone")),
            judged(2, 1.25, 200, Zone::Cheek, (1.0, "operator")),
            judged(3, 1.25, 300, Zone::Scar, (1.0, "class")),
        ]);
        let e = s.violation.expect("exceeded");
        assert_eq!(e.worst.binding, "zone");
        let others: Vec<(&str, u64)> = e
            .others
            .iter()
            .map(|x| (x.binding.as_str(), x.samples_above))
            .collect();
        assert_eq!(others, [("operator", 1), ("class", 1)]);
    }

    #[test]
    fn a_record_written_before_excursions_were_kept_reads_with_its_excess() {
        let old = r#"{"limit_mm":0.5,"binding":"class","peak_depth_mm":0.75,
            "first_above_ms":1000,"last_above_ms":3000,"strokes_above":240,
            "samples_above":2,"policy_version":"p1"}"#;
        let e: Evidence = serde_json::from_str(old).expect("old evidence");
        assert_eq!(e.worst.excess_mm, 0.25);
        assert!(e.others.is_empty());
        let again: Evidence =
            serde_json::from_str(&serde_json::to_string(&e).expect("json")).expect("read");
        assert_eq!(again, e);
    }

    #[test]
    fn beyond_the_listed_excursions_the_least_bad_are_counted() {
        let limit = (1.0, "class");
        let mut samples = Vec::new();
        // Excursions of 1.1, 1.2, … alternating with samples within the limit, then one of
        // 1.05 (less bad than any listed) and a worst one of 2.0.
        let n = MAX_LISTED_EXCURSIONS as u64 + 5;
        for k in 0..n {
            let depth = 1.1 + (k % 5) as f64 * 0.1;
            samples.push(judged(2 * k + 1, depth, 10 * k, Zone::Cheek, limit));
            samples.push(judged(2 * k + 2, 0.5, 10 * k, Zone::Cheek, limit));
        }
        samples.push(judged(2 * n + 1, 1.05, 10 * n, Zone::Cheek, limit));
        samples.push(judged(2 * n + 2, 0.5, 10 * n, Zone::Cheek, limit));
        samples.push(judged(2 * n + 3, 2.0, 10 * n + 10, Zone::Cheek, limit));
        let e = fold_judged(&samples).violation.expect("exceeded");
        assert_eq!(e.worst.peak_depth_mm, 2.0);
        assert_eq!(e.others.len(), MAX_LISTED_EXCURSIONS);
        assert_eq!(e.count(), n + 2);
        assert_eq!(e.unlisted, n + 2 - 1 - MAX_LISTED_EXCURSIONS as u64);
        let least_listed = e
            .others
            .iter()
            .map(|x| x.excess_mm)
            .fold(f64::INFINITY, f64::min);
        assert!((least_listed - 0.1).abs() < 1e-9, "{least_listed}");
        assert!(
            e.others.iter().all(|x| x.peak_depth_mm != 1.05),
            "the least bad is not listed"
        );
        let times: Vec<i64> = e.others.iter().map(|x| x.first_above_ms).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "still in time order");
    }
}
