//! Prometheus Alertmanager delivery through its v2 API (`POST /api/v2/alerts`).

use serde_json::json;

use super::SendError;
use super::types::OutboxAlert;
use super::webhook::rfc3339;

/// The v2 API's alerts: labels `alertname`, `kind`, `clinic`, `device`, `severity` (and
/// `session` for an alert about one session), the summary and key as annotations; `endsAt`
/// only once resolved.
pub fn payload(alerts: &[&OutboxAlert]) -> serde_json::Value {
    alerts
        .iter()
        .map(|a| {
            let x = &a.alert;
            let mut labels = json!({
                "alertname": format!("penwatch_{}", x.kind.as_str()),
                "kind": x.kind.as_str(),
                "clinic": x.clinic_id,
                "device": x.device_id,
                "severity": x.severity.as_str(),
            });
            if !x.session_id.is_empty() {
                labels["session"] = json!(x.session_id);
            }
            let mut alert = json!({
                "labels": labels,
                "annotations": {
                    "summary": x.summary,
                    "key": x.key,
                    "revision": a.revision.to_string(),
                },
                "startsAt": rfc3339(x.starts_ms),
            });
            if let Some(ends) = x.ends_ms {
                alert["endsAt"] = json!(rfc3339(ends));
            }
            alert
        })
        .collect()
}

/// The configured Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    url: String,
    client: reqwest::Client,
}

impl Alertmanager {
    /// Alertmanager at base URL `url`.
    pub fn new(url: &str, client: reqwest::Client) -> Self {
        Self {
            url: format!("{}/api/v2/alerts", url.trim_end_matches('/')),
            client,
        }
    }

    /// POSTs these alerts once.
    pub async fn post(&self, alerts: &[&OutboxAlert]) -> Result<(), SendError> {
        let response = self
            .client
            .post(&self.url)
            .json(&payload(alerts))
            .send()
            .await
            .map_err(|e| SendError::Retryable(e.to_string()))?;
        SendError::check(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::types::{Alert, Kind, Severity};

    #[test]
    fn a_resolved_alert_carries_ends_at_and_its_labels() {
        let a = OutboxAlert {
            alert: Alert {
                key: "violation/pen/s".into(),
                kind: Kind::Violation,
                severity: Severity::Critical,
                clinic_id: "c01".into(),
                device_id: "pen".into(),
                session_id: "s".into(),
                summary: "deep".into(),
                starts_ms: 1_000,
                ends_ms: Some(2_000),
                details: serde_json::Value::Null,
            },
            revision: 2,
            updated_ms: 2_000,
        };
        let p = payload(&[&a]);
        assert_eq!(p[0]["labels"]["kind"], "violation");
        assert_eq!(p[0]["labels"]["clinic"], "c01");
        assert_eq!(p[0]["labels"]["severity"], "critical");
        assert_eq!(p[0]["endsAt"], "1970-01-01T00:00:02.000Z");
        let firing = OutboxAlert {
            alert: Alert {
                ends_ms: None,
                ..a.alert.clone()
            },
            ..a
        };
        assert!(payload(&[&firing])[0].get("endsAt").is_none());
    }
}
