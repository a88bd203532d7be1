//! Reads (docs/api.md): event listings, one event, tenants, stats.
//!
//! Beyond the spec, `GET /v1/events?tenant_id=T&from_seq=N` lists a tenant's events in log
//! order (`seq` ≥ N, ascending); `trailkeep tail` follows a log with it, which (unlike a listing
//! by timestamp) also catches back-filled events.

use crate::audit::{scope_of, served, Scope};
use crate::auth::{authenticate, READ_ROLES};
use crate::params;
use crate::{ApiError, AppState};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::collections::BTreeMap;
use trailkeep_core::render::write_event;
use trailkeep_core::validate::parse_uuid;
use trailkeep_core::StoredEvent;
use trailkeep_store::StatsQuery;
use utoipa::ToSchema;

pub(crate) fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A JSON answer with `status`, serialised from `body`.
pub(crate) fn render_json<T: serde::Serialize>(
    status: axum::http::StatusCode,
    body: &T,
) -> Result<Response, ApiError> {
    let bytes =
        serde_json::to_vec(body).map_err(|e| ApiError::internal(format!("rendering: {e}")))?;
    let mut resp = json_response(bytes);
    *resp.status_mut() = status;
    Ok(resp)
}

pub(crate) fn events_body(events: &[StoredEvent], next_cursor: Option<String>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + events.len() * 512);
    out.extend_from_slice(b"{\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_event(&mut out, e);
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match next_cursor {
        Some(c) => out.extend_from_slice(serde_json::to_string(&c).unwrap_or_default().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}

/// `GET /v1/tenants`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantList {
    pub tenants: Vec<Tenant>,
}

/// One tenant's log.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    pub tenant_id: String,
    #[schema(minimum = 0)]
    pub event_count: u64,
    /// The earliest event timestamp; null without events.
    #[schema(required = true, format = DateTime)]
    pub first_timestamp: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub last_timestamp: Option<String>,
    pub retention_days: u32,
    pub legal_hold: bool,
}

/// Event counts by type and by UTC day.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatsBody {
    #[schema(required = true)]
    pub tenant_id: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub since: Option<String>,
    #[schema(required = true, format = DateTime)]
    pub until: Option<String>,
    #[schema(minimum = 0)]
    pub total: u64,
    pub counts_by_type: BTreeMap<String, u64>,
    /// Keyed by `YYYY-MM-DD`.
    pub counts_by_day: BTreeMap<String, u64>,
}

/// Lists events, newest first unless `order=asc`, paged with `cursor`.
///
/// Needs an `admin`, `reader` or `auditor` key (a tenant-bound key reads only its tenant).
/// With `tenant_id` and `from_seq`, lists that tenant's log in `seq` order instead.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "events",
    security(("bearer" = [])),
    params(crate::openapi::EventListParams),
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
pub async fn list_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read events")?;
    let p = params::query_params(p, params::EVENT_PARAMS)?;
    let mut q = params::event_query(&p)?;
    q.tenant_id = principal.read_scope(q.tenant_id.take())?;
    if let Some(from) = params::u64_param(&p, "from_seq")? {
        let Some(tenant) = q.tenant_id.clone() else {
            return Err(ApiError::bad_request(
                "from_seq needs tenant_id: it follows one tenant's log",
            ));
        };
        let events = state.store.read_log(&tenant, from, q.limit).await?;
        return Ok(served(
            &principal,
            Scope::Tenant(tenant),
            json_response(events_body(&events, None)),
        ));
    }
    let scope = scope_of(q.tenant_id.as_deref());
    let page = state.store.query(q).await?;
    Ok(served(
        &principal,
        scope,
        json_response(events_body(
            &page.events,
            page.next_cursor.map(|c| c.encode()),
        )),
    ))
}

/// One event, with `seq`, `received_at` and `leaf_hash`.
///
/// Needs an `admin`, `reader` or `auditor` key; another tenant's event is a 404 for a
/// tenant-bound key.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}",
    tag = "events",
    security(("bearer" = [])),
    params(("event_id" = String, Path, format = "uuid", example = json!("0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f"), description = "The event's id")),
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
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read events")?;
    let id = params::path_param(id)?;
    let id = parse_uuid(&id)
        .ok_or_else(|| ApiError::bad_request("invalid event id: expected a UUID"))?;
    match state.store.get_event(id).await? {
        Some(e) if principal.can_see_tenant(&e.tenant_id) => {
            let mut out = Vec::with_capacity(512);
            write_event(&mut out, &e);
            Ok(served(
                &principal,
                Scope::Tenant(e.tenant_id.to_string()),
                json_response(out),
            ))
        }
        _ => Err(ApiError::not_found(format!("no event {id}"))),
    }
}

/// The tenants with events (a tenant-bound key sees only its own).
///
/// Needs an `admin`, `reader` or `auditor` key.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    tag = "events",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The tenants", body = TenantList),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn tenants(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "list tenants")?;
    let list = state.store.tenants().await?;
    let days = state.config.default_retention_days;
    let tenants: Vec<_> = list
        .into_iter()
        .filter(|t| principal.can_see_tenant(&t.tenant_id))
        .map(|t| Tenant {
            tenant_id: t.tenant_id,
            event_count: t.event_count,
            first_timestamp: t.first_timestamp.map(|x| x.to_rfc3339()),
            last_timestamp: t.last_timestamp.map(|x| x.to_rfc3339()),
            retention_days: days,
            legal_hold: false,
        })
        .collect();
    Ok(served(
        &principal,
        scope_of(principal.tenant.as_deref()),
        json_response(serde_json::to_vec(&TenantList { tenants }).unwrap_or_default()),
    ))
}

/// Event counts by type and by UTC day.
///
/// Needs an `admin`, `reader` or `auditor` key (a tenant-bound key counts only its tenant).
#[utoipa::path(
    get,
    path = "/v1/stats",
    tag = "events",
    security(("bearer" = [])),
    params(crate::openapi::StatsParams),
    responses(
        (status = 200, description = "The counts", body = StatsBody),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read stats")?;
    let p = params::query_params(p, params::STATS_PARAMS)?;
    let tenant = principal.read_scope(params::tenant(&p)?)?;
    let (since, until) = params::time_range(&p)?;
    let scope = scope_of(tenant.as_deref());
    let s = state
        .store
        .stats(StatsQuery {
            tenant_id: tenant.clone(),
            since,
            until,
        })
        .await?;
    let body = StatsBody {
        tenant_id: tenant,
        since: since.map(|t| t.to_rfc3339()),
        until: until.map(|t| t.to_rfc3339()),
        total: s.total,
        counts_by_type: s.counts_by_type,
        counts_by_day: s.counts_by_day,
    };
    Ok(served(
        &principal,
        scope,
        json_response(serde_json::to_vec(&body).unwrap_or_default()),
    ))
}
