//! Readings and verdicts shared by the journal's unit tests.

use penwatch_proto::v1::{DeviceClass, Event};

use crate::decode::{Encoding, Reading};
use crate::sessions::Verdict;

/// A 0.25 mm sample of pen `pen-1` at clinic `c01` in `session`.
pub(super) fn reading(session: &str, seq: u64, ts_ms: i64) -> Reading {
    Reading {
        device_id: "pen-1".into(),
        clinic_id: "c01".into(),
        claimed_class: DeviceClass::Home,
        model: "m".into(),
        firmware: "f".into(),
        operator_id: "op".into(),
        session_id: session.into(),
        cartridge_id: "cart".into(),
        cartridge_model: "NANO".into(),
        seq,
        timestamp_ms: ts_ms,
        event: Event::Sample,
        depth_mm: 0.25,
        session_strokes: seq,
        cartridge_strokes: seq,
        speed_hz: 100.0,
        battery_pct: 50.0,
        zone: None,
        encoding: Encoding::Protobuf,
    }
}

/// Within a home pen's 0.5 mm.
pub(super) fn verdict() -> Verdict {
    Verdict {
        permitted_mm: 0.5,
        binding: "class".into(),
        device_class: "home".into(),
        exceeded: false,
        unknown_operator: false,
        unregistered_device: false,
        class_mismatch: false,
        policy_version: "p".into(),
    }
}
