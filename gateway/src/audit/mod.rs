//! Tamper evidence: an append-only hash chain over closed sessions, final violations, the
//! amendments late data makes to a closed session, cartridge events, retention runs, the
//! access log and signed reviews.
//!
//! Each entry's hash is `SHA-256(prev_hash ‖ "\n" ‖ kind ‖ "\n" ‖ body)`, where `body` is the
//! record as canonical JSON (keys sorted). A session's record carries `samples_digest`, the
//! SHA-256 of its samples' canonical lines in `seq` order, so editing a sample, a session
//! or a violation afterwards breaks the chain at that entry.
//!
//! Everything here is pure (no journal, no network), so `penwatch verify-export` checks an
//! export with the same code the gateway chains with: [`lines`] is the export's line format,
//! [`offline`] its verification.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::sessions::Evidence;

pub mod lines;
pub mod offline;

/// Hash of the (virtual) entry before the first one.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One link of the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position, from 1.
    pub seq: i64,
    /// The record's kind (`session`, `violation`, `amendment`, …).
    pub kind: String,
    /// Canonical JSON of the record.
    pub body: String,
    /// Hash of the previous entry.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

/// The hash of an entry, given its predecessor's.
pub fn link_hash(prev_hash: &str, kind: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev_hash.as_bytes());
    h.update(b"\n");
    h.update(kind.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    hex::encode(h.finalize())
}

/// Incremental digest over a session's samples.
#[derive(Debug, Default, Clone)]
pub struct SampleDigest(Sha256);

impl SampleDigest {
    /// Adds one line (and its newline).
    pub fn add(&mut self, line: &str) {
        self.0.update(line.as_bytes());
        self.0.update(b"\n");
    }

    /// Adds one sample's canonical line (and its newline): the same bytes as
    /// [`SampleDigest::add`] of its line, hashed in one piece.
    pub fn add_fields(&mut self, fields: &lines::DigestFields<'_>) {
        let mut line = fields.line();
        line.push('\n');
        self.0.update(line.as_bytes());
    }

    /// The hex digest.
    pub fn finish(self) -> String {
        hex::encode(self.0.finalize())
    }
}

/// The audit entry of a closed session: its final record, as chained (kind `session`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClosedSession {
    /// Opaque session id.
    pub session_id: String,
    /// Pen serial.
    pub device_id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Operator staff id.
    pub operator_id: String,
    /// Effective device class.
    pub device_class: String,
    /// Cartridge used.
    pub cartridge_id: String,
    /// First device time, Unix ms.
    pub started_ms: i64,
    /// Last device time, Unix ms.
    pub last_ms: i64,
    /// Strokes delivered.
    pub strokes: u64,
    /// Deepest setting, mm.
    pub max_depth_mm: f64,
    /// Most restrictive permitted depth while treating, mm.
    pub permitted_mm: Option<f64>,
    /// Whether any sample exceeded its permitted depth.
    pub exceeded: bool,
    /// `ended` or `inactive`.
    pub close_reason: String,
    /// Journaled messages of the session (samples and session events) the digest covers.
    #[serde(rename = "messages")]
    pub journaled: u64,
    /// Highest journal id among them.
    pub last_sample_id: i64,
    /// SHA-256 over their canonical lines in `seq` order.
    pub samples_digest: String,
    /// Messages among them that conflict with another message of the same `(device_id, seq)`
    /// (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub conflicting: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The audit entry of a final violation (kind `violation`): the session's identity and its
/// evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalViolation {
    /// Opaque session id.
    pub session_id: String,
    /// Pen serial.
    pub device_id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Operator staff id.
    pub operator_id: String,
    /// Effective device class.
    pub device_class: String,
    /// The evidence: the worst excursion's limit, rule, peak, excess, times, strokes and
    /// samples above and policy version as top-level fields, then the other excursions.
    #[serde(flatten)]
    pub evidence: Evidence,
}

/// Why late data amended a closed session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmendReason {
    /// Messages arrived after the pen's `session_end` had closed the session.
    LateAfterEnd,
    /// Messages (a pen's offline buffer, replayed) arrived after the session was closed for
    /// inactivity.
    ReplayAfterInactive,
}

impl AmendReason {
    /// The reason for a session closed with `close_reason` (`ended` or `inactive`).
    pub fn after(close_reason: &str) -> Self {
        if close_reason == "ended" {
            AmendReason::LateAfterEnd
        } else {
            AmendReason::ReplayAfterInactive
        }
    }

    /// `late_after_end` or `replay_after_inactive`.
    pub fn as_str(self) -> &'static str {
        match self {
            AmendReason::LateAfterEnd => "late_after_end",
            AmendReason::ReplayAfterInactive => "replay_after_inactive",
        }
    }
}

/// The audit entry of an amendment (kind `amendment`): messages of a closed session that were
/// journaled after it closed, one entry per session per committed batch. It references the
/// session's chained record (`amends`), never replaces it, and carries the session as the new
/// evidence makes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Amendment {
    /// Opaque session id.
    pub session_id: String,
    /// Pen serial.
    pub device_id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Operator staff id.
    pub operator_id: String,
    /// Effective device class.
    pub device_class: String,
    /// Its number among the session's amendments, from 1.
    pub number: u64,
    /// Chain position of the session's closed record it amends.
    pub amends: i64,
    /// `late_after_end` or `replay_after_inactive`.
    pub reason: String,
    /// Gateway time of the commit, Unix ms.
    pub committed_ms: i64,
    /// Journaled messages it adds (samples and session events), which the digest covers.
    pub messages: u64,
    /// Lowest `seq` among them.
    pub first_seq: u64,
    /// Highest `seq` among them.
    pub last_seq: u64,
    /// Journal ids of the messages it adds are above this (the last one the session's record
    /// or its previous amendment covered)…
    pub after_sample_id: i64,
    /// …and at most this.
    pub last_sample_id: i64,
    /// SHA-256 over the added messages' canonical lines in `seq` order.
    pub samples_digest: String,
    /// The session's first device time (as in its record), Unix ms.
    pub started_ms: i64,
    /// The session's last device time with the new messages, Unix ms.
    pub last_ms: i64,
    /// Strokes delivered, with the new messages.
    pub strokes: u64,
    /// Deepest setting, with the new messages, mm.
    pub max_depth_mm: f64,
    /// Whether any sample, the new ones included, exceeded its permitted depth.
    pub exceeded: bool,
    /// Whether the pen's `session_end` is among the session's messages now.
    pub ended: bool,
    /// The session's violation evidence with the new messages, when it exceeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation: Option<Evidence>,
    /// The new messages raised a violation the session's record did not have.
    pub new_violation: bool,
    /// The new messages changed the violation evidence (raised or grew it).
    pub violation_changed: bool,
}

/// A chained record, typed by its kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// A closed session.
    Session(ClosedSession),
    /// A final violation.
    Violation(FinalViolation),
    /// A cartridge event (reuse, wear level).
    CartridgeEvent(ChainedCartridgeEvent),
    /// A retention run about to delete raw samples.
    Pruned(Pruned),
    /// Where the chain's coverage of cartridge events starts in this journal.
    Scope(Scope),
    /// A run of access log entries.
    Access(AccessBatch),
    /// Late data for a closed session.
    Amendment(Amendment),
    /// A signed review.
    Review(SignedReview),
}

/// The audit entry of a signed review (kind `review`), written with its `reviews` row: who
/// signed (printed name and token), what the signature means, the clinic and period it
/// covers, when, and the chain head the signer reviewed up to (an earlier entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReview {
    /// Journal id of the `reviews` row.
    pub id: i64,
    /// The signer's printed name.
    pub signer: String,
    /// Name of the token that signed.
    pub token: String,
    /// That token's role.
    pub role: String,
    /// `reviewed`, `approved` or `responsibility`.
    pub meaning: String,
    /// The clinic whose records are signed.
    pub clinic_id: String,
    /// Start of the period, device time, Unix ms, inclusive.
    pub from_ms: i64,
    /// End of the period, device time, Unix ms, exclusive.
    pub until_ms: i64,
    /// When it was signed, gateway time, Unix ms.
    pub signed_ms: i64,
    /// Position of the chain head it covers (0: the empty chain).
    pub head_seq: i64,
    /// That entry's hash ([`GENESIS`] for the empty chain).
    pub head_hash: String,
}

/// The audit entry of a run of access log entries (kind `access`), written with them: their
/// ids and a SHA-256 over their canonical lines, so none can be removed or edited unseen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessBatch {
    /// First `access_log` id of the run.
    pub first_id: i64,
    /// Last `access_log` id of the run.
    pub last_id: i64,
    /// SHA-256 over the entries' canonical lines in id order.
    pub digest: String,
}

/// The audit entry of a cartridge event (kind `cartridge_event`): the row as journaled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainedCartridgeEvent {
    /// Journal id of the `cartridge_events` row.
    pub id: i64,
    /// Cartridge.
    pub cartridge_id: String,
    /// `reuse`, `wear_80` or `wear_100`.
    pub kind: String,
    /// Pen it was seen in.
    pub device_id: String,
    /// Session it was seen in.
    pub session_id: String,
    /// Device time, Unix ms.
    pub ts_ms: i64,
    /// Text a person can read.
    pub detail: String,
}

/// The audit entry of a retention run (kind `pruned`), chained before it deletes: raw samples
/// of sessions that ended before `cutoff_ms` may be gone from here on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    /// Samples with a device time before this, of sessions last active before it, Unix ms.
    pub cutoff_ms: i64,
    /// The retention in force, days.
    pub retention_days: u64,
    /// When the run started, gateway time, Unix ms.
    pub at_ms: i64,
}

/// The audit entry that says what the chain covers (kind `scope`), written when a journal is
/// created or first opened by a gateway that chains cartridge events: rows journaled before
/// are not chained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// The first `cartridge_events` id the chain covers.
    pub cartridge_events_from_id: i64,
}

impl Record {
    /// The entry's kind as chained.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Session(_) => "session",
            Record::Violation(_) => "violation",
            Record::CartridgeEvent(_) => "cartridge_event",
            Record::Pruned(_) => "pruned",
            Record::Scope(_) => "scope",
            Record::Access(_) => "access",
            Record::Amendment(_) => "amendment",
            Record::Review(_) => "review",
        }
    }

    /// The body as chained: canonical JSON, keys sorted.
    pub fn body(&self) -> Result<String, serde_json::Error> {
        let value = match self {
            Record::Session(s) => serde_json::to_value(s)?,
            Record::Violation(v) => serde_json::to_value(v)?,
            Record::CartridgeEvent(e) => serde_json::to_value(e)?,
            Record::Pruned(p) => serde_json::to_value(p)?,
            Record::Scope(s) => serde_json::to_value(s)?,
            Record::Access(a) => serde_json::to_value(a)?,
            Record::Amendment(a) => serde_json::to_value(a)?,
            Record::Review(r) => serde_json::to_value(r)?,
        };
        Ok(value.to_string())
    }

    /// Reads a chained entry's body; `Ok(None)` for a kind this version does not know.
    pub fn parse(kind: &str, body: &str) -> Result<Option<Self>, serde_json::Error> {
        Ok(match kind {
            "session" => Some(Record::Session(serde_json::from_str(body)?)),
            "violation" => Some(Record::Violation(serde_json::from_str(body)?)),
            "cartridge_event" => Some(Record::CartridgeEvent(serde_json::from_str(body)?)),
            "pruned" => Some(Record::Pruned(serde_json::from_str(body)?)),
            "scope" => Some(Record::Scope(serde_json::from_str(body)?)),
            "access" => Some(Record::Access(serde_json::from_str(body)?)),
            "amendment" => Some(Record::Amendment(serde_json::from_str(body)?)),
            "review" => Some(Record::Review(serde_json::from_str(body)?)),
            _ => None,
        })
    }
}

/// Result of verifying the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// Entries checked.
    pub entries: u64,
    /// Hash of the last entry ([`GENESIS`] when empty).
    pub head: String,
    /// The first broken link, if any: entry position and what is wrong.
    pub first_broken: Option<(i64, String)>,
    /// Sessions whose samples were pruned by retention, so their digest was not recomputed.
    pub digests_unchecked: u64,
}

impl Verification {
    /// Whether every link and every recomputable digest matched.
    pub fn ok(&self) -> bool {
        self.first_broken.is_none()
    }
}

/// The verification as `VerifyAuditChain` answers it.
impl From<&Verification> for penwatch_proto::v1::VerifyResponse {
    fn from(v: &Verification) -> Self {
        let (first_broken, problem) = v.first_broken.clone().unwrap_or((0, String::new()));
        Self {
            ok: v.ok(),
            entries: v.entries,
            head: v.head.clone(),
            first_broken,
            problem,
            digests_unchecked: v.digests_unchecked,
        }
    }
}

/// The verification a gateway answered.
impl From<&penwatch_proto::v1::VerifyResponse> for Verification {
    fn from(r: &penwatch_proto::v1::VerifyResponse) -> Self {
        Self {
            entries: r.entries,
            head: r.head.clone(),
            first_broken: (!r.ok).then(|| (r.first_broken, r.problem.clone())),
            digests_unchecked: r.digests_unchecked,
        }
    }
}

/// The lines `verify` prints, read on the journal (`penwatch-gateway verify`) or through the
/// API (`penwatch verify`): the chain's length and head, the digests retention left unchecked,
/// and the verdict. What is wrong is the journal's text, so it is shown escaped.
impl std::fmt::Display for Verification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "audit chain: {} entries, head {}",
            self.entries, self.head
        )?;
        if self.digests_unchecked > 0 {
            writeln!(
                f,
                "{} sessions' samples were pruned by retention; their digests were not recomputed",
                self.digests_unchecked
            )?;
        }
        match &self.first_broken {
            None => writeln!(f, "verified: no entry was altered"),
            Some((seq, why)) => writeln!(
                f,
                "BROKEN at entry {seq}: {}",
                penwatch_proto::text::escape_controls(why)
            ),
        }
    }
}

/// Checks the links of a chain given in order; the first bad link is reported.
pub fn verify_links<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Verification {
    let mut prev = GENESIS.to_owned();
    let mut n = 0;
    for (expected_seq, e) in (1..).zip(entries) {
        n += 1;
        let problem = if e.seq != expected_seq {
            Some(format!(
                "entry {} missing (found {} next)",
                expected_seq, e.seq
            ))
        } else if e.prev_hash != prev {
            Some("prev_hash does not match the previous entry's hash".to_owned())
        } else if link_hash(&e.prev_hash, &e.kind, &e.body) != e.hash {
            Some("hash does not match the entry's content".to_owned())
        } else {
            None
        };
        if let Some(p) = problem {
            return Verification {
                entries: n,
                head: prev,
                first_broken: Some((e.seq, p)),
                digests_unchecked: 0,
            };
        }
        prev.clone_from(&e.hash);
    }
    Verification {
        entries: n,
        head: prev,
        first_broken: None,
        digests_unchecked: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verification_reads_the_same_from_the_journal_and_through_the_api() {
        let intact = Verification {
            entries: 12,
            head: "ab".repeat(32),
            first_broken: None,
            digests_unchecked: 2,
        };
        let answered = penwatch_proto::v1::VerifyResponse::from(&intact);
        assert!(answered.ok);
        assert_eq!(Verification::from(&answered), intact);
        assert_eq!(
            intact.to_string(),
            format!(
                "audit chain: 12 entries, head {}\n\
                 2 sessions' samples were pruned by retention; their digests were not recomputed\n\
                 verified: no entry was altered\n",
                "ab".repeat(32)
            )
        );

        let broken = Verification {
            first_broken: Some((7, "record altered\u{1b}[2J".into())),
            digests_unchecked: 0,
            ..intact
        };
        let answered = penwatch_proto::v1::VerifyResponse::from(&broken);
        assert!(!answered.ok);
        assert_eq!(Verification::from(&answered), broken);
        let text = broken.to_string();
        assert!(
            text.ends_with("BROKEN at entry 7: record altered\\u{1b}[2J\n"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2);
    }

    fn chain(bodies: &[&str]) -> Vec<Entry> {
        let mut prev = GENESIS.to_owned();
        bodies
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let hash = link_hash(&prev, "session", b);
                let e = Entry {
                    seq: i as i64 + 1,
                    kind: "session".into(),
                    body: (*b).into(),
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                e
            })
            .collect()
    }

    #[test]
    fn intact_chain_verifies() {
        let c = chain(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
        let v = verify_links(&c);
        assert!(v.ok());
        assert_eq!(v.entries, 3);
        assert_eq!(v.head, c[2].hash);
    }

    #[test]
    fn edited_or_removed_entries_are_found() {
        let mut c = chain(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
        c[1].body = "{\"a\":9}".into();
        assert_eq!(verify_links(&c).first_broken.map(|b| b.0), Some(2));
        let mut c = chain(&["{\"a\":1}", "{\"a\":2}", "{\"a\":3}"]);
        c.remove(1);
        assert_eq!(verify_links(&c).first_broken.map(|b| b.0), Some(3));
    }

    #[test]
    fn an_amendment_chains_as_its_own_kind_and_reads_back() {
        let body = r#"{"session_id":"s","device_id":"pen","clinic_id":"c01","operator_id":"op",
            "device_class":"salon","number":1,"amends":3,"reason":"late_after_end",
            "committed_ms":9,"messages":1,"first_seq":5,"last_seq":5,"after_sample_id":4,
            "last_sample_id":5,"samples_digest":"d","started_ms":1,"last_ms":5,"strokes":600,
            "max_depth_mm":0.8,"exceeded":false,"ended":true,"new_violation":false,
            "violation_changed":false}"#;
        let record = Record::parse("amendment", body)
            .expect("parses")
            .expect("a known kind");
        assert_eq!(record.kind(), "amendment");
        let Record::Amendment(a) = &record else {
            panic!("an amendment");
        };
        assert_eq!((a.number, a.amends, a.violation.as_ref()), (1, 3, None));
        let chained = record.body().expect("body");
        assert!(!chained.contains("violation\":null"), "{chained}");
        assert_eq!(
            Record::parse("amendment", &chained).expect("parses"),
            Some(record)
        );
        assert_eq!(
            (
                AmendReason::after("ended").as_str(),
                AmendReason::after("inactive").as_str()
            ),
            ("late_after_end", "replay_after_inactive")
        );
    }

    #[test]
    fn a_final_violation_chains_every_excursion_and_an_older_one_still_reads() {
        let body = r#"{"session_id":"s","device_id":"pen","clinic_id":"c01","operator_id":"op",
            "device_class":"medical","limit_mm":0.5,"binding":"zone","peak_depth_mm":0.7,
            "excess_mm":0.2,"first_above_ms":1000,"last_above_ms":1000,"strokes_above":120,
            "samples_above":1,"policy_version":"p1","others":[{"limit_mm":1.0,
            "binding":"operator","peak_depth_mm":1.1,"excess_mm":0.1,"first_above_ms":3000,
            "last_above_ms":3000,"strokes_above":130,"samples_above":1,"policy_version":"p1"}]}"#;
        let record = Record::parse("violation", body)
            .expect("parses")
            .expect("a known kind");
        let Record::Violation(v) = &record else {
            panic!("a violation");
        };
        assert_eq!(v.evidence.worst.binding, "zone");
        assert_eq!(v.evidence.others[0].binding, "operator");
        let again = Record::parse("violation", &record.body().expect("body")).expect("parses");
        assert_eq!(again, Some(record));

        // Written before excursions were kept: one excursion, its excess from peak and limit.
        let old = r#"{"session_id":"s","device_id":"pen","clinic_id":"c01","operator_id":"op",
            "device_class":"home","limit_mm":0.5,"binding":"class","peak_depth_mm":0.75,
            "first_above_ms":1000,"last_above_ms":3000,"strokes_above":240,"samples_above":2,
            "policy_version":"p1"}"#;
        let Some(Record::Violation(v)) = Record::parse("violation", old).expect("parses") else {
            panic!("a violation");
        };
        assert_eq!((v.evidence.worst.excess_mm, v.evidence.count()), (0.25, 1));
    }
}
