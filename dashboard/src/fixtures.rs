//! A small clinic fleet for reducer and rendering tests, loaded through the reducer.

use penwatch_proto::v1::{
    Cartridge, CartridgeAggregate, DepthPoint, DeviceState, Evidence, Excursion,
    ListCartridgesResponse, ListSessionsResponse, OperatorSummary, ReuseEvent, Session,
    SessionDetail, Violation, WhoAmIResponse,
};

use crate::app::{App, Msg};

/// The fixtures' clock: 2026-09-21 14:13:20 UTC.
pub const NOW: i64 = 1_790_000_000_000;
const MIN: i64 = 60_000;

/// A pen with the given live state.
#[allow(clippy::too_many_arguments)]
pub fn device(
    id: &str,
    clinic: &str,
    class: &str,
    status: &str,
    session: &str,
    operator: &str,
    depth: f64,
    permitted: f64,
) -> DeviceState {
    DeviceState {
        device_id: id.into(),
        clinic_id: clinic.into(),
        device_class: class.into(),
        model: "DermaPen 4".into(),
        firmware: "2.1.0".into(),
        status: status.into(),
        status_ms: NOW - 30 * MIN,
        last_seen_ms: NOW - 2_000,
        battery_pct: 72.0,
        session_id: session.into(),
        operator_id: operator.into(),
        cartridge_id: if session.is_empty() {
            String::new()
        } else {
            format!("cart-{id}")
        },
        depth_mm: depth,
        permitted_mm: permitted,
        session_strokes: if session.is_empty() { 0 } else { 1_840 },
        cartridge_wear_pct: 31.0,
        registered: true,
        ..DeviceState::default()
    }
}

/// The evidence of an exceeded session.
pub fn evidence(peak: f64, limit: f64, rule: &str, first: i64) -> Evidence {
    Evidence {
        limit_mm: limit,
        binding_rule: rule.into(),
        peak_depth_mm: peak,
        first_above_ms: first,
        last_above_ms: first + 42_000,
        strokes_above: 240,
        samples_above: 12,
        policy_version: "p-3f9a1c".into(),
        excess_mm: peak - limit,
        other_excursions: Vec::new(),
        unlisted_excursions: 0,
    }
}

/// The fleet: one pen of each kind of attention.
pub fn fleet() -> Vec<DeviceState> {
    vec![
        DeviceState {
            exceeded: true,
            ..device(
                "pen-h1", "c01", "home", "online", "s-h1", "op-ana", 0.75, 0.5,
            )
        },
        device(
            "pen-m1", "c01", "medical", "online", "s-m1", "op-ben", 1.2, 2.5,
        ),
        device(
            "pen-s1", "c02", "salon", "offline", "s-s1", "op-cat", 0.8, 1.0,
        ),
        DeviceState {
            cartridge_wear_pct: 104.0,
            cartridge_id: "cart-7".into(),
            ..device("pen-s2", "c02", "salon", "online", "", "", 0.0, 1.0)
        },
        DeviceState {
            battery_pct: 9.0,
            ..device("pen-m2", "c01", "medical", "online", "", "", 0.0, 2.5)
        },
        device("pen-h2", "c02", "home", "offline", "", "", 0.0, 0.5),
    ]
}

/// A session record.
pub fn session(id: &str, device: &str, clinic: &str, class: &str, operator: &str) -> Session {
    Session {
        session_id: id.into(),
        device_id: device.into(),
        clinic_id: clinic.into(),
        operator_id: operator.into(),
        device_class: class.into(),
        cartridge_id: format!("cart-{device}"),
        cartridge_model: "NANO-12".into(),
        started_ms: NOW - 20 * MIN,
        last_ms: NOW - 2_000,
        samples: 600,
        strokes: 1_840,
        zones: vec!["cheek".into()],
        state: "open".into(),
        ..Session::default()
    }
}

/// Sessions as ListSessions returns them: the live ones and two closed ones.
pub fn sessions() -> Vec<Session> {
    vec![
        Session {
            max_depth_mm: 0.75,
            permitted_mm: 0.5,
            binding_rule: "class".into(),
            exceeded: true,
            evidence: Some(Evidence {
                other_excursions: vec![Excursion {
                    limit_mm: 0.5,
                    binding_rule: "class".into(),
                    peak_depth_mm: 0.6,
                    excess_mm: 0.1,
                    first_above_ms: NOW - 4 * MIN,
                    last_above_ms: NOW - 4 * MIN + 6_000,
                    strokes_above: 40,
                    samples_above: 2,
                    policy_version: "p-3f9a1c".into(),
                }],
                ..evidence(0.75, 0.5, "class", NOW - 12 * MIN)
            }),
            ..session("s-h1", "pen-h1", "c01", "home", "op-ana")
        },
        Session {
            max_depth_mm: 1.5,
            permitted_mm: 2.5,
            binding_rule: "class".into(),
            ..session("s-m1", "pen-m1", "c01", "medical", "op-ben")
        },
        Session {
            max_depth_mm: 0.9,
            permitted_mm: 1.0,
            binding_rule: "operator".into(),
            ..session("s-s1", "pen-s1", "c02", "salon", "op-cat")
        },
        Session {
            max_depth_mm: 2.0,
            permitted_mm: 2.5,
            binding_rule: "class".into(),
            started_ms: NOW - 120 * MIN,
            last_ms: NOW - 95 * MIN,
            state: "closed".into(),
            close_reason: "ended".into(),
            samples_digest: "9c1d2e3f4a5b6c7d8e9f".into(),
            amendments: 1,
            exceeded_by_amendment: true,
            ..session("s-old1", "pen-m1", "c01", "medical", "op-ben")
        },
        Session {
            max_depth_mm: 0.75,
            permitted_mm: 0.5,
            binding_rule: "operator".into(),
            exceeded: true,
            unknown_operator: true,
            evidence: Some(evidence(0.75, 0.5, "operator", NOW - 26 * 60 * MIN)),
            started_ms: NOW - 26 * 60 * MIN,
            last_ms: NOW - 25 * 60 * MIN,
            state: "closed".into(),
            close_reason: "inactive".into(),
            zones: vec!["forehead".into(), "cheek".into()],
            ..session("s-old2", "pen-s2", "c02", "salon", "op-dan")
        },
    ]
}

/// A violation of a session.
pub fn violation(s: &Session, is_final: bool) -> Violation {
    Violation {
        session_id: s.session_id.clone(),
        device_id: s.device_id.clone(),
        clinic_id: s.clinic_id.clone(),
        operator_id: s.operator_id.clone(),
        device_class: s.device_class.clone(),
        evidence: s.evidence.clone(),
        r#final: is_final,
        committed_ms: s.evidence.as_ref().map_or(0, |e| e.last_above_ms),
        unknown_operator: s.unknown_operator,
        conflicting_messages: 0,
        amendment: 0,
        session_amendments: s.amendments,
        session_started_ms: s.started_ms,
    }
}

/// Cartridges, aggregates and one reuse.
pub fn cartridges() -> ListCartridgesResponse {
    let cart = |id: &str, model: &str, strokes: u64, sessions: u32, device: &str| {
        let wear = strokes as f64 * 100.0 / 4_000.0;
        Cartridge {
            cartridge_id: id.into(),
            model: model.into(),
            strokes,
            rated_strokes: 4_000,
            wear_pct: wear,
            wear: if wear >= 100.0 {
                "worn"
            } else if wear >= 80.0 {
                "warn"
            } else {
                "ok"
            }
            .into(),
            reused: sessions > 1,
            sessions,
            last_device_id: device.into(),
            clinic_id: if device.ends_with('1') { "c01" } else { "c02" }.into(),
            firmware: "2.1.0".into(),
        }
    };
    ListCartridgesResponse {
        cartridges: vec![
            cart("cart-pen-h1", "NANO-12", 600, 1, "pen-h1"),
            cart("cart-7", "NANO-12", 4_160, 1, "pen-s2"),
            cart("cart-3", "MICRO-36", 3_400, 1, "pen-m1"),
            cart("cart-9", "NANO-12", 1_200, 2, "pen-s1"),
        ],
        by_model_firmware: vec![
            CartridgeAggregate {
                model: "NANO-12".into(),
                firmware: "2.1.0".into(),
                cartridges: 3,
                mean_wear_pct: 49.7,
                warn: 0,
                worn: 1,
                reused: 1,
            },
            CartridgeAggregate {
                model: "MICRO-36".into(),
                firmware: "2.1.0".into(),
                cartridges: 1,
                mean_wear_pct: 85.0,
                warn: 1,
                worn: 0,
                reused: 0,
            },
        ],
        reuse_events: vec![ReuseEvent {
            cartridge_id: "cart-9".into(),
            device_id: "pen-s1".into(),
            session_id: "s-s1".into(),
            timestamp_ms: NOW - 19 * MIN,
            detail: "seen in s-s0 before".into(),
        }],
    }
}

/// Operators of both clinics.
pub fn operators() -> Vec<OperatorSummary> {
    let op =
        |id: &str, clinic: &str, q: &str, max: f64, s: u32, v: u32, deepest: f64| OperatorSummary {
            operator_id: id.into(),
            clinic_id: clinic.into(),
            qualification: q.into(),
            max_mm: max,
            known: !q.is_empty(),
            sessions: s,
            violations: v,
            max_depth_mm: deepest,
        };
    vec![
        op("op-ana", "c01", "trainee", 0.5, 4, 1, 0.75),
        op("op-ben", "c01", "clinician", 2.5, 12, 0, 2.0),
        op("op-cat", "c02", "aesthetic_practitioner", 1.0, 3, 0, 0.9),
        op("op-dan", "c02", "", 0.5, 2, 1, 0.75),
    ]
}

/// The timeline of s-h1: climbs over its 0.5 mm limit and back.
pub fn detail() -> SessionDetail {
    let depths = [
        0.3, 0.4, 0.5, 0.5, 0.6, 0.75, 0.75, 0.7, 0.5, 0.4, 0.4, 0.5, 0.45, 0.3,
    ];
    let start = NOW - 20 * MIN;
    SessionDetail {
        session: sessions().into_iter().next(),
        timeline: depths
            .iter()
            .enumerate()
            .map(|(i, d)| DepthPoint {
                timestamp_ms: start + i as i64 * 60_000,
                depth_mm: *d,
                permitted_mm: 0.5,
                session_strokes: i as u64 * 130,
                zone: "cheek".into(),
                exceeded: *d > 0.5,
            })
            .collect(),
        amendments: Vec::new(),
    }
}

/// A page of the session list.
pub fn page(sessions: Vec<Session>, next_page_token: &str) -> ListSessionsResponse {
    ListSessionsResponse {
        sessions,
        next_page_token: next_page_token.into(),
    }
}

/// A connected dashboard with the whole fixture loaded, as `role`.
pub fn app(role: &str) -> App {
    let mut app = App::new(NOW, false);
    let ss = sessions();
    let msgs = [
        Msg::Identity(WhoAmIResponse {
            role: role.into(),
            clinic_ids: Vec::new(),
            name: format!("{role}-token"),
        }),
        Msg::Connected,
        Msg::Fleet(fleet()),
        Msg::Sessions(page(ss.clone(), "")),
        Msg::Violations(vec![
            violation(&ss[0], false),
            Violation {
                evidence: Some(evidence(2.75, 2.5, "class", NOW - 95 * MIN)),
                amendment: 1,
                ..violation(&ss[3], true)
            },
            violation(&ss[4], true),
        ]),
        Msg::Cartridges(cartridges()),
        Msg::Operators(if role == "manufacturer" {
            Vec::new()
        } else {
            operators()
        }),
    ];
    for m in msgs {
        app.update(m);
    }
    app
}

/// The ids of `rows`, in order.
pub fn ids<T>(rows: &[&T], id: impl Fn(&T) -> &str) -> Vec<String> {
    rows.iter().map(|r| id(r).to_owned()).collect()
}
