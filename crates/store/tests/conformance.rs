//! The storage conformance suite (docs/operations.md: both backends pass one shared suite).
//!
//! `store_conformance_suite!(name, factory)` expands every test for one backend, in the style of
//! Quickwit's `metastore_test_suite!`. `factory` is an expression evaluating to a future of
//! `(Arc<dyn Store>, Guard)`; the guard keeps whatever the backend needs alive (a temporary
//! directory, a database schema) until the test ends. Tests use only the `Store` trait and name
//! their own tenants, so they can share one database.
//!
//! Adding a backend is one more invocation line at the bottom of this file.

#[path = "conformance/helpers.rs"]
mod helpers;

#[macro_use]
#[path = "conformance/export.rs"]
mod export;

#[macro_use]
#[path = "conformance/delivery.rs"]
mod delivery;

use helpers::Guard;
use std::sync::Arc;
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::postgres::{PostgresOptions, PostgresStore};
use trailkeep_store::Store;

#[macro_export]
macro_rules! store_conformance_suite {
    ($name:ident, $make:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::helpers::*;
            use serde_json::{json, Value};
            use std::collections::{BTreeMap, HashMap, HashSet};
            use std::sync::Arc;
            use trailkeep_core::leaf::{event_leaf_hash, payload_commitment, LeafFields};
            use trailkeep_core::{Timestamp, Uuid};
            use trailkeep_store::keys::{generate_secret, hash_secret};
            use trailkeep_store::{
                EventQuery, NewKey, Order, PreparedEvent, Role, StatsQuery, Store, StoreError,
                TypeFilter,
            };

            async fn make() -> (Arc<dyn Store>, Guard) {
                $make.await
            }

            export_conformance_cases!();
            delivery_conformance_cases!();

            #[tokio::test]
            async fn append_get_round_trip_all_fields() {
                let (store, _g) = make().await;
                let t = tenant("rt");
                let id = uuid();
                let v = json!({
                    "event_id": id.to_uppercase(),
                    "event_type": "prompt.update",
                    "actor": "user:ana3@acme.example",
                    "tenant_id": t,
                    "payload": {"reason": "tone fix", "prompt_id": "pr_7", "editor": "user:ana",
                                "before": {"prompt_hash": format!("sha256:{}", "a".repeat(64))},
                                "after": {"prompt_hash": format!("sha256:{}", "b".repeat(64))},
                                "n": [1, 2.5, -3], "é": null},
                    "timestamp": "2026-11-23T11:15:00.123456+01:00",
                    "source_ip": "2001:DB8:0:0::1",
                    "impersonation_session": "imp_8812",
                    "approval_id": "apr_1",
                });
                let received = Timestamp::now_micros();
                let salt = [7u8; 32];
                let p = PreparedEvent::with_salt(new_event(v), received, salt);
                let out = store.append(vec![p.clone()]).await.unwrap();
                assert_eq!(out.accepted, 1);
                assert_eq!(out.duplicates, 0);
                assert_eq!(out.receipts.len(), 1);
                let rc = &out.receipts[0];
                assert_eq!(rc.event_id.to_string(), id);
                assert_eq!(rc.tenant_id, t);
                assert_eq!(rc.seq, 0);
                assert_eq!(rc.leaf_hash, p.leaf_hash);

                let e = store
                    .get_event(Uuid::parse_str(&id).unwrap())
                    .await
                    .unwrap()
                    .expect("stored");
                assert_eq!(e.tenant_id, t);
                assert_eq!(e.seq, 0);
                assert_eq!(e.event_id.to_string(), id);
                assert_eq!(e.event_type, "prompt.update");
                assert_eq!(e.actor, "user:ana3@acme.example");
                assert_eq!(e.timestamp.to_rfc3339(), "2026-11-23T10:15:00.123456Z");
                assert_eq!(e.timestamp, p.event.timestamp);
                assert!(!e.timestamp_assigned);
                assert_eq!(e.received_at.nanos, received.nanos);
                assert_eq!(e.source_ip.as_deref(), Some("2001:db8::1"));
                assert_eq!(e.impersonation_session.as_deref(), Some("imp_8812"));
                assert_eq!(e.approval_id.as_deref(), Some("apr_1"));
                let canon = format!(
                    r#"{{"after":{{"prompt_hash":"sha256:{}"}},"before":{{"prompt_hash":"sha256:{}"}},"editor":"user:ana","n":[1,2.5,-3],"prompt_id":"pr_7","reason":"tone fix","é":null}}"#,
                    "b".repeat(64),
                    "a".repeat(64)
                );
                assert_eq!(
                    String::from_utf8(e.payload.clone().expect("payload")).unwrap(),
                    canon
                );
                assert_eq!(e.payload_salt, Some(salt));
                if let Some(c) = e.payload_commitment {
                    assert_eq!(c, payload_commitment(&salt, canon.as_bytes()));
                }
                let ts_text = e.timestamp.to_rfc3339();
                let id_text = e.event_id.to_string();
                let recomputed = event_leaf_hash(
                    &LeafFields {
                        event_id: &id_text,
                        event_type: &e.event_type,
                        actor: &e.actor,
                        tenant_id: &e.tenant_id,
                        timestamp: &ts_text,
                        source_ip: e.source_ip.as_deref(),
                        impersonation_session: e.impersonation_session.as_deref(),
                        approval_id: e.approval_id.as_deref(),
                    },
                    &salt,
                    canon.as_bytes(),
                );
                assert_eq!(e.leaf_hash, recomputed);

                // The same event through every read path.
                let log = store.read_log(&t, 0, 10).await.unwrap();
                assert_eq!(log, vec![e.clone()]);
                let page = store
                    .query(EventQuery {
                        tenant_id: Some(t.clone()),
                        limit: 10,
                        ..Default::default()
                    })
                    .await
                    .unwrap();
                assert_eq!(page.events, vec![e.clone()]);
                assert!(page.next_cursor.is_none());
            }

            #[tokio::test]
            async fn server_assigned_id_and_timestamp_round_trip() {
                let (store, _g) = make().await;
                let t = tenant("assigned");
                let p = prep(ev(&t, "x.y", |_| {}));
                assert!(p.event.event_id_assigned && p.event.timestamp_assigned);
                let out = store.append(vec![p.clone()]).await.unwrap();
                assert_eq!(out.receipts[0].event_id, p.event.event_id);
                let e = store.get_event(p.event.event_id).await.unwrap().unwrap();
                assert!(e.timestamp_assigned);
                assert_eq!(e.timestamp, p.event.timestamp);
                assert_eq!(e.timestamp.to_rfc3339(), p.event.timestamp.to_rfc3339());
                assert_eq!(e.payload.as_deref(), Some(&b"{}"[..]));
                assert!(e.source_ip.is_none());
                assert!(e.impersonation_session.is_none());
                assert!(e.approval_id.is_none());
                assert_eq!(e.leaf_hash, p.leaf_hash);
                assert!(store
                    .get_event(Uuid::new_v4())
                    .await
                    .unwrap()
                    .is_none());
            }

            #[tokio::test]
            async fn seq_is_gap_free_per_tenant_across_appends() {
                let (store, _g) = make().await;
                let tenants = [tenant("gf-a"), tenant("gf-b"), tenant("gf-c")];
                let mut expected: HashMap<String, Vec<Uuid>> = HashMap::new();
                for round in 0..40usize {
                    let batch: Vec<PreparedEvent> = (0..(1 + round % 5))
                        .map(|i| prep(ev(&tenants[(round + i * 2) % 3], "gf.x", |_| {})))
                        .collect();
                    let out = store.append(batch.clone()).await.unwrap();
                    assert_eq!(out.accepted, batch.len());
                    for (p, rc) in batch.iter().zip(&out.receipts) {
                        let list = expected.entry(p.event.tenant_id.to_string()).or_default();
                        assert_eq!(rc.tenant_id, p.event.tenant_id);
                        assert_eq!(rc.event_id, p.event.event_id);
                        assert_eq!(rc.seq, list.len() as u64, "next seq of {}", rc.tenant_id);
                        list.push(p.event.event_id);
                    }
                }
                for (t, want) in &expected {
                    let log = store.read_log(t, 0, 10_000).await.unwrap();
                    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
                    assert_eq!(seqs, (0..want.len() as u64).collect::<Vec<_>>());
                    let got: Vec<Uuid> = log.iter().map(|e| e.event_id).collect();
                    assert_eq!(&got, want);
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_appends_from_16_tasks_are_gap_free() {
                let (store, _g) = make().await;
                let tenants = Arc::new([tenant("cc-a"), tenant("cc-b")]);
                let mut tasks = Vec::new();
                for task in 0..16usize {
                    let store = store.clone();
                    let tenants = tenants.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut got = Vec::new();
                        for round in 0..10usize {
                            let batch: Vec<PreparedEvent> = (0..(1 + (task + round) % 4))
                                .map(|i| prep(ev(&tenants[(task + i) % 2], "cc.x", |_| {})))
                                .collect();
                            let out = store.append(batch.clone()).await.unwrap();
                            assert_eq!(out.accepted, batch.len());
                            for (p, rc) in batch.iter().zip(out.receipts) {
                                assert_eq!(rc.event_id, p.event.event_id);
                                got.push((rc.tenant_id, rc.seq, rc.event_id));
                            }
                        }
                        got
                    }));
                }
                let mut by_tenant: HashMap<String, BTreeMap<u64, Uuid>> = HashMap::new();
                for t in tasks {
                    for (tenant, seq, id) in t.await.unwrap() {
                        let prev = by_tenant.entry(tenant.to_string()).or_default().insert(seq, id);
                        assert!(prev.is_none(), "{tenant}: seq {seq} given twice");
                    }
                }
                for (t, seqs) in &by_tenant {
                    let n = seqs.len() as u64;
                    assert_eq!(
                        seqs.keys().copied().collect::<Vec<_>>(),
                        (0..n).collect::<Vec<_>>(),
                        "{t}: every seq 0..{n} exactly once"
                    );
                    let log = store.read_log(t, 0, 100_000).await.unwrap();
                    assert_eq!(log.len() as u64, n);
                    for e in log {
                        assert_eq!(seqs[&e.seq], e.event_id, "{t}: event at seq {}", e.seq);
                    }
                }
            }

            #[tokio::test]
            async fn duplicate_returns_original_receipt() {
                let (store, _g) = make().await;
                let t = tenant("dup");
                let id = uuid();
                let v = ev(&t, "dup.x", |m| {
                    m.insert("event_id".into(), json!(id));
                    m.insert("timestamp".into(), json!("2026-01-02T03:04:05.6Z"));
                    m.insert("payload".into(), json!({"b": 1, "a": [1, {"z": 0, "y": 1}]}));
                    m.insert("source_ip".into(), json!("10.0.0.1"));
                });
                let first = store
                    .append(vec![prep(ev(&t, "dup.before", |_| {})), prep(v.clone())])
                    .await
                    .unwrap();
                let orig = first.receipts[1].clone();
                assert_eq!(orig.seq, 1);
                // A re-send is salted afresh (a different leaf hash before sequencing), yet the
                // original receipt comes back.
                let again = prep(v.clone());
                assert_ne!(again.leaf_hash, orig.leaf_hash);
                let out = store.append(vec![again]).await.unwrap();
                assert_eq!(out.accepted, 0);
                assert_eq!(out.duplicates, 1);
                assert_eq!(out.receipts, vec![orig.clone()]);
                // Equal content written differently (key order, offset) is a duplicate too.
                let same = ev(&t, "dup.x", |m| {
                    m.insert("event_id".into(), json!(id.to_uppercase()));
                    m.insert("timestamp".into(), json!("2026-01-02T04:04:05.600+01:00"));
                    m.insert("payload".into(), json!({"a": [1, {"y": 1, "z": 0}], "b": 1}));
                    m.insert("source_ip".into(), json!("10.0.0.1"));
                });
                let out = store
                    .append(vec![prep(ev(&t, "dup.after", |_| {})), prep(same)])
                    .await
                    .unwrap();
                assert_eq!(out.accepted, 1);
                assert_eq!(out.duplicates, 1);
                assert_eq!(out.receipts[0].seq, 2);
                assert_eq!(out.receipts[1], orig);
                assert_eq!(store.read_log(&t, 0, 100).await.unwrap().len(), 3);

                // Re-sending an event without a timestamp (server-assigned both times).
                let id2 = uuid();
                let no_ts = ev(&t, "dup.nots", |m| {
                    m.insert("event_id".into(), json!(id2));
                });
                let a = store.append(vec![prep(no_ts.clone())]).await.unwrap();
                let b = store.append(vec![prep(no_ts.clone())]).await.unwrap();
                assert_eq!(b.accepted, 0);
                assert_eq!(b.duplicates, 1);
                assert_eq!(a.receipts, b.receipts);
                assert_eq!(store.read_log(&t, 0, 100).await.unwrap().len(), 4);
            }

            #[tokio::test]
            async fn conflict_stores_nothing_of_the_request() {
                let (store, _g) = make().await;
                let t = tenant("conf");
                let t2 = tenant("conf2");
                let id = uuid();
                let base = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
                    ev(&t, "conf.x", |m| {
                        m.insert("event_id".into(), json!(id));
                        m.insert("timestamp".into(), json!("2026-01-02T03:04:05Z"));
                        m.insert("payload".into(), json!({"n": 1}));
                        f(m);
                    })
                };
                store.append(vec![prep(base(&|_| {}))]).await.unwrap();
                let changes: Vec<Box<dyn Fn(&mut serde_json::Map<String, Value>)>> = vec![
                    Box::new(|m| {
                        m.insert("payload".into(), json!({"n": 2}));
                    }),
                    Box::new(|m| {
                        m.insert("actor".into(), json!("user:mallory"));
                    }),
                    Box::new(|m| {
                        m.insert("event_type".into(), json!("conf.y"));
                    }),
                    Box::new(|m| {
                        m.insert("timestamp".into(), json!("2026-01-02T03:04:05.001Z"));
                    }),
                    Box::new(|m| {
                        m.remove("timestamp");
                    }),
                    Box::new(|m| {
                        m.insert("source_ip".into(), json!("10.0.0.1"));
                    }),
                    Box::new(|m| {
                        m.insert("impersonation_session".into(), json!("imp"));
                    }),
                    Box::new(|m| {
                        m.insert("approval_id".into(), json!("apr"));
                    }),
                ];
                for (n, change) in changes.iter().enumerate() {
                    let fresh = prep(ev(&t, "conf.fresh", |_| {}));
                    let fresh_other = prep(ev(&t2, "conf.fresh", |_| {}));
                    let fresh_id = fresh.event.event_id;
                    let res = store
                        .append(vec![fresh, fresh_other, prep(base(&**change))])
                        .await;
                    match res {
                        Err(StoreError::Conflict { index, event_id }) => {
                            assert_eq!(index, 2, "change {n}");
                            assert_eq!(event_id.to_string(), id);
                        }
                        other => panic!("change {n}: expected a conflict, got {other:?}"),
                    }
                    assert!(store.get_event(fresh_id).await.unwrap().is_none());
                    assert_eq!(store.read_log(&t, 0, 100).await.unwrap().len(), 1);
                    assert!(store.read_log(&t2, 0, 100).await.unwrap().is_empty());
                }
                // Moving an id to another tenant is a conflict too.
                let moved = ev(&t2, "conf.x", |m| {
                    m.insert("event_id".into(), json!(id));
                    m.insert("timestamp".into(), json!("2026-01-02T03:04:05Z"));
                    m.insert("payload".into(), json!({"n": 1}));
                });
                assert!(matches!(
                    store.append(vec![prep(moved)]).await,
                    Err(StoreError::Conflict { index: 0, .. })
                ));
                // Nothing was consumed: the next event gets seq 1.
                let out = store
                    .append(vec![prep(ev(&t, "conf.next", |_| {}))])
                    .await
                    .unwrap();
                assert_eq!(out.receipts[0].seq, 1);
                let summary: Vec<_> = store
                    .tenants()
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|s| s.tenant_id == t || s.tenant_id == t2)
                    .collect();
                assert_eq!(summary.len(), 1);
                assert_eq!(summary[0].event_count, 2);
            }

            #[tokio::test]
            async fn duplicates_inside_one_request() {
                let (store, _g) = make().await;
                let t = tenant("inreq");
                let id = uuid();
                let v = ev_at(&t, "in.x", &id, "2026-01-01T00:00:00Z");
                let out = store
                    .append(vec![prep(v.clone()), prep(ev(&t, "in.y", |_| {})), prep(v.clone())])
                    .await
                    .unwrap();
                assert_eq!(out.accepted, 2);
                assert_eq!(out.duplicates, 1);
                assert_eq!(out.receipts[0], out.receipts[2]);
                assert_eq!(out.receipts[0].seq, 0);
                assert_eq!(out.receipts[1].seq, 1);
                assert_eq!(store.read_log(&t, 0, 100).await.unwrap().len(), 2);

                // Without timestamps: identical content.
                let id2 = uuid();
                let nts = ev(&t, "in.z", |m| {
                    m.insert("event_id".into(), json!(id2));
                });
                let out = store
                    .append(vec![prep(nts.clone()), prep(nts)])
                    .await
                    .unwrap();
                assert_eq!((out.accepted, out.duplicates), (1, 1));
                assert_eq!(out.receipts[0], out.receipts[1]);
                assert_eq!(out.receipts[0].seq, 2);

                // Different content under one id: nothing stored.
                let id3 = uuid();
                let a = ev_at(&t, "in.x", &id3, "2026-01-01T00:00:00Z");
                let b = ev_at(&t, "in.x", &id3, "2026-01-01T00:00:01Z");
                let fresh = prep(ev(&t, "in.fresh", |_| {}));
                let fresh_id = fresh.event.event_id;
                let res = store.append(vec![fresh, prep(a), prep(b)]).await;
                assert!(
                    matches!(res, Err(StoreError::Conflict { index: 2, .. })),
                    "{res:?}"
                );
                assert!(store.get_event(fresh_id).await.unwrap().is_none());
                assert!(store
                    .get_event(Uuid::parse_str(&id3).unwrap())
                    .await
                    .unwrap()
                    .is_none());
                assert_eq!(store.read_log(&t, 0, 100).await.unwrap().len(), 3);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_same_id_is_stored_once() {
                let (store, _g) = make().await;
                let t = tenant("race");
                let id = uuid();
                let v = ev_at(&t, "race.x", &id, "2026-01-01T00:00:00Z");
                let mut tasks = Vec::new();
                for _ in 0..16 {
                    let (store, v) = (store.clone(), v.clone());
                    tasks.push(tokio::spawn(async move {
                        store.append(vec![prep(v)]).await.unwrap()
                    }));
                }
                let mut accepted = 0;
                let mut receipts = HashSet::new();
                for task in tasks {
                    let out = task.await.unwrap();
                    accepted += out.accepted;
                    assert_eq!(out.accepted + out.duplicates, 1);
                    receipts.insert((out.receipts[0].seq, out.receipts[0].leaf_hash));
                }
                assert_eq!(accepted, 1);
                assert_eq!(receipts.len(), 1);

                // Different contents racing: one wins, the rest conflict, no gaps.
                let id2 = uuid();
                let mut tasks = Vec::new();
                for n in 0..16 {
                    let store = store.clone();
                    let v = ev(&t, "race.y", |m| {
                        m.insert("event_id".into(), json!(id2));
                        m.insert("payload".into(), json!({ "n": n }));
                        m.insert("timestamp".into(), json!("2026-01-01T00:00:00Z"));
                    });
                    tasks.push(tokio::spawn(async move { store.append(vec![prep(v)]).await }));
                }
                let mut ok = 0;
                for task in tasks {
                    match task.await.unwrap() {
                        Ok(out) => {
                            ok += 1;
                            assert_eq!(out.accepted, 1);
                        }
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
                assert_eq!(ok, 1);
                let log = store.read_log(&t, 0, 100).await.unwrap();
                assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![0, 1]);
            }

            /// (tenant index, type, actor, timestamp, session, payload)
            fn model_rows() -> Vec<(usize, &'static str, &'static str, &'static str, Option<&'static str>, Value)> {
                vec![
                    (0, "app.login", "user:alice", "2026-03-01T10:00:00Z", None, json!({"msg": "Hello World"})),
                    (0, "app.login.failed", "user:bob", "2026-03-01T11:00:00Z", None, json!({"msg": "bad"})),
                    (0, "billing.custom", "svc:billing", "2026-03-01T12:00:00Z", None, json!({})),
                    (0, "billing.plan.change", "svc:billing", "2026-03-02T00:00:00Z", None,
                        json!({"before": {"plan": "free"}, "after": {"plan": "pro"}, "reason": "Upgrade"})),
                    (0, "billingx.foo", "user:alice", "2026-03-02T08:00:00Z", None, json!({})),
                    (0, "billing", "user:alice", "2026-03-02T09:00:00Z", None, json!({})),
                    (0, "app.action", "admin:root", "2026-03-02T10:00:00Z", Some("imp_1"), json!({"w": 1})),
                    (0, "app.action", "admin:root", "2026-03-02T10:00:00Z", Some("imp_1"), json!({"w": 2})),
                    (0, "app.action", "admin:root", "2026-03-02T10:00:00Z", Some("imp_2"), json!({"w": 3})),
                    (1, "app.login", "user:alice", "2026-03-01T10:30:00Z", None, json!({"msg": "HELLO there"})),
                    (1, "billing.custom", "user:carol", "2026-03-03T00:00:00Z", Some("imp_1"), json!({})),
                    (1, "app.action", "user:carol", "2026-03-03T00:00:00.000500Z", None, json!({})),
                    (2, "app.login", "user:alice", "2026-02-28T23:59:59.999Z", None, json!({})),
                ]
            }

            #[tokio::test]
            async fn query_filters_order_and_cursors_match_a_model() {
                let (store, _g) = make().await;
                let tenants = [tenant("qa"), tenant("qb"), tenant("qc")];
                // A unique actor suffix so cross-tenant queries see only this test's events.
                let sfx = format!("-{}", &tenant("x")[2..]);
                struct Row {
                    tenant: String,
                    etype: &'static str,
                    actor: String,
                    ts: Timestamp,
                    session: Option<&'static str>,
                    payload: String,
                    id: Uuid,
                }
                let mut rows = Vec::new();
                let mut batch = Vec::new();
                let hi = u128::from(rand::random::<u64>()) << 64;
                for (n, (ti, etype, actor, at, session, payload)) in
                    model_rows().into_iter().enumerate()
                {
                    // Later rows get smaller ids: equal timestamps must order by id, not by
                    // arrival. The random high bits keep ids unique across test runs.
                    let id = Uuid::from_u128(hi | (100 - n) as u128);
                    let actor = format!("{actor}{sfx}");
                    let v = ev(&tenants[ti], etype, |m| {
                        m.insert("event_id".into(), json!(id.to_string()));
                        m.insert("timestamp".into(), json!(at));
                        m.insert("actor".into(), json!(actor));
                        m.insert("payload".into(), payload.clone());
                        if let Some(s) = session {
                            m.insert("impersonation_session".into(), json!(s));
                        }
                    });
                    batch.push(prep(v));
                    rows.push(Row {
                        tenant: tenants[ti].clone(),
                        etype,
                        actor,
                        ts: ts(at),
                        session,
                        payload: payload.to_string(),
                        id,
                    });
                }
                store.append(batch).await.unwrap();

                let base = EventQuery {
                    limit: 1000,
                    ..Default::default()
                };
                let t0 = Some(tenants[0].clone());
                let t1 = Some(tenants[1].clone());
                let alice = format!("user:alice{sfx}");
                let admin = format!("admin:root{sfx}");
                let svc = format!("svc:billing{sfx}");
                // Cross-tenant queries are confined to this test's rows by a `q` on the suffix.
                let mine = Some(sfx.to_lowercase());
                type Pred<'a> = Box<dyn Fn(&Row) -> bool + 'a>;
                let cases: Vec<(&str, EventQuery, Pred)> = vec![
                    ("tenant", EventQuery { tenant_id: t0.clone(), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[0])),
                    ("all tenants", EventQuery { q: mine.clone(), ..base.clone() },
                        Box::new(|_| true)),
                    ("exact type", EventQuery { q: mine.clone(),
                        event_type: Some(TypeFilter::Exact("app.login".into())), ..base.clone() },
                        Box::new(|r| r.etype == "app.login")),
                    ("prefix", EventQuery { q: mine.clone(),
                        event_type: Some(TypeFilter::Prefix("billing.".into())), ..base.clone() },
                        Box::new(|r| r.etype.starts_with("billing."))),
                    ("prefix in tenant", EventQuery { tenant_id: t0.clone(),
                        event_type: Some(TypeFilter::Prefix("app.".into())), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[0] && r.etype.starts_with("app."))),
                    ("actor", EventQuery { actor: Some(alice.clone()), ..base.clone() },
                        Box::new(|r| r.actor == alice)),
                    ("actor in tenant + type", EventQuery { tenant_id: t0.clone(), actor: Some(svc.clone()),
                        event_type: Some(TypeFilter::Exact("billing.custom".into())), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[0] && r.actor == svc && r.etype == "billing.custom")),
                    ("session", EventQuery { q: mine.clone(), session: Some("imp_1".into()), ..base.clone() },
                        Box::new(|r| r.session == Some("imp_1"))),
                    ("session + actor", EventQuery { tenant_id: t0.clone(), session: Some("imp_1".into()),
                        actor: Some(admin.clone()), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[0] && r.session == Some("imp_1") && r.actor == admin)),
                    ("since", EventQuery { q: mine.clone(), since: Some(ts("2026-03-01T11:00:00Z")), ..base.clone() },
                        Box::new(|r| r.ts.nanos >= ts("2026-03-01T11:00:00Z").nanos)),
                    ("until", EventQuery { q: mine.clone(), until: Some(ts("2026-03-02T00:00:00Z")), ..base.clone() },
                        Box::new(|r| r.ts.nanos < ts("2026-03-02T00:00:00Z").nanos)),
                    ("since+until+type", EventQuery { tenant_id: t0.clone(),
                        since: Some(ts("2026-03-01T12:00:00Z")), until: Some(ts("2026-03-02T10:00:00Z")),
                        event_type: Some(TypeFilter::Prefix("billing.".into())), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[0] && r.etype.starts_with("billing.")
                            && r.ts.nanos >= ts("2026-03-01T12:00:00Z").nanos
                            && r.ts.nanos < ts("2026-03-02T10:00:00Z").nanos)),
                    ("sub-ms until", EventQuery { tenant_id: t1.clone(),
                        until: Some(ts("2026-03-03T00:00:00.0005Z")), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[1] && r.ts.nanos < ts("2026-03-03T00:00:00.0005Z").nanos)),
                    ("q payload", EventQuery { q: Some("hello".into()), tenant_id: t0.clone(), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[0] && r.payload.to_lowercase().contains("hello"))),
                    ("q payload all tenants", EventQuery { q: Some("hello".into()),
                        actor: Some(alice.clone()), ..base.clone() },
                        Box::new(|r| r.actor == alice && r.payload.to_lowercase().contains("hello"))),
                    ("q actor", EventQuery { q: Some("carol".into()), tenant_id: t1.clone(), ..base.clone() },
                        Box::new(|r| r.tenant == tenants[1] && r.actor.contains("carol"))),
                    ("unknown tenant", EventQuery { tenant_id: Some(tenant("none")), ..base.clone() },
                        Box::new(|_| false)),
                ];
                for (name, q, pred) in cases {
                    for order in [Order::Desc, Order::Asc] {
                        let mut want: Vec<&Row> = rows.iter().filter(|r| pred(r)).collect();
                        want.sort_by_key(|r| (r.ts.nanos, r.id));
                        if order == Order::Desc {
                            want.reverse();
                        }
                        let want: Vec<String> = want.iter().map(|r| r.id.to_string()).collect();
                        let q = EventQuery { order, ..q.clone() };
                        let page = store.query(q.clone()).await.unwrap();
                        assert_eq!(ids(&page.events), want, "{name} {order:?}");
                        assert!(page.next_cursor.is_none(), "{name} {order:?}");
                        for limit in [1, 2, 5] {
                            let got = walk(&store, EventQuery { limit, ..q.clone() }).await;
                            assert_eq!(ids(&got), want, "{name} {order:?} limit {limit}");
                        }
                    }
                }
            }

            #[tokio::test]
            async fn cursor_walk_over_250_events() {
                let (store, _g) = make().await;
                let ta = tenant("walk-a");
                let tb = tenant("walk-b");
                let mut model = Vec::new();
                let batch: Vec<PreparedEvent> = (0..250usize)
                    .map(|i| {
                        let at = format!("2026-04-01T00:{:02}:{:02}.5Z", (i * 7) % 40, (i * 13) % 3);
                        let id = uuid();
                        let t = if i % 3 == 0 { &tb } else { &ta };
                        model.push((ts(&at).nanos, Uuid::parse_str(&id).unwrap(), t.clone()));
                        prep(ev_at(t, "walk.x", &id, &at))
                    })
                    .collect();
                store.append(batch).await.unwrap();
                model.sort();
                for (tenant, order) in [
                    (Some(ta.clone()), Order::Desc),
                    (Some(ta.clone()), Order::Asc),
                    (Some(tb.clone()), Order::Desc),
                ] {
                    let mut want: Vec<String> = model
                        .iter()
                        .filter(|m| tenant.as_ref().is_none_or(|t| &m.2 == t))
                        .map(|m| m.1.to_string())
                        .collect();
                    if order == Order::Desc {
                        want.reverse();
                    }
                    let got = walk(
                        &store,
                        EventQuery { tenant_id: tenant.clone(), limit: 7, order, ..Default::default() },
                    )
                    .await;
                    assert_eq!(ids(&got), want, "{tenant:?} {order:?}");
                }
            }

            #[tokio::test]
            async fn cursor_walk_during_appends_never_repeats_or_skips() {
                let (store, _g) = make().await;
                let t = tenant("live");
                let mut original = HashSet::new();
                let batch: Vec<PreparedEvent> = (0..100usize)
                    .map(|i| {
                        let at = format!("2025-{:02}-{:02}T{:02}:00:00Z", 1 + i % 12, 1 + (i * 7) % 28, (i * 5) % 24);
                        let p = prep(ev_at(&t, "live.x", &uuid(), &at));
                        original.insert(p.event.event_id);
                        p
                    })
                    .collect();
                store.append(batch).await.unwrap();
                for order in [Order::Desc, Order::Asc] {
                    let mut q = EventQuery { tenant_id: Some(t.clone()), limit: 7, order, ..Default::default() };
                    let mut seen: Vec<(i64, Uuid)> = Vec::new();
                    let mut n = 0usize;
                    loop {
                        let page = store.query(q.clone()).await.unwrap();
                        seen.extend(page.events.iter().map(|e| (e.timestamp.nanos, e.event_id)));
                        n += 1;
                        let a = format!("2025-{:02}-{:02}T12:30:00Z", 1 + n % 12, 1 + n % 28);
                        let b = format!("2025-{:02}-{:02}T03:15:00Z", 12 - n % 12, 28 - n % 28);
                        store
                            .append(vec![
                                prep(ev(&t, "live.now", |_| {})),
                                prep(ev_at(&t, "live.back", &uuid(), &a)),
                                prep(ev_at(&t, "live.back", &uuid(), &b)),
                            ])
                            .await
                            .unwrap();
                        match page.next_cursor {
                            Some(c) => q.cursor = Some(c),
                            None => break,
                        }
                        assert!(n < 10_000);
                    }
                    let mut uniq = HashSet::new();
                    for (_, id) in &seen {
                        assert!(uniq.insert(*id), "{order:?}: {id} listed twice");
                    }
                    for id in &original {
                        assert!(uniq.contains(id), "{order:?}: {id} skipped");
                    }
                    for w in seen.windows(2) {
                        match order {
                            Order::Desc => assert!(w[0] > w[1], "{:?} then {:?}", w[0], w[1]),
                            Order::Asc => assert!(w[0] < w[1], "{:?} then {:?}", w[0], w[1]),
                        }
                    }
                }
            }

            #[tokio::test]
            async fn read_log_ranges() {
                let (store, _g) = make().await;
                let t = tenant("log");
                // Timestamps deliberately out of seq order.
                let ats = ["2026-01-05T00:00:00Z", "2026-01-01T00:00:00Z", "2026-01-03T00:00:00Z",
                           "2026-01-02T00:00:00Z", "2026-01-04T00:00:00Z"];
                let mut ids_in_order = Vec::new();
                for at in ats {
                    let p = prep(ev_at(&t, "ledger.x", &uuid(), at));
                    ids_in_order.push(p.event.event_id);
                    store.append(vec![p]).await.unwrap();
                }
                // A tenant whose name extends this one must not leak into its log.
                let longer = format!("{t}0");
                store.append(vec![prep(ev(&longer, "ledger.x", |_| {}))]).await.unwrap();
                let all = store.read_log(&t, 0, 100).await.unwrap();
                assert_eq!(all.iter().map(|e| e.event_id).collect::<Vec<_>>(), ids_in_order);
                assert!(all.iter().all(|e| e.tenant_id == t));
                let mid = store.read_log(&t, 2, 2).await.unwrap();
                assert_eq!(mid.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
                assert!(store.read_log(&t, 5, 10).await.unwrap().is_empty());
                assert!(store.read_log(&t, u64::MAX, 10).await.unwrap().is_empty());
                assert!(store.read_log(&t, 0, 0).await.unwrap().is_empty());
                assert!(store.read_log(&tenant("none"), 0, 10).await.unwrap().is_empty());
                assert_eq!(store.read_log(&longer, 0, 10).await.unwrap().len(), 1);
            }

            #[tokio::test]
            async fn tenant_summaries() {
                let (store, _g) = make().await;
                let a = tenant("sum-a");
                let b = tenant("sum-b");
                store
                    .append(vec![
                        prep(ev_at(&b, "s.x", &uuid(), "2026-05-03T00:00:00.250Z")),
                        prep(ev_at(&b, "s.x", &uuid(), "2026-05-01T00:00:00Z")),
                        prep(ev_at(&b, "s.y", &uuid(), "2026-05-02T00:00:00.123456Z")),
                        prep(ev_at(&a, "s.x", &uuid(), "2026-01-01T00:00:00Z")),
                    ])
                    .await
                    .unwrap();
                let dup = ev_at(&a, "s.z", &uuid(), "2026-01-09T00:00:00Z");
                store.append(vec![prep(dup.clone())]).await.unwrap();
                store.append(vec![prep(dup)]).await.unwrap();
                let list = store.tenants().await.unwrap();
                let mine: BTreeMap<String, _> = list
                    .into_iter()
                    .filter(|s| s.tenant_id == a || s.tenant_id == b)
                    .map(|s| (s.tenant_id.clone(), s))
                    .collect();
                assert_eq!(mine.len(), 2);
                let sb = &mine[&b];
                assert_eq!(sb.event_count, 3);
                assert_eq!(sb.first_timestamp.unwrap().to_rfc3339(), "2026-05-01T00:00:00.000Z");
                assert_eq!(sb.last_timestamp.unwrap().to_rfc3339(), "2026-05-03T00:00:00.250Z");
                let sa = &mine[&a];
                assert_eq!(sa.event_count, 2);
                assert_eq!(sa.first_timestamp.unwrap().to_rfc3339(), "2026-01-01T00:00:00.000Z");
                assert_eq!(sa.last_timestamp.unwrap().to_rfc3339(), "2026-01-09T00:00:00.000Z");
                // Sorted by tenant id.
                let all = store.tenants().await.unwrap();
                let names: Vec<&String> = all.iter().map(|s| &s.tenant_id).collect();
                let mut sorted = names.clone();
                sorted.sort();
                assert_eq!(names, sorted);
            }

            #[tokio::test]
            async fn stats_exact_counts_with_partial_days() {
                let (store, _g) = make().await;
                let t = tenant("st");
                let other = tenant("st-o");
                let rows: Vec<(bool, &str, &str)> = vec![
                    (true, "a.x", "2026-06-01T00:00:00Z"),
                    (true, "a.x", "2026-06-01T10:00:00Z"),
                    (true, "b.y", "2026-06-01T23:00:00Z"),
                    (true, "b.y", "2026-06-01T23:59:59.999999Z"),
                    (true, "a.x", "2026-06-02T00:00:00Z"),
                    (true, "b.y", "2026-06-02T12:00:00Z"),
                    (true, "a.x", "2026-06-03T05:00:00Z"),
                    (true, "a.x", "2026-06-04T00:00:00Z"),
                    (true, "a.x", "1969-12-31T23:59:59Z"),
                    (false, "a.x", "2026-06-02T12:00:00Z"),
                ];
                let batch: Vec<PreparedEvent> = rows
                    .iter()
                    .map(|(mine, ty, at)| prep(ev_at(if *mine { &t } else { &other }, ty, &uuid(), at)))
                    .collect();
                store.append(batch).await.unwrap();
                let cases: Vec<(Option<&str>, Option<&str>)> = vec![
                    (None, None),
                    (Some("2026-06-01T12:00:00Z"), Some("2026-06-03T01:00:00Z")),
                    (Some("2026-06-01T05:00:00Z"), Some("2026-06-01T23:30:00Z")),
                    (Some("2026-06-01T00:00:00Z"), Some("2026-06-02T00:00:00Z")),
                    (Some("2026-06-02T00:00:00Z"), Some("2026-06-04T00:00:00Z")),
                    (Some("2026-06-01T23:59:59.999999Z"), Some("2026-06-02T00:00:00.000001Z")),
                    (Some("2026-06-01T23:00:00.000001Z"), None),
                    (None, Some("2026-06-02T06:00:00Z")),
                    (None, Some("1970-01-01T00:00:00Z")),
                    (Some("2026-06-02T00:00:00Z"), Some("2026-06-02T00:00:00Z")),
                    (Some("2026-06-03T00:00:00Z"), Some("2026-06-02T00:00:00Z")),
                ];
                for (since, until) in cases {
                    let s = store
                        .stats(StatsQuery {
                            tenant_id: Some(t.clone()),
                            since: since.map(ts),
                            until: until.map(ts),
                        })
                        .await
                        .unwrap();
                    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
                    let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
                    let mut total = 0;
                    for (mine, ty, at) in &rows {
                        let n = ts(at).nanos;
                        if !mine
                            || since.is_some_and(|x| n < ts(x).nanos)
                            || until.is_some_and(|x| n >= ts(x).nanos)
                        {
                            continue;
                        }
                        *by_type.entry(ty.to_string()).or_default() += 1;
                        *by_day.entry(at[..10].to_string()).or_default() += 1;
                        total += 1;
                    }
                    assert_eq!(s.counts_by_type, by_type, "{since:?}..{until:?}");
                    assert_eq!(s.counts_by_day, by_day, "{since:?}..{until:?}");
                    assert_eq!(s.total, total, "{since:?}..{until:?}");
                }
                let none = store
                    .stats(StatsQuery { tenant_id: Some(tenant("none")), ..Default::default() })
                    .await
                    .unwrap();
                assert_eq!(none.total, 0);
                assert!(none.counts_by_type.is_empty() && none.counts_by_day.is_empty());
            }

            #[tokio::test]
            async fn keys_create_list_find_revoke() {
                let (store, _g) = make().await;
                let t = tenant("keys");
                let (secret, hash) = generate_secret();
                assert_eq!(hash, hash_secret(&secret));
                let before = Timestamp::now_micros();
                let rec = store
                    .create_key(NewKey {
                        role: Role::Reader,
                        tenant_id: Some(t.clone()),
                        ttl_seconds: Some(3600),
                        secret_hash: hash.clone(),
                    })
                    .await
                    .unwrap();
                assert!(!rec.id.is_empty());
                assert_eq!(rec.role, Role::Reader);
                assert_eq!(rec.tenant_id.as_deref(), Some(t.as_str()));
                assert_eq!(rec.secret_hash, hash);
                assert!(!rec.revoked);
                let exp = rec.expires_nanos.expect("ttl gives an expiry");
                assert!(exp >= before.nanos + 3600 * 1_000_000_000 - 1_000_000);
                assert!(exp <= Timestamp::now_micros().nanos + 3600 * 1_000_000_000);
                assert!(rec.expires_at.is_some());
                assert!(Timestamp::parse(&rec.created_at).is_ok());
                assert!(rec.is_live(Timestamp::now_micros().nanos));

                let (_, h2) = generate_secret();
                let auditor = store
                    .create_key(NewKey { role: Role::Auditor, tenant_id: None, ttl_seconds: None, secret_hash: h2.clone() })
                    .await
                    .unwrap();
                assert!(auditor.expires_nanos.is_some(), "auditor keys always expire");
                assert_ne!(auditor.id, rec.id);
                let (_, h3) = generate_secret();
                let admin = store
                    .create_key(NewKey { role: Role::Admin, tenant_id: None, ttl_seconds: None, secret_hash: h3.clone() })
                    .await
                    .unwrap();
                assert!(admin.expires_nanos.is_none());
                // Approver keys: stored and found with their role and tenant, like the others.
                let (_, h4) = generate_secret();
                let approver = store
                    .create_key(NewKey { role: Role::Approver, tenant_id: Some(t.clone()), ttl_seconds: None, secret_hash: h4.clone() })
                    .await
                    .unwrap();
                assert_eq!(approver.role, Role::Approver);
                assert_eq!(store.find_key(&h4).await.unwrap().as_ref(), Some(&approver));

                let list = store.list_keys().await.unwrap();
                for k in [&rec, &auditor, &admin, &approver] {
                    assert_eq!(list.iter().find(|x| x.id == k.id), Some(k));
                }
                assert_eq!(store.find_key(&hash).await.unwrap().as_ref(), Some(&rec));
                assert_eq!(store.find_key(&h2).await.unwrap().as_ref(), Some(&auditor));
                let (_, unknown) = generate_secret();
                assert!(store.find_key(&unknown).await.unwrap().is_none());

                assert!(store.revoke_key(&rec.id).await.unwrap());
                let found = store.find_key(&hash).await.unwrap().expect("revoked keys are found");
                assert!(found.revoked);
                assert!(!found.is_live(Timestamp::now_micros().nanos));
                let listed = store.list_keys().await.unwrap();
                assert!(listed.iter().find(|x| x.id == rec.id).unwrap().revoked);
                assert!(!listed.iter().find(|x| x.id == admin.id).unwrap().revoked);
                assert!(store.find_key(&h3).await.unwrap().unwrap().is_live(Timestamp::now_micros().nanos));
                assert!(!store.revoke_key("key_does_not_exist").await.unwrap());
            }

            #[tokio::test]
            async fn ready_then_unavailable_after_shutdown() {
                let (store, _g) = make().await;
                store.ready().await.unwrap();
                let t = tenant("shut");
                store.append(vec![prep(ev(&t, "s.x", |_| {}))]).await.unwrap();
                store.shutdown().await;
                assert!(store.ready().await.is_err());
                let res = store.append(vec![prep(ev(&t, "s.x", |_| {}))]).await;
                assert!(matches!(res, Err(StoreError::Unavailable(_))), "{res:?}");
            }

            /// Every acknowledged event is a leaf of its tenant's tree, at its seq, with its
            /// receipt's leaf hash; roots and proofs agree with an independent in-memory tree.
            #[tokio::test]
            async fn tree_grows_with_every_append_and_proofs_verify() {
                use trailkeep_tlog::{root_from_leaves, verify_consistency, verify_inclusion, MemoryHashes};
                let (store, _g) = make().await;
                let t = tenant("tree");
                let other = tenant("tree_other");
                let first = prep(ev(&t, "tree.x", |m| {
                    m.insert("event_id".into(), json!(uuid()));
                }));
                let mut leaves = vec![store.append(vec![first.clone()]).await.unwrap().receipts[0].leaf_hash];
                // Several appends of various sizes, interleaved with another tenant.
                for n in [1usize, 2, 7, 64, 1, 130] {
                    let batch: Vec<_> = (0..n).map(|_| prep(ev(&t, "tree.x", |_| {}))).collect();
                    let out = store.append(batch).await.unwrap();
                    leaves.extend(out.receipts.iter().map(|r| r.leaf_hash));
                    store.append(vec![prep(ev(&other, "tree.y", |_| {}))]).await.unwrap();
                }
                let size = leaves.len() as u64;
                assert_eq!(store.tree_size(&t).await.unwrap(), size);
                assert_eq!(store.tree_size(&other).await.unwrap(), 6);
                assert_eq!(size, 206);
                assert_eq!(store.tree_size(&tenant("nobody")).await.unwrap(), 0);
                assert_eq!(store.leaves(&t, 0, size).await.unwrap(), leaves);
                let mem = MemoryHashes::from_leaves(leaves.iter().copied());
                for s in [1, 2, 3, 10, 74, size] {
                    let root = store.tree_root(&t, s).await.unwrap();
                    assert_eq!(root, root_from_leaves(leaves[..s as usize].iter().copied()).1, "root at {s}");
                    for i in [0, s / 2, s - 1] {
                        let proof = store.inclusion_proof(&t, i, s).await.unwrap();
                        verify_inclusion(i, s, &leaves[i as usize], &proof, &root).unwrap();
                        assert_eq!(proof, trailkeep_tlog::prove_inclusion(s, i, &mem).unwrap());
                    }
                }
                for (a, b) in [(1, 2), (3, 74), (74, size), (1, size), (size, size)] {
                    let proof = store.consistency_proof(&t, a, b).await.unwrap();
                    let ra = store.tree_root(&t, a).await.unwrap();
                    let rb = store.tree_root(&t, b).await.unwrap();
                    verify_consistency(a, b, &ra, &rb, &proof).unwrap();
                }
                // Out of range is refused, not a panic.
                assert!(matches!(store.tree_root(&t, size + 1).await, Err(StoreError::Invalid(_))));
                assert!(store.inclusion_proof(&t, size, size).await.is_err());
                assert!(store.consistency_proof(&t, 5, 3).await.is_err());
                assert!(store.leaves(&t, 0, size + 1).await.is_err());
                // Duplicates add no leaves.
                let out = store.append(vec![first.clone()]).await.unwrap();
                assert_eq!(out.duplicates, 1);
                assert_eq!(store.tree_size(&t).await.unwrap(), size);
            }

            #[tokio::test]
            async fn checkpoints_are_kept_and_never_replaced_by_a_different_one() {
                use trailkeep_store::SignedCheckpoint;
                let (store, _g) = make().await;
                let t = tenant("cp");
                assert_eq!(store.latest_checkpoint(&t).await.unwrap(), None);
                for _ in 0..3 {
                    store.append(vec![prep(ev(&t, "cp.x", |_| {}))]).await.unwrap();
                }
                let r2 = store.tree_root(&t, 2).await.unwrap();
                let r3 = store.tree_root(&t, 3).await.unwrap();
                let c2 = SignedCheckpoint { size: 2, root: r2, note: "two\n".into() };
                let c3 = SignedCheckpoint { size: 3, root: r3, note: "three\n".into() };
                store.put_checkpoint(&t, c2.clone()).await.unwrap();
                assert_eq!(store.latest_checkpoint(&t).await.unwrap(), Some(c2.clone()));
                store.put_checkpoint(&t, c3.clone()).await.unwrap();
                assert_eq!(store.latest_checkpoint(&t).await.unwrap(), Some(c3.clone()));
                // The same checkpoint again is fine (another server signed the same tree)…
                store.put_checkpoint(&t, c2.clone()).await.unwrap();
                // …a different root for a stored size is refused and changes nothing.
                let forged = SignedCheckpoint { size: 3, root: [9; 32], note: "forged\n".into() };
                assert!(matches!(store.put_checkpoint(&t, forged).await, Err(StoreError::Invalid(_))));
                assert_eq!(store.latest_checkpoint(&t).await.unwrap(), Some(c3));
                // Checkpoints are per tenant.
                assert_eq!(store.latest_checkpoint(&tenant("cp_other")).await.unwrap(), None);
            }
        }
    };
}

/// The embedded backend in a fresh temporary directory.
async fn embedded() -> (Arc<dyn Store>, Guard) {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap();
    (Arc::new(store), Box::new(dir))
}

store_conformance_suite!(embedded_store, crate::embedded());

/// The admin URL of the PostgreSQL server the suite runs against (`TRAILKEEP_TEST_POSTGRES`,
/// default the local trust-auth server that `scripts/test.sh` starts).
fn pg_admin_url() -> String {
    std::env::var("TRAILKEEP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Drops its test database (with `FORCE`, closing the store's connections) when dropped.
struct PgDatabase {
    admin: String,
    name: String,
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((c, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A fresh database (`trailkeep_test_<random>`): its URL, and the guard that drops it.
async fn pg_database() -> (String, PgDatabase) {
    let admin = pg_admin_url();
    let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {admin} ({e}); start it (scripts/test.sh does) or set TRAILKEEP_TEST_POSTGRES")
        });
    tokio::spawn(conn);
    let name = format!("trailkeep_test_{:016x}", rand::random::<u64>());
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let guard = PgDatabase {
        admin: admin.clone(),
        name: name.clone(),
    };
    let url = match admin.rfind('/') {
        Some(i) => format!("{}/{name}", &admin[..i]),
        None => panic!("TRAILKEEP_TEST_POSTGRES must end in /<database>"),
    };
    (url, guard)
}

/// The PostgreSQL backend on a fresh database per test.
async fn postgres() -> (Arc<dyn Store>, Guard) {
    let (url, guard) = pg_database().await;
    let store = PostgresStore::open(&url, PostgresOptions::default())
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"));
    (Arc::new(store), Box::new(guard))
}

store_conformance_suite!(postgres_store, crate::postgres());

#[path = "conformance/durability.rs"]
mod durability;

#[path = "conformance/engine.rs"]
mod engine;

#[path = "conformance/integrity.rs"]
mod integrity;

#[path = "conformance/proxy.rs"]
mod proxy;

#[path = "conformance/faults.rs"]
mod faults;

#[path = "conformance/fuzz.rs"]
mod fuzz;
