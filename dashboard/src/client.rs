//! The gateway's gRPC API as a stream of [`Msg`]s.
//!
//! One task owns the connection: WhoAmI, then the live streams (WatchFleet, WatchViolations,
//! and StreamSamples for the opened session's pen), then the lists (sessions, violations,
//! cartridges, operators) with the current [`Query`]. Stream items are coalesced into batches
//! (latest state per pen, per violation) so a large fleet costs the UI one message per
//! [`COALESCE`] interval per stream. The lists, and the fleet as a reconciliation of its
//! stream, are refreshed every [`Settings::refresh`].
//! A lost connection is reported as [`Msg::Disconnected`] and retried with exponential
//! backoff; the UI keeps what it has meanwhile.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use penwatch_proto::client::{Client, ClientError, Connector};
use penwatch_proto::v1::{
    Filter, GetSessionRequest, ListCartridgesRequest, ListDevicesRequest, ListOperatorsRequest,
    ListSessionsRequest, ListViolationsRequest, StreamSamplesRequest, WatchFleetRequest,
    WatchViolationsRequest, WhoAmIRequest,
};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinSet};
use tonic::{Code, Status, Streaming};

use crate::app::{Command, Msg, Query};

/// How long stream items are gathered before they go to the UI as one batch.
pub const COALESCE: Duration = Duration::from_millis(100);
/// Rows asked for per list.
const PAGE: u32 = 200;
/// Most points of a session timeline.
const MAX_POINTS: u32 = 2_000;
/// Time allowed to a unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that lived this long resets the backoff.
const STABLE: Duration = Duration::from_secs(20);

/// Where and how to reach the gateway.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The checked gateway address, token and TLS trust.
    pub connector: Connector,
    /// How often the lists are reloaded.
    pub refresh: Duration,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("{} {}", code_name(.0.code()), .0.message())]
    Rpc(#[from] Status),
    #[error("{0} timed out")]
    Timeout(&'static str),
    #[error("{0} stream ended")]
    Ended(&'static str),
    #[error("dashboard closed")]
    Closed,
}

fn code_name(code: Code) -> String {
    format!("{code:?}:")
}

/// What the UI wants loaded, kept across reconnects.
#[derive(Debug, Default)]
struct Wanted {
    query: Query,
    open: Option<(String, String)>,
}

/// Exponential backoff between connection attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(500);
    const MAX: Duration = Duration::from_secs(10);

    /// The delay before the next attempt (doubling up to 10 s).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// Back to the first delay, after a connection that held.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

/// Runs until the UI side of `tx` or `commands` is closed.
pub async fn run(
    settings: Settings,
    tx: mpsc::Sender<Msg>,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut wanted = Wanted::default();
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let reason = match connection(&settings, &tx, &mut commands, &mut wanted).await {
            Err(Failure::Closed) => return,
            // Retrying a token the gateway refused cannot help: say so once and wait to close.
            Err(Failure::Rpc(s))
                if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) =>
            {
                let refused = Msg::Refused {
                    reason: Failure::Rpc(s).to_string(),
                };
                if tx.send(refused).await.is_ok() {
                    while commands.recv().await.is_some() {}
                }
                return;
            }
            Err(e) => e.to_string(),
            Ok(never) => match never {},
        };
        if started.elapsed() > STABLE {
            backoff.reset();
        }
        let wait = backoff.next_delay();
        let lost = Msg::Disconnected {
            reason,
            retry_in_ms: wait.as_millis() as i64,
        };
        if tx.send(lost).await.is_err() {
            return;
        }
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                cmd = commands.recv() => match cmd {
                    Some(cmd) => wanted.apply(cmd),
                    None => return,
                },
            }
        }
    }
}

impl Wanted {
    fn apply(&mut self, cmd: Command) {
        match cmd {
            Command::Reload(q) => self.query = q,
            Command::OpenSession {
                device_id,
                session_id,
            } => self.open = Some((device_id, session_id)),
            Command::CloseSession => self.open = None,
            Command::MoreSessions { .. } | Command::Bell => {}
        }
    }
}

async fn send(tx: &mpsc::Sender<Msg>, msg: Msg) -> Result<(), Failure> {
    tx.send(msg).await.map_err(|_| Failure::Closed)
}

async fn call<T>(
    what: &'static str,
    fut: impl Future<Output = Result<tonic::Response<T>, Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(CALL_TIMEOUT, fut).await {
        Ok(r) => Ok(r?.into_inner()),
        Err(_) => Err(Failure::Timeout(what)),
    }
}

/// A list the token may not see (or the gateway does not offer) is shown empty.
fn optional<T>(r: Result<T, Failure>) -> Result<Option<T>, Failure> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(Failure::Rpc(s))
            if matches!(s.code(), Code::PermissionDenied | Code::Unimplemented) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// One connection: returns only with the reason it ended.
async fn connection(
    settings: &Settings,
    tx: &mpsc::Sender<Msg>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    wanted: &mut Wanted,
) -> Result<std::convert::Infallible, Failure> {
    let mut api = settings
        .connector
        .connect()
        .await?
        .max_decoding_message_size(64 * 1024 * 1024);
    let who = call("WhoAmI", api.who_am_i(WhoAmIRequest {})).await?;
    let manufacturer = who.role == "manufacturer";
    send(tx, Msg::Identity(who)).await?;

    // Streams first, lists second: nothing committed in between is missed.
    let (fail_tx, mut fail_rx) = mpsc::channel::<Failure>(4);
    let mut streams = JoinSet::new();
    let fleet = call(
        "WatchFleet",
        api.watch_fleet(WatchFleetRequest { filter: None }),
    )
    .await?;
    spawn_pump(
        &mut streams,
        "WatchFleet",
        fleet,
        |d| Some(d.device_id.clone()),
        Msg::Fleet,
        tx,
        &fail_tx,
    );
    let violations = call(
        "WatchViolations",
        api.watch_violations(WatchViolationsRequest { filter: None }),
    )
    .await?;
    spawn_pump(
        &mut streams,
        "WatchViolations",
        violations,
        |v| Some(format!("{}\u{0}{}", v.device_id, v.session_id)),
        Msg::NewViolations,
        tx,
        &fail_tx,
    );
    load_lists(&mut api, tx, &wanted.query, manufacturer).await?;
    send(tx, Msg::Connected).await?;
    let mut samples = match wanted.open.clone() {
        Some(open) => open_session(&mut api, tx, &open, &mut streams, &fail_tx).await?,
        None => None,
    };

    let mut refresh = tokio::time::interval(settings.refresh);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Err(Failure::Closed) };
                if let Command::MoreSessions { query, page_token } = &cmd {
                    more_sessions(&mut api, tx, query, page_token).await?;
                }
                let reload = matches!(cmd, Command::Reload(_));
                let reopen = matches!(cmd, Command::OpenSession { .. } | Command::CloseSession);
                wanted.apply(cmd);
                if reload {
                    load_lists(&mut api, tx, &wanted.query, manufacturer).await?;
                }
                if reopen {
                    if let Some(handle) = samples.take() {
                        handle.abort();
                    }
                    if let Some(open) = wanted.open.clone() {
                        samples = open_session(&mut api, tx, &open, &mut streams, &fail_tx).await?;
                    }
                }
            }
            _ = refresh.tick() => load_lists(&mut api, tx, &wanted.query, manufacturer).await?,
            failure = fail_rx.recv() => return Err(failure.unwrap_or(Failure::Closed)),
        }
    }
}

/// Loads a further page of sessions.
async fn more_sessions(
    api: &mut Client,
    tx: &mpsc::Sender<Msg>,
    query: &Query,
    page_token: &str,
) -> Result<(), Failure> {
    let page = call(
        "ListSessions",
        api.list_sessions(ListSessionsRequest {
            filter: Some(query.filter_at(now_ms())),
            page_size: PAGE,
            page_token: page_token.to_owned(),
        }),
    )
    .await;
    if let Some(page) = optional(page)? {
        send(tx, Msg::MoreSessions(page)).await?;
    }
    Ok(())
}

async fn load_lists(
    api: &mut Client,
    tx: &mpsc::Sender<Msg>,
    query: &Query,
    manufacturer: bool,
) -> Result<(), Failure> {
    let filter = || Some(query.filter_at(now_ms()));
    let devices = call(
        "ListDevices",
        api.list_devices(ListDevicesRequest { filter: None }),
    )
    .await;
    if let Some(d) = optional(devices)? {
        send(tx, Msg::Fleet(d.devices)).await?;
    }
    let sessions = call(
        "ListSessions",
        api.list_sessions(ListSessionsRequest {
            filter: filter(),
            page_size: PAGE,
            page_token: String::new(),
        }),
    )
    .await;
    if let Some(s) = optional(sessions)? {
        send(tx, Msg::Sessions(s)).await?;
    }
    let violations = call(
        "ListViolations",
        api.list_violations(ListViolationsRequest {
            filter: filter(),
            page_size: PAGE,
            page_token: String::new(),
        }),
    )
    .await;
    if let Some(v) = optional(violations)? {
        send(tx, Msg::Violations(v.violations)).await?;
    }
    let cartridges = call(
        "ListCartridges",
        api.list_cartridges(ListCartridgesRequest {
            filter: Some(Filter {
                operator_ids: Vec::new(),
                only_exceeded: false,
                ..query.filter_at(now_ms())
            }),
            limit: 500,
        }),
    )
    .await;
    if let Some(c) = optional(cartridges)? {
        send(tx, Msg::Cartridges(c)).await?;
    }
    if !manufacturer {
        let operators = call(
            "ListOperators",
            api.list_operators(ListOperatorsRequest { filter: filter() }),
        )
        .await;
        if let Some(o) = optional(operators)? {
            send(tx, Msg::Operators(o.operators)).await?;
        }
    }
    Ok(())
}

async fn open_session(
    api: &mut Client,
    tx: &mpsc::Sender<Msg>,
    (device_id, session_id): &(String, String),
    streams: &mut JoinSet<()>,
    fail_tx: &mpsc::Sender<Failure>,
) -> Result<Option<AbortHandle>, Failure> {
    let stream = call(
        "StreamSamples",
        api.stream_samples(StreamSamplesRequest {
            filter: Some(Filter {
                device_ids: vec![device_id.clone()],
                ..Filter::default()
            }),
        }),
    )
    .await;
    let handle = optional(stream)?.map(|stream| {
        spawn_pump(
            streams,
            "StreamSamples",
            stream,
            |_| None,
            Msg::Samples,
            tx,
            fail_tx,
        )
    });
    let detail = call(
        "GetSession",
        api.get_session(GetSessionRequest {
            device_id: device_id.clone(),
            session_id: session_id.clone(),
            max_points: MAX_POINTS,
        }),
    )
    .await;
    match detail {
        Ok(d) => send(tx, Msg::SessionDetail(Box::new(d))).await?,
        Err(Failure::Rpc(s)) if s.code() != Code::Unavailable => {
            send(tx, Msg::DetailFailed(Failure::Rpc(s).to_string())).await?;
        }
        Err(e) => return Err(e),
    }
    Ok(handle)
}

fn spawn_pump<T: Send + 'static>(
    streams: &mut JoinSet<()>,
    name: &'static str,
    stream: Streaming<T>,
    key: fn(&T) -> Option<String>,
    wrap: fn(Vec<T>) -> Msg,
    tx: &mpsc::Sender<Msg>,
    fail_tx: &mpsc::Sender<Failure>,
) -> AbortHandle {
    let tx = tx.clone();
    let fail_tx = fail_tx.clone();
    streams.spawn(async move {
        let failure = pump(name, stream, key, wrap, &tx).await;
        let _ = fail_tx.send(failure).await;
    })
}

/// Forwards a stream to the UI in batches, keeping only the latest item per key.
async fn pump<T>(
    name: &'static str,
    mut stream: Streaming<T>,
    key: fn(&T) -> Option<String>,
    wrap: fn(Vec<T>) -> Msg,
    tx: &mpsc::Sender<Msg>,
) -> Failure {
    let mut batch = Coalescer::default();
    let mut flush = tokio::time::interval(COALESCE);
    flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            item = stream.message() => match item {
                Ok(Some(item)) => batch.push(key(&item), item),
                Ok(None) => return Failure::Ended(name),
                Err(status) => return Failure::Rpc(status),
            },
            _ = flush.tick(), if !batch.is_empty() => {
                if tx.send(wrap(batch.take())).await.is_err() {
                    return Failure::Closed;
                }
            }
        }
    }
}

/// Items gathered between two flushes: a keyed item replaces the previous one with its key.
#[derive(Debug)]
pub struct Coalescer<T> {
    items: Vec<T>,
    index: HashMap<String, usize>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Self {
            items: Vec::new(),
            index: HashMap::new(),
        }
    }
}

impl<T> Coalescer<T> {
    /// Adds an item; `key` None keeps every item.
    pub fn push(&mut self, key: Option<String>, item: T) {
        match key {
            Some(k) => match self.index.get(&k) {
                Some(&i) => self.items[i] = item,
                None => {
                    self.index.insert(k, self.items.len());
                    self.items.push(item);
                }
            },
            None => self.items.push(item),
        }
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The batch, in arrival order of first sight; empties the coalescer.
    pub fn take(&mut self) -> Vec<T> {
        self.index.clear();
        std::mem::take(&mut self.items)
    }
}

/// The wall clock, Unix ms.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coalescer_keeps_latest_per_key_in_first_seen_order() {
        let mut c = Coalescer::default();
        c.push(Some("a".into()), 1);
        c.push(Some("b".into()), 2);
        c.push(Some("a".into()), 3);
        c.push(None, 4);
        c.push(None, 5);
        assert_eq!(c.take(), vec![3, 2, 4, 5]);
        assert!(c.is_empty());
        c.push(Some("a".into()), 6);
        assert_eq!(c.take(), vec![6]);
    }

    #[test]
    fn backoff_doubles_to_a_cap_and_resets() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }

    #[tokio::test]
    async fn unreachable_gateway_is_reported_and_retried() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let gateway = format!("http://127.0.0.1:{port}");
        let settings = Settings {
            connector: Connector::new(&gateway, Some("t"), None).expect("valid settings"),
            refresh: Duration::from_secs(5),
        };
        let (tx, mut rx) = mpsc::channel(8);
        let (_cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(settings, tx, cmd_rx));
        let first = rx.recv().await.expect("a message");
        let Msg::Disconnected {
            reason,
            retry_in_ms,
        } = first
        else {
            panic!("expected Disconnected, got {first:?}");
        };
        assert!(reason.starts_with("cannot reach the gateway"), "{reason}");
        assert_eq!(retry_in_ms, 500);
        let second = rx.recv().await.expect("a retry");
        assert!(
            matches!(
                second,
                Msg::Disconnected {
                    retry_in_ms: 1000,
                    ..
                }
            ),
            "{second:?}"
        );
        drop(rx);
        task.await.expect("client ends when the UI is gone");
    }
}
