//! What each exported record says — a session, violation, amendment, sample, policy version or
//! review signature as named fields — the CSV's columns, and how a CSV cell reads.

use penwatch_proto::text;
use serde_json::Value;

use crate::api::auth::Caller;
use crate::journal::queries::{SampleRow, StoredAmendment, StoredSession, StoredViolation};
use crate::journal::{PolicyVersionRow, ReviewRow};
use crate::sessions::Excursion;

/// Every CSV column, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "record",
    "session_id",
    "device_id",
    "clinic_id",
    "operator_id",
    "device_class",
    "cartridge_id",
    "cartridge_model",
    "started_ms",
    "started",
    "last_ms",
    "last",
    "state",
    "close_reason",
    "samples",
    "strokes",
    "max_depth_mm",
    "permitted_mm",
    "binding_rule",
    "exceeded",
    "unknown_operator",
    "samples_digest",
    "limit_mm",
    "peak_depth_mm",
    "excess_mm",
    "first_above_ms",
    "first_above",
    "last_above_ms",
    "last_above",
    "strokes_above",
    "samples_above",
    "other_excursions",
    "unlisted_excursions",
    "final",
    "seq",
    "timestamp_ms",
    "timestamp",
    "received_ms",
    "received",
    "event",
    "depth_mm",
    "session_strokes",
    "cartridge_strokes",
    "zone",
    "policy_version",
    "amendments",
    "amendment",
    "amendment_reason",
    "amends_audit_seq",
    "audit_seq",
    "committed_ms",
    "committed",
    "ended",
    "new_violation",
    "in_force_from_ms",
    "in_force_from",
    "in_force_until_ms",
    "in_force_until",
    "policy_text",
    "signer",
    "signed_by_token",
    "signer_role",
    "meaning",
    "signed_ms",
    "signed",
    "period_from_ms",
    "period_from",
    "period_until_ms",
    "period_until",
    "head_seq",
    "head_hash",
];

/// The CSV columns that carry a Unix ms time of another column as RFC 3339 (UTC,
/// milliseconds): `started` beside `started_ms`, and so on.
pub(super) fn rfc3339_of(column: &str) -> Option<&'static str> {
    Some(match column {
        "started" => "started_ms",
        "last" => "last_ms",
        "first_above" => "first_above_ms",
        "last_above" => "last_above_ms",
        "timestamp" => "timestamp_ms",
        "received" => "received_ms",
        "committed" => "committed_ms",
        "in_force_from" => "in_force_from_ms",
        "in_force_until" => "in_force_until_ms",
        "signed" => "signed_ms",
        "period_from" => "period_from_ms",
        "period_until" => "period_until_ms",
        _ => return None,
    })
}

/// A Unix ms time as RFC 3339, UTC with milliseconds; empty for a time before 1970.
pub(super) fn rfc3339(ms: &Value) -> String {
    match ms.as_u64() {
        Some(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        None => String::new(),
    }
}

/// One exported record: its fields by column name.
pub(super) type Record = Vec<(&'static str, Value)>;

pub(super) fn session_record(s: &StoredSession, caller: &Caller) -> Record {
    let x = &s.session;
    vec![
        ("record", "session".into()),
        ("session_id", x.session_id.clone().into()),
        ("device_id", x.device_id.clone().into()),
        ("clinic_id", x.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&x.clinic_id, &x.operator_id).into(),
        ),
        ("device_class", x.device_class.clone().into()),
        ("cartridge_id", x.cartridge_id.clone().into()),
        ("cartridge_model", x.cartridge_model.clone().into()),
        ("started_ms", x.started_ms.into()),
        ("last_ms", x.last_ms.into()),
        ("state", if s.open { "open" } else { "closed" }.into()),
        (
            "close_reason",
            s.close_reason.clone().unwrap_or_default().into(),
        ),
        ("samples", x.samples.into()),
        ("strokes", x.strokes.into()),
        ("max_depth_mm", x.max_depth_mm.into()),
        ("permitted_mm", x.permitted_mm.unwrap_or_default().into()),
        ("binding_rule", x.binding.clone().unwrap_or_default().into()),
        ("exceeded", x.exceeded().into()),
        ("unknown_operator", x.unknown_operator.into()),
        (
            "samples_digest",
            s.samples_digest.clone().unwrap_or_default().into(),
        ),
        ("amendments", s.amendments.into()),
    ]
}

pub(super) fn amendment_record(s: &StoredSession, a: &StoredAmendment, caller: &Caller) -> Record {
    let (x, record) = (&a.amendment, &s.session);
    let mut out = vec![
        ("record", "amendment".into()),
        ("session_id", x.session_id.clone().into()),
        ("device_id", x.device_id.clone().into()),
        ("clinic_id", x.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&x.clinic_id, &x.operator_id).into(),
        ),
        ("device_class", x.device_class.clone().into()),
        ("cartridge_id", record.cartridge_id.clone().into()),
        ("started_ms", x.started_ms.into()),
        ("last_ms", x.last_ms.into()),
        ("samples", x.messages.into()),
        ("strokes", x.strokes.into()),
        ("max_depth_mm", x.max_depth_mm.into()),
        ("exceeded", x.exceeded.into()),
        ("samples_digest", x.samples_digest.clone().into()),
        ("amendment", x.number.into()),
        ("amendment_reason", x.reason.clone().into()),
        ("amends_audit_seq", x.amends.into()),
        ("audit_seq", a.audit_seq.into()),
        ("committed_ms", x.committed_ms.into()),
        ("ended", x.ended.into()),
        ("new_violation", x.new_violation.into()),
    ];
    if let Some(e) = x.violation.as_ref().filter(|_| x.violation_changed) {
        let w = &e.worst;
        out.extend([
            ("limit_mm", w.limit_mm.into()),
            ("binding_rule", w.binding.clone().into()),
            ("peak_depth_mm", w.peak_depth_mm.into()),
            ("excess_mm", w.excess_mm.into()),
            ("first_above_ms", w.first_above_ms.into()),
            ("last_above_ms", w.last_above_ms.into()),
            ("strokes_above", w.strokes_above.into()),
            ("samples_above", w.samples_above.into()),
            (
                "other_excursions",
                Value::Array(e.others.iter().map(excursion).collect()),
            ),
            ("unlisted_excursions", e.unlisted.into()),
            ("policy_version", w.policy_version.clone().into()),
        ]);
    }
    out
}

pub(super) fn violation_record(v: &StoredViolation, caller: &Caller) -> Record {
    let e = &v.evidence.worst;
    vec![
        ("record", "violation".into()),
        ("session_id", v.session_id.clone().into()),
        ("device_id", v.device_id.clone().into()),
        ("clinic_id", v.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&v.clinic_id, &v.operator_id).into(),
        ),
        ("device_class", v.device_class.clone().into()),
        ("limit_mm", e.limit_mm.into()),
        ("binding_rule", e.binding.clone().into()),
        ("peak_depth_mm", e.peak_depth_mm.into()),
        ("excess_mm", e.excess_mm.into()),
        ("first_above_ms", e.first_above_ms.into()),
        ("last_above_ms", e.last_above_ms.into()),
        ("strokes_above", e.strokes_above.into()),
        ("samples_above", e.samples_above.into()),
        (
            "other_excursions",
            Value::Array(v.evidence.others.iter().map(excursion).collect()),
        ),
        ("unlisted_excursions", v.evidence.unlisted.into()),
        ("final", v.final_.into()),
        ("policy_version", e.policy_version.clone().into()),
        ("amendment", v.amendment.into()),
    ]
}

/// One excursion as an exported object (in a CSV cell, its JSON text).
pub(super) fn excursion(x: &Excursion) -> Value {
    serde_json::json!({
        "limit_mm": x.limit_mm,
        "binding_rule": x.binding,
        "peak_depth_mm": x.peak_depth_mm,
        "excess_mm": x.excess_mm,
        "first_above_ms": x.first_above_ms,
        "last_above_ms": x.last_above_ms,
        "strokes_above": x.strokes_above,
        "samples_above": x.samples_above,
        "policy_version": x.policy_version,
    })
}

pub(super) fn sample_record(s: &SampleRow, caller: &Caller) -> Record {
    use penwatch_proto::names::ShortName;
    let (r, v) = (&s.reading, &s.verdict);
    vec![
        ("record", "sample".into()),
        ("session_id", r.session_id.clone().into()),
        ("device_id", r.device_id.clone().into()),
        ("clinic_id", r.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&r.clinic_id, &r.operator_id).into(),
        ),
        ("device_class", v.device_class.clone().into()),
        ("cartridge_id", r.cartridge_id.clone().into()),
        ("cartridge_model", r.cartridge_model.clone().into()),
        ("permitted_mm", v.permitted_mm.into()),
        ("binding_rule", v.binding.clone().into()),
        ("exceeded", v.exceeded.into()),
        ("unknown_operator", v.unknown_operator.into()),
        ("seq", r.seq.into()),
        ("timestamp_ms", r.timestamp_ms.into()),
        ("received_ms", s.received_ms.into()),
        ("event", r.event.short_name().into()),
        ("depth_mm", r.depth_mm.into()),
        ("session_strokes", r.session_strokes.into()),
        ("cartridge_strokes", r.cartridge_strokes.into()),
        (
            "zone",
            r.zone.map(|z| z.short_name()).unwrap_or_default().into(),
        ),
        ("policy_version", v.policy_version.clone().into()),
    ]
}

/// A policy version in force during the export's period (kind `policy_version`); its
/// text only for roles that may read the policy (reviewer, admin).
pub(super) fn policy_record(p: &PolicyVersionRow, caller: &Caller) -> Record {
    let text = if caller.role.reads_policy_text() {
        p.text.clone()
    } else {
        String::new()
    };
    vec![
        ("record", "policy_version".into()),
        ("policy_version", p.version.clone().into()),
        ("in_force_from_ms", p.from_ms.into()),
        ("in_force_until_ms", p.until_ms.into()),
        ("policy_text", text.into()),
    ]
}

/// A review signature covering the export's clinics and period (kind `review`).
pub(super) fn review_record(r: &ReviewRow) -> Record {
    vec![
        ("record", "review".into()),
        ("clinic_id", r.clinic_id.clone().into()),
        ("signer", r.signer.clone().into()),
        ("signed_by_token", r.token.clone().into()),
        ("signer_role", r.role.clone().into()),
        ("meaning", r.meaning.clone().into()),
        ("signed_ms", r.signed_ms.into()),
        ("period_from_ms", r.from_ms.into()),
        ("period_until_ms", r.until_ms.into()),
        ("head_seq", r.head_seq.into()),
        ("head_hash", r.head_hash.clone().into()),
    ]
}

/// A CSV cell: strings as they are, except that one a spreadsheet would run as a formula
/// gets a leading `'` (the OWASP rule); numbers and booleans (written by the gateway, never
/// negative where they come from a device) as JSON writes them; null as empty.
pub(super) fn csv_cell(v: &Value) -> String {
    match v {
        Value::String(s) if text::starts_like_formula(s) => format!("'{s}"),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}
