//! The report as one self-contained HTML page: inline CSS with a print stylesheet, inline SVG
//! charts, no script, font, image or link to fetch. Every text from the journal (device,
//! operator, policy text) has its control characters made visible, then is HTML-escaped.

use std::fmt::Write;
use std::time::{Duration, UNIX_EPOCH};

use penwatch_proto::text::escape_controls;
use penwatch_proto::v1 as pb;

use super::{Report, chart};

const STYLE: &str = "
body { font-family: system-ui, 'DejaVu Sans', Arial, sans-serif; font-size: 11pt; color: #111;
  margin: 24px auto; max-width: 1100px; line-height: 1.35; }
h1 { font-size: 20pt; margin: 0 0 4px; } h2 { font-size: 15pt; margin: 28px 0 8px;
  border-bottom: 2px solid #333; } h3 { font-size: 12.5pt; margin: 18px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid #bbb; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.time { white-space: nowrap; } td.verdict { min-width: 11em; }
.meta td:first-child { width: 14em; font-weight: bold; background: #f6f6f6; }
.ok { color: #105a10; font-weight: bold; } .bad { color: #a00000; font-weight: bold; }
tr.exceeded td { background: #fde8e8; }
.hash { font-family: 'DejaVu Sans Mono', monospace; font-size: 9pt; word-break: break-all; }
pre { white-space: pre-wrap; background: #f6f6f6; border: 1px solid #ccc; padding: 8px;
  font-size: 9pt; }
.chart { width: 100%; max-width: 720px; height: auto; border: 1px solid #ccc; }
.chart .grid { stroke: #ddd; stroke-width: 1; } .chart .axis { font-size: 10px; fill: #444; }
.chart .limit { fill: none; stroke: #c00000; stroke-width: 2; stroke-dasharray: 6 3; }
.chart .depth { fill: none; stroke: #1f4e9c; stroke-width: 1.5; }
.chart .excursion { fill: #f4b6b6; opacity: 0.6; } .chart .over { fill: #c00000; }
.legend span { margin-right: 16px; } .key-limit { color: #c00000; } .key-depth { color: #1f4e9c; }
.note { color: #444; font-size: 9.5pt; }
@page { size: A4; margin: 14mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 9.5pt; }
  section.violation { break-before: page; page-break-before: always; }
  tr, .chart, table.meta { break-inside: avoid; page-break-inside: avoid; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
}
";

/// Journal text as HTML: control characters shown as escapes, then HTML-escaped.
fn t(s: &str) -> String {
    html_escape::encode_text(&escape_controls(s)).into_owned()
}

/// A Unix ms time as `2026-11-20 08:00:00` for a table whose header says UTC.
fn cell_time(ms: i64) -> String {
    when(ms).trim_end_matches(" UTC").to_owned()
}

/// Journal text of several lines as HTML: each line as [`t`], the line breaks kept.
fn lines(s: &str) -> String {
    s.split('\n').map(t).collect::<Vec<_>>().join("\n")
}

/// A Unix ms time as `2026-11-20 08:00:00 UTC`; "–" for none.
fn when(ms: i64) -> String {
    if ms <= 0 {
        return "–".to_owned();
    }
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs()))
        .to_string()
        .replacen('T', " ", 1)
        .replacen('Z', " UTC", 1)
}

fn mm(v: f64) -> String {
    format!("{v:.2} mm")
}

/// The whole page.
pub fn render(r: &Report) -> String {
    let mut h = opening(&r.clinic);
    body(&mut h, r);
    h.push_str(CLOSING);
    h
}

/// One clinic's period over several gateways as one page: every gateway's audit chain first,
/// then each gateway's part under its address. Each gateway keeps its own journal and chain,
/// so each part was verified against its own chain head, and is exported and checked with
/// that gateway's.
pub fn render_fleet(parts: &[(String, Report)]) -> String {
    let Some((_, first)) = parts.first() else {
        return String::new();
    };
    let mut h = opening(&first.clinic);
    let _ = write!(
        h,
        "<p>The records are kept by {} gateways, each in its own journal with its own audit \
         chain: each part below was verified against its gateway's chain head. The JSONL \
         export of each gateway (<code>penwatch export --out-dir</code>) is checked offline \
         against the same head with <code>penwatch verify-export</code>.</p>\
         <table id=\"gateways\"><tr><th>Gateway</th><th>Sessions</th><th>Exceeded</th>\
         <th>Audit chain</th><th>Chain head verified against</th></tr>",
        parts.len()
    );
    for (gateway, r) in parts {
        let v = &r.verification;
        let verdict = if v.ok {
            format!("<span class=\"ok\">Verified</span>: {} entries", v.entries)
        } else {
            format!(
                "<span class=\"bad\">BROKEN</span> at entry {}",
                v.first_broken
            )
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{verdict}</td>\
             <td class=\"hash\">{}</td></tr>",
            t(gateway),
            r.sessions.len(),
            r.sessions.iter().filter(|s| s.exceeded).count(),
            t(&v.head),
        );
    }
    h.push_str("</table>");
    for (n, (gateway, r)) in parts.iter().enumerate() {
        let mut part = format!("<h2 class=\"gateway\">Gateway {}</h2>", t(gateway));
        body(&mut part, r);
        // Each part's ids are its own.
        h.push_str(&part.replace("id=\"", &format!("id=\"gw{}-", n + 1)));
    }
    h.push_str(CLOSING);
    h
}

/// The page up to its first section.
fn opening(clinic: &str) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let title = format!("PenWatch compliance report: clinic {}", t(clinic));
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\
         <h1>{title}</h1>"
    );
    h
}

/// The report's sections.
fn body(h: &mut String, r: &Report) {
    header(h, r);
    sessions(h, r);
    violations(h, r);
    amendments(h, r);
    operators(h, &r.operators);
    policies(h, r);
    signatures(h, r);
}

/// The page's end.
const CLOSING: &str = "<p class=\"note\">Depths are the pen's set needle protrusion, not the depth \
    reached in tissue. This page is a human-readable copy; the record is the gateway's \
    hash-chained journal and its JSONL export, which <code>penwatch verify-export</code> checks \
    offline against the chain head above.</p></body></html>\n";

fn header(h: &mut String, r: &Report) {
    let v = &r.verification;
    let verdict = if v.ok {
        format!(
            "<span class=\"ok\">Verified</span>: {} entries, no entry altered",
            v.entries
        )
    } else {
        format!(
            "<span class=\"bad\">BROKEN</span> at entry {}: {}",
            v.first_broken,
            t(&v.problem)
        )
    };
    let exceeded = r.sessions.iter().filter(|s| s.exceeded).count();
    let _ = write!(
        h,
        "<table class=\"meta\">\
         <tr><td>Clinic</td><td>{}</td></tr>\
         <tr><td>Period (sessions started)</td><td>{} to {}</td></tr>\
         <tr><td>Generated</td><td>{}</td></tr>\
         <tr><td>Audit chain</td><td>{verdict}</td></tr>\
         <tr><td>Chain head verified against</td><td class=\"hash\" id=\"chain-head\">{}</td></tr>\
         <tr><td>Sessions</td><td>{} ({} exceeded the permitted depth)</td></tr>\
         </table>",
        t(&r.clinic),
        when(r.from_ms),
        when(r.until_ms),
        when(r.generated_ms),
        t(&v.head),
        r.sessions.len(),
        exceeded,
    );
    if v.digests_unchecked > 0 {
        let _ = write!(
            h,
            "<p class=\"note\">{} sessions' samples were pruned by retention; their digests were \
             not recomputed.</p>",
            v.digests_unchecked
        );
    }
}

fn sessions(h: &mut String, r: &Report) {
    h.push_str("<h2>Sessions</h2>");
    if r.sessions.is_empty() {
        h.push_str("<p>No sessions in this period.</p>");
        return;
    }
    h.push_str(
        "<table class=\"sessions\"><tr><th>Session</th><th>Operator</th><th>Pen (class)</th>\
         <th>Zone(s)</th><th>Start (UTC)</th><th>End (UTC)</th><th>Deepest</th><th>Lowest permitted</th>\
         <th>Rule</th><th>Verdict (worst excursion)</th></tr>",
    );
    for s in &r.sessions {
        let verdict = match (s.exceeded, s.state.as_str()) {
            (true, _) => match &s.evidence {
                Some(e) => format!(
                    "<span class=\"bad\">EXCEEDED</span> by {}: {} over a {} limit ({})",
                    mm(e.excess_mm),
                    mm(e.peak_depth_mm),
                    mm(e.limit_mm),
                    t(&e.binding_rule)
                ),
                None => "<span class=\"bad\">EXCEEDED</span>".to_owned(),
            },
            (false, "open") => "within (still open)".to_owned(),
            (false, _) => "within".to_owned(),
        };
        let verdict = match (s.amendments, s.exceeded_by_amendment) {
            (0, _) => verdict,
            (n, true) => {
                format!("{verdict}; <span class=\"bad\">amended ×{n}: late data EXCEEDED</span>")
            }
            (n, false) => format!("{verdict}; amended ×{n} (late data)"),
        };
        let unknown = if s.unknown_operator {
            " <span class=\"bad\">(unknown operator)</span>"
        } else {
            ""
        };
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td>{}{unknown}</td><td>{} ({})</td><td>{}</td><td class=\"time\">{}</td><td class=\"time\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"verdict\">{verdict}</td></tr>",
            if s.exceeded {
                " class=\"exceeded\""
            } else {
                ""
            },
            t(&s.session_id),
            t(&s.operator_id),
            t(&s.device_id),
            t(&s.device_class),
            t(&s.zones.join(", ")),
            cell_time(s.started_ms),
            cell_time(s.last_ms),
            mm(s.max_depth_mm),
            mm(s.permitted_mm),
            t(&s.binding_rule),
        );
    }
    h.push_str("</table>");
}

/// Late data after sessions closed: each amendment beside the record it amends, which stays
/// as it was.
fn amendments(h: &mut String, r: &Report) {
    let amended: Vec<&pb::Session> = r.sessions.iter().filter(|s| s.amendments > 0).collect();
    if amended.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Amendments</h2><p>Messages that arrived after their session had closed. The \
         session's record stays as it closed; each amendment is chained beside it with the \
         messages it adds and the session as they make it.</p>\
         <table id=\"amendments\"><tr><th>Session</th><th>No.</th><th>Reason</th>\
         <th>Committed (UTC)</th><th>Messages (seq)</th><th>Deepest</th><th>Verdict with them</th>\
         <th>Chain entry (amends)</th></tr>",
    );
    for s in amended {
        let key = (s.device_id.clone(), s.session_id.clone());
        for a in r.amendments.get(&key).into_iter().flatten() {
            let verdict = match (&a.evidence, a.exceeded) {
                (Some(e), true) => format!(
                    "<span class=\"bad\">EXCEEDED</span> by {}: {} over a {} limit ({}){}",
                    mm(e.excess_mm),
                    mm(e.peak_depth_mm),
                    mm(e.limit_mm),
                    t(&e.binding_rule),
                    if a.new_violation {
                        ", a violation the record did not have"
                    } else {
                        ""
                    }
                ),
                (_, true) => "<span class=\"bad\">EXCEEDED</span>".to_owned(),
                (_, false) => "within".to_owned(),
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"time\">{}</td>\
                 <td class=\"num\">{} ({}–{})</td><td class=\"num\">{}</td><td>{verdict}</td>\
                 <td class=\"num\">{} ({})</td></tr>",
                t(&s.session_id),
                a.number,
                t(&a.reason.replace('_', " ")),
                cell_time(a.committed_ms),
                a.messages,
                a.first_seq,
                a.last_seq,
                mm(a.max_depth_mm),
                a.audit_seq,
                a.amends_audit_seq,
            );
        }
    }
    h.push_str("</table>");
}

fn excursion_row(h: &mut String, what: &str, x: &pb::Excursion) {
    let _ = write!(
        h,
        "<tr><td>{what}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td>\
         <td class=\"num\">{}</td><td class=\"time\">{}</td><td class=\"time\">{}</td>\
         <td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        mm(x.peak_depth_mm),
        mm(x.limit_mm),
        t(&x.binding_rule),
        mm(x.excess_mm),
        cell_time(x.first_above_ms),
        cell_time(x.last_above_ms),
        x.strokes_above,
        x.samples_above,
        t(&x.policy_version),
    );
}

/// The evidence's worst excursion as an excursion.
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

fn violations(h: &mut String, r: &Report) {
    let exceeded: Vec<&pb::Session> = r.sessions.iter().filter(|s| s.exceeded).collect();
    if exceeded.is_empty() {
        h.push_str("<h2>Violations</h2><p>No session exceeded its permitted depth.</p>");
        return;
    }
    for (i, s) in exceeded.iter().enumerate() {
        let _ = write!(
            h,
            "<section class=\"violation\">{}<h3>Session {} on pen {} — operator {}</h3>\
             <p>{} to {}, {} strokes, {} class; closed: {}.</p>",
            if i == 0 { "<h2>Violations</h2>" } else { "" },
            t(&s.session_id),
            t(&s.device_id),
            t(&s.operator_id),
            when(s.started_ms),
            when(s.last_ms),
            s.strokes,
            t(&s.device_class),
            if s.state == "closed" {
                t(&s.close_reason)
            } else {
                "no, still open".to_owned()
            }
        );
        let Some(e) = &s.evidence else {
            h.push_str("<p>No evidence recorded.</p></section>");
            continue;
        };
        h.push_str(
            "<table class=\"evidence\"><tr><th></th><th>Peak</th><th>Limit</th><th>Rule</th>\
             <th>Excess</th><th>First above (UTC)</th><th>Last above (UTC)</th><th>Strokes above</th>\
             <th>Samples above</th><th>Policy</th></tr>",
        );
        excursion_row(h, "<b>Worst excursion</b>", &worst(e));
        for x in &e.other_excursions {
            excursion_row(h, "Other excursion", x);
        }
        h.push_str("</table>");
        if e.unlisted_excursions > 0 {
            let _ = write!(
                h,
                "<p class=\"note\">{} further, smaller excursions are not listed.</p>",
                e.unlisted_excursions
            );
        }
        let spans: Vec<(i64, i64)> = std::iter::once(worst(e))
            .chain(e.other_excursions.iter().cloned())
            .map(|x| (x.first_above_ms, x.last_above_ms))
            .collect();
        let points = r
            .timelines
            .get(&(s.device_id.clone(), s.session_id.clone()))
            .map(Vec::as_slice)
            .unwrap_or_default();
        let label = format!("Set depth over time, session {}", t(&s.session_id));
        let _ = write!(
            h,
            "{}<p class=\"legend note\"><span class=\"key-depth\">━ set depth</span>\
             <span class=\"key-limit\">╌ permitted depth</span>\
             <span>shaded: excursions above the permitted depth</span></p></section>",
            chart::svg(points, &spans, &label)
        );
    }
}

fn operators(h: &mut String, operators: &[pb::OperatorSummary]) {
    h.push_str("<h2>Operators</h2>");
    if operators.is_empty() {
        h.push_str("<p>No operators in this period.</p>");
        return;
    }
    h.push_str(
        "<table class=\"operators\"><tr><th>Operator</th><th>Qualification</th>\
         <th>Permitted (personal)</th><th>Sessions</th><th>Violations</th><th>Deepest</th></tr>",
    );
    for o in operators {
        let qualification = if o.known {
            t(&o.qualification)
        } else {
            "<span class=\"bad\">unknown to the policy</span>".to_owned()
        };
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{qualification}</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            t(&o.operator_id),
            mm(o.max_mm),
            o.sessions,
            o.violations,
            mm(o.max_depth_mm),
        );
    }
    h.push_str("</table>");
}

fn policies(h: &mut String, r: &Report) {
    h.push_str("<h2>Policy versions</h2>");
    for p in &r.policies {
        let loaded = match p.in_force {
            Some((from, Some(until))) => format!(", in force {} → {}", when(from), when(until)),
            Some((from, None)) => format!(", in force since {}", when(from)),
            None => String::new(),
        };
        let _ = write!(
            h,
            "<h3>Version <span class=\"hash\">{}</span>{loaded}</h3>",
            t(&p.version)
        );
        match &p.text {
            Some(text) if text.is_empty() => h.push_str("<p>The built-in defaults.</p>"),
            Some(text) => {
                let _ = write!(h, "<pre>{}</pre>", lines(text));
            }
            None => h.push_str(
                "<p class=\"note\">Named by this period's verdicts; this gateway's policy \
                 history does not hold it.</p>",
            ),
        }
    }
}

fn signatures(h: &mut String, r: &Report) {
    h.push_str("<h2>Review signatures</h2>");
    if r.signatures.is_empty() {
        h.push_str("<p id=\"signatures\">No review signatures recorded for this period.</p>");
        return;
    }
    h.push_str(
        "<table id=\"signatures\"><tr><th>Signer (printed name)</th><th>Meaning</th>\
         <th>Signed</th><th>Period signed</th><th>Token (role)</th><th>Chain head signed</th></tr>",
    );
    for s in &r.signatures {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} {} → {}</td><td>{} ({})</td>\
             <td class=\"hash\">{} {}</td></tr>",
            t(&s.signer),
            t(&s.meaning),
            when(s.signed_ms),
            t(&s.clinic_id),
            when(s.from_ms),
            when(s.until_ms),
            t(&s.token_name),
            t(&s.role),
            s.head_seq,
            t(&s.head_hash)
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::PolicyVersion;

    fn report() -> Report {
        let evidence = pb::Evidence {
            limit_mm: 0.5,
            binding_rule: "zone".into(),
            peak_depth_mm: 0.7,
            excess_mm: 0.2,
            first_above_ms: 1_795_132_801_000,
            last_above_ms: 1_795_132_802_000,
            strokes_above: 120,
            samples_above: 2,
            policy_version: "p1".into(),
            ..pb::Evidence::default()
        };
        let session = pb::Session {
            session_id: "s-1".into(),
            device_id: "pen-<script>alert(1)</script>".into(),
            operator_id: "op \"1\" & co\u{1b}[31m".into(),
            exceeded: true,
            state: "closed".into(),
            evidence: Some(evidence),
            ..pb::Session::default()
        };
        Report {
            clinic: "c01".into(),
            sessions: vec![session],
            policies: vec![PolicyVersion {
                version: "p1".into(),
                in_force: Some((1, None)),
                text: Some("[zones.c01]\nperiorbital = 0.5 # <b>".into()),
            }],
            ..Report::default()
        }
    }

    #[test]
    fn a_fleet_page_has_a_part_per_gateway_each_with_its_own_chain_head() {
        let part = |head: &str, ok: bool| Report {
            verification: pb::VerifyResponse {
                ok,
                entries: 7,
                head: head.into(),
                first_broken: if ok { 0 } else { 3 },
                ..pb::VerifyResponse::default()
            },
            ..report()
        };
        let html = render_fleet(&[
            ("http://gw-1:50051".into(), part("aaaa1111", true)),
            ("http://gw-2:50051".into(), part("bbbb2222", false)),
        ]);
        assert!(
            html.contains("Gateway http://gw-1:50051")
                && html.contains("Gateway http://gw-2:50051")
        );
        assert!(
            html.contains("aaaa1111") && html.contains("bbbb2222"),
            "{html}"
        );
        assert!(html.contains("BROKEN</span> at entry 3"), "{html}");
        assert!(html.contains("id=\"gw1-chain-head\"") && html.contains("id=\"gw2-chain-head\""));
        assert!(
            !html.contains("id=\"chain-head\""),
            "ids are never repeated"
        );
        assert!(!html.contains("<script"), "journal text still escaped");
    }

    #[test]
    fn journal_text_is_escaped_and_nothing_is_fetched() {
        let html = render(&report());
        assert!(!html.contains("<script"), "{html}");
        assert!(html.contains("pen-&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("op \"1\" &amp; co\\u{1b}[31m"), "{html}");
        assert!(
            html.contains("[zones.c01]\nperiorbital = 0.5 # &lt;b&gt;"),
            "{html}"
        );
        assert!(!html.contains("http://") && !html.contains("https://"));
        assert!(!html.contains(" src=") && !html.contains("<link"));
    }

    #[test]
    fn an_amended_session_is_marked_and_its_amendments_listed_beside_it() {
        let mut r = report();
        assert!(
            !render(&r).contains("id=\"amendments\""),
            "none: no section"
        );
        let s = &mut r.sessions[0];
        s.amendments = 1;
        s.exceeded_by_amendment = true;
        let key = (s.device_id.clone(), s.session_id.clone());
        r.amendments.insert(
            key,
            vec![pb::Amendment {
                number: 1,
                reason: "late_after_end".into(),
                amends_audit_seq: 4,
                audit_seq: 9,
                messages: 2,
                first_seq: 40,
                last_seq: 41,
                max_depth_mm: 1.4,
                exceeded: true,
                new_violation: true,
                ..pb::Amendment::default()
            }],
        );
        let html = render(&r);
        assert!(html.contains("amended ×1: late data EXCEEDED"), "{html}");
        assert!(html.contains("id=\"amendments\""), "{html}");
        assert!(html.contains("late after end"), "{html}");
        assert!(html.contains("9 (4)"), "its entry and the record's: {html}");
    }

    #[test]
    fn the_evidence_chart_and_an_empty_signatures_section_are_shown() {
        let mut r = report();
        let html = render(&r);
        assert!(html.contains("Worst excursion"));
        assert!(html.contains("0.70 mm") && html.contains("0.20 mm"));
        assert!(html.contains("<svg class=\"chart\""));
        assert!(html.contains("No review signatures recorded for this period"));
        r.signatures.push(pb::ReviewSignature {
            signer: "Dr A <b>".into(),
            meaning: "approved".into(),
            signed_ms: 1,
            head_seq: 7,
            head_hash: "ab".into(),
            ..pb::ReviewSignature::default()
        });
        let html = render(&r);
        assert!(html.contains("Dr A &lt;b&gt;") && html.contains("approved"));
        assert!(html.contains("7 ab"), "{html}");
    }
}
