//! PenWatch gateway.
//!
//! Data flow, one module per step:
//! MQTT in ([`source`]) → decode/validate ([`decode`]) → journal ([`journal`], [`audit`]) →
//! policy and state ([`policy`], [`sessions`], [`cartridges`], [`fleet`]), tied together by
//! the committer ([`pipeline`]), which publishes what it committed as [`live`] events;
//! [`config`], [`metrics`] and policy [`reload`] around it, all on one [`clock`].
//! The gRPC [`api`] serves queries, live streams and the audit export; a [`review`] signs a
//! clinic's records for a period.
//! The [`sink`] forwards the journal to InfluxDB; [`retention`] keeps the journal bounded;
//! [`alerts`] delivers what the committer raised to webhooks and Alertmanager; [`failover`]
//! keeps one gateway writing a journal at a time, with standbys that take it over.

pub mod alerts;
pub mod api;
pub mod audit;
pub mod cartridges;
pub mod clock;
pub mod config;
pub mod decode;
pub mod failover;
pub mod fleet;
pub mod invalid;
pub mod journal;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod policy;
pub mod reload;
pub mod retention;
pub mod review;
pub mod sessions;
pub mod sink;
pub mod source;
