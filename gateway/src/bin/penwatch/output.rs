//! Tables for people and JSON for scripts.
//!
//! This file holds [`Out`] and the cells and tables every output shares; each kind of output
//! has its own file: `fleet` (whoami, pens, operators), `cartridges`, `sessions` (with
//! amendments and timelines), `violations` (listed and followed), `evidence` (excursions, for
//! both), `quarantine`, `audit` (access log, chain verification), `policy` and `reviews`
//! (signatures, policy history).

mod audit;
mod cartridges;
mod evidence;
mod fleet;
mod policy;
mod quarantine;
mod reviews;
mod sessions;
mod violations;

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use penwatch_proto::text;
use serde_json::Value;

/// Where results go: stdout, as tables or JSON.
#[derive(Clone)]
pub struct Out {
    json: bool,
    /// The gateway a section of output is from (several gateways, per-gateway answers).
    gateway: Option<String>,
    /// The gateway holding each pen, for rows merged from several: each JSON row naming a
    /// pen gets a `"gateway"` member.
    holders: Option<BTreeMap<String, String>>,
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

/// `row` with a `"gateway"` member (a row that is not an object is left as it is).
fn with_gateway(row: &Value, gateway: &str) -> Value {
    match row {
        Value::Object(fields) => {
            let mut fields = fields.clone();
            fields.insert("gateway".into(), Value::String(gateway.to_owned()));
            Value::Object(fields)
        }
        _ => row.clone(),
    }
}

/// A merged row naming the gateway its pen belongs to (a row that names no pen, or a pen no
/// gateway listed, is left as it is).
fn held_by(row: &Value, holders: &BTreeMap<String, String>) -> Value {
    match row
        .get("device_id")
        .and_then(Value::as_str)
        .and_then(|d| holders.get(d))
    {
        Some(gateway) => with_gateway(row, gateway),
        None => row.clone(),
    }
}

impl Out {
    /// Tables, or JSON when `json`.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            gateway: None,
            holders: None,
        }
    }

    /// The output of rows merged from several gateways, `holders` naming the gateway each
    /// pen belongs to.
    pub fn merged(&self, holders: BTreeMap<String, String>) -> Self {
        Self {
            json: self.json,
            gateway: None,
            holders: Some(holders),
        }
    }

    /// The output of one gateway's answer among several: a table under a `gateway ADDRESS`
    /// line, JSON objects with a `"gateway"` member.
    pub fn section(&self, gateway: &str) -> Self {
        if !self.json {
            println!("gateway {}", shown(gateway));
        }
        Self {
            json: self.json,
            gateway: Some(gateway.to_owned()),
            holders: None,
        }
    }

    fn print(&self, v: &Value) {
        match (&self.gateway, &self.holders, v) {
            (Some(g), _, Value::Object(_)) => println!("{}", json_text(&with_gateway(v, g))),
            (None, Some(holders), Value::Array(rows)) => {
                let rows = rows.iter().map(|row| held_by(row, holders)).collect();
                println!("{}", json_text(&Value::Array(rows)));
            }
            _ => println!("{}", json_text(v)),
        }
    }

    /// Whether output is JSON.
    pub fn json(&self) -> bool {
        self.json
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

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
}
