//! Who is asking (`whoami`), the pens of the fleet and the operators, as tables and JSON.

use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::{Out, dash, mm, table, time, yes};

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

impl Out {
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
}
