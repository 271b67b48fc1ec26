//! A closed session's amendments by late messages, as chained.

use rusqlite::params;

use crate::journal::{Reader, Result};

/// An amendment as stored: the chained record and its chain position.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAmendment {
    /// The record, as chained.
    pub amendment: crate::audit::Amendment,
    /// Its chain position.
    pub audit_seq: i64,
}

impl Reader {
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
}
