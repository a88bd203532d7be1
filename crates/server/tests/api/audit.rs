//! Reads by auditor keys are logged as `audit.read` events in the tenant read (docs/api.md).

use crate::common::*;
use serde_json::{json, Value};

async fn audit_reads(api: &Api, tenant: &str) -> Vec<Value> {
    walk(
        api,
        ADMIN,
        &format!("/v1/events?tenant_id={tenant}&event_type=audit.read&order=asc"),
    )
    .await
}

#[tokio::test]
async fn every_auditor_read_is_logged_in_the_tenant_it_reads() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_a", "x.y"), ev("t_b", "x.y")]))
        .await;
    let (id, auditor) = api.create_key("auditor", Some("t_a")).await;
    api.get(&auditor, "/v1/events?tenant_id=t_a&limit=5")
        .await
        .expect(200);
    api.get(&auditor, "/v1/stats").await.expect(200);
    let logged = audit_reads(&api, "t_a").await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0]["actor"], format!("auditor:{id}"));
    assert_eq!(logged[0]["payload"]["path"], "/v1/events");
    assert_eq!(logged[0]["payload"]["query"], "tenant_id=t_a&limit=5");
    assert_eq!(logged[0]["payload"]["key_id"], json!(id));
    assert_eq!(logged[1]["payload"]["path"], "/v1/stats");
    // A refused read changes nothing, so it is not logged.
    assert_error(
        &api.get(&auditor, "/v1/events?tenant_id=t_b").await,
        403,
        "forbidden",
    );
    assert_error(
        &api.post_json(&auditor, &ev("t_a", "x.y")).await,
        403,
        "forbidden",
    );
    assert_eq!(audit_reads(&api, "t_a").await.len(), 2);
    assert!(audit_reads(&api, "t_b").await.is_empty());
}

#[tokio::test]
async fn unbound_auditor_reads_go_to_the_path_tenant_or_global() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_c", "x.y")])).await;
    let (_, auditor) = api.create_key("auditor", None).await;
    api.get(&auditor, "/v1/tenants").await.expect(200);
    api.get(&auditor, "/v1/tenants/t_c/leaves")
        .await
        .expect(200);
    let global = audit_reads(&api, "_global").await;
    assert_eq!(global.len(), 1);
    assert_eq!(global[0]["payload"]["path"], "/v1/tenants");
    let c = audit_reads(&api, "t_c").await;
    assert_eq!(c.len(), 1);
    assert_eq!(c[0]["payload"]["path"], "/v1/tenants/t_c/leaves");
    // The logged events are ordinary, verifiable log entries.
    assert_eq!(c[0]["seq"], 1);
}

#[tokio::test]
async fn other_keys_are_not_logged_and_unloggable_reads_are_refused() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_d", "x.y")])).await;
    let (_, reader) = api.create_key("reader", None).await;
    let (_, auditor) = api.create_key("auditor", None).await;
    api.get(&reader, "/v1/events?tenant_id=t_d")
        .await
        .expect(200);
    api.get(ADMIN, "/v1/events?tenant_id=t_d").await.expect(200);
    assert!(audit_reads(&api, "t_d").await.is_empty());
    // Storage gone: the auditor's read is not served unrecorded.
    api.store.shutdown().await;
    let r = api.get(&auditor, "/v1/events?tenant_id=t_d").await;
    assert_error(&r, 503, "unavailable");
}

/// Every `audit.read` event of every tenant, as (tenant, payload).
async fn all_audit_reads(api: &Api) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for t in api.store.tenants().await.unwrap() {
        for e in api
            .store
            .read_log(&t.tenant_id, 0, 1_000_000)
            .await
            .unwrap()
        {
            if e.event_type == "audit.read" {
                let payload: Value =
                    serde_json::from_slice(e.payload.as_deref().unwrap_or(&b"null"[..])).unwrap();
                out.push((e.tenant_id.to_string(), payload));
            }
        }
    }
    out
}

async fn tenant_ids(api: &Api) -> Vec<String> {
    let mut t: Vec<String> = api
        .store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.tenant_id.to_string())
        .collect();
    t.sort();
    t
}

/// A tenant-bound auditor could append `audit.read` events with its own text to any tenant's
/// log, or create tenants, by adding `tenant_id=` to a keyless endpoint's query.
#[tokio::test]
async fn a_keyless_endpoint_cannot_steer_audit_events_into_another_tenant() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_a", "x.y"), ev("t_b", "x.y")]))
        .await;
    let (_, auditor) = api.create_key("auditor", Some("t_a")).await;
    let note = "n".repeat(4000);
    for uri in [
        format!("/healthz?tenant_id=t_b&note={note}"),
        "/v1/public-key?tenant_id=new_tenant".to_string(),
        "/metrics?tenant_id=t_b".to_string(),
        "/openapi.json?tenant_id=t_b".to_string(),
        "/readyz?tenant_id=t_b".to_string(),
    ] {
        let r = api.get(&auditor, &uri).await;
        assert_error(&r, 400, "bad_request");
        assert!(r.text().contains("tenant_id"), "{uri}: {}", r.text());
    }
    // Without parameters they answer, and an auditor's use of them logs nothing anywhere.
    for uri in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/public-key",
        "/openapi.json",
    ] {
        api.get(&auditor, uri).await.expect(200);
    }
    assert_eq!(all_audit_reads(&api).await, vec![]);
    assert_eq!(tenant_ids(&api).await, ["t_a", "t_b"]);
}

/// `?tenant_id=A` on a read of tenant B's event made the log record A while the handler read B.
#[tokio::test]
async fn a_read_of_one_tenant_cannot_be_logged_in_another() {
    let api = Api::new().await;
    let id = uuid();
    api.ingest(&json!([
        ev("t_a", "x.y"),
        ev_full("t_b", "x.y", &id, &now_plus(-10), json!({}))
    ]))
    .await;
    let (_, auditor) = api.create_key("auditor", None).await;
    for uri in [
        format!("/v1/events/{id}?tenant_id=t_a"),
        format!("/v1/events/{id}/proof?tenant_id=t_a"),
        "/v1/tenants/t_b/leaves?tenant_id=t_a".to_string(),
        "/v1/tenants?tenant_id=t_a".to_string(),
        // Twice, or once empty: which one would count is anyone's guess.
        "/v1/events?tenant_id=t_a&tenant_id=t_b".to_string(),
        "/v1/events?tenant_id=t_a&tenant_id=".to_string(),
        "/v1/stats?tenant_id=t_a&tenant_id=t_b".to_string(),
        "/v1/tenants/t_b/leaves?start=0&start=0".to_string(),
    ] {
        assert_error(&api.get(&auditor, &uri).await, 400, "bad_request");
    }
    assert_eq!(all_audit_reads(&api).await, vec![]);
}

/// An unbound auditor's read of tenant B's event was logged in `_global`: it belongs to B.
#[tokio::test]
async fn an_unbound_auditors_read_of_an_event_is_logged_in_the_events_tenant() {
    let api = Api::new().await;
    let id = uuid();
    api.ingest(&json!([ev_full(
        "t_b",
        "x.y",
        &id,
        &now_plus(-10),
        json!({})
    )]))
    .await;
    let mut last = std::collections::HashMap::new();
    trailkeep_server::checkpoint::checkpoint_round(&api.state, &mut last)
        .await
        .unwrap();
    let (key_id, auditor) = api.create_key("auditor", None).await;
    api.get(&auditor, &format!("/v1/events/{id}"))
        .await
        .expect(200);
    api.get(&auditor, &format!("/v1/events/{id}/proof"))
        .await
        .expect(200);
    let logged = all_audit_reads(&api).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    for (tenant, payload) in &logged {
        assert_eq!(tenant, "t_b", "{logged:?}");
        assert_eq!(payload["key_id"], json!(key_id));
        assert!(payload.get("scope").is_none(), "{payload}");
    }
    assert_eq!(logged[0].1["path"], format!("/v1/events/{id}"));
    assert_eq!(logged[1].1["path"], format!("/v1/events/{id}/proof"));
}

/// A percent-encoded tenant in the path (`t%5fb`) is the tenant the handler reads; the read was
/// logged in `_global`.
#[tokio::test]
async fn a_percent_encoded_path_tenant_is_logged_in_that_tenant() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_b", "x.y")])).await;
    let mut last = std::collections::HashMap::new();
    trailkeep_server::checkpoint::checkpoint_round(&api.state, &mut last)
        .await
        .unwrap();
    let (_, auditor) = api.create_key("auditor", None).await;
    api.get(&auditor, "/v1/tenants/t%5fb/checkpoint")
        .await
        .expect(200);
    api.get(&auditor, "/v1/tenants/t%5Fb/leaves")
        .await
        .expect(200);
    let logged = all_audit_reads(&api).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert!(logged.iter().all(|(t, _)| t == "t_b"), "{logged:?}");
    assert_eq!(logged[0].1["path"], "/v1/tenants/t%5fb/checkpoint");
}

/// A listing across every tenant by an unbound auditor is logged in `_global`, saying so.
#[tokio::test]
async fn an_unbound_listing_of_every_tenant_is_logged_in_global_as_such() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_a", "x.y"), ev("t_b", "x.y")]))
        .await;
    let (_, auditor) = api.create_key("auditor", None).await;
    for uri in ["/v1/events?limit=5", "/v1/stats", "/v1/tenants"] {
        api.get(&auditor, uri).await.expect(200);
    }
    api.get(&auditor, "/v1/events?tenant_id=t_a")
        .await
        .expect(200);
    let logged = all_audit_reads(&api).await;
    let global: Vec<_> = logged.iter().filter(|(t, _)| t == "_global").collect();
    assert_eq!(global.len(), 3, "{logged:?}");
    for (_, p) in &global {
        assert_eq!(p["scope"], "all_tenants", "{p}");
    }
    let a: Vec<_> = logged.iter().filter(|(t, _)| t == "t_a").collect();
    assert_eq!(a.len(), 1, "{logged:?}");
    assert!(a[0].1.get("scope").is_none(), "{:?}", a[0]);
    assert!(logged.iter().all(|(t, _)| t != "t_b"), "{logged:?}");
}

/// `HEAD` answers what `GET` would (headers, status) and was never logged.
#[tokio::test]
async fn head_reads_by_auditors_are_logged_like_get() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_a", "x.y")])).await;
    let (key_id, auditor) = api.create_key("auditor", Some("t_a")).await;
    let r = api
        .request(
            axum::http::Method::HEAD,
            "/v1/events?tenant_id=t_a",
            Some(&auditor),
            None,
            Vec::new(),
        )
        .await;
    r.expect(200);
    assert!(r.body.is_empty());
    let logged = audit_reads(&api, "t_a").await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(
        logged[0]["payload"],
        json!({"key_id": key_id, "method": "HEAD", "path": "/v1/events", "query": "tenant_id=t_a"})
    );
    // A refused HEAD is not logged.
    let r = api
        .request(
            axum::http::Method::HEAD,
            "/v1/events?tenant_id=t_b",
            Some(&auditor),
            None,
            Vec::new(),
        )
        .await;
    r.expect(403);
    assert_eq!(all_audit_reads(&api).await.len(), 1);
}

/// The query an `audit.read` records is at most 2 KiB, marked when cut.
#[tokio::test]
async fn the_logged_query_is_bounded_and_marked_when_cut() {
    let api = Api::new().await;
    api.ingest(&json!([ev("t_a", "x.y")])).await;
    let (_, auditor) = api.create_key("auditor", Some("t_a")).await;
    let long = "é".repeat(5_000);
    api.get(&auditor, &format!("/v1/events?q={}", enc(&long)))
        .await
        .expect(200);
    api.get(&auditor, "/v1/events?q=short").await.expect(200);
    let logged = audit_reads(&api, "t_a").await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    let q = logged[0]["payload"]["query"].as_str().unwrap();
    assert!(
        q.len() <= trailkeep_server::audit::MAX_LOGGED_QUERY && q.len() > 2000,
        "{}",
        q.len()
    );
    assert!(q.starts_with("q=%C3%A9"), "{q}");
    assert_eq!(logged[0]["payload"]["query_truncated"], true);
    assert_eq!(logged[1]["payload"]["query"], "q=short");
    assert!(logged[1]["payload"].get("query_truncated").is_none());
}

/// A route whose handler records no scope cannot serve an auditor's read unrecorded: the answer
/// is refused (500); other keys' and keyless reads of it pass.
#[tokio::test]
async fn an_auditors_read_no_handler_recorded_is_refused() {
    use axum::routing::get;
    use tower::ServiceExt;
    let api = Api::new().await;
    let (_, auditor) = api.store_key(trailkeep_store::Role::Auditor, None).await;
    let (_, reader) = api.store_key(trailkeep_store::Role::Reader, None).await;
    let router = axum::Router::new()
        .route("/unrecorded", get(|| async { "data" }))
        .layer(axum::middleware::from_fn_with_state(
            api.state.clone(),
            trailkeep_server::audit::log_auditor_reads,
        ))
        .with_state(api.state.clone());
    for (key, status) in [(Some(&auditor), 500), (Some(&reader), 200), (None, 200)] {
        let mut req = axum::http::Request::get("/unrecorded");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let resp = router
            .clone()
            .oneshot(req.body(axum::body::Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), status);
        let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        assert_eq!(body == "data", status == 200, "{body:?}");
    }
    assert_eq!(all_audit_reads(&api).await, vec![]);
}
