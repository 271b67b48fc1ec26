//! The access log's rows against the chained digests of their runs.

use super::{Broken, Chained};
use crate::journal::{Reader, Result};

impl Reader {
    /// Every access log run against its digest, and no entry outside a run.
    pub(super) fn check_access_log(&self, chained: &Chained) -> Result<Broken> {
        // A journal verified before this gateway first ran on it has no access log yet.
        let present: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE name = 'access_log')",
            [],
            |r| r.get(0),
        )?;
        if !present {
            return Ok(None);
        }
        let mut covered = 0;
        for (seq, a) in &chained.access {
            if crate::journal::access::digest(&self.conn, a.first_id, a.last_id)? != a.digest {
                return Ok(Some((
                    *seq,
                    format!(
                        "access log entries {} to {} do not match their audit entry",
                        a.first_id, a.last_id
                    ),
                )));
            }
            covered += a.last_id - a.first_id + 1;
        }
        let stored: i64 = self
            .conn
            .query_row("SELECT COUNT(*) FROM access_log", [], |r| r.get(0))?;
        if stored != covered {
            return Ok(Some((
                0,
                format!("the access log holds {stored} entries, its audit entries cover {covered}"),
            )));
        }
        Ok(None)
    }
}
