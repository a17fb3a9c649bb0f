//! The accept loop: HTTP/1.1 connections served with hyper directly, because `axum::serve` has
//! neither header-read nor idle timeouts, nor a drain deadline.
//!
//! Each connection has a small watchdog that knows whether a request is being answered on it:
//! - none in flight and no byte of the next request yet: closed after the idle timeout (after the
//!   header-read timeout for a connection that never sent a request);
//! - the first bytes of a request, but not all its headers: closed `header_read_timeout` after the
//!   first byte, however slowly the rest trickles in;
//! - a request in flight: never closed by the watchdog. Its body is bounded by a no-progress
//!   timeout instead ([`TimeoutBody`]), so a slow upload that keeps sending is never cut.
//!
//! Only HTTP/1.1 is served. An HTTP/2 prior-knowledge client is refused as soon as its preface
//! arrives (hyper answers the `PRI` line with an error and closes), so no h2 handshake can hold a
//! connection open. TLS and HTTP/2 belong to the reverse proxy in front (docs/deploy.md).
//!
//! Shutdown ([`serve`]'s `shutdown` future) drains: readiness turns 503 and long polls answer at
//! once ([`Drain`]); connections with no request in flight close at once; the listener stays open so
//! probes still answer and other requests get a quick 503 with `Connection: close`; once every
//! request that was in flight has been answered, or the drain deadline passes, every connection is
//! closed and `serve` returns.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_http::timeout::TimeoutBody;

use super::settings::HttpSettings;

/// Whether the gateway is shutting down; handlers look here to end long polls and fail readiness.
#[derive(Debug, Clone)]
pub struct Drain(Arc<watch::Sender<bool>>);

impl Drain {
    /// Not draining.
    pub fn new() -> Self {
        Drain(Arc::new(watch::Sender::new(false)))
    }

    /// Starts draining (once; later calls change nothing).
    pub fn start(&self) {
        self.0.send_replace(true);
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once draining has started.
    pub async fn started(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives as long as `self`, so this only ends when draining starts.
        let _ = rx.wait_for(|draining| *draining).await;
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

/// Where shutdown is, as every connection sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Serving,
    /// Connections accepted before the drain began close.
    Draining,
    /// Every connection closes.
    Closing,
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains (module docs) within
/// `settings.drain_timeout`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: HttpSettings,
    drain: Drain,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let settings = Arc::new(settings);
    let (phase, _) = watch::channel(Phase::Serving);
    let mut before: JoinSet<()> = JoinSet::new();
    let mut during: JoinSet<()> = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => if let Some((stream, peer)) = accepted_or_pause(accepted).await {
                before.spawn(connection(stream, peer, app.clone(), Arc::clone(&settings), phase.subscribe(), Phase::Draining));
            },
            () = &mut shutdown => break,
            Some(_) = before.join_next(), if !before.is_empty() => {}
        }
    }

    drain.start();
    phase.send_replace(Phase::Draining);
    let deadline = Instant::now() + settings.drain_timeout;
    tracing::info!(
        connections = before.len(),
        drain_secs = settings.drain_timeout.as_secs_f64(),
        "draining: finishing requests in flight"
    );
    while !before.is_empty() {
        tokio::select! {
            accepted = listener.accept() => if let Some((stream, peer)) = accepted_or_pause(accepted).await {
                during.spawn(connection(stream, peer, app.clone(), Arc::clone(&settings), phase.subscribe(), Phase::Closing));
            },
            _ = before.join_next() => {}
            Some(_) = during.join_next(), if !during.is_empty() => {}
            () = tokio::time::sleep_until(deadline) => break,
        }
    }
    drop(listener);
    phase.send_replace(Phase::Closing);
    let rest = async {
        while before.join_next().await.is_some() {}
        while during.join_next().await.is_some() {}
    };
    if tokio::time::timeout_at(deadline, rest).await.is_err() {
        tracing::warn!(
            connections = before.len() + during.len(),
            "drain deadline passed: closing the connections still open"
        );
        before.abort_all();
        during.abort_all();
        while before.join_next().await.is_some() {}
        while during.join_next().await.is_some() {}
    }
    tracing::info!("all connections closed");
    Ok(())
}

/// The accepted connection, or `None` after an error; a process out of file descriptors pauses
/// briefly instead of spinning on `accept`.
async fn accepted_or_pause(
    accepted: io::Result<(TcpStream, SocketAddr)>,
) -> Option<(TcpStream, SocketAddr)> {
    match accepted {
        Ok(pair) => Some(pair),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused
                    | io::ErrorKind::ConnectionAborted
                    | io::ErrorKind::ConnectionReset
            ) =>
        {
            None
        }
        Err(e) => {
            tracing::error!(error = %e, "accepting a connection failed; pausing");
            tokio::time::sleep(Duration::from_millis(100)).await;
            None
        }
    }
}

/// Serves one connection until it closes, its watchdog closes it, or shutdown reaches
/// `closes_at`.
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    settings: Arc<HttpSettings>,
    mut phase: watch::Receiver<Phase>,
    closes_at: Phase,
) {
    let _ = stream.set_nodelay(true);
    let state = Arc::new(ConnState::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        state: Arc::clone(&state),
    });
    let service = Service {
        app,
        state: Arc::clone(&state),
        peer,
        body_timeout: settings.body_read_timeout,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Accepted while draining: one request, then close.
    builder.keep_alive(*phase.borrow() < Phase::Draining);
    // Header timing is the watchdog's (hyper's own timer also runs while idle, which would make
    // the idle timeout no longer than the header one).
    builder.header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        if !closing && *phase.borrow_and_update() >= closes_at {
            closing = true;
            conn.as_mut().graceful_shutdown();
            if state.half_sent() {
                // Part of a request and nothing in flight: nothing to lose by closing now.
                return;
            }
        }
        let deadline = state.deadline(&settings);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = sleep_until(deadline) => {
                if state.deadline(&settings).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(%peer, "closing a connection that sent no complete request in time");
                    return;
                }
            }
            () = state.changed.notified() => {}
            changed = phase.changed(), if !closing => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// What the watchdog knows about one connection.
struct ConnState {
    inner: Mutex<Times>,
    /// Woken when the deadline may have moved earlier (the first byte of a request arrived).
    changed: Notify,
}

struct Times {
    /// Requests being answered (their responses not yet fully written).
    in_flight: usize,
    /// No request has started on this connection yet.
    fresh: bool,
    /// When the connection was accepted or its last response was written.
    idle_since: Instant,
    /// When the first byte of the next request arrived, while none is in flight.
    first_byte: Option<Instant>,
}

impl ConnState {
    fn new() -> Self {
        ConnState {
            inner: Mutex::new(Times {
                in_flight: 0,
                fresh: true,
                idle_since: Instant::now(),
                first_byte: None,
            }),
            changed: Notify::new(),
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        // Nothing panics while holding the lock, so a poisoned lock still holds sound times.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the watchdog closes the connection, if nothing happens first.
    fn deadline(&self, settings: &HttpSettings) -> Option<Instant> {
        let t = self.times();
        if t.in_flight > 0 {
            None
        } else if let Some(first) = t.first_byte {
            Some(first + settings.header_read_timeout)
        } else if t.fresh {
            Some(t.idle_since + settings.header_read_timeout)
        } else {
            Some(t.idle_since + settings.idle_timeout)
        }
    }

    /// Whether the connection holds part of a request and none is in flight.
    fn half_sent(&self) -> bool {
        let t = self.times();
        t.in_flight == 0 && t.first_byte.is_some()
    }

    fn read_some(&self) {
        let mut t = self.times();
        if t.in_flight == 0 && t.first_byte.is_none() {
            t.first_byte = Some(Instant::now());
            drop(t);
            self.changed.notify_one();
        }
    }

    fn request_started(self: &Arc<Self>) -> InFlight {
        let mut t = self.times();
        t.in_flight += 1;
        t.fresh = false;
        t.first_byte = None;
        InFlight(Arc::clone(self))
    }
}

/// A request being answered; dropped with its response body, once hyper has written it all (or
/// the request was abandoned).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut t = self.0.times();
        t.in_flight = t.in_flight.saturating_sub(1);
        t.idle_since = Instant::now();
        drop(t);
        self.0.changed.notify_one();
    }
}

/// The socket, telling the watchdog when request bytes arrive.
struct Watched {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.read_some();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The router as hyper calls it: request bodies under the no-progress timeout, the peer address
/// in the extensions, and the request counted in flight until its response is written.
#[derive(Clone)]
struct Service {
    app: Router,
    state: Arc<ConnState>,
    peer: SocketAddr,
    body_timeout: Duration,
}

impl hyper::service::Service<Request<Incoming>> for Service {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let in_flight = self.state.request_started();
        let timeout = self.body_timeout;
        let mut request = request.map(|body| Body::new(TimeoutBody::new(timeout, body)));
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let app = self.app.clone();
        Box::pin(async move {
            let response = app.oneshot(request).await?;
            Ok(response.map(|body| {
                Body::new(Guarded {
                    body,
                    _in_flight: in_flight,
                })
            }))
        })
    }
}

/// A response body that holds its request's [`InFlight`] until hyper drops it.
struct Guarded {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Guarded {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
