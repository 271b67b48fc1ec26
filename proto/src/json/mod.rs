//! proto3 JSON mapping of [`Telemetry`].
//!
//! Decoding accepts snake_case and lowerCamelCase field names, enums by short name, full
//! name or number, 64-bit integers as numbers or decimal strings, doubles as numbers or the
//! strings `"NaN"`, `"Infinity"`, `"-Infinity"`, and `null` for a field's default. Unknown
//! fields are ignored (newer firmware may add some). Wrong types are errors that name the
//! field. Encoding writes snake_case names and short enum names.
//!
//! Decoding makes one pass over the payload: it keeps the known fields' values (strings
//! borrowed from the payload where they have no escapes) and checks, without keeping them,
//! that unknown values are well-formed JSON, just as parsing into a [`Value`] would.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use crate::names::ShortName;
use crate::v1::{DeviceClass, Event, Telemetry, Zone};

/// Why a JSON payload is not a [`Telemetry`].
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Not well-formed JSON.
    #[error("not valid JSON: {0}")]
    Syntax(#[from] serde_json::Error),
    /// Valid JSON, but not an object.
    #[error("JSON payload is not an object")]
    NotObject,
    /// A field has the wrong type or an unknown enum value.
    #[error("field {field}: {reason}")]
    Field {
        /// The snake_case field name.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// Decodes a JSON object into a [`Telemetry`].
pub fn decode(payload: &[u8]) -> Result<Telemetry, JsonError> {
    let Payload(Some(mut f)) = serde_json::from_slice(payload)? else {
        return Err(JsonError::NotObject);
    };
    Ok(Telemetry {
        device_id: f.take(DEVICE_ID).string()?,
        clinic_id: f.take(CLINIC_ID).string()?,
        device_class: f.take(DEVICE_CLASS).enumeration::<DeviceClass>()?,
        model: f.take(MODEL).string()?,
        firmware: f.take(FIRMWARE).string()?,
        operator_id: f.take(OPERATOR_ID).string()?,
        session_id: f.take(SESSION_ID).string()?,
        cartridge_id: f.take(CARTRIDGE_ID).string()?,
        cartridge_model: f.take(CARTRIDGE_MODEL).string()?,
        seq: f.take(SEQ).uint()?,
        timestamp_ms: f.take(TIMESTAMP_MS).int()?,
        event: f.take(EVENT).enumeration::<Event>()?,
        depth_mm: f.take(DEPTH_MM).double()?,
        session_strokes: f.take(SESSION_STROKES).uint()?,
        cartridge_strokes: f.take(CARTRIDGE_STROKES).uint()?,
        speed_hz: f.take(SPEED_HZ).double()?,
        battery_pct: f.take(BATTERY_PCT).double()?,
        zone: f.take(ZONE).enumeration::<Zone>()?,
    })
}

/// Encodes a [`Telemetry`] as a JSON object with snake_case names and short enum names.
/// Unspecified enum values and an unspecified zone are left out.
pub fn encode(t: &Telemetry) -> Vec<u8> {
    let mut obj = Map::new();
    let mut put = |k: &str, v: Value| {
        obj.insert(k.to_owned(), v);
    };
    put("device_id", t.device_id.clone().into());
    put("clinic_id", t.clinic_id.clone().into());
    if let Ok(c) = DeviceClass::try_from(t.device_class) {
        if c != DeviceClass::Unspecified {
            put("device_class", c.short_name().into());
        }
    }
    put("model", t.model.clone().into());
    put("firmware", t.firmware.clone().into());
    put("operator_id", t.operator_id.clone().into());
    put("session_id", t.session_id.clone().into());
    put("cartridge_id", t.cartridge_id.clone().into());
    put("cartridge_model", t.cartridge_model.clone().into());
    put("seq", t.seq.into());
    put("timestamp_ms", t.timestamp_ms.into());
    if let Ok(e) = Event::try_from(t.event) {
        if e != Event::Unspecified {
            put("event", e.short_name().into());
        }
    }
    put("depth_mm", double(t.depth_mm));
    put("session_strokes", t.session_strokes.into());
    put("cartridge_strokes", t.cartridge_strokes.into());
    put("speed_hz", double(t.speed_hz));
    put("battery_pct", double(t.battery_pct));
    if let Ok(z) = Zone::try_from(t.zone) {
        if z != Zone::Unspecified {
            put("zone", z.short_name().into());
        }
    }
    Value::Object(obj).to_string().into_bytes()
}

fn double(v: f64) -> Value {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        v.into()
    }
}

/// snake_case names of the [`Telemetry`] fields, in declaration order: index `i` is field
/// `i` of the constants below and of [`field_of`].
const SNAKE: [&str; 18] = [
    "device_id",
    "clinic_id",
    "device_class",
    "model",
    "firmware",
    "operator_id",
    "session_id",
    "cartridge_id",
    "cartridge_model",
    "seq",
    "timestamp_ms",
    "event",
    "depth_mm",
    "session_strokes",
    "cartridge_strokes",
    "speed_hz",
    "battery_pct",
    "zone",
];
const DEVICE_ID: usize = 0;
const CLINIC_ID: usize = 1;
const DEVICE_CLASS: usize = 2;
const MODEL: usize = 3;
const FIRMWARE: usize = 4;
const OPERATOR_ID: usize = 5;
const SESSION_ID: usize = 6;
const CARTRIDGE_ID: usize = 7;
const CARTRIDGE_MODEL: usize = 8;
const SEQ: usize = 9;
const TIMESTAMP_MS: usize = 10;
const EVENT: usize = 11;
const DEPTH_MM: usize = 12;
const SESSION_STROKES: usize = 13;
const CARTRIDGE_STROKES: usize = 14;
const SPEED_HZ: usize = 15;
const BATTERY_PCT: usize = 16;
const ZONE: usize = 17;

/// The field a key names, by its snake_case or lowerCamelCase name, and whether it is the
/// snake_case one (as it is for a name that is the same in both cases).
fn field_of(key: &str) -> Option<(usize, bool)> {
    Some(match key {
        "device_id" => (DEVICE_ID, true),
        "deviceId" => (DEVICE_ID, false),
        "clinic_id" => (CLINIC_ID, true),
        "clinicId" => (CLINIC_ID, false),
        "device_class" => (DEVICE_CLASS, true),
        "deviceClass" => (DEVICE_CLASS, false),
        "model" => (MODEL, true),
        "firmware" => (FIRMWARE, true),
        "operator_id" => (OPERATOR_ID, true),
        "operatorId" => (OPERATOR_ID, false),
        "session_id" => (SESSION_ID, true),
        "sessionId" => (SESSION_ID, false),
        "cartridge_id" => (CARTRIDGE_ID, true),
        "cartridgeId" => (CARTRIDGE_ID, false),
        "cartridge_model" => (CARTRIDGE_MODEL, true),
        "cartridgeModel" => (CARTRIDGE_MODEL, false),
        "seq" => (SEQ, true),
        "timestamp_ms" => (TIMESTAMP_MS, true),
        "timestampMs" => (TIMESTAMP_MS, false),
        "event" => (EVENT, true),
        "depth_mm" => (DEPTH_MM, true),
        "depthMm" => (DEPTH_MM, false),
        "session_strokes" => (SESSION_STROKES, true),
        "sessionStrokes" => (SESSION_STROKES, false),
        "cartridge_strokes" => (CARTRIDGE_STROKES, true),
        "cartridgeStrokes" => (CARTRIDGE_STROKES, false),
        "speed_hz" => (SPEED_HZ, true),
        "speedHz" => (SPEED_HZ, false),
        "battery_pct" => (BATTERY_PCT, true),
        "batteryPct" => (BATTERY_PCT, false),
        "zone" => (ZONE, true),
        _ => return None,
    })
}

/// A whole payload: the known fields of an object, or `None` for any other JSON value.
struct Payload<'de>(Option<Found<'de>>);

/// The known fields of an object. A field named both ways takes its (last) snake_case value;
/// a repeated name takes its last value, as a [`Map`] would.
struct Found<'de> {
    values: [Option<Lit<'de>>; SNAKE.len()],
    /// Bit `i` is set once field `i` has appeared under its snake_case name.
    snake: u32,
}

impl<'de> Found<'de> {
    /// Field `i`, `None` when absent or `null`.
    fn take(&mut self, i: usize) -> Field<'de> {
        Field {
            name: SNAKE[i],
            value: self.values[i].take().filter(|v| !matches!(v, Lit::Null)),
        }
    }
}

/// A JSON value of a known field, its strings borrowed from the payload unless escaped.
enum Lit<'de> {
    Null,
    Str(Cow<'de, str>),
    Num(Number),
    /// A boolean, array or object, which no field accepts: only its kind is kept
    /// (`"a boolean"`), for the error message.
    Other(&'static str),
}

/// A JSON value that is checked, as [`Value`] would check it, and dropped. (Unlike
/// [`serde::de::IgnoredAny`], which accepts invalid UTF-8, lone surrogates, numbers out of range
/// and nesting beyond the recursion limit.)
struct Skip;

/// The index of the field a key names, and whether the name is the snake_case one.
struct Key(Option<(usize, bool)>);

struct PayloadVisitor;
struct LitVisitor;
struct KeyVisitor;

impl<'de> Deserialize<'de> for Payload<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(PayloadVisitor)
    }
}

impl<'de> Visitor<'de> for PayloadVisitor {
    type Value = Payload<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Payload(None))
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Payload(None))
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Payload(None))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Payload(None))
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Payload(None))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Payload(None))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Payload(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = Found {
            values: [const { None }; SNAKE.len()],
            snake: 0,
        };
        while let Some(Key(key)) = map.next_key()? {
            match key {
                Some((i, true)) => {
                    found.values[i] = Some(map.next_value()?);
                    found.snake |= 1 << i;
                }
                Some((i, false)) if found.snake & (1 << i) == 0 => {
                    found.values[i] = Some(map.next_value()?);
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(Payload(Some(found)))
    }
}

impl<'de> Deserialize<'de> for Lit<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LitVisitor)
    }
}

impl<'de> Visitor<'de> for LitVisitor {
    type Value = Lit<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Lit::Other("a boolean"))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Lit::Num(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Lit::Num(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        // As `Value` does; serde_json rejects numbers out of range before this point.
        Ok(Number::from_f64(v).map_or(Lit::Null, Lit::Num))
    }

    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Lit::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Lit::Str(Cow::Borrowed(v)))
    }

    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Lit::Str(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Lit::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Lit::Other("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(Lit::Other("an object"))
    }
}

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(Skip)
    }
}

impl<'de> Visitor<'de> for Skip {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Skip)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        drain_seq(seq)?;
        Ok(Skip)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        drain_map(map)?;
        Ok(Skip)
    }
}

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<Skip>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<Skip, Skip>()?.is_some() {}
    Ok(())
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(KeyVisitor)
    }
}

impl Visitor<'_> for KeyVisitor {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Key(field_of(key)))
    }
}

/// A known field's value (`None` when absent or `null`), converted by the field's type.
struct Field<'de> {
    /// The snake_case name.
    name: &'static str,
    value: Option<Lit<'de>>,
}

impl Field<'_> {
    fn string(self) -> Result<String, JsonError> {
        match self.value {
            None => Ok(String::new()),
            Some(Lit::Str(s)) => Ok(s.into_owned()),
            Some(other) => Err(wrong(self.name, "a string", &other)),
        }
    }

    fn uint(self) -> Result<u64, JsonError> {
        let name = self.name;
        match self.value {
            None => Ok(0),
            Some(Lit::Num(n)) => n
                .as_u64()
                .ok_or_else(|| field(name, format!("expected an unsigned integer, found {n}"))),
            Some(Lit::Str(s)) => s
                .parse()
                .map_err(|_| field(name, format!("expected an unsigned integer, found {s:?}"))),
            Some(other) => Err(wrong(name, "an unsigned integer", &other)),
        }
    }

    fn int(self) -> Result<i64, JsonError> {
        let name = self.name;
        match self.value {
            None => Ok(0),
            Some(Lit::Num(n)) => n
                .as_i64()
                .ok_or_else(|| field(name, format!("expected an integer, found {n}"))),
            Some(Lit::Str(s)) => s
                .parse()
                .map_err(|_| field(name, format!("expected an integer, found {s:?}"))),
            Some(other) => Err(wrong(name, "an integer", &other)),
        }
    }

    fn double(self) -> Result<f64, JsonError> {
        let name = self.name;
        match self.value {
            None => Ok(0.0),
            Some(Lit::Num(n)) => n
                .as_f64()
                .ok_or_else(|| field(name, format!("expected a number, found {n}"))),
            Some(Lit::Str(s)) => match &*s {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => s
                    .parse()
                    .map_err(|_| field(name, format!("expected a number, found {s:?}"))),
            },
            Some(other) => Err(wrong(name, "a number", &other)),
        }
    }

    fn enumeration<E: ShortName + Into<i32>>(self) -> Result<i32, JsonError> {
        let name = self.name;
        match self.value {
            None => Ok(0),
            Some(Lit::Str(s)) => parse_enum_name::<E>(&s).map(Into::into).ok_or_else(|| {
                field(
                    name,
                    format!("unknown value {s:?} (expected {})", E::expected()),
                )
            }),
            Some(Lit::Num(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| field(name, format!("expected an enum value, found {n}"))),
            Some(other) => Err(wrong(name, "a string", &other)),
        }
    }
}

/// [`ShortName::parse_name`] without allocating: a short or full name in any ASCII case,
/// trimmed; not the `*_UNSPECIFIED` value.
fn parse_enum_name<E: ShortName>(name: &str) -> Option<E> {
    let name = name.trim();
    let prefix = E::PREFIX.as_bytes();
    let full = name
        .as_bytes()
        .get(..prefix.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(prefix));
    E::ALL.iter().copied().find(|v| {
        let full_name = v.full_name();
        if full {
            name.eq_ignore_ascii_case(full_name)
        } else {
            full_name
                .strip_prefix(E::PREFIX)
                .is_some_and(|short| name.eq_ignore_ascii_case(short))
        }
    })
}

fn field(field: &'static str, reason: String) -> JsonError {
    JsonError::Field { field, reason }
}

fn wrong(name: &'static str, expected: &str, found: &Lit<'_>) -> JsonError {
    let kind = match found {
        Lit::Null => "null",
        Lit::Str(_) => "a string",
        Lit::Num(_) => "a number",
        Lit::Other(kind) => kind,
    };
    field(name, format!("expected {expected}, found {kind}"))
}

#[cfg(test)]
mod tests;
