//! Verifiability endpoints (docs/api.md): public key, checkpoints, inclusion and consistency
//! proofs, C2SP tlog-proofs for events, and raw leaf hashes for auditors.
//!
//! `tree_size` / `to` default to the latest checkpoint's size, so a proof fetched without them
//! verifies against the checkpoint the server signs. `GET /v1/public-key` needs no key: it is
//! public by nature and auditors fetch it before they hold anything else.

use crate::audit::{served, Scope};
use crate::auth::{authenticate, Principal, READ_ROLES};
use crate::params::{self, Params};
use crate::{ApiError, AppState};
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use std::sync::Arc;
use trailkeep_core::validate::{is_tenant_id, parse_uuid};
use trailkeep_store::SignedCheckpoint;
use trailkeep_tlog::TlogProof;
use utoipa::ToSchema;

/// `GET /v1/tenants/{tenant}/proof/inclusion`. Hashes are standard base64.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InclusionProof {
    #[schema(minimum = 0)]
    pub seq: u64,
    #[schema(minimum = 1)]
    pub tree_size: u64,
    /// The leaf's hash (null only if the leaf could not be read back).
    #[schema(required = true)]
    pub leaf_hash: Option<String>,
    /// Sibling hashes, leaf to root.
    pub proof: Vec<String>,
    /// The root of the tree of `tree_size` leaves.
    pub root: String,
}

/// `GET /v1/tenants/{tenant}/proof/consistency`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyProof {
    #[schema(minimum = 1)]
    pub from: u64,
    #[schema(minimum = 1)]
    pub to: u64,
    pub proof: Vec<String>,
}

/// `GET /v1/tenants/{tenant}/leaves`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Leaves {
    #[schema(minimum = 0)]
    pub start: u64,
    #[schema(minimum = 0)]
    pub end: u64,
    /// Leaf hashes `start..end`, standard base64.
    pub leaves: Vec<String>,
}

fn text(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response()
}

fn identity(state: &AppState) -> Result<Arc<crate::checkpoint::LogIdentity>, ApiError> {
    state
        .log
        .clone()
        .ok_or_else(|| ApiError::unavailable("this server has no signing key configured"))
}

fn b64(hs: &[[u8; 32]]) -> Vec<String> {
    hs.iter().map(|h| STANDARD.encode(h)).collect()
}

/// Authenticates a read of one tenant's tree.
async fn tenant_reader(
    state: &AppState,
    headers: &HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<(Principal, String), ApiError> {
    let principal = authenticate(state, headers).await?;
    principal.require(READ_ROLES, "read proofs")?;
    let tenant = params::path_param(tenant)?;
    if !is_tenant_id(&tenant) {
        return Err(ApiError::bad_request(format!(
            "invalid tenant id {tenant:?}"
        )));
    }
    if !principal.can_see_tenant(&tenant) {
        return Err(ApiError::forbidden(format!(
            "this key cannot read tenant {tenant}"
        )));
    }
    Ok((principal, tenant))
}

async fn latest(state: &AppState, tenant: &str) -> Result<SignedCheckpoint, ApiError> {
    state.store.latest_checkpoint(tenant).await?.ok_or_else(|| {
        let mut e = ApiError::not_found(format!(
            "tenant {tenant} has no checkpoint yet (unknown tenant, or events newer than a second); retry shortly"
        ));
        e.retry_after = Some(1);
        e
    })
}

/// A tree size parameter, defaulting to the latest checkpoint's size (so the answer verifies
/// against the checkpoint the server signs).
async fn size_or_latest(
    state: &AppState,
    tenant: &str,
    p: &Params,
    key: &str,
) -> Result<u64, ApiError> {
    match params::u64_param(p, key)? {
        Some(s) => Ok(s),
        None => Ok(latest(state, tenant).await?.size),
    }
}

/// The log's Ed25519 verifier key in signed-note vkey form. Needs no key.
#[utoipa::path(
    get,
    path = "/v1/public-key",
    tag = "proofs",
    responses(
        (status = 200, description = "`<name>+<hash>+<base64 key>` and a newline",
            body = String, content_type = "text/plain"),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn public_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(text(identity(&state)?.verifier.to_vkey() + "\n"))
}

/// The tenant's latest signed checkpoint (C2SP signed note).
///
/// Needs an `admin`, `reader` or `auditor` key allowed to read the tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/checkpoint",
    tag = "proofs",
    security(("bearer" = [])),
    params(("tenant" = String, Path, example = json!("t_0042"), pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$", description = "A tenant id, or `_global`")),
    responses(
        (status = 200, description = "The signed checkpoint: origin, size, root, blank line, signatures",
            body = String, content_type = "text/plain"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn checkpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = tenant_reader(&state, &headers, tenant).await?;
    let note = latest(&state, &tenant).await?.note;
    Ok(served(&principal, Scope::Tenant(tenant), text(note)))
}

/// An RFC 6962 inclusion proof of leaf `seq` in the tree of `tree_size` leaves (default: the
/// latest checkpoint's size).
///
/// Needs an `admin`, `reader` or `auditor` key allowed to read the tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/proof/inclusion",
    tag = "proofs",
    security(("bearer" = [])),
    params(
        ("tenant" = String, Path, example = json!("t_0042"), pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$", description = "A tenant id, or `_global`"),
        ("seq" = u64, Query, minimum = 0, example = json!(0), description = "The leaf's index"),
        ("tree_size" = Option<u64>, Query, minimum = 1, description = "Tree size; default: the latest checkpoint's"),
    ),
    responses(
        (status = 200, description = "The proof", body = InclusionProof),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn inclusion(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = tenant_reader(&state, &headers, tenant).await?;
    let p = params::query_params(p, params::INCLUSION_PARAMS)?;
    let seq =
        params::u64_param(&p, "seq")?.ok_or_else(|| ApiError::bad_request("seq is required"))?;
    let size = size_or_latest(&state, &tenant, &p, "tree_size").await?;
    if seq >= size {
        return Err(ApiError::bad_request(format!(
            "seq {seq} is not below tree_size {size}"
        )));
    }
    let proof = state.store.inclusion_proof(&tenant, seq, size).await?;
    let leaf = state.store.leaves(&tenant, seq, seq + 1).await?;
    let root = state.store.tree_root(&tenant, size).await?;
    let body = Json(InclusionProof {
        seq,
        tree_size: size,
        leaf_hash: b64(&leaf).pop(),
        proof: b64(&proof),
        root: STANDARD.encode(root),
    });
    Ok(served(&principal, Scope::Tenant(tenant), body))
}

/// An RFC 6962 consistency proof between tree sizes `from` and `to` (default: the latest
/// checkpoint's size).
///
/// Needs an `admin`, `reader` or `auditor` key allowed to read the tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/proof/consistency",
    tag = "proofs",
    security(("bearer" = [])),
    params(
        ("tenant" = String, Path, example = json!("t_0042"), pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$", description = "A tenant id, or `_global`"),
        ("from" = u64, Query, minimum = 1, example = json!(1), description = "The older tree size"),
        ("to" = Option<u64>, Query, minimum = 1, description = "The newer tree size; default: the latest checkpoint's"),
    ),
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn consistency(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = tenant_reader(&state, &headers, tenant).await?;
    let p = params::query_params(p, params::CONSISTENCY_PARAMS)?;
    let from =
        params::u64_param(&p, "from")?.ok_or_else(|| ApiError::bad_request("from is required"))?;
    let to = size_or_latest(&state, &tenant, &p, "to").await?;
    if from == 0 || from > to {
        return Err(ApiError::bad_request(format!(
            "need 0 < from ≤ to (got from={from}, to={to})"
        )));
    }
    let proof = state.store.consistency_proof(&tenant, from, to).await?;
    let body = Json(ConsistencyProof {
        from,
        to,
        proof: b64(&proof),
    });
    Ok(served(&principal, Scope::Tenant(tenant), body))
}

/// At most this many leaves per call.
pub const MAX_LEAVES: u64 = 10_000;

/// The leaf hashes `start..end` of the tenant's log (at most 10,000 per call), for auditors
/// rebuilding the tree.
///
/// Needs an `admin`, `reader` or `auditor` key allowed to read the tenant.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tenant}/leaves",
    tag = "proofs",
    security(("bearer" = [])),
    params(
        ("tenant" = String, Path, example = json!("t_0042"), pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$", description = "A tenant id, or `_global`"),
        ("start" = Option<u64>, Query, minimum = 0, description = "First leaf (default 0)"),
        ("end" = Option<u64>, Query, minimum = 0, description = "End, exclusive (default and cap: the log's size, and start + 10,000)"),
    ),
    responses(
        (status = 200, description = "The leaf hashes", body = Leaves),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn leaves(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (principal, tenant) = tenant_reader(&state, &headers, tenant).await?;
    let p = params::query_params(p, params::LEAVES_PARAMS)?;
    let size = state.store.tree_size(&tenant).await?;
    let start = params::u64_param(&p, "start")?.unwrap_or(0);
    let end = params::u64_param(&p, "end")?;
    if let Some(e) = end {
        if start > e {
            return Err(ApiError::bad_request(format!(
                "start {start} is greater than end {e}; end is exclusive and must be at least start"
            )));
        }
    }
    let end = end
        .unwrap_or(size)
        .min(size)
        .min(start.saturating_add(MAX_LEAVES));
    if start > end {
        return Err(ApiError::bad_request(format!(
            "start {start} is beyond the log's {size} leaves"
        )));
    }
    let hs = state.store.leaves(&tenant, start, end).await?;
    let body = Json(Leaves {
        start,
        end,
        leaves: b64(&hs),
    });
    Ok(served(&principal, Scope::Tenant(tenant), body))
}

/// A C2SP `tlog-proof` for the event against the tenant's latest checkpoint.
///
/// Needs an `admin`, `reader` or `auditor` key; another tenant's event is a 404 for a
/// tenant-bound key.
#[utoipa::path(
    get,
    path = "/v1/events/{event_id}/proof",
    tag = "proofs",
    security(("bearer" = [])),
    params(("event_id" = String, Path, format = "uuid", example = json!("0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f"), description = "The event's id")),
    responses(
        (status = 200, description = "`c2sp.org/tlog-proof@v1`, `index N`, the proof hashes (base64), a blank line, the checkpoint",
            body = String, content_type = "text/plain",
            headers(("X-Trailkeep-Tree-Size" = u64, description = "The size of the checkpoint the proof is against"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn event_proof(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read proofs")?;
    let id = params::path_param(id)?;
    let id = parse_uuid(&id)
        .ok_or_else(|| ApiError::bad_request("invalid event id: expected a UUID"))?;
    let e = match state.store.get_event(id).await? {
        Some(e) if principal.can_see_tenant(&e.tenant_id) => e,
        _ => return Err(ApiError::not_found(format!("no event {id}"))),
    };
    let cp = latest(&state, &e.tenant_id).await?;
    if e.seq >= cp.size {
        let mut err = ApiError::not_found(format!(
            "event {id} is not covered by a checkpoint yet (checkpoints follow within a second); retry shortly"
        ));
        err.retry_after = Some(1);
        return Err(err);
    }
    let proof = state
        .store
        .inclusion_proof(&e.tenant_id, e.seq, cp.size)
        .await?;
    let t = TlogProof {
        extra: None,
        index: e.seq,
        proof,
        checkpoint_note: cp.note,
    };
    let mut resp = text(t.to_text());
    resp.headers_mut()
        .insert("x-trailkeep-tree-size", HeaderValue::from(cp.size));
    Ok(served(
        &principal,
        Scope::Tenant(e.tenant_id.to_string()),
        resp,
    ))
}
