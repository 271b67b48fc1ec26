//! The journal's read side for sinks: records after a cursor in journal order, the cursors
//! themselves, backlog counts, and retention (pruning forwarded raw samples).
//!
//! A sink or housekeeping opens its own connection ([`Upkeep::open`]); in WAL mode its reads
//! never block the committer, and its small writes wait for the committer's lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::ops::Deref;
use std::path::Path;

use rusqlite::{OptionalExtension, params};

use super::{Access, Reader, Result, connect};
use crate::audit::{Pruned, Record};

/// A journaled sample as a sink forwards it: what `pen_sample` carries and what makes
/// its point unique.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleRecord {
    /// Journal id (journal order).
    pub id: i64,
    /// Pen serial.
    pub device_id: String,
    /// Per-device sequence number.
    pub seq: i64,
    /// 0, or 1, 2, … for a message that reused `seq` with different content.
    pub version: i64,
    /// Clinic.
    pub clinic_id: String,
    /// Device time, Unix ms.
    pub ts_ms: i64,
    /// Depth, mm.
    pub depth_mm: f64,
    /// Permitted depth, mm.
    pub permitted_mm: f64,
    /// Above the permitted depth.
    pub exceeded: bool,
}

/// An audit chain entry (a closed session's final record or a final violation).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Chain position (journal order).
    pub seq: i64,
    /// The record; `None` for a kind this version does not forward.
    pub record: Option<crate::audit::Record>,
}

/// A cartridge event with the context a sink tags it with.
#[derive(Debug, Clone, PartialEq)]
pub struct CartridgeEventRecord {
    /// Journal id (journal order).
    pub id: i64,
    /// Cartridge.
    pub cartridge_id: String,
    /// `reuse`, `wear_80` or `wear_100`.
    pub kind: String,
    /// Pen it was seen in.
    pub device_id: String,
    /// Session it was seen in.
    pub session_id: String,
    /// Device time, Unix ms.
    pub ts_ms: i64,
    /// Text a person can read.
    pub detail: String,
    /// Clinic of the pen ("" if unknown).
    pub clinic_id: String,
    /// Cartridge model ("" if unknown).
    pub cartridge_model: String,
    /// Strokes counted on the cartridge now.
    pub strokes: i64,
}

/// Most rows deleted per transaction, so the committer never waits long for the write lock.
const PRUNE_CHUNK: i64 = 5000;

/// A sink's or housekeeping's connection: reads what the committer wrote, and writes only its
/// own rows (cursors, retention's deletes).
pub struct Upkeep {
    reader: Reader,
    /// Pens' serials and contexts' clinics, as [`Upkeep::samples_after`] found them.
    names: RefCell<Names>,
}

/// Names that sample rows refer to by number, remembered across batches. Each map is
/// emptied once it holds [`Names::MOST`] entries (contexts grow with sessions).
#[derive(Default)]
struct Names {
    pens: HashMap<i64, String>,
    clinics: HashMap<i64, String>,
}

impl Names {
    const MOST: usize = 1 << 16;

    /// The serial of pen number `id`.
    fn pen(&mut self, conn: &rusqlite::Connection, id: i64) -> Result<&String> {
        Self::remembered(&mut self.pens, id, || {
            conn.prepare_cached("SELECT device_id FROM pens WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
        })
    }

    /// The clinic of sample context `id`.
    fn clinic(&mut self, conn: &rusqlite::Connection, id: i64) -> Result<&String> {
        Self::remembered(&mut self.clinics, id, || {
            conn.prepare_cached("SELECT clinic_id FROM sample_contexts WHERE id = ?1")?
                .query_row([id], |r| r.get(0))
        })
    }

    fn remembered(
        map: &mut HashMap<i64, String>,
        id: i64,
        look_up: impl FnOnce() -> rusqlite::Result<String>,
    ) -> Result<&String> {
        if map.len() >= Self::MOST {
            map.clear();
        }
        Ok(match map.entry(id) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(new) => new.insert(look_up()?),
        })
    }
}

/// Upkeep reads like any reader (the sink tags points with the devices' records).
impl Deref for Upkeep {
    type Target = Reader;

    fn deref(&self) -> &Reader {
        &self.reader
    }
}

impl Upkeep {
    /// Opens a connection beside the committer's, which must have created the journal
    /// ([`super::Writer::open`]) first.
    pub fn open(path: &Path) -> Result<Self> {
        Ok(Self {
            reader: Reader {
                conn: connect(path, Access::Upkeep)?,
            },
            names: RefCell::default(),
        })
    }

    /// The last journal id (or audit seq) a sink stream has forwarded; 0 when none.
    pub fn cursor(&self, name: &str) -> Result<i64> {
        Ok(self
            .conn
            .prepare_cached("SELECT last_id FROM sink_cursors WHERE sink = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?
            .unwrap_or(0))
    }

    /// Moves a sink stream's cursor (call only after the target confirmed the write).
    pub fn set_cursor(&self, name: &str, last_id: i64) -> Result<()> {
        self.reader
            .conn
            .prepare_cached(
                "INSERT INTO sink_cursors (sink, last_id) VALUES (?1, ?2)
                 ON CONFLICT (sink) DO UPDATE SET last_id = excluded.last_id",
            )?
            .execute(params![name, last_id])?;
        Ok(())
    }

    /// Calls `each` with up to `limit` samples with an id above `after`, in journal order,
    /// and returns how many it read. One record is refilled row after row, so a batch
    /// allocates nothing per row however large it is. The rows are read without the view's
    /// joins: a pen's serial and a context's clinic are looked up once and remembered (both
    /// are written once and never change), so a row costs one step of the table's scan
    /// (README, Benchmarks).
    pub fn samples_after(
        &self,
        after: i64,
        limit: usize,
        mut each: impl FnMut(&SampleRecord),
    ) -> Result<usize> {
        let mut stmt = self.reader.conn.prepare_cached(
            "SELECT id, pen, context, seq, version, ts_ms, depth_mm, permitted_mm, exceeded
             FROM sample_rows WHERE id > ?1 ORDER BY id LIMIT ?2",
        )?;
        let mut names = self.names.borrow_mut();
        let mut rows = stmt.query(params![after, limit as i64])?;
        let mut s = SampleRecord::default();
        let mut n = 0;
        while let Some(r) = rows.next()? {
            s.id = r.get(0)?;
            s.device_id
                .clone_from(names.pen(&self.reader.conn, r.get(1)?)?);
            s.clinic_id
                .clone_from(names.clinic(&self.reader.conn, r.get(2)?)?);
            s.seq = r.get(3)?;
            s.version = r.get(4)?;
            s.ts_ms = r.get(5)?;
            s.depth_mm = r.get(6)?;
            s.permitted_mm = r.get(7)?;
            s.exceeded = r.get(8)?;
            each(&s);
            n += 1;
        }
        Ok(n)
    }

    /// Up to `limit` audit chain entries with a seq above `after`, in chain order.
    pub fn audit_after(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut stmt = self.reader.conn.prepare_cached(
            "SELECT seq, kind, body FROM audit_chain WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok((
                    r.get::<_, i64>("seq")?,
                    r.get::<_, String>("kind")?,
                    r.get::<_, String>("body")?,
                ))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.into_iter()
            .map(|(seq, kind, body)| {
                Ok(AuditRecord {
                    seq,
                    record: crate::audit::Record::parse(&kind, &body)?,
                })
            })
            .collect()
    }

    /// Up to `limit` cartridge events with an id above `after`, in journal order.
    pub fn cartridge_events_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<CartridgeEventRecord>> {
        let mut stmt = self.reader.conn.prepare_cached(
            "SELECT e.id, e.cartridge_id, e.kind, e.device_id, e.session_id, e.ts_ms, e.detail,
                IFNULL(d.clinic_id, '') AS clinic_id, IFNULL(c.model, '') AS cartridge_model,
                IFNULL(c.strokes, 0) AS strokes
             FROM cartridge_events e
             LEFT JOIN devices d ON d.device_id = e.device_id
             LEFT JOIN cartridges c ON c.cartridge_id = e.cartridge_id
             WHERE e.id > ?1 ORDER BY e.id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit as i64], |r| {
            Ok(CartridgeEventRecord {
                id: r.get("id")?,
                cartridge_id: r.get("cartridge_id")?,
                kind: r.get("kind")?,
                device_id: r.get("device_id")?,
                session_id: r.get("session_id")?,
                ts_ms: r.get("ts_ms")?,
                detail: r.get("detail")?,
                clinic_id: r.get("clinic_id")?,
                cartridge_model: r.get("cartridge_model")?,
                strokes: r.get("strokes")?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// How many rows of a stream lie above `after` in journal order. Ids are dense (rows
    /// above a cursor are never deleted), so this is the newest id minus the cursor: cheap
    /// even with a backlog of millions.
    pub fn backlog(&self, table: Backlog, after: i64) -> Result<u64> {
        let sql = match table {
            Backlog::Samples => "SELECT IFNULL(MAX(id), 0) FROM sample_rows",
            Backlog::Audit => "SELECT IFNULL(MAX(seq), 0) FROM audit_chain",
            Backlog::CartridgeEvents => "SELECT IFNULL(MAX(id), 0) FROM cartridge_events",
        };
        let newest: i64 = self
            .reader
            .conn
            .prepare_cached(sql)?
            .query_row([], |r| r.get(0))?;
        Ok((newest - after).max(0) as u64)
    }

    /// Deletes raw samples with a device time before `cutoff_ms`, whole sessions at a time,
    /// never samples of an open session, and, with `forwarded_upto`, only samples older than
    /// the oldest sample not yet forwarded. Sessions, violations, sample contexts and the audit
    /// chain stay.
    /// Before it deletes anything it chains a [`Pruned`] record (with `retention_days`), so
    /// `verify` can tell pruned samples from deleted ones. Returns how many were deleted.
    pub fn prune_samples(
        &self,
        cutoff_ms: i64,
        retention_days: u64,
        forwarded_upto: Option<i64>,
    ) -> Result<u64> {
        let mut cutoff = cutoff_ms;
        if let Some(upto) = forwarded_upto {
            let oldest_unforwarded: Option<i64> = self.reader.conn.query_row(
                "SELECT MIN(ts_ms) FROM sample_rows WHERE id > ?1",
                [upto],
                |r| r.get(0),
            )?;
            if let Some(t) = oldest_unforwarded {
                cutoff = cutoff.min(t);
            }
        }
        // A sample goes only when its whole session is older than the cutoff, so a session
        // is either kept whole (its digest verifiable) or pruned whole (reported as pruned).
        const PRUNABLE: &str = "SELECT s.id FROM samples s
            LEFT JOIN sessions x ON x.device_id = s.device_id AND x.session_id = s.session_id
            WHERE s.ts_ms < ?1 AND (x.state IS NULL OR (x.state = 'closed' AND x.last_ms < ?1))";
        let any: bool =
            self.reader
                .conn
                .query_row(&format!("SELECT EXISTS ({PRUNABLE})"), [cutoff], |r| {
                    r.get(0)
                })?;
        if !any {
            return Ok(0);
        }
        self.chain(&Record::Pruned(Pruned {
            cutoff_ms: cutoff,
            retention_days,
            at_ms: crate::clock::now_ms(),
        }))?;
        let mut stmt = self.reader.conn.prepare_cached(&format!(
            "DELETE FROM sample_rows WHERE id IN ({PRUNABLE} LIMIT ?2)"
        ))?;
        let mut pruned = 0;
        loop {
            let n = stmt.execute(params![cutoff, PRUNE_CHUNK])?;
            pruned += n as u64;
            if (n as i64) < PRUNE_CHUNK {
                return Ok(pruned);
            }
        }
    }

    /// Appends a record to the audit chain in a transaction of its own, which waits for the
    /// committer's (so the chain stays one line).
    fn chain(&self, record: &Record) -> Result<()> {
        let conn = &self.reader.conn;
        conn.execute_batch("BEGIN IMMEDIATE")?;
        match super::rows::append_audit(conn, record) {
            Ok(_) => Ok(conn.execute_batch("COMMIT")?),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }

    /// Deletes quarantined messages received before `cutoff_ms`; returns how many.
    pub fn prune_quarantine(&self, cutoff_ms: i64) -> Result<u64> {
        let n = self
            .reader
            .conn
            .prepare_cached("DELETE FROM quarantine WHERE received_ms < ?1")?
            .execute([cutoff_ms])?;
        Ok(n as u64)
    }

    /// Bytes the journal's live pages occupy (free pages left by pruning are reused, so this
    /// is what grows toward the configured bound).
    pub fn used_bytes(&self) -> Result<u64> {
        let pages: i64 = self
            .reader
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get(0))?;
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let size: i64 = self
            .reader
            .conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))?;
        Ok(((pages - free).max(0) * size) as u64)
    }
}

/// A journal stream whose backlog [`Upkeep::backlog`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backlog {
    /// `samples` by id.
    Samples,
    /// `audit_chain` by seq.
    Audit,
    /// `cartridge_events` by id.
    CartridgeEvents,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Encoding, Reading};
    use crate::journal::fixtures::{reading, verdict};
    use crate::journal::{Inserted, Sync, Writer};
    use crate::sessions::{CloseReason, Session};

    /// Session "old" (ids 1-2, closed, old), "straddle" (ids 3-4, closed, one old sample),
    /// "open" (ids 5-6, open, old).
    fn journal(dir: &Path) -> Upkeep {
        let path = dir.join("j.db");
        let mut j = Writer::open(&path, Sync::Normal).expect("open");
        let b = j.batch().expect("batch");
        let sessions = [
            ("old", [(1, 100), (2, 200)], true),
            ("straddle", [(3, 300), (4, 5000)], true),
            ("open", [(5, 100), (6, 200)], false),
        ];
        for (session, samples, closed) in sessions {
            let [(seq, ts), (seq2, ts2)] = samples;
            let (r, r2) = (reading(session, seq, ts), reading(session, seq2, ts2));
            assert!(matches!(
                b.samples()
                    .expect("samples")
                    .insert(&r, &verdict(), ts)
                    .expect("insert"),
                Inserted::New { .. }
            ));
            assert!(matches!(
                b.samples()
                    .expect("samples")
                    .insert(&r2, &verdict(), ts2)
                    .expect("insert"),
                Inserted::New { .. }
            ));
            let mut s = Session::new(&r, &verdict());
            s.observe(&r2, &verdict());
            b.put_session(
                &s,
                closed.then_some(crate::journal::Closing {
                    reason: CloseReason::Ended,
                    digest: "d",
                    audit_seq: 0,
                }),
            )
            .expect("session");
        }
        b.commit().expect("commit");
        drop(j);
        Upkeep::open(&path).expect("forwarding")
    }

    fn ids_after(j: &Upkeep, after: i64, limit: usize) -> Vec<i64> {
        let mut ids = Vec::new();
        let n = j
            .samples_after(after, limit, |r| ids.push(r.id))
            .expect("read");
        assert_eq!(n, ids.len());
        ids
    }

    fn ids(j: &Upkeep) -> Vec<i64> {
        ids_after(j, 0, 100)
    }

    #[test]
    fn cursors_and_batches_follow_journal_order() {
        let dir = tempfile::tempdir().expect("dir");
        let j = journal(dir.path());
        assert_eq!(j.cursor("influx:samples").expect("cursor"), 0);
        j.set_cursor("influx:samples", 2).expect("set");
        assert_eq!(j.cursor("influx:samples").expect("cursor"), 2);
        assert_eq!(ids_after(&j, 2, 3), vec![3, 4, 5]);
        assert_eq!(j.backlog(Backlog::Samples, 2).expect("backlog"), 4);
    }

    #[test]
    fn retention_prunes_whole_closed_forwarded_sessions_only() {
        let dir = tempfile::tempdir().expect("dir");
        let j = journal(dir.path());
        // Nothing forwarded: the oldest unforwarded sample (ts 100) holds everything back.
        assert_eq!(j.prune_samples(1000, 30, Some(0)).expect("prune"), 0);
        // All forwarded: "old" goes whole; "straddle" has a sample newer than the
        // cutoff and "open" is open, so both stay whole.
        assert_eq!(j.prune_samples(1000, 30, Some(6)).expect("prune"), 2);
        assert_eq!(ids(&j), vec![3, 4, 5, 6]);
        // Without a sink, only age and session state count.
        assert_eq!(j.prune_samples(10_000, 30, None).expect("prune"), 2);
        assert_eq!(ids(&j), vec![5, 6]);
        assert!(j.used_bytes().expect("size") > 0);
    }

    #[test]
    fn a_reused_seq_with_other_content_is_a_new_version_and_the_same_content_a_duplicate() {
        let dir = tempfile::tempdir().expect("dir");
        let mut j = Writer::open(&dir.path().join("j.db"), Sync::Normal).expect("open");
        let b = j.batch().expect("batch");
        let first = reading("s", 7, 1000);
        let v = verdict();
        assert!(matches!(
            b.samples()
                .expect("samples")
                .insert(&first, &v, 1)
                .expect("first"),
            Inserted::New { .. }
        ));
        let json = Reading {
            encoding: Encoding::Json,
            ..first.clone()
        };
        assert_eq!(
            b.samples()
                .expect("samples")
                .insert(&json, &v, 2)
                .expect("again"),
            Inserted::Duplicate
        );
        let earlier = Reading {
            depth_mm: 2.0,
            timestamp_ms: 500,
            ..first.clone()
        };
        assert_eq!(
            b.samples()
                .expect("samples")
                .insert(&earlier, &v, 3)
                .expect("conflict"),
            Inserted::Conflict {
                version: 1,
                reset: false
            }
        );
        let later = Reading {
            timestamp_ms: 9000,
            ..first.clone()
        };
        assert_eq!(
            b.samples()
                .expect("samples")
                .insert(&later, &v, 4)
                .expect("reset"),
            Inserted::Conflict {
                version: 2,
                reset: true
            }
        );
        assert_eq!(
            b.samples()
                .expect("samples")
                .insert(&earlier, &v, 5)
                .expect("seen"),
            Inserted::Duplicate
        );
        let (n, _, _) = b
            .samples_digest("pen-1", "s", (0, u64::MAX), 0)
            .expect("digest");
        assert_eq!(n, 3, "every version is in the session's digest");
    }
}
