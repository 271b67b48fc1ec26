//! The lines of a verifiable export (`penwatch export --format jsonl`): one shape per record,
//! written by the gateway's export and read back by `penwatch verify-export`, so the two
//! cannot drift.
//!
//! A chained record's line is its chain entry's body with `record` (the entry's kind) and
//! `chain_seq` (the entry's position) added; a violation's evidence fields are named as in
//! the API (`binding_rule`, `other_excursions`, `unlisted_excursions`). Removing those two
//! fields and undoing the renaming gives the body back byte for byte, so its hash can be
//! recomputed. A sample's line carries exactly what its session's digest covers. Every line
//! is canonical JSON (keys sorted, no spaces): any other byte sequence is not a line this
//! format writes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Entry;

/// The field naming a line's record kind.
pub const RECORD: &str = "record";
/// The field naming the chain entry a record line is covered by.
pub const CHAIN_SEQ: &str = "chain_seq";

/// Evidence fields renamed between a chained violation (left) and its line (right).
const VIOLATION_RENAMES: &[(&str, &str)] = &[
    ("binding", "binding_rule"),
    ("others", "other_excursions"),
    ("unlisted", "unlisted_excursions"),
];

/// Why a line or a chain body cannot be turned into the other.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or not of the expected shape.
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotAnObject,
    /// A field that must be there is not.
    #[error("no {0:?} field")]
    Missing(&'static str),
}

/// One sample as its session's digest covers it (a `samples` row of the journal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestSample {
    /// Session it belongs to (the digest covers it through the session's own record).
    pub session_id: String,
    /// Pen serial.
    pub device_id: String,
    /// The pen's message sequence number.
    pub seq: i64,
    /// Device time, Unix ms.
    pub timestamp_ms: i64,
    /// `sample`, `session_start`, `session_end`, ….
    pub event: String,
    /// Set needle protrusion, mm.
    pub depth_mm: f64,
    /// Strokes of the session so far.
    pub session_strokes: i64,
    /// Strokes of the cartridge so far.
    pub cartridge_strokes: i64,
    /// Operator staff id.
    pub operator_id: String,
    /// Cartridge.
    pub cartridge_id: String,
    /// Treatment zone ("" when none was reported).
    pub zone: String,
    /// Permitted depth it was judged against, mm.
    pub permitted_mm: f64,
    /// Rule that set the permitted depth.
    pub binding_rule: String,
    /// Whether it exceeded the permitted depth.
    pub exceeded: bool,
    /// Policy version that judged it.
    pub policy_version: String,
    /// Version of a conflicting message on the same `seq` (absent for the first one).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl DigestSample {
    /// The fields its digest line is made of.
    pub fn fields(&self) -> DigestFields<'_> {
        DigestFields {
            device_id: &self.device_id,
            seq: self.seq,
            timestamp_ms: self.timestamp_ms,
            event: &self.event,
            depth_mm: self.depth_mm,
            session_strokes: self.session_strokes,
            cartridge_strokes: self.cartridge_strokes,
            operator_id: &self.operator_id,
            cartridge_id: &self.cartridge_id,
            zone: &self.zone,
            permitted_mm: self.permitted_mm,
            binding_rule: &self.binding_rule,
            exceeded: self.exceeded,
            policy_version: &self.policy_version,
            version: self.version,
        }
    }

    /// The canonical line the session digest hashes (see [`DigestFields`]).
    pub fn digest_line(&self) -> String {
        self.fields().line()
    }
}

/// What a session digest covers of one sample, borrowed from a journal row
/// ([`DigestSample::fields`]) or from a sample as it is journaled. Displays as its canonical
/// line: fields joined by `|`, depths with six decimals, `exceeded` as 0 or 1, and `|vN` for a
/// conflicting version N.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DigestFields<'a> {
    /// Pen serial.
    pub device_id: &'a str,
    /// The pen's message sequence number, as the journal stores it.
    pub seq: i64,
    /// Device time, Unix ms.
    pub timestamp_ms: i64,
    /// `sample`, `session_start`, `session_end`, ….
    pub event: &'a str,
    /// Set needle protrusion, mm.
    pub depth_mm: f64,
    /// Strokes of the session so far.
    pub session_strokes: i64,
    /// Strokes of the cartridge so far.
    pub cartridge_strokes: i64,
    /// Operator staff id.
    pub operator_id: &'a str,
    /// Cartridge.
    pub cartridge_id: &'a str,
    /// Treatment zone ("" when none was reported).
    pub zone: &'a str,
    /// Permitted depth it was judged against, mm.
    pub permitted_mm: f64,
    /// Rule that set the permitted depth.
    pub binding_rule: &'a str,
    /// Whether it exceeded the permitted depth.
    pub exceeded: bool,
    /// Policy version that judged it.
    pub policy_version: &'a str,
    /// Version of a conflicting message on the same `seq` (0 for the first one).
    pub version: u64,
}

impl DigestFields<'_> {
    /// Its canonical line, without a newline (with room for one more byte in most cases).
    /// Built by hand rather than by `write!`: the committer makes one for every sample it
    /// journals, and the formatting machinery and exact float printing were most of the
    /// digest's cost (README, Benchmarks).
    pub fn line(&self) -> String {
        let mut line = String::with_capacity(LINE_CAPACITY);
        let mut int = itoa::Buffer::new();
        for (i, field) in [
            Field::Text(self.device_id),
            Field::Int(self.seq),
            Field::Int(self.timestamp_ms),
            Field::Text(self.event),
            Field::Mm(self.depth_mm),
            Field::Int(self.session_strokes),
            Field::Int(self.cartridge_strokes),
            Field::Text(self.operator_id),
            Field::Text(self.cartridge_id),
            Field::Text(self.zone),
            Field::Mm(self.permitted_mm),
            Field::Text(self.binding_rule),
            Field::Int(i64::from(self.exceeded)),
            Field::Text(self.policy_version),
        ]
        .into_iter()
        .enumerate()
        {
            if i > 0 {
                line.push('|');
            }
            match field {
                Field::Text(t) => line.push_str(t),
                Field::Int(n) => line.push_str(int.format(n)),
                Field::Mm(x) => push_six_decimals(&mut line, x),
            }
        }
        if self.version > 0 {
            line.push_str("|v");
            line.push_str(int.format(self.version));
        }
        line
    }
}

/// One field of a digest line.
enum Field<'a> {
    Text(&'a str),
    Int(i64),
    /// Printed with six decimals.
    Mm(f64),
}

/// Appends `x` with six decimals, exactly as `format!("{x:.6}")` prints it, which is the
/// digest's definition. Below 2^32 a double's neighbours are less than 1e-6 apart, so when
/// the shortest decimal that reads back as `x` has at most six decimals, rounding `x`'s exact
/// value to six decimals gives that same decimal; any other value is printed by `format!`.
fn push_six_decimals(line: &mut String, x: f64) {
    if x.is_finite() && x.abs() < 4_294_967_296.0 {
        let mut shortest = ryu::Buffer::new();
        let s = shortest.format_finite(x);
        if let (Some(dot), false) = (s.find('.'), s.contains('e')) {
            let decimals = s.len() - dot - 1;
            if decimals <= 6 {
                line.push_str(s);
                line.extend(std::iter::repeat_n('0', 6 - decimals));
                return;
            }
        }
    }
    use std::fmt::Write;
    // Writing into a String cannot fail.
    let _ = write!(line, "{x:.6}");
}

/// Room for a typical digest line and its newline without growing.
const LINE_CAPACITY: usize = 192;

/// A chain entry as exported; `body` is absent when it is withheld from the exporter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainLine {
    /// Always `chain`.
    pub record: String,
    /// Position in the chain.
    pub seq: i64,
    /// Kind of record.
    pub kind: String,
    /// Canonical JSON of the record; absent when withheld.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

impl ChainLine {
    /// The line of an entry, with or without its body.
    pub fn new(e: &Entry, withheld: bool) -> Self {
        ChainLine {
            record: "chain".into(),
            seq: e.seq,
            kind: e.kind.clone(),
            body: (!withheld).then(|| e.body.clone()),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// The chain head the export was taken at: its last line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeadLine {
    /// Always `head`.
    pub record: String,
    /// Position of the last entry.
    pub seq: i64,
    /// Its hash.
    pub hash: String,
}

/// A value as its line: canonical JSON (keys sorted, no spaces).
pub fn encode<T: Serialize>(value: &T) -> Result<String, LineError> {
    Ok(serde_json::to_value(value)?.to_string())
}

/// The line of a chained record: its entry's body, renamed for the export, with its kind and
/// position.
pub fn chained_line(entry: &Entry) -> Result<String, LineError> {
    let Value::Object(mut fields) = serde_json::from_str(&entry.body)? else {
        return Err(LineError::NotAnObject);
    };
    if entry.kind == "violation" {
        rename_evidence(&mut fields, false);
    }
    fields.insert(RECORD.into(), entry.kind.clone().into());
    fields.insert(CHAIN_SEQ.into(), entry.seq.into());
    Ok(Value::Object(fields).to_string())
}

/// The kind, chain position and body a chained record's line stands for (the inverse of
/// [`chained_line`]); `Ok(None)` for a line that names no chain entry.
pub fn chained_body(line: &Map<String, Value>) -> Result<Option<(String, i64, String)>, LineError> {
    let Some(seq) = line.get(CHAIN_SEQ) else {
        return Ok(None);
    };
    let seq = seq.as_i64().ok_or(LineError::Missing(CHAIN_SEQ))?;
    let kind = line
        .get(RECORD)
        .and_then(Value::as_str)
        .ok_or(LineError::Missing(RECORD))?
        .to_owned();
    let mut fields = line.clone();
    fields.remove(RECORD);
    fields.remove(CHAIN_SEQ);
    if kind == "violation" {
        rename_evidence(&mut fields, true);
    }
    Ok(Some((kind, seq, Value::Object(fields).to_string())))
}

/// Renames a violation's evidence fields to the export's names, or back with `back`.
fn rename_evidence(fields: &mut Map<String, Value>, back: bool) {
    let rename = |fields: &mut Map<String, Value>| {
        for (chained, exported) in VIOLATION_RENAMES {
            let (from, to) = if back {
                (exported, chained)
            } else {
                (chained, exported)
            };
            if let Some(v) = fields.remove(*from) {
                fields.insert((*to).to_owned(), v);
            }
        }
    };
    rename(fields);
    let others = if back { "others" } else { "other_excursions" };
    if let Some(Value::Array(xs)) = fields.get_mut(others) {
        for x in xs {
            if let Value::Object(x) = x {
                rename(x);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sha2::{Digest, Sha256};

    use super::*;
    use crate::audit::{GENESIS, SampleDigest, link_hash};

    fn entry(kind: &str, body: &str) -> Entry {
        Entry {
            seq: 7,
            kind: kind.into(),
            body: body.into(),
            prev_hash: GENESIS.into(),
            hash: link_hash(GENESIS, kind, body),
        }
    }

    #[test]
    fn a_violation_line_names_evidence_as_the_api_and_gives_its_body_back() {
        let body = r#"{"binding":"zone","device_id":"pen","excess_mm":0.2,"others":[{"binding":"operator","limit_mm":1.0}],"unlisted":3}"#;
        let line = chained_line(&entry("violation", body)).expect("line");
        assert_eq!(
            line,
            r#"{"binding_rule":"zone","chain_seq":7,"device_id":"pen","excess_mm":0.2,"other_excursions":[{"binding_rule":"operator","limit_mm":1.0}],"record":"violation","unlisted_excursions":3}"#
        );
        let Value::Object(fields) = serde_json::from_str(&line).expect("json") else {
            panic!("an object");
        };
        assert_eq!(
            chained_body(&fields).expect("body"),
            Some(("violation".into(), 7, body.into()))
        );
    }

    #[test]
    fn a_sample_digest_line_has_six_decimals_and_its_conflicting_version() {
        let mut s = DigestSample {
            session_id: "s".into(),
            device_id: "pen".into(),
            seq: 3,
            timestamp_ms: 1000,
            event: "sample".into(),
            depth_mm: 0.75,
            session_strokes: 10,
            cartridge_strokes: 20,
            operator_id: "op".into(),
            cartridge_id: "cart".into(),
            zone: String::new(),
            permitted_mm: 0.5,
            binding_rule: "class".into(),
            exceeded: true,
            policy_version: "p1".into(),
            version: 0,
        };
        assert_eq!(
            s.digest_line(),
            "pen|3|1000|sample|0.750000|10|20|op|cart||0.500000|class|1|p1"
        );
        s.version = 2;
        assert!(s.digest_line().ends_with("|p1|v2"));
        assert!(encode(&s).expect("line").contains("\"version\":2"));
    }

    #[test]
    fn a_sample_digest_hashes_each_canonical_line_and_its_newline() {
        let s = DigestSample {
            session_id: "s".into(),
            device_id: "pen-\u{e9}".into(),
            seq: 9,
            timestamp_ms: 1_700_000_000_123,
            event: "session_end".into(),
            depth_mm: 1.234_567_8,
            session_strokes: 400,
            cartridge_strokes: 9_000,
            operator_id: "op|1".into(),
            cartridge_id: "cart".into(),
            zone: "cheek".into(),
            permitted_mm: 1.5,
            binding_rule: "zone".into(),
            exceeded: false,
            policy_version: "p2".into(),
            version: 3,
        };
        let mut digest = SampleDigest::default();
        digest.add_fields(&s.fields());
        let line = format!("{}\n", s.digest_line());
        assert_eq!(
            digest.finish(),
            hex::encode(Sha256::digest(line.as_bytes()))
        );
    }

    /// `push_six_decimals` of `x`, as a string.
    fn six_decimals(x: f64) -> String {
        let mut s = String::new();
        push_six_decimals(&mut s, x);
        s
    }

    #[test]
    fn a_value_with_six_decimals_prints_as_the_standard_formatter_prints_it() {
        let depths = (0..=400_000).map(|k| f64::from(k) / 100_000.0);
        let odd = (0..=5_000).map(|k| f64::from(k) * 0.000_7 + 0.000_000_3);
        let edges = [
            0.0,
            -0.0,
            0.000_000_5,
            0.000_001_5,
            -0.000_000_4,
            1e-7,
            2.5e-7,
            0.123_456_5,
            999_999.999_999_5,
            4_294_967_295.999_999,
            4_294_967_296.0,
            1e300,
            -1e300,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for x in depths.chain(odd).chain(edges) {
            assert_eq!(six_decimals(x), format!("{x:.6}"), "{x:e}");
        }
    }

    proptest::proptest! {
        #[test]
        fn any_double_prints_with_six_decimals_as_the_standard_formatter_prints_it(
            bits in proptest::num::u64::ANY,
            small in -5_000_000_i64..5_000_000,
        ) {
            let x = f64::from_bits(bits);
            proptest::prop_assert_eq!(six_decimals(x), format!("{x:.6}"));
            // Values a few decimals long, as pens send them.
            let y = small as f64 / 1_000.0;
            proptest::prop_assert_eq!(six_decimals(y), format!("{y:.6}"));
        }
    }
}
