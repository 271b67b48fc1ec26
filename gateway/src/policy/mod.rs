//! Depth policy: which needle protrusion each sample is permitted, and why.
//!
//! A [`Policy`] is one validated, immutable version of the policy file (format:
//! `gateway/policy.example.toml`). For every sample,
//! `permitted = min(class max, operator max, zone max, out_of_range_mm)`; the rule that set
//! the minimum is the binding [`Rule`], ties going to the first of class, operator, zone,
//! out of range. A clinic's jurisdiction can add a limit that reaching already breaks (in
//! Scotland, 1.5 mm unless a healthcare professional treats in registered premises); it
//! binds when it is at most the others. Defaults are those of the domain brief.
//!
//! One module per concern: the [`Policy`] model and its defaults (`model`), judging a sample
//! (`judge`), reading and validating the file (`parse`), its errors (`error`) and the
//! [`PolicyHandle`] through which the running gateway shares the version in force (`handle`).

mod config;
mod error;
mod handle;
mod judge;
mod model;
mod parse;

pub use config::PolicyConfig;
pub use error::{Fault, PolicyError};
pub use handle::PolicyHandle;
pub use judge::{Judgement, Rule, SampleContext};
pub use model::{Clinic, Device, Jurisdiction, Operator, Policy, SCOTLAND_SPECIFIED_MM};

/// Fixtures shared by the policy's unit tests.
#[cfg(test)]
mod fixtures {
    use super::Policy;

    /// The commented example policy shipped with the gateway.
    pub const EXAMPLE: &str = include_str!("../../policy.example.toml");

    /// Parses a policy that must be valid.
    pub fn parse(text: &str) -> Policy {
        Policy::parse(text).unwrap_or_else(|e| panic!("policy should parse: {e}"))
    }

    /// The error of a text that must not validate, with its line.
    pub fn reject(text: &str) -> (Option<usize>, String) {
        match Policy::parse(text) {
            Ok(_) => panic!("policy should be rejected:\n{text}"),
            Err(e) => (e.line(), e.to_string()),
        }
    }

    /// Asserts that `text` is rejected at `line` with a message containing `needle`.
    pub fn assert_rejected(text: &str, line: usize, needle: &str) {
        let (got_line, message) = reject(text);
        assert_eq!(got_line, Some(line), "line of {message:?}");
        assert!(
            message.starts_with(&format!("policy line {line}")),
            "{message:?} should start with the line"
        );
        assert!(
            message.contains(needle),
            "{message:?} should contain {needle:?}"
        );
    }
}
