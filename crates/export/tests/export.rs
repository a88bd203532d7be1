//! The export crate's integration tests: one binary (see the workspace's `autotests = false`).

#[path = "export/bundle.rs"]
mod bundle;
#[path = "export/bundle_log.rs"]
mod bundle_log;

#[path = "export/formats_events.rs"]
mod formats_events;

#[path = "export/formats_api.rs"]
mod formats_api;

#[path = "export/formats_csv.rs"]
mod formats_csv;

#[path = "export/formats_json.rs"]
mod formats_json;

#[path = "export/formats_parquet.rs"]
mod formats_parquet;

#[path = "export/formats_bigquery.rs"]
mod formats_bigquery;
