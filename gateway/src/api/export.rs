//! Depth log export: sessions, their violations, (on request) their samples, then their
//! amendments (late messages after the session closed, each a row of its own after the record
//! it amends, followed on request by the samples it added, which carry its number), oldest
//! session first, then the policy versions in force during the period and the review
//! signatures covering its clinics and period, as CSV or JSON lines, in chunks, read from one
//! snapshot of the journal after verifying its audit chain.
//!
//! CSV has one header and one row per record; the `record` column says what the row is
//! (`session`, `violation`, `amendment`, `sample`, `policy_version`, `review`) and columns
//! that do not apply to it are empty; every
//! Unix ms time column has an RFC 3339 one beside it (`started_ms`, `started`); a text
//! cell a spreadsheet would run as a formula gets a leading `'`. JSON lines carry what the
//! audit chain covers, with the chain itself, so they can be verified offline
//! (`export_jsonl.rs`).

use penwatch_proto::text;
use serde_json::{Map, Value};
use tonic::Status;

use super::auth::Caller;
use crate::audit::Verification;
use crate::journal::queries::{
    Order, SampleRow, Selection, StoredAmendment, StoredSession, StoredViolation,
};
use crate::journal::{self, PolicyVersionRow, Reader, ReviewRow};
use crate::sessions::Excursion;

/// Size at which a chunk is sent, bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// Buffer of the CSV writer made for each row, bytes (a row is a few hundred; a longer one
/// is written through in pieces).
const CSV_ROW_BUFFER: usize = 1024;

/// Sessions read per query.
pub(super) const PAGE: u32 = 500;

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
            _ => Err(Status::invalid_argument(format!(
                "format {}: expected \"csv\" or \"jsonl\"",
                super::limits::quote(s)
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
    "started",
    "last_ms",
    "last",
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
    "first_above",
    "last_above_ms",
    "last_above",
    "strokes_above",
    "samples_above",
    "other_excursions",
    "unlisted_excursions",
    "final",
    "seq",
    "timestamp_ms",
    "timestamp",
    "received_ms",
    "received",
    "event",
    "depth_mm",
    "session_strokes",
    "cartridge_strokes",
    "zone",
    "policy_version",
    "amendments",
    "amendment",
    "amendment_reason",
    "amends_audit_seq",
    "audit_seq",
    "committed_ms",
    "committed",
    "ended",
    "new_violation",
    "in_force_from_ms",
    "in_force_from",
    "in_force_until_ms",
    "in_force_until",
    "policy_text",
    "signer",
    "signed_by_token",
    "signer_role",
    "meaning",
    "signed_ms",
    "signed",
    "period_from_ms",
    "period_from",
    "period_until_ms",
    "period_until",
    "head_seq",
    "head_hash",
];

/// The CSV columns that carry a Unix ms time of another column as RFC 3339 (UTC,
/// milliseconds): `started` beside `started_ms`, and so on.
fn rfc3339_of(column: &str) -> Option<&'static str> {
    Some(match column {
        "started" => "started_ms",
        "last" => "last_ms",
        "first_above" => "first_above_ms",
        "last_above" => "last_above_ms",
        "timestamp" => "timestamp_ms",
        "received" => "received_ms",
        "committed" => "committed_ms",
        "in_force_from" => "in_force_from_ms",
        "in_force_until" => "in_force_until_ms",
        "signed" => "signed_ms",
        "period_from" => "period_from_ms",
        "period_until" => "period_until_ms",
        _ => return None,
    })
}

/// A Unix ms time as RFC 3339, UTC with milliseconds; empty for a time before 1970.
fn rfc3339(ms: &Value) -> String {
    match ms.as_u64() {
        Some(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        None => String::new(),
    }
}

/// One exported record: its fields by column name.
pub(super) type Record = Vec<(&'static str, Value)>;

pub(super) fn session_record(s: &StoredSession, caller: &Caller) -> Record {
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
        ("amendments", s.amendments.into()),
    ]
}

fn amendment_record(s: &StoredSession, a: &StoredAmendment, caller: &Caller) -> Record {
    let (x, record) = (&a.amendment, &s.session);
    let mut out = vec![
        ("record", "amendment".into()),
        ("session_id", x.session_id.clone().into()),
        ("device_id", x.device_id.clone().into()),
        ("clinic_id", x.clinic_id.clone().into()),
        (
            "operator_id",
            caller.operator(&x.clinic_id, &x.operator_id).into(),
        ),
        ("device_class", x.device_class.clone().into()),
        ("cartridge_id", record.cartridge_id.clone().into()),
        ("started_ms", x.started_ms.into()),
        ("last_ms", x.last_ms.into()),
        ("samples", x.messages.into()),
        ("strokes", x.strokes.into()),
        ("max_depth_mm", x.max_depth_mm.into()),
        ("exceeded", x.exceeded.into()),
        ("samples_digest", x.samples_digest.clone().into()),
        ("amendment", x.number.into()),
        ("amendment_reason", x.reason.clone().into()),
        ("amends_audit_seq", x.amends.into()),
        ("audit_seq", a.audit_seq.into()),
        ("committed_ms", x.committed_ms.into()),
        ("ended", x.ended.into()),
        ("new_violation", x.new_violation.into()),
    ];
    if let Some(e) = x.violation.as_ref().filter(|_| x.violation_changed) {
        let w = &e.worst;
        out.extend([
            ("limit_mm", w.limit_mm.into()),
            ("binding_rule", w.binding.clone().into()),
            ("peak_depth_mm", w.peak_depth_mm.into()),
            ("excess_mm", w.excess_mm.into()),
            ("first_above_ms", w.first_above_ms.into()),
            ("last_above_ms", w.last_above_ms.into()),
            ("strokes_above", w.strokes_above.into()),
            ("samples_above", w.samples_above.into()),
            (
                "other_excursions",
                Value::Array(e.others.iter().map(excursion).collect()),
            ),
            ("unlisted_excursions", e.unlisted.into()),
            ("policy_version", w.policy_version.clone().into()),
        ]);
    }
    out
}

pub(super) fn violation_record(v: &StoredViolation, caller: &Caller) -> Record {
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
        ("amendment", v.amendment.into()),
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

/// A policy version in force during the export's period (kind `policy_version`); its
/// text only for roles that may read the policy (reviewer, admin).
pub(super) fn policy_record(p: &PolicyVersionRow, caller: &Caller) -> Record {
    let text = if caller.role.reads_policy_text() {
        p.text.clone()
    } else {
        String::new()
    };
    vec![
        ("record", "policy_version".into()),
        ("policy_version", p.version.clone().into()),
        ("in_force_from_ms", p.from_ms.into()),
        ("in_force_until_ms", p.until_ms.into()),
        ("policy_text", text.into()),
    ]
}

/// A review signature covering the export's clinics and period (kind `review`).
fn review_record(r: &ReviewRow) -> Record {
    vec![
        ("record", "review".into()),
        ("clinic_id", r.clinic_id.clone().into()),
        ("signer", r.signer.clone().into()),
        ("signed_by_token", r.token.clone().into()),
        ("signer_role", r.role.clone().into()),
        ("meaning", r.meaning.clone().into()),
        ("signed_ms", r.signed_ms.into()),
        ("period_from_ms", r.from_ms.into()),
        ("period_until_ms", r.until_ms.into()),
        ("head_seq", r.head_seq.into()),
        ("head_hash", r.head_hash.clone().into()),
    ]
}

/// A CSV cell: strings as they are, except that one a spreadsheet would run as a formula
/// gets a leading `'` (the OWASP rule); numbers and booleans (written by the gateway, never
/// negative where they come from a device) as JSON writes them; null as empty.
fn csv_cell(v: &Value) -> String {
    match v {
        Value::String(s) if text::starts_like_formula(s) => format!("'{s}"),
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Why an export stopped before its end.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The journal could not be read.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    /// A record could not be written as CSV.
    #[error("writing CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A chained record could not be written as its line.
    #[error("writing a chained line: {0}")]
    Line(#[from] crate::audit::lines::LineError),
}

/// An export failure as a status (details logged, not sent).
pub fn status(e: ExportError) -> Status {
    match e {
        ExportError::Journal(e) => super::internal(e),
        ExportError::Csv(e) => {
            tracing::error!(error = %e, "export failed");
            Status::internal("export failed; see the gateway log")
        }
        ExportError::Line(e) => {
            tracing::error!(error = %e, "export failed");
            Status::internal("export failed; see the gateway log")
        }
    }
}

/// Records written in the export's format into a buffer that is handed out in chunks.
pub(super) struct Encoder {
    format: Format,
    /// CSV quoting (the `csv` crate's: only where needed), one writer per record.
    csv: csv::WriterBuilder,
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder whose buffer starts with the CSV header (for CSV).
    fn new(format: Format) -> Result<Self, csv::Error> {
        let mut csv = csv::WriterBuilder::new();
        csv.buffer_capacity(CSV_ROW_BUFFER);
        let mut out = Encoder {
            format,
            csv,
            buf: Vec::with_capacity(CHUNK_BYTES * 2),
        };
        if format == Format::Csv {
            out.csv_row(CSV_COLUMNS.iter().copied())?;
        }
        Ok(out)
    }

    fn csv_row<I: IntoIterator<Item = T>, T: AsRef<[u8]>>(
        &mut self,
        fields: I,
    ) -> Result<(), csv::Error> {
        let mut w = self.csv.from_writer(&mut self.buf);
        w.write_record(fields)?;
        w.flush()?;
        Ok(())
    }

    pub(super) fn write(&mut self, record: Record) -> Result<(), csv::Error> {
        match self.format {
            Format::Csv => self.csv_row(CSV_COLUMNS.iter().map(|column| {
                let field = |name: &str| record.iter().find(|(k, _)| *k == name).map(|(_, v)| v);
                match rfc3339_of(column) {
                    Some(ms) => field(ms).map(rfc3339).unwrap_or_default(),
                    None => field(column).map(csv_cell).unwrap_or_default(),
                }
            })),
            Format::Jsonl => {
                let map: Map<String, Value> =
                    record.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
                self.buf
                    .extend_from_slice(Value::Object(map).to_string().as_bytes());
                self.buf.push(b'\n');
                Ok(())
            }
        }
    }

    /// Appends a line written elsewhere (JSONL).
    pub(super) fn line(&mut self, line: &str) {
        self.buf.extend_from_slice(line.as_bytes());
        self.buf.push(b'\n');
    }

    /// Bytes waiting to be handed out.
    pub(super) fn len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes waiting, leaving the buffer empty.
    pub(super) fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
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
) -> Result<Outcome, ExportError> {
    journal.snapshot(|j| {
        Ok(export_snapshot(
            j,
            sel,
            format,
            include_samples,
            caller,
            emit,
        ))
    })?
}

/// Sample rows written as they are read, handed out a chunk at a time; those an amendment
/// added carry its number.
struct Samples<'a> {
    out: &'a mut Encoder,
    caller: &'a Caller,
    emit: &'a mut dyn FnMut(Vec<u8>) -> bool,
    amendment: u64,
    stopped: bool,
    failed: Option<csv::Error>,
}

impl<'a> Samples<'a> {
    fn new(
        out: &'a mut Encoder,
        caller: &'a Caller,
        emit: &'a mut dyn FnMut(Vec<u8>) -> bool,
        amendment: u64,
    ) -> Self {
        Samples {
            out,
            caller,
            emit,
            amendment,
            stopped: false,
            failed: None,
        }
    }

    fn write(&mut self, row: &SampleRow) {
        let mut record = sample_record(row, self.caller);
        if self.amendment > 0 {
            record.push(("amendment", self.amendment.into()));
        }
        if self.failed.is_none()
            && let Err(e) = self.out.write(record)
        {
            self.failed = Some(e);
        }
        if self.out.len() >= CHUNK_BYTES && !self.stopped {
            self.stopped = !(self.emit)(self.out.take());
        }
    }

    /// Whether `emit` asked to stop; the first write error, if any.
    fn finish(self) -> Result<bool, ExportError> {
        match self.failed {
            Some(e) => Err(e.into()),
            None => Ok(self.stopped),
        }
    }
}

fn export_snapshot(
    j: &Reader,
    sel: &Selection,
    format: Format,
    include_samples: bool,
    caller: &Caller,
    emit: &mut dyn FnMut(Vec<u8>) -> bool,
) -> Result<Outcome, ExportError> {
    let verification = j.verify_within()?;
    let mut out = Encoder::new(format)?;
    if format == Format::Jsonl {
        let done = super::export_jsonl::export(j, sel, include_samples, caller, &mut out, emit)?;
        return Ok(done.then(|| (verification, out.take())));
    }
    let mut after = None;
    loop {
        let page = j.sessions_page(sel, Order::OldestFirst, after.as_ref(), PAGE)?;
        let Some(last) = page.last() else { break };
        after = Some(last.cursor());
        for s in &page {
            out.write(session_record(s, caller))?;
            let (device, session) = (&s.session.device_id, &s.session.session_id);
            if (s.session.exceeded() || s.exceeded_by_amendment)
                && let Some(v) = j.session_violation(device, session)?
            {
                out.write(violation_record(&v, caller))?;
            }
            if include_samples {
                let mut samples = Samples::new(&mut out, caller, emit, 0);
                j.for_each_sample(device, session, |row| {
                    samples.write(&row);
                    Ok(())
                })?;
                if samples.finish()? {
                    return Ok(None);
                }
            }
            if s.amendments > 0 {
                for a in j.amendments(device, session)? {
                    out.write(amendment_record(s, &a, caller))?;
                    if include_samples {
                        let number = a.amendment.number;
                        let mut samples = Samples::new(&mut out, caller, emit, number);
                        j.for_each_amended_sample(&a.amendment, |row| {
                            samples.write(&row);
                            Ok(())
                        })?;
                        if samples.finish()? {
                            return Ok(None);
                        }
                    }
                }
            }
            if out.len() >= CHUNK_BYTES && !emit(out.take()) {
                return Ok(None);
            }
        }
    }
    for p in j.policy_versions_in(sel.from_ms, sel.to_ms)? {
        out.write(policy_record(&p, caller))?;
    }
    for r in j.reviews(sel.clinics.as_deref(), sel.from_ms, sel.to_ms)? {
        out.write(review_record(&r))?;
    }
    Ok(Some((verification, out.take())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_rows(records: Vec<Record>) -> Vec<csv::StringRecord> {
        let mut out = Encoder::new(Format::Csv).expect("header");
        for r in records {
            out.write(r).expect("record");
        }
        let bytes = out.take();
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        assert_eq!(
            reader.headers().expect("header").iter().collect::<Vec<_>>(),
            CSV_COLUMNS
        );
        reader.records().map(|r| r.expect("row")).collect()
    }

    fn cell<'a>(row: &'a csv::StringRecord, column: &str) -> &'a str {
        let i = CSV_COLUMNS
            .iter()
            .position(|c| *c == column)
            .expect("column");
        &row[i]
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let rows = csv_rows(vec![vec![
            ("record", "session".into()),
            ("session_id", "a,\"b\"\nc".into()),
            ("exceeded", true.into()),
            ("depth_mm", 0.75.into()),
        ]]);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].len(), CSV_COLUMNS.len());
        assert_eq!(cell(&rows[0], "record"), "session");
        assert_eq!(cell(&rows[0], "session_id"), "a,\"b\"\nc");
        assert_eq!(cell(&rows[0], "exceeded"), "true");
        assert_eq!(cell(&rows[0], "depth_mm"), "0.75");
        assert_eq!(cell(&rows[0], "zone"), "");
        let mut json = Encoder::new(Format::Jsonl).expect("jsonl");
        json.write(vec![("record", "sample".into())]).expect("line");
        assert_eq!(json.take(), b"{\"record\":\"sample\"}\n");
        assert_eq!(Format::parse("").ok(), Some(Format::Csv));
        assert!(Format::parse("xml").is_err());
    }

    #[test]
    fn csv_has_an_rfc3339_column_beside_every_unix_ms_time() {
        let rows = csv_rows(vec![vec![
            ("record", "sample".into()),
            ("timestamp_ms", 1_795_132_800_123i64.into()),
            ("received_ms", 1_795_132_801_000i64.into()),
        ]]);
        assert_eq!(cell(&rows[0], "timestamp_ms"), "1795132800123");
        assert_eq!(cell(&rows[0], "timestamp"), "2026-11-20T00:00:00.123Z");
        assert_eq!(cell(&rows[0], "received"), "2026-11-20T00:00:01.000Z");
        assert_eq!(cell(&rows[0], "started"), "", "no time, no text");
        for column in CSV_COLUMNS.iter().filter_map(|c| c.strip_suffix("_ms")) {
            let at = CSV_COLUMNS.iter().position(|c| *c == column);
            let ms = CSV_COLUMNS
                .iter()
                .position(|c| c.strip_suffix("_ms") == Some(column));
            assert_eq!(at, ms.map(|i| i + 1), "{column} right after {column}_ms");
        }
    }

    #[test]
    fn a_review_signature_is_a_csv_row_with_its_printed_name_meaning_times_and_head() {
        let r = ReviewRow {
            id: 1,
            signer: "Dr Ann Example".into(),
            token: "reviewer".into(),
            role: "reviewer".into(),
            meaning: "approved".into(),
            clinic_id: "c01".into(),
            from_ms: 1_795_132_800_000,
            until_ms: 1_795_219_200_000,
            signed_ms: 1_795_132_801_000,
            head_seq: 7,
            head_hash: "ab".repeat(32),
        };
        let rows = csv_rows(vec![review_record(&r)]);
        assert_eq!(cell(&rows[0], "record"), "review");
        assert_eq!(cell(&rows[0], "signer"), "Dr Ann Example");
        assert_eq!(cell(&rows[0], "meaning"), "approved");
        assert_eq!(cell(&rows[0], "signed"), "2026-11-20T00:00:01.000Z");
        assert_eq!(cell(&rows[0], "period_until"), "2026-11-21T00:00:00.000Z");
        assert_eq!(cell(&rows[0], "head_seq"), "7");
        let p = PolicyVersionRow {
            version: "v1".into(),
            from_ms: 1_795_132_800_000,
            until_ms: None,
            text: "=cmd".into(),
        };
        let admin = Caller::new("admin", crate::api::Role::Admin, Vec::new(), None);
        let manager = Caller::new(
            "m",
            crate::api::Role::ClinicManager,
            vec!["c01".into()],
            None,
        );
        let rows = csv_rows(vec![policy_record(&p, &admin), policy_record(&p, &manager)]);
        assert_eq!(cell(&rows[0], "policy_text"), "'=cmd");
        assert_eq!(cell(&rows[0], "in_force_until"), "", "still in force");
        assert_eq!(
            cell(&rows[1], "policy_text"),
            "",
            "not for a clinic manager"
        );
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised() {
        let hostile = [
            "=HYPERLINK(\"evil.example\",\"click\")",
            "=1-1",
            "-cmd|calc!A0",
            "@SUM(1)",
            "+1",
            "\tx",
            "\rx",
        ];
        let rows = csv_rows(
            hostile
                .iter()
                .map(|h| {
                    vec![
                        ("record", "sample".into()),
                        ("operator_id", (*h).into()),
                        ("seq", 7.into()),
                        ("depth_mm", 1.5.into()),
                        ("timestamp_ms", Value::from(-5i64)),
                    ]
                })
                .collect(),
        );
        for (row, h) in rows.iter().zip(hostile) {
            assert_eq!(cell(row, "operator_id"), format!("'{h}"));
            assert_eq!(cell(row, "record"), "sample");
            assert_eq!(cell(row, "seq"), "7");
            assert_eq!(cell(row, "depth_mm"), "1.5");
            assert_eq!(
                cell(row, "timestamp_ms"),
                "-5",
                "numbers the gateway wrote stay numbers"
            );
        }
        let plain = csv_rows(vec![vec![("operator_id", "op-1=2".into())]]);
        assert_eq!(cell(&plain[0], "operator_id"), "op-1=2");
    }
}
