//! Delivery: `Store::read_log_matching`, delivery cursors, leases and control locks. The cases
//! every backend runs (`delivery_conformance_cases!`, expanded inside
//! `store_conformance_suite!`), then each backend's own: cursors surviving a reopen (embedded)
//! or seen by a second store on the same database (PostgreSQL), leases and control locks
//! across two PostgreSQL stores, and a bounded wait for a control lock.
//!
//! The contract checked: a filtered read returns the matching events of at most
//! `LOG_SCAN_WINDOW` seqs in seq order, exactly as `read_log` returns them; `next_seq` is one
//! past the last seq looked at (the last returned one + 1 at the limit, else the window's end
//! or the log's), so a reader that follows it sees every matching event once, even while
//! appends go on; a cursor save sets only the tenants it names, durably; a holder keeps the
//! lease it renews; one tenant's control lock has one holder at a time, other tenants' locks
//! are independent.

use crate::helpers::*;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailkeep_core::StoredEvent;
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::postgres::{PostgresOptions, PostgresStore};
use trailkeep_store::{PreparedEvent, Store, StoreError, TypeFilter, LOG_SCAN_WINDOW};

/// Appends one event per type, in order, in requests of at most 1,000.
pub async fn append_types(store: &Arc<dyn Store>, t: &str, types: &[&str]) {
    let events: Vec<PreparedEvent> = types.iter().map(|ty| prep(ev(t, ty, |_| {}))).collect();
    for chunk in events.chunks(1000) {
        let out = store.append(chunk.to_vec()).await.expect("append");
        assert_eq!(out.accepted, chunk.len());
    }
}

pub fn exact(t: &str) -> TypeFilter {
    TypeFilter::Exact(t.into())
}

pub fn prefix(p: &str) -> TypeFilter {
    TypeFilter::Prefix(p.into())
}

pub fn seqs(events: &[StoredEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

/// Every matching event from `from` on, following `next_seq` with reads of `limit`, checking
/// that each read moves forward and returns seqs in order within what it looked at.
pub async fn follow(
    store: &Arc<dyn Store>,
    t: &str,
    from: u64,
    types: &[TypeFilter],
    limit: usize,
) -> (Vec<StoredEvent>, u64) {
    let size = store.tree_size(t).await.unwrap();
    let mut at = from;
    let mut out: Vec<StoredEvent> = Vec::new();
    while at < size {
        let s = store
            .read_log_matching(t, at, types, limit)
            .await
            .expect("read_log_matching");
        assert!(s.events.len() <= limit);
        assert!(s.next_seq > at, "no progress from {at}");
        assert!(s.next_seq <= at + LOG_SCAN_WINDOW);
        for e in &s.events {
            assert!(
                e.seq >= at && e.seq < s.next_seq,
                "seq {} outside {at}..{}",
                e.seq,
                s.next_seq
            );
        }
        assert!(seqs(&s.events).windows(2).all(|w| w[0] < w[1]));
        out.extend(s.events);
        at = s.next_seq;
    }
    (out, at)
}

/// The delivery cases of the conformance suite, expanded in each backend's module (they use
/// its `make()` and imports).
macro_rules! delivery_conformance_cases {
    () => {
        #[tokio::test]
        async fn delivery_read_log_matching_filters_exact_types_and_prefixes() {
            use $crate::delivery::{append_types, exact, prefix, seqs};
            let (store, _g) = make().await;
            let t = tenant("dm");
            let types = [
                "bill.charge", // 0
                "bill.refund", // 1
                "billx.y",     // 2
                "a_b.c",       // 3
                "axb.c",       // 4
                "bill.charge", // 5
                "other.thing", // 6
                "a_b.d.e",     // 7
            ];
            append_types(&store, &t, &types).await;
            let all = store.read_log(&t, 0, 100).await.unwrap();
            let cases: Vec<(&str, Vec<TypeFilter>, Vec<u64>)> = vec![
                ("no filter", vec![], (0..8).collect()),
                ("exact", vec![exact("bill.charge")], vec![0, 5]),
                (
                    "two exact",
                    vec![exact("bill.refund"), exact("other.thing")],
                    vec![1, 6],
                ),
                (
                    "prefix stops at its dot",
                    vec![prefix("bill.")],
                    vec![0, 1, 5],
                ),
                (
                    "_ in a prefix is no wildcard",
                    vec![prefix("a_b.")],
                    vec![3, 7],
                ),
                (
                    "exact and prefix",
                    vec![exact("axb.c"), prefix("bill.")],
                    vec![0, 1, 4, 5],
                ),
                ("unknown type", vec![exact("nope.x")], vec![]),
                ("exact is not a prefix", vec![exact("bill")], vec![]),
            ];
            for (what, filter, want) in cases {
                let s = store.read_log_matching(&t, 0, &filter, 100).await.unwrap();
                assert_eq!(seqs(&s.events), want, "{what}");
                assert_eq!(s.next_seq, 8, "{what}: the whole log was looked at");
                for e in &s.events {
                    assert_eq!(e, &all[e.seq as usize], "{what}: as read_log returns it");
                }
            }
            // From the middle.
            let s = store
                .read_log_matching(&t, 2, &[prefix("bill.")], 100)
                .await
                .unwrap();
            assert_eq!(seqs(&s.events), vec![5]);
            assert_eq!(s.next_seq, 8);
            // Other tenants' events are not in it.
            let u = tenant("dm-other");
            append_types(&store, &u, &["bill.charge"]).await;
            let s = store
                .read_log_matching(&t, 0, &[exact("bill.charge")], 100)
                .await
                .unwrap();
            assert!(s.events.iter().all(|e| e.tenant_id == t));
        }

        #[tokio::test]
        async fn delivery_read_log_matching_next_seq_at_the_limit_and_at_the_end() {
            use $crate::delivery::{append_types, exact, follow, seqs};
            let (store, _g) = make().await;
            let t = tenant("dn");
            // want at 0, 3, 4, 8; the log ends with two that do not match.
            let types = [
                "want.x", "skip.x", "skip.x", "want.x", "want.x", "skip.x", "skip.x", "skip.x",
                "want.x", "skip.x", "skip.x",
            ];
            append_types(&store, &t, &types).await;
            let want = [exact("want.x")];
            // At the limit: one past the last returned seq.
            let s = store.read_log_matching(&t, 0, &want, 1).await.unwrap();
            assert_eq!((seqs(&s.events), s.next_seq), (vec![0], 1));
            let s = store.read_log_matching(&t, 1, &want, 2).await.unwrap();
            assert_eq!((seqs(&s.events), s.next_seq), (vec![3, 4], 5));
            // Below the limit: the end of the log, past the non-matching tail.
            let s = store.read_log_matching(&t, 5, &want, 2).await.unwrap();
            assert_eq!((seqs(&s.events), s.next_seq), (vec![8], 11));
            let s = store.read_log_matching(&t, 9, &want, 2).await.unwrap();
            assert_eq!((seqs(&s.events), s.next_seq), (vec![], 11));
            // The limit reached on the very last match: the next read finds nothing more.
            let s = store.read_log_matching(&t, 5, &want, 1).await.unwrap();
            assert_eq!((seqs(&s.events), s.next_seq), (vec![8], 9));
            // At and past the end, and an unknown tenant: nothing, next_seq = from.
            for from in [11, 12, 1_000_000] {
                let s = store.read_log_matching(&t, from, &want, 5).await.unwrap();
                assert!(s.events.is_empty());
                assert_eq!(s.next_seq, from);
            }
            let s = store
                .read_log_matching(&tenant("dn-none"), 7, &[], 5)
                .await
                .unwrap();
            assert!(s.events.is_empty());
            assert_eq!(s.next_seq, 7);
            // Followed with every limit, the reads see each match once.
            for limit in 1..=5 {
                let (got, end) = follow(&store, &t, 0, &want, limit).await;
                assert_eq!(seqs(&got), vec![0, 3, 4, 8], "limit {limit}");
                assert_eq!(end, 11);
            }
        }

        #[tokio::test]
        async fn delivery_read_log_matching_looks_at_one_window_at_most() {
            use trailkeep_store::LOG_SCAN_WINDOW;
            use $crate::delivery::{append_types, exact, follow, seqs};
            let (store, _g) = make().await;
            let t = tenant("dw");
            let w = LOG_SCAN_WINDOW as usize;
            // A window of events that do not match, then three that do.
            let mut types = vec!["skip.x"; w];
            types.extend(["want.x", "skip.x", "want.x", "want.x"]);
            append_types(&store, &t, &types).await;
            let want = [exact("want.x")];
            let s = store.read_log_matching(&t, 0, &want, 10).await.unwrap();
            assert!(s.events.is_empty());
            assert_eq!(s.next_seq, LOG_SCAN_WINDOW, "one window looked at");
            let s = store
                .read_log_matching(&t, s.next_seq, &want, 10)
                .await
                .unwrap();
            let w = LOG_SCAN_WINDOW;
            assert_eq!(seqs(&s.events), vec![w, w + 2, w + 3]);
            assert_eq!(s.next_seq, w + 4);
            // A window that starts inside the log ends one window later: from 2, seqs
            // 2..w + 2 are looked at (w + 2 itself is not).
            let s = store.read_log_matching(&t, 2, &want, 10).await.unwrap();
            assert_eq!(seqs(&s.events), vec![w]);
            assert_eq!(s.next_seq, w + 2);
            let s = store.read_log_matching(&t, 3, &want, 10).await.unwrap();
            assert_eq!(seqs(&s.events), vec![w, w + 2]);
            assert_eq!(s.next_seq, w + 3);
            // Without a filter the limit stops it first.
            let s = store.read_log_matching(&t, 100, &[], 3).await.unwrap();
            assert_eq!((seqs(&s.events), s.next_seq), (vec![100, 101, 102], 103));
            let (got, end) = follow(&store, &t, 0, &want, 2).await;
            assert_eq!(seqs(&got), vec![w, w + 2, w + 3]);
            assert_eq!(end, w + 4);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn delivery_reading_while_appending_sees_every_match_once() {
            use $crate::delivery::{exact, prefix, seqs};
            let (store, _g) = make().await;
            let t = tenant("dc");
            let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let writer = {
                let (store, t, done) = (store.clone(), t.clone(), done.clone());
                tokio::spawn(async move {
                    for r in 0..60usize {
                        let batch: Vec<PreparedEvent> = (0..(1 + r % 17))
                            .map(|i| {
                                let ty = match (r + i) % 5 {
                                    0 => "want.a",
                                    1 => "want.b",
                                    2 => "other.a",
                                    _ => "skip.x",
                                };
                                prep(ev(&t, ty, |_| {}))
                            })
                            .collect();
                        store.append(batch).await.unwrap();
                        tokio::task::yield_now().await;
                    }
                    done.store(true, std::sync::atomic::Ordering::SeqCst);
                })
            };
            let filter = [prefix("want."), exact("other.a")];
            let mut got = Vec::new();
            let mut at = 0u64;
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let s = store.read_log_matching(&t, at, &filter, 3).await.unwrap();
                assert!(s.next_seq >= at);
                got.extend(s.events);
                at = s.next_seq;
                if finished && at == store.tree_size(&t).await.unwrap() {
                    break;
                }
            }
            writer.await.unwrap();
            let want: Vec<u64> = store
                .read_log(&t, 0, 100_000)
                .await
                .unwrap()
                .iter()
                .filter(|e| e.event_type.starts_with("want.") || e.event_type == "other.a")
                .map(|e| e.seq)
                .collect();
            assert!(!want.is_empty());
            assert_eq!(seqs(&got), want, "every match once, in order");
        }

        #[tokio::test]
        async fn delivery_bad_inputs_are_invalid() {
            use std::time::Duration;
            let (store, _g) = make().await;
            let t = tenant("dbad");
            store
                .append(vec![prep(ev(&t, "x.y", |_| {}))])
                .await
                .unwrap();
            let invalid = |r: Result<(), StoreError>, what: &str| match r {
                Err(StoreError::Invalid(m)) => assert!(!m.is_empty(), "{what}"),
                other => panic!("{what}: expected Invalid, got {other:?}"),
            };
            invalid(
                store.read_log_matching(&t, 0, &[], 0).await.map(|_| ()),
                "limit 0",
            );
            invalid(
                store
                    .read_log_matching("nobody", 0, &[], 0)
                    .await
                    .map(|_| ()),
                "limit 0, unknown tenant",
            );
            invalid(store.load_cursor("").await.map(|_| ()), "load, empty name");
            invalid(
                store.save_cursor("", &[(t.clone(), 1)]).await,
                "save, empty name",
            );
            invalid(store.save_cursor("", &[]).await, "save nothing, empty name");
            invalid(
                store.save_cursor("c", &[(String::new(), 1)]).await,
                "save, empty tenant",
            );
            invalid(
                store.save_cursor("c", &[(t.clone(), u64::MAX)]).await,
                "save, position beyond any log",
            );
            invalid(
                store.load_cursor(&"n".repeat(1000)).await.map(|_| ()),
                "load, long name",
            );
            invalid(
                store
                    .acquire_lease("l", "h", Duration::ZERO)
                    .await
                    .map(|_| ()),
                "lease, ttl 0",
            );
            invalid(
                store
                    .acquire_lease("", "h", Duration::from_secs(1))
                    .await
                    .map(|_| ()),
                "lease, empty name",
            );
            invalid(
                store
                    .acquire_lease("l", "", Duration::from_secs(1))
                    .await
                    .map(|_| ()),
                "lease, empty holder",
            );
            invalid(
                store
                    .acquire_lease("l", "h", Duration::from_secs(400 * 86_400))
                    .await
                    .map(|_| ()),
                "lease, ttl over a day",
            );
            // Nothing was saved by the refused calls.
            assert!(store.load_cursor("c").await.unwrap().is_empty());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn delivery_cursors_merge_saves_and_stay_apart() {
            let (store, _g) = make().await;
            let name = format!("alerts/ops-chat-{}", uuid());
            let other = format!("sinks/gcl-{}", uuid());
            assert!(
                store.load_cursor(&name).await.unwrap().is_empty(),
                "never saved"
            );
            store
                .save_cursor(&name, &[("a".into(), 1), ("b".into(), 2)])
                .await
                .unwrap();
            store
                .save_cursor(&name, &[("b".into(), 5), ("c".into(), 7)])
                .await
                .unwrap();
            store.save_cursor(&name, &[]).await.unwrap();
            // A position may also move back (a destination replayed on purpose).
            store.save_cursor(&name, &[("a".into(), 0)]).await.unwrap();
            let want = BTreeMap::from([("a".to_string(), 0), ("b".into(), 5), ("c".into(), 7)]);
            assert_eq!(store.load_cursor(&name).await.unwrap(), want);
            assert!(
                store.load_cursor(&other).await.unwrap().is_empty(),
                "cursors are apart"
            );
            // A tenant given twice: the last position wins.
            store
                .save_cursor(&other, &[("x".into(), 3), ("x".into(), 9)])
                .await
                .unwrap();
            assert_eq!(
                store.load_cursor(&other).await.unwrap(),
                BTreeMap::from([("x".to_string(), 9)])
            );
            assert_eq!(store.load_cursor(&name).await.unwrap(), want);
            // Names that escape to the same characters stay apart.
            let a = format!("x/{}", uuid());
            let b = a.replace('/', "%2F");
            store.save_cursor(&a, &[("t".into(), 1)]).await.unwrap();
            store.save_cursor(&b, &[("t".into(), 2)]).await.unwrap();
            assert_eq!(store.load_cursor(&a).await.unwrap().get("t"), Some(&1));
            assert_eq!(store.load_cursor(&b).await.unwrap().get("t"), Some(&2));
            // Concurrent saves of one cursor, each for its own tenants, lose nothing.
            let shared = format!("alerts/many-{}", uuid());
            let mut tasks = Vec::new();
            for task in 0..8u64 {
                let (store, shared) = (store.clone(), shared.clone());
                tasks.push(tokio::spawn(async move {
                    for round in 0..10u64 {
                        store
                            .save_cursor(
                                &shared,
                                &[
                                    (format!("t{task}-{round}"), round),
                                    (format!("t{task}"), round),
                                ],
                            )
                            .await
                            .unwrap();
                    }
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
            let got = store.load_cursor(&shared).await.unwrap();
            assert_eq!(got.len(), 8 * 11);
            for task in 0..8u64 {
                assert_eq!(got.get(&format!("t{task}")), Some(&9));
                for round in 0..10u64 {
                    assert_eq!(got.get(&format!("t{task}-{round}")), Some(&round));
                }
            }
        }

        #[tokio::test]
        async fn delivery_a_holder_keeps_the_lease_it_renews() {
            use std::time::Duration;
            let (store, _g) = make().await;
            let name = format!("alerts/lease-{}", uuid());
            assert!(store
                .acquire_lease(&name, "server-a", Duration::from_secs(30))
                .await
                .unwrap());
            for _ in 0..3 {
                assert!(store
                    .acquire_lease(&name, "server-a", Duration::from_secs(30))
                    .await
                    .unwrap());
            }
            // A lease of another name is independent.
            let other = format!("sinks/lease-{}", uuid());
            assert!(store
                .acquire_lease(&other, "server-b", Duration::from_secs(30))
                .await
                .unwrap());
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn delivery_control_lock_serialises_one_tenant_only() {
            use std::sync::atomic::{AtomicBool, Ordering};
            use std::time::{Duration, Instant};
            let (store, _g) = make().await;
            let (t, u) = (tenant("ctl"), tenant("ctl-other"));
            let first = store.control_lock(std::slice::from_ref(&t)).await.unwrap();
            let released = Arc::new(AtomicBool::new(false));
            let waiter = {
                let (store, t, released) = (store.clone(), t.clone(), released.clone());
                tokio::spawn(async move {
                    let started = Instant::now();
                    let g = store.control_lock(std::slice::from_ref(&t)).await.unwrap();
                    let was_released = released.load(Ordering::SeqCst);
                    drop(g);
                    (was_released, started.elapsed())
                })
            };
            // Another tenant's lock is free while this one is held.
            let other = tokio::time::timeout(
                Duration::from_secs(5),
                store.control_lock(std::slice::from_ref(&u)),
            )
            .await
            .expect("another tenant's lock does not wait")
            .unwrap();
            drop(other);
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                !waiter.is_finished(),
                "the second holder waits for the first"
            );
            released.store(true, Ordering::SeqCst);
            drop(first);
            let (was_released, waited) = tokio::time::timeout(Duration::from_secs(10), waiter)
                .await
                .expect("the second holder gets the lock once the first drops it")
                .unwrap();
            assert!(was_released, "acquired only after the first guard dropped");
            assert!(waited >= Duration::from_millis(250), "waited {waited:?}");
            // Taken and dropped again and again: nothing stays held.
            for _ in 0..20 {
                let g = tokio::time::timeout(
                    Duration::from_secs(5),
                    store.control_lock(std::slice::from_ref(&t)),
                )
                .await
                .expect("a dropped lock is free again")
                .unwrap();
                drop(g);
            }
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn delivery_control_lock_has_one_holder_at_a_time() {
            use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
            let (store, _g) = make().await;
            let t = tenant("ctl-many");
            let inside = Arc::new(AtomicBool::new(false));
            let entered = Arc::new(AtomicUsize::new(0));
            let mut tasks = Vec::new();
            for _ in 0..8 {
                let (store, t, inside, entered) =
                    (store.clone(), t.clone(), inside.clone(), entered.clone());
                tasks.push(tokio::spawn(async move {
                    for _ in 0..5 {
                        let g = store.control_lock(std::slice::from_ref(&t)).await.unwrap();
                        assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                        entered.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                        inside.store(false, Ordering::SeqCst);
                        drop(g);
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
            assert_eq!(entered.load(Ordering::SeqCst), 40);
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn delivery_control_locks_of_overlapping_sets_never_deadlock() {
            use std::sync::atomic::{AtomicBool, Ordering};
            let (store, _g) = make().await;
            let names: Vec<String> = ["ctl-x", "ctl-y", "ctl-z"]
                .iter()
                .map(|n| tenant(n))
                .collect();
            let held: Arc<Vec<AtomicBool>> =
                Arc::new((0..3).map(|_| AtomicBool::new(false)).collect());
            // Each task wants two of the three, named in its own order (a cycle if taken as given).
            let sets = [[0usize, 1], [1, 2], [2, 0], [1, 0]];
            let mut tasks = Vec::new();
            for set in sets {
                let (store, names, held) = (store.clone(), names.clone(), held.clone());
                tasks.push(tokio::spawn(async move {
                    let want: Vec<String> = set.iter().map(|&i| names[i].clone()).collect();
                    for _ in 0..15 {
                        let g = store.control_lock(&want).await.unwrap();
                        for &i in &set {
                            assert!(
                                !held[i].swap(true, Ordering::SeqCst),
                                "two holders of one name"
                            );
                        }
                        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                        for &i in &set {
                            held[i].store(false, Ordering::SeqCst);
                        }
                        drop(g);
                    }
                }));
            }
            for task in tasks {
                tokio::time::timeout(std::time::Duration::from_secs(60), task)
                    .await
                    .expect("overlapping lock sets finish (no deadlock)")
                    .unwrap();
            }
            // No names: a guard that holds nothing, at once.
            let g = store.control_lock(&[]).await.unwrap();
            let again = tokio::time::timeout(
                std::time::Duration::from_secs(5),
                store.control_lock(&names),
            )
            .await
            .expect("the empty guard holds nothing")
            .unwrap();
            drop((g, again));
        }
    };
}

fn open_embedded(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open"))
}

#[tokio::test]
async fn delivery_embedded_cursors_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_embedded(dir.path());
    store
        .save_cursor("alerts/ops-chat", &[("a".into(), 4), ("b".into(), 9)])
        .await
        .unwrap();
    store
        .save_cursor("sinks/gcl", &[("a".into(), 1)])
        .await
        .unwrap();
    store.shutdown().await;
    drop(store);

    let store = open_embedded(dir.path());
    let c = store.load_cursor("alerts/ops-chat").await.unwrap();
    assert_eq!(c.get("a"), Some(&4));
    assert_eq!(c.get("b"), Some(&9));
    assert_eq!(c.len(), 2);
    // A save after the reopen merges into what was saved before it.
    store
        .save_cursor("alerts/ops-chat", &[("b".into(), 12)])
        .await
        .unwrap();
    store.shutdown().await;
    drop(store);

    let store = open_embedded(dir.path());
    let c = store.load_cursor("alerts/ops-chat").await.unwrap();
    assert_eq!((c.get("a"), c.get("b")), (Some(&4), Some(&12)));
    assert_eq!(
        store.load_cursor("sinks/gcl").await.unwrap().get("a"),
        Some(&1)
    );
    store.shutdown().await;
}

/// A damaged cursor file is reported as corrupt, naming the file, and is not overwritten.
#[tokio::test]
async fn delivery_embedded_corrupt_cursor_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_embedded(dir.path());
    store
        .save_cursor("alerts/ops-chat", &[("a".into(), 4)])
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path().join("cursors"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one file per cursor, no temporary file left"
    );
    let damaged = b"{\"name\": \"alerts/ops-chat\", \"positions\": {\"a\": 4";
    std::fs::write(&files[0], damaged).unwrap();
    let file_name = files[0].file_name().unwrap().to_string_lossy().into_owned();
    for r in [
        store.load_cursor("alerts/ops-chat").await.map(|_| ()),
        store
            .save_cursor("alerts/ops-chat", &[("b".into(), 1)])
            .await,
    ] {
        match r {
            Err(StoreError::Corrupt(m)) => assert!(m.contains(&file_name), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
    assert_eq!(std::fs::read(&files[0]).unwrap(), damaged);
    // Other cursors are unaffected.
    store
        .save_cursor("sinks/gcl", &[("a".into(), 1)])
        .await
        .unwrap();
    assert_eq!(store.load_cursor("sinks/gcl").await.unwrap().len(), 1);
    store.shutdown().await;
}

/// The embedded store grants every lease: one process holds the data directory.
#[tokio::test]
async fn delivery_embedded_leases_are_always_granted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_embedded(dir.path());
    assert!(store
        .acquire_lease("alerts/x", "a", Duration::from_secs(5))
        .await
        .unwrap());
    assert!(store
        .acquire_lease("alerts/x", "b", Duration::from_secs(5))
        .await
        .unwrap());
    store.shutdown().await;
}

/// Two stores on one fresh database.
async fn two_pg_stores(
    opts_b: PostgresOptions,
) -> (Arc<dyn Store>, Arc<dyn Store>, String, crate::PgDatabase) {
    let (url, db) = crate::pg_database().await;
    let a = PostgresStore::open(&url, PostgresOptions::default())
        .await
        .unwrap();
    let b = PostgresStore::open(&url, opts_b).await.unwrap();
    (Arc::new(a), Arc::new(b), url, db)
}

#[tokio::test]
async fn delivery_postgres_cursors_are_seen_by_a_second_store() {
    let (a, b, _url, _db) = two_pg_stores(PostgresOptions::default()).await;
    a.save_cursor("alerts/ops-chat", &[("t1".into(), 4), ("t2".into(), 9)])
        .await
        .unwrap();
    let c = b.load_cursor("alerts/ops-chat").await.unwrap();
    assert_eq!((c.get("t1"), c.get("t2"), c.len()), (Some(&4), Some(&9), 2));
    b.save_cursor("alerts/ops-chat", &[("t2".into(), 11), ("t3".into(), 1)])
        .await
        .unwrap();
    let c = a.load_cursor("alerts/ops-chat").await.unwrap();
    assert_eq!(
        (c.get("t1"), c.get("t2"), c.get("t3")),
        (Some(&4), Some(&11), Some(&1))
    );
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn delivery_postgres_leases_exclude_other_holders_until_they_expire() {
    let (a, b, _url, _db) = two_pg_stores(PostgresOptions::default()).await;
    let name = "alerts/ops-chat";
    assert!(a
        .acquire_lease(name, "server-a", Duration::from_millis(1500))
        .await
        .unwrap());
    assert!(!b
        .acquire_lease(name, "server-b", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(!a
        .acquire_lease(name, "server-b", Duration::from_secs(30))
        .await
        .unwrap());
    // The holder renews (from either store: the holder is who asks, not where).
    assert!(b
        .acquire_lease(name, "server-a", Duration::from_millis(300))
        .await
        .unwrap());
    // Once it expires, another holder takes it, and the old one no longer has it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(b
        .acquire_lease(name, "server-b", Duration::from_secs(30))
        .await
        .unwrap());
    assert!(!a
        .acquire_lease(name, "server-a", Duration::from_secs(30))
        .await
        .unwrap());
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_postgres_one_of_many_racing_holders_gets_a_lease() {
    let (a, b, _url, _db) = two_pg_stores(PostgresOptions::default()).await;
    for round in 0..5 {
        let name = format!("sinks/race-{round}");
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let name = name.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .acquire_lease(&name, &format!("server-{i}"), Duration::from_secs(30))
                    .await
                    .unwrap()
            }));
        }
        let mut granted = 0;
        for t in tasks {
            granted += t.await.unwrap() as usize;
        }
        assert_eq!(granted, 1, "round {round}");
    }
    a.shutdown().await;
    b.shutdown().await;
}

/// Advisory locks held in the test database (by any session).
async fn advisory_locks(url: &str) -> i64 {
    let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    c.query_one(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_postgres_control_lock_excludes_across_stores() {
    let (a, b, url, _db) = two_pg_stores(PostgresOptions::default()).await;
    let (t, u) = (tenant("ctl"), tenant("ctl-other"));
    let first = a.control_lock(std::slice::from_ref(&t)).await.unwrap();
    assert_eq!(advisory_locks(&url).await, 1);
    let released = Arc::new(AtomicBool::new(false));
    let waiter = {
        let (b, t, released) = (b.clone(), t.clone(), released.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let g = b.control_lock(std::slice::from_ref(&t)).await.unwrap();
            let was_released = released.load(Ordering::SeqCst);
            drop(g);
            (was_released, started.elapsed())
        })
    };
    // The other store takes another tenant's lock while this one is held.
    let other = tokio::time::timeout(
        Duration::from_secs(5),
        b.control_lock(std::slice::from_ref(&u)),
    )
    .await
    .expect("another tenant's lock does not wait")
    .unwrap();
    drop(other);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!waiter.is_finished(), "the other store waits for the lock");
    released.store(true, Ordering::SeqCst);
    drop(first);
    let (was_released, waited) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the other store gets the lock once the first drops it")
        .unwrap();
    assert!(was_released, "acquired only after the first guard dropped");
    assert!(waited >= Duration::from_millis(400), "waited {waited:?}");
    // Every guard dropped: no session of either store still holds a lock (the unlock runs on
    // a task of its own, shortly after the drop).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let held = advisory_locks(&url).await;
        if held == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{held} advisory locks still held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Holders spread over both stores still take turns.
    let inside = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..6 {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (t, inside, entered) = (t.clone(), inside.clone(), entered.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..5 {
                let g = store.control_lock(std::slice::from_ref(&t)).await.unwrap();
                assert!(!inside.swap(true, Ordering::SeqCst), "two holders at once");
                entered.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(2)).await;
                inside.store(false, Ordering::SeqCst);
                drop(g);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(entered.load(Ordering::SeqCst), 30);
    a.shutdown().await;
    b.shutdown().await;
}

/// Waiting for a lock held elsewhere ends with `Unavailable` after `lock_timeout`, and leaves
/// the store able to take it once it is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delivery_postgres_control_lock_wait_is_bounded() {
    let short = PostgresOptions {
        lock_timeout: Duration::from_millis(500),
        max_connections: 2,
        ..PostgresOptions::default()
    };
    let (a, b, url, _db) = two_pg_stores(short).await;
    let t = tenant("ctl-bounded");
    let held = a.control_lock(std::slice::from_ref(&t)).await.unwrap();
    for _ in 0..3 {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(30),
            b.control_lock(std::slice::from_ref(&t)),
        )
        .await
        .expect("the wait is bounded");
        let took = started.elapsed();
        match r {
            Err(StoreError::Unavailable(m)) => assert!(m.contains(&t), "{m}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(10),
            "gave up after {took:?}"
        );
    }
    // The refusals used up none of the store's two connections.
    for _ in 0..5 {
        let g = b.control_lock(&[tenant("ctl-free")]).await.unwrap();
        drop(g);
    }
    drop(held);
    let g = tokio::time::timeout(
        Duration::from_secs(10),
        b.control_lock(std::slice::from_ref(&t)),
    )
    .await
    .expect("free again")
    .unwrap();
    assert!(advisory_locks(&url).await >= 1);
    drop(g);
    a.shutdown().await;
    b.shutdown().await;
}
