//! Violations, listed and streamed (`violations --follow`), as tables and JSON.

use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::evidence::evidence_json;
use super::{Out, mm, operator, shown, table, time, unknown_legend};

const VIOLATION_HEADERS: &[&str] = &[
    "first above",
    "clinic",
    "device",
    "session",
    "operator",
    "class",
    "peak mm",
    "limit mm",
    "rule",
    "excess mm",
    "strokes above",
    "other excursions",
    "session",
];

fn violation_json(v: &pb::Violation) -> Value {
    json!({
        "session_id": v.session_id, "device_id": v.device_id, "clinic_id": v.clinic_id,
        "operator_id": v.operator_id, "device_class": v.device_class,
        "evidence": evidence_json(v.evidence.as_ref()), "final": v.r#final,
        "committed_ms": v.committed_ms, "unknown_operator": v.unknown_operator,
        "conflicting_messages": v.conflicting_messages, "amendment": v.amendment,
        "session_amendments": v.session_amendments,
        "session_started_ms": v.session_started_ms,
    })
}

fn violation_row(v: &pb::Violation) -> Vec<String> {
    let e = v.evidence.clone().unwrap_or_default();
    vec![
        time(e.first_above_ms),
        v.clinic_id.clone(),
        v.device_id.clone(),
        v.session_id.clone(),
        operator(&v.operator_id, v.unknown_operator),
        v.device_class.clone(),
        mm(e.peak_depth_mm),
        mm(e.limit_mm),
        e.binding_rule,
        mm(e.excess_mm),
        e.strokes_above.to_string(),
        (e.other_excursions.len() as u64 + e.unlisted_excursions).to_string(),
        {
            let mut state = if v.r#final { "closed" } else { "open" }.to_owned();
            if v.conflicting_messages > 0 {
                state.push_str(", conflicting");
            }
            if v.amendment > 0 {
                state.push_str(&format!(", by amendment {}", v.amendment));
            } else if v.session_amendments > 0 {
                state.push_str(", amended");
            }
            state
        },
    ]
}

impl Out {
    /// `violations`.
    pub fn violations(&self, violations: &[pb::Violation]) {
        if self.json {
            self.print(&Value::Array(
                violations.iter().map(violation_json).collect(),
            ));
            return;
        }
        let rows: Vec<Vec<String>> = violations.iter().map(violation_row).collect();
        table(VIOLATION_HEADERS, &rows);
        unknown_legend(violations.iter().any(|v| v.unknown_operator));
    }

    /// The header line of `violations --follow`.
    pub fn follow_header(&self) {
        eprintln!("watching violations (Ctrl-C to stop)");
    }

    /// One streamed violation, marked as new, an update or final.
    pub fn violation_line(&self, kind: crate::feed::Kind, v: &pb::Violation) {
        if self.json {
            let mut value = violation_json(v);
            value["feed"] = kind.mark().to_lowercase().into();
            self.print(&value);
        } else {
            let cells: Vec<String> = violation_row(v).iter().map(|c| shown(c)).collect();
            println!("{:<6}  {}", kind.mark(), cells.join("  "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violation_rows_mark_unknown_operators() {
        let v = pb::Violation {
            operator_id: "op-new".into(),
            unknown_operator: true,
            ..Default::default()
        };
        let known = pb::Violation {
            operator_id: "op-ann".into(),
            ..Default::default()
        };
        let column = VIOLATION_HEADERS
            .iter()
            .position(|h| *h == "operator")
            .expect("operator column");
        assert_eq!(violation_row(&v)[column], "op-new?");
        assert_eq!(violation_row(&known)[column], "op-ann");
        assert_eq!(violation_json(&v)["unknown_operator"], true);
    }
}
