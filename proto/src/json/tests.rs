//! The decoder against its specification (the former decoder, kept below) and by example.

use std::time::Instant;

use proptest::prelude::*;

use super::*;

/// The decoder this module had before the one-pass visitor: parse into a [`Value`], then
/// look fields up. Kept as the specification the visitor must match exactly.
mod reference {
    use serde_json::{Map, Value};

    use super::super::{JsonError, field};
    use crate::names::ShortName;
    use crate::v1::{DeviceClass, Event, Telemetry, Zone};

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
                Some(Value::Number(n)) => n.as_u64().ok_or_else(|| {
                    field(snake, format!("expected an unsigned integer, found {n}"))
                }),
                Some(Value::String(s)) => s.parse().map_err(|_| {
                    field(snake, format!("expected an unsigned integer, found {s:?}"))
                }),
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
}

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

/// A typical pen message (436 bytes), with two fields newer firmware adds.
const TYPICAL: &[u8] = br#"{"device_id":"DP-S-000123","clinic_id":"clinic-17","device_class":"salon","model":"DermaPro S","firmware":"2.1.0","operator_id":"op-7f3a","session_id":"s-0932-7f3a","cartridge_id":"cart-0009-4471","cartridge_model":"N12-nano","seq":184467,"timestamp_ms":1790000000123,"event":"sample","depth_mm":0.75,"session_strokes":1200,"cartridge_strokes":1300,"speed_hz":120.0,"battery_pct":87.5,"zone":"cheek","temperature_c":31.5,"motor_ma":412}"#;

fn error(payload: &str) -> String {
    decode(payload.as_bytes()).expect_err("rejects").to_string()
}

/// The result of a decode as text: the message's debug form or the error message.
fn outcome(r: Result<Telemetry, JsonError>) -> Result<String, String> {
    r.map(|t| format!("{t:?}")).map_err(|e| e.to_string())
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

#[test]
fn snake_case_and_camel_case_names_decode_to_the_same_message() {
    let snake = br#"{"device_id":"p","clinic_id":"c","device_class":"home","operator_id":"o",
        "session_id":"s","cartridge_id":"k","cartridge_model":"m","timestamp_ms":5,
        "depth_mm":0.5,"session_strokes":6,"cartridge_strokes":7,"speed_hz":8,
        "battery_pct":9}"#;
    let camel = br#"{"deviceId":"p","clinicId":"c","deviceClass":"home","operatorId":"o",
        "sessionId":"s","cartridgeId":"k","cartridgeModel":"m","timestampMs":5,
        "depthMm":0.5,"sessionStrokes":6,"cartridgeStrokes":7,"speedHz":8,
        "batteryPct":9}"#;
    let t = decode(snake).expect("decodes");
    assert_eq!(decode(camel).expect("decodes"), t);
    assert_eq!(
        (t.device_id.as_str(), t.cartridge_model.as_str(), t.speed_hz),
        ("p", "m", 8.0)
    );
    assert_eq!(t.device_class, i32::from(DeviceClass::Home));
}

#[test]
fn the_snake_case_name_wins_over_the_camel_case_one_wherever_it_appears() {
    let t = decode(br#"{"deviceId":"camel","device_id":"snake","depth_mm":1,"depthMm":2}"#)
        .expect("decodes");
    assert_eq!((t.device_id.as_str(), t.depth_mm), ("snake", 1.0));
    let t = decode(br#"{"device_id":null,"deviceId":"camel","seq":3}"#).expect("decodes");
    assert_eq!(t.device_id, "", "a null snake_case value still wins");
    let t = decode(br#"{"device_id":"snake","deviceId":true}"#).expect("decodes");
    assert_eq!(
        t.device_id, "snake",
        "a losing camelCase value is not checked"
    );
}

#[test]
fn a_repeated_name_takes_its_last_value() {
    let t = decode(br#"{"seq":"x","seq":2,"deviceId":"a","deviceId":"b"}"#).expect("decodes");
    assert_eq!((t.seq, t.device_id.as_str()), (2, "b"));
    let t = decode(br#"{"seq":1,"seq":null}"#).expect("decodes");
    assert_eq!(t.seq, 0);
}

#[test]
fn repeated_unknown_fields_are_ignored() {
    let t = decode(
        br#"{"extra":1,"seq":4,"extra":[true,{"a":null}],"extra":"x","Seq":"bad","extra":{}}"#,
    )
    .expect("decodes");
    assert_eq!(t.seq, 4);
}

#[test]
fn escapes_in_keys_and_values_are_decoded() {
    let t = decode(
        br#"{"device\u005fid":"pen \"\u00e9\" \\ 1","clinicI\u0064":"c\n","seq":"4\u0032",
            "z\u006fne":"\u0063heek","depth\u004dm":"\u004eaN"}"#,
    )
    .expect("decodes");
    assert_eq!(t.device_id, "pen \"é\" \\ 1");
    assert_eq!(t.clinic_id, "c\n");
    assert_eq!(t.seq, 42);
    assert_eq!(t.zone, i32::from(Zone::Cheek));
    assert!(t.depth_mm.is_nan());
}

#[test]
fn every_kind_of_error_has_its_message() {
    let cases = [
        (
            r#"{"model":1.5}"#,
            "field model: expected a string, found a number",
        ),
        (
            r#"{"model":true}"#,
            "field model: expected a string, found a boolean",
        ),
        (
            r#"{"model":[]}"#,
            "field model: expected a string, found an array",
        ),
        (
            r#"{"model":{}}"#,
            "field model: expected a string, found an object",
        ),
        (
            r#"{"seq":-1}"#,
            "field seq: expected an unsigned integer, found -1",
        ),
        (
            r#"{"seq":1.0}"#,
            "field seq: expected an unsigned integer, found 1.0",
        ),
        (
            r#"{"seq":"-1"}"#,
            r#"field seq: expected an unsigned integer, found "-1""#,
        ),
        (
            r#"{"seq":false}"#,
            "field seq: expected an unsigned integer, found a boolean",
        ),
        (
            r#"{"timestampMs":9223372036854775808}"#,
            "field timestamp_ms: expected an integer, found 9223372036854775808",
        ),
        (
            r#"{"timestamp_ms":"1e3"}"#,
            r#"field timestamp_ms: expected an integer, found "1e3""#,
        ),
        (
            r#"{"timestamp_ms":[1]}"#,
            "field timestamp_ms: expected an integer, found an array",
        ),
        (
            r#"{"depth_mm":"deep"}"#,
            r#"field depth_mm: expected a number, found "deep""#,
        ),
        (
            r#"{"speedHz":{"hz":1}}"#,
            "field speed_hz: expected a number, found an object",
        ),
        (
            r#"{"device_class":"spa"}"#,
            r#"field device_class: unknown value "spa" (expected home, salon, medical)"#,
        ),
        (
            r#"{"event":"EVENT_UNSPECIFIED"}"#,
            r#"field event: unknown value "EVENT_UNSPECIFIED" (expected sample, session_start, session_end, cartridge_inserted)"#,
        ),
        (
            r#"{"zone":2147483648}"#,
            "field zone: expected an enum value, found 2147483648",
        ),
        (
            r#"{"zone":3.0}"#,
            "field zone: expected an enum value, found 3.0",
        ),
        (
            r#"{"zone":true}"#,
            "field zone: expected a string, found a boolean",
        ),
        (r#"[1]"#, "JSON payload is not an object"),
        (r#" "pen" "#, "JSON payload is not an object"),
        ("null", "JSON payload is not an object"),
        ("-0.5", "JSON payload is not an object"),
        (
            r#"{"seq":"#,
            "not valid JSON: EOF while parsing a value at line 1 column 7",
        ),
        (
            r#"{"seq":1}x"#,
            "not valid JSON: trailing characters at line 1 column 10",
        ),
        (
            r#"{"x":1e400}"#,
            "not valid JSON: number out of range at line 1 column 10",
        ),
    ];
    for (payload, message) in cases {
        assert_eq!(error(payload), message, "{payload}");
    }
}

#[test]
fn the_first_wrong_field_in_declaration_order_is_reported() {
    assert_eq!(
        error(r#"{"zone":"x","seq":"y","device_id":7}"#),
        "field device_id: expected a string, found a number"
    );
}

#[test]
fn unknown_values_are_checked_as_strictly_as_known_ones() {
    let bad: [&[u8]; 5] = [
        b"{\"x\":\"\xff\"}",
        br#"{"x":"\ud800"}"#,
        br#"{"x":[1e999]}"#,
        br#"{"x":{"y":-1e400}}"#,
        br#"{"x":[1,]}"#,
    ];
    for payload in bad {
        let err = decode(payload).expect_err("rejects");
        assert!(matches!(err, JsonError::Syntax(_)), "{err}");
        assert_eq!(
            Err(err.to_string()),
            outcome(reference::decode(payload)),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    for depth in [126, 127, 128, 200] {
        let payload = format!("{{\"x\":{}{}}}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(
            outcome(decode(payload.as_bytes())),
            outcome(reference::decode(payload.as_bytes())),
            "depth {depth}"
        );
    }
}

/// The [`Value`]-based decoder gave this key (an implementation detail of serde_json) a
/// meaning in builds where some other crate enables serde_json's `raw_value` feature (the
/// gateway's do: axum enables it): its string value was parsed as the payload instead.
#[test]
fn the_private_raw_value_token_of_serde_json_is_an_unknown_key_like_any_other() {
    for (payload, seq) in [
        (r#"{"$serde_json::private::RawValue":"{\"seq\":5}"}"#, 0),
        (r#"{"$serde_json::private::RawValue":"[1]"}"#, 0),
        (r#"{"$serde_json::private::RawValue":1,"seq":5}"#, 5),
    ] {
        assert_eq!(
            decode(payload.as_bytes()).expect("decodes").seq,
            seq,
            "{payload}"
        );
    }
}

#[test]
fn nan_and_infinities_are_accepted_as_strings() {
    let t = decode(br#"{"depth_mm":"NaN","speed_hz":"Infinity","battery_pct":"-Infinity"}"#)
        .expect("decodes");
    assert!(t.depth_mm.is_nan());
    assert_eq!(
        (t.speed_hz, t.battery_pct),
        (f64::INFINITY, f64::NEG_INFINITY)
    );
    let t = decode(br#"{"depth_mm":"1.25","speed_hz":"inf"}"#).expect("decodes");
    assert_eq!((t.depth_mm, t.speed_hz), (1.25, f64::INFINITY));
}

#[test]
fn int64_values_are_accepted_as_decimal_strings() {
    let t = decode(
        br#"{"seq":"18446744073709551615","timestamp_ms":"-9223372036854775808",
            "session_strokes":"+7","cartridge_strokes":12}"#,
    )
    .expect("decodes");
    assert_eq!(
        (
            t.seq,
            t.timestamp_ms,
            t.session_strokes,
            t.cartridge_strokes
        ),
        (u64::MAX, i64::MIN, 7, 12)
    );
}

#[test]
fn enums_are_accepted_by_number_short_name_or_full_name_in_any_case() {
    let t = decode(br#"{"device_class":3,"event":" Session_Start ","zone":"zone_scar"}"#)
        .expect("decodes");
    assert_eq!(t.device_class, i32::from(DeviceClass::Medical));
    assert_eq!(t.event, i32::from(Event::SessionStart));
    assert_eq!(t.zone, i32::from(Zone::Scar));
    let t = decode(br#"{"device_class":99,"zone":-4}"#).expect("decodes");
    assert_eq!(
        (t.device_class, t.zone),
        (99, -4),
        "numbers are kept as they are"
    );
}

#[test]
fn null_means_the_default_of_every_field() {
    let nulls = SNAKE
        .iter()
        .map(|snake| format!("\"{snake}\":null"))
        .collect::<Vec<_>>()
        .join(",");
    let t = decode(format!("{{{nulls}}}").as_bytes()).expect("decodes");
    assert_eq!(t, Telemetry::default());
    assert_eq!(decode(b"{}").expect("decodes"), Telemetry::default());
}

/// The lowerCamelCase form of a snake_case name, by the proto3 JSON rule.
fn camel(snake: &str) -> String {
    let mut words = snake.split('_');
    let mut name = words.next().unwrap_or_default().to_owned();
    for word in words {
        let mut chars = word.chars();
        name.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        name.push_str(chars.as_str());
    }
    name
}

#[test]
fn every_field_is_found_by_its_snake_case_and_camel_case_names() {
    for (i, snake) in SNAKE.iter().enumerate() {
        let camel = camel(snake);
        assert_eq!(field_of(snake), Some((i, true)), "{snake}");
        assert_eq!(field_of(&camel), Some((i, camel == *snake)), "{camel}");
    }
    assert_eq!(field_of("Seq"), None);
    assert_eq!(field_of("device_id "), None);
}

/// JSON text of a key: every known name, some unknown ones, some escaped.
fn key() -> impl Strategy<Value = String> {
    let mut keys: Vec<String> = SNAKE
        .iter()
        .flat_map(|snake| [format!("\"{snake}\""), format!("\"{}\"", camel(snake))])
        .collect();
    keys.extend(
        [
            r#""extra""#,
            r#""Seq""#,
            r#""device_id ""#,
            r#""device\u005fid""#,
            r#""\u0073eq""#,
            r#""z\u006fne""#,
            r#""\ud800""#,
        ]
        .map(String::from),
    );
    prop::sample::select(keys)
}

/// JSON text of a value: every type, edge-case numbers, names, escapes, nesting.
fn value() -> impl Strategy<Value = String> {
    let fixed = [
        "null",
        "true",
        "false",
        "0",
        "-0",
        "1",
        "-1",
        "42",
        "1.0",
        "0.75",
        "-2.5e3",
        "1e400",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775808",
        "-9223372036854775809",
        "2147483648",
        "[]",
        "[1,[2,{\"a\":null}]]",
        "{}",
        r#"{"seq":1}"#,
        r#""""#,
        r#""42""#,
        r#""+7""#,
        r#""-1""#,
        r#""1e3""#,
        r#""NaN""#,
        r#""Infinity""#,
        r#""-Infinity""#,
        r#""inf""#,
        r#""medical""#,
        r#""Salon ""#,
        r#""DEVICE_CLASS_HOME""#,
        r#""device_class_unspecified""#,
        r#""session_start""#,
        r#""EVENT_CARTRIDGE_INSERTED""#,
        r#""cheek""#,
        r#""ZONE_SCAR""#,
        r#""spa""#,
        r#""a\"b\\c\u00e9\n""#,
        r#""\u0034\u0032""#,
        r#""\ud800""#,
        "[1,]",
        "tru",
    ]
    .map(String::from);
    prop_oneof![
        4 => prop::sample::select(fixed.to_vec()),
        1 => any::<String>().prop_map(|s| Value::from(s).to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => any::<u64>().prop_map(|n| format!("\"{n}\"")),
        1 => any::<f64>().prop_map(|n| Value::from(n).to_string()),
    ]
}

/// A payload: mostly an object of known and unknown fields, sometimes cut short.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    let object = prop::collection::vec((key(), value()), 0..12).prop_map(|fields| {
        let fields = fields
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",");
        format!(" {{{fields}}} ")
    });
    let text = prop_oneof![8 => object, 1 => value()];
    (
        text,
        prop::option::weighted(0.1, any::<prop::sample::Index>()),
    )
        .prop_map(|(text, cut)| {
            let mut bytes = text.into_bytes();
            if let Some(cut) = cut {
                bytes.truncate(cut.index(bytes.len() + 1));
            }
            bytes
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoding_matches_the_value_based_reference(payload in payload()) {
        prop_assert_eq!(outcome(decode(&payload)), outcome(reference::decode(&payload)));
    }

    #[test]
    fn arbitrary_bytes_decode_like_the_value_based_reference(
        payload in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        prop_assert_eq!(outcome(decode(&payload)), outcome(reference::decode(&payload)));
    }

    #[test]
    fn enum_names_parse_like_short_name_parse_name(
        name in r"\s?(device_class_|Event_|ZONE_|zone|é)?(home|SALON|medical|Session_Start|cartridge_inserted|cheek|periorbital|unspecified|spa|ß)?\s?",
    ) {
        prop_assert_eq!(parse_enum_name::<DeviceClass>(&name), DeviceClass::parse_name(&name));
        prop_assert_eq!(parse_enum_name::<Event>(&name), Event::parse_name(&name));
        prop_assert_eq!(parse_enum_name::<Zone>(&name), Zone::parse_name(&name));
    }
}

type Decoder = fn(&[u8]) -> Result<Telemetry, JsonError>;

/// Nanoseconds per decode of [`TYPICAL`] by each decoder: the best of 20 interleaved runs,
/// so that load from other processes hits both alike and mostly drops out.
fn ns_per_message(decoders: [Decoder; 2]) -> [f64; 2] {
    const N: u32 = 50_000;
    let mut best = [f64::INFINITY; 2];
    for _ in 0..20 {
        for (decode, best) in decoders.iter().zip(&mut best) {
            let start = Instant::now();
            for _ in 0..N {
                std::hint::black_box(decode(std::hint::black_box(TYPICAL)).is_ok());
            }
            *best = best.min(start.elapsed().as_nanos() as f64 / f64::from(N));
        }
    }
    best
}

#[test]
#[ignore = "timing; run with --release -- --ignored --nocapture"]
fn decoding_a_typical_message_is_timed_against_the_value_based_reference() {
    assert_eq!(
        outcome(decode(TYPICAL)),
        outcome(reference::decode(TYPICAL))
    );
    let [before, after] = ns_per_message([reference::decode, decode]);
    println!(
        "{} bytes: Value-based {before:.0} ns/message, one-pass {after:.0} ns/message ({:.2}x)",
        TYPICAL.len(),
        before / after
    );
}
