//! Rows to records and back: one column list per table, columns read by name.

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{DeviceClass, Event, Zone};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Result;
use crate::audit::lines::{DigestFields, DigestSample};
use crate::audit::{self, SampleDigest};
use crate::cartridges::Cartridge;
use crate::decode::{Encoding, Reading};
use crate::sessions::{Session, Verdict};

/// The columns of the view `samples` but `id` and `version`.
pub(super) const SAMPLE_COLUMNS: &str = "device_id, seq, clinic_id, device_class, claimed_class, \
    model, firmware, operator_id, session_id, cartridge_id, cartridge_model, ts_ms, received_ms, \
    event, depth_mm, session_strokes, cartridge_strokes, speed_hz, battery_pct, zone, encoding, \
    permitted_mm, binding, exceeded, unknown_operator, unregistered_device, class_mismatch, \
    policy_version";

/// The columns of `sample_rows` but `id`, in the order [`super::Samples`] binds them (the
/// rest of a sample is its context's: see `schema::samples`).
pub(super) const SAMPLE_ROW_COLUMNS: &str = "pen, seq, context, ts_ms, received_ms, \
    event, depth_mm, session_strokes, cartridge_strokes, speed_hz, battery_pct, zone, \
    permitted_mm, binding, exceeded, unknown_operator, unregistered_device, class_mismatch, \
    version";

/// The columns of `sessions`, in the order [`super::Batch`] binds them.
pub(super) const SESSION_COLUMNS: &str = "device_id, session_id, clinic_id, operator_id, \
    device_class, started_ms, last_ms, exceeded, state, close_reason, samples_digest, record, \
    min_seq, max_seq, max_depth_mm, audit_seq";

/// The columns of `violations`, in the order [`super::Batch`] binds them.
pub(super) const VIOLATION_COLUMNS: &str = "device_id, session_id, clinic_id, operator_id, \
    device_class, limit_mm, binding, peak_depth_mm, first_above_ms, last_above_ms, strokes_above, \
    samples_above, policy_version, final, amendment";

/// The columns of `amendments`, in the order [`super::Batch`] binds them.
pub(super) const AMENDMENT_COLUMNS: &str = "device_id, session_id, number, audit_seq, \
    amends_seq, reason, committed_ms, messages, last_sample_id, max_depth_mm, exceeded, \
    new_violation, record";

/// The columns of `reviews`, in the order [`super::Signatures`] binds them.
pub(super) const REVIEW_COLUMNS: &str = "id, signer, token, role, meaning, clinic_id, from_ms, \
    until_ms, signed_ms, head_seq, head_hash";

/// A `reviews` row (selected with [`REVIEW_COLUMNS`]) as its chained record.
pub(super) fn review(row: &Row<'_>) -> rusqlite::Result<audit::SignedReview> {
    Ok(audit::SignedReview {
        id: row.get("id")?,
        signer: row.get("signer")?,
        token: row.get("token")?,
        role: row.get("role")?,
        meaning: row.get("meaning")?,
        clinic_id: row.get("clinic_id")?,
        from_ms: row.get("from_ms")?,
        until_ms: row.get("until_ms")?,
        signed_ms: row.get("signed_ms")?,
        head_seq: row.get("head_seq")?,
        head_hash: row.get("head_hash")?,
    })
}

/// `?1, ?2, …, ?n`.
pub(super) fn placeholders(n: usize) -> String {
    (1..=n)
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The positions of `names` among a statement's columns, to read a row by name without a
/// lookup per value.
pub(super) fn indexes<const N: usize>(
    stmt: &rusqlite::Statement<'_>,
    names: [&str; N],
) -> rusqlite::Result<[usize; N]> {
    let mut found = [0; N];
    for (slot, name) in found.iter_mut().zip(names) {
        *slot = stmt.column_index(name)?;
    }
    Ok(found)
}

/// How many columns a column list names.
pub(super) fn count(columns: &str) -> usize {
    columns.split(',').count()
}

fn parse_enum<E: ShortName>(column: &str, s: &str) -> rusqlite::Result<E> {
    E::parse_name(s).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(
            0,
            format!("{column} = {s}"),
            rusqlite::types::Type::Text,
        )
    })
}

/// A `samples` row (selected with [`SAMPLE_COLUMNS`]) as the reading and its verdict.
pub(super) fn sample(row: &Row<'_>) -> rusqlite::Result<(Reading, Verdict)> {
    let zone: Option<String> = row.get("zone")?;
    let encoding: String = row.get("encoding")?;
    let reading = Reading {
        device_id: row.get("device_id")?,
        clinic_id: row.get("clinic_id")?,
        claimed_class: parse_enum::<DeviceClass>(
            "claimed_class",
            &row.get::<_, String>("claimed_class")?,
        )?,
        model: row.get("model")?,
        firmware: row.get("firmware")?,
        operator_id: row.get("operator_id")?,
        session_id: row.get("session_id")?,
        cartridge_id: row.get("cartridge_id")?,
        cartridge_model: row.get("cartridge_model")?,
        seq: row.get::<_, i64>("seq")? as u64,
        timestamp_ms: row.get("ts_ms")?,
        event: parse_enum::<Event>("event", &row.get::<_, String>("event")?)?,
        depth_mm: row.get("depth_mm")?,
        session_strokes: row.get::<_, i64>("session_strokes")? as u64,
        cartridge_strokes: row.get::<_, i64>("cartridge_strokes")? as u64,
        speed_hz: row.get("speed_hz")?,
        battery_pct: row.get("battery_pct")?,
        zone: zone
            .as_deref()
            .map(|z| parse_enum::<Zone>("zone", z))
            .transpose()?,
        encoding: if encoding == "json" {
            Encoding::Json
        } else {
            Encoding::Protobuf
        },
    };
    let verdict = Verdict {
        permitted_mm: row.get("permitted_mm")?,
        binding: row.get("binding")?,
        device_class: row.get("device_class")?,
        exceeded: row.get("exceeded")?,
        unknown_operator: row.get("unknown_operator")?,
        unregistered_device: row.get("unregistered_device")?,
        class_mismatch: row.get("class_mismatch")?,
        policy_version: row.get("policy_version")?,
    };
    Ok((reading, verdict))
}

/// A session's record and `open` / `closed`.
pub(super) fn session(
    conn: &Connection,
    device_id: &str,
    session_id: &str,
) -> Result<Option<(Session, String)>> {
    let row: Option<(String, String)> = conn
        .prepare_cached(
            "SELECT record, state FROM sessions WHERE device_id = ?1 AND session_id = ?2",
        )?
        .query_row(params![device_id, session_id], |r| {
            Ok((r.get("record")?, r.get("state")?))
        })
        .optional()?;
    row.map(|(rec, state)| Ok((serde_json::from_str(&rec)?, state)))
        .transpose()
}

/// A cartridge's stored state.
pub(super) fn cartridge(conn: &Connection, id: &str) -> Result<Option<Cartridge>> {
    let rec: Option<String> = conn
        .prepare_cached("SELECT record FROM cartridges WHERE cartridge_id = ?1")?
        .query_row([id], |r| r.get("record"))
        .optional()?;
    rec.map(|r| Ok(serde_json::from_str(&r)?)).transpose()
}

/// The columns of a sample a session digest covers, as [`DigestSample`] names them, with
/// the journal id.
const DIGEST_COLUMNS: &str = "id, session_id, device_id, seq, ts_ms, event, depth_mm, \
    session_strokes, cartridge_strokes, operator_id, cartridge_id, IFNULL(zone, '') AS zone, \
    permitted_mm, binding, exceeded, policy_version, version";

/// The names of [`DIGEST_COLUMNS`], looked up once per query rather than once per row (a
/// closing session reads every sample it covers).
const DIGEST_NAMES: [&str; 17] = [
    "id",
    "session_id",
    "device_id",
    "seq",
    "ts_ms",
    "event",
    "depth_mm",
    "session_strokes",
    "cartridge_strokes",
    "operator_id",
    "cartridge_id",
    "zone",
    "permitted_mm",
    "binding",
    "exceeded",
    "policy_version",
    "version",
];

/// A row of [`DIGEST_COLUMNS`] with its journal id; `at` holds the positions of
/// [`DIGEST_NAMES`].
fn digest_sample(row: &Row<'_>, at: &[usize; 17]) -> rusqlite::Result<(i64, DigestSample)> {
    let [
        id,
        session_id,
        device_id,
        seq,
        ts_ms,
        event,
        depth_mm,
        session_strokes,
        cartridge_strokes,
        operator_id,
        cartridge_id,
        zone,
        permitted_mm,
        binding,
        exceeded,
        policy_version,
        version,
    ] = *at;
    let sample = DigestSample {
        session_id: row.get(session_id)?,
        device_id: row.get(device_id)?,
        seq: row.get(seq)?,
        timestamp_ms: row.get(ts_ms)?,
        event: row.get(event)?,
        depth_mm: row.get(depth_mm)?,
        session_strokes: row.get(session_strokes)?,
        cartridge_strokes: row.get(cartridge_strokes)?,
        operator_id: row.get(operator_id)?,
        cartridge_id: row.get(cartridge_id)?,
        zone: row.get(zone)?,
        permitted_mm: row.get(permitted_mm)?,
        binding_rule: row.get(binding)?,
        exceeded: row.get(exceeded)?,
        policy_version: row.get(policy_version)?,
        version: row.get::<_, i64>(version)?.max(0) as u64,
    };
    Ok((row.get(id)?, sample))
}

/// What a session digest covers of a sample as [`super::batch::Samples::insert`] journals it
/// as its first version (its binding takes these values; [`DIGEST_COLUMNS`] reads them back,
/// a missing zone as "").
pub fn digest_fields<'a>(r: &'a Reading, v: &'a Verdict) -> DigestFields<'a> {
    DigestFields {
        device_id: &r.device_id,
        seq: r.seq as i64,
        timestamp_ms: r.timestamp_ms,
        event: r.event.short_name(),
        depth_mm: r.depth_mm,
        session_strokes: r.session_strokes as i64,
        cartridge_strokes: r.cartridge_strokes as i64,
        operator_id: &r.operator_id,
        cartridge_id: &r.cartridge_id,
        zone: r.zone.map_or("", |z| z.short_name()),
        permitted_mm: v.permitted_mm,
        binding_rule: &v.binding,
        exceeded: v.exceeded,
        policy_version: &v.policy_version,
        version: 0,
    }
}

/// Hands `f` each sample a session digest covers, with its journal id, in digest order:
/// the session's samples within the `seq` range `seqs` with a journal id in `ids` (above the
/// first, up to the second). The range is a superset of the session's samples, looked up
/// through the `(device_id, seq)` index, then filtered by session.
pub(super) fn digest_samples(
    conn: &Connection,
    device_id: &str,
    session_id: &str,
    seqs: (u64, u64),
    ids: (i64, i64),
    mut f: impl FnMut(i64, DigestSample) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DIGEST_COLUMNS} FROM samples WHERE device_id = ?1 \
         AND seq BETWEEN ?4 AND ?5 AND session_id = ?2 AND id > ?6 AND id <= ?3 \
         ORDER BY seq, version"
    ))?;
    let at = indexes(&stmt, DIGEST_NAMES)?;
    let mut rows = stmt.query(params![
        device_id,
        session_id,
        ids.1,
        seqs.0.min(i64::MAX as u64) as i64,
        seqs.1.min(i64::MAX as u64) as i64,
        ids.0
    ])?;
    while let Some(row) = rows.next()? {
        let (id, sample) = digest_sample(row, &at)?;
        f(id, sample)?;
    }
    Ok(())
}

/// Digest over the samples [`digest_samples`] hands out: how many there were, the highest
/// journal id among them and the digest.
pub(super) fn samples_digest(
    conn: &Connection,
    device_id: &str,
    session_id: &str,
    seqs: (u64, u64),
    ids: (i64, i64),
) -> Result<(u64, i64, String)> {
    let mut digest = SampleDigest::default();
    let (mut n, mut last_id) = (0, 0);
    digest_samples(conn, device_id, session_id, seqs, ids, |id, sample| {
        last_id = i64::max(last_id, id);
        digest.add_fields(&sample.fields());
        n += 1;
        Ok(())
    })?;
    Ok((n, last_id, digest.finish()))
}

/// The chain's last entry: its position and hash (0 and [`audit::GENESIS`] when empty).
pub(super) fn chain_head(conn: &Connection) -> Result<(i64, String)> {
    let head: Option<(i64, String)> = conn
        .prepare_cached("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get("seq")?, r.get("hash")?)))
        .optional()?;
    Ok(head.unwrap_or((0, audit::GENESIS.to_owned())))
}

/// Appends a record to the audit chain inside the caller's transaction; returns its position.
pub(super) fn append_audit(conn: &Connection, record: &audit::Record) -> Result<i64> {
    let (kind, body) = (record.kind(), record.body()?);
    let (head, prev_hash) = chain_head(conn)?;
    let seq = head + 1;
    let hash = audit::link_hash(&prev_hash, kind, &body);
    conn.prepare_cached(
        "INSERT INTO audit_chain (seq, kind, body, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![seq, kind, body, prev_hash, hash])?;
    Ok(seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_depth_in_the_digest_line_reads_as_sqlite_printed_it_before_the_line_moved_to_rust() {
        let conn = Connection::open_in_memory().expect("memory");
        let mut stmt = conn.prepare("SELECT printf('%.6f', ?1)").expect("stmt");
        let steps = (0..=40_000).map(|k| f64::from(k) / 10_000.0);
        let odd = (0..=5_000).map(|k| f64::from(k) * 0.000_7 + 0.000_000_3);
        for depth in steps.chain(odd) {
            let sql: String = stmt.query_row([depth], |r| r.get(0)).expect("printf");
            assert_eq!(format!("{depth:.6}"), sql, "{depth}");
        }
    }
}
