//! The accept loop: connection cap, header, body and idle timeouts, on plain HTTP and TLS.
//!
//! Without them a few hundred clients that open connections and send nothing, send half a
//! header, or trickle a body one byte every few seconds hold every socket and task the server
//! has, and `/healthz` times out with everything else. Each bound here is per connection:
//!
//! - **max connections**: over the cap a new connection is accepted and closed at once (the
//!   client sees the close instead of waiting in the kernel's backlog), so the server stays
//!   responsive and recovers as soon as connections end.
//! - **header timeout**: hyper's header-read timer; it runs from when the server starts
//!   waiting for a request's head, so it also bounds how long a kept-alive connection may sit
//!   between requests, and it bounds the TLS handshake.
//! - **body timeout**: the whole request body must arrive within this time of the request's
//!   head (a total, not a per-chunk gap, which a trickle would reset forever).
//! - **idle timeout**: no bytes moving either way while no handler runs (a client that stops
//!   reading its response); the connection is closed.
//!
//! Per request this costs one clock read and two atomic increments: the AuthZEN hot path
//! pays nothing else (the body timer is only armed if the body is not already there).

use crate::hot::Edge;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};

/// Connection bounds (see the module documentation). Set in the `[http]` section of the
/// config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for HttpLimits {
    /// 10 s for headers, 30 s for a body (1 MiB at 35 KB/s), 60 s idle, 1024 connections
    /// (well under the usual 20 000+ open-file limit, far above what one node serves at once).
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl HttpLimits {
    /// Refuses bounds that would disable the protection or the server.
    pub fn validate(&self) -> Result<(), String> {
        let secs = |d: Duration| d.as_secs_f64();
        for (name, d) in [
            ("header_timeout_secs", self.header_timeout),
            ("body_timeout_secs", self.body_timeout),
            ("idle_timeout_secs", self.idle_timeout),
        ] {
            if d.is_zero() || secs(d) > 3600.0 {
                return Err(format!("{name} must be between 1 and 3600 seconds"));
            }
        }
        if self.max_connections == 0 || self.max_connections > 1_000_000 {
            return Err("max_connections must be between 1 and 1000000".into());
        }
        Ok(())
    }
}

/// What one connection shares with its requests: when bytes last moved, and how many
/// requests are being handled.
struct Activity {
    started: Instant,
    /// Milliseconds after `started` of the last read or write that moved bytes.
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.started + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// Decrements the in-flight count when a handler finishes (or is dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A stream that records when bytes last moved.
struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The request body did not arrive within the body timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within the body timeout")]
pub struct BodyTimeout;

/// A request body that must be complete by `deadline`. The timer is created only when the
/// body is not ready at once (most small JSON bodies arrive with their head).
pub struct TimedBody {
    inner: Incoming,
    deadline: Instant,
    timer: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|r| r.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyTimeout))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Accepts connections until `stop` turns true, then stops accepting and lets open
/// connections finish (up to `drain`).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    app: Edge,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
    drain: Duration,
) {
    // The guard `wait_for` returns is not `Send`: drop it inside this future.
    let stopped = async move {
        let _ = stop.wait_for(|v| *v).await.map(|_| ());
    };
    tokio::pin!(stopped);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    let http = Arc::new(http);
    let mut refused_logged: Option<Instant> = None;
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: keep
                    // serving the connections there are; try again shortly.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stopped => break,
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            // Over the cap: closed at once rather than left waiting.
            drop(stream);
            // Logged at most every 10 s: a flood must not flood the log too.
            if refused_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                refused_logged = Some(Instant::now());
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection cap reached; closing new connections"
                );
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let http = http.clone();
        let tls = tls.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            let activity = Arc::new(Activity {
                started: Instant::now(),
                last_ms: AtomicU64::new(0),
                in_flight: AtomicUsize::new(0),
            });
            let tracked = Tracked { inner: stream, activity: activity.clone() };
            match tls {
                None => connection(tracked, peer, app, &http, limits, activity, watcher).await,
                Some(acceptor) => {
                    // A handshake that does not finish is bounded like a half-sent header.
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(tracked)).await {
                        Ok(Ok(s)) => connection(s, peer, app, &http, limits, activity, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(drain) => tracing::warn!("connections still open after the drain timeout; closing anyway"),
    }
}

async fn connection<S>(
    io: S,
    peer: SocketAddr,
    app: Edge,
    http: &hyper::server::conn::http1::Builder,
    limits: HttpLimits,
    activity: Arc<Activity>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let act = activity.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        act.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(act.clone());
        let deadline = Instant::now() + limits.body_timeout;
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(ConnectInfo(peer));
        let req = hyper::Request::from_parts(parts, TimedBody { inner: body, deadline, timer: None });
        let app = app.clone();
        async move {
            let r = tower::ServiceExt::oneshot(app, req).await;
            drop(guard);
            r
        }
    });
    let conn = watcher.watch(http.serve_connection(TokioIo::new(io), service));
    tokio::pin!(conn);
    loop {
        let wake = activity.last() + limits.idle_timeout;
        tokio::select! {
            r = &mut conn => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(wake) => {
                let idle = activity.in_flight.load(Ordering::Relaxed) == 0
                    && activity.last().elapsed() >= limits.idle_timeout;
                if idle {
                    // Dropping the connection closes the socket.
                    tracing::debug!(%peer, "closing an idle connection");
                    return;
                }
                if activity.last() + limits.idle_timeout <= Instant::now() {
                    // A handler is running: look again after another idle period.
                    activity.touch();
                }
            }
        }
    }
}
