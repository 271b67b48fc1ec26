//! PenWatch firmware simulator: a deterministic fleet of microneedling pens publishing
//! telemetry over MQTT, with scenarios that break the rules on purpose, and the ground truth
//! of what happened, to check the gateway against.
//!
//! [`run`] drives the fleet described by a [`SimConfig`] against a broker and returns the
//! [`GroundTruth`]; [`policy::policy_toml`] gives the gateway the fleet's policy.

#![warn(missing_docs)]

pub mod config;
pub mod connection;
pub mod driver;
pub mod error;
pub mod fleet;
pub mod load;
pub mod pen;
pub mod policy;
pub mod scenario;
pub mod truth;

pub use config::{Scenario, SimConfig};
pub use driver::run;
pub use error::SimError;
pub use truth::{ExcursionTruth, GroundTruth, SessionTruth};
