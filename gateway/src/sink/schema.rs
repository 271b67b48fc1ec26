//! Mapping journal records to InfluxDB points, and line-protocol encoding.
//!
//! Measurements: `pen_sample`, `pen_session`, `pen_violation`, `pen_session_amendment`,
//! `cartridge_wear`, `device_status`. A session has one `pen_session` point (its closed
//! record); late messages add `pen_session_amendment` points beside it, never a second
//! `pen_session`. Tags are low-cardinality (clinic, device, class, operator, models,
//! zone, event kinds); ids that grow without bound (session, cartridge) are fields, so the
//! series count stays proportional to the fleet, not to its history.
//!
//! Timestamps are device event time, made unique per device with a sequence number in the
//! sub-millisecond digits: `ts_ms * 1_000_000 + seq % 1_000_000` at nanosecond precision
//! (`ts_ms * 1000 + seq % 1000` at microseconds). The tag set and timestamp of a record are
//! a pure function of it, so a resend writes the same point again (InfluxDB overwrites it).

use std::fmt::Write as _;

use serde::Deserialize;

use crate::audit::Record;

use crate::fleet::Device;
use crate::journal::forward::{AuditRecord, CartridgeEventRecord, SampleRecord};

/// Timestamp precision of the points written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Nanoseconds: `ts_ms * 1_000_000 + seq % 1_000_000` (default).
    #[default]
    Ns,
    /// Microseconds: `ts_ms * 1000 + seq % 1000`.
    Us,
}

impl Precision {
    /// The API's name for it (`ns`, `us`).
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Ns => "ns",
            Precision::Us => "us",
        }
    }

    /// A point time from a millisecond time and a per-source sequence number.
    pub fn time(self, ts_ms: i64, seq: i64) -> i64 {
        match self {
            Precision::Ns => ts_ms
                .saturating_mul(1_000_000)
                .saturating_add(seq.rem_euclid(1_000_000)),
            Precision::Us => ts_ms
                .saturating_mul(1000)
                .saturating_add(seq.rem_euclid(1000)),
        }
    }
}

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    /// Float (non-finite values are left out of the line).
    F(f64),
    /// Integer.
    I(i64),
    /// Boolean.
    B(bool),
    /// String.
    S(String),
}

/// One InfluxDB point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Measurement.
    pub measurement: &'static str,
    /// Tags in key order; empty values are left out.
    pub tags: Vec<(&'static str, String)>,
    /// Fields.
    pub fields: Vec<(&'static str, Field)>,
    /// Time in the writer's precision.
    pub time: i64,
}

impl Point {
    /// Appends the point as one line of line protocol (with a trailing newline).
    pub fn write_line(&self, out: &mut String) {
        escape(out, self.measurement, &[',', ' ']);
        let mut tags: Vec<&(&str, String)> =
            self.tags.iter().filter(|(_, v)| !v.is_empty()).collect();
        tags.sort_by_key(|(k, _)| *k);
        for (k, v) in tags {
            out.push(',');
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            escape(out, v, &[',', '=', ' ']);
        }
        let mut sep = ' ';
        for (k, v) in &self.fields {
            if matches!(v, Field::F(f) if !f.is_finite()) {
                continue;
            }
            out.push(sep);
            sep = ',';
            escape(out, k, &[',', '=', ' ']);
            out.push('=');
            match v {
                Field::F(f) => {
                    let _ = write!(out, "{f}");
                }
                Field::I(i) => {
                    let _ = write!(out, "{i}i");
                }
                Field::B(b) => out.push_str(if *b { "true" } else { "false" }),
                Field::S(s) => {
                    out.push('"');
                    for c in s.chars() {
                        match c {
                            '"' | '\\' => {
                                out.push('\\');
                                out.push(c);
                            }
                            '\n' | '\r' => out.push(' '),
                            _ => out.push(c),
                        }
                    }
                    out.push('"');
                }
            }
        }
        let _ = writeln!(out, " {}", self.time);
    }
}

/// Escapes `chars` (and backslashes before them); line breaks become spaces.
fn escape(out: &mut String, s: &str, chars: &[char]) {
    if !s.contains(|c| c == '\n' || c == '\r' || chars.contains(&c)) {
        out.push_str(s);
        return;
    }
    for c in s.chars() {
        match c {
            '\n' | '\r' => out.push_str("\\ "),
            c if chars.contains(&c) => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
}

/// What a tag value escapes.
const TAG_SPECIAL: [char; 3] = [',', '=', ' '];

/// Appends the `pen_sample` point of `r` as one line of line protocol (with its newline).
///
/// `pen_sample` is lean on purpose. It is the one measurement written per message, and
/// InfluxDB pays for every tag and field of it on every point: two tags (one series per pen)
/// and three fields — the depth, the permitted depth and the verdict. A sample's session is
/// the pen's `pen_session` time range; its seq is in its timestamp's sub-millisecond digits;
/// everything else (operator, zone, cartridge, strokes, battery, rule, policy version) stays
/// in the journal and the API, and sessions, violations and `device_status` carry what charts
/// need of it. A conflicting version of a `seq` is a point of its own (tag
/// `conflict_version`), not an overwrite of the first.
///
/// Written straight into the line, as [`Point::write_line`] would write it (a unit test holds
/// the two to the same text), without building a [`Point`]: the sink encodes one per message.
pub fn write_sample(r: &SampleRecord, p: Precision, out: &mut String) {
    out.push_str("pen_sample");
    let mut version = itoa::Buffer::new();
    let version = if r.version > 0 {
        version.format(r.version)
    } else {
        ""
    };
    // Tags in key order, empty ones left out.
    for (key, value) in [
        ("clinic", r.clinic_id.as_str()),
        ("conflict_version", version),
        ("device", r.device_id.as_str()),
    ] {
        if !value.is_empty() {
            out.push(',');
            out.push_str(key);
            out.push('=');
            escape(out, value, &TAG_SPECIAL);
        }
    }
    let mut sep = ' ';
    for (key, value) in [("depth_mm", r.depth_mm), ("permitted_mm", r.permitted_mm)] {
        if value.is_finite() {
            out.push(sep);
            sep = ',';
            out.push_str(key);
            out.push('=');
            let _ = write!(out, "{value}");
        }
    }
    out.push(sep);
    out.push_str(if r.exceeded {
        "exceeded=true "
    } else {
        "exceeded=false "
    });
    out.push_str(itoa::Buffer::new().format(p.time(r.ts_ms, r.seq)));
    out.push('\n');
}

/// `pen_session`, `pen_violation` or `pen_session_amendment` from an audit entry; `None` for
/// other kinds.
pub fn audit(a: &AuditRecord, p: Precision) -> Option<Point> {
    let tags = |clinic: &str, device: &str, class: &str, operator: &str, extra| {
        vec![
            ("clinic", clinic.to_owned()),
            ("device", device.to_owned()),
            ("device_class", class.to_owned()),
            ("operator", operator.to_owned()),
            extra,
        ]
    };
    match a.record.as_ref()? {
        Record::Session(s) => Some(Point {
            measurement: "pen_session",
            tags: tags(
                &s.clinic_id,
                &s.device_id,
                &s.device_class,
                &s.operator_id,
                ("close_reason", s.close_reason.clone()),
            ),
            fields: vec![
                ("session_id", Field::S(s.session_id.clone())),
                ("cartridge_id", Field::S(s.cartridge_id.clone())),
                ("strokes", Field::I(s.strokes as i64)),
                ("samples", Field::I(s.journaled as i64)),
                ("max_depth_mm", Field::F(s.max_depth_mm)),
                ("permitted_mm", Field::F(s.permitted_mm.unwrap_or(f64::NAN))),
                ("exceeded", Field::B(s.exceeded)),
                (
                    "duration_s",
                    Field::F((s.last_ms - s.started_ms) as f64 / 1000.0),
                ),
                ("samples_digest", Field::S(s.samples_digest.clone())),
                ("audit_seq", Field::I(a.seq)),
            ],
            time: p.time(s.started_ms, a.seq),
        }),
        Record::Violation(v) => {
            let e = &v.evidence.worst;
            Some(Point {
                measurement: "pen_violation",
                tags: tags(
                    &v.clinic_id,
                    &v.device_id,
                    &v.device_class,
                    &v.operator_id,
                    ("binding", e.binding.clone()),
                ),
                fields: vec![
                    ("session_id", Field::S(v.session_id.clone())),
                    ("limit_mm", Field::F(e.limit_mm)),
                    ("peak_depth_mm", Field::F(e.peak_depth_mm)),
                    ("excess_mm", Field::F(e.excess_mm)),
                    ("strokes_above", Field::I(e.strokes_above as i64)),
                    ("samples_above", Field::I(e.samples_above as i64)),
                    (
                        "duration_above_s",
                        Field::F((e.last_above_ms - e.first_above_ms) as f64 / 1000.0),
                    ),
                    ("excursions", Field::I(v.evidence.count() as i64)),
                    ("policy_version", Field::S(e.policy_version.clone())),
                    ("audit_seq", Field::I(a.seq)),
                ],
                time: p.time(e.first_above_ms, a.seq),
            })
        }
        Record::Amendment(x) => {
            let mut fields = vec![
                ("session_id", Field::S(x.session_id.clone())),
                ("amendment", Field::I(x.number as i64)),
                ("amends_audit_seq", Field::I(x.amends)),
                ("messages", Field::I(x.messages as i64)),
                ("strokes", Field::I(x.strokes as i64)),
                ("max_depth_mm", Field::F(x.max_depth_mm)),
                ("exceeded", Field::B(x.exceeded)),
                ("ended", Field::B(x.ended)),
                ("new_violation", Field::B(x.new_violation)),
                ("violation_changed", Field::B(x.violation_changed)),
                ("samples_digest", Field::S(x.samples_digest.clone())),
                ("audit_seq", Field::I(a.seq)),
            ];
            if let Some(e) = &x.violation {
                fields.extend([
                    ("limit_mm", Field::F(e.worst.limit_mm)),
                    ("peak_depth_mm", Field::F(e.worst.peak_depth_mm)),
                    ("excess_mm", Field::F(e.worst.excess_mm)),
                    ("binding", Field::S(e.worst.binding.clone())),
                ]);
            }
            Some(Point {
                measurement: "pen_session_amendment",
                tags: tags(
                    &x.clinic_id,
                    &x.device_id,
                    &x.device_class,
                    &x.operator_id,
                    ("reason", x.reason.clone()),
                ),
                fields,
                time: p.time(x.started_ms, a.seq),
            })
        }
        // Cartridge events reach InfluxDB from their own table; the rest are the chain's own
        // (signatures are read from the journal, where `verify` checks them).
        Record::CartridgeEvent(_)
        | Record::Pruned(_)
        | Record::Scope(_)
        | Record::Access(_)
        | Record::Review(_) => None,
    }
}

/// `cartridge_wear`: a reuse or wear-level event.
pub fn cartridge_event(e: &CartridgeEventRecord, p: Precision) -> Point {
    Point {
        measurement: "cartridge_wear",
        tags: vec![
            ("cartridge_model", e.cartridge_model.clone()),
            ("clinic", e.clinic_id.clone()),
            ("device", e.device_id.clone()),
            ("kind", e.kind.clone()),
        ],
        fields: vec![
            ("cartridge_id", Field::S(e.cartridge_id.clone())),
            ("session_id", Field::S(e.session_id.clone())),
            ("strokes", Field::I(e.strokes)),
            ("detail", Field::S(e.detail.clone())),
            ("event_id", Field::I(e.id)),
        ],
        time: p.time(e.ts_ms, e.id),
    }
}

/// `device_status`: a pen's state at a snapshot taken at gateway time `at_ms`.
pub fn device_status(d: &Device, at_ms: i64, p: Precision) -> Point {
    let mut fields = vec![
        ("battery_pct", Field::F(d.battery_pct)),
        ("firmware", Field::S(d.firmware.clone())),
        ("last_seen_ms", Field::I(d.last_seen_ms)),
        ("last_event_ms", Field::I(d.last_event_ms)),
        ("clock_offset_ms", Field::I(d.clock_offset_ms)),
        ("last_seq", Field::I(d.last_seq as i64)),
        ("registered", Field::B(d.registered)),
        ("class_mismatch", Field::B(d.class_mismatch)),
        ("in_session", Field::B(!d.session_id.is_empty())),
        ("session_id", Field::S(d.session_id.clone())),
        ("depth_mm", Field::F(d.depth_mm)),
        ("permitted_mm", Field::F(d.permitted_mm)),
    ];
    if let Some(online) = d.online {
        fields.push(("online", Field::B(online)));
    }
    Point {
        measurement: "device_status",
        tags: vec![
            ("clinic", d.clinic_id.clone()),
            ("device", d.device_id.clone()),
            ("device_class", d.device_class.clone()),
            ("model", d.model.clone()),
        ],
        fields,
        time: p.time(at_ms, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64, ts_ms: i64) -> SampleRecord {
        SampleRecord {
            id: seq,
            device_id: "pen 1".into(),
            seq,
            version: 0,
            clinic_id: "c,01".into(),
            ts_ms,
            depth_mm: 0.5,
            permitted_mm: 0.5,
            exceeded: false,
        }
    }

    fn line(r: &SampleRecord) -> String {
        let mut out = String::new();
        write_sample(r, Precision::Ns, &mut out);
        out
    }

    #[test]
    fn sample_line_is_escaped_and_typed() {
        assert_eq!(
            line(&record(7, 1_790_000_000_123)),
            "pen_sample,clinic=c\\,01,device=pen\\ 1 depth_mm=0.5,permitted_mm=0.5,exceeded=false \
             1790000000123000007\n"
        );
        let mut out = String::new();
        Point {
            measurement: "m",
            tags: vec![("t", "a=b".into())],
            fields: vec![("s", Field::S("s\"1\\".into()))],
            time: 1,
        }
        .write_line(&mut out);
        assert_eq!(out, "m,t=a\\=b s=\"s\\\"1\\\\\" 1\n");
    }

    #[test]
    fn samples_of_one_millisecond_do_not_collide() {
        let a = line(&record(1_000_001, 5));
        let b = line(&record(1_000_002, 5));
        assert!(a.ends_with(" 5000001\n"), "{a}");
        assert!(b.ends_with(" 5000002\n"), "{b}");
        assert_eq!(Precision::Us.time(5, 1234), 5234);
    }

    #[test]
    fn non_finite_fields_are_left_out() {
        let mut r = record(1, 1);
        r.permitted_mm = f64::NAN;
        let out = line(&r);
        assert!(!out.contains("permitted_mm"), "{out}");
        assert!(out.contains("depth_mm="), "{out}");
    }

    #[test]
    fn a_sample_line_is_what_the_point_encoder_writes_for_it() {
        let point = |r: &SampleRecord| {
            let mut tags = vec![
                ("clinic", r.clinic_id.clone()),
                ("device", r.device_id.clone()),
            ];
            if r.version > 0 {
                tags.push(("conflict_version", r.version.to_string()));
            }
            let mut out = String::new();
            Point {
                measurement: "pen_sample",
                tags,
                fields: vec![
                    ("depth_mm", Field::F(r.depth_mm)),
                    ("permitted_mm", Field::F(r.permitted_mm)),
                    ("exceeded", Field::B(r.exceeded)),
                ],
                time: Precision::Ns.time(r.ts_ms, r.seq),
            }
            .write_line(&mut out);
            out
        };
        let plain = record(42, 1_790_000_000_123);
        let records = [
            plain.clone(),
            SampleRecord {
                version: 3,
                exceeded: true,
                depth_mm: 1.25,
                permitted_mm: 1.0,
                ..plain.clone()
            },
            SampleRecord {
                clinic_id: String::new(),
                device_id: "pen=\n2".into(),
                depth_mm: f64::INFINITY,
                permitted_mm: f64::NAN,
                ..plain.clone()
            },
            SampleRecord {
                seq: -5,
                ts_ms: -1,
                depth_mm: 1e-7,
                permitted_mm: 123_456_789.5,
                ..plain
            },
        ];
        for r in &records {
            assert_eq!(line(r), point(r), "{r:?}");
        }
    }

    #[test]
    fn an_amendment_is_a_point_of_its_own_not_a_second_session_point() {
        let body = serde_json::json!({
            "session_id": "s-1", "device_id": "pen-1", "clinic_id": "c01", "operator_id": "op",
            "device_class": "salon", "number": 1, "amends": 4, "reason": "replay_after_inactive",
            "committed_ms": 9, "messages": 3, "first_seq": 5, "last_seq": 7,
            "after_sample_id": 4, "last_sample_id": 7, "samples_digest": "d", "started_ms": 1000,
            "last_ms": 7000, "strokes": 840, "max_depth_mm": 1.2, "exceeded": true, "ended": true,
            "new_violation": true, "violation_changed": true,
            "violation": {"limit_mm": 1.0, "binding": "class", "peak_depth_mm": 1.2,
                "excess_mm": 0.2, "first_above_ms": 5000, "last_above_ms": 5000,
                "strokes_above": 120, "samples_above": 1, "policy_version": "p1"}
        });
        let p = audit(
            &AuditRecord {
                seq: 6,
                record: Record::parse("amendment", &body.to_string()).expect("parses"),
            },
            Precision::Ns,
        )
        .expect("amendment");
        assert_eq!(p.measurement, "pen_session_amendment");
        assert_eq!(p.time, 1_000_000_006);
        assert!(p.tags.contains(&("reason", "replay_after_inactive".into())));
        for field in [
            ("amendment", Field::I(1)),
            ("amends_audit_seq", Field::I(4)),
            ("messages", Field::I(3)),
            ("new_violation", Field::B(true)),
            ("peak_depth_mm", Field::F(1.2)),
            ("audit_seq", Field::I(6)),
        ] {
            assert!(p.fields.contains(&field), "{field:?} in {:?}", p.fields);
        }
    }

    #[test]
    fn audit_entries_map_to_sessions_and_violations() {
        let body = serde_json::json!({
            "session_id": "s-1", "device_id": "pen-1", "clinic_id": "c01", "operator_id": "op",
            "device_class": "home", "limit_mm": 0.5, "binding": "class", "peak_depth_mm": 0.75,
            "first_above_ms": 1000, "last_above_ms": 3000, "strokes_above": 240,
            "samples_above": 2, "policy_version": "p1",
        });
        let v = audit(
            &AuditRecord {
                seq: 3,
                record: Record::parse("violation", &body.to_string()).expect("parses"),
            },
            Precision::Ns,
        )
        .expect("violation");
        assert_eq!(v.measurement, "pen_violation");
        assert_eq!(v.time, 1_000_000_003);
        assert!(v.fields.contains(&("excess_mm", Field::F(0.25))));
        assert!(v.fields.contains(&("duration_above_s", Field::F(2.0))));
        let other = AuditRecord {
            seq: 4,
            record: Record::parse("policy", "{}").expect("unknown kinds are skipped"),
        };
        assert_eq!(audit(&other, Precision::Ns), None);
    }

    #[test]
    fn a_violation_point_carries_the_worst_excursion_never_a_mix_of_two() {
        // 0.7 mm under a 0.5 mm zone limit, then 1.1 mm under a 1.0 mm operator limit.
        let body = serde_json::json!({
            "session_id": "s-1", "device_id": "pen-1", "clinic_id": "c01", "operator_id": "op",
            "device_class": "medical", "limit_mm": 0.5, "binding": "zone", "peak_depth_mm": 0.7,
            "excess_mm": 0.7 - 0.5, "first_above_ms": 1000, "last_above_ms": 1000,
            "strokes_above": 120, "samples_above": 1, "policy_version": "p1",
            "others": [{"limit_mm": 1.0, "binding": "operator", "peak_depth_mm": 1.1,
                "excess_mm": 1.1 - 1.0, "first_above_ms": 5000, "last_above_ms": 5000,
                "strokes_above": 130, "samples_above": 1, "policy_version": "p1"}],
        });
        let v = audit(
            &AuditRecord {
                seq: 3,
                record: Record::parse("violation", &body.to_string()).expect("parses"),
            },
            Precision::Ns,
        )
        .expect("violation");
        assert!(v.tags.contains(&("binding", "zone".to_owned())));
        assert!(v.fields.contains(&("peak_depth_mm", Field::F(0.7))));
        assert!(v.fields.contains(&("limit_mm", Field::F(0.5))));
        assert!(v.fields.contains(&("excess_mm", Field::F(0.7 - 0.5))));
        assert!(v.fields.contains(&("excursions", Field::I(2))));
    }

    #[test]
    fn a_closed_session_point_counts_the_messages_its_digest_covers() {
        let body = serde_json::json!({
            "session_id": "s-1", "device_id": "pen-1", "clinic_id": "c01", "operator_id": "op",
            "device_class": "home", "cartridge_id": "cart-1", "started_ms": 1000,
            "last_ms": 61000, "strokes": 900, "max_depth_mm": 0.5, "permitted_mm": 0.5,
            "exceeded": false, "close_reason": "ended", "messages": 198,
            "last_sample_id": 7, "samples_digest": "ab",
        });
        let p = audit(
            &AuditRecord {
                seq: 9,
                record: Record::parse("session", &body.to_string()).expect("parses"),
            },
            Precision::Ns,
        )
        .expect("session");
        assert_eq!(p.measurement, "pen_session");
        assert!(p.fields.contains(&("samples", Field::I(198))));
        assert!(p.fields.contains(&("duration_s", Field::F(60.0))));
    }
}
