//! A session's life: the operator logs in (a session is planned, a cartridge inserted or the
//! last one reused, the operator picked for the scenario's flavour), and the session ends
//! (its ground truth is recorded and the pen idles or is done). Also the state a session and a
//! cartridge carry between samples.

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{Event, Telemetry};
use rand::Rng;

use super::faults::{Network, OverRun};
use super::zones::ZonePlan;
use super::{Action, PenModel, Phase};
use crate::fleet::{Operator, Qualification};
use crate::policy::{self, CARTRIDGE_MODELS, CartridgeModel, UNKNOWN_OPERATOR_LIMIT_MM};
use crate::scenario::Flavour;
use crate::truth::SessionTruth;

/// The cartridge in the pen, with the strokes it has made across sessions.
#[derive(Debug, Clone)]
pub(super) struct Cartridge {
    pub(super) id: String,
    pub(super) model: CartridgeModel,
    pub(super) strokes: u64,
}

/// The open session: its plan, where the treatment is in it, and its ground truth so far.
#[derive(Debug, Clone)]
pub(super) struct Session {
    pub(super) id: String,
    pub(super) operator_id: String,
    /// The operator limit the gateway applies (0.5 mm for an unknown operator).
    pub(super) judged_operator_mm: f64,
    pub(super) zones: Vec<ZonePlan>,
    /// Index of the current zone in `zones`.
    pub(super) zone: usize,
    /// Samples taken in the current zone.
    pub(super) zone_sample: u64,
    /// Passes through all the zones completed (load mode starts over).
    pub(super) pass: u64,
    pub(super) over: Option<OverRun>,
    pub(super) network: Network,
    /// The operator's base speed; each sample varies around it.
    pub(super) speed_hz: f64,
    pub(super) strokes: u64,
    pub(super) samples: u64,
    /// Depth of the last sample.
    pub(super) depth_mm: f64,
    pub(super) truth: SessionTruth,
}

impl PenModel {
    /// Plans a session; returns the cartridge insertion, or `None` when the cartridge is
    /// reused (the session starts right away).
    pub(super) fn login(&mut self) -> Option<Action> {
        let index = self.sessions_started;
        self.sessions_started += 1;
        if self.battery_pct < 20.0 {
            self.battery_pct = 100.0;
        }
        let flavour = self.scenarios.flavour(index, &mut self.rng);
        let reused = self.cartridge.is_some() && self.scenarios.reuses(index, &mut self.rng);
        let (operator_id, judged_operator_mm, works_to_mm) = self.pick_operator(flavour);
        let zones = self.plan_zones(works_to_mm);
        let over = (flavour == Some(Flavour::OverDepth))
            .then(|| self.plan_over_run(&zones, judged_operator_mm))
            .flatten();
        let first_pass: u64 = zones.iter().map(|z| z.samples).sum();
        let network = self.plan_network(index, first_pass);
        if !reused {
            let model = CARTRIDGE_MODELS[self.rng.random_range(0..CARTRIDGE_MODELS.len())];
            let id = format!("ct-{:012x}", self.rng.random::<u64>() >> 16);
            self.cartridge = Some(Cartridge {
                id,
                model,
                strokes: 0,
            });
        }
        let id = format!("s-{:016x}", self.rng.random::<u64>());
        let (permitted_mm, binding_rule) =
            policy::permitted(self.class_mm(), judged_operator_mm, None);
        let truth = SessionTruth {
            session_id: id.clone(),
            device_id: self.pen.id.clone(),
            clinic_id: self.pen.clinic_id.clone(),
            operator_id: operator_id.clone(),
            device_class: self.pen.class.short_name().to_owned(),
            cartridge_id: self
                .cartridge
                .as_ref()
                .map(|c| c.id.clone())
                .unwrap_or_default(),
            cartridge_model: self
                .cartridge
                .as_ref()
                .map(|c| c.model.name.to_owned())
                .unwrap_or_default(),
            zones: Vec::new(),
            samples: 0,
            strokes: 0,
            max_depth_mm: 0.0,
            permitted_mm,
            binding_rule,
            exceeded: false,
            samples_above: 0,
            strokes_above: 0,
            first_above_ms: None,
            last_above_ms: None,
            unknown_operator: flavour == Some(Flavour::UnknownOperator),
            cartridge_reused: reused,
            skewed_clock: self.scenarios.clock_skew_ms != 0,
            ended: false,
            excursions: Vec::new(),
            above: false,
        };
        self.session = Some(Session {
            id,
            operator_id,
            judged_operator_mm,
            zones,
            zone: 0,
            zone_sample: 0,
            pass: 0,
            over,
            network,
            speed_hz: self.rng.random_range(100.0..150.0_f64).round(),
            strokes: 0,
            samples: 0,
            depth_mm: 0.0,
            truth,
        });
        self.phase = Phase::Start;
        if reused {
            return None;
        }
        let mut msg = self.message(Event::CartridgeInserted);
        self.with_cartridge(&mut msg);
        msg.operator_id = self
            .session
            .as_ref()
            .map(|s| s.operator_id.clone())
            .unwrap_or_default();
        self.next_at += self.rng.random_range(5_000..=20_000);
        Some(self.valid(msg))
    }

    /// The operator of a session: id, the limit the gateway applies, the depth they work to.
    fn pick_operator(&mut self, flavour: Option<Flavour>) -> (String, f64, f64) {
        let class_mm = self.class_mm();
        match flavour {
            Some(Flavour::UnknownOperator) => {
                let n = self.rng.random_range(1..=9);
                let hidden = Qualification::ALL[self.rng.random_range(0..Qualification::ALL.len())];
                (
                    format!("op-{}-x{n}", self.pen.clinic_id),
                    UNKNOWN_OPERATOR_LIMIT_MM,
                    hidden.limit_mm(),
                )
            }
            _ => {
                let all: Vec<&Operator> = self.operators.iter().collect();
                let candidates: Vec<&Operator> = if flavour == Some(Flavour::OverDepth) {
                    // Alternate which rule binds: the class (class <= operator) or the operator.
                    let class_binds = self.rng.random_bool(0.5);
                    all.iter()
                        .copied()
                        .filter(|o| (class_mm <= o.limit_mm()) == class_binds)
                        .collect()
                } else {
                    Vec::new()
                };
                let pool = if candidates.is_empty() {
                    &all
                } else {
                    &candidates
                };
                match pool.get(self.rng.random_range(0..pool.len().max(1))) {
                    Some(op) => (op.id.clone(), op.limit_mm(), op.limit_mm()),
                    None => (
                        String::new(),
                        UNKNOWN_OPERATOR_LIMIT_MM,
                        UNKNOWN_OPERATOR_LIMIT_MM,
                    ),
                }
            }
        }
    }

    /// The `session_end` message; moves to idle (or done after the last session).
    pub(super) fn session_end(&mut self) -> Telemetry {
        let msg = self.session_event(Event::SessionEnd);
        if let Some(mut s) = self.session.take() {
            s.truth.ended = true;
            self.sessions.push(s.truth);
        }
        let done = self
            .timing
            .sessions
            .is_some_and(|k| self.sessions_started >= k);
        if done || self.timing.load {
            self.phase = Phase::Done;
        } else {
            let gap = self
                .rng
                .random_range(self.timing.idle_ms.0..=self.timing.idle_ms.1);
            self.phase = Phase::Idle {
                until: self.next_at + gap,
            };
            self.next_at += self.heartbeat_ms().min(gap);
        }
        msg
    }
}
