//! Where messages come from: an MQTT broker ([`MqttSource`], the default) or a JetStream
//! stream on a NATS cluster that pens publish to over MQTT ([`StreamSource`], `[nats]`).
//!
//! Either source decodes and validates each message on its own task (off the committer's
//! thread, the ingest path's one serial stage) and hands it to the committer as an
//! [`Inflight`], whose [`Receipt`](crate::pipeline::Receipt) says how it is acknowledged once
//! committed: a PUBACK after the commit (MQTT), or the stream position stored in the commit's
//! own transaction (stream).

mod mqtt;
mod mqtt_config;
mod nats;
mod nats_config;

use crate::clock::now_ms;
use crate::decode::{self, Inbound, Limits};
use crate::pipeline::{Inflight, Receipt};

pub use mqtt::{Acker, MqttSource};
pub use mqtt_config::MqttConfig;
pub use nats::StreamSource;
pub use nats_config::NatsConfig;

/// Decodes a received message into what the committer takes (received now).
pub fn inflight(
    topic: String,
    payload: bytes::Bytes,
    receipt: Receipt,
    limits: &Limits,
) -> Inflight {
    let decoded = decode::decode(&topic, &payload, limits);
    // Only a rejected payload is kept (in quarantine; a status can still be refused by the
    // committer). Dropping the others now frees the client's read buffer, which every payload
    // read with it keeps alive, while the message waits for its commit.
    let payload = if matches!(decoded, Ok(Inbound::Telemetry(_))) {
        bytes::Bytes::new()
    } else {
        payload
    };
    Inflight {
        topic,
        payload,
        receipt,
        received_ms: now_ms(),
        decoded,
    }
}
