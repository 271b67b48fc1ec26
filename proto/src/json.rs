//! proto3 JSON mapping of [`Telemetry`].
//!
//! Decoding accepts snake_case and lowerCamelCase field names, enums by short name, full
//! name or number, 64-bit integers as numbers or decimal strings, doubles as numbers or the
//! strings `"NaN"`, `"Infinity"`, `"-Infinity"`, and `null` for a field's default. Unknown
//! fields are ignored (newer firmware may add some). Wrong types are errors that name the
//! field. Encoding writes snake_case names and short enum names.

use serde_json::{Map, Value};

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
    let value: Value = serde_json::from_slice(payload)?;
    let Value::Object(obj) = value else {
        return Err(JsonError::NotObject);
    };
    let f = Fields(&obj);
    Ok(Telemetry {
        device_id: f.string("device_id", "deviceId")?,
        clinic_id: f.string("clinic_id", "clinicId")?,
        device_class: f.enumeration::<DeviceClass>("device_class", "deviceClass")?,
        model: f.string("model", "model")?,
        firmware: f.string("firmware", "firmware")?,
        operator_id: f.string("operator_id", "operatorId")?,
        session_id: f.string("session_id", "sessionId")?,
        cartridge_id: f.string("cartridge_id", "cartridgeId")?,
        cartridge_model: f.string("cartridge_model", "cartridgeModel")?,
        seq: f.uint("seq", "seq")?,
        timestamp_ms: f.int("timestamp_ms", "timestampMs")?,
        event: f.enumeration::<Event>("event", "event")?,
        depth_mm: f.double("depth_mm", "depthMm")?,
        session_strokes: f.uint("session_strokes", "sessionStrokes")?,
        cartridge_strokes: f.uint("cartridge_strokes", "cartridgeStrokes")?,
        speed_hz: f.double("speed_hz", "speedHz")?,
        battery_pct: f.double("battery_pct", "batteryPct")?,
        zone: f.enumeration::<Zone>("zone", "zone")?,
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

/// Field look-up by snake_case or lowerCamelCase name.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn get(&self, snake: &'static str, camel: &'static str) -> Option<&Value> {
        self.0
            .get(snake)
            .or_else(|| self.0.get(camel))
            .filter(|v| !v.is_null())
    }

    fn string(&self, snake: &'static str, camel: &'static str) -> Result<String, JsonError> {
        match self.get(snake, camel) {
            None => Ok(String::new()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(wrong(snake, "a string", other)),
        }
    }

    fn uint(&self, snake: &'static str, camel: &'static str) -> Result<u64, JsonError> {
        match self.get(snake, camel) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| field(snake, format!("expected an unsigned integer, found {n}"))),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| field(snake, format!("expected an unsigned integer, found {s:?}"))),
            Some(other) => Err(wrong(snake, "an unsigned integer", other)),
        }
    }

    fn int(&self, snake: &'static str, camel: &'static str) -> Result<i64, JsonError> {
        match self.get(snake, camel) {
            None => Ok(0),
            Some(Value::Number(n)) => n
                .as_i64()
                .ok_or_else(|| field(snake, format!("expected an integer, found {n}"))),
            Some(Value::String(s)) => s
                .parse()
                .map_err(|_| field(snake, format!("expected an integer, found {s:?}"))),
            Some(other) => Err(wrong(snake, "an integer", other)),
        }
    }

    fn double(&self, snake: &'static str, camel: &'static str) -> Result<f64, JsonError> {
        match self.get(snake, camel) {
            None => Ok(0.0),
            Some(Value::Number(n)) => n
                .as_f64()
                .ok_or_else(|| field(snake, format!("expected a number, found {n}"))),
            Some(Value::String(s)) => match s.as_str() {
                "NaN" => Ok(f64::NAN),
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                _ => s
                    .parse()
                    .map_err(|_| field(snake, format!("expected a number, found {s:?}"))),
            },
            Some(other) => Err(wrong(snake, "a number", other)),
        }
    }

    fn enumeration<E: ShortName + Into<i32>>(
        &self,
        snake: &'static str,
        camel: &'static str,
    ) -> Result<i32, JsonError> {
        match self.get(snake, camel) {
            None => Ok(0),
            Some(Value::String(s)) => E::parse_name(s).map(Into::into).ok_or_else(|| {
                field(
                    snake,
                    format!("unknown value {s:?} (expected {})", E::expected()),
                )
            }),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|v| i32::try_from(v).ok())
                .ok_or_else(|| field(snake, format!("expected an enum value, found {n}"))),
            Some(other) => Err(wrong(snake, "a string", other)),
        }
    }
}

fn field(field: &'static str, reason: String) -> JsonError {
    JsonError::Field { field, reason }
}

fn wrong(name: &'static str, expected: &str, found: &Value) -> JsonError {
    let kind = match found {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    field(name, format!("expected {expected}, found {kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Telemetry {
        Telemetry {
            device_id: "pen-1".into(),
            clinic_id: "c1".into(),
            device_class: DeviceClass::Salon.into(),
            model: "DermaPro S".into(),
            firmware: "2.1.0".into(),
            operator_id: "op-1".into(),
            session_id: "s-1".into(),
            cartridge_id: "cart-1".into(),
            cartridge_model: "N12".into(),
            seq: u64::MAX - 1,
            timestamp_ms: 1_790_000_000_123,
            event: Event::Sample.into(),
            depth_mm: 0.75,
            session_strokes: 1200,
            cartridge_strokes: 1300,
            speed_hz: 120.0,
            battery_pct: 87.5,
            zone: Zone::Cheek.into(),
        }
    }

    #[test]
    fn round_trips() {
        let t = sample();
        assert_eq!(decode(&encode(&t)).expect("decodes"), t);
    }

    #[test]
    fn accepts_camel_case_strings_for_int64_and_full_enum_names() {
        let t = decode(
            br#"{"deviceId":"p","clinicId":"c","deviceClass":"DEVICE_CLASS_MEDICAL",
                "seq":"42","timestampMs":"1700000000000","event":2,"depthMm":1.5,"zone":null}"#,
        )
        .expect("decodes");
        assert_eq!(t.device_class, i32::from(DeviceClass::Medical));
        assert_eq!(t.seq, 42);
        assert_eq!(t.event, i32::from(Event::SessionStart));
        assert_eq!(t.zone, 0);
    }

    #[test]
    fn nan_survives_encoding() {
        let t = Telemetry {
            depth_mm: f64::NAN,
            ..sample()
        };
        assert!(decode(&encode(&t)).expect("decodes").depth_mm.is_nan());
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = decode(br#"{"device_id":"p","depth_mm":"deep"}"#).expect_err("rejects");
        assert_eq!(
            err.to_string(),
            "field depth_mm: expected a number, found \"deep\""
        );
        let err = decode(br#"{"seq":-1}"#).expect_err("rejects");
        assert!(err.to_string().starts_with("field seq:"), "{err}");
        let err = decode(br#"{"device_class":"spa"}"#).expect_err("rejects");
        assert_eq!(
            err.to_string(),
            "field device_class: unknown value \"spa\" (expected home, salon, medical)"
        );
        assert!(matches!(decode(b"[1]"), Err(JsonError::NotObject)));
        assert!(matches!(decode(b"{\"seq\":"), Err(JsonError::Syntax(_))));
    }
}
