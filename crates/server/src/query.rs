//! Reads (SPEC §4.2): event listings, one event, tenants, stats.
//!
//! Beyond the spec, `GET /v1/events?tenant_id=T&from_seq=N` lists a tenant's events in log
//! order (`seq` ≥ N, ascending); `trailkeep tail` follows a log with it, which (unlike a listing
//! by timestamp) also catches back-filled events.

use crate::auth::{authenticate, READ_ROLES};
use crate::params::{self, Params};
use crate::{ApiError, AppState};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use trailkeep_core::render::write_event;
use trailkeep_core::validate::parse_uuid;
use trailkeep_core::StoredEvent;
use trailkeep_store::StatsQuery;

fn json_response(body: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn events_body(events: &[StoredEvent], next_cursor: Option<String>) -> Vec<u8> {
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

pub async fn list_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<Params>, QueryRejection>,
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
        return Ok(json_response(events_body(&events, None)));
    }
    let page = state.store.query(q).await?;
    Ok(json_response(events_body(
        &page.events,
        page.next_cursor.map(|c| c.encode()),
    )))
}

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
            Ok(json_response(out))
        }
        _ => Err(ApiError::not_found(format!("no event {id}"))),
    }
}

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
        .map(|t| {
            json!({
                "tenant_id": t.tenant_id,
                "event_count": t.event_count,
                "first_timestamp": t.first_timestamp.map(|x| x.to_rfc3339()),
                "last_timestamp": t.last_timestamp.map(|x| x.to_rfc3339()),
                "retention_days": days,
                "legal_hold": false,
            })
        })
        .collect();
    Ok(json_response(
        serde_json::to_vec(&json!({"tenants": tenants})).unwrap_or_default(),
    ))
}

pub async fn stats(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read stats")?;
    let p = params::query_params(p, &["tenant_id", "since", "until"])?;
    let tenant = principal.read_scope(params::tenant(&p)?)?;
    let since = params::time(&p, "since")?;
    let until = params::time(&p, "until")?;
    let s = state
        .store
        .stats(StatsQuery {
            tenant_id: tenant.clone(),
            since,
            until,
        })
        .await?;
    let body = json!({
        "tenant_id": tenant,
        "since": since.map(|t| t.to_rfc3339()),
        "until": until.map(|t| t.to_rfc3339()),
        "total": s.total,
        "counts_by_type": s.counts_by_type,
        "counts_by_day": s.counts_by_day,
    });
    Ok(json_response(serde_json::to_vec(&body).unwrap_or_default()))
}
