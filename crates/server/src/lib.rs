//! trailkeep's HTTP API.
//!
//! [`app`] builds the axum [`Router`] over an [`AppState`]; the binary serves it on a socket and
//! tests drive it directly with `tower::ServiceExt::oneshot`. Handlers are thin: parsing and
//! validation come from `trailkeep-core`, storage from a `trailkeep_store::Store`.

pub mod audit;
pub mod auth;
pub mod checkpoint;
pub mod error;
pub mod ingest;
pub mod keys;
pub mod metrics;
pub mod ops;
pub mod params;
pub mod proofs;
pub mod query;
pub mod ratelimit;

use axum::routing::{delete, get, post};
use axum::Router;
use std::sync::Arc;
use trailkeep_store::Store;

pub use error::ApiError;

/// Server settings that handlers need.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body (SPEC §3: default 16 MiB).
    pub max_body_bytes: usize,
    /// Retention shown for tenants without their own setting.
    pub default_retention_days: u32,
    /// Per-key request rate limit (requests per second; 0 = off) and burst.
    pub rate_limit_rps: f64,
    pub rate_limit_burst: f64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 16 * 1024 * 1024,
            default_retention_days: 365,
            rate_limit_rps: 0.0,
            rate_limit_burst: 0.0,
        }
    }
}

/// Everything a handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the `TRAILKEEP_ADMIN_KEY` installed at start, if any (held in memory only).
    pub env_admin_hash: Option<String>,
    pub limiter: Arc<ratelimit::Limiter>,
    /// The log's signing identity; checkpoints and proof endpoints need it.
    pub log: Option<Arc<checkpoint::LogIdentity>>,
    /// Problems noticed while running (a checkpoint the checkpointer refused to sign), by
    /// what they concern; `/readyz` reports them.
    pub degraded: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        config: ServerConfig,
        env_admin_key: Option<&str>,
    ) -> AppState {
        let limiter = Arc::new(ratelimit::Limiter::new(
            config.rate_limit_rps,
            config.rate_limit_burst,
        ));
        AppState {
            store,
            config: Arc::new(config),
            env_admin_hash: env_admin_key
                .filter(|k| !k.is_empty())
                .map(trailkeep_store::keys::hash_secret),
            limiter,
            log: None,
            degraded: Arc::default(),
        }
    }

    /// Adds the signing key (a 32-byte Ed25519 seed) and log name used for checkpoints.
    pub fn with_signer(mut self, log_name: &str, seed: [u8; 32]) -> Result<AppState, String> {
        self.log = Some(Arc::new(checkpoint::LogIdentity::new(log_name, seed)?));
        Ok(self)
    }
}

/// The whole API.
pub fn app(state: AppState) -> Router {
    metrics::init();
    Router::new()
        .route(
            "/v1/events",
            post(ingest::post_events).get(query::list_events),
        )
        .route("/v1/events/{event_id}", get(query::get_event))
        .route("/v1/tenants", get(query::tenants))
        .route("/v1/stats", get(query::stats))
        .route("/v1/keys", post(keys::create).get(keys::list))
        .route("/v1/public-key", get(proofs::public_key))
        .route("/v1/tenants/{tenant}/checkpoint", get(proofs::checkpoint))
        .route(
            "/v1/tenants/{tenant}/proof/inclusion",
            get(proofs::inclusion),
        )
        .route(
            "/v1/tenants/{tenant}/proof/consistency",
            get(proofs::consistency),
        )
        .route("/v1/tenants/{tenant}/leaves", get(proofs::leaves))
        .route("/v1/events/{event_id}/proof", get(proofs::event_proof))
        .route("/v1/keys/{id}", delete(keys::revoke))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::log_auditor_reads,
        ))
        .with_state(state)
}
