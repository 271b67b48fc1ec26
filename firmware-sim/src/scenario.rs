//! Which pens and sessions a scenario touches, and the invalid messages of `malformed`.
//!
//! Choices come from the seed alone (an RNG stream of their own), so a run is reproducible.
//! Every enabled scenario is guaranteed to show up at least once in the fleet.

use penwatch_proto::v1::Telemetry;
use prost::Message;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::config::Scenario;
use crate::fleet::Fleet;

/// RNG stream of scenario choices.
const SCENARIO_STREAM: u64 = 1;
/// Probability that a session gets a depth flavour (over-depth or unknown operator).
const FLAVOUR_P: f64 = 0.4;
/// Probability that a session reuses the previous session's cartridge.
const REUSE_P: f64 = 0.3;
/// Probability that a telemetry message is published twice.
const DUPLICATE_P: f64 = 0.03;
/// Probability that a malformed message follows a valid one, on a pen in `malformed`.
const MALFORMED_P: f64 = 0.02;
/// Clock skew bounds, in ms: 2 minutes to 3 hours, either way.
const SKEW_MS: (i64, i64) = (120_000, 10_800_000);
/// Size of the `oversized` payload.
pub const OVERSIZED_BYTES: usize = 128 * 1024;

/// How a session departs from normal work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// The operator goes 0.25–0.5 mm over the permitted depth for a run of samples.
    OverDepth,
    /// The operator is not in the policy.
    UnknownOperator,
}

/// What the enabled scenarios mean for one pen.
#[derive(Debug, Clone, PartialEq)]
pub struct PenScenarios {
    /// Depth flavours a session may draw.
    pub flavours: Vec<Flavour>,
    /// Sessions (0-based) with a flavour fixed in advance.
    pub forced: Vec<(u32, Flavour)>,
    /// Probability that a session reuses the previous session's cartridge.
    pub reuse_p: f64,
    /// A session (0-based, at least 1) that reuses the previous cartridge for sure.
    pub forced_reuse: Option<u32>,
    /// Probability that a telemetry message is published twice.
    pub duplicate_p: f64,
    /// Probability that a malformed message follows a valid one (0 when the pen is not in
    /// `malformed`).
    pub malformed_p: f64,
    /// Whether the pen loses the network in its first session.
    pub offline: bool,
    /// Offset of the pen's clock, ms.
    pub clock_skew_ms: i64,
}

impl PenScenarios {
    /// The flavour of session `index`, drawn with the pen's RNG.
    pub fn flavour(&self, index: u32, rng: &mut impl Rng) -> Option<Flavour> {
        if let Some((_, f)) = self.forced.iter().find(|(i, _)| *i == index) {
            return Some(*f);
        }
        if self.flavours.is_empty() || !rng.random_bool(FLAVOUR_P) {
            return None;
        }
        Some(self.flavours[rng.random_range(0..self.flavours.len())])
    }

    /// Whether session `index` reuses the previous session's cartridge (never the first).
    pub fn reuses(&self, index: u32, rng: &mut impl Rng) -> bool {
        index > 0 && (self.forced_reuse == Some(index) || rng.random_bool(self.reuse_p))
    }
}

/// The scenario plan of every pen of the fleet, in fleet order.
pub fn plan(fleet: &Fleet, scenarios: &[Scenario]) -> Vec<PenScenarios> {
    let mut rng = ChaCha8Rng::seed_from_u64(fleet.seed);
    rng.set_stream(SCENARIO_STREAM);
    let pens = fleet.pen_count();
    let on = |s: Scenario| scenarios.contains(&s);
    let mut plans: Vec<PenScenarios> = (0..pens)
        .map(|_| PenScenarios {
            flavours: Vec::new(),
            forced: Vec::new(),
            reuse_p: if on(Scenario::CartridgeReuse) {
                REUSE_P
            } else {
                0.0
            },
            forced_reuse: None,
            duplicate_p: if on(Scenario::Duplicates) {
                DUPLICATE_P
            } else {
                0.0
            },
            malformed_p: 0.0,
            offline: false,
            clock_skew_ms: 0,
        })
        .collect();
    let mut forced_pens = Vec::new();
    for (scenario, flavour) in [
        (Scenario::OverDepth, Flavour::OverDepth),
        (Scenario::UnknownOperator, Flavour::UnknownOperator),
    ] {
        if !on(scenario) {
            continue;
        }
        for p in &mut plans {
            p.flavours.push(flavour);
        }
        let mut pen = rng.random_range(0..pens);
        if forced_pens.contains(&pen) {
            pen = (pen + 1) % pens;
        }
        forced_pens.push(pen);
        let session = plans[pen].forced.len() as u32;
        plans[pen].forced.push((session, flavour));
    }
    if on(Scenario::CartridgeReuse) {
        let pen = rng.random_range(0..pens);
        plans[pen].forced_reuse = Some(1);
    }
    for scenario in [
        Scenario::Malformed,
        Scenario::OfflineBuffer,
        Scenario::ClockSkew,
    ] {
        if !on(scenario) {
            continue;
        }
        let forced = rng.random_range(0..pens);
        for (i, p) in plans.iter_mut().enumerate() {
            if i != forced && !rng.random_bool(0.5) {
                continue;
            }
            match scenario {
                Scenario::Malformed => p.malformed_p = MALFORMED_P,
                Scenario::OfflineBuffer => p.offline = true,
                _ => {
                    let ms = rng.random_range(SKEW_MS.0..=SKEW_MS.1);
                    p.clock_skew_ms = if rng.random_bool(0.5) { ms } else { -ms };
                }
            }
        }
    }
    plans
}

/// A kind of invalid message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum MalformedKind {
    /// Cut in the middle (protobuf or JSON, as the pen publishes).
    Truncated,
    /// JSON with `depth_mm` as a non-numeric string.
    WrongType,
    /// `depth_mm` is NaN.
    NanDepth,
    /// `depth_mm` is negative.
    NegativeDepth,
    /// `depth_mm` is 50 mm, beyond any pen's mechanics.
    AbsurdDepth,
    /// The payload's `device_id` is not the topic's.
    TopicMismatch,
    /// `device_class` is a number the contract does not define.
    UnknownDeviceClass,
    /// 128 KiB payload.
    Oversized,
}

impl MalformedKind {
    /// Every kind, in the order a pen cycles through them.
    pub const ALL: [Self; 8] = [
        Self::Truncated,
        Self::WrongType,
        Self::NanDepth,
        Self::NegativeDepth,
        Self::AbsurdDepth,
        Self::TopicMismatch,
        Self::UnknownDeviceClass,
        Self::Oversized,
    ];

    /// The name used in the ground truth.
    pub fn name(self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::WrongType => "wrong_type",
            Self::NanDepth => "nan_depth",
            Self::NegativeDepth => "negative_depth",
            Self::AbsurdDepth => "absurd_depth",
            Self::TopicMismatch => "topic_mismatch",
            Self::UnknownDeviceClass => "unknown_device_class",
            Self::Oversized => "oversized",
        }
    }

    /// The payload of an invalid message derived from a valid one (which keeps its seq).
    pub fn payload(self, valid: &Telemetry, json: bool) -> Vec<u8> {
        let encode = |t: &Telemetry| {
            if json {
                penwatch_proto::json::encode(t)
            } else {
                t.encode_to_vec()
            }
        };
        match self {
            Self::Truncated => {
                let bytes = encode(valid);
                // Protobuf: stop inside the device_id string (tag, length, then fewer bytes
                // than the length says). JSON: stop half way, before the closing brace.
                let cut = if json {
                    bytes.len() / 2
                } else {
                    2 + valid.device_id.len() / 2
                };
                bytes.get(..cut).unwrap_or_default().to_vec()
            }
            Self::WrongType => with_json_field(
                valid,
                "depth_mm",
                Value::String(format!("{} mm", valid.depth_mm)),
            ),
            Self::NanDepth => encode(&Telemetry {
                depth_mm: f64::NAN,
                ..valid.clone()
            }),
            Self::NegativeDepth => encode(&Telemetry {
                depth_mm: -0.5,
                ..valid.clone()
            }),
            Self::AbsurdDepth => encode(&Telemetry {
                depth_mm: 50.0,
                ..valid.clone()
            }),
            Self::TopicMismatch => encode(&Telemetry {
                device_id: format!("{}-clone", valid.device_id),
                ..valid.clone()
            }),
            Self::UnknownDeviceClass => {
                if json {
                    with_json_field(valid, "device_class", Value::from(7))
                } else {
                    encode(&Telemetry {
                        device_class: 7,
                        ..valid.clone()
                    })
                }
            }
            Self::Oversized => encode(&Telemetry {
                firmware: format!("{}+{}", valid.firmware, "x".repeat(OVERSIZED_BYTES)),
                ..valid.clone()
            }),
        }
    }
}

/// The JSON encoding of `valid` with one field replaced.
fn with_json_field(valid: &Telemetry, field: &str, value: Value) -> Vec<u8> {
    let mut obj = serde_json::from_slice::<serde_json::Map<String, Value>>(
        &penwatch_proto::json::encode(valid),
    )
    .unwrap_or_default();
    obj.insert(field.to_owned(), value);
    Value::Object(obj).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use penwatch_proto::v1::DeviceClass;

    use super::*;

    fn valid() -> Telemetry {
        Telemetry {
            device_id: "pen-c01-01".into(),
            clinic_id: "c01".into(),
            device_class: DeviceClass::Salon.into(),
            seq: 9,
            depth_mm: 0.75,
            ..Telemetry::default()
        }
    }

    #[test]
    fn every_malformed_payload_is_rejected_by_decoding_or_validation() {
        for json in [false, true] {
            for kind in MalformedKind::ALL {
                let payload = kind.payload(&valid(), json);
                let decoded = if payload.first() == Some(&b'{') {
                    penwatch_proto::json::decode(&payload).ok()
                } else {
                    Telemetry::decode(payload.as_slice()).ok()
                };
                let invalid = match &decoded {
                    None => true,
                    Some(t) => {
                        !(0.0..=3.0).contains(&t.depth_mm)
                            || t.device_id != "pen-c01-01"
                            || DeviceClass::try_from(t.device_class).is_err()
                            || payload.len() >= OVERSIZED_BYTES
                    }
                };
                assert!(invalid, "{kind:?} json={json} decodes as valid");
                if let Some(t) = decoded {
                    assert_eq!(t.seq, 9, "{kind:?} keeps the valid message's seq");
                }
            }
        }
        assert!(
            MalformedKind::WrongType
                .payload(&valid(), false)
                .starts_with(b"{"),
            "wrong_type is JSON even from a protobuf pen"
        );
    }

    #[test]
    fn every_enabled_scenario_appears() {
        let fleet = Fleet::generate(5, 2, 3);
        let all = [
            Scenario::OverDepth,
            Scenario::UnknownOperator,
            Scenario::CartridgeReuse,
            Scenario::Malformed,
            Scenario::OfflineBuffer,
            Scenario::ClockSkew,
        ];
        let plans = plan(&fleet, &all);
        assert_eq!(plans.len(), 6);
        let forced: Vec<Flavour> = plans
            .iter()
            .flat_map(|p| p.forced.iter().map(|f| f.1))
            .collect();
        assert!(forced.contains(&Flavour::OverDepth) && forced.contains(&Flavour::UnknownOperator));
        assert!(plans.iter().any(|p| p.forced_reuse.is_some()));
        assert!(plans.iter().any(|p| p.malformed_p > 0.0));
        assert!(plans.iter().any(|p| p.offline));
        assert!(plans.iter().any(|p| p.clock_skew_ms != 0));
        assert_eq!(plans, plan(&fleet, &all), "deterministic");
        let normal = plan(&fleet, &[Scenario::Normal]);
        assert!(
            normal
                .iter()
                .all(|p| p.flavours.is_empty() && p.malformed_p == 0.0 && !p.offline)
        );
    }
}
