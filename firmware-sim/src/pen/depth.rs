//! Depth and rounding helpers: the depth an operator typically sets for a zone, how many of
//! a pen's depth steps fit under a limit, and the rounding the published values get.

use penwatch_proto::v1::Zone;

/// Depth an operator typically sets for a zone (thin skin shallower).
pub(super) fn typical_depth_mm(zone: Zone) -> f64 {
    match zone {
        Zone::Forehead | Zone::Periorbital => 0.5,
        Zone::Perioral | Zone::Nose | Zone::Neck => 1.0,
        Zone::Cheek | Zone::Chin | Zone::Scalp => 1.5,
        Zone::Body => 2.0,
        Zone::Scar | Zone::Unspecified => 2.5,
    }
}

/// How many whole steps fit at or below `mm`.
pub(super) fn steps_below(mm: f64, step: f64) -> u64 {
    (mm / step + 1e-9).floor().max(0.0) as u64
}

/// Rounds to 0.01 mm (the nearest f64 to a two-decimal value, as a policy file writes it).
pub(super) fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Rounds to 0.1 (battery percentages).
pub(super) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}
