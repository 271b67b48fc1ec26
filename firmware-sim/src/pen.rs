//! The pen model: a state machine that yields one step at a time in simulated time.
//!
//! A pen idles (a heartbeat sample every ten sample intervals), an operator logs in, a
//! cartridge is inserted, a session starts, the operator works through zones at depths that
//! fit the pen's class, their own limit and the zone, strokes accumulate at 100–150 Hz, the
//! battery drains, the session ends, and the pen idles again.
//!
//! The model is exact about what was published: the driver asks [`PenModel::next_at`] when the
//! next step is due, waits, and only then takes it with [`PenModel::step`], so a step that is
//! taken is published and a pen stopped early has consumed no seq it did not publish.
//! The model records its own ground truth as it goes.

use std::collections::VecDeque;

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{Event, Telemetry, Zone};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fleet::{Operator, Pen, Qualification};
use crate::policy::{
    self, CARTRIDGE_MODELS, CartridgeModel, MECHANICAL_MAX_MM, UNKNOWN_OPERATOR_LIMIT_MM,
};
use crate::scenario::{Flavour, MalformedKind, PenScenarios};
use crate::truth::{PenCounts, SessionTruth};

/// First RNG stream of the pens (pen `i` uses stream `PEN_STREAM_BASE + i`).
const PEN_STREAM_BASE: u64 = 1000;
/// Idle heartbeats come every this many sample intervals.
const HEARTBEAT_EVERY: u64 = 10;
/// Samples per zone in load mode, where sessions never end.
const LOAD_ZONE_SAMPLES: (u64, u64) = (60, 300);

/// How a pen's time unfolds.
#[derive(Debug, Clone, PartialEq)]
pub struct PenTiming {
    /// Simulated ms between treatment samples.
    pub sample_interval_ms: u64,
    /// Session length bounds, simulated ms.
    pub session_ms: (u64, u64),
    /// Idle gap bounds, simulated ms.
    pub idle_ms: (u64, u64),
    /// Sessions to run before stopping (`None`: until stopped).
    pub sessions: Option<u32>,
    /// Load mode: no idle, one session that stays open.
    pub load: bool,
    /// Device clock at simulated time 0, before skew, Unix epoch ms.
    pub start_ms: i64,
    /// Whether the pen publishes JSON (shapes the malformed payloads).
    pub json: bool,
}

/// What a pen does at one moment.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Publish a valid telemetry message (twice when `duplicate`).
    Telemetry {
        /// The message.
        msg: Box<Telemetry>,
        /// Publish an identical second copy.
        duplicate: bool,
    },
    /// Publish an invalid payload on the pen's telemetry topic.
    Malformed {
        /// What is wrong with it.
        kind: MalformedKind,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The network is lost: drop the connection abruptly, buffer what follows.
    NetworkDown,
    /// The network is back: reconnect, replay the buffer in order.
    NetworkUp,
}

/// One step: an action at a simulated time (ms since the pen started).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Simulated ms since the pen started.
    pub at_ms: u64,
    /// What happens.
    pub action: Action,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle { until: u64 },
    Login,
    Start,
    Treat,
    End,
    Done,
}

#[derive(Debug, Clone)]
struct Cartridge {
    id: String,
    model: CartridgeModel,
    strokes: u64,
}

#[derive(Debug, Clone)]
struct ZonePlan {
    zone: Zone,
    samples: u64,
    depth_mm: f64,
}

/// A run of samples above the permitted depth, inside one zone of the first pass.
#[derive(Debug, Clone)]
struct OverRun {
    zone: usize,
    first: u64,
    len: u64,
    depth_mm: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Network {
    Up,
    DownAt { first: u64, len: u64 },
    Down { until: u64 },
    Restored,
}

#[derive(Debug, Clone)]
struct Session {
    id: String,
    operator_id: String,
    /// The operator limit the gateway applies (0.5 mm for an unknown operator).
    judged_operator_mm: f64,
    zones: Vec<ZonePlan>,
    zone: usize,
    zone_sample: u64,
    pass: u64,
    over: Option<OverRun>,
    network: Network,
    speed_hz: f64,
    strokes: u64,
    samples: u64,
    depth_mm: f64,
    truth: SessionTruth,
}

/// A simulated pen.
#[derive(Debug)]
pub struct PenModel {
    pen: Pen,
    operators: Vec<Operator>,
    scenarios: PenScenarios,
    timing: PenTiming,
    rng: ChaCha8Rng,
    phase: Phase,
    next_at: u64,
    now: u64,
    pending: VecDeque<Step>,
    seq: u64,
    battery_pct: f64,
    cartridge: Option<Cartridge>,
    session: Option<Session>,
    sessions_started: u32,
    last_valid: Option<Telemetry>,
    malformed_next: usize,
    counts: PenCounts,
    sessions: Vec<SessionTruth>,
}

impl PenModel {
    /// A pen of the fleet with its clinic's operators and its scenario plan.
    pub fn new(
        pen: Pen,
        operators: Vec<Operator>,
        scenarios: PenScenarios,
        timing: PenTiming,
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(PEN_STREAM_BASE + pen.index as u64);
        let battery_pct = round1(rng.random_range(60.0..100.0));
        let malformed_next = rng.random_range(0..MalformedKind::ALL.len());
        let phase = if timing.load {
            Phase::Login
        } else {
            Phase::Idle {
                until: rng.random_range(timing.idle_ms.0..=timing.idle_ms.1),
            }
        };
        Self {
            pen,
            operators,
            scenarios,
            timing,
            rng,
            phase,
            next_at: 0,
            now: 0,
            pending: VecDeque::new(),
            seq: 0,
            battery_pct,
            cartridge: None,
            session: None,
            sessions_started: 0,
            last_valid: None,
            malformed_next,
            counts: PenCounts::default(),
            sessions: Vec::new(),
        }
    }

    /// The pen.
    pub fn pen(&self) -> &Pen {
        &self.pen
    }

    /// Simulated time of the next step, or `None` when the pen has finished its sessions.
    pub fn next_at(&self) -> Option<u64> {
        match self.pending.front() {
            Some(step) => Some(step.at_ms),
            None => (self.phase != Phase::Done).then_some(self.next_at),
        }
    }

    /// Takes the next step (due at [`Self::next_at`]); `None` when finished.
    pub fn step(&mut self) -> Option<Step> {
        if let Some(step) = self.pending.pop_front() {
            return Some(step);
        }
        let at_ms = self.next_at;
        self.now = at_ms;
        let action = loop {
            match self.phase {
                Phase::Done => return None,
                Phase::Idle { until } if self.next_at >= until => self.phase = Phase::Login,
                Phase::Idle { until } => {
                    let msg = self.idle_heartbeat();
                    self.next_at = (self.next_at + self.heartbeat_ms()).min(until);
                    break self.valid(msg);
                }
                Phase::Login => {
                    if let Some(action) = self.login() {
                        break action;
                    }
                }
                Phase::Start => {
                    let msg = self.session_event(Event::SessionStart);
                    self.phase = Phase::Treat;
                    self.next_at += self.timing.sample_interval_ms;
                    break self.valid(msg);
                }
                Phase::Treat => match self.treat() {
                    Some(action) => break action,
                    None => self.phase = Phase::End,
                },
                Phase::End => {
                    let msg = self.session_end();
                    break self.valid(msg);
                }
            }
        };
        Some(Step { at_ms, action })
    }

    /// Shutdown at simulated time `at_ms`: the steps still owed (queued messages, then the
    /// open session's `session_end`, if any). The pen is done afterwards.
    pub fn close(&mut self, at_ms: u64) -> Vec<Step> {
        let mut steps: Vec<Step> = self.pending.drain(..).collect();
        if matches!(self.phase, Phase::Treat | Phase::End) && self.session.is_some() {
            self.next_at = self.next_at.max(at_ms);
            self.now = self.next_at;
            let msg = self.session_end();
            let action = self.valid(msg);
            steps.push(Step {
                at_ms: self.now,
                action,
            });
            steps.extend(self.pending.drain(..));
        }
        self.session = None;
        self.phase = Phase::Done;
        steps
    }

    /// The pen's counters so far.
    pub fn counts(&self) -> &PenCounts {
        &self.counts
    }

    /// The sessions the pen started, so far.
    pub fn sessions(&self) -> &[SessionTruth] {
        &self.sessions
    }

    /// Last valid seq published (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.seq
    }

    /// Offset of the pen's clock, ms.
    pub fn clock_skew_ms(&self) -> i64 {
        self.scenarios.clock_skew_ms
    }

    /// Consumes the model, returning its counters and sessions.
    pub fn into_truth(self) -> (PenCounts, Vec<SessionTruth>) {
        (self.counts, self.sessions)
    }

    fn heartbeat_ms(&self) -> u64 {
        self.timing.sample_interval_ms * HEARTBEAT_EVERY
    }

    fn class_mm(&self) -> f64 {
        policy::class_limit_mm(self.pen.class)
    }

    /// A message with the pen's identity, its next seq and the device clock.
    fn message(&mut self, event: Event) -> Telemetry {
        self.seq += 1;
        Telemetry {
            device_id: self.pen.id.clone(),
            clinic_id: self.pen.clinic_id.clone(),
            device_class: self.pen.class.into(),
            model: self.pen.model.to_owned(),
            firmware: self.pen.firmware.to_owned(),
            seq: self.seq,
            timestamp_ms: self.timestamp_ms(self.next_at),
            event: event.into(),
            battery_pct: self.battery_pct,
            ..Telemetry::default()
        }
    }

    fn timestamp_ms(&self, at_ms: u64) -> i64 {
        let at = i64::try_from(at_ms).unwrap_or(i64::MAX);
        self.timing
            .start_ms
            .saturating_add(self.scenarios.clock_skew_ms)
            .saturating_add(at)
    }

    /// Counts a valid message and queues what follows it (a malformed message, maybe).
    fn valid(&mut self, msg: Telemetry) -> Action {
        let duplicate = self.rng.random_bool(self.scenarios.duplicate_p);
        self.counts.valid += 1;
        self.counts.published += 1 + u64::from(duplicate);
        self.counts.duplicates += u64::from(duplicate);
        if self.rng.random_bool(self.scenarios.malformed_p) {
            let kind = MalformedKind::ALL[self.malformed_next % MalformedKind::ALL.len()];
            self.malformed_next += 1;
            let payload = kind.payload(&msg, self.timing.json);
            self.counts.published += 1;
            *self
                .counts
                .malformed
                .entry(kind.name().to_owned())
                .or_default() += 1;
            let action = Action::Malformed { kind, payload };
            self.pending.push_back(Step {
                at_ms: self.now,
                action,
            });
        }
        self.last_valid = Some(msg.clone());
        Action::Telemetry {
            msg: Box::new(msg),
            duplicate,
        }
    }

    fn idle_heartbeat(&mut self) -> Telemetry {
        self.battery_pct = round1((self.battery_pct - 0.01).max(1.0));
        self.message(Event::Sample)
    }

    /// Plans a session; returns the cartridge insertion, or `None` when the cartridge is
    /// reused (the session starts right away).
    fn login(&mut self) -> Option<Action> {
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
        let network = if self.scenarios.offline && index == 0 && first_pass >= 8 {
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
        };
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

    /// Zones of a session with their sample counts and depths that respect the class, the
    /// depth the operator works to and the zone ceiling.
    fn plan_zones(&mut self, works_to_mm: f64) -> Vec<ZonePlan> {
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

    /// A run of 3–10 samples 0.25–0.5 mm above the limit in one zone, if a zone is long enough.
    fn plan_over_run(&mut self, zones: &[ZonePlan], operator_mm: f64) -> Option<OverRun> {
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

    /// The next treatment step, or `None` when the session has no more samples.
    fn treat(&mut self) -> Option<Action> {
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

    /// The `session_end` message; moves to idle (or done after the last session).
    fn session_end(&mut self) -> Telemetry {
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

    fn session_event(&mut self, event: Event) -> Telemetry {
        let mut msg = self.message(event);
        if let Some(s) = self.session.clone() {
            self.fill_session(&mut msg, &s);
        }
        msg
    }

    fn fill_session(&self, msg: &mut Telemetry, s: &Session) {
        msg.operator_id = s.operator_id.clone();
        msg.session_id = s.id.clone();
        msg.session_strokes = s.strokes;
        self.with_cartridge(msg);
    }

    fn with_cartridge(&self, msg: &mut Telemetry) {
        if let Some(c) = &self.cartridge {
            msg.cartridge_id = c.id.clone();
            msg.cartridge_model = c.model.name.to_owned();
            msg.cartridge_strokes = c.strokes;
        }
    }
}

/// Depth an operator typically sets for a zone (thin skin shallower).
fn typical_depth_mm(zone: Zone) -> f64 {
    match zone {
        Zone::Forehead | Zone::Periorbital => 0.5,
        Zone::Perioral | Zone::Nose | Zone::Neck => 1.0,
        Zone::Cheek | Zone::Chin | Zone::Scalp => 1.5,
        Zone::Body => 2.0,
        Zone::Scar | Zone::Unspecified => 2.5,
    }
}

/// How many whole steps fit at or below `mm`.
fn steps_below(mm: f64, step: f64) -> u64 {
    (mm / step + 1e-9).floor().max(0.0) as u64
}

/// Rounds to 0.01 mm (the nearest f64 to a two-decimal value, as a policy file writes it).
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use penwatch_proto::v1::DeviceClass;

    use super::*;
    use crate::config::Scenario;
    use crate::fleet::Fleet;
    use crate::policy::Rule;
    use crate::scenario;

    fn timing(sessions: u32) -> PenTiming {
        PenTiming {
            sample_interval_ms: 1000,
            session_ms: (180_000, 480_000),
            idle_ms: (30_000, 180_000),
            sessions: Some(sessions),
            load: false,
            start_ms: 1_790_000_000_000,
            json: false,
        }
    }

    /// Every step of every pen of a fleet, run to the end of its sessions.
    fn run_fleet(
        seed: u64,
        scenarios: &[Scenario],
        sessions: u32,
    ) -> (Fleet, Vec<PenModel>, Vec<Vec<Step>>) {
        let fleet = Fleet::generate(seed, 2, 4);
        let plans = scenario::plan(&fleet, scenarios);
        let mut models = Vec::new();
        let mut all = Vec::new();
        for (pen, plan) in fleet.pens().zip(plans) {
            let ops = fleet
                .clinic(&pen.clinic_id)
                .map(|c| c.operators.clone())
                .unwrap_or_default();
            let mut model = PenModel::new(pen.clone(), ops, plan, timing(sessions), seed);
            let mut steps = Vec::new();
            let mut last_at = 0;
            while let Some(at) = model.next_at() {
                assert!(at >= last_at, "time never goes back");
                last_at = at;
                steps.push(model.step().expect("a step when next_at is some"));
            }
            models.push(model);
            all.push(steps);
        }
        (fleet, models, all)
    }

    fn valid(steps: &[Step]) -> impl Iterator<Item = &Telemetry> {
        steps.iter().filter_map(|s| match &s.action {
            Action::Telemetry { msg, .. } => Some(msg.as_ref()),
            _ => None,
        })
    }

    /// The permitted depth of a sample, from the policy as the gateway would see it.
    fn limit_of(fleet: &Fleet, msg: &Telemetry) -> (f64, Rule) {
        let class = DeviceClass::try_from(msg.device_class).expect("valid class");
        let operator = fleet
            .clinic(&msg.clinic_id)
            .and_then(|c| c.operators.iter().find(|o| o.id == msg.operator_id))
            .map_or(UNKNOWN_OPERATOR_LIMIT_MM, Operator::limit_mm);
        let zone = Zone::try_from(msg.zone).expect("valid zone");
        policy::permitted(
            policy::class_limit_mm(class),
            operator,
            policy::zone_ceiling_mm(&msg.clinic_id, zone),
        )
    }

    #[test]
    fn same_seed_same_steps() {
        let all = [
            Scenario::OverDepth,
            Scenario::Malformed,
            Scenario::Duplicates,
            Scenario::OfflineBuffer,
        ];
        let (_, _, a) = run_fleet(11, &all, 2);
        let (_, _, b) = run_fleet(11, &all, 2);
        let strip = |v: &Vec<Vec<Step>>| format!("{v:?}");
        assert_eq!(strip(&a), strip(&b));
    }

    #[test]
    fn seqs_are_gap_free_and_malformed_consume_none() {
        let (_, models, all) = run_fleet(3, &[Scenario::Malformed, Scenario::Duplicates], 3);
        let mut malformed = 0;
        for (model, steps) in models.iter().zip(&all) {
            let seqs: Vec<u64> = valid(steps).map(|m| m.seq).collect();
            assert_eq!(
                seqs,
                (1..=seqs.len() as u64).collect::<Vec<_>>(),
                "{}",
                model.pen().id
            );
            assert_eq!(model.counts().valid, seqs.len() as u64);
            assert_eq!(model.last_seq(), seqs.len() as u64);
            let mut last_seq = 0;
            for step in steps {
                match &step.action {
                    Action::Telemetry { msg, .. } => last_seq = msg.seq,
                    Action::Malformed { kind, payload } => {
                        malformed += 1;
                        assert!(last_seq > 0, "a malformed message follows a valid one");
                        if let Ok(t) = <Telemetry as prost::Message>::decode(payload.as_slice()) {
                            if *kind != MalformedKind::Truncated {
                                assert_eq!(t.seq, last_seq, "{kind:?} reuses the last valid seq");
                            }
                        }
                    }
                    _ => {}
                }
            }
            let published: u64 = steps
                .iter()
                .map(|s| match &s.action {
                    Action::Telemetry { duplicate, .. } => 1 + u64::from(*duplicate),
                    Action::Malformed { .. } => 1,
                    _ => 0,
                })
                .sum();
            assert_eq!(model.counts().published, published);
        }
        assert!(malformed > 0, "the scenario produced malformed messages");
    }

    #[test]
    fn normal_sessions_never_exceed() {
        for seed in 0..6 {
            let (fleet, models, all) =
                run_fleet(seed, &[Scenario::Normal, Scenario::CartridgeReuse], 3);
            for steps in &all {
                for msg in valid(steps).filter(|m| m.event == i32::from(Event::Sample)) {
                    let (limit, _) = limit_of(&fleet, msg);
                    assert!(
                        msg.depth_mm <= limit,
                        "seed {seed}: {} mm > {limit} mm",
                        msg.depth_mm
                    );
                    assert!(msg.depth_mm >= 0.0);
                }
            }
            for model in &models {
                assert_eq!(model.sessions().len(), 3);
                assert!(
                    model
                        .sessions()
                        .iter()
                        .all(|s| !s.exceeded && s.ended && !s.unknown_operator)
                );
            }
        }
    }

    #[test]
    fn over_depth_truth_matches_the_samples() {
        let mut rules = BTreeMap::new();
        for seed in 0..8 {
            let (fleet, models, all) = run_fleet(seed, &[Scenario::Normal, Scenario::OverDepth], 3);
            let mut exceeded = 0;
            for (model, steps) in models.iter().zip(&all) {
                for truth in model.sessions() {
                    let samples: Vec<&Telemetry> = valid(steps)
                        .filter(|m| {
                            m.session_id == truth.session_id && m.event == i32::from(Event::Sample)
                        })
                        .collect();
                    let above: Vec<(&&Telemetry, (f64, Rule))> = samples
                        .iter()
                        .map(|m| (m, limit_of(&fleet, m)))
                        .filter(|(m, (limit, _))| m.depth_mm > *limit)
                        .collect();
                    assert_eq!(truth.exceeded, !above.is_empty());
                    assert_eq!(truth.samples_above, above.len() as u64);
                    let in_excursions: u64 = truth.excursions.iter().map(|x| x.samples).sum();
                    assert_eq!(in_excursions, truth.samples_above);
                    assert_eq!(truth.samples, samples.len() as u64);
                    if let Some((first, (limit, rule))) = above.first() {
                        exceeded += 1;
                        *rules.entry(format!("{rule:?}")).or_insert(0) += 1;
                        assert_eq!((truth.permitted_mm, truth.binding_rule), (*limit, *rule));
                        assert_eq!(truth.first_above_ms, Some(first.timestamp_ms));
                        for (m, (limit, _)) in &above {
                            let excess = m.depth_mm - limit;
                            assert!(
                                (0.25 - 1e-9..=0.5 + 1e-9).contains(&excess),
                                "excess {excess}"
                            );
                            assert!(m.depth_mm <= MECHANICAL_MAX_MM);
                        }
                        assert!(above.len() >= 3 && above.len() <= 10);
                    }
                }
            }
            assert!(
                exceeded >= 1,
                "seed {seed}: the forced over-depth session exceeded"
            );
        }
        assert!(
            rules.contains_key("Class") && rules.contains_key("Operator"),
            "{rules:?}"
        );
    }

    #[test]
    fn unknown_operator_is_judged_at_half_a_millimetre() {
        let mut unknown = 0;
        for seed in 0..4 {
            let (_, models, all) = run_fleet(seed, &[Scenario::UnknownOperator], 2);
            for (model, steps) in models.iter().zip(&all) {
                for truth in model.sessions().iter().filter(|s| s.unknown_operator) {
                    unknown += 1;
                    assert!(truth.operator_id.contains("-x"));
                    let any_above = valid(steps)
                        .filter(|m| {
                            m.session_id == truth.session_id && m.event == i32::from(Event::Sample)
                        })
                        .any(|m| {
                            let class = policy::class_limit_mm(
                                DeviceClass::try_from(m.device_class).expect("class"),
                            );
                            let zone = policy::zone_ceiling_mm(
                                &m.clinic_id,
                                Zone::try_from(m.zone).expect("zone"),
                            );
                            m.depth_mm > class.min(0.5).min(zone.unwrap_or(f64::INFINITY))
                        });
                    assert_eq!(truth.exceeded, any_above);
                    assert!(truth.permitted_mm <= 0.5);
                }
            }
        }
        assert!(unknown >= 4);
    }

    #[test]
    fn counters_are_cumulative_and_reuse_continues_the_cartridge() {
        let (_, models, all) = run_fleet(5, &[Scenario::CartridgeReuse], 4);
        let mut reused = 0;
        for (model, steps) in models.iter().zip(&all) {
            let mut by_session: BTreeMap<&str, u64> = BTreeMap::new();
            let mut by_cartridge: BTreeMap<&str, u64> = BTreeMap::new();
            let mut inserted = Vec::new();
            for m in valid(steps) {
                if m.event == i32::from(Event::CartridgeInserted) {
                    inserted.push(m.cartridge_id.clone());
                    assert_eq!(m.cartridge_strokes, 0);
                }
                if !m.session_id.is_empty() {
                    let prev = by_session
                        .insert(&m.session_id, m.session_strokes)
                        .unwrap_or(0);
                    assert!(m.session_strokes >= prev, "session strokes are cumulative");
                    let prev = by_cartridge
                        .insert(&m.cartridge_id, m.cartridge_strokes)
                        .unwrap_or(0);
                    assert!(
                        m.cartridge_strokes >= prev,
                        "cartridge strokes are cumulative"
                    );
                }
            }
            let sessions = model.sessions();
            for (i, s) in sessions.iter().enumerate() {
                let earlier = sessions[..i]
                    .iter()
                    .any(|o| o.cartridge_id == s.cartridge_id);
                assert_eq!(
                    s.cartridge_reused, earlier,
                    "reuse means an earlier session had it"
                );
                assert!(
                    inserted.contains(&s.cartridge_id),
                    "every cartridge was inserted"
                );
                reused += u64::from(s.cartridge_reused);
                assert!(s.strokes > 0 && s.samples > 0);
                assert_eq!(
                    s.strokes,
                    by_session.get(s.session_id.as_str()).copied().unwrap_or(0)
                );
            }
        }
        assert!(reused >= 1);
        let inserts: usize = all
            .iter()
            .map(|steps| {
                valid(steps)
                    .filter(|m| m.event == i32::from(Event::CartridgeInserted))
                    .count()
            })
            .sum();
        let fresh = models
            .iter()
            .flat_map(|m| m.sessions())
            .filter(|s| !s.cartridge_reused);
        assert_eq!(
            inserts,
            fresh.count(),
            "a reused cartridge is not inserted again"
        );
    }

    #[test]
    fn offline_buffer_goes_down_then_up_inside_the_first_session() {
        let (_, _, all) = run_fleet(9, &[Scenario::OfflineBuffer], 2);
        let mut pens_offline = 0;
        for steps in &all {
            let down = steps.iter().position(|s| s.action == Action::NetworkDown);
            let up = steps.iter().position(|s| s.action == Action::NetworkUp);
            match (down, up) {
                (Some(d), Some(u)) => {
                    pens_offline += 1;
                    assert!(d < u);
                    let between = steps[d..u]
                        .iter()
                        .filter(|s| matches!(s.action, Action::Telemetry { .. }))
                        .count();
                    assert!(between >= 1, "samples are taken while offline");
                }
                (None, None) => {}
                other => panic!("unbalanced network steps {other:?}"),
            }
        }
        assert!(pens_offline >= 1);
    }

    #[test]
    fn close_ends_the_open_session_and_load_mode_never_ends_a_session() {
        let fleet = Fleet::generate(2, 1, 3);
        let pen = fleet.pens().next().expect("a pen").clone();
        let ops = fleet.clinics[0].operators.clone();
        let plan = scenario::plan(&fleet, &[Scenario::Normal]).remove(0);
        let load = PenTiming {
            load: true,
            sessions: None,
            ..timing(1)
        };
        let mut model = PenModel::new(pen, ops, plan, load, 2);
        for _ in 0..2000 {
            let step = model.step().expect("load mode goes on");
            if let Action::Telemetry { msg, .. } = step.action {
                assert_ne!(msg.event, i32::from(Event::SessionEnd));
            }
        }
        let closing = model.close(10_000_000);
        let Some(Action::Telemetry { msg, .. }) = closing.last().map(|s| &s.action) else {
            panic!("close publishes session_end");
        };
        assert_eq!(msg.event, i32::from(Event::SessionEnd));
        assert_eq!(model.next_at(), None);
        assert_eq!(model.sessions().len(), 1);
        assert!(model.sessions()[0].ended);
        assert!(!model.sessions()[0].zones.is_empty());
    }
}
