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
