//! Records written in the export's format (CSV under its header, or JSON lines) into a buffer
//! that is handed out in chunks.

use serde_json::{Map, Value};

use super::records::{CSV_COLUMNS, Record, csv_cell, rfc3339, rfc3339_of};
use super::{CHUNK_BYTES, Format};

/// Buffer of the CSV writer made for each row, bytes (a row is a few hundred; a longer one
/// is written through in pieces).
const CSV_ROW_BUFFER: usize = 1024;

/// Records written in the export's format into a buffer that is handed out in chunks.
pub(super) struct Encoder {
    format: Format,
    /// CSV quoting (the `csv` crate's: only where needed), one writer per record.
    csv: csv::WriterBuilder,
    buf: Vec<u8>,
}

impl Encoder {
    /// An encoder whose buffer starts with the CSV header (for CSV).
    pub(super) fn new(format: Format) -> Result<Self, csv::Error> {
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
