//! Export throughput of a store, the store side of `GET /v1/export`.
//!
//! ```text
//! scripts/gen_events.py 1000000 > /tmp/events.ndjson
//! cargo run --release -p trailkeep-store --example export_throughput -- /tmp/events.ndjson
//! cargo run --release -p trailkeep-store --example export_throughput -- /tmp/events.ndjson \
//!     postgres://postgres@127.0.0.1:5432/an_empty_database
//! ```
//!
//! Loads the NDJSON events into a fresh store (embedded: in a temporary directory; with a
//! PostgreSQL URL, into that database, which should be empty) in requests of 1,000, then
//! drains exports (every event by `(timestamp, event_id)`, the largest tenant in log order, by
//! `(timestamp, event_id)`, with a type prefix, and the largest tenant's last hour in log
//! order, as an evidence bundle of that hour reads it) and prints events/s and how far the
//! process's resident memory rose above where it was before each export. The consumer only
//! counts.

use std::io::BufRead as _;
use std::time::Instant;
use trailkeep_core::{validate::validate_object, Timestamp};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::postgres::{PostgresOptions, PostgresStore};
use trailkeep_store::{EventQuery, ExportRequest, PreparedEvent, Store, TypeFilter};

/// A `/proc/self/status` field in KiB (0 where there is none).
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

/// Resets the peak resident size (`VmHWM`) to the current one.
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

async fn measure(store: &dyn Store, name: &str, req: ExportRequest) {
    reset_peak();
    let rss = status_kib("VmRSS:");
    let started = Instant::now();
    let mut rx = match store.export(req).await {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("{name}: {e}");
            return;
        }
    };
    let (mut events, mut batches) = (0usize, 0usize);
    while let Some(b) = rx.recv().await {
        match b {
            Ok(b) => {
                events += b.len();
                batches += 1;
            }
            Err(e) => {
                eprintln!("{name}: {e}");
                return;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:");
    println!(
        "{name}: {events} events in {batches} batches, {secs:.2} s, {:.0} events/s, peak RSS +{} MiB",
        events as f64 / secs,
        peak.saturating_sub(rss) / 1024
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: export_throughput EVENTS.ndjson [POSTGRES_URL]")?;
    let dir = tempfile::tempdir()?;
    let store: Box<dyn Store> = match std::env::args().nth(2) {
        Some(url) => Box::new(PostgresStore::open(&url, PostgresOptions::default()).await?),
        None => Box::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?),
    };
    let file = std::io::BufReader::new(std::fs::File::open(&path)?);
    let started = Instant::now();
    let (mut request, mut loaded) = (Vec::with_capacity(1000), 0usize);
    let mut per_tenant = std::collections::HashMap::<String, usize>::new();
    let mut newest = i64::MIN;
    let mut lines = file.lines();
    loop {
        let line = lines.next().transpose()?;
        if let Some(line) = &line {
            let serde_json::Value::Object(m) = serde_json::from_str(line)? else {
                return Err(format!("not an object: {line}").into());
            };
            let e = validate_object(0, m, Timestamp::now_micros())
                .map_err(|issues| format!("invalid event: {issues:?}"))?;
            *per_tenant.entry(e.tenant_id.to_string()).or_default() += 1;
            newest = newest.max(e.timestamp.nanos);
            request.push(e);
        }
        if request.len() == 1000 || (line.is_none() && !request.is_empty()) {
            let batch =
                PreparedEvent::new_all(std::mem::take(&mut request), Timestamp::now_micros());
            loaded += store.append(batch).await?.accepted;
        }
        if line.is_none() {
            break;
        }
    }
    println!(
        "loaded {loaded} events in {:.1} s ({} tenants); RSS {} MiB",
        started.elapsed().as_secs_f64(),
        per_tenant.len(),
        status_kib("VmRSS:") / 1024
    );
    let biggest = per_tenant
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(t, _)| t.clone())
        .unwrap_or_default();
    for round in 0..2 {
        println!("round {}", round + 1);
        measure(
            &*store,
            "all tenants, (timestamp, event_id) desc",
            ExportRequest::default(),
        )
        .await;
        measure(
            &*store,
            &format!(
                "tenant {biggest} ({} events), log order",
                per_tenant[&biggest]
            ),
            ExportRequest {
                query: EventQuery {
                    tenant_id: Some(biggest.clone()),
                    ..Default::default()
                },
                log_order: true,
                ..Default::default()
            },
        )
        .await;
        measure(
            &*store,
            &format!("tenant {biggest}, (timestamp, event_id) asc"),
            ExportRequest {
                query: EventQuery {
                    tenant_id: Some(biggest.clone()),
                    order: trailkeep_store::Order::Asc,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
        measure(
            &*store,
            &format!("tenant {biggest}, type prefix billing.*"),
            ExportRequest {
                query: EventQuery {
                    tenant_id: Some(biggest.clone()),
                    event_type: Some(TypeFilter::Prefix("billing.".into())),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
        let hour = 3_600_000_000_000;
        measure(
            &*store,
            &format!("tenant {biggest}, last hour, log order"),
            ExportRequest {
                query: EventQuery {
                    tenant_id: Some(biggest.clone()),
                    since: Some(Timestamp::from_nanos(newest - hour, 9)),
                    until: Some(Timestamp::from_nanos(newest + 1, 9)),
                    ..Default::default()
                },
                log_order: true,
                ..Default::default()
            },
        )
        .await;
    }
    store.shutdown().await;
    Ok(())
}
