//! Gateway configuration: one TOML file, overridden by environment variables and command-line
//! flags (see the `penwatch-gateway` binary's `cli.rs`), validated at start-up.
//!
//! Each component owns its section and checks it: `[mqtt]` (or `[nats]`) the source, `[ingest]` and
//! `[sessions]` the committer, `[journal]` the journal, `[policy]` the policy, `[metrics]` the
//! metrics endpoint, `[api]` the API, `[influx]` the sink, `[alerts]` alert delivery and `[failover]` standing by. This module puts them together and
//! checks what spans two sections. `gateway.example.toml` beside this crate documents every
//! setting.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::alerts::AlertsConfig;
use crate::api::ApiConfig;
use crate::failover::FailoverConfig;
use crate::invalid::Invalid;
use crate::journal::JournalConfig;
use crate::metrics::MetricsConfig;
use crate::pipeline::{IngestConfig, SessionsConfig};
use crate::policy::PolicyConfig;
use crate::sink::InfluxConfig;
use crate::source::{MqttConfig, NatsConfig};

/// Why the configuration is unusable. The message says what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this struct.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message with line and column.
        source: Box<toml::de::Error>,
    },
    /// A setting is unusable.
    #[error("config: {0}")]
    Invalid(#[from] Invalid),
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MQTT source.
    pub mqtt: MqttConfig,
    /// JetStream stream source (`[nats]`); present, it replaces the MQTT subscription.
    pub nats: Option<NatsConfig>,
    /// Decoding and batching.
    pub ingest: IngestConfig,
    /// The embedded journal.
    pub journal: JournalConfig,
    /// Depth policy file.
    pub policy: PolicyConfig,
    /// Session tracking.
    pub sessions: SessionsConfig,
    /// Prometheus metrics endpoint.
    pub metrics: MetricsConfig,
    /// gRPC API (`[api]`).
    pub api: ApiConfig,
    /// InfluxDB sink (`[influx]`); absent = no sink.
    pub influx: Option<InfluxConfig>,
    /// Alert delivery (`[alerts]`); absent = no alerts raised.
    pub alerts: Option<AlertsConfig>,
    /// Standing by for another gateway's journal (`[failover]`); absent = refuse a held one.
    pub failover: Option<FailoverConfig>,
}

impl Config {
    /// Reads a TOML file.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Checks every section, then what spans two; the error says what to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match &self.nats {
            Some(nats) => nats.validate()?,
            None => self.mqtt.validate()?,
        }
        self.ingest.validate()?;
        self.journal.validate()?;
        self.sessions.validate()?;
        self.metrics.addr()?;
        self.api.validate()?;
        if let Some(influx) = &self.influx {
            influx.validate()?;
        }
        if let Some(alerts) = &self.alerts {
            alerts.validate()?;
        }
        if self.ingest.max_payload_bytes >= self.mqtt.max_packet_bytes {
            return Err(Invalid::new(
                "ingest.max_payload_bytes",
                format!(
                    "{} must be below mqtt.max_packet_bytes ({})",
                    self.ingest.max_payload_bytes, self.mqtt.max_packet_bytes
                ),
            )
            .into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_example_parses() {
        Config::default().validate().expect("defaults valid");
        let example: Config =
            toml::from_str(include_str!("../gateway.example.toml")).expect("example parses");
        example.validate().expect("example valid");
    }

    #[test]
    fn errors_say_what_to_fix() {
        let mut c = Config::default();
        c.mqtt.broker = "tcp://x".into();
        assert!(
            c.validate()
                .expect_err("bad")
                .to_string()
                .starts_with("config: mqtt.broker: broker URL")
        );
        let mut c = Config::default();
        c.ingest.max_payload_bytes = c.mqtt.max_packet_bytes;
        assert!(
            c.validate()
                .expect_err("bad")
                .to_string()
                .contains("ingest.max_payload_bytes")
        );
        let mut c = Config::default();
        c.mqtt.password = Some("secret".into());
        assert!(
            c.validate()
                .expect_err("bad")
                .to_string()
                .contains("mqtt.username: is missing")
        );
        let err = toml::from_str::<Config>("[mqtt]\nbrokr = \"x\"\n").expect_err("unknown key");
        assert!(err.to_string().contains("brokr"), "{err}");
    }

    #[test]
    fn a_nats_section_replaces_the_mqtt_subscription_and_is_checked_instead() {
        let c: Config = toml::from_str(
            "[nats]\nurls = [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\"]\n\
             [mqtt]\ntopics = []\n",
        )
        .expect("parses");
        c.validate().expect("the MQTT subscription is not used");
        let c: Config = toml::from_str("[nats]\nurls = []\n").expect("parses");
        assert!(
            c.validate()
                .expect_err("bad")
                .to_string()
                .starts_with("config: nats.urls: is empty")
        );
    }

    #[test]
    fn a_plaintext_api_beyond_loopback_with_tokens_is_refused_unless_allowed() {
        let config = |api: &str| -> Config {
            toml::from_str(&format!(
                "[api]\n{api}\n[[api.tokens]]\nname = \"admin\"\n\
                 token = \"0123456789abcdef0123\"\nrole = \"admin\"\n"
            ))
            .expect("parses")
        };
        let err = config("listen = \"0.0.0.0:50051\"")
            .validate()
            .expect_err("refused")
            .to_string();
        for needle in [
            "api.listen: 0.0.0.0:50051",
            "api.tls_cert",
            "allow_plaintext = true in [api]",
        ] {
            assert!(err.contains(needle), "{needle}: {err}");
        }
        assert!(
            config("listen = \"[::]:50051\"").validate().is_err(),
            "IPv6 too"
        );
        config("listen = \"0.0.0.0:50051\"\nallow_plaintext = true")
            .validate()
            .expect("allowed explicitly");
        config("listen = \"127.0.0.1:50051\"")
            .validate()
            .expect("loopback needs no TLS");
        config("listen = \"[::1]:50051\"")
            .validate()
            .expect("IPv6 loopback needs no TLS");
        let mut no_tokens = config("listen = \"0.0.0.0:50051\"");
        no_tokens.api.tokens.clear();
        no_tokens.validate().expect("no token to leak");
    }
}
