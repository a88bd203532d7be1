//! `POST /v1/events` (docs/api.md): parse, validate, authorise, hash, then append durably.
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
use trailkeep_core::leaf::write_json_string;
use trailkeep_core::validate::{parse_body, BodyError, BodyFormat, BodyRefusal};
use trailkeep_core::Timestamp;
use trailkeep_core::Uuid;
use trailkeep_store::{AppendOutcome, PreparedEvent, Role, StoreError};

/// Appends events, all or nothing; answers once they are durable.
///
/// Needs an `admin` or `ingest` key (a tenant-bound key writes only its tenant). Re-sending an
/// `event_id` with identical content returns its original receipt and counts as a duplicate.
#[utoipa::path(
    post,
    path = "/v1/events",
    tag = "events",
    security(("bearer" = [])),
    request_body(
        description = "One event, a JSON array of up to 10,000 events, or NDJSON (one event per line).",
        content(
            (crate::openapi::NewEvents = "application/json"),
            (String = "application/x-ndjson"),
        )
    ),
    responses(
        (status = 200, description = "Stored (or already stored): one receipt per event, in request order",
            body = crate::openapi::IngestResponse),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 409, response = crate::openapi::Conflict),
        (status = 413, response = crate::openapi::PayloadTooLarge),
        (status = 422, response = crate::openapi::ValidationFailed),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
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
    // Kept for the one answer that needs them: a write whose outcome is unknown names every
    // event_id (server-assigned ones included) so the client can resend exactly these events.
    let ids: Vec<Uuid> = prepared.iter().map(|p| p.event.event_id).collect();
    let outcome = if crate::gate::needs_gate(&state.config.approvals, &prepared) {
        crate::gate::append_gated(&state, prepared)
            .await
            .map_err(|e| match e {
                crate::gate::GateError::Api(e) => e,
                crate::gate::GateError::Store(e) => append_error(e, &ids),
            })?
    } else {
        state
            .store
            .append(prepared)
            .await
            .map_err(|e| append_error(e, &ids))?
    };
    if outcome.accepted > 0 {
        state.appended();
    }
    metrics::counter!("trailkeep_events_accepted_total").increment(outcome.accepted as u64);
    metrics::counter!("trailkeep_events_duplicate_total").increment(outcome.duplicates as u64);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        outcome_json(&outcome),
    )
        .into_response())
}

/// The answer to a failed append. An unknown outcome (503) lists each event's `event_id`: resending
/// the same events with these ids is safe (stored ones come back with their original receipts).
pub fn append_error(e: StoreError, ids: &[Uuid]) -> ApiError {
    let unknown = matches!(e, StoreError::OutcomeUnknown(_));
    let mut err = ApiError::from(e);
    if unknown {
        err.details = ids
            .iter()
            .enumerate()
            .map(|(i, id)| {
                serde_json::json!({"index": i, "path": "event_id", "event_id": id.to_string(),
                "message": "outcome unknown; resend this event with this event_id"})
            })
            .collect();
    }
    err
}

/// Everything before the store: framing, validation, tenant binding, salting and hashing.
fn prepare(
    principal: &Principal,
    bytes: &[u8],
    format: BodyFormat,
    received_at: Timestamp,
) -> Result<Vec<PreparedEvent>, ApiError> {
    prepare_body(bytes, format, received_at, principal.tenant.as_deref())
}

/// The CPU side of `POST /v1/events` for one body: framing, validation of every event, the
/// tenant binding of the key (`bound_tenant`), then a fresh salt and the leaf hash per event.
///
/// Public so that `trailkeep-bench prepare` measures exactly what the handler runs. Refusals
/// come back as the [`ApiError`] the handler answers with (400, 413, 422 or 403).
pub fn prepare_body(
    bytes: &[u8],
    format: BodyFormat,
    received_at: Timestamp,
    bound_tenant: Option<&str>,
) -> Result<Vec<PreparedEvent>, ApiError> {
    let events = parse_body(bytes, format, received_at).map_err(|r| match r {
        BodyRefusal::Body(e) => match e {
            BodyError::TooManyEvents(_) => ApiError::too_large("too_many_events", e.to_string()),
            BodyError::EventTooLarge { .. } => {
                ApiError::too_large("event_too_large", e.to_string())
            }
            BodyError::NotJson(_) | BodyError::Empty => ApiError::bad_request(e.to_string()),
        },
        BodyRefusal::Invalid(issues) => ApiError::validation(issues),
    })?;
    if let Some(bound) = bound_tenant {
        if let Some((i, e)) = events
            .iter()
            .enumerate()
            .find(|(_, e)| e.tenant_id != bound)
        {
            return Err(ApiError::forbidden(format!(
                "this key is bound to tenant {bound} and cannot write event {i} for tenant {}; nothing was stored",
                e.tenant_id
            )));
        }
    }
    Ok(PreparedEvent::new_all(events, received_at))
}

/// The 200 response body of `POST /v1/events`: `{"accepted","duplicates","receipts":[…]}`.
///
/// Written by hand, byte for byte what `serde_json::to_vec(outcome)` writes for the derived
/// `Serialize` of `AppendOutcome` and `Receipt` (field order as declared, the id hyphenated in
/// lower case, the leaf hash in standard base64, strings escaped as serde_json does): the
/// tests compare the two.
pub fn outcome_json(outcome: &AppendOutcome) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = Vec::with_capacity(64 + outcome.receipts.len() * 140);
    out.extend_from_slice(b"{\"accepted\":");
    push_u64(&mut out, outcome.accepted as u64);
    out.extend_from_slice(b",\"duplicates\":");
    push_u64(&mut out, outcome.duplicates as u64);
    out.extend_from_slice(b",\"receipts\":[");
    let mut id_buf = uuid::Uuid::encode_buffer();
    let mut b64 = [0u8; 44];
    for (i, r) in outcome.receipts.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"event_id\":\"");
        out.extend_from_slice(r.event_id.hyphenated().encode_lower(&mut id_buf).as_bytes());
        out.extend_from_slice(b"\",\"tenant_id\":");
        write_json_string(&mut out, &r.tenant_id);
        out.extend_from_slice(b",\"seq\":");
        push_u64(&mut out, r.seq);
        out.extend_from_slice(b",\"leaf_hash\":\"");
        // 32 bytes are always 44 base64 characters.
        match base64::engine::general_purpose::STANDARD.encode_slice(r.leaf_hash, &mut b64) {
            Ok(n) => out.extend_from_slice(&b64[..n]),
            Err(_) => out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(r.leaf_hash)
                    .as_bytes(),
            ),
        }
        out.extend_from_slice(b"\"}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// Appends a decimal integer.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
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
            if let Some(t) = s.downcast_ref::<crate::deadline::BodyTimeout>() {
                return ApiError::new(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    format!("{t}; send the whole body at once, or fewer events per request"),
                );
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use trailkeep_store::Receipt;

    #[test]
    fn an_unknown_outcome_is_a_503_naming_every_event_id() {
        let ids = [Uuid::from_u128(7), Uuid::from_u128(9)];
        let e = append_error(StoreError::OutcomeUnknown("connection lost".into()), &ids);
        assert_eq!(e.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "unavailable");
        assert_eq!(e.retry_after, Some(1));
        assert!(e.message.contains("unknown whether"), "{}", e.message);
        assert!(
            e.message.contains("same event_ids is safe"),
            "{}",
            e.message
        );
        assert!(
            !e.message.contains("connection lost"),
            "internal detail leaked"
        );
        assert_eq!(e.details.len(), 2);
        assert_eq!(e.details[1]["index"], 1);
        assert_eq!(e.details[1]["event_id"], ids[1].to_string());
        // A plain 503 still says nothing was stored and lists nothing.
        let e = append_error(StoreError::Unavailable("down".into()), &ids);
        assert_eq!(e.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("nothing was stored"), "{}", e.message);
        assert!(e.details.is_empty());
    }

    #[test]
    fn outcome_json_is_what_serde_json_writes() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let tenants = [
            "t_0042".to_string(),
            "_global".to_string(),
            String::new(),
            "q\"b\\s/\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\té€😀\u{2028}".to_string(),
        ];
        for n in [0usize, 1, 2, 7, 300] {
            let receipts: Vec<Receipt> = (0..n)
                .map(|i| {
                    let mut h = [0u8; 32];
                    for b in h.iter_mut() {
                        *b = next() as u8;
                    }
                    Receipt {
                        event_id: uuid::Uuid::from_u128(
                            u128::from(next()) << 64 | u128::from(next()),
                        ),
                        tenant_id: tenants[i % tenants.len()].clone().into(),
                        seq: match i % 4 {
                            0 => 0,
                            1 => u64::MAX,
                            _ => next() >> (next() % 64),
                        },
                        leaf_hash: h,
                    }
                })
                .collect();
            let outcome = AppendOutcome {
                accepted: n,
                duplicates: if n % 2 == 0 { usize::MAX } else { n / 3 },
                receipts,
            };
            assert_eq!(
                String::from_utf8(outcome_json(&outcome)).unwrap(),
                String::from_utf8(serde_json::to_vec(&outcome).unwrap()).unwrap()
            );
        }
    }
}
