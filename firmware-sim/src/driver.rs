//! Runs the fleet in real time: one task per pen paces its model's steps on the simulated
//! clock, publishes them over the pen's connection, buffers while the pen is offline, and
//! finishes cleanly on a stop (sessions ended, everything acknowledged, `offline` status,
//! DISCONNECT).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use penwatch_proto::names::ShortName;
use penwatch_proto::topic;
use prost::Message;
use rumqttc::{LastWill, QoS};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::config::SimConfig;
use crate::connection::{ConnectOptions, Connection};
use crate::error::SimError;
use crate::fleet::Fleet;
use crate::load::{LOAD_INFLIGHT, LoadPlan, PEN_INFLIGHT};
use crate::pen::{Action, PenModel, PenTiming, Step};
use crate::scenario;
use crate::truth::{DeviceTruth, GroundTruth, PenCounts, SessionTruth};

/// Messages published back to back before a pen yields to the other tasks.
const BURST: u32 = 64;
/// Status payload while connected.
const ONLINE: &str = "online";
/// Status payload after a clean finish, and the last will.
const OFFLINE: &str = "offline";

/// Runs the simulation until every pen has run its sessions, `--duration` has passed, or
/// `shutdown` completes; then finishes cleanly and returns the ground truth.
pub async fn run(config: SimConfig, shutdown: impl Future) -> Result<GroundTruth, SimError> {
    config.validate()?;
    let started = Instant::now();
    let fleet = Fleet::generate(config.seed, config.clinics, config.pens_per_clinic);
    let plans = scenario::plan(&fleet, &config.scenarios);
    let pens = fleet.pen_count();
    let load = config
        .rate
        .map(|rate| LoadPlan::new(rate, pens, config.sample_interval_ms, config.connections));
    let speed = load.map_or(config.speed, |l| l.speed);
    let shared_count = load.and_then(|l| l.connections).unwrap_or(0);
    let (inflight, capacity) = match (load.is_some(), shared_count) {
        (false, _) => (PEN_INFLIGHT, 64),
        (true, 0) => (LOAD_INFLIGHT, 256),
        (true, _) => (LOAD_INFLIGHT, 4096),
    };
    let options = Arc::new(ConnectOptions::from_config(&config, inflight, capacity)?);
    if let Some(path) = &config.credentials {
        options.check_pens(
            path,
            fleet.pens().map(|p| (p.clinic_id.as_str(), p.id.as_str())),
        )?;
    }
    let timing = PenTiming {
        sample_interval_ms: config.sample_interval_ms,
        session_ms: (millis(config.session_min), millis(config.session_max)),
        idle_ms: (millis(config.idle_min), millis(config.idle_max)),
        sessions: config.sessions_per_pen,
        load: load.is_some(),
        start_ms: config.start_ms.unwrap_or_else(now_ms),
        json: config.json,
    };
    let mut shared = Vec::with_capacity(shared_count);
    for k in 0..shared_count {
        shared.push(Arc::new(
            Connection::open(&options, &format!("penwatch-sim-load-{k}"), None, None).await?,
        ));
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let permits = Arc::new(Semaphore::new(config.connect_concurrency));
    let mut tasks = JoinSet::new();
    for (pen, plan) in fleet.pens().zip(plans) {
        let operators = fleet
            .clinic(&pen.clinic_id)
            .map(|c| c.operators.clone())
            .unwrap_or_default();
        let model = PenModel::new(pen.clone(), operators, plan, timing.clone(), config.seed);
        let link = match load
            .and_then(|l| l.connection_of(pen.index))
            .and_then(|k| shared.get(k))
        {
            Some(conn) => Link::Shared(Arc::clone(conn)),
            None => Link::Own {
                options: Arc::clone(&options),
                permits: Arc::clone(&permits),
            },
        };
        let driver = PenDriver::new(model, link, config.json);
        tasks.spawn(driver.drive(speed, stop_rx.clone()));
    }
    let mut reports = Vec::with_capacity(pens);
    let mut first_error = None;
    let mut shutdown = pin!(shutdown);
    let deadline = config.duration.map(|d| started + d);
    let mut stopping = false;
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(Ok(Ok(report))) => reports.push(report),
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(e);
                    stop_tx.send_replace(true);
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(SimError::Task(e.to_string()));
                    stop_tx.send_replace(true);
                }
            },
            _ = &mut shutdown, if !stopping => {
                tracing::info!("stopping: finishing open sessions");
                stopping = true;
                stop_tx.send_replace(true);
            }
            _ = sleep_until_opt(deadline), if !stopping && deadline.is_some() => {
                tracing::info!("duration reached: finishing open sessions");
                stopping = true;
                stop_tx.send_replace(true);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    for conn in shared {
        match Arc::try_unwrap(conn) {
            Ok(conn) => conn.close().await?,
            Err(conn) => conn.settle().await?,
        }
    }
    reports.sort_by_key(|r| r.index);
    let truth = ground_truth(&config, &fleet, reports, started.elapsed());
    if let Some(path) = &config.summary {
        let json = serde_json::to_vec_pretty(&truth).map_err(std::io::Error::other);
        json.and_then(|j| std::fs::write(path, j))
            .map_err(|source| SimError::Summary {
                path: path.clone(),
                source,
            })?;
    }
    Ok(truth)
}

fn ground_truth(
    config: &SimConfig,
    fleet: &Fleet,
    reports: Vec<PenReport>,
    elapsed: Duration,
) -> GroundTruth {
    let mut truth = GroundTruth {
        seed: config.seed,
        clinics: config.clinics,
        pens: u32::try_from(fleet.pen_count()).unwrap_or(u32::MAX),
        encoding: if config.json { "json" } else { "protobuf" }.to_owned(),
        scenarios: config
            .scenarios
            .iter()
            .map(|s| s.name().to_owned())
            .collect(),
        telemetry_valid: 0,
        telemetry_published: 0,
        duplicates_sent: 0,
        malformed: Default::default(),
        status_published: 0,
        connection_drops: 0,
        sessions: Vec::new(),
        devices: Vec::new(),
        elapsed_s: elapsed.as_secs_f64(),
        rate_achieved_msgs_per_s: 0.0,
    };
    let first = reports.iter().filter_map(|r| r.first_publish).min();
    let last = reports.iter().filter_map(|r| r.last_publish).max();
    for r in reports {
        truth.telemetry_valid += r.counts.valid;
        truth.telemetry_published += r.counts.published;
        truth.duplicates_sent += r.counts.duplicates;
        for (kind, n) in r.counts.malformed {
            *truth.malformed.entry(kind).or_default() += n;
        }
        truth.status_published += r.status_published;
        truth.connection_drops += r.device.connection_drops;
        truth.sessions.extend(r.sessions);
        truth.devices.push(r.device);
    }
    if let (Some(first), Some(last)) = (first, last) {
        let secs = last.duration_since(first).as_secs_f64();
        if secs > 0.0 {
            truth.rate_achieved_msgs_per_s = truth.telemetry_published as f64 / secs;
        }
    }
    truth
}

/// What one pen reports at the end.
struct PenReport {
    index: usize,
    counts: PenCounts,
    sessions: Vec<SessionTruth>,
    device: DeviceTruth,
    status_published: u64,
    first_publish: Option<Instant>,
    last_publish: Option<Instant>,
}

/// Where a pen's messages go.
enum Link {
    /// Its own connection, opened under the connection-concurrency limit.
    Own {
        options: Arc<ConnectOptions>,
        permits: Arc<Semaphore>,
    },
    /// A connection shared with other pens (load mode).
    Shared(Arc<Connection>),
}

/// An open connection of a pen.
enum Conn {
    Own(Connection),
    Shared(Arc<Connection>),
}

impl Conn {
    fn get(&self) -> &Connection {
        match self {
            Self::Own(c) => c,
            Self::Shared(c) => c,
        }
    }
}

/// One pen's publishing side.
struct PenDriver {
    model: PenModel,
    link: Link,
    json: bool,
    client_id: String,
    telemetry_topic: String,
    status_topic: String,
    conn: Option<Conn>,
    buffer: Vec<Vec<u8>>,
    offline: bool,
    status_published: u64,
    drops: u64,
    first_publish: Option<Instant>,
    last_publish: Option<Instant>,
}

impl PenDriver {
    fn new(model: PenModel, link: Link, json: bool) -> Self {
        let pen = model.pen();
        Self {
            client_id: format!("penwatch-sim-{}", pen.id),
            telemetry_topic: topic::telemetry(&pen.clinic_id, &pen.id),
            status_topic: topic::status(&pen.clinic_id, &pen.id),
            model,
            link,
            json,
            conn: None,
            buffer: Vec::new(),
            offline: false,
            status_published: 0,
            drops: 0,
            first_publish: None,
            last_publish: None,
        }
    }

    async fn drive(
        mut self,
        speed: f64,
        mut stop: watch::Receiver<bool>,
    ) -> Result<PenReport, SimError> {
        self.connect().await?;
        let t0 = Instant::now();
        let mut burst = 0;
        while let Some(at) = self.model.next_at() {
            if *stop.borrow() {
                break;
            }
            let due = t0 + Duration::from_secs_f64(at as f64 / 1000.0 / speed);
            if due > Instant::now() {
                burst = 0;
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = stop.changed() => break,
                }
            } else {
                burst += 1;
                if burst >= BURST {
                    burst = 0;
                    tokio::task::yield_now().await;
                }
            }
            let Some(step) = self.model.step() else { break };
            self.handle(step).await?;
        }
        let sim_now = (t0.elapsed().as_secs_f64() * speed * 1000.0) as u64;
        for step in self.model.close(sim_now) {
            self.handle(step).await?;
        }
        if self.offline {
            self.network_up().await?;
        }
        self.finish().await
    }

    async fn connect(&mut self) -> Result<(), SimError> {
        let conn = match &self.link {
            Link::Shared(conn) => Conn::Shared(Arc::clone(conn)),
            Link::Own { options, permits } => {
                let _permit = permits
                    .acquire()
                    .await
                    .map_err(|e| SimError::Task(e.to_string()))?;
                let will = LastWill::new(&self.status_topic, OFFLINE, QoS::AtLeastOnce, true);
                let pen = &self.model.pen().id;
                Conn::Own(Connection::open(options, &self.client_id, Some(pen), Some(will)).await?)
            }
        };
        conn.get()
            .publish(&self.status_topic, true, ONLINE.into())
            .await?;
        self.status_published += 1;
        self.conn = Some(conn);
        Ok(())
    }

    async fn handle(&mut self, step: Step) -> Result<(), SimError> {
        match step.action {
            Action::Telemetry { msg, duplicate } => {
                let payload = if self.json {
                    penwatch_proto::json::encode(&msg)
                } else {
                    msg.encode_to_vec()
                };
                if duplicate {
                    self.send(payload.clone()).await?;
                }
                self.send(payload).await
            }
            Action::Malformed { payload, .. } => self.send(payload).await,
            Action::NetworkDown => self.network_down().await,
            Action::NetworkUp => self.network_up().await,
        }
    }

    /// Publishes a telemetry payload, or buffers it while offline.
    async fn send(&mut self, payload: Vec<u8>) -> Result<(), SimError> {
        match (&self.conn, self.offline) {
            (Some(conn), false) => {
                conn.get()
                    .publish(&self.telemetry_topic, false, payload)
                    .await?;
                let now = Instant::now();
                self.first_publish.get_or_insert(now);
                self.last_publish = Some(now);
            }
            _ => self.buffer.push(payload),
        }
        Ok(())
    }

    /// Loses the network: an own connection is dropped without DISCONNECT (after what was
    /// sent is acknowledged), so the broker publishes the last will.
    async fn network_down(&mut self) -> Result<(), SimError> {
        self.offline = true;
        if let Some(Conn::Own(conn)) = self.conn.take() {
            conn.drop_abruptly().await?;
            self.drops += 1;
        }
        tracing::debug!(pen = %self.model.pen().id, "network lost; buffering");
        Ok(())
    }

    /// The network is back: reconnect and replay the buffer in order.
    async fn network_up(&mut self) -> Result<(), SimError> {
        if self.conn.is_none() {
            self.connect().await?;
        }
        self.offline = false;
        tracing::debug!(pen = %self.model.pen().id, buffered = self.buffer.len(), "reconnected; replaying");
        for payload in std::mem::take(&mut self.buffer) {
            self.send(payload).await?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<PenReport, SimError> {
        if let Some(conn) = self.conn.take() {
            conn.get()
                .publish(&self.status_topic, true, OFFLINE.into())
                .await?;
            self.status_published += 1;
            match conn {
                Conn::Own(conn) => conn.close().await?,
                Conn::Shared(conn) => conn.settle().await?,
            }
        }
        let pen = self.model.pen().clone();
        let device = DeviceTruth {
            device_id: pen.id.clone(),
            clinic_id: pen.clinic_id.clone(),
            device_class: pen.class.short_name().to_owned(),
            telemetry_valid: self.model.counts().valid,
            last_seq: self.model.last_seq(),
            clock_skew_ms: self.model.clock_skew_ms(),
            connection_drops: self.drops,
        };
        let (counts, sessions) = self.model.into_truth();
        Ok(PenReport {
            index: pen.index,
            counts,
            sessions,
            device,
            status_published: self.status_published,
            first_publish: self.first_publish,
            last_publish: self.last_publish,
        })
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
