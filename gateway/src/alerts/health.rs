//! Alerts about the gateway itself (the sink, the journal), raised from its metrics by the
//! delivery task. They are not in the journal's outbox: one of them is that the journal
//! cannot be written. Each episode is one alert, resolved when the condition clears; a
//! condition that still holds after a restart is raised again.

use std::collections::HashMap;

use super::routing::Delivered;
use super::types::{Alert, Kind, OutboxAlert, Severity};

/// What the metrics say now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// An InfluxDB sink is configured.
    pub sink: bool,
    /// The sink's last write succeeded (`penwatch_sink_up`).
    pub sink_up: bool,
    /// Records waiting for the sink.
    pub backlog: i64,
    /// `penwatch_journal_write_failing`.
    pub journal_write_failing: bool,
    /// `penwatch_journal_size_alarm`.
    pub journal_size_alarm: bool,
}

/// The conditions that hold in `s`, each with a line for people.
pub fn conditions(s: Snapshot, backlog_max: i64) -> Vec<(Kind, Severity, String)> {
    let mut out = Vec::new();
    if s.sink && !s.sink_up && s.backlog > 0 {
        out.push((
            Kind::SinkDown,
            Severity::Critical,
            format!(
                "InfluxDB takes no writes; {} records wait in the journal",
                s.backlog
            ),
        ));
    }
    if s.sink && s.backlog > backlog_max {
        out.push((
            Kind::SinkBacklog,
            Severity::Warning,
            format!(
                "{} records wait for InfluxDB (bound {backlog_max})",
                s.backlog
            ),
        ));
    }
    if s.journal_write_failing {
        out.push((
            Kind::JournalWriteFailing,
            Severity::Critical,
            "the journal cannot commit: nothing is acknowledged, the broker keeps the messages"
                .to_owned(),
        ));
    }
    if s.journal_size_alarm {
        out.push((
            Kind::JournalSize,
            Severity::Warning,
            "the journal is at 80 % of journal.max_bytes or more".to_owned(),
        ));
    }
    out
}

/// The gateway's health alerts and what each target received of them, in memory.
#[derive(Debug, Default)]
pub struct Health {
    /// Conditions seen holding, and since when (Unix ms).
    holding: HashMap<Kind, i64>,
    /// Alerts raised and not yet settled (firing, or resolved and not delivered everywhere).
    alerts: Vec<OutboxAlert>,
    delivered: HashMap<(String, String), Delivered>,
}

impl Health {
    /// Folds what holds now in: a condition held for `after_ms` fires; a cleared one resolves.
    pub fn observe(&mut self, holding: &[(Kind, Severity, String)], after_ms: i64, now_ms: i64) {
        self.holding
            .retain(|k, _| holding.iter().any(|(h, ..)| h == k));
        for a in &mut self.alerts {
            let still = holding.iter().any(|(k, ..)| *k == a.alert.kind);
            if !still && a.alert.ends_ms.is_none() {
                a.alert.ends_ms = Some(now_ms);
                a.revision += 1;
                a.updated_ms = now_ms;
            }
        }
        for (kind, severity, summary) in holding {
            let since = *self.holding.entry(*kind).or_insert(now_ms);
            let firing = self
                .alerts
                .iter()
                .any(|a| a.alert.kind == *kind && a.alert.ends_ms.is_none());
            if !firing && now_ms - since >= after_ms {
                self.alerts.push(OutboxAlert {
                    alert: Alert {
                        key: format!("{}/{since}", kind.as_str()),
                        kind: *kind,
                        severity: *severity,
                        clinic_id: String::new(),
                        device_id: String::new(),
                        session_id: String::new(),
                        summary: summary.clone(),
                        starts_ms: since,
                        ends_ms: None,
                        details: serde_json::json!({ "since_ms": since }),
                    },
                    revision: 1,
                    updated_ms: now_ms,
                });
            }
        }
    }

    /// The alerts to consider for delivery.
    pub fn pending(&self) -> &[OutboxAlert] {
        &self.alerts
    }

    /// What `target` received of the alert `key`.
    pub fn delivered(&self, target: &str, key: &str) -> Option<Delivered> {
        self.delivered
            .get(&(target.to_owned(), key.to_owned()))
            .copied()
    }

    /// Records deliveries to `target`.
    pub fn mark_delivered(&mut self, target: &str, alerts: &[&OutboxAlert], now_ms: i64) {
        for a in alerts {
            self.delivered.insert(
                (target.to_owned(), a.alert.key.clone()),
                Delivered {
                    revision: a.revision,
                    at_ms: now_ms,
                },
            );
        }
    }

    /// Forgets resolved alerts every target has.
    pub fn settle(&mut self, settled: &[&OutboxAlert]) {
        let done: Vec<(String, i64)> = settled
            .iter()
            .filter(|a| a.alert.ends_ms.is_some())
            .map(|a| (a.alert.key.clone(), a.revision))
            .collect();
        self.alerts
            .retain(|a| !done.contains(&(a.alert.key.clone(), a.revision)));
        let keys: Vec<&String> = done.iter().map(|(k, _)| k).collect();
        self.delivered.retain(|(_, key), _| !keys.contains(&key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sink_without_backlog_is_not_down_and_a_failing_journal_is_critical() {
        let idle = Snapshot {
            sink: true,
            ..Snapshot::default()
        };
        assert!(conditions(idle, 10).is_empty());
        let stuck = Snapshot {
            sink: true,
            backlog: 11,
            journal_write_failing: true,
            ..Snapshot::default()
        };
        let kinds: Vec<Kind> = conditions(stuck, 10).iter().map(|c| c.0).collect();
        assert_eq!(
            kinds,
            [Kind::SinkDown, Kind::SinkBacklog, Kind::JournalWriteFailing]
        );
    }

    #[test]
    fn a_condition_fires_after_it_held_long_enough_and_resolves_when_it_clears() {
        let mut h = Health::default();
        let failing = conditions(
            Snapshot {
                journal_write_failing: true,
                ..Snapshot::default()
            },
            0,
        );
        h.observe(&failing, 1_000, 0);
        assert!(h.pending().is_empty(), "not yet held long enough");
        h.observe(&failing, 1_000, 1_000);
        h.observe(&failing, 1_000, 1_500);
        assert_eq!(h.pending().len(), 1, "one alert per episode");
        assert_eq!(h.pending()[0].alert.key, "journal_write_failing/0");
        h.observe(&[], 1_000, 2_000);
        let resolved = h.pending()[0].clone();
        assert_eq!(
            (resolved.revision, resolved.alert.ends_ms),
            (2, Some(2_000))
        );
        h.settle(&[&resolved]);
        assert!(h.pending().is_empty());
    }
}
