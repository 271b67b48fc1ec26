//! Several gateways' answers made one, each list in the order one gateway gives it. A pen
//! belongs to one gateway, so rows never repeat across gateways; what several gateways can
//! each hold part of (an operator's sessions, a cartridge model's aggregate) is added up.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use crate::v1::{
    Cartridge, CartridgeAggregate, DeviceState, ListCartridgesResponse, OperatorSummary,
    ReuseEvent, Session, Violation,
};

/// Where a row stands in a newest-first list: its session's start (device time, Unix ms),
/// pen and session id, compared in that order.
pub type Position = (i64, String, String);

/// A row of a list paged newest session first.
pub trait Listed {
    /// Its position.
    fn position(&self) -> Position;
}

impl Listed for Session {
    fn position(&self) -> Position {
        (
            self.started_ms,
            self.device_id.clone(),
            self.session_id.clone(),
        )
    }
}

impl Listed for Violation {
    fn position(&self) -> Position {
        (
            self.session_started_ms,
            self.device_id.clone(),
            self.session_id.clone(),
        )
    }
}

/// Rows newest session first, as a gateway lists sessions and violations.
pub fn newest_first<T: Listed>(rows: &mut [T]) {
    rows.sort_by_cached_key(|r| Reverse(r.position()));
}

/// Pens by clinic, then pen id (as a gateway lists them).
pub fn devices(lists: Vec<Vec<DeviceState>>) -> Vec<DeviceState> {
    let mut all: Vec<DeviceState> = lists.into_iter().flatten().collect();
    all.sort_by(|a, b| (&a.clinic_id, &a.device_id).cmp(&(&b.clinic_id, &b.device_id)));
    all
}

/// Cartridges most worn first (then by id), at most `limit`; aggregates by model and
/// firmware added up over every gateway; reuse events newest first, at most `limit`.
pub fn cartridges(answers: Vec<ListCartridgesResponse>, limit: usize) -> ListCartridgesResponse {
    let mut cartridges: Vec<Cartridge> = Vec::new();
    let mut reuse_events: Vec<ReuseEvent> = Vec::new();
    let mut groups: BTreeMap<(String, String), CartridgeAggregate> = BTreeMap::new();
    for a in answers {
        cartridges.extend(a.cartridges);
        reuse_events.extend(a.reuse_events);
        for g in a.by_model_firmware {
            let sum = groups
                .entry((g.model.clone(), g.firmware.clone()))
                .or_insert_with(|| CartridgeAggregate {
                    model: g.model.clone(),
                    firmware: g.firmware.clone(),
                    ..CartridgeAggregate::default()
                });
            // Weighted by count: the mean over every cartridge of the group.
            let total = f64::from(sum.cartridges) * sum.mean_wear_pct
                + f64::from(g.cartridges) * g.mean_wear_pct;
            sum.cartridges += g.cartridges;
            sum.mean_wear_pct = total / f64::from(sum.cartridges.max(1));
            sum.warn += g.warn;
            sum.worn += g.worn;
            sum.reused += g.reused;
        }
    }
    cartridges.sort_by(|a, b| {
        b.wear_pct
            .total_cmp(&a.wear_pct)
            .then_with(|| a.cartridge_id.cmp(&b.cartridge_id))
    });
    cartridges.truncate(limit);
    reuse_events.sort_by(|a, b| {
        (b.timestamp_ms, &b.cartridge_id, &b.session_id).cmp(&(
            a.timestamp_ms,
            &a.cartridge_id,
            &a.session_id,
        ))
    });
    reuse_events.truncate(limit);
    ListCartridgesResponse {
        cartridges,
        by_model_firmware: groups.into_values().collect(),
        reuse_events,
    }
}

/// Operators by clinic, then id; one operator's sessions on several gateways (a fleet
/// partitioned by pen) are added up.
pub fn operators(lists: Vec<Vec<OperatorSummary>>) -> Vec<OperatorSummary> {
    let mut rows: BTreeMap<(String, String), OperatorSummary> = BTreeMap::new();
    for o in lists.into_iter().flatten() {
        let key = (o.clinic_id.clone(), o.operator_id.clone());
        match rows.get_mut(&key) {
            None => {
                rows.insert(key, o);
            }
            Some(row) => {
                if !row.known && o.known {
                    row.qualification.clone_from(&o.qualification);
                    row.max_mm = o.max_mm;
                    row.known = true;
                }
                row.sessions = row.sessions.saturating_add(o.sessions);
                row.violations = row.violations.saturating_add(o.violations);
                row.max_depth_mm = row.max_depth_mm.max(o.max_depth_mm);
            }
        }
    }
    rows.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(started_ms: i64, device: &str, id: &str) -> Session {
        Session {
            started_ms,
            device_id: device.into(),
            session_id: id.into(),
            ..Session::default()
        }
    }

    #[test]
    fn sessions_of_several_gateways_are_listed_newest_first_as_one_gateway_lists_them() {
        let mut rows = vec![
            session(10, "pen-a", "s1"),
            session(30, "pen-b", "s2"),
            session(30, "pen-c", "s3"),
            session(20, "pen-a", "s4"),
        ];
        newest_first(&mut rows);
        let ids: Vec<&str> = rows.iter().map(|s| s.session_id.as_str()).collect();
        assert_eq!(ids, ["s3", "s2", "s4", "s1"]);
    }

    #[test]
    fn cartridge_aggregates_are_added_up_with_their_mean_weighted_by_count() {
        let answer = |count: u32, mean: f64, reused: u32| ListCartridgesResponse {
            by_model_firmware: vec![CartridgeAggregate {
                model: "N12".into(),
                firmware: "2.1".into(),
                cartridges: count,
                mean_wear_pct: mean,
                warn: 1,
                worn: 0,
                reused,
            }],
            cartridges: vec![Cartridge {
                cartridge_id: format!("cart-{count}"),
                wear_pct: mean,
                ..Cartridge::default()
            }],
            ..ListCartridgesResponse::default()
        };
        let merged = cartridges(vec![answer(1, 90.0, 1), answer(3, 10.0, 0)], 1);
        assert_eq!(merged.by_model_firmware.len(), 1);
        let g = &merged.by_model_firmware[0];
        assert_eq!((g.cartridges, g.warn, g.reused), (4, 2, 1));
        assert!((g.mean_wear_pct - 30.0).abs() < 1e-9, "{}", g.mean_wear_pct);
        assert_eq!(merged.cartridges.len(), 1, "the limit holds over the fleet");
        assert_eq!(
            merged.cartridges[0].cartridge_id, "cart-1",
            "most worn first"
        );
    }

    #[test]
    fn an_operator_seen_on_two_gateways_is_one_row_with_both_counts() {
        let op = |sessions: u32, known: bool, depth: f64| OperatorSummary {
            operator_id: "op-1".into(),
            clinic_id: "c01".into(),
            qualification: if known {
                "clinician".into()
            } else {
                String::new()
            },
            known,
            sessions,
            violations: 1,
            max_depth_mm: depth,
            ..OperatorSummary::default()
        };
        let merged = operators(vec![vec![op(2, false, 1.2)], vec![op(3, true, 0.8)]]);
        assert_eq!(merged.len(), 1);
        let o = &merged[0];
        assert_eq!((o.sessions, o.violations, o.known), (5, 2, true));
        assert_eq!(o.qualification, "clinician");
        assert!((o.max_depth_mm - 1.2).abs() < 1e-9);
    }

    #[test]
    fn pens_are_listed_by_clinic_then_id() {
        let pen = |clinic: &str, id: &str| DeviceState {
            clinic_id: clinic.into(),
            device_id: id.into(),
            ..DeviceState::default()
        };
        let merged = devices(vec![
            vec![pen("c02", "pen-a"), pen("c02", "pen-c")],
            vec![pen("c01", "pen-z"), pen("c02", "pen-b")],
        ]);
        let ids: Vec<&str> = merged.iter().map(|d| d.device_id.as_str()).collect();
        assert_eq!(ids, ["pen-z", "pen-a", "pen-b", "pen-c"]);
    }
}
