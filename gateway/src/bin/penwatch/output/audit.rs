//! The access log and the audit chain's verification, as tables and JSON.

use penwatch_gateway::audit::Verification;
use penwatch_proto::v1 as pb;
use serde_json::{Value, json};

use super::{Out, shown, table, time};

impl Out {
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

    /// `verify` over several gateways: one line per gateway.
    pub fn verify_line(&self, gateway: &str, r: &pb::VerifyResponse) {
        if self.json {
            self.section(gateway).verify(r);
            return;
        }
        let verdict = if r.ok {
            "verified".to_owned()
        } else {
            format!("BROKEN at entry {}: {}", r.first_broken, shown(&r.problem))
        };
        let unchecked = if r.digests_unchecked > 0 {
            format!(
                " ({} pruned sessions' digests not recomputed)",
                r.digests_unchecked
            )
        } else {
            String::new()
        };
        println!(
            "{}  {} entries  head {}  {verdict}{unchecked}",
            shown(gateway),
            r.entries,
            r.head
        );
    }

    /// `verify`.
    pub fn verify(&self, r: &pb::VerifyResponse) {
        if self.json {
            self.print(&json!({"ok": r.ok, "entries": r.entries, "head": r.head,
                "first_broken": r.first_broken, "problem": r.problem,
                "digests_unchecked": r.digests_unchecked}));
            return;
        }
        print!("{}", Verification::from(r));
    }
}
