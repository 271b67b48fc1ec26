//! `[mqtt]`: the broker connection, owned and checked by the source.

use std::path::{Path, PathBuf};

use penwatch_proto::broker::BrokerUrl;
use serde::Deserialize;

use crate::invalid::Invalid;

/// Why a shared subscription is refused: the brokers it runs on hand its messages to the
/// group's members in turn, not by pen.
pub const SHARED_REFUSED: &str = "is a shared subscription, which splits each pen's messages \
     across the group's gateways (mosquitto and most brokers deal them out in turn, not by pen): \
     every gateway would hold part of each session, so verdicts, evidence and digests would be \
     wrong (2 gateways on one run turned 2 over-depth sessions into 5 partial ones). Subscribe \
     without `$share/` and run one gateway per broker; see README \"Scaling out\"";

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
    /// Topic filters to subscribe to (shared subscriptions, `$share/…` and `$queue/…`, are
    /// refused: see [`SHARED_REFUSED`]).
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

impl MqttConfig {
    /// Checks the section; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.broker()?;
        if self.client_id.is_empty() || self.client_id.len() > 64 {
            return Err(Invalid::new("mqtt.client_id", "must be 1 to 64 characters"));
        }
        if self.topics.is_empty() {
            return Err(Invalid::new(
                "mqtt.topics",
                "is empty: give at least one topic filter, e.g. \"clinics/+/pens/+/telemetry\"",
            ));
        }
        for t in &self.topics {
            if t.starts_with("$share/") || t.starts_with("$queue/") {
                return Err(Invalid::new(
                    "mqtt.topics",
                    format!("{t:?} {SHARED_REFUSED}"),
                ));
            }
            if t.is_empty() || t.contains('#') && !t.ends_with('#') {
                return Err(Invalid::new(
                    "mqtt.topics",
                    format!("{t:?} is not a valid MQTT topic filter"),
                ));
            }
        }
        self.credentials()?;
        if self.keep_alive_s < 5 {
            return Err(Invalid::new("mqtt.keep_alive_s", "must be at least 5"));
        }
        Ok(())
    }

    /// The parsed broker URL.
    pub fn broker(&self) -> Result<BrokerUrl, Invalid> {
        BrokerUrl::parse(&self.broker).map_err(|e| Invalid::new("mqtt.broker", e.to_string()))
    }

    /// The broker user name and password, reading `mqtt.password_file` if set.
    pub fn credentials(&self) -> Result<Option<(String, String)>, Invalid> {
        let password = match (&self.password, &self.password_file) {
            (Some(_), Some(_)) => {
                return Err(Invalid::new(
                    "mqtt.password",
                    "mqtt.password and mqtt.password_file are both set: keep one (the file \
                     keeps the secret out of the configuration)",
                ));
            }
            (Some(p), None) => Some(p.clone()),
            (None, Some(path)) => Some(read_password_file(path)?),
            (None, None) => None,
        };
        match (&self.username, password) {
            (Some(u), _) if u.is_empty() => Err(Invalid::new(
                "mqtt.username",
                "is empty: give the gateway's broker user name",
            )),
            (Some(u), p) => Ok(Some((u.clone(), p.unwrap_or_default()))),
            (None, Some(_)) => Err(Invalid::new(
                "mqtt.username",
                "is missing while mqtt.password (or mqtt.password_file) is set: give the \
                 gateway's broker user name",
            )),
            (None, None) => Ok(None),
        }
    }

    /// The CA certificate for `mqtts://`, if one is configured.
    pub fn ca_pem(&self) -> Result<Option<Vec<u8>>, Invalid> {
        self.ca_file
            .as_ref()
            .map(|path| {
                std::fs::read(path).map_err(|e| {
                    Invalid::new(
                        "mqtt.ca_file",
                        format!(
                            "{}: {e}: give a readable PEM CA certificate",
                            path.display()
                        ),
                    )
                })
            })
            .transpose()
    }
}

/// The first line of a password file, without its line ending.
fn read_password_file(path: &Path) -> Result<String, Invalid> {
    read_secret_file("mqtt.password_file", path)
}

/// The first line of the secret file at `path` (the setting `key` names it).
pub(super) fn read_secret_file(key: &str, path: &Path) -> Result<String, Invalid> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Invalid::new(
            key,
            format!(
                "{}: {e}: create it with the gateway's broker password on its first line, \
                 readable by the gateway",
                path.display()
            ),
        )
    })?;
    let password = text.lines().next().unwrap_or_default();
    if password.is_empty() {
        return Err(Invalid::new(
            key,
            format!(
                "{}: the first line is empty: put the gateway's broker password on it",
                path.display()
            ),
        ));
    }
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_subscriptions_are_refused_with_the_reason_and_what_to_do() {
        for topic in ["$share/gw/clinics/+/pens/+/telemetry", "$queue/clinics/#"] {
            let c = MqttConfig {
                topics: vec![topic.into()],
                ..MqttConfig::default()
            };
            let e = c.validate().expect_err("refused");
            assert_eq!(e.key, "mqtt.topics");
            assert!(e.problem.contains("splits each pen's messages"), "{e}");
            assert!(e.problem.contains("Scaling out"), "{e}");
        }
        assert!(MqttConfig::default().validate().is_ok());
    }

    #[test]
    fn the_password_file_gives_the_password_and_its_errors_name_the_key() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("mqtt.password");
        std::fs::write(&file, "s3cret:with colon\n").expect("write");
        let mut c = MqttConfig {
            username: Some("penwatch-gateway".into()),
            password_file: Some(file.clone()),
            ..MqttConfig::default()
        };
        assert_eq!(
            c.credentials().expect("valid"),
            Some(("penwatch-gateway".into(), "s3cret:with colon".into()))
        );
        c.password = Some("inline".into());
        let both = c.validate().expect_err("both").to_string();
        assert!(
            both.contains("mqtt.password and mqtt.password_file"),
            "{both}"
        );
        c.password = None;
        c.password_file = Some(dir.path().join("missing"));
        let missing = c.validate().expect_err("missing");
        assert_eq!(missing.key, "mqtt.password_file");
        assert!(missing.problem.contains("create it"), "{missing}");
        std::fs::write(&file, "\n").expect("write");
        c.password_file = Some(file);
        let empty = c.validate().expect_err("empty").to_string();
        assert!(empty.contains("first line is empty"), "{empty}");
    }
}
