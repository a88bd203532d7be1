//! Impersonation sessions (docs/api.md#impersonation-sessions): `GET /v1/impersonations` and
//! `GET /v1/impersonations/{session_id}`.
//!
//! # How the state is derived
//!
//! Nothing about sessions is stored apart from the log: each request reads the log again and
//! folds it with [`trailkeep_control::sessions::Sessions::apply`], so the answer is always
//! what the log says, and nothing can drift from it.
//!
//! - The sessions themselves come from the tenant's `impersonation.*` events, read with
//!   `Store::export` (one consistent snapshot, batches of bounded size) and folded in log
//!   order. For one tenant the export is in log order already. For every tenant (an unbound
//!   key without `tenant_id`) an export in log order is not possible (seqs are per tenant), so
//!   it is read in timestamp order and then sorted by `(tenant_id, seq)` before the fold: the
//!   fold only needs each tenant's events in seq order, and sessions of different tenants
//!   never interact (a session is keyed by its tenant and id).
//! - A single session also gets its actions: the tenant's events whose
//!   `impersonation_session` names it, read with `Store::query` (`session=` filter, every
//!   page), folded together with the `impersonation.*` events in seq order, so an action
//!   lands in the session that was open, by that id, when it was logged (an id may be reused
//!   once its session has ended). The actions are rendered exactly as `GET /v1/events/{id}`
//!   renders the event, in log order (oldest first).
//!
//! The cost is a scan of the tenant's `impersonation.*` events per request; they are few next
//! to the rest of the log. Both reads go through the `Store` trait, whose conformance suite
//! runs on the embedded store and on PostgreSQL, so these endpoints are tested on the embedded
//! store only (tests/api/impersonation.rs).
//!
//! Ingest refuses an end of a session that is not open and a start of one that is
//! (`crate::gate`); the alert for a session open longer than its limit is raised by the alert
//! engine (`trailkeep_deliver`).

use crate::audit::{scope_of, served, Scope};
use crate::auth::{authenticate, READ_ROLES};
use crate::params;
use crate::query::json_response;
use crate::{ApiError, AppState};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use std::collections::HashMap;
use trailkeep_control::sessions::{Session, SessionView, Sessions};
use trailkeep_core::render::write_event;
use trailkeep_core::{StoredEvent, Timestamp};
use trailkeep_store::{EventQuery, Order};
use utoipa::{IntoParams, ToSchema};

/// Parameters of `GET /v1/impersonations`.
pub const LIST_PARAMS: &[&str] = &["tenant_id", "active"];
/// Parameters of `GET /v1/impersonations/{session_id}`.
pub const GET_PARAMS: &[&str] = &["tenant_id"];

/// The event types that open and close sessions (the fold's input besides actions).
const SESSION_TYPES: &str = "impersonation.";

/// Filters of `GET /v1/impersonations`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// Only this tenant (a tenant-bound key reads only its own).
    #[param(
        example = "t_0042",
        pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$"
    )]
    pub tenant_id: Option<String>,
    /// `true`: only open sessions; `false`: only ended ones; absent: both.
    pub active: Option<bool>,
}

/// Parameters of `GET /v1/impersonations/{session_id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct GetParams {
    /// The tenant whose session to read, when the same id is used in several tenants (an
    /// unbound key without it gets the session that started last).
    #[param(
        example = "t_0042",
        pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$"
    )]
    pub tenant_id: Option<String>,
}

/// One impersonation session (the body is `trailkeep_control::sessions::SessionView`; this
/// type documents it field for field).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SessionView)]
pub struct SessionDoc {
    /// The id clients put in `impersonation_session` (unique among the tenant's open
    /// sessions; reused ids name the newest session).
    pub session_id: String,
    pub tenant_id: String,
    /// Who acted (`payload.impersonator` of `impersonation.start`).
    pub impersonator: String,
    /// As whom.
    pub impersonated: String,
    pub reason: String,
    /// The `impersonation.start` event's timestamp.
    #[schema(format = DateTime)]
    pub start: String,
    /// The `impersonation.end` event's timestamp; null while the session is open.
    #[schema(required = true, format = DateTime)]
    pub end: Option<String>,
    pub active: bool,
    /// Whole seconds from `start` to `end`, or to now while active.
    #[schema(minimum = 0)]
    pub duration_seconds: u64,
}

/// `GET /v1/impersonations`: newest start first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionList {
    pub impersonations: Vec<SessionDoc>,
}

/// `GET /v1/impersonations/{session_id}`: the session and the events taken in it.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SessionDetail {
    pub session_id: String,
    pub tenant_id: String,
    pub impersonator: String,
    pub impersonated: String,
    pub reason: String,
    #[schema(format = DateTime)]
    pub start: String,
    #[schema(required = true, format = DateTime)]
    pub end: Option<String>,
    pub active: bool,
    #[schema(minimum = 0)]
    pub duration_seconds: u64,
    /// The events whose `impersonation_session` names this session, in log order, each as
    /// `GET /v1/events/{event_id}` returns it.
    pub actions: Vec<crate::openapi::Event>,
}

/// `active`: `true`, `false` or absent.
fn active_param(p: &params::Params) -> Result<Option<bool>, ApiError> {
    match params::opt(p, "active") {
        None => Ok(None),
        Some("true") => Ok(Some(true)),
        Some("false") => Ok(Some(false)),
        Some(_) => Err(ApiError::bad_request(
            "invalid active: expected true or false",
        )),
    }
}

/// Every event of the tenant naming `session_id` in `impersonation_session`, all pages.
async fn action_events(
    state: &AppState,
    tenant: &str,
    session_id: &str,
) -> Result<Vec<StoredEvent>, ApiError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .store
            .query(EventQuery {
                tenant_id: Some(tenant.to_string()),
                session: Some(session_id.to_string()),
                limit: 1000,
                order: Order::Asc,
                cursor,
                ..EventQuery::default()
            })
            .await?;
        out.extend(page.events);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

fn fold(events: &[StoredEvent]) -> Sessions {
    let mut sessions = Sessions::new();
    for e in events {
        // Events the fold ignores (a second start, an end of nothing) stay in the log; the
        // answer simply does not count them.
        let _ = sessions.apply(e);
    }
    sessions
}

/// Newest start first; ties by tenant and start seq, newest first.
fn newest_first(a: &Session, b: &Session) -> std::cmp::Ordering {
    (b.start.nanos, &b.tenant_id, b.start_seq).cmp(&(a.start.nanos, &a.tenant_id, a.start_seq))
}

/// Lists impersonation sessions, newest start first.
///
/// Needs an `admin`, `reader` or `auditor` key (a tenant-bound key sees only its tenant's).
/// The state is derived from the log's `impersonation.*` events on each request.
#[utoipa::path(
    get,
    path = "/v1/impersonations",
    operation_id = "list_impersonations",
    tag = "impersonations",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "The sessions", body = SessionList),
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
    headers: HeaderMap,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read impersonation sessions")?;
    let p = params::query_params(p, LIST_PARAMS)?;
    let tenant = principal.read_scope(params::tenant(&p)?)?;
    let active = active_param(&p)?;
    let events =
        crate::projection::events_in_log_order(&state, tenant.as_deref(), SESSION_TYPES).await?;
    let sessions = fold(&events);
    let mut list = sessions.list(tenant.as_deref(), active);
    list.sort_by(|a, b| newest_first(a, b));
    let now = Timestamp::now_micros();
    let views: Vec<SessionView> = list.iter().map(|s| s.view(now)).collect();
    let resp = crate::query::render_json(
        axum::http::StatusCode::OK,
        &serde_json::json!({ "impersonations": views }),
    )?;
    Ok(served(&principal, scope_of(tenant.as_deref()), resp))
}

/// One impersonation session with its actions.
///
/// Needs an `admin`, `reader` or `auditor` key. A tenant-bound key reads only its tenant's
/// sessions (another tenant's is a 404). When several tenants have a session with this id, an
/// unbound key picks one with `tenant_id`; without it the session that started last is
/// returned. A reused id names the newest session of its tenant.
#[utoipa::path(
    get,
    path = "/v1/impersonations/{session_id}",
    operation_id = "get_impersonation",
    tag = "impersonations",
    security(("bearer" = [])),
    params(
        ("session_id" = String, Path, example = json!("imp_8812"), description = "The session's id"),
        GetParams,
    ),
    responses(
        (status = 200, description = "The session and its actions", body = SessionDetail),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read impersonation sessions")?;
    let session_id = params::path_param(id)?;
    let p = params::query_params(p, GET_PARAMS)?;
    let tenant = principal.read_scope(params::tenant(&p)?)?;
    let not_found = || {
        let (shown, cut) = crate::audit::bounded(&session_id, 128);
        let more = if cut { "…" } else { "" };
        let within = match &tenant {
            Some(t) => format!(" in tenant {t}"),
            None => String::new(),
        };
        ApiError::not_found(format!(
            "no impersonation session {shown:?}{more}{within}; list them with GET /v1/impersonations"
        ))
    };
    let mut events =
        crate::projection::events_in_log_order(&state, tenant.as_deref(), SESSION_TYPES).await?;
    let found = fold(&events);
    let mut candidates = found.find(&session_id);
    candidates.sort_by(|a, b| newest_first(a, b));
    let Some(chosen) = candidates.first() else {
        return Err(not_found());
    };
    let owner = chosen.tenant_id.clone();
    // Fold the owner's session events again with the actions, in seq order, so each action
    // is attached to the session open by that id when it was logged.
    events.retain(|e| e.tenant_id == owner);
    let actions = action_events(&state, &owner, &session_id).await?;
    let mut by_id: HashMap<trailkeep_core::Uuid, StoredEvent> = HashMap::new();
    for a in actions {
        if !a.event_type.starts_with(SESSION_TYPES) {
            events.push(a.clone());
        }
        by_id.insert(a.event_id, a);
    }
    crate::projection::sort_log_order(&mut events);
    let sessions = fold(&events);
    let Some(session) = sessions.get(&owner, &session_id) else {
        return Err(not_found());
    };
    let now = Timestamp::now_micros();
    let mut out = serde_json::to_vec(&session.view(now))
        .map_err(|e| ApiError::internal(format!("rendering a session: {e}")))?;
    // `{…view}` becomes `{…view,"actions":[…]}`.
    out.pop();
    out.extend_from_slice(b",\"actions\":[");
    let mut first = true;
    for a in &session.actions {
        let Some(e) = by_id.get(&a.event_id) else {
            continue;
        };
        if !first {
            out.push(b',');
        }
        first = false;
        write_event(&mut out, e);
    }
    out.extend_from_slice(b"]}");
    Ok(served(&principal, Scope::Tenant(owner), json_response(out)))
}
