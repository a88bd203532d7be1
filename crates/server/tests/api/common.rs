//! Shared helpers: an app over a fresh embedded store, request helpers, error-shape checks and
//! store snapshots for "nothing changed" assertions.

#![allow(dead_code)]

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;
use tempfile::TempDir;
use tower::ServiceExt;
use trailkeep_server::{app, AppState, ServerConfig};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::{NewKey, Role, Store};

pub const ADMIN: &str = "api-test-admin-secret-0123456789abcdef";
pub const JSON: &str = "application/json";
pub const NDJSON: &str = "application/x-ndjson";

/// One app over one fresh embedded store.
pub struct Api {
    pub router: Router,
    pub state: AppState,
    pub store: Arc<dyn Store>,
    _dir: TempDir,
}

/// A response with its body read.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}); status {}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// Asserts the status, printing the body on failure.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }
}

impl Api {
    pub async fn new() -> Api {
        Api::with_config(ServerConfig::default()).await
    }

    pub async fn with_config(config: ServerConfig) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).expect("open");
        let store: Arc<dyn Store> = Arc::new(store);
        let state = AppState::new(store.clone(), config, Some(ADMIN))
            .with_signer("test", [42u8; 32])
            .expect("signer");
        Api {
            router: app(state.clone()),
            state,
            store,
            _dir: dir,
        }
    }

    /// The embedded store's data directory.
    pub fn dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    pub async fn request(
        &self,
        method: Method,
        uri: &str,
        key: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Resp {
        let mut b = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            b = b.header("authorization", format!("Bearer {k}"));
        }
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        let req = b.body(Body::from(body)).expect("request");
        let resp = self.router.clone().oneshot(req).await.expect("infallible");
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, key: &str, uri: &str) -> Resp {
        self.request(Method::GET, uri, Some(key), None, Vec::new())
            .await
    }

    pub async fn post_json(&self, key: &str, body: &Value) -> Resp {
        self.request(
            Method::POST,
            "/v1/events",
            Some(key),
            Some(JSON),
            serde_json::to_vec(body).unwrap(),
        )
        .await
    }

    pub async fn post_raw(&self, key: Option<&str>, ct: Option<&str>, body: Vec<u8>) -> Resp {
        self.request(Method::POST, "/v1/events", key, ct, body)
            .await
    }

    pub async fn post_ndjson(&self, key: &str, lines: &[Value]) -> Resp {
        let mut body = String::new();
        for l in lines {
            body.push_str(&serde_json::to_string(l).unwrap());
            body.push('\n');
        }
        self.post_raw(Some(key), Some(NDJSON), body.into_bytes())
            .await
    }

    /// Ingests as the env admin and asserts 200; returns the response JSON.
    pub async fn ingest(&self, body: &Value) -> Value {
        let r = self.post_json(ADMIN, body).await;
        r.expect(200);
        r.json()
    }

    /// Creates a key via the API; returns (id, secret).
    pub async fn create_key(&self, role: &str, tenant: Option<&str>) -> (String, String) {
        let mut body = json!({ "role": role });
        if let Some(t) = tenant {
            body["tenant_id"] = json!(t);
        }
        let r = self
            .request(
                Method::POST,
                "/v1/keys",
                Some(ADMIN),
                Some(JSON),
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        r.expect(201);
        let v = r.json();
        (
            v["id"].as_str().unwrap().to_string(),
            v["key"].as_str().unwrap().to_string(),
        )
    }

    /// The embedded store's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self._dir.path()
    }

    /// Creates a key directly in the store (does not spend the admin key's rate budget).
    pub async fn store_key(&self, role: Role, tenant: Option<&str>) -> (String, String) {
        let (secret, hash) = trailkeep_store::keys::generate_secret();
        let rec = self
            .store
            .create_key(NewKey {
                role,
                tenant_id: tenant.map(str::to_string),
                ttl_seconds: None,
                secret_hash: hash,
            })
            .await
            .unwrap();
        (rec.id, secret)
    }

    /// The id of an approval of `event_type` with `payload` in `tenant`, approved by two
    /// approver keys: what an event carrying an `approval_id` must name.
    pub async fn approval_for(&self, tenant: &str, event_type: &str, payload: &Value) -> String {
        let body = json!({"tenant_id": tenant, "requested_by": "svc:test", "reason": "test",
                          "action": {"event_type": event_type, "payload": payload}});
        let r = self
            .request(
                axum::http::Method::POST,
                "/v1/approvals",
                Some(ADMIN),
                Some(JSON),
                serde_json::to_vec(&body).unwrap(),
            )
            .await;
        r.expect(201);
        let id = r.json()["id"].as_str().unwrap().to_string();
        for n in 0..2 {
            let (_, key) = self.store_key(Role::Approver, None).await;
            self.request(
                axum::http::Method::POST,
                &format!("/v1/approvals/{id}/approve"),
                Some(&key),
                Some(JSON),
                serde_json::to_vec(&json!({"approver": format!("user:approver{n}")})).unwrap(),
            )
            .await
            .expect(200);
        }
        id
    }

    /// Everything observable about stored events: tenants (counts, first/last) and every event's
    /// (tenant, seq, event_id, leaf_hash), read directly from the store.
    pub async fn snapshot(&self) -> Snapshot {
        let tenants: Vec<(String, u64, Option<i64>, Option<i64>)> = self
            .store
            .tenants()
            .await
            .unwrap()
            .into_iter()
            .map(|t| {
                (
                    t.tenant_id,
                    t.event_count,
                    t.first_timestamp.map(|x| x.nanos),
                    t.last_timestamp.map(|x| x.nanos),
                )
            })
            .collect();
        let mut events = Vec::new();
        for (t, _, _, _) in &tenants {
            let log = self.store.read_log(t, 0, 1_000_000).await.unwrap();
            for e in log {
                events.push((e.tenant_id, e.seq, e.event_id.to_string(), e.leaf_hash));
            }
        }
        Snapshot { tenants, events }
    }

    /// Number of events the API lists (all tenants, admin).
    pub async fn api_event_count(&self) -> usize {
        let mut n = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut uri = "/v1/events?limit=1000".to_string();
            if let Some(c) = &cursor {
                uri.push_str(&format!("&cursor={c}"));
            }
            let r = self.get(ADMIN, &uri).await;
            r.expect(200);
            let v = r.json();
            n += v["events"].as_array().unwrap().len();
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return n,
            }
        }
    }

    /// Asserts nothing was stored since `before` (store and API listing).
    pub async fn assert_unchanged(&self, before: &Snapshot) {
        let after = self.snapshot().await;
        assert_eq!(&after, before, "the store changed after a refused request");
        assert_eq!(
            self.api_event_count().await,
            before.events.len(),
            "the API lists a different number of events after a refused request"
        );
    }

    pub async fn get_event(&self, id: &str) -> Resp {
        self.get(ADMIN, &format!("/v1/events/{id}")).await
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub tenants: Vec<(String, u64, Option<i64>, Option<i64>)>,
    pub events: Vec<(String, u64, String, [u8; 32])>,
}

/// Checks `{"error": {"code", "message", "details"}}` and nothing else; returns the details.
#[track_caller]
pub fn assert_error(r: &Resp, status: u16, code: &str) -> Vec<Value> {
    r.expect(status);
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(
        ct.starts_with("application/json"),
        "error content type {ct:?}"
    );
    let v = r.json();
    let obj = v.as_object().expect("error body is an object");
    assert_eq!(obj.len(), 1, "error body has only \"error\": {v}");
    let err = v["error"].as_object().expect("error is an object");
    let mut keys: Vec<&str> = err.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["code", "details", "message"], "error keys: {v}");
    assert_eq!(err["code"], json!(code), "error code: {v}");
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error message: {v}"
    );
    err["details"].as_array().expect("details array").clone()
}

/// Asserts a 422 whose details include `(index, path)` for every pair given; returns details.
#[track_caller]
pub fn assert_invalid(r: &Resp, expected: &[(usize, &str)]) -> Vec<Value> {
    let details = assert_error(r, 422, "validation_failed");
    for (index, path) in expected {
        assert!(
            details
                .iter()
                .any(|d| d["index"] == json!(index) && d["path"] == json!(path)),
            "no detail for index {index} path {path:?}; details: {details:?}"
        );
    }
    for d in &details {
        assert!(d["index"].is_u64(), "detail index: {d}");
        assert!(d["path"].is_string(), "detail path: {d}");
        assert!(
            d["message"].as_str().is_some_and(|m| !m.is_empty()),
            "detail message: {d}"
        );
    }
    details
}

/// A minimal valid free-form event.
pub fn ev(tenant: &str, event_type: &str) -> Value {
    json!({
        "event_type": event_type,
        "actor": "user:alice@example.com",
        "tenant_id": tenant,
        "payload": {},
    })
}

/// A free-form event with an explicit id, timestamp and payload.
pub fn ev_full(tenant: &str, event_type: &str, id: &str, ts: &str, payload: Value) -> Value {
    json!({
        "event_id": id,
        "event_type": event_type,
        "actor": "user:alice@example.com",
        "tenant_id": tenant,
        "payload": payload,
        "timestamp": ts,
    })
}

/// A fresh random UUID (v4) as text.
pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A UUID whose text sorts in the order of `n` (for tie-break tests).
pub fn ordered_uuid(prefix: u32, n: u32) -> String {
    format!("{prefix:08x}-0000-4000-8000-{n:012x}")
}

pub fn b64(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("not standard base64 {s:?}: {e}"))
}

/// RFC 3339 of now plus `secs` (may be negative), millisecond precision.
pub fn now_plus(secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Percent-encodes a query value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every event of a listing, following cursors; `uri` must already hold a `?`.
pub async fn walk(api: &Api, key: &str, uri: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100_000 {
        let mut u = uri.to_string();
        if let Some(c) = &cursor {
            u.push_str(&format!("&cursor={}", enc(c)));
        }
        let r = api.get(key, &u).await;
        r.expect(200);
        let v = r.json();
        out.extend(v["events"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
    panic!("listing never ended");
}

pub fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_string())
        .collect()
}
