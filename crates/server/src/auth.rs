//! Bearer-key authentication and role checks.
//!
//! A request's [`Principal`] is the role and tenant binding of its key. Tenant-bound keys are
//! confined to their tenant in every endpoint: writes to another tenant are 403, reads are
//! filtered to the bound tenant (and a lookup of another tenant's event is a 404, so a key
//! cannot even learn that the event exists).

use crate::{ApiError, AppState};
use axum::http::HeaderMap;
use trailkeep_core::Timestamp;
use trailkeep_store::Role;

#[derive(Debug, Clone)]
pub struct Principal {
    pub key_id: String,
    pub role: Role,
    pub tenant: Option<String>,
}

impl Principal {
    /// Fails unless the key has one of `roles`.
    pub fn require(&self, roles: &[Role], what: &str) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            Err(ApiError::forbidden(format!(
                "a {} key cannot {what}; this needs a key with role {}",
                self.role.as_str(),
                names.join(" or ")
            )))
        }
    }

    /// The tenant a read is confined to: the bound tenant, or the requested one.
    pub fn read_scope(&self, requested: Option<String>) -> Result<Option<String>, ApiError> {
        match (&self.tenant, requested) {
            (Some(bound), Some(req)) if *bound != req => Err(ApiError::forbidden(format!(
                "this key is bound to tenant {bound} and cannot read tenant {req}"
            ))),
            (Some(bound), _) => Ok(Some(bound.clone())),
            (None, req) => Ok(req),
        }
    }

    pub fn can_see_tenant(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|b| b == tenant)
    }
}

pub const READ_ROLES: &[Role] = &[Role::Admin, Role::Reader, Role::Auditor];

/// Authenticates a request by its `Authorization: Bearer` key.
pub async fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "missing API key: send Authorization: Bearer <key>",
        ));
    };
    let key = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("malformed Authorization header: expected Bearer <key>")
        })?;
    let hash = trailkeep_store::keys::hash_secret(key);
    let principal = if state.env_admin_hash.as_deref() == Some(hash.as_str()) {
        Principal {
            key_id: "env-admin".into(),
            role: Role::Admin,
            tenant: None,
        }
    } else {
        match state.store.find_key(&hash).await? {
            Some(rec) if rec.is_live(Timestamp::now_micros().nanos) => Principal {
                key_id: rec.id,
                role: rec.role,
                tenant: rec.tenant_id,
            },
            Some(rec) if rec.revoked => {
                return Err(ApiError::unauthorized("this API key was revoked"))
            }
            Some(_) => return Err(ApiError::unauthorized("this API key has expired")),
            None => return Err(ApiError::unauthorized("unknown API key")),
        }
    };
    state.limiter.check(&principal.key_id)?;
    Ok(principal)
}
