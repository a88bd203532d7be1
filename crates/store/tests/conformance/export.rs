//! `Store::export` and `Store::checkpoint_covering`: the cases every backend runs
//! (`export_conformance_cases!`, expanded inside `store_conformance_suite!`), and the embedded
//! store's own (checkpoints read back from the log after a restart, exports across segments).
//!
//! The contract checked: an export holds exactly what paging `query` returns for the same
//! filters and order (or `read_log` filtered, in log order), in batches of at most the batch
//! size and under `EXPORT_BATCH_BYTES` plus one event; a log-order export with a time filter
//! walks only the span of seqs that can match (embedded: counted); it is a snapshot (everything acknowledged before the call, nothing started after it
//! returned, every request all or nothing, nothing twice) even while appends continue and the
//! consumer is slow; dropping the receiver stops it and frees what it held.

use crate::helpers::*;
use serde_json::json;
use std::sync::Arc;
use trailkeep_core::StoredEvent;
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::{
    export_event_bytes, EventQuery, ExportRequest, PreparedEvent, SignedCheckpoint, Store,
    EXPORT_BATCH_BYTES,
};

/// Every event of an export, failing the test on an error or an empty or oversized batch.
pub async fn drain(store: &Arc<dyn Store>, req: ExportRequest) -> Vec<StoredEvent> {
    drain_batches(store, req).await.concat()
}

/// Every batch of an export, failing the test on an error or an empty or oversized batch: more
/// events than the batch size, or [`EXPORT_BATCH_BYTES`] or more before its last event.
pub async fn drain_batches(store: &Arc<dyn Store>, req: ExportRequest) -> Vec<Vec<StoredEvent>> {
    let batch = if req.batch == 0 { 1000 } else { req.batch };
    let mut rx = store.export(req).await.expect("export starts");
    let mut out = Vec::new();
    while let Some(b) = rx.recv().await {
        let b = b.expect("export batch");
        assert!(!b.is_empty(), "an export never sends an empty batch");
        assert!(
            b.len() <= batch,
            "batch of {} for a batch size of {batch}",
            b.len()
        );
        let before_last: usize = b[..b.len() - 1].iter().map(export_event_bytes).sum();
        assert!(
            before_last < EXPORT_BATCH_BYTES,
            "batch of {} events holds {before_last} bytes before its last one",
            b.len()
        );
        out.push(b);
    }
    out
}

/// Bytes of a batch as `EXPORT_BATCH_BYTES` counts them.
pub fn batch_bytes(b: &[StoredEvent]) -> usize {
    b.iter().map(export_event_bytes).sum()
}

/// `n` events of tenant `t` with a payload of about `payload_bytes` each, in requests of 10.
pub fn large_events(t: &str, n: usize, payload_bytes: usize) -> Vec<Vec<PreparedEvent>> {
    let events: Vec<PreparedEvent> = (0..n)
        .map(|i| {
            prep(ev(t, "blob.put", |m| {
                // Varied sizes, 3/4 to all of `payload_bytes`, and different bytes per event.
                let len = payload_bytes - (i * 7919) % (payload_bytes / 4);
                let c = char::from(b'a' + (i % 26) as u8);
                m.insert(
                    "payload".into(),
                    json!({"n": i, "blob": c.to_string().repeat(len)}),
                );
            }))
        })
        .collect();
    events.chunks(10).map(|c| c.to_vec()).collect()
}

/// A tenant's log for the late-time-range exports: 3,000 events on 2026-06-01 from 00:00 to
/// 07:30, then 60 alternating between 10:00–10:30 and 12:00–12:01, then 300 on 06-02, then
/// two late (backfilled) events at 10:45 and 05:00; `u`'s events in the same hours are
/// interleaved with `t`'s late ones. Every timestamp is distinct within a tenant.
pub fn late_range_log(t: &str, u: &str) -> Vec<Vec<PreparedEvent>> {
    let at = |tenant: &str, ty: &str, when: String| {
        prep(ev(tenant, ty, |m| {
            m.insert("timestamp".into(), json!(when));
        }))
    };
    let hms = |secs: usize| format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let mut reqs = Vec::new();
    let early: Vec<PreparedEvent> = (0..3_000)
        .map(|i| at(t, "early.x", format!("2026-06-01T{}Z", hms(i * 9))))
        .collect();
    reqs.extend(early.chunks(500).map(|c| c.to_vec()));
    let late: Vec<PreparedEvent> = (0..60)
        .flat_map(|i| {
            let secs = if i % 2 == 0 {
                10 * 3600 + i * 30
            } else {
                12 * 3600 + i
            };
            let ty = if i % 3 == 0 { "late.a" } else { "late.b" };
            [
                at(t, ty, format!("2026-06-01T{}Z", hms(secs))),
                at(u, ty, format!("2026-06-01T{}Z", hms(secs + 1))),
            ]
        })
        .collect();
    reqs.extend(late.chunks(20).map(|c| c.to_vec()));
    let next_day: Vec<PreparedEvent> = (0..300)
        .map(|i| at(t, "later.x", format!("2026-06-02T{}Z", hms(i * 60))))
        .collect();
    reqs.extend(next_day.chunks(100).map(|c| c.to_vec()));
    reqs.push(vec![at(t, "late.a", "2026-06-01T10:45:00Z".into())]);
    reqs.push(vec![at(t, "early.x", "2026-06-01T05:00:00.5Z".into())]);
    reqs
}

/// `n` events over `tenants`, of mixed types, actors, sessions, payloads and timestamps (many
/// equal), as requests of `per_request` events each mixing the tenants.
pub fn mixed_events(tenants: &[String], n: usize, per_request: usize) -> Vec<Vec<PreparedEvent>> {
    let types = [
        "app.login",
        "app.action",
        "billing.plan.swap",
        "billing.custom",
        "billingx.foo",
    ];
    let actors = ["user:alice", "user:bob", "svc:billing", "admin:root"];
    let events: Vec<PreparedEvent> = (0..n)
        .map(|i| {
            let t = &tenants[(i * 7 + i / 3) % tenants.len()];
            prep(ev(t, types[(i * 3) % types.len()], |m| {
                m.insert("actor".into(), json!(actors[(i / 2) % actors.len()]));
                // Timestamps in scrambled order, 1 in 4 sharing a second with another event.
                let sec = (i * 37) % (n / 4 + 1);
                m.insert(
                    "timestamp".into(),
                    json!(format!(
                        "2026-05-{:02}T{:02}:{:02}:{:02}Z",
                        1 + sec / 1440 % 28,
                        sec / 60 % 24,
                        sec % 60,
                        (i % 4) * 15
                    )),
                );
                if i % 5 == 0 {
                    m.insert(
                        "impersonation_session".into(),
                        json!(format!("imp_{}", i % 3)),
                    );
                }
                let word = if i % 6 == 0 { "Needle" } else { "hay" };
                m.insert("payload".into(), json!({"n": i, "w": word}));
            }))
        })
        .collect();
    events.chunks(per_request).map(|c| c.to_vec()).collect()
}

/// The export cases of the conformance suite, expanded in each backend's module (they use its
/// `make()` and imports).
macro_rules! export_conformance_cases {
    () => {
        #[tokio::test]
        async fn export_holds_what_paging_query_returns() {
            use trailkeep_store::ExportRequest;
            use $crate::export::{drain, mixed_events};
            let (store, _g) = make().await;
            let tenants = [tenant("xa"), tenant("xb"), tenant("xc")];
            for req in mixed_events(&tenants, 900, 45) {
                store.append(req).await.unwrap();
            }
            let t0 = Some(tenants[0].clone());
            let base = EventQuery {
                limit: 97,
                ..Default::default()
            };
            let cases: Vec<(&str, EventQuery)> = vec![
                ("everything", base.clone()),
                (
                    "tenant",
                    EventQuery {
                        tenant_id: t0.clone(),
                        ..base.clone()
                    },
                ),
                (
                    "exact type",
                    EventQuery {
                        event_type: Some(TypeFilter::Exact("app.action".into())),
                        ..base.clone()
                    },
                ),
                (
                    "prefix in tenant",
                    EventQuery {
                        tenant_id: t0.clone(),
                        event_type: Some(TypeFilter::Prefix("billing.".into())),
                        ..base.clone()
                    },
                ),
                (
                    "actor",
                    EventQuery {
                        actor: Some("user:bob".into()),
                        ..base.clone()
                    },
                ),
                (
                    "session",
                    EventQuery {
                        session: Some("imp_1".into()),
                        ..base.clone()
                    },
                ),
                (
                    "since until",
                    EventQuery {
                        since: Some(ts("2026-05-01T00:01:00Z")),
                        until: Some(ts("2026-05-01T00:03:00Z")),
                        ..base.clone()
                    },
                ),
                (
                    "q",
                    EventQuery {
                        q: Some("needle".into()),
                        ..base.clone()
                    },
                ),
                (
                    "q + tenant + type",
                    EventQuery {
                        tenant_id: t0.clone(),
                        q: Some("needle".into()),
                        event_type: Some(TypeFilter::Prefix("app.".into())),
                        ..base.clone()
                    },
                ),
                (
                    "nothing matches",
                    EventQuery {
                        actor: Some("user:nobody".into()),
                        ..base.clone()
                    },
                ),
                (
                    "unknown tenant",
                    EventQuery {
                        tenant_id: Some(tenant("none")),
                        ..base.clone()
                    },
                ),
            ];
            for (name, q) in cases {
                for order in [Order::Desc, Order::Asc] {
                    let q = EventQuery { order, ..q.clone() };
                    let want = walk(&store, q.clone()).await;
                    for batch in [0, 1, 64] {
                        let got = drain(
                            &store,
                            ExportRequest {
                                query: EventQuery {
                                    limit: 5,
                                    ..q.clone()
                                },
                                batch,
                                ..Default::default()
                            },
                        )
                        .await;
                        assert_eq!(ids(&got), ids(&want), "{name}, {order:?}, batch {batch}");
                        assert_eq!(got, want, "{name}, {order:?}, batch {batch}: same events");
                    }
                }
            }
            // The default batch is 1,000 events.
            let mut rx = store.export(ExportRequest::default()).await.unwrap();
            assert_eq!(rx.recv().await.unwrap().unwrap().len(), 900);
            assert!(rx.recv().await.is_none());
        }

        #[tokio::test]
        async fn export_in_log_order_and_up_to_a_tree_size() {
            use trailkeep_core::StoredEvent;
            use trailkeep_store::ExportRequest;
            use $crate::export::{drain, mixed_events};
            let (store, _g) = make().await;
            let tenants = [tenant("la"), tenant("lb")];
            for req in mixed_events(&tenants, 400, 30) {
                store.append(req).await.unwrap();
            }
            let t = tenants[0].clone();
            let log = store.read_log(&t, 0, 10_000).await.unwrap();
            assert!(log.len() > 150);
            let filters: Vec<EventQuery> = vec![
                EventQuery::default(),
                EventQuery {
                    event_type: Some(TypeFilter::Prefix("billing.".into())),
                    ..Default::default()
                },
                EventQuery {
                    actor: Some("user:alice".into()),
                    ..Default::default()
                },
                EventQuery {
                    session: Some("imp_0".into()),
                    ..Default::default()
                },
                EventQuery {
                    since: Some(ts("2026-05-01T00:00:30Z")),
                    until: Some(ts("2026-05-01T00:01:10Z")),
                    ..Default::default()
                },
                EventQuery {
                    q: Some("needle".into()),
                    order: Order::Asc,
                    ..Default::default()
                },
            ];
            for (n, f) in filters.into_iter().enumerate() {
                let q = EventQuery {
                    tenant_id: Some(t.clone()),
                    ..f
                };
                for tree_size in [None, Some(0), Some(1), Some(77), Some(log.len() as u64)] {
                    let end = tree_size.unwrap_or(log.len() as u64);
                    let want: Vec<StoredEvent> = log
                        .iter()
                        .filter(|e| e.seq < end && q.matches(e))
                        .cloned()
                        .collect();
                    let got = drain(
                        &store,
                        ExportRequest {
                            query: q.clone(),
                            log_order: true,
                            tree_size,
                            batch: 16,
                        },
                    )
                    .await;
                    assert_eq!(got, want, "filter {n}, tree size {tree_size:?}, log order");
                    // Up to a tree size in (timestamp, event_id) order: the listing's events
                    // below that seq.
                    let listed: Vec<StoredEvent> = walk(
                        &store,
                        EventQuery {
                            limit: 50,
                            ..q.clone()
                        },
                    )
                    .await
                    .into_iter()
                    .filter(|e| e.seq < end)
                    .collect();
                    let got = drain(
                        &store,
                        ExportRequest {
                            query: q.clone(),
                            tree_size,
                            batch: 16,
                            ..Default::default()
                        },
                    )
                    .await;
                    assert_eq!(
                        got, listed,
                        "filter {n}, tree size {tree_size:?}, key order"
                    );
                }
            }
            // A tenant without events exports nothing, at tree size 0 too.
            let none = tenant("none");
            for tree_size in [None, Some(0)] {
                let got = drain(
                    &store,
                    ExportRequest {
                        query: EventQuery {
                            tenant_id: Some(none.clone()),
                            ..Default::default()
                        },
                        log_order: true,
                        tree_size,
                        batch: 0,
                    },
                )
                .await;
                assert!(got.is_empty());
            }
            // Refused: seq order or a tree size without a tenant, a tree size beyond the log.
            let refused = [
                ExportRequest {
                    log_order: true,
                    ..Default::default()
                },
                ExportRequest {
                    tree_size: Some(1),
                    ..Default::default()
                },
                ExportRequest {
                    query: EventQuery {
                        tenant_id: Some(t.clone()),
                        ..Default::default()
                    },
                    tree_size: Some(log.len() as u64 + 1),
                    ..Default::default()
                },
                ExportRequest {
                    query: EventQuery {
                        tenant_id: Some(none.clone()),
                        ..Default::default()
                    },
                    log_order: true,
                    tree_size: Some(1),
                    ..Default::default()
                },
            ];
            for (n, req) in refused.into_iter().enumerate() {
                match store.export(req).await {
                    Err(StoreError::Invalid(why)) => assert!(!why.is_empty()),
                    Err(e) => panic!("case {n}: expected Invalid, got {e}"),
                    Ok(_) => panic!("case {n}: expected Invalid, got an export"),
                }
            }
        }

        /// Appends run all along while an export is started and drained slowly: the export
        /// holds every event acknowledged before the call, none of a request sent after it
        /// returned, every request whole or not at all, nothing twice.
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn export_is_a_snapshot_while_appends_continue() {
            use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
            use trailkeep_core::StoredEvent;
            use trailkeep_store::ExportRequest;
            use $crate::export::mixed_events;
            let (store, _g) = make().await;
            let tenants = [tenant("sa"), tenant("sb"), tenant("sc")];
            let mut before: HashSet<Uuid> = HashSet::new();
            for req in mixed_events(&tenants, 600, 20) {
                for r in store.append(req).await.unwrap().receipts {
                    before.insert(r.event_id);
                }
            }
            let calling = Arc::new(AtomicBool::new(false));
            let returned = Arc::new(AtomicBool::new(false));
            let stop = Arc::new(AtomicBool::new(false));
            let done = Arc::new(AtomicUsize::new(0));
            // Each request: its ids, whether it was acknowledged before export was called,
            // whether it was sent after export returned.
            let appender = {
                let (store, tenants) = (store.clone(), tenants.clone());
                let (calling, returned, stop) = (calling.clone(), returned.clone(), stop.clone());
                let done = done.clone();
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    while !stop.load(SeqCst) {
                        // One event per tenant, timestamps all over the exported range.
                        let req = mixed_events(&tenants, 3, 3).remove(0);
                        let late = returned.load(SeqCst);
                        let ids: Vec<Uuid> = store
                            .append(req)
                            .await
                            .unwrap()
                            .receipts
                            .iter()
                            .map(|r| r.event_id)
                            .collect();
                        let early = !calling.load(SeqCst);
                        sent.push((ids, early, late));
                        done.fetch_add(1, SeqCst);
                        tokio::time::sleep(std::time::Duration::from_micros(300)).await;
                    }
                    sent
                })
            };
            // A slow consumer: after each batch it waits for another append to land.
            let append_lands = || async {
                let seen = done.load(SeqCst);
                for _ in 0..5000 {
                    if done.load(SeqCst) > seen {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
                panic!("the appender stopped");
            };
            append_lands().await;
            calling.store(true, SeqCst);
            let mut all = store
                .export(ExportRequest {
                    batch: 25,
                    ..Default::default()
                })
                .await
                .unwrap();
            returned.store(true, SeqCst);
            let mut log = store
                .export(ExportRequest {
                    query: EventQuery {
                        tenant_id: Some(tenants[1].clone()),
                        ..Default::default()
                    },
                    log_order: true,
                    batch: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            let mut got: Vec<StoredEvent> = Vec::new();
            while let Some(b) = all.recv().await {
                got.extend(b.unwrap());
                append_lands().await;
            }
            let mut in_log: Vec<StoredEvent> = Vec::new();
            while let Some(b) = log.recv().await {
                in_log.extend(b.unwrap());
                append_lands().await;
            }
            stop.store(true, SeqCst);
            let sent = appender.await.unwrap();
            assert!(
                sent.iter().any(|(_, early, _)| *early),
                "some appends acknowledged before the call"
            );
            let late = sent.iter().filter(|(_, _, late)| *late).count();
            assert!(late >= 24, "appends went on during the export ({late})");

            let exported: HashSet<Uuid> = got.iter().map(|e| e.event_id).collect();
            assert_eq!(exported.len(), got.len(), "no event twice");
            for id in &before {
                assert!(exported.contains(id), "acknowledged before the call: {id}");
            }
            let mut known = before.clone();
            for (ids, early, late) in &sent {
                known.extend(ids.iter().copied());
                let n = ids.iter().filter(|id| exported.contains(id)).count();
                assert!(
                    n == 0 || n == ids.len(),
                    "a request is in an export whole or not at all"
                );
                if *early {
                    assert_eq!(n, ids.len(), "acknowledged before the call, so exported");
                }
                if *late {
                    assert_eq!(n, 0, "sent after the export returned, so not exported");
                }
            }
            assert!(
                exported.iter().all(|id| known.contains(id)),
                "nothing but appended events"
            );
            // The listing's order, and the tenant's log order with no gap in seqs.
            for w in got.windows(2) {
                assert!(
                    (w[0].timestamp.nanos, w[0].event_id) > (w[1].timestamp.nanos, w[1].event_id)
                );
            }
            let seqs: Vec<u64> = in_log.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (0..in_log.len() as u64).collect::<Vec<_>>());
            assert!(in_log.iter().all(|e| e.tenant_id == tenants[1]));
            // Both exports come from snapshots taken a moment apart: the tenant's export holds
            // at least what the all-tenant export holds of it.
            let of_tenant = got.iter().filter(|e| e.tenant_id == tenants[1]).count();
            assert!(in_log.len() >= of_tenant);
        }

        /// A consumer that goes away stops its export: what it held is freed (PostgreSQL: the
        /// connection goes back to the pool, so more abandoned exports than connections still
        /// leave room for the next one), and later exports and reads work.
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn dropping_the_receiver_stops_the_export() {
            use trailkeep_store::ExportRequest;
            use $crate::export::{drain, mixed_events};
            let (store, _g) = make().await;
            let tenants = [tenant("da"), tenant("db")];
            for req in mixed_events(&tenants, 200, 50) {
                store.append(req).await.unwrap();
            }
            for round in 0..40 {
                let mut rx = store
                    .export(ExportRequest {
                        batch: 1,
                        ..Default::default()
                    })
                    .await
                    .unwrap_or_else(|e| panic!("abandoned export {round}: {e}"));
                assert_eq!(rx.recv().await.unwrap().unwrap().len(), 1);
                drop(rx);
            }
            let started = std::time::Instant::now();
            let all = drain(&store, ExportRequest::default()).await;
            assert_eq!(all.len(), 200);
            assert!(
                started.elapsed() < std::time::Duration::from_secs(4),
                "no wait for a connection"
            );
            let page = store
                .query(EventQuery {
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap();
            assert_eq!(page.events.len(), 10);
        }

        /// Events of ~200 KiB: batches end at `EXPORT_BATCH_BYTES` (plus one event), not at
        /// 1,000 events (~200 MiB), in both orders, and the export still equals the listing.
        #[tokio::test]
        async fn export_batches_are_capped_by_bytes() {
            use trailkeep_core::StoredEvent;
            use trailkeep_store::{ExportRequest, EXPORT_BATCH_BYTES};
            use $crate::export::{batch_bytes, drain_batches, large_events};
            let (store, _g) = make().await;
            let t = tenant("big");
            for req in large_events(&t, 200, 200 * 1024) {
                store.append(req).await.unwrap();
            }
            let q = EventQuery {
                tenant_id: Some(t.clone()),
                ..Default::default()
            };
            let listed = walk(
                &store,
                EventQuery {
                    limit: 50,
                    ..q.clone()
                },
            )
            .await;
            let log = store.read_log(&t, 0, 1_000).await.unwrap();
            assert_eq!(listed.len(), 200);
            for log_order in [false, true] {
                let batches = drain_batches(
                    &store,
                    ExportRequest {
                        query: q.clone(),
                        log_order,
                        ..Default::default()
                    },
                )
                .await;
                // ~35 MiB in all: about 9 batches of ~20 events, each but the last full.
                assert!(batches.len() >= 8, "{} batches", batches.len());
                for b in &batches[..batches.len() - 1] {
                    assert!(batch_bytes(b) >= EXPORT_BATCH_BYTES, "a batch ended early");
                }
                let got: Vec<StoredEvent> = batches.concat();
                let want = if log_order { &log } else { &listed };
                assert_eq!(&got, want, "log order: {log_order}");
            }
            // A batch size that comes first still decides.
            let batches = drain_batches(
                &store,
                ExportRequest {
                    query: q.clone(),
                    batch: 7,
                    ..Default::default()
                },
            )
            .await;
            assert!(batches[..batches.len() - 1].iter().all(|b| b.len() == 7));
            assert_eq!(batches.concat(), listed);
        }

        /// Log order with a narrow late time range (an evidence bundle of one hour) over a
        /// tenant with many earlier events: exactly the events in the range, in seq order,
        /// including one appended late with an earlier timestamp; up to a tree size too.
        #[tokio::test]
        async fn log_order_export_of_a_late_time_range() {
            use trailkeep_core::StoredEvent;
            use trailkeep_store::ExportRequest;
            use $crate::export::{drain, late_range_log};
            let (store, _g) = make().await;
            let (t, u) = (tenant("lr"), tenant("lru"));
            for req in late_range_log(&t, &u) {
                store.append(req).await.unwrap();
            }
            let log = store.read_log(&t, 0, 10_000).await.unwrap();
            assert_eq!(log.len(), 3_362);
            let backfill = log.len() as u64 - 2; // 10:45, appended after 06-02
            let range = |since: Option<&str>, until: Option<&str>| EventQuery {
                tenant_id: Some(t.clone()),
                since: since.map(ts),
                until: until.map(ts),
                ..Default::default()
            };
            let hour = range(Some("2026-06-01T10:00:00Z"), Some("2026-06-01T11:00:00Z"));
            let cases: Vec<(&str, EventQuery, usize)> = vec![
                ("one late hour", hour.clone(), 31),
                (
                    "one late hour, one type",
                    EventQuery {
                        event_type: Some(TypeFilter::Exact("late.a".into())),
                        ..hour.clone()
                    },
                    11,
                ),
                ("since only", range(Some("2026-06-01T10:00:00Z"), None), 361),
                ("until only", range(None, Some("2026-06-01T00:10:00Z")), 67),
                (
                    "early hour with a backfill at the end",
                    range(Some("2026-06-01T05:00:00Z"), Some("2026-06-01T05:00:01Z")),
                    2,
                ),
                (
                    "nothing in the range",
                    range(Some("2026-06-01T08:00:00Z"), Some("2026-06-01T09:00:00Z")),
                    0,
                ),
                (
                    "since after until",
                    range(Some("2026-06-01T11:00:00Z"), Some("2026-06-01T10:00:00Z")),
                    0,
                ),
            ];
            for (name, q, count) in cases {
                for tree_size in [None, Some(backfill), Some(3_010)] {
                    let end = tree_size.unwrap_or(log.len() as u64);
                    let want: Vec<StoredEvent> = log
                        .iter()
                        .filter(|e| e.seq < end && q.matches(e))
                        .cloned()
                        .collect();
                    if tree_size.is_none() {
                        assert_eq!(want.len(), count, "{name}: the test's own count");
                    }
                    for batch in [0, 4] {
                        let got = drain(
                            &store,
                            ExportRequest {
                                query: q.clone(),
                                log_order: true,
                                tree_size,
                                batch,
                            },
                        )
                        .await;
                        assert!(
                            got.windows(2).all(|w| w[0].seq < w[1].seq),
                            "{name}: seq order"
                        );
                        assert_eq!(got, want, "{name}, tree size {tree_size:?}, batch {batch}");
                    }
                }
            }
        }

        #[tokio::test]
        async fn checkpoint_covering_is_the_oldest_that_covers_the_size() {
            use trailkeep_store::SignedCheckpoint;
            let (store, _g) = make().await;
            let t = tenant("cov");
            assert_eq!(store.checkpoint_covering(&t, 0).await.unwrap(), None);
            for _ in 0..10 {
                store
                    .append(vec![prep(ev(&t, "cov.x", |_| {}))])
                    .await
                    .unwrap();
            }
            let mut cps = Vec::new();
            for size in [2u64, 5, 9] {
                let root = store.tree_root(&t, size).await.unwrap();
                let cp = SignedCheckpoint {
                    size,
                    root,
                    note: format!("size {size}\n"),
                };
                store.put_checkpoint(&t, cp.clone()).await.unwrap();
                cps.push(cp);
            }
            let want = [
                (0, Some(0)),
                (1, Some(0)),
                (2, Some(0)),
                (3, Some(1)),
                (5, Some(1)),
                (6, Some(2)),
                (9, Some(2)),
                (10, None),
                (u64::MAX, None),
            ];
            for (size, i) in want {
                let got = store.checkpoint_covering(&t, size).await.unwrap();
                assert_eq!(got, i.map(|i: usize| cps[i].clone()), "covering {size}");
            }
            assert_eq!(
                store.latest_checkpoint(&t).await.unwrap(),
                Some(cps[2].clone())
            );
            assert_eq!(
                store
                    .checkpoint_covering(&tenant("cov_other"), 0)
                    .await
                    .unwrap(),
                None
            );
        }
    };
}

// ---------------------------------------------------------------------------------------------
// Embedded only

/// Older checkpoints are kept in memory only as places in the log: after a restart (memory
/// rebuilt from the log) each is read back exactly as stored, and one of a second tenant in
/// between does not get in the way.
#[tokio::test]
async fn embedded_checkpoints_are_read_back_from_the_log_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (t, u) = (tenant("cpa"), tenant("cpb"));
    let opts = || EmbeddedOptions {
        segment_bytes: 4096,
        ..EmbeddedOptions::default()
    };
    let mut cps = Vec::new();
    {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), opts()).unwrap());
        for round in 0..12u64 {
            let batch: Vec<_> = (0..3).map(|_| prep(ev(&t, "cp.x", |_| {}))).collect();
            store.append(batch).await.unwrap();
            store
                .append(vec![prep(ev(&u, "cp.y", |_| {}))])
                .await
                .unwrap();
            let size = 3 * (round + 1);
            let root = store.tree_root(&t, size).await.unwrap();
            let cp = SignedCheckpoint {
                size,
                root,
                note: format!("trailkeep test\n{size}\n{}\n", "n".repeat(round as usize)),
            };
            store.put_checkpoint(&t, cp.clone()).await.unwrap();
            let root_u = store.tree_root(&u, round + 1).await.unwrap();
            store
                .put_checkpoint(
                    &u,
                    SignedCheckpoint {
                        size: round + 1,
                        root: root_u,
                        note: "other\n".into(),
                    },
                )
                .await
                .unwrap();
            cps.push(cp);
        }
        store.shutdown().await;
    }
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), opts()).unwrap());
    for size in 0..=37u64 {
        let want = cps.iter().find(|c| c.size >= size).cloned();
        assert_eq!(
            store.checkpoint_covering(&t, size).await.unwrap(),
            want,
            "covering {size}"
        );
    }
    assert_eq!(
        store
            .checkpoint_covering(&u, 5)
            .await
            .unwrap()
            .map(|c| c.size),
        Some(5)
    );
}

/// An export reads across segment files and is the same after a restart.
#[tokio::test]
async fn embedded_export_spans_segments_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || EmbeddedOptions {
        segment_bytes: 16 * 1024,
        ..EmbeddedOptions::default()
    };
    let tenants = [tenant("ga"), tenant("gb")];
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), opts()).unwrap());
    for req in mixed_events(&tenants, 1500, 25) {
        store.append(req).await.unwrap();
    }
    let req = || ExportRequest {
        batch: 128,
        ..Default::default()
    };
    let first = drain(&store, req()).await;
    assert_eq!(first.len(), 1500);
    let listed = walk(
        &store,
        EventQuery {
            limit: 300,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(first, listed);
    store.shutdown().await;
    drop(store);
    assert!(dir.path().join("log").join("00000003.seg").exists());
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), opts()).unwrap());
    assert_eq!(drain(&store, req()).await, first);
}

/// Filters that reject nearly everything: a page gives up after its scan or read budget
/// (65,536 index entries, or 2,048 events read beyond its batch) and the next one goes on
/// from there, so the export still holds exactly the matching events, in order.
#[tokio::test]
async fn embedded_export_goes_on_past_pages_that_found_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let t = tenant("sparse");
    let n = 70_000usize;
    for start in (0..n).step_by(5_000) {
        let batch: Vec<PreparedEvent> = (start..start + 5_000)
            .map(|i| {
                // Gaps wider than a page's budgets.
                let rare = [100, n - 100, n - 1].contains(&i);
                prep(ev(&t, if rare { "rare.x" } else { "bulk.x" }, |m| {
                    m.insert(
                        "payload".into(),
                        json!({"w": if rare { "needle" } else { "hay" }}),
                    );
                }))
            })
            .collect();
        store.append(batch).await.unwrap();
    }
    let rare: Vec<StoredEvent> = store
        .read_log(&t, 0, n)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == "rare.x")
        .collect();
    assert_eq!(rare.len(), 3);
    let by_type = EventQuery {
        tenant_id: Some(t.clone()),
        event_type: Some(trailkeep_store::TypeFilter::Exact("rare.x".into())),
        ..Default::default()
    };
    let by_q = EventQuery {
        tenant_id: Some(t.clone()),
        q: Some("needle".into()),
        ..Default::default()
    };
    // Log order examines every seq: the type is rejected in memory, 65,536 at most a page.
    let got = drain(
        &store,
        ExportRequest {
            query: by_type.clone(),
            log_order: true,
            batch: 1,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(got, rare);
    // `q` is checked on events read from the log: 2,049 at most a page for a batch of 1.
    for log_order in [true, false] {
        let got = drain(
            &store,
            ExportRequest {
                query: by_q.clone(),
                log_order,
                batch: 1,
                ..Default::default()
            },
        )
        .await;
        let mut want = rare.clone();
        if !log_order {
            want.sort_by_key(|e| std::cmp::Reverse((e.timestamp.nanos, e.event_id)));
        }
        assert_eq!(got, want, "log order: {log_order}");
    }
}

/// A log-order export with a late time range examines only the seqs between the first and the
/// last event in the range (found from the time index), not the tenant's 3,000 earlier ones.
#[tokio::test]
async fn embedded_log_order_export_walks_only_the_span_of_its_time_range() {
    let dir = tempfile::tempdir().unwrap();
    let embedded = Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap());
    let store: Arc<dyn Store> = embedded.clone();
    let (t, u) = (tenant("sp"), tenant("spu"));
    for req in late_range_log(&t, &u) {
        store.append(req).await.unwrap();
    }
    let log = store.read_log(&t, 0, 10_000).await.unwrap();
    let q = EventQuery {
        tenant_id: Some(t.clone()),
        since: Some(ts("2026-06-01T10:00:00Z")),
        until: Some(ts("2026-06-01T11:00:00Z")),
        ..Default::default()
    };
    let want: Vec<StoredEvent> = log.iter().filter(|e| q.matches(e)).cloned().collect();
    let (first, last) = (want[0].seq, want[want.len() - 1].seq);
    assert_eq!(
        (first, last),
        (3_000, 3_360),
        "the range spans the late events"
    );
    for (tree_size, span) in [(None, last - first + 1), (Some(3_100), 59)] {
        let before = embedded.export_log_seqs_examined();
        let got = drain(
            &store,
            ExportRequest {
                query: q.clone(),
                log_order: true,
                tree_size,
                batch: 0,
            },
        )
        .await;
        let end = tree_size.unwrap_or(u64::MAX);
        let expected: Vec<&StoredEvent> = want.iter().filter(|e| e.seq < end).collect();
        assert_eq!(got.iter().collect::<Vec<_>>(), expected);
        let examined = embedded.export_log_seqs_examined() - before;
        assert_eq!(examined, span, "tree size {tree_size:?}: seqs examined");
    }
    // Without a time filter every seq is examined (what the counter counts).
    let before = embedded.export_log_seqs_examined();
    let all = drain(
        &store,
        ExportRequest {
            query: EventQuery {
                tenant_id: Some(t.clone()),
                ..Default::default()
            },
            log_order: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len(), log.len());
    assert_eq!(
        embedded.export_log_seqs_examined() - before,
        log.len() as u64
    );
}
