//! The API description: an OpenAPI 3.1 document generated from the handlers' `#[utoipa::path]`
//! annotations and the schema types below, served at `GET /openapi.json`.
//!
//! Most handlers write their JSON by hand (events are rendered without an intermediate value),
//! so the schemas of those bodies are declared here, field for field, next to the types the
//! handlers do serialise. The API tests check that every route of [`crate::routes`] is
//! documented with its error responses; `scripts/schemathesis.sh` checks the live server's
//! responses against this document.

use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToResponse, ToSchema};

/// The pattern of a tenant id (docs/api.md), `_global` included. The attributes below repeat it
/// (they take literals); the API tests check every copy in the document against this one.
pub const TENANT_PATTERN: &str = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$";
/// The pattern of an event type (docs/events.md); checked like [`TENANT_PATTERN`].
pub const EVENT_TYPE_PATTERN: &str = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "trailkeep",
        description = "Self-hosted, verifiable audit log. Every 4xx/5xx answer carries the \
            `Error` body. Authenticate with `Authorization: Bearer <key>`; the roles a key needs \
            are named in each operation's description. Every operation refuses query parameters \
            it does not list and ones given twice (400); a query parameter given an empty value \
            counts as absent. Successful reads made with an `auditor` key are logged as \
            `audit.read` events before the answer leaves.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        crate::ingest::post_events,
        crate::query::list_events,
        crate::query::get_event,
        crate::query::tenants,
        crate::query::stats,
        crate::alerts::rules,
        crate::alerts::list,
        crate::impersonation::list,
        crate::impersonation::get,
        crate::approvals::create,
        crate::approvals::list,
        crate::approvals::get,
        crate::approvals::approve,
        crate::approvals::reject,
        crate::keys::create,
        crate::keys::list,
        crate::keys::revoke,
        crate::proofs::public_key,
        crate::proofs::checkpoint,
        crate::proofs::inclusion,
        crate::proofs::consistency,
        crate::proofs::leaves,
        crate::proofs::event_proof,
        crate::export::export,
        crate::export::bundle,
        crate::ops::healthz,
        crate::ops::readyz,
        crate::ops::metrics,
        openapi_json,
        crate::viewer::mint,
        crate::viewer::page,
        crate::viewer::script,
        crate::viewer::style,
        crate::viewer::session,
        crate::viewer::list,
        crate::viewer::get_event,
        crate::viewer::proof,
    ),
    components(schemas(ErrorBody), responses(
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        PayloadTooLarge,
        ValidationFailed,
        RateLimited,
        RequestTimeout,
        Internal,
        Unavailable,
    )),
    modifiers(&BearerAuth, &QueryRefusals),
    tags(
        (name = "events", description = "Ingest and query events"),
        (name = "impersonations", description = "Impersonation sessions, derived from the log"),
        (name = "alerts", description = "Alert rules and deliveries"),
        (name = "approvals", description = "Dual approval of sensitive actions, derived from the log"),
        (name = "keys", description = "API keys (admin)"),
        (name = "proofs", description = "Checkpoints and Merkle proofs"),
        (name = "export", description = "Streamed exports (CSV, NDJSON, JSON, Parquet) and evidence bundles"),
        (name = "operations", description = "Health, readiness, metrics, this document"),
        (name = "viewer", description = "Viewer tokens, the embeddable viewer page and its token-authenticated reads"),
    ),
)]
pub struct ApiDoc;

/// The name of the security scheme in the document.
pub const BEARER: &str = "bearer";
/// The name of the viewer-token scheme (the `token` query parameter of `/viewer/api/…`).
pub const VIEWER_TOKEN: &str = "viewer_token";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "An API key (`tk_…`, created with `trailkeep key create` or `POST /v1/keys`), or \
             the server's TRAILKEEP_ADMIN_KEY."
                .into(),
        );
        components.add_security_scheme(BEARER, SecurityScheme::Http(http));
        components.add_security_scheme(
            VIEWER_TOKEN,
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "A viewer token (`tkv1.…`) minted with `POST /v1/viewer-tokens`: short-lived, \
                 bound to one tenant (and optionally one actor).",
            ))),
        );
    }
}

/// Refusals every operation can give, documented on each: unknown or repeated query parameters
/// (400, also where it takes none), a client address over its failed-authentication limit (429,
/// before any key is checked), and, where a body is sent, a body that does not arrive in time
/// (408).
struct QueryRefusals;

impl Modify for QueryRefusals {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Ref, RefOr};
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.head,
                &mut item.patch,
            ];
            for (i, op) in ops.into_iter().enumerate() {
                let Some(op) = op else { continue };
                let r = &mut op.responses.responses;
                r.entry("400".to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("BadRequest")));
                r.entry("429".to_string())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name("RateLimited")));
                // put, post, patch take bodies.
                if matches!(i, 1 | 2 | 5) {
                    r.entry("408".to_string())
                        .or_insert_with(|| RefOr::Ref(Ref::from_response_name("RequestTimeout")));
                }
            }
        }
    }
}

/// The document as JSON text (built once).
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_default())
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 description of this API",
        content_type = "application/json", body = Object)),
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], document()).into_response()
}

/// `GET /healthz` (`ok`) and `GET /readyz` (`ready`).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: HealthStatus,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    Ok,
    Ready,
}

// ---------------------------------------------------------------------------------------------
// Errors (docs/api.md#errors).

/// Every 4xx/5xx body.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[schema(as = Error)]
pub struct ErrorBody {
    pub error: ErrorObject,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorObject {
    pub code: ErrorCode,
    /// What went wrong and what to do, for people.
    pub message: String,
    /// Validation issues (one per problem, `validation_failed`) or the conflicting event
    /// (`conflict`); empty otherwise.
    pub details: Vec<ErrorDetail>,
}

/// Machine-readable error code.
#[derive(ToSchema, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    BodyTooLarge,
    TooManyEvents,
    EventTooLarge,
    ValidationFailed,
    RateLimited,
    Internal,
    Unavailable,
    /// A stored event failed its integrity check when read (500).
    Corrupt,
    /// The tenant's log failed the integrity check at start (503).
    Quarantined,
    /// `/readyz`: the store works but something needs an operator (503).
    Degraded,
    /// The server is still opening its store (503).
    Starting,
    /// The request body did not arrive in time (408).
    BodyTimeout,
    /// The request target is too long (414).
    UriTooLong,
    /// The request's header fields are too large (431).
    HeadersTooLarge,
}

/// One problem: the event's index in the request, the JSON path inside it (empty for the event
/// itself), and what is wrong.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    #[schema(minimum = 0)]
    pub index: Option<u64>,
    pub path: Option<String>,
    pub message: Option<String>,
    /// For `conflict`: the event id already used with different content.
    #[schema(format = "uuid")]
    pub event_id: Option<String>,
    /// For a refused approval step: the specific reason (`approver_repeated`,
    /// `approval_expired`, …; docs/api.md#dual-approval).
    pub reason: Option<String>,
}

/// The request is malformed: body not JSON/NDJSON, wrong content type, a bad, unknown or
/// repeated query parameter, a bad path parameter.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct BadRequest(pub ErrorBody);

/// No key, a malformed `Authorization` header, or an unknown, revoked or expired key.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct Unauthorized(pub ErrorBody);

/// The key lacks the role, or is bound to another tenant.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct Forbidden(pub ErrorBody);

/// Not found (or not visible to this key). Answers about checkpoints not signed yet carry
/// `Retry-After`.
#[derive(ToResponse)]
#[response(
    content_type = "application/json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying, when retrying can help"))
)]
pub struct NotFound(pub ErrorBody);

/// An `event_id` already used with different content; nothing of the request was stored.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct Conflict(pub ErrorBody);

/// The body is over the limit, has too many events, or an event is over 256 KiB.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct PayloadTooLarge(pub ErrorBody);

/// The body parsed but is invalid; `details` lists every problem. Nothing was stored.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct ValidationFailed(pub ErrorBody);

/// The key's rate limit is exceeded, or the client's address sent too many requests with a
/// missing or wrong key; nothing of the request was processed.
#[derive(ToResponse)]
#[response(
    content_type = "application/json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))
)]
pub struct RateLimited(pub ErrorBody);

/// The request body did not arrive within `limits.body_read_timeout` of its head; nothing of the
/// request was processed.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct RequestTimeout(pub ErrorBody);

/// Internal error (stored data failed a check); the details are in the server log.
#[derive(ToResponse)]
#[response(content_type = "application/json")]
pub struct Internal(pub ErrorBody);

/// Storage unavailable or shutting down, no signing key configured, or an auditor's read could
/// not be recorded. Nothing was stored.
#[derive(ToResponse)]
#[response(
    content_type = "application/json",
    headers(("Retry-After" = u64, description = "Seconds to wait before retrying, when retrying can help"))
)]
pub struct Unavailable(pub ErrorBody);

// ---------------------------------------------------------------------------------------------
// Events (docs/events.md, docs/api.md).

/// An event as sent to `POST /v1/events` (docs/events.md). Built-in event types (`prompt.update`,
/// `crawl.run`, …) have required payload fields; other types take a free-form payload.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
#[schema(example = example_event)]
pub struct NewEvent {
    /// The idempotency key; assigned (UUIDv7) when absent.
    #[schema(format = "uuid")]
    pub event_id: Option<String>,
    #[schema(pattern = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$", max_length = 128)]
    pub event_type: String,
    /// `user:…`, `admin:…` or `svc:…`; at most 256 bytes.
    #[schema(min_length = 1, max_length = 256)]
    pub actor: String,
    #[schema(pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$")]
    pub tenant_id: String,
    /// A JSON object, nesting depth at most 32; numbers within ±(2^53−1) or finite floats.
    #[schema(value_type = Object)]
    pub payload: (),
    /// RFC 3339, at most 5 minutes in the future; absent: the time of receipt.
    #[schema(format = DateTime)]
    pub timestamp: Option<String>,
    /// An IPv4 or IPv6 address.
    pub source_ip: Option<String>,
    pub impersonation_session: Option<String>,
    pub approval_id: Option<String>,
}

/// The id of the example event.
pub const EXAMPLE_EVENT_ID: &str = "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f";
/// The tenant of the example event.
pub const EXAMPLE_TENANT: &str = "t_0042";

/// A valid `prompt.update` event (docs/events.md's example with real hashes).
pub fn example_event() -> serde_json::Value {
    let hash = format!("sha256:{}", "ab".repeat(32));
    serde_json::json!({
        "event_id": EXAMPLE_EVENT_ID,
        "event_type": "prompt.update",
        "actor": "user:ana3@acme.example",
        "tenant_id": EXAMPLE_TENANT,
        "payload": {
            "before": {"prompt_hash": hash},
            "after": {"prompt_hash": hash},
            "editor": "user:ana3@acme.example",
            "reason": "tone fix",
            "prompt_id": "pr_7"
        },
        "timestamp": "2026-11-23T10:15:00.123Z",
        "source_ip": "203.0.113.7",
        "impersonation_session": "imp_8812"
    })
}

/// The body of `POST /v1/events` as JSON: one event, or an array of 1 to 10,000.
pub struct NewEvents;

impl utoipa::PartialSchema for NewEvents {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ArrayBuilder, OneOfBuilder, Ref};
        OneOfBuilder::new()
            .item(Ref::from_schema_name("NewEvent"))
            .item(
                ArrayBuilder::new()
                    .items(Ref::from_schema_name("NewEvent"))
                    .min_items(Some(1))
                    .max_items(Some(10_000)),
            )
            .description(Some(
                "One event, or an array of 1 to 10,000 events (all or nothing).",
            ))
            .into()
    }
}

impl ToSchema for NewEvents {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        schemas.push((
            NewEvent::name().into(),
            <NewEvent as utoipa::PartialSchema>::schema(),
        ));
        <NewEvent as ToSchema>::schemas(schemas);
    }
}

/// Answer to `POST /v1/events`, receipts in request order.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IngestResponse {
    #[schema(minimum = 0)]
    pub accepted: u64,
    /// Events already stored with identical content (their original receipt is returned).
    #[schema(minimum = 0)]
    pub duplicates: u64,
    pub receipts: Vec<Receipt>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    #[schema(format = "uuid")]
    pub event_id: String,
    pub tenant_id: String,
    /// Position in the tenant's log.
    #[schema(minimum = 0)]
    pub seq: u64,
    /// RFC 6962 leaf hash, standard base64.
    #[schema(content_encoding = "base64")]
    pub leaf_hash: String,
}

/// A stored event: the envelope, then what the server added. A purged event has
/// `"payload": null`, `"purged": true` and its `payload_commitment`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    #[schema(format = "uuid")]
    pub event_id: String,
    pub event_type: String,
    pub actor: String,
    pub tenant_id: String,
    /// The payload as canonical JSON (RFC 8785); null once purged.
    #[schema(value_type = Option<Object>)]
    pub payload: (),
    /// UTC, `Z`, millisecond or finer precision.
    #[schema(format = DateTime)]
    pub timestamp: String,
    #[schema(required = false)]
    pub source_ip: String,
    #[schema(required = false)]
    pub impersonation_session: String,
    #[schema(required = false)]
    pub approval_id: String,
    #[schema(minimum = 0)]
    pub seq: u64,
    #[schema(format = DateTime)]
    pub received_at: String,
    /// RFC 6962 leaf hash, standard base64.
    #[schema(content_encoding = "base64")]
    pub leaf_hash: String,
    /// Hex; the salt of the payload commitment.
    #[schema(required = false, pattern = "^[0-9a-f]{64}$")]
    pub payload_salt: String,
    #[schema(required = false)]
    pub purged: bool,
    /// Hex SHA-256 commitment of a purged payload.
    #[schema(required = false, pattern = "^[0-9a-f]{64}$")]
    pub payload_commitment: String,
}

/// A page of events.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Pass as `cursor` for the next page; null on the last page (and with `from_seq`).
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// Filters of `GET /v1/events` (docs/api.md). Unknown parameters are refused (400).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct EventListParams {
    /// Only this tenant (a tenant-bound key reads only its own).
    #[param(
        example = "t_0042",
        pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$"
    )]
    pub tenant_id: Option<String>,
    /// An exact type (`prompt.update`) or a prefix wildcard (`billing.*`).
    #[param(pattern = r"^([a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?|\*)$")]
    pub event_type: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Impersonation session id.
    pub session: Option<String>,
    /// Case-insensitive substring of the payload or actor.
    pub q: Option<String>,
    /// Page size (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (same order).
    pub cursor: Option<String>,
    /// By `(timestamp, event_id)`; default `desc`.
    #[param(inline)]
    pub order: Option<SortOrder>,
    /// With `tenant_id`: the tenant's events in log order from this `seq` on.
    #[param(minimum = 0)]
    pub from_seq: Option<u64>,
}

/// Parameters of `GET /v1/export` (docs/export.md): a listing's filters, `order` and `format`;
/// no `limit` or `cursor`. Unknown parameters are refused (400).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ExportParams {
    /// Only this tenant (a tenant-bound key exports only its own).
    #[param(
        example = "t_0042",
        pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$"
    )]
    pub tenant_id: Option<String>,
    /// An exact type (`prompt.update`) or a prefix wildcard (`billing.*`).
    #[param(pattern = r"^([a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?|\*)$")]
    pub event_type: Option<String>,
    /// Exact actor.
    pub actor: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// Impersonation session id.
    pub session: Option<String>,
    /// Case-insensitive substring of the payload or actor.
    pub q: Option<String>,
    /// By `(timestamp, event_id)`; default `desc`.
    #[param(inline)]
    pub order: Option<SortOrder>,
    /// Default `ndjson`.
    #[param(inline)]
    pub format: Option<ExportFormat>,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    Ndjson,
    Csv,
    Json,
    Parquet,
}

/// Parameters of `GET /v1/export/bundle` (docs/verification.md#evidence-bundles).
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct BundleParams {
    /// The tenant (required unless the key is bound to one).
    #[param(
        example = "t_0042",
        pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$"
    )]
    pub tenant_id: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
    /// `gzip` for a `.tar.gz`; default `none`.
    #[param(inline)]
    pub compress: Option<Compression>,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
}

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

/// Filters of `GET /v1/stats`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct StatsParams {
    #[param(pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$")]
    pub tenant_id: Option<String>,
    /// RFC 3339, inclusive.
    #[param(format = DateTime)]
    pub since: Option<String>,
    /// RFC 3339, exclusive.
    #[param(format = DateTime)]
    pub until: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Keys (docs/api.md).

#[derive(ToSchema, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyRole {
    Admin,
    Ingest,
    Reader,
    Auditor,
    Approver,
}

/// Body of `POST /v1/keys`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRequest {
    pub role: KeyRole,
    /// Binds the key to one tenant (not for admin keys).
    #[schema(pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$")]
    pub tenant_id: Option<String>,
    /// Lifetime: a number with `d`, `h`, `m` or `s` (`30d`); auditor keys default to 30 days.
    #[schema(pattern = r"^[0-9]+[dhms]?$")]
    pub ttl: Option<String>,
}

/// A key as listed (the secret is never shown again).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub id: String,
    pub role: KeyRole,
    #[schema(required = false)]
    pub tenant_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = false, format = DateTime)]
    pub expires_at: String,
    pub revoked: bool,
}

/// A new key, with its secret (shown only here).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewKey {
    pub id: String,
    pub role: KeyRole,
    #[schema(required = false)]
    pub tenant_id: String,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(required = false, format = DateTime)]
    pub expires_at: String,
    pub revoked: bool,
    /// The secret to send as `Authorization: Bearer <key>`.
    pub key: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KeyList {
    pub keys: Vec<Key>,
}
