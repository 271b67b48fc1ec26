//! MQTT topic layout: `clinics/{clinic_id}/pens/{device_id}/{telemetry|status}`.

use std::fmt;

/// Which of a pen's topics a message arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    /// `…/telemetry`: one [`crate::v1::Telemetry`] per message.
    Telemetry,
    /// `…/status`: retained `online` / `offline`.
    Status,
}

/// A parsed pen topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PenTopic<'a> {
    /// The `{clinic_id}` level.
    pub clinic_id: &'a str,
    /// The `{device_id}` level.
    pub device_id: &'a str,
    /// Telemetry or status.
    pub kind: TopicKind,
}

/// Why a topic is not a pen topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("topic {topic:?} is not clinics/{{clinic_id}}/pens/{{device_id}}/telemetry|status")]
pub struct TopicError {
    /// The offending topic.
    pub topic: String,
}

/// Topic filter matching every pen's telemetry.
pub const ALL_TELEMETRY: &str = "clinics/+/pens/+/telemetry";
/// Topic filter matching every pen's status.
pub const ALL_STATUS: &str = "clinics/+/pens/+/status";

/// The telemetry topic of one pen.
pub fn telemetry(clinic_id: &str, device_id: &str) -> String {
    format!("clinics/{clinic_id}/pens/{device_id}/telemetry")
}

/// The status topic of one pen.
pub fn status(clinic_id: &str, device_id: &str) -> String {
    format!("clinics/{clinic_id}/pens/{device_id}/status")
}

/// Parses a pen topic.
pub fn parse(topic: &str) -> Result<PenTopic<'_>, TopicError> {
    let err = || TopicError {
        topic: topic.to_owned(),
    };
    let mut parts = topic.split('/');
    let (Some("clinics"), Some(clinic_id), Some("pens"), Some(device_id), Some(kind), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(err());
    };
    if !is_valid_id(clinic_id) || !is_valid_id(device_id) {
        return Err(err());
    }
    let kind = match kind {
        "telemetry" => TopicKind::Telemetry,
        "status" => TopicKind::Status,
        _ => return Err(err()),
    };
    Ok(PenTopic {
        clinic_id,
        device_id,
        kind,
    })
}

/// Whether an id can stand as a topic level: 1 to 64 printable ASCII characters, none of
/// `/ + #` nor white space.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'/' | b'+' | b'#'))
}

impl fmt::Display for TopicKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicKind::Telemetry => "telemetry",
            TopicKind::Status => "status",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pen_topics() {
        let topic = telemetry("c1", "pen-7");
        let t = parse(&topic).expect("valid");
        assert_eq!(
            (t.clinic_id, t.device_id, t.kind),
            ("c1", "pen-7", TopicKind::Telemetry)
        );
        assert_eq!(
            parse(&status("c1", "p")).expect("valid").kind,
            TopicKind::Status
        );
    }

    #[test]
    fn rejects_other_topics() {
        for bad in [
            "clinics/c1/pens/p1",
            "clinics/c1/pens/p1/telemetry/x",
            "clinic/c1/pens/p1/telemetry",
            "clinics//pens/p1/telemetry",
            "clinics/c1/pens/p1/other",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
