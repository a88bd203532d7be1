//! Dual approval (docs/api.md#dual-approval): `POST /v1/approvals`, `GET /v1/approvals`,
//! `GET /v1/approvals/{id}`, `POST /v1/approvals/{id}/approve` and `…/reject`.
//!
//! # How the state is derived
//!
//! As for impersonation sessions, nothing about approvals is stored apart from the log: every
//! request reads the tenant's `approval.*` events again (`Store::export`, log order) and folds
//! them with [`Approvals::apply`]. Decisions come from the pure functions of
//! `trailkeep_control::approvals` ([`decide_request`], [`decide_approve`], [`decide_reject`]);
//! the steps they return are appended with `Store::append` like any other event, in the
//! approval's tenant, with the approval's id in the envelope's `approval_id`.
//!
//! # Ids
//!
//! An approval id is `apr_` followed by 32 hex digits of a fresh UUIDv7: unique, and it embeds
//! nothing but the time of the request (which the approval shows anyway). To find the tenant
//! of an id, the `approval.request` events of every tenant are searched for it (`Store::query`,
//! exact type, `q` = the id, confirmed on the envelope's `approval_id`); then only that
//! tenant's `approval.*` events are folded. Ids of any other shape are unknown (404) without a
//! read.
//!
//! # Concurrency
//!
//! Decisions on one approval, its use by an event at ingest and its expiry step are taken
//! under the approval's control lock (`Store::control_lock`, shared by every server on one
//! PostgreSQL database), each on the state the previous one left: two approvers at once are
//! counted one after the other, and an approve racing a rejection, or a use racing a late
//! veto, is decided in the order the lock was taken. The fold still re-checks every rule on
//! the log rather than trusting what was appended (logs written by older servers, which
//! decided without the lock), so `approved` is derived from the approvals counted.

use crate::audit::{scope_of, served, Scope};
use crate::auth::{authenticate, Principal};
use crate::ingest::read_body;
use crate::params;
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;
use trailkeep_control::approvals::{
    decide_approve, decide_reject, decide_request, ApprovalView, Approvals, DecisionInput, NewStep,
    RequestInput, Status, REQUEST,
};
use trailkeep_control::Refusal;
use trailkeep_core::{Timestamp, Uuid};
use trailkeep_store::{EventQuery, Order, PreparedEvent, Role, TypeFilter};
use utoipa::{IntoParams, ToSchema};

/// Parameters of `GET /v1/approvals`.
pub const LIST_PARAMS: &[&str] = &["tenant_id", "status"];

/// Keys that may read approvals.
pub const READ_ROLES: &[Role] = &[Role::Admin, Role::Reader, Role::Auditor, Role::Approver];
/// Keys that may ask for an approval.
const REQUEST_ROLES: &[Role] = &[Role::Admin, Role::Ingest];
/// Keys that may approve or reject.
const DECIDE_ROLES: &[Role] = &[Role::Admin, Role::Approver];

/// Largest body of a request for approval (an action is one event, at most 256 KiB).
const MAX_REQUEST_BODY: usize = 512 * 1024;
/// Largest body of an approve or reject.
const MAX_DECISION_BODY: usize = 64 * 1024;

/// The event types of the fold.
const APPROVAL_TYPES: &str = "approval.";
/// The prefix of every approval id.
const ID_PREFIX: &str = "apr_";

/// Filters of `GET /v1/approvals`.
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
    /// Only approvals in this state now.
    pub status: Option<StatusDoc>,
}

/// The state of an approval.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = ApprovalStatus)]
pub enum StatusDoc {
    Pending,
    Approved,
    Rejected,
    Expired,
    Used,
}

/// The action to approve: the event the service will log once approved.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApprovalAction)]
pub struct ActionDoc {
    #[schema(example = "tenant.disable")]
    pub event_type: String,
    /// The event's payload, exactly as it will be logged.
    pub payload: serde_json::Map<String, serde_json::Value>,
}

/// Body of `POST /v1/approvals`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApprovalRequest)]
pub struct RequestDoc {
    #[schema(pattern = r"^([A-Za-z0-9][A-Za-z0-9_.:-]{0,127}|_global)$")]
    pub tenant_id: String,
    /// Who asks (recorded as the `approval.request` event's actor).
    #[schema(example = "svc:admin-console")]
    pub requested_by: String,
    pub reason: String,
    pub action: ActionDoc,
}

/// Body of `POST /v1/approvals/{id}/approve` and `…/reject`.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApprovalDecision)]
pub struct DecisionDoc {
    /// The person deciding (recorded; what counts is the key).
    #[schema(example = "user:lea@platform.example")]
    pub approver: String,
    pub comment: Option<String>,
}

/// One approve or reject.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApprovalDecisionRecord)]
pub struct DecisionRecordDoc {
    /// The key that decided: distinct approvers are distinct keys.
    pub key_id: String,
    pub approver: String,
    #[schema(required = false)]
    pub comment: String,
    #[schema(format = DateTime)]
    pub at: String,
}

/// The event that used an approval.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ApprovalUse)]
pub struct UsedDoc {
    pub event_id: String,
    pub event_type: String,
    #[schema(format = DateTime)]
    pub at: String,
}

/// An approval (the body is `trailkeep_control::approvals::ApprovalView`; this type documents
/// it field for field).
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Approval)]
pub struct ApprovalDoc {
    #[schema(example = "apr_0192f0c47d1e7a538f0e3c1d2b4a5e6f")]
    pub id: String,
    pub tenant_id: String,
    pub status: StatusDoc,
    /// Hex SHA-256 of the RFC 8785 canonical JSON of `action`.
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub digest: String,
    #[schema(format = DateTime)]
    pub expires_at: String,
    pub requested_by: String,
    /// The key that asked; it can never approve.
    pub requested_by_key_id: String,
    #[schema(format = DateTime)]
    pub requested_at: String,
    pub reason: String,
    pub action: ActionDoc,
    #[schema(minimum = 1)]
    pub approvers_required: u32,
    /// The approvals counted: distinct keys, none the requester's, each before expiry.
    pub approvals: Vec<DecisionRecordDoc>,
    #[schema(required = true)]
    pub rejection: Option<DecisionRecordDoc>,
    #[schema(required = true)]
    pub used_by: Option<UsedDoc>,
}

/// `GET /v1/approvals`: newest request first.
#[derive(Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalList {
    pub approvals: Vec<ApprovalDoc>,
}

/// A refusal of the state machine as an API error: its class's status and code, and in
/// `details` the field at fault and the specific reason.
fn refusal(r: Refusal) -> ApiError {
    if r.kind == trailkeep_control::RefusalKind::Internal {
        return ApiError::internal(r.message);
    }
    // The code is the API's own for the status (docs/api.md#errors); the state machine's
    // specific reason goes in `details`.
    let (status, code) = match r.kind {
        trailkeep_control::RefusalKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        trailkeep_control::RefusalKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        trailkeep_control::RefusalKind::Conflict => (StatusCode::CONFLICT, "conflict"),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "validation_failed"),
    };
    let mut e = ApiError::new(status, code, r.message.clone());
    e.details = vec![json!({
        "index": 0,
        "path": r.path.as_deref().unwrap_or(""),
        "message": r.message,
        "reason": r.code,
    })];
    e
}

/// Parses a JSON body: not JSON at all is a 400, JSON of the wrong shape a 422 naming it.
fn parse_body<T: DeserializeOwned>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        if e.classify() == serde_json::error::Category::Data {
            let mut err = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("expected {shape}: {e}"),
            );
            err.details = vec![json!({"index": 0, "path": "", "message": e.to_string()})];
            err
        } else {
            ApiError::bad_request(format!("the body is not JSON ({e}); expected {shape}"))
        }
    })
}

async fn fold(state: &AppState, tenant: Option<&str>) -> Result<Approvals, ApiError> {
    if let Some(t) = tenant {
        // One tenant: the gate's view, caught up with the log.
        return Ok(state.control.approvals(state, t).await?);
    }
    let mut approvals = Approvals::new();
    for e in crate::projection::events_in_log_order(state, tenant, APPROVAL_TYPES).await? {
        // Steps the fold ignores (a repeated key, a decision after the end) stay in the log;
        // the answer does not count them.
        let _ = approvals.apply(&e);
    }
    Ok(approvals)
}

/// Whether `id` has the shape of the ids this server hands out.
fn well_formed(id: &str) -> bool {
    id.strip_prefix(ID_PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The tenant of approval `id`, from its `approval.request` event.
async fn tenant_of(state: &AppState, id: &str) -> Result<Option<String>, ApiError> {
    if !well_formed(id) {
        return Ok(None);
    }
    let mut cursor = None;
    loop {
        let page = state
            .store
            .query(EventQuery {
                event_type: Some(TypeFilter::Exact(REQUEST.to_string())),
                q: Some(id.to_string()),
                limit: 1000,
                order: Order::Asc,
                cursor,
                ..EventQuery::default()
            })
            .await?;
        if let Some(e) = page
            .events
            .iter()
            .find(|e| e.approval_id.as_deref() == Some(id))
        {
            return Ok(Some(e.tenant_id.to_string()));
        }
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(None),
        }
    }
}

fn not_found(id: &str) -> ApiError {
    let (shown, cut) = crate::audit::bounded(id, 128);
    let more = if cut { "…" } else { "" };
    ApiError::not_found(format!(
        "no approval {shown:?}{more}; list them with GET /v1/approvals"
    ))
}

/// The tenant of approval `id` if the key may see it; a 404 otherwise (a tenant-bound key does
/// not learn that another tenant's approval exists).
async fn visible_tenant(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<String, ApiError> {
    match tenant_of(state, id).await? {
        Some(t) if principal.can_see_tenant(&t) => Ok(t),
        _ => Err(not_found(id)),
    }
}

/// Appends the steps of one decision, in order, atomically.
async fn append(state: &AppState, steps: Vec<NewStep>) -> Result<(), ApiError> {
    let events = steps.into_iter().map(crate::gate::step_event).collect();
    state
        .store
        .append(PreparedEvent::new_all(events, Timestamp::now_micros()))
        .await?;
    state.appended();
    Ok(())
}

/// The approval `id` of `tenant` as the log now says, rendered.
async fn view(state: &AppState, tenant: &str, id: &str) -> Result<ApprovalView, ApiError> {
    let approvals = fold(state, Some(tenant)).await?;
    let a = approvals.get(id).ok_or_else(|| not_found(id))?;
    Ok(a.view(now()))
}

/// Millisecond precision: the step's timestamp is the decision's `now`, and stored events'
/// timestamps are shown with milliseconds.
fn now() -> Timestamp {
    let t = Timestamp::now_micros();
    Timestamp::from_nanos(t.nanos - t.nanos.rem_euclid(1_000_000), 3)
}

/// Asks for approval of an action.
///
/// Needs an `ingest` or `admin` key (a tenant-bound key only for its tenant). The action is
/// checked as ingest would check the event (its type, the catalogue's payload rules), so
/// nothing can be approved that could not then be logged. Appends an `approval.request` event
/// to the tenant's log and answers the new approval, `pending`.
#[utoipa::path(
    post,
    path = "/v1/approvals",
    operation_id = "request_approval",
    tag = "approvals",
    security(("bearer" = [])),
    request_body(content = RequestDoc, content_type = "application/json"),
    responses(
        (status = 201, description = "The new approval, pending", body = ApprovalDoc),
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
    principal.require(REQUEST_ROLES, "ask for approvals")?;
    let bytes = read_body(body, MAX_REQUEST_BODY).await?;
    let input: RequestInput = parse_body(
        &bytes,
        r#"{"tenant_id", "requested_by", "reason", "action": {"event_type", "payload"}}"#,
    )?;
    if let Some(bound) = &principal.tenant {
        if *bound != input.tenant_id {
            return Err(ApiError::forbidden(format!(
                "this key is bound to tenant {bound} and cannot ask for approvals in tenant {}",
                input.tenant_id
            )));
        }
    }
    let id = format!("{ID_PREFIX}{}", Uuid::now_v7().simple());
    let step = decide_request(
        &state.config.approvals,
        &id,
        &principal.key_id,
        &input,
        now(),
    )
    .map_err(refusal)?;
    let tenant = step.tenant_id.clone();
    append(&state, vec![step]).await?;
    let v = view(&state, &tenant, &id).await?;
    crate::query::render_json(StatusCode::CREATED, &v)
}

/// `status`: one of the states, or absent.
fn status_param(p: &params::Params) -> Result<Option<Status>, ApiError> {
    match params::opt(p, "status") {
        None => Ok(None),
        Some(s) => Status::parse(s).map(Some).ok_or_else(|| {
            ApiError::bad_request(
                "invalid status: expected pending, approved, rejected, expired or used",
            )
        }),
    }
}

/// Lists approvals, newest request first.
///
/// Needs an `admin`, `reader`, `auditor` or `approver` key (a tenant-bound key sees only its
/// tenant's). The state is derived from the log's `approval.*` events on each request.
#[utoipa::path(
    get,
    path = "/v1/approvals",
    operation_id = "list_approvals",
    tag = "approvals",
    security(("bearer" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "The approvals", body = ApprovalList),
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
    principal.require(READ_ROLES, "read approvals")?;
    let p = params::query_params(p, LIST_PARAMS)?;
    let tenant = principal.read_scope(params::tenant(&p)?)?;
    let status = status_param(&p)?;
    let approvals = fold(&state, tenant.as_deref()).await?;
    let now = now();
    let mut list = approvals.list(tenant.as_deref(), status, now);
    list.sort_by(|a, b| {
        (b.requested_at.nanos, &b.tenant_id, b.request_seq).cmp(&(
            a.requested_at.nanos,
            &a.tenant_id,
            a.request_seq,
        ))
    });
    let views: Vec<ApprovalView> = list.iter().map(|a| a.view(now)).collect();
    let resp = crate::query::render_json(StatusCode::OK, &json!({ "approvals": views }))?;
    Ok(served(&principal, scope_of(tenant.as_deref()), resp))
}

/// One approval.
///
/// Needs an `admin`, `reader`, `auditor` or `approver` key; another tenant's approval is a 404
/// for a tenant-bound key. A service checks `status` (`approved`) and `digest` (the action it
/// will log) before acting.
#[utoipa::path(
    get,
    path = "/v1/approvals/{id}",
    operation_id = "get_approval",
    tag = "approvals",
    security(("bearer" = [])),
    params(("id" = String, Path, example = json!("apr_0192f0c47d1e7a538f0e3c1d2b4a5e6f"), description = "The approval's id")),
    responses(
        (status = 200, description = "The approval", body = ApprovalDoc),
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
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "read approvals")?;
    let id = params::path_param(id)?;
    let tenant = visible_tenant(&state, &principal, &id).await?;
    let v = view(&state, &tenant, &id).await?;
    let resp = crate::query::render_json(StatusCode::OK, &v)?;
    Ok(served(&principal, Scope::Tenant(tenant), resp))
}

/// The tenant of approval `id` and the body of a decision on it.
async fn decision(
    state: &AppState,
    principal: &Principal,
    id: &str,
    body: Body,
) -> Result<(String, DecisionInput), ApiError> {
    let tenant = visible_tenant(state, principal, id).await?;
    let bytes = read_body(body, MAX_DECISION_BODY).await?;
    let input: DecisionInput = parse_body(&bytes, r#"{"approver", "comment"?}"#)?;
    Ok((tenant, input))
}

/// Approves.
///
/// Needs an `approver` or `admin` key (a tenant-bound key only for its tenant's approvals).
/// Each key counts once and the requester's key never counts; the N-th distinct key makes the
/// approval `approved` (and an `approval.granted` event is logged with its approve). Refused:
/// the requester's key (403), a key that already approved, or an approval already approved,
/// rejected, used or expired (409).
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/approve",
    operation_id = "approve_approval",
    tag = "approvals",
    security(("bearer" = [])),
    params(("id" = String, Path, example = json!("apr_0192f0c47d1e7a538f0e3c1d2b4a5e6f"), description = "The approval's id")),
    request_body(content = DecisionDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "The approval after this decision", body = ApprovalDoc),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 422, response = crate::openapi::ValidationFailed),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn approve(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    decide(state, headers, id, body, Verdict::Approve).await
}

/// Rejects: the approval is over (also once approved, while not yet used).
///
/// Needs an `approver` or `admin` key (a tenant-bound key only for its tenant's approvals); the
/// requester's key may reject, which withdraws the request. Refused once rejected, used or
/// expired (409).
#[utoipa::path(
    post,
    path = "/v1/approvals/{id}/reject",
    operation_id = "reject_approval",
    tag = "approvals",
    security(("bearer" = [])),
    params(("id" = String, Path, example = json!("apr_0192f0c47d1e7a538f0e3c1d2b4a5e6f"), description = "The approval's id")),
    request_body(content = DecisionDoc, content_type = "application/json"),
    responses(
        (status = 200, description = "The approval, rejected", body = ApprovalDoc),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 422, response = crate::openapi::ValidationFailed),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn reject(
    State(state): State<AppState>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
) -> Result<Response, ApiError> {
    decide(state, headers, id, body, Verdict::Reject).await
}

/// Which decision a request makes.
enum Verdict {
    Approve,
    Reject,
}

/// `approve` and `reject`: the step the state machine decides is appended, then the approval
/// is read back from the log (so concurrent decisions show).
async fn decide(
    state: AppState,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Body,
    verdict: Verdict,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(DECIDE_ROLES, "decide approvals")?;
    let id = params::path_param(id)?;
    let (tenant, input) = decision(&state, &principal, &id, body).await?;
    // Under the approval's control lock: a decision, a use at ingest and the expiry sweep are
    // decided one after the other, each on the state the one before left. In a task of its
    // own, so that a client hanging up cannot release the lock before the append is done.
    let (st, t, i, key_id) = (
        state.clone(),
        tenant.clone(),
        id.clone(),
        principal.key_id.clone(),
    );
    tokio::spawn(async move {
        let _turn = st.control.turn().await?;
        let _guard = st
            .store
            .control_lock(&[crate::gate::approval_lock(&t, &i)])
            .await?;
        let approvals = fold(&st, Some(&t)).await?;
        let a = approvals.get(&i).ok_or_else(|| not_found(&i))?;
        let steps = match verdict {
            Verdict::Approve => decide_approve(a, &key_id, &input, now()),
            Verdict::Reject => decide_reject(a, &key_id, &input, now()).map(|s| vec![s]),
        }
        .map_err(refusal)?;
        append(&st, steps).await
    })
    .await
    .map_err(|e| ApiError::internal(format!("deciding approval {id}: {e}")))??;
    let v = view(&state, &tenant, &id).await?;
    crate::query::render_json(StatusCode::OK, &v)
}
