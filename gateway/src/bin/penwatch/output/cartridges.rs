//! Cartridges, their wear by model and firmware, and reuse events, as tables and JSON.

use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::{Out, dash, table, time, yes};

impl Out {
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
}
