//! The HTTP writer: line protocol to InfluxDB's v2 API (`/api/v2/write`, through the
//! `influxdb2` crate) or its v1 API (`/write?db=…`, with `reqwest`), optionally gzipped, with
//! every answer sorted into what the forwarder does next ([`WriteError`]).

use std::io::Write as _;
use std::time::Duration;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_ENCODING, HeaderMap, HeaderValue, RETRY_AFTER};

use super::{Api, InfluxConfig, SinkError};

/// Why a write did not succeed, sorted by what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// Temporary (5xx, 429, 408, timeout, connection): retry the same body after a backoff.
    #[error("{kind}: {detail}")]
    Retry {
        /// Short label for the error metric (`server`, `throttled`, `timeout`, `connect`, …).
        kind: &'static str,
        /// What happened.
        detail: String,
        /// The server's `Retry-After`, where it gave one.
        retry_after: Option<Duration>,
    },
    /// The server refused the points themselves (400, 413): splitting the batch isolates them.
    #[error("HTTP {status}: {detail}")]
    Rejected {
        /// Status code.
        status: u16,
        /// The server's error text.
        detail: String,
    },
    /// No write to this target can succeed until someone fixes it (401, 403, 404, other 4xx).
    #[error("HTTP {status}: {detail}")]
    Halt {
        /// Status code.
        status: u16,
        /// The server's error text.
        detail: String,
    },
}

impl WriteError {
    /// Short label for the error metric.
    pub fn kind(&self) -> &'static str {
        match self {
            WriteError::Retry { kind, .. } => kind,
            WriteError::Rejected { .. } => "rejected",
            WriteError::Halt { status: 401, .. } | WriteError::Halt { status: 403, .. } => "auth",
            WriteError::Halt { status: 404, .. } => "not_found",
            WriteError::Halt { .. } => "client",
        }
    }
}

/// Longest error text kept from a response body.
const MAX_DETAIL: usize = 500;

/// Sorts a non-2xx status into a [`WriteError`].
fn classify(status: StatusCode, text: &str, retry_after: Option<Duration>) -> WriteError {
    let detail: String = text.trim().chars().take(MAX_DETAIL).collect();
    let code = status.as_u16();
    match code {
        429 => WriteError::Retry {
            kind: "throttled",
            detail,
            retry_after,
        },
        408 => WriteError::Retry {
            kind: "timeout",
            detail,
            retry_after,
        },
        400 | 413 => WriteError::Rejected {
            status: code,
            detail,
        },
        400..=499 => WriteError::Halt {
            status: code,
            detail,
        },
        _ => WriteError::Retry {
            kind: "server",
            detail: format!("HTTP {code}: {detail}"),
            retry_after,
        },
    }
}

fn transport(e: &reqwest::Error) -> WriteError {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    WriteError::Retry {
        kind,
        detail: e.to_string(),
        retry_after: None,
    }
}

/// `Retry-After` in delta-seconds (the HTTP-date form is ignored: backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
        .map(Duration::from_secs)
}

/// Gzips a body (fast level: the network is rarely the bottleneck on a LAN).
fn gzip(text: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = GzEncoder::new(Vec::with_capacity(text.len() / 8), Compression::fast());
    enc.write_all(text)?;
    enc.finish()
}

enum Target {
    V1 {
        client: reqwest::Client,
        url: String,
        query: Vec<(&'static str, String)>,
        username: Option<String>,
        password: Option<String>,
    },
    V2 {
        client: influxdb2::Client,
        org: String,
        bucket: String,
        precision: influxdb2::api::write::TimestampPrecision,
    },
}

/// Writes line protocol to one InfluxDB target.
pub struct Writer {
    target: Target,
    gzip: bool,
}

impl Writer {
    /// Builds the HTTP client for the configured API.
    pub fn new(c: &InfluxConfig) -> Result<Self, SinkError> {
        let mut headers = HeaderMap::new();
        if c.gzip && c.api == Api::V2 {
            // The influxdb2 crate passes a prepared body through unchanged; every request
            // this client sends is a gzipped write, so the header is set once here.
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(c.timeout_s))
            .connect_timeout(Duration::from_secs(c.timeout_s.min(10)))
            .default_headers(headers.clone());
        let base = c.url.trim_end_matches('/');
        let target = match c.api {
            Api::V1 => {
                let mut query = vec![("db", c.database.clone())];
                if !c.retention_policy.is_empty() {
                    query.push(("rp", c.retention_policy.clone()));
                }
                query.push((
                    "precision",
                    match c.precision {
                        super::Precision::Ns => "n".to_owned(),
                        super::Precision::Us => "u".to_owned(),
                    },
                ));
                Target::V1 {
                    client: http.build().map_err(|e| SinkError::Client(e.to_string()))?,
                    url: format!("{base}/write"),
                    query,
                    username: c.username.clone(),
                    password: c.password.clone(),
                }
            }
            Api::V2 => {
                // `with_builder` panics on a URL it cannot parse: `InfluxConfig::validate`
                // has parsed it already.
                let client = influxdb2::ClientBuilder::with_builder(
                    http,
                    base,
                    c.org.clone(),
                    c.token.clone().unwrap_or_default(),
                )
                .build()
                .map_err(|e| SinkError::Client(e.to_string()))?;
                Target::V2 {
                    client,
                    org: c.org.clone(),
                    bucket: c.bucket.clone(),
                    precision: match c.precision {
                        super::Precision::Ns => {
                            influxdb2::api::write::TimestampPrecision::Nanoseconds
                        }
                        super::Precision::Us => {
                            influxdb2::api::write::TimestampPrecision::Microseconds
                        }
                    },
                }
            }
        };
        Ok(Self {
            target,
            gzip: c.gzip,
        })
    }

    /// Writes newline-separated line protocol; `Ok` only on a 2xx.
    pub async fn write(&self, lines: Bytes) -> Result<(), WriteError> {
        let body: Bytes = if self.gzip {
            tokio::task::spawn_blocking(move || gzip(&lines).map(Bytes::from))
                .await
                .map_err(|e| WriteError::Retry {
                    kind: "gzip",
                    detail: e.to_string(),
                    retry_after: None,
                })?
                .map_err(|e| WriteError::Retry {
                    kind: "gzip",
                    detail: e.to_string(),
                    retry_after: None,
                })?
        } else {
            lines
        };
        match &self.target {
            Target::V1 {
                client,
                url,
                query,
                username,
                password,
            } => {
                let mut req = client.post(url).query(query).body(body);
                if self.gzip {
                    req = req.header(CONTENT_ENCODING, "gzip");
                }
                if let Some(user) = username {
                    req = req.basic_auth(user, password.as_ref());
                }
                let resp = req.send().await.map_err(|e| transport(&e))?;
                let status = resp.status();
                if status.is_success() {
                    return Ok(());
                }
                let after = retry_after(resp.headers());
                let text = resp.text().await.unwrap_or_default();
                Err(classify(status, &text, after))
            }
            Target::V2 {
                client,
                org,
                bucket,
                precision,
            } => match client
                .write_line_protocol_with_precision(org, bucket, body, *precision)
                .await
            {
                Ok(()) => Ok(()),
                // The crate treats anything but 204 as an error and drops the headers
                // (so no Retry-After on this path).
                Err(influxdb2::RequestError::Http { status, .. }) if status.is_success() => Ok(()),
                Err(influxdb2::RequestError::Http { status, text }) => {
                    Err(classify(status, &text, None))
                }
                Err(influxdb2::RequestError::ReqwestProcessing { source }) => {
                    Err(transport(&source))
                }
                Err(e) => Err(WriteError::Retry {
                    kind: "transport",
                    detail: e.to_string(),
                    retry_after: None,
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_sorted_by_what_to_do() {
        let s = |c| StatusCode::from_u16(c).expect("status");
        let after = Some(Duration::from_secs(7));
        assert_eq!(
            classify(s(429), "slow down", after),
            WriteError::Retry {
                kind: "throttled",
                detail: "slow down".into(),
                retry_after: after
            }
        );
        assert_eq!(classify(s(503), "", None).kind(), "server");
        assert_eq!(classify(s(400), "bad", None).kind(), "rejected");
        assert_eq!(classify(s(401), "", None).kind(), "auth");
        assert_eq!(classify(s(403), "", None).kind(), "auth");
        assert_eq!(
            classify(s(404), "database not found", None).kind(),
            "not_found"
        );
        assert_eq!(classify(s(405), "", None).kind(), "client");
    }

    #[test]
    fn retry_after_in_seconds() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static(" 12 "));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(12)));
        h.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn gzip_round_trips() {
        use std::io::Read as _;
        let z = gzip(b"m f=1i 1\n").expect("gzip");
        let mut out = String::new();
        flate2::read::GzDecoder::new(&z[..])
            .read_to_string(&mut out)
            .expect("gunzip");
        assert_eq!(out, "m f=1i 1\n");
    }
}
