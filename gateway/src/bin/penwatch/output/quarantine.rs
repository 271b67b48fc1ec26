//! Quarantined messages, as tables and JSON.

use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::{Out, table, time};

impl Out {
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
}
