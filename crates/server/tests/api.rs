//! HTTP API tests: the axum app driven with `tower::ServiceExt::oneshot` (no socket) over a
//! fresh embedded store per test, with an env admin key (`api-test-admin-secret-…`).

#[path = "api/common.rs"]
mod common;

#[path = "api/ingest.rs"]
mod ingest;

#[path = "api/refusals.rs"]
mod refusals;

#[path = "api/catalogue.rs"]
mod catalogue;

#[path = "api/query.rs"]
mod query;

#[path = "api/keys_ops.rs"]
mod keys_ops;

#[path = "api/proofs.rs"]
mod proofs;

#[path = "api/audit.rs"]
mod audit;

#[path = "api/integrity.rs"]
mod integrity;
#[path = "api/openapi.rs"]
mod openapi;

#[path = "api/isolation.rs"]
mod isolation;

#[path = "api/viewer.rs"]
mod viewer;

#[path = "api/abuse.rs"]
mod abuse;

#[path = "api/export.rs"]
mod export;

#[path = "api/impersonation.rs"]
mod impersonation;

#[path = "api/approvals.rs"]
mod approvals;

// What ingest refuses on the log's state: impersonation start/end, approvals used once.
#[path = "api/gate.rs"]
mod gate;
