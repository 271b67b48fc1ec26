//! A session's journaled samples: its depth timeline (and its downsampling), and the samples
//! of its record or of one amendment, handed out one by one.

use rusqlite::params;

use crate::decode::Reading;
use crate::journal::rows::{self, SAMPLE_COLUMNS};
use crate::journal::{Reader, Result};
use crate::sessions::Verdict;

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

impl Reader {
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
