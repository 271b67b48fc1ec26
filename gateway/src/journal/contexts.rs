//! The committer's memory of each pen's current sample context (the `sample_contexts` row its
//! samples refer to), so a sample whose context is its pen's last one is journaled without
//! looking the context up.
//!
//! A context written in a batch that did not commit is not in the journal: what a batch
//! learned is only trusted once it committed ([`Contexts::committed`]); a new batch forgets
//! what an uncommitted one learned ([`Contexts::discard_uncommitted`]).

use std::collections::HashMap;
use std::sync::LazyLock;

use rusqlite::{Connection, OptionalExtension, params_from_iter};

use super::Result;
use super::rows::{count, placeholders};
use super::schema::CONTEXT_COLUMNS;

/// How many columns of [`CONTEXT_COLUMNS`] follow `device_id`.
const FIELDS: usize = 11;

/// A sample's context but its pen, in the order of [`CONTEXT_COLUMNS`] after `device_id`.
pub(super) type Context<'a> = [&'a str; FIELDS];

/// Each pen's last context and its id.
#[derive(Debug, Default)]
pub(super) struct Contexts {
    by_device: HashMap<String, (i64, [String; FIELDS])>,
    /// Pens whose context was learned in the batch not committed yet.
    uncommitted: Vec<String>,
}

impl Contexts {
    /// The id of `device_id`'s `context`, written into the batch's transaction `tx` if the
    /// journal does not have it.
    pub fn id(&mut self, tx: &Connection, device_id: &str, context: Context<'_>) -> Result<i64> {
        if let Some((id, known)) = self.by_device.get(device_id)
            && known.iter().zip(context).all(|(k, c)| k == c)
        {
            return Ok(*id);
        }
        let values = || std::iter::once(device_id).chain(context);
        let found: Option<i64> = tx
            .prepare_cached(&SELECT)?
            .query_row(params_from_iter(values()), |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => {
                tx.prepare_cached(&INSERT)?
                    .execute(params_from_iter(values()))?;
                tx.last_insert_rowid()
            }
        };
        self.by_device
            .insert(device_id.to_owned(), (id, context.map(str::to_owned)));
        self.uncommitted.push(device_id.to_owned());
        Ok(id)
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

    fn count(conn: &Connection) -> i64 {
        conn.query_row("SELECT COUNT(*) FROM sample_contexts", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn a_context_is_written_once_and_found_again_after_another_pen_used_one() {
        let dir = tempfile::tempdir().expect("dir");
        let writer = Writer::open(&dir.path().join("j.db"), Sync::Normal).expect("open");
        let mut contexts = Contexts::default();
        let first = contexts.id(&writer.conn, "pen-1", CONTEXT).expect("new");
        assert_eq!(
            contexts.id(&writer.conn, "pen-1", CONTEXT).expect("known"),
            first
        );
        let mut other = CONTEXT;
        other[6] = "op-2";
        let second = contexts.id(&writer.conn, "pen-1", other).expect("changed");
        assert_ne!(first, second);
        assert_eq!(
            contexts.id(&writer.conn, "pen-1", CONTEXT).expect("back"),
            first
        );
        assert_ne!(
            contexts.id(&writer.conn, "pen-2", CONTEXT).expect("pen"),
            first
        );
        assert_eq!(count(&writer.conn), 3);
    }

    #[test]
    fn a_context_learned_in_a_batch_that_did_not_commit_is_written_again() {
        let dir = tempfile::tempdir().expect("dir");
        let mut writer = Writer::open(&dir.path().join("j.db"), Sync::Normal).expect("open");
        {
            let batch = writer.batch().expect("batch");
            batch.context_id("pen-1", CONTEXT).expect("new");
        }
        let batch = writer.batch().expect("batch");
        batch.context_id("pen-1", CONTEXT).expect("again");
        batch.commit().expect("commit");
        assert_eq!(
            count(&writer.conn),
            1,
            "written by the batch that committed"
        );
    }
}
