//! Prometheus metrics: one process-wide recorder, installed on first use.
//!
//! Every metric is registered when the recorder is installed, so a server that has just started
//! shows them all (counters at 0) instead of an empty page. Names:
//!
//! - `trailkeep_events_accepted_total`, `trailkeep_events_duplicate_total`: ingest outcomes;
//! - `trailkeep_ingest_batch_events` (histogram): events per ingest request;
//! - `trailkeep_events_stored_total`: events this process stored;
//!   `trailkeep_commit_group_events` (histogram): events per commit group;
//!   `trailkeep_fsync_seconds` (histogram): the embedded store's fsyncs;
//! - `trailkeep_stored_events` (gauge): events in the store, every tenant, read from the store
//!   at each scrape (so it also counts what other processes on a shared database stored);
//! - `trailkeep_requests_rejected_total{code}`: refusals by error code;
//! - `trailkeep_checkpoints_signed_total`, `trailkeep_checkpoints_refused_total`;
//! - `trailkeep_exports_total{format}` (csv, ndjson, json, parquet, bundle): exports started;
//!   `trailkeep_exported_events_total`: events of exports sent to the end;
//! - alerts (`trailkeep_deliver`, per channel, once channels are configured):
//!   `trailkeep_alerts_total{channel,outcome}`, `trailkeep_alerts_pending{channel}`,
//!   `trailkeep_alert_latency_seconds{channel}`, `trailkeep_alerts_dead_letters_total{channel}`;
//! - process metrics (Linux): `process_resident_memory_bytes`, `process_cpu_seconds_total`,
//!   `process_open_fds`, `process_start_time_seconds`, read from `/proc` at each scrape.

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use trailkeep_store::Store;

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The error codes a refusal can carry (docs/api.md#errors), registered at 0.
pub const REJECTION_CODES: &[&str] = &[
    "bad_request",
    "unauthorized",
    "forbidden",
    "not_found",
    "method_not_allowed",
    "conflict",
    "body_too_large",
    "event_too_large",
    "too_many_events",
    "validation_failed",
    "rate_limited",
    "unavailable",
    "internal",
];

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
                    register();
                    Some(handle)
                } else {
                    None
                }
            }
            Err(_) => None,
        }
    });
}

/// Describes and registers every metric (counters at 0).
fn register() {
    use metrics::{
        counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram,
    };
    describe_counter!(
        "trailkeep_events_accepted_total",
        "Events accepted by ingest requests (new events)"
    );
    describe_counter!(
        "trailkeep_events_duplicate_total",
        "Events sent again with the same content (answered with their first receipt)"
    );
    describe_histogram!("trailkeep_ingest_batch_events", "Events per ingest request");
    describe_counter!(
        "trailkeep_events_stored_total",
        "Events this process wrote to the store"
    );
    describe_histogram!(
        "trailkeep_commit_group_events",
        "Events per commit group (one durable write)"
    );
    describe_histogram!(
        "trailkeep_fsync_seconds",
        Unit::Seconds,
        "Duration of the embedded store's fsyncs"
    );
    describe_gauge!(
        "trailkeep_stored_events",
        "Events in the store, every tenant"
    );
    describe_counter!(
        "trailkeep_requests_rejected_total",
        "Requests refused, by error code"
    );
    describe_counter!("trailkeep_checkpoints_signed_total", "Checkpoints signed");
    describe_counter!(
        "trailkeep_checkpoints_refused_total",
        "Checkpoints not signed because the tree was not consistent with the previous one"
    );
    describe_counter!(
        "trailkeep_exports_total",
        "Exports started, by format (bundle: evidence bundles)"
    );
    describe_counter!(
        "trailkeep_exported_events_total",
        "Events of exports sent to the end"
    );
    describe_gauge!(
        "process_resident_memory_bytes",
        Unit::Bytes,
        "Resident memory size in bytes"
    );
    describe_gauge!(
        "process_cpu_seconds_total",
        Unit::Seconds,
        "User and system CPU time spent in seconds"
    );
    describe_gauge!("process_open_fds", "Number of open file descriptors");
    describe_gauge!(
        "process_start_time_seconds",
        Unit::Seconds,
        "Start time of the process since the Unix epoch in seconds"
    );
    counter!("trailkeep_events_accepted_total").absolute(0);
    counter!("trailkeep_events_duplicate_total").absolute(0);
    counter!("trailkeep_events_stored_total").absolute(0);
    counter!("trailkeep_checkpoints_signed_total").absolute(0);
    counter!("trailkeep_checkpoints_refused_total").absolute(0);
    for format in ["csv", "ndjson", "json", "parquet", "bundle"] {
        counter!("trailkeep_exports_total", "format" => format).absolute(0);
    }
    counter!("trailkeep_exported_events_total").absolute(0);
    for code in REJECTION_CODES {
        counter!("trailkeep_requests_rejected_total", "code" => *code).absolute(0);
    }
    let _ = histogram!("trailkeep_ingest_batch_events");
    let _ = histogram!("trailkeep_commit_group_events");
    let _ = histogram!("trailkeep_fsync_seconds");
    let _ = gauge!("trailkeep_stored_events");
    process::update();
}

/// Sets the stored-events gauge from the store (at each scrape).
pub async fn update_stored_events(store: &dyn Store) {
    match store.tenants().await {
        Ok(tenants) => {
            let n: u64 = tenants.iter().map(|t| t.event_count).sum();
            metrics::gauge!("trailkeep_stored_events").set(n as f64);
        }
        Err(e) => tracing::debug!(error = %e, "cannot count the stored events for /metrics"),
    }
}

/// The exposition text.
pub fn render() -> String {
    process::update();
    HANDLE
        .get()
        .and_then(|h| h.as_ref())
        .map(|h| h.render())
        .unwrap_or_default()
}

/// The process metrics, from `/proc` (Linux; elsewhere only the start time).
mod process {
    use std::sync::OnceLock;
    use std::time::{SystemTime, UNIX_EPOCH};

    /// When this process started, in seconds since the epoch: from `/proc` on Linux, else the
    /// first time this is asked (when the recorder is installed, at start).
    fn start_time() -> f64 {
        static START: OnceLock<f64> = OnceLock::new();
        *START.get_or_init(|| {
            #[cfg(target_os = "linux")]
            if let Some(t) = linux::start_time() {
                return t;
            }
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        })
    }

    pub fn update() {
        metrics::gauge!("process_start_time_seconds").set(start_time());
        #[cfg(target_os = "linux")]
        linux::update();
    }

    #[cfg(target_os = "linux")]
    mod linux {
        /// Clock ticks per second of the times in `/proc/self/stat`.
        fn ticks() -> f64 {
            // SAFETY: sysconf only reads a system constant.
            let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
            if t > 0 {
                t as f64
            } else {
                100.0
            }
        }

        /// The fields of `/proc/self/stat` after the command name (field 3 onwards).
        fn stat_fields() -> Option<Vec<String>> {
            let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
            // The command name is in parentheses and may hold spaces: split after the last ')'.
            let rest = &stat[stat.rfind(')')? + 1..];
            Some(rest.split_whitespace().map(str::to_string).collect())
        }

        pub fn start_time() -> Option<f64> {
            let f = stat_fields()?;
            // Field 22 (starttime, ticks after boot) is index 19 after the name.
            let start_ticks: f64 = f.get(19)?.parse().ok()?;
            let boot: f64 = std::fs::read_to_string("/proc/stat")
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("btime "))?
                .trim()
                .parse()
                .ok()?;
            Some(boot + start_ticks / ticks())
        }

        pub fn update() {
            if let Some(f) = stat_fields() {
                // Fields 14 and 15 (utime, stime) are indexes 11 and 12 after the name.
                let user: Option<f64> = f.get(11).and_then(|v| v.parse().ok());
                let system: Option<f64> = f.get(12).and_then(|v| v.parse().ok());
                if let (Some(u), Some(s)) = (user, system) {
                    // A gauge: counters here are whole numbers.
                    metrics::gauge!("process_cpu_seconds_total").set((u + s) / ticks());
                }
                // Field 24 (rss, pages) is index 21.
                if let Some(pages) = f.get(21).and_then(|v| v.parse::<f64>().ok()) {
                    // SAFETY: sysconf only reads a system constant.
                    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
                    let page = if page > 0 { page as f64 } else { 4096.0 };
                    metrics::gauge!("process_resident_memory_bytes").set(pages * page);
                }
            }
            if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
                metrics::gauge!("process_open_fds").set(dir.count() as f64);
            }
        }
    }
}
