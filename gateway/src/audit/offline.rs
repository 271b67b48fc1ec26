//! `penwatch verify-export`: checks a JSONL export by itself, without the gateway.
//!
//! Every line must be canonical (as [`super::lines`] writes it). The chain lines must link
//! from their first entry to the head line (each hash recomputed from its body); each
//! chained record line must hash, with its entry's predecessor, to its entry's hash and not
//! be superseded by a later entry of the same session; each closed session's sample lines,
//! in order, must give its digest and count; a session that exceeded must be followed by its
//! violation. What the chain cannot cover (open sessions, cartridge events journaled before
//! the chain covered them) is counted, not trusted.

use std::collections::HashMap;
use std::io::BufRead;

use serde_json::{Map, Value};

use super::lines::{self, ChainLine, DigestSample, HeadLine};
use super::{Amendment, ClosedSession, GENESIS, Record, SampleDigest, link_hash};

/// What a valid export holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Lines read.
    pub lines: u64,
    /// Closed session lines, each checked against its chain entry.
    pub sessions: u64,
    /// Violation lines checked.
    pub violations: u64,
    /// Cartridge event lines checked.
    pub cartridge_events: u64,
    /// Amendment lines checked (late data for a closed session), each with the samples it
    /// added against its digest.
    pub amendments: u64,
    /// Review signature lines checked, with the chain entry each is bound to.
    pub reviews: u64,
    /// Policy version lines (journaled, not chained: not checked).
    pub policy_versions: u64,
    /// Sample lines checked against their session's digest.
    pub samples: u64,
    /// Chain entries linked up to the head.
    pub chain_entries: u64,
    /// The head: position and hash.
    pub head: Option<(i64, String)>,
    /// Open sessions: not final, so not covered by the chain.
    pub open_sessions: u64,
    /// Other lines the chain does not cover (an open session's violation and samples,
    /// cartridge events journaled before the chain covered them).
    pub uncovered: u64,
    /// Closed sessions exported without their samples: their digest was not recomputed.
    pub digests_unchecked: u64,
}

/// A line that does not verify, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Line number, from 1 (0 for the export as a whole).
    pub line: u64,
    /// What is wrong.
    pub why: String,
}

/// The result: what was checked, and every failure (none when the export verifies).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Counts.
    pub summary: Summary,
    /// Failures, by line.
    pub failures: Vec<Failure>,
}

impl Outcome {
    /// Whether the export verifies.
    pub fn ok(&self) -> bool {
        self.failures.is_empty()
    }
}

type Key = (String, String);

/// A session's lines so far.
struct Block {
    line: u64,
    key: Key,
    /// The chained record, for a closed session.
    closed: Option<ClosedSession>,
    /// The chained amendment, for the lines of one (its samples follow it).
    amendment: Option<Amendment>,
    digest: SampleDigest,
    samples: u64,
    /// Lines of its first and last sample.
    sample_lines: (u64, u64),
    violation: bool,
}

/// A record line to check against the chain entry it names.
struct Claim {
    line: u64,
    kind: String,
    seq: i64,
    body: String,
}

#[derive(Default)]
struct Checker {
    out: Outcome,
    block: Option<Block>,
    claims: Vec<Claim>,
    /// Sessions whose line says they are open, by key.
    claimed_open: Vec<(u64, Key)>,
    chain: Vec<(u64, ChainLine)>,
    head: Option<(u64, HeadLine)>,
    /// Review lines with the chain position and hash each is bound to.
    bound_heads: Vec<(u64, i64, String)>,
}

/// Verifies an export read from `input`; only reading it can fail.
pub fn verify(input: impl BufRead) -> std::io::Result<Outcome> {
    let mut c = Checker::default();
    for (n, line) in (1..).zip(input.split(b'\n')) {
        c.out.summary.lines = n;
        let checked = match String::from_utf8(line?) {
            Ok(line) => c.line(n, &line),
            Err(_) => Err("not UTF-8: its bytes were changed".to_owned()),
        };
        if let Err(why) = checked {
            c.fail(n, why);
        }
    }
    c.end_block();
    c.check_chain();
    c.out.failures.sort_by_key(|f| f.line);
    Ok(c.out)
}

fn key(fields: &Map<String, Value>) -> Result<Key, String> {
    let text = |name: &str| {
        fields
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("no {name}"))
    };
    Ok((text("device_id")?, text("session_id")?))
}

impl Checker {
    fn fail(&mut self, line: u64, why: impl Into<String>) {
        self.out.failures.push(Failure {
            line,
            why: why.into(),
        });
    }

    fn line(&mut self, n: u64, line: &str) -> Result<(), String> {
        let value: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let canonical = value.to_string();
        if canonical != line {
            return Err("not in the export's canonical form: its bytes were changed".into());
        }
        let Value::Object(fields) = value else {
            return Err("not a JSON object".into());
        };
        let record = fields
            .get(lines::RECORD)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let chained = lines::chained_body(&fields).map_err(|e| e.to_string())?;
        match (record.as_str(), chained) {
            ("chain", _) => {
                let entry: ChainLine = serde_json::from_value(Value::Object(fields))
                    .map_err(|e| format!("chain entry: {e}"))?;
                self.chain.push((n, entry));
            }
            ("head", _) => {
                let head: HeadLine = serde_json::from_value(Value::Object(fields))
                    .map_err(|e| format!("head: {e}"))?;
                if self.head.is_some() {
                    return Err("a second head line".into());
                }
                self.head = Some((n, head));
            }
            ("session", claim) => self.session(n, &fields, claim)?,
            ("violation", claim) => self.violation(n, &fields, claim)?,
            ("cartridge_event", claim) => self.cartridge_event(n, &fields, claim)?,
            ("sample", _) => self.sample(n, fields)?,
            ("amendment", Some(claim)) => self.amendment(n, &fields, claim)?,
            ("amendment", None) => return Err("an amendment without its chain entry".into()),
            ("review", Some(claim)) => {
                self.end_block();
                let Record::Review(r) = self.claim(n, claim)? else {
                    return Err("a review line naming another kind of entry".into());
                };
                self.out.summary.reviews += 1;
                self.bound_heads.push((n, r.head_seq, r.head_hash));
            }
            ("review", None) => return Err("a review signature without its chain entry".into()),
            ("policy_version", None) => {
                self.end_block();
                self.out.summary.policy_versions += 1;
            }
            (other, _) => return Err(format!("unknown record {other:?}")),
        }
        Ok(())
    }

    fn claim(
        &mut self,
        line: u64,
        (kind, seq, body): (String, i64, String),
    ) -> Result<Record, String> {
        let record = Record::parse(&kind, &body)
            .map_err(|e| format!("{kind}: {e}"))?
            .ok_or_else(|| format!("unknown record kind {kind:?}"))?;
        self.claims.push(Claim {
            line,
            kind,
            seq,
            body,
        });
        Ok(record)
    }

    fn session(
        &mut self,
        n: u64,
        fields: &Map<String, Value>,
        claim: Option<(String, i64, String)>,
    ) -> Result<(), String> {
        self.end_block();
        let key = key(fields)?;
        let closed = match claim {
            Some(claim) => match self.claim(n, claim)? {
                Record::Session(s) => Some(s),
                _ => return Err("not a session record".into()),
            },
            None if fields.get("state").and_then(Value::as_str) == Some("open") => {
                self.out.summary.open_sessions += 1;
                self.claimed_open.push((n, key.clone()));
                None
            }
            None => return Err("a closed session line without its chain entry".into()),
        };
        self.out.summary.sessions += u64::from(closed.is_some());
        self.block = Some(Block {
            line: n,
            key,
            closed,
            amendment: None,
            digest: SampleDigest::default(),
            samples: 0,
            sample_lines: (0, 0),
            violation: false,
        });
        Ok(())
    }

    /// An amendment of the session whose lines come just before; the samples it added follow.
    fn amendment(
        &mut self,
        n: u64,
        fields: &Map<String, Value>,
        claim: (String, i64, String),
    ) -> Result<(), String> {
        let key = key(fields)?;
        if self.block_of(&key, "amendment")?.closed.is_none() {
            return Err("an amendment of a session exported as open".into());
        }
        self.end_block();
        let Record::Amendment(a) = self.claim(n, claim)? else {
            return Err("an amendment line naming another kind of entry".into());
        };
        self.out.summary.amendments += 1;
        self.block = Some(Block {
            line: n,
            key,
            closed: None,
            amendment: Some(a),
            digest: SampleDigest::default(),
            samples: 0,
            sample_lines: (0, 0),
            violation: false,
        });
        Ok(())
    }

    /// The current session's block, if `key` is its key.
    fn block_of(&mut self, key: &Key, what: &str) -> Result<&mut Block, String> {
        match &mut self.block {
            Some(b) if &b.key == key => Ok(b),
            _ => Err(format!(
                "{what} of session {}/{} outside that session's lines",
                key.0, key.1
            )),
        }
    }

    fn violation(
        &mut self,
        n: u64,
        fields: &Map<String, Value>,
        claim: Option<(String, i64, String)>,
    ) -> Result<(), String> {
        let key = key(fields)?;
        let block = self.block_of(&key, "violation")?;
        if block.violation {
            return Err("a second violation line for the session".into());
        }
        block.violation = true;
        let open = block.closed.is_none();
        match claim {
            Some(claim) if !open => {
                self.claim(n, claim)?;
                self.out.summary.violations += 1;
            }
            None if open => self.out.summary.uncovered += 1,
            _ => return Err("a violation line that does not match its session's state".into()),
        }
        Ok(())
    }

    fn cartridge_event(
        &mut self,
        n: u64,
        fields: &Map<String, Value>,
        claim: Option<(String, i64, String)>,
    ) -> Result<(), String> {
        self.block_of(&key(fields)?, "cartridge event")?;
        match claim {
            Some(claim) => {
                self.claim(n, claim)?;
                self.out.summary.cartridge_events += 1;
            }
            None => self.out.summary.uncovered += 1,
        }
        Ok(())
    }

    fn sample(&mut self, n: u64, mut fields: Map<String, Value>) -> Result<(), String> {
        fields.remove(lines::RECORD);
        let sample: DigestSample =
            serde_json::from_value(Value::Object(fields)).map_err(|e| format!("sample: {e}"))?;
        let key = (sample.device_id.clone(), sample.session_id.clone());
        let block = self.block_of(&key, "sample")?;
        if block.closed.is_some() || block.amendment.is_some() {
            block.digest.add_fields(&sample.fields());
            block.samples += 1;
            if block.sample_lines.0 == 0 {
                block.sample_lines.0 = n;
            }
            block.sample_lines.1 = n;
            self.out.summary.samples += 1;
        } else {
            self.out.summary.uncovered += 1;
        }
        Ok(())
    }

    /// Checks the finished session's samples and violation.
    fn end_block(&mut self) {
        let Some(b) = self.block.take() else { return };
        if let Some(a) = &b.amendment {
            if b.samples == 0 {
                self.out.summary.digests_unchecked += 1;
            } else if b.samples != a.messages || b.digest.finish() != a.samples_digest {
                self.fail(
                    b.line,
                    format!(
                        "the samples amendment {} of session {}/{} added (lines {} to {}) do not \
                         match its digest ({} sample lines, {} recorded)",
                        a.number,
                        b.key.0,
                        b.key.1,
                        b.sample_lines.0,
                        b.sample_lines.1,
                        b.samples,
                        a.messages
                    ),
                );
            }
            return;
        }
        let Some(s) = b.closed else { return };
        if b.samples > 0 {
            if b.samples != s.journaled || b.digest.finish() != s.samples_digest {
                self.fail(
                    b.line,
                    format!(
                        "the samples of session {}/{} (lines {} to {}) do not match its digest \
                         ({} sample lines, {} recorded)",
                        b.key.0,
                        b.key.1,
                        b.sample_lines.0,
                        b.sample_lines.1,
                        b.samples,
                        s.journaled
                    ),
                );
            }
        } else if s.journaled > 0 {
            self.out.summary.digests_unchecked += 1;
        }
        if s.exceeded != b.violation {
            let why = if s.exceeded {
                "exceeded its permitted depth, but its violation line is missing"
            } else {
                "did not exceed its permitted depth, yet has a violation line"
            };
            self.fail(b.line, format!("session {}/{} {why}", b.key.0, b.key.1));
        }
    }

    /// The chain's links up to the head, then every claim against its entry.
    fn check_chain(&mut self) {
        let chain = std::mem::take(&mut self.chain);
        let Some((first_line, first)) = chain.first() else {
            self.fail(0, "no chain entries: nothing to verify the records against");
            return;
        };
        if first.seq == 1 && first.prev_hash != GENESIS {
            self.fail(
                *first_line,
                "the first entry does not follow the genesis hash",
            );
        }
        let mut withheld = 0;
        let mut prev: Option<&ChainLine> = None;
        for (n, e) in &chain {
            if let Some(p) = prev {
                if e.seq != p.seq + 1 {
                    self.fail(*n, format!("chain entry {} follows entry {}", e.seq, p.seq));
                } else if e.prev_hash != p.hash {
                    self.fail(
                        *n,
                        format!("chain entry {} does not link to entry {}", e.seq, p.seq),
                    );
                }
            }
            match &e.body {
                Some(body) if link_hash(&e.prev_hash, &e.kind, body) != e.hash => {
                    self.fail(
                        *n,
                        format!("chain entry {}: hash does not match its content", e.seq),
                    );
                }
                Some(_) => {}
                None => withheld += 1,
            }
            prev = Some(e);
        }
        if withheld > 0 {
            self.fail(
                0,
                format!(
                    "{withheld} chain entries are withheld (records outside the exporter's \
                     clinics): their links cannot be recomputed; export as a reviewer to verify \
                     offline"
                ),
            );
        }
        let last = &chain[chain.len() - 1].1;
        match &self.head {
            None => self.fail(0, "no head line: the export is cut short"),
            Some((n, h)) if (h.seq, &h.hash) != (last.seq, &last.hash) => {
                let n = *n;
                self.fail(
                    n,
                    format!("the head is not the last chain entry ({})", last.seq),
                );
            }
            Some(_) => {}
        }
        self.out.summary.chain_entries = chain.len() as u64;
        self.out.summary.head = self.head.as_ref().map(|(_, h)| (h.seq, h.hash.clone()));
        self.check_claims(&chain);
    }

    fn check_claims(&mut self, chain: &[(u64, ChainLine)]) {
        let first = chain[0].1.seq;
        let at = |seq: i64| {
            usize::try_from(seq - first)
                .ok()
                .and_then(|i| chain.get(i))
                .map(|(_, e)| e)
        };
        let mut last_session: HashMap<Key, i64> = HashMap::new();
        for (_, e) in chain {
            if let (Some(body), "session") = (&e.body, e.kind.as_str())
                && let Ok(Some(Record::Session(s))) = Record::parse(&e.kind, body)
            {
                last_session.insert((s.device_id, s.session_id), e.seq);
            }
        }
        for c in std::mem::take(&mut self.claims) {
            let why = match at(c.seq) {
                None => Some(format!(
                    "names chain entry {}, which the export does not hold",
                    c.seq
                )),
                Some(e) if e.kind != c.kind => Some(format!(
                    "names chain entry {}, which is a {}",
                    c.seq, e.kind
                )),
                Some(e) if link_hash(&e.prev_hash, &c.kind, &c.body) != e.hash => {
                    Some(format!("does not match chain entry {}", c.seq))
                }
                Some(_) => None,
            };
            let why = why.or_else(|| {
                let Ok(Some(Record::Session(s))) = Record::parse(&c.kind, &c.body) else {
                    return None;
                };
                let latest = last_session.get(&(s.device_id, s.session_id))?;
                (*latest > c.seq).then(|| format!("superseded by chain entry {latest}"))
            });
            if let Some(why) = why {
                self.fail(c.line, format!("{} record {why}", c.kind));
            }
        }
        for (n, seq, hash) in std::mem::take(&mut self.bound_heads) {
            let bound = if seq == 0 {
                Some(hash == GENESIS)
            } else {
                at(seq).map(|e| e.hash == hash)
            };
            match bound {
                Some(true) => {}
                Some(false) => self.fail(
                    n,
                    format!("review bound to chain entry {seq}, whose hash is another"),
                ),
                None => self.fail(
                    n,
                    format!("review bound to chain entry {seq}, which the export does not hold"),
                ),
            }
        }
        for (n, key) in std::mem::take(&mut self.claimed_open) {
            if let Some(seq) = last_session.get(&key) {
                self.fail(
                    n,
                    format!(
                        "an open session line, but chain entry {seq} records the session as \
                         closed (late data reopened it, or the line was edited)"
                    ),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::lines::{ChainLine, HeadLine, chained_line, encode};
    use crate::audit::{AccessBatch, Entry, FinalViolation};
    use crate::sessions::{Evidence, Excursion};

    fn sample(seq: i64, depth_mm: f64) -> DigestSample {
        DigestSample {
            session_id: "s".into(),
            device_id: "pen".into(),
            seq,
            timestamp_ms: 1000 * seq,
            event: "sample".into(),
            depth_mm,
            session_strokes: 100 * seq,
            cartridge_strokes: 100 * seq,
            operator_id: "op".into(),
            cartridge_id: "cart".into(),
            zone: String::new(),
            permitted_mm: 0.5,
            binding_rule: "class".into(),
            exceeded: depth_mm > 0.5,
            policy_version: "p1".into(),
            version: 0,
        }
    }

    /// An export of one session that exceeded (two samples) and an access run after it.
    fn export() -> String {
        let samples = [sample(1, 0.5), sample(2, 0.75)];
        let mut digest = SampleDigest::default();
        samples.iter().for_each(|s| digest.add_fields(&s.fields()));
        let session = Record::Session(ClosedSession {
            session_id: "s".into(),
            device_id: "pen".into(),
            clinic_id: "c01".into(),
            operator_id: "op".into(),
            device_class: "home".into(),
            cartridge_id: "cart".into(),
            started_ms: 1000,
            last_ms: 2000,
            strokes: 200,
            max_depth_mm: 0.75,
            permitted_mm: Some(0.5),
            exceeded: true,
            close_reason: "ended".into(),
            journaled: 2,
            last_sample_id: 2,
            samples_digest: digest.finish(),
            conflicting: 0,
        });
        let violation = Record::Violation(FinalViolation {
            session_id: "s".into(),
            device_id: "pen".into(),
            clinic_id: "c01".into(),
            operator_id: "op".into(),
            device_class: "home".into(),
            evidence: Evidence::new(Excursion {
                limit_mm: 0.5,
                binding: "class".into(),
                peak_depth_mm: 0.75,
                excess_mm: 0.25,
                first_above_ms: 2000,
                last_above_ms: 2000,
                strokes_above: 100,
                samples_above: 1,
                policy_version: "p1".into(),
            }),
        });
        let access = Record::Access(AccessBatch {
            first_id: 1,
            last_id: 4,
            digest: "ab".repeat(32),
        });
        let mut prev = GENESIS.to_owned();
        let chain: Vec<Entry> = (1..)
            .zip([session, violation, access])
            .map(|(seq, r)| {
                let body = r.body().expect("body");
                let hash = link_hash(&prev, r.kind(), &body);
                Entry {
                    seq,
                    kind: r.kind().into(),
                    body,
                    prev_hash: std::mem::replace(&mut prev, hash.clone()),
                    hash,
                }
            })
            .collect();
        let mut out = vec![
            chained_line(&chain[0]).expect("session"),
            chained_line(&chain[1]).expect("violation"),
        ];
        for s in &samples {
            let mut v = serde_json::to_value(s).expect("sample");
            v["record"] = "sample".into();
            out.push(v.to_string());
        }
        out.extend(
            chain
                .iter()
                .map(|e| encode(&ChainLine::new(e, false)).expect("chain")),
        );
        out.push(
            encode(&HeadLine {
                record: "head".into(),
                seq: 3,
                hash: prev,
            })
            .expect("head"),
        );
        out.join("\n") + "\n"
    }

    fn check(text: &str) -> Outcome {
        verify(text.as_bytes()).expect("read")
    }

    #[test]
    fn an_intact_export_verifies_with_its_counts_and_head() {
        let o = check(&export());
        assert!(o.ok(), "{:?}", o.failures);
        let s = o.summary;
        assert_eq!(
            (s.sessions, s.violations, s.samples, s.chain_entries),
            (1, 1, 2, 3)
        );
        assert_eq!(s.head.map(|h| h.0), Some(3));
    }

    #[test]
    fn every_changed_character_and_every_deleted_or_moved_line_is_caught() {
        let text = export();
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            for (at, c) in line
                .char_indices()
                .filter(|(_, c)| c.is_ascii_alphanumeric())
            {
                let other = match c {
                    '9' => '0',
                    'z' => 'a',
                    'Z' => 'A',
                    c => char::from(c as u8 + 1),
                };
                let mut changed = lines.clone();
                let edited = format!("{}{other}{}", &line[..at], &line[at + 1..]);
                changed[i] = &edited;
                let o = check(&(changed.join("\n") + "\n"));
                assert!(!o.ok(), "line {} char {at} {c}->{other} passed", i + 1);
            }
            let mut without = lines.clone();
            without.remove(i);
            assert!(!check(&without.join("\n")).ok(), "line {} deleted", i + 1);
        }
        let mut swapped = lines.clone();
        swapped.swap(2, 3);
        let o = check(&swapped.join("\n"));
        assert!(o.failures.iter().any(|f| f.why.contains("digest")), "{o:?}");
        let mut spaced = lines.clone();
        let loose = lines[2].replace(':', ": ");
        spaced[2] = &loose;
        assert!(!check(&spaced.join("\n")).ok(), "a space added");
        let mut bytes = text.clone().into_bytes();
        bytes[10] = 0xff;
        let o = verify(bytes.as_slice()).expect("read");
        assert_eq!(o.failures[0].line, 1, "{o:?}");
    }
}
