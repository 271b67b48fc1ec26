//! How every PenWatch program names its MQTT broker: `--broker mqtt://HOST:PORT`
//! (`mqtts://HOST:PORT` for TLS with the system's trusted roots), credentials apart.

use std::fmt;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};

/// Default broker URL.
pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address.
    pub host: String,
    /// TCP port (default 1883, or 8883 with TLS).
    pub port: u16,
    /// Whether the connection uses TLS (`mqtts://`).
    pub tls: bool,
}

/// Why a broker URL was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker URL {url:?}: {reason} (expected mqtt://HOST:PORT or mqtts://HOST:PORT)")]
pub struct BrokerUrlError {
    /// The URL as given.
    pub url: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl BrokerUrl {
    /// Parses `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`.
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let err = |reason| BrokerUrlError {
            url: url.to_owned(),
            reason,
        };
        let (tls, rest) = if let Some(rest) = url.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = url.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(err("unknown scheme"));
        };
        let rest = rest.trim_end_matches('/');
        if rest.contains('/') || rest.contains('@') {
            return Err(err(
                "no path or user info allowed; give credentials separately",
            ));
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => (
                host,
                port.parse()
                    .map_err(|_| err("port is not a number from 1 to 65535"))?,
            ),
            _ => (rest, if tls { 8883 } else { 1883 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(err("host is missing"));
        }
        if port == 0 {
            return Err(err("port is not a number from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }

    /// MQTT options for this broker: client id, keep-alive, credentials and transport.
    /// With TLS, `ca_pem` (a PEM CA certificate) replaces the system trust store.
    pub fn mqtt_options(
        &self,
        client_id: &str,
        credentials: Option<(&str, &str)>,
        keep_alive: Duration,
        ca_pem: Option<Vec<u8>>,
    ) -> MqttOptions {
        let mut options = MqttOptions::new(client_id, self.host.clone(), self.port);
        options.set_keep_alive(keep_alive);
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        if self.tls {
            let tls = match ca_pem {
                Some(ca) => TlsConfiguration::SimpleNative {
                    ca,
                    client_auth: None,
                },
                None => TlsConfiguration::Native,
            };
            options.set_transport(Transport::Tls(tls));
        }
        options
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

impl Default for BrokerUrl {
    /// [`DEFAULT_BROKER`].
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1883,
            tls: false,
        }
    }
}

impl std::str::FromStr for BrokerUrl {
    type Err = BrokerUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_schemes_ports_and_defaults() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").expect("valid");
        assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 1884, false));
        let u = BrokerUrl::parse("mqtts://broker.example").expect("valid");
        assert_eq!((u.port, u.tls), (8883, true));
        let u = BrokerUrl::parse("mqtt://[::1]:1883").expect("valid");
        assert_eq!(u.host, "::1");
        assert_eq!(u.to_string(), "mqtt://[::1]:1883");
        assert_eq!(BrokerUrl::parse(DEFAULT_BROKER).expect("valid").port, 1883);
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for bad in [
            "tcp://h:1",
            "mqtt://",
            "mqtt://h:x",
            "mqtt://h:0",
            "mqtt://u:p@h:1",
            "h:1883",
        ] {
            let e = BrokerUrl::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("expected mqtt://HOST:PORT"), "{e}");
        }
    }
}
