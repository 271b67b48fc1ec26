//! What goes on the wire: each message carries the pen's identity, its next seq and the
//! device clock (with its skew), plus the session and cartridge in progress; a valid message
//! is counted and may be published twice or followed by a malformed one, per the scenarios.

use penwatch_proto::v1::{Event, Telemetry};
use rand::Rng;

use super::session::Session;
use super::{Action, PenModel, Step};
use crate::scenario::MalformedKind;

impl PenModel {
    /// A message with the pen's identity, its next seq and the device clock.
    pub(super) fn message(&mut self, event: Event) -> Telemetry {
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

    /// The device clock at simulated time `at_ms`: its start plus skew plus elapsed time.
    fn timestamp_ms(&self, at_ms: u64) -> i64 {
        let at = i64::try_from(at_ms).unwrap_or(i64::MAX);
        self.timing
            .start_ms
            .saturating_add(self.scenarios.clock_skew_ms)
            .saturating_add(at)
    }

    /// Counts a valid message and queues what follows it (a malformed message, maybe).
    pub(super) fn valid(&mut self, msg: Telemetry) -> Action {
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

    /// A message carrying the open session, if any (its start and its end).
    pub(super) fn session_event(&mut self, event: Event) -> Telemetry {
        let mut msg = self.message(event);
        if let Some(s) = self.session.clone() {
            self.fill_session(&mut msg, &s);
        }
        msg
    }

    /// Puts a session's operator, id and strokes, and the cartridge, on a message.
    pub(super) fn fill_session(&self, msg: &mut Telemetry, s: &Session) {
        msg.operator_id = s.operator_id.clone();
        msg.session_id = s.id.clone();
        msg.session_strokes = s.strokes;
        self.with_cartridge(msg);
    }

    /// Puts the cartridge in the pen, if any, with its strokes so far, on a message.
    pub(super) fn with_cartridge(&self, msg: &mut Telemetry) {
        if let Some(c) = &self.cartridge {
            msg.cartridge_id = c.id.clone();
            msg.cartridge_model = c.model.name.to_owned();
            msg.cartridge_strokes = c.strokes;
        }
    }
}
