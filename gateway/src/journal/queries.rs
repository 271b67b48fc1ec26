//! Read queries for the API: sessions, violations, timelines, operators, cartridges and the
//! export, on a read-only connection beside the committer (WAL lets readers run while it
//! writes).
//!
//! Filtering is by a [`Selection`]; listings are keyset-paged by `(started_ms, device_id,
//! session_id)` so a page never repeats or skips a row while new sessions arrive.

use std::sync::LazyLock;

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, params, params_from_iter};

use super::rows::{self, SAMPLE_COLUMNS};
use super::{Reader, Result};
use crate::cartridges::Cartridge;
use crate::decode::Reading;
use crate::sessions::{Evidence, Excursion, Session, Verdict};

/// Which rows a query selects. Empty lists do not filter; `clinics: None` means every clinic
/// and `Some(empty)` means none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selection {
    /// Clinics in scope.
    pub clinics: Option<Vec<String>>,
    /// Pen serials.
    pub devices: Vec<String>,
    /// Operator staff ids.
    pub operators: Vec<String>,
    /// Effective device classes (short names).
    pub classes: Vec<String>,
    /// Earliest session start (device time, Unix ms), inclusive.
    pub from_ms: Option<i64>,
    /// Latest session start (device time, Unix ms), exclusive.
    pub to_ms: Option<i64>,
    /// Only sessions that exceeded their permitted depth.
    pub only_exceeded: bool,
}

impl Selection {
    /// Whether the clinic is in scope.
    pub fn clinic_selected(&self, clinic: &str) -> bool {
        self.clinics
            .as_ref()
            .is_none_or(|c| c.iter().any(|x| x == clinic))
    }

    /// Whether a row with these attributes is selected (for devices and live events);
    /// `ts_ms` is checked against the time range.
    pub fn matches(
        &self,
        clinic: &str,
        device: &str,
        operator: &str,
        class: &str,
        ts_ms: i64,
        exceeded: bool,
    ) -> bool {
        let listed = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        self.clinic_selected(clinic)
            && listed(&self.devices, device)
            && listed(&self.operators, operator)
            && listed(&self.classes, class)
            && self.from_ms.is_none_or(|f| ts_ms >= f)
            && self.to_ms.is_none_or(|t| ts_ms < t)
            && (!self.only_exceeded || exceeded)
    }

    /// SQL condition over the `sessions` table aliased `s`, and its parameters.
    fn condition(&self) -> (String, Vec<Value>) {
        let mut sql = vec!["1".to_owned()];
        let mut args = Vec::new();
        let mut list = |column: &str, values: &[String], sql: &mut Vec<String>| {
            let marks = vec!["?"; values.len()].join(", ");
            sql.push(format!("s.{column} IN ({marks})"));
            args.extend(values.iter().map(|v| Value::Text(v.clone())));
        };
        if let Some(clinics) = &self.clinics {
            if clinics.is_empty() {
                sql.push("0".to_owned());
            } else {
                list("clinic_id", clinics, &mut sql);
            }
        }
        for (column, values) in [
            ("device_id", &self.devices),
            ("operator_id", &self.operators),
            ("device_class", &self.classes),
        ] {
            if !values.is_empty() {
                list(column, values, &mut sql);
            }
        }
        if let Some(f) = self.from_ms {
            sql.push("s.started_ms >= ?".to_owned());
            args.push(Value::Integer(f));
        }
        if let Some(t) = self.to_ms {
            sql.push("s.started_ms < ?".to_owned());
            args.push(Value::Integer(t));
        }
        if self.only_exceeded {
            sql.push(format!(
                "(s.exceeded = 1 OR EXISTS (SELECT 1 {AMENDED} AND a.exceeded = 1))"
            ));
        }
        (sql.join(" AND "), args)
    }
}

/// The last row of a page: the next page starts after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// Session start, Unix ms.
    pub started_ms: i64,
    /// Pen serial.
    pub device_id: String,
    /// Session id.
    pub session_id: String,
}

/// Listing order by session start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Newest first (lists).
    NewestFirst,
    /// Oldest first (export).
    OldestFirst,
}

impl Order {
    fn sql(self, after: bool) -> (&'static str, &'static str) {
        match self {
            Order::NewestFirst => (
                if after {
                    "(s.started_ms, s.device_id, s.session_id) < (?, ?, ?)"
                } else {
                    "1"
                },
                "s.started_ms DESC, s.device_id DESC, s.session_id DESC",
            ),
            Order::OldestFirst => (
                if after {
                    "(s.started_ms, s.device_id, s.session_id) > (?, ?, ?)"
                } else {
                    "1"
                },
                "s.started_ms, s.device_id, s.session_id",
            ),
        }
    }
}

/// The amendments of session `s` (a subquery's `FROM` and `WHERE`).
const AMENDED: &str =
    "FROM amendments a WHERE a.device_id = s.device_id AND a.session_id = s.session_id";

/// A session as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// The record (a closed session's as chained; its amendments never rewrite it).
    pub session: Session,
    /// Amendments of the closed session by late messages.
    pub amendments: u32,
    /// An amendment found the session exceeded (its record did not).
    pub exceeded_by_amendment: bool,
    /// Still open.
    pub open: bool,
    /// `ended` or `inactive` once closed.
    pub close_reason: Option<String>,
    /// Digest over its samples once closed.
    pub samples_digest: Option<String>,
}

impl StoredSession {
    /// Its position, for the page token.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            started_ms: self.session.started_ms,
            device_id: self.session.device_id.clone(),
            session_id: self.session.session_id.clone(),
        }
    }
}

/// A violation as stored, with the start of its session.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredViolation {
    /// Session id.
    pub session_id: String,
    /// Pen serial.
    pub device_id: String,
    /// Clinic.
    pub clinic_id: String,
    /// Operator staff id.
    pub operator_id: String,
    /// Effective class.
    pub device_class: String,
    /// The evidence.
    pub evidence: Evidence,
    /// The session has closed.
    pub final_: bool,
    /// Session start, Unix ms.
    pub started_ms: i64,
    /// The policy does not know the session's operator.
    pub unknown_operator: bool,
    /// Messages of the session that conflict with another of the same `(device_id, seq)`.
    pub conflicting: u64,
    /// The amendment that raised it (0: the session's own record).
    pub amendment: u64,
    /// Amendments of the session.
    pub session_amendments: u32,
}

/// An amendment as stored: the chained record and its chain position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAmendment {
    /// The record, as chained.
    pub amendment: crate::audit::Amendment,
    /// Its chain position.
    pub audit_seq: i64,
}

impl StoredViolation {
    /// Its position, for the page token.
    pub fn cursor(&self) -> Cursor {
        Cursor {
            started_ms: self.started_ms,
            device_id: self.device_id.clone(),
            session_id: self.session_id.clone(),
        }
    }
}

/// One point of a session's depth timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct TimelinePoint {
    /// Device time, Unix ms.
    pub ts_ms: i64,
    /// Set needle protrusion, mm.
    pub depth_mm: f64,
    /// Permitted depth, mm.
    pub permitted_mm: f64,
    /// Cumulative strokes of the session.
    pub session_strokes: u64,
    /// Zone (short name), where reported.
    pub zone: Option<String>,
    /// Above the permitted depth.
    pub exceeded: bool,
}

/// At most `max` points (0 = all): the points are cut into `max` equal runs and each run
/// keeps its deepest point (the first one on a tie), so no excursion disappears.
pub fn downsample(points: Vec<TimelinePoint>, max: usize) -> Vec<TimelinePoint> {
    let n = points.len();
    if max == 0 || n <= max {
        return points;
    }
    let mut out = Vec::with_capacity(max);
    let mut best: Option<TimelinePoint> = None;
    let mut bucket = 0;
    for (i, p) in points.into_iter().enumerate() {
        let b = i * max / n;
        if b != bucket {
            out.extend(best.take());
            bucket = b;
        }
        if best.as_ref().is_none_or(|q| p.depth_mm > q.depth_mm) {
            best = Some(p);
        }
    }
    out.extend(best);
    out
}

/// Sessions and violations of one operator.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorStats {
    /// Clinic.
    pub clinic_id: String,
    /// Staff id.
    pub operator_id: String,
    /// Sessions.
    pub sessions: u64,
    /// Sessions that exceeded.
    pub violations: u64,
    /// Deepest depth in any of them, mm.
    pub max_depth_mm: f64,
}

/// A cartridge reuse event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReuseRow {
    /// Cartridge id.
    pub cartridge_id: String,
    /// Pen serial of the reusing session.
    pub device_id: String,
    /// Reusing session.
    pub session_id: String,
    /// Device time, Unix ms.
    pub ts_ms: i64,
    /// What happened.
    pub detail: String,
}

/// A journaled sample with its verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleRow {
    /// The reading.
    pub reading: Reading,
    /// Its verdict.
    pub verdict: Verdict,
    /// Gateway time received, Unix ms.
    pub received_ms: i64,
}

/// The `seq` range of session `(?1, ?2)`: an open session's reaches to the end of the pen's
/// sequence. Its samples are found through the `(device_id, seq)` index within it.
const SESSION_SEQS: &str = "\
    (SELECT min_seq FROM sessions WHERE device_id = ?1 AND session_id = ?2) AND \
    (SELECT IIF(state = 'closed' AND max_seq > 0, max_seq, 9223372036854775807) FROM sessions \
     WHERE device_id = ?1 AND session_id = ?2)";

/// The journal ids of session `(?1, ?2)`'s record: up to the first amendment's (messages
/// journaled after the session closed belong to its amendments).
const RECORD_IDS: &str = "id <= IFNULL((SELECT json_extract(record, '$.after_sample_id') \
    FROM amendments WHERE device_id = ?1 AND session_id = ?2 AND number = 1), \
    9223372036854775807)";

/// What a listing reads of a session (with its amendments' count and whether one found it
/// exceeded).
static STORED_SESSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "s.record, s.state, s.close_reason, s.samples_digest, \
         (SELECT COUNT(*) {AMENDED}) AS amendments, \
         EXISTS (SELECT 1 {AMENDED} AND a.new_violation = 1) AS exceeded_by_amendment"
    )
});

/// A session row as read, before its record is decoded.
struct SessionRow {
    record: String,
    state: String,
    close_reason: Option<String>,
    samples_digest: Option<String>,
    amendments: u32,
    exceeded_by_amendment: bool,
}

fn stored_session(r: &rusqlite::Row<'_>) -> rusqlite::Result<SessionRow> {
    Ok(SessionRow {
        record: r.get("record")?,
        state: r.get("state")?,
        close_reason: r.get("close_reason")?,
        samples_digest: r.get("samples_digest")?,
        amendments: r.get("amendments")?,
        exceeded_by_amendment: r.get("exceeded_by_amendment")?,
    })
}

fn decode_session(row: SessionRow) -> Result<StoredSession> {
    Ok(StoredSession {
        session: serde_json::from_str(&row.record)?,
        amendments: row.amendments,
        exceeded_by_amendment: row.exceeded_by_amendment,
        open: row.state == "open",
        close_reason: row.close_reason,
        samples_digest: row.samples_digest,
    })
}

/// What a listing reads of a violation (with its session's start): the worst excursion from
/// its columns, the other excursions from the session's record (or from the amendment that
/// raised it).
static STORED_VIOLATION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "v.session_id, v.device_id, v.clinic_id, v.operator_id, \
         v.device_class, v.limit_mm, v.binding, v.peak_depth_mm, v.first_above_ms, \
         v.last_above_ms, v.strokes_above, v.samples_above, v.policy_version, v.final, \
         v.amendment, s.started_ms, s.record, \
         (SELECT COUNT(*) {AMENDED}) AS session_amendments, \
         (SELECT a.record FROM amendments a WHERE a.device_id = v.device_id \
            AND a.session_id = v.session_id AND a.number = v.amendment) AS amendment_record"
    )
});

fn json_column<T: serde::de::DeserializeOwned>(text: &str) -> rusqlite::Result<T> {
    serde_json::from_str(text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// A violation row with its session's record; the worst excursion is in the columns, the
/// other excursions and the session's flags in the record (the other excursions of one an
/// amendment raised in the amendment's record).
fn violation_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredViolation> {
    let peak_depth_mm: f64 = r.get("peak_depth_mm")?;
    let limit_mm: f64 = r.get("limit_mm")?;
    let record: Session = json_column(&r.get::<_, String>("record")?)?;
    let amended: Option<crate::audit::Amendment> = r
        .get::<_, Option<String>>("amendment_record")?
        .map(|a| json_column(&a))
        .transpose()?;
    let evidence = match &amended {
        Some(a) => a.violation.clone(),
        None => record.violation,
    };
    let (others, unlisted) = evidence.map_or((Vec::new(), 0), |e| (e.others, e.unlisted));
    Ok(StoredViolation {
        session_id: r.get("session_id")?,
        device_id: r.get("device_id")?,
        clinic_id: r.get("clinic_id")?,
        operator_id: r.get("operator_id")?,
        device_class: r.get("device_class")?,
        evidence: Evidence {
            worst: Excursion {
                limit_mm,
                binding: r.get("binding")?,
                peak_depth_mm,
                excess_mm: peak_depth_mm - limit_mm,
                first_above_ms: r.get("first_above_ms")?,
                last_above_ms: r.get("last_above_ms")?,
                strokes_above: r.get::<_, i64>("strokes_above")? as u64,
                samples_above: r.get::<_, i64>("samples_above")? as u64,
                policy_version: r.get("policy_version")?,
            },
            others,
            unlisted,
        },
        final_: r.get("final")?,
        started_ms: r.get("started_ms")?,
        unknown_operator: record.unknown_operator,
        conflicting: record.conflicting,
        amendment: r.get::<_, i64>("amendment")? as u64,
        session_amendments: r.get("session_amendments")?,
    })
}

/// Hands each `samples` row (selected with `id` and [`SAMPLE_COLUMNS`]) to `f`.
fn each_sample(
    mut rows: rusqlite::Rows<'_>,
    mut f: impl FnMut(SampleRow) -> Result<()>,
) -> Result<()> {
    while let Some(row) = rows.next()? {
        let (reading, verdict) = rows::sample(row)?;
        f(SampleRow {
            reading,
            verdict,
            received_ms: row.get("received_ms")?,
        })?;
    }
    Ok(())
}

fn paged_args(mut args: Vec<Value>, after: Option<&Cursor>, limit: u32) -> Vec<Value> {
    if let Some(c) = after {
        args.push(Value::Integer(c.started_ms));
        args.push(Value::Text(c.device_id.clone()));
        args.push(Value::Text(c.session_id.clone()));
    }
    args.push(Value::Integer(i64::from(limit)));
    args
}

impl Reader {
    /// Runs `f` in one read transaction, so everything it reads is one consistent snapshot.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        let result = f(self);
        self.conn.execute_batch("COMMIT")?;
        result
    }

    /// Up to `limit` sessions of the selection after `after`, in `order`.
    pub fn sessions_page(
        &self,
        sel: &Selection,
        order: Order,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<StoredSession>> {
        let (cond, args) = sel.condition();
        let (after_sql, order_sql) = order.sql(after.is_some());
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM sessions s WHERE {cond} AND {after_sql} \
             ORDER BY {order_sql} LIMIT ?",
            *STORED_SESSION
        ))?;
        let rows = stmt
            .query_map(
                params_from_iter(paged_args(args, after, limit)),
                stored_session,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter().map(decode_session).collect()
    }

    /// One session as stored.
    pub fn stored_session(
        &self,
        device_id: &str,
        session_id: &str,
    ) -> Result<Option<StoredSession>> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {} FROM sessions s WHERE s.device_id = ?1 AND s.session_id = ?2",
                *STORED_SESSION
            ))?
            .query_row(params![device_id, session_id], stored_session)
            .optional()?;
        row.map(decode_session).transpose()
    }

    /// A session's amendments, in order.
    pub fn amendments(&self, device_id: &str, session_id: &str) -> Result<Vec<StoredAmendment>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT record, audit_seq FROM amendments WHERE device_id = ?1 AND session_id = ?2 \
             ORDER BY number",
        )?;
        let rows = stmt
            .query_map(params![device_id, session_id], |r| {
                Ok((r.get::<_, String>("record")?, r.get::<_, i64>("audit_seq")?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(record, audit_seq)| {
                Ok(StoredAmendment {
                    amendment: serde_json::from_str(&record)?,
                    audit_seq,
                })
            })
            .collect()
    }

    /// A session's depth timeline in `seq` order.
    pub fn timeline(&self, device_id: &str, session_id: &str) -> Result<Vec<TimelinePoint>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT ts_ms, depth_mm, permitted_mm, session_strokes, zone, exceeded FROM samples \
             WHERE device_id = ?1 AND session_id = ?2 AND seq BETWEEN {SESSION_SEQS} \
             AND {RECORD_IDS} ORDER BY seq, version"
        ))?;
        let rows = stmt.query_map(params![device_id, session_id], |r| {
            Ok(TimelinePoint {
                ts_ms: r.get("ts_ms")?,
                depth_mm: r.get("depth_mm")?,
                permitted_mm: r.get("permitted_mm")?,
                session_strokes: r.get::<_, i64>("session_strokes")? as u64,
                zone: r.get("zone")?,
                exceeded: r.get("exceeded")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Up to `limit` violations of the selection after `after`, newest session first.
    pub fn violations_page(
        &self,
        sel: &Selection,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Vec<StoredViolation>> {
        let (cond, args) = sel.condition();
        let (after_sql, order_sql) = Order::NewestFirst.sql(after.is_some());
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {} FROM violations v JOIN sessions s \
             ON s.device_id = v.device_id AND s.session_id = v.session_id \
             WHERE {cond} AND {after_sql} ORDER BY {order_sql} LIMIT ?",
            *STORED_VIOLATION
        ))?;
        let rows = stmt.query_map(
            params_from_iter(paged_args(args, after, limit)),
            violation_from_row,
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The violation of one session, if it exceeded.
    pub fn session_violation(
        &self,
        device_id: &str,
        session_id: &str,
    ) -> Result<Option<StoredViolation>> {
        Ok(self
            .conn
            .prepare_cached(&format!(
                "SELECT {} FROM violations v JOIN sessions s \
                 ON s.device_id = v.device_id AND s.session_id = v.session_id \
                 WHERE v.device_id = ?1 AND v.session_id = ?2",
                *STORED_VIOLATION
            ))?
            .query_row(params![device_id, session_id], violation_from_row)
            .optional()?)
    }

    /// Session and violation counts per operator of the selection.
    pub fn operator_stats(&self, sel: &Selection) -> Result<Vec<OperatorStats>> {
        let (cond, args) = sel.condition();
        let mut stmt = self.conn.prepare(&format!(
            "SELECT s.clinic_id, s.operator_id, COUNT(*) AS sessions, SUM(s.exceeded) AS violations, \
             MAX(s.max_depth_mm) AS max_depth_mm FROM sessions s WHERE {cond} \
             GROUP BY s.clinic_id, s.operator_id ORDER BY s.clinic_id, s.operator_id"
        ))?;
        let rows = stmt.query_map(params_from_iter(args), |r| {
            Ok(OperatorStats {
                clinic_id: r.get("clinic_id")?,
                operator_id: r.get("operator_id")?,
                sessions: r.get::<_, i64>("sessions")? as u64,
                violations: r.get::<_, Option<i64>>("violations")?.unwrap_or(0) as u64,
                max_depth_mm: r.get::<_, Option<f64>>("max_depth_mm")?.unwrap_or(0.0),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every cartridge.
    pub fn cartridges(&self) -> Result<Vec<Cartridge>> {
        let mut stmt = self
            .conn
            .prepare("SELECT record FROM cartridges ORDER BY cartridge_id")?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.iter().map(|r| Ok(serde_json::from_str(r)?)).collect()
    }

    /// Cartridge reuse events, newest first.
    pub fn reuse_events(&self) -> Result<Vec<ReuseRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT cartridge_id, device_id, session_id, ts_ms, detail FROM cartridge_events \
             WHERE kind = 'reuse' ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ReuseRow {
                cartridge_id: r.get("cartridge_id")?,
                device_id: r.get("device_id")?,
                session_id: r.get("session_id")?,
                ts_ms: r.get("ts_ms")?,
                detail: r.get("detail")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Hands each sample of a session's record (not those of its amendments) to `f`, in `seq`
    /// order.
    pub fn for_each_sample(
        &self,
        device_id: &str,
        session_id: &str,
        f: impl FnMut(SampleRow) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, {SAMPLE_COLUMNS} FROM samples WHERE device_id = ?1 AND session_id = ?2 \
             AND seq BETWEEN {SESSION_SEQS} AND {RECORD_IDS} ORDER BY seq, version"
        ))?;
        let rows = stmt.query(params![device_id, session_id])?;
        each_sample(rows, f)
    }

    /// Hands each message an amendment added to `f`, in `seq` order.
    pub fn for_each_amended_sample(
        &self,
        a: &crate::audit::Amendment,
        f: impl FnMut(SampleRow) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, {SAMPLE_COLUMNS} FROM samples WHERE device_id = ?1 AND session_id = ?2 \
             AND seq BETWEEN ?3 AND ?4 AND id > ?5 AND id <= ?6 ORDER BY seq, version"
        ))?;
        let rows = stmt.query(params![
            a.device_id,
            a.session_id,
            a.first_seq.min(i64::MAX as u64) as i64,
            a.last_seq.min(i64::MAX as u64) as i64,
            a.after_sample_id,
            a.last_sample_id
        ])?;
        each_sample(rows, f)
    }

    /// Number of quarantined messages kept.
    pub fn quarantine_total(&self) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM quarantine", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// When a policy version last came into force, Unix ms.
    pub fn policy_loaded_ms(&self, version: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT from_ms FROM policy_in_force WHERE version = ?1 ORDER BY id DESC LIMIT 1",
            )?
            .query_row([version], |r| r.get("from_ms"))
            .optional()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Encoding;
    use crate::journal::{Sync, Writer};
    use penwatch_proto::v1::{DeviceClass, Event, Zone};

    fn stored(dir: &std::path::Path) -> Writer {
        let mut j = Writer::open(&dir.join("j.db"), Sync::Normal).expect("open");
        let tx = j.batch().expect("batch");
        for i in 0..7_i64 {
            let clinic = if i % 2 == 0 { "c01" } else { "c02" };
            let r = Reading {
                device_id: format!("pen-{}", i % 3),
                clinic_id: clinic.into(),
                claimed_class: DeviceClass::Salon,
                model: "m".into(),
                firmware: "f".into(),
                operator_id: format!("op-{clinic}"),
                session_id: format!("s-{i}"),
                cartridge_id: format!("cart-{i}"),
                cartridge_model: "N12".into(),
                seq: i as u64 + 1,
                timestamp_ms: 1_000 + (i % 4) * 100,
                event: Event::Sample,
                depth_mm: if i == 3 { 1.5 } else { 0.5 },
                session_strokes: 10,
                cartridge_strokes: 10,
                speed_hz: 120.0,
                battery_pct: 90.0,
                zone: None,
                encoding: Encoding::Protobuf,
            };
            let v = Verdict {
                permitted_mm: 1.0,
                binding: "class".into(),
                device_class: "salon".into(),
                exceeded: r.depth_mm > 1.0,
                unknown_operator: false,
                unregistered_device: false,
                class_mismatch: false,
                policy_version: "v1".into(),
            };
            let mut s = Session::new(&r, &v);
            s.observe(&r, &v);
            tx.insert_sample(&r, &v, 0).expect("sample");
            tx.put_session(&s, None).expect("session");
        }
        tx.commit().expect("commit");
        j
    }

    #[test]
    fn keyset_pages_cover_every_session_once_newest_first() {
        let dir = tempfile::tempdir().expect("dir");
        let j = stored(dir.path());
        let all = Selection::default();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = j
                .sessions_page(&all, Order::NewestFirst, after.as_ref(), 2)
                .expect("page");
            let Some(last) = page.last() else { break };
            after = Some(last.cursor());
            seen.extend(
                page.iter()
                    .map(|s| (s.session.started_ms, s.session.session_id.clone())),
            );
        }
        assert_eq!(seen.len(), 7);
        let mut sorted = seen.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            sorted.iter().map(|s| s.0).collect::<Vec<_>>()
        );
        let mut ids: Vec<_> = seen.iter().map(|s| s.1.clone()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 7, "no session twice");

        let c02 = Selection {
            clinics: Some(vec!["c02".into()]),
            ..Selection::default()
        };
        let rows = j
            .sessions_page(&c02, Order::OldestFirst, None, 100)
            .expect("c02");
        assert_eq!(rows.len(), 3);
        assert!(rows.iter().all(|s| s.session.clinic_id == "c02"));
        let exceeded = Selection {
            only_exceeded: true,
            ..Selection::default()
        };
        let rows = j
            .sessions_page(&exceeded, Order::OldestFirst, None, 100)
            .expect("exceeded");
        assert_eq!(
            rows.iter()
                .map(|s| s.session.session_id.as_str())
                .collect::<Vec<_>>(),
            ["s-3"]
        );
        let v = j.violations_page(&c02, None, 10).expect("violations");
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].evidence.worst.peak_depth_mm, 1.5);
        let c01 = Selection {
            clinics: Some(vec!["c01".into()]),
            ..Selection::default()
        };
        assert!(j.violations_page(&c01, None, 10).expect("none").is_empty());
        let ops = j.operator_stats(&all).expect("operators");
        assert_eq!(ops.len(), 2);
        assert_eq!(
            (
                ops[1].operator_id.as_str(),
                ops[1].sessions,
                ops[1].violations
            ),
            ("op-c02", 3, 1)
        );
        assert_eq!(j.timeline("pen-0", "s-3").expect("timeline").len(), 1);
    }

    #[test]
    fn a_listed_violation_has_its_worst_excursion_and_the_others() {
        let dir = tempfile::tempdir().expect("dir");
        let mut j = Writer::open(&dir.path().join("j.db"), Sync::Normal).expect("open");
        let tx = j.batch().expect("batch");
        let samples = [
            (1, 0.7, Zone::Periorbital, 0.5, "zone"),
            (2, 1.1, Zone::Cheek, 1.0, "operator"),
        ];
        let mut session: Option<Session> = None;
        for (seq, depth, zone, permitted, binding) in samples {
            let r = Reading {
                device_id: "pen".into(),
                clinic_id: "c01".into(),
                claimed_class: DeviceClass::Medical,
                model: "m".into(),
                firmware: "f".into(),
                operator_id: "op".into(),
                session_id: "s".into(),
                cartridge_id: "cart".into(),
                cartridge_model: "N12".into(),
                seq,
                timestamp_ms: 1_000 * seq as i64,
                event: Event::Sample,
                depth_mm: depth,
                session_strokes: 100 * seq,
                cartridge_strokes: 100 * seq,
                speed_hz: 120.0,
                battery_pct: 90.0,
                zone: Some(zone),
                encoding: Encoding::Protobuf,
            };
            let v = Verdict {
                permitted_mm: permitted,
                binding: binding.into(),
                device_class: "medical".into(),
                exceeded: true,
                unknown_operator: false,
                unregistered_device: false,
                class_mismatch: false,
                policy_version: "v1".into(),
            };
            session
                .get_or_insert_with(|| Session::new(&r, &v))
                .observe(&r, &v);
            tx.insert_sample(&r, &v, 0).expect("sample");
        }
        tx.put_session(&session.expect("session"), None)
            .expect("session");
        tx.commit().expect("commit");

        let listed = j
            .violations_page(&Selection::default(), None, 10)
            .expect("violations");
        let one = j
            .session_violation("pen", "s")
            .expect("query")
            .expect("one");
        for v in [&listed[0], &one] {
            let e = &v.evidence;
            assert_eq!(
                (
                    e.worst.peak_depth_mm,
                    e.worst.limit_mm,
                    e.worst.binding.as_str()
                ),
                (0.7, 0.5, "zone")
            );
            assert!((e.worst.excess_mm - 0.2).abs() < 1e-9);
            let others: Vec<(f64, f64, &str)> = e
                .others
                .iter()
                .map(|x| (x.peak_depth_mm, x.limit_mm, x.binding.as_str()))
                .collect();
            assert_eq!(others, [(1.1, 1.0, "operator")]);
        }
    }

    fn point(i: i64, depth: f64) -> TimelinePoint {
        TimelinePoint {
            ts_ms: i,
            depth_mm: depth,
            permitted_mm: 1.0,
            session_strokes: i as u64,
            zone: None,
            exceeded: depth > 1.0,
        }
    }

    #[test]
    fn downsampling_keeps_each_buckets_deepest_point() {
        let points: Vec<_> = (0..100)
            .map(|i| point(i, if i == 37 { 1.8 } else { 0.5 }))
            .collect();
        let kept = downsample(points.clone(), 10);
        assert_eq!(kept.len(), 10);
        assert!(kept.iter().any(|p| p.ts_ms == 37 && p.exceeded));
        assert!(kept.windows(2).all(|w| w[0].ts_ms < w[1].ts_ms));
        assert_eq!(downsample(points.clone(), 0).len(), 100);
        assert_eq!(downsample(points.clone(), 500).len(), 100);
        let uneven = downsample(points, 7);
        assert_eq!(uneven.len(), 7);
    }

    #[test]
    fn selection_matches_and_builds_sql() {
        let sel = Selection {
            clinics: Some(vec!["c01".into()]),
            classes: vec!["salon".into()],
            from_ms: Some(10),
            only_exceeded: true,
            ..Selection::default()
        };
        assert!(sel.matches("c01", "p", "o", "salon", 10, true));
        assert!(!sel.matches("c02", "p", "o", "salon", 10, true));
        assert!(!sel.matches("c01", "p", "o", "home", 10, true));
        assert!(!sel.matches("c01", "p", "o", "salon", 9, true));
        assert!(!sel.matches("c01", "p", "o", "salon", 10, false));
        let (sql, args) = sel.condition();
        assert_eq!(
            sql,
            format!(
                "1 AND s.clinic_id IN (?) AND s.device_class IN (?) AND s.started_ms >= ? \
                 AND (s.exceeded = 1 OR EXISTS (SELECT 1 {AMENDED} AND a.exceeded = 1))"
            )
        );
        assert_eq!(args.len(), 3);
        let none = Selection {
            clinics: Some(Vec::new()),
            ..Selection::default()
        };
        assert!(!none.matches("c01", "p", "o", "salon", 0, false));
        assert!(none.condition().0.contains(" AND 0"));
    }
}
