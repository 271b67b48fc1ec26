//! Sessions, one session with its evidence, amendments and depth timeline, as tables and JSON.

use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::evidence::{evidence_json, excursion_line, worst};
use super::{Out, dash, mm, operator, shown, table, time, unknown_legend, yes};

fn session_json(s: &pb::Session) -> Value {
    json!({
        "session_id": s.session_id, "device_id": s.device_id, "clinic_id": s.clinic_id,
        "operator_id": s.operator_id, "device_class": s.device_class,
        "cartridge_id": s.cartridge_id, "cartridge_model": s.cartridge_model,
        "started_ms": s.started_ms, "last_ms": s.last_ms, "samples": s.samples,
        "strokes": s.strokes, "max_depth_mm": s.max_depth_mm, "permitted_mm": s.permitted_mm,
        "binding_rule": s.binding_rule, "zones": s.zones, "exceeded": s.exceeded,
        "unknown_operator": s.unknown_operator, "unregistered_device": s.unregistered_device,
        "state": s.state, "close_reason": s.close_reason,
        "evidence": evidence_json(s.evidence.as_ref()), "samples_digest": s.samples_digest,
        "conflicting_messages": s.conflicting_messages, "amendments": s.amendments,
        "exceeded_by_amendment": s.exceeded_by_amendment,
    })
}

fn amendment_json(a: &pb::Amendment) -> Value {
    json!({
        "number": a.number, "reason": a.reason, "amends_audit_seq": a.amends_audit_seq,
        "audit_seq": a.audit_seq, "committed_ms": a.committed_ms, "messages": a.messages,
        "first_seq": a.first_seq, "last_seq": a.last_seq, "samples_digest": a.samples_digest,
        "last_ms": a.last_ms, "strokes": a.strokes, "max_depth_mm": a.max_depth_mm,
        "exceeded": a.exceeded, "ended": a.ended, "evidence": evidence_json(a.evidence.as_ref()),
        "new_violation": a.new_violation, "violation_changed": a.violation_changed,
    })
}

/// One amendment, as a line a reviewer reads under the record it amends.
fn amendment_line(a: &pb::Amendment) -> String {
    let mut line = format!(
        "AMENDMENT {} ({}, chain entry {} amends entry {}), committed {}: {} late message{} \
         (seq {}–{}), session now max {} mm, {} strokes{}",
        a.number,
        a.reason.replace('_', " "),
        a.audit_seq,
        a.amends_audit_seq,
        time(a.committed_ms),
        a.messages,
        if a.messages == 1 { "" } else { "s" },
        a.first_seq,
        a.last_seq,
        mm(a.max_depth_mm),
        a.strokes,
        if a.ended { ", ended" } else { "" }
    );
    if let Some(e) = a.evidence.as_ref().filter(|_| a.violation_changed) {
        let what = if a.new_violation {
            "NEW VIOLATION"
        } else {
            "violation grew"
        };
        line.push_str(&format!("; {what}: {}", excursion_line(&worst(e))));
    }
    line
}

impl Out {
    /// `sessions`.
    pub fn sessions(&self, sessions: &[pb::Session]) {
        if self.json {
            self.print(&Value::Array(sessions.iter().map(session_json).collect()));
            return;
        }
        let rows: Vec<Vec<String>> = sessions
            .iter()
            .map(|s| {
                vec![
                    time(s.started_ms),
                    s.clinic_id.clone(),
                    s.device_id.clone(),
                    s.session_id.clone(),
                    operator(&s.operator_id, s.unknown_operator),
                    s.device_class.clone(),
                    s.strokes.to_string(),
                    mm(s.max_depth_mm),
                    mm(s.permitted_mm),
                    if s.exceeded_by_amendment {
                        "by amendment".to_owned()
                    } else {
                        yes(s.exceeded)
                    },
                    if s.amendments > 0 {
                        format!("{}, amended ×{}", s.state, s.amendments)
                    } else {
                        s.state.clone()
                    },
                ]
            })
            .collect();
        table(
            &[
                "started",
                "clinic",
                "device",
                "session",
                "operator",
                "class",
                "strokes",
                "max mm",
                "permitted mm",
                "exceeded",
                "state",
            ],
            &rows,
        );
        unknown_legend(sessions.iter().any(|s| s.unknown_operator));
    }

    /// `session`.
    pub fn session(&self, d: &pb::SessionDetail) {
        let s = d.session.clone().unwrap_or_default();
        if self.json {
            let timeline: Vec<Value> = d
                .timeline
                .iter()
                .map(|p| {
                    json!({"timestamp_ms": p.timestamp_ms, "depth_mm": p.depth_mm,
                        "permitted_mm": p.permitted_mm, "session_strokes": p.session_strokes,
                        "zone": p.zone, "exceeded": p.exceeded})
                })
                .collect();
            let amendments: Vec<Value> = d.amendments.iter().map(amendment_json).collect();
            self.print(
                &json!({"session": session_json(&s), "timeline": timeline, "amendments": amendments}),
            );
            return;
        }
        self.sessions(std::slice::from_ref(&s));
        if s.conflicting_messages > 0 {
            println!(
                "\nCONFLICTING EVIDENCE: {} of its messages reused a seq the pen had already sent \
                 with other content; both versions are journaled",
                s.conflicting_messages
            );
        }
        if let Some(e) = &s.evidence {
            println!("\nEXCEEDED, worst excursion: {}", excursion_line(&worst(e)));
            for x in &e.other_excursions {
                println!("  other excursion: {}", excursion_line(x));
            }
            if e.unlisted_excursions > 0 {
                println!(
                    "  and {} less severe excursions, not listed",
                    e.unlisted_excursions
                );
            }
        }
        if !d.amendments.is_empty() {
            println!(
                "\nThe record above is the session as it closed; late messages amend it (the \
                 timeline shows the record's samples):"
            );
            for a in &d.amendments {
                println!("  {}", shown(&amendment_line(a)));
            }
        }
        println!();
        let rows: Vec<Vec<String>> = d
            .timeline
            .iter()
            .map(|p| {
                vec![
                    time(p.timestamp_ms),
                    mm(p.depth_mm),
                    mm(p.permitted_mm),
                    p.session_strokes.to_string(),
                    dash(&p.zone),
                    yes(p.exceeded),
                ]
            })
            .collect();
        table(
            &[
                "time",
                "depth mm",
                "permitted mm",
                "strokes",
                "zone",
                "exceeded",
            ],
            &rows,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amendment_line_says_what_it_amends_why_and_what_it_found() {
        let a = pb::Amendment {
            number: 2,
            reason: "replay_after_inactive".into(),
            amends_audit_seq: 5,
            audit_seq: 9,
            messages: 3,
            first_seq: 51,
            last_seq: 53,
            max_depth_mm: 1.2,
            strokes: 840,
            ended: true,
            new_violation: true,
            violation_changed: true,
            evidence: Some(pb::Evidence {
                peak_depth_mm: 1.2,
                limit_mm: 1.0,
                binding_rule: "class".into(),
                excess_mm: 0.2,
                ..pb::Evidence::default()
            }),
            ..pb::Amendment::default()
        };
        let line = amendment_line(&a);
        assert!(
            line.starts_with("AMENDMENT 2 (replay after inactive, chain entry 9 amends entry 5)"),
            "{line}"
        );
        assert!(line.contains("3 late messages (seq 51–53)"), "{line}");
        assert!(
            line.contains("NEW VIOLATION: peak 1.20 mm over a 1.00 mm limit (class)"),
            "{line}"
        );
        let quiet = amendment_line(&pb::Amendment {
            messages: 1,
            violation_changed: false,
            ..a
        });
        assert!(quiet.contains("1 late message (seq"), "{quiet}");
        assert!(!quiet.contains("VIOLATION"), "{quiet}");
    }
}
