//! The policy in force and a policy's validation, as text and JSON.

use penwatch_proto::v1 as pb;
use serde_json::json;

use super::{Out, time};

impl Out {
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
}
