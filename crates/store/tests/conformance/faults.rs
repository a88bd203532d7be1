//! The PostgreSQL store under network and database faults: never hang, never misreport a write.
//!
//! The store reaches PostgreSQL through the TCP proxy of `proxy.rs`, which can freeze (stop
//! forwarding, keep the sockets open: a network partition or a hung server), drop every
//! connection, delay traffic, and cut a connection at the `COMMIT` of a transaction: after
//! forwarding it but before the server's answer gets back (the commit happens, the answer is
//! lost), before forwarding it (nothing is committed), or by holding it.

use super::helpers::*;
use super::proxy::{Cut, Proxy};
use serde_json::json;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trailkeep_core::Uuid;
use trailkeep_store::postgres::{PostgresOptions, PostgresStore};
use trailkeep_store::{AppendOutcome, PreparedEvent, Receipt, Store, StoreError};

/// A fresh database, and a store reaching it through a new proxy with short timeouts.
pub struct Setup {
    pub store: Arc<PostgresStore>,
    pub proxy: Proxy,
    pub direct_url: String,
    _db: crate::PgDatabase,
}

pub fn short_timeouts() -> PostgresOptions {
    PostgresOptions {
        connect_timeout: Duration::from_millis(1000),
        statement_timeout: Duration::from_millis(1000),
        lock_timeout: Duration::from_millis(500),
        pool_wait: Duration::from_millis(1000),
        ..PostgresOptions::default()
    }
}

pub async fn setup(opts: PostgresOptions) -> Setup {
    let admin = crate::pg_admin_url();
    let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {admin} ({e})"));
    tokio::spawn(conn);
    let name = format!("trailkeep_test_{:016x}", rand::random::<u64>());
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let db = crate::PgDatabase {
        admin: admin.clone(),
        name: name.clone(),
    };
    let config: tokio_postgres::Config = admin.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let upstream: SocketAddr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = Proxy::start(upstream).await;
    let user = config.get_user().unwrap_or("postgres");
    let url = format!("postgres://{user}@{}/{name}", proxy.addr);
    let direct_url = format!("postgres://{user}@{upstream}/{name}");
    let store = PostgresStore::open(&url, opts.clone()).await.unwrap();
    Setup {
        store: Arc::new(store),
        proxy,
        direct_url,
        _db: db,
    }
}

fn batch(tenant: &str, n: usize) -> Vec<PreparedEvent> {
    (0..n)
        .map(|_| {
            prep(ev(tenant, "fault.test", |m| {
                m.insert("event_id".into(), json!(uuid()));
            }))
        })
        .collect()
}

fn is_unavailable<T: std::fmt::Debug>(r: &Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Unavailable(_)))
}

/// Asserts that `f` finishes within `within` and returns its result.
async fn timed<T>(within: Duration, what: &str, f: impl std::future::Future<Output = T>) -> T {
    let t0 = Instant::now();
    let r = tokio::time::timeout(within + Duration::from_secs(30), f)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer at all"));
    let took = t0.elapsed();
    assert!(
        took <= within,
        "{what}: answered after {took:?}, later than {within:?}"
    );
    r
}

/// The seqs of a tenant's log are exactly 0..n and the tree has n leaves.
async fn assert_gap_free(store: &PostgresStore, tenant: &str) -> Vec<trailkeep_core::StoredEvent> {
    let log = store.read_log(tenant, 0, 100_000).await.unwrap();
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.seq, i as u64, "seq gap in {tenant}");
    }
    assert_eq!(store.tree_size(tenant).await.unwrap(), log.len() as u64);
    log
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_database_fails_within_the_timeouts_then_serves_again() {
    let s = setup(short_timeouts()).await;
    let t = tenant("frozen");
    let first = s.store.append(batch(&t, 3)).await.unwrap();
    assert_eq!(first.accepted, 3);
    let known = first.receipts[0].event_id;

    s.proxy.freeze();
    // Pool wait (none here) + operation bound (statement_timeout + 1 s) + a connect at most.
    let bound = Duration::from_millis(4500);
    let lost = batch(&t, 2);
    let lost_ids: Vec<Uuid> = lost.iter().map(|p| p.event.event_id).collect();
    let r = timed(bound, "append while frozen", s.store.append(lost)).await;
    assert!(is_unavailable(&r), "{r:?}");
    let r = timed(bound, "get_event while frozen", s.store.get_event(known)).await;
    assert!(is_unavailable(&r), "{r:?}");
    let r = timed(bound, "tenants while frozen", s.store.tenants()).await;
    assert!(is_unavailable(&r), "{r:?}");
    let r = timed(
        Duration::from_millis(3000),
        "ready while frozen",
        s.store.ready(),
    )
    .await;
    assert!(is_unavailable(&r), "{r:?}");
    // Requests waiting at once all get their answer too.
    let many = (0..6).map(|_| {
        let (store, t) = (s.store.clone(), t.clone());
        tokio::spawn(async move { store.append(batch(&t, 1)).await })
    });
    for h in many {
        let r = timed(Duration::from_secs(9), "concurrent append", h)
            .await
            .unwrap();
        assert!(is_unavailable(&r), "{r:?}");
    }

    s.proxy.unfreeze();
    // The same store serves again, without a restart.
    let again = timed(
        Duration::from_secs(3),
        "append after unfreeze",
        s.store.append(batch(&t, 2)),
    )
    .await
    .unwrap();
    assert_eq!(again.accepted, 2);
    s.store.ready().await.unwrap();
    assert!(s.store.get_event(known).await.unwrap().is_some());
    // A write answered "unavailable" before COMMIT was sent stored nothing.
    for id in lost_ids {
        assert!(s.store.get_event(id).await.unwrap().is_none());
    }
    let log = assert_gap_free(&s.store, &t).await;
    assert_eq!(log.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_busy_committer_at_most_pool_wait() {
    let s = setup(PostgresOptions {
        committers: 1,
        ..short_timeouts()
    })
    .await;
    let t = tenant("queued");
    s.store.append(batch(&t, 1)).await.unwrap();
    s.proxy.freeze();
    // The one committer gets stuck on the first request (up to its 2 s operation bound)...
    let store = s.store.clone();
    let first = batch(&t, 1);
    let first_id = first[0].event.event_id;
    let stuck = tokio::spawn(async move { store.append(first).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // ...and the next one gives up waiting for it after pool_wait (1 s), storing nothing.
    let queued = batch(&t, 2);
    let ids: Vec<Uuid> = queued.iter().map(|p| p.event.event_id).collect();
    let r = timed(
        Duration::from_millis(1600),
        "queued append",
        s.store.append(queued),
    )
    .await;
    match &r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("committer"), "{m}"),
        other => panic!("{other:?}"),
    }
    let r = timed(Duration::from_secs(4), "stuck append", stuck)
        .await
        .unwrap();
    assert!(is_unavailable(&r), "{r:?}");
    s.proxy.unfreeze();
    let o = s.store.append(batch(&t, 1)).await.unwrap();
    assert_eq!(o.receipts[0].seq, 1);
    for id in ids.into_iter().chain([first_id]) {
        assert!(s.store.get_event(id).await.unwrap().is_none());
    }
    assert_gap_free(&s.store, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_are_replaced() {
    let s = setup(short_timeouts()).await;
    let t = tenant("dropped");
    s.store.append(batch(&t, 2)).await.unwrap();
    for round in 0..5 {
        s.proxy.drop_all();
        // A connection whose close was not noticed yet may fail one request (503, nothing
        // stored); the next one gets a new connection.
        let mut ok = false;
        for _ in 0..3 {
            let b = batch(&t, 2);
            let ids: Vec<Uuid> = b.iter().map(|p| p.event.event_id).collect();
            match timed(
                Duration::from_secs(4),
                "append after drop",
                s.store.append(b),
            )
            .await
            {
                Ok(o) => {
                    assert_eq!(o.accepted, 2);
                    ok = true;
                    break;
                }
                Err(StoreError::Unavailable(_)) => {
                    for id in ids {
                        assert!(
                            s.store.get_event(id).await.unwrap().is_none(),
                            "round {round}"
                        );
                    }
                }
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert!(ok, "round {round}: no append succeeded after the drop");
    }
    assert_gap_free(&s.store, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_network_is_not_a_failure() {
    let s = setup(short_timeouts()).await;
    let t = tenant("slow");
    s.proxy.delay(40);
    let o = s.store.append(batch(&t, 5)).await.unwrap();
    assert_eq!(o.accepted, 5);
    assert_eq!(s.store.tenants().await.unwrap().len(), 1);
    s.proxy.delay(0);
    assert_gap_free(&s.store, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_lock_held_elsewhere_fails_within_lock_timeout() {
    let s = setup(short_timeouts()).await;
    let t = tenant("locked");
    s.store.append(batch(&t, 1)).await.unwrap();
    let (mut other, conn) = tokio_postgres::connect(&s.direct_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = other.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();

    // lock_timeout is 500 ms; the operation bound (statement_timeout + 1 s) would be 2 s, and
    // the message names lock_timeout.
    let b = batch(&t, 2);
    let ids: Vec<Uuid> = b.iter().map(|p| p.event.event_id).collect();
    let r = timed(
        Duration::from_millis(2500),
        "append under a lock",
        s.store.append(b),
    )
    .await;
    match &r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("lock_timeout"), "{m}"),
        other => panic!("{other:?}"),
    }
    let r = timed(
        Duration::from_millis(2500),
        "tenants under a lock",
        s.store.tenants(),
    )
    .await;
    assert!(is_unavailable(&r), "{r:?}");

    tx.rollback().await.unwrap();
    let o = s.store.append(batch(&t, 1)).await.unwrap();
    assert_eq!(o.receipts[0].seq, 1);
    for id in ids {
        assert!(s.store.get_event(id).await.unwrap().is_none());
    }
    assert_gap_free(&s.store, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_is_about_the_database_not_busy_connections() {
    let s = setup(PostgresOptions {
        max_connections: 1,
        lock_timeout: Duration::from_secs(5),
        statement_timeout: Duration::from_secs(10),
        ..short_timeouts()
    })
    .await;
    let t = tenant("busy");
    s.store.append(batch(&t, 1)).await.unwrap();
    let (mut other, conn) = tokio_postgres::connect(&s.direct_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let tx = other.transaction().await.unwrap();
    tx.batch_execute("LOCK TABLE tenants IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    // The one connection waits for the lock...
    let store = s.store.clone();
    let busy = tokio::spawn(async move { store.tenants().await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...other requests wait at most pool_wait (1 s) for it...
    let r = timed(
        Duration::from_millis(2000),
        "read with the pool busy",
        s.store.get_event(Uuid::nil()),
    )
    .await;
    match &r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("pool_wait"), "{m}"),
        other => panic!("{other:?}"),
    }
    // ...and readiness still answers from the database.
    timed(
        Duration::from_millis(1500),
        "ready with the pool busy",
        s.store.ready(),
    )
    .await
    .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(busy.await.unwrap().unwrap().len(), 1);
    s.store.ready().await.unwrap();
}

/// Resending a request returns exactly `receipts` (every event a duplicate).
async fn assert_resend_returns(store: &PostgresStore, b: Vec<PreparedEvent>, receipts: &[Receipt]) {
    let again = store.append(b).await.unwrap();
    assert_eq!(again.accepted, 0);
    assert_eq!(again.duplicates, receipts.len());
    assert_eq!(again.receipts, receipts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_answer_is_resolved_to_the_receipts() {
    let s = setup(short_timeouts()).await;
    let t = tenant("lostcommit");
    let mut expected = 0u64;
    for i in 0..20 {
        s.proxy.cut_at_commit(Cut::AnswerLost);
        let b = batch(&t, 1 + i % 4);
        let n = b.len();
        let out = timed(
            Duration::from_secs(6),
            "append with lost COMMIT answer",
            s.store.append(b.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("round {i}: a committed write was answered {e}"));
        assert_eq!(
            s.proxy.cuts_done(),
            i as u64 + 1,
            "the proxy cut the COMMIT"
        );
        assert_eq!(out.accepted, n);
        for (k, rc) in out.receipts.iter().enumerate() {
            assert_eq!(rc.seq, expected + k as u64);
        }
        expected += n as u64;
        assert_resend_returns(&s.store, b, &out.receipts).await;
    }
    assert_eq!(assert_gap_free(&s.store, &t).await.len() as u64, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_never_reached_the_server_is_answered_unavailable() {
    let s = setup(short_timeouts()).await;
    let t = tenant("cutbefore");
    s.store.append(batch(&t, 1)).await.unwrap();
    s.proxy.cut_at_commit(Cut::NeverSent);
    let b = batch(&t, 3);
    let r = timed(
        Duration::from_secs(6),
        "append with COMMIT cut",
        s.store.append(b.clone()),
    )
    .await;
    assert_eq!(s.proxy.cuts_done(), 1);
    match &r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("rolled back"), "{m}"),
        other => panic!("{other:?}"),
    }
    for p in &b {
        assert!(s.store.get_event(p.event.event_id).await.unwrap().is_none());
    }
    // Sending it again stores it, at the next seqs.
    let o = s.store.append(b).await.unwrap();
    assert_eq!(o.accepted, 3);
    assert_eq!(o.receipts[0].seq, 1);
    assert_gap_free(&s.store, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_frozen_in_flight_is_answered_within_a_bound_and_a_resend_is_safe() {
    let s = setup(short_timeouts()).await;
    let t = tenant("frozencommit");
    s.store.append(batch(&t, 1)).await.unwrap();
    s.proxy.cut_at_commit(Cut::Frozen);
    let b = batch(&t, 3);
    // Operation bound (2 s) + resolution (statement + connect = 2 s, plus one last try).
    let r = timed(
        Duration::from_secs(8),
        "append with COMMIT frozen",
        s.store.append(b.clone()),
    )
    .await;
    assert_eq!(s.proxy.cuts_done(), 1);
    match &r {
        Err(StoreError::OutcomeUnknown(_)) => {}
        other => panic!("expected an unknown outcome, got {other:?}"),
    }
    s.proxy.unfreeze();
    // Whatever happened, the resend gives one answer for the whole request.
    let o = timed(Duration::from_secs(4), "resend", s.store.append(b.clone()))
        .await
        .unwrap();
    assert!(o.accepted == 0 || o.accepted == 3, "{o:?}");
    assert_resend_returns(&s.store, b, &o.receipts).await;
    assert_eq!(assert_gap_free(&s.store, &t).await.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_stuck_on_one_connection_is_rolled_back_and_answered_unavailable() {
    let s = setup(short_timeouts()).await;
    let t = tenant("heldcommit");
    s.store.append(batch(&t, 1)).await.unwrap();
    s.proxy.cut_at_commit(Cut::Held);
    let b = batch(&t, 2);
    // The server still waits for the COMMIT ("in progress"): the store ends that session on a
    // fresh connection, after which the transaction is rolled back for sure.
    let r = timed(
        Duration::from_secs(5),
        "append with COMMIT held",
        s.store.append(b.clone()),
    )
    .await;
    assert_eq!(s.proxy.cuts_done(), 1);
    match &r {
        Err(StoreError::Unavailable(m)) => assert!(m.contains("rolled back"), "{m}"),
        other => panic!("{other:?}"),
    }
    for p in &b {
        assert!(s.store.get_event(p.event.event_id).await.unwrap().is_none());
    }
    let o = s.store.append(b).await.unwrap();
    assert_eq!(o.receipts[0].seq, 1);
    assert_gap_free(&s.store, &t).await;
}

/// The property of issue "never misreport a write": under random faults (frozen network,
/// dropped connections, COMMIT answers lost, COMMITs cut or frozen) with writers running
/// concurrently, the stored events are exactly the acknowledged ones plus whole unanswered
/// (503) requests, and a request answered "nothing was stored" is not stored; resending an
/// unanswered request returns the stored events' original receipts (or stores it whole now);
/// seqs stay gap-free per tenant. The seed is printed; the faults are drawn from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_never_misreport_a_write() {
    let s = setup(short_timeouts()).await;
    let tenants: Vec<String> = (0..3).map(|i| tenant(&format!("prop{i}"))).collect();
    // Every request sent, with its answer (Err: a 503's message).
    type Sent = Vec<(Vec<PreparedEvent>, Result<AppendOutcome, String>)>;
    let log: Arc<Mutex<Sent>> = Arc::default();
    let seed = rand::random::<u64>();
    eprintln!("faults_never_misreport_a_write seed {seed}");
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    // Every kind of fault once, in an order drawn from the seed, then two more drawn at random.
    let mut kinds: Vec<u64> = (0..6).collect();
    for i in (1..kinds.len()).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        kinds.swap(i, j);
    }
    kinds.extend([next() % 6, next() % 6]);
    for (round, fault) in kinds.into_iter().enumerate() {
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..4)
            .map(|w| {
                let (store, log, stop) = (s.store.clone(), log.clone(), stop.clone());
                let t = tenants[(w + round) % tenants.len()].clone();
                let mixed = tenants[(w + round + 1) % tenants.len()].clone();
                tokio::spawn(async move {
                    let mut k = 0usize;
                    while !stop.load(Ordering::SeqCst) {
                        let mut b = batch(&t, 1 + k % 3);
                        if k.is_multiple_of(4) {
                            b.extend(batch(&mixed, 1));
                        }
                        k += 1;
                        let r = store.append(b.clone()).await;
                        let answer = match r {
                            Ok(o) => Ok(o),
                            Err(
                                e @ (StoreError::Unavailable(_) | StoreError::OutcomeUnknown(_)),
                            ) => Err(e.to_string()),
                            Err(e) => panic!("unexpected answer {e}"),
                        };
                        log.lock().unwrap().push((b, answer));
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(150)).await;
        match fault {
            0 => {
                s.proxy.freeze();
                tokio::time::sleep(Duration::from_millis(1500 + next() % 1500)).await;
                s.proxy.unfreeze();
            }
            1 => s.proxy.drop_all(),
            2 => {
                for _ in 0..3 {
                    s.proxy.cut_at_commit(Cut::AnswerLost);
                }
            }
            3 => s.proxy.cut_at_commit(Cut::NeverSent),
            4 => s.proxy.cut_at_commit(Cut::Held),
            _ => {
                s.proxy.cut_at_commit(Cut::Frozen);
                tokio::time::sleep(Duration::from_millis(2500)).await;
                s.proxy.unfreeze();
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            tokio::time::timeout(Duration::from_secs(30), w)
                .await
                .unwrap_or_else(|_| panic!("round {round} (fault {fault}): a writer hung"))
                .unwrap();
        }
        s.proxy.disarm();
        s.proxy.unfreeze();
    }

    let log = std::mem::take(&mut *log.lock().unwrap());
    let mut stored: HashMap<Uuid, trailkeep_core::StoredEvent> = HashMap::new();
    for t in &tenants {
        for e in assert_gap_free(&s.store, t).await {
            stored.insert(e.event_id, e);
        }
    }
    let mut explained: HashMap<Uuid, bool> = HashMap::new();
    let (mut acked, mut unanswered, mut unanswered_stored) = (0, 0, 0);
    for (b, answer) in &log {
        match answer {
            Ok(o) => {
                acked += 1;
                for (p, rc) in b.iter().zip(&o.receipts) {
                    let e = stored.get(&p.event.event_id).unwrap_or_else(|| {
                        panic!("acknowledged event {} is not stored", rc.event_id)
                    });
                    assert_eq!(
                        (e.seq, e.tenant_id.as_str()),
                        (rc.seq, rc.tenant_id.as_str())
                    );
                    explained.insert(p.event.event_id, true);
                }
            }
            Err(why) => {
                unanswered += 1;
                let present: Vec<bool> = b
                    .iter()
                    .map(|p| stored.contains_key(&p.event.event_id))
                    .collect();
                assert!(
                    present.iter().all(|x| *x) || present.iter().all(|x| !*x),
                    "a request answered {why:?} is stored in part: {present:?}"
                );
                if present[0] {
                    unanswered_stored += 1;
                    // "Nothing was stored" must be true; only an unknown outcome may be stored.
                    assert!(
                        why.starts_with("the outcome of the write is unknown"),
                        "a request answered {why:?} is stored"
                    );
                }
                for p in b {
                    explained.insert(p.event.event_id, true);
                }
                // Resending returns the original receipts of what is stored, or stores it all.
                let again = s.store.append(b.clone()).await.unwrap();
                for (p, rc) in b.iter().zip(&again.receipts) {
                    if let Some(e) = stored.get(&p.event.event_id) {
                        assert_eq!(e.seq, rc.seq, "resend changed a receipt");
                    }
                }
                assert!(
                    again.accepted == 0 || again.accepted == b.len(),
                    "{again:?}"
                );
            }
        }
    }
    for id in stored.keys() {
        assert!(
            explained.contains_key(id),
            "stored event {id} was never sent"
        );
    }
    eprintln!(
        "{acked} acknowledged, {unanswered} answered 503 ({unanswered_stored} of them stored whole)"
    );
    assert!(acked > 0);
    for t in &tenants {
        assert_gap_free(&s.store, t).await;
    }
}
