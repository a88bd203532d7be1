//! `GET /v1/alerts/rules` and `GET /v1/alerts` (docs/alerts.md): the alert rules in force
//! and the recent deliveries.
//!
//! Alerts are delivered by `trailkeep_deliver::alerts::engine`, which reads the log from each
//! channel's durable cursor; these handlers only show what it holds: the rules and channels it
//! was started with (channel URLs without their query, which carries Google Chat's key and
//! token) and its registry of recent deliveries (pending, delivered, dead; dead letters are
//! also `sink.alert_failed` events of tenant `_global`, read back at start).

use crate::auth::authenticate;
use crate::params;
use crate::{ApiError, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::Serialize;
use trailkeep_control::rules::RuleConfig;
use trailkeep_deliver::alerts::engine::AlertHandle;
use trailkeep_deliver::alerts::registry::{ChannelView, DeliveryView, Status};
use trailkeep_store::Role;
use utoipa::{IntoParams, ToSchema};

/// Parameters of `GET /v1/alerts`.
pub const LIST_PARAMS: &[&str] = &["status", "channel", "limit"];

/// What the server knows of its alerting: set at start when channels are configured.
#[derive(Clone)]
pub struct Alerts {
    /// The running engine.
    pub handle: AlertHandle,
    /// The rules in force, as configured (or the default rule).
    pub rules: Vec<RuleConfig>,
    /// Whether `rules` is the default rule (no `[[alerts.rules]]` configured).
    pub default_rules: bool,
    /// The channels, URLs redacted.
    pub channels: Vec<ChannelSummary>,
}

/// A configured channel as `GET /v1/alerts/rules` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ChannelSummary {
    /// The name rules use.
    pub name: String,
    /// `google_chat`, `slack` or `webhook`.
    pub kind: String,
    /// The URL without its query string (Google Chat's key and token are never shown).
    pub url: String,
}

/// A rule as configured (`trailkeep_control::rules::RuleConfig`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[schema(as = AlertRule)]
pub struct RuleDoc {
    pub name: String,
    /// Event types: exact (`prompt.update`), a prefix (`killswitch.*`) or `*`; empty: any.
    pub event_types: Vec<String>,
    /// Tenants; empty: any.
    pub tenants: Vec<String>,
    /// Actors, exact or a prefix ending in `*`; empty: any.
    pub actors: Vec<String>,
    /// Catalogue risk levels (`high`, `medium`, `low`); empty: any.
    pub risk: Vec<String>,
    /// The `where` expression, if any (`payload.scope == "global"`).
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub where_: Option<String>,
    /// The channels it delivers to.
    pub channels: Vec<String>,
}

/// `GET /v1/alerts/rules`.
#[derive(Serialize, ToSchema)]
pub struct RulesDoc {
    /// The rules in force, in configuration order (the first matching rule names an alert).
    pub rules: Vec<RuleDoc>,
    /// Whether these are the default rule (every `high` event of the catalogue to every
    /// channel), because no rule is configured.
    pub default_rules: bool,
    pub channels: Vec<ChannelSummary>,
}

/// One delivery (`trailkeep_deliver::alerts::registry::DeliveryView`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[schema(as = AlertDelivery)]
pub struct DeliveryDoc {
    /// The delivery id: the same on every attempt and after a restart (receivers drop
    /// repeats by it; Google Chat's `requestId`, the webhook's `X-Trailkeep-Delivery`).
    pub id: String,
    pub channel: String,
    pub rule: String,
    pub tenant_id: String,
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
    #[schema(format = DateTime)]
    pub next_attempt_at: Option<String>,
}

/// One channel's counts since the process started (`ChannelView`).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
#[schema(as = AlertChannelHealth)]
pub struct ChannelDoc {
    pub channel: String,
    /// Whether this server delivers the channel (with several servers on one PostgreSQL
    /// database, exactly one does).
    pub active: bool,
    pub pending: u64,
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
    /// Events not looked at yet, as of the channel's last pass.
    pub lag: u64,
}

/// `GET /v1/alerts`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct DeliveriesDoc {
    /// Newest first.
    pub deliveries: Vec<DeliveryDoc>,
    pub channels: Vec<ChannelDoc>,
}

/// Filters of `GET /v1/alerts`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct ListParams {
    /// `pending`, `delivered` or `dead`; absent: all.
    pub status: Option<String>,
    /// One channel, by name.
    pub channel: Option<String>,
    /// At most this many deliveries (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The alert rules in force and the channels.
///
/// Needs an `admin` key.
#[utoipa::path(
    get,
    path = "/v1/alerts/rules",
    operation_id = "alert_rules",
    tag = "alerts",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The rules and channels", body = RulesDoc),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn rules(
    State(state): State<AppState>,
    headers: HeaderMap,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(&[Role::Admin], "read the alert rules")?;
    params::query_params(p, &[])?;
    let body = match &state.alerts {
        Some(a) => serde_json::json!({
            "rules": a.rules,
            "default_rules": a.default_rules,
            "channels": a.channels,
        }),
        None => serde_json::json!({"rules": [], "default_rules": false, "channels": []}),
    };
    crate::query::render_json(axum::http::StatusCode::OK, &body)
}

/// Recent alert deliveries and each channel's counts.
///
/// Needs an `admin` key. The server keeps the last 1,000 deliveries of each status in memory;
/// dead letters are also read back from the log at start.
#[utoipa::path(
    get,
    path = "/v1/alerts",
    operation_id = "list_alerts",
    tag = "alerts",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "Deliveries, newest first, and channel counts", body = DeliveriesDoc),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
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
    principal.require(&[Role::Admin], "read alert deliveries")?;
    let p = params::query_params(p, LIST_PARAMS)?;
    let status = match params::opt(&p, "status") {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::bad_request("invalid status: expected pending, delivered or dead")
        })?),
    };
    let limit = match params::u64_param(&p, "limit")? {
        None => 100,
        Some(n @ 1..=1000) => n as usize,
        Some(_) => return Err(ApiError::bad_request("invalid limit: expected 1 to 1000")),
    };
    let channel = params::opt(&p, "channel");
    let (deliveries, channels): (Vec<DeliveryView>, Vec<ChannelView>) = match &state.alerts {
        Some(a) => {
            if let Some(c) = channel {
                if !a.channels.iter().any(|x| x.name == c) {
                    return Err(ApiError::not_found(format!(
                        "no alert channel {:?}; GET /v1/alerts/rules lists them",
                        crate::audit::bounded(c, 64).0
                    )));
                }
            }
            let reg = a.handle.registry();
            let channels = reg
                .channels()
                .into_iter()
                .filter(|v| channel.is_none_or(|c| v.channel == c))
                .collect();
            (reg.list(status, channel, limit), channels)
        }
        None => match channel {
            Some(c) => {
                return Err(ApiError::not_found(format!(
                    "no alert channel {:?}: no channel is configured",
                    crate::audit::bounded(c, 64).0
                )))
            }
            None => (Vec::new(), Vec::new()),
        },
    };
    crate::query::render_json(
        axum::http::StatusCode::OK,
        &serde_json::json!({"deliveries": deliveries, "channels": channels}),
    )
}
