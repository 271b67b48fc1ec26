//! Sessions as stored, their keyset-paged listing, one session, and the per-operator
//! counts over a selection.

use std::sync::LazyLock;

use rusqlite::{OptionalExtension, params, params_from_iter};

use super::selection::{AMENDED, Cursor, Order, Selection, paged_args};
use crate::journal::{Reader, Result};
use crate::sessions::Session;

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

impl Reader {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Encoding, Reading};
    use crate::journal::{Sync, Writer};
    use crate::sessions::Verdict;
    use penwatch_proto::v1::{DeviceClass, Event};

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
            tx.samples()
                .expect("samples")
                .insert(&r, &v, 0)
                .expect("sample");
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
}
