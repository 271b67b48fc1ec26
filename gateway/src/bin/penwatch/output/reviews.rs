//! Review signatures and the policy history, as tables and JSON.
//!
//! A signature is shown with what 21 CFR 11.50 asks of every human-readable form of a signed
//! record: the signer's printed name, the date and time (RFC 3339, UTC) and the meaning; with
//! it the clinic, the period and the audit-chain head it is bound to.

use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::{Out, shown, table, time};

fn signature_json(r: &pb::ReviewSignature) -> Value {
    json!({"id": r.id, "signer": r.signer, "meaning": r.meaning, "signed_ms": r.signed_ms,
        "signed": time(r.signed_ms), "clinic_id": r.clinic_id, "from_ms": r.from_ms,
        "until_ms": r.until_ms, "token_name": r.token_name, "role": r.role,
        "head_seq": r.head_seq, "head_hash": r.head_hash})
}

/// A period as `FROM – UNTIL`.
fn period(from_ms: i64, until_ms: i64) -> String {
    format!("{} – {}", time(from_ms), time(until_ms))
}

fn policy_json(p: &pb::PolicyVersion, text: bool) -> Value {
    let mut v = json!({"version": p.version, "in_force_from_ms": p.in_force_from_ms,
        "in_force_until_ms": p.in_force_until_ms, "in_force_now": p.in_force_until_ms == 0});
    if text {
        v["text"] = p.text.clone().into();
    }
    v
}

impl Out {
    /// `review sign`.
    pub fn signed(&self, r: &pb::ReviewSignature) {
        if self.json {
            self.print(&signature_json(r));
            return;
        }
        println!(
            "signed review {}: {} ({}) at {}, {} of clinic {} for {}",
            r.id,
            shown(&r.signer),
            r.meaning,
            time(r.signed_ms),
            shown(&r.token_name),
            shown(&r.clinic_id),
            period(r.from_ms, r.until_ms)
        );
        println!(
            "bound to audit chain entry {} (hash {})",
            r.head_seq, r.head_hash
        );
    }

    /// `review list`.
    pub fn reviews(&self, reviews: &[pb::ReviewSignature]) {
        if self.json {
            self.print(&Value::Array(reviews.iter().map(signature_json).collect()));
            return;
        }
        let rows: Vec<Vec<String>> = reviews
            .iter()
            .map(|r| {
                vec![
                    r.id.to_string(),
                    r.signer.clone(),
                    time(r.signed_ms),
                    r.meaning.clone(),
                    r.clinic_id.clone(),
                    period(r.from_ms, r.until_ms),
                    format!("{} {}", r.head_seq, r.head_hash),
                    format!("{} ({})", r.token_name, r.role),
                ]
            })
            .collect();
        table(
            &[
                "id",
                "printed name",
                "signed (UTC)",
                "meaning",
                "clinic",
                "period",
                "chain head",
                "token",
            ],
            &rows,
        );
    }

    /// `policy --history`, with each version's full text after the table when `text`.
    pub fn policy_history(&self, versions: &[pb::PolicyVersion], text: bool) {
        if self.json {
            self.print(&Value::Array(
                versions.iter().map(|p| policy_json(p, text)).collect(),
            ));
            return;
        }
        let until = |p: &pb::PolicyVersion| {
            if p.in_force_until_ms == 0 {
                "in force now".to_owned()
            } else {
                time(p.in_force_until_ms)
            }
        };
        let rows: Vec<Vec<String>> = versions
            .iter()
            .map(|p| vec![p.version.clone(), time(p.in_force_from_ms), until(p)])
            .collect();
        table(&["version", "in force from", "until"], &rows);
        if !text {
            return;
        }
        for p in versions {
            println!(
                "\n--- policy version {} ({} – {}) ---",
                p.version,
                time(p.in_force_from_ms),
                until(p)
            );
            if p.text.is_empty() {
                println!("(the built-in defaults, or no text for this token's role)");
            } else {
                println!("{}", shown_text(&p.text));
            }
        }
    }
}

/// A policy text as printed: line breaks kept, other control characters escaped.
fn shown_text(text: &str) -> String {
    text.trim_end()
        .lines()
        .map(shown)
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_text_keeps_its_lines_and_loses_its_escape_sequences() {
        assert_eq!(shown_text("a = 1\n# \u{1b}[2J\n\n"), "a = 1\n# \\u{1b}[2J");
    }
}
