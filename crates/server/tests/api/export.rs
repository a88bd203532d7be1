//! GET /v1/export (every format, filters, scope, snapshot, refusals) and GET /v1/export/bundle
//! (verified with the offline verifier; refusals).

use crate::common::*;
use axum::http::Method;
use serde_json::{json, Value};
use std::collections::HashSet;
use tower::ServiceExt;

/// 30 events in t_x (10 each of three types, one per minute), 5 in t_y.
async fn seeded() -> Api {
    let api = Api::new().await;
    let mut batch = Vec::new();
    for i in 0..30 {
        let t = ["billing.plan.change_x", "billing.quota_x", "crawl.done"][i % 3];
        batch.push(ev_full(
            "t_x",
            t,
            &uuid(),
            &format!("2026-03-01T10:{:02}:00.123456789Z", i),
            json!({"i": i, "note": if i == 7 { "=HYPERLINK(\"x\")" } else { "plain, \"quoted\"\nline" }}),
        ));
    }
    for i in 0..5 {
        batch.push(ev_full(
            "t_y",
            "crawl.done",
            &uuid(),
            &format!("2026-03-01T11:{:02}:00Z", i),
            json!({"i": i}),
        ));
    }
    api.ingest(&Value::Array(batch)).await;
    api
}

fn ndjson_objects(body: &[u8]) -> Vec<Value> {
    let text = std::str::from_utf8(body).expect("utf-8");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "NDJSON ends with a newline"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("line is JSON"))
        .collect()
}

/// Every page of a listing, in order.
async fn listing(api: &Api, query: &str) -> Vec<Value> {
    walk(api, ADMIN, &format!("/v1/events?{query}")).await
}

#[tokio::test]
async fn ndjson_lines_are_exactly_the_events_the_api_returns() {
    let api = seeded().await;
    let r = api
        .get(ADMIN, "/v1/export?tenant_id=t_x&format=ndjson")
        .await;
    r.expect(200);
    assert_eq!(r.headers["content-type"], "application/x-ndjson");
    assert!(r.headers["content-disposition"]
        .to_str()
        .unwrap()
        .contains("trailkeep-t_x-"));
    let text = String::from_utf8(r.body.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 30);
    // Byte for byte what GET /v1/events/{id} answers (salt and leaf hash included).
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap();
        let one = api
            .get(
                ADMIN,
                &format!("/v1/events/{}", v["event_id"].as_str().unwrap()),
            )
            .await;
        one.expect(200);
        assert_eq!(line.as_bytes(), &one.body[..]);
        assert!(v["payload_salt"].is_string() && v["leaf_hash"].is_string());
    }
    // The listing's order: newest first by default, oldest first with order=asc.
    let want = listing(&api, "tenant_id=t_x&limit=7").await;
    assert_eq!(ndjson_objects(&r.body), want);
    let asc = api.get(ADMIN, "/v1/export?tenant_id=t_x&order=asc").await;
    asc.expect(200);
    assert_eq!(
        ndjson_objects(&asc.body),
        listing(&api, "tenant_id=t_x&order=asc&limit=9").await
    );
}

#[tokio::test]
async fn every_filter_of_a_listing_applies() {
    let api = seeded().await;
    for q in [
        "tenant_id=t_x&event_type=billing.*",
        "tenant_id=t_x&event_type=crawl.done",
        "event_type=crawl.done",
        "since=2026-03-01T10:05:00Z&until=2026-03-01T11:02:00Z",
        "tenant_id=t_x&q=HYPERLINK",
        "actor=user:alice@example.com&order=asc",
        "session=none",
    ] {
        let r = api.get(ADMIN, &format!("/v1/export?{q}")).await;
        r.expect(200);
        assert_eq!(
            ndjson_objects(&r.body),
            listing(&api, &format!("{q}&limit=4")).await,
            "filter {q}"
        );
    }
}

#[tokio::test]
async fn json_is_one_array_of_the_same_objects() {
    let api = seeded().await;
    let nd = api.get(ADMIN, "/v1/export?tenant_id=t_y").await;
    let js = api.get(ADMIN, "/v1/export?tenant_id=t_y&format=json").await;
    js.expect(200);
    assert_eq!(js.headers["content-type"], "application/json");
    assert_eq!(js.json(), Value::Array(ndjson_objects(&nd.body)));
    let empty = api
        .get(ADMIN, "/v1/export?tenant_id=t_nobody&format=json")
        .await;
    empty.expect(200);
    assert_eq!(empty.json(), json!([]));
    let empty = api.get(ADMIN, "/v1/export?tenant_id=t_nobody").await;
    empty.expect(200);
    assert!(empty.body.is_empty());
}

#[tokio::test]
async fn csv_has_the_fixed_header_and_neutralises_formulas() {
    let api = seeded().await;
    let r = api
        .get(ADMIN, "/v1/export?tenant_id=t_x&format=csv&order=asc")
        .await;
    r.expect(200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    let text = r.text();
    assert!(
        text.starts_with("event_id,event_type,actor,tenant_id,timestamp,source_ip,seq,payload\r\n")
    );
    // One record per event: quoted newlines inside payloads do not start records (canonical
    // JSON escapes them), so every record ends with CRLF.
    assert_eq!(text.matches("\r\n").count(), 31);
    // Timestamps exactly as the API returns them.
    assert!(text.contains(",2026-03-01T10:00:00.123456789Z,"));
    // A payload cell is JSON, quoted because it holds commas and quotes; never prefixed.
    assert!(text.contains("\"{\"\"i\"\":7,\"\"note\"\":\"\"=HYPERLINK"));
}

#[tokio::test]
async fn parquet_is_a_parquet_file() {
    let api = seeded().await;
    let r = api
        .get(ADMIN, "/v1/export?tenant_id=t_x&format=parquet")
        .await;
    r.expect(200);
    assert_eq!(r.headers["content-type"], "application/vnd.apache.parquet");
    assert!(r.body.len() > 8);
    assert_eq!(&r.body[..4], b"PAR1");
    assert_eq!(&r.body[r.body.len() - 4..], b"PAR1");
}

#[tokio::test]
async fn scope_is_a_listings_scope() {
    let api = seeded().await;
    let (_, bound) = api.create_key("reader", Some("t_y")).await;
    // A bound key without tenant_id exports its own tenant only.
    let r = api.get(&bound, "/v1/export").await;
    r.expect(200);
    let events = ndjson_objects(&r.body);
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|e| e["tenant_id"] == "t_y"));
    for uri in [
        "/v1/export?tenant_id=t_x",
        "/v1/export/bundle?tenant_id=t_x",
    ] {
        assert_error(&api.get(&bound, uri).await, 403, "forbidden");
    }
    let (_, ingest) = api.create_key("ingest", None).await;
    assert_error(&api.get(&ingest, "/v1/export").await, 403, "forbidden");
    let r = api
        .request(Method::GET, "/v1/export", None, None, Vec::new())
        .await;
    assert_error(&r, 401, "unauthorized");
}

#[tokio::test]
async fn bad_requests_are_refused_before_anything_starts() {
    let api = seeded().await;
    for (uri, needle) in [
        ("/v1/export?format=xml", "format"),
        ("/v1/export?limit=10", "limit"),
        ("/v1/export?cursor=abc", "cursor"),
        ("/v1/export?tenantid=t_x", "tenantid"),
        ("/v1/export?format=csv&format=json", "more than once"),
        (
            "/v1/export?since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z",
            "since",
        ),
        ("/v1/export?since=yesterday", "since"),
        ("/v1/export?event_type=Bad", "event_type"),
        ("/v1/export?tenant_id=bad%20tenant", "tenant_id"),
        ("/v1/export?order=sideways", "order"),
        ("/v1/export/bundle", "tenant_id"),
        ("/v1/export/bundle?tenant_id=t_x&compress=zip", "compress"),
        ("/v1/export/bundle?tenant_id=t_x&format=csv", "format"),
        (
            "/v1/export/bundle?tenant_id=t_x&since=2026-03-02T00:00:00Z&until=2026-03-01T00:00:00Z",
            "since",
        ),
    ] {
        let r = api.get(ADMIN, uri).await;
        assert_error(&r, 400, "bad_request");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(needle), "{uri}: {msg}");
    }
    assert_error(
        &api.get(ADMIN, "/v1/export/bundle?tenant_id=t_nobody").await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn an_auditors_export_is_logged_before_it_is_sent() {
    let api = seeded().await;
    let (id, auditor) = api.create_key("auditor", Some("t_x")).await;
    api.get(&auditor, "/v1/export?format=csv").await.expect(200);
    api.get(&auditor, "/v1/export/bundle").await.expect(200);
    let logged = listing(&api, "tenant_id=t_x&event_type=audit.read&order=asc").await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0]["payload"]["path"], "/v1/export");
    assert_eq!(logged[0]["payload"]["key_id"], json!(id));
    assert_eq!(logged[1]["payload"]["path"], "/v1/export/bundle");
}

/// The snapshot is taken when the answer starts: events stored while the body is still being
/// read are not in it, every event stored before is.
#[tokio::test]
async fn an_export_is_a_snapshot_of_when_it_started() {
    let api = seeded().await;
    let req = axum::http::Request::builder()
        .uri("/v1/export?tenant_id=t_x&order=asc")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = api.router.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let later: Vec<Value> = (0..50).map(|_| ev("t_x", "after.start")).collect();
    api.ingest(&Value::Array(later)).await;
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let got = ndjson_objects(&body);
    assert_eq!(got.len(), 30);
    let ids: HashSet<&str> = got
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 30, "no event twice");
    assert!(got.iter().all(|e| e["event_type"] != "after.start"));
}

#[tokio::test]
async fn a_bundle_verifies_offline_and_covers_exactly_its_range() {
    let api = seeded().await;
    let verifier = api.state.log.as_ref().unwrap().verifier.clone();
    for (q, want) in [
        ("tenant_id=t_x", 30),
        (
            "tenant_id=t_x&since=2026-03-01T10:10:00Z&until=2026-03-01T10:20:00Z",
            10,
        ),
        ("tenant_id=t_x&since=2027-01-01T00:00:00Z", 0),
        ("tenant_id=t_y&compress=gzip", 5),
    ] {
        let r = api.get(ADMIN, &format!("/v1/export/bundle?{q}")).await;
        r.expect(200);
        let gz = q.contains("gzip");
        assert_eq!(
            r.headers["content-type"],
            if gz {
                "application/gzip"
            } else {
                "application/x-tar"
            }
        );
        let report = trailkeep_export::bundle::verify_bundle(&r.body[..], Some(&verifier))
            .unwrap_or_else(|e| panic!("{q}: {e}"));
        assert_eq!(report.manifest.count, want, "{q}");
    }
    // Events stored after the last checkpoint are covered: the bundle signs what it needs.
    api.ingest(&json!([ev("t_y", "fresh.event")])).await;
    let r = api.get(ADMIN, "/v1/export/bundle?tenant_id=t_y").await;
    r.expect(200);
    let report = trailkeep_export::bundle::verify_bundle(&r.body[..], Some(&verifier)).unwrap();
    assert_eq!(report.manifest.count, 6);
}

#[tokio::test]
async fn exports_beyond_the_limit_get_429_with_retry_after() {
    let api = seeded().await;
    let n = api.state.config.max_exports;
    assert_eq!(n, trailkeep_server::DEFAULT_MAX_EXPORTS);
    // Every permit taken, as by exports still streaming.
    let held = api
        .state
        .exports
        .clone()
        .try_acquire_many_owned(n as u32)
        .unwrap();
    for uri in [
        "/v1/export?tenant_id=t_x",
        "/v1/export/bundle?tenant_id=t_x",
    ] {
        let r = api.get(ADMIN, uri).await;
        assert_error(&r, 429, "rate_limited");
        assert_eq!(r.headers["retry-after"], "5");
    }
    drop(held);
    api.get(ADMIN, "/v1/export?tenant_id=t_x").await.expect(200);
    // A finished export gives its permit back (when its producer thread ends).
    for _ in 0..100 {
        if api.state.exports.available_permits() == n {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(api.state.exports.available_permits(), n);
}

#[tokio::test]
async fn head_answers_the_headers_without_reading() {
    let api = seeded().await;
    let (_, auditor) = api.create_key("auditor", Some("t_x")).await;
    let r = api
        .request(
            Method::HEAD,
            "/v1/export?format=csv",
            Some(&auditor),
            None,
            Vec::new(),
        )
        .await;
    r.expect(200);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(r.body.is_empty());
    let r = api
        .request(
            Method::HEAD,
            "/v1/export/bundle?compress=gzip",
            Some(&auditor),
            None,
            Vec::new(),
        )
        .await;
    r.expect(200);
    assert_eq!(r.headers["content-type"], "application/gzip");
    // Still a read of the tenant by an auditor: logged.
    let logged = listing(&api, "tenant_id=t_x&event_type=audit.read").await;
    assert_eq!(logged.len(), 2);
    assert_eq!(
        api.state.exports.available_permits(),
        api.state.config.max_exports
    );
}

/// After the signing key is rotated, a tenant whose latest checkpoint carries the old key still
/// gets a bundle that verifies with the new key (and with the new key only).
#[tokio::test]
async fn bundles_after_a_key_rotation_verify_with_the_new_key() {
    let api = seeded().await;
    let mut last = std::collections::HashMap::new();
    trailkeep_server::checkpoint::checkpoint_round(&api.state, &mut last)
        .await
        .unwrap();
    let old = api.state.log.as_ref().unwrap().verifier.clone();
    let rotated = api.state.clone().with_signer("test", [7u8; 32]).unwrap();
    let new = rotated.log.as_ref().unwrap().verifier.clone();
    let router = trailkeep_server::app(rotated);
    let req = axum::http::Request::builder()
        .uri("/v1/export/bundle?tenant_id=t_x")
        .header("authorization", format!("Bearer {ADMIN}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let report = trailkeep_export::bundle::verify_bundle(&body[..], Some(&new)).unwrap();
    assert_eq!(report.manifest.count, 30);
    assert!(trailkeep_export::bundle::verify_bundle(&body[..], Some(&old)).is_err());
}
