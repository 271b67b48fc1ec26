//! Where samples are stored (version 12): a lean row per sample in `sample_rows`, what stays the
//! same across a session's samples once per session in `sample_contexts` (a new context when the
//! operator, cartridge, policy version or anything else in it changes), and each pen's serial
//! once in `pens`. The view `samples` joins them back into the rows every reader selects, with
//! the columns `samples` had as a table up to version 10, so only the committer's insert and
//! deletes name the tables.
//!
//! Why: the committer writes every sample, and its thirteen text columns were most of a row's
//! bytes and of the insert's binding. With the per-session text kept once, the committer spends
//! about a seventh less CPU per message in its benchmark (median of eight alternating pairs;
//! README, Benchmarks). Version 12 keys a row by its pen's number instead of its serial: the
//! unique index that makes each `(device_id, seq)` exactly once compares integers rather than
//! text on every insert (README, Benchmarks). Contexts and pens are kept like sessions: pruning
//! samples leaves them.

use crate::journal::rows::{SAMPLE_COLUMNS, SAMPLE_ROW_COLUMNS};

/// The columns of `sample_contexts` but `id`; together they are unique.
pub(in crate::journal) const CONTEXT_COLUMNS: &str = "device_id, session_id, clinic_id, \
    device_class, claimed_class, model, firmware, operator_id, cartridge_id, cartridge_model, \
    encoding, policy_version";

/// The samples' tables and the view over them, for a new journal (a no-op on a migrated one).
pub(super) fn schema() -> String {
    format!("{} {}", tables(), view())
}

/// The view `samples`: each of [`SAMPLE_COLUMNS`] (with `id` and `version`) from the pen, the
/// context or the row, whichever keeps it. Readers select a pen's samples by `device_id`: the
/// planner finds the pen by its serial, then its rows through `(pen, seq, version)`.
fn view() -> String {
    let in_context = |c: &str| c != "device_id" && columns(CONTEXT_COLUMNS).any(|k| k == c);
    let selected = std::iter::once("id")
        .chain(columns(SAMPLE_COLUMNS))
        .chain(["version"])
        .map(|c| {
            let table = match c {
                "device_id" => "p",
                c if in_context(c) => "c",
                _ => "r",
            };
            format!("{table}.{c} AS {c}")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "CREATE VIEW IF NOT EXISTS samples AS SELECT {selected} FROM sample_rows r \
         JOIN pens p ON p.id = r.pen LEFT JOIN sample_contexts c ON c.id = r.context;"
    )
}

/// The names in a column list.
fn columns(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim)
}

/// A migration's select list for the columns `list`: each from `table`, but the one named
/// `swapped.0`, selected as `swapped.1`.
fn selected(list: &str, table: &str, swapped: (&str, &str)) -> String {
    columns(list)
        .map(|c| {
            if c == swapped.0 {
                swapped.1.to_owned()
            } else {
                format!("{table}.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The samples' tables.
fn tables() -> String {
    format!("{PENS} {CONTEXTS} {}", rows_table("sample_rows"))
}

/// Each pen's serial, once.
const PENS: &str = "
CREATE TABLE IF NOT EXISTS pens (
    id INTEGER PRIMARY KEY,
    device_id TEXT NOT NULL UNIQUE
);
";

/// What stays the same across a session's samples (versions 11 and 12).
const CONTEXTS: &str = "
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
";

/// The columns of a sample's row after its key (`pen` from version 12, `device_id` in 11).
const ROW_VALUES: &str = "
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
    version INTEGER NOT NULL DEFAULT 0";

/// The table of samples' rows under `name`.
fn rows_table(name: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {name} (id INTEGER PRIMARY KEY, pen INTEGER NOT NULL, \
         {ROW_VALUES}, UNIQUE (pen, seq, version));"
    )
}

/// The columns of `sample_rows` in version 11 but `id`.
const V11_ROW_COLUMNS: &str = "device_id, seq, context, ts_ms, received_ms, event, depth_mm, \
    session_strokes, cartridge_strokes, speed_hz, battery_pct, zone, permitted_mm, binding, \
    exceeded, unknown_operator, unregistered_device, class_mismatch, version";

/// The samples' tables of version 11.
fn tables_v11() -> String {
    format!(
        "{CONTEXTS} CREATE TABLE IF NOT EXISTS sample_rows (id INTEGER PRIMARY KEY, \
         device_id TEXT NOT NULL, {ROW_VALUES}, UNIQUE (device_id, seq, version));"
    )
}

/// From version 10 to 11: each distinct context of the `samples` table kept once (in the order
/// first seen), each sample's row with its id and a reference to its context, then the table
/// replaced by the view.
pub(super) fn migrate_10_to_11() -> String {
    let joined = columns(CONTEXT_COLUMNS)
        .map(|c| format!("c.{c} = s.{c}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let row = selected(V11_ROW_COLUMNS, "s", ("context", "c.id"));
    format!(
        "{}
         INSERT INTO sample_contexts ({CONTEXT_COLUMNS})
             SELECT {CONTEXT_COLUMNS} FROM samples GROUP BY {CONTEXT_COLUMNS} ORDER BY MIN(id);
         INSERT INTO sample_rows (id, {V11_ROW_COLUMNS})
             SELECT s.id, {row} FROM samples s JOIN sample_contexts c ON {joined} ORDER BY s.id;
         DROP TABLE samples;",
        tables_v11()
    )
}

/// From version 11 to 12: each pen that has samples numbered in the order first seen, each row
/// rebuilt with its pen's number in place of its serial (ids kept), and the view made anew.
pub(super) fn migrate_11_to_12() -> String {
    let row = selected(SAMPLE_ROW_COLUMNS, "r", ("pen", "p.id"));
    format!(
        "DROP VIEW IF EXISTS samples; {PENS}
         INSERT INTO pens (device_id)
             SELECT device_id FROM sample_rows GROUP BY device_id ORDER BY MIN(id);
         {}
         INSERT INTO sample_rows_v12 (id, {SAMPLE_ROW_COLUMNS})
             SELECT r.id, {row} FROM sample_rows r JOIN pens p ON p.device_id = r.device_id
             ORDER BY r.id;
         DROP TABLE sample_rows;
         ALTER TABLE sample_rows_v12 RENAME TO sample_rows;",
        rows_table("sample_rows_v12")
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
        "DROP VIEW samples; DROP TABLE sample_rows; DROP TABLE sample_contexts; DROP TABLE pens; {}",
        table_v10("samples")
    )
}

/// The view `samples` as version 11 made it (the serial in the row, no `pens`).
#[cfg(test)]
pub(super) fn view_v11() -> String {
    view()
        .replace("p.device_id", "r.device_id")
        .replace(" JOIN pens p ON p.id = r.pen", "")
}
