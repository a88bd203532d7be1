//! Loopback receivers that record every request and answer as a test tells them, and the
//! alerts and channels the tests send.

#![allow(dead_code)]

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trailkeep_core::{StoredEvent, Timestamp, Uuid};
use trailkeep_deliver::alerts::channel::{Channel, ChannelConfig, ChannelKind};
use trailkeep_deliver::alerts::rate::Limits;
use trailkeep_deliver::alerts::{delivery_id, Alert};

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// When the request arrived (its body read).
    pub at: Instant,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    /// The query's pairs, decoded.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        let q = self.query.clone().unwrap_or_default();
        reqwest::Url::parse(&format!("http://x/?{q}"))
            .expect("query")
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }
}

/// What the receiver answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn body(mut self, body: impl Into<String>) -> Reply {
        self.body = body.into();
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Responder = dyn Fn(&Recorded) -> Reply + Send + Sync;

struct Inner {
    requests: Mutex<Vec<Recorded>>,
    reply: Box<Responder>,
}

/// A receiver on 127.0.0.1, stopped when dropped.
pub struct Receiver {
    /// `http://127.0.0.1:<port>`
    pub base: String,
    inner: Arc<Inner>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map(|b| b.to_vec())
        .unwrap_or_default();
    let rec = Recorded {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers,
        body,
        at: Instant::now(),
    };
    let reply = (inner.reply)(&rec);
    inner.requests.lock().unwrap().push(rec);
    tokio::time::sleep(reply.delay).await;
    let mut resp = (
        StatusCode::from_u16(reply.status).expect("status"),
        reply.body,
    )
        .into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(&v).expect("header value"),
        );
    }
    resp
}

impl Receiver {
    /// A receiver answering every request with `reply(request)`.
    pub async fn start(reply: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Receiver {
        let inner = Arc::new(Inner {
            requests: Mutex::new(Vec::new()),
            reply: Box::new(reply),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { base, inner, task }
    }

    /// A receiver answering every request with `status`.
    pub async fn answering(status: u16) -> Receiver {
        Receiver::start(move |_| Reply::status(status)).await
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.requests.lock().unwrap().clone()
    }

    /// The only request received.
    pub fn only(&self) -> Recorded {
        let r = self.requests();
        assert_eq!(r.len(), 1, "expected exactly one request, got {}", r.len());
        r.into_iter().next().unwrap()
    }
}

/// An HTTP client as the server builds one (rustls with the ring provider).
pub fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().expect("client")
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).expect("test timestamp")
}

/// A stored event; hashes are not those of a real log (channels never read them).
pub fn event(
    tenant: &str,
    event_type: &str,
    actor: &str,
    payload: serde_json::Value,
) -> StoredEvent {
    let at = ts("2026-11-23T10:15:00.125Z");
    StoredEvent {
        tenant_id: tenant.to_string(),
        seq: 42,
        event_id: Uuid::parse_str("0193a4f2-7c1e-7b3a-9f00-5d2c8e1a4b6f").unwrap(),
        event_type: event_type.to_string(),
        actor: actor.to_string(),
        timestamp: at,
        timestamp_assigned: false,
        received_at: ts("2026-11-23T10:15:01.5Z"),
        source_ip: Some("203.0.113.7".to_string()),
        impersonation_session: None,
        approval_id: None,
        payload: Some(serde_json::to_vec(&payload).unwrap()),
        payload_salt: Some([7; 32]),
        payload_commitment: None,
        leaf_hash: [9; 32],
    }
}

/// A `prompt.update` alert with `before` and `after`.
pub fn prompt_alert(channel: &str) -> Alert {
    alert_on(
        channel,
        event(
            "t_0042",
            "prompt.update",
            "admin:alice",
            serde_json::json!({
                "before": {"prompt_hash": "a".repeat(64), "version": 3},
                "after": {"prompt_hash": "b".repeat(64), "version": 4},
                "scope": "tenant",
            }),
        ),
    )
}

pub fn alert_on(channel: &str, event: StoredEvent) -> Alert {
    Alert {
        delivery_id: delivery_id("event", channel, &event.tenant_id, event.seq),
        rule: "high-risk".to_string(),
        channel: channel.to_string(),
        event,
        note: None,
    }
}

pub fn config(name: &str, kind: ChannelKind, url: &str, secret: Option<&str>) -> ChannelConfig {
    ChannelConfig {
        name: name.to_string(),
        kind,
        url: url.to_string(),
        secret: secret.map(str::to_string),
        timeout: None,
    }
}

/// A channel of `cfg` with fresh default limits.
pub fn channel(cfg: &ChannelConfig, public_url: Option<&str>) -> Channel {
    Channel::new(cfg, public_url, http(), &Limits::new()).expect("valid channel")
}

/// A Google Chat URL on `base` with a key and token.
pub fn chat_url(base: &str, space: &str) -> String {
    format!("{base}/v1/spaces/{space}/messages?key=KEYabc123secret&token=TOKEN-xyz_789secret%3D")
}

/// Every key (at any depth) of a JSON value.
pub fn keys_of(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match v {
        serde_json::Value::Object(o) => {
            for (k, v) in o {
                out.insert(k.clone());
                keys_of(v, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| keys_of(v, out)),
        _ => {}
    }
}
