//! Treatment: one sample at a time through the session's zones, with the depth held near the
//! zone's plan (or the over-depth run's), the stroke counters, the battery drain, the network
//! plan's loss and return, and each sample observed into the session's ground truth.

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::Event;
use rand::Rng;

use super::depth::{round1, round2};
use super::faults::Network;
use super::{Action, PenModel};
use crate::policy;

impl PenModel {
    /// The next treatment step, or `None` when the session has no more samples.
    pub(super) fn treat(&mut self) -> Option<Action> {
        let interval = self.timing.sample_interval_ms;
        let mut s = self.session.take()?;
        let network = match s.network {
            Network::DownAt { first, len } if s.samples == first => {
                Some((Network::Down { until: first + len }, Action::NetworkDown))
            }
            Network::Down { until } if s.samples == until => {
                Some((Network::Restored, Action::NetworkUp))
            }
            _ => None,
        };
        if let Some((state, action)) = network {
            s.network = state;
            self.session = Some(s);
            return Some(action);
        }
        let Some(plan) = s.zones.get(s.zone).cloned() else {
            self.session = Some(s);
            return None;
        };
        let step = self.pen.depth_step_mm;
        let over = s.over.as_ref().filter(|o| {
            s.pass == 0 && o.zone == s.zone && (o.first..o.first + o.len).contains(&s.zone_sample)
        });
        s.depth_mm = if let Some(o) = over {
            o.depth_mm
        } else if s.zone_sample == 0 && s.zone > 0 {
            0.0
        } else if s.depth_mm <= 0.0 || s.depth_mm > plan.depth_mm || self.rng.random_bool(0.1) {
            if plan.depth_mm >= 2.0 * step && self.rng.random_bool(0.5) {
                round2(plan.depth_mm - step)
            } else {
                plan.depth_mm
            }
        } else {
            s.depth_mm
        };
        let speed_hz = if s.depth_mm > 0.0 {
            s.speed_hz + self.rng.random_range(-3.0..=3.0_f64).round()
        } else {
            0.0
        };
        let delta = (speed_hz * interval as f64 / 1000.0).round() as u64;
        s.strokes += delta;
        s.samples += 1;
        if let Some(c) = self.cartridge.as_mut() {
            c.strokes += delta;
        }
        if s.depth_mm > 0.0 {
            let drain = self.rng.random_range(0.01..0.03);
            self.battery_pct = round1((self.battery_pct - drain).max(1.0));
        }
        let mut msg = self.message(Event::Sample);
        msg.depth_mm = s.depth_mm;
        msg.speed_hz = speed_hz;
        msg.zone = plan.zone.into();
        self.fill_session(&mut msg, &s);
        let ceiling = policy::zone_ceiling_mm(&self.pen.clinic_id, plan.zone);
        let limit = policy::permitted(self.class_mm(), s.judged_operator_mm, ceiling);
        s.truth.observe_sample(
            msg.depth_mm,
            limit,
            delta,
            msg.timestamp_ms,
            Some(plan.zone.short_name().to_owned()),
        );
        s.truth.strokes = s.strokes;
        s.zone_sample += 1;
        if s.zone_sample >= plan.samples {
            s.zone_sample = 0;
            s.zone += 1;
            if self.timing.load && s.zone >= s.zones.len() {
                s.zone = 0;
                s.pass += 1;
            }
        }
        self.session = Some(s);
        self.next_at += interval;
        Some(self.valid(msg))
    }
}
