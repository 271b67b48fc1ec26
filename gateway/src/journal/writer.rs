//! The journal's one writer: the committer's connection, the only one that commits batches.

use std::cell::RefCell;
use std::ops::Deref;
use std::path::Path;

use super::contexts::Contexts;
use super::{Access, Batch, Reader, Result, Sync, connect, schema};
use crate::audit::{Record, Scope};

/// The committer's connection: creates and migrates the journal, and commits batches.
pub struct Writer {
    reader: Reader,
    /// Each pen's last sample context, shared by the batches.
    contexts: RefCell<Contexts>,
}

impl Writer {
    /// Opens (or creates) the journal at `path`, bringing an older schema up to date, and
    /// chains where its coverage of cartridge events starts if no gateway did before.
    pub fn open(path: &Path, sync: Sync) -> Result<Self> {
        let conn = connect(path, Access::Commit(sync))?;
        schema::migrate(&conn)?;
        let mut writer = Self {
            reader: Reader { conn },
            contexts: RefCell::default(),
        };
        if writer.reader.scope()?.is_none() {
            let from: i64 = writer.reader.conn.query_row(
                "SELECT IFNULL(MAX(id), 0) + 1 FROM cartridge_events",
                [],
                |r| r.get(0),
            )?;
            let batch = writer.batch()?;
            batch.append_audit(&Record::Scope(Scope {
                cartridge_events_from_id: from,
            }))?;
            batch.commit()?;
        }
        Ok(writer)
    }

    /// Starts a write batch; nothing is durable until [`Batch::commit`].
    pub fn batch(&mut self) -> Result<Batch<'_>> {
        self.contexts.get_mut().discard_uncommitted();
        Ok(Batch {
            tx: self.reader.conn.transaction()?,
            contexts: &self.contexts,
        })
    }
}

/// The writer reads on its own connection between batches (loading the live state at start).
impl Deref for Writer {
    type Target = Reader;

    fn deref(&self) -> &Reader {
        &self.reader
    }
}
