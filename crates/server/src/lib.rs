//! trailkeep's HTTP API.
//!
//! [`app`] builds the axum [`Router`] over an [`AppState`]; the binary serves it on a socket and
//! tests drive it directly with `tower::ServiceExt::oneshot`. Handlers are thin: parsing and
//! validation come from `trailkeep-core`, storage from a `trailkeep_store::Store`.

pub mod alerts;
pub mod approvals;
pub mod audit;
pub mod auth;
pub mod checkpoint;
pub mod deadline;
pub mod error;
pub mod expiry;
pub mod export;
pub mod gate;
pub mod impersonation;
pub mod ingest;
pub mod keys;
pub mod memory;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod params;
mod projection;
pub mod proofs;
pub mod query;
pub mod ratelimit;
pub mod stream;
pub mod viewer;

use axum::handler::Handler;
use axum::http::Method;
use axum::response::IntoResponse;
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use std::sync::Arc;
use trailkeep_store::Store;

pub use error::ApiError;
pub use trailkeep_control::approvals::ApprovalConfig;

/// Server settings that handlers need.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest accepted request body (docs/api.md#errors: default 16 MiB).
    pub max_body_bytes: usize,
    /// Retention shown for tenants without their own setting.
    pub default_retention_days: u32,
    /// Per-key request rate limit (requests per second; 0 = off) and burst.
    pub rate_limit_rps: f64,
    pub rate_limit_burst: f64,
    /// `[viewer]`: token lifetime cap and the origins allowed to embed the page.
    pub viewer: viewer::ViewerConfig,
    /// Failed authentications allowed per client address (per second; 0 = off) and burst.
    pub failed_auth_rps: f64,
    pub failed_auth_burst: f64,
    /// Longest lifetime of an auditor key, in seconds (`limits.max_auditor_ttl`).
    pub max_auditor_ttl_secs: u64,
    /// Total time a request's body may take to arrive (`limits.body_read_timeout`; None: no
    /// limit).
    pub body_read_timeout: Option<std::time::Duration>,
    /// Most exports and evidence bundles in progress at once (`limits.max_exports`; 0 = no
    /// limit). Each holds a blocking thread and, on PostgreSQL, a pooled connection.
    pub max_exports: usize,
    /// `[approvals]`: which event types need dual approval, how many approvers, for how long.
    pub approvals: ApprovalConfig,
}

/// Default per-key limit: far above what one client sends (64 concurrent clients on one key
/// reach about 30,000 requests/s), low enough to cap a runaway one.
pub const DEFAULT_RATE_LIMIT_RPS: f64 = 50_000.0;
pub const DEFAULT_RATE_LIMIT_BURST: f64 = 100_000.0;
/// Default limit on exports in progress at once.
pub const DEFAULT_MAX_EXPORTS: usize = 4;
/// Default limit on failed authentications per client address.
pub const DEFAULT_FAILED_AUTH_RPS: f64 = 20.0;
pub const DEFAULT_FAILED_AUTH_BURST: f64 = 50.0;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 16 * 1024 * 1024,
            default_retention_days: 365,
            rate_limit_rps: DEFAULT_RATE_LIMIT_RPS,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            failed_auth_rps: DEFAULT_FAILED_AUTH_RPS,
            failed_auth_burst: DEFAULT_FAILED_AUTH_BURST,
            max_auditor_ttl_secs: trailkeep_store::keys::AUDITOR_MAX_TTL_SECS,
            body_read_timeout: Some(std::time::Duration::from_secs(60)),
            max_exports: DEFAULT_MAX_EXPORTS,
            viewer: viewer::ViewerConfig::default(),
            approvals: ApprovalConfig::default(),
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
    /// Failed authentications per client address.
    pub failed_auth: Arc<ratelimit::Buckets<std::net::IpAddr>>,
    /// The log's signing identity; checkpoints and proof endpoints need it.
    pub log: Option<Arc<checkpoint::LogIdentity>>,
    /// Problems noticed while running (a checkpoint the checkpointer refused to sign), by
    /// what they concern; `/readyz` reports them.
    pub degraded: Arc<std::sync::Mutex<std::collections::BTreeMap<String, String>>>,
    /// The key viewer tokens are signed with (random unless [`AppState::with_viewer_key`]).
    pub viewer_key: Arc<viewer::token::TokenKey>,
    /// Exports in progress (`ServerConfig::max_exports` permits).
    pub exports: Arc<tokio::sync::Semaphore>,
    /// Open sessions and approvals per tenant, folded from the log, for the ingest gate.
    pub control: Arc<gate::ControlCache>,
    /// The alert engine and its configuration, when alert channels are configured.
    pub alerts: Option<Arc<alerts::Alerts>>,
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
        let failed_auth = Arc::new(ratelimit::Buckets::new(
            config.failed_auth_rps,
            config.failed_auth_burst,
        ));
        let exports = Arc::new(tokio::sync::Semaphore::new(if config.max_exports == 0 {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            config.max_exports
        }));
        AppState {
            store,
            failed_auth,
            exports,
            control: Arc::default(),
            alerts: None,
            config: Arc::new(config),
            env_admin_hash: env_admin_key
                .filter(|k| !k.is_empty())
                .map(trailkeep_store::keys::hash_secret),
            limiter,
            log: None,
            degraded: Arc::default(),
            viewer_key: Arc::new(viewer::token::TokenKey::random()),
        }
    }

    /// Adds the signing key (a 32-byte Ed25519 seed) and log name used for checkpoints.
    pub fn with_signer(mut self, log_name: &str, seed: [u8; 32]) -> Result<AppState, String> {
        self.log = Some(Arc::new(checkpoint::LogIdentity::new(log_name, seed)?));
        Ok(self)
    }

    /// Adds the running alert engine (`GET /v1/alerts*` show it; ingest wakes it).
    pub fn with_alerts(mut self, alerts: alerts::Alerts) -> AppState {
        self.alerts = Some(Arc::new(alerts));
        self
    }

    /// Wakes the alert engine after an append (it also looks every half second on its own).
    pub fn appended(&self) {
        if let Some(a) = &self.alerts {
            a.handle.notify();
        }
    }

    /// Sets the key viewer tokens are signed with (a 32-byte secret).
    pub fn with_viewer_key(mut self, key: [u8; 32]) -> AppState {
        self.viewer_key = Arc::new(viewer::token::TokenKey::new(key));
        self
    }
}

/// One route of the API.
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// The query parameters the route takes. Any other, or one given twice, is refused with a
    /// 400 before the handler runs (docs/api.md#conventions).
    pub params: &'static [&'static str],
    /// Answered without a key; reads no tenant's data, so it is not audited (docs/api.md).
    pub keyless: bool,
    /// Authenticated by a viewer token instead of a key; scoped by the token, and its reads
    /// are audited by the handler (`audit::record_viewer_read`).
    pub viewer_token: bool,
    handler: MethodRouter<AppState>,
}

impl Route {
    /// The query parameters the route takes (none unless given).
    fn params(mut self, params: &'static [&'static str]) -> Route {
        self.params = params;
        self
    }

    /// Marks the route as answered without a key.
    fn keyless(mut self) -> Route {
        self.keyless = true;
        self
    }

    /// Marks the route as authenticated by a viewer token (its `token` parameter) instead of a
    /// key: the token alone sets what it may read.
    fn viewer_token(mut self) -> Route {
        self.viewer_token = true;
        self
    }
}

fn route<H, T>(method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone())
        .unwrap_or_else(|_| panic!("route {method} {path}: unsupported method"));
    Route {
        method,
        path,
        params: &[],
        keyless: false,
        viewer_token: false,
        handler: on(filter, handler),
    }
}

/// Every route of the API, the one table [`app`] is built from. Each must be documented in
/// [`openapi::ApiDoc`] (`#[utoipa::path]` on the handler, listed in its `paths`): the API
/// tests check the document against this table (its query parameters and whether it needs a
/// key included), and walk every route of it with every kind of key (tests/api/isolation.rs).
pub fn routes() -> Vec<Route> {
    use Method as M;
    vec![
        route(M::POST, "/v1/events", ingest::post_events),
        route(M::GET, "/v1/events", query::list_events).params(params::EVENT_PARAMS),
        route(M::GET, "/v1/events/{event_id}", query::get_event),
        route(M::GET, "/v1/tenants", query::tenants),
        route(M::GET, "/v1/stats", query::stats).params(params::STATS_PARAMS),
        route(M::GET, "/v1/impersonations", impersonation::list).params(impersonation::LIST_PARAMS),
        route(
            M::GET,
            "/v1/impersonations/{session_id}",
            impersonation::get,
        )
        .params(impersonation::GET_PARAMS),
        route(M::POST, "/v1/approvals", approvals::create),
        route(M::GET, "/v1/approvals", approvals::list).params(approvals::LIST_PARAMS),
        route(M::GET, "/v1/approvals/{id}", approvals::get),
        route(M::POST, "/v1/approvals/{id}/approve", approvals::approve),
        route(M::POST, "/v1/approvals/{id}/reject", approvals::reject),
        route(M::GET, "/v1/alerts/rules", alerts::rules),
        route(M::GET, "/v1/alerts", alerts::list).params(alerts::LIST_PARAMS),
        route(M::POST, "/v1/keys", keys::create),
        route(M::GET, "/v1/keys", keys::list),
        route(M::DELETE, "/v1/keys/{id}", keys::revoke),
        route(M::GET, "/v1/public-key", proofs::public_key).keyless(),
        route(
            M::GET,
            "/v1/tenants/{tenant}/checkpoint",
            proofs::checkpoint,
        ),
        route(
            M::GET,
            "/v1/tenants/{tenant}/proof/inclusion",
            proofs::inclusion,
        )
        .params(params::INCLUSION_PARAMS),
        route(
            M::GET,
            "/v1/tenants/{tenant}/proof/consistency",
            proofs::consistency,
        )
        .params(params::CONSISTENCY_PARAMS),
        route(M::GET, "/v1/tenants/{tenant}/leaves", proofs::leaves).params(params::LEAVES_PARAMS),
        route(M::GET, "/v1/events/{event_id}/proof", proofs::event_proof),
        route(M::GET, "/v1/export", export::export).params(export::EXPORT_PARAMS),
        route(M::GET, "/v1/export/bundle", export::bundle).params(export::BUNDLE_PARAMS),
        route(M::GET, "/healthz", ops::healthz).keyless(),
        route(M::GET, "/readyz", ops::readyz).keyless(),
        route(M::GET, "/metrics", ops::metrics).keyless(),
        route(M::GET, "/openapi.json", openapi::openapi_json).keyless(),
        route(M::POST, "/v1/viewer-tokens", viewer::mint),
        // The page and its assets hold no data (the page's script reads its `token`).
        route(M::GET, "/viewer", viewer::page)
            .params(viewer::PAGE_PARAMS)
            .keyless(),
        route(M::GET, "/viewer/assets/viewer.js", viewer::script).keyless(),
        route(M::GET, "/viewer/assets/viewer.css", viewer::style).keyless(),
        // Authenticated by a viewer token, scoped by it, audited by the handlers themselves.
        route(M::GET, "/viewer/api/session", viewer::session)
            .params(viewer::TOKEN_PARAMS)
            .viewer_token(),
        route(M::GET, "/viewer/api/events", viewer::list)
            .params(viewer::LIST_PARAMS)
            .viewer_token(),
        route(M::GET, "/viewer/api/events/{event_id}", viewer::get_event)
            .params(viewer::TOKEN_PARAMS)
            .viewer_token(),
        route(M::GET, "/viewer/api/events/{event_id}/proof", viewer::proof)
            .params(viewer::TOKEN_PARAMS)
            .viewer_token(),
    ]
}

/// The whole API: the routes of [`routes`] (each refusing query parameters it does not take),
/// a JSON 404/405 for everything else, and the recording of auditors' reads ([`audit`]).
pub fn app(state: AppState) -> Router {
    metrics::init();
    let mut router = Router::new();
    for r in routes() {
        // Before the handler: the query holds only parameters the route takes, each once.
        // After it: a keyless route's answer is marked as reading no tenant, so the audit
        // middleware does not refuse an auditor key sent along to it.
        let (allowed, keyless) = (r.params, r.keyless);
        let handler = r.handler.route_layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| async move {
                if let Err(e) = params::check_query(req.uri(), allowed) {
                    return e.into_response();
                }
                let mut resp = next.run(req).await;
                if keyless {
                    resp.extensions_mut().insert(audit::Served::Keyless);
                }
                resp
            },
        ));
        // Routes of one path with different methods merge into one method router.
        router = router.route(r.path, handler);
    }
    router
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::log_auditor_reads,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            deadline::body_deadline,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ratelimit::failed_auth_guard,
        ))
        .with_state(state)
}
