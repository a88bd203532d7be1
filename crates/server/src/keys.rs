//! Key management over HTTP (admin only): `POST /v1/keys`, `GET /v1/keys`, `DELETE /v1/keys/{id}`.

use crate::auth::authenticate;
use crate::ingest::read_body;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;
use trailkeep_core::validate::is_tenant_id;
use trailkeep_store::keys::{generate_secret, parse_key_ttl, AUDITOR_DEFAULT_TTL_SECS};
use trailkeep_store::{NewKey, Role};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    role: String,
    #[serde(default)]
    tenant_id: Option<String>,
    /// `30d`, `12h`…
    #[serde(default)]
    ttl: Option<String>,
}

/// Checks a key request; shared with the CLI so both refuse the same things. `max_auditor_ttl`
/// is the longest lifetime of an auditor key in seconds (`limits.max_auditor_ttl`).
pub fn check_new_key(
    role: &str,
    tenant: Option<&str>,
    ttl: Option<&str>,
    max_auditor_ttl: u64,
) -> Result<(Role, Option<u64>), String> {
    let role: Role = role.parse()?;
    if let Some(t) = tenant {
        if role == Role::Admin {
            return Err("admin keys cannot be bound to a tenant".into());
        }
        if !is_tenant_id(t) {
            return Err(format!("invalid tenant id {t:?}"));
        }
    }
    let ttl = ttl
        .map(|t| parse_key_ttl(t, role, max_auditor_ttl))
        .transpose()?;
    // An auditor key without a TTL gets the default lifetime, or the maximum when shorter.
    let ttl = match (role, ttl) {
        (Role::Auditor, None) => Some(AUDITOR_DEFAULT_TTL_SECS.min(max_auditor_ttl)),
        (_, t) => t,
    };
    Ok((role, ttl))
}

/// Creates a key and shows its secret, once. Needs an `admin` key.
#[utoipa::path(
    post,
    path = "/v1/keys",
    tag = "keys",
    security(("bearer" = [])),
    request_body(content = crate::openapi::KeyRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The new key, with its secret", body = crate::openapi::NewKey),
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
pub async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(&[Role::Admin], "manage keys")?;
    let bytes = read_body(body, 64 * 1024).await?;
    let req: CreateKey = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "expected {{\"role\", \"tenant_id\"?, \"ttl\"?}}: {e}"
        ))
    })?;
    let (role, ttl) = check_new_key(
        &req.role,
        req.tenant_id.as_deref(),
        req.ttl.as_deref(),
        state.config.max_auditor_ttl_secs,
    )
    .map_err(|m| {
        let mut e = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", m);
        e.details = vec![];
        e
    })?;
    let (secret, hash) = generate_secret();
    let rec = state
        .store
        .create_key(NewKey {
            role,
            tenant_id: req.tenant_id,
            ttl_seconds: ttl,
            secret_hash: hash,
        })
        .await?;
    let mut v = serde_json::to_value(rec.view()).unwrap_or_default();
    v["key"] = json!(secret);
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

/// Lists every key (without secrets). Needs an `admin` key.
#[utoipa::path(
    get,
    path = "/v1/keys",
    tag = "keys",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The keys", body = crate::openapi::KeyList),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn list(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(&[Role::Admin], "manage keys")?;
    let keys = state.store.list_keys().await?;
    let views: Vec<_> = keys.iter().map(|k| k.view()).collect();
    Ok(Json(json!({"keys": views})).into_response())
}

/// Revokes a key. Needs an `admin` key.
#[utoipa::path(
    delete,
    path = "/v1/keys/{id}",
    tag = "keys",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "The key's id (`key_…`)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn revoke(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(&[Role::Admin], "manage keys")?;
    let id = crate::params::path_param(id)?;
    if state.store.revoke_key(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ApiError::not_found(format!("no key {id}")))
    }
}
