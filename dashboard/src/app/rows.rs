//! The rows each screen lists, filtered and in their display order.

use penwatch_proto::v1::{Cartridge, DeviceState, OperatorSummary, Session, Violation};

use super::App;
use super::filter::RowKeys;
use super::state::Attention;

impl App {
    /// Pens shown on the Fleet screen, most urgent first.
    pub fn fleet_rows(&self) -> Vec<&DeviceState> {
        let mut rows: Vec<&DeviceState> = self
            .devices
            .values()
            .filter(|d| {
                let exceeded = Attention::of(d) == Attention::Exceeded;
                self.filters.keeps(
                    &RowKeys {
                        clinic: &d.clinic_id,
                        class: Some(&d.device_class),
                        operator: Some(&d.operator_id),
                        exceeded: Some(exceeded),
                        time_ms: None,
                        text: vec![&d.device_id, &d.clinic_id, &d.operator_id, &d.session_id],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (Attention::of(a), &a.clinic_id, &a.device_id).cmp(&(
                Attention::of(b),
                &b.clinic_id,
                &b.device_id,
            ))
        });
        rows
    }

    /// Sessions held, whatever the filters.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// A pen's open session as held (from the lists, the fleet stream and violations).
    pub fn open_session(&self, d: &DeviceState) -> Option<&Session> {
        if d.session_id.is_empty() {
            return None;
        }
        self.sessions
            .get(&(d.device_id.clone(), d.session_id.clone()))
    }

    /// The worst excursion of a pen's open session when it exceeded: its peak and the limit
    /// that peak broke, from the gateway's fleet view or else from the violation's evidence.
    pub fn worst_excursion(&self, d: &DeviceState) -> Option<(f64, f64)> {
        if !d.exceeded {
            return None;
        }
        if d.session_peak_mm > 0.0 {
            return Some((d.session_peak_mm, d.session_peak_limit_mm));
        }
        self.open_session(d)
            .and_then(|s| s.evidence.as_ref())
            .map(|e| (e.peak_depth_mm, e.limit_mm))
    }

    /// Whether the policy does not know the operator of a pen's open session.
    pub fn operator_unknown(&self, d: &DeviceState) -> bool {
        if d.operator_id.is_empty() {
            return false;
        }
        self.open_session(d).is_some_and(|s| s.unknown_operator)
            || self
                .operators
                .iter()
                .any(|o| o.operator_id == d.operator_id && o.clinic_id == d.clinic_id && !o.known)
    }

    /// Sessions shown on the Sessions screen: live ones first, then newest first.
    pub fn session_rows(&self) -> Vec<&Session> {
        let mut rows: Vec<&Session> = self
            .sessions
            .values()
            .filter(|s| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &s.clinic_id,
                        class: Some(&s.device_class),
                        operator: Some(&s.operator_id),
                        exceeded: Some(s.exceeded),
                        time_ms: Some(s.last_ms.max(s.started_ms)),
                        text: vec![&s.session_id, &s.device_id, &s.clinic_id, &s.operator_id],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (
                a.state != "open",
                std::cmp::Reverse(a.started_ms),
                &a.session_id,
            )
                .cmp(&(
                    b.state != "open",
                    std::cmp::Reverse(b.started_ms),
                    &b.session_id,
                ))
        });
        rows
    }

    /// Violations shown, newest first.
    pub fn violation_rows(&self) -> Vec<&Violation> {
        self.violations
            .iter()
            .filter(|v| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &v.clinic_id,
                        class: Some(&v.device_class),
                        operator: Some(&v.operator_id),
                        exceeded: Some(true),
                        time_ms: v
                            .evidence
                            .as_ref()
                            .map(|e| e.last_above_ms)
                            .filter(|t| *t > 0),
                        text: vec![&v.session_id, &v.device_id, &v.clinic_id, &v.operator_id],
                    },
                    self.now_ms,
                )
            })
            .collect()
    }

    /// Cartridges shown: reused first, then by wear.
    pub fn cartridge_rows(&self) -> Vec<&Cartridge> {
        let mut rows: Vec<&Cartridge> = self
            .cartridges
            .cartridges
            .iter()
            .filter(|c| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &c.clinic_id,
                        class: self
                            .devices
                            .get(&c.last_device_id)
                            .map(|d| d.device_class.as_str()),
                        operator: None,
                        exceeded: None,
                        time_ms: None,
                        text: vec![&c.cartridge_id, &c.model, &c.last_device_id, &c.clinic_id],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (!a.reused, std::cmp::Reverse(wear_key(a)), &a.cartridge_id).cmp(&(
                !b.reused,
                std::cmp::Reverse(wear_key(b)),
                &b.cartridge_id,
            ))
        });
        rows
    }

    /// Operators shown: most violations first.
    pub fn operator_rows(&self) -> Vec<&OperatorSummary> {
        if !self.shows_operators() {
            return Vec::new();
        }
        let mut rows: Vec<&OperatorSummary> = self
            .operators
            .iter()
            .filter(|o| {
                self.filters.keeps(
                    &RowKeys {
                        clinic: &o.clinic_id,
                        class: None,
                        operator: Some(&o.operator_id),
                        exceeded: Some(o.violations > 0),
                        time_ms: None,
                        text: vec![&o.operator_id, &o.clinic_id, &o.qualification],
                    },
                    self.now_ms,
                )
            })
            .collect();
        rows.sort_by(|a, b| {
            (
                std::cmp::Reverse(a.violations),
                &a.clinic_id,
                &a.operator_id,
            )
                .cmp(&(
                    std::cmp::Reverse(b.violations),
                    &b.clinic_id,
                    &b.operator_id,
                ))
        });
        rows
    }
}

/// Wear as a sortable integer (hundredths of a %).
fn wear_key(c: &Cartridge) -> i64 {
    (c.wear_pct * 100.0) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, ids};

    #[test]
    fn fleet_puts_what_needs_attention_first() {
        let app = fixtures::app("clinic-manager");
        let rows = app.fleet_rows();
        assert_eq!(
            ids(&rows, |d| &d.device_id),
            ["pen-h1", "pen-s1", "pen-s2", "pen-m2", "pen-m1", "pen-h2"]
        );
        let ranks: Vec<Attention> = rows.iter().map(|d| Attention::of(d)).collect();
        assert_eq!(
            ranks,
            [
                Attention::Exceeded,
                Attention::OfflineInSession,
                Attention::WornCartridge,
                Attention::Warning,
                Attention::InSession,
                Attention::Offline
            ]
        );
    }

    #[test]
    fn a_pen_with_conflicting_or_reset_seqs_is_flagged_above_mere_warnings() {
        let mut app = fixtures::app("clinic-manager");
        let pen = app
            .devices
            .values_mut()
            .find(|d| Attention::of(d) == Attention::InSession)
            .expect("a pen in session");
        pen.conflicts = 3;
        let id = pen.device_id.clone();
        let rows = app.fleet_rows();
        let flagged = rows.iter().find(|d| d.device_id == id).expect("listed");
        assert_eq!(Attention::of(flagged), Attention::SeqAnomaly);
        let warning = rows
            .iter()
            .position(|d| Attention::of(d) == Attention::Warning)
            .expect("a warning");
        let position = rows.iter().position(|d| d.device_id == id).expect("row");
        assert!(position < warning, "ranked above warnings");
    }
}
