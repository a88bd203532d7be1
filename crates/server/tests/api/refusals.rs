//! Every refusal of POST /v1/events (and the auth refusals of reads): status, error shape, and
//! an unchanged store.

use crate::common::*;
use axum::http::Method;
use serde_json::{json, Value};
use trailkeep_server::ServerConfig;

/// An app with a few events already stored, so "unchanged" is not trivially "empty".
async fn seeded() -> (Api, Snapshot) {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_1", "seed.a"), ev("t_2", "seed.b")]))
        .await;
    let snap = api.snapshot().await;
    assert_eq!(snap.events.len(), 2);
    (api, snap)
}

#[tokio::test]
async fn non_json_body_is_400() {
    let (api, snap) = seeded().await;
    for body in [
        &b"not json"[..],
        b"{\"event_type\": ",
        b"[{}, ",
        b"{} {}",
        b"",
        b"   ",
        b"\xff\xfe{}",
    ] {
        let r = api.post_raw(Some(ADMIN), Some(JSON), body.to_vec()).await;
        assert_error(&r, 400, "bad_request");
    }
    // An empty array holds no events.
    let r = api.post_raw(Some(ADMIN), Some(JSON), b"[]".to_vec()).await;
    assert_error(&r, 400, "bad_request");
    // NDJSON with one bad line: the good lines are not stored either.
    let body = format!(
        "{}\nnot json\n{}\n",
        serde_json::to_string(&ev("t_1", "x.y")).unwrap(),
        serde_json::to_string(&ev("t_1", "x.y")).unwrap()
    );
    let r = api
        .post_raw(Some(ADMIN), Some(NDJSON), body.into_bytes())
        .await;
    assert_error(&r, 400, "bad_request");
    let r = api
        .post_raw(Some(ADMIN), Some(NDJSON), b"\n\n".to_vec())
        .await;
    assert_error(&r, 400, "bad_request");
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn wrong_or_missing_content_type_is_400() {
    let (api, snap) = seeded().await;
    let body = serde_json::to_vec(&ev("t_1", "x.y")).unwrap();
    for ct in [
        Some("text/plain"),
        Some("application/xml"),
        Some("multipart/form-data"),
        None,
    ] {
        let r = api.post_raw(Some(ADMIN), ct, body.clone()).await;
        assert_error(&r, 400, "bad_request");
    }
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn unknown_top_level_field_is_422_naming_it() {
    let (api, snap) = seeded().await;
    let mut e = ev("t_1", "x.y");
    e["colour"] = json!("blue");
    assert_invalid(&api.post_json(ADMIN, &e).await, &[(0, "colour")]);
    // Unknown fields are refused even when null.
    let mut e = ev("t_1", "x.y");
    e["seq"] = Value::Null;
    assert_invalid(&api.post_json(ADMIN, &e).await, &[(0, "seq")]);
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn missing_and_empty_required_fields_are_422_with_paths() {
    let (api, snap) = seeded().await;
    let r = api.post_json(ADMIN, &json!({})).await;
    assert_invalid(
        &r,
        &[
            (0, "event_type"),
            (0, "actor"),
            (0, "tenant_id"),
            (0, "payload"),
        ],
    );
    let r = api
        .post_json(
            ADMIN,
            &json!({"event_type": "", "actor": "", "tenant_id": "", "payload": {}}),
        )
        .await;
    assert_invalid(&r, &[(0, "event_type"), (0, "actor"), (0, "tenant_id")]);
    let r = api
        .post_json(
            ADMIN,
            &json!({"event_type": null, "actor": "   ", "tenant_id": "t", "payload": null}),
        )
        .await;
    assert_invalid(&r, &[(0, "event_type"), (0, "actor"), (0, "payload")]);
    // Wrong types.
    let r = api
        .post_json(
            ADMIN,
            &json!({"event_type": 5, "actor": ["a"], "tenant_id": {"t": 1}, "payload": "x",
                    "event_id": 7, "timestamp": 1_700_000_000, "source_ip": false}),
        )
        .await;
    assert_invalid(
        &r,
        &[
            (0, "event_type"),
            (0, "actor"),
            (0, "tenant_id"),
            (0, "payload"),
            (0, "event_id"),
            (0, "timestamp"),
            (0, "source_ip"),
        ],
    );
    // Payload must be an object.
    let mut e = ev("t_1", "x.y");
    e["payload"] = json!([1, 2]);
    assert_invalid(&api.post_json(ADMIN, &e).await, &[(0, "payload")]);
    // Actor over 256 bytes.
    let mut e = ev("t_1", "x.y");
    e["actor"] = json!(format!("user:{}", "a".repeat(252)));
    assert_invalid(&api.post_json(ADMIN, &e).await, &[(0, "actor")]);
    // Bad event_id.
    let mut e = ev("t_1", "x.y");
    e["event_id"] = json!("not-a-uuid");
    assert_invalid(&api.post_json(ADMIN, &e).await, &[(0, "event_id")]);
    // A non-object event in an array.
    let r = api.post_json(ADMIN, &json!([ev("t_1", "x.y"), 5])).await;
    assert_invalid(&r, &[(1, "")]);
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn event_type_pattern_and_length() {
    let (api, snap) = seeded().await;
    for t in [
        "Prompt.update",
        "prompt..update",
        "prompt.",
        ".prompt",
        "1prompt",
        "_prompt",
        "prompt-update",
        "prompt.Update",
        "prompt update",
        "prompté",
        "prompt.update*",
    ] {
        let r = api.post_json(ADMIN, &ev("t_1", t)).await;
        assert_invalid(&r, &[(0, "event_type")]);
    }
    let long = format!("a.{}", "b".repeat(127)); // 129 bytes
    assert_invalid(
        &api.post_json(ADMIN, &ev("t_1", &long)).await,
        &[(0, "event_type")],
    );
    api.assert_unchanged(&snap).await;

    // Valid edge cases.
    let max = format!("a.{}", "b".repeat(126)); // 128 bytes
    for t in ["a", "a1_.2_b", "x.0", &max] {
        api.post_json(ADMIN, &ev("t_1", t)).await.expect(200);
    }
}

#[tokio::test]
async fn tenant_id_pattern_and_global() {
    let (api, snap) = seeded().await;
    for t in [
        "_t",
        "-t",
        ".t",
        "t/1",
        "t 1",
        "t\u{e9}",
        "_GLOBAL",
        "_global_",
        &"a".repeat(129),
    ] {
        let r = api.post_json(ADMIN, &ev(t, "x.y")).await;
        assert_invalid(&r, &[(0, "tenant_id")]);
    }
    api.assert_unchanged(&snap).await;
    for t in ["_global", "T.1:x-y_z", "0", &"a".repeat(128)] {
        let r = api.post_json(ADMIN, &ev(t, "x.y")).await;
        r.expect(200);
        assert_eq!(r.json()["receipts"][0]["tenant_id"], json!(t));
    }
}

#[tokio::test]
async fn bad_source_ip_is_422() {
    let (api, snap) = seeded().await;
    for ip in [
        "999.1.1.1",
        "1.2.3",
        "abc",
        "",
        "2001:db8::g",
        "1.2.3.4:80",
        "[::1]",
        " 1.2.3.4",
    ] {
        let mut e = ev("t_1", "x.y");
        e["source_ip"] = json!(ip);
        assert_invalid(&api.post_json(ADMIN, &e).await, &[(0, "source_ip")]);
    }
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn bad_timestamps_are_422() {
    let (api, snap) = seeded().await;
    for ts in [
        now_plus(10 * 60),
        now_plus(6 * 60),
        "2026-11-23T25:00:00Z".to_string(),
        "2026-11-23T10:15:00.Z".to_string(),
        "23/11/2026 10:15".to_string(),
        // Outside the representable range (years 1678 to 2261).
        "1600-01-01T00:00:00Z".to_string(),
        "0001-01-01T00:00:00Z".to_string(),
        "2026-11-23T10:15:00+25:00".to_string(),
        "2026-11-23".to_string(),
        "yesterday".to_string(),
        "2026-11-23T10:15:00".to_string(),
        "2026-02-30T10:15:00Z".to_string(),
        "".to_string(),
    ] {
        let mut e = ev("t_1", "x.y");
        e["timestamp"] = json!(ts);
        let r = api.post_json(ADMIN, &e).await;
        assert_eq!(r.status, 422, "timestamp {ts:?} accepted: {}", r.text());
        assert_invalid(&r, &[(0, "timestamp")]);
    }
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn numbers_beyond_2_53_are_422_with_path() {
    let (api, snap) = seeded().await;
    let cases: Vec<(&str, &str)> = vec![
        (
            r#"{"a": {"b": [1, 2, 9007199254740992]}}"#,
            "payload.a.b[2]",
        ),
        (r#"{"n": -9007199254740992}"#, "payload.n"),
        (r#"{"n": 18446744073709551616}"#, "payload.n"),
        (r#"{"n": 1e20}"#, "payload.n"),
        (
            r#"{"x": [[0, [12345678901234567890]]]}"#,
            "payload.x[0][1][0]",
        ),
    ];
    for (payload, path) in cases {
        let body = format!(
            r#"{{"event_type": "x.y", "actor": "user:a", "tenant_id": "t_1", "payload": {payload}}}"#
        );
        let r = api
            .post_raw(Some(ADMIN), Some(JSON), body.into_bytes())
            .await;
        assert_invalid(&r, &[(0, path)]);
    }
    api.assert_unchanged(&snap).await;

    // The largest safe integers, and ordinary floats, are accepted and kept exactly.
    let body = r#"{"event_type": "x.y", "actor": "user:a", "tenant_id": "t_1",
        "payload": {"max": 9007199254740991, "min": -9007199254740991, "f": 0.5}}"#;
    let r = api
        .post_raw(Some(ADMIN), Some(JSON), body.as_bytes().to_vec())
        .await;
    r.expect(200);
    let id = r.json()["receipts"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    let e = api.get_event(&id).await;
    assert!(
        e.text()
            .contains(r#""payload":{"f":0.5,"max":9007199254740991,"min":-9007199254740991}"#),
        "{}",
        e.text()
    );
}

fn nested(depth: usize) -> Value {
    // `depth` objects in total, the payload itself included.
    let mut v = json!({"leaf": 1});
    for _ in 1..depth {
        v = json!({ "a": v });
    }
    v
}

#[tokio::test]
async fn payload_depth_limit() {
    let (api, snap) = seeded().await;
    let mut e = ev("t_1", "x.y");
    e["payload"] = nested(33);
    let r = api.post_json(ADMIN, &e).await;
    let details = assert_invalid(&r, &[]);
    assert!(
        details
            .iter()
            .any(|d| d["path"].as_str().unwrap().starts_with("payload.a")),
        "{details:?}"
    );
    // Arrays count as nesting too.
    let arrays = |n: usize| {
        let mut v = json!([1]);
        for _ in 1..n {
            v = json!([v]);
        }
        json!({ "arr": v })
    };
    let mut e = ev("t_1", "x.y");
    e["payload"] = arrays(32); // 1 + 32 levels
    assert_invalid(&api.post_json(ADMIN, &e).await, &[]);
    api.assert_unchanged(&snap).await;

    let mut e = ev("t_1", "x.y");
    e["payload"] = nested(32);
    api.post_json(ADMIN, &e).await.expect(200);
    let mut e = ev("t_1", "x.y");
    e["payload"] = arrays(31);
    api.post_json(ADMIN, &e).await.expect(200);
}

#[tokio::test]
async fn event_over_256_kib_is_413() {
    let (api, snap) = seeded().await;
    let mut big = ev("t_1", "x.y");
    big["payload"] = json!({"blob": "x".repeat(256 * 1024)});
    let r = api.post_json(ADMIN, &big).await;
    assert_error(&r, 413, "event_too_large");
    let r = api
        .post_json(ADMIN, &json!([ev("t_1", "x.y"), big.clone()]))
        .await;
    assert_error(&r, 413, "event_too_large");
    let r = api.post_ndjson(ADMIN, &[ev("t_1", "x.y"), big]).await;
    assert_error(&r, 413, "event_too_large");
    api.assert_unchanged(&snap).await;

    // Just under the limit is fine.
    let mut ok = ev("t_1", "x.y");
    ok["payload"] = json!({"blob": "x".repeat(255 * 1024)});
    api.post_json(ADMIN, &ok).await.expect(200);
}

#[tokio::test]
async fn body_over_configured_limit_is_413() {
    let api = Api::with_config(ServerConfig {
        max_body_bytes: 1024,
        ..ServerConfig::default()
    })
    .await;
    api.ingest(&ev("t_1", "seed")).await;
    let snap = api.snapshot().await;
    let batch: Vec<Value> = (0..20).map(|_| ev("t_1", "x.y")).collect();
    let body = serde_json::to_vec(&batch).unwrap();
    assert!(body.len() > 1024);
    let r = api.post_raw(Some(ADMIN), Some(JSON), body).await;
    assert_error(&r, 413, "body_too_large");
    let r = api.post_ndjson(ADMIN, &batch).await;
    assert_error(&r, 413, "body_too_large");
    api.assert_unchanged(&snap).await;
    // Under the limit still works.
    let body = serde_json::to_vec(&batch[..3]).unwrap();
    assert!(body.len() < 1024);
    api.post_raw(Some(ADMIN), Some(JSON), body)
        .await
        .expect(200);
}

#[tokio::test]
async fn more_than_10000_events_is_413() {
    let (api, snap) = seeded().await;
    let batch: Vec<Value> = (0..10_001).map(|_| ev("t_1", "x.y")).collect();
    let r = api.post_json(ADMIN, &Value::Array(batch.clone())).await;
    assert_error(&r, 413, "too_many_events");
    let r = api.post_ndjson(ADMIN, &batch).await;
    assert_error(&r, 413, "too_many_events");
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn reserved_event_types_are_422() {
    let (api, snap) = seeded().await;
    for t in [
        "approval.request",
        "approval.granted",
        "review.signoff",
        "retention.purge",
        "retention.erase",
        "audit.read",
        "sink.x",
    ] {
        let r = api.post_json(ADMIN, &ev("t_1", t)).await;
        assert_invalid(&r, &[(0, "event_type")]);
    }
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn every_invalid_event_is_reported_with_its_index() {
    let (api, snap) = seeded().await;
    let mut bad1 = ev("t_1", "x.y");
    bad1["tenant_id"] = json!("bad tenant");
    let mut bad3 = ev("t_1", "x.y");
    bad3["source_ip"] = json!("nope");
    bad3["event_type"] = json!("Nope");
    let r = api
        .post_json(
            ADMIN,
            &json!([ev("t_1", "x.y"), bad1, ev("t_1", "x.y"), bad3]),
        )
        .await;
    let details = assert_invalid(&r, &[(1, "tenant_id"), (3, "source_ip"), (3, "event_type")]);
    assert!(details.len() >= 3);
    assert!(
        details.iter().all(|d| d["index"] == 1 || d["index"] == 3),
        "valid events are not reported: {details:?}"
    );
    // Same in NDJSON.
    let mut bad0 = ev("t_1", "x.y");
    bad0.as_object_mut().unwrap().remove("actor");
    let r = api
        .post_ndjson(ADMIN, &[bad0, ev("t_1", "x.y"), ev("t_1", "audit.read")])
        .await;
    let details = assert_invalid(&r, &[(0, "actor"), (2, "event_type")]);
    assert!(details.iter().all(|d| d["index"] != 1), "{details:?}");
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn missing_unknown_and_malformed_keys_are_401() {
    let (api, snap) = seeded().await;
    let body = serde_json::to_vec(&ev("t_1", "x.y")).unwrap();
    let r = api.post_raw(None, Some(JSON), body.clone()).await;
    assert_error(&r, 401, "unauthorized");
    let r = api.post_raw(Some("nope"), Some(JSON), body.clone()).await;
    assert_error(&r, 401, "unauthorized");
    // Not a Bearer header.
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/events")
        .header("authorization", format!("Basic {ADMIN}"))
        .header("content-type", JSON)
        .body(axum::body::Body::from(body.clone()))
        .unwrap();
    let resp = tower::ServiceExt::oneshot(api.router.clone(), req)
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // Reads too.
    for uri in ["/v1/events", "/v1/tenants", "/v1/stats", "/v1/keys"] {
        let r = api.request(Method::GET, uri, None, None, Vec::new()).await;
        assert_error(&r, 401, "unauthorized");
        let r = api.get("tk_unknown", uri).await;
        assert_error(&r, 401, "unauthorized");
    }
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn revoked_key_is_401() {
    let (api, _) = seeded().await;
    let (id, key) = api.create_key("ingest", None).await;
    api.post_json(&key, &ev("t_1", "x.y")).await.expect(200);
    let snap = api.snapshot().await;
    let r = api
        .request(
            Method::DELETE,
            &format!("/v1/keys/{id}"),
            Some(ADMIN),
            None,
            Vec::new(),
        )
        .await;
    r.expect(204);
    let r = api.post_json(&key, &ev("t_1", "x.y")).await;
    assert_error(&r, 401, "unauthorized");
    api.assert_unchanged(&snap).await;
    // GET /v1/keys shows it revoked.
    let v = api.get(ADMIN, "/v1/keys").await.json();
    let k = v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == json!(id))
        .unwrap()
        .clone();
    assert_eq!(k["revoked"], true);
}

#[tokio::test]
async fn expired_key_is_401() {
    let (api, _) = seeded().await;
    let r = api
        .request(
            Method::POST,
            "/v1/keys",
            Some(ADMIN),
            Some(JSON),
            br#"{"role": "reader", "ttl": "1s"}"#.to_vec(),
        )
        .await;
    r.expect(201);
    let key = r.json()["key"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(&api.get(&key, "/v1/tenants").await, 401, "unauthorized");
}

#[tokio::test]
async fn role_checks_are_403() {
    let (api, snap) = seeded().await;
    let (_, ingest) = api.create_key("ingest", None).await;
    let (_, reader) = api.create_key("reader", None).await;
    let (_, auditor) = api.create_key("auditor", None).await;
    let id = snap.events[0].2.clone();
    for uri in [
        "/v1/events".to_string(),
        "/v1/tenants".to_string(),
        "/v1/stats".to_string(),
        format!("/v1/events/{id}"),
    ] {
        assert_error(&api.get(&ingest, &uri).await, 403, "forbidden");
        api.get(&reader, &uri).await.expect(200);
    }
    for key in [&reader, &auditor] {
        let r = api.post_json(key, &ev("t_1", "x.y")).await;
        assert_error(&r, 403, "forbidden");
    }
    // Only admins manage keys.
    for key in [&ingest, &reader, &auditor] {
        assert_error(&api.get(key, "/v1/keys").await, 403, "forbidden");
        let r = api
            .request(
                Method::POST,
                "/v1/keys",
                Some(key),
                Some(JSON),
                br#"{"role":"admin"}"#.to_vec(),
            )
            .await;
        assert_error(&r, 403, "forbidden");
    }
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn bound_ingest_key_cannot_write_other_tenant() {
    let (api, snap) = seeded().await;
    let (_, bound) = api.create_key("ingest", Some("t_1")).await;
    let own = uuid();
    let mut e_own = ev("t_1", "x.y");
    e_own["event_id"] = json!(own);
    let r = api
        .post_json(&bound, &json!([e_own.clone(), ev("t_2", "x.y")]))
        .await;
    assert_error(&r, 403, "forbidden");
    let r = api
        .post_ndjson(&bound, &[e_own.clone(), ev("_global", "x.y")])
        .await;
    assert_error(&r, 403, "forbidden");
    api.assert_unchanged(&snap).await;
    assert_error(&api.get_event(&own).await, 404, "not_found");
}

#[tokio::test]
async fn bound_reader_is_confined_to_its_tenant() {
    let api = Api::new().await;
    let v = api
        .ingest(&json!([
            ev("t_1", "x.y"),
            ev("t_2", "x.y"),
            ev("t_1", "x.z")
        ]))
        .await;
    let other_id = v["receipts"][1]["event_id"].as_str().unwrap().to_string();
    let own_id = v["receipts"][0]["event_id"].as_str().unwrap().to_string();
    let (_, reader) = api.create_key("reader", Some("t_1")).await;

    assert_error(
        &api.get(&reader, "/v1/events?tenant_id=t_2").await,
        403,
        "forbidden",
    );
    assert_error(
        &api.get(&reader, "/v1/stats?tenant_id=t_2").await,
        403,
        "forbidden",
    );
    assert_error(
        &api.get(&reader, "/v1/events?tenant_id=t_2&from_seq=0")
            .await,
        403,
        "forbidden",
    );
    let r = api.get(&reader, &format!("/v1/events/{other_id}")).await;
    let missing_id = uuid();
    let missing = api.get(&reader, &format!("/v1/events/{missing_id}")).await;
    assert_error(&r, 404, "not_found");
    assert_error(&missing, 404, "not_found");
    // The answer must not tell "exists in another tenant" apart from "does not exist".
    assert_eq!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&other_id, "ID"),
        missing.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&missing_id, "ID"),
    );
    api.get(&reader, &format!("/v1/events/{own_id}"))
        .await
        .expect(200);

    // Unfiltered reads are confined to the bound tenant.
    let all = walk(&api, &reader, "/v1/events?limit=10").await;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|e| e["tenant_id"] == "t_1"));
    let t = api.get(&reader, "/v1/tenants").await.json();
    let t = t["tenants"].as_array().unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t[0]["tenant_id"], "t_1");
    let s = api.get(&reader, "/v1/stats").await.json();
    assert_eq!(s["total"], 2);
    let l = api.get(&reader, "/v1/events?from_seq=1").await.json();
    let l = l["events"].as_array().unwrap();
    assert_eq!(l.len(), 1);
    assert_eq!(l[0]["tenant_id"], "t_1");
    assert_eq!(l[0]["seq"], 1);
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after() {
    let api = Api::with_config(ServerConfig {
        rate_limit_rps: 1.0,
        rate_limit_burst: 2.0,
        ..ServerConfig::default()
    })
    .await;
    let (_, key) = api.store_key(trailkeep_store::Role::Admin, None).await;
    let (_, other) = api.store_key(trailkeep_store::Role::Admin, None).await;
    api.post_json(&key, &ev("t_1", "x.y")).await.expect(200);
    api.get(&key, "/v1/tenants").await.expect(200);
    let snap = api.snapshot().await;
    let r = api.post_json(&key, &ev("t_1", "x.y")).await;
    assert_error(&r, 429, "rate_limited");
    let ra: u64 = r
        .headers
        .get("retry-after")
        .expect("Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(ra >= 1);
    api.assert_unchanged(&snap).await;
    // Another key has its own budget.
    api.get(&other, "/v1/tenants").await.expect(200);
}

#[tokio::test]
async fn invalid_path_parameter_is_json_error() {
    let api = Api::new().await;
    let r = api.get(ADMIN, "/v1/events/not-a-uuid").await;
    assert_error(&r, 400, "bad_request");
    // Percent-encoded bytes that are not UTF-8 must still get the JSON error shape.
    let r = api.get(ADMIN, "/v1/events/%FF").await;
    assert!(r.status.is_client_error(), "{}", r.status);
    let v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| {
        panic!(
            "{} body is not JSON: {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        )
    });
    assert!(v["error"]["code"].is_string(), "{v}");
}

/// docs/api.md#errors: a query parameter given twice is a 400 (which value would count is anyone's guess),
/// and so is one the endpoint does not know, on every endpoint that takes query parameters.
#[tokio::test]
async fn repeated_or_unknown_query_parameters_are_400() {
    let (api, snap) = seeded().await;
    for (path, param, value) in [
        ("/v1/events", "tenant_id", "t_1"),
        ("/v1/events", "limit", "1"),
        ("/v1/stats", "tenant_id", "t_1"),
        ("/v1/tenants/t_1/proof/inclusion", "seq", "0"),
        ("/v1/tenants/t_1/proof/consistency", "from", "1"),
        ("/v1/tenants/t_1/leaves", "start", "0"),
    ] {
        let once = api.get(ADMIN, &format!("{path}?{param}={value}")).await;
        assert!(
            once.status != 400 || !once.text().contains("more than once"),
            "{path}: {}",
            once.text()
        );
        let twice = api
            .get(ADMIN, &format!("{path}?{param}={value}&{param}={value}"))
            .await;
        assert_error(&twice, 400, "bad_request");
        assert!(twice.text().contains("more than once"), "{}", twice.text());
        let unknown = api
            .get(ADMIN, &format!("{path}?{param}={value}&tenantid=t_2"))
            .await;
        assert_error(&unknown, 400, "bad_request");
        assert!(unknown.text().contains("tenantid"), "{}", unknown.text());
    }
    // The same value or different ones alike.
    let r = api
        .get(ADMIN, "/v1/events?tenant_id=t_1&tenant_id=t_2")
        .await;
    assert_error(&r, 400, "bad_request");
    api.assert_unchanged(&snap).await;
}

/// Every route of the table refuses a query parameter it does not take, and one it takes given
/// twice, before anything else (so the parameterless ones too: `/healthz`, `/v1/tenants`, …).
#[tokio::test]
async fn every_route_refuses_unknown_and_repeated_query_parameters() {
    let (api, snap) = seeded().await;
    let routes = trailkeep_server::routes();
    assert!(routes.iter().any(|r| r.params.is_empty()));
    for r in &routes {
        let path = r
            .path
            .replace("{event_id}", &uuid())
            .replace("{tenant}", "t_1")
            .replace("{id}", "key_000000000000");
        for query in ["tenant_id=t_1&x=1", "note=hi", "=", "tenant%5Fidx=t_1"] {
            let resp = api
                .request(
                    r.method.clone(),
                    &format!("{path}?{query}"),
                    Some(ADMIN),
                    Some(JSON),
                    Vec::new(),
                )
                .await;
            let what = format!("{} {path}?{query}", r.method);
            if r.params.contains(&"tenant_id") && query == "tenant_id=t_1&x=1" {
                assert!(resp.text().contains(r#"\"x\""#), "{what}: {}", resp.text());
            }
            assert_error(&resp, 400, "bad_request");
            assert!(
                resp.text().contains("unknown query parameter"),
                "{what}: {}",
                resp.text()
            );
        }
        for p in r.params {
            let resp = api
                .request(
                    r.method.clone(),
                    &format!("{path}?{p}=1&{p}=1"),
                    Some(ADMIN),
                    Some(JSON),
                    Vec::new(),
                )
                .await;
            assert_error(&resp, 400, "bad_request");
            assert!(resp.text().contains("more than once"), "{}", resp.text());
        }
    }
    // An empty query (`?`) is no parameter.
    api.get(ADMIN, "/healthz?").await.expect(200);
    api.get(ADMIN, "/v1/tenants?").await.expect(200);
    api.assert_unchanged(&snap).await;
}

/// Fuzz of ingest bodies over the API: valid batches mutated (bytes replaced, inserted or
/// removed, the body cut short) and sent as JSON or NDJSON. Never a 5xx; a refused request
/// stores nothing (the store is unchanged); an accepted one stores exactly what it answered.
#[test]
fn fuzzed_ingest_bodies_never_fail_the_server_and_a_refusal_stores_nothing() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestCaseError, TestRunner};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let api = rt.block_on(Api::new());
    let base: Vec<Value> = (0..3)
        .map(|i| {
            json!({"event_type": "prompt.update", "actor": "user:fz@example.com",
                   "tenant_id": format!("t_fz{i}"),
                   "payload": {"prompt_id": "pr_1", "editor": "user:fz@example.com",
                               "reason": "fuzz", "n": i, "s": "a\u{e9}\u{1F600}",
                               "before": {"prompt_hash": format!("sha256:{}", "1".repeat(64))},
                               "after": {"prompt_hash": format!("sha256:{}", "2".repeat(64))}}})
        })
        .collect();
    let json_body = serde_json::to_vec(&base).unwrap();
    let ndjson_body: Vec<u8> = base
        .iter()
        .flat_map(|e| {
            let mut l = serde_json::to_vec(e).unwrap();
            l.push(b'\n');
            l
        })
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 96,
        failure_persistence: None,
        ..Config::default()
    });
    let accepted = std::cell::Cell::new(0usize);
    let refused = std::cell::Cell::new(0usize);
    let strategy = (
        any::<bool>(),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 0..4),
        prop::option::of(any::<prop::sample::Index>()),
    );
    runner
        .run(&strategy, |(ndjson, edits, cut)| {
            let (mut body, ct) = if ndjson {
                (ndjson_body.clone(), "application/x-ndjson")
            } else {
                (json_body.clone(), "application/json")
            };
            for (at, op, byte) in &edits {
                if body.is_empty() {
                    break;
                }
                let i = at.index(body.len());
                match op {
                    0 => body[i] = *byte,
                    1 => body.insert(i, *byte),
                    2 => {
                        body.remove(i);
                    }
                    // A structural character, more likely to reach the validator's corners.
                    _ => {
                        const STRUCTURE: &[u8] = b"{}[]\",:\\0e-";
                        body[i] = STRUCTURE[usize::from(*byte) % STRUCTURE.len()];
                    }
                }
            }
            if let Some(c) = cut {
                let n = c.index(body.len() + 1);
                body.truncate(n);
            }
            rt.block_on(async {
                let before = api.snapshot().await;
                let r = api
                    .request(
                        Method::POST,
                        "/v1/events",
                        Some(ADMIN),
                        Some(ct),
                        body.clone(),
                    )
                    .await;
                let status = r.status.as_u16();
                prop_assert!(
                    status < 500,
                    "{status} for {:?}: {}",
                    String::from_utf8_lossy(&body),
                    r.text()
                );
                if status == 200 {
                    accepted.set(accepted.get() + 1);
                    let v = r.json();
                    let after = api.snapshot().await;
                    let new = after.events.len() - before.events.len();
                    prop_assert_eq!(new as u64, v["accepted"].as_u64().unwrap_or(0));
                } else {
                    refused.set(refused.get() + 1);
                    let after = api.snapshot().await;
                    prop_assert_eq!(
                        &after,
                        &before,
                        "a refused request ({}) changed the store",
                        status
                    );
                }
                Ok::<(), TestCaseError>(())
            })
        })
        .unwrap();
    // The mutations reach both outcomes (an unmutated body is accepted; most edits refuse).
    assert!(refused.get() > 10, "refused {}", refused.get());
    assert!(accepted.get() > 0, "accepted {}", accepted.get());
}
