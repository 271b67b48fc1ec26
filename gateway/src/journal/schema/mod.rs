//! The journal's tables and their migrations: the one place that says what is stored where.

use rusqlite::Connection;

use super::{JournalError, Result};

mod samples;

pub(super) use samples::CONTEXT_COLUMNS;

/// Version 12 keeps each pen's serial once (`pens`) and keys a sample's row by the pen's number
/// (`sample_rows.pen`, unique with `seq` and `version`). See [`samples`].
///
/// Version 11 keeps a sample's values in `sample_rows` and what stays the same across a
/// session's samples (clinic, classes, model, firmware, operator, cartridge, encoding, policy
/// version) once, in `sample_contexts`; the view `samples` joins them back into the rows every
/// reader selects. See [`samples`].
///
/// Version 10 keeps, for a gateway reading a JetStream stream (`[nats]`), the stream sequence
/// it has committed up to (`stream_positions`), written in the same transaction as each batch.
///
/// Version 9 keeps amendments: `amendments`, one row per chained `amendment` record (late data
/// for a closed session, which stays closed); `sessions.audit_seq`, the chain position of a
/// closed session's record, which its amendments reference; `violations.amendment`, the number
/// of the amendment that raised a session's only violation (0 for a violation of the record).
///
/// Version 8 adds signed reviews (`reviews`, each row chained as a `review` entry by the
/// connection that writes it) and the policy history (`policy_in_force`: one row each time a
/// version came into force, so a version put back in force after another is seen twice);
/// see [`migrate_7_to_8`].
///
/// Version 6 adds the alert outbox: `alert_outbox`, one row per alert (its key), written by the
/// committer in the same transaction as the facts that raise it, its `revision` raised by
/// every change and `pending` until every target has it; `alert_deliveries`, what each target
/// received of each alert, written by the delivering side.
///
/// Version 5 keeps every version of a `(device_id, seq)` that arrived with different content
/// (`samples.version`: 0 for the first, 1, 2, … for conflicting ones), unique by
/// `(device_id, seq, version)`; an exact duplicate is still recognised and dropped.
///
/// Version 4 keeps at most the first [`QUARANTINE_KEPT_BYTES`] of a quarantined payload, with
/// its size and SHA-256 (`quarantine.size_bytes`, `quarantine.sha256`).
///
/// Version 3 keeps each session's deepest sample in `sessions.max_depth_mm`, so no query reads
/// a field inside the JSON record.
///
/// Version 2 keeps each session's `seq` range in `sessions (min_seq, max_seq)` and finds a
/// session's samples through the `(device_id, seq)` index within that range, instead of
/// keeping two more indexes on `samples` (`(device_id, session_id, seq)` and `(ts_ms)`): they
/// cost 30 % of the committer's time per message (measured with the ingest benchmark).
const SCHEMA_VERSION: i64 = 12;

/// The most of a quarantined payload the journal keeps, bytes.
pub const QUARANTINE_KEPT_BYTES: usize = 4096;

/// From version 1 to 2, in the same transaction as the schema.
const MIGRATE_1_TO_2: &str = "
ALTER TABLE sessions ADD COLUMN min_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN max_seq INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET
    min_seq = IFNULL((SELECT MIN(seq) FROM samples s
        WHERE s.device_id = sessions.device_id AND s.session_id = sessions.session_id), 0),
    max_seq = IFNULL((SELECT MAX(seq) FROM samples s
        WHERE s.device_id = sessions.device_id AND s.session_id = sessions.session_id), 0);
DROP INDEX IF EXISTS samples_session;
DROP INDEX IF EXISTS samples_ts;
";

/// From version 2 to 3.
const MIGRATE_2_TO_3: &str = "
ALTER TABLE sessions ADD COLUMN max_depth_mm REAL NOT NULL DEFAULT 0;
UPDATE sessions SET max_depth_mm = IFNULL(json_extract(record, '$.max_depth_mm'), 0);
";

/// From version 3 to 4: the columns; [`bound_quarantine`] then cuts the kept payloads.
const MIGRATE_3_TO_4: &str = "
ALTER TABLE quarantine ADD COLUMN size_bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE quarantine ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
";

/// From version 5 to 6: nothing to change; `SCHEMA` adds the outbox tables.
const MIGRATE_5_TO_6: &str = "";

/// From version 6 to 7: nothing to change; `SCHEMA` adds the access log.
const MIGRATE_6_TO_7: &str = "";

/// The tables of version 8: signed reviews and the policy history.
const REVIEWS_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS reviews (
    id INTEGER PRIMARY KEY,
    signed_ms INTEGER NOT NULL,
    signer TEXT NOT NULL,
    token TEXT NOT NULL,
    role TEXT NOT NULL,
    meaning TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    from_ms INTEGER NOT NULL,
    until_ms INTEGER NOT NULL,
    head_seq INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_clinic ON reviews (clinic_id, from_ms);
CREATE TABLE IF NOT EXISTS policy_in_force (
    id INTEGER PRIMARY KEY,
    version TEXT NOT NULL,
    from_ms INTEGER NOT NULL
);
";

/// From version 7 to 8: the review and policy history tables, the history started from the
/// versions recorded so far (each once, from when it was first loaded).
fn migrate_7_to_8() -> String {
    format!(
        "{REVIEWS_SCHEMA} INSERT INTO policy_in_force (version, from_ms) \
         SELECT version, loaded_ms FROM policy_versions ORDER BY loaded_ms, version;"
    )
}

/// From version 8 to 9: the new columns (`SCHEMA` adds the `amendments` table), and each closed
/// session's chain position from its latest `session` entry, found in one pass over the chain.
const MIGRATE_8_TO_9: &str = "
ALTER TABLE sessions ADD COLUMN audit_seq INTEGER;
ALTER TABLE violations ADD COLUMN amendment INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET audit_seq = chained.seq
FROM (SELECT json_extract(body, '$.device_id') AS device_id,
        json_extract(body, '$.session_id') AS session_id, MAX(seq) AS seq
      FROM audit_chain WHERE kind = 'session' GROUP BY 1, 2) AS chained
WHERE sessions.state = 'closed' AND sessions.device_id = chained.device_id
    AND sessions.session_id = chained.session_id;
";

/// From version 4 to 5: `samples` rebuilt with `version` in its unique key (a table's
/// constraint cannot be altered in place), ids kept.
fn migrate_4_to_5() -> String {
    let columns = super::rows::SAMPLE_COLUMNS;
    format!(
        "{} INSERT INTO samples_v5 (id, {columns}) SELECT id, {columns} FROM samples;
         DROP TABLE samples;
         ALTER TABLE samples_v5 RENAME TO samples;",
        samples::table_v10("samples_v5")
    )
}

/// Every table but the samples' (see [`samples`]).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,
    exceeded INTEGER NOT NULL,
    state TEXT NOT NULL,
    close_reason TEXT,
    samples_digest TEXT,
    record TEXT NOT NULL,
    min_seq INTEGER NOT NULL DEFAULT 0,
    max_seq INTEGER NOT NULL DEFAULT 0,
    max_depth_mm REAL NOT NULL DEFAULT 0,
    audit_seq INTEGER,
    PRIMARY KEY (device_id, session_id)
);
CREATE INDEX IF NOT EXISTS sessions_clinic ON sessions (clinic_id, started_ms);
CREATE TABLE IF NOT EXISTS violations (
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    limit_mm REAL NOT NULL,
    binding TEXT NOT NULL,
    peak_depth_mm REAL NOT NULL,
    first_above_ms INTEGER NOT NULL,
    last_above_ms INTEGER NOT NULL,
    strokes_above INTEGER NOT NULL,
    samples_above INTEGER NOT NULL,
    policy_version TEXT NOT NULL,
    final INTEGER NOT NULL,
    amendment INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (device_id, session_id)
);
CREATE TABLE IF NOT EXISTS amendments (
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    audit_seq INTEGER NOT NULL,
    amends_seq INTEGER NOT NULL,
    reason TEXT NOT NULL,
    committed_ms INTEGER NOT NULL,
    messages INTEGER NOT NULL,
    last_sample_id INTEGER NOT NULL,
    max_depth_mm REAL NOT NULL,
    exceeded INTEGER NOT NULL,
    new_violation INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (device_id, session_id, number)
);
CREATE TABLE IF NOT EXISTS cartridges (
    cartridge_id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    strokes INTEGER NOT NULL,
    wear TEXT NOT NULL,
    reused INTEGER NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cartridge_events (
    id INTEGER PRIMARY KEY,
    cartridge_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    clinic_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    received_ms INTEGER NOT NULL,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL,
    reason TEXT NOT NULL,
    size_bytes INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS policy_versions (
    version TEXT PRIMARY KEY,
    loaded_ms INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_chain (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS sink_cursors (
    sink TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS access_log (
    id INTEGER PRIMARY KEY,
    at_ms INTEGER NOT NULL,
    token TEXT NOT NULL,
    role TEXT NOT NULL,
    rpc TEXT NOT NULL,
    filter TEXT NOT NULL,
    rows INTEGER NOT NULL,
    outcome TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alert_outbox (
    alert_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    severity TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    summary TEXT NOT NULL,
    details TEXT NOT NULL,
    starts_ms INTEGER NOT NULL,
    ends_ms INTEGER,
    updated_ms INTEGER NOT NULL,
    revision INTEGER NOT NULL,
    pending INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS alert_outbox_pending ON alert_outbox (updated_ms) WHERE pending = 1;
CREATE TABLE IF NOT EXISTS alert_deliveries (
    target TEXT NOT NULL,
    alert_key TEXT NOT NULL,
    revision INTEGER NOT NULL,
    delivered_ms INTEGER NOT NULL,
    PRIMARY KEY (target, alert_key)
);
CREATE TABLE IF NOT EXISTS stream_positions (
    stream TEXT PRIMARY KEY,
    position INTEGER NOT NULL
);
";

/// From version 9 to 10: nothing to change; `SCHEMA` adds `stream_positions`.
const MIGRATE_9_TO_10: &str = "";

/// Creates the tables, or brings a journal written by an older gateway up to this version, in
/// one transaction; refuses a journal written by a newer gateway.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    let found = version(conn)?;
    if found > SCHEMA_VERSION {
        return Err(JournalError::Schema {
            found,
            supported: SCHEMA_VERSION,
        });
    }
    // A new journal (version 0) gets the tables as they are now; an older one is migrated
    // step by step before `SCHEMA` adds what it lacks.
    let steps = [
        MIGRATE_1_TO_2.to_owned(),
        MIGRATE_2_TO_3.to_owned(),
        MIGRATE_3_TO_4.to_owned(),
        migrate_4_to_5(),
        MIGRATE_5_TO_6.to_owned(),
        MIGRATE_6_TO_7.to_owned(),
        migrate_7_to_8(),
        MIGRATE_8_TO_9.to_owned(),
        MIGRATE_9_TO_10.to_owned(),
        samples::migrate_10_to_11(),
        samples::migrate_11_to_12(),
    ];
    let migration = if found == 0 {
        String::new()
    } else {
        steps[(found - 1) as usize..].concat()
    };
    let samples = samples::schema();
    conn.execute_batch(&format!(
        "BEGIN; {migration} {samples} {SCHEMA} {REVIEWS_SCHEMA}"
    ))?;
    if (1..4).contains(&found) {
        bound_quarantine(conn)?;
    }
    conn.execute_batch("COMMIT")?;
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}

/// Gives every quarantined payload kept whole by an earlier version its size and SHA-256, and
/// keeps only its first [`QUARANTINE_KEPT_BYTES`].
fn bound_quarantine(conn: &Connection) -> Result<()> {
    let mut rows = conn.prepare("SELECT id, payload FROM quarantine WHERE sha256 = ''")?;
    let mut update = conn.prepare(
        "UPDATE quarantine SET payload = ?2, size_bytes = ?3, sha256 = ?4 WHERE id = ?1",
    )?;
    let mut found = rows.query([])?;
    while let Some(row) = found.next()? {
        let id: i64 = row.get("id")?;
        let payload: Vec<u8> = row.get("payload")?;
        let kept = Kept::of(&payload);
        update.execute(rusqlite::params![
            id,
            kept.head,
            kept.size as i64,
            kept.sha256
        ])?;
    }
    Ok(())
}

/// What the journal keeps of a quarantined payload.
pub(super) struct Kept<'a> {
    /// The first [`QUARANTINE_KEPT_BYTES`].
    pub head: &'a [u8],
    /// The whole payload's size, bytes.
    pub size: usize,
    /// The whole payload's SHA-256, hex.
    pub sha256: String,
}

impl<'a> Kept<'a> {
    /// What is kept of `payload`.
    pub fn of(payload: &'a [u8]) -> Self {
        use sha2::Digest;
        Self {
            head: &payload[..payload.len().min(QUARANTINE_KEPT_BYTES)],
            size: payload.len(),
            sha256: hex::encode(sha2::Sha256::digest(payload)),
        }
    }
}

/// The schema version a journal was last written with (0 for a new file).
pub(super) fn version(conn: &Connection) -> Result<i64> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Sync, Writer};

    /// A new journal in a temporary directory (kept as long as the first value), and a
    /// connection to it.
    fn new_journal() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        drop(Writer::open(&path, Sync::Normal).expect("create"));
        let conn = Connection::open(&path).expect("open");
        (dir, path, conn)
    }

    /// A new journal taken back to before version 9 (the older tests' starting point).
    fn journal_before_9() -> (tempfile::TempDir, std::path::PathBuf, Connection) {
        let (dir, path, conn) = new_journal();
        conn.execute_batch(&format!(
            "{} DROP TABLE amendments;
             ALTER TABLE sessions DROP COLUMN audit_seq;
             ALTER TABLE violations DROP COLUMN amendment;",
            samples::back_to_v10()
        ))
        .expect("version 8");
        (dir, path, conn)
    }

    #[test]
    fn a_version_2_journal_gets_each_sessions_deepest_sample_from_its_record() {
        let (_dir, path, conn) = journal_before_9();
        conn.execute_batch(
            "ALTER TABLE sessions DROP COLUMN max_depth_mm;
             ALTER TABLE quarantine DROP COLUMN size_bytes;
             ALTER TABLE quarantine DROP COLUMN sha256;
             INSERT INTO sessions (device_id, session_id, clinic_id, operator_id, device_class,
                started_ms, last_ms, exceeded, state, record)
             VALUES ('pen', 's', 'c', 'op', 'home', 1, 2, 1, 'closed', '{\"max_depth_mm\": 1.25}');
             PRAGMA user_version = 2;",
        )
        .expect("version 2");
        drop(conn);

        let writer = Writer::open(&path, Sync::Normal).expect("migrate");
        let depth: f64 = writer
            .conn
            .query_row("SELECT max_depth_mm FROM sessions", [], |r| r.get(0))
            .expect("column");
        assert_eq!(depth, 1.25);
        assert_eq!(version(&writer.conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_3_journal_keeps_only_the_head_of_each_quarantined_payload_with_its_hash() {
        let (_dir, path, conn) = journal_before_9();
        conn.execute_batch(
            "ALTER TABLE quarantine DROP COLUMN size_bytes;
             ALTER TABLE quarantine DROP COLUMN sha256;
             INSERT INTO quarantine (received_ms, topic, payload, kind, reason)
             VALUES (1, 't', zeroblob(10000), 'size', 'too big');
             PRAGMA user_version = 3;",
        )
        .expect("version 3");
        drop(conn);

        let writer = Writer::open(&path, Sync::Normal).expect("migrate");
        let q = writer.quarantine(10, None).expect("quarantine");
        assert_eq!(q.len(), 1);
        assert_eq!(q[0].payload, vec![0u8; QUARANTINE_KEPT_BYTES]);
        assert_eq!(q[0].size_bytes, 10_000);
        assert_eq!(q[0].sha256, Kept::of(&[0u8; 10_000]).sha256);
    }

    #[test]
    fn a_version_4_journal_keeps_its_samples_and_their_ids_and_takes_conflicting_versions() {
        let (_dir, path, conn) = journal_before_9();
        conn.execute_batch(&format!(
            "DROP TABLE samples;
             CREATE TABLE samples ({}, UNIQUE (device_id, seq));
             INSERT INTO samples (id, device_id, seq, clinic_id, device_class, claimed_class,
                model, firmware, operator_id, session_id, cartridge_id, cartridge_model, ts_ms,
                received_ms, event, depth_mm, session_strokes, cartridge_strokes, speed_hz,
                battery_pct, zone, encoding, permitted_mm, binding, exceeded, unknown_operator,
                unregistered_device, class_mismatch, policy_version)
             VALUES (41, 'pen', 7, 'c', 'home', 'home', 'm', 'f', 'op', 's', 'cart', 'N', 1000,
                1000, 'sample', 0.5, 1, 1, 100, 50, NULL, 'protobuf', 0.5, 'class', 0, 0, 0, 0, 'p');
             PRAGMA user_version = 4;",
            samples::V10_COLUMNS_DEFINED
        ))
        .expect("version 4");
        drop(conn);

        let writer = Writer::open(&path, Sync::Normal).expect("migrate");
        let (id, version): (i64, i64) = writer
            .conn
            .query_row("SELECT id, version FROM samples WHERE seq = 7", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .expect("kept");
        assert_eq!((id, version), (41, 0));
        writer
            .conn
            .execute(
                "INSERT INTO sample_rows SELECT 42, pen, seq, context, ts_ms, received_ms,
                    event, 1.5, session_strokes, cartridge_strokes, speed_hz, battery_pct, zone,
                    permitted_mm, binding, exceeded, unknown_operator, unregistered_device,
                    class_mismatch, 1 FROM sample_rows WHERE id = 41",
                [],
            )
            .expect("a second version of the same seq");
    }

    /// Every sample as the view (or, before version 11, the table) `samples` shows it.
    fn all_samples(conn: &Connection) -> Vec<Vec<rusqlite::types::Value>> {
        let columns = crate::journal::rows::SAMPLE_COLUMNS;
        let mut stmt = conn
            .prepare(&format!(
                "SELECT id, {columns}, version FROM samples ORDER BY id"
            ))
            .expect("select");
        let n = stmt.column_count();
        stmt.query_map([], |r| (0..n).map(|i| r.get(i)).collect())
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("values")
    }

    /// Four samples of two pens as a version 10 journal's `samples` table holds them: three
    /// contexts, ids with gaps, a conflicting version.
    fn v10_samples() -> String {
        format!(
            "{} INSERT INTO samples (id, {}, version) VALUES
             (3, 'pen', 1, 'c', 'home', 'home', 'm', 'f', 'op', 's', 'cart', 'N', 1000, 1001,
                'start', 0.0, 0, 0, 0, 90, NULL, 'json', 0.5, 'class', 0, 0, 0, 0, 'p', 0),
             (5, 'pen', 2, 'c', 'home', 'home', 'm', 'f', 'op', 's', 'cart', 'N', 1100, 1101,
                'sample', 0.4, 1, 1, 100, 90, 'face', 'json', 0.5, 'class', 0, 0, 0, 0, 'p', 0),
             (9, 'pen', 2, 'c', 'home', 'home', 'm', 'f', 'op-2', 's', 'cart', 'N', 1200, 1201,
                'sample', 0.6, 2, 2, 100, 89, 'face', 'json', 0.5, 'class', 1, 1, 0, 0, 'p', 1),
             (12, 'pen-2', 1, 'c', 'pro', 'home', 'm', 'f', 'op', 's', 'cart', 'N', 1000, 1001,
                'sample', 1.1, 1, 1, 120, 70, NULL, 'protobuf', 1.5, 'class', 0, 0, 0, 1, 'p', 0);",
            samples::back_to_v10(),
            crate::journal::rows::SAMPLE_COLUMNS
        )
    }

    /// The journal at `path` opened (and so migrated), its samples checked against `before`.
    fn migrated_with_the_same_samples(
        path: &std::path::Path,
        before: &[Vec<rusqlite::types::Value>],
    ) -> Writer {
        let writer = Writer::open(path, Sync::Normal).expect("migrate");
        assert_eq!(
            all_samples(&writer.conn),
            before,
            "the same rows, ids and values"
        );
        writer
    }

    #[test]
    fn a_version_10_journal_keeps_every_sample_with_its_id_and_each_context_once() {
        let (_dir, path, conn) = new_journal();
        conn.execute_batch(&format!("{} PRAGMA user_version = 10;", v10_samples()))
            .expect("version 10");
        let before = all_samples(&conn);
        drop(conn);

        let writer = migrated_with_the_same_samples(&path, &before);
        let contexts: i64 = writer
            .conn
            .query_row("SELECT COUNT(*) FROM sample_contexts", [], |r| r.get(0))
            .expect("contexts");
        assert_eq!(contexts, 3, "one per pen, session and operator");
        assert_eq!(version(&writer.conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_11_journal_keeps_every_sample_with_its_id_and_numbers_each_pen_once() {
        let (_dir, path, conn) = new_journal();
        conn.execute_batch(&format!(
            "{} {} {} PRAGMA user_version = 11;",
            v10_samples(),
            samples::migrate_10_to_11(),
            samples::view_v11()
        ))
        .expect("version 11");
        let before = all_samples(&conn);
        assert_eq!(before.len(), 4);
        drop(conn);

        let writer = migrated_with_the_same_samples(&path, &before);
        let pens: Vec<(i64, String)> = writer
            .conn
            .prepare("SELECT id, device_id FROM pens ORDER BY id")
            .expect("pens")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("values");
        assert_eq!(pens, [(1, "pen".to_owned()), (2, "pen-2".to_owned())]);
        let again = writer.conn.execute(
            "INSERT INTO sample_rows SELECT 13, pen, seq, context, ts_ms, received_ms, event,
                depth_mm, session_strokes, cartridge_strokes, speed_hz, battery_pct, zone,
                permitted_mm, binding, exceeded, unknown_operator, unregistered_device,
                class_mismatch, version FROM sample_rows WHERE id = 9",
            [],
        );
        assert!(again.is_err(), "(pen, seq, version) is still unique");
        assert_eq!(version(&writer.conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_pens_samples_are_found_through_its_number_not_by_reading_every_row() {
        let (_dir, _path, conn) = new_journal();
        for (what, sql) in [
            (
                "a pen's seq range",
                "SELECT id FROM samples WHERE device_id = ?1 AND seq BETWEEN ?2 AND ?3",
            ),
            (
                "a session's samples",
                "SELECT id FROM samples WHERE device_id = ?1 AND session_id = ?2 AND seq >= ?3 \
                 ORDER BY seq, version",
            ),
            (
                "the sink's next rows",
                "SELECT device_id, clinic_id FROM samples WHERE id > ?1 ORDER BY id LIMIT 10",
            ),
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan")
                .query_map(
                    rusqlite::params_from_iter(std::iter::repeat_n(1, sql.matches('?').count())),
                    |r| r.get::<_, String>(3),
                )
                .expect("rows")
                .collect::<rusqlite::Result<_>>()
                .expect("steps");
            assert!(
                !plan.iter().any(|step| step.starts_with("SCAN")),
                "{what}: {plan:?}"
            );
        }
    }

    #[test]
    fn a_version_7_journal_starts_its_policy_history_from_the_versions_it_recorded() {
        let (_dir, path, conn) = journal_before_9();
        conn.execute_batch(
            "DROP TABLE reviews;
             DROP TABLE policy_in_force;
             INSERT INTO policy_versions (version, loaded_ms, text) VALUES
                ('v-new', 2000, 'b = 2'), ('v-old', 1000, 'a = 1');
             PRAGMA user_version = 7;",
        )
        .expect("version 7");
        drop(conn);

        let writer = Writer::open(&path, Sync::Normal).expect("migrate");
        let history = writer.policy_history().expect("history");
        let seen: Vec<_> = history
            .iter()
            .map(|p| (p.version.as_str(), p.from_ms, p.until_ms))
            .collect();
        assert_eq!(
            seen,
            [("v-old", 1000, Some(2000)), ("v-new", 2000, None)],
            "in force until the next came in"
        );
        assert_eq!(history[0].text, "a = 1");
        assert!(
            writer
                .reviews(None, None, None)
                .expect("reviews")
                .is_empty()
        );
        assert_eq!(version(&writer.conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_8_journal_gets_amendments_and_keeps_its_sessions_and_violations() {
        let (_dir, path, conn) = journal_before_9();
        conn.execute_batch(
            "INSERT INTO sessions (device_id, session_id, clinic_id, operator_id, device_class,
                started_ms, last_ms, exceeded, state, record)
             VALUES ('pen', 's', 'c', 'op', 'home', 1, 2, 1, 'closed', '{}');
             INSERT INTO sessions (device_id, session_id, clinic_id, operator_id, device_class,
                started_ms, last_ms, exceeded, state, record)
             VALUES ('pen', 'open', 'c', 'op', 'home', 1, 2, 0, 'open', '{}');
             INSERT INTO audit_chain (seq, kind, body, prev_hash, hash) VALUES
                (4, 'session', '{\"device_id\":\"pen\",\"session_id\":\"s\"}', '', ''),
                (5, 'session', '{\"device_id\":\"pen\",\"session_id\":\"other\"}', '', '');
             INSERT INTO violations (device_id, session_id, clinic_id, operator_id, device_class,
                limit_mm, binding, peak_depth_mm, first_above_ms, last_above_ms, strokes_above,
                samples_above, policy_version, final)
             VALUES ('pen', 's', 'c', 'op', 'home', 0.5, 'class', 0.7, 1, 2, 3, 1, 'p', 1);
             PRAGMA user_version = 8;",
        )
        .expect("version 8");
        drop(conn);

        let writer = Writer::open(&path, Sync::Normal).expect("migrate");
        let (audit_seq, amendment): (Option<i64>, i64) = writer
            .conn
            .query_row(
                "SELECT s.audit_seq, v.amendment FROM sessions s JOIN violations v USING (device_id, session_id)",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("kept");
        assert_eq!(
            (audit_seq, amendment),
            (Some(4), 0),
            "the closed session's chain position is found"
        );
        let open: Option<i64> = writer
            .conn
            .query_row(
                "SELECT audit_seq FROM sessions WHERE session_id = 'open'",
                [],
                |r| r.get(0),
            )
            .expect("open session");
        assert_eq!(open, None);
        let amendments: i64 = writer
            .conn
            .query_row("SELECT COUNT(*) FROM amendments", [], |r| r.get(0))
            .expect("table");
        assert_eq!(amendments, 0);
        assert_eq!(version(&writer.conn).expect("version"), SCHEMA_VERSION);
    }

    #[test]
    fn a_journal_from_a_newer_gateway_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let conn = Connection::open(&path).expect("open");
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("version");
        drop(conn);
        let err = Writer::open(&path, Sync::Normal).err().expect("refused");
        assert!(err.to_string().contains("upgrade the gateway"), "{err}");
    }
}
