//! Closed session rows and final violation rows against their chain entries (a violation an
//! amendment raised against that amendment's evidence), and entries against their rows.

use std::collections::HashSet;

use super::{Broken, Chained, Key, first_missing};
use crate::journal::{Reader, Result};
use crate::sessions::{Excursion, Session};

/// Whether a violation row's columns equal a chained identity (clinic, operator, class) and
/// worst excursion.
fn violation_matches(
    r: &rusqlite::Row<'_>,
    (clinic_id, operator_id, device_class): (&str, &str, &str),
    e: &Excursion,
) -> rusqlite::Result<bool> {
    Ok(r.get::<_, String>("clinic_id")? == clinic_id
        && r.get::<_, String>("operator_id")? == operator_id
        && r.get::<_, String>("device_class")? == device_class
        && r.get::<_, f64>("limit_mm")? == e.limit_mm
        && r.get::<_, String>("binding")? == e.binding
        && r.get::<_, f64>("peak_depth_mm")? == e.peak_depth_mm
        && r.get::<_, i64>("first_above_ms")? == e.first_above_ms
        && r.get::<_, i64>("last_above_ms")? == e.last_above_ms
        && r.get::<_, i64>("strokes_above")? as u64 == e.strokes_above
        && r.get::<_, i64>("samples_above")? as u64 == e.samples_above
        && r.get::<_, String>("policy_version")? == e.policy_version)
}

/// A violation row an amendment raised (amendment `n`) against that amendment's evidence.
fn amended_violation(
    chained: &Chained,
    key: &Key,
    n: u64,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<Broken> {
    let found = chained.amendments.get(&(key.clone(), n));
    let Some((seq, Some(e), a)) = found.map(|(seq, a)| (seq, a.violation.as_ref(), a)) else {
        return Ok(Some((
            0,
            format!(
                "violation {}/{} names amendment {n}, which has no evidence in the chain",
                key.0, key.1
            ),
        )));
    };
    let matches = !chained.violations.contains_key(key)
        && r.get::<_, bool>("final")?
        && violation_matches(r, (&a.clinic_id, &a.operator_id, &a.device_class), &e.worst)?;
    Ok((!matches).then(|| {
        (
            *seq,
            format!(
                "violation {}/{} as stored differs from amendment {n}'s evidence",
                key.0, key.1
            ),
        )
    }))
}

impl Reader {
    /// Closed session rows against their entries, and entries against their rows.
    pub(super) fn check_sessions(&self, chained: &Chained) -> Result<Broken> {
        let mut stmt = self.conn.prepare(
            "SELECT device_id, session_id, clinic_id, operator_id, device_class, started_ms,
                last_ms, exceeded, state, close_reason, samples_digest, record, max_depth_mm
             FROM sessions",
        )?;
        let mut rows = stmt.query([])?;
        let mut stored = HashSet::new();
        while let Some(r) = rows.next()? {
            let key: Key = (r.get("device_id")?, r.get("session_id")?);
            stored.insert(key.clone());
            if r.get::<_, String>("state")? != "closed" {
                continue;
            }
            let Some((seq, c)) = chained.sessions.get(&key) else {
                return Ok(Some((
                    0,
                    format!("closed session {}/{} has no audit entry", key.0, key.1),
                )));
            };
            let record: Session = serde_json::from_str(&r.get::<_, String>("record")?)?;
            let columns_match = r.get::<_, String>("clinic_id")? == c.clinic_id
                && r.get::<_, String>("operator_id")? == c.operator_id
                && r.get::<_, String>("device_class")? == c.device_class
                && r.get::<_, i64>("started_ms")? == c.started_ms
                && r.get::<_, i64>("last_ms")? == c.last_ms
                && r.get::<_, bool>("exceeded")? == c.exceeded
                && r.get::<_, Option<String>>("close_reason")?.as_deref()
                    == Some(c.close_reason.as_str())
                && r.get::<_, Option<String>>("samples_digest")?.as_deref()
                    == Some(c.samples_digest.as_str())
                && r.get::<_, f64>("max_depth_mm")? == c.max_depth_mm;
            let record_matches = record.clinic_id == c.clinic_id
                && record.operator_id == c.operator_id
                && record.device_class == c.device_class
                && record.cartridge_id == c.cartridge_id
                && record.started_ms == c.started_ms
                && record.last_ms == c.last_ms
                && record.strokes == c.strokes
                && record.max_depth_mm == c.max_depth_mm
                && record.permitted_mm == c.permitted_mm
                && record.exceeded() == c.exceeded
                && record.conflicting == c.conflicting
                && record.violation.as_ref()
                    == chained.violations.get(&key).map(|(_, v)| &v.evidence);
            if !(columns_match && record_matches) {
                return Ok(Some((
                    *seq,
                    format!(
                        "session {}/{} as stored differs from its audit entry",
                        key.0, key.1
                    ),
                )));
            }
        }
        Ok(first_missing(&chained.sessions, &stored).map(|(key, seq)| {
            (
                seq,
                format!("session {}/{} is in the chain but not stored", key.0, key.1),
            )
        }))
    }

    /// Final violation rows against their entries, and entries against their rows.
    pub(super) fn check_violations(&self, chained: &Chained) -> Result<Broken> {
        let mut stmt = self.conn.prepare(
            "SELECT v.*, s.state
             FROM violations v LEFT JOIN sessions s
                ON s.device_id = v.device_id AND s.session_id = v.session_id",
        )?;
        let mut rows = stmt.query([])?;
        let mut stored = HashSet::new();
        while let Some(r) = rows.next()? {
            let key: Key = (r.get("device_id")?, r.get("session_id")?);
            let reopened = r.get::<_, Option<String>>("state")?.as_deref() == Some("open");
            // Before schema 9 there is no `amendment` column.
            let amendment = r.get::<_, Option<i64>>("amendment").unwrap_or(None);
            if let Some(n) = amendment.filter(|n| *n > 0) {
                if let Some(broken) = amended_violation(chained, &key, n as u64, r)? {
                    return Ok(Some(broken));
                }
                continue;
            }
            let entry = chained.violations.get(&key);
            stored.insert(key.clone());
            if !r.get::<_, bool>("final")? {
                if entry.is_some() && !reopened {
                    return Ok(Some((
                        entry.map_or(0, |(seq, _)| *seq),
                        format!(
                            "violation {}/{} is chained as final but stored as not",
                            key.0, key.1
                        ),
                    )));
                }
                continue;
            }
            let Some((seq, fv)) = entry else {
                return Ok(Some((
                    0,
                    format!("final violation {}/{} has no audit entry", key.0, key.1),
                )));
            };
            let matches = violation_matches(
                r,
                (&fv.clinic_id, &fv.operator_id, &fv.device_class),
                &fv.evidence.worst,
            )?;
            if !matches {
                return Ok(Some((
                    *seq,
                    format!(
                        "violation {}/{} as stored differs from its audit entry",
                        key.0, key.1
                    ),
                )));
            }
        }
        Ok(
            first_missing(&chained.violations, &stored).map(|(key, seq)| {
                (
                    seq,
                    format!(
                        "violation {}/{} is in the chain but not stored",
                        key.0, key.1
                    ),
                )
            }),
        )
    }
}
