//! Exports (docs/export.md): `GET /v1/export` in CSV, NDJSON, JSON or Parquet, and
//! `GET /v1/export/bundle`, an evidence bundle an auditor verifies offline.
//!
//! Both take their snapshot from the store before the answer's status line is sent (every
//! event committed before the request is in it, none committed after), then stream: the store
//! hands batches to a blocking thread that formats them (`trailkeep-export`) into the response
//! body as they come ([`crate::stream`]). Memory stays flat in the export's size; a client that
//! disconnects stops the work. A failure midway closes the response unfinished, never as a
//! shorter file that looks whole.
//!
//! Access is a listing's: `admin`, `reader` or `auditor` keys, a tenant-bound key only its
//! tenant, an auditor's export logged as `audit.read` before the first byte leaves.

use crate::audit::{scope_of, served, Scope};
use crate::auth::{authenticate, READ_ROLES};
use crate::stream::{channel, ChannelWriter};
use crate::{params, ApiError, AppState};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::Response;
use trailkeep_export::bundle::{BundleInputs, BundleSpool};
use trailkeep_export::formats::{self, Format};
use trailkeep_store::{EventBatches, ExportRequest};

/// Parameters of `GET /v1/export`: the filters of a listing, `order` and `format` (no `limit`
/// or `cursor`: an export is every matching event).
pub const EXPORT_PARAMS: &[&str] = &[
    "tenant_id",
    "event_type",
    "actor",
    "since",
    "until",
    "session",
    "q",
    "order",
    "format",
];

/// Parameters of `GET /v1/export/bundle`.
pub const BUNDLE_PARAMS: &[&str] = &["tenant_id", "since", "until", "compress"];

/// Leaf hashes read from the store at a time for a bundle.
const LEAF_CHUNK: u64 = 65_536;

/// A permit to run one more export, or 429: each export holds a blocking thread (and, on
/// PostgreSQL, a pooled connection) until it ends.
fn permit(state: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state.exports.clone().try_acquire_owned().map_err(|_| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "{} exports are in progress, the most this server runs at once (limits.max_exports); retry in a few seconds",
                state.config.max_exports
            ),
        );
        e.retry_after = Some(5);
        e
    })
}

/// Refuses `limit` and `cursor` with a sentence of their own (a listing habit, not a typo).
fn no_paging(p: &Result<Query<params::RawParams>, QueryRejection>) -> Result<(), ApiError> {
    if let Ok(Query(pairs)) = p {
        if let Some((k, _)) = pairs.iter().find(|(k, _)| k == "limit" || k == "cursor") {
            return Err(ApiError::bad_request(format!(
                "an export takes no {k}: it returns every matching event in one stream; narrow it with since/until or the other filters"
            )));
        }
    }
    Ok(())
}

/// `attachment; filename="…"` from the scope, a time stamp and the extension.
fn disposition(tenant: Option<&str>, ext: &str) -> HeaderValue {
    let now = trailkeep_core::Timestamp::now_micros().to_rfc3339();
    let stamp: String = now
        .chars()
        .filter(|c| c.is_ascii_digit())
        .take(14)
        .collect();
    // Tenant ids are [A-Za-z0-9_.:-]: safe in a quoted filename once ':' is replaced.
    let who = tenant.unwrap_or("all-tenants").replace(':', "_");
    HeaderValue::from_str(&format!(
        "attachment; filename=\"trailkeep-{who}-{stamp}.{ext}\""
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// Exports every event matching the filters, streamed.
///
/// Needs an `admin`, `reader` or `auditor` key (a tenant-bound key exports only its tenant).
/// `format` is `ndjson` (default), `csv`, `json` or `parquet`; see docs/export.md for each.
#[utoipa::path(
    get,
    path = "/v1/export",
    tag = "export",
    security(("bearer" = [])),
    params(crate::openapi::ExportParams),
    responses(
        (status = 200, description = "Every matching event, streamed in the requested format",
            content(
                (String = "application/x-ndjson"),
                (String = "text/csv"),
                (Vec<crate::openapi::Event> = "application/json"),
                (Vec<u8> = "application/vnd.apache.parquet"),
            )),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn export(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "export events")?;
    no_paging(&p)?;
    let p = params::query_params(p, EXPORT_PARAMS)?;
    let format = match params::opt(&p, "format") {
        None => Format::Ndjson,
        Some(f) => f
            .parse::<Format>()
            .map_err(|e| ApiError::bad_request(format!("invalid format: {e}")))?,
    };
    let mut query = params::event_query(&p)?;
    query.tenant_id = principal.read_scope(query.tenant_id.take())?;
    let scope = scope_of(query.tenant_id.as_deref());
    let tenant = query.tenant_id.clone();
    let head = [
        (
            header::CONTENT_TYPE,
            HeaderValue::from_static(format.content_type()),
        ),
        (
            header::CONTENT_DISPOSITION,
            disposition(tenant.as_deref(), format.extension()),
        ),
    ];
    if method == Method::HEAD {
        // The headers a GET would get, without reading anything.
        return Ok(served(&principal, scope, (head, ())));
    }
    let permit = permit(&state)?;
    let batches = state
        .store
        .export(ExportRequest {
            query,
            ..ExportRequest::default()
        })
        .await?;
    metrics::counter!("trailkeep_exports_total", "format" => format.extension()).increment(1);
    let (w, body) = channel();
    tokio::task::spawn_blocking(move || {
        produce(batches, format, w);
        drop(permit);
    });
    Ok(served(
        &principal,
        scope,
        (head, axum::body::Body::new(body)),
    ))
}

/// Formats the store's batches into the response (on a blocking thread); a large export then
/// gives its buffers' memory back ([`crate::memory`]).
fn produce(batches: EventBatches, format: Format, w: ChannelWriter) {
    if format_into(batches, format, w) >= crate::memory::TRIM_AFTER_BYTES {
        crate::memory::release_freed();
    }
}

/// Writes every batch in `format`; returns the bytes produced.
fn format_into(mut batches: EventBatches, format: Format, mut w: ChannelWriter) -> u64 {
    let mut writer = formats::writer(format);
    let mut out = Vec::with_capacity(1 << 20);
    let mut events = 0u64;
    let mut bytes = 0u64;
    while let Some(batch) = batches.blocking_recv() {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                w.fail(format!("reading the export from the store failed: {e}"));
                return bytes;
            }
        };
        events += batch.len() as u64;
        if let Err(e) = writer.write_batch(&batch, &mut out) {
            w.fail(format!("formatting the export failed: {e}"));
            return bytes;
        }
        bytes += out.len() as u64;
        if !out.is_empty() && w.send_bytes(std::mem::take(&mut out)).is_err() {
            // The client went away: dropping `batches` stops the store's producer.
            return bytes;
        }
    }
    if let Err(e) = writer.finish(&mut out) {
        w.fail(format!("finishing the export failed: {e}"));
        return bytes;
    }
    bytes += out.len() as u64;
    if w.send_bytes(out).is_ok() && w.finish().is_ok() {
        metrics::counter!("trailkeep_exported_events_total").increment(events);
    }
    bytes
}

/// An evidence bundle: one tenant's events in a time range with everything needed to prove,
/// offline, that they are exactly what its signed log holds (docs/verification.md).
///
/// Needs an `admin`, `reader` or `auditor` key. `tenant_id` is required (a tenant-bound key
/// may leave it out); `compress=gzip` gives a `.tar.gz`.
#[utoipa::path(
    get,
    path = "/v1/export/bundle",
    tag = "export",
    security(("bearer" = [])),
    params(crate::openapi::BundleParams),
    responses(
        (status = 200, description = "The bundle, a tar archive (gzip-compressed with compress=gzip)",
            content((Vec<u8> = "application/x-tar"), (Vec<u8> = "application/gzip"))),
        (status = 400, response = crate::openapi::BadRequest),
        (status = 401, response = crate::openapi::Unauthorized),
        (status = 403, response = crate::openapi::Forbidden),
        (status = 404, response = crate::openapi::NotFound),
        (status = 429, response = crate::openapi::RateLimited),
        (status = 500, response = crate::openapi::Internal),
        (status = 503, response = crate::openapi::Unavailable),
    ),
)]
pub async fn bundle(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    p: Result<Query<params::RawParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let principal = authenticate(&state, &headers).await?;
    principal.require(READ_ROLES, "export an evidence bundle")?;
    let p = params::query_params(p, BUNDLE_PARAMS)?;
    let requested = params::tenant(&p)?;
    let Some(tenant) = principal.read_scope(requested)? else {
        return Err(ApiError::bad_request(
            "tenant_id is required: a bundle holds one tenant's log",
        ));
    };
    let (since, until) = params::time_range(&p)?;
    let gzip = match params::opt(&p, "compress") {
        None | Some("none") => false,
        Some("gzip") => true,
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid compress: expected gzip or none",
            ))
        }
    };
    let Some(id) = state.log.clone() else {
        return Err(ApiError::unavailable(
            "this server has no signing key, so it cannot sign a bundle",
        ));
    };
    let (ctype, ext) = if gzip {
        ("application/gzip", "tar.gz")
    } else {
        ("application/x-tar", "tar")
    };
    let head = [
        (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
        (header::CONTENT_DISPOSITION, disposition(Some(&tenant), ext)),
    ];
    if method == Method::HEAD {
        if state.store.tree_size(&tenant).await? == 0 {
            return Err(ApiError::not_found(format!(
                "tenant {tenant} has no events"
            )));
        }
        return Ok(served(&principal, Scope::Tenant(tenant), (head, ())));
    }
    let permit = permit(&state)?;
    // The bundle covers exactly one signed tree: a checkpoint of everything stored so far,
    // signed with the current key.
    let Some(cp) = crate::checkpoint::checkpoint_for_bundle(&state, &id, &tenant).await? else {
        return Err(ApiError::not_found(format!(
            "tenant {tenant} has no events"
        )));
    };
    let mut query = trailkeep_store::EventQuery {
        tenant_id: Some(tenant.clone()),
        since,
        until,
        ..Default::default()
    };
    query.limit = 0;
    let mut batches = state
        .store
        .export(ExportRequest {
            query,
            log_order: true,
            tree_size: Some(cp.size),
            batch: 0,
        })
        .await?;

    // Spool the events (a temporary file: bounded memory), then gather the proofs.
    let mut spool = tokio::task::spawn_blocking(|| BundleSpool::new(None))
        .await
        .map_err(|e| ApiError::internal(format!("bundle spool: {e}")))?
        .map_err(|e| ApiError::internal(format!("cannot create the bundle's spool file: {e}")))?;
    while let Some(batch) = batches.recv().await {
        let batch = batch?;
        spool = tokio::task::spawn_blocking(move || {
            for e in &batch {
                spool.push(e)?;
            }
            Ok::<_, trailkeep_export::bundle::BundleError>(spool)
        })
        .await
        .map_err(|e| ApiError::internal(format!("bundle spool: {e}")))?
        .map_err(|e| ApiError::internal(format!("spooling the bundle failed: {e}")))?;
    }
    let mut range_proof = Vec::new();
    let mut first_checkpoint = None;
    let mut consistency_proof = Vec::new();
    if let Some((a, b)) = spool.seq_span() {
        let mut at = a;
        while at < b {
            let end = b.min(at + LEAF_CHUNK);
            let leaves = state.store.leaves(&tenant, at, end).await?;
            spool = tokio::task::spawn_blocking(move || {
                spool.push_leaves(&leaves)?;
                Ok::<_, trailkeep_export::bundle::BundleError>(spool)
            })
            .await
            .map_err(|e| ApiError::internal(format!("bundle spool: {e}")))?
            .map_err(|e| ApiError::internal(format!("spooling the bundle failed: {e}")))?;
            at = end;
        }
        let pa = state.store.inclusion_proof(&tenant, a, cp.size).await?;
        let pb = state.store.inclusion_proof(&tenant, b - 1, cp.size).await?;
        range_proof = trailkeep_tlog::range_proof(a, b, cp.size, &pa, &pb)
            .map_err(|e| ApiError::internal(format!("range proof: {e}")))?;
        // The first checkpoint that covered the range, if the current key signed it (one from
        // before a key rotation is left out: the bundle carries one verifying key).
        let first = state
            .store
            .checkpoint_covering(&tenant, b)
            .await?
            .filter(|c| {
                trailkeep_tlog::open_checkpoint_for_origin(
                    &c.note,
                    &id.origin(&tenant),
                    &id.verifier,
                )
                .is_ok()
            });
        if let Some(first) = first {
            if first.size < cp.size {
                consistency_proof = state
                    .store
                    .consistency_proof(&tenant, first.size, cp.size)
                    .await?;
                first_checkpoint = Some(first.note);
            }
        }
    }
    let inputs = BundleInputs {
        tenant_id: tenant.clone(),
        origin: id.origin(&tenant),
        since: since.map(|t| t.to_rfc3339()),
        until: until.map(|t| t.to_rfc3339()),
        created_at: trailkeep_core::Timestamp::now_micros().to_rfc3339(),
        checkpoint: cp.note.clone(),
        tree_size: cp.size,
        first_checkpoint,
        consistency_proof,
        range_proof,
        public_key: id.verifier.to_vkey(),
    };
    // Checked (every leaf, the range proof, the checkpoints) and signed before the answer
    // starts: a bundle that would not verify is a 500, never a 200 cut off.
    let signer = id.clone();
    let bundle = tokio::task::spawn_blocking(move || spool.finish(inputs, &signer.signer))
        .await
        .map_err(|e| ApiError::internal(format!("bundle: {e}")))?
        .map_err(|e| ApiError::internal(format!("the bundle does not check out: {e}")))?;
    let (w, body) = channel();
    tokio::task::spawn_blocking(move || {
        let mut w = w;
        match bundle.write_tar(&mut w, gzip) {
            Ok(_) => {
                let _ = w.finish();
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            Err(e) => w.fail(format!("writing the bundle failed: {e}")),
        }
        crate::memory::release_freed();
        drop(permit);
    });
    metrics::counter!("trailkeep_exports_total", "format" => "bundle").increment(1);
    Ok(served(
        &principal,
        Scope::Tenant(tenant),
        (head, axum::body::Body::new(body)),
    ))
}
