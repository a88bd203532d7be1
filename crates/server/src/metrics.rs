//! Prometheus metrics: one process-wide recorder, installed on first use.
//!
//! Names: `trailkeep_events_accepted_total`, `trailkeep_events_duplicate_total`,
//! `trailkeep_ingest_batch_events` (histogram), `trailkeep_fsync_seconds` (histogram),
//! `trailkeep_commit_group_events` (histogram), `trailkeep_events_stored_total`,
//! `trailkeep_requests_rejected_total{code}`.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the recorder once per process (later calls are no-ops).
pub fn init() {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Full("trailkeep_fsync_seconds".into()),
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    1.0,
                ],
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Suffix("_events".into()),
                    &[
                        1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 500.0, 1000.0, 5000.0, 10000.0, 50000.0,
                    ],
                )
            })
            .map(|b| b.build_recorder());
        match recorder {
            Ok(r) => {
                let handle = r.handle();
                if ::metrics::set_global_recorder(r).is_ok() {
                    Some(handle)
                } else {
                    None
                }
            }
            Err(_) => None,
        }
    });
}

/// The exposition text.
pub fn render() -> String {
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}
