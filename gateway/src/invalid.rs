//! A setting that cannot be used: which key, and what is wrong with it and how to fix it.
//!
//! Every component validates its own configuration section and answers with this type; the
//! configuration as a whole ([`crate::config`]) wraps it.

/// An unusable setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    /// The setting, as written in the configuration file (`mqtt.client_id`).
    pub key: String,
    /// What is wrong and what to do about it.
    pub problem: String,
}

impl Invalid {
    /// `key` is unusable because of `problem` (which says what to fix).
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            problem: problem.into(),
        }
    }
}
