//! PenWatch wire contract.
//!
//! - [`broker`]: how every PenWatch program names its MQTT broker (`mqtt://HOST:PORT`).
//! - [`client`]: how the command line and the dashboard connect to the gateway's gRPC API.
//! - [`codec`]: the protobuf codec of the gRPC server (an undecodable request is INVALID_ARGUMENT).
//! - [`v1`]: the protobuf messages generated from `proto/penwatch/v1/*.proto`.
//! - [`topic`]: the MQTT topic layout pens publish to.
//! - [`json`]: the proto3 JSON mapping of [`v1::Telemetry`], for pens that publish JSON.
//! - [`names`]: the short lowercase names of enum values used in JSON, config and reports.
//! - [`text`]: device text made safe for spreadsheets and terminals.

pub mod broker;
pub mod client;
pub mod codec;
pub mod json;
pub mod names;
pub mod report;
pub mod text;
pub mod topic;

/// Messages and services of the `penwatch.v1` protobuf package.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/penwatch.v1.rs"));
    include!(concat!(env!("OUT_DIR"), "/server/penwatch.v1.rs"));
}

/// Encoded `FileDescriptorSet` of every PenWatch `.proto` file (for gRPC server reflection).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/penwatch_descriptor.bin"));
