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
//! (`jsonl.rs`); each record's fields are `records.rs`, their encoding `encoder.rs`.

mod encoder;
mod jsonl;
mod records;

use tonic::Status;

use super::auth::Caller;
use crate::audit::Verification;
use crate::journal::queries::{Order, SampleRow, Selection};
use crate::journal::{self, Reader};
use encoder::Encoder;
pub use records::CSV_COLUMNS;
use records::{
    amendment_record, policy_record, review_record, sample_record, session_record, violation_record,
};

/// Size at which a chunk is sent, bytes.
pub const CHUNK_BYTES: usize = 64 * 1024;

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
        let done = jsonl::export(j, sel, include_samples, caller, &mut out, emit)?;
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
    use serde_json::Value;

    use super::records::*;
    use super::*;
    use crate::journal::{PolicyVersionRow, ReviewRow};

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
