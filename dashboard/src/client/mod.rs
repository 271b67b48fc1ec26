//! The gateways' gRPC API as a stream of [`Msg`]s.
//!
//! One task owns the connections: WhoAmI, then the live streams of each gateway (WatchFleet,
//! WatchViolations, and StreamSamples for the opened session's pen), then the lists (sessions,
//! violations, cartridges, operators) with the current [`Query`], merged over the gateways
//! (`penwatch_proto::client::Fleet`, the command line's too). Stream items are coalesced into
//! batches (latest state per pen, per violation) so a large fleet costs the UI one message per
//! [`COALESCE`] interval per stream. The lists, and the fleet as a reconciliation of its
//! streams, are refreshed every [`Settings::refresh`].
//! With several gateways, one that stops answering is reported ([`Msg::Gateways`]) and
//! retried at each refresh while the others go on. When none answers (or the only one) the
//! connection is lost: reported as [`Msg::Disconnected`] and retried with exponential
//! backoff; the UI keeps what it has meanwhile.

mod links;
mod lists;
mod pump;

use std::future::Future;
use std::time::{Duration, Instant};

use penwatch_proto::client::{ClientError, Connector};
use penwatch_proto::v1::WhoAmIRequest;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tonic::{Code, Status};

use crate::app::{Command, Msg, Query};
use links::{Gateway, Links, Tag, none_answers};
pub use pump::Coalescer;

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

/// Where and how to reach the gateways.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The checked address, token and TLS trust of each gateway.
    pub connectors: Vec<Connector>,
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

/// One connection to the fleet: returns only with the reason it ended.
async fn connection(
    settings: &Settings,
    tx: &mpsc::Sender<Msg>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    wanted: &mut Wanted,
) -> Result<std::convert::Infallible, Failure> {
    let (fail_tx, mut fail_rx) = mpsc::channel::<(Tag, Failure)>(16);
    let mut links = Links {
        gateways: settings.connectors.iter().map(Gateway::new).collect(),
        tx,
        streams: JoinSet::new(),
        fail_tx,
        reported: Vec::new(),
    };
    // Who the token is, from the first gateway that answers.
    let mut who = None;
    let mut failures = Vec::new();
    for (i, connector) in settings.connectors.iter().enumerate() {
        let asked = match connector.connect().await {
            Ok(mut api) => call("WhoAmI", api.who_am_i(WhoAmIRequest {})).await,
            Err(e) => Err(Failure::Connect(e)),
        };
        match asked {
            Ok(w) => {
                who = Some(w);
                break;
            }
            Err(e) => {
                links.gateways[i].problem = Some(e.to_string());
                failures.push((connector.gateway(), e));
            }
        }
    }
    let Some(who) = who else {
        return Err(none_answers(failures));
    };
    let manufacturer = who.role == "manufacturer";
    send(tx, Msg::Identity(who)).await?;

    // Streams first, lists second: nothing committed in between is missed.
    if let Some(failure) = links.connect(None).await
        && (links.gateways.len() == 1 || links.answering() == 0)
    {
        return Err(failure);
    }
    links.load(&wanted.query, manufacturer).await?;
    send(tx, Msg::Connected).await?;
    links.report().await?;
    links.reopen(wanted.open.as_ref()).await?;

    let mut refresh = tokio::time::interval(settings.refresh);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    refresh.tick().await;
    loop {
        tokio::select! {
            cmd = commands.recv() => {
                let Some(cmd) = cmd else { return Err(Failure::Closed) };
                if let Command::MoreSessions { query, page_token } = &cmd {
                    let lost = lists::more_sessions(&links.fleet(), tx, query, page_token).await?;
                    links.lost_each(lost)?;
                }
                let reload = matches!(cmd, Command::Reload(_));
                let reopen = matches!(cmd, Command::OpenSession { .. } | Command::CloseSession);
                wanted.apply(cmd);
                if reload {
                    links.load(&wanted.query, manufacturer).await?;
                }
                if reopen {
                    links.reopen(wanted.open.as_ref()).await?;
                }
                links.report().await?;
            }
            _ = refresh.tick() => {
                if links.answering() < links.gateways.len() {
                    links.connect(wanted.open.as_ref()).await;
                }
                links.load(&wanted.query, manufacturer).await?;
                links.report().await?;
            }
            failure = fail_rx.recv() => {
                let Some(((i, generation), failure)) = failure else { return Err(Failure::Closed) };
                if matches!(failure, Failure::Closed) {
                    return Err(failure);
                }
                if links.gateways[i].generation == generation && links.gateways[i].client.is_some() {
                    links.lost(i, failure)?;
                    links.report().await?;
                }
            }
        }
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
            connectors: vec![Connector::new(&gateway, Some("t"), None).expect("valid settings")],
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
