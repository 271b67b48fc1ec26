//! The journal's one writer: the committer's connection, the only one that commits batches.

use std::ops::Deref;
use std::path::Path;

use super::{Access, Batch, Reader, Result, Sync, connect, schema};

/// The committer's connection: creates and migrates the journal, and commits batches.
pub struct Writer {
    reader: Reader,
}

impl Writer {
    /// Opens (or creates) the journal at `path`, bringing an older schema up to date.
    pub fn open(path: &Path, sync: Sync) -> Result<Self> {
        let conn = connect(path, Access::Commit(sync))?;
        schema::migrate(&conn)?;
        Ok(Self {
            reader: Reader { conn },
        })
    }

    /// Starts a write batch; nothing is durable until [`Batch::commit`].
    pub fn batch(&mut self) -> Result<Batch<'_>> {
        Ok(Batch {
            tx: self.reader.conn.transaction()?,
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
