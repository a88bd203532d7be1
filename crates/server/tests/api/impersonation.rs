//! Impersonation sessions (docs/api.md#impersonation-sessions): the read side, derived from the
//! log's `impersonation.start` / `impersonation.end` events and the events carrying
//! `impersonation_session`.

use crate::common::*;
use serde_json::{json, Value};

fn start(tenant: &str, session: &str, ts: &str) -> Value {
    json!({
        "event_type": "impersonation.start",
        "actor": "admin:root@example.com",
        "tenant_id": tenant,
        "payload": {"impersonator": "admin:root@example.com", "impersonated": "user:bo@example.com",
                    "session_id": session, "reason": "ticket 42"},
        "timestamp": ts,
    })
}

fn end(tenant: &str, session: &str, ts: &str) -> Value {
    json!({
        "event_type": "impersonation.end",
        "actor": "admin:root@example.com",
        "tenant_id": tenant,
        "payload": {"session_id": session, "actions_taken": 2},
        "timestamp": ts,
    })
}

fn action(tenant: &str, session: &str, ts: &str, n: u32) -> Value {
    json!({
        "event_type": "settings.change",
        "actor": "user:bo@example.com",
        "tenant_id": tenant,
        "payload": {"n": n},
        "timestamp": ts,
        "impersonation_session": session,
    })
}

/// The event ids of an ingest answer, in request order.
fn receipts(r: &Value) -> Vec<String> {
    r["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event_id"].as_str().unwrap().to_string())
        .collect()
}

fn session_ids(list: &Value) -> Vec<(String, String)> {
    list["impersonations"]
        .as_array()
        .expect("impersonations")
        .iter()
        .map(|s| {
            (
                s["tenant_id"].as_str().unwrap().to_string(),
                s["session_id"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn keys_of(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

const VIEW_KEYS: [&str; 9] = [
    "active",
    "duration_seconds",
    "end",
    "impersonated",
    "impersonator",
    "reason",
    "session_id",
    "start",
    "tenant_id",
];

#[tokio::test]
async fn a_session_has_its_span_and_its_actions_as_full_events() {
    let api = Api::new().await;
    let (t0, t1, t2, t3) = (
        now_plus(-3600),
        now_plus(-3000),
        now_plus(-2400),
        now_plus(-1800),
    );
    let r = api
        .ingest(&json!([
            start("t_a", "imp_1", &t0),
            action("t_a", "imp_1", &t1, 1),
            action("t_a", "imp_other", &t1, 9),
            action("t_b", "imp_1", &t1, 8),
            action("t_a", "imp_1", &t2, 2),
            end("t_a", "imp_1", &t3),
        ]))
        .await;
    let ids = receipts(&r);
    let v = api.get(ADMIN, "/v1/impersonations/imp_1").await;
    v.expect(200);
    let v = v.json();
    let mut keys = VIEW_KEYS.to_vec();
    keys.push("actions");
    keys.sort();
    assert_eq!(keys_of(&v), keys, "{v}");
    assert_eq!(v["session_id"], "imp_1");
    assert_eq!(v["tenant_id"], "t_a");
    assert_eq!(v["impersonator"], "admin:root@example.com");
    assert_eq!(v["impersonated"], "user:bo@example.com");
    assert_eq!(v["reason"], "ticket 42");
    assert_eq!(v["active"], false);
    assert_eq!(v["duration_seconds"], 1800);
    let start_ts = api.get_event(&ids[0]).await.json()["timestamp"].clone();
    let end_ts = api.get_event(&ids[5]).await.json()["timestamp"].clone();
    assert_eq!(v["start"], start_ts);
    assert_eq!(v["end"], end_ts);
    // The actions: exactly the tenant's events naming the session, as GET /v1/events/{id}
    // renders them, oldest first.
    let mut expected = Vec::new();
    for id in [&ids[1], &ids[4]] {
        expected.push(api.get_event(id).await.json());
    }
    assert_eq!(v["actions"], json!(expected), "{v}");
    // The list holds the same object without actions.
    let list = api.get(ADMIN, "/v1/impersonations").await;
    list.expect(200);
    let list = list.json();
    assert_eq!(keys_of(&list), ["impersonations"]);
    let item = &list["impersonations"][0];
    assert_eq!(keys_of(item), VIEW_KEYS.to_vec());
    for k in VIEW_KEYS {
        assert_eq!(item[k], v[k], "{k}");
    }
}

#[tokio::test]
async fn an_open_session_counts_to_now_and_active_filters_the_list() {
    let api = Api::new().await;
    api.ingest(&json!([
        start("t_a", "imp_old", &now_plus(-7200)),
        end("t_a", "imp_old", &now_plus(-7100)),
        start("t_a", "imp_open", &now_plus(-600)),
        start("t_b", "imp_b", &now_plus(-300)),
    ]))
    .await;
    let all = api.get(ADMIN, "/v1/impersonations").await.json();
    // Newest start first, across tenants for an unbound key.
    assert_eq!(
        session_ids(&all),
        [
            ("t_b".to_string(), "imp_b".to_string()),
            ("t_a".to_string(), "imp_open".to_string()),
            ("t_a".to_string(), "imp_old".to_string()),
        ]
    );
    let open = &all["impersonations"][1];
    assert_eq!(open["active"], true);
    assert_eq!(open["end"], Value::Null);
    let d = open["duration_seconds"].as_u64().unwrap();
    assert!((600..660).contains(&d), "duration of an open session: {d}");
    assert_eq!(all["impersonations"][2]["duration_seconds"], 100);

    let active = api
        .get(ADMIN, "/v1/impersonations?tenant_id=t_a&active=true")
        .await
        .json();
    assert_eq!(
        session_ids(&active),
        [("t_a".to_string(), "imp_open".to_string())]
    );
    let ended = api
        .get(ADMIN, "/v1/impersonations?active=false")
        .await
        .json();
    assert_eq!(
        session_ids(&ended),
        [("t_a".to_string(), "imp_old".to_string())]
    );
    // Once ended, the session leaves the active list.
    api.ingest(&json!([end("t_a", "imp_open", &now_plus(0))]))
        .await;
    let active = api
        .get(ADMIN, "/v1/impersonations?tenant_id=t_a&active=true")
        .await
        .json();
    assert!(session_ids(&active).is_empty(), "{active}");
    let one = api.get(ADMIN, "/v1/impersonations/imp_open").await.json();
    assert_eq!(one["active"], false);
    assert!(one["end"].is_string(), "{one}");
    assert_eq!(one["actions"], json!([]));
}

#[tokio::test]
async fn a_reused_id_names_the_newest_session_with_its_own_actions() {
    let api = Api::new().await;
    let r = api
        .ingest(&json!([
            start("t_a", "imp_r", &now_plus(-900)),
            action("t_a", "imp_r", &now_plus(-850), 1),
            end("t_a", "imp_r", &now_plus(-800)),
            start("t_a", "imp_r", &now_plus(-100)),
            action("t_a", "imp_r", &now_plus(-50), 2),
        ]))
        .await;
    let ids = receipts(&r);
    let v = api.get(ADMIN, "/v1/impersonations/imp_r").await.json();
    assert_eq!(v["active"], true);
    let actions: Vec<&str> = v["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(actions, [ids[4].as_str()]);
    // The list holds both sessions.
    let list = api.get(ADMIN, "/v1/impersonations").await.json();
    assert_eq!(list["impersonations"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn one_id_in_two_tenants_is_picked_by_tenant_id_else_the_newest() {
    let api = Api::new().await;
    api.ingest(&json!([
        start("t_a", "imp_x", &now_plus(-500)),
        start("t_b", "imp_x", &now_plus(-100)),
    ]))
    .await;
    let v = api.get(ADMIN, "/v1/impersonations/imp_x").await.json();
    assert_eq!(v["tenant_id"], "t_b");
    let v = api
        .get(ADMIN, "/v1/impersonations/imp_x?tenant_id=t_a")
        .await
        .json();
    assert_eq!(v["tenant_id"], "t_a");
    assert_error(
        &api.get(ADMIN, "/v1/impersonations/imp_x?tenant_id=t_c")
            .await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn a_bound_key_sees_only_its_tenant() {
    let api = Api::new().await;
    api.ingest(&json!([
        start("t_a", "imp_a", &now_plus(-500)),
        start("t_b", "imp_b", &now_plus(-100)),
        action("t_b", "imp_b", &now_plus(-50), 1),
    ]))
    .await;
    let (_, reader) = api.create_key("reader", Some("t_a")).await;
    let list = api.get(&reader, "/v1/impersonations").await;
    list.expect(200);
    assert_eq!(
        session_ids(&list.json()),
        [("t_a".to_string(), "imp_a".to_string())]
    );
    assert!(!list.text().contains("imp_b"), "{}", list.text());
    assert_error(
        &api.get(&reader, "/v1/impersonations?tenant_id=t_b").await,
        403,
        "forbidden",
    );
    let r = api.get(&reader, "/v1/impersonations/imp_b").await;
    assert_error(&r, 404, "not_found");
    assert!(!r.text().contains("t_b"), "{}", r.text());
    assert_error(
        &api.get(&reader, "/v1/impersonations/imp_b?tenant_id=t_b")
            .await,
        403,
        "forbidden",
    );
    api.get(&reader, "/v1/impersonations/imp_a")
        .await
        .expect(200);
    // Ingest keys do not read.
    let (_, ingest) = api.create_key("ingest", None).await;
    assert_error(
        &api.get(&ingest, "/v1/impersonations").await,
        403,
        "forbidden",
    );
}

#[tokio::test]
async fn refusals_unknown_session_bad_active_and_unknown_parameters() {
    let api = Api::new().await;
    api.ingest(&json!([start("t_a", "imp_1", &now_plus(-60))]))
        .await;
    assert_error(
        &api.get(ADMIN, "/v1/impersonations/imp_nope").await,
        404,
        "not_found",
    );
    for q in [
        "active=yes",
        "active=1",
        "active=TRUE",
        "active=true&active=false",
        "tenantid=t_a",
        "tenant_id=bad%20tenant",
    ] {
        assert_error(
            &api.get(ADMIN, &format!("/v1/impersonations?{q}")).await,
            400,
            "bad_request",
        );
    }
    assert_error(
        &api.get(ADMIN, "/v1/impersonations/imp_1?active=true").await,
        400,
        "bad_request",
    );
    assert_error(
        &api.request(
            axum::http::Method::GET,
            "/v1/impersonations",
            None,
            None,
            Vec::new(),
        )
        .await,
        401,
        "unauthorized",
    );
}

async fn audit_reads(api: &Api, tenant: &str) -> Vec<Value> {
    walk(
        api,
        ADMIN,
        &format!("/v1/events?tenant_id={tenant}&event_type=audit.read&order=asc"),
    )
    .await
}

#[tokio::test]
async fn auditor_reads_are_logged_in_the_tenant_read() {
    let api = Api::new().await;
    api.ingest(&json!([
        start("t_a", "imp_a", &now_plus(-60)),
        start("t_b", "imp_b", &now_plus(-30)),
    ]))
    .await;
    let (bound_id, bound) = api.create_key("auditor", Some("t_a")).await;
    api.get(&bound, "/v1/impersonations?active=true")
        .await
        .expect(200);
    api.get(&bound, "/v1/impersonations/imp_a")
        .await
        .expect(200);
    // A refused read is not logged.
    assert_error(
        &api.get(&bound, "/v1/impersonations/imp_b").await,
        404,
        "not_found",
    );
    let logged = audit_reads(&api, "t_a").await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0]["actor"], format!("auditor:{bound_id}"));
    assert_eq!(logged[0]["payload"]["path"], "/v1/impersonations");
    assert_eq!(logged[0]["payload"]["query"], "active=true");
    assert_eq!(logged[1]["payload"]["path"], "/v1/impersonations/imp_a");
    assert!(audit_reads(&api, "t_b").await.is_empty());

    // An unbound auditor: a session's read is logged in its tenant, a listing of every
    // tenant in `_global`.
    let (_, unbound) = api.create_key("auditor", None).await;
    api.get(&unbound, "/v1/impersonations/imp_b")
        .await
        .expect(200);
    api.get(&unbound, "/v1/impersonations").await.expect(200);
    let b = audit_reads(&api, "t_b").await;
    assert_eq!(b.len(), 1, "{b:?}");
    assert_eq!(b[0]["payload"]["path"], "/v1/impersonations/imp_b");
    let global = audit_reads(&api, "_global").await;
    assert_eq!(global.len(), 1, "{global:?}");
    assert_eq!(global[0]["payload"]["path"], "/v1/impersonations");
    assert_eq!(global[0]["payload"]["scope"], "all_tenants");
}

/// The documented schema of a session names exactly the fields the server sends.
#[tokio::test]
async fn the_documented_session_schema_matches_the_answers() {
    let api = Api::new().await;
    let doc = api.get(ADMIN, "/openapi.json").await.json();
    let schemas = &doc["components"]["schemas"];
    let props = |name: &str| -> Vec<String> {
        let mut p: Vec<String> = schemas[name]["properties"]
            .as_object()
            .unwrap_or_else(|| panic!("schema {name}: {}", schemas[name]))
            .keys()
            .cloned()
            .collect();
        p.sort();
        p
    };
    assert_eq!(props("SessionView"), VIEW_KEYS.to_vec());
    let mut detail = VIEW_KEYS.to_vec();
    detail.push("actions");
    detail.sort();
    assert_eq!(props("SessionDetail"), detail);
    assert_eq!(props("SessionList"), ["impersonations"]);
}
