//! `POST /v1/events` (SPEC §4.1): parse, validate, authorise, hash, then append durably.
//!
//! Order of refusals: key (401/403/429) → content type (400) → body size (413) → framing (400)
//! → event count and event size (413) → validation of every event (422, all issues at once) →
//! tenant binding (403) → id conflicts (409). Any refusal stores nothing.

use crate::auth::{authenticate, Principal};
use crate::{ApiError, AppState};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use trailkeep_core::validate::{split_body, validate_batch, BodyError, BodyFormat};
use trailkeep_core::Timestamp;
use trailkeep_store::{PreparedEvent, Role};

pub async fn post_events(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(&[Role::Admin, Role::Ingest], "write events")?;
    let format = body_format(&headers)?;
    let bytes = read_body(body, state.config.max_body_bytes).await?;
    let received_at = Timestamp::now_micros();
    let prepared = prepare(&principal, &bytes, format, received_at)?;
    metrics::histogram!("trailkeep_ingest_batch_events").record(prepared.len() as f64);
    let outcome = state.store.append(prepared).await?;
    metrics::counter!("trailkeep_events_accepted_total").increment(outcome.accepted as u64);
    metrics::counter!("trailkeep_events_duplicate_total").increment(outcome.duplicates as u64);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_vec(&outcome).unwrap_or_default(),
    )
        .into_response())
}

/// Everything before the store: framing, validation, tenant binding, salting and hashing.
fn prepare(
    principal: &Principal,
    bytes: &[u8],
    format: BodyFormat,
    received_at: Timestamp,
) -> Result<Vec<PreparedEvent>, ApiError> {
    let raws = split_body(bytes, format).map_err(|e| match e {
        BodyError::TooManyEvents(_) => ApiError::too_large("too_many_events", e.to_string()),
        BodyError::EventTooLarge { .. } => ApiError::too_large("event_too_large", e.to_string()),
        BodyError::NotJson(_) | BodyError::Empty => ApiError::bad_request(e.to_string()),
    })?;
    let events = validate_batch(&raws, received_at).map_err(ApiError::validation)?;
    if let Some(bound) = &principal.tenant {
        if let Some((i, e)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| &e.tenant_id != bound)
        {
            return Err(ApiError::forbidden(format!(
                "this key is bound to tenant {bound} and cannot write event {i} for tenant {}; nothing was stored",
                e.tenant_id
            )));
        }
    }
    Ok(events
        .into_iter()
        .map(|e| PreparedEvent::new(e, received_at))
        .collect())
}

fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    match ct.as_deref() {
        Some("application/json") => Ok(BodyFormat::Json),
        Some("application/x-ndjson") | Some("application/ndjson") => Ok(BodyFormat::Ndjson),
        Some(other) => Err(ApiError::bad_request(format!(
            "wrong content type {other:?}: send application/json (an event or an array) or application/x-ndjson"
        ))),
        None => Err(ApiError::bad_request(
            "missing Content-Type: send application/json (an event or an array) or application/x-ndjson",
        )),
    }
}

/// Reads a body up to `limit` bytes; over it is a 413.
pub async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return ApiError::too_large(
                    "body_too_large",
                    format!(
                        "the body is over the {limit}-byte limit; send fewer events per request"
                    ),
                );
            }
            src = s.source();
        }
        ApiError::bad_request("the request body could not be read")
    })
}
