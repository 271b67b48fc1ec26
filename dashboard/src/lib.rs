//! PenWatch terminal dashboard: the fleet live, flagged sessions, violations, cartridges and
//! operators, over the gateway's gRPC API.
//!
//! - [`app`]: the state and its reducer (no I/O).
//! - [`client`]: the gRPC client feeding the reducer, with reconnect and backoff.
//! - [`input`]: keys to messages.
//! - [`ui`]: drawing, one module per screen.
//! - [`event_loop`]: ties them together in a terminal.

pub mod app;
pub mod client;
pub mod event_loop;
pub mod format;
pub mod input;
pub mod ui;

#[cfg(test)]
mod fixtures;
