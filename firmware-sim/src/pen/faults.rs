//! Fault behaviours planned per session: an over-depth run (samples 0.25–0.5 mm above the
//! permitted depth in one zone) and a network loss (the pen drops its connection, buffers and
//! replays). [`PenModel`]'s treatment acts on these plans sample by sample.

use rand::Rng;

use super::PenModel;
use super::depth::round2;
use super::zones::ZonePlan;
use crate::policy::{self, MECHANICAL_MAX_MM};

/// A run of samples above the permitted depth, inside one zone of the first pass.
#[derive(Debug, Clone)]
pub(super) struct OverRun {
    pub(super) zone: usize,
    pub(super) first: u64,
    pub(super) len: u64,
    pub(super) depth_mm: f64,
}

/// The network through a session: lost at a sample, down until a sample, back.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Network {
    Up,
    DownAt { first: u64, len: u64 },
    Down { until: u64 },
    Restored,
}

impl PenModel {
    /// A run of 3–10 samples 0.25–0.5 mm above the limit in one zone, if a zone is long enough.
    pub(super) fn plan_over_run(
        &mut self,
        zones: &[ZonePlan],
        operator_mm: f64,
    ) -> Option<OverRun> {
        let long: Vec<usize> = (0..zones.len())
            .filter(|i| zones[*i].samples >= 6)
            .collect();
        let zone = *long.get(self.rng.random_range(0..long.len().max(1)))?;
        let plan = &zones[zone];
        let len = self.rng.random_range(3..=10).min(plan.samples - 2);
        let first = self.rng.random_range(1..=plan.samples - len - 1);
        let ceiling = policy::zone_ceiling_mm(&self.pen.clinic_id, plan.zone);
        let (limit, _) = policy::permitted(self.class_mm(), operator_mm, ceiling);
        let step = self.pen.depth_step_mm;
        let lo = ((limit + 0.25) / step - 1e-9).ceil() as u64;
        let hi = ((limit + 0.5) / step + 1e-9).floor() as u64;
        let k = self.rng.random_range(lo..=hi.max(lo));
        let depth_mm = round2(k as f64 * step).min(MECHANICAL_MAX_MM);
        Some(OverRun {
            zone,
            first,
            len,
            depth_mm,
        })
    }

    /// The network plan of a session: an offline pen loses the network once, for 10–60
    /// samples inside its first session's first pass, if that pass is long enough.
    pub(super) fn plan_network(&mut self, index: u32, first_pass: u64) -> Network {
        if self.scenarios.offline && index == 0 && first_pass >= 8 {
            let first = self
                .rng
                .random_range(first_pass * 3 / 10..=first_pass * 6 / 10);
            let len = self
                .rng
                .random_range(10..=60)
                .min(first_pass - first - 1)
                .max(1);
            Network::DownAt { first, len }
        } else {
            Network::Up
        }
    }
}
