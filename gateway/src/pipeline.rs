//! The committer: takes batches of MQTT messages, decodes and judges them, updates sessions,
//! cartridges and the fleet, writes all of it to the journal in one transaction, and only
//! then acknowledges the messages to the broker.
//!
//! It runs on its own thread and owns the journal connection and the live state.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::{DeviceClass, Event};
use serde_json::json;

use crate::cartridges::Cartridge;
use crate::clock::now_ms;
use crate::decode::{self, Inbound, Limits, Reading};
use crate::fleet::Device;
use crate::journal::{self, Batch, Journal};
use crate::live::{LiveEvent, LiveSender};
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyHandle, SampleContext};
use crate::sessions::{CloseReason, Session, Verdict};

/// One received MQTT message waiting to be committed and acknowledged.
#[derive(Debug, Clone)]
pub struct Inflight {
    /// The message (its packet id is what the acknowledgement needs).
    pub publish: rumqttc::Publish,
    /// Gateway time it arrived, Unix ms.
    pub received_ms: i64,
    /// Connection generation it arrived on; acknowledgements go only to the same connection.
    pub generation: u64,
}

/// Committer settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// Largest telemetry payload, bytes.
    pub max_payload_bytes: usize,
    /// Most messages per batch.
    pub batch_max: usize,
    /// Longest wait for a batch to fill.
    pub linger: Duration,
    /// Sessions idle this long are closed.
    pub inactivity_timeout: Duration,
}

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Telemetry journaled.
    pub accepted: u64,
    /// Telemetry already journaled.
    pub duplicates: u64,
    /// Messages quarantined.
    pub quarantined: u64,
    /// Sessions closed.
    pub closed: u64,
}

type SessionKey = (String, String);

/// Live state plus the journal.
pub struct Pipeline {
    journal: Journal,
    policy: PolicyHandle,
    recorded_version: String,
    metrics: Arc<Metrics>,
    settings: Settings,
    sessions: HashMap<SessionKey, Session>,
    last_activity: HashMap<SessionKey, i64>,
    devices: HashMap<String, Device>,
    cartridges: HashMap<String, Cartridge>,
    last_sweep: Instant,
    live: LiveSender,
}

/// Most cartridges kept in memory; the journal has them all.
const CARTRIDGE_CACHE: usize = 100_000;

impl Pipeline {
    /// Loads the live state (open sessions, devices) from the journal.
    pub fn open(
        journal: Journal,
        policy: PolicyHandle,
        metrics: Arc<Metrics>,
        settings: Settings,
        live: LiveSender,
    ) -> journal::Result<Self> {
        let mut p = Self {
            journal,
            policy,
            recorded_version: String::new(),
            metrics,
            settings,
            sessions: HashMap::new(),
            last_activity: HashMap::new(),
            devices: HashMap::new(),
            cartridges: HashMap::new(),
            last_sweep: Instant::now(),
            live,
        };
        p.reload_state()?;
        Ok(p)
    }

    fn reload_state(&mut self) -> journal::Result<()> {
        let now = now_ms();
        self.sessions.clear();
        self.last_activity.clear();
        for s in self.journal.open_sessions()? {
            let key = (s.device_id.clone(), s.session_id.clone());
            self.last_activity.insert(key.clone(), now);
            self.sessions.insert(key, s);
        }
        self.devices = self
            .journal
            .devices()?
            .into_iter()
            .map(|d| (d.device_id.clone(), d))
            .collect();
        self.cartridges.clear();
        self.metrics.sessions_open.set(self.sessions.len() as i64);
        Ok(())
    }

    /// The journal (for read-only queries between batches).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Processes and commits one batch. On error nothing of the batch is kept, the live
    /// state is reloaded from the journal, and the caller must not acknowledge the batch.
    pub fn commit(&mut self, batch: &[Inflight]) -> journal::Result<Outcome> {
        let started = Instant::now();
        let result = self.try_commit(batch);
        if result.is_err() {
            self.reload_state()?;
        } else {
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_size.observe(batch.len() as f64);
        }
        result
    }

    fn try_commit(&mut self, batch: &[Inflight]) -> journal::Result<Outcome> {
        let loaded = self.policy.current();
        let mut work = Work::default();
        let mut out = Outcome::default();
        let tx = self.journal.batch()?;
        if self.recorded_version != loaded.version() {
            tx.put_policy_version(loaded.version(), now_ms(), loaded.text())?;
        }
        let limits = Limits {
            max_payload_bytes: self.settings.max_payload_bytes,
            mechanical_max_mm: loaded.mechanical_max_mm(),
        };
        let mut state = State {
            sessions: &mut self.sessions,
            last_activity: &mut self.last_activity,
            devices: &mut self.devices,
            cartridges: &mut self.cartridges,
            metrics: &self.metrics,
        };
        for m in batch {
            let topic = m.publish.topic.as_str();
            match decode::decode(topic, &m.publish.payload, &limits) {
                Err(bad) => {
                    tx.quarantine(
                        m.received_ms,
                        topic,
                        &m.publish.payload,
                        bad.kind(),
                        &bad.to_string(),
                    )?;
                    out.quarantined += 1;
                    work.quarantined.push(bad.kind());
                }
                Ok(Inbound::StatusCleared) => {}
                Ok(Inbound::Status {
                    clinic_id,
                    device_id,
                    online,
                }) => {
                    let d = state
                        .devices
                        .entry(device_id.clone())
                        .or_insert_with(|| Device::new(&clinic_id, &device_id));
                    d.set_status(online, m.received_ms);
                    work.devices.insert(device_id);
                }
                Ok(Inbound::Telemetry(r)) => {
                    let v = verdict(&loaded, &r);
                    if tx.insert_sample(&r, &v, m.received_ms)? {
                        out.accepted += 1;
                        state.apply(&tx, &loaded, &r, &v, m.received_ms, &mut work)?;
                        work.events.push(LiveEvent::Sample {
                            reading: Arc::new(*r),
                            verdict: Arc::new(v),
                            received_ms: m.received_ms,
                        });
                    } else {
                        out.duplicates += 1;
                    }
                }
            }
        }
        let committed_ms = now_ms();
        for key in std::mem::take(&mut work.to_close) {
            if let Some(closed) = state.close(&tx, &key, CloseReason::Ended)? {
                out.closed += 1;
                work.closed(closed, committed_ms);
            }
        }
        for key in &work.sessions {
            if let Some(s) = state.sessions.get(key) {
                tx.put_session(s, None)?;
                if work.violations.contains(key) {
                    work.events.push(LiveEvent::Violation {
                        session: Arc::new(s.clone()),
                        final_: false,
                        committed_ms,
                    });
                }
            }
        }
        for id in &work.devices {
            if let Some(d) = state.devices.get(id) {
                tx.put_device(d)?;
                work.events.push(LiveEvent::Device(Arc::new(d.clone())));
            }
        }
        for id in &work.cartridges {
            if let Some(c) = state.cartridges.get(id) {
                tx.put_cartridge(c)?;
            }
        }
        tx.commit()?;
        for e in work.events {
            let _ = self.live.send(e);
        }
        for kind in work.quarantined {
            self.metrics.quarantine(kind);
        }
        if self.cartridges.len() > CARTRIDGE_CACHE {
            self.cartridges.clear();
        }
        self.recorded_version = loaded.version().to_owned();
        self.metrics.received.inc_by(batch.len() as u64);
        self.metrics.accepted.inc_by(out.accepted);
        self.metrics.duplicates.inc_by(out.duplicates);
        self.metrics.sessions_open.set(self.sessions.len() as i64);
        Ok(out)
    }

    /// Closes sessions idle for longer than the inactivity timeout (at most once a second).
    pub fn sweep(&mut self) -> journal::Result<u64> {
        if self.last_sweep.elapsed() < Duration::from_secs(1) {
            return Ok(0);
        }
        self.last_sweep = Instant::now();
        let cutoff = now_ms() - self.settings.inactivity_timeout.as_millis() as i64;
        let idle: Vec<SessionKey> = self
            .last_activity
            .iter()
            .filter(|(_, t)| **t < cutoff)
            .map(|(k, _)| k.clone())
            .collect();
        if idle.is_empty() {
            return Ok(0);
        }
        let tx = self.journal.batch()?;
        let mut state = State {
            sessions: &mut self.sessions,
            last_activity: &mut self.last_activity,
            devices: &mut self.devices,
            cartridges: &mut self.cartridges,
            metrics: &self.metrics,
        };
        let mut work = Work::default();
        let committed_ms = now_ms();
        let mut closed = 0;
        for key in &idle {
            if let Some(s) = state.close(&tx, key, CloseReason::Inactive)? {
                closed += 1;
                work.closed(s, committed_ms);
            }
        }
        tx.commit()?;
        for e in work.events {
            let _ = self.live.send(e);
        }
        self.metrics.sessions_open.set(self.sessions.len() as i64);
        Ok(closed)
    }

    /// Journal size for the metrics.
    pub fn update_size_metric(&self) {
        if let Ok(bytes) = self.journal.size_bytes() {
            self.metrics.journal_bytes.set(bytes as i64);
        }
    }
}

/// The policy's verdict on a reading, in the form stored with it.
pub fn verdict(policy: &Policy, r: &Reading) -> Verdict {
    let j = policy.judge(&SampleContext {
        clinic_id: &r.clinic_id,
        device_id: &r.device_id,
        claimed_class: r.claimed_class,
        operator_id: &r.operator_id,
        zone: r.zone,
        depth_mm: r.depth_mm,
    });
    Verdict {
        permitted_mm: j.permitted_mm,
        binding: j.binding.as_str().to_owned(),
        device_class: if j.class == DeviceClass::Unspecified {
            "unspecified".to_owned()
        } else {
            j.class.short_name()
        },
        exceeded: j.exceeded,
        unknown_operator: j.unknown_operator,
        unregistered_device: j.unregistered_device,
        class_mismatch: j.class_mismatch,
        policy_version: policy.version().to_owned(),
    }
}

/// What a batch touched, to be written before commit.
#[derive(Default)]
struct Work {
    sessions: HashSet<SessionKey>,
    devices: HashSet<String>,
    cartridges: HashSet<String>,
    to_close: Vec<SessionKey>,
    violations: HashSet<SessionKey>,
    quarantined: Vec<&'static str>,
    events: Vec<LiveEvent>,
}

impl Work {
    fn closed(&mut self, s: Session, committed_ms: i64) {
        let s = Arc::new(s);
        if s.exceeded() {
            self.events.push(LiveEvent::Violation {
                session: s.clone(),
                final_: true,
                committed_ms,
            });
        }
        self.events.push(LiveEvent::SessionClosed(s));
    }
}

/// Borrowed live state for one transaction.
struct State<'a> {
    sessions: &'a mut HashMap<SessionKey, Session>,
    last_activity: &'a mut HashMap<SessionKey, i64>,
    devices: &'a mut HashMap<String, Device>,
    cartridges: &'a mut HashMap<String, Cartridge>,
    metrics: &'a Metrics,
}

impl State<'_> {
    fn apply(
        &mut self,
        tx: &Batch<'_>,
        policy: &Policy,
        r: &Reading,
        v: &Verdict,
        received_ms: i64,
        work: &mut Work,
    ) -> journal::Result<()> {
        self.devices
            .entry(r.device_id.clone())
            .or_insert_with(|| Device::new(&r.clinic_id, &r.device_id))
            .observe(r, v, received_ms);
        work.devices.insert(r.device_id.clone());
        if !r.session_id.is_empty() {
            let key = (r.device_id.clone(), r.session_id.clone());
            if !self.sessions.contains_key(&key) {
                let s = match tx.session(&r.device_id, &r.session_id)? {
                    Some((stored, _)) => stored,
                    None => Session::new(r, v),
                };
                self.sessions.insert(key.clone(), s);
            }
            if let Some(s) = self.sessions.get_mut(&key) {
                let change = s.observe(r, v);
                if change.newly_exceeded {
                    self.metrics.violations.inc();
                }
                if change.violation_updated {
                    work.violations.insert(key.clone());
                }
            }
            self.last_activity.insert(key.clone(), received_ms);
            if r.event == Event::SessionEnd {
                work.to_close.push(key.clone());
            }
            work.sessions.insert(key);
        }
        if !r.cartridge_id.is_empty() {
            if !self.cartridges.contains_key(&r.cartridge_id) {
                let c = match tx.cartridge(&r.cartridge_id)? {
                    Some(c) => c,
                    None => Cartridge::new(r, policy.rated_strokes(&r.cartridge_model)),
                };
                self.cartridges.insert(r.cartridge_id.clone(), c);
            }
            if let Some(c) = self.cartridges.get_mut(&r.cartridge_id) {
                for e in c.observe(r) {
                    tx.cartridge_event(c, &e, r)?;
                    self.metrics.cartridge_event(e.kind());
                }
            }
            work.cartridges.insert(r.cartridge_id.clone());
        }
        Ok(())
    }

    /// Closes a session (returning its final record): refolds its journaled samples in `seq` order for the exact final
    /// record, and appends the violation (if any) and the session to the audit chain.
    fn close(
        &mut self,
        tx: &Batch<'_>,
        key: &SessionKey,
        reason: CloseReason,
    ) -> journal::Result<Option<Session>> {
        self.last_activity.remove(key);
        let Some(live) = self.sessions.remove(key) else {
            return Ok(None);
        };
        let (samples, last_id) = tx.session_samples(&key.0, &key.1)?;
        let Some((first_r, first_v)) = samples.first() else {
            return Ok(None);
        };
        let mut s = Session::new(first_r, first_v);
        for (r, v) in &samples {
            s.observe(r, v);
        }
        s.ended |= live.ended;
        let (n, digest) = tx.samples_digest(&key.0, &key.1, last_id)?;
        if let Some(e) = &s.violation {
            tx.append_audit(
                "violation",
                &json!({
                    "session_id": s.session_id, "device_id": s.device_id, "clinic_id": s.clinic_id,
                    "operator_id": s.operator_id, "device_class": s.device_class,
                    "limit_mm": e.limit_mm, "binding": e.binding, "peak_depth_mm": e.peak_depth_mm,
                    "first_above_ms": e.first_above_ms, "last_above_ms": e.last_above_ms,
                    "strokes_above": e.strokes_above, "samples_above": e.samples_above,
                    "policy_version": e.policy_version,
                }),
            )?;
        }
        tx.append_audit(
            "session",
            &json!({
                "session_id": s.session_id, "device_id": s.device_id, "clinic_id": s.clinic_id,
                "operator_id": s.operator_id, "device_class": s.device_class,
                "cartridge_id": s.cartridge_id, "started_ms": s.started_ms, "last_ms": s.last_ms,
                "strokes": s.strokes, "max_depth_mm": s.max_depth_mm, "permitted_mm": s.permitted_mm,
                "exceeded": s.exceeded(), "close_reason": reason.as_str(),
                "messages": n, "last_sample_id": last_id, "samples_digest": digest,
            }),
        )?;
        tx.put_session(&s, Some((reason, &digest)))?;
        Ok(Some(s))
    }
}

/// Runs the committer until `rx` is closed and drained: batches, commits, then hands each
/// committed message to `try_ack`. The committer never waits on an acknowledgement (the
/// connection task that sends them may itself be waiting for the committer): what cannot be
/// queued now is retried on the next turn. A batch that cannot be committed is retried;
/// after `MAX_COMMIT_ATTEMPTS` failures the committer stops with the error, acknowledging
/// nothing of that batch.
pub fn run(
    mut pipeline: Pipeline,
    rx: flume::Receiver<Inflight>,
    mut try_ack: impl FnMut(&Inflight) -> bool,
) -> journal::Result<()> {
    const MAX_COMMIT_ATTEMPTS: u32 = 5;
    /// How long the last acknowledgements may take at shutdown.
    const ACK_DRAIN: Duration = Duration::from_secs(5);
    let settings = pipeline.settings;
    let mut batch = Vec::with_capacity(settings.batch_max);
    let mut unacked: VecDeque<Inflight> = VecDeque::new();
    let mut last_size_update = Instant::now();
    let mut ack_pending = |unacked: &mut VecDeque<Inflight>| {
        while let Some(m) = unacked.front() {
            if !try_ack(m) {
                break;
            }
            unacked.pop_front();
        }
    };
    loop {
        ack_pending(&mut unacked);
        let wait = if unacked.is_empty() {
            Duration::from_millis(500)
        } else {
            Duration::from_millis(2)
        };
        match rx.recv_timeout(wait) {
            Ok(m) => batch.push(m),
            Err(flume::RecvTimeoutError::Timeout) => {}
            Err(flume::RecvTimeoutError::Disconnected) => break,
        }
        if !batch.is_empty() {
            let deadline = Instant::now() + settings.linger;
            while batch.len() < settings.batch_max {
                match rx.recv_deadline(deadline) {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let mut attempt = 1;
            loop {
                match pipeline.commit(&batch) {
                    Ok(_) => break,
                    Err(e) if attempt < MAX_COMMIT_ATTEMPTS => {
                        tracing::error!(error = %e, attempt, "journal commit failed; retrying the batch");
                        std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
                        attempt += 1;
                    }
                    Err(e) => return Err(e),
                }
            }
            unacked.extend(batch.drain(..));
        }
        pipeline.sweep()?;
        if last_size_update.elapsed() > Duration::from_secs(5) {
            pipeline.update_size_metric();
            last_size_update = Instant::now();
        }
    }
    let deadline = Instant::now() + ACK_DRAIN;
    while !unacked.is_empty() && Instant::now() < deadline {
        ack_pending(&mut unacked);
        std::thread::sleep(Duration::from_millis(2));
    }
    pipeline.update_size_metric();
    Ok(())
}
