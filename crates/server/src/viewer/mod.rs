//! The log viewer (docs/api.md#viewer): viewer tokens, the embeddable page and the JSON
//! endpoints its script calls.
//!
//! - `POST /v1/viewer-tokens` (admin) mints a [`token`] bound to one tenant and optionally one
//!   actor.
//! - `GET /viewer` serves a static page (HTML, CSS and JS compiled into the binary) under a
//!   strict Content-Security-Policy; `frame-ancestors` comes from `[viewer] frame_ancestors`.
//!   The page holds no data: its script reads `?token=` and calls the endpoints below.
//! - `GET /viewer/api/…` take the token as the `token` query parameter and read only the
//!   token's tenant (and actor): the scope comes from the signed token, never from the request.
//!   Every successful read of events is logged as an `audit.read` event in the token's tenant
//!   naming the token's id ([`crate::audit::record_viewer_read`]).
//! - Proof status is checked on the server: the event's leaf hash is recomputed from its fields,
//!   the tenant's latest checkpoint is opened with the log's key, and the inclusion proof is
//!   verified against it.

pub mod token;

use crate::auth::authenticate;
use crate::ingest::read_body;
use crate::params::{self, Params};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use token::{Claims, TokenError};
use trailkeep_core::validate::{is_tenant_id, parse_uuid};
use trailkeep_core::{Issue, StoredEvent, Timestamp};
use trailkeep_store::Role;
use utoipa::{IntoParams, ToSchema};

const PAGE_HTML: &str = include_str!("page.html");
const PAGE_JS: &str = include_str!("viewer.js");
const PAGE_CSS: &str = include_str!("viewer.css");

/// `[viewer]` settings (docs/configuration.md).
#[derive(Debug, Clone)]
pub struct ViewerConfig {
    /// Longest `ttl_seconds` a token may be minted with.
    pub max_ttl_secs: u64,
    /// Origins allowed to embed the page (`frame-ancestors`); empty: none.
    pub frame_ancestors: Vec<String>,
}

/// Lifetime of a token minted without `ttl_seconds`: 15 minutes (or the maximum, if lower).
pub const DEFAULT_TTL_SECS: u64 = 15 * 60;

impl Default for ViewerConfig {
    fn default() -> Self {
        ViewerConfig {
            max_ttl_secs: 3600,
            frame_ancestors: Vec::new(),
        }
    }
}

/// Checks one `frame_ancestors` entry: `'self'`, or an origin (`https://app.example`,
/// `https://*.example.com`, `http://localhost:3000`) without path, spaces, quotes, `;` or `,`
/// (any of which would change the policy's meaning).
pub fn check_frame_ancestor(s: &str) -> Result<(), String> {
    if s == "'self'" {
        return Ok(());
    }
    let bad = || {
        format!(
            "invalid viewer.frame_ancestors entry {s:?}: expected an origin such as \
             \"https://app.example\" or \"https://*.example.com\", or \"'self'\""
        )
    };
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (rest, None),
    };
    let host_ok = !host.is_empty()
        && host.split('.').enumerate().all(|(i, label)| {
            (i == 0 && label == "*")
                || (!label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        });
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.parse::<u16>().is_ok());
    if host_ok && port_ok {
        Ok(())
    } else {
        Err(bad())
    }
}

/// The page's Content-Security-Policy.
pub fn content_security_policy(cfg: &ViewerConfig) -> String {
    let ancestors = if cfg.frame_ancestors.is_empty() {
        "'none'".to_string()
    } else {
        cfg.frame_ancestors.join(" ")
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         img-src 'self' data:; frame-ancestors {ancestors}; base-uri 'none'; form-action 'none'"
    )
}

fn set(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Headers every viewer answer carries: no caching (tokens are in URLs), no referrer (the
/// page's URL holds the token), no sniffing.
fn private(mut resp: Response) -> Response {
    set(&mut resp, "cache-control", "no-store");
    set(&mut resp, "referrer-policy", "no-referrer");
    set(&mut resp, "x-content-type-options", "nosniff");
    resp
}

fn static_file(state: &AppState, content_type: &str, body: &'static str) -> Response {
    let mut resp =
        private(([(header::CONTENT_TYPE, content_type.to_string())], body).into_response());
    set(
        &mut resp,
        "content-security-policy",
        &content_security_policy(&state.config.viewer),
    );
    if state.config.viewer.frame_ancestors.is_empty() {
        // For browsers without CSP level 2; a list of origins cannot be said this way.
        set(&mut resp, "x-frame-options", "DENY");
    }
    resp
}

// ---------------------------------------------------------------------------------------------
// Minting.

/// Body of `POST /v1/viewer-tokens`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerTokenRequest {
    /// The one tenant the token reads.
    #[schema(pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$")]
    pub tenant_id: String,
    /// Shows only this actor's events.
    #[schema(min_length = 1, max_length = 256)]
    pub actor: Option<String>,
    /// Lifetime in seconds: default 900 (15 minutes), at most `[viewer] max_ttl` (default 1h).
    #[schema(minimum = 1)]
    pub ttl_seconds: Option<u64>,
}

/// A new viewer token.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerToken {
    /// The token (`tkv1.…`); give the page `/viewer?token=<token>`.
    pub token: String,
    /// UTC, second precision.
    #[schema(format = DateTime)]
    pub expires_at: String,
    /// The token's id, named in the `audit.read` events of its reads.
    pub token_id: String,
    pub tenant_id: String,
    #[schema(required = true)]
    pub actor: Option<String>,
    /// The page's path with the token, relative to the server's base URL.
    pub viewer_path: String,
}

fn now_secs() -> i64 {
    Timestamp::now_micros().nanos.div_euclid(1_000_000_000)
}

/// `2026-11-23T10:15:00Z`.
fn rfc3339_secs(secs: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(secs)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Checks a mint request; every problem is reported, with its field.
fn check_request(v: &Value, max_ttl: u64) -> Result<(String, Option<String>, u64), Vec<Issue>> {
    let Some(obj) = v.as_object() else {
        return Err(vec![Issue::new(
            0,
            "",
            "expected an object {\"tenant_id\", \"actor\"?, \"ttl_seconds\"?}",
        )]);
    };
    let mut issues = Vec::new();
    for k in obj.keys() {
        if !matches!(k.as_str(), "tenant_id" | "actor" | "ttl_seconds") {
            issues.push(Issue::new(
                0,
                k.clone(),
                "unknown field; expected tenant_id, actor, ttl_seconds",
            ));
        }
    }
    let tenant = match obj.get("tenant_id") {
        None => {
            issues.push(Issue::new(0, "tenant_id", "required"));
            None
        }
        Some(Value::String(t)) if is_tenant_id(t) => Some(t.clone()),
        Some(_) => {
            issues.push(Issue::new(
                0,
                "tenant_id",
                "expected a tenant id: a letter or digit, then up to 127 of A-Z a-z 0-9 _ . : - (or _global)",
            ));
            None
        }
    };
    let actor = match obj.get("actor") {
        None | Some(Value::Null) => None,
        Some(Value::String(a)) if !a.is_empty() && a.len() <= token::MAX_ACTOR_LEN => {
            Some(a.clone())
        }
        Some(_) => {
            issues.push(Issue::new(
                0,
                "actor",
                "expected a non-empty string of at most 256 bytes",
            ));
            None
        }
    };
    let ttl = match obj.get("ttl_seconds") {
        None | Some(Value::Null) => DEFAULT_TTL_SECS.min(max_ttl),
        Some(t) => match t.as_i64() {
            Some(n) if n >= 1 && n as u64 <= max_ttl => n as u64,
            _ => {
                issues.push(Issue::new(
                    0,
                    "ttl_seconds",
                    format!("expected a whole number of seconds from 1 to {max_ttl} (the server's viewer.max_ttl)"),
                ));
                0
            }
        },
    };
    match (tenant, issues.is_empty()) {
        (Some(t), true) => Ok((t, actor, ttl)),
        _ => Err(issues),
    }
}

/// Mints a viewer token for one tenant (and optionally one actor). Needs an `admin` key.
///
/// The token is valid until `expires_at`, or until the server's token key is rotated.
#[utoipa::path(
    post,
    path = "/v1/viewer-tokens",
    operation_id = "mint_viewer_token",
    tag = "viewer",
    security(("bearer" = [])),
    request_body(content = ViewerTokenRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The token", body = ViewerToken),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 422, response = crate::openapi::ValidationFailed),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn mint(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(&[Role::Admin], "mint viewer tokens")?;
    let bytes = read_body(body, 64 * 1024).await?;
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "the body is not JSON ({e}); expected {{\"tenant_id\", \"actor\"?, \"ttl_seconds\"?}}"
        ))
    })?;
    let (tenant, actor, ttl) =
        check_request(&v, state.config.viewer.max_ttl_secs).map_err(ApiError::validation)?;
    let exp = now_secs().saturating_add(ttl as i64);
    let claims = Claims::new(&tenant, actor.as_deref(), exp);
    let token = state.viewer_key.sign(&claims);
    let body = ViewerToken {
        viewer_path: format!("/viewer?token={token}"),
        token,
        expires_at: rfc3339_secs(exp),
        token_id: claims.jti,
        tenant_id: tenant,
        actor,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

// ---------------------------------------------------------------------------------------------
// The page.

/// The query parameters of the page (its script reads the token).
pub const PAGE_PARAMS: &[&str] = &["token"];
/// The query parameters of the other `/viewer/api` reads.
pub const TOKEN_PARAMS: &[&str] = &["token"];

/// The viewer page (HTML; its script and style are `/viewer/assets/…`).
///
/// Open it as `/viewer?token=<viewer token>`: the page holds no data, its script reads the
/// token from the address and calls the `/viewer/api` endpoints with it. Served with a strict
/// Content-Security-Policy whose `frame-ancestors` lists `[viewer] frame_ancestors`.
#[utoipa::path(
    get,
    path = "/viewer",
    operation_id = "viewer_page",
    tag = "viewer",
    params(("token" = Option<String>, Query,
        description = "The viewer token; the page's script reads it and sends it to `/viewer/api`")),
    responses((status = 200, description = "The page", body = String, content_type = "text/html",
        headers(("Content-Security-Policy" = String, description = "The page's policy")))),
)]
pub async fn page(State(state): State<AppState>) -> Response {
    static_file(&state, "text/html; charset=utf-8", PAGE_HTML)
}

/// The viewer page's script.
#[utoipa::path(
    get,
    path = "/viewer/assets/viewer.js",
    operation_id = "viewer_script",
    tag = "viewer",
    responses((status = 200, description = "The script", body = String, content_type = "text/javascript")),
)]
pub async fn script(State(state): State<AppState>) -> Response {
    static_file(&state, "text/javascript; charset=utf-8", PAGE_JS)
}

/// The viewer page's style sheet.
#[utoipa::path(
    get,
    path = "/viewer/assets/viewer.css",
    operation_id = "viewer_style",
    tag = "viewer",
    responses((status = 200, description = "The style sheet", body = String, content_type = "text/css")),
)]
pub async fn style(State(state): State<AppState>) -> Response {
    static_file(&state, "text/css; charset=utf-8", PAGE_CSS)
}

// ---------------------------------------------------------------------------------------------
// Token-authenticated reads.

/// The token of a `/viewer/api` request, checked.
fn viewer_claims(state: &AppState, p: &Params) -> Result<Claims, ApiError> {
    let Some(t) = params::opt(p, "token") else {
        return Err(ApiError::unauthorized(
            "missing viewer token: open the viewer with the link you were given (…/viewer?token=…)",
        ));
    };
    let claims = state
        .viewer_key
        .verify(t, now_secs())
        .map_err(|e: TokenError| ApiError::unauthorized(e.message()))?;
    state.limiter.check(&claims.jti)?;
    Ok(claims)
}

/// Can this token see this event?
fn visible(claims: &Claims, e: &StoredEvent) -> bool {
    e.tenant_id == claims.tid && claims.act.as_ref().is_none_or(|a| *a == e.actor)
}

/// The token's scope.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ViewerSession {
    pub tenant_id: String,
    /// The one actor shown, if the token is bound to one.
    #[schema(required = true)]
    pub actor: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub token_id: String,
}

/// The token's query parameter.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TokenParam {
    /// The viewer token (`tkv1.…`).
    pub token: String,
}

/// What the token shows: its tenant, actor and expiry. Reads no events (not logged).
#[utoipa::path(
    get,
    path = "/viewer/api/session",
    operation_id = "viewer_session",
    tag = "viewer",
    security(("viewer_token" = [])),
    params(TokenParam),
    responses(
        (status = 200, description = "The token's scope", body = ViewerSession),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn session(
    State(state): State<AppState>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = params::query_params(p, TOKEN_PARAMS)?;
    let c = viewer_claims(&state, &p)?;
    Ok(private(
        Json(ViewerSession {
            tenant_id: c.tid,
            actor: c.act,
            expires_at: rfc3339_secs(c.exp),
            token_id: c.jti,
        })
        .into_response(),
    ))
}

/// Filters of `GET /viewer/api/events`: those of `GET /v1/events` within the token's scope.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ViewerEventParams {
    /// The viewer token (`tkv1.…`).
    pub token: String,
    /// An exact type (`prompt.update`) or a prefix wildcard (`billing.*`).
    #[param(pattern = r"^([a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?|\*)$")]
    pub event_type: Option<String>,
    /// Exact actor (a token bound to an actor refuses any other).
    pub actor: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Case-insensitive substring of the payload or actor.
    pub q: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (same order).
    pub cursor: Option<String>,
    /// By `(timestamp, event_id)`; default `desc`.
    #[param(inline)]
    pub order: Option<crate::openapi::SortOrder>,
}

/// The query parameters of `GET /viewer/api/events`: the token and the listing filters.
pub const LIST_PARAMS: &[&str] = &[
    "token",
    "event_type",
    "actor",
    "since",
    "until",
    "q",
    "limit",
    "cursor",
    "order",
];

/// The filters of a read, for its `audit.read` event: the parameters without the token, each
/// value cut to 256 bytes.
fn logged_filters(p: &Params) -> Value {
    let mut m = serde_json::Map::new();
    let mut keys: Vec<&String> = p.keys().filter(|k| *k != "token").collect();
    keys.sort();
    for k in keys {
        let v = &p[k];
        let mut end = v.len().min(256);
        while !v.is_char_boundary(end) {
            end -= 1;
        }
        m.insert(k.clone(), Value::String(v[..end].to_string()));
    }
    Value::Object(m)
}

/// The token's tenant's events (and only its actor's, if bound), newest first unless
/// `order=asc`, paged with `cursor`. Logged as an `audit.read` event in the token's tenant.
#[utoipa::path(
    get,
    path = "/viewer/api/events",
    operation_id = "viewer_list_events",
    tag = "viewer",
    security(("viewer_token" = [])),
    params(ViewerEventParams),
    responses(
        (status = 200, description = "A page of events", body = crate::openapi::EventPage),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn list(
    State(state): State<AppState>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = params::query_params(p, LIST_PARAMS)?;
    let claims = viewer_claims(&state, &p)?;
    let mut q = params::event_query(&p)?;
    q.tenant_id = Some(claims.tid.clone());
    if let Some(bound) = &claims.act {
        if q.actor.as_ref().is_some_and(|a| a != bound) {
            return Err(ApiError::forbidden(format!(
                "this viewer token shows only the events of actor {bound}"
            )));
        }
        q.actor = Some(bound.clone());
    }
    let mut page = state.store.query(q).await?;
    // The store filtered by the token's scope; checked again here, so that nothing outside it
    // can ever leave through this endpoint.
    page.events.retain(|e| visible(&claims, e));
    crate::audit::record_viewer_read(&state, &claims, "/viewer/api/events", logged_filters(&p))
        .await?;
    Ok(private(crate::query::json_response(
        crate::query::events_body(&page.events, page.next_cursor.map(|c| c.encode())),
    )))
}

/// An event of the token's scope (another tenant's or actor's event is a 404).
async fn scoped_event(
    state: &AppState,
    claims: &Claims,
    id: Result<Path<String>, PathRejection>,
) -> Result<StoredEvent, ApiError> {
    let id = params::path_param(id)?;
    let id = parse_uuid(&id)
        .ok_or_else(|| ApiError::bad_request("invalid event id: expected a UUID"))?;
    match state.store.get_event(id).await? {
        Some(e) if visible(claims, &e) => Ok(e),
        _ => Err(ApiError::not_found(format!("no event {id}"))),
    }
}

/// One event of the token's scope. Logged as an `audit.read` event in the token's tenant.
#[utoipa::path(
    get,
    path = "/viewer/api/events/{event_id}",
    operation_id = "viewer_get_event",
    tag = "viewer",
    security(("viewer_token" = [])),
    params(
        ("event_id" = String, Path, format = "uuid", example = json!("0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f"), description = "The event's id"),
        TokenParam,
    ),
    responses(
        (status = 200, description = "The event", body = crate::openapi::Event),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn get_event(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = params::query_params(p, TOKEN_PARAMS)?;
    let claims = viewer_claims(&state, &p)?;
    let e = scoped_event(&state, &claims, id).await?;
    let path = format!("/viewer/api/events/{}", e.event_id);
    crate::audit::record_viewer_read(&state, &claims, &path, logged_filters(&p)).await?;
    let mut out = Vec::with_capacity(512);
    trailkeep_core::render::write_event(&mut out, &e);
    Ok(private(crate::query::json_response(out)))
}

/// Whether an event is proven to be in its tenant's signed log.
#[derive(ToSchema, Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
pub enum ProofState {
    /// The leaf hash matches the event, the checkpoint's signature verifies with the log's key,
    /// and the inclusion proof verifies against the checkpoint's root.
    Verified,
    /// No signed checkpoint covers the event yet (checkpoints follow within a second).
    Pending,
    /// A check failed: the event, the proof or the checkpoint does not match. Report it.
    Failed,
}

/// `GET /viewer/api/events/{event_id}/proof`: checked on the server.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProofStatus {
    pub status: ProofState,
    /// What was checked, or what is missing, in a sentence.
    pub message: String,
    #[schema(minimum = 0)]
    pub seq: u64,
    /// RFC 6962 leaf hash, standard base64.
    #[schema(content_encoding = "base64")]
    pub leaf_hash: String,
    /// The size of the checkpoint checked against; null while pending.
    #[schema(required = true, minimum = 1)]
    pub tree_size: Option<u64>,
    /// The checkpoint's root hash (standard base64); null while pending.
    #[schema(required = true)]
    pub root: Option<String>,
    /// The inclusion proof's hashes (standard base64), leaf to root; empty while pending.
    pub proof: Vec<String>,
    /// The signed checkpoint (C2SP signed note); null while pending.
    #[schema(required = true)]
    pub checkpoint: Option<String>,
    /// The log's verifier key (signed-note vkey), to check the checkpoint independently.
    pub public_key: String,
}

/// The event's proof status against its tenant's latest signed checkpoint, checked on the
/// server. Logged as an `audit.read` event in the token's tenant.
#[utoipa::path(
    get,
    path = "/viewer/api/events/{event_id}/proof",
    operation_id = "viewer_event_proof",
    tag = "viewer",
    security(("viewer_token" = [])),
    params(
        ("event_id" = String, Path, format = "uuid", example = json!("0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f"), description = "The event's id"),
        TokenParam,
    ),
    responses(
        (status = 200, description = "The proof status", body = ProofStatus),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn proof(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = params::query_params(p, TOKEN_PARAMS)?;
    let claims = viewer_claims(&state, &p)?;
    let e = scoped_event(&state, &claims, id).await?;
    let log = state
        .log
        .clone()
        .ok_or_else(|| ApiError::unavailable("this server has no signing key configured"))?;
    let mut out = ProofStatus {
        status: ProofState::Pending,
        message: String::new(),
        seq: e.seq,
        leaf_hash: STANDARD.encode(e.leaf_hash),
        tree_size: None,
        root: None,
        proof: Vec::new(),
        checkpoint: None,
        public_key: log.verifier.to_vkey(),
    };
    let cp = state.store.latest_checkpoint(&e.tenant_id).await?;
    match cp {
        Some(cp) if e.seq < cp.size => {
            let proof = state
                .store
                .inclusion_proof(&e.tenant_id, e.seq, cp.size)
                .await?;
            let recomputed = trailkeep_core::leaf::stored_event_leaf_hash(&e);
            let opened = trailkeep_tlog::open_checkpoint_for_origin(
                &cp.note,
                &log.origin(&e.tenant_id),
                &log.verifier,
            );
            let (status, message) = match (recomputed, opened) {
                (Some(leaf), _) if leaf != e.leaf_hash => (
                    ProofState::Failed,
                    "the event's fields do not hash to its stored leaf hash".to_string(),
                ),
                (None, _) => (
                    ProofState::Failed,
                    "the event's leaf hash cannot be recomputed (no payload, salt or commitment)"
                        .to_string(),
                ),
                (_, Err(err)) => (
                    ProofState::Failed,
                    format!("the checkpoint does not verify with the log's key: {err}"),
                ),
                (Some(leaf), Ok(opened)) => match trailkeep_tlog::verify_inclusion(
                    e.seq,
                    opened.size,
                    &leaf,
                    &proof,
                    &opened.root,
                ) {
                    Ok(()) => (
                        ProofState::Verified,
                        format!(
                            "included at seq {} in the signed checkpoint of size {} (leaf hash recomputed from the event, signature checked with the log's key)",
                            e.seq, opened.size
                        ),
                    ),
                    Err(err) => (
                        ProofState::Failed,
                        format!("the inclusion proof does not verify: {err}"),
                    ),
                },
            };
            out.status = status;
            out.message = message;
            out.tree_size = Some(cp.size);
            out.root = Some(STANDARD.encode(cp.root));
            out.proof = proof.iter().map(|h| STANDARD.encode(h)).collect();
            out.checkpoint = Some(cp.note);
        }
        _ => {
            out.message = "no signed checkpoint covers this event yet; checkpoints follow within a second, check again shortly".into();
        }
    }
    let path = format!("/viewer/api/events/{}/proof", e.event_id);
    crate::audit::record_viewer_read(&state, &claims, &path, logged_filters(&p)).await?;
    Ok(private(Json(out).into_response()))
}
