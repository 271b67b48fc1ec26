//! Bounds on connections to the API: how many are open at once, how long one may take to
//! send its first request (the TLS and HTTP/2 handshakes included), and how long one may stay
//! open without a request in progress.
//!
//! [`Registry::incoming`] wraps each accepted TCP stream in a [`Guarded`] stream that fails
//! its reads and writes once its deadline passes (the connection then closes); [`ActivityLayer`]
//! tells it when requests start and finish (a streaming response is in progress until its body
//! ends). At the connection limit a new connection evicts the oldest one without a request in
//! progress, so idle connections can never lock the API's clients out; only when every open
//! connection has a request in progress is the new one refused.

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::task::AtomicWaker;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};
use tokio_stream::{Stream, StreamExt};
use tonic::body::Body;
use tonic::codegen::http::{Request, Response};
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

/// Connection limits of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Longest time from accept to the first request.
    pub handshake_timeout: Duration,
    /// Longest time a connection stays open without a request in progress.
    pub idle_timeout: Duration,
}

/// File descriptors the gateway needs beside its API connections (journal, broker, sink, …).
const OTHER_FILES: u64 = 64;

/// Raises the process's open-files limit (up to its hard limit) so `max_connections` fit
/// beside the gateway's other files, and warns when they still do not: accepting would then
/// fail before the connection limit is reached.
pub fn fit_open_files_limit(limits: &ConnLimits) {
    let needed = limits.max_connections as u64 + OTHER_FILES;
    match rlimit::increase_nofile_limit(needed) {
        Ok(soft) if soft >= needed => {}
        Ok(soft) => tracing::warn!(
            max_connections = limits.max_connections,
            open_files_limit = soft,
            "api.max_connections does not fit under the open-files limit: lower it, or raise \
             the hard limit (ulimit -Hn, systemd LimitNOFILE)"
        ),
        Err(e) => tracing::warn!(error = %e, "api: could not raise the open-files limit"),
    }
}

/// Shortest interval between two warnings about evicted or refused connections.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The open connections, oldest first.
pub struct Registry {
    limits: ConnLimits,
    open: Mutex<BTreeMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    evicted: AtomicU64,
    refused: AtomicU64,
    last_warning: Mutex<Option<Instant>>,
}

/// What a connection's requests and its stream share.
#[derive(Default)]
struct ConnState {
    /// Requests in progress.
    active: AtomicUsize,
    /// Evicted or timed out: the stream fails from now on.
    closing: AtomicBool,
    /// When the last request finished (`None` before the first one).
    idle_since: Mutex<Option<Instant>>,
    /// The connection task, woken when its deadline changes.
    waker: AtomicWaker,
}

impl ConnState {
    fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        self.waker.wake();
    }
}

impl Registry {
    /// A registry enforcing `limits`.
    pub fn new(limits: ConnLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            open: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            last_warning: Mutex::new(None),
        })
    }

    /// The accepted connections of `listener` that the limits let in, each guarded.
    pub fn incoming(
        self: &Arc<Self>,
        listener: TcpIncoming,
    ) -> impl Stream<Item = io::Result<Guarded>> + use<> {
        let this = self.clone();
        listener.filter_map(move |accepted| match accepted {
            Ok(stream) => this.admit(stream).map(Ok),
            Err(e) => Some(Err(e)),
        })
    }

    /// Registers a new connection, evicting the oldest idle one at the limit; `None` (the
    /// stream is closed) when every open connection has a request in progress.
    fn admit(self: &Arc<Self>, io: TcpStream) -> Option<Guarded> {
        let state = Arc::new(ConnState::default());
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
            if open.len() >= self.limits.max_connections {
                let idle = open
                    .iter()
                    .find(|(_, c)| c.active.load(Ordering::SeqCst) == 0)
                    .map(|(id, _)| *id);
                match idle.and_then(|victim| open.remove(&victim)) {
                    Some(victim) => {
                        victim.close();
                        self.evicted.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        drop(open);
                        self.refused.fetch_add(1, Ordering::Relaxed);
                        self.warn();
                        return None;
                    }
                }
            }
            open.insert(id, state.clone());
        }
        self.warn();
        let info = ConnInfo {
            tcp: io.connect_info(),
            state: state.clone(),
        };
        Some(Guarded {
            io,
            id,
            info,
            registry: self.clone(),
            deadline: Box::pin(tokio::time::sleep(self.limits.handshake_timeout)),
            accepted: Instant::now(),
        })
    }

    /// Logs evictions and refusals since the last warning, at most every [`WARN_EVERY`].
    fn warn(&self) {
        let mut last = self.last_warning.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            return;
        }
        let evicted = self.evicted.swap(0, Ordering::Relaxed);
        let refused = self.refused.swap(0, Ordering::Relaxed);
        if evicted + refused > 0 {
            *last = Some(Instant::now());
            tracing::warn!(
                evicted,
                refused,
                max_connections = self.limits.max_connections,
                "api: at the connection limit; closed the oldest idle connections \
                 (evicted) or, with every connection busy, new ones (refused)"
            );
        }
    }

    /// Closes every connection without a request in progress (at shutdown: one still in its
    /// handshake would otherwise hold the server open).
    pub fn close_idle(&self) {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        for conn in open.values() {
            if conn.active.load(Ordering::SeqCst) == 0 {
                conn.close();
            }
        }
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// The connection of a request (in the request's extensions; the layer also puts its
/// [`TcpConnectInfo`] there, so `Request::remote_addr` works).
#[derive(Clone)]
pub struct ConnInfo {
    tcp: TcpConnectInfo,
    state: Arc<ConnState>,
}

/// An accepted TCP stream that fails once its deadline passes or it is evicted.
pub struct Guarded {
    io: TcpStream,
    id: u64,
    info: ConnInfo,
    registry: Arc<Registry>,
    deadline: Pin<Box<Sleep>>,
    accepted: Instant,
}

impl Guarded {
    /// An error once the connection must close; otherwise arms the deadline for `cx`.
    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let state = &self.info.state;
        state.waker.register(cx.waker());
        if state.closing.load(Ordering::SeqCst) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "api connection evicted at the connection limit",
            ));
        }
        if state.active.load(Ordering::SeqCst) > 0 {
            return Ok(());
        }
        let limits = &self.registry.limits;
        let idle_since = *state.idle_since.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = match idle_since {
            None => self.accepted + limits.handshake_timeout,
            Some(t) => t + limits.idle_timeout,
        };
        if self.deadline.deadline() != deadline {
            self.deadline.as_mut().reset(deadline);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            state.closing.store(true, Ordering::SeqCst);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "api connection idle for too long",
            ));
        }
        Ok(())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

impl Connected for Guarded {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check(cx)?;
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A request in progress on its connection, until dropped.
struct InProgress(Arc<ConnState>);

impl InProgress {
    fn begin(state: Arc<ConnState>) -> Self {
        state.active.fetch_add(1, Ordering::SeqCst);
        Self(state)
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        if self.0.active.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.waker.wake();
        }
    }
}

/// Marks each request in progress on its connection from its start to the end of its
/// response body.
#[derive(Debug, Clone, Copy, Default)]
pub struct ActivityLayer;

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = Activity<S>;

    fn layer(&self, inner: S) -> Activity<S> {
        Activity { inner }
    }
}

/// The service of [`ActivityLayer`].
#[derive(Debug, Clone)]
pub struct Activity<S> {
    inner: S,
}

impl<S> tower::Service<Request<Body>> for Activity<S>
where
    S: tower::Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let info = request.extensions().get::<ConnInfo>().cloned();
        let guard = info.map(|info| {
            request.extensions_mut().insert(info.tcp);
            InProgress::begin(info.state)
        });
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                Body::new(Tracked {
                    inner: body,
                    _guard: guard,
                })
            }))
        })
    }
}

/// A response body that keeps its request in progress until it ends or is dropped.
struct Tracked {
    inner: Body,
    _guard: Option<InProgress>,
}

impl HttpBody for Tracked {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accepted(listener: &tokio::net::TcpListener) -> TcpStream {
        let addr = listener.local_addr().expect("addr");
        let (_client, server) = tokio::join!(TcpStream::connect(addr), listener.accept());
        server.expect("accept").0
    }

    #[tokio::test]
    async fn at_the_limit_the_oldest_idle_connection_goes_and_busy_ones_stay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let registry = Registry::new(ConnLimits {
            max_connections: 2,
            handshake_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        });
        let first = registry.admit(accepted(&listener).await).expect("room");
        let second = registry.admit(accepted(&listener).await).expect("room");
        let busy = InProgress::begin(second.info.state.clone());
        let third = registry.admit(accepted(&listener).await).expect("evicts");
        assert!(
            first.info.state.closing.load(Ordering::SeqCst),
            "oldest idle"
        );
        assert!(!second.info.state.closing.load(Ordering::SeqCst), "busy");
        let also_busy = InProgress::begin(third.info.state.clone());
        assert!(
            registry.admit(accepted(&listener).await).is_none(),
            "every connection busy: refused"
        );
        drop(busy);
        let fourth = registry.admit(accepted(&listener).await).expect("evicts");
        assert!(second.info.state.closing.load(Ordering::SeqCst));
        drop((also_busy, fourth));
    }
}
