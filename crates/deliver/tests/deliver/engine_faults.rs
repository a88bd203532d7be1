//! The alert engine when things around it go wrong or get slow: a send longer than the lease,
//! a lease lost during a send, a tenant whose log cannot be read, a channel that is down while
//! sessions become overdue; and how often a channel's cursor is written.
//!
//! The store is a [`WatchedStore`] over the embedded store: leases as on PostgreSQL, unreadable
//! tenants as the embedded store answers for quarantined ones, cursor saves recorded.

use crate::engine::{
    append, config, embedded, event, impersonation_start, ingest, overdue_alerts,
    overdue_baseline_taken, rules, seqs, summary, tenant, wait_until, TestDest, KS,
};
use crate::watched_store::WatchedStore;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailkeep_control::rules::{RuleConfig, RuleSet};
use trailkeep_deliver::alerts::engine::{self, EngineConfig};
use trailkeep_deliver::alerts::{Alert, Attempt};
use trailkeep_store::Store;

/// The watched store over a fresh embedded store, and the same as a `dyn Store`.
fn watched(dir: &std::path::Path) -> (Arc<WatchedStore>, Arc<dyn Store>) {
    let w = WatchedStore::new(embedded(dir));
    let s: Arc<dyn Store> = w.clone();
    (w, s)
}

fn no_sessions(mut c: EngineConfig) -> EngineConfig {
    c.max_session = None;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_longer_than_the_lease_ttl_keeps_the_lease_for_its_whole_length() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = watched(dir.path());
    // Each attempt takes 2.5 s, more than twice the 1 s lease.
    let ops = TestDest::slow("ops", Duration::from_millis(2500), Duration::from_secs(3));
    let mut cfg = no_sessions(config(rules(vec![("ks", &[KS], &["ops"])]), &[&ops]));
    cfg.lease_ttl = Duration::from_secs(1);
    let h = engine::start(store.clone(), cfg);
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    let t = tenant("t");
    ingest(&store, &h, &t, &[KS]).await;
    wait_until(|| !ops.sent().is_empty()).await;
    // Another process asks for the lease all along the send: it never gets it.
    let end = Instant::now() + Duration::from_secs(6);
    while ops.delivered().is_empty() {
        assert!(
            Instant::now() < end,
            "the alert was not delivered within 6 s"
        );
        let other = store
            .acquire_lease("alerts/ops", "another-process", Duration::from_secs(1))
            .await
            .unwrap();
        assert!(
            !other,
            "another process took the lease while a send was in flight"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seqs(&ops.delivered(), &t), [0]);
    assert_eq!(ops.sent().len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loop_that_lost_its_lease_during_a_send_saves_nothing_over_the_new_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (w, store) = watched(dir.path());
    let ops = TestDest::slow("ops", Duration::from_secs(2), Duration::from_secs(3));
    let mut cfg = no_sessions(config(rules(vec![("ks", &[KS], &["ops"])]), &[&ops]));
    cfg.lease_ttl = Duration::from_millis(1500);
    let h = engine::start(store.clone(), cfg);
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    let t = tenant("t");
    ingest(&store, &h, &t, &[KS]).await;
    wait_until(|| !ops.sent().is_empty()).await;
    // While seq 0 is being sent, the lease goes to another process (as if this one had been
    // paused past its expiry), which delivers seq 0 and a new seq 1 and saves its position.
    w.steal("alerts/ops", "another-process", Duration::from_secs(60));
    append(&store, vec![event(&t, KS, 1)]).await;
    store
        .save_cursor("alerts/ops", &[(t.clone(), 2)])
        .await
        .unwrap();
    let saves_before = w.saves("alerts/ops").len();
    // Well past the end of the send.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let cursor = store.load_cursor("alerts/ops").await.unwrap();
    assert_eq!(
        cursor.get(&t),
        Some(&2),
        "the new holder's position was overwritten"
    );
    assert_eq!(
        w.saves("alerts/ops").len(),
        saves_before,
        "{:?}",
        w.saves("alerts/ops")
    );
    assert!(!h.registry().channel("ops").unwrap().active);
    // Nothing more was sent meanwhile (the new holder delivers this channel).
    assert_eq!(ops.sent().len(), 1, "{:?}", summary(&ops.sent()));
    h.shutdown().await;
    // Nor at shutdown.
    assert_eq!(
        store.load_cursor("alerts/ops").await.unwrap().get(&t),
        Some(&2)
    );
}

#[tokio::test]
async fn an_unreadable_tenant_is_skipped_and_the_others_get_their_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (w, store) = watched(dir.path());
    let ops = TestDest::new("ops");
    let set = rules(vec![
        ("ks", &[KS], &["ops"]),
        ("imp", &["impersonation.start"], &["ops"]),
    ]);
    let mut cfg = config(set, &[&ops]);
    cfg.max_session = Some(Duration::from_secs(4));
    let h = engine::start(store.clone(), cfg);
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    overdue_baseline_taken(&store, "ops").await;
    // Tenants are passed in id order: the unreadable one comes first.
    let (bad, good) = (tenant("a0bad"), tenant("b1good"));
    append(&store, vec![event(&bad, KS, 0)]).await;
    w.make_unreadable(&bad);
    append(
        &store,
        vec![
            event(&good, KS, 0),
            impersonation_start(&good, "s1", Duration::from_secs(2 * 3600)),
        ],
    )
    .await;
    h.notify();
    // The event alerts (an overdue alert on s1 may come before or after them).
    let events = |d: &TestDest| -> Vec<Alert> {
        d.delivered()
            .into_iter()
            .filter(|a| a.note.is_none())
            .collect()
    };
    wait_until(|| events(&ops).len() >= 2).await;
    assert_eq!(seqs(&events(&ops), &good), [0, 1]);
    // The overdue check skips the unreadable tenant too.
    let end = Instant::now() + Duration::from_secs(10);
    while overdue_alerts(&ops).is_empty() {
        assert!(Instant::now() < end, "no overdue alert within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let overdue = overdue_alerts(&ops);
    assert_eq!(overdue.len(), 1);
    assert_eq!(
        (overdue[0].event.tenant_id.as_str(), overdue[0].event.seq),
        (good.as_str(), 1)
    );
    assert!(seqs(&ops.sent(), &bad).is_empty());
    // Later alerts of the readable tenants keep coming.
    ingest(&store, &h, &good, &[KS]).await;
    wait_until(|| events(&ops).len() >= 3).await;
    assert_eq!(
        seqs(&events(&ops), &good),
        [0, 1, 2],
        "{:?}",
        summary(&ops.delivered())
    );
    h.shutdown().await;
}

#[tokio::test]
async fn a_channel_that_is_down_does_not_hold_up_another_channels_overdue_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, store) = watched(dir.path());
    let down = TestDest::new("down");
    down.script((0..100_000).map(|_| Attempt::Retry {
        status: None,
        after: None,
        error: "connection refused".into(),
    }));
    let up = TestDest::new("up");
    // `down` comes first in the rule's channels.
    let set = rules(vec![("imp", &["impersonation.start"], &["down", "up"])]);
    let mut cfg = config(set, &[&down, &up]);
    cfg.max_session = Some(Duration::from_secs(4));
    let h = engine::start(store.clone(), cfg);
    wait_until(|| h.registry().channels().iter().all(|c| c.active)).await;
    overdue_baseline_taken(&store, "down").await;
    overdue_baseline_taken(&store, "up").await;
    let t = tenant("t");
    append(
        &store,
        vec![impersonation_start(&t, "s1", Duration::from_secs(3 * 3600))],
    )
    .await;
    h.notify();
    let end = Instant::now() + Duration::from_secs(8);
    while overdue_alerts(&up).is_empty() {
        assert!(
            Instant::now() < end,
            "no overdue alert on the healthy channel within 8 s (the other one is down)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!down.sent().is_empty());
    assert!(down.delivered().is_empty());
    // Raised once on the healthy channel, while the checks go on.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(overdue_alerts(&up).len(), 1);
    h.shutdown().await;
}

#[tokio::test]
async fn a_cursor_is_saved_about_once_a_second_while_nothing_is_delivered_and_at_once_after_an_alert(
) {
    let dir = tempfile::tempdir().unwrap();
    let (w, store) = watched(dir.path());
    let ops = TestDest::new("ops");
    let only = tenant("only");
    // Every event is read (the rule names no type) but only `only`'s make alerts.
    let set = RuleSet::compile(
        vec![RuleConfig {
            name: "only".into(),
            tenants: vec![only.clone()],
            channels: vec!["ops".into()],
            ..RuleConfig::default()
        }],
        &[],
    )
    .unwrap();
    let h = engine::start(store.clone(), no_sessions(config(set, &[&ops])));
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    let started = Instant::now();
    let before = w.saves("alerts/ops").len();
    // Five tenants of 250 events: 15 slices of 100 events at most, none alerted on.
    let others: Vec<String> = (0..5).map(|i| tenant(&format!("other{i}"))).collect();
    for t in &others {
        append(
            &store,
            (0..250).map(|i| event(t, "crawl.page", i)).collect(),
        )
        .await;
    }
    h.notify();
    // The positions are saved all the same (within about a second of the last slice).
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let c = store.load_cursor("alerts/ops").await.unwrap();
        if others.iter().all(|t| c.get(t) == Some(&250)) {
            break;
        }
        assert!(
            Instant::now() < end,
            "positions not saved within 10 s: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let saves = w.saves("alerts/ops").len() - before;
    let allowed = started.elapsed().as_secs() as usize + 2;
    assert!(
        saves <= allowed,
        "{saves} cursor saves in {:?}: {:?}",
        started.elapsed(),
        w.saves("alerts/ops")
    );
    assert!(ops.sent().is_empty());

    // An alert delivered: its position is saved right away.
    ingest(&store, &h, &only, &[KS]).await;
    ops.wait_for(1, Duration::from_secs(10)).await;
    let end = Instant::now() + Duration::from_millis(500);
    loop {
        let c = store.load_cursor("alerts/ops").await.unwrap();
        if c.get(&only) == Some(&1) {
            break;
        }
        assert!(
            Instant::now() < end,
            "the delivered alert's position is not saved 500 ms later: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    h.shutdown().await;
}
