//! `[nats]`: the JetStream stream source, owned and checked by the source. Present, it
//! replaces the `[mqtt]` subscription.

use std::path::PathBuf;
use std::time::Duration;

use penwatch_proto::broker::BrokerUrl;
use serde::Deserialize;

use super::mqtt_config::read_secret_file;
use crate::invalid::Invalid;

/// `[nats]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Client URLs of the cluster's nodes, `nats://HOST:PORT`; the client moves to another
    /// node when one fails.
    pub urls: Vec<String>,
    /// The gateway's user on the cluster, if it has users (the same for its NATS and MQTT
    /// connections).
    pub user: Option<String>,
    /// File holding that user's password (its first line).
    pub password_file: Option<PathBuf>,
    /// Name of the stream the gateway reads, created on first start if absent.
    pub stream: String,
    /// Copies the cluster keeps of the stream (1, 3 or 5; at most the number of nodes).
    pub replicas: usize,
    /// How long the stream keeps a message, days: longer than the gateway may be away.
    pub max_age_days: u64,
    /// With several gateways: the partition this one reads. The cluster's subject mapping puts
    /// each pen's subjects under `pw.<partition>.` (`partition(N, 2)` of the device id, so a pen
    /// always lands in the same one); each gateway reads one partition, into its own stream
    /// (`stream`, one name per partition) and journal.
    pub partition: Option<u32>,
    /// A node's MQTT listener, `mqtt://HOST:PORT`. The server makes its MQTT message stream
    /// (which the gateway's stream is sourced from) when the first MQTT client connects; a
    /// gateway started on a new cluster connects there once to have it made. Without it the
    /// gateway waits for a pen to connect first.
    pub mqtt: Option<String>,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".to_owned()],
            user: None,
            password_file: None,
            stream: "PENWATCH".to_owned(),
            replicas: 3,
            max_age_days: 7,
            partition: None,
            mqtt: None,
        }
    }
}

impl NatsConfig {
    /// Checks the section; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        if self.urls.is_empty() {
            return Err(Invalid::new(
                "nats.urls",
                "is empty: list the client URL of each cluster node, e.g. \
                 [\"nats://10.0.0.1:4222\", \"nats://10.0.0.2:4222\", \"nats://10.0.0.3:4222\"]",
            ));
        }
        for u in &self.urls {
            if !u.starts_with("nats://") || u.len() <= "nats://".len() {
                return Err(Invalid::new(
                    "nats.urls",
                    format!("{u:?} is not a nats:// URL (nats://HOST:PORT)"),
                ));
            }
            if u.contains('@') {
                return Err(Invalid::new(
                    "nats.urls",
                    "holds credentials: give the user as nats.user and its password in \
                     nats.password_file, which keep the secret out of URLs and logs",
                ));
            }
        }
        let name_ok = !self.stream.is_empty()
            && self.stream.len() <= 64
            && self
                .stream
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(Invalid::new(
                "nats.stream",
                "must be 1 to 64 letters, digits, '-' or '_'",
            ));
        }
        if ![1, 3, 5].contains(&self.replicas) {
            return Err(Invalid::new(
                "nats.replicas",
                "must be 1, 3 or 5 (3 survives the loss of one node)",
            ));
        }
        if self.max_age_days == 0 {
            return Err(Invalid::new(
                "nats.max_age_days",
                "must be at least 1: the stream must keep messages while the gateway is away",
            ));
        }
        self.credentials()?;
        if let Some(mqtt) = &self.mqtt {
            BrokerUrl::parse(mqtt).map_err(|e| Invalid::new("nats.mqtt", e.to_string()))?;
        }
        Ok(())
    }

    /// The gateway's user and password on the cluster, reading `nats.password_file`.
    pub fn credentials(&self) -> Result<Option<(String, String)>, Invalid> {
        match (&self.user, &self.password_file) {
            (Some(user), Some(path)) if !user.is_empty() => Ok(Some((
                user.clone(),
                read_secret_file("nats.password_file", path)?,
            ))),
            (None, None) => Ok(None),
            _ => Err(Invalid::new(
                "nats.user",
                "nats.user and nats.password_file go together: give both (the gateway's user \
                 on the cluster and the file holding its password) or neither",
            )),
        }
    }

    /// How long the stream keeps a message.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_days * 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gateways_cluster_password_is_read_from_its_file_and_never_from_a_url() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("nats.password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let c = NatsConfig {
            user: Some("gw".into()),
            password_file: Some(file),
            ..NatsConfig::default()
        };
        assert_eq!(
            c.credentials().expect("valid"),
            Some(("gw".into(), "s3cret".into()))
        );
        let in_url = NatsConfig {
            urls: vec!["nats://gw:s3cret@10.0.0.1:4222".into()],
            ..NatsConfig::default()
        };
        let err = in_url.validate().expect_err("refused");
        assert!(err.problem.contains("nats.password_file"), "{err:?}");
        let half = NatsConfig {
            user: Some("gw".into()),
            ..NatsConfig::default()
        };
        assert_eq!(half.validate().expect_err("refused").key, "nats.user");
    }

    #[test]
    fn a_nats_section_names_the_key_and_the_fix_when_it_is_unusable() {
        let ok = NatsConfig::default();
        assert!(ok.validate().is_ok());
        let bad = |c: NatsConfig| c.validate().expect_err("invalid").key;
        assert_eq!(
            bad(NatsConfig {
                urls: vec![],
                ..ok.clone()
            }),
            "nats.urls"
        );
        assert_eq!(
            bad(NatsConfig {
                urls: vec!["mqtt://x:1883".into()],
                ..ok.clone()
            }),
            "nats.urls"
        );
        assert_eq!(
            bad(NatsConfig {
                stream: "a.b".into(),
                ..ok.clone()
            }),
            "nats.stream"
        );
        assert_eq!(
            bad(NatsConfig {
                replicas: 2,
                ..ok.clone()
            }),
            "nats.replicas"
        );
        assert_eq!(
            bad(NatsConfig {
                max_age_days: 0,
                ..ok.clone()
            }),
            "nats.max_age_days"
        );
        assert_eq!(
            bad(NatsConfig {
                mqtt: Some("tcp://x".into()),
                ..ok
            }),
            "nats.mqtt"
        );
    }
}
