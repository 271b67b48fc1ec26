//! Why a simulation run failed.

use std::path::PathBuf;

/// Why a simulation run failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Contradictory or out-of-range settings.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The CA file for mqtts:// could not be read.
    #[error("cannot read CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The `--credentials` file could not be read or lacks a pen.
    #[error("credentials file {path}: {detail}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong, and what to fix.
        detail: String,
    },
    /// A pen could not connect to the broker.
    #[error("{client_id} cannot connect to {broker}: {source}")]
    Connect {
        /// The MQTT client id.
        client_id: String,
        /// The broker URL.
        broker: String,
        /// rumqttc's error.
        source: Box<rumqttc::ConnectionError>,
    },
    /// rumqttc refused a request (its event loop has stopped).
    #[error("{client_id}: MQTT client stopped: {source}")]
    Client {
        /// The MQTT client id.
        client_id: String,
        /// rumqttc's error.
        source: rumqttc::ClientError,
    },
    /// The broker did not acknowledge every QoS 1 publish in time.
    #[error(
        "{client_id}: {unacked} QoS 1 publishes not acknowledged by the broker after {waited_s} s"
    )]
    Unacked {
        /// The MQTT client id.
        client_id: String,
        /// Publishes still unacknowledged.
        unacked: u64,
        /// Seconds waited.
        waited_s: u64,
    },
    /// A pen task panicked or was cancelled.
    #[error("pen task failed: {0}")]
    Task(String),
    /// The summary file could not be written.
    #[error("cannot write summary {path}: {source}")]
    Summary {
        /// The file.
        path: PathBuf,
        /// The I/O or JSON error.
        source: std::io::Error,
    },
}
