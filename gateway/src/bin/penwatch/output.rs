//! Tables for people and JSON for scripts.

mod reviews;

use std::time::{Duration, UNIX_EPOCH};

use penwatch_proto::text;
use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

/// Where results go: stdout, as tables or JSON.
pub struct Out {
    json: bool,
}

/// A Unix ms time as RFC 3339 (UTC, seconds), "-" for 0.
fn time(ms: i64) -> String {
    if ms <= 0 {
        return "-".to_owned();
    }
    let t = UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

fn mm(v: f64) -> String {
    format!("{v:.2}")
}

fn yes(b: bool) -> String {
    if b { "yes" } else { "" }.to_owned()
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// An operator id, marked `?` (as on the dashboard) when the policy does not know them.
fn operator(id: &str, unknown: bool) -> String {
    if unknown {
        format!("{}?", dash(id))
    } else {
        dash(id)
    }
}

/// Explains the `?` mark under a table that shows it.
fn unknown_legend(any: bool) {
    if any {
        println!("? operator unknown to the policy: judged by the most restrictive limit");
    }
}

/// A cell as printed: control characters a device may have sent (old journals can hold
/// them) are escaped, so the terminal shows them instead of obeying them.
fn shown(cell: &str) -> String {
    text::escape_controls(cell).into_owned()
}

/// Left-aligned columns, two spaces apart, every cell [`shown`] safely.
fn table_text(headers: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|c| shown(c)).collect())
        .collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", text.join("  ").trim_end())
    };
    let mut out = line(&headers.iter().map(|h| h.to_uppercase()).collect::<Vec<_>>());
    for row in &rows {
        out.push_str(&line(row));
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

fn table(headers: &[&str], rows: &[Vec<String>]) {
    print!("{}", table_text(headers, rows));
}

/// JSON text with the control characters JSON leaves raw (DEL, C1, bidirectional
/// formatting) written as `\uXXXX` escapes: the same value, harmless on a terminal.
fn json_text(v: &Value) -> String {
    let raw = v.to_string();
    if text::is_printable(&raw) {
        return raw;
    }
    let mut out = String::with_capacity(raw.len() + 16);
    for c in raw.chars() {
        if text::is_control(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

/// The evidence: its worst excursion's fields and the other excursions.
fn evidence_json(e: Option<&pb::Evidence>) -> Value {
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
fn worst(e: &pb::Evidence) -> pb::Excursion {
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
fn excursion_line(x: &pb::Excursion) -> String {
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

/// A pen's conflicting messages and seq resets, `-` when none.
fn anomalies(d: &pb::DeviceState) -> String {
    let mut parts = Vec::new();
    if d.conflicts > 0 {
        parts.push(format!("{} conflicting", d.conflicts));
    }
    if d.seq_resets > 0 {
        parts.push(format!("{} reset", d.seq_resets));
    }
    if parts.is_empty() {
        "-".to_owned()
    } else {
        parts.join(", ")
    }
}

fn device_json(d: &pb::DeviceState) -> Value {
    json!({
        "device_id": d.device_id, "clinic_id": d.clinic_id, "device_class": d.device_class,
        "model": d.model, "firmware": d.firmware, "status": d.status, "status_ms": d.status_ms,
        "last_seen_ms": d.last_seen_ms, "battery_pct": d.battery_pct, "session_id": d.session_id,
        "operator_id": d.operator_id, "cartridge_id": d.cartridge_id, "depth_mm": d.depth_mm,
        "permitted_mm": d.permitted_mm, "session_strokes": d.session_strokes,
        "cartridge_wear_pct": d.cartridge_wear_pct, "registered": d.registered,
        "class_mismatch": d.class_mismatch, "clock_offset_ms": d.clock_offset_ms,
        "exceeded": d.exceeded, "conflicts": d.conflicts, "seq_resets": d.seq_resets,
        "last_anomaly_ms": d.last_anomaly_ms,
    })
}

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

fn violation_json(v: &pb::Violation) -> Value {
    json!({
        "session_id": v.session_id, "device_id": v.device_id, "clinic_id": v.clinic_id,
        "operator_id": v.operator_id, "device_class": v.device_class,
        "evidence": evidence_json(v.evidence.as_ref()), "final": v.r#final,
        "committed_ms": v.committed_ms, "unknown_operator": v.unknown_operator,
        "conflicting_messages": v.conflicting_messages, "amendment": v.amendment,
        "session_amendments": v.session_amendments,
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

impl Out {
    /// Tables, or JSON when `json`.
    pub fn new(json: bool) -> Self {
        Self { json }
    }

    fn print(&self, v: &Value) {
        println!("{}", json_text(v));
    }

    /// `whoami`.
    pub fn whoami(&self, w: &pb::WhoAmIResponse) {
        if self.json {
            self.print(&json!({"name": w.name, "role": w.role, "clinic_ids": w.clinic_ids}));
        } else {
            let clinics = if w.clinic_ids.is_empty() {
                "all clinics".to_owned()
            } else {
                w.clinic_ids.join(", ")
            };
            println!("{} ({}): {clinics}", w.name, w.role);
        }
    }

    /// `fleet`.
    pub fn devices(&self, devices: &[pb::DeviceState]) {
        if self.json {
            self.print(&Value::Array(devices.iter().map(device_json).collect()));
            return;
        }
        let rows: Vec<Vec<String>> = devices
            .iter()
            .map(|d| {
                vec![
                    d.clinic_id.clone(),
                    d.device_id.clone(),
                    d.device_class.clone(),
                    format!("{} {}", d.model, d.firmware).trim().to_owned(),
                    d.status.clone(),
                    time(d.last_seen_ms),
                    format!("{:.0}", d.battery_pct),
                    dash(&d.session_id),
                    dash(&d.operator_id),
                    mm(d.depth_mm),
                    mm(d.permitted_mm),
                    yes(d.exceeded),
                    anomalies(d),
                ]
            })
            .collect();
        table(
            &[
                "clinic",
                "device",
                "class",
                "model",
                "status",
                "last seen",
                "battery %",
                "session",
                "operator",
                "depth mm",
                "permitted mm",
                "exceeded",
                "seq anomalies",
            ],
            &rows,
        );
    }

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

    /// `cartridges`.
    pub fn cartridges(&self, r: &pb::ListCartridgesResponse) {
        if self.json {
            let cartridges: Vec<Value> = r
                .cartridges
                .iter()
                .map(|c| {
                    json!({"cartridge_id": c.cartridge_id, "model": c.model, "strokes": c.strokes,
                        "rated_strokes": c.rated_strokes, "wear_pct": c.wear_pct, "wear": c.wear,
                        "reused": c.reused, "sessions": c.sessions,
                        "last_device_id": c.last_device_id, "clinic_id": c.clinic_id,
                        "firmware": c.firmware})
                })
                .collect();
            let aggregates: Vec<Value> = r
                .by_model_firmware
                .iter()
                .map(|a| {
                    json!({"model": a.model, "firmware": a.firmware, "cartridges": a.cartridges,
                        "mean_wear_pct": a.mean_wear_pct, "warn": a.warn, "worn": a.worn,
                        "reused": a.reused})
                })
                .collect();
            let reuse: Vec<Value> = r
                .reuse_events
                .iter()
                .map(|e| {
                    json!({"cartridge_id": e.cartridge_id, "device_id": e.device_id,
                        "session_id": e.session_id, "timestamp_ms": e.timestamp_ms,
                        "detail": e.detail})
                })
                .collect();
            self.print(
                &json!({"cartridges": cartridges, "by_model_firmware": aggregates,
                "reuse_events": reuse}),
            );
            return;
        }
        let rows: Vec<Vec<String>> = r
            .cartridges
            .iter()
            .map(|c| {
                vec![
                    c.cartridge_id.clone(),
                    c.model.clone(),
                    c.strokes.to_string(),
                    c.rated_strokes.to_string(),
                    format!("{:.1}", c.wear_pct),
                    c.wear.clone(),
                    yes(c.reused),
                    dash(&c.clinic_id),
                    dash(&c.last_device_id),
                ]
            })
            .collect();
        table(
            &[
                "cartridge",
                "model",
                "strokes",
                "rated",
                "wear %",
                "wear",
                "reused",
                "clinic",
                "last device",
            ],
            &rows,
        );
        println!();
        let rows: Vec<Vec<String>> = r
            .by_model_firmware
            .iter()
            .map(|a| {
                vec![
                    a.model.clone(),
                    dash(&a.firmware),
                    a.cartridges.to_string(),
                    format!("{:.1}", a.mean_wear_pct),
                    a.warn.to_string(),
                    a.worn.to_string(),
                    a.reused.to_string(),
                ]
            })
            .collect();
        table(
            &[
                "model",
                "firmware",
                "cartridges",
                "mean wear %",
                "warn",
                "worn",
                "reused",
            ],
            &rows,
        );
        println!();
        let rows: Vec<Vec<String>> = r
            .reuse_events
            .iter()
            .map(|e| {
                vec![
                    time(e.timestamp_ms),
                    e.cartridge_id.clone(),
                    e.device_id.clone(),
                    e.session_id.clone(),
                    e.detail.clone(),
                ]
            })
            .collect();
        table(
            &["reused at", "cartridge", "device", "session", "detail"],
            &rows,
        );
    }

    /// `operators`.
    pub fn operators(&self, operators: &[pb::OperatorSummary]) {
        if self.json {
            let list: Vec<Value> = operators
                .iter()
                .map(|o| {
                    json!({"operator_id": o.operator_id, "clinic_id": o.clinic_id,
                        "qualification": o.qualification, "max_mm": o.max_mm, "known": o.known,
                        "sessions": o.sessions, "violations": o.violations,
                        "max_depth_mm": o.max_depth_mm})
                })
                .collect();
            self.print(&Value::Array(list));
            return;
        }
        let rows: Vec<Vec<String>> = operators
            .iter()
            .map(|o| {
                vec![
                    o.clinic_id.clone(),
                    dash(&o.operator_id),
                    if o.known {
                        o.qualification.clone()
                    } else {
                        "(unknown)".into()
                    },
                    mm(o.max_mm),
                    o.sessions.to_string(),
                    o.violations.to_string(),
                    mm(o.max_depth_mm),
                ]
            })
            .collect();
        table(
            &[
                "clinic",
                "operator",
                "qualification",
                "max mm",
                "sessions",
                "violations",
                "deepest mm",
            ],
            &rows,
        );
    }

    /// `access-log`.
    pub fn access_log(&self, r: &pb::ListAccessLogResponse) {
        if self.json {
            let list: Vec<Value> = r
                .entries
                .iter()
                .map(|e| {
                    json!({"id": e.id, "at_ms": e.at_ms, "token_name": e.token_name,
                        "role": e.role, "rpc": e.rpc, "filter": e.filter, "rows": e.rows,
                        "outcome": e.outcome})
                })
                .collect();
            self.print(&json!({"entries": list, "next_before_id": r.next_before_id}));
            return;
        }
        let rows: Vec<Vec<String>> = r
            .entries
            .iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    time(e.at_ms),
                    e.token_name.clone(),
                    e.role.clone(),
                    e.rpc.clone(),
                    e.rows.to_string(),
                    e.outcome.clone(),
                    e.filter.clone(),
                ]
            })
            .collect();
        table(
            &[
                "id", "at", "token", "role", "rpc", "rows", "outcome", "filter",
            ],
            &rows,
        );
        if r.next_before_id > 0 {
            println!("more: penwatch access-log --before {}", r.next_before_id);
        }
    }

    /// `quarantine`.
    pub fn quarantine(&self, r: &pb::ListQuarantineResponse) {
        if self.json {
            let list: Vec<Value> = r
                .messages
                .iter()
                .map(|q| {
                    json!({"id": q.id, "received_ms": q.received_ms, "topic": q.topic,
                        "kind": q.kind, "reason": q.reason, "size_bytes": q.size_bytes,
                        "sha256": q.sha256, "payload_head_hex": hex::encode(&q.payload)})
                })
                .collect();
            self.print(&json!({"total": r.total, "messages": list,
                "next_before_id": r.next_before_id}));
            return;
        }
        let rows: Vec<Vec<String>> = r
            .messages
            .iter()
            .map(|q| {
                vec![
                    q.id.to_string(),
                    time(q.received_ms),
                    q.topic.clone(),
                    q.kind.clone(),
                    q.size_bytes.to_string(),
                    q.sha256.chars().take(12).collect(),
                    q.reason.clone(),
                ]
            })
            .collect();
        table(
            &[
                "id", "received", "topic", "kind", "bytes", "sha256", "reason",
            ],
            &rows,
        );
        println!("{} quarantined in total", r.total);
        if r.next_before_id > 0 {
            println!("more: penwatch quarantine --before {}", r.next_before_id);
        }
    }

    /// `policy`.
    pub fn policy(&self, p: &pb::PolicyInfo) {
        if self.json {
            self.print(&json!({"version": p.version, "loaded_ms": p.loaded_ms, "text": p.text}));
            return;
        }
        println!(
            "policy version {} (in force since {})",
            p.version,
            time(p.loaded_ms)
        );
        if !p.text.is_empty() {
            println!("\n{}", p.text.trim_end());
        }
    }

    /// `policy --validate`.
    pub fn validation(&self, r: &pb::ValidatePolicyResponse) {
        if self.json {
            self.print(&json!({"valid": r.valid, "error": r.error, "version": r.version}));
        } else if r.valid {
            println!("valid: it would be policy version {}", r.version);
        } else {
            println!("invalid: {}", r.error);
        }
    }

    /// `verify`.
    pub fn verify(&self, r: &pb::VerifyResponse) {
        if self.json {
            self.print(&json!({"ok": r.ok, "entries": r.entries, "head": r.head,
                "first_broken": r.first_broken, "problem": r.problem,
                "digests_unchecked": r.digests_unchecked}));
            return;
        }
        println!("audit chain: {} entries, head {}", r.entries, r.head);
        if r.digests_unchecked > 0 {
            println!(
                "{} sessions' samples were pruned by retention; their digests were not recomputed",
                r.digests_unchecked
            );
        }
        if r.ok {
            println!("verified: no entry was altered");
        } else {
            println!("BROKEN at entry {}: {}", r.first_broken, shown(&r.problem));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_show_control_characters_instead_of_sending_them() {
        let rows = vec![vec![
            "pen-1".to_owned(),
            "\u{1b}[2J\u{1b}]0;owned\u{7}DermaPro".to_owned(),
            "2.1\u{9b}31m".to_owned(),
        ]];
        let out = table_text(&["device", "model", "firmware"], &rows);
        assert!(
            !out.chars().any(|c| c != '\n' && text::is_control(c)),
            "{out:?}"
        );
        assert!(
            out.contains("\\u{1b}[2J\\u{1b}]0;owned\\u{7}DermaPro"),
            "{out}"
        );
        assert!(out.contains("2.1\\u{9b}31m"), "{out}");
        let header = out.lines().next().expect("header");
        let row = out.lines().nth(1).expect("row");
        assert_eq!(header.find("MODEL"), row.find("\\u{1b}"), "columns line up");
    }

    #[test]
    fn json_output_escapes_what_serde_json_leaves_raw() {
        let v = json!({"model": "\u{1b}[2J", "firmware": "2.1\u{9b}\u{7f}\u{202e}"});
        let out = json_text(&v);
        assert!(!out.chars().any(text::is_control), "{out:?}");
        let back: Value = serde_json::from_str(&out).expect("still JSON");
        assert_eq!(back, v, "the same value");
    }

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
