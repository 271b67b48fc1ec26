//! Cartridge wear and reuse (pure logic).
//!
//! Cartridges are single-use: one cartridge, one session. A cartridge seen in a second
//! session is a reuse event. Wear is the cartridge's cumulative stroke counter against the
//! rated stroke life of its model, flagged at 80 % and 100 %.

use serde::{Deserialize, Serialize};

use crate::decode::Reading;

/// Wear level against rated life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Wear {
    /// Below 80 % of rated life, or no rated life known.
    Ok,
    /// At or above 80 %.
    Warn,
    /// At or above 100 %.
    Worn,
}

impl Wear {
    /// `ok`, `warn` or `worn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Wear::Ok => "ok",
            Wear::Warn => "warn",
            Wear::Worn => "worn",
        }
    }

    fn of(strokes: u64, rated: Option<u64>) -> Self {
        match rated {
            Some(r) if r > 0 && strokes >= r => Wear::Worn,
            Some(r) if r > 0 && strokes.saturating_mul(5) >= r.saturating_mul(4) => Wear::Warn,
            _ => Wear::Ok,
        }
    }
}

/// Something a person must know about a cartridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CartridgeEvent {
    /// Seen in another session than its first.
    Reuse {
        /// The session it was first used in (`device/session`).
        first: String,
        /// The session reusing it (`device/session`).
        again: String,
    },
    /// Crossed a wear level.
    Wear(Wear),
}

impl CartridgeEvent {
    /// `reuse`, `wear_80` or `wear_100`.
    pub fn kind(&self) -> &'static str {
        match self {
            CartridgeEvent::Reuse { .. } => "reuse",
            CartridgeEvent::Wear(Wear::Worn) => "wear_100",
            CartridgeEvent::Wear(_) => "wear_80",
        }
    }
}

/// What the gateway knows of one cartridge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cartridge {
    /// Cartridge id.
    pub id: String,
    /// Model.
    pub model: String,
    /// Rated stroke life of the model, where configured.
    pub rated_strokes: Option<u64>,
    /// Highest cumulative stroke count seen.
    pub strokes: u64,
    /// Sessions it was used in (`device/session`), first first.
    pub sessions: Vec<String>,
    /// Current wear level.
    pub wear: Wear,
    /// First and last device time seen, Unix ms.
    pub first_seen_ms: i64,
    /// Last device time seen, Unix ms.
    pub last_seen_ms: i64,
}

impl Cartridge {
    /// A cartridge first seen in this reading.
    pub fn new(r: &Reading, rated_strokes: Option<u64>) -> Self {
        Self {
            id: r.cartridge_id.clone(),
            model: r.cartridge_model.clone(),
            rated_strokes,
            strokes: 0,
            sessions: Vec::new(),
            wear: Wear::Ok,
            first_seen_ms: r.timestamp_ms,
            last_seen_ms: r.timestamp_ms,
        }
    }

    /// Whether it was used in more than one session.
    pub fn reused(&self) -> bool {
        self.sessions.len() > 1
    }

    /// Percentage of rated life used, where a rated life is known.
    pub fn wear_pct(&self) -> Option<f64> {
        self.rated_strokes
            .filter(|r| *r > 0)
            .map(|r| self.strokes as f64 * 100.0 / r as f64)
    }

    /// Folds one reading of this cartridge in; returns what became true.
    pub fn observe(&mut self, r: &Reading) -> Vec<CartridgeEvent> {
        let mut events = Vec::new();
        self.first_seen_ms = self.first_seen_ms.min(r.timestamp_ms);
        self.last_seen_ms = self.last_seen_ms.max(r.timestamp_ms);
        self.strokes = self.strokes.max(r.cartridge_strokes);
        // Most readings are of a session already listed: looked for without building its key.
        if !r.session_id.is_empty()
            && !self
                .sessions
                .iter()
                .any(|k| is_session_key(k, &r.device_id, &r.session_id))
        {
            let key = format!("{}/{}", r.device_id, r.session_id);
            if let Some(first) = self.sessions.first() {
                events.push(CartridgeEvent::Reuse {
                    first: first.clone(),
                    again: key.clone(),
                });
            }
            self.sessions.push(key);
        }
        let wear = Wear::of(self.strokes, self.rated_strokes);
        if wear > self.wear {
            if self.wear < Wear::Warn && wear == Wear::Worn {
                events.push(CartridgeEvent::Wear(Wear::Warn));
            }
            events.push(CartridgeEvent::Wear(wear));
            self.wear = wear;
        }
        events
    }
}

/// Whether `key` is `device/session`.
fn is_session_key(key: &str, device: &str, session: &str) -> bool {
    key.len() == device.len() + 1 + session.len()
        && key.starts_with(device)
        && key.as_bytes().get(device.len()) == Some(&b'/')
        && key.ends_with(session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Encoding;
    use penwatch_proto::v1::{DeviceClass, Event};

    fn reading(session: &str, strokes: u64) -> Reading {
        Reading {
            device_id: "pen-1".into(),
            clinic_id: "c01".into(),
            claimed_class: DeviceClass::Salon,
            model: "m".into(),
            firmware: "f".into(),
            operator_id: "op-1".into(),
            session_id: session.into(),
            cartridge_id: "cart-1".into(),
            cartridge_model: "N12".into(),
            seq: 1,
            timestamp_ms: 1_790_000_000_000,
            event: Event::Sample,
            depth_mm: 0.5,
            session_strokes: strokes,
            cartridge_strokes: strokes,
            speed_hz: 120.0,
            battery_pct: 90.0,
            zone: None,
            encoding: Encoding::Protobuf,
        }
    }

    #[test]
    fn second_session_is_a_reuse() {
        let mut c = Cartridge::new(&reading("s-1", 0), Some(1000));
        assert!(c.observe(&reading("s-1", 10)).is_empty());
        assert!(c.observe(&reading("", 10)).is_empty());
        let events = c.observe(&reading("s-2", 20));
        assert_eq!(
            events,
            vec![CartridgeEvent::Reuse {
                first: "pen-1/s-1".into(),
                again: "pen-1/s-2".into()
            }]
        );
        assert!(c.reused());
        assert!(c.observe(&reading("s-2", 30)).is_empty());
    }

    #[test]
    fn wear_is_flagged_once_at_80_and_100_percent() {
        let mut c = Cartridge::new(&reading("s-1", 0), Some(1000));
        assert!(c.observe(&reading("s-1", 799)).is_empty());
        assert_eq!(
            c.observe(&reading("s-1", 800)),
            vec![CartridgeEvent::Wear(Wear::Warn)]
        );
        assert!(c.observe(&reading("s-1", 900)).is_empty());
        assert_eq!(
            c.observe(&reading("s-1", 1000)),
            vec![CartridgeEvent::Wear(Wear::Worn)]
        );
        assert_eq!(c.wear_pct(), Some(100.0));
        let mut jump = Cartridge::new(&reading("s-1", 0), Some(1000));
        assert_eq!(
            jump.observe(&reading("s-1", 5000)),
            vec![
                CartridgeEvent::Wear(Wear::Warn),
                CartridgeEvent::Wear(Wear::Worn)
            ]
        );
        let mut unrated = Cartridge::new(&reading("s-1", 0), None);
        assert!(unrated.observe(&reading("s-1", u64::MAX)).is_empty());
    }

    #[test]
    fn a_session_key_is_recognised_exactly_as_its_joined_text() {
        for (device, session) in [
            ("pen-1", "s1"),
            ("a/b", "c"),
            ("a", "b/c"),
            ("", "s"),
            ("é", "ü"),
        ] {
            let key = format!("{device}/{session}");
            for (d, s) in [
                ("pen-1", "s1"),
                ("a/b", "c"),
                ("a", "b/c"),
                ("", "s"),
                ("é", "ü"),
                ("pen-1", "s"),
            ] {
                assert_eq!(
                    is_session_key(&key, d, s),
                    key == format!("{d}/{s}"),
                    "{key} against {d}/{s}"
                );
            }
        }
    }
}
