//! `[ingest]` and `[sessions]`: batching and session tracking, owned and checked by the
//! committer.

use std::time::Duration;

use serde::Deserialize;

use crate::invalid::Invalid;

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest telemetry payload accepted, bytes; larger ones are quarantined.
    pub max_payload_bytes: usize,
    /// Most messages committed in one transaction.
    pub batch_max: usize,
    /// Longest wait for a batch to fill before committing, milliseconds.
    pub batch_linger_ms: u64,
    /// Messages queued between the MQTT connection and the committer.
    pub queue_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            batch_max: 8000,
            batch_linger_ms: 5,
            queue_capacity: 8192,
        }
    }
}

impl IngestConfig {
    /// Checks the section; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.max_payload_bytes == 0 {
            return Err(Invalid::new("ingest.max_payload_bytes", "must be above 0"));
        }
        if !(1..=100_000).contains(&self.batch_max) {
            return Err(Invalid::new("ingest.batch_max", "must be from 1 to 100000"));
        }
        if self.batch_linger_ms > 1000 {
            return Err(Invalid::new(
                "ingest.batch_linger_ms",
                "must be at most 1000 (acknowledgements wait for it)",
            ));
        }
        if self.queue_capacity < self.batch_max {
            return Err(Invalid::new(
                "ingest.queue_capacity",
                "must be at least ingest.batch_max",
            ));
        }
        Ok(())
    }
}

/// `[sessions]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session with no message for this long is closed, seconds.
    pub inactivity_timeout_s: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            inactivity_timeout_s: 600,
        }
    }
}

impl SessionsConfig {
    /// Checks the section; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.inactivity_timeout_s == 0 {
            return Err(Invalid::new(
                "sessions.inactivity_timeout_s",
                "must be above 0",
            ));
        }
        Ok(())
    }
}

/// What the committer needs of `[ingest]`, `[sessions]` and `[alerts]`.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Most messages per batch.
    pub batch_max: usize,
    /// Longest wait for a batch to fill.
    pub linger: Duration,
    /// Sessions idle this long are closed.
    pub inactivity_timeout: Duration,
    /// Alerting rules (`[alerts]`); `None`: no alerts are raised.
    pub alerts: Option<crate::alerts::Rules>,
}

impl Settings {
    /// The committer's settings from its two sections and the alerting rules.
    pub fn new(
        ingest: &IngestConfig,
        sessions: &SessionsConfig,
        alerts: Option<crate::alerts::Rules>,
    ) -> Self {
        Self {
            batch_max: ingest.batch_max,
            linger: Duration::from_millis(ingest.batch_linger_ms),
            inactivity_timeout: Duration::from_secs(sessions.inactivity_timeout_s),
            alerts,
        }
    }
}
