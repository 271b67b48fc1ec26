//! Webhook delivery: the JSON body, its HMAC-SHA256 signature and the idempotency key.

use hmac::{Hmac, Mac};
use serde_json::json;

use super::SendError;
use super::types::OutboxAlert;

/// Header carrying `sha256=` and the hex HMAC-SHA256 of the body under the webhook's secret.
pub const SIGNATURE_HEADER: &str = "X-PenWatch-Signature";
/// Header carrying the idempotency key: the same for every delivery of one revision.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Unix ms as RFC 3339 (UTC, milliseconds).
pub fn rfc3339(ms: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_millis(t).to_string()
}

/// The JSON body of one alert revision (documented in the README's "Alerts").
pub fn body(a: &OutboxAlert) -> serde_json::Value {
    let x = &a.alert;
    json!({
        "version": 1,
        "idempotency_key": a.idempotency_key(),
        "key": x.key,
        "revision": a.revision,
        "status": a.status(),
        "kind": x.kind,
        "severity": x.severity,
        "clinic_id": x.clinic_id,
        "device_id": x.device_id,
        "session_id": x.session_id,
        "summary": x.summary,
        "starts_at": rfc3339(x.starts_ms),
        "ends_at": x.ends_ms.map(rfc3339),
        "updated_at": rfc3339(a.updated_ms),
        "details": x.details,
    })
}

/// The signature header's value for `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length.
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// One configured webhook.
#[derive(Debug)]
pub struct Webhook {
    url: String,
    secret: Vec<u8>,
    client: reqwest::Client,
}

impl Webhook {
    /// A webhook at `url` signing with `secret`.
    pub fn new(url: &str, secret: &str, client: reqwest::Client) -> Self {
        Self {
            url: url.to_owned(),
            secret: secret.as_bytes().to_vec(),
            client,
        }
    }

    /// POSTs one alert revision once.
    pub async fn post(&self, a: &OutboxAlert) -> Result<(), SendError> {
        let body = serde_json::to_vec(&body(a)).map_err(|e| SendError::Refused(e.to_string()))?;
        let response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature(&self.secret, &body))
            .header(IDEMPOTENCY_HEADER, a.idempotency_key())
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Retryable(e.to_string()))?;
        SendError::check(response.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
