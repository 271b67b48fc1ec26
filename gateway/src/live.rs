//! Live events: what the committer publishes after each commit, for streams and dashboards.
//!
//! Only committed data is published. The channel is a bounded broadcast: a subscriber that
//! falls behind sees `Lagged` and must resynchronise (the API ends its stream).

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::decode::Reading;
use crate::fleet::Device;
use crate::sessions::{Session, Verdict};

/// Capacity of the live channel, events.
pub const CAPACITY: usize = 16_384;

/// Something that just became durable.
#[derive(Debug, Clone)]
pub enum LiveEvent {
    /// An accepted sample with its verdict.
    Sample {
        /// The reading.
        reading: Arc<Reading>,
        /// Its verdict.
        verdict: Arc<Verdict>,
        /// Gateway time received, Unix ms.
        received_ms: i64,
    },
    /// A pen's state changed.
    Device(Arc<Device>),
    /// A session's violation was raised or its evidence grew (`final` once it closed).
    Violation {
        /// The session, with its evidence.
        session: Arc<Session>,
        /// Whether the session has closed.
        final_: bool,
        /// Gateway time of the commit, Unix ms.
        committed_ms: i64,
        /// The amendment of the closed session that raised or grew it (0: the session's own
        /// record).
        amendment: u64,
    },
    /// A session closed.
    SessionClosed(Arc<Session>),
}

/// Sending side, held by the committer.
pub type LiveSender = broadcast::Sender<LiveEvent>;

/// A new live channel.
pub fn channel() -> LiveSender {
    broadcast::channel(CAPACITY).0
}
