//! Read queries for the API: sessions, violations, timelines, operators, cartridges and the
//! export, on a read-only connection beside the committer (WAL lets readers run while it
//! writes).
//!
//! Filtering is by a [`Selection`]; listings are keyset-paged by `(started_ms, device_id,
//! session_id)` so a page never repeats or skips a row while new sessions arrive.
//!
//! What lives where:
//! - `selection`: [`Selection`], [`Cursor`] and [`Order`], the filter and paging shared by
//!   the listings;
//! - `sessions`: stored sessions, their pages and per-operator counts;
//! - `violations`: stored violations and their pages;
//! - `amendments`: a session's amendments;
//! - `samples`: timelines ([`downsample`]) and a session's or amendment's samples;
//! - `inventory`: cartridges, reuse events, the quarantine count and when a
//!   policy version came into force.

use super::{Reader, Result};

mod amendments;
mod inventory;
mod samples;
mod selection;
mod sessions;
mod violations;

pub use amendments::StoredAmendment;
pub use inventory::ReuseRow;
pub use samples::{SampleRow, TimelinePoint, downsample};
pub use selection::{Cursor, Order, Selection};
pub use sessions::{OperatorStats, StoredSession};
pub use violations::StoredViolation;

impl Reader {
    /// Runs `f` in one read transaction, so everything it reads is one consistent snapshot.
    pub fn snapshot<T>(&self, f: impl FnOnce(&Reader) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        let result = f(self);
        self.conn.execute_batch("COMMIT")?;
        result
    }
}
