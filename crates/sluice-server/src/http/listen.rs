//! The accept loop: HTTP/1.1 connections served by hyper with Sluice's own limits.
//!
//! - **Connection limit** (`max_connections`): a semaphore permit is taken before `accept`, so
//!   connections past the limit wait in the kernel's listen backlog while those already accepted
//!   are served. Reaching the limit is logged once per episode (again only after the count fell
//!   below 90% of the limit).
//! - **Timeouts**, per connection, watched by the task that drives it (no timer inside hyper):
//!   - *header read*: from the first byte of a request's head to the end of its headers;
//!   - *idle*: from the connection's start, or its last write, to the first byte of the next
//!     request (a keep-alive connection with nothing to do);
//!   - *body read*: enforced where the body is read (`body::read_body`), which answers a
//!     DataHub error; hyper then closes the connection, since the body was not read to its end.
//!
//!   A head or idle timeout closes the socket without an answer.
//! - **Shutdown**: when `shutdown` resolves the listener closes, every connection is asked to
//!   finish its current request and close (hyper's graceful shutdown), and the connections still
//!   open `shutdown_deadline` later are dropped.
//! - **TLS** (when an acceptor is given, `http/tls.rs`): the handshake runs in the connection's
//!   task, holding its permit, and must finish within `tls_handshake_timeout_ms` of the accept,
//!   or the connection is dropped (a client that connects and never finishes the handshake does
//!   not keep a slot). The timeouts above then apply to the decrypted stream, from the end of the
//!   handshake. Shutdown drops handshakes still in progress.
//! - **hyper's own limits** (header count and buffer size) sit above Sluice's (`edge_limits` in
//!   `http/mod.rs`), so an oversized request is answered by Sluice with a DataHub JSON error.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::config::ServerConfig;

/// hyper answers (with an empty 431) only past these; Sluice's own, lower limits answer first.
const HYPER_MAX_HEADERS: usize = 1024;
const HYPER_MAX_BUF: usize = 1 << 20;

/// The per-connection timeouts.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// Serves `router` on `listener` (over TLS when `tls` is given) until `shutdown` resolves and
/// the connections have closed (or the shutdown deadline passed).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: &ServerConfig,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()>,
) {
    let timeouts = Timeouts {
        header_read: config.header_read_timeout(),
        idle: config.idle_timeout(),
    };
    let handshake_timeout = config.tls_handshake_timeout();
    let limit = config.max_connections;
    let permits = Arc::new(Semaphore::new(limit));
    let graceful = CancellationToken::new();
    let hard = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    let mut at_limit = false;
    let mut accept_failing = false;
    loop {
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !at_limit {
                    tracing::warn!(
                        max_connections = limit,
                        "connection limit reached: new connections wait in the listen backlog"
                    );
                    at_limit = true;
                }
                tokio::select! {
                    p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut shutdown => break,
                }
            }
        };
        if at_limit && permits.available_permits() >= (limit / 10).max(1) {
            tracing::info!(
                max_connections = limit,
                "connections are below the limit again"
            );
            at_limit = false;
        }
        let stream = tokio::select! {
            r = listener.accept() => r,
            _ = &mut shutdown => break,
        };
        match stream {
            Ok((stream, _peer)) => {
                if accept_failing {
                    tracing::info!("accepting connections again");
                    accept_failing = false;
                }
                let _ = stream.set_nodelay(true);
                let (router, graceful, hard) = (router.clone(), graceful.clone(), hard.clone());
                match tls.clone() {
                    None => {
                        tracker.spawn(connection(stream, router, timeouts, graceful, hard, permit))
                    }
                    Some(acceptor) => tracker.spawn(async move {
                        let handshake = Handshake {
                            acceptor,
                            timeout: handshake_timeout,
                        };
                        if let Some(stream) = handshake.run(stream, &graceful).await {
                            connection(stream, router, timeouts, graceful, hard, permit).await
                        }
                    }),
                };
            }
            Err(e) => {
                // EMFILE and friends: say so once, and do not spin.
                if !accept_failing {
                    tracing::warn!(error = %e, "cannot accept connections");
                    accept_failing = true;
                }
                drop(permit);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    graceful.cancel();
    tracker.close();
    let deadline = config.shutdown_deadline();
    if tokio::time::timeout(deadline, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            deadline_ms = deadline.as_millis() as u64,
            "shutdown deadline passed: closing the remaining connections"
        );
        hard.cancel();
        tracker.wait().await;
    }
}

/// The TLS side of a connection: the acceptor and how long a handshake may take.
struct Handshake {
    acceptor: TlsAcceptor,
    timeout: Duration,
}

impl Handshake {
    /// The TLS stream once the handshake finished; `None` (the connection is dropped) if it
    /// failed, took longer than the timeout, or shutdown began first.
    async fn run(
        self,
        stream: TcpStream,
        graceful: &CancellationToken,
    ) -> Option<tokio_rustls::server::TlsStream<TcpStream>> {
        let handshake = tokio::time::timeout(self.timeout, self.acceptor.accept(stream));
        tokio::select! {
            r = handshake => match r {
                Ok(Ok(stream)) => Some(stream),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "TLS handshake failed");
                    None
                }
                Err(_) => {
                    tracing::debug!("closing a connection: TLS handshake timeout");
                    None
                }
            },
            _ = graceful.cancelled() => None,
        }
    }
}

/// Serves one connection until it closes, times out, or the shutdown deadline passes.
async fn connection<S>(
    stream: S,
    router: Router,
    timeouts: Timeouts,
    graceful: CancellationToken,
    hard: CancellationToken,
    _permit: OwnedSemaphorePermit,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let guard = InFlight::begin(service_activity.clone());
        let router = router.clone();
        async move {
            let response = router.oneshot(req).await;
            drop(guard);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .header_read_timeout(None)
        .max_headers(HYPER_MAX_HEADERS)
        .max_buf_size(HYPER_MAX_BUF)
        .keep_alive(true);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let deadline = activity.deadline(timeouts);
        let changed = activity.changed.notified();
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                if let Some(why) = activity.expired(timeouts, Instant::now()) {
                    tracing::debug!(reason = why, "closing a connection");
                    return;
                }
            }
            _ = changed => {}
            _ = graceful.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = hard.cancelled() => return,
        }
    }
}

/// What a connection is doing, as its IO and its requests report it. Times are milliseconds
/// since `epoch`; `head_started` is 0 when no request head is being read.
struct Activity {
    epoch: Instant,
    in_flight: AtomicUsize,
    head_started: AtomicU64,
    last_active: AtomicU64,
    changed: Notify,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            in_flight: AtomicUsize::new(0),
            head_started: AtomicU64::new(0),
            last_active: AtomicU64::new(0),
            changed: Notify::new(),
        }
    }

    /// Milliseconds since the epoch, at least 1 (0 means "not set").
    fn now_ms(&self) -> u64 {
        (self.epoch.elapsed().as_millis() as u64).max(1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// When the connection times out if nothing changes; `None` while a request is served.
    fn deadline(&self, t: Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        match self.head_started.load(Ordering::Acquire) {
            0 => Some(self.at(self.last_active.load(Ordering::Acquire)) + t.idle),
            started => Some(self.at(started) + t.header_read),
        }
    }

    /// Why the connection should close now, if it should.
    fn expired(&self, t: Timeouts, now: Instant) -> Option<&'static str> {
        let deadline = self.deadline(t)?;
        if now < deadline {
            return None;
        }
        Some(if self.head_started.load(Ordering::Acquire) == 0 {
            "idle timeout"
        } else {
            "header read timeout"
        })
    }

    fn on_read(&self) {
        if self.in_flight.load(Ordering::Acquire) == 0
            && self.head_started.load(Ordering::Acquire) == 0
        {
            self.head_started.store(self.now_ms(), Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn on_write(&self) {
        self.last_active.store(self.now_ms(), Ordering::Release);
    }
}

/// Marks a request as being served from its head's end until its response is produced.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_started.store(0, Ordering::Release);
        activity.changed.notify_one();
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.on_write();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_one();
    }
}

/// A stream (TCP, or TLS over TCP) that reports reads and writes to its connection's
/// [`Activity`]; over TLS it sees the decrypted bytes.
struct Watched<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.on_read();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.on_write();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
