//! A violation's evidence, shared by sessions, amendments and violations: its worst
//! excursion and the others, as JSON and in words.

use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::{mm, shown, time};

/// The evidence: its worst excursion's fields and the other excursions.
pub(super) fn evidence_json(e: Option<&pb::Evidence>) -> Value {
    e.map_or(Value::Null, |e| {
        let mut v = excursion_json(&worst(e));
        v["other_excursions"] = e.other_excursions.iter().map(excursion_json).collect();
        v["unlisted_excursions"] = e.unlisted_excursions.into();
        v
    })
}

fn excursion_json(x: &pb::Excursion) -> Value {
    json!({
        "limit_mm": x.limit_mm, "binding_rule": x.binding_rule,
        "peak_depth_mm": x.peak_depth_mm, "excess_mm": x.excess_mm,
        "first_above_ms": x.first_above_ms, "last_above_ms": x.last_above_ms,
        "strokes_above": x.strokes_above, "samples_above": x.samples_above,
        "policy_version": x.policy_version,
    })
}

/// The evidence's worst excursion.
pub(super) fn worst(e: &pb::Evidence) -> pb::Excursion {
    pb::Excursion {
        limit_mm: e.limit_mm,
        binding_rule: e.binding_rule.clone(),
        peak_depth_mm: e.peak_depth_mm,
        excess_mm: e.excess_mm,
        first_above_ms: e.first_above_ms,
        last_above_ms: e.last_above_ms,
        strokes_above: e.strokes_above,
        samples_above: e.samples_above,
        policy_version: e.policy_version.clone(),
    }
}

/// One excursion in words: peak against its own limit and rule, excess, what happened above.
pub(super) fn excursion_line(x: &pb::Excursion) -> String {
    format!(
        "peak {} mm over a {} mm limit ({}), {} mm over; {} strokes in {} samples above it, \
         {} to {}, policy {}",
        mm(x.peak_depth_mm),
        mm(x.limit_mm),
        shown(&x.binding_rule),
        mm(x.excess_mm),
        x.strokes_above,
        x.samples_above,
        time(x.first_above_ms),
        time(x.last_above_ms),
        shown(&x.policy_version),
    )
}
