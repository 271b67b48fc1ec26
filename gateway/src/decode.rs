//! Decode and validate: an MQTT message (topic + payload) becomes a [`Reading`] or a pen
//! status, or a [`BadInput`] with a reason a person can read.
//!
//! Protobuf and JSON are told apart per message: a JSON payload starts with `{` (after
//! optional white space), which no `Telemetry` protobuf can.

use std::sync::Arc;

use penwatch_proto::names::ShortName;
use penwatch_proto::text;
use penwatch_proto::topic::{self, TopicKind};
use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};
use prost::Message;

/// Limits applied while validating.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest accepted payload, in bytes.
    pub max_payload_bytes: usize,
    /// Largest valid set depth (the pens' mechanical maximum), mm.
    pub mechanical_max_mm: f64,
}

/// Payload encoding of a telemetry message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Protobuf binary.
    Protobuf,
    /// proto3 JSON mapping.
    Json,
}

/// A validated telemetry message.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Pen serial.
    pub device_id: String,
    /// Clinic owning the pen.
    pub clinic_id: String,
    /// Class the pen claims.
    pub claimed_class: DeviceClass,
    /// Pen model.
    pub model: String,
    /// Firmware version.
    pub firmware: String,
    /// Operator staff id ("" when idle).
    pub operator_id: String,
    /// Session id ("" when no session is open).
    pub session_id: String,
    /// Cartridge id.
    pub cartridge_id: String,
    /// Cartridge model.
    pub cartridge_model: String,
    /// Per-device sequence number (≥ 1).
    pub seq: u64,
    /// Device clock, Unix ms.
    pub timestamp_ms: i64,
    /// What the message reports.
    pub event: Event,
    /// Set needle protrusion, mm.
    pub depth_mm: f64,
    /// Cumulative strokes in this session.
    pub session_strokes: u64,
    /// Cumulative strokes of this cartridge.
    pub cartridge_strokes: u64,
    /// Needle frequency, Hz.
    pub speed_hz: f64,
    /// Battery charge, %.
    pub battery_pct: f64,
    /// Treatment zone, where reported.
    pub zone: Option<Zone>,
    /// How it was encoded.
    pub encoding: Encoding,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq)]
pub enum Inbound {
    /// A telemetry reading (shared: the committer hands it on to live streams as it is).
    Telemetry(Arc<Reading>),
    /// A pen's retained status.
    Status {
        /// Clinic of the pen.
        clinic_id: String,
        /// The pen.
        device_id: String,
        /// `online` (true) or `offline` (false).
        online: bool,
    },
    /// An empty retained status (a pen's status being cleared): nothing to record.
    StatusCleared,
}

/// Why a message was rejected. Its `Display` is the reason kept in quarantine.
#[derive(Debug, thiserror::Error)]
pub enum BadInput {
    /// Payload above the size limit.
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Payload size.
        size: usize,
        /// Configured limit.
        limit: usize,
    },
    /// Topic outside the pen layout.
    #[error(transparent)]
    Topic(#[from] topic::TopicError),
    /// Not a valid protobuf `Telemetry`.
    #[error("not a valid protobuf Telemetry: {0}")]
    Protobuf(#[from] prost::DecodeError),
    /// Not a valid JSON `Telemetry`.
    #[error(transparent)]
    Json(#[from] penwatch_proto::json::JsonError),
    /// Topic and payload disagree.
    #[error("topic says {what} {topic:?} but the payload says {payload:?}")]
    TopicMismatch {
        /// `clinic_id` or `device_id`.
        what: &'static str,
        /// Value from the topic.
        topic: String,
        /// Value from the payload.
        payload: String,
    },
    /// A field is missing or out of range.
    #[error("field {field}: {reason}")]
    Field {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A status payload other than `online` / `offline`.
    #[error("status payload {0:?} is not \"online\" or \"offline\"")]
    Status(String),
    /// A status for a pen on another clinic's topic than the pen's own.
    #[error(
        "status for pen {device_id:?} of clinic {clinic_id:?} arrived on clinic \
         {topic_clinic_id:?}'s topic; only the pen's own topic counts"
    )]
    StatusClinic {
        /// The pen.
        device_id: String,
        /// Its clinic (registered, or from its telemetry).
        clinic_id: String,
        /// The clinic in the topic.
        topic_clinic_id: String,
    },
}

impl BadInput {
    /// A short, stable label for metrics (`too_large`, `protobuf`, `field`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            BadInput::TooLarge { .. } => "too_large",
            BadInput::Topic(_) => "topic",
            BadInput::Protobuf(_) => "protobuf",
            BadInput::Json(_) => "json",
            BadInput::TopicMismatch { .. } => "topic_mismatch",
            BadInput::Field { .. } => "field",
            BadInput::Status(_) => "status",
            BadInput::StatusClinic { .. } => "status_clinic",
        }
    }
}

/// Earliest plausible device time (2020-01-01), Unix ms.
const MIN_TIMESTAMP_MS: i64 = 1_577_836_800_000;
/// Latest plausible device time (2100-01-01), Unix ms.
const MAX_TIMESTAMP_MS: i64 = 4_102_444_800_000;
/// Longest accepted id or name.
const MAX_TEXT: usize = 64;
/// Highest plausible needle frequency, Hz.
const MAX_SPEED_HZ: f64 = 1000.0;
/// Largest sequence number (the journal stores it as a signed 64-bit integer).
const MAX_SEQ: u64 = i64::MAX as u64;
/// Highest plausible cumulative stroke counter.
const MAX_STROKES: u64 = 1_000_000_000_000;

/// Decodes and validates one MQTT message.
pub fn decode(topic_name: &str, payload: &[u8], limits: &Limits) -> Result<Inbound, BadInput> {
    if payload.len() > limits.max_payload_bytes {
        return Err(BadInput::TooLarge {
            size: payload.len(),
            limit: limits.max_payload_bytes,
        });
    }
    let topic = topic::parse(topic_name)?;
    not_formula("clinic_id", topic.clinic_id)?;
    not_formula("device_id", topic.device_id)?;
    match topic.kind {
        TopicKind::Status => decode_status(topic.clinic_id, topic.device_id, payload),
        TopicKind::Telemetry => {
            let (telemetry, encoding) = if is_json(payload) {
                (penwatch_proto::json::decode(payload)?, Encoding::Json)
            } else {
                (Telemetry::decode(payload)?, Encoding::Protobuf)
            };
            let reading = validate(telemetry, encoding, limits)?;
            for (what, t, p) in [
                ("clinic_id", topic.clinic_id, &reading.clinic_id),
                ("device_id", topic.device_id, &reading.device_id),
            ] {
                if t != p {
                    return Err(BadInput::TopicMismatch {
                        what,
                        topic: t.to_owned(),
                        payload: p.clone(),
                    });
                }
            }
            Ok(Inbound::Telemetry(Arc::new(reading)))
        }
    }
}

fn is_json(payload: &[u8]) -> bool {
    payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn decode_status(clinic_id: &str, device_id: &str, payload: &[u8]) -> Result<Inbound, BadInput> {
    let text = String::from_utf8_lossy(payload);
    let online = match text.trim().to_ascii_lowercase().as_str() {
        "" => return Ok(Inbound::StatusCleared),
        "online" => true,
        "offline" => false,
        _ => return Err(BadInput::Status(text.chars().take(MAX_TEXT).collect())),
    };
    Ok(Inbound::Status {
        clinic_id: clinic_id.to_owned(),
        device_id: device_id.to_owned(),
        online,
    })
}

fn field(field: &'static str, reason: impl Into<String>) -> BadInput {
    BadInput::Field {
        field,
        reason: reason.into(),
    }
}

fn known_enum<E: ShortName + TryFrom<i32>>(name: &'static str, value: i32) -> Result<E, BadInput> {
    match E::try_from(value) {
        Ok(v) if value != 0 => Ok(v),
        _ if value == 0 => Err(field(name, format!("missing (expected {})", E::expected()))),
        _ => Err(field(
            name,
            format!("unknown value {value} (expected {})", E::expected()),
        )),
    }
}

/// Rejects an id a spreadsheet would run as a formula (see [`text::FORMULA_STARTS`]).
fn not_formula(name: &'static str, value: &str) -> Result<(), BadInput> {
    match value.chars().next() {
        Some(c) if text::starts_like_formula(value) => Err(field(
            name,
            format!(
                "{value:?} begins with {c:?}: ids may not begin with = + - @, tab or carriage \
                 return (a spreadsheet would run it as a formula)"
            ),
        )),
        _ => Ok(()),
    }
}

/// Checks a string field: at most [`MAX_TEXT`] bytes; an id (`id`) is a valid topic level
/// that does not begin like a formula, other text holds no control characters.
fn text(name: &'static str, value: String, id: bool) -> Result<String, BadInput> {
    if value.len() > MAX_TEXT {
        return Err(field(name, format!("longer than {MAX_TEXT} bytes")));
    }
    if id && !value.is_empty() {
        if !topic::is_valid_id(&value) {
            return Err(field(
                name,
                format!("{value:?} is not a valid id (printable ASCII, no / + # or spaces)"),
            ));
        }
        not_formula(name, &value)?;
    }
    if !id && !text::is_printable(&value) {
        return Err(field(
            name,
            format!("{value:?} holds control characters (only printable text is accepted)"),
        ));
    }
    Ok(value)
}

fn measure(name: &'static str, value: f64, max: f64) -> Result<f64, BadInput> {
    if value.is_nan() {
        return Err(field(name, "is NaN"));
    }
    if !(0.0..=max).contains(&value) {
        return Err(field(name, format!("{value} is outside 0 to {max}")));
    }
    Ok(value)
}

fn validate(t: Telemetry, encoding: Encoding, limits: &Limits) -> Result<Reading, BadInput> {
    let claimed_class = known_enum::<DeviceClass>("device_class", t.device_class)?;
    let event = known_enum::<Event>("event", t.event)?;
    let zone = match t.zone {
        0 => None,
        z => Some(known_enum::<Zone>("zone", z)?),
    };
    let device_id = text("device_id", t.device_id, true)?;
    let clinic_id = text("clinic_id", t.clinic_id, true)?;
    if device_id.is_empty() || clinic_id.is_empty() {
        let name = if device_id.is_empty() {
            "device_id"
        } else {
            "clinic_id"
        };
        return Err(field(name, "missing"));
    }
    if t.seq == 0 {
        return Err(field("seq", "missing (sequence numbers start at 1)"));
    }
    if t.seq > MAX_SEQ {
        return Err(field(
            "seq",
            format!("{} is above the largest sequence number, 2^63-1", t.seq),
        ));
    }
    if !(MIN_TIMESTAMP_MS..=MAX_TIMESTAMP_MS).contains(&t.timestamp_ms) {
        return Err(field(
            "timestamp_ms",
            format!(
                "{} is not a plausible Unix time in milliseconds (2020 to 2100)",
                t.timestamp_ms
            ),
        ));
    }
    let depth_mm = measure("depth_mm", t.depth_mm, limits.mechanical_max_mm)?;
    let speed_hz = measure("speed_hz", t.speed_hz, MAX_SPEED_HZ)?;
    let battery_pct = measure("battery_pct", t.battery_pct, 100.0)?;
    for (name, v) in [
        ("session_strokes", t.session_strokes),
        ("cartridge_strokes", t.cartridge_strokes),
    ] {
        if v > MAX_STROKES {
            return Err(field(name, format!("{v} is not a plausible stroke count")));
        }
    }
    let session_id = text("session_id", t.session_id, true)?;
    let cartridge_id = text("cartridge_id", t.cartridge_id, true)?;
    match event {
        Event::SessionStart | Event::SessionEnd if session_id.is_empty() => {
            return Err(field(
                "session_id",
                format!("missing on a {} event", event.short_name()),
            ));
        }
        Event::CartridgeInserted if cartridge_id.is_empty() => {
            return Err(field(
                "cartridge_id",
                "missing on a cartridge_inserted event",
            ));
        }
        Event::Sample if depth_mm > 0.0 && session_id.is_empty() => {
            return Err(field(
                "session_id",
                "missing on a sample with the needles out (depth_mm > 0)",
            ));
        }
        _ => {}
    }
    Ok(Reading {
        device_id,
        clinic_id,
        claimed_class,
        model: text("model", t.model, false)?,
        firmware: text("firmware", t.firmware, false)?,
        operator_id: text("operator_id", t.operator_id, true)?,
        session_id,
        cartridge_id,
        cartridge_model: text("cartridge_model", t.cartridge_model, true)?,
        seq: t.seq,
        timestamp_ms: t.timestamp_ms,
        event,
        depth_mm,
        session_strokes: t.session_strokes,
        cartridge_strokes: t.cartridge_strokes,
        speed_hz,
        battery_pct,
        zone,
        encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: Limits = Limits {
        max_payload_bytes: 65536,
        mechanical_max_mm: 3.0,
    };
    const TOPIC: &str = "clinics/c01/pens/pen-1/telemetry";

    fn telemetry() -> Telemetry {
        Telemetry {
            device_id: "pen-1".into(),
            clinic_id: "c01".into(),
            device_class: DeviceClass::Salon.into(),
            model: "DermaPro S".into(),
            firmware: "2.1.0".into(),
            operator_id: "op-1".into(),
            session_id: "s-1".into(),
            cartridge_id: "cart-1".into(),
            cartridge_model: "N12".into(),
            seq: 7,
            timestamp_ms: 1_790_000_000_000,
            event: Event::Sample.into(),
            depth_mm: 0.75,
            session_strokes: 100,
            cartridge_strokes: 100,
            speed_hz: 120.0,
            battery_pct: 90.0,
            zone: Zone::Cheek.into(),
        }
    }

    fn reject(t: Telemetry) -> String {
        decode(TOPIC, &t.encode_to_vec(), &LIMITS)
            .expect_err("rejected")
            .to_string()
    }

    #[test]
    fn protobuf_and_json_decode_to_the_same_reading() {
        let t = telemetry();
        let Inbound::Telemetry(a) = decode(TOPIC, &t.encode_to_vec(), &LIMITS).expect("valid")
        else {
            panic!("telemetry expected");
        };
        let json = penwatch_proto::json::encode(&t);
        let Inbound::Telemetry(b) = decode(TOPIC, &json, &LIMITS).expect("valid") else {
            panic!("telemetry expected");
        };
        assert_eq!(a.encoding, Encoding::Protobuf);
        assert_eq!(b.encoding, Encoding::Json);
        assert_eq!(
            Reading {
                encoding: Encoding::Json,
                ..(*a).clone()
            },
            *b
        );
    }

    #[test]
    fn bad_values_are_rejected_with_readable_reasons() {
        assert_eq!(
            reject(Telemetry {
                depth_mm: f64::NAN,
                ..telemetry()
            }),
            "field depth_mm: is NaN"
        );
        assert_eq!(
            reject(Telemetry {
                depth_mm: -0.5,
                ..telemetry()
            }),
            "field depth_mm: -0.5 is outside 0 to 3"
        );
        assert_eq!(
            reject(Telemetry {
                depth_mm: 50.0,
                ..telemetry()
            }),
            "field depth_mm: 50 is outside 0 to 3"
        );
        assert_eq!(
            reject(Telemetry {
                device_class: 9,
                ..telemetry()
            }),
            "field device_class: unknown value 9 (expected home, salon, medical)"
        );
        assert_eq!(
            reject(Telemetry {
                seq: 0,
                ..telemetry()
            }),
            "field seq: missing (sequence numbers start at 1)"
        );
        let too_big = Telemetry {
            seq: 1 << 63,
            ..telemetry()
        };
        let reason = "field seq: 9223372036854775808 is above the largest sequence number, 2^63-1";
        assert_eq!(reject(too_big.clone()), reason);
        let json = penwatch_proto::json::encode(&too_big);
        let from_json = decode(TOPIC, &json, &LIMITS).expect_err("rejected");
        assert_eq!(from_json.to_string(), reason);
        let largest = Telemetry {
            seq: i64::MAX as u64,
            ..telemetry()
        };
        assert!(decode(TOPIC, &largest.encode_to_vec(), &LIMITS).is_ok());
        assert!(
            reject(Telemetry {
                timestamp_ms: 12,
                ..telemetry()
            })
            .starts_with("field timestamp_ms")
        );
        assert_eq!(
            reject(Telemetry {
                device_id: "pen-2".into(),
                ..telemetry()
            }),
            "topic says device_id \"pen-1\" but the payload says \"pen-2\""
        );
        assert!(
            reject(Telemetry {
                session_id: String::new(),
                ..telemetry()
            })
            .starts_with("field session_id")
        );
        assert!(
            reject(Telemetry {
                battery_pct: 101.0,
                ..telemetry()
            })
            .starts_with("field battery_pct")
        );
    }

    #[test]
    fn ids_that_begin_like_a_formula_are_rejected() {
        for (name, t) in [
            (
                "operator_id",
                Telemetry {
                    operator_id: "=HYPERLINK(\"x\")".into(),
                    ..telemetry()
                },
            ),
            (
                "session_id",
                Telemetry {
                    session_id: "-cmd|calc!A0".into(),
                    ..telemetry()
                },
            ),
            (
                "cartridge_id",
                Telemetry {
                    cartridge_id: "@SUM(1)".into(),
                    ..telemetry()
                },
            ),
            (
                "cartridge_model",
                Telemetry {
                    cartridge_model: "=1-1".into(),
                    ..telemetry()
                },
            ),
        ] {
            let reason = reject(t);
            assert!(reason.starts_with(&format!("field {name}: ")), "{reason}");
            assert!(reason.contains("may not begin with"), "{reason}");
        }
        let formula_pen = Telemetry {
            device_id: "=pen".into(),
            ..telemetry()
        };
        let e = decode(
            "clinics/c01/pens/=pen/telemetry",
            &formula_pen.encode_to_vec(),
            &LIMITS,
        )
        .expect_err("rejected");
        assert!(
            e.to_string()
                .starts_with("field device_id: \"=pen\" begins with '='"),
            "{e}"
        );
        let e = decode("clinics/@c/pens/pen-1/status", b"online", &LIMITS).expect_err("rejected");
        assert!(e.to_string().starts_with("field clinic_id: "), "{e}");
    }

    #[test]
    fn model_and_firmware_must_be_printable() {
        for t in [
            Telemetry {
                model: "Derma\u{1b}[2JPro".into(),
                ..telemetry()
            },
            Telemetry {
                firmware: "\u{1b}]0;owned\u{7}".into(),
                ..telemetry()
            },
            Telemetry {
                firmware: "2.1\u{9b}31m".into(),
                ..telemetry()
            },
        ] {
            let reason = reject(t);
            assert!(reason.contains("holds control characters"), "{reason}");
            assert!(
                !reason.contains('\u{1b}'),
                "the reason itself is escaped: {reason}"
            );
        }
        let fine = Telemetry {
            model: "DermaPro S – µ edition".into(),
            firmware: "2.1.0-rc1+build.7".into(),
            ..telemetry()
        };
        assert!(decode(TOPIC, &fine.encode_to_vec(), &LIMITS).is_ok());
        let long = Telemetry {
            model: "x".repeat(MAX_TEXT + 1),
            ..telemetry()
        };
        assert_eq!(reject(long), "field model: longer than 64 bytes");
    }

    #[test]
    fn size_topic_truncation_and_json_types_are_rejected() {
        let big = vec![0u8; LIMITS.max_payload_bytes + 1];
        assert!(matches!(
            decode(TOPIC, &big, &LIMITS),
            Err(BadInput::TooLarge { .. })
        ));
        let bytes = telemetry().encode_to_vec();
        assert!(matches!(
            decode(TOPIC, &bytes[..4], &LIMITS),
            Err(BadInput::Protobuf(_))
        ));
        assert!(matches!(
            decode("pens/pen-1", &bytes, &LIMITS),
            Err(BadInput::Topic(_))
        ));
        let json = br#" {"device_id":"pen-1","depth_mm":"deep"}"#;
        assert_eq!(
            decode(TOPIC, json, &LIMITS)
                .expect_err("rejected")
                .to_string(),
            "field depth_mm: expected a number, found \"deep\""
        );
    }

    #[test]
    fn status_payloads() {
        let t = "clinics/c01/pens/pen-1/status";
        assert!(matches!(
            decode(t, b"online", &LIMITS),
            Ok(Inbound::Status { online: true, .. })
        ));
        assert!(matches!(
            decode(t, b"offline\n", &LIMITS),
            Ok(Inbound::Status { online: false, .. })
        ));
        assert!(matches!(
            decode(t, b"", &LIMITS),
            Ok(Inbound::StatusCleared)
        ));
        assert!(matches!(
            decode(t, b"rebooting", &LIMITS),
            Err(BadInput::Status(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(TOPIC, &payload, &LIMITS);
        }

        #[test]
        fn arbitrary_json_text_never_panics(payload in "\\{.{0,200}") {
            let _ = decode(TOPIC, payload.as_bytes(), &LIMITS);
        }

        #[test]
        fn mutated_valid_messages_never_panic(flip in 0usize..200, byte in any::<u8>()) {
            let mut bytes = telemetry().encode_to_vec();
            let i = flip % bytes.len();
            bytes[i] = byte;
            let _ = decode(TOPIC, &bytes, &LIMITS);
        }
    }
}
