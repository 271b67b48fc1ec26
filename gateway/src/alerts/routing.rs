//! Which target takes which alert, and when: pure decisions over an outbox row and what was
//! delivered of it before.

use super::config::Route;
use super::types::{Kind, OutboxAlert, Severity};

/// A target's filter: clinics, kinds and least severity it takes.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    clinics: Vec<String>,
    kinds: Vec<Kind>,
    min_severity: Option<Severity>,
}

impl Filter {
    /// The filter a validated route describes.
    pub fn new(route: &Route) -> Self {
        Self {
            clinics: route.clinics.clone(),
            kinds: route.kinds.iter().filter_map(|k| Kind::parse(k)).collect(),
            min_severity: route.min_severity.as_deref().and_then(Severity::parse),
        }
    }

    /// Whether the target takes this alert.
    pub fn takes(&self, a: &OutboxAlert) -> bool {
        let a = &a.alert;
        (self.clinics.is_empty() || self.clinics.contains(&a.clinic_id))
            && (self.kinds.is_empty() || self.kinds.contains(&a.kind))
            && self.min_severity.is_none_or(|min| a.severity >= min)
    }
}

/// The last delivery of an alert to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Revision delivered.
    pub revision: i64,
    /// Gateway time of that delivery, Unix ms.
    pub at_ms: i64,
}

/// What to do with an outbox row for one target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send this revision now.
    Send,
    /// Nothing to send: not routed here, or this revision was delivered.
    Done,
    /// An update within the update interval of the last delivery: send later (the latest
    /// revision then), so a long excursion is one alert updated now and then.
    Later,
}

/// Decides for one alert and one target. A new alert and a resolved one go at once; an
/// update waits until `update_interval_ms` after the last delivery.
pub fn decide(
    filter: &Filter,
    alert: &OutboxAlert,
    last: Option<Delivered>,
    now_ms: i64,
    update_interval_ms: i64,
) -> Decision {
    if !filter.takes(alert) {
        return Decision::Done;
    }
    match last {
        None => Decision::Send,
        Some(d) if d.revision >= alert.revision => Decision::Done,
        Some(_) if alert.alert.ends_ms.is_some() => Decision::Send,
        Some(d) if now_ms - d.at_ms >= update_interval_ms => Decision::Send,
        Some(_) => Decision::Later,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::types::Alert;

    fn alert(clinic: &str, kind: Kind, revision: i64, resolved: bool) -> OutboxAlert {
        OutboxAlert {
            alert: Alert {
                key: "k".into(),
                kind,
                severity: if kind == Kind::Violation {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                clinic_id: clinic.into(),
                device_id: "pen".into(),
                session_id: String::new(),
                summary: String::new(),
                starts_ms: 0,
                ends_ms: resolved.then_some(5),
                details: serde_json::Value::Null,
            },
            revision,
            updated_ms: 0,
        }
    }

    fn filter(clinics: &[&str], kinds: &[&str], min: Option<&str>) -> Filter {
        Filter::new(&Route {
            clinics: clinics.iter().map(|s| s.to_string()).collect(),
            kinds: kinds.iter().map(|s| s.to_string()).collect(),
            min_severity: min.map(str::to_owned),
        })
    }

    #[test]
    fn a_target_takes_only_its_clinics_kinds_and_severities() {
        let f = filter(&["c01"], &["violation", "pen_offline"], None);
        assert!(f.takes(&alert("c01", Kind::Violation, 1, false)));
        assert!(!f.takes(&alert("c02", Kind::Violation, 1, false)));
        assert!(!f.takes(&alert("c01", Kind::CartridgeWorn, 1, false)));
        let critical = filter(&[], &[], Some("critical"));
        assert!(critical.takes(&alert("c09", Kind::Violation, 1, false)));
        assert!(!critical.takes(&alert("c09", Kind::PenSilent, 1, false)));
    }

    #[test]
    fn a_new_alert_goes_at_once_and_its_updates_at_most_once_per_interval() {
        let f = Filter::default();
        let a = alert("c01", Kind::Violation, 7, false);
        assert_eq!(decide(&f, &a, None, 1_000, 60_000), Decision::Send);
        let sent = Some(Delivered {
            revision: 1,
            at_ms: 1_000,
        });
        assert_eq!(decide(&f, &a, sent, 30_000, 60_000), Decision::Later);
        assert_eq!(decide(&f, &a, sent, 61_000, 60_000), Decision::Send);
    }

    #[test]
    fn a_resolved_alert_goes_at_once_and_a_delivered_revision_never_again() {
        let f = Filter::default();
        let sent = Some(Delivered {
            revision: 1,
            at_ms: 1_000,
        });
        let resolved = alert("c01", Kind::Violation, 2, true);
        assert_eq!(decide(&f, &resolved, sent, 1_001, 60_000), Decision::Send);
        let done = Some(Delivered {
            revision: 2,
            at_ms: 1_001,
        });
        assert_eq!(decide(&f, &resolved, done, 99_000, 60_000), Decision::Done);
    }

    #[test]
    fn an_alert_not_routed_to_a_target_is_done_for_it() {
        let f = filter(&["c02"], &[], None);
        let a = alert("c01", Kind::Violation, 1, false);
        assert_eq!(decide(&f, &a, None, 0, 0), Decision::Done);
    }
}
