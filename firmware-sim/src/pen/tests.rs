//! Tests of the whole model: fleets run to the end of their sessions, their steps checked
//! against the policy as the gateway would apply it and against the model's own ground truth.

use std::collections::BTreeMap;

use penwatch_proto::v1::{DeviceClass, Event, Telemetry, Zone};

use super::{Action, PenModel, PenTiming, Step};
use crate::config::Scenario;
use crate::fleet::{Fleet, Operator};
use crate::policy::{self, MECHANICAL_MAX_MM, Rule, UNKNOWN_OPERATOR_LIMIT_MM};
use crate::scenario::{self, MalformedKind};

fn timing(sessions: u32) -> PenTiming {
    PenTiming {
        sample_interval_ms: 1000,
        session_ms: (180_000, 480_000),
        idle_ms: (30_000, 180_000),
        sessions: Some(sessions),
        load: false,
        start_ms: 1_790_000_000_000,
        json: false,
    }
}

/// Every step of every pen of a fleet, run to the end of its sessions.
fn run_fleet(
    seed: u64,
    scenarios: &[Scenario],
    sessions: u32,
) -> (Fleet, Vec<PenModel>, Vec<Vec<Step>>) {
    let fleet = Fleet::generate(seed, 2, 4);
    let plans = scenario::plan(&fleet, scenarios);
    let mut models = Vec::new();
    let mut all = Vec::new();
    for (pen, plan) in fleet.pens().zip(plans) {
        let ops = fleet
            .clinic(&pen.clinic_id)
            .map(|c| c.operators.clone())
            .unwrap_or_default();
        let mut model = PenModel::new(pen.clone(), ops, plan, timing(sessions), seed);
        let mut steps = Vec::new();
        let mut last_at = 0;
        while let Some(at) = model.next_at() {
            assert!(at >= last_at, "time never goes back");
            last_at = at;
            steps.push(model.step().expect("a step when next_at is some"));
        }
        models.push(model);
        all.push(steps);
    }
    (fleet, models, all)
}

fn valid(steps: &[Step]) -> impl Iterator<Item = &Telemetry> {
    steps.iter().filter_map(|s| match &s.action {
        Action::Telemetry { msg, .. } => Some(msg.as_ref()),
        _ => None,
    })
}

/// The permitted depth of a sample, from the policy as the gateway would see it.
fn limit_of(fleet: &Fleet, msg: &Telemetry) -> (f64, Rule) {
    let class = DeviceClass::try_from(msg.device_class).expect("valid class");
    let operator = fleet
        .clinic(&msg.clinic_id)
        .and_then(|c| c.operators.iter().find(|o| o.id == msg.operator_id))
        .map_or(UNKNOWN_OPERATOR_LIMIT_MM, Operator::limit_mm);
    let zone = Zone::try_from(msg.zone).expect("valid zone");
    policy::permitted(
        policy::class_limit_mm(class),
        operator,
        policy::zone_ceiling_mm(&msg.clinic_id, zone),
    )
}

#[test]
fn same_seed_same_steps() {
    let all = [
        Scenario::OverDepth,
        Scenario::Malformed,
        Scenario::Duplicates,
        Scenario::OfflineBuffer,
    ];
    let (_, _, a) = run_fleet(11, &all, 2);
    let (_, _, b) = run_fleet(11, &all, 2);
    let strip = |v: &Vec<Vec<Step>>| format!("{v:?}");
    assert_eq!(strip(&a), strip(&b));
}

#[test]
fn seqs_are_gap_free_and_malformed_consume_none() {
    let (_, models, all) = run_fleet(3, &[Scenario::Malformed, Scenario::Duplicates], 3);
    let mut malformed = 0;
    for (model, steps) in models.iter().zip(&all) {
        let seqs: Vec<u64> = valid(steps).map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{}",
            model.pen().id
        );
        assert_eq!(model.counts().valid, seqs.len() as u64);
        assert_eq!(model.last_seq(), seqs.len() as u64);
        let mut last_seq = 0;
        for step in steps {
            match &step.action {
                Action::Telemetry { msg, .. } => last_seq = msg.seq,
                Action::Malformed { kind, payload } => {
                    malformed += 1;
                    assert!(last_seq > 0, "a malformed message follows a valid one");
                    if let Ok(t) = <Telemetry as prost::Message>::decode(payload.as_slice()) {
                        if *kind != MalformedKind::Truncated {
                            assert_eq!(t.seq, last_seq, "{kind:?} reuses the last valid seq");
                        }
                    }
                }
                _ => {}
            }
        }
        let published: u64 = steps
            .iter()
            .map(|s| match &s.action {
                Action::Telemetry { duplicate, .. } => 1 + u64::from(*duplicate),
                Action::Malformed { .. } => 1,
                _ => 0,
            })
            .sum();
        assert_eq!(model.counts().published, published);
    }
    assert!(malformed > 0, "the scenario produced malformed messages");
}

#[test]
fn normal_sessions_never_exceed() {
    for seed in 0..6 {
        let (fleet, models, all) =
            run_fleet(seed, &[Scenario::Normal, Scenario::CartridgeReuse], 3);
        for steps in &all {
            for msg in valid(steps).filter(|m| m.event == i32::from(Event::Sample)) {
                let (limit, _) = limit_of(&fleet, msg);
                assert!(
                    msg.depth_mm <= limit,
                    "seed {seed}: {} mm > {limit} mm",
                    msg.depth_mm
                );
                assert!(msg.depth_mm >= 0.0);
            }
        }
        for model in &models {
            assert_eq!(model.sessions().len(), 3);
            assert!(
                model
                    .sessions()
                    .iter()
                    .all(|s| !s.exceeded && s.ended && !s.unknown_operator)
            );
        }
    }
}

#[test]
fn over_depth_truth_matches_the_samples() {
    let mut rules = BTreeMap::new();
    for seed in 0..8 {
        let (fleet, models, all) = run_fleet(seed, &[Scenario::Normal, Scenario::OverDepth], 3);
        let mut exceeded = 0;
        for (model, steps) in models.iter().zip(&all) {
            for truth in model.sessions() {
                let samples: Vec<&Telemetry> = valid(steps)
                    .filter(|m| {
                        m.session_id == truth.session_id && m.event == i32::from(Event::Sample)
                    })
                    .collect();
                let above: Vec<(&&Telemetry, (f64, Rule))> = samples
                    .iter()
                    .map(|m| (m, limit_of(&fleet, m)))
                    .filter(|(m, (limit, _))| m.depth_mm > *limit)
                    .collect();
                assert_eq!(truth.exceeded, !above.is_empty());
                assert_eq!(truth.samples_above, above.len() as u64);
                let in_excursions: u64 = truth.excursions.iter().map(|x| x.samples).sum();
                assert_eq!(in_excursions, truth.samples_above);
                assert_eq!(truth.samples, samples.len() as u64);
                if let Some((first, (limit, rule))) = above.first() {
                    exceeded += 1;
                    *rules.entry(format!("{rule:?}")).or_insert(0) += 1;
                    assert_eq!((truth.permitted_mm, truth.binding_rule), (*limit, *rule));
                    assert_eq!(truth.first_above_ms, Some(first.timestamp_ms));
                    for (m, (limit, _)) in &above {
                        let excess = m.depth_mm - limit;
                        assert!(
                            (0.25 - 1e-9..=0.5 + 1e-9).contains(&excess),
                            "excess {excess}"
                        );
                        assert!(m.depth_mm <= MECHANICAL_MAX_MM);
                    }
                    assert!(above.len() >= 3 && above.len() <= 10);
                }
            }
        }
        assert!(
            exceeded >= 1,
            "seed {seed}: the forced over-depth session exceeded"
        );
    }
    assert!(
        rules.contains_key("Class") && rules.contains_key("Operator"),
        "{rules:?}"
    );
}

#[test]
fn unknown_operator_is_judged_at_half_a_millimetre() {
    let mut unknown = 0;
    for seed in 0..4 {
        let (_, models, all) = run_fleet(seed, &[Scenario::UnknownOperator], 2);
        for (model, steps) in models.iter().zip(&all) {
            for truth in model.sessions().iter().filter(|s| s.unknown_operator) {
                unknown += 1;
                assert!(truth.operator_id.contains("-x"));
                let any_above = valid(steps)
                    .filter(|m| {
                        m.session_id == truth.session_id && m.event == i32::from(Event::Sample)
                    })
                    .any(|m| {
                        let class = policy::class_limit_mm(
                            DeviceClass::try_from(m.device_class).expect("class"),
                        );
                        let zone = policy::zone_ceiling_mm(
                            &m.clinic_id,
                            Zone::try_from(m.zone).expect("zone"),
                        );
                        m.depth_mm > class.min(0.5).min(zone.unwrap_or(f64::INFINITY))
                    });
                assert_eq!(truth.exceeded, any_above);
                assert!(truth.permitted_mm <= 0.5);
            }
        }
    }
    assert!(unknown >= 4);
}

#[test]
fn counters_are_cumulative_and_reuse_continues_the_cartridge() {
    let (_, models, all) = run_fleet(5, &[Scenario::CartridgeReuse], 4);
    let mut reused = 0;
    for (model, steps) in models.iter().zip(&all) {
        let mut by_session: BTreeMap<&str, u64> = BTreeMap::new();
        let mut by_cartridge: BTreeMap<&str, u64> = BTreeMap::new();
        let mut inserted = Vec::new();
        for m in valid(steps) {
            if m.event == i32::from(Event::CartridgeInserted) {
                inserted.push(m.cartridge_id.clone());
                assert_eq!(m.cartridge_strokes, 0);
            }
            if !m.session_id.is_empty() {
                let prev = by_session
                    .insert(&m.session_id, m.session_strokes)
                    .unwrap_or(0);
                assert!(m.session_strokes >= prev, "session strokes are cumulative");
                let prev = by_cartridge
                    .insert(&m.cartridge_id, m.cartridge_strokes)
                    .unwrap_or(0);
                assert!(
                    m.cartridge_strokes >= prev,
                    "cartridge strokes are cumulative"
                );
            }
        }
        let sessions = model.sessions();
        for (i, s) in sessions.iter().enumerate() {
            let earlier = sessions[..i]
                .iter()
                .any(|o| o.cartridge_id == s.cartridge_id);
            assert_eq!(
                s.cartridge_reused, earlier,
                "reuse means an earlier session had it"
            );
            assert!(
                inserted.contains(&s.cartridge_id),
                "every cartridge was inserted"
            );
            reused += u64::from(s.cartridge_reused);
            assert!(s.strokes > 0 && s.samples > 0);
            assert_eq!(
                s.strokes,
                by_session.get(s.session_id.as_str()).copied().unwrap_or(0)
            );
        }
    }
    assert!(reused >= 1);
    let inserts: usize = all
        .iter()
        .map(|steps| {
            valid(steps)
                .filter(|m| m.event == i32::from(Event::CartridgeInserted))
                .count()
        })
        .sum();
    let fresh = models
        .iter()
        .flat_map(|m| m.sessions())
        .filter(|s| !s.cartridge_reused);
    assert_eq!(
        inserts,
        fresh.count(),
        "a reused cartridge is not inserted again"
    );
}

#[test]
fn offline_buffer_goes_down_then_up_inside_the_first_session() {
    let (_, _, all) = run_fleet(9, &[Scenario::OfflineBuffer], 2);
    let mut pens_offline = 0;
    for steps in &all {
        let down = steps.iter().position(|s| s.action == Action::NetworkDown);
        let up = steps.iter().position(|s| s.action == Action::NetworkUp);
        match (down, up) {
            (Some(d), Some(u)) => {
                pens_offline += 1;
                assert!(d < u);
                let between = steps[d..u]
                    .iter()
                    .filter(|s| matches!(s.action, Action::Telemetry { .. }))
                    .count();
                assert!(between >= 1, "samples are taken while offline");
            }
            (None, None) => {}
            other => panic!("unbalanced network steps {other:?}"),
        }
    }
    assert!(pens_offline >= 1);
}

#[test]
fn close_ends_the_open_session_and_load_mode_never_ends_a_session() {
    let fleet = Fleet::generate(2, 1, 3);
    let pen = fleet.pens().next().expect("a pen").clone();
    let ops = fleet.clinics[0].operators.clone();
    let plan = scenario::plan(&fleet, &[Scenario::Normal]).remove(0);
    let load = PenTiming {
        load: true,
        sessions: None,
        ..timing(1)
    };
    let mut model = PenModel::new(pen, ops, plan, load, 2);
    for _ in 0..2000 {
        let step = model.step().expect("load mode goes on");
        if let Action::Telemetry { msg, .. } = step.action {
            assert_ne!(msg.event, i32::from(Event::SessionEnd));
        }
    }
    let closing = model.close(10_000_000);
    let Some(Action::Telemetry { msg, .. }) = closing.last().map(|s| &s.action) else {
        panic!("close publishes session_end");
    };
    assert_eq!(msg.event, i32::from(Event::SessionEnd));
    assert_eq!(model.next_at(), None);
    assert_eq!(model.sessions().len(), 1);
    assert!(model.sessions()[0].ended);
    assert!(!model.sessions()[0].zones.is_empty());
}
