//! `[journal]`: where the journal lives and how long it keeps what, owned and checked by the
//! journal.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::Sync;
use crate::invalid::Invalid;

/// `[journal]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JournalConfig {
    /// SQLite database file.
    pub path: PathBuf,
    /// `full` (fsync every commit) or `normal` (fsync at checkpoints).
    pub sync: Sync,
    /// Raw samples older than this many days are pruned (once forwarded, with a sink);
    /// 0 keeps them forever. Sessions, violations and the audit chain are never pruned.
    pub retention_days: u64,
    /// Quarantined messages older than this many days are deleted; 0 keeps them forever.
    pub quarantine_retention_days: u64,
    /// Size bound of the journal, bytes: an alarm at 80 % and at the bound (0 = no alarm).
    pub max_bytes: u64,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("penwatch-journal.db"),
            sync: Sync::Full,
            retention_days: 30,
            quarantine_retention_days: 30,
            max_bytes: 10 * 1024 * 1024 * 1024,
        }
    }
}

impl JournalConfig {
    /// Checks the section; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.path.as_os_str().is_empty() {
            return Err(Invalid::new(
                "journal.path",
                "is empty: give the journal's file",
            ));
        }
        Ok(())
    }

    /// Checks that the journal can be written where `journal.path` says: its directory exists
    /// and takes new files, and an existing journal file is writable.
    pub fn check_location(&self) -> Result<(), Invalid> {
        let bad = |problem: String| {
            Err(Invalid::new(
                "journal.path",
                format!("{}: {problem}", self.path.display()),
            ))
        };
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return bad(format!(
                "the directory {} does not exist; create it or point journal.path elsewhere",
                dir.display()
            ));
        }
        let probe = dir.join(format!(".penwatch-write-check-{}", std::process::id()));
        match std::fs::File::create(&probe) {
            Ok(_) => {
                let _ = std::fs::remove_file(&probe);
            }
            Err(e) => {
                return bad(format!(
                    "the directory {} does not take new files ({e}); SQLite writes its WAL beside \
                     the journal, so the gateway's user needs write access there",
                    dir.display()
                ));
            }
        }
        if self.path.exists()
            && let Err(e) = std::fs::OpenOptions::new().append(true).open(&self.path)
        {
            return bad(format!(
                "the file cannot be written ({e}); give the gateway's user write access"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_in_a_missing_directory_is_refused_by_key() {
        let mut c = JournalConfig {
            path: "/nonexistent-penwatch-dir/journal.db".into(),
            ..JournalConfig::default()
        };
        let err = c.check_location().expect_err("missing directory");
        assert_eq!(err.key, "journal.path");
        assert!(
            err.problem
                .starts_with("/nonexistent-penwatch-dir/journal.db: the directory"),
            "{err}"
        );
        let dir = tempfile::tempdir().expect("dir");
        c.path = dir.path().join("journal.db");
        c.check_location().expect("a writable directory");
    }
}
