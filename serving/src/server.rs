//! The connection layer under the router: accepts TCP (optionally TLS) connections, bounds how
//! many are open and how long each may stay silent, idle or half-sent, and drains on shutdown.
//!
//! Every bound here is one a client could otherwise hold forever:
//!
//! - **open connections** (`max_connections`): one more is answered at once with a 503 JSON body
//!   and `Connection: close`, never left waiting in the accept queue;
//! - **header time** (`header_timeout`): from a request's first byte to the end of its head,
//!   and the TLS handshake; a connection over it is closed;
//! - **idle keep-alive time** (`keep_alive`): a connection that has sent nothing since its last
//!   response (or since it opened) is closed after it;
//! - **a request in progress** is bounded by the handlers: the body by `--body-timeout-seconds`,
//!   the computation by `--timeout-millis`; the watchdog below closes a connection whose request
//!   outlives both by far, as a backstop.
//!
//! On shutdown the router answers every new request with 503 and `Connection: close` (see
//! `http.rs`), so each connection closes after the request it is in; connections that stay idle
//! are closed by the keep-alive bound. [`serve`] returns once every connection is closed or the
//! drain window has passed.

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

/// The body of the 503 sent to a connection over the limit, written without reading anything.
fn over_limit_response(limit: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!("server has its limit of {limit} open connections (see --max-connections); retry later")
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: \
         close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown` resolves, then drains for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    state: Arc<AppState>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> Drained {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let tracker = Arc::new(Tracker::default());
    let (draining_tx, draining_rx) = watch::channel(false);
    let refusal = over_limit_response(limits.max_connections);
    let epoch = Instant::now();
    tokio::pin!(shutdown);
    let mut drain_deadline: Option<tokio::time::Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown, if drain_deadline.is_none() => {
                state.set_ready(false);
                let _ = draining_tx.send(true);
                drain_deadline = Some(tokio::time::Instant::now() + drain);
                tracing::info!(
                    open_connections = tracker.open.load(Ordering::SeqCst),
                    drain_seconds = drain.as_secs(),
                    "shutdown requested: answering new requests with 503 and finishing those in flight"
                );
                continue;
            }
            () = tracker.all_closed(), if drain_deadline.is_some() => break,
            () = sleep_until_option(drain_deadline) => {
                let cut = Drained {
                    connections_cut: tracker.open.load(Ordering::SeqCst),
                    requests_cut: tracker.busy.load(Ordering::SeqCst),
                };
                return cut;
            }
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors or a connection reset before it was accepted: wait a
                // little rather than spin, then go on.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Written without waiting: the socket's send buffer is empty, so this never blocks.
            let _ = stream.try_write(&refusal);
            tracing::debug!(%peer, "connection refused: at the connection limit");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let tracker = tracker.clone();
        let draining = draining_rx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = tracker.opened();
            let activity = Arc::new(Activity::new(epoch));
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
    Drained { connections_cut: 0, requests_cut: 0 }
}

async fn sleep_until_option(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
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

async fn connection<S>(
    stream: S,
    app: Router,
    activity: Arc<Activity>,
    tracker: Arc<Tracker>,
    limits: ConnectionLimits,
    mut draining: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Watched { inner: stream, activity: activity.clone() });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let guard = RequestGuard::new(service_activity.clone(), tracker.clone());
        let response = app.clone().oneshot(request.map(axum::body::Body::new));
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
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    loop {
        let is_draining = *draining.borrow();
        let deadline = match activity.check(&limits, is_draining) {
            Ok(deadline) => deadline,
            Err(reason) => {
                tracing::debug!(reason, "closing connection");
                return;
            }
        };
        let wake = tokio::time::Instant::from_std(activity.epoch + Duration::from_millis(deadline));
        tokio::select! {
            result = conn.as_mut() => {
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

/// A stream that tells its connection's [`Activity`] when bytes arrive.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
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
        Pin::new(&mut self.inner).poll_write(cx, data)
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
    fn the_open_files_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(open_files_limit().is_some_and(|n| n > 0));
        }
    }
}
