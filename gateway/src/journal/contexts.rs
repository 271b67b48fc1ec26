//! The committer's memory of each pen's keys in the journal: its row in `pens` (which its
//! samples refer to) and its current sample context (the `sample_contexts` row), so a sample
//! whose context is its pen's last one is journaled without looking either up.
//!
//! A key written in a batch that did not commit is not in the journal: what a batch learned
//! is only trusted once it committed ([`Contexts::committed`]); a new batch forgets what an
//! uncommitted one learned ([`Contexts::discard_uncommitted`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params, params_from_iter};

use super::Result;
use super::rows::{count, placeholders};
use super::schema::CONTEXT_COLUMNS;

/// How many columns of [`CONTEXT_COLUMNS`] follow `device_id`.
const FIELDS: usize = 11;

/// A sample's context but its pen, in the order of [`CONTEXT_COLUMNS`] after `device_id`.
pub(super) type Context<'a> = [&'a str; FIELDS];

/// A sample's keys in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Keys {
    /// Its pen's row in `pens`.
    pub pen: i64,
    /// Its context's row in `sample_contexts`.
    pub context: i64,
}

/// Each pen's keys and the values of its last context.
#[derive(Debug, Default)]
pub(super) struct Contexts {
    by_device: HashMap<String, (Keys, [String; FIELDS])>,
    /// Pens whose keys were learned in the batch not committed yet.
    uncommitted: Vec<String>,
}

impl Contexts {
    /// The keys of a sample of `device_id` in `context`, written into the batch's transaction
    /// `tx` where the journal does not have them.
    pub fn keys(&mut self, tx: &Connection, device_id: &str, context: Context<'_>) -> Result<Keys> {
        let pen = match self.by_device.get(device_id) {
            Some((keys, known)) if known.iter().zip(context).all(|(k, c)| k == c) => {
                return Ok(*keys);
            }
            Some((keys, _)) => keys.pen,
            None => pen(tx, device_id)?,
        };
        let values = || std::iter::once(device_id).chain(context);
        let found: Option<i64> = tx
            .prepare_cached(&SELECT)?
            .query_row(params_from_iter(values()), |r| r.get(0))
            .optional()?;
        let context_id = match found {
            Some(id) => id,
            None => {
                tx.prepare_cached(&INSERT)?
                    .execute(params_from_iter(values()))?;
                tx.last_insert_rowid()
            }
        };
        let keys = Keys {
            pen,
            context: context_id,
        };
        self.by_device
            .insert(device_id.to_owned(), (keys, context.map(str::to_owned)));
        self.uncommitted.push(device_id.to_owned());
        Ok(keys)
    }

    /// The batch that learned the contexts since the last call committed.
    pub fn committed(&mut self) {
        self.uncommitted.clear();
    }

    /// Forgets the contexts learned by a batch that did not commit.
    pub fn discard_uncommitted(&mut self) {
        for device_id in self.uncommitted.drain(..) {
            self.by_device.remove(&device_id);
        }
    }
}

/// `device_id`'s row in `pens`, written into `tx` if the journal has none.
fn pen(tx: &Connection, device_id: &str) -> Result<i64> {
    let found: Option<i64> = tx
        .prepare_cached("SELECT id FROM pens WHERE device_id = ?1")?
        .query_row(params![device_id], |r| r.get(0))
        .optional()?;
    Ok(match found {
        Some(id) => id,
        None => {
            tx.prepare_cached("INSERT INTO pens (device_id) VALUES (?1)")?
                .execute(params![device_id])?;
            tx.last_insert_rowid()
        }
    })
}

static SELECT: LazyLock<String> = LazyLock::new(|| {
    let matches = CONTEXT_COLUMNS
        .split(',')
        .enumerate()
        .map(|(i, c)| format!("{} = ?{}", c.trim(), i + 1))
        .collect::<Vec<_>>()
        .join(" AND ");
    format!("SELECT id FROM sample_contexts WHERE {matches}")
});

static INSERT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO sample_contexts ({CONTEXT_COLUMNS}) VALUES ({})",
        placeholders(count(CONTEXT_COLUMNS))
    )
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Sync, Writer};

    const CONTEXT: Context<'static> = [
        "s1", "c1", "clinical", "clinical", "m", "f", "op", "cart", "N", "json", "v1",
    ];

    fn count(conn: &Connection, table: &str) -> i64 {
        conn.query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn a_pen_and_a_context_are_written_once_and_found_again_after_another_pen_used_one() {
        let dir = tempfile::tempdir().expect("dir");
        let writer = Writer::open(&dir.path().join("j.db"), Sync::Normal).expect("open");
        let mut contexts = Contexts::default();
        let first = contexts.keys(&writer.conn, "pen-1", CONTEXT).expect("new");
        assert_eq!(
            contexts
                .keys(&writer.conn, "pen-1", CONTEXT)
                .expect("known"),
            first
        );
        let mut other = CONTEXT;
        other[6] = "op-2";
        let second = contexts
            .keys(&writer.conn, "pen-1", other)
            .expect("changed");
        assert_eq!(second.pen, first.pen);
        assert_ne!(second.context, first.context);
        assert_eq!(
            contexts.keys(&writer.conn, "pen-1", CONTEXT).expect("back"),
            first
        );
        let pen_2 = contexts.keys(&writer.conn, "pen-2", CONTEXT).expect("pen");
        assert_ne!(pen_2.pen, first.pen);
        assert_ne!(pen_2.context, first.context);
        let forgetful = Contexts::default().keys(&writer.conn, "pen-1", other);
        assert_eq!(forgetful.expect("found in the journal"), second);
        assert_eq!(count(&writer.conn, "sample_contexts"), 3);
        assert_eq!(count(&writer.conn, "pens"), 2);
    }

    #[test]
    fn a_pen_and_context_learned_in_a_batch_that_did_not_commit_are_written_again() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = Writer::open(&dir.path().join("j.db"), Sync::Normal).expect("open");
        {
            let batch = writer.batch().expect("batch");
            batch.keys("pen-1", CONTEXT).expect("new");
        }
        let batch = writer.batch().expect("batch");
        batch.keys("pen-1", CONTEXT).expect("again");
        batch.commit().expect("commit");
        for table in ["sample_contexts", "pens"] {
            assert_eq!(
                count(&writer.conn, table),
                1,
                "{table}: written by the batch that committed"
            );
        }
    }
}
