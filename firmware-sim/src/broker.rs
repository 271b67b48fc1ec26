//! Broker URLs: every PenWatch program names its broker as `mqtt://HOST:PORT` (plain TCP) or
//! `mqtts://HOST:PORT` (TLS). The port defaults to 1883 and 8883 respectively.

use std::fmt;
use std::str::FromStr;

/// The broker URL every PenWatch program defaults to.
pub const DEFAULT_BROKER: &str = "mqtt://127.0.0.1:1883";

/// A parsed broker URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Whether the connection uses TLS (`mqtts://`).
    pub tls: bool,
}

/// Why a string is not a broker URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BrokerUrlError {
    /// The scheme is missing or is not `mqtt` / `mqtts`.
    #[error("broker URL {url:?}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")]
    Scheme {
        /// The offending URL.
        url: String,
    },
    /// No host after the scheme.
    #[error("broker URL {url:?}: the host is missing")]
    MissingHost {
        /// The offending URL.
        url: String,
    },
    /// The port is not a number from 1 to 65535.
    #[error("broker URL {url:?}: port {port:?} is not a number from 1 to 65535")]
    Port {
        /// The offending URL.
        url: String,
        /// The port text.
        port: String,
    },
    /// A path, query or credentials were given (credentials go in `--username`/`--password`).
    #[error(
        "broker URL {url:?}: only mqtt[s]://HOST:PORT is accepted (no path, query or user info; \
         use --username/--password for credentials)"
    )]
    Extra {
        /// The offending URL.
        url: String,
    },
}

impl BrokerUrl {
    /// Parses `mqtt://HOST[:PORT]` or `mqtts://HOST[:PORT]`; IPv6 hosts go in brackets.
    pub fn parse(url: &str) -> Result<Self, BrokerUrlError> {
        let owned = || url.to_owned();
        let (scheme, rest) = url
            .trim()
            .split_once("://")
            .ok_or(BrokerUrlError::Scheme { url: owned() })?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "mqtt" => false,
            "mqtts" => true,
            _ => return Err(BrokerUrlError::Scheme { url: owned() }),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains(['/', '?', '#', '@']) {
            return Err(BrokerUrlError::Extra { url: owned() });
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or(BrokerUrlError::MissingHost { url: owned() })?;
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or(BrokerUrlError::Extra { url: owned() })?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(BrokerUrlError::MissingHost { url: owned() });
        }
        let port =
            match port {
                None => {
                    if tls {
                        8883
                    } else {
                        1883
                    }
                }
                Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                    BrokerUrlError::Port {
                        url: owned(),
                        port: p.to_owned(),
                    }
                })?,
            };
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl Default for BrokerUrl {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 1883,
            tls: false,
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = BrokerUrlError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_tls_and_defaults() {
        let u = BrokerUrl::parse("mqtt://127.0.0.1:1884").expect("valid");
        assert_eq!(
            u,
            BrokerUrl {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        let u = BrokerUrl::parse("mqtts://broker.example").expect("valid");
        assert_eq!((u.port, u.tls), (8883, true));
        assert_eq!(
            BrokerUrl::parse("mqtt://[::1]:1999").expect("valid").host,
            "::1"
        );
        assert_eq!(
            BrokerUrl::parse(DEFAULT_BROKER).expect("valid"),
            BrokerUrl::default()
        );
        assert_eq!(BrokerUrl::default().to_string(), DEFAULT_BROKER);
    }

    #[test]
    fn errors_are_clear() {
        let err = BrokerUrl::parse("localhost:1883").expect_err("no scheme");
        assert_eq!(
            err.to_string(),
            "broker URL \"localhost:1883\": expected mqtt://HOST:PORT or mqtts://HOST:PORT"
        );
        assert!(matches!(
            BrokerUrl::parse("http://h:1"),
            Err(BrokerUrlError::Scheme { .. })
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://:1883"),
            Err(BrokerUrlError::MissingHost { .. })
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://h:0"),
            Err(BrokerUrlError::Port { .. })
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://h:99999"),
            Err(BrokerUrlError::Port { .. })
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://u:p@h:1"),
            Err(BrokerUrlError::Extra { .. })
        ));
        assert!(matches!(
            BrokerUrl::parse("mqtt://h:1/x"),
            Err(BrokerUrlError::Extra { .. })
        ));
    }
}
