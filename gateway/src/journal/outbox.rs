//! The alert outbox: the committer raises and resolves alerts in its batches ([`RAISE`],
//! [`RESOLVE`]); the delivering side ([`Outbox`]) reads what is pending, records what each
//! target received, and settles an alert once every target has its revision.

use std::path::Path;

use rusqlite::{OptionalExtension, Row, params};

use super::{Access, Result, connect};
use crate::alerts::{Alert, Delivered, Kind, OutboxAlert, Severity};

/// Raises or updates an alert; the same content again changes nothing. A resolved alert that
/// fires again starts anew.
pub(super) const RAISE: &str = "
INSERT INTO alert_outbox (alert_key, kind, severity, clinic_id, device_id, session_id, summary,
    details, starts_ms, ends_ms, updated_ms, revision, pending)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 1, 1)
ON CONFLICT (alert_key) DO UPDATE SET
    severity = excluded.severity,
    session_id = excluded.session_id,
    summary = excluded.summary,
    details = excluded.details,
    starts_ms = CASE WHEN alert_outbox.ends_ms IS NOT NULL AND excluded.ends_ms IS NULL
        THEN excluded.starts_ms ELSE alert_outbox.starts_ms END,
    ends_ms = excluded.ends_ms,
    updated_ms = excluded.updated_ms,
    revision = alert_outbox.revision + 1,
    pending = 1
WHERE alert_outbox.summary IS NOT excluded.summary
    OR alert_outbox.details IS NOT excluded.details
    OR alert_outbox.severity IS NOT excluded.severity
    OR alert_outbox.session_id IS NOT excluded.session_id
    OR (alert_outbox.ends_ms IS NULL) <> (excluded.ends_ms IS NULL)";

/// Resolves a firing alert.
pub(super) const RESOLVE: &str = "
UPDATE alert_outbox SET ends_ms = ?2, updated_ms = ?2, revision = revision + 1, pending = 1
WHERE alert_key = ?1 AND ends_ms IS NULL";

/// The alert delivery's connection: reads the outbox, writes only `alert_deliveries` and the
/// outbox's `pending` flag.
pub struct Outbox {
    conn: rusqlite::Connection,
}

impl Outbox {
    /// Opens a connection beside the committer's, which must have created the journal.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            conn: connect(path, Access::Upkeep)?,
        })
    }

    /// Alerts with a revision some target has not settled, oldest change first.
    pub fn pending(&self, limit: usize) -> Result<Vec<OutboxAlert>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM alert_outbox WHERE pending = 1 ORDER BY updated_ms LIMIT ?1",
        )?;
        let rows = stmt.query_map([limit as i64], |row| Ok(outbox_alert(row)))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// Alerts of these kinds that are firing now, delivered or not.
    pub fn firing(&self, kinds: &[Kind]) -> Result<Vec<OutboxAlert>> {
        let names: Vec<&str> = kinds.iter().map(|k| k.as_str()).collect();
        let mut stmt = self.conn.prepare_cached(
            "SELECT * FROM alert_outbox
             WHERE ends_ms IS NULL AND kind IN (SELECT value FROM json_each(?1))",
        )?;
        let rows = stmt.query_map([serde_json::to_string(&names)?], |row| {
            Ok(outbox_alert(row))
        })?;
        let mut out = Vec::new();
        for row in rows {
            out.push(row??);
        }
        Ok(out)
    }

    /// What `target` last received of the alert `key`.
    pub fn delivered(&self, target: &str, key: &str) -> Result<Option<Delivered>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT revision, delivered_ms FROM alert_deliveries
                 WHERE target = ?1 AND alert_key = ?2",
            )?
            .query_row(params![target, key], |r| {
                Ok(Delivered {
                    revision: r.get("revision")?,
                    at_ms: r.get("delivered_ms")?,
                })
            })
            .optional()?)
    }

    /// Records that `target` received these alerts at `now_ms` (one transaction).
    pub fn mark_delivered(
        &mut self,
        target: &str,
        alerts: &[&OutboxAlert],
        now_ms: i64,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "INSERT OR REPLACE INTO alert_deliveries (target, alert_key, revision, delivered_ms)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            for a in alerts {
                stmt.execute(params![target, a.alert.key, a.revision, now_ms])?;
            }
        }
        Ok(tx.commit()?)
    }

    /// Takes the alerts off the pending list, unless the committer changed them since.
    pub fn settle(&mut self, alerts: &[&OutboxAlert]) -> Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut stmt = tx.prepare_cached(
                "UPDATE alert_outbox SET pending = 0 WHERE alert_key = ?1 AND revision = ?2",
            )?;
            for a in alerts {
                stmt.execute(params![a.alert.key, a.revision])?;
            }
        }
        Ok(tx.commit()?)
    }
}

impl Outbox {
    /// Deletes alerts every target has that last changed before `before_ms`, with their
    /// delivery records; returns how many alerts.
    pub fn prune(&mut self, before_ms: i64) -> Result<usize> {
        let tx = self.conn.transaction()?;
        let n = tx.execute(
            "DELETE FROM alert_outbox WHERE pending = 0 AND updated_ms < ?1",
            [before_ms],
        )?;
        tx.execute(
            "DELETE FROM alert_deliveries WHERE NOT EXISTS
                (SELECT 1 FROM alert_outbox o WHERE o.alert_key = alert_deliveries.alert_key)",
            [],
        )?;
        tx.commit()?;
        Ok(n)
    }
}

/// An outbox row, read by column name.
fn outbox_alert(row: &Row<'_>) -> Result<OutboxAlert> {
    let kind: String = row.get("kind")?;
    let severity: String = row.get("severity")?;
    let details: String = row.get("details")?;
    let unknown = |what: &str, name: &str| {
        rusqlite::Error::InvalidColumnType(
            0,
            format!("{what} `{name}`"),
            rusqlite::types::Type::Text,
        )
    };
    Ok(OutboxAlert {
        alert: Alert {
            key: row.get("alert_key")?,
            kind: Kind::parse(&kind).ok_or_else(|| unknown("alert kind", &kind))?,
            severity: Severity::parse(&severity).ok_or_else(|| unknown("severity", &severity))?,
            clinic_id: row.get("clinic_id")?,
            device_id: row.get("device_id")?,
            session_id: row.get("session_id")?,
            summary: row.get("summary")?,
            starts_ms: row.get("starts_ms")?,
            ends_ms: row.get("ends_ms")?,
            details: serde_json::from_str(&details)?,
        },
        revision: row.get("revision")?,
        updated_ms: row.get("updated_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{Alert, Kind, Severity};
    use crate::journal::{Sync, Writer};

    fn alert(summary: &str, ends_ms: Option<i64>) -> Alert {
        Alert {
            key: "violation/pen/s".into(),
            kind: Kind::Violation,
            severity: Severity::Critical,
            clinic_id: "c01".into(),
            device_id: "pen".into(),
            session_id: "s".into(),
            summary: summary.into(),
            starts_ms: 10,
            ends_ms,
            details: serde_json::json!({"peak": 1}),
        }
    }

    #[test]
    fn an_alert_raised_again_updates_its_one_row_and_settles_once_delivered() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let mut writer = Writer::open(&path, Sync::Normal).expect("journal");
        let write = |w: &mut Writer, a: Alert| {
            let tx = w.batch().expect("batch");
            tx.raise_alert(&a, 20).expect("raise");
            tx.commit().expect("commit");
        };
        write(&mut writer, alert("one", None));
        write(&mut writer, alert("one", None));
        let mut outbox = Outbox::open(&path).expect("outbox");
        let pending = outbox.pending(10).expect("pending");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].revision, 1, "the same content is no change");
        assert_eq!(pending[0].alert, alert("one", None));

        write(&mut writer, alert("two", None));
        outbox
            .settle(&[&pending[0]])
            .expect("settle an old revision");
        let pending = outbox.pending(10).expect("pending");
        assert_eq!(pending[0].revision, 2, "an old revision settles nothing");

        outbox
            .mark_delivered("webhook:a", &[&pending[0]], 30)
            .expect("mark");
        outbox.settle(&[&pending[0]]).expect("settle");
        assert!(outbox.pending(10).expect("pending").is_empty());
        assert_eq!(
            outbox
                .delivered("webhook:a", "violation/pen/s")
                .expect("read"),
            Some(Delivered {
                revision: 2,
                at_ms: 30
            })
        );

        assert_eq!(outbox.firing(&[Kind::Violation]).expect("firing").len(), 1);
        assert!(
            outbox
                .firing(&[Kind::PenOffline])
                .expect("firing")
                .is_empty()
        );
        let tx = writer.batch().expect("batch");
        tx.resolve_alert("violation/pen/s", 40).expect("resolve");
        tx.resolve_alert("violation/pen/s", 41)
            .expect("a resolved one stays so");
        tx.commit().expect("commit");
        assert!(
            outbox
                .firing(&[Kind::Violation])
                .expect("firing")
                .is_empty()
        );
        let pending = outbox.pending(10).expect("pending");
        assert_eq!(
            (pending[0].revision, pending[0].alert.ends_ms),
            (3, Some(40))
        );
    }
}
