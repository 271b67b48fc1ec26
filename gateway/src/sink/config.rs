//! `[influx]`: the InfluxDB sink's settings and their checks.

use serde::Deserialize;

use super::schema::Precision;
use crate::invalid::Invalid;

/// Which InfluxDB write API to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// `/write?db=…&rp=…` with user/password: InfluxDB 1.x.
    V1,
    /// `/api/v2/write` with org, bucket and token: InfluxDB 1.8+, 2.x, 3.x, Cloud (default).
    #[default]
    V2,
}

/// `[influx]`: the InfluxDB sink (absent = no sink).
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InfluxConfig {
    /// `v2` (default) or `v1`.
    pub api: Api,
    /// Base URL, `http://HOST:8086` or `https://…`.
    pub url: String,
    /// v1: database.
    pub database: String,
    /// v1: retention policy ("" = the database's default).
    pub retention_policy: String,
    /// v1: user name.
    pub username: Option<String>,
    /// v1: password (prefer `PENWATCH_INFLUX_PASSWORD`).
    pub password: Option<String>,
    /// v2: organisation.
    pub org: String,
    /// v2: bucket.
    pub bucket: String,
    /// v2: API token (prefer `PENWATCH_INFLUX_TOKEN`).
    pub token: Option<String>,
    /// `ns` (default) or `us`; coarser would merge samples of one millisecond.
    pub precision: Precision,
    /// Gzip request bodies.
    pub gzip: bool,
    /// Most points per write request.
    pub batch_size: usize,
    /// When no stream had a full batch, wait this long before the next round, ms.
    pub linger_ms: u64,
    /// Request timeout, seconds.
    pub timeout_s: u64,
    /// Longest backoff between retries of temporary errors, seconds.
    pub retry_max_s: u64,
    /// Interval of retries after an error that needs fixing (401/403/404), seconds.
    pub halt_retry_s: u64,
    /// Device status snapshot interval, seconds (0 = none).
    pub status_interval_s: u64,
}

impl Default for InfluxConfig {
    fn default() -> Self {
        Self {
            api: Api::V2,
            url: "http://127.0.0.1:8086".to_owned(),
            database: "penwatch".to_owned(),
            retention_policy: String::new(),
            username: None,
            password: None,
            org: "penwatch".to_owned(),
            bucket: "penwatch".to_owned(),
            token: None,
            precision: Precision::Ns,
            gzip: true,
            batch_size: 5000,
            linger_ms: 200,
            timeout_s: 10,
            retry_max_s: 60,
            halt_retry_s: 60,
            status_interval_s: 60,
        }
    }
}

impl std::fmt::Debug for InfluxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secret = |s: &Option<String>| s.as_ref().map(|_| "<redacted>");
        f.debug_struct("InfluxConfig")
            .field("api", &self.api)
            .field("url", &self.url)
            .field("database", &self.database)
            .field("retention_policy", &self.retention_policy)
            .field("username", &self.username)
            .field("password", &secret(&self.password))
            .field("org", &self.org)
            .field("bucket", &self.bucket)
            .field("token", &secret(&self.token))
            .field("precision", &self.precision)
            .field("gzip", &self.gzip)
            .field("batch_size", &self.batch_size)
            .field("linger_ms", &self.linger_ms)
            .field("timeout_s", &self.timeout_s)
            .field("retry_max_s", &self.retry_max_s)
            .field("halt_retry_s", &self.halt_retry_s)
            .field("status_interval_s", &self.status_interval_s)
            .finish()
    }
}

impl InfluxConfig {
    /// Checks the section; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        let bad = |key: &str, problem: &str| Err(Invalid::new(key, problem));
        match reqwest::Url::parse(&self.url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => {
                return Err(Invalid::new(
                    "influx.url",
                    format!("{:?} is not a URL like http://127.0.0.1:8086", self.url),
                ));
            }
        }
        match self.api {
            Api::V1 => {
                if self.database.is_empty() {
                    return bad(
                        "influx.database",
                        "is empty: name the v1 database to write to",
                    );
                }
                if self.password.is_some() && self.username.is_none() {
                    return bad(
                        "influx.username",
                        "is missing while influx.password is set: give the user name",
                    );
                }
            }
            Api::V2 => {
                if self.bucket.is_empty() {
                    return bad("influx.bucket", "is empty: name the v2 bucket to write to");
                }
                if self.org.is_empty() {
                    return bad(
                        "influx.org",
                        "is empty: give the v2 organisation (any name for servers that ignore it)",
                    );
                }
            }
        }
        if !(1..=100_000).contains(&self.batch_size) {
            return bad("influx.batch_size", "must be from 1 to 100000");
        }
        if self.linger_ms > 60_000 {
            return bad("influx.linger_ms", "must be at most 60000");
        }
        if !(1..=600).contains(&self.timeout_s) {
            return bad("influx.timeout_s", "must be from 1 to 600");
        }
        if self.retry_max_s == 0 {
            return bad("influx.retry_max_s", "must be above 0");
        }
        if self.halt_retry_s == 0 {
            return bad("influx.halt_retry_s", "must be above 0");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_say_what_to_fix() {
        InfluxConfig::default().validate().expect("defaults");
        let c = InfluxConfig {
            url: "localhost:8086".into(),
            ..InfluxConfig::default()
        };
        assert_eq!(c.validate().expect_err("bad url").key, "influx.url");
        let c = InfluxConfig {
            api: Api::V1,
            database: String::new(),
            ..InfluxConfig::default()
        };
        assert_eq!(c.validate().expect_err("no db").key, "influx.database");
        let err = toml::from_str::<InfluxConfig>("precision = \"ms\"\n").expect_err("ms");
        assert!(err.to_string().contains("precision"), "{err}");
    }

    #[test]
    fn debug_redacts_secrets() {
        let c = InfluxConfig {
            token: Some("s3cret".into()),
            password: Some("hunter2".into()),
            ..InfluxConfig::default()
        };
        let text = format!("{c:?}");
        assert!(
            !text.contains("s3cret") && !text.contains("hunter2"),
            "{text}"
        );
    }
}
