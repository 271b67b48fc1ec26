//! What an alert is: its kind, severity, grouping key and the outbox row that carries it.

use serde::Serialize;
use sha2::Digest;

/// What an alert is about. The `as_str` names are the ones the config, the webhook body and
/// Alertmanager's `kind` label use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A session went deeper than permitted (firing while it lasts, resolved and final with
    /// its evidence when the session closes).
    Violation,
    /// No message from a pen during an open session for longer than `alerts.silent_after_s`.
    PenSilent,
    /// A pen went offline with a session open.
    PenOffline,
    /// A cartridge reached its rated stroke life.
    CartridgeWorn,
    /// A cartridge was seen in a second session.
    CartridgeReused,
    /// A session by an operator the policy does not know for the clinic.
    UnknownOperator,
    /// A pen reused a journaled `seq` with different content.
    SeqConflict,
    /// A pen's `seq` went back while its clock went forward.
    SeqReset,
    /// InfluxDB takes no writes while there is something to forward.
    SinkDown,
    /// More journal records wait for InfluxDB than `alerts.sink_backlog_max`.
    SinkBacklog,
    /// The journal cannot commit (`penwatch_journal_write_failing`): nothing is acknowledged.
    JournalWriteFailing,
    /// The journal is at 80 % of `journal.max_bytes` or more (`penwatch_journal_size_alarm`).
    JournalSize,
}

impl Kind {
    /// Every kind, in the order the README lists them.
    pub const ALL: [Kind; 12] = [
        Kind::Violation,
        Kind::PenSilent,
        Kind::PenOffline,
        Kind::CartridgeWorn,
        Kind::CartridgeReused,
        Kind::UnknownOperator,
        Kind::SeqConflict,
        Kind::SeqReset,
        Kind::SinkDown,
        Kind::SinkBacklog,
        Kind::JournalWriteFailing,
        Kind::JournalSize,
    ];

    /// Its name (`violation`, `pen_silent`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Violation => "violation",
            Kind::PenSilent => "pen_silent",
            Kind::PenOffline => "pen_offline",
            Kind::CartridgeWorn => "cartridge_worn",
            Kind::CartridgeReused => "cartridge_reused",
            Kind::UnknownOperator => "unknown_operator",
            Kind::SeqConflict => "seq_conflict",
            Kind::SeqReset => "seq_reset",
            Kind::SinkDown => "sink_down",
            Kind::SinkBacklog => "sink_backlog",
            Kind::JournalWriteFailing => "journal_write_failing",
            Kind::JournalSize => "journal_size",
        }
    }

    /// The kind named `name`.
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// A state that lasts until the gateway resolves it, as opposed to an event (cartridges,
    /// seq anomalies), which never resolves.
    pub fn is_state(self) -> bool {
        !matches!(
            self,
            Kind::CartridgeWorn | Kind::CartridgeReused | Kind::SeqConflict | Kind::SeqReset
        )
    }
}

/// How urgent an alert is (Alertmanager's `severity` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Someone should look today.
    Warning,
    /// Someone should look now.
    Critical,
}

impl Severity {
    /// `warning` or `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The severity named `name`.
    pub fn parse(name: &str) -> Option<Severity> {
        [Severity::Warning, Severity::Critical]
            .into_iter()
            .find(|s| s.as_str() == name)
    }
}

/// An alert as the committer raises it. Alerts with the same `key` are one alert: a later one
/// updates it (the outbox keeps one row per key).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Groups the updates of one alert (`violation/DEVICE/SESSION`, `pen_offline/DEVICE`, …).
    pub key: String,
    /// What it is about.
    pub kind: Kind,
    /// How urgent.
    pub severity: Severity,
    /// Clinic.
    pub clinic_id: String,
    /// Pen ("" when not about one pen).
    pub device_id: String,
    /// Session ("" when not about one session).
    pub session_id: String,
    /// One line a person can read.
    pub summary: String,
    /// Gateway time it was raised, Unix ms.
    pub starts_ms: i64,
    /// Gateway time it resolved, Unix ms; `None` while firing.
    pub ends_ms: Option<i64>,
    /// The facts behind it (evidence, counts), per kind.
    pub details: serde_json::Value,
}

/// An alert in the outbox at one revision: every change of an alert's content or state
/// raises its revision.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxAlert {
    /// The alert as last written.
    pub alert: Alert,
    /// 1 when raised, +1 per change.
    pub revision: i64,
    /// Gateway time of the last change, Unix ms.
    pub updated_ms: i64,
}

impl OutboxAlert {
    /// The same for every delivery of this revision, different for every other (an alert
    /// raised again under its key after its row was pruned starts at another time): a
    /// receiver that keeps the keys it has seen drops redeliveries (after a crash, a retry).
    pub fn idempotency_key(&self) -> String {
        let mut h = sha2::Sha256::new();
        h.update(self.alert.key.as_bytes());
        h.update(self.alert.starts_ms.to_be_bytes());
        let digest = h.finalize();
        format!("{}-{}", hex::encode(&digest[..12]), self.revision)
    }

    /// `firing` or `resolved`.
    pub fn status(&self) -> &'static str {
        if self.alert.ends_ms.is_some() {
            "resolved"
        } else {
            "firing"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox(key: &str, revision: i64) -> OutboxAlert {
        OutboxAlert {
            alert: Alert {
                key: key.into(),
                kind: Kind::Violation,
                severity: Severity::Critical,
                clinic_id: "c01".into(),
                device_id: "pen".into(),
                session_id: "s".into(),
                summary: String::new(),
                starts_ms: 1,
                ends_ms: None,
                details: serde_json::Value::Null,
            },
            revision,
            updated_ms: 1,
        }
    }

    #[test]
    fn the_idempotency_key_is_stable_per_revision_and_differs_between_them() {
        let a = outbox("violation/pen/s", 3);
        assert_eq!(
            a.idempotency_key(),
            outbox("violation/pen/s", 3).idempotency_key()
        );
        assert_ne!(
            a.idempotency_key(),
            outbox("violation/pen/s", 4).idempotency_key()
        );
        assert_ne!(
            a.idempotency_key(),
            outbox("violation/pen/t", 3).idempotency_key()
        );
        assert!(a.idempotency_key().ends_with("-3"));
        let mut again = outbox("violation/pen/s", 3);
        again.alert.starts_ms = 2;
        assert_ne!(a.idempotency_key(), again.idempotency_key());
    }

    #[test]
    fn every_kind_parses_back_from_its_name() {
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("violations"), None);
    }
}
