//! `[nats]`: the JetStream stream source, owned and checked by the source. Present, it
//! replaces the `[mqtt]` subscription.

use std::time::Duration;

use penwatch_proto::broker::BrokerUrl;
use serde::Deserialize;

use crate::invalid::Invalid;

/// `[nats]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Client URLs of the cluster's nodes, `nats://HOST:PORT` (credentials may be given as
    /// `nats://USER:PASSWORD@HOST:PORT`); the client moves to another node when one fails.
    pub urls: Vec<String>,
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
        if let Some(mqtt) = &self.mqtt {
            BrokerUrl::parse(mqtt).map_err(|e| Invalid::new("nats.mqtt", e.to_string()))?;
        }
        Ok(())
    }

    /// The cluster's URLs for a log line: credentials in a URL are left out.
    pub fn urls_for_log(&self) -> String {
        self.urls
            .iter()
            .map(|u| match (u.strip_prefix("nats://"), u.rfind('@')) {
                (Some(_), Some(at)) => format!("nats://…@{}", &u[at + 1..]),
                _ => u.clone(),
            })
            .collect::<Vec<_>>()
            .join(",")
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
    fn credentials_in_a_cluster_url_stay_out_of_the_log() {
        let c = NatsConfig {
            urls: vec![
                "nats://gw:s3cret@10.0.0.1:4222".into(),
                "nats://10.0.0.2:4222".into(),
            ],
            ..NatsConfig::default()
        };
        assert_eq!(
            c.urls_for_log(),
            "nats://…@10.0.0.1:4222,nats://10.0.0.2:4222"
        );
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
