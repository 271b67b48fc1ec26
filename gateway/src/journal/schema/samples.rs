//! Where samples are stored (version 11): a lean row per sample in `sample_rows`, and what stays
//! the same across a session's samples once per session in `sample_contexts` (a new context
//! when the operator, cartridge, policy version or anything else in it changes). The view
//! `samples` joins them back into the rows every reader selects, with the columns `samples`
//! had as a table up to version 10, so only the committer's insert and deletes name the tables.
//!
//! Why: the committer writes every sample, and its thirteen text columns were most of a row's
//! bytes and of the insert's binding. With the per-session text kept once, the committer spends
//! about a seventh less CPU per message in its benchmark (median of eight alternating pairs;
//! README, Benchmarks). Contexts are kept like sessions: pruning samples leaves them.

use crate::journal::rows::{SAMPLE_COLUMNS, SAMPLE_ROW_COLUMNS};

/// The columns of `sample_contexts` but `id`; together they are unique.
pub(in crate::journal) const CONTEXT_COLUMNS: &str = "device_id, session_id, clinic_id, \
    device_class, claimed_class, model, firmware, operator_id, cartridge_id, cartridge_model, \
    encoding, policy_version";

/// The samples' tables and the view over them, for a new journal (a no-op on a migrated one).
pub(super) fn schema() -> String {
    format!("{TABLES} {}", view())
}

/// The view `samples`: each of [`SAMPLE_COLUMNS`] (with `id` and `version`) from the context
/// if the context keeps it, else from the row.
fn view() -> String {
    let in_context = |c: &str| c != "device_id" && columns(CONTEXT_COLUMNS).any(|k| k == c);
    let selected = std::iter::once("id")
        .chain(columns(SAMPLE_COLUMNS))
        .chain(["version"])
        .map(|c| format!("{}.{c} AS {c}", if in_context(c) { "c" } else { "r" }))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE VIEW IF NOT EXISTS samples AS SELECT {selected} \
         FROM sample_rows r LEFT JOIN sample_contexts c ON c.id = r.context;"
    )
}

/// The names in a column list.
fn columns(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim)
}

/// The samples' tables.
const TABLES: &str = "
CREATE TABLE IF NOT EXISTS sample_contexts (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    clinic_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    claimed_class TEXT NOT NULL,
    model TEXT NOT NULL,
    firmware TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    cartridge_id TEXT NOT NULL,
    cartridge_model TEXT NOT NULL,
    encoding TEXT NOT NULL,
    policy_version TEXT NOT NULL,
    UNIQUE (device_id, session_id, clinic_id, device_class, claimed_class, model, firmware,
        operator_id, cartridge_id, cartridge_model, encoding, policy_version)
);
CREATE TABLE IF NOT EXISTS sample_rows (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    context INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    depth_mm REAL NOT NULL,
    session_strokes INTEGER NOT NULL,
    cartridge_strokes INTEGER NOT NULL,
    speed_hz REAL NOT NULL,
    battery_pct REAL NOT NULL,
    zone TEXT,
    permitted_mm REAL NOT NULL,
    binding TEXT NOT NULL,
    exceeded INTEGER NOT NULL,
    unknown_operator INTEGER NOT NULL,
    unregistered_device INTEGER NOT NULL,
    class_mismatch INTEGER NOT NULL,
    version INTEGER NOT NULL DEFAULT 0,
    UNIQUE (device_id, seq, version)
);
";

/// From version 10 to 11: each distinct context of the `samples` table kept once (in the order
/// first seen), each sample's row with its id and a reference to its context, then the table
/// replaced by the view.
pub(super) fn migrate_10_to_11() -> String {
    let joined = columns(CONTEXT_COLUMNS)
        .map(|c| format!("c.{c} = s.{c}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let row = columns(SAMPLE_ROW_COLUMNS)
        .map(|c| match c {
            "context" => "c.id".to_owned(),
            _ => format!("s.{c}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{TABLES}
         INSERT INTO sample_contexts ({CONTEXT_COLUMNS})
             SELECT {CONTEXT_COLUMNS} FROM samples GROUP BY {CONTEXT_COLUMNS} ORDER BY MIN(id);
         INSERT INTO sample_rows (id, {SAMPLE_ROW_COLUMNS})
             SELECT s.id, {row} FROM samples s JOIN sample_contexts c ON {joined} ORDER BY s.id;
         DROP TABLE samples;"
    )
}

/// The `samples` table of versions 5 to 10 under `name`, for the migrations before 11.
pub(super) fn table_v10(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} ({V10_COLUMNS_DEFINED}, \
         version INTEGER NOT NULL DEFAULT 0, UNIQUE (device_id, seq, version));"
    )
}

/// The columns of the `samples` table up to version 10 but `version`.
pub(super) const V10_COLUMNS_DEFINED: &str = "
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    clinic_id TEXT NOT NULL,
    device_class TEXT NOT NULL,
    claimed_class TEXT NOT NULL,
    model TEXT NOT NULL,
    firmware TEXT NOT NULL,
    operator_id TEXT NOT NULL,
    session_id TEXT NOT NULL,
    cartridge_id TEXT NOT NULL,
    cartridge_model TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    received_ms INTEGER NOT NULL,
    event TEXT NOT NULL,
    depth_mm REAL NOT NULL,
    session_strokes INTEGER NOT NULL,
    cartridge_strokes INTEGER NOT NULL,
    speed_hz REAL NOT NULL,
    battery_pct REAL NOT NULL,
    zone TEXT,
    encoding TEXT NOT NULL,
    permitted_mm REAL NOT NULL,
    binding TEXT NOT NULL,
    exceeded INTEGER NOT NULL,
    unknown_operator INTEGER NOT NULL,
    unregistered_device INTEGER NOT NULL,
    class_mismatch INTEGER NOT NULL,
    policy_version TEXT NOT NULL";

/// Takes a new journal's samples back to version 10's table (the migration tests' start).
#[cfg(test)]
pub(super) fn back_to_v10() -> String {
    format!(
        "DROP VIEW samples; DROP TABLE sample_rows; DROP TABLE sample_contexts; {}",
        table_v10("samples")
    )
}
