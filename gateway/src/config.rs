//! Gateway configuration: one typed struct, read from a TOML file, overridden by
//! environment variables and command-line flags (see `main.rs`), validated at start-up.
//!
//! `gateway.example.toml` beside this crate documents every setting.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use penwatch_proto::broker::BrokerUrl;
use serde::Deserialize;

use crate::journal::Sync;

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
    /// A setting is out of range.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole gateway configuration.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// MQTT source.
    pub mqtt: MqttConfig,
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
    pub api: crate::api::ApiConfig,
    /// InfluxDB sink (`[influx]`); absent = no sink.
    pub influx: Option<crate::sink::InfluxConfig>,
    /// Alert delivery (`[alerts]`); absent = no alerts raised.
    pub alerts: Option<crate::alerts::AlertsConfig>,
}

/// `[mqtt]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker URL, `mqtt://HOST:PORT` or `mqtts://HOST:PORT`.
    pub broker: String,
    /// Fixed client id: the broker keeps this persistent session's queue while the gateway is away.
    pub client_id: String,
    /// User name, if the broker requires one.
    pub username: Option<String>,
    /// Password (prefer `password_file` or the `PENWATCH_MQTT_PASSWORD` environment variable).
    pub password: Option<String>,
    /// File holding the password (its first line), so the secret need not be in this file.
    pub password_file: Option<PathBuf>,
    /// PEM CA certificate for `mqtts://` (default: the system trust store).
    pub ca_file: Option<PathBuf>,
    /// Topic filters to subscribe to (`$share/GROUP/...` accepted).
    pub topics: Vec<String>,
    /// Keep-alive interval, seconds.
    pub keep_alive_s: u64,
    /// Largest MQTT packet accepted from the broker, bytes; keep it above the broker's own
    /// `max_packet_size`, or an oversized message would break the connection.
    pub max_packet_bytes: usize,
    /// Longest wait between reconnection attempts, seconds.
    pub reconnect_max_s: u64,
}

impl Default for MqttConfig {
    fn default() -> Self {
        Self {
            broker: penwatch_proto::broker::DEFAULT_BROKER.to_owned(),
            client_id: "penwatch-gateway".to_owned(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            topics: vec![
                penwatch_proto::topic::ALL_TELEMETRY.to_owned(),
                penwatch_proto::topic::ALL_STATUS.to_owned(),
            ],
            keep_alive_s: 30,
            max_packet_bytes: 16 * 1024 * 1024,
            reconnect_max_s: 30,
        }
    }
}

/// `[ingest]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// Largest telemetry payload accepted, bytes; larger ones are quarantined.
    pub max_payload_bytes: usize,
    /// Most messages committed in one transaction.
    pub batch_max: usize,
    /// Longest wait for a batch to fill before committing, milliseconds.
    pub batch_linger_ms: u64,
    /// Messages queued between the MQTT connection and the committer.
    pub queue_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_payload_bytes: 64 * 1024,
            batch_max: 2000,
            batch_linger_ms: 5,
            queue_capacity: 8192,
        }
    }
}

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
    /// Checks that the journal can be written where `journal.path` says: its directory exists
    /// and takes new files, and an existing journal file is writable.
    pub fn check_location(&self) -> Result<(), ConfigError> {
        let bad = |problem: String| {
            Err(ConfigError::Invalid(format!(
                "journal.path {}: {problem}",
                self.path.display()
            )))
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

/// `[policy]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Policy TOML file; without one, the built-in defaults apply (no operators known).
    pub path: Option<PathBuf>,
}

/// `[sessions]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// A session with no message for this long is closed, seconds.
    pub inactivity_timeout_s: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        Self {
            inactivity_timeout_s: 600,
        }
    }
}

/// `[metrics]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address of the Prometheus endpoint (`/metrics`); empty to disable.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".to_owned(),
        }
    }
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

    /// Checks every setting; the error says what to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        self.broker()?;
        if self.mqtt.client_id.is_empty() || self.mqtt.client_id.len() > 64 {
            return bad("mqtt.client_id must be 1 to 64 characters".into());
        }
        if self.mqtt.topics.is_empty() {
            return bad("mqtt.topics is empty: give at least one topic filter, e.g. \"clinics/+/pens/+/telemetry\"".into());
        }
        for t in &self.mqtt.topics {
            if t.is_empty() || t.contains('#') && !t.ends_with('#') {
                return bad(format!(
                    "mqtt.topics: {t:?} is not a valid MQTT topic filter"
                ));
            }
        }
        self.mqtt_credentials()?;
        if self.mqtt.keep_alive_s < 5 {
            return bad("mqtt.keep_alive_s must be at least 5".into());
        }
        if self.ingest.max_payload_bytes == 0
            || self.ingest.max_payload_bytes >= self.mqtt.max_packet_bytes
        {
            return bad(format!(
                "ingest.max_payload_bytes ({}) must be above 0 and below mqtt.max_packet_bytes ({})",
                self.ingest.max_payload_bytes, self.mqtt.max_packet_bytes
            ));
        }
        if !(1..=100_000).contains(&self.ingest.batch_max) {
            return bad("ingest.batch_max must be from 1 to 100000".into());
        }
        if self.ingest.batch_linger_ms > 1000 {
            return bad(
                "ingest.batch_linger_ms must be at most 1000 (acknowledgements wait for it)".into(),
            );
        }
        if self.ingest.queue_capacity < self.ingest.batch_max {
            return bad("ingest.queue_capacity must be at least ingest.batch_max".into());
        }
        if self.journal.path.as_os_str().is_empty() {
            return bad("journal.path is empty".into());
        }
        if self.sessions.inactivity_timeout_s == 0 {
            return bad("sessions.inactivity_timeout_s must be above 0".into());
        }
        self.metrics_addr()?;
        self.api.validate()?;
        if let Some(influx) = &self.influx {
            influx.validate().map_err(ConfigError::Invalid)?;
        }
        if let Some(alerts) = &self.alerts {
            alerts
                .validate()
                .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    /// The parsed broker URL.
    pub fn broker(&self) -> Result<BrokerUrl, ConfigError> {
        BrokerUrl::parse(&self.mqtt.broker)
            .map_err(|e| ConfigError::Invalid(format!("mqtt.broker: {e}")))
    }

    /// The broker user name and password, reading `mqtt.password_file` if set.
    pub fn mqtt_credentials(&self) -> Result<Option<(String, String)>, ConfigError> {
        let bad = |msg: String| Err(ConfigError::Invalid(msg));
        let m = &self.mqtt;
        let password = match (&m.password, &m.password_file) {
            (Some(_), Some(_)) => {
                return bad(
                    "mqtt.password and mqtt.password_file are both set: keep one (the file keeps \
                     the secret out of the configuration)"
                        .into(),
                );
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => None,
        };
        match (&m.username, password) {
            (Some(u), _) if u.is_empty() => {
                bad("mqtt.username is empty: give the gateway's broker user name".into())
            }
            (Some(u), p) => Ok(Some((u.clone(), p.unwrap_or_default()))),
            (None, Some(_)) => bad(
                "mqtt.password (or mqtt.password_file) is set without mqtt.username: give the \
                 gateway's broker user name"
                    .into(),
            ),
            (None, None) => Ok(None),
        }
    }

    /// The metrics address, `None` when disabled.
    pub fn metrics_addr(&self) -> Result<Option<SocketAddr>, ConfigError> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics.listen.parse().map(Some).map_err(|_| {
            ConfigError::Invalid(format!(
                "metrics.listen: {:?} is not an address like 127.0.0.1:9464",
                self.metrics.listen
            ))
        })
    }

    /// Batch linger as a duration.
    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.ingest.batch_linger_ms)
    }
}

/// The first line of a password file, without its line ending.
fn read_password_file(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::Invalid(format!(
            "mqtt.password_file {}: {e}: create it with the gateway's broker password on its \
             first line, readable by the gateway",
            path.display()
        ))
    })?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(ConfigError::Invalid(format!(
            "mqtt.password_file {}: the first line is empty: put the gateway's broker password \
             on it",
            path.display()
        )));
    }
    Ok(password.to_owned())
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
                .contains("without mqtt.username")
        );
        let err = toml::from_str::<Config>("[mqtt]\nbrokr = \"x\"\n").expect_err("unknown key");
        assert!(err.to_string().contains("brokr"), "{err}");
    }

    #[test]
    fn a_journal_in_a_missing_directory_is_refused_by_key() {
        let mut c = Config::default();
        c.journal.path = "/nonexistent-penwatch-dir/journal.db".into();
        let err = c.journal.check_location().expect_err("missing directory");
        assert!(
            err.to_string().starts_with(
                "config: journal.path /nonexistent-penwatch-dir/journal.db: the directory"
            ),
            "{err}"
        );
        let dir = tempfile::tempdir().expect("dir");
        c.journal.path = dir.path().join("journal.db");
        c.journal.check_location().expect("a writable directory");
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
            "api.listen 0.0.0.0:50051",
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

    #[test]
    fn the_password_file_gives_the_password_and_its_errors_name_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("mqtt.password");
        std::fs::write(&file, "s3cret:with colon\n").expect("write");
        let mut c = Config::default();
        c.mqtt.username = Some("penwatch-gateway".into());
        c.mqtt.password_file = Some(file.clone());
        assert_eq!(
            c.mqtt_credentials().expect("valid"),
            Some(("penwatch-gateway".into(), "s3cret:with colon".into()))
        );
        c.mqtt.password = Some("inline".into());
        let both = c.validate().expect_err("both").to_string();
        assert!(
            both.contains("mqtt.password and mqtt.password_file"),
            "{both}"
        );
        c.mqtt.password = None;
        c.mqtt.password_file = Some(dir.path().join("missing"));
        let missing = c.validate().expect_err("missing").to_string();
        assert!(
            missing.starts_with("config: mqtt.password_file ") && missing.contains("create it"),
            "{missing}"
        );
        std::fs::write(&file, "\n").expect("write");
        c.mqtt.password_file = Some(file);
        let empty = c.validate().expect_err("empty").to_string();
        assert!(empty.contains("first line is empty"), "{empty}");
    }
}
