//! The alerts the committer raises from the facts of a batch: pure functions of a session, a
//! pen or a cartridge and the gateway time. The key of each decides what is one alert.

use serde_json::json;

use super::types::{Alert, Kind, Severity};
use crate::audit::Amendment;
use crate::cartridges::Cartridge;
use crate::fleet::Device;
use crate::sessions::Session;

/// The key of a kind's alert about a session.
pub fn session_key(kind: Kind, device_id: &str, session_id: &str) -> String {
    format!("{}/{device_id}/{session_id}", kind.as_str())
}

/// The key of a kind's alert about a pen.
pub fn device_key(kind: Kind, device_id: &str) -> String {
    format!("{}/{device_id}", kind.as_str())
}

fn session_alert(kind: Kind, severity: Severity, s: &Session, summary: String) -> Alert {
    Alert {
        key: session_key(kind, &s.device_id, &s.session_id),
        kind,
        severity,
        clinic_id: s.clinic_id.clone(),
        device_id: s.device_id.clone(),
        session_id: s.session_id.clone(),
        summary,
        starts_ms: 0,
        ends_ms: None,
        details: serde_json::Value::Null,
    }
}

/// A session's violation, firing while the session is open; `closed_ms` makes it the final
/// record, resolved. `None` when the session did not exceed.
pub fn violation(s: &Session, now_ms: i64, closed_ms: Option<i64>) -> Option<Alert> {
    let evidence = s.violation.as_ref()?;
    let e = &evidence.worst;
    let summary = format!(
        "pen {} at clinic {}: {:.2} mm set, {:.2} mm permitted ({}), {:.2} mm over, {} strokes above",
        s.device_id,
        s.clinic_id,
        e.peak_depth_mm,
        e.limit_mm,
        e.binding,
        e.excess_mm,
        e.strokes_above
    );
    Some(Alert {
        starts_ms: now_ms,
        ends_ms: closed_ms,
        details: json!({
            "final": closed_ms.is_some(),
            "operator_id": s.operator_id,
            "device_class": s.device_class,
            "peak_depth_mm": e.peak_depth_mm,
            "limit_mm": e.limit_mm,
            "binding": e.binding,
            "first_above_ms": e.first_above_ms,
            "last_above_ms": e.last_above_ms,
            "excess_mm": e.excess_mm,
            "strokes_above": e.strokes_above,
            "samples_above": e.samples_above,
            "policy_version": e.policy_version,
            "other_excursions": evidence.others.len(),
        }),
        ..session_alert(Kind::Violation, Severity::Critical, s, summary)
    })
}

/// A violation raised or grown by an amendment of a closed session (late messages): the
/// session's violation alert (same key), marked with the amendment; `None` without evidence.
pub fn amended_violation(s: &Session, a: &Amendment, now_ms: i64) -> Option<Alert> {
    let mut alert = violation(s, now_ms, Some(now_ms))?;
    alert.summary = format!(
        "amendment {} ({}): {}",
        a.number,
        a.reason.replace('_', " "),
        alert.summary
    );
    if let Some(details) = alert.details.as_object_mut() {
        details.insert("amendment".to_owned(), json!(a.number));
        details.insert("amendment_reason".to_owned(), json!(a.reason));
        details.insert("new_violation".to_owned(), json!(a.new_violation));
    }
    Some(alert)
}

/// A session by an operator the policy does not know; `None` for a known one.
pub fn unknown_operator(s: &Session, now_ms: i64) -> Option<Alert> {
    if !s.unknown_operator {
        return None;
    }
    let summary = format!(
        "pen {} at clinic {}: operator {} is not in the policy (judged at the most restrictive limit)",
        s.device_id, s.clinic_id, s.operator_id
    );
    Some(Alert {
        starts_ms: now_ms,
        details: json!({ "operator_id": s.operator_id }),
        ..session_alert(Kind::UnknownOperator, Severity::Warning, s, summary)
    })
}

/// No message from the pen of an open session since `last_ms` (gateway time).
pub fn pen_silent(s: &Session, last_ms: i64, now_ms: i64) -> Alert {
    let summary = format!(
        "pen {} at clinic {}: silent for {} s during session {}",
        s.device_id,
        s.clinic_id,
        (now_ms - last_ms) / 1000,
        s.session_id
    );
    Alert {
        starts_ms: now_ms,
        details: json!({ "last_message_ms": last_ms }),
        ..session_alert(Kind::PenSilent, Severity::Warning, s, summary)
    }
}

/// A pen that went offline with `session_id` open.
pub fn pen_offline(d: &Device, session_id: &str, now_ms: i64) -> Alert {
    Alert {
        key: device_key(Kind::PenOffline, &d.device_id),
        kind: Kind::PenOffline,
        severity: Severity::Critical,
        clinic_id: d.clinic_id.clone(),
        device_id: d.device_id.clone(),
        session_id: session_id.to_owned(),
        summary: format!(
            "pen {} at clinic {}: offline with session {session_id} open",
            d.device_id, d.clinic_id
        ),
        starts_ms: now_ms,
        ends_ms: None,
        details: json!({ "operator_id": d.operator_id }),
    }
}

/// A pen's conflicting messages (`reset`: its `seq` went back) so far; one alert per pen and
/// kind, updated with the count.
pub fn seq_anomaly(d: &Device, reset: bool, now_ms: i64) -> Alert {
    let (kind, count, what) = if reset {
        (Kind::SeqReset, d.seq_resets, "seq resets")
    } else {
        (
            Kind::SeqConflict,
            d.conflicts,
            "messages reusing a seq with other content",
        )
    };
    Alert {
        key: device_key(kind, &d.device_id),
        kind,
        severity: Severity::Warning,
        clinic_id: d.clinic_id.clone(),
        device_id: d.device_id.clone(),
        session_id: String::new(),
        summary: format!(
            "pen {} at clinic {}: {count} {what}",
            d.device_id, d.clinic_id
        ),
        starts_ms: now_ms,
        ends_ms: None,
        details: json!({ "count": count, "last_seq": d.last_seq }),
    }
}

/// A cartridge worn out (`reused == false`) or used in a second session, seen on `device`.
pub fn cartridge(c: &Cartridge, device: &Device, reused: bool, now_ms: i64) -> Alert {
    let (kind, severity, summary) = if reused {
        (
            Kind::CartridgeReused,
            Severity::Critical,
            format!(
                "cartridge {} used in {} sessions (single use), last on pen {} at clinic {}",
                c.id,
                c.sessions.len(),
                device.device_id,
                device.clinic_id
            ),
        )
    } else {
        (
            Kind::CartridgeWorn,
            Severity::Warning,
            format!(
                "cartridge {} on pen {} at clinic {}: {} strokes of {} rated",
                c.id,
                device.device_id,
                device.clinic_id,
                c.strokes,
                c.rated_strokes.unwrap_or_default()
            ),
        )
    };
    Alert {
        key: format!("{}/{}", kind.as_str(), c.id),
        kind,
        severity,
        clinic_id: device.clinic_id.clone(),
        device_id: device.device_id.clone(),
        session_id: device.session_id.clone(),
        summary,
        starts_ms: now_ms,
        ends_ms: None,
        details: json!({
            "cartridge_id": c.id,
            "model": c.model,
            "strokes": c.strokes,
            "rated_strokes": c.rated_strokes,
            "sessions": c.sessions,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{Evidence, Excursion};

    fn session(violation: bool) -> Session {
        let mut s: Session = serde_json::from_value(json!({
            "session_id": "s1", "device_id": "pen", "clinic_id": "c01", "operator_id": "op",
            "device_class": "home", "cartridge_id": "cart", "cartridge_model": "N12",
            "started_ms": 1, "last_ms": 2, "samples": 3, "strokes": 30, "max_depth_mm": 0.8,
            "permitted_mm": 0.5, "binding": "class", "zones": [], "unknown_operator": true,
            "unregistered_device": false, "class_mismatch": false, "ended": false,
            "violation": null, "last_seq": 3, "last_strokes": 30
        }))
        .expect("session");
        if violation {
            s.violation = Some(Evidence {
                worst: Excursion {
                    limit_mm: 0.5,
                    binding: "class".into(),
                    peak_depth_mm: 0.8,
                    excess_mm: 0.3,
                    first_above_ms: 1,
                    last_above_ms: 2,
                    strokes_above: 20,
                    samples_above: 2,
                    policy_version: "p".into(),
                },
                others: Vec::new(),
                unlisted: 0,
            });
        }
        s
    }

    #[test]
    fn a_session_without_evidence_raises_no_violation() {
        assert_eq!(violation(&session(false), 5, None), None);
    }

    #[test]
    fn a_violation_is_one_alert_per_session_and_its_final_record_resolves_it() {
        let s = session(true);
        let live = violation(&s, 5, None).expect("raised");
        let last = violation(&s, 9, Some(9)).expect("final");
        assert_eq!(live.key, "violation/pen/s1");
        assert_eq!(live.key, last.key);
        assert_eq!((live.ends_ms, last.ends_ms), (None, Some(9)));
        assert_eq!(last.details["final"], true);
        assert_eq!(last.details["strokes_above"], 20);
        assert_eq!(live.severity, Severity::Critical);
    }

    #[test]
    fn a_violation_raised_by_an_amendment_is_the_sessions_alert_marked_with_it() {
        let a: Amendment = serde_json::from_value(json!({
            "session_id": "s1", "device_id": "pen", "clinic_id": "c01", "operator_id": "op",
            "device_class": "home", "number": 2, "amends": 7, "reason": "late_after_end",
            "committed_ms": 9, "messages": 1, "first_seq": 5, "last_seq": 5,
            "after_sample_id": 4, "last_sample_id": 5, "samples_digest": "d", "started_ms": 1,
            "last_ms": 5, "strokes": 30, "max_depth_mm": 0.8, "exceeded": true, "ended": true,
            "new_violation": true, "violation_changed": true
        }))
        .expect("amendment");
        let alert = amended_violation(&session(true), &a, 9).expect("raised");
        assert_eq!(alert.key, "violation/pen/s1", "the session's own alert");
        assert_eq!(alert.ends_ms, Some(9));
        assert!(
            alert
                .summary
                .starts_with("amendment 2 (late after end): pen pen"),
            "{}",
            alert.summary
        );
        assert_eq!(
            (
                &alert.details["amendment"],
                &alert.details["amendment_reason"],
                &alert.details["new_violation"]
            ),
            (&json!(2), &json!("late_after_end"), &json!(true))
        );
        assert_eq!(amended_violation(&session(false), &a, 9), None);
    }

    #[test]
    fn an_unknown_operator_is_named_in_its_alert() {
        let a = unknown_operator(&session(false), 5).expect("raised");
        assert_eq!(a.key, "unknown_operator/pen/s1");
        assert!(a.summary.contains("operator op"), "{}", a.summary);
    }
}
