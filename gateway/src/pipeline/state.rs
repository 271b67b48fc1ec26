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

mod closing;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use penwatch_proto::v1::Event;

use closing::refold;

use super::digest::RunningDigest;
use super::records::Records;
use crate::alerts::{self, Kind, raise};
use crate::cartridges::{Cartridge, CartridgeEvent, Wear};
use crate::decode::{BadInput, Reading};
use crate::fleet::Device;
use crate::journal::{self, Batch, Inserted};
use crate::live::LiveEvent;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::sessions::{Session, Verdict};

/// About the longest time a live counter waits to be written to the journal.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Fewest waiting records of each kind a batch writes.
const FLUSH_AT_LEAST: usize = 16;

/// Most cartridges kept in memory (each session brings a new one; the journal has them all).
const CARTRIDGE_CACHE: usize = 10_000;

/// A session: `(device_id, session_id)`.
pub type SessionKey = (String, String);

/// An open session as the committer holds it: one entry per session, found with one lookup
/// per message.
struct Open {
    /// Its fold so far.
    session: Session,
    /// Its digest, kept as its samples are journaled; `None` for a session read back from the
    /// journal (begun before this process).
    digest: Option<RunningDigest>,
    /// When its last message was received (gateway time).
    last_activity: i64,
}

/// What the committer knows now, and what the journal has not been told yet.
pub struct LiveState {
    sessions: Records<SessionKey, Open>,
    pub(super) devices: Records<String, Device>,
    cartridges: Records<String, Cartridge>,
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
            sessions.insert(
                key,
                Open {
                    session: s,
                    digest: None,
                    last_activity: now,
                },
            );
        }
        drop(tx);
        let devices = journal
            .devices()?
            .into_iter()
            .map(|d| (d.device_id.clone(), d))
            .collect();
        Ok(Self {
            sessions: sessions.into_iter().collect(),
            devices,
            cartridges: Records::new(),
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
        let key = device_id.to_owned();
        let mut device = self
            .devices
            .get_or_insert_with(&key, || Device::new(clinic_id, device_id));
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
                .is_some_and(|o| !o.session.ended)
            {
                work.alerts.push(AlertChange::Raise(raise::pen_offline(
                    &device,
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
        let mut device = match self.devices.get_mut(&r.device_id) {
            Some(d) => d,
            None => {
                work.devices.insert(r.device_id.clone());
                self.devices
                    .get_or_insert_with(&r.device_id, || Device::new(&r.clinic_id, &r.device_id))
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
                    &device,
                    true,
                    received_ms,
                )));
            }
            if conflicting {
                work.alerts.push(AlertChange::Raise(raise::seq_anomaly(
                    &device,
                    false,
                    received_ms,
                )));
            }
        }
        if session_changed || reset || conflicting || r.event != Event::Sample {
            work.devices.insert(r.device_id.clone());
        } else {
            device.mark();
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
                && let Some(mut d) = self
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
        let mut open = match self.sessions.get_mut(&key) {
            Some(open) => open,
            None => {
                let (session, digest) = match tx.session(&r.device_id, &r.session_id)? {
                    // Closed: it stays so, and this message amends it.
                    Some((_, state)) if state == "closed" => {
                        work.late.insert(key, (r.seq, r.seq));
                        return Ok(());
                    }
                    Some((mut stored, _)) => {
                        stored.needs_refold = true;
                        (stored, None)
                    }
                    None => (Session::new(r, v), Some(RunningDigest::default())),
                };
                work.sessions.insert(key.clone());
                self.sessions.get_or_insert_with(&key, || Open {
                    session,
                    digest,
                    last_activity: received_ms,
                })
            }
        };
        let Open {
            session: s,
            digest,
            last_activity,
        } = &mut *open;
        *last_activity = received_ms;
        let change = s.observe(r, v);
        if let (Inserted::New { id }, Some(d)) = (inserted, digest.as_mut()) {
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
            open.mark();
        }
        if !self.silent.is_empty() && self.silent.remove(&key) {
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
        let mut c = match self.cartridges.get_mut(&r.cartridge_id) {
            Some(c) => c,
            None => {
                let c = match tx.cartridge(&r.cartridge_id)? {
                    Some(c) => c,
                    None => Cartridge::new(r, policy.rated_strokes(&r.cartridge_model)),
                };
                work.cartridges.insert(r.cartridge_id.clone());
                self.cartridges.get_or_insert_with(&r.cartridge_id, || c)
            }
        };
        let sessions_before = c.sessions.len();
        let events = c.observe(r);
        for e in &events {
            tx.cartridge_event(&c, e, r)?;
            self.metrics.cartridge_event(e.kind());
            let reused = match e {
                CartridgeEvent::Reuse { .. } => true,
                CartridgeEvent::Wear(Wear::Worn) => false,
                CartridgeEvent::Wear(_) => continue,
            };
            if let (Some(_), Some(d)) = (self.alerts, self.devices.get(&r.device_id)) {
                work.alerts.push(AlertChange::Raise(raise::cartridge(
                    &c,
                    d,
                    reused,
                    received_ms,
                )));
            }
        }
        if events.is_empty() && c.sessions.len() == sessions_before {
            c.mark();
        } else {
            work.cartridges.insert(r.cartridge_id.clone());
        }
        Ok(())
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
            .extend(self.sessions.take(share(self.sessions.waiting())));
        work.devices
            .extend(self.devices.take(share(self.devices.waiting())));
        work.cartridges
            .extend(self.cartridges.take(share(self.cartridges.waiting())));
        if self.alerts.is_some() {
            self.write_alerts(tx, work, committed_ms)?;
        }
        for key in &work.sessions {
            if let Some(open) = self.sessions.written(key) {
                tx.put_session(&open.session, None)?;
            }
        }
        for id in &work.devices {
            if let Some(d) = self.devices.written(id) {
                tx.put_device(d)?;
            }
        }
        for id in &work.cartridges {
            if let Some(c) = self.cartridges.written(id) {
                tx.put_cartridge(c)?;
            }
        }
        if work.live {
            for key in &work.violations {
                if let Some(open) = self.sessions.get(key) {
                    work.events.push(LiveEvent::Violation {
                        session: Arc::new(open.session.clone()),
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
                .and_then(|o| raise::violation(&o.session, committed_ms, None));
            if let Some(a) = raised {
                tx.raise_alert(&a, committed_ms)?;
            }
        }
        for key in &work.sessions {
            let raised = self
                .sessions
                .get(key)
                .and_then(|o| raise::unknown_operator(&o.session, committed_ms));
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
        for (key, open) in self.sessions.iter() {
            if open.last_activity < cutoff_ms && !self.silent.contains(key) {
                raised.push(raise::pen_silent(&open.session, open.last_activity, now_ms));
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
            self.cartridges.keep_waiting();
        }
    }

    /// Sessions without a message since `cutoff_ms` (gateway time).
    pub fn idle_since(&self, cutoff_ms: i64) -> Vec<SessionKey> {
        self.sessions
            .iter()
            .filter(|(_, o)| o.last_activity < cutoff_ms)
            .map(|(k, _)| k.clone())
            .collect()
    }
}
