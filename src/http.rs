//! The HTTP/1.1 accept loop of `serve`, with the connection limits `axum::serve` lacks:
//!
//! - at most `max_connections` open connections: past that, new ones wait in the listen
//!   backlog until one closes (file descriptors cannot run out);
//! - a connection that does not complete a request head within `header_read_timeout` of its
//!   first byte is closed (half a header line, then silence);
//! - a connection with no request in progress and no byte received for `idle_timeout` is
//!   closed (keep-alive connections, and connections that never send anything);
//! - the request body deadline is the API's own (`trailkeep_server::deadline`).
//!
//! Graceful shutdown: on the signal the listener closes, idle connections close at once, and
//! requests in progress finish (for at most [`DRAIN`]).

use axum::extract::ConnectInfo;
use axum::Router;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// Longest wait for requests in progress at shutdown.
const DRAIN: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

/// What a connection's watchdog needs to know: when it last received bytes, since when a
/// request head is being read, and how many requests are in progress.
#[derive(Default)]
struct Activity {
    /// Milliseconds since `epoch` of the last byte received (or of the last response).
    last: AtomicU64,
    /// Milliseconds since `epoch` (+1) of the first byte of the head being read; 0 when none.
    head_since: AtomicU64,
    in_flight: AtomicUsize,
}

struct Clock(Instant);

impl Clock {
    fn ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// The socket, recording when bytes arrive.
struct Watched {
    io: TcpStream,
    act: Arc<Activity>,
    clock: Arc<Clock>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            let now = self.clock.ms();
            self.act.last.store(now, Ordering::Relaxed);
            if self.act.in_flight.load(Ordering::Relaxed) == 0 {
                // Bytes outside a request: a head begins (unless one already did).
                let _ = self.act.head_since.compare_exchange(
                    0,
                    now + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Marks a request as in progress from its head to its response.
struct InFlight {
    act: Arc<Activity>,
    clock: Arc<Clock>,
}

impl InFlight {
    fn start(act: &Arc<Activity>, clock: &Arc<Clock>) -> InFlight {
        act.in_flight.fetch_add(1, Ordering::Relaxed);
        act.head_since.store(0, Ordering::Relaxed);
        InFlight {
            act: act.clone(),
            clock: clock.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.act.last.store(self.clock.ms(), Ordering::Relaxed);
        self.act.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let clock = Arc::new(Clock(Instant::now()));
    tokio::pin!(shutdown);
    loop {
        // Finished connections are reaped as we go.
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let act = Arc::new(Activity::default());
        act.last.store(clock.ms(), Ordering::Relaxed);
        let io = Watched {
            io: stream,
            act: act.clone(),
            clock: clock.clone(),
        };
        let svc = {
            let (act, clock, router) = (act.clone(), clock.clone(), router.clone());
            hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let guard = InFlight::start(&act, &clock);
                let router = router.clone();
                async move {
                    let resp =
                        tower::ServiceExt::oneshot(router, req.map(axum::body::Body::new)).await;
                    drop(guard);
                    resp
                }
            })
        };
        let mut stop = stop_rx.clone();
        let clock = clock.clone();
        conns.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new());
            let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(io), svc);
            tokio::pin!(conn);
            let tick = Duration::from_millis(250)
                .min(limits.header_read_timeout / 4)
                .min(limits.idle_timeout / 4)
                .max(Duration::from_millis(10));
            let mut ticker = tokio::time::interval(tick);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection ended with an error");
                        }
                        return;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                    _ = ticker.tick() => {
                        let now = clock.ms();
                        if act.in_flight.load(Ordering::Relaxed) > 0 {
                            continue;
                        }
                        let head = act.head_since.load(Ordering::Relaxed);
                        if head > 0 {
                            if now + 1 - head > limits.header_read_timeout.as_millis() as u64 {
                                tracing::debug!(%peer, "closing a connection that did not send a request head in time");
                                return;
                            }
                        } else if now - act.last.load(Ordering::Relaxed).min(now)
                            > limits.idle_timeout.as_millis() as u64
                        {
                            tracing::debug!(%peer, "closing an idle connection");
                            return;
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let drained =
        tokio::time::timeout(DRAIN, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            "requests still in progress {}s after the shutdown signal; closing their connections",
            DRAIN.as_secs()
        );
        conns.abort_all();
    }
    Ok(())
}
