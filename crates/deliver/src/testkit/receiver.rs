//! The receiver itself: an axum server on a loopback port that records, checks and answers.

use super::listener::{ClosableListener, Conn};
use super::{google_chat, signature, slack, Answer, Behaviour, Received, ReceiverKind};
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The largest body a receiver reads (well above any service's limit, so an oversized
/// message is recorded and reported rather than cut off).
const MAX_BODY: usize = 16 << 20;

/// A loopback stand-in for an alert receiver (see the [module](super) docs).
///
/// Runs on the tokio runtime that [`Receiver::start`] is called on, until dropped.
pub struct Receiver {
    state: Arc<Shared>,
    addr: SocketAddr,
    server: JoinHandle<()>,
}

struct Shared {
    kind: ReceiverKind,
    inner: Mutex<Inner>,
    /// Bumped on every arrival and answer; [`Receiver::wait_for`] watches it.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Behaviour>,
    received: Vec<Received>,
    /// Google Chat: the message name created for each `requestId`, answered again to a
    /// repeat.
    messages: HashMap<String, u64>,
    next_message: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while the lock was held (in a test thread) leaves the data usable.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_answer(&self, index: usize, answer: Answer) {
        self.lock().received[index].answer = Some(answer);
        self.changed.send_modify(|n| *n += 1);
    }
}

impl Receiver {
    /// Starts a receiver on 127.0.0.1 (a free port) on the current tokio runtime.
    ///
    /// Panics outside a tokio runtime or if no loopback port can be bound.
    pub fn start(kind: ReceiverKind) -> Receiver {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("cannot bind a loopback port for a test receiver: {e}"));
        std_listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("cannot make the receiver's socket non-blocking: {e}"));
        let listener = ClosableListener(
            tokio::net::TcpListener::from_std(std_listener)
                .unwrap_or_else(|e| panic!("Receiver::start needs a tokio runtime: {e}")),
        );
        let addr = listener
            .addr()
            .unwrap_or_else(|e| panic!("the receiver's socket has no address: {e}"));
        let state = Arc::new(Shared {
            kind,
            inner: Mutex::new(Inner::default()),
            changed: watch::channel(0).0,
        });
        let app = Router::new()
            .fallback(handle)
            .with_state(state.clone())
            .into_make_service_with_connect_info::<Conn>();
        let server = tokio::spawn(async move {
            // Serving only ends with an error, and there is no one to tell but the test,
            // which sees its requests fail.
            let _ = axum::serve(listener, app).await;
        });
        Receiver {
            state,
            addr,
            server,
        }
    }

    /// The address the receiver listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The webhook URL to configure: for Google Chat
    /// `http://127.0.0.1:PORT/v1/spaces/AAAA/messages?key=k&token=t`, otherwise
    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        match self.state.kind {
            ReceiverKind::GoogleChat => self.url_for_space("AAAA"),
            _ => format!("http://{}/hook", self.addr),
        }
    }

    /// A Google Chat webhook URL for another space of the same receiver (rate limits are
    /// per space). Panics for other kinds, which have no spaces.
    pub fn url_for_space(&self, space: &str) -> String {
        assert_eq!(
            self.state.kind,
            ReceiverKind::GoogleChat,
            "only a Google Chat receiver has spaces"
        );
        format!(
            "http://{}/v1/spaces/{space}/messages?key=k&token=t",
            self.addr
        )
    }

    /// Queues how the next requests are answered, one behaviour per request in arrival
    /// order (after any still queued); once they are used up the receiver answers
    /// [`Behaviour::Ok`] again.
    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.state.lock().script.extend(behaviours);
    }

    /// Drops the behaviours still queued: from now on the receiver answers
    /// [`Behaviour::Ok`] (a receiver that recovers).
    pub fn clear_script(&self) {
        self.state.lock().script.clear();
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state.lock().received.clone()
    }

    /// The requests answered 2xx, in arrival order.
    pub fn accepted(&self) -> Vec<Received> {
        self.state
            .lock()
            .received
            .iter()
            .filter(|r| r.accepted())
            .cloned()
            .collect()
    }

    /// What the service shows: the accepted requests without those repeating the
    /// `requestId` of an earlier accepted one (Google Chat posts a message once per
    /// `requestId`; requests without one each count).
    pub fn posted(&self) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.accepted()
            .into_iter()
            .filter(|r| r.request_id().is_none_or(|id| seen.insert(id.to_owned())))
            .collect()
    }

    /// Every problem found in any request, each prefixed with the request's number and
    /// path. Tests assert it is empty.
    pub fn problems(&self) -> Vec<String> {
        let inner = self.state.lock();
        inner
            .received
            .iter()
            .enumerate()
            .flat_map(|(i, r)| {
                r.problems
                    .iter()
                    .map(move |p| format!("request {i} ({} {}): {p}", r.method, r.path))
            })
            .collect()
    }

    /// Waits until `accepted` requests were answered 2xx and returns the accepted requests;
    /// panics after `timeout` with everything received.
    pub async fn wait_for(&self, accepted: usize, timeout: Duration) -> Vec<Received> {
        self.wait(timeout, |r| r.accepted(), accepted, "accepted (2xx)")
            .await
    }

    /// Waits until `count` requests arrived, whatever they were answered, and returns all
    /// of them; panics after `timeout` with everything received.
    pub async fn wait_for_received(&self, count: usize, timeout: Duration) -> Vec<Received> {
        self.wait(timeout, |_| true, count, "received").await
    }

    async fn wait(
        &self,
        timeout: Duration,
        counts: impl Fn(&Received) -> bool,
        want: usize,
        what: &str,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.state.changed.subscribe();
        loop {
            let matching: Vec<Received> =
                self.received().into_iter().filter(|r| counts(r)).collect();
            if matching.len() >= want {
                return matching;
            }
            if tokio::time::timeout_at(deadline, changes.changed())
                .await
                .is_err()
            {
                let got: Vec<String> = self
                    .received()
                    .iter()
                    .enumerate()
                    .map(|(i, r)| format!("  {i}: {}", r.summary()))
                    .collect();
                panic!(
                    "the {:?} receiver expected {want} requests {what} within {timeout:?}, \
                     got {}; all requests:\n{}",
                    self.state.kind,
                    matching.len(),
                    got.join("\n")
                );
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("kind", &self.state.kind)
            .field("addr", &self.addr)
            .finish()
    }
}

async fn handle(
    State(state): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<Conn>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(b) => b.to_vec(),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("the test receiver could not read the body: {e}"),
            )
                .into_response()
        }
    };
    let query: Vec<(String, String)> = parts.uri.query().map(url_decode_pairs).unwrap_or_default();
    let mut received = Received {
        at: Instant::now(),
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query,
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        json: serde_json::from_slice(&body).ok(),
        body,
        behaviour: Behaviour::Ok,
        answer: None,
        problems: Vec::new(),
    };
    received.problems = match &state.kind {
        ReceiverKind::GoogleChat => google_chat::check(&received),
        ReceiverKind::Slack => slack::check(&received),
        ReceiverKind::Webhook { secret } => signature::check(
            secret,
            &received,
            time::OffsetDateTime::now_utc().unix_timestamp(),
        ),
    };

    let (index, behaviour, message_id) = {
        let mut inner = state.lock();
        let behaviour = inner.script.pop_front().unwrap_or(Behaviour::Ok);
        received.behaviour = behaviour.clone();
        // Google Chat: the message a request would create, or the one its requestId made.
        let fresh = inner.next_message;
        let message_id = match received.request_id() {
            Some(id) => *inner.messages.entry(id.to_owned()).or_insert(fresh),
            None => fresh,
        };
        if message_id == fresh {
            inner.next_message += 1;
        }
        inner.received.push(received.clone());
        (inner.received.len() - 1, behaviour, message_id)
    };
    state.changed.send_modify(|n| *n += 1);

    let (status, response) = match behaviour {
        Behaviour::Ok => normal(&state.kind, &received, message_id),
        Behaviour::Status(status) => failure(&state.kind, status, None),
        Behaviour::TooMany { retry_after } => failure(&state.kind, 429, retry_after),
        Behaviour::Hang(delay) => {
            // The answer is recorded when the delay is over even if the sender has gone
            // (and hyper dropped this handler): the service would have acted on it.
            let answer = {
                let state = state.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let (status, response) = normal(&state.kind, &received, message_id);
                    state.set_answer(index, Answer::Status(status));
                    response
                })
            };
            return match answer.await {
                Ok(response) => response,
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            };
        }
        Behaviour::Close => {
            conn.close();
            state.set_answer(index, Answer::Closed);
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    state.set_answer(index, Answer::Status(status));
    response
}

/// The service's answer to a request it acts on: 2xx, or 400 listing the problems.
fn normal(kind: &ReceiverKind, req: &Received, message_id: u64) -> (u16, Response) {
    if !req.problems.is_empty() {
        let message = format!(
            "the test receiver refuses this request: {}",
            req.problems.join("; ")
        );
        return match kind {
            ReceiverKind::GoogleChat => {
                (400, json_response(400, &google_chat::error(400, &message)))
            }
            ReceiverKind::Slack => (
                400,
                text_response(400, &format!("invalid_payload: {message}")),
            ),
            ReceiverKind::Webhook { .. } => (400, json_response(400, &json!({ "error": message }))),
        };
    }
    match kind {
        ReceiverKind::GoogleChat => {
            let space = req.space().unwrap_or("AAAA");
            let message = req.json.as_ref().unwrap_or(&Value::Null);
            (
                200,
                json_response(200, &google_chat::created(message, space, message_id)),
            )
        }
        ReceiverKind::Slack => (200, text_response(200, slack::answer_text(200))),
        ReceiverKind::Webhook { .. } => (200, json_response(200, &json!({ "ok": true }))),
    }
}

/// A scripted failure answer, with the body the service sends with that status.
fn failure(kind: &ReceiverKind, status: u16, retry_after: Option<String>) -> (u16, Response) {
    let mut response = match kind {
        ReceiverKind::GoogleChat => json_response(
            status,
            &google_chat::error(status, "scripted failure of the test receiver"),
        ),
        ReceiverKind::Slack => text_response(status, slack::answer_text(status)),
        ReceiverKind::Webhook { .. } => json_response(
            status,
            &json!({ "error": "scripted failure of the test receiver" }),
        ),
    };
    if let Some(value) = retry_after.and_then(|v| HeaderValue::from_str(&v).ok()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    (status, response)
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn json_response(status: u16, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status_code(status);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

fn text_response(status: u16, body: &str) -> Response {
    let mut response = Response::new(Body::from(body.to_owned()));
    *response.status_mut() = status_code(status);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// `a=1&b=x%20y` → `[("a", "1"), ("b", "x y")]` (`+` is a space, as in forms; a `%` not
/// followed by two hex digits is kept as it is).
fn url_decode_pairs(query: &str) -> Vec<(String, String)> {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            let escaped = (bytes[i] == b'%')
                .then(|| Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?))
                .flatten();
            match (bytes[i], escaped) {
                (_, Some(b)) => {
                    out.push(b);
                    i += 3;
                }
                (b'+', None) => {
                    out.push(b' ');
                    i += 1;
                }
                (b, None) => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}
