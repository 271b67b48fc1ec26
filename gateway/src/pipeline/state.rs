//! The committer's live state (open sessions, pens, cartridges) and what of it still has to
//! reach the journal.
//!
//! Every batch writes what a reader must see at once (a new session, a raised or grown
//! violation, a closed session, a cartridge event, a status change); the rest of the live
//! state (counters, battery, depth now) is written within about [`FLUSH_EVERY`], a share in
//! each batch's transaction, so no one commit carries a second's worth of rows (it delayed
//! the alerts behind it). After a crash the journal's samples are the
//! truth: open sessions are refolded from them at start, and pens and cartridges fold
//! cumulative counters, so the next message brings them up to date.
//!
//! A closed session stays closed: its messages that arrive later (after its `session_end`, or
//! replayed from a pen's offline buffer after an inactivity close) are journaled like any
//! other and amend it: one chained amendment per session per batch ([`LiveState::amend`]).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use penwatch_proto::v1::Event;

use super::digest::RunningDigest;
use super::dirty::Dirty;
use crate::alerts::{self, Kind, raise};
use crate::audit::{AmendReason, Amendment, ClosedSession, FinalViolation, Record};
use crate::cartridges::{Cartridge, CartridgeEvent, Wear};
use crate::decode::{BadInput, Reading};
use crate::fleet::Device;
use crate::journal::{self, Batch, ClosedRecord, Closing, Inserted};
use crate::live::LiveEvent;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::sessions::{CloseReason, Session, Verdict};

/// About the longest time a live counter waits to be written to the journal.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Fewest waiting records of each kind a batch writes.
const FLUSH_AT_LEAST: usize = 16;

/// Most cartridges kept in memory (each session brings a new one; the journal has them all).
const CARTRIDGE_CACHE: usize = 10_000;

/// A session: `(device_id, session_id)`.
pub type SessionKey = (String, String);

/// What the committer knows now, and what the journal has not been told yet.
pub struct LiveState {
    pub(super) sessions: HashMap<SessionKey, Session>,
    /// Digests of the open sessions begun in this process, kept as their samples are
    /// journaled (a session read back from the journal has none).
    digests: HashMap<SessionKey, RunningDigest>,
    pub(super) last_activity: HashMap<SessionKey, i64>,
    pub(super) devices: HashMap<String, Device>,
    cartridges: HashMap<String, Cartridge>,
    dirty_sessions: Dirty<SessionKey>,
    dirty_devices: Dirty<String>,
    dirty_cartridges: Dirty<String>,
    last_write: Instant,
    metrics: Arc<Metrics>,
    /// Alerting rules; `None`: no alerts are raised.
    alerts: Option<alerts::Rules>,
    /// Open sessions whose pen has been silent for longer than the rules allow.
    silent: HashSet<SessionKey>,
}

/// What one batch touched: written before its commit, published after it.
#[derive(Default)]
pub struct Work {
    /// Sessions to write with this batch.
    sessions: HashSet<SessionKey>,
    /// Pens to write with this batch.
    devices: HashSet<String>,
    /// Cartridges to write with this batch.
    cartridges: HashSet<String>,
    /// Pens whose live state changed (for the fleet stream).
    pub(super) touched_devices: HashSet<String>,
    /// Sessions that ended in this batch.
    pub(super) to_close: Vec<SessionKey>,
    /// Closed sessions this batch brought messages for, with the `seq` range of those.
    late: HashMap<SessionKey, (u64, u64)>,
    violations: HashSet<SessionKey>,
    /// Quarantine reasons, counted after the commit.
    pub(super) quarantined: Vec<&'static str>,
    /// Conflicting messages by kind (`conflict`, `reset`), counted after the commit.
    pub(super) conflicts: Vec<&'static str>,
    /// Live events, sent after the commit.
    pub(super) events: Vec<LiveEvent>,
    /// Whether anyone listens to live events (nothing is built for them otherwise).
    pub(super) live: bool,
    /// Alerts this batch's facts raise or resolve, in the order of the facts, written in its
    /// transaction.
    alerts: Vec<AlertChange>,
}

/// An alert raised, or the key of one resolved.
enum AlertChange {
    Raise(alerts::Alert),
    Resolve(String),
}

impl Work {
    /// Work for a batch; `live` says whether live events are wanted.
    pub fn new(live: bool) -> Self {
        Self {
            live,
            ..Self::default()
        }
    }

    /// Records a closed session's live events.
    pub fn closed(&mut self, s: Session, committed_ms: i64) {
        if !self.live {
            return;
        }
        let s = Arc::new(s);
        if s.exceeded() {
            self.events.push(LiveEvent::Violation {
                session: s.clone(),
                final_: true,
                committed_ms,
                amendment: 0,
            });
        }
        self.events.push(LiveEvent::SessionClosed(s));
    }
}

impl LiveState {
    /// The state the journal holds: open sessions refolded from their samples, and every pen.
    pub fn load(
        journal: &mut journal::Writer,
        metrics: Arc<Metrics>,
        alerts: Option<alerts::Rules>,
    ) -> journal::Result<Self> {
        let now = crate::clock::now_ms();
        let mut sessions = HashMap::new();
        let mut last_activity = HashMap::new();
        let open = journal.open_sessions()?;
        let tx = journal.batch()?;
        for stored in open {
            let key = (stored.device_id.clone(), stored.session_id.clone());
            // The stored row may be a moment older than the journal's samples: read on to
            // the pen's newest sample.
            let (samples, _) = tx.session_samples(&key.0, &key.1, stored.min_seq)?;
            let s = refold(&samples).map_or(stored.clone(), |mut s| {
                s.ended |= stored.ended;
                s.conflicting = stored.conflicting;
                s
            });
            last_activity.insert(key.clone(), now);
            sessions.insert(key, s);
        }
        drop(tx);
        let devices = journal
            .devices()?
            .into_iter()
            .map(|d| (d.device_id.clone(), d))
            .collect();
        Ok(Self {
            sessions,
            digests: HashMap::new(),
            last_activity,
            devices,
            cartridges: HashMap::new(),
            dirty_sessions: Dirty::new(),
            dirty_devices: Dirty::new(),
            dirty_cartridges: Dirty::new(),
            last_write: Instant::now(),
            metrics,
            alerts,
            silent: HashSet::new(),
        })
    }

    /// Sessions open now.
    pub fn open_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Folds a pen's status message in. A status on the topic of another clinic than the
    /// pen's (registered in the policy, else known from its messages) is refused: only the
    /// pen's own topic speaks for it.
    pub fn status(
        &mut self,
        policy: &Policy,
        clinic_id: &str,
        device_id: &str,
        online: bool,
        received_ms: i64,
        work: &mut Work,
    ) -> Result<(), BadInput> {
        let known_clinic = if policy.device(clinic_id, device_id).is_some() {
            Some(clinic_id)
        } else {
            policy
                .device_anywhere(device_id)
                .map(|d| d.clinic.as_str())
                .or_else(|| self.devices.get(device_id).map(|d| d.clinic_id.as_str()))
        };
        if let Some(known) = known_clinic.filter(|known| *known != clinic_id) {
            return Err(BadInput::StatusClinic {
                device_id: device_id.to_owned(),
                clinic_id: known.to_owned(),
                topic_clinic_id: clinic_id.to_owned(),
            });
        }
        let device = self
            .devices
            .entry(device_id.to_owned())
            .or_insert_with(|| Device::new(clinic_id, device_id));
        device.set_status(online, received_ms);
        if self.alerts.is_some() {
            if online {
                work.alerts.push(AlertChange::Resolve(raise::device_key(
                    Kind::PenOffline,
                    device_id,
                )));
            } else if self
                .sessions
                .get(&(device_id.to_owned(), device.session_id.clone()))
                .is_some_and(|s| !s.ended)
            {
                work.alerts.push(AlertChange::Raise(raise::pen_offline(
                    device,
                    &device.session_id,
                    received_ms,
                )));
            }
        }
        work.devices.insert(device_id.to_owned());
        work.touched_devices.insert(device_id.to_owned());
        Ok(())
    }

    /// Folds a journaled, judged reading into the pen, its session and its cartridge;
    /// `inserted` says how it was journaled (first, or beside a different message with its
    /// `seq`).
    #[allow(clippy::too_many_arguments)]
    pub fn apply(
        &mut self,
        tx: &Batch<'_>,
        policy: &Policy,
        r: &Reading,
        v: &Verdict,
        received_ms: i64,
        inserted: Inserted,
        work: &mut Work,
    ) -> journal::Result<()> {
        let conflicting = !matches!(inserted, Inserted::New { .. });
        let device = match self.devices.get_mut(&r.device_id) {
            Some(d) => d,
            None => {
                work.devices.insert(r.device_id.clone());
                self.devices
                    .entry(r.device_id.clone())
                    .or_insert_with(|| Device::new(&r.clinic_id, &r.device_id))
            }
        };
        let session_changed = device.session_id != r.session_id;
        let reset = device.observe(r, v, received_ms);
        if reset {
            self.metrics.seq_resets.inc();
            tracing::warn!(
                device = %r.device_id,
                seq = r.seq,
                "the pen's seq went back while its clock went forward: its counter was reset"
            );
        }
        if conflicting {
            device.conflicted(received_ms);
        }
        if self.alerts.is_some() {
            if reset {
                work.alerts.push(AlertChange::Raise(raise::seq_anomaly(
                    device,
                    true,
                    received_ms,
                )));
            }
            if conflicting {
                work.alerts.push(AlertChange::Raise(raise::seq_anomaly(
                    device,
                    false,
                    received_ms,
                )));
            }
        }
        if session_changed || reset || conflicting || r.event != Event::Sample {
            work.devices.insert(r.device_id.clone());
        } else {
            self.dirty_devices.mark(&r.device_id);
        }
        if work.live {
            work.touched_devices.insert(r.device_id.clone());
        }
        if !r.session_id.is_empty() {
            self.apply_session(tx, r, v, received_ms, inserted, work)?;
            // A late message of a closed session does not put its pen back in that session.
            if !work.late.is_empty()
                && work
                    .late
                    .contains_key(&(r.device_id.clone(), r.session_id.clone()))
                && let Some(d) = self
                    .devices
                    .get_mut(&r.device_id)
                    .filter(|d| d.session_id == r.session_id)
            {
                d.session_id.clear();
                d.depth_mm = 0.0;
            }
        }
        if !r.cartridge_id.is_empty() {
            self.apply_cartridge(tx, policy, r, received_ms, work)?;
        }
        Ok(())
    }

    fn apply_session(
        &mut self,
        tx: &Batch<'_>,
        r: &Reading,
        v: &Verdict,
        received_ms: i64,
        inserted: Inserted,
        work: &mut Work,
    ) -> journal::Result<()> {
        let conflicting = !matches!(inserted, Inserted::New { .. });
        let key = (r.device_id.clone(), r.session_id.clone());
        if let Some(seqs) = work.late.get_mut(&key) {
            *seqs = (seqs.0.min(r.seq), seqs.1.max(r.seq));
            return Ok(());
        }
        let s = match self.sessions.get_mut(&key) {
            Some(s) => s,
            None => {
                let s = match tx.session(&r.device_id, &r.session_id)? {
                    // Closed: it stays so, and this message amends it.
                    Some((_, state)) if state == "closed" => {
                        work.late.insert(key, (r.seq, r.seq));
                        return Ok(());
                    }
                    Some((mut stored, _)) => {
                        stored.needs_refold = true;
                        stored
                    }
                    None => {
                        self.digests.insert(key.clone(), RunningDigest::default());
                        Session::new(r, v)
                    }
                };
                work.sessions.insert(key.clone());
                self.sessions.entry(key.clone()).or_insert(s)
            }
        };
        let change = s.observe(r, v);
        if let (Inserted::New { id }, Some(d)) = (inserted, self.digests.get_mut(&key)) {
            d.add(id, &journal::digest_fields(r, v));
        }
        if change.newly_exceeded {
            self.metrics.violations.inc();
        }
        if conflicting {
            s.conflicting += 1;
        }
        if change.violation_updated || conflicting {
            work.violations.insert(key.clone());
            work.sessions.insert(key.clone());
        } else if r.event != Event::Sample {
            work.sessions.insert(key.clone());
        } else {
            self.dirty_sessions.mark(&key);
        }
        self.last_activity.insert(key.clone(), received_ms);
        if self.silent.remove(&key) {
            work.alerts.push(AlertChange::Resolve(raise::session_key(
                Kind::PenSilent,
                &key.0,
                &key.1,
            )));
        }
        if r.event == Event::SessionEnd {
            work.to_close.push(key);
        }
        Ok(())
    }

    fn apply_cartridge(
        &mut self,
        tx: &Batch<'_>,
        policy: &Policy,
        r: &Reading,
        received_ms: i64,
        work: &mut Work,
    ) -> journal::Result<()> {
        let c = match self.cartridges.get_mut(&r.cartridge_id) {
            Some(c) => c,
            None => {
                let c = match tx.cartridge(&r.cartridge_id)? {
                    Some(c) => c,
                    None => Cartridge::new(r, policy.rated_strokes(&r.cartridge_model)),
                };
                work.cartridges.insert(r.cartridge_id.clone());
                self.cartridges.entry(r.cartridge_id.clone()).or_insert(c)
            }
        };
        let sessions_before = c.sessions.len();
        let events = c.observe(r);
        for e in &events {
            tx.cartridge_event(c, e, r)?;
            self.metrics.cartridge_event(e.kind());
            let reused = match e {
                CartridgeEvent::Reuse { .. } => true,
                CartridgeEvent::Wear(Wear::Worn) => false,
                CartridgeEvent::Wear(_) => continue,
            };
            if let (Some(_), Some(d)) = (self.alerts, self.devices.get(&r.device_id)) {
                work.alerts.push(AlertChange::Raise(raise::cartridge(
                    c,
                    d,
                    reused,
                    received_ms,
                )));
            }
        }
        if events.is_empty() && c.sessions.len() == sessions_before {
            self.dirty_cartridges.mark(&r.cartridge_id);
        } else {
            work.cartridges.insert(r.cartridge_id.clone());
        }
        Ok(())
    }

    /// Closes a session (returning its final record): refolds its journaled samples in `seq`
    /// order for the exact final record, and appends the violation (if any) and the session
    /// to the audit chain.
    pub fn close(
        &mut self,
        tx: &Batch<'_>,
        key: &SessionKey,
        reason: CloseReason,
    ) -> journal::Result<Option<Session>> {
        self.last_activity.remove(key);
        self.dirty_sessions.forget(key);
        self.silent.remove(key);
        let kept = self.digests.remove(key);
        let Some(live) = self.sessions.remove(key) else {
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

    /// Writes what this batch must make visible and its share of the other changes (all of
    /// them with `all`); queues the live events.
    pub fn write(
        &mut self,
        tx: &Batch<'_>,
        work: &mut Work,
        committed_ms: i64,
        all: bool,
    ) -> journal::Result<()> {
        // Each batch writes the share of the waiting records that keeps every one within
        // about FLUSH_EVERY (all of them with `all`).
        let elapsed = self.last_write.elapsed();
        self.last_write = Instant::now();
        let share = |len: usize| {
            if all {
                len
            } else {
                let due = len as f64 * elapsed.as_secs_f64() / FLUSH_EVERY.as_secs_f64();
                (due.ceil() as usize).max(FLUSH_AT_LEAST)
            }
        };
        work.sessions
            .extend(self.dirty_sessions.take(share(self.dirty_sessions.len())));
        work.devices
            .extend(self.dirty_devices.take(share(self.dirty_devices.len())));
        work.cartridges.extend(
            self.dirty_cartridges
                .take(share(self.dirty_cartridges.len())),
        );
        if self.alerts.is_some() {
            self.write_alerts(tx, work, committed_ms)?;
        }
        for key in &work.sessions {
            if let Some(s) = self.sessions.get(key) {
                tx.put_session(s, None)?;
                self.dirty_sessions.forget(key);
            }
        }
        for id in &work.devices {
            if let Some(d) = self.devices.get(id) {
                tx.put_device(d)?;
                self.dirty_devices.forget(id);
            }
        }
        for id in &work.cartridges {
            if let Some(c) = self.cartridges.get(id) {
                tx.put_cartridge(c)?;
                self.dirty_cartridges.forget(id);
            }
        }
        if work.live {
            for key in &work.violations {
                if let Some(s) = self.sessions.get(key) {
                    work.events.push(LiveEvent::Violation {
                        session: Arc::new(s.clone()),
                        final_: false,
                        committed_ms,
                        amendment: 0,
                    });
                }
            }
            for id in &work.touched_devices {
                if let Some(d) = self.devices.get(id) {
                    work.events.push(LiveEvent::Device(Arc::new(d.clone())));
                }
            }
        }
        Ok(())
    }

    /// Writes the alerts this batch raised and resolved: its open sessions' violations as
    /// they grew, unknown operators, and the rest collected while folding.
    fn write_alerts(
        &self,
        tx: &Batch<'_>,
        work: &mut Work,
        committed_ms: i64,
    ) -> journal::Result<()> {
        for key in &work.violations {
            let raised = self
                .sessions
                .get(key)
                .and_then(|s| raise::violation(s, committed_ms, None));
            if let Some(a) = raised {
                tx.raise_alert(&a, committed_ms)?;
            }
        }
        for key in &work.sessions {
            let raised = self
                .sessions
                .get(key)
                .and_then(|s| raise::unknown_operator(s, committed_ms));
            if let Some(a) = raised {
                tx.raise_alert(&a, committed_ms)?;
            }
        }
        for change in work.alerts.drain(..) {
            match change {
                AlertChange::Raise(a) => tx.raise_alert(&a, committed_ms)?,
                AlertChange::Resolve(key) => tx.resolve_alert(&key, committed_ms)?,
            }
        }
        Ok(())
    }

    /// Alerts for open sessions whose pen has sent nothing since `cutoff_ms` (gateway time)
    /// and was not reported silent yet.
    pub fn newly_silent(&mut self, cutoff_ms: i64, now_ms: i64) -> Vec<alerts::Alert> {
        let mut raised = Vec::new();
        for (key, last) in &self.last_activity {
            if *last < cutoff_ms && !self.silent.contains(key) {
                if let Some(s) = self.sessions.get(key) {
                    raised.push(raise::pen_silent(s, *last, now_ms));
                }
            }
        }
        for a in &raised {
            self.silent
                .insert((a.device_id.clone(), a.session_id.clone()));
        }
        raised
    }

    /// Forgets cached cartridges when the cache is full, except those still to be written
    /// (the journal has all the others).
    pub fn trim(&mut self) {
        if self.cartridges.len() > CARTRIDGE_CACHE {
            let dirty = &self.dirty_cartridges;
            self.cartridges.retain(|id, _| dirty.contains(id));
        }
    }

    /// Sessions without a message since `cutoff_ms` (gateway time).
    pub fn idle_since(&self, cutoff_ms: i64) -> Vec<SessionKey> {
        self.last_activity
            .iter()
            .filter(|(_, t)| **t < cutoff_ms)
            .map(|(k, _)| k.clone())
            .collect()
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
fn refold(samples: &[(Reading, Verdict)]) -> Option<Session> {
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
