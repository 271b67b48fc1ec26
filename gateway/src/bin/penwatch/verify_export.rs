//! `penwatch verify-export FILE`: checks a JSONL export offline, with the gateway's own
//! chain code (`penwatch_gateway::audit::offline`); no network.

use std::io::BufReader;
use std::path::Path;

use penwatch_gateway::audit::offline::{self, Outcome};
use penwatch_proto::text::escape_controls;
use serde_json::json;

/// Verifies the export in `path` and prints the outcome; `Ok(false)` when it does not verify.
pub fn run(path: &Path, json: bool) -> std::io::Result<bool> {
    let file = std::fs::File::open(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    let outcome = offline::verify(BufReader::new(file))?;
    print(&outcome, json);
    Ok(outcome.ok())
}

fn print(o: &Outcome, json: bool) {
    let s = &o.summary;
    let (head_seq, head_hash) = s.head.clone().unwrap_or_default();
    let head = match &s.head {
        Some((seq, hash)) => format!("head {seq} {}", escape_controls(hash)),
        None => "no head".to_owned(),
    };
    if json {
        let failures: Vec<_> = o
            .failures
            .iter()
            .map(|f| json!({"line": f.line, "problem": f.why}))
            .collect();
        let out = json!({"ok": o.ok(), "lines": s.lines, "sessions": s.sessions,
            "violations": s.violations, "cartridge_events": s.cartridge_events,
            "amendments": s.amendments, "reviews": s.reviews,
            "policy_versions": s.policy_versions,
            "samples": s.samples, "chain_entries": s.chain_entries, "head_seq": head_seq,
            "head": head_hash, "open_sessions": s.open_sessions, "uncovered": s.uncovered,
            "digests_unchecked": s.digests_unchecked, "failures": failures});
        println!("{out}");
        return;
    }
    for f in &o.failures {
        let at = if f.line == 0 {
            "export".to_owned()
        } else {
            format!("line {}", f.line)
        };
        println!("{at}: {}", escape_controls(&f.why));
    }
    println!(
        "{}: {} sessions, {} violations, {} amendments, {} cartridge events, {} samples, {} review \
         signatures against {} chain entries; {head}",
        if o.ok() { "OK" } else { "FAILED" },
        s.sessions,
        s.violations,
        s.amendments,
        s.cartridge_events,
        s.samples,
        s.reviews,
        s.chain_entries,
    );
    if s.open_sessions + s.uncovered > 0 {
        println!(
            "not covered by the chain: {} open sessions, {} other lines (what belongs to open \
             sessions, cartridge events from before the chain covered them)",
            s.open_sessions, s.uncovered
        );
    }
    if s.policy_versions > 0 {
        println!(
            "{} policy versions listed (journaled, not chained: each verdict's policy version is \
             in its session's digest)",
            s.policy_versions
        );
    }
    if s.digests_unchecked > 0 {
        println!(
            "{} closed sessions were exported without their samples: digests not recomputed",
            s.digests_unchecked
        );
    }
    if o.ok() {
        println!(
            "compare the head with the one a reviewer recorded: an export cut at an earlier head \
             is consistent by itself"
        );
    }
}
