//! The one error type of the API: every 4xx/5xx is `{"error": {"code", "message", "details"}}`.
//!
//! Internal error text is logged, never sent: a 503 says storage is unavailable, not why.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use trailkeep_core::Issue;
use trailkeep_store::StoreError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<Value>,
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn too_large(code: &'static str, message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, code, message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    /// A failure of the server's own: `detail` goes to the log, the client gets a sentence
    /// without it (internal error text is never sent to clients).
    pub fn internal(detail: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the server failed to answer this request; the details are in its log",
        )
    }
    pub fn validation(issues: Vec<Issue>) -> ApiError {
        let n = issues.len();
        let mut e = Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            format!("{n} problem(s) found; nothing of this request was stored"),
        );
        e.details = issues
            .into_iter()
            .map(|i| json!({"index": i.index, "path": i.path, "message": i.message}))
            .collect();
        e
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { index, event_id } => {
                let mut err = ApiError::new(StatusCode::CONFLICT, "conflict", e.to_string());
                err.details = vec![
                    json!({"index": index, "path": "event_id", "event_id": event_id.to_string(),
                    "message": "event_id already used with different content"}),
                ];
                err
            }
            StoreError::Invalid(m) => ApiError::bad_request(m),
            StoreError::Unavailable(m) | StoreError::InUse(m) => {
                tracing::warn!(error = %m, "storage unavailable");
                let mut err = ApiError::unavailable(
                    "storage is unavailable; nothing was stored. Retry later.",
                );
                err.retry_after = Some(1);
                err
            }
            StoreError::OutcomeUnknown(m) => {
                tracing::error!(error = %m, "outcome of a write unknown");
                let mut err = ApiError::unavailable(
                    "storage stopped answering after the write was sent, so it is unknown whether \
                     the events were stored: either all of them are or none is. Resending the \
                     same events with the same event_ids is safe: events already stored come \
                     back as duplicates with their original receipts and are never stored twice.",
                );
                err.retry_after = Some(1);
                err
            }
            StoreError::Corrupt(m) => {
                tracing::error!(error = %m, "stored data is corrupt");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "corrupt",
                    format!("stored data is corrupt and is not served: {m}"),
                )
            }
            StoreError::Quarantined { .. } => {
                tracing::warn!(error = %e, "read of a quarantined tenant refused");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "quarantined",
                    e.to_string(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        ::metrics::counter!("trailkeep_requests_rejected_total", "code" => self.code).increment(1);
        let body =
            json!({"error": {"code": self.code, "message": self.message, "details": self.details}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                resp.headers_mut().insert("retry-after", v);
            }
        }
        resp
    }
}
