//! The connection layer under the router and the gRPC service: accepts TCP (optionally TLS)
//! connections on every endpoint, bounds how many are open and how long each may stay silent,
//! idle or half-sent, and drains on shutdown. HTTP (HTTP/1.1) and gRPC (HTTP/2) connections go
//! through the same code and share one budget of open connections.
//!
//! Every bound here is one a client could otherwise hold forever:
//!
//! - **open connections** (`max_connections`, over all endpoints): one more is answered at once,
//!   never left waiting in the accept queue: a 503 JSON body and `Connection: close` over HTTP,
//!   a GOAWAY naming the limit over gRPC;
//! - **header time** (`header_timeout`): from a request's first byte to the end of its head,
//!   and the TLS handshake; a connection over it is closed;
//! - **idle keep-alive time** (`keep_alive`): a connection that has sent nothing since its last
//!   response (or since it opened) is closed after it (HTTP/2: GOAWAY first);
//! - **a request in progress** is bounded by the handlers: the body by `--body-timeout-seconds`,
//!   the computation by `--timeout-millis`; the watchdog below closes a connection whose request
//!   outlives both by far, as a backstop.
//!
//! On shutdown the router answers every new request with 503 and `Connection: close` (see
//! `http.rs`), so each HTTP/1 connection closes after the request it is in; an HTTP/2 connection
//! gets a GOAWAY, finishes the calls in flight and closes. Connections that stay idle are closed
//! by the keep-alive bound. [`serve`] returns once every connection is closed or the drain window
//! has passed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::http::AppState;

/// Bounds on connections, as set on the command line.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub keep_alive: Duration,
    /// How long a request may be in progress before the watchdog closes its connection: well
    /// past the body and computation timeouts, which answer first.
    pub request_backstop: Duration,
}

/// What happened during shutdown, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections still open when the drain window ended (0 when everything closed in time).
    pub connections_cut: usize,
    /// Of those, connections that were in the middle of a request.
    pub requests_cut: usize,
}

/// What a client over the connection limit is told.
fn over_limit_message(limit: usize) -> String {
    format!("server has its limit of {limit} open connections (see --max-connections); retry later")
}

/// The body of the 503 sent to a connection over the limit, written without reading anything.
fn over_limit_response(limit: usize) -> Vec<u8> {
    let body = serde_json::json!({ "error": over_limit_message(limit) }).to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: \
         close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What an HTTP/2 (gRPC) client over the limit gets, written without reading anything: the
/// server's connection preface (an empty SETTINGS frame) and a GOAWAY that accepts no stream
/// (last stream 0, ENHANCE_YOUR_CALM) with the reason as its debug data, so the client fails
/// its calls with UNAVAILABLE and that text instead of waiting.
fn over_limit_goaway(limit: usize) -> Vec<u8> {
    const SETTINGS: u8 = 0x4;
    const GOAWAY: u8 = 0x7;
    const ENHANCE_YOUR_CALM: u32 = 0xb;
    let debug = over_limit_message(limit);
    let frame_head = |length: usize, kind: u8| {
        let length = (length as u32).to_be_bytes();
        // Length (24 bits), type, flags, stream 0.
        [length[1], length[2], length[3], kind, 0, 0, 0, 0, 0]
    };
    let mut frames = frame_head(0, SETTINGS).to_vec();
    frames.extend_from_slice(&frame_head(8 + debug.len(), GOAWAY));
    frames.extend_from_slice(&0u32.to_be_bytes());
    frames.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    frames.extend_from_slice(debug.as_bytes());
    frames
}

/// What a listener serves.
#[derive(Clone)]
pub enum App {
    /// The HTTP router (Open Inference Protocol v2 over REST, KServe v1, health, metrics), over
    /// HTTP/1.1.
    Http(Router),
    /// `inference.GRPCInferenceService`, over HTTP/2.
    Grpc(crate::grpc::GrpcApp),
}

/// One listening socket, what it serves and its TLS, if any.
pub struct Endpoint {
    pub listener: TcpListener,
    pub app: App,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// What every listener of the server shares: one budget of open connections, one count of
/// connections and requests for the drain, one clock.
struct Shared {
    slots: Arc<Semaphore>,
    tracker: Arc<Tracker>,
    limits: ConnectionLimits,
    epoch: Instant,
}

/// Serves every endpoint until `shutdown` resolves, then drains for at most `drain`. The bounds
/// (`limits`) hold across the endpoints together: `max_connections` counts HTTP and gRPC
/// connections alike.
pub async fn serve(
    endpoints: Vec<Endpoint>,
    state: Arc<AppState>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Drained {
    let shared = Arc::new(Shared {
        slots: Arc::new(Semaphore::new(limits.max_connections)),
        tracker: Arc::new(Tracker::default()),
        limits,
        epoch: Instant::now(),
    });
    let (draining_tx, draining_rx) = watch::channel(false);
    let accepting: Vec<_> = endpoints
        .into_iter()
        .map(|endpoint| tokio::spawn(accept(endpoint, shared.clone(), draining_rx.clone())))
        .collect();
    shutdown.await;
    state.set_ready(false);
    let _ = draining_tx.send(true);
    let tracker = &shared.tracker;
    tracing::info!(
        open_connections = tracker.open.load(Ordering::SeqCst),
        drain_seconds = drain.as_secs(),
        "shutdown requested: answering new requests with 503 and finishing those in flight"
    );
    // Listeners keep accepting while draining: a new connection is answered (503, or GOAWAY
    // over HTTP/2) rather than refused by the kernel.
    let drained = tokio::select! {
        () = tracker.all_closed() => Drained { connections_cut: 0, requests_cut: 0 },
        () = tokio::time::sleep(drain) => Drained {
            connections_cut: tracker.open.load(Ordering::SeqCst),
            requests_cut: tracker.busy.load(Ordering::SeqCst),
        },
    };
    for task in accepting {
        task.abort();
    }
    drop(draining_tx);
    drained
}

/// Accepts connections on one endpoint, each within the shared connection budget.
async fn accept(endpoint: Endpoint, shared: Arc<Shared>, draining: watch::Receiver<bool>) {
    let Endpoint { listener, app, tls } = endpoint;
    let limit = shared.limits.max_connections;
    // Under TLS nothing can be written before a handshake, which costs what the refusal saves:
    // the connection is closed.
    let refusal = match (&app, &tls) {
        (App::Http(_), _) => over_limit_response(limit),
        (App::Grpc(_), None) => over_limit_goaway(limit),
        (App::Grpc(_), Some(_)) => Vec::new(),
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or a connection reset before it was accepted: wait a
                // little rather than spin, then go on.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(slot) = shared.slots.clone().try_acquire_owned() else {
            // Written without waiting: the socket's send buffer is empty, so this never blocks.
            if !refusal.is_empty() {
                let _ = stream.try_write(&refusal);
            }
            tracing::debug!(%peer, "connection refused: at the connection limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let shared = shared.clone();
        let draining = draining.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = shared.tracker.opened();
            let activity = Arc::new(Activity::new(shared.epoch));
            let (tracker, limits) = (shared.tracker.clone(), shared.limits);
            match tls {
                None => connection(stream, app, activity, tracker, limits, draining).await,
                Some(acceptor) => match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => connection(stream, app, activity, tracker, limits, draining).await,
                    Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
        });
    }
}

/// Open connections and requests in progress, across the server.
#[derive(Debug, Default)]
struct Tracker {
    open: AtomicUsize,
    busy: AtomicUsize,
    closed: tokio::sync::Notify,
}

impl Tracker {
    fn opened(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(self.clone())
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct OpenGuard(Arc<Tracker>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// What one connection is doing, kept by its service and its reads, read by its watchdog.
/// Times are milliseconds since the server's epoch; 0 means "not set".
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    /// Requests of this connection being handled (0 or 1 over HTTP/1).
    busy: AtomicUsize,
    /// When the connection last became idle: opened, or produced a response.
    idle_since: AtomicU64,
    /// When the first byte arrived after it became idle (a request head has begun).
    head_started: AtomicU64,
    /// When the current request started being handled.
    request_started: AtomicU64,
}

impl Activity {
    fn new(epoch: Instant) -> Self {
        let activity = Self {
            epoch,
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
            request_started: AtomicU64::new(0),
        };
        activity.idle_since.store(activity.now(), Ordering::Relaxed);
        activity
    }

    /// Milliseconds since the epoch, at least 1 (0 means unset).
    fn now(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    fn on_read(&self) {
        if self.busy.load(Ordering::Relaxed) == 0 && self.head_started.load(Ordering::Relaxed) == 0 {
            self.head_started.store(self.now(), Ordering::Relaxed);
        }
    }

    fn request_began(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.request_started.store(self.now(), Ordering::Relaxed);
        self.head_started.store(0, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.head_started.store(0, Ordering::Relaxed);
        self.idle_since.store(self.now(), Ordering::Relaxed);
        self.busy.fetch_sub(1, Ordering::Relaxed);
    }

    /// What the watchdog should do now: `Ok(deadline)` to look again then, `Err(reason)` to
    /// close the connection.
    fn check(&self, limits: &ConnectionLimits, draining: bool) -> Result<u64, &'static str> {
        let now = self.now();
        let millis = |d: Duration| d.as_millis() as u64;
        let deadline = if self.busy.load(Ordering::Relaxed) > 0 {
            self.request_started.load(Ordering::Relaxed) + millis(limits.request_backstop)
        } else {
            match self.head_started.load(Ordering::Relaxed) {
                0 => {
                    // Once draining, an idle connection has had its chance: the next request
                    // on it would only get a 503.
                    let keep_alive = if draining { limits.keep_alive.min(DRAIN_IDLE) } else { limits.keep_alive };
                    self.idle_since.load(Ordering::Relaxed) + millis(keep_alive)
                }
                started => started + millis(limits.header_timeout),
            }
        };
        if now < deadline {
            return Ok(deadline);
        }
        Err(if self.busy.load(Ordering::Relaxed) > 0 {
            "request outlived its timeouts"
        } else if self.head_started.load(Ordering::Relaxed) == 0 {
            "idle"
        } else {
            "request head not complete within --header-timeout-seconds"
        })
    }
}

/// How long an idle connection is kept once shutdown has begun.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// Marks a request as begun; ends it when dropped, also when the connection goes away mid-way.
struct RequestGuard(Arc<Activity>, Arc<Tracker>);

impl RequestGuard {
    fn new(activity: Arc<Activity>, tracker: Arc<Tracker>) -> Self {
        activity.request_began();
        tracker.busy.fetch_add(1, Ordering::SeqCst);
        Self(activity, tracker)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
        self.1.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Concurrent streams one HTTP/2 connection may open; each is also an inference request under
/// `--max-concurrency`, so this bounds only what one connection can queue.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Bytes of headers one HTTP/2 request may send (HPACK-decoded), as the HTTP/1 head limit.
const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

async fn connection<S>(
    stream: S,
    app: App,
    activity: Arc<Activity>,
    tracker: Arc<Tracker>,
    limits: ConnectionLimits,
    draining: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http1 = matches!(app, App::Http(_));
    let watched = Watched::new(stream, activity.clone(), http1);
    let service_activity = activity.clone();
    let server_wide = tracker.clone();
    let guard = move || RequestGuard::new(service_activity.clone(), tracker.clone());
    match app {
        App::Http(router) => {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let guard = guard();
                let response = router.clone().oneshot(request.map(axum::body::Body::new));
                async move {
                    let response = response.await;
                    drop(guard);
                    response
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            // The watchdog below bounds header time; hyper's own timer would also count idle time.
            builder.header_read_timeout(None).keep_alive(true);
            // Past the router's own limits (`http::MAX_HEADERS`), so that a head over them gets the
            // router's JSON 431 rather than hyper's empty one.
            builder.max_headers(2 * crate::http::MAX_HEADERS);
            let conn = builder.serve_connection(TokioIo::new(watched), service);
            // Draining is the router's work over HTTP/1 (503 with `Connection: close`).
            let sent = |_: &mut Context<'_>| Poll::Ready(Ok(()));
            watch_over(conn, sent, |_| {}, false, &activity, &limits, draining).await;
        }
        App::Grpc(grpc) => {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let guard = guard();
                let response = grpc.call(request);
                async move {
                    let response = response.await;
                    drop(guard);
                    response
                }
            });
            let mut builder = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
            builder.max_concurrent_streams(MAX_STREAMS_PER_CONNECTION).max_header_list_size(MAX_HEADER_LIST_BYTES);
            // One write per turn of the connection (see `cork.rs`), sent once hyper has done all
            // it can; while other connections have requests in flight, after their tasks (and
            // this connection's other calls) had a turn.
            let (io, cork) = crate::cork::corked(watched);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            let sent = |cx: &mut Context<'_>| {
                let others_busy = server_wide.busy.load(Ordering::Relaxed) > activity.busy.load(Ordering::Relaxed);
                cork.poll_send(cx, others_busy)
            };
            // GOAWAY (hyper's graceful shutdown) on draining and before closing an idle connection:
            // streams in flight finish, the client opens no new one on it.
            watch_over(conn, sent, |conn| conn.graceful_shutdown(), true, &activity, &limits, draining).await;
        }
    }
}

/// Drives a connection under the watchdog: closes it once `activity` is past its bounds. With
/// `graceful_first`, a connection past its bounds or draining is first asked to shut down
/// gracefully (`graceful`), and closed only if it is still open `DRAIN_IDLE` later. `send` runs
/// each time the connection has done all it can for now (it returned `Pending`): it sends what
/// the connection wrote; an error from it closes the connection.
async fn watch_over<C>(
    conn: C,
    mut send: impl FnMut(&mut Context<'_>) -> Poll<io::Result<()>>,
    graceful: impl Fn(Pin<&mut C>),
    graceful_first: bool,
    activity: &Activity,
    limits: &ConnectionLimits,
    mut draining: watch::Receiver<bool>,
) where
    C: Future<Output = Result<(), hyper::Error>>,
{
    tokio::pin!(conn);
    let mut closing_since: Option<tokio::time::Instant> = None;
    loop {
        let is_draining = *draining.borrow();
        if graceful_first && is_draining && closing_since.is_none() {
            graceful(conn.as_mut());
            closing_since = Some(tokio::time::Instant::now());
        }
        let wake = match (activity.check(limits, is_draining), closing_since) {
            (Ok(deadline), _) => tokio::time::Instant::from_std(activity.epoch + Duration::from_millis(deadline)),
            (Err(reason), None) if graceful_first => {
                tracing::debug!(reason, "closing connection gracefully");
                graceful(conn.as_mut());
                let now = tokio::time::Instant::now();
                closing_since = Some(now);
                now + DRAIN_IDLE
            }
            (Err(reason), Some(since)) if since + DRAIN_IDLE > tokio::time::Instant::now() => {
                tracing::trace!(reason, "waiting for a graceful close");
                since + DRAIN_IDLE
            }
            (Err(reason), _) => {
                tracing::debug!(reason, "closing connection");
                return;
            }
        };
        let turn = std::future::poll_fn(|cx| match conn.as_mut().poll(cx) {
            Poll::Ready(result) => Poll::Ready(result.map_err(|e| e.to_string())),
            Poll::Pending => match send(cx) {
                Poll::Ready(Err(error)) => Poll::Ready(Err(format!("writing: {error}"))),
                _ => Poll::Pending,
            },
        });
        tokio::select! {
            result = turn => {
                if let Err(error) = result {
                    tracing::debug!(%error, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {}
            changed = draining.changed(), if !is_draining => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// A stream that tells its connection's [`Activity`] when bytes arrive. Over HTTP/1 it also
/// gives the responses hyper writes on its own, without a body, when a request head cannot be
/// parsed (400, 414, 431), the JSON body every other error has (see [`parse_error_response`]).
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
    http1: bool,
    /// A replacement response being written, and how much of it is written.
    pending: Vec<u8>,
    written: usize,
}

impl<S> Watched<S> {
    fn new(inner: S, activity: Arc<Activity>, http1: bool) -> Self {
        Self { inner, activity, http1, pending: Vec::new(), written: 0 }
    }
}

impl<S: AsyncWrite + Unpin> Watched<S> {
    /// Writes what is left of a replacement response.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            match Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => self.written += n,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `data` as written when it is one of hyper's bodyless parse-error responses, after
    /// putting its replacement in `pending`.
    fn replaced(&mut self, data: &[u8], cx: &mut Context<'_>) -> Option<Poll<io::Result<usize>>> {
        let replacement = if self.http1 { parse_error_response(data)? } else { return None };
        self.pending = replacement;
        self.written = 0;
        // What is not written now is written by the flush hyper sends next.
        match self.poll_pending(cx) {
            Poll::Ready(Err(error)) => Some(Poll::Ready(Err(error))),
            _ => Some(Poll::Ready(Ok(data.len()))),
        }
    }
}

/// hyper answers a head it cannot parse itself, with a status and no body (`content-length:
/// 0`); every response of the router has a body, so an HTTP/1 4xx without one is hyper's. This
/// returns the same status with a JSON error body, or `None` for any other bytes.
fn parse_error_response(data: &[u8]) -> Option<Vec<u8>> {
    let head_end = data.windows(4).position(|w| w == b"\r\n\r\n")?;
    if head_end + 4 != data.len() {
        return None;
    }
    let head = std::str::from_utf8(&data[..head_end]).ok()?;
    let status = head.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    if !head.lines().any(|line| line.eq_ignore_ascii_case("content-length: 0")) {
        return None;
    }
    let (reason, message) = match status {
        "400" => ("Bad Request", "the request is not valid HTTP/1.1: its request line or a header could not be parsed"),
        "414" => ("URI Too Long", "request target is longer than the HTTP parser accepts (65534 bytes)"),
        "431" => (
            "Request Header Fields Too Large",
            "request head is larger than the HTTP parser accepts (more than 200 header fields, or about 408 KiB)",
        ),
        _ => return None,
    };
    let body = serde_json::json!({ "error": message }).to_string();
    Some(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: \
             {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes(),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(error)) = this.poll_pending(cx) {
            return Poll::Ready(Err(error));
        }
        if this.written < this.pending.len() {
            return Poll::Pending;
        }
        if let Some(done) = this.replaced(data, cx) {
            return done;
        }
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match this.poll_pending(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.inner).poll_shutdown(cx),
            other => other,
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if let Poll::Ready(Err(error)) = this.poll_pending(cx) {
            return Poll::Ready(Err(error));
        }
        if this.written < this.pending.len() {
            return Poll::Pending;
        }
        // hyper's error response is a head alone: one short slice.
        if let [only] = bufs
            && only.len() <= 1024
            && let Some(done) = this.replaced(only, cx)
        {
            return done;
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The soft limit on open file descriptors of this process, from `/proc/self/limits` (Linux);
/// `None` where that cannot be read.
pub fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Descriptors kept free of connections: the listener, model files, logs, the runtime.
pub const RESERVED_DESCRIPTORS: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 4,
            header_timeout: Duration::from_millis(100),
            keep_alive: Duration::from_millis(300),
            request_backstop: Duration::from_millis(1000),
        }
    }

    #[test]
    fn the_watchdog_closes_idle_half_sent_and_overlong_requests_each_after_its_own_bound() {
        let activity = Activity::new(Instant::now());
        let limits = limits();
        // Idle: the keep-alive bound applies, shortened once draining.
        let idle = activity.check(&limits, false).expect("fresh connection is kept");
        assert!(idle >= 300, "{idle}");
        let long = ConnectionLimits { keep_alive: Duration::from_secs(3), ..limits };
        let draining = activity.check(&long, true).expect("fresh connection is kept while draining");
        assert!(draining < activity.check(&long, false).expect("kept"), "draining shortens the keep-alive");
        // A head has begun: the header bound applies from its first byte.
        activity.on_read();
        let head = activity.check(&limits, false).expect("a head just begun is kept");
        assert!(head < idle);
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(activity.check(&limits, false), Err("request head not complete within --header-timeout-seconds"));
        // A request in progress: the backstop applies, not the header bound.
        activity.request_began();
        activity.on_read();
        assert!(activity.check(&limits, false).is_ok());
        activity.request_ended();
        // Idle again after the response: back to the keep-alive bound, which then expires.
        assert!(activity.check(&limits, false).is_ok());
        std::thread::sleep(Duration::from_millis(320));
        assert_eq!(activity.check(&limits, false), Err("idle"));
    }

    #[test]
    fn the_refusal_is_a_complete_http_response_with_a_json_body() {
        let response = String::from_utf8(over_limit_response(7)).expect("text");
        let (head, body) = response.split_once("\r\n\r\n").expect("head and body");
        assert!(head.starts_with("HTTP/1.1 503 "));
        assert!(head.contains("connection: close"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let parsed: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert!(parsed["error"].as_str().expect("message").contains("limit of 7 open connections"));
    }

    #[test]
    fn the_grpc_refusal_is_a_settings_frame_and_a_goaway_carrying_the_reason() {
        let frames = over_limit_goaway(7);
        // SETTINGS: empty, on stream 0.
        assert_eq!(&frames[..9], &[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        let goaway = &frames[9..];
        let length = u32::from_be_bytes([0, goaway[0], goaway[1], goaway[2]]) as usize;
        assert_eq!(goaway[3], 0x7, "a GOAWAY frame");
        assert_eq!(&goaway[5..9], &[0, 0, 0, 0], "on stream 0");
        assert_eq!(goaway.len(), 9 + length, "the frame length covers the payload exactly");
        assert_eq!(&goaway[9..13], &[0, 0, 0, 0], "no stream was accepted");
        assert_eq!(u32::from_be_bytes(goaway[13..17].try_into().expect("4 bytes")), 0xb, "ENHANCE_YOUR_CALM");
        let debug = std::str::from_utf8(&goaway[17..]).expect("text");
        assert!(debug.contains("limit of 7 open connections"), "{debug}");
    }

    #[test]
    fn hypers_bodyless_parse_errors_get_a_json_body_and_nothing_else_is_touched() {
        for (status, words) in [("400", "not valid HTTP/1.1"), ("414", "65534 bytes"), ("431", "200 header fields")] {
            let hyper =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 12:00:00 GMT\r\n\r\n");
            let replaced = String::from_utf8(parse_error_response(hyper.as_bytes()).expect("replaced")).expect("text");
            let (head, body) = replaced.split_once("\r\n\r\n").expect("head and body");
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
            assert!(head.contains("connection: close"), "{head}");
            let parsed: serde_json::Value = serde_json::from_str(body).expect("JSON");
            assert!(parsed["error"].as_str().expect("message").contains(words), "{body}");
        }
        // The router's own responses have bodies; a 200 or a response with a body is left alone.
        for untouched in [
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n{\"error\":\"\"}",
            "HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            "not a response at all",
        ] {
            assert_eq!(parse_error_response(untouched.as_bytes()), None, "{untouched:?}");
        }
    }

    #[test]
    fn the_open_files_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
