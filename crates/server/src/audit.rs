//! Reads by `auditor` keys are themselves logged (docs/api.md) as `audit.read` events.
//!
//! The tenant a read is logged to is decided by the handler that served it, from the very scope
//! it read with: a handler answering a read returns its [`Served`] record in the response's
//! extensions ([`served`]), naming the key and the tenant it read ([`Scope::Tenant`]) or that
//! it read across all tenants ([`Scope::AllTenants`]); keyless routes are marked
//! [`Served::Keyless`] by the route table. Nothing of the request (path, query) steers it.
//!
//! [`log_auditor_reads`], a middleware in front of every route, then appends one `audit.read`
//! event, durably, for a successful `GET` or `HEAD` answered to a live auditor key, before the
//! response leaves: in the tenant read, or in `_global` (payload `"scope": "all_tenants"`) for
//! a read across all tenants. If it cannot be logged, the answer is replaced by a 503: an
//! auditor's read is never served unrecorded. A successful read by an auditor key that no
//! handler recorded is a bug; it is refused with a 500 rather than served unrecorded. Refused
//! reads (4xx) are not logged: a refused request changes nothing (docs/api.md#errors). Keyless
//! routes (`/healthz`, `/readyz`, `/metrics`, `/v1/public-key`, `/openapi.json`) read no tenant's
//! data and are not logged. The payload names the key, method, path and query (the query cut at
//! [`MAX_LOGGED_QUERY`] bytes, then marked `"query_truncated": true`).

use crate::auth::Principal;
use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use trailkeep_core::{NewEvent, Timestamp, Uuid, GLOBAL_TENANT};
use trailkeep_store::{PreparedEvent, Role};

/// The longest query text an `audit.read` event records; longer ones are cut (on a character
/// boundary) and marked `"query_truncated": true`.
pub const MAX_LOGGED_QUERY: usize = 2048;

/// What a read covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One tenant's data (and only it).
    Tenant(String),
    /// Every tenant's (an unbound key's listing, stats or tenant list without `tenant_id`).
    AllTenants,
}

/// The record a handler leaves on a successful read, in the response's extensions.
#[derive(Debug, Clone)]
pub enum Served {
    /// A route that needs no key and reads no tenant's data.
    Keyless,
    /// A read made with a key.
    Read {
        key_id: String,
        role: Role,
        scope: Scope,
    },
}

/// Attaches the record of a read to its answer: `principal` read `scope`.
pub fn served(principal: &Principal, scope: Scope, resp: impl IntoResponse) -> Response {
    let mut resp = resp.into_response();
    resp.extensions_mut().insert(Served::Read {
        key_id: principal.key_id.clone(),
        role: principal.role,
        scope,
    });
    resp
}

/// The scope of a read confined by [`Principal::read_scope`]: `Some(tenant)` or every tenant.
pub fn scope_of(tenant: Option<&str>) -> Scope {
    match tenant {
        Some(t) => Scope::Tenant(t.to_string()),
        None => Scope::AllTenants,
    }
}

pub async fn log_auditor_reads(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let method = req.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let key = bearer(&req);
    let mut resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let (key_id, scope) = match resp.extensions_mut().remove::<Served>() {
        Some(Served::Keyless) => return resp,
        Some(Served::Read {
            key_id,
            role,
            scope,
        }) => {
            if role != Role::Auditor {
                return resp;
            }
            (key_id, scope)
        }
        None => {
            // No handler recorded this read. Harmless unless an auditor key made it: then it
            // must not be served unrecorded.
            let Some(key) = key else { return resp };
            let hash = trailkeep_store::keys::hash_secret(&key);
            match state.store.find_key(&hash).await {
                Ok(Some(r)) if r.role == Role::Auditor => {
                    tracing::error!(%path, "a successful read by an auditor key recorded no scope; refusing it");
                    return ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "internal error: the read could not be recorded; nothing was served",
                    )
                    .into_response();
                }
                Ok(_) => return resp,
                Err(_) => {
                    return ApiError::unavailable(
                        "the read could not be recorded; nothing was served",
                    )
                    .into_response()
                }
            }
        }
    };
    let (tenant, all) = match scope {
        Scope::Tenant(t) => (t, false),
        Scope::AllTenants => (GLOBAL_TENANT.to_string(), true),
    };
    let (query, truncated) = bounded(&query, MAX_LOGGED_QUERY);
    let mut payload = serde_json::json!({
        "key_id": key_id,
        "method": method.as_str(),
        "path": bounded(&path, MAX_LOGGED_QUERY).0,
        "query": query,
    });
    if truncated {
        payload["query_truncated"] = true.into();
    }
    if all {
        payload["scope"] = "all_tenants".into();
    }
    let refuse = || {
        ApiError::unavailable("the read could not be recorded; nothing was served").into_response()
    };
    let Ok(canonical) = serde_json_canonicalizer::to_vec(&payload) else {
        return refuse();
    };
    let now = Timestamp::now_micros();
    let event = NewEvent {
        event_id: Uuid::now_v7(),
        event_id_assigned: true,
        event_type: "audit.read".into(),
        actor: format!("auditor:{key_id}").into(),
        tenant_id: tenant.into(),
        payload: canonical.into(),
        timestamp: Timestamp::from_nanos(now.nanos - now.nanos.rem_euclid(1_000_000), 3),
        timestamp_assigned: true,
        source_ip: None,
        impersonation_session: None,
        approval_id: None,
    };
    if let Err(e) = state
        .store
        .append(vec![PreparedEvent::new(event, now)])
        .await
    {
        tracing::warn!(error = %e, "could not log an auditor read; refusing it");
        return refuse();
    }
    resp
}

/// The bearer key of a request, if any.
fn bearer(req: &Request) -> Option<String> {
    req.headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
}

/// `s` cut to at most `max` bytes on a character boundary, and whether it was cut.
pub(crate) fn bounded(s: &str, max: usize) -> (&str, bool) {
    if s.len() <= max {
        return (s, false);
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    (&s[..end], true)
}

/// Records a read made with a viewer token (docs/api.md#viewer) as an `audit.read` event in the
/// token's tenant, durably, before the answer leaves; the caller refuses the read (503) if this
/// fails. The actor is `viewer:<token id>`; the payload names the token id, the actor the token
/// is bound to (if any), the path and the filters (the token itself is never logged).
pub async fn record_viewer_read(
    state: &AppState,
    token: &crate::viewer::token::Claims,
    path: &str,
    filters: serde_json::Value,
) -> Result<(), ApiError> {
    let refuse = || ApiError::unavailable("the read could not be recorded; nothing was served");
    let mut payload = serde_json::json!({
        "token_id": token.jti,
        "method": "GET",
        "path": path,
        "filters": filters,
    });
    if let Some(a) = &token.act {
        payload["actor_scope"] = serde_json::json!(a);
    }
    let canonical = serde_json_canonicalizer::to_vec(&payload).map_err(|_| refuse())?;
    let now = Timestamp::now_micros();
    let event = NewEvent {
        event_id: Uuid::now_v7(),
        event_id_assigned: true,
        event_type: "audit.read".into(),
        actor: format!("viewer:{}", token.jti).into(),
        tenant_id: token.tid.clone().into(),
        payload: canonical.into(),
        timestamp: Timestamp::from_nanos(now.nanos - now.nanos.rem_euclid(1_000_000), 3),
        timestamp_assigned: true,
        source_ip: None,
        impersonation_session: None,
        approval_id: None,
    };
    state
        .store
        .append(vec![PreparedEvent::new(event, now)])
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "could not log a viewer read; refusing it");
            refuse()
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(bounded("abc", 3), ("abc", false));
        assert_eq!(bounded("abcd", 3), ("abc", true));
        assert_eq!(bounded("aé", 2), ("a", true));
        assert_eq!(bounded("", 0), ("", false));
    }
}
