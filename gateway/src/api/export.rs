//! Depth log export: sessions, their violations and (on request) their samples, oldest
//! session first, as CSV or JSON lines, in chunks, read from one snapshot of the journal
//! after verifying its audit chain.
//!
//! CSV has one header and one row per record; the `record` column says what the row is
//! (`session`, `violation`, `sample`) and columns that do not apply to it are empty. A JSON
//! line carries only the fields of its record.

use serde_json::{Map, Value};
use tonic::Status;

use super::auth::Caller;
use crate::audit::Verification;
use crate::journal::queries::{Order, SampleRow, Selection, StoredSession, StoredViolation};
use crate::journal::{self, Reader};
use crate::sessions::Excursion;

/// Size at which a chunk is sent, bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Sessions read per query.
const PAGE: u32 = 500;

/// Export format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated values with a header.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// `csv` (also for "") or `jsonl`.
    pub fn parse(s: &str) -> Result<Self, Status> {
        match s.to_ascii_lowercase().as_str() {
            "" | "csv" => Ok(Format::Csv),
            "jsonl" | "ndjson" => Ok(Format::Jsonl),
            other => Err(Status::invalid_argument(format!(
                "format {other:?}: expected \"csv\" or \"jsonl\""
            ))),
        }
    }
}

/// Every CSV column, in order.
pub const CSV_COLUMNS: &[&str] = &[
    "record",
    "session_id",
    "device_id",
    "clinic_id",
    "operator_id",
    "device_class",
    "cartridge_id",
    "cartridge_model",
    "started_ms",
    "last_ms",
    "state",
    "close_reason",
    "samples",
    "strokes",
    "max_depth_mm",
    "permitted_mm",
    "binding_rule",
    "exceeded",
    "unknown_operator",
    "samples_digest",
    "limit_mm",
    "peak_depth_mm",
    "excess_mm",
    "first_above_ms",
    "last_above_ms",
    "strokes_above",
    "samples_above",
    "other_excursions",
    "unlisted_excursions",
    "final",
    "seq",
    "timestamp_ms",
    "received_ms",
    "event",
    "depth_mm",
    "session_strokes",
    "cartridge_strokes",
    "zone",
    "policy_version",
];

/// One exported record: its fields by column name.
type Record = Vec<(&'static str, Value)>;

fn session_record(s: &StoredSession, caller: &Caller) -> Record {
    let x = &s.session;
    vec![
        ("record", "session".into()),
        ("session_id", x.session_id.clone().into()),
        ("device_id", x.device_id.clone().into()),
        ("clinic_id", x.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&x.clinic_id, &x.operator_id).into(),
        ),
        ("device_class", x.device_class.clone().into()),
        ("cartridge_id", x.cartridge_id.clone().into()),
        ("cartridge_model", x.cartridge_model.clone().into()),
        ("started_ms", x.started_ms.into()),
        ("last_ms", x.last_ms.into()),
        ("state", if s.open { "open" } else { "closed" }.into()),
        (
            "close_reason",
            s.close_reason.clone().unwrap_or_default().into(),
        ),
        ("samples", x.samples.into()),
        ("strokes", x.strokes.into()),
        ("max_depth_mm", x.max_depth_mm.into()),
        ("permitted_mm", x.permitted_mm.unwrap_or_default().into()),
        ("binding_rule", x.binding.clone().unwrap_or_default().into()),
        ("exceeded", x.exceeded().into()),
        ("unknown_operator", x.unknown_operator.into()),
        (
            "samples_digest",
            s.samples_digest.clone().unwrap_or_default().into(),
        ),
    ]
}

fn violation_record(v: &StoredViolation, caller: &Caller) -> Record {
    let e = &v.evidence.worst;
    vec![
        ("record", "violation".into()),
        ("session_id", v.session_id.clone().into()),
        ("device_id", v.device_id.clone().into()),
        ("clinic_id", v.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&v.clinic_id, &v.operator_id).into(),
        ),
        ("device_class", v.device_class.clone().into()),
        ("limit_mm", e.limit_mm.into()),
        ("binding_rule", e.binding.clone().into()),
        ("peak_depth_mm", e.peak_depth_mm.into()),
        ("excess_mm", e.excess_mm.into()),
        ("first_above_ms", e.first_above_ms.into()),
        ("last_above_ms", e.last_above_ms.into()),
        ("strokes_above", e.strokes_above.into()),
        ("samples_above", e.samples_above.into()),
        (
            "other_excursions",
            Value::Array(v.evidence.others.iter().map(excursion).collect()),
        ),
        ("unlisted_excursions", v.evidence.unlisted.into()),
        ("final", v.final_.into()),
        ("policy_version", e.policy_version.clone().into()),
    ]
}

/// One excursion as an exported object (in a CSV cell, its JSON text).
fn excursion(x: &Excursion) -> Value {
    serde_json::json!({
        "limit_mm": x.limit_mm,
        "binding_rule": x.binding,
        "peak_depth_mm": x.peak_depth_mm,
        "excess_mm": x.excess_mm,
        "first_above_ms": x.first_above_ms,
        "last_above_ms": x.last_above_ms,
        "strokes_above": x.strokes_above,
        "samples_above": x.samples_above,
        "policy_version": x.policy_version,
    })
}

fn sample_record(s: &SampleRow, caller: &Caller) -> Record {
    use penwatch_proto::names::ShortName;
    let (r, v) = (&s.reading, &s.verdict);
    vec![
        ("record", "sample".into()),
        ("session_id", r.session_id.clone().into()),
        ("device_id", r.device_id.clone().into()),
        ("clinic_id", r.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&r.clinic_id, &r.operator_id).into(),
        ),
        ("device_class", v.device_class.clone().into()),
        ("cartridge_id", r.cartridge_id.clone().into()),
        ("cartridge_model", r.cartridge_model.clone().into()),
        ("permitted_mm", v.permitted_mm.into()),
        ("binding_rule", v.binding.clone().into()),
        ("exceeded", v.exceeded.into()),
        ("unknown_operator", v.unknown_operator.into()),
        ("seq", r.seq.into()),
        ("timestamp_ms", r.timestamp_ms.into()),
        ("received_ms", s.received_ms.into()),
        ("event", r.event.short_name().into()),
        ("depth_mm", r.depth_mm.into()),
        ("session_strokes", r.session_strokes.into()),
        ("cartridge_strokes", r.cartridge_strokes.into()),
        (
            "zone",
            r.zone.map(|z| z.short_name()).unwrap_or_default().into(),
        ),
        ("policy_version", v.policy_version.clone().into()),
    ]
}

fn csv_field(out: &mut Vec<u8>, v: &Value) {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    if text.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

fn write_record(out: &mut Vec<u8>, format: Format, record: Record) {
    match format {
        Format::Csv => {
            for (i, column) in CSV_COLUMNS.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                if let Some((_, v)) = record.iter().find(|(k, _)| k == column) {
                    csv_field(out, v);
                }
            }
            out.push(b'\n');
        }
        Format::Jsonl => {
            let map: Map<String, Value> =
                record.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
            out.extend_from_slice(Value::Object(map).to_string().as_bytes());
            out.push(b'\n');
        }
    }
}

/// What an export did: the verification it was checked against and the data not yet
/// handed out (for the last chunk); `None` when `emit` asked to stop.
pub type Outcome = Option<(Verification, Vec<u8>)>;

/// Exports the selection from one snapshot: verifies the audit chain, then writes every
/// selected session with its violation and (with `include_samples`) its samples, handing
/// each full chunk to `emit` (which returns `false` to stop).
pub fn export(
    journal: &Reader,
    sel: &Selection,
    format: Format,
    include_samples: bool,
    caller: &Caller,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> journal::Result<Outcome> {
    journal.snapshot(|j| {
        let verification = j.verify()?;
        let mut buf = Vec::with_capacity(CHUNK_BYTES * 2);
        if format == Format::Csv {
            buf.extend_from_slice(CSV_COLUMNS.join(",").as_bytes());
            buf.push(b'\n');
        }
        let mut after = None;
        loop {
            let page = j.sessions_page(sel, Order::OldestFirst, after.as_ref(), PAGE)?;
            let Some(last) = page.last() else { break };
            after = Some(last.cursor());
            for s in &page {
                write_record(&mut buf, format, session_record(s, caller));
                if s.session.exceeded()
                    && let Some(v) =
                        j.session_violation(&s.session.device_id, &s.session.session_id)?
                {
                    write_record(&mut buf, format, violation_record(&v, caller));
                }
                if include_samples {
                    let mut stopped = false;
                    j.for_each_sample(&s.session.device_id, &s.session.session_id, |row| {
                        write_record(&mut buf, format, sample_record(&row, caller));
                        if buf.len() >= CHUNK_BYTES && !stopped {
                            stopped = !emit(std::mem::take(&mut buf));
                        }
                        Ok(())
                    })?;
                    if stopped {
                        return Ok(None);
                    }
                }
                if buf.len() >= CHUNK_BYTES && !emit(std::mem::take(&mut buf)) {
                    return Ok(None);
                }
            }
        }
        Ok(Some((verification, buf)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        write_record(
            &mut out,
            Format::Csv,
            vec![
                ("record", "session".into()),
                ("session_id", "a,\"b\"".into()),
                ("exceeded", true.into()),
                ("depth_mm", 0.75.into()),
            ],
        );
        let line = String::from_utf8(out).expect("utf-8");
        let fields: Vec<&str> = line.trim_end().split(',').collect();
        assert_eq!(fields[0], "session");
        assert!(line.contains("\"a,\"\"b\"\"\""));
        assert_eq!(line.matches(',').count(), CSV_COLUMNS.len() - 1 + 1);
        assert!(line.contains(",true,") && line.contains(",0.75,"));
        let mut json = Vec::new();
        write_record(&mut json, Format::Jsonl, vec![("record", "sample".into())]);
        assert_eq!(json, b"{\"record\":\"sample\"}\n");
        assert_eq!(Format::parse("").ok(), Some(Format::Csv));
        assert!(Format::parse("xml").is_err());
    }
}
