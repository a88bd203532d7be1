//! Verifiability endpoints (SPEC §4.4): public key, checkpoints, inclusion and consistency
//! proofs, C2SP tlog-proofs for events, and raw leaf hashes for auditors.
//!
//! `tree_size` / `to` default to the latest checkpoint's size, so a proof fetched without them
//! verifies against the checkpoint the server signs. `GET /v1/public-key` needs no key: it is
//! public by nature and auditors fetch it before they hold anything else.

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
use serde_json::json;
use std::sync::Arc;
use trailkeep_core::validate::{is_tenant_id, parse_uuid};
use trailkeep_store::SignedCheckpoint;
use trailkeep_tlog::TlogProof;

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

pub async fn public_key(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(text(identity(&state)?.verifier.to_vkey() + "\n"))
}

pub async fn checkpoint(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (_, tenant) = tenant_reader(&state, &headers, tenant).await?;
    Ok(text(latest(&state, &tenant).await?.note))
}

pub async fn inclusion(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    p: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, tenant) = tenant_reader(&state, &headers, tenant).await?;
    let p = params::query_params(p, &["seq", "tree_size"])?;
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
    Ok(Json(json!({
        "seq": seq, "tree_size": size, "leaf_hash": b64(&leaf).pop(), "proof": b64(&proof), "root": STANDARD.encode(root),
    }))
    .into_response())
}

pub async fn consistency(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    p: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, tenant) = tenant_reader(&state, &headers, tenant).await?;
    let p = params::query_params(p, &["from", "to"])?;
    let from =
        params::u64_param(&p, "from")?.ok_or_else(|| ApiError::bad_request("from is required"))?;
    let to = size_or_latest(&state, &tenant, &p, "to").await?;
    if from == 0 || from > to {
        return Err(ApiError::bad_request(format!(
            "need 0 < from ≤ to (got from={from}, to={to})"
        )));
    }
    let proof = state.store.consistency_proof(&tenant, from, to).await?;
    Ok(Json(json!({"from": from, "to": to, "proof": b64(&proof)})).into_response())
}

/// At most this many leaves per call.
pub const MAX_LEAVES: u64 = 10_000;

pub async fn leaves(
    State(state): State<AppState>,
    headers: HeaderMap,
    tenant: Result<Path<String>, PathRejection>,
    p: Result<Query<Params>, QueryRejection>,
) -> Result<Response, ApiError> {
    let (_, tenant) = tenant_reader(&state, &headers, tenant).await?;
    let p = params::query_params(p, &["start", "end"])?;
    let size = state.store.tree_size(&tenant).await?;
    let start = params::u64_param(&p, "start")?.unwrap_or(0);
    let end = params::u64_param(&p, "end")?
        .unwrap_or(size)
        .min(size)
        .min(start.saturating_add(MAX_LEAVES));
    if start > end {
        return Err(ApiError::bad_request(format!(
            "start {start} is beyond the log's {size} leaves"
        )));
    }
    let hs = state.store.leaves(&tenant, start, end).await?;
    Ok(Json(json!({"start": start, "end": end, "leaves": b64(&hs)})).into_response())
}

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
    Ok(resp)
}
