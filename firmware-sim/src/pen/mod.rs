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
//!
//! This file owns the public API and the phase machine that drives it ([`PenModel::step`],
//! [`PenModel::close`]); `session` plans and ends sessions, `zones` plans their zones, `treat`
//! takes the treatment samples, `faults` plans the over-depth runs and the network loss,
//! `publish` builds and counts the messages, and `depth` holds the numeric helpers.

mod depth;
mod faults;
mod publish;
mod session;
mod treat;
mod zones;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;

use penwatch_proto::v1::{Event, Telemetry};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use self::depth::round1;
use self::session::{Cartridge, Session};
use crate::fleet::{Operator, Pen};
use crate::policy;
use crate::scenario::{MalformedKind, PenScenarios};
use crate::truth::{PenCounts, SessionTruth};

/// First RNG stream of the pens (pen `i` uses stream `PEN_STREAM_BASE + i`).
const PEN_STREAM_BASE: u64 = 1000;
/// Idle heartbeats come every this many sample intervals.
const HEARTBEAT_EVERY: u64 = 10;

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

/// Where a pen is in its cycle of idling and sessions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    Idle { until: u64 },
    Login,
    Start,
    Treat,
    End,
    Done,
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

    /// Simulated ms between idle heartbeats.
    fn heartbeat_ms(&self) -> u64 {
        self.timing.sample_interval_ms * HEARTBEAT_EVERY
    }

    /// The depth limit of the pen's class.
    fn class_mm(&self) -> f64 {
        policy::class_limit_mm(self.pen.class)
    }

    /// An idle sample; the battery drains a little.
    fn idle_heartbeat(&mut self) -> Telemetry {
        self.battery_pct = round1((self.battery_pct - 0.01).max(1.0));
        self.message(Event::Sample)
    }
}
