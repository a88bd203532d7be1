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
