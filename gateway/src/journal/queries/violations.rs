//! Violations as stored: the worst excursion from their columns, the others from the record of
//! the session (or of the amendment that raised them); listed keyset-paged or one per session.

use std::sync::LazyLock;

use rusqlite::{OptionalExtension, params, params_from_iter};

use super::selection::{AMENDED, Cursor, Order, Selection, paged_args};
use crate::journal::{Reader, Result};
use crate::sessions::{Evidence, Excursion, Session};

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

impl Reader {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Encoding, Reading};
    use crate::journal::{Sync, Writer};
    use crate::sessions::Verdict;
    use penwatch_proto::v1::{DeviceClass, Event, Zone};

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
            tx.samples()
                .expect("samples")
                .insert(&r, &v, 0)
                .expect("sample");
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
}
