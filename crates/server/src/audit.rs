//! Reads by `auditor` keys are themselves logged (docs/api.md) as `audit.read` events.
//!
//! A middleware in front of every route: when a GET carrying a live auditor key succeeds, an
//! `audit.read` event is appended, durably, to the log of the tenant read (the path's tenant,
//! else the `tenant_id` parameter, else the key's bound tenant, else `_global`) before the
//! response leaves. If it cannot be logged, the answer is replaced by a 503: an auditor's read
//! is never served unrecorded. Refused reads (4xx) are not logged: a refused request changes
//! nothing (docs/api.md#errors). The payload names the key, method, path and query.

use crate::{ApiError, AppState};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use trailkeep_core::validate::is_tenant_id;
use trailkeep_core::{NewEvent, Timestamp, Uuid};
use trailkeep_store::{PreparedEvent, Role};

pub async fn log_auditor_reads(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() != axum::http::Method::GET {
        return next.run(req).await;
    }
    let Some(key) = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
    else {
        return next.run(req).await;
    };
    let hash = trailkeep_store::keys::hash_secret(key);
    let rec = match state.store.find_key(&hash).await {
        Ok(Some(r)) if r.role == Role::Auditor && r.is_live(Timestamp::now_micros().nanos) => r,
        _ => return next.run(req).await,
    };
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let tenant = path_tenant(&path)
        .or_else(|| query_tenant(&query))
        .or(rec.tenant_id.clone())
        .filter(|t| is_tenant_id(t))
        .unwrap_or_else(|| trailkeep_core::GLOBAL_TENANT.to_string());
    let resp = next.run(req).await;
    if !resp.status().is_success() {
        return resp;
    }
    let refuse = || {
        ApiError::unavailable("the read could not be recorded; nothing was served").into_response()
    };
    let payload =
        serde_json::json!({"key_id": rec.id, "method": "GET", "path": path, "query": query});
    let Ok(canonical) = serde_json_canonicalizer::to_vec(&payload) else {
        return refuse();
    };
    let now = Timestamp::now_micros();
    let event = NewEvent {
        event_id: Uuid::now_v7(),
        event_id_assigned: true,
        event_type: "audit.read".into(),
        actor: format!("auditor:{}", rec.id).into(),
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

fn path_tenant(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1/tenants/")?;
    let t = rest.split('/').next()?;
    (!t.is_empty()).then(|| t.to_string())
}

fn query_tenant(query: &str) -> Option<String> {
    serde_urlencoded_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "tenant_id")
        .map(|(_, v)| v)
}

fn serde_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(
        &format!("/?{query}")
            .parse()
            .unwrap_or_else(|_| axum::http::Uri::from_static("/")),
    )
    .map(|q| q.0)
    .unwrap_or_default()
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
