//! Cartridge event rows the chain covers against their entries, and entries against rows.

use std::collections::HashSet;

use super::{Broken, Chained, first_missing};
use crate::audit::ChainedCartridgeEvent;
use crate::journal::{Reader, Result};

impl Reader {
    /// The cartridge event rows from journal id `from_id` on, in id order, as chained.
    pub fn cartridge_events_from(&self, from_id: i64) -> Result<Vec<ChainedCartridgeEvent>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, cartridge_id, kind, device_id, session_id, ts_ms, detail
             FROM cartridge_events WHERE id >= ?1 ORDER BY id",
        )?;
        let rows = stmt.query_map([from_id], |r| {
            Ok(ChainedCartridgeEvent {
                id: r.get("id")?,
                cartridge_id: r.get("cartridge_id")?,
                kind: r.get("kind")?,
                device_id: r.get("device_id")?,
                session_id: r.get("session_id")?,
                ts_ms: r.get("ts_ms")?,
                detail: r.get("detail")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Cartridge event rows the chain covers against their entries, and entries against rows.
    pub(super) fn check_cartridge_events(&self, chained: &Chained) -> Result<Broken> {
        let Some(from) = chained.cartridge_events_from else {
            return Ok(None);
        };
        let stored = self.cartridge_events_from(from)?;
        for row in &stored {
            match chained.cartridge_events.get(&row.id) {
                None => {
                    return Ok(Some((
                        0,
                        format!("cartridge event {} has no audit entry", row.id),
                    )));
                }
                Some((seq, e)) if e != row => {
                    return Ok(Some((
                        *seq,
                        format!(
                            "cartridge event {} as stored differs from its audit entry",
                            row.id
                        ),
                    )));
                }
                Some(_) => {}
            }
        }
        let ids: HashSet<i64> = stored.iter().map(|e| e.id).collect();
        Ok(
            first_missing(&chained.cartridge_events, &ids).map(|(id, seq)| {
                (
                    seq,
                    format!("cartridge event {id} is in the chain but not stored"),
                )
            }),
        )
    }
}
