//! Closing a session and amending a closed one: the final record and what late data adds to
//! it, each appended to the audit chain in the batch's transaction.

use std::sync::Arc;

use super::{LiveState, Open, SessionKey, Work};
use crate::alerts::{Kind, raise};
use crate::audit::{AmendReason, Amendment, ClosedSession, FinalViolation, Record};
use crate::decode::Reading;
use crate::journal::{self, Batch, ClosedRecord, Closing};
use crate::live::LiveEvent;
use crate::sessions::{CloseReason, Session, Verdict};

impl LiveState {
    /// Closes a session (returning its final record), and appends the violation (if any) and
    /// the session to the audit chain. A session not folded from every sample in `seq` order
    /// is refolded, and digested, from its journaled samples; any other uses its live fold and
    /// the digest kept as its samples were journaled.
    pub fn close(
        &mut self,
        tx: &Batch<'_>,
        key: &SessionKey,
        reason: CloseReason,
    ) -> journal::Result<Option<Session>> {
        self.silent.remove(key);
        let Some(Open {
            session: live,
            digest: kept,
            ..
        }) = self.sessions.remove(key)
        else {
            return Ok(None);
        };
        // A session folded live from every sample in `seq` order is already exact; any other
        // is refolded from the journal in `seq` order.
        let mut s = if live.needs_refold {
            let (samples, _) = tx.session_samples(&key.0, &key.1, live.min_seq)?;
            let Some(s) = refold(&samples) else {
                return Ok(None);
            };
            s
        } else {
            live.clone()
        };
        s.ended |= live.ended;
        s.conflicting = live.conflicting;
        // Kept while journaling when every sample came new and in `seq` order; else read back.
        let (n, last_id, digest) = match kept {
            Some(d) if !live.needs_refold && live.conflicting == 0 => d.finish(),
            _ => tx.samples_digest(&key.0, &key.1, (s.min_seq.min(live.min_seq), u64::MAX), 0)?,
        };
        if n == 0 {
            return Ok(None);
        }
        if let Some(e) = &s.violation {
            tx.append_audit(&Record::Violation(FinalViolation {
                session_id: s.session_id.clone(),
                device_id: s.device_id.clone(),
                clinic_id: s.clinic_id.clone(),
                operator_id: s.operator_id.clone(),
                device_class: s.device_class.clone(),
                evidence: e.clone(),
            }))?;
        }
        let audit_seq = tx.append_audit(&Record::Session(ClosedSession {
            session_id: s.session_id.clone(),
            device_id: s.device_id.clone(),
            clinic_id: s.clinic_id.clone(),
            operator_id: s.operator_id.clone(),
            device_class: s.device_class.clone(),
            cartridge_id: s.cartridge_id.clone(),
            started_ms: s.started_ms,
            last_ms: s.last_ms,
            strokes: s.strokes,
            max_depth_mm: s.max_depth_mm,
            permitted_mm: s.permitted_mm,
            exceeded: s.exceeded(),
            close_reason: reason.as_str().to_owned(),
            journaled: n,
            last_sample_id: last_id,
            samples_digest: digest.clone(),
            conflicting: s.conflicting,
        }))?;
        tx.put_session(
            &s,
            Some(Closing {
                reason,
                digest: &digest,
                audit_seq,
            }),
        )?;
        if self.alerts.is_some() {
            let now = crate::clock::now_ms();
            if let Some(a) = raise::violation(&s, now, Some(now)) {
                tx.raise_alert(&a, now)?;
            }
            tx.resolve_alert(
                &raise::session_key(Kind::UnknownOperator, &key.0, &key.1),
                now,
            )?;
            // The pen's offline alert is about its current session.
            if self
                .devices
                .get(&key.0)
                .is_none_or(|d| d.session_id == key.1)
            {
                tx.resolve_alert(&raise::device_key(Kind::PenOffline, &key.0), now)?;
            }
            // Also one raised before a restart, which the live state no longer knows.
            tx.resolve_alert(&raise::session_key(Kind::PenSilent, &key.0, &key.1), now)?;
        }
        Ok(Some(s))
    }

    /// Amends the closed sessions this batch brought messages for: one chained amendment per
    /// session, which references the session's closed record (never rewritten) and carries
    /// the session as the new messages make it. A violation they raise or grow is alerted and
    /// published live as that amendment. Returns how many amendments were written.
    pub fn amend(
        &mut self,
        tx: &Batch<'_>,
        work: &mut Work,
        committed_ms: i64,
    ) -> journal::Result<u64> {
        let mut written = 0;
        for (key, seqs) in std::mem::take(&mut work.late) {
            let Some(closed) = tx.closed_session(&key.0, &key.1)? else {
                continue;
            };
            let (messages, last_id, digest) =
                tx.samples_digest(&key.0, &key.1, seqs, closed.covered_id)?;
            if messages == 0 {
                continue;
            }
            let from = closed.session.min_seq.min(seqs.0);
            let (samples, _) = tx.session_samples(&key.0, &key.1, from)?;
            let Some(mut now) = refold(&samples) else {
                continue;
            };
            now.ended |= closed.session.ended;
            now.conflicting = now.conflicting.max(closed.session.conflicting);
            let a = amendment(
                &closed,
                &now,
                Added {
                    messages,
                    seqs,
                    last_id,
                    digest,
                },
                committed_ms,
            );
            tx.put_amendment(&a, closed.session.violation.is_some())?;
            self.metrics.amendments.inc();
            written += 1;
            if !a.violation_changed {
                continue;
            }
            if a.new_violation {
                self.metrics.violations.inc();
            }
            if self.alerts.is_some() {
                if let Some(alert) = raise::amended_violation(&now, &a, committed_ms) {
                    tx.raise_alert(&alert, committed_ms)?;
                }
            }
            if work.live {
                work.events.push(LiveEvent::Violation {
                    session: Arc::new(now),
                    final_: true,
                    committed_ms,
                    amendment: a.number,
                });
            }
        }
        Ok(written)
    }
}

/// The messages an amendment adds.
struct Added {
    messages: u64,
    seqs: (u64, u64),
    last_id: i64,
    digest: String,
}

/// The amendment of a closed session by the messages `added`, which make it `now`.
fn amendment(closed: &ClosedRecord, now: &Session, added: Added, committed_ms: i64) -> Amendment {
    let record = &closed.session;
    Amendment {
        session_id: record.session_id.clone(),
        device_id: record.device_id.clone(),
        clinic_id: record.clinic_id.clone(),
        operator_id: record.operator_id.clone(),
        device_class: record.device_class.clone(),
        number: closed.amendments + 1,
        amends: closed.audit_seq,
        reason: AmendReason::after(&closed.close_reason).as_str().to_owned(),
        committed_ms,
        messages: added.messages,
        first_seq: added.seqs.0,
        last_seq: added.seqs.1,
        after_sample_id: closed.covered_id,
        last_sample_id: added.last_id,
        samples_digest: added.digest,
        started_ms: record.started_ms,
        last_ms: now.last_ms,
        strokes: now.strokes,
        max_depth_mm: now.max_depth_mm,
        exceeded: now.exceeded(),
        ended: now.ended,
        new_violation: record.violation.is_none() && closed.evidence.is_none() && now.exceeded(),
        violation_changed: now.violation != closed.evidence,
        violation: now.violation.clone(),
    }
}

/// A session folded from its samples in `seq` order; `None` without samples.
pub(super) fn refold(samples: &[(Reading, Verdict)]) -> Option<Session> {
    let (first_r, first_v) = samples.first()?;
    let mut s = Session::new(first_r, first_v);
    for (r, v) in samples {
        s.observe(r, v);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sessions::{Evidence, Excursion};

    fn excursion(peak: f64) -> Evidence {
        Evidence::new(Excursion {
            limit_mm: 1.0,
            binding: "class".into(),
            peak_depth_mm: peak,
            excess_mm: peak - 1.0,
            first_above_ms: 5,
            last_above_ms: 5,
            strokes_above: 120,
            samples_above: 1,
            policy_version: "p".into(),
        })
    }

    fn session(violation: Option<Evidence>) -> Session {
        let mut s: Session = serde_json::from_value(serde_json::json!({
            "session_id": "s1", "device_id": "pen", "clinic_id": "c01", "operator_id": "op",
            "device_class": "salon", "cartridge_id": "cart", "cartridge_model": "N12",
            "started_ms": 1, "last_ms": 4, "samples": 2, "strokes": 480, "max_depth_mm": 0.8,
            "permitted_mm": 1.0, "binding": "class", "zones": [], "unknown_operator": false,
            "unregistered_device": false, "class_mismatch": false, "ended": true,
            "violation": null, "last_seq": 4, "last_strokes": 480
        }))
        .expect("session");
        s.violation = violation;
        s
    }

    fn added() -> Added {
        Added {
            messages: 1,
            seqs: (5, 5),
            last_id: 12,
            digest: "d".into(),
        }
    }

    fn closed(record: Session, amendments: u64, evidence: Option<Evidence>) -> ClosedRecord {
        ClosedRecord {
            session: record,
            close_reason: "ended".into(),
            audit_seq: 3,
            covered_id: 10,
            amendments,
            evidence,
        }
    }

    #[test]
    fn a_late_violation_on_a_session_that_had_none_is_a_new_violation_of_the_next_amendment() {
        let mut now = session(Some(excursion(1.4)));
        now.max_depth_mm = 1.4;
        now.last_ms = 5;
        let a = amendment(&closed(session(None), 0, None), &now, added(), 9);
        assert_eq!((a.number, a.amends, a.after_sample_id), (1, 3, 10));
        assert_eq!((a.first_seq, a.last_seq, a.last_sample_id), (5, 5, 12));
        assert_eq!(a.reason, "late_after_end");
        assert!(a.new_violation && a.violation_changed && a.exceeded);
        assert_eq!((a.started_ms, a.last_ms, a.max_depth_mm), (1, 5, 1.4));
    }

    #[test]
    fn late_data_that_grows_a_violation_changes_it_without_raising_a_new_one() {
        let record = session(Some(excursion(1.2)));
        let now = session(Some(excursion(1.5)));
        let a = amendment(
            &closed(record.clone(), 1, Some(excursion(1.3))),
            &now,
            added(),
            9,
        );
        assert_eq!(a.number, 2);
        assert!(!a.new_violation && a.violation_changed);
        let same = amendment(&closed(record, 1, Some(excursion(1.5))), &now, added(), 9);
        assert!(!same.new_violation && !same.violation_changed);
    }

    #[test]
    fn a_session_closed_for_inactivity_is_amended_by_a_replay() {
        let mut c = closed(session(None), 0, None);
        c.close_reason = "inactive".into();
        let a = amendment(&c, &session(None), added(), 9);
        assert_eq!(a.reason, "replay_after_inactive");
        assert!(!a.new_violation && !a.violation_changed);
    }
}
