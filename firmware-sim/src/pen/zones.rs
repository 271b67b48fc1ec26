//! Zone plans: which zones a session works through, how many samples each takes (the
//! session's length split among them, or open-ended in load mode), and the depth set for each
//! within the class, the operator's working depth, the clinic's zone ceiling and the zone's
//! typical depth.

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::Zone;
use rand::Rng;
use rand::seq::SliceRandom;

use super::PenModel;
use super::depth::{round2, steps_below, typical_depth_mm};
use crate::policy;

/// One zone of a session: how many samples it takes and the depth the operator sets.
#[derive(Debug, Clone)]
pub(super) struct ZonePlan {
    pub(super) zone: Zone,
    pub(super) samples: u64,
    pub(super) depth_mm: f64,
}

/// Samples per zone in load mode, where sessions never end.
const LOAD_ZONE_SAMPLES: (u64, u64) = (60, 300);

impl PenModel {
    /// Zones of a session with their sample counts and depths that respect the class, the
    /// depth the operator works to and the zone ceiling.
    pub(super) fn plan_zones(&mut self, works_to_mm: f64) -> Vec<ZonePlan> {
        let interval = self.timing.sample_interval_ms;
        let total = if self.timing.load {
            u64::MAX
        } else {
            let ms = self
                .rng
                .random_range(self.timing.session_ms.0..=self.timing.session_ms.1);
            (ms / interval).max(1)
        };
        let mut zones = Zone::ALL.to_vec();
        zones.shuffle(&mut self.rng);
        let count = (self.rng.random_range(1..=4) as u64).min(total) as usize;
        zones.truncate(count);
        let mut left = total;
        let step = self.pen.depth_step_mm;
        zones
            .iter()
            .enumerate()
            .map(|(i, zone)| {
                let samples = if self.timing.load {
                    self.rng
                        .random_range(LOAD_ZONE_SAMPLES.0..=LOAD_ZONE_SAMPLES.1)
                } else if i + 1 == count {
                    left
                } else {
                    let fair = left / (count - i) as u64;
                    let n = self
                        .rng
                        .random_range(fair / 2..=fair)
                        .max(1)
                        .min(left - (count - i - 1) as u64);
                    left -= n;
                    n
                };
                let ceiling =
                    policy::zone_ceiling_mm(&self.pen.clinic_id, *zone).unwrap_or(f64::INFINITY);
                let cap = self
                    .class_mm()
                    .min(works_to_mm)
                    .min(ceiling)
                    .min(typical_depth_mm(*zone));
                let top = steps_below(cap, step).max(1);
                let k = self.rng.random_range(top.div_ceil(2)..=top);
                ZonePlan {
                    zone: *zone,
                    samples,
                    depth_mm: round2(k as f64 * step),
                }
            })
            .collect()
    }
}
