//! `[policy]`: which policy file is in force.

use std::path::PathBuf;

use serde::Deserialize;

/// `[policy]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy TOML file; without one, the built-in defaults apply (no operators known).
    pub path: Option<PathBuf>,
}
