//! The HTTP/1.1 accept loop of `serve`, with the connection limits `axum::serve` lacks:
//!
//! - at most `max_connections` open connections: past that, new ones wait in the listen
//!   backlog until one closes (file descriptors cannot run out);
//! - a connection that does not complete a request head within `header_read_timeout` of its
//!   first byte is closed (half a header line, then silence);
//! - a connection with no request in progress and no byte received for `idle_timeout` is
//!   closed (keep-alive connections, and connections that never send anything), and so is one
//!   whose client has not taken any of its response for `idle_timeout` (a request counts as in
//!   progress until its body is sent, so a long streamed export is not idle);
//! - the request body deadline is the API's own (`trailkeep_server::deadline`);
//! - the refusals hyper writes itself get the API's JSON error body ([`json_refusal`]).
//!
//! - hyper's per-connection read buffer is capped at [`MAX_BUF`] (bodies stream; only a request
//!   head must fit, and heads over the limit already get a JSON 431);
//! - after many connections closed, freed heap is given back to the system ([`trim`]).
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

/// The largest read buffer hyper may grow for one connection (its default is about 400 KB).
const MAX_BUF: usize = 64 * 1024;

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
    /// Milliseconds since `epoch` (+1) since when a write to the client has not been taken by
    /// the socket (the client stopped reading); 0 when writes go through.
    write_blocked_since: AtomicU64,
}

struct Clock(Instant);

impl Clock {
    fn ms(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }
}

/// The socket, recording when bytes arrive, and giving hyper's own refusals a JSON body.
struct Watched {
    io: TcpStream,
    act: Arc<Activity>,
    clock: Arc<Clock>,
    /// Bytes accepted from hyper but not yet written to the socket (a rewritten refusal).
    pending: Vec<u8>,
}

impl Watched {
    /// Writes what is pending; `Ready(Ok)` once nothing is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while !self.pending.is_empty() {
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper answers requests it cannot parse itself (a malformed request line, an invalid byte
/// in a header, conflicting `Content-Length`s: 400; a request target over its limit: 414; too
/// many or too large headers: 431) with an empty body, then closes the connection. Such a
/// response, a 4xx/5xx head with `content-length: 0` (the API never sends one), is rewritten
/// with the API's JSON error body. `None` for every other write.
fn json_refusal(buf: &[u8]) -> Option<Vec<u8>> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let status_line = head.lines().next()?;
    let status: u16 = status_line
        .strip_prefix("HTTP/1.1 ")?
        .get(..3)?
        .parse()
        .ok()?;
    if status < 400
        || !head
            .to_ascii_lowercase()
            .contains("\r\ncontent-length: 0\r\n")
    {
        return None;
    }
    let (code, message) = match status {
        414 => (
            "uri_too_long",
            "the request target (path and query) is too long; send fewer or shorter query parameters",
        ),
        431 => (
            "headers_too_large",
            "the request has too many header fields or too large ones; send fewer or smaller headers",
        ),
        400 => (
            "bad_request",
            "the request is not valid HTTP/1.1 (a malformed request line or header, an invalid byte such as NUL in a header, or conflicting Content-Length headers); nothing was processed",
        ),
        _ => (
            "bad_request",
            "the request could not be processed as HTTP/1.1; nothing was processed",
        ),
    };
    let body =
        serde_json::json!({"error": {"code": code, "message": message, "details": []}}).to_string();
    let mut out = format!("{status_line}\r\ncontent-type: application/json\r\n");
    for line in head.lines().skip(1) {
        let lower = line.to_ascii_lowercase();
        if line.is_empty()
            || lower.starts_with("content-length:")
            || lower.starts_with("content-type:")
        {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(&buf[head_end..]);
    Some(out)
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

impl Watched {
    /// Records whether the socket took a write: a client that stops reading is closed after
    /// `idle_timeout` even while its response is in progress.
    fn track<T>(&self, r: Poll<T>) -> Poll<T> {
        match r {
            Poll::Pending => {
                let _ = self.act.write_blocked_since.compare_exchange(
                    0,
                    self.clock.ms() + 1,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            Poll::Ready(_) => {
                if self.act.write_blocked_since.load(Ordering::Relaxed) != 0 {
                    self.act.write_blocked_since.store(0, Ordering::Relaxed);
                }
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
        std::task::ready!(self.poll_pending(cx))?;
        if buf.starts_with(b"HTTP/1.1 4") || buf.starts_with(b"HTTP/1.1 5") {
            if let Some(out) = json_refusal(buf) {
                self.pending = out;
                // Accepted: written now as far as the socket takes it, the rest by the next
                // write, flush or shutdown.
                if let Poll::Ready(Err(e)) = self.poll_pending(cx) {
                    return Poll::Ready(Err(e));
                }
                return Poll::Ready(Ok(buf.len()));
            }
        }
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.track(r)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        std::task::ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        std::task::ready!(self.poll_pending(cx))?;
        // hyper hands a response head over as the first buffer; a refusal of its own has no
        // other.
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if first.starts_with(b"HTTP/1.1 4") || first.starts_with(b"HTTP/1.1 5") {
                let all: Vec<u8> = bufs.iter().flat_map(|b| b.iter().copied()).collect();
                return self.poll_write(cx, &all);
            }
        }
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.track(r)
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

/// A response body that keeps its request marked in progress until it is sent or dropped.
struct Guarded {
    body: axum::body::Body,
    #[allow(dead_code)] // held for its Drop
    guard: InFlight,
}

impl http_body::Body for Guarded {
    type Data = bytes::Bytes;
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
    let peak = Arc::new(AtomicUsize::new(0));
    let trimmer = tokio::spawn(trim::run(
        permits.clone(),
        limits.max_connections.max(1),
        peak.clone(),
    ));
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
        peak.fetch_max(
            limits.max_connections.max(1) - permits.available_permits(),
            Ordering::Relaxed,
        );
        let act = Arc::new(Activity::default());
        act.last.store(clock.ms(), Ordering::Relaxed);
        let io = Watched {
            io: stream,
            act: act.clone(),
            clock: clock.clone(),
            pending: Vec::new(),
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
                    // In progress until the last byte of the body is sent: a streamed export
                    // is not an idle connection while it trickles out.
                    resp.map(|r| r.map(|body| axum::body::Body::new(Guarded { body, guard })))
                }
            })
        };
        let mut stop = stop_rx.clone();
        let clock = clock.clone();
        conns.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder.timer(hyper_util::rt::TokioTimer::new());
            builder.max_buf_size(MAX_BUF);
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
                            // A response in progress that the client stopped taking.
                            let blocked = act.write_blocked_since.load(Ordering::Relaxed);
                            if blocked > 0
                                && now + 1 - blocked.min(now + 1)
                                    > limits.idle_timeout.as_millis() as u64
                            {
                                tracing::debug!(%peer, "closing a connection whose client stopped reading its response");
                                return;
                            }
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
    trimmer.abort();
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

/// Giving freed heap back after connections close.
///
/// Each idle keep-alive connection holds about 18 KB (hyper's state, its read buffer, the task,
/// the socket). When thousands close, glibc keeps the freed memory: it is fragmented across
/// arenas, so neither fewer arenas nor a lower trim threshold returns it, but `malloc_trim(0)`
/// does (BENCHMARKS.md, "Idle keep-alive connections"). So once the number of open
/// connections has fallen to a quarter of its peak (a peak of at least [`MIN_PEAK`]), this
/// calls `malloc_trim(0)` on a blocking thread, at most once per [`INTERVAL`]. Other allocators
/// and C libraries: nothing to do.
mod trim {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    use tokio::sync::Semaphore;

    /// How often the open-connection count is looked at (and the most often trimming runs).
    pub const INTERVAL: Duration = Duration::from_secs(5);
    /// Below this peak there is too little to give back to be worth a trim.
    pub const MIN_PEAK: usize = 512;

    /// `peak`: the most connections open at once since the last trim (the accept loop raises
    /// it; this lowers it after each trim).
    pub async fn run(permits: Arc<Semaphore>, max: usize, peak: Arc<AtomicUsize>) {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let open = max.saturating_sub(permits.available_permits());
            let peak_seen = peak.fetch_max(open, Ordering::Relaxed).max(open);
            if peak_seen >= MIN_PEAK && open <= peak_seen / 4 {
                let took = tokio::task::spawn_blocking(|| {
                    let t = Instant::now();
                    release();
                    t.elapsed()
                })
                .await
                .unwrap_or_default();
                tracing::debug!(
                    peak = peak_seen,
                    open,
                    took_ms = took.as_secs_f64() * 1e3,
                    "connections closed; freed memory given back to the system"
                );
                peak.store(open, Ordering::Relaxed);
            }
        }
    }

    fn release() {
        trailkeep_server::memory::release_freed();
    }
}
