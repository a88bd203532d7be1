//! POST /v1/events: happy paths, receipts, sequencing and idempotency.

use crate::common::*;
use serde_json::{json, Value};

fn receipt_ok(r: &Value, id: Option<&str>, tenant: &str, seq: u64) {
    if let Some(id) = id {
        assert_eq!(r["event_id"], json!(id), "receipt {r}");
    }
    assert_eq!(r["tenant_id"], json!(tenant), "receipt {r}");
    assert_eq!(r["seq"], json!(seq), "receipt {r}");
    assert_eq!(
        b64(r["leaf_hash"].as_str().unwrap()).len(),
        32,
        "receipt {r}"
    );
    let mut keys: Vec<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(keys, ["event_id", "leaf_hash", "seq", "tenant_id"]);
}

#[tokio::test]
async fn single_object_assigns_uuidv7_and_timestamp() {
    let api = Api::new().await;
    let before = time::OffsetDateTime::now_utc();
    let v = api.ingest(&ev("t_1", "app.login")).await;
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["duplicates"], 0);
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1);
    receipt_ok(&receipts[0], None, "t_1", 0);
    let id = receipts[0]["event_id"].as_str().unwrap();
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(uuid.get_version_num(), 7, "server-assigned ids are UUIDv7");
    assert_eq!(id, id.to_lowercase());

    let e = api.get_event(id).await;
    e.expect(200);
    let e = e.json();
    let ts = e["timestamp"].as_str().unwrap();
    assert!(ts.ends_with('Z'), "{ts}");
    let parsed =
        time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339).unwrap();
    // Millisecond precision: the assigned time may be truncated below `before` by < 1 ms.
    assert!(parsed >= before - time::Duration::milliseconds(1), "{ts}");
    assert!(parsed <= time::OffsetDateTime::now_utc(), "{ts}");
    assert_eq!(e["payload"], json!({}));
    assert_eq!(e["seq"], 0);
    assert_eq!(e["leaf_hash"], receipts[0]["leaf_hash"]);
}

#[tokio::test]
async fn array_receipts_in_request_order_with_per_tenant_seq() {
    let api = Api::new().await;
    let tenants = ["t_a", "t_b", "t_a", "t_a", "t_b", "_global"];
    let batch: Vec<Value> = tenants
        .iter()
        .map(|t| {
            let mut e = ev(t, "app.thing");
            e["event_id"] = json!(uuid());
            e
        })
        .collect();
    let v = api.ingest(&Value::Array(batch.clone())).await;
    assert_eq!(v["accepted"], 6);
    assert_eq!(v["duplicates"], 0);
    let r = v["receipts"].as_array().unwrap();
    let expected_seq = [0, 0, 1, 2, 1, 0];
    for i in 0..6 {
        receipt_ok(
            &r[i],
            batch[i]["event_id"].as_str(),
            tenants[i],
            expected_seq[i],
        );
    }
    // Distinct leaves for distinct events.
    let mut leaves: Vec<&str> = r.iter().map(|x| x["leaf_hash"].as_str().unwrap()).collect();
    leaves.sort();
    leaves.dedup();
    assert_eq!(leaves.len(), 6);

    // The next request continues each log without gaps.
    let v = api
        .ingest(&json!([ev("t_b", "app.thing"), ev("t_a", "app.thing")]))
        .await;
    let r = v["receipts"].as_array().unwrap();
    receipt_ok(&r[0], None, "t_b", 2);
    receipt_ok(&r[1], None, "t_a", 3);
}

#[tokio::test]
async fn ndjson_with_blank_lines_and_crlf() {
    let api = Api::new().await;
    let a = uuid();
    let b = uuid();
    let c = uuid();
    let mut ea = ev("t_n", "app.a");
    ea["event_id"] = json!(a);
    let mut eb = ev("t_n", "app.b");
    eb["event_id"] = json!(b);
    let mut ec = ev("t_m", "app.c");
    ec["event_id"] = json!(c);
    let body = format!(
        "\n{}\r\n\r\n   \n{}\r\n{}",
        serde_json::to_string(&ea).unwrap(),
        serde_json::to_string(&eb).unwrap(),
        serde_json::to_string(&ec).unwrap()
    );
    let r = api
        .post_raw(Some(ADMIN), Some(NDJSON), body.into_bytes())
        .await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["accepted"], 3);
    let rc = v["receipts"].as_array().unwrap();
    receipt_ok(&rc[0], Some(&a), "t_n", 0);
    receipt_ok(&rc[1], Some(&b), "t_n", 1);
    receipt_ok(&rc[2], Some(&c), "t_m", 0);
    // Content type parameters are fine.
    let r = api
        .post_raw(
            Some(ADMIN),
            Some("application/x-ndjson; charset=utf-8"),
            serde_json::to_vec(&ev("t_n", "app.d")).unwrap(),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json()["receipts"][0]["seq"], 2);
}

#[tokio::test]
async fn json_content_type_with_charset() {
    let api = Api::new().await;
    let r = api
        .post_raw(
            Some(ADMIN),
            Some("application/json; charset=utf-8"),
            serde_json::to_vec(&ev("t_1", "app.x")).unwrap(),
        )
        .await;
    r.expect(200);
}

#[tokio::test]
async fn resend_same_content_is_duplicate_with_original_receipt() {
    let api = Api::new().await;
    let id = uuid();
    let e = ev_full(
        "t_1",
        "app.x",
        &id,
        "2026-01-02T03:04:05.678Z",
        json!({"b": 2, "a": {"y": [1, 2], "x": "s"}}),
    );
    let first = api.ingest(&json!([ev("t_1", "app.y"), e.clone()])).await;
    let orig = first["receipts"][1].clone();
    assert_eq!(orig["seq"], 1);
    let snap = api.snapshot().await;

    let again = api.ingest(&e).await;
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 1);
    assert_eq!(again["receipts"][0], orig);
    api.assert_unchanged(&snap).await;

    // Same content written differently (key order, whitespace, id case, an equivalent
    // timestamp offset) is still the same content.
    let body = format!(
        r#"{{ "payload": {{"a": {{"x": "s", "y": [1,2]}}, "b": 2}}, "timestamp": "2026-01-02T04:04:05.678+01:00",
            "tenant_id": "t_1", "actor": "user:alice@example.com", "event_type": "app.x",
            "event_id": "{}" }}"#,
        id.to_uppercase()
    );
    let r = api
        .post_raw(Some(ADMIN), Some(JSON), body.into_bytes())
        .await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["duplicates"], 1, "{v}");
    assert_eq!(v["accepted"], 0, "{v}");
    assert_eq!(v["receipts"][0], orig);
    api.assert_unchanged(&snap).await;

    // In NDJSON too.
    let r = api.post_ndjson(ADMIN, std::slice::from_ref(&e)).await;
    r.expect(200);
    assert_eq!(r.json()["receipts"][0], orig);
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn resend_without_timestamp_is_duplicate() {
    let api = Api::new().await;
    let id = uuid();
    let mut e = ev("t_1", "app.x");
    e["event_id"] = json!(id);
    let first = api.ingest(&e).await;
    let snap = api.snapshot().await;
    let again = api.ingest(&e).await;
    assert_eq!(again["accepted"], 0);
    assert_eq!(again["duplicates"], 1);
    assert_eq!(again["receipts"][0], first["receipts"][0]);
    api.assert_unchanged(&snap).await;

    // But adding a timestamp the client chooses is different content.
    let mut with_ts = e.clone();
    with_ts["timestamp"] = json!("2026-01-01T00:00:00Z");
    let r = api.post_json(ADMIN, &with_ts).await;
    assert_error(&r, 409, "conflict");
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn resend_different_content_is_conflict_and_stores_nothing() {
    let api = Api::new().await;
    let id = uuid();
    let e = ev_full("t_1", "app.x", &id, "2026-01-02T03:04:05Z", json!({"n": 1}));
    api.ingest(&e).await;
    // A real approval of this very action: the gate lets the changed event through, and its
    // id conflicts.
    let apr = api.approval_for("t_1", "app.x", &json!({"n": 1})).await;
    let snap = api.snapshot().await;

    let variants: Vec<(&str, Value)> = vec![
        ("payload", json!({"n": 2})),
        ("actor", json!("user:bob")),
        ("event_type", json!("app.y")),
        ("tenant_id", json!("t_2")),
        ("timestamp", json!("2026-01-02T03:04:06Z")),
        ("source_ip", json!("10.0.0.1")),
        ("impersonation_session", json!("imp_1")),
        ("approval_id", json!(apr)),
    ];
    for (field, value) in variants {
        let mut changed = e.clone();
        changed[field] = value;
        let r = api.post_json(ADMIN, &changed).await;
        let details = assert_error(&r, 409, "conflict");
        assert!(
            details
                .iter()
                .any(|d| d["index"] == 0 && d["event_id"] == json!(id)),
            "changed {field}: {details:?}"
        );
        api.assert_unchanged(&snap).await;
    }

    // A batch with one new event and one conflicting event stores neither.
    let new_id = uuid();
    let mut fresh = ev("t_1", "app.new");
    fresh["event_id"] = json!(new_id);
    let mut conflicting = e.clone();
    conflicting["payload"] = json!({"n": 3});
    let r = api
        .post_json(ADMIN, &json!([fresh.clone(), conflicting]))
        .await;
    let details = assert_error(&r, 409, "conflict");
    assert!(details.iter().any(|d| d["index"] == 1), "{details:?}");
    api.assert_unchanged(&snap).await;
    assert_error(&api.get_event(&new_id).await, 404, "not_found");

    // The new event alone is then accepted with the next seq: nothing was consumed (seqs 1-4
    // are the approval's steps).
    let v = api.ingest(&fresh).await;
    assert_eq!(v["receipts"][0]["seq"], 5);
}

#[tokio::test]
async fn duplicate_id_inside_one_batch() {
    let api = Api::new().await;
    let id = uuid();
    let e = ev_full("t_1", "app.x", &id, "2026-01-02T03:04:05Z", json!({"k": 1}));
    let v = api
        .ingest(&json!([e.clone(), ev("t_1", "app.other"), e.clone()]))
        .await;
    assert_eq!(v["accepted"], 2);
    assert_eq!(v["duplicates"], 1);
    let r = v["receipts"].as_array().unwrap();
    assert_eq!(r[0], r[2]);
    assert_eq!(r[0]["seq"], 0);
    assert_eq!(r[1]["seq"], 1);

    // Same in a fresh request without timestamps: both assigned → identical content.
    let id2 = uuid();
    let mut e2 = ev("t_1", "app.z");
    e2["event_id"] = json!(id2);
    let v = api.ingest(&json!([e2.clone(), e2.clone()])).await;
    assert_eq!(v["accepted"], 1);
    assert_eq!(v["duplicates"], 1);
    assert_eq!(v["receipts"][0], v["receipts"][1]);
    assert_eq!(v["receipts"][0]["seq"], 2);

    // Different content under one id inside one batch: 409, nothing stored.
    let snap = api.snapshot().await;
    let id3 = uuid();
    let a = ev_full(
        "t_1",
        "app.x",
        &id3,
        "2026-01-02T03:04:05Z",
        json!({"k": 1}),
    );
    let mut b = a.clone();
    b["payload"] = json!({"k": 2});
    let r = api
        .post_json(ADMIN, &json!([ev("t_1", "app.before"), a, b]))
        .await;
    let details = assert_error(&r, 409, "conflict");
    assert!(details.iter().any(|d| d["index"] == 2), "{details:?}");
    api.assert_unchanged(&snap).await;
    assert_error(&api.get_event(&id3).await, 404, "not_found");
}

#[tokio::test]
async fn ten_thousand_events_accepted_in_one_request() {
    let api = Api::new().await;
    // ~3 MB: also proves no smaller hidden body limit applies below the configured 16 MiB.
    let pad = "x".repeat(250);
    let batch: Vec<Value> = (0..10_000)
        .map(|i| {
            let mut e = ev(if i % 2 == 0 { "t_even" } else { "t_odd" }, "bulk.load");
            e["payload"] = json!({"i": i, "pad": pad});
            e
        })
        .collect();
    let body = serde_json::to_vec(&batch).unwrap();
    assert!(body.len() > 2_500_000);
    let r = api.post_raw(Some(ADMIN), Some(JSON), body).await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["accepted"], 10_000);
    let rc = v["receipts"].as_array().unwrap();
    assert_eq!(rc.len(), 10_000);
    assert_eq!(rc[9_998]["seq"], 4_999);
    assert_eq!(rc[9_999]["seq"], 4_999);
    assert_eq!(rc[9_999]["tenant_id"], "t_odd");
}

#[tokio::test]
async fn ingest_key_writes_and_bound_key_writes_own_tenant() {
    let api = Api::new().await;
    let (_, any) = api.create_key("ingest", None).await;
    let (_, bound) = api.create_key("ingest", Some("t_own")).await;
    api.post_json(&any, &json!([ev("t_x", "a.b"), ev("t_own", "a.b")]))
        .await
        .expect(200);
    let r = api.post_json(&bound, &ev("t_own", "a.b")).await;
    r.expect(200);
    assert_eq!(r.json()["receipts"][0]["seq"], 1);
}

#[tokio::test]
async fn source_ip_is_normalised() {
    let api = Api::new().await;
    let cases = [
        ("2001:DB8:0:0::1", "2001:db8::1"),
        ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
        ("203.0.113.7", "203.0.113.7"),
        ("::1", "::1"),
    ];
    for (given, stored) in cases {
        let mut e = ev("t_ip", "net.conn");
        e["source_ip"] = json!(given);
        let v = api.ingest(&e).await;
        let id = v["receipts"][0]["event_id"].as_str().unwrap();
        let r = api.get_event(id).await;
        r.expect(200);
        assert_eq!(r.json()["source_ip"], json!(stored), "{given}");
    }
}

#[tokio::test]
async fn optional_fields_round_trip_and_null_means_absent() {
    let api = Api::new().await;
    let id = uuid();
    let apr = api
        .approval_for("t_1", "app.x", &json!({"z": 1, "a": [true, null, "é"]}))
        .await;
    let e = json!({
        "event_id": id,
        "event_type": "app.x",
        "actor": "svc:crawler",
        "tenant_id": "t_1",
        "payload": {"z": 1, "a": [true, null, "é"]},
        "timestamp": "2026-11-23T11:15:00.1+01:00",
        "source_ip": "203.0.113.7",
        "impersonation_session": "imp_8812",
        "approval_id": apr,
    });
    api.ingest(&e).await;
    let r = api.get_event(&id).await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["timestamp"], "2026-11-23T10:15:00.100Z");
    assert_eq!(v["impersonation_session"], "imp_8812");
    assert_eq!(v["approval_id"], json!(apr));
    assert_eq!(v["actor"], "svc:crawler");
    assert_eq!(v["payload"], json!({"a": [true, null, "é"], "z": 1}));

    let id2 = uuid();
    let mut n = ev("t_1", "app.x");
    n["event_id"] = json!(id2);
    n["source_ip"] = Value::Null;
    n["timestamp"] = Value::Null;
    n["impersonation_session"] = Value::Null;
    api.ingest(&n).await;
    let v = api.get_event(&id2).await.json();
    assert!(v.get("source_ip").is_none(), "{v}");
    assert!(v.get("impersonation_session").is_none(), "{v}");
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn backfilled_past_timestamp_accepted() {
    let api = Api::new().await;
    let mut e = ev("t_1", "app.x");
    e["timestamp"] = json!("1999-12-31T23:59:59.999999Z");
    let v = api.ingest(&e).await;
    let id = v["receipts"][0]["event_id"].as_str().unwrap();
    assert_eq!(
        api.get_event(id).await.json()["timestamp"],
        "1999-12-31T23:59:59.999999Z"
    );
    // A little in the future (well inside the 5-minute allowance) is fine too.
    let mut e = ev("t_1", "app.x");
    e["timestamp"] = json!(now_plus(60));
    api.ingest(&e).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_get_gap_free_seqs() {
    let api = std::sync::Arc::new(Api::new().await);
    let mut tasks = Vec::new();
    for task in 0..16 {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for req in 0..8 {
                let batch: Vec<Value> = (0..3)
                    .map(|i| {
                        let t = if (task + req + i) % 2 == 0 {
                            "t_c1"
                        } else {
                            "t_c2"
                        };
                        ev(t, "conc.test")
                    })
                    .collect();
                let r = api.post_json(ADMIN, &Value::Array(batch)).await;
                r.expect(200);
                receipts.extend(r.json()["receipts"].as_array().unwrap().clone());
            }
            receipts
        }));
    }
    let mut by_tenant: std::collections::BTreeMap<String, Vec<(u64, String)>> = Default::default();
    for t in tasks {
        for r in t.await.unwrap() {
            by_tenant
                .entry(r["tenant_id"].as_str().unwrap().to_string())
                .or_default()
                .push((
                    r["seq"].as_u64().unwrap(),
                    r["event_id"].as_str().unwrap().to_string(),
                ));
        }
    }
    let mut total = 0;
    for (tenant, mut v) in by_tenant {
        v.sort();
        let seqs: Vec<u64> = v.iter().map(|x| x.0).collect();
        let want: Vec<u64> = (0..v.len() as u64).collect();
        assert_eq!(seqs, want, "{tenant}: every seq exactly once");
        total += v.len();
        // The log holds exactly the receipted events at their seqs.
        let log = api
            .get(
                ADMIN,
                &format!("/v1/events?tenant_id={tenant}&from_seq=0&limit=1000"),
            )
            .await
            .json();
        let log = log["events"].as_array().unwrap();
        assert_eq!(log.len(), v.len());
        for e in log {
            let seq = e["seq"].as_u64().unwrap() as usize;
            assert_eq!(e["event_id"], json!(v[seq].1));
        }
    }
    assert_eq!(total, 16 * 8 * 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_resends_store_one_event() {
    let api = std::sync::Arc::new(Api::new().await);
    // Same id, same content, sent by 12 clients at once: one event stored, one receipt.
    let id = uuid();
    let e = ev_full(
        "t_r",
        "retry.x",
        &id,
        "2026-01-01T00:00:00Z",
        json!({"a": 1}),
    );
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let (api, e) = (api.clone(), e.clone());
        tasks.push(tokio::spawn(async move { api.post_json(ADMIN, &e).await }));
    }
    let mut accepted = 0;
    let mut receipts = std::collections::HashSet::new();
    for t in tasks {
        let r = t.await.unwrap();
        r.expect(200);
        let v = r.json();
        accepted += v["accepted"].as_u64().unwrap();
        receipts.insert(v["receipts"][0].to_string());
    }
    assert_eq!(accepted, 1);
    assert_eq!(receipts.len(), 1);
    assert_eq!(api.snapshot().await.events.len(), 1);

    // Same id, different content, at once: exactly one wins, the others are 409.
    let id = uuid();
    let mut tasks = Vec::new();
    for n in 0..12 {
        let api = api.clone();
        let e = ev_full(
            "t_r",
            "race.x",
            &id,
            "2026-01-01T00:00:00Z",
            json!({ "n": n }),
        );
        tasks.push(tokio::spawn(async move { api.post_json(ADMIN, &e).await }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            409 => {
                assert_error(&r, 409, "conflict");
            }
            s => panic!("status {s}: {}", r.text()),
        }
    }
    assert_eq!(ok, 1);
    let snap = api.snapshot().await;
    assert_eq!(snap.events.len(), 2);
    assert_eq!(snap.events[1].1, 1, "seq 1, no gap left by the losers");
}
