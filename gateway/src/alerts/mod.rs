//! Alerts: what the committer raises from the facts of a batch, kept in the journal's durable
//! outbox, and delivered to webhooks and Prometheus Alertmanager.
//!
//! - [`raise`]: the alert each fact raises (pure); the committer writes them to the outbox
//!   in the same transaction as the facts (`journal::Batch::raise_alert`);
//! - [`routing`]: which target takes which alert, and when an update may go (pure);
//! - [`deliver`]: the delivery task, which reads the outbox (`journal::Outbox`), sends, and
//!   records what each target received; after a crash it sends again what was not recorded,
//!   with the same idempotency key;
//! - [`health`]: alerts about the gateway itself (sink, journal), raised from its metrics by
//!   the delivery task and kept in memory (the journal may be what fails);
//! - [`webhook`], [`alertmanager`]: the two kinds of target.

pub mod alertmanager;
pub mod config;
pub mod deliver;
pub mod health;
pub mod raise;
pub mod routing;
pub mod types;
pub mod webhook;

pub use config::AlertsConfig;
pub use routing::Delivered;
pub use types::{Alert, Kind, OutboxAlert, Severity};

/// Why a delivery failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Worth trying again: no connection, a timeout, 5xx, 408, 429.
    #[error("{0}")]
    Retryable(String),
    /// The target refused the request (another 4xx): trying again at once will not help.
    #[error("{0}")]
    Refused(String),
}

impl SendError {
    /// `Ok` for a 2xx status, the error for any other.
    pub fn check(status: reqwest::StatusCode) -> Result<(), SendError> {
        if status.is_success() {
            Ok(())
        } else if status.is_server_error() || status.as_u16() == 408 || status.as_u16() == 429 {
            Err(SendError::Retryable(format!("answered {status}")))
        } else {
            Err(SendError::Refused(format!("answered {status}")))
        }
    }

    /// Whether an immediate retry may succeed.
    pub fn retryable(&self) -> bool {
        matches!(self, SendError::Retryable(_))
    }
}

/// What the committer needs to know of `[alerts]`.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// A pen silent this long during an open session raises `pen_silent`.
    pub silent_after: Option<std::time::Duration>,
}

impl Rules {
    /// The committer's rules from `[alerts]`.
    pub fn new(c: &AlertsConfig) -> Self {
        Self {
            silent_after: (c.silent_after_s > 0)
                .then(|| std::time::Duration::from_secs(c.silent_after_s)),
        }
    }
}
