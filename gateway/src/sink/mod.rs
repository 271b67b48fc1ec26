//! The InfluxDB sink: store-and-forward from the journal.
//!
//! The forwarder reads each journal stream (samples by id, the audit chain's session and
//! violation records by seq, cartridge events by id) from its cursor, writes one batch per
//! stream per round (so a long backlog of one never starves the others, and live data is at
//! most one round behind a drain), and moves a stream's cursor only after InfluxDB answered
//! 2xx. Device status is snapshotted periodically (not backlogged: it is a gauge).
//!
//! - 5xx, 429, 408, timeouts and connection errors: the same batch is retried with exponential
//!   backoff and jitter, honouring `Retry-After`.
//! - 400 / 413 (points refused): the batch is split in halves until the refused points are
//!   isolated; those are logged with InfluxDB's error text, counted, and skipped (they stay
//!   in the journal).
//! - 401, 403, 404 and other 4xx: reported loudly, forwarding halts with the cursor unmoved and
//!   is retried every `halt_retry_s`, so fixing the target resumes it without a restart.
//!
//! The cursors are stored in the journal at most once a second while batches keep coming, and
//! whenever the forwarder idles or stops: storing one takes the journal's write lock, which the
//! committer holds for most of each second under load, and storing after every batch kept the
//! forwarder waiting for it (about 1.7 s of a 9 s burst; README, Benchmarks). After a crash the
//! points of that second are written again, and InfluxDB overwrites each with itself.

mod config;
mod influx;
pub mod schema;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use bytes::Bytes;
use futures::future::OptionFuture;
use tokio_util::sync::CancellationToken;

pub use config::{Api, InfluxConfig};
pub use influx::{WriteError, Writer};
pub use schema::Precision;

use crate::clock::now_ms;
use crate::journal::forward::Backlog;
use crate::journal::{self, Upkeep};
use crate::metrics::Metrics;

/// Sink errors.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The HTTP client could not be built.
    #[error("InfluxDB client: {0}")]
    Client(String),
    /// The journal failed.
    #[error(transparent)]
    Journal(#[from] journal::JournalError),
    /// A journal worker thread died.
    #[error("journal reader: {0}")]
    Worker(String),
}

/// Journal records not yet forwarded, over every stream, as the forwarder last counted them.
pub fn backlog(metrics: &Metrics) -> i64 {
    Stream::ALL
        .iter()
        .map(|s| {
            metrics
                .sink_backlog
                .get_or_create(&vec![("stream", s.name().to_owned())])
                .get()
        })
        .sum()
}

/// A journal stream the forwarder follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Samples,
    Audit,
    CartridgeEvents,
}

impl Stream {
    const ALL: [Stream; 3] = [Stream::Samples, Stream::Audit, Stream::CartridgeEvents];

    fn name(self) -> &'static str {
        match self {
            Stream::Samples => "samples",
            Stream::Audit => "audit",
            Stream::CartridgeEvents => "cartridge_events",
        }
    }

    fn cursor(self) -> &'static str {
        match self {
            Stream::Samples => SAMPLES_CURSOR,
            Stream::Audit => "influx:audit",
            Stream::CartridgeEvents => "influx:cartridge_events",
        }
    }

    fn backlog(self) -> Backlog {
        match self {
            Stream::Samples => Backlog::Samples,
            Stream::Audit => Backlog::Audit,
            Stream::CartridgeEvents => Backlog::CartridgeEvents,
        }
    }
}

/// The `sink_cursors` row of the samples stream (retention prunes only below it).
pub const SAMPLES_CURSOR: &str = "influx:samples";

/// One batch read from the journal and encoded.
struct Encoded {
    /// Line protocol; retries and split halves share it rather than copy it.
    text: Bytes,
    /// End offset of each line in `text`.
    ends: Vec<usize>,
    /// Journal rows read (a row may yield no point).
    rows: usize,
    last_id: i64,
}

/// The forwarder stopped because the gateway is shutting down.
struct Stopped;

/// A job for the forwarder's journal thread.
type DbJob = Box<dyn FnOnce(&Upkeep) + Send>;

/// The forwarder's own journal connection, on a thread of its own: the reads of every batch
/// happen on one thread (with tokio's blocking pool they wandered over many, and each kept the
/// memory it had allocated for a batch).
#[derive(Clone)]
struct Db(std::sync::mpsc::Sender<DbJob>);

impl Db {
    /// Opens the connection on a new thread, which ends when the last handle is dropped.
    fn open(journal_path: &Path) -> Result<Self, SinkError> {
        let journal = Upkeep::open(journal_path)?;
        let (tx, rx) = std::sync::mpsc::channel::<DbJob>();
        std::thread::Builder::new()
            .name("sink-journal".into())
            .spawn(move || {
                for job in rx {
                    job(&journal);
                }
            })
            .map_err(|e| SinkError::Worker(e.to_string()))?;
        Ok(Self(tx))
    }

    /// Runs `f` on the connection's thread.
    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Upkeep) -> journal::Result<T> + Send + 'static,
    ) -> Result<T, SinkError> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.0
            .send(Box::new(move |j| {
                let _ = done.send(f(j));
            }))
            .map_err(|_| SinkError::Worker("the journal thread stopped".into()))?;
        Ok(result
            .await
            .map_err(|_| SinkError::Worker("the journal thread stopped".into()))??)
    }
}

/// The store-and-forward loop for one InfluxDB target.
pub struct Forwarder {
    config: InfluxConfig,
    db: Db,
    writer: Writer,
    metrics: Arc<Metrics>,
    failures: u32,
    /// Delays before retrying a temporary error, restarted after each success.
    backoff: ExponentialBackoff,
    /// Per stream, the batch after its cursor, read while the one before it was written
    /// (read ahead only behind a full batch, and kept only once the cursor reached it).
    ahead: [Option<Encoded>; Stream::ALL.len()],
    /// Per stream, the last journal id InfluxDB confirmed (`None` until read from the journal).
    cursors: [Option<i64>; Stream::ALL.len()],
    /// Per stream, the cursor as the journal holds it.
    stored: [Option<i64>; Stream::ALL.len()],
    /// When the cursors were last stored.
    stored_at: Instant,
}

/// How often the cursors are stored while batches keep coming.
const STORE_CURSORS_EVERY: Duration = Duration::from_secs(1);

/// First retry delay of a temporary error.
const BACKOFF_BASE: Duration = Duration::from_millis(250);

/// Exponential delays from [`BACKOFF_BASE`] doubling up to `retry_max_s`, with jitter, never
/// giving up (the journal keeps the backlog).
fn backoff(config: &InfluxConfig) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(BACKOFF_BASE)
        .with_max_delay(Duration::from_secs(config.retry_max_s))
        .with_jitter()
        .without_max_times()
        .build()
}

impl Forwarder {
    /// Opens its own journal connection and builds the HTTP client.
    pub fn new(
        config: &InfluxConfig,
        journal_path: &Path,
        metrics: Arc<Metrics>,
    ) -> Result<Self, SinkError> {
        Ok(Self {
            config: config.clone(),
            db: Db::open(journal_path)?,
            writer: Writer::new(config)?,
            metrics,
            failures: 0,
            backoff: backoff(config),
            ahead: Default::default(),
            cursors: Default::default(),
            stored: Default::default(),
            stored_at: Instant::now(),
        })
    }

    /// Forwards until `stop` is cancelled. Nothing is lost on stop: cursors only ever
    /// moved after a confirmed write, and a batch in flight is written again next time.
    pub async fn run(mut self, stop: CancellationToken) {
        tracing::info!(url = %self.config.url, api = ?self.config.api, "InfluxDB sink starting");
        self.forward(&stop).await;
        if let Err(e) = self.store_cursors(true).await {
            tracing::warn!(error = %e, "InfluxDB sink could not store its cursors on stopping; the last points will be written again");
        }
    }

    /// The forwarding loop of [`Forwarder::run`].
    async fn forward(&mut self, stop: &CancellationToken) {
        let status_every = Duration::from_secs(self.config.status_interval_s);
        let mut next_status = Instant::now();
        let mut next_backlog = Instant::now();
        loop {
            let mut busy = false;
            for stream in Stream::ALL {
                match self.forward_batch(stream, stop).await {
                    Ok(Ok(rows)) => busy |= rows >= self.config.batch_size,
                    Ok(Err(Stopped)) => return,
                    Err(e) => {
                        tracing::error!(error = %e, stream = stream.name(), "InfluxDB sink cannot read the journal; retrying");
                        self.metrics.sink_error("journal");
                        if pause(stop, Duration::from_secs(5)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            if !status_every.is_zero() && Instant::now() >= next_status {
                next_status = Instant::now() + status_every;
                match self.snapshot_devices(stop).await {
                    Ok(Ok(())) => {}
                    Ok(Err(Stopped)) => return,
                    Err(e) => tracing::warn!(error = %e, "device status snapshot skipped"),
                }
            }
            if !busy || Instant::now() >= next_backlog {
                next_backlog = Instant::now() + Duration::from_secs(1);
                self.update_backlog().await;
            }
            if !busy {
                if let Err(e) = self.store_cursors(true).await {
                    tracing::error!(error = %e, "InfluxDB sink cannot store its cursors; retrying");
                    self.metrics.sink_error("journal");
                }
                if pause(stop, Duration::from_millis(self.config.linger_ms))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }

    /// Writes one batch of `stream` after its cursor and moves the cursor; the number of rows
    /// read. Behind a full batch the next one is read and encoded while this one is written,
    /// so InfluxDB and the journal work at the same time while a backlog drains.
    async fn forward_batch(
        &mut self,
        stream: Stream,
        stop: &CancellationToken,
    ) -> Result<Result<usize, Stopped>, SinkError> {
        let (limit, precision) = (self.config.batch_size, self.config.precision);
        let read = |db: Db, after: i64| async move {
            db.run(move |j| read_batch(j, stream, after, limit, precision))
                .await
        };
        let batch = match self.ahead[stream as usize].take() {
            Some(batch) => batch,
            None => read(self.db.clone(), self.cursor(stream).await?).await?,
        };
        if batch.rows == 0 {
            return Ok(Ok(0));
        }
        let ahead: OptionFuture<_> = (batch.rows >= limit)
            .then(|| read(self.db.clone(), batch.last_id))
            .into();
        let (written, ahead) = tokio::join!(self.send(&batch, stop), ahead);
        let written = match written {
            Ok(n) => n,
            Err(Stopped) => return Ok(Err(Stopped)),
        };
        self.cursors[stream as usize] = Some(batch.last_id);
        self.store_cursors(false).await?;
        self.metrics.sink_written(stream.name(), written as u64);
        // A failed read ahead is read again, from the cursor, next time.
        self.ahead[stream as usize] = ahead.and_then(Result::ok);
        Ok(Ok(batch.rows))
    }

    /// The last journal id of `stream` InfluxDB confirmed: from the journal the first time.
    async fn cursor(&mut self, stream: Stream) -> Result<i64, SinkError> {
        let i = stream as usize;
        if let Some(id) = self.cursors[i] {
            return Ok(id);
        }
        let id = self.db.run(move |j| j.cursor(stream.cursor())).await?;
        (self.cursors[i], self.stored[i]) = (Some(id), Some(id));
        Ok(id)
    }

    /// Stores the cursors that moved, if [`STORE_CURSORS_EVERY`] has passed since the last
    /// time or `now`.
    async fn store_cursors(&mut self, now: bool) -> Result<(), SinkError> {
        if !now && self.stored_at.elapsed() < STORE_CURSORS_EVERY {
            return Ok(());
        }
        self.stored_at = Instant::now();
        for stream in Stream::ALL {
            let i = stream as usize;
            if let Some(id) = self.cursors[i].filter(|&id| self.stored[i] != Some(id)) {
                self.db
                    .run(move |j| j.set_cursor(stream.cursor(), id))
                    .await?;
                self.stored[i] = Some(id);
            }
        }
        Ok(())
    }

    /// Writes the encoded batch, retrying, splitting refused parts; the points written.
    async fn send(&mut self, batch: &Encoded, stop: &CancellationToken) -> Result<usize, Stopped> {
        let mut todo = vec![(0, batch.ends.len())];
        let mut written = 0;
        while let Some((from, to)) = todo.pop() {
            if from == to {
                continue;
            }
            let start = if from == 0 { 0 } else { batch.ends[from - 1] };
            let text = batch.text.slice(start..batch.ends[to - 1]);
            match self.write_retrying(&text, stop).await? {
                Ok(()) => written += to - from,
                Err((status, detail)) if to - from > 1 => {
                    tracing::warn!(status, error = %detail, points = to - from, "InfluxDB refused some points; splitting the batch to find them");
                    let mid = from + (to - from) / 2;
                    todo.push((mid, to));
                    todo.push((from, mid));
                }
                Err((status, detail)) => {
                    let line = String::from_utf8_lossy(&text);
                    tracing::error!(status, error = %detail, line = line.trim_end(), "InfluxDB refused a point; skipped (it stays in the journal)");
                    self.metrics.sink_points_rejected.inc();
                }
            }
        }
        Ok(written)
    }

    /// Writes `text` until it succeeds or is refused as bad points (`Err((status, text))`).
    async fn write_retrying(
        &mut self,
        text: &Bytes,
        stop: &CancellationToken,
    ) -> Result<Result<(), (u16, String)>, Stopped> {
        loop {
            let result = tokio::select! {
                r = self.writer.write(text.clone()) => r,
                () = stop.cancelled() => return Err(Stopped),
            };
            let e = match result {
                Ok(()) => {
                    if self.failures > 0 {
                        tracing::info!(failures = self.failures, "InfluxDB writes succeed again");
                    }
                    self.failures = 0;
                    self.backoff = backoff(&self.config);
                    self.metrics.sink_up.set(1);
                    return Ok(Ok(()));
                }
                Err(e) => e,
            };
            self.metrics.sink_error(e.kind());
            self.metrics.sink_up.set(0);
            self.failures += 1;
            let wait = match e {
                WriteError::Rejected { status, detail } => {
                    self.metrics.sink_up.set(1);
                    return Ok(Err((status, detail)));
                }
                WriteError::Halt { status, ref detail } => {
                    tracing::error!(
                        status,
                        error = %detail,
                        url = %self.config.url,
                        hint = halt_hint(status),
                        retry_in_s = self.config.halt_retry_s,
                        "InfluxDB sink HALTED: this target refuses every write until it is fixed; \
                         the backlog is kept in the journal"
                    );
                    Duration::from_secs(self.config.halt_retry_s)
                }
                WriteError::Retry {
                    kind,
                    ref detail,
                    retry_after,
                } => {
                    let wait = retry_after
                        .map(|d| d.min(Duration::from_secs(3600)))
                        .unwrap_or_else(|| self.next_delay());
                    tracing::warn!(kind, error = %detail, attempt = self.failures, retry_in_ms = wait.as_millis() as u64, "InfluxDB write failed; retrying");
                    wait
                }
            };
            // The backlog keeps growing while the target refuses or is away: say so now,
            // not only once this batch finally goes through.
            self.update_backlog().await;
            pause(stop, wait).await?;
        }
    }

    /// The next retry delay (the cap, should the schedule ever end).
    fn next_delay(&mut self) -> Duration {
        self.backoff
            .next()
            .unwrap_or(Duration::from_secs(self.config.retry_max_s))
    }

    /// Writes one `device_status` point per device (dropped, not retried, if the write fails:
    /// the next snapshot supersedes it).
    async fn snapshot_devices(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Result<(), Stopped>, SinkError> {
        let devices = self.db.run(|j| j.devices()).await?;
        if devices.is_empty() {
            return Ok(Ok(()));
        }
        let at_ms = now_ms() / 1000 * 1000;
        let mut text = String::new();
        for d in &devices {
            schema::device_status(d, at_ms, self.config.precision).write_line(&mut text);
        }
        let result = tokio::select! {
            r = self.writer.write(Bytes::from(text)) => r,
            () = stop.cancelled() => return Ok(Err(Stopped)),
        };
        match result {
            Ok(()) => self
                .metrics
                .sink_written("device_status", devices.len() as u64),
            Err(e) => {
                self.metrics.sink_error(e.kind());
                tracing::debug!(error = %e, "device status snapshot not written");
            }
        }
        Ok(Ok(()))
    }

    async fn update_backlog(&mut self) {
        for stream in Stream::ALL {
            let Ok(after) = self.cursor(stream).await else {
                continue;
            };
            let n = self
                .db
                .run(move |j| j.backlog(stream.backlog(), after))
                .await;
            if let Ok(n) = n {
                self.metrics.set_sink_backlog(stream.name(), n);
            }
        }
    }
}

/// What to check for a status that halts the sink.
fn halt_hint(status: u16) -> &'static str {
    match status {
        401 | 403 => {
            "check influx.token (v2) or influx.username/password (v1) and its write permission"
        }
        404 => "check influx.database (v1) or influx.org/bucket (v2): create it on the server",
        _ => "check the [influx] settings against the server",
    }
}

/// Sleeps, or returns `Err(Stopped)` as soon as `stop` is cancelled.
async fn pause(stop: &CancellationToken, d: Duration) -> Result<(), Stopped> {
    tokio::select! {
        () = tokio::time::sleep(d) => Ok(()),
        () = stop.cancelled() => Err(Stopped),
    }
}

/// Reads up to `limit` rows of `stream` after `after` and encodes them as line protocol.
fn read_batch(
    j: &Upkeep,
    stream: Stream,
    after: i64,
    limit: usize,
    p: Precision,
) -> journal::Result<Encoded> {
    let mut lines = Lines {
        text: String::with_capacity(limit * 320),
        ends: Vec::with_capacity(limit),
        rows: 0,
        last_id: after,
    };
    match stream {
        Stream::Samples => {
            j.samples_after(after, limit, |r| {
                lines.row(r.id, |text| schema::write_sample(r, p, text));
            })?;
        }
        Stream::Audit => {
            for a in j.audit_after(after, limit)? {
                lines.row(a.seq, |text| {
                    if let Some(point) = schema::audit(&a, p) {
                        point.write_line(text);
                    }
                });
            }
        }
        Stream::CartridgeEvents => {
            for c in j.cartridge_events_after(after, limit)? {
                lines.row(c.id, |text| {
                    schema::cartridge_event(&c, p).write_line(text);
                });
            }
        }
    }
    Ok(Encoded {
        text: Bytes::from(lines.text),
        ends: lines.ends,
        rows: lines.rows,
        last_id: lines.last_id,
    })
}

/// A batch being encoded: [`Encoded`] before its text is frozen.
struct Lines {
    text: String,
    ends: Vec<usize>,
    rows: usize,
    last_id: i64,
}

impl Lines {
    /// Counts journal row `id`, and ends the line `write` appends for it, if it appends one.
    fn row(&mut self, id: i64, write: impl FnOnce(&mut String)) {
        self.rows += 1;
        self.last_id = self.last_id.max(id);
        let start = self.text.len();
        write(&mut self.text);
        if self.text.len() > start {
            self.ends.push(self.text.len());
        }
    }
}
