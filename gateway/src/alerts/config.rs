//! `[alerts]`: where alerts go and how often an alert may be updated.

use serde::Deserialize;

use super::types::{Kind, Severity};
use crate::invalid::Invalid;

fn invalid(key: String, problem: impl Into<String>, fix: impl Into<String>) -> Invalid {
    Invalid::new(key, format!("{}; {}", problem.into(), fix.into()))
}

/// `[alerts]`
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AlertsConfig {
    /// An alert that only changed (no new one, not resolved) goes to a target at most once in
    /// this time, seconds: a long excursion is one alert that updates.
    pub update_interval_s: u64,
    /// A pen silent this long during an open session raises `pen_silent`, seconds (0 = never).
    pub silent_after_s: u64,
    /// More journal records waiting for InfluxDB than this raises `sink_backlog`.
    pub sink_backlog_max: i64,
    /// A gateway health condition (sink, journal) raises its alert once it has held this
    /// long, seconds.
    pub health_after_s: u64,
    /// Alerts every target has are deleted from the journal this many days after their last
    /// change.
    pub keep_days: u64,
    /// How often the outbox is read, milliseconds.
    pub poll_ms: u64,
    /// One HTTP request's time limit, seconds.
    pub timeout_s: u64,
    /// Attempts per delivery before the target is left alone for `retry_max_s`.
    pub attempts: usize,
    /// Longest wait between attempts, and the pause of a target that kept failing, seconds.
    pub retry_max_s: u64,
    /// Webhooks (`[[alerts.webhooks]]`).
    pub webhooks: Vec<WebhookConfig>,
    /// Prometheus Alertmanager (`[alerts.alertmanager]`).
    pub alertmanager: Option<AlertmanagerConfig>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            update_interval_s: 60,
            silent_after_s: 120,
            sink_backlog_max: 1_000_000,
            health_after_s: 60,
            keep_days: 30,
            poll_ms: 250,
            timeout_s: 10,
            attempts: 4,
            retry_max_s: 30,
            webhooks: Vec::new(),
            alertmanager: None,
        }
    }
}

/// Which alerts a target takes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Route {
    /// Clinics whose alerts it takes; empty = all.
    pub clinics: Vec<String>,
    /// Kinds it takes (`violation`, `pen_offline`, …); empty = all.
    pub kinds: Vec<String>,
    /// Least severity it takes (`warning` or `critical`); none = all.
    pub min_severity: Option<String>,
}

/// `[[alerts.webhooks]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Unique name (logs, the delivery record).
    pub name: String,
    /// `http://` or `https://` URL the JSON body is POSTed to.
    pub url: String,
    /// HMAC-SHA256 key for the signature header (prefer `secret_env`).
    pub secret: Option<String>,
    /// Environment variable holding the key.
    pub secret_env: Option<String>,
    /// Which alerts it takes.
    #[serde(flatten)]
    pub route: Route,
}

/// `[alerts.alertmanager]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Alertmanager's base URL (`http://HOST:9093`); alerts go to `/api/v2/alerts`.
    pub url: String,
    /// Firing alerts that last (not events) are sent again this often, seconds, so
    /// Alertmanager does not resolve them by its `resolve_timeout` (5 m by default).
    #[serde(default = "default_refresh_s")]
    pub refresh_s: u64,
    /// Which alerts it takes.
    #[serde(flatten)]
    pub route: Route,
}

fn default_refresh_s() -> u64 {
    60
}

/// Shortest webhook secret accepted, bytes.
const MIN_SECRET: usize = 16;

impl AlertsConfig {
    /// Checks every key; the error names the key and the fix.
    pub fn validate(&self) -> Result<(), Invalid> {
        for (key, value) in [
            ("poll_ms", self.poll_ms),
            ("keep_days", self.keep_days),
            ("timeout_s", self.timeout_s),
            ("retry_max_s", self.retry_max_s),
            ("attempts", self.attempts as u64),
        ] {
            if value == 0 {
                return Err(invalid(
                    format!("alerts.{key}"),
                    "is 0",
                    "set it to 1 or more",
                ));
            }
        }
        let mut names = std::collections::HashSet::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            let at = format!("alerts.webhooks[{i}]");
            if w.name.is_empty() || !names.insert(w.name.as_str()) {
                return Err(invalid(
                    format!("{at}.name"),
                    format!("\"{}\" is empty or used twice", w.name),
                    "give every webhook its own name",
                ));
            }
            check_url(&format!("{at}.url"), &w.url)?;
            self.webhook_secret(i)?;
            w.route.validate(&at)?;
        }
        if let Some(am) = &self.alertmanager {
            check_url("alerts.alertmanager.url", &am.url)?;
            if am.refresh_s == 0 {
                return Err(invalid(
                    "alerts.alertmanager.refresh_s".into(),
                    "is 0",
                    "set it below Alertmanager's resolve_timeout, e.g. 60",
                ));
            }
            am.route.validate("alerts.alertmanager")?;
        }
        Ok(())
    }

    /// The signing key of webhook `i`, from `secret` or the variable `secret_env` names.
    pub fn webhook_secret(&self, i: usize) -> Result<String, Invalid> {
        let w = &self.webhooks[i];
        let at = format!("alerts.webhooks[{i}]");
        let secret = match (&w.secret, &w.secret_env) {
            (Some(s), None) => s.clone(),
            (None, Some(var)) => std::env::var(var).map_err(|_| {
                invalid(
                    format!("{at}.secret_env"),
                    format!("the environment variable {var} is not set"),
                    "export it with the webhook's signing key",
                )
            })?,
            _ => {
                return Err(invalid(
                    format!("{at}.secret"),
                    "needs exactly one of `secret` and `secret_env`",
                    "set `secret_env` to the variable holding the signing key",
                ));
            }
        };
        if secret.len() < MIN_SECRET {
            return Err(invalid(
                format!("{at}.secret"),
                format!("the key is shorter than {MIN_SECRET} bytes"),
                "use a random key of at least 32 characters",
            ));
        }
        Ok(secret)
    }
}

fn check_url(key: &str, url: &str) -> Result<(), Invalid> {
    if url.starts_with("http://") || url.starts_with("https://") {
        return Ok(());
    }
    Err(invalid(
        key.to_owned(),
        format!("\"{url}\" is not an http:// or https:// URL"),
        "write the full URL, e.g. https://alerts.example/penwatch",
    ))
}

impl Route {
    fn validate(&self, at: &str) -> Result<(), Invalid> {
        if let Some(bad) = self.kinds.iter().find(|k| Kind::parse(k).is_none()) {
            let known: Vec<_> = Kind::ALL.iter().map(|k| k.as_str()).collect();
            return Err(invalid(
                format!("{at}.kinds"),
                format!("unknown kind \"{bad}\""),
                format!("use some of {}", known.join(", ")),
            ));
        }
        if let Some(s) = self
            .min_severity
            .as_deref()
            .filter(|s| Severity::parse(s).is_none())
        {
            return Err(invalid(
                format!("{at}.min_severity"),
                format!("unknown severity \"{s}\""),
                "use `warning` or `critical`",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> AlertsConfig {
        toml::from_str(text).expect("toml")
    }

    #[test]
    fn a_webhook_without_a_secret_is_refused_by_key() {
        let c = parse("[[webhooks]]\nname = \"a\"\nurl = \"http://x\"\n");
        let e = c.validate().expect_err("refused");
        assert_eq!(e.key, "alerts.webhooks[0].secret");
        assert!(e.to_string().contains("secret_env"), "{e}");
    }

    #[test]
    fn an_unknown_kind_is_refused_with_the_known_ones() {
        let c = parse(
            "[[webhooks]]\nname = \"a\"\nurl = \"http://x\"\nsecret = \"0123456789abcdef\"\nkinds = [\"violations\"]\n",
        );
        let e = c.validate().expect_err("refused");
        assert_eq!(e.key, "alerts.webhooks[0].kinds");
        assert!(e.problem.contains("violation, pen_silent"), "{e}");
    }

    #[test]
    fn an_alertmanager_url_must_be_http() {
        let c = parse("[alertmanager]\nurl = \"127.0.0.1:9093\"\n");
        assert_eq!(
            c.validate().expect_err("refused").key,
            "alerts.alertmanager.url"
        );
    }

    #[test]
    fn a_complete_section_is_valid() {
        let c = parse(
            "update_interval_s = 30\n[[webhooks]]\nname = \"a\"\nurl = \"https://x\"\nsecret = \"0123456789abcdef\"\nclinics = [\"c01\"]\nmin_severity = \"critical\"\n[alertmanager]\nurl = \"http://127.0.0.1:9093\"\n",
        );
        c.validate().expect("valid");
        assert_eq!(c.webhooks[0].route.clinics, ["c01"]);
    }
}
