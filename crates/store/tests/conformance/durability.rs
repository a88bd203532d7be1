//! Embedded-only: everything survives shutdown and reopen of the same data directory.

use crate::helpers::*;
use serde_json::json;
use std::sync::Arc;
use trailkeep_core::Timestamp;
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::keys::generate_secret;
use trailkeep_store::{EventQuery, NewKey, Order, Role, StatsQuery, Store, StoreError};

fn open(dir: &std::path::Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default()).expect("open"))
}

async fn everything(store: &Arc<dyn Store>, tenants: &[&str]) -> String {
    // A textual dump of every observable read, for before/after comparison.
    let mut out = String::new();
    for t in tenants {
        let log = store.read_log(t, 0, 100_000).await.unwrap();
        out.push_str(&format!("log {t}: {log:?}\n"));
        for e in &log {
            let got = store.get_event(e.event_id).await.unwrap();
            assert_eq!(got.as_ref(), Some(e));
        }
        let page = store
            .query(EventQuery {
                tenant_id: Some(t.to_string()),
                limit: 1000,
                order: Order::Asc,
                ..Default::default()
            })
            .await
            .unwrap();
        out.push_str(&format!("query {t}: {:?}\n", page.events));
        let stats = store
            .stats(StatsQuery {
                tenant_id: Some(t.to_string()),
                since: Some(ts("2026-06-01T12:00:00Z")),
                until: None,
            })
            .await
            .unwrap();
        out.push_str(&format!("stats {t}: {stats:?}\n"));
    }
    let mut tenants_list = store.tenants().await.unwrap();
    tenants_list.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
    out.push_str(&format!("tenants: {tenants_list:?}\n"));
    let mut keys = store.list_keys().await.unwrap();
    keys.sort_by(|a, b| a.id.cmp(&b.id));
    out.push_str(&format!("keys: {keys:?}\n"));
    out
}

#[tokio::test]
async fn embedded_data_survives_reopen_and_seq_continues() {
    let dir = tempfile::tempdir().unwrap();
    let ta = "dur-a";
    let tb = "dur-b";
    let kept_id = uuid();
    let kept = ev_at(ta, "dur.kept", &kept_id, "2026-06-02T10:00:00.123456Z");
    let (secret, hash) = generate_secret();
    let (_, revoked_hash) = generate_secret();
    let before;
    let kept_receipt;
    {
        let store = open(dir.path());
        let mut batch = vec![prep(kept.clone())];
        for i in 0..30 {
            let at = format!("2026-06-0{}T{:02}:00:00Z", 1 + i % 3, (i * 5) % 24);
            batch.push(prep(ev_at(
                if i % 2 == 0 { ta } else { tb },
                "dur.x",
                &uuid(),
                &at,
            )));
        }
        batch.push(prep(ev(ta, "dur.assigned", |m| {
            m.insert("source_ip".into(), json!("::1"));
            m.insert("impersonation_session".into(), json!("imp_1"));
        })));
        let out = store.append(batch).await.unwrap();
        kept_receipt = out.receipts[0].clone();
        store
            .append(vec![prep(ev(tb, "dur.y", |_| {}))])
            .await
            .unwrap();
        store
            .create_key(NewKey {
                role: Role::Ingest,
                tenant_id: Some(ta.into()),
                ttl_seconds: None,
                secret_hash: hash.clone(),
            })
            .await
            .unwrap();
        let r = store
            .create_key(NewKey {
                role: Role::Reader,
                tenant_id: None,
                ttl_seconds: None,
                secret_hash: revoked_hash.clone(),
            })
            .await
            .unwrap();
        assert!(store.revoke_key(&r.id).await.unwrap());
        before = everything(&store, &[ta, tb]).await;
        store.shutdown().await;
    }

    let store = open(dir.path());
    assert_eq!(everything(&store, &[ta, tb]).await, before);
    let k = store.find_key(&hash).await.unwrap().expect("key survives");
    assert_eq!(k.role, Role::Ingest);
    assert!(k.is_live(Timestamp::now_micros().nanos));
    assert!(
        store
            .find_key(&revoked_hash)
            .await
            .unwrap()
            .unwrap()
            .revoked
    );
    let _ = secret;

    // Sequencing continues without a gap in both logs.
    let out = store
        .append(vec![
            prep(ev(ta, "dur.after", |_| {})),
            prep(ev(tb, "dur.after", |_| {})),
        ])
        .await
        .unwrap();
    assert_eq!(out.receipts[0].seq, 17);
    assert_eq!(out.receipts[1].seq, 16);
    // Idempotency survives the restart: a re-send is a duplicate with its original receipt,
    // and a changed re-send is still a conflict.
    let out = store.append(vec![prep(kept.clone())]).await.unwrap();
    assert_eq!((out.accepted, out.duplicates), (0, 1));
    assert_eq!(out.receipts[0], kept_receipt);
    let mut changed = kept.clone();
    changed["payload"] = json!({"changed": true});
    assert!(matches!(
        store.append(vec![prep(changed)]).await,
        Err(StoreError::Conflict { .. })
    ));
    let after_first_reopen = everything(&store, &[ta, tb]).await;
    store.shutdown().await;
    drop(store);

    // And once more.
    let store = open(dir.path());
    assert_eq!(everything(&store, &[ta, tb]).await, after_first_reopen);
    let out = store
        .append(vec![prep(ev(ta, "dur.again", |_| {}))])
        .await
        .unwrap();
    assert_eq!(out.receipts[0].seq, 18);
    let log = store.read_log(ta, 0, 1000).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..19).collect::<Vec<_>>()
    );
    store.shutdown().await;
}

#[tokio::test]
async fn embedded_directory_is_locked_while_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store
        .append(vec![prep(ev("lock-t", "x.y", |_| {}))])
        .await
        .unwrap();
    let second = EmbeddedStore::open(dir.path(), EmbeddedOptions::default());
    assert!(
        second.is_err(),
        "a second store on an open data directory must be refused"
    );
    // The first one still works.
    store
        .append(vec![prep(ev("lock-t", "x.y", |_| {}))])
        .await
        .unwrap();
    store.shutdown().await;
}

/// Events compressed with a trained dictionary read back exactly as uncompressed ones did,
/// before and after a restart, and later writes keep using the dictionary.
#[tokio::test]
async fn embedded_compressed_events_read_back_exactly_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        dict_train_events: 300,
        // Tiny segments: the log rolls over many times in this test.
        segment_bytes: 16 * 1024,
        ..Default::default()
    };
    let t = "cmp-a";
    let mk = |i: usize| {
        let mut v = ev_at(
            t,
            if i.is_multiple_of(3) {
                "acct.plan_set"
            } else {
                "cmp.run"
            },
            &uuid(),
            &format!("2026-06-0{}T{:02}:{:02}:00Z", 1 + i % 3, i % 24, i % 60),
        );
        let status = ["success", "failed", "partial"][i % 3];
        v["payload"] = json!({
            "domain": format!("help.t_{:04}.com", i % 17),
            "pages_crawled": i * 7,
            "status": status,
            "note": "ünïcödé \"quoted\" \\ text",
        });
        if i.is_multiple_of(5) {
            v["source_ip"] = json!("2001:db8::1");
            v["approval_id"] = json!(format!("ap_{i}"));
        }
        v
    };
    let store = EmbeddedStore::open(dir.path(), opts.clone()).unwrap();
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    for chunk in 0..4 {
        let batch = (chunk * 100..chunk * 100 + 100)
            .map(|i| prep(mk(i)))
            .collect();
        dyn_store.append(batch).await.unwrap();
    }
    // Training runs in the background: wait for the dictionary to reach the log.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.dictionaries() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary was trained"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before_compressed = store.disk_space();
    let batch = (400..700).map(|i| prep(mk(i))).collect();
    dyn_store.append(batch).await.unwrap();
    let per_event_compressed = (store.disk_space() - before_compressed) / 300;
    let before = everything(&dyn_store, &[t]).await;
    let log = dyn_store.read_log(t, 0, 1000).await.unwrap();
    assert_eq!(log.len(), 700);
    for e in &log {
        let p = std::str::from_utf8(e.payload.as_deref().unwrap()).unwrap();
        assert!(p.contains("ünïcödé"), "{p}");
    }
    // Uncompressed events here take well over 300 bytes each in the log; compressed ones less.
    assert!(
        per_event_compressed < 260,
        "compressed events take {per_event_compressed} bytes each"
    );
    dyn_store.shutdown().await;
    drop(dyn_store);
    drop(store);

    let store = EmbeddedStore::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(store.dictionaries(), 1);
    let dyn_store: Arc<dyn Store> = Arc::new(store.clone());
    assert_eq!(everything(&dyn_store, &[t]).await, before);
    let out = dyn_store.append(vec![prep(mk(700))]).await.unwrap();
    assert_eq!(out.receipts[0].seq, 700);
    let page = dyn_store
        .query(EventQuery {
            tenant_id: Some(t.into()),
            event_type: Some(trailkeep_store::TypeFilter::Prefix("acct.".into())),
            q: Some("help.t_0003".into()),
            limit: 1000,
            order: Order::Asc,
            ..Default::default()
        })
        .await
        .unwrap();
    let want = (0..701).filter(|i| i % 3 == 0 && i % 17 == 3).count();
    assert_eq!(page.events.len(), want);
    dyn_store.shutdown().await;
}

/// An entry altered on disk while the server runs is refused on every read path (its fields no
/// longer give the leaf the tree holds), never served; after a restart the damaged block (with
/// a later block after it) keeps the store from opening instead of being dropped.
#[tokio::test]
async fn embedded_entry_altered_on_disk_is_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        dict_train_events: 0,
        ..Default::default()
    };
    let t = "alter-t";
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path(), opts.clone()).unwrap());
    let mut victim = ev_at(t, "alt.x", &uuid(), "2026-06-01T10:00:00Z");
    victim["payload"] = json!({"note": "original-text"});
    let kept = ev_at(t, "alt.x", &uuid(), "2026-06-01T11:00:00Z");
    let out = store.append(vec![prep(victim.clone())]).await.unwrap();
    let victim_id = out.receipts[0].event_id;
    let out = store.append(vec![prep(kept)]).await.unwrap();
    let kept_id = out.receipts[0].event_id;
    assert!(store.get_event(victim_id).await.unwrap().is_some());

    let seg = dir.path().join("log").join("00000001.seg");
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes
        .windows(13)
        .position(|w| w == b"original-text")
        .expect("the payload is stored as is without a dictionary");
    bytes[at..at + 13].copy_from_slice(b"ORIGINAL-TEXT");
    std::fs::write(&seg, &bytes).unwrap();

    assert!(matches!(
        store.get_event(victim_id).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store.read_log(t, 0, 10).await,
        Err(StoreError::Corrupt(_))
    ));
    assert!(matches!(
        store
            .query(EventQuery {
                tenant_id: Some(t.into()),
                limit: 10,
                ..Default::default()
            })
            .await,
        Err(StoreError::Corrupt(_))
    ));
    // The untouched event is still served.
    assert_eq!(
        store.get_event(kept_id).await.unwrap().unwrap().event_id,
        kept_id
    );
    store.shutdown().await;
    drop(store);
    match EmbeddedStore::open(dir.path(), opts) {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("00000001.seg"), "{m}"),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok(_) => panic!("a damaged acknowledged block must keep the store from opening"),
    }
}
