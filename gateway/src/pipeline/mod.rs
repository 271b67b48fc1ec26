//! The committer: takes batches of decoded MQTT messages, judges them, updates sessions,
//! cartridges and the fleet, writes all of it to the journal in one transaction, and only
//! then acknowledges the messages to the broker.
//!
//! It runs on its own thread and owns the journal's write connection and the live state
//! ([`state`]). Decoding and validation happen before, on the MQTT connection's task, so this
//! thread — the one serial stage of ingest — does only what must be serial.

mod config;
mod digest;
mod records;
mod state;

use std::sync::Arc;
use std::time::{Duration, Instant};

use penwatch_proto::names::ShortName;
use penwatch_proto::v1::DeviceClass;

use crate::clock::now_ms;
use crate::decode::{BadInput, Inbound, Reading};
use crate::journal::{self, Inserted, Writer};
use crate::live::{LiveEvent, LiveSender};
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyHandle, SampleContext};
use crate::sessions::{CloseReason, Verdict};

pub use config::{IngestConfig, SessionsConfig, Settings};
use state::{LiveState, Work};

/// One received message, decoded, waiting to be committed and acknowledged.
#[derive(Debug)]
pub struct Inflight {
    /// Its MQTT topic.
    pub topic: String,
    /// Its payload, kept only when it is rejected (for quarantine); empty otherwise.
    pub payload: bytes::Bytes,
    /// How its source learns that it is committed.
    pub receipt: Receipt,
    /// Gateway time it arrived, Unix ms.
    pub received_ms: i64,
    /// What it decoded to, or why it was rejected.
    pub decoded: Result<Inbound, BadInput>,
}

impl Inflight {
    /// The pen it speaks for; empty when it did not decode.
    fn pen(&self) -> &str {
        match &self.decoded {
            Ok(Inbound::Telemetry(r)) => &r.device_id,
            Ok(Inbound::Status { device_id, .. }) => device_id,
            Ok(Inbound::StatusCleared) | Err(_) => "",
        }
    }
}

/// How a committed message is acknowledged to where it came from.
#[derive(Debug, Clone)]
pub enum Receipt {
    /// An MQTT publish: its packet id (none for QoS 0) on the connection generation it arrived
    /// on; the PUBACK is sent after the commit.
    Mqtt {
        /// Connection generation; acknowledgements go only to the same connection.
        generation: u64,
        /// Packet id of a QoS 1 publish.
        pkid: Option<u16>,
    },
    /// A message of a JetStream stream: its sequence there. The commit stores the highest
    /// sequence of the batch as the stream's position, in the same transaction, and the source
    /// resumes after that position.
    Stream {
        /// The stream's name.
        stream: Arc<str>,
        /// The message's stream sequence.
        seq: u64,
    },
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
    /// Closed sessions amended by late messages.
    pub amended: u64,
}

/// Live state plus the journal.
pub struct Pipeline {
    journal: Writer,
    policy: PolicyHandle,
    recorded_version: String,
    metrics: Arc<Metrics>,
    settings: Settings,
    state: LiveState,
    last_sweep: Instant,
    live: LiveSender,
}

impl Pipeline {
    /// Loads the live state (open sessions, devices) from the journal.
    pub fn open(
        mut journal: Writer,
        policy: PolicyHandle,
        metrics: Arc<Metrics>,
        settings: Settings,
        live: LiveSender,
    ) -> journal::Result<Self> {
        let state = LiveState::load(&mut journal, metrics.clone(), settings.alerts)?;
        metrics.sessions_open.set(state.open_sessions() as i64);
        Ok(Self {
            journal,
            policy,
            recorded_version: String::new(),
            metrics,
            settings,
            state,
            last_sweep: Instant::now(),
            live,
        })
    }

    /// Processes and commits one batch. On error nothing of the batch is kept, the live
    /// state is reloaded from the journal, and the caller must not acknowledge the batch.
    pub fn commit(&mut self, batch: &[Inflight]) -> journal::Result<Outcome> {
        let started = Instant::now();
        let result = self.try_commit(batch, false);
        if result.is_err() {
            self.state = LiveState::load(
                &mut self.journal,
                self.metrics.clone(),
                self.settings.alerts,
            )?;
        } else {
            self.metrics
                .commit_seconds
                .observe(started.elapsed().as_secs_f64());
            self.metrics.batch_size.observe(batch.len() as f64);
        }
        result
    }

    /// The stream sequence the journal is committed up to in `stream` (0: none).
    pub fn stream_position(&self, stream: &str) -> journal::Result<u64> {
        self.journal.stream_position(stream)
    }

    /// Writes every pending change of the live state (at shutdown).
    pub fn flush(&mut self) -> journal::Result<()> {
        self.try_commit(&[], true).map(|_| ())
    }

    fn try_commit(&mut self, batch: &[Inflight], flush_all: bool) -> journal::Result<Outcome> {
        let loaded = self.policy.current();
        let mut work = Work::new(self.live.receiver_count() > 0);
        let mut out = Outcome::default();
        let tx = self.journal.batch()?;
        if self.recorded_version != loaded.version() {
            tx.put_policy_version(loaded.version(), now_ms(), loaded.text())?;
        }
        let mut samples = tx.samples()?;
        // Each pen's messages in turn, in the order they arrived: consecutive inserts then land
        // on the same leaf of the samples' `(pen, seq, version)` index and fold into the same
        // live records, still in the processor's caches (about an eighth less CPU per message
        // under a burst; docs/ingest-performance.md). Order across pens within a batch carries
        // no meaning: they publish on topics of their own. Acknowledgements keep arrival order.
        let mut by_pen: Vec<&Inflight> = batch.iter().collect();
        by_pen.sort_by(|a, b| a.pen().cmp(b.pen()));
        for m in by_pen {
            match &m.decoded {
                Err(bad) => {
                    tx.quarantine(
                        m.received_ms,
                        &m.topic,
                        &m.payload,
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
                    let folded = self.state.status(
                        &loaded,
                        clinic_id,
                        device_id,
                        *online,
                        m.received_ms,
                        &mut work,
                    );
                    if let Err(refused) = folded {
                        tx.quarantine(
                            m.received_ms,
                            &m.topic,
                            &m.payload,
                            refused.kind(),
                            &refused.to_string(),
                        )?;
                        out.quarantined += 1;
                        work.quarantined.push(refused.kind());
                    }
                }
                Ok(Inbound::Telemetry(r)) => {
                    let v = verdict(&loaded, r);
                    let inserted = samples.insert(r, &v, m.received_ms)?;
                    if let Inserted::Conflict { version, reset } = inserted {
                        let kind = if reset { "reset" } else { "conflict" };
                        work.conflicts.push(kind);
                        tracing::warn!(
                            device = %r.device_id,
                            seq = r.seq,
                            version,
                            kind,
                            "a message reused a journaled (device_id, seq) with different \
                             content: kept beside it, judged and flagged"
                        );
                    }
                    if inserted != Inserted::Duplicate {
                        out.accepted += 1;
                        self.state.apply(
                            &tx,
                            &loaded,
                            r,
                            &v,
                            m.received_ms,
                            inserted,
                            &mut work,
                        )?;
                        if work.live {
                            work.events.push(LiveEvent::Sample {
                                reading: r.clone(),
                                verdict: Arc::new(v),
                                received_ms: m.received_ms,
                            });
                        }
                    } else {
                        out.duplicates += 1;
                    }
                }
            }
        }
        drop(samples);
        if let Some((stream, seq)) = stream_position(batch) {
            tx.set_stream_position(stream, seq)?;
        }
        let committed_ms = now_ms();
        for key in std::mem::take(&mut work.to_close) {
            if let Some(closed) = self.state.close(&tx, &key, CloseReason::Ended)? {
                out.closed += 1;
                work.closed(closed, committed_ms);
            }
        }
        out.amended = self.state.amend(&tx, &mut work, committed_ms)?;
        self.state.write(&tx, &mut work, committed_ms, flush_all)?;
        tx.commit()?;
        for e in work.events {
            let _ = self.live.send(e);
        }
        for kind in work.quarantined {
            self.metrics.quarantine(kind);
        }
        for kind in work.conflicts {
            self.metrics.conflict(kind);
        }
        self.state.trim();
        self.recorded_version = loaded.version().to_owned();
        self.metrics.received.inc_by(batch.len() as u64);
        self.metrics.accepted.inc_by(out.accepted);
        self.metrics.duplicates.inc_by(out.duplicates);
        self.metrics
            .sessions_open
            .set(self.state.open_sessions() as i64);
        Ok(out)
    }

    /// Closes sessions idle for longer than the inactivity timeout (at most once a second).
    /// On error nothing is kept and the live state is reloaded from the journal; the next
    /// sweep tries again.
    pub fn sweep(&mut self) -> journal::Result<u64> {
        if self.last_sweep.elapsed() < Duration::from_secs(1) {
            return Ok(0);
        }
        self.last_sweep = Instant::now();
        let result = self.try_sweep();
        if result.is_err() {
            self.state = LiveState::load(
                &mut self.journal,
                self.metrics.clone(),
                self.settings.alerts,
            )?;
        }
        result
    }

    fn try_sweep(&mut self) -> journal::Result<u64> {
        let now = now_ms();
        let cutoff = now - self.settings.inactivity_timeout.as_millis() as i64;
        let idle = self.state.idle_since(cutoff);
        let silent = match self.settings.alerts.and_then(|r| r.silent_after) {
            Some(after) => self.state.newly_silent(now - after.as_millis() as i64, now),
            None => Vec::new(),
        };
        if idle.is_empty() && silent.is_empty() {
            return Ok(0);
        }
        let tx = self.journal.batch()?;
        let mut work = Work::new(self.live.receiver_count() > 0);
        let committed_ms = now_ms();
        for a in &silent {
            tx.raise_alert(a, committed_ms)?;
        }
        let mut closed = 0;
        for key in &idle {
            if let Some(s) = self.state.close(&tx, key, CloseReason::Inactive)? {
                closed += 1;
                work.closed(s, committed_ms);
            }
        }
        tx.commit()?;
        for e in work.events {
            let _ = self.live.send(e);
        }
        self.metrics
            .sessions_open
            .set(self.state.open_sessions() as i64);
        Ok(closed)
    }

    /// Records the policy in force when a reload (or the start) put in a version the
    /// journal has not recorded as in force: so the history says when it came into force even
    /// while no telemetry arrives.
    pub fn record_policy(&mut self) -> journal::Result<()> {
        let loaded = self.policy.current();
        if self.recorded_version == loaded.version() {
            return Ok(());
        }
        let tx = self.journal.batch()?;
        tx.put_policy_version(loaded.version(), now_ms(), loaded.text())?;
        tx.commit()?;
        self.recorded_version = loaded.version().to_owned();
        Ok(())
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
            j.class.short_name().to_owned()
        },
        exceeded: j.exceeded,
        unknown_operator: j.unknown_operator,
        unregistered_device: j.unregistered_device,
        class_mismatch: j.class_mismatch,
        policy_version: policy.version().to_owned(),
    }
}

/// The highest stream sequence in `batch`, with its stream, if it came from a stream.
fn stream_position(batch: &[Inflight]) -> Option<(&str, u64)> {
    batch
        .iter()
        .filter_map(|m| match &m.receipt {
            Receipt::Stream { stream, seq } => Some((&**stream, *seq)),
            Receipt::Mqtt { .. } => None,
        })
        .max_by_key(|(_, seq)| *seq)
}

/// Runs the committer until `rx` is closed and drained: batches, commits (one transaction,
/// one fsync), and only then hands each committed message to `ack`, which must not wait.
///
/// A batch that cannot be committed (disk full, I/O error) is held and retried until it
/// commits: meanwhile nothing is acknowledged, the queue fills and the source stops reading,
/// so the broker keeps every later message; `penwatch_journal_write_failing` is 1 and the log
/// names the cause. Ingest resumes by itself once the disk has room. At shutdown a batch
/// that still cannot be committed is given up unacknowledged (the broker redelivers it).
pub fn run(
    mut pipeline: Pipeline,
    rx: flume::Receiver<Inflight>,
    mut ack: impl FnMut(&Inflight),
) -> journal::Result<()> {
    let settings = pipeline.settings;
    let mut trouble = Trouble::default();
    let mut batch = Vec::with_capacity(settings.batch_max);
    let mut last_size_update = Instant::now();
    // Warned once per run of failures to record a new policy version.
    let mut policy_unrecorded = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
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
            loop {
                match pipeline.commit(&batch) {
                    Ok(_) => break,
                    Err(e) if rx.is_disconnected() => return Err(e),
                    Err(e) => trouble.failed(&e, &pipeline.metrics),
                }
            }
            trouble.recovered(&pipeline.metrics);
            // Durable now: only now may the broker forget these messages.
            batch.drain(..).for_each(|m| ack(&m));
        }
        if let Err(e) = pipeline.sweep() {
            tracing::warn!(error = %e, "closing idle sessions failed; retrying in a second");
        }
        match pipeline.record_policy() {
            Ok(()) => policy_unrecorded = false,
            Err(e) if !policy_unrecorded => {
                tracing::warn!(error = %e, "recording the policy in force failed; retrying");
                policy_unrecorded = true;
            }
            Err(_) => {}
        }
        if last_size_update.elapsed() > Duration::from_secs(5) {
            pipeline.update_size_metric();
            last_size_update = Instant::now();
        }
    }
    pipeline.flush()?;
    pipeline.update_size_metric();
    Ok(())
}

/// The committer's view of a journal that cannot commit: when it started, how long to wait
/// before the next attempt.
#[derive(Default)]
struct Trouble {
    since: Option<Instant>,
    last_logged: Option<Instant>,
    failures: u32,
}

impl Trouble {
    /// First wait after a failed commit; doubled per failure up to [`Self::MAX_WAIT`].
    const FIRST_WAIT: Duration = Duration::from_millis(100);
    const MAX_WAIT: Duration = Duration::from_secs(5);
    /// How often a commit that keeps failing is logged again.
    const LOG_EVERY: Duration = Duration::from_secs(30);

    /// Records a failed commit, raises the alarm, logs the cause, and waits before the retry.
    fn failed(&mut self, e: &journal::JournalError, metrics: &Metrics) {
        metrics.journal_commit_failures.inc();
        metrics.journal_write_failing.set(1);
        let now = Instant::now();
        let since = *self.since.get_or_insert(now);
        let cause = e.storage_cause().unwrap_or("the journal refused the batch");
        if self.last_logged.is_none_or(|t| now - t >= Self::LOG_EVERY) {
            tracing::error!(
                cause,
                error = %e,
                failing_for_s = (now - since).as_secs(),
                "journal cannot commit: nothing is acknowledged, the broker keeps the messages; retrying"
            );
            self.last_logged = Some(now);
        }
        let wait = Self::FIRST_WAIT
            .saturating_mul(1 << self.failures.min(6))
            .min(Self::MAX_WAIT);
        self.failures += 1;
        std::thread::sleep(wait);
    }

    /// Clears the alarm after a successful commit.
    fn recovered(&mut self, metrics: &Metrics) {
        if let Some(since) = self.since.take() {
            metrics.journal_write_failing.set(0);
            tracing::info!(
                after_s = since.elapsed().as_secs(),
                failed_commits = self.failures,
                "journal commits again; acknowledging the held messages"
            );
        }
        self.last_logged = None;
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use penwatch_proto::v1::{DeviceClass, Event};

    use super::*;
    use crate::decode::Encoding;
    use crate::journal::{Reader, Sync};

    fn reading(seq: u64, event: Event, depth_mm: f64) -> Reading {
        Reading {
            device_id: "pen-1".into(),
            clinic_id: "c01".into(),
            claimed_class: DeviceClass::Salon,
            model: "m".into(),
            firmware: "f".into(),
            operator_id: "op".into(),
            session_id: "s-1".into(),
            cartridge_id: "cart".into(),
            cartridge_model: "N12".into(),
            seq,
            timestamp_ms: 1_000 * seq as i64,
            event,
            depth_mm,
            session_strokes: 100 * seq,
            cartridge_strokes: 100 * seq,
            speed_hz: 100.0,
            battery_pct: 50.0,
            zone: None,
            encoding: Encoding::Protobuf,
        }
    }

    fn inflight(r: Reading) -> Inflight {
        Inflight {
            topic: "t".into(),
            payload: bytes::Bytes::new(),
            receipt: Receipt::Mqtt {
                generation: 0,
                pkid: Some(1),
            },
            received_ms: now_ms(),
            decoded: Ok(Inbound::Telemetry(Arc::new(r))),
        }
    }

    fn pipeline(path: &Path) -> Pipeline {
        let settings = Settings {
            batch_max: 100,
            linger: Duration::from_millis(1),
            inactivity_timeout: Duration::from_secs(600),
            alerts: None,
        };
        Pipeline::open(
            Writer::open(path, Sync::Normal).expect("journal"),
            PolicyHandle::new(Policy::defaults()),
            Metrics::new(),
            settings,
            crate::live::channel(),
        )
        .expect("pipeline")
    }

    /// The chain's entry kinds, in order, after the scope entry.
    fn kinds(path: &Path) -> Vec<String> {
        let conn = rusqlite::Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT kind FROM audit_chain WHERE kind != 'scope' ORDER BY seq")
            .expect("query");
        stmt.query_map([], |r| r.get(0))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("kinds")
    }

    #[test]
    fn a_batch_keeps_each_pens_arrival_order_whatever_lies_between_its_messages() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let mut p = pipeline(&path);
        let of = |device: &str, seq, depth_mm| Reading {
            device_id: device.into(),
            ..reading(seq, Event::Sample, depth_mm)
        };
        let batch = [
            of("pen-2", 1, 0.5),
            of("pen-1", 1, 0.5),
            of("pen-2", 2, 0.5),
            of("pen-1", 1, 0.7),
            of("pen-1", 2, 0.5),
        ];
        let out = p.commit(&batch.map(inflight)).expect("commits");
        assert_eq!(out.accepted, 5);

        let conn = rusqlite::Connection::open(&path).expect("open");
        let mut stmt = conn
            .prepare(
                "SELECT seq, version, depth_mm FROM samples WHERE device_id = 'pen-1' ORDER BY id",
            )
            .expect("query");
        let rows: Vec<(i64, i64, f64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("samples");
        assert_eq!(
            rows,
            [(1, 0, 0.5), (1, 1, 0.7), (2, 0, 0.5)],
            "the first content of a seq stays its version 0, journaled in arrival order"
        );
    }

    #[test]
    fn late_messages_committed_together_are_one_amendment_and_the_record_stays_closed_once() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let mut p = pipeline(&path);
        let session = [
            reading(1, Event::SessionStart, 0.0),
            reading(2, Event::Sample, 0.5),
            reading(3, Event::SessionEnd, 0.0),
        ];
        let out = p
            .commit(&session.map(inflight))
            .expect("the session commits");
        assert_eq!((out.closed, out.amended), (1, 0));

        let late = [
            reading(4, Event::Sample, 0.6),
            reading(5, Event::Sample, 1.4),
            reading(6, Event::Sample, 0.5),
        ];
        let out = p.commit(&late.clone().map(inflight)).expect("late batch");
        assert_eq!((out.accepted, out.closed, out.amended), (3, 0, 1));
        assert_eq!(
            p.state.devices.get("pen-1").expect("pen").session_id,
            "",
            "the pen is not put back in the closed session"
        );
        let again = p.commit(&late.map(inflight)).expect("redelivered");
        assert_eq!((again.duplicates, again.amended), (3, 0));
        let out = p
            .commit(&[inflight(reading(7, Event::SessionEnd, 0.0))])
            .expect("another late batch");
        assert_eq!(out.amended, 1);
        assert_eq!(p.state.open_sessions(), 0, "never reopened");
        assert_eq!(
            kinds(&path),
            ["session", "amendment", "amendment"],
            "one record, one amendment per batch"
        );

        let reader = Reader::open(&path).expect("reader");
        let amendments = reader.amendments("pen-1", "s-1").expect("amendments");
        let a: Vec<_> = amendments
            .iter()
            .map(|a| {
                let x = &a.amendment;
                (
                    x.number,
                    x.messages,
                    x.first_seq,
                    x.last_seq,
                    x.new_violation,
                )
            })
            .collect();
        assert_eq!(a, [(1, 3, 4, 6, true), (2, 1, 7, 7, false)]);
        let v = reader.verify().expect("verify");
        assert!(v.ok(), "{:?}", v.first_broken);

        // After a restart, late data still amends it, numbered on.
        drop(p);
        let mut p = pipeline(&path);
        let out = p
            .commit(&[inflight(reading(8, Event::Sample, 0.5))])
            .expect("after a restart");
        assert_eq!((out.closed, out.amended), (0, 1));
        let numbers: Vec<u64> = reader
            .amendments("pen-1", "s-1")
            .expect("amendments")
            .iter()
            .map(|a| a.amendment.number)
            .collect();
        assert_eq!(numbers, [1, 2, 3]);
        assert!(reader.verify().expect("verify").ok());
    }

    #[test]
    fn a_session_digest_kept_while_journaling_or_read_back_is_the_one_verify_recomputes() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("j.db");
        let mut p = pipeline(&path);
        let pen = |device: &str, seq: u64, event: Event, depth_mm: f64| Reading {
            device_id: device.into(),
            session_id: format!("s-{device}"),
            zone: Some(penwatch_proto::v1::Zone::Cheek),
            depth_mm,
            ..reading(seq, event, depth_mm)
        };
        // In order over two batches (kept), out of order (read back), and with a
        // conflicting version of one `seq` (read back).
        p.commit(&[
            inflight(pen("in-order", 1, Event::SessionStart, 0.0)),
            inflight(pen("in-order", 2, Event::Sample, 0.25)),
            inflight(pen("late-seq", 1, Event::SessionStart, 0.0)),
            inflight(pen("late-seq", 3, Event::Sample, 0.5)),
            inflight(pen("conflict", 1, Event::SessionStart, 0.0)),
            inflight(pen("conflict", 2, Event::Sample, 0.5)),
        ])
        .expect("first batch");
        let out = p
            .commit(&[
                inflight(pen("in-order", 3, Event::Sample, 2.0)),
                inflight(pen("in-order", 4, Event::SessionEnd, 0.0)),
                inflight(pen("late-seq", 2, Event::Sample, 0.75)),
                inflight(pen("late-seq", 4, Event::SessionEnd, 0.0)),
                inflight(pen("conflict", 2, Event::Sample, 0.6)),
                inflight(pen("conflict", 3, Event::SessionEnd, 0.0)),
            ])
            .expect("second batch");
        assert_eq!(out.closed, 3);
        let v = Reader::open(&path)
            .expect("reader")
            .verify()
            .expect("verify");
        assert!(v.ok(), "{:?}", v.first_broken);
        assert_eq!(v.digests_unchecked, 0);
        let sessions = kinds(&path).iter().filter(|k| *k == "session").count();
        assert_eq!(sessions, 3);
    }
}
