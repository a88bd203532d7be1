//! Dual approval (docs/api.md#dual-approval): request, approve by distinct approver keys,
//! reject, expiry, reads scoped by tenant and audited, refusals with JSON errors. The state is
//! the fold of the log's `approval.*` events, so the tests also read the log itself.

use crate::common::*;
use axum::http::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use trailkeep_server::{ApprovalConfig, ServerConfig};
use trailkeep_store::Role;

fn action() -> Value {
    json!({"event_type": "tenant.disable",
           "payload": {"target": "t_app", "reason": "fraud", "n": 2, "nested": {"b": 1, "a": [true, null]}}})
}

fn request_body(tenant: &str) -> Value {
    json!({"tenant_id": tenant, "requested_by": "svc:console", "reason": "customer asked",
           "action": action()})
}

async fn send(api: &Api, method: Method, uri: &str, key: &str, body: &Value) -> Resp {
    api.request(
        method,
        uri,
        Some(key),
        Some(JSON),
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

async fn request(api: &Api, key: &str, tenant: &str) -> Resp {
    send(
        api,
        Method::POST,
        "/v1/approvals",
        key,
        &request_body(tenant),
    )
    .await
}

async fn decide(api: &Api, key: &str, id: &str, what: &str, who: &str) -> Resp {
    send(
        api,
        Method::POST,
        &format!("/v1/approvals/{id}/{what}"),
        key,
        &json!({"approver": who, "comment": "looked at it"}),
    )
    .await
}

/// The tenant's log, oldest first, by event type.
async fn approval_steps(api: &Api, tenant: &str) -> Vec<Value> {
    walk(
        api,
        ADMIN,
        &format!("/v1/events?tenant_id={tenant}&event_type=approval.*&order=asc"),
    )
    .await
}

#[tokio::test]
async fn two_distinct_approvers_approve_and_the_digest_is_the_canonical_actions() {
    let api = Api::new().await;
    let (ingest_id, ingest) = api.store_key(Role::Ingest, Some("t_app")).await;
    let (a1_id, a1) = api.store_key(Role::Approver, None).await;
    let (_, a2) = api.store_key(Role::Approver, Some("t_app")).await;

    let r = request(&api, &ingest, "t_app").await;
    r.expect(201);
    let v = r.json();
    let id = v["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("apr_") && id.len() == 36, "{id}");
    assert_eq!(v["status"], "pending");
    assert_eq!(v["tenant_id"], "t_app");
    assert_eq!(v["requested_by"], "svc:console");
    assert_eq!(v["requested_by_key_id"], json!(ingest_id));
    assert_eq!(v["approvers_required"], 2);
    assert_eq!(v["action"], action());
    let canonical = serde_json_canonicalizer::to_vec(&action()).unwrap();
    assert_eq!(v["digest"], json!(hex::encode(Sha256::digest(&canonical))));
    // Keys in canonical order, numbers as is: the digest is of exactly this text.
    assert_eq!(
        String::from_utf8(canonical).unwrap(),
        r#"{"event_type":"tenant.disable","payload":{"n":2,"nested":{"a":[true,null],"b":1},"reason":"fraud","target":"t_app"}}"#
    );
    let expires = v["expires_at"].as_str().unwrap();
    assert!(expires > now_plus(23 * 3600).as_str() && expires < now_plus(25 * 3600).as_str());

    let r = decide(&api, &a1, &id, "approve", "user:lea").await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["status"], "pending");
    assert_eq!(v["approvals"][0]["key_id"], json!(a1_id));
    assert_eq!(v["approvals"][0]["approver"], "user:lea");
    let v = decide(&api, &a2, &id, "approve", "user:max").await.json();
    assert_eq!(v["status"], "approved", "{v}");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 2);
    assert_eq!(
        api.get(ADMIN, &format!("/v1/approvals/{id}")).await.json(),
        v
    );

    // Each step is an event of the tenant's log carrying the approval's id.
    let steps = approval_steps(&api, "t_app").await;
    let types: Vec<&str> = steps
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "approval.request",
            "approval.approve",
            "approval.approve",
            "approval.granted"
        ]
    );
    assert!(steps.iter().all(|e| e["approval_id"] == json!(id)));
    assert_eq!(steps[0]["actor"], "svc:console");
    assert_eq!(steps[1]["actor"], "user:lea");
    assert_eq!(steps[3]["actor"], "trailkeep");

    // Approved: a further approve is a conflict; a reject still ends it (a late veto).
    let (_, a3) = api.store_key(Role::Approver, None).await;
    assert_refusal(
        &decide(&api, &a3, &id, "approve", "user:zoe").await,
        409,
        "approval_approved",
    );
    let v = decide(&api, &a3, &id, "reject", "user:zoe").await.json();
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["rejection"]["approver"], "user:zoe");
    assert_refusal(
        &decide(&api, &a1, &id, "reject", "user:lea").await,
        409,
        "approval_rejected",
    );
}

#[tokio::test]
async fn requester_repeated_key_reject_and_roles_are_refused_as_the_contract_says() {
    let api = Api::new().await;
    let (_, approver) = api.store_key(Role::Approver, None).await;
    // An admin key asks: it may decide approvals, but never its own request.
    let id = request(&api, ADMIN, "t_app").await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_refusal(
        &decide(&api, ADMIN, &id, "approve", "admin:ops").await,
        403,
        "approver_is_requester",
    );
    decide(&api, &approver, &id, "approve", "user:lea")
        .await
        .expect(200);
    assert_refusal(
        &decide(&api, &approver, &id, "approve", "user:lea-again").await,
        409,
        "approver_repeated",
    );
    // Roles: readers and auditors never decide, approvers and readers never ask.
    for role in [Role::Reader, Role::Auditor, Role::Ingest] {
        let (_, k) = api.store_key(role, None).await;
        assert_error(
            &decide(&api, &k, &id, "approve", "user:x").await,
            403,
            "forbidden",
        );
    }
    for role in [Role::Reader, Role::Approver, Role::Auditor] {
        let (_, k) = api.store_key(role, None).await;
        assert_error(&request(&api, &k, "t_app").await, 403, "forbidden");
    }
    // The requester withdraws it; then nothing more is possible.
    let v = decide(&api, ADMIN, &id, "reject", "admin:ops").await.json();
    assert_eq!(v["status"], "rejected");
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    let (_, other) = api.store_key(Role::Approver, None).await;
    assert_refusal(
        &decide(&api, &other, &id, "approve", "user:max").await,
        409,
        "approval_rejected",
    );
    let listed = api.get(ADMIN, "/v1/approvals?status=rejected").await.json();
    assert_eq!(listed["approvals"][0]["id"], json!(id));
}

#[tokio::test]
async fn an_approve_after_expiry_is_refused_and_the_approval_reads_expired() {
    let api = Api::with_config(ServerConfig {
        approvals: ApprovalConfig::new(&[], 1, Duration::from_millis(300)).unwrap(),
        ..ServerConfig::default()
    })
    .await;
    let (_, approver) = api.store_key(Role::Approver, None).await;
    let v = request(&api, ADMIN, "t_app").await.json();
    assert_eq!(v["approvers_required"], 1);
    let id = v["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_refusal(
        &decide(&api, &approver, &id, "approve", "user:lea").await,
        409,
        "approval_expired",
    );
    assert_eq!(
        api.get(ADMIN, &format!("/v1/approvals/{id}")).await.json()["status"],
        "expired"
    );
    let v = api.get(ADMIN, "/v1/approvals?status=expired").await.json();
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    // With one approver needed, one approve suffices (a fresh request).
    let id = request(&api, ADMIN, "t_app").await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let v = decide(&api, &approver, &id, "approve", "user:lea")
        .await
        .json();
    assert_eq!(v["status"], "approved");
}

#[tokio::test]
async fn two_approvers_at_once_both_land_and_the_approval_is_approved() {
    for _ in 0..5 {
        let api = Api::new().await;
        let (_, a1) = api.store_key(Role::Approver, None).await;
        let (_, a2) = api.store_key(Role::Approver, None).await;
        let id = request(&api, ADMIN, "t_app").await.json()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (r1, r2) = tokio::join!(
            decide(&api, &a1, &id, "approve", "user:lea"),
            decide(&api, &a2, &id, "approve", "user:max"),
        );
        r1.expect(200);
        r2.expect(200);
        let v = api.get(ADMIN, &format!("/v1/approvals/{id}")).await.json();
        assert_eq!(v["status"], "approved", "{v}");
        assert_eq!(v["approvals"].as_array().unwrap().len(), 2);
        // One key approving twice at once counts once, whatever lands.
        let id = request(&api, ADMIN, "t_app").await.json()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let (r1, r2) = tokio::join!(
            decide(&api, &a1, &id, "approve", "user:lea"),
            decide(&api, &a1, &id, "approve", "user:lea"),
        );
        assert!(r1.status.as_u16() == 200 || r2.status.as_u16() == 200);
        let v = api.get(ADMIN, &format!("/v1/approvals/{id}")).await.json();
        assert_eq!(v["status"], "pending", "{v}");
        assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    }
}

#[tokio::test]
async fn listings_are_scoped_by_tenant_and_filtered_by_status() {
    let api = Api::new().await;
    let (_, ingest_a) = api.store_key(Role::Ingest, Some("t_a")).await;
    let (_, approver_a) = api.create_key("approver", Some("t_a")).await;
    let (_, reader_b) = api.store_key(Role::Reader, Some("t_b")).await;
    let a = request(&api, &ingest_a, "t_a").await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let b = request(&api, ADMIN, "t_b").await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A bound ingest key asks only for its tenant.
    assert_error(&request(&api, &ingest_a, "t_b").await, 403, "forbidden");
    // A bound approver neither sees nor decides another tenant's approval.
    assert_error(
        &decide(&api, &approver_a, &b, "approve", "user:lea").await,
        404,
        "not_found",
    );
    assert_error(
        &api.get(&approver_a, &format!("/v1/approvals/{b}")).await,
        404,
        "not_found",
    );
    let v = api.get(&approver_a, "/v1/approvals").await.json();
    let ids: Vec<&str> = v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str()]);
    assert_error(
        &api.get(&approver_a, "/v1/approvals?tenant_id=t_b").await,
        403,
        "forbidden",
    );
    let v = api.get(&reader_b, "/v1/approvals").await.json();
    assert_eq!(v["approvals"][0]["id"], json!(b));
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    // Unbound: every tenant, newest first; by tenant; by status.
    let v = api.get(ADMIN, "/v1/approvals").await.json();
    let ids: Vec<&str> = v["approvals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.as_str(), a.as_str()]);
    let (_, other) = api.store_key(Role::Approver, None).await;
    decide(&api, &approver_a, &a, "approve", "user:lea")
        .await
        .expect(200);
    decide(&api, &other, &a, "approve", "user:max")
        .await
        .expect(200);
    let v = api.get(ADMIN, "/v1/approvals?status=approved").await.json();
    assert_eq!(v["approvals"].as_array().unwrap().len(), 1);
    assert_eq!(v["approvals"][0]["id"], json!(a));
    let v = api
        .get(ADMIN, "/v1/approvals?status=pending&tenant_id=t_b")
        .await
        .json();
    assert_eq!(v["approvals"][0]["id"], json!(b));
    let v = api
        .get(ADMIN, "/v1/approvals?status=pending&tenant_id=t_a")
        .await
        .json();
    assert!(v["approvals"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn bad_bodies_params_and_ids_are_refused_and_change_nothing() {
    let api = Api::new().await;
    let id = request(&api, ADMIN, "t_app").await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, approver) = api.store_key(Role::Approver, None).await;
    let before = api.snapshot().await;
    let post = |uri: &'static str, body: &'static [u8]| {
        let api = &api;
        async move {
            api.request(Method::POST, uri, Some(ADMIN), Some(JSON), body.to_vec())
                .await
        }
    };
    assert_error(
        &post("/v1/approvals", b"{not json").await,
        400,
        "bad_request",
    );
    assert_error(&post("/v1/approvals", b"").await, 400, "bad_request");
    // JSON of the wrong shape: a missing field, an unknown one, a payload that is no object.
    for body in [
        json!({"tenant_id": "t_app", "requested_by": "svc:x", "action": action()}),
        json!({"tenant_id": "t_app", "requested_by": "svc:x", "reason": "r", "action": action(), "extra": 1}),
        json!({"tenant_id": "t_app", "requested_by": "svc:x", "reason": "r",
               "action": {"event_type": "tenant.disable", "payload": [1]}}),
    ] {
        let r = send(&api, Method::POST, "/v1/approvals", ADMIN, &body).await;
        assert_error(&r, 422, "validation_failed");
    }
    // Parsed, but breaking a rule: each names its field.
    for (body, path) in [
        (
            json!({"tenant_id": "bad tenant", "requested_by": "svc:x", "reason": "r", "action": action()}),
            "tenant_id",
        ),
        (
            json!({"tenant_id": "t_app", "requested_by": "", "reason": "r", "action": action()}),
            "requested_by",
        ),
        (
            json!({"tenant_id": "t_app", "requested_by": "svc:x", "reason": " ", "action": action()}),
            "reason",
        ),
        (
            json!({"tenant_id": "t_app", "requested_by": "svc:x", "reason": "r",
                   "action": {"event_type": "approval.approve", "payload": {}}}),
            "action.event_type",
        ),
        (
            json!({"tenant_id": "t_app", "requested_by": "svc:x", "reason": "r",
                   "action": {"event_type": "Tenant Disable", "payload": {}}}),
            "action.event_type",
        ),
        (
            json!({"tenant_id": "t_app", "requested_by": "svc:x", "reason": "r",
                   "action": {"event_type": "killswitch.embed.disable",
                              "payload": {"target": "embed", "scope": "tenant"}}}),
            "action.payload.reason",
        ),
    ] {
        let r = send(&api, Method::POST, "/v1/approvals", ADMIN, &body).await;
        r.expect(422);
        let details = r.json()["error"]["details"].clone();
        assert_eq!(details[0]["path"], json!(path), "{}", r.text());
    }
    let decide_uri = format!("/v1/approvals/{id}/approve");
    for body in [
        &b"{"[..],
        b"[]",
        br#"{"approver": 1}"#,
        br#"{"approver": "a", "x": 1}"#,
    ] {
        let r = api
            .request(
                Method::POST,
                &decide_uri,
                Some(&approver),
                Some(JSON),
                body.to_vec(),
            )
            .await;
        assert!(matches!(r.status.as_u16(), 400 | 422), "{}", r.text());
    }
    let r = decide(&api, &approver, &id, "approve", "").await;
    r.expect(422);
    assert_eq!(r.json()["error"]["details"][0]["path"], "approver");
    // Unknown ids: well-formed or not, in reads and decisions.
    for unknown in [
        "apr_00000000000000000000000000000000".to_string(),
        "nope".to_string(),
        id.to_uppercase(),
    ] {
        assert_error(
            &api.get(ADMIN, &format!("/v1/approvals/{unknown}")).await,
            404,
            "not_found",
        );
        assert_error(
            &decide(&api, &approver, &unknown, "reject", "user:lea").await,
            404,
            "not_found",
        );
    }
    // Unknown and repeated parameters, a bad status.
    for uri in [
        "/v1/approvals?state=pending",
        "/v1/approvals?status=pending&status=approved",
        "/v1/approvals?tenant_id=t_app&tenant_id=t_app",
        "/v1/approvals?status=done",
        "/v1/approvals?tenant_id=bad%20tenant",
    ] {
        assert_error(&api.get(ADMIN, uri).await, 400, "bad_request");
    }
    assert_error(
        &api.get(ADMIN, &format!("/v1/approvals/{id}?tenant_id=t_app"))
            .await,
        400,
        "bad_request",
    );
    api.assert_unchanged(&before).await;
}

#[tokio::test]
async fn auditor_reads_of_approvals_are_logged_in_the_tenant_read() {
    let api = Api::new().await;
    let id = request(&api, ADMIN, "t_app").await.json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (auditor_id, auditor) = api.create_key("auditor", Some("t_app")).await;
    api.get(&auditor, &format!("/v1/approvals/{id}"))
        .await
        .expect(200);
    api.get(&auditor, "/v1/approvals?status=pending")
        .await
        .expect(200);
    let logged = walk(
        &api,
        ADMIN,
        "/v1/events?tenant_id=t_app&event_type=audit.read&order=asc",
    )
    .await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!(logged[0]["actor"], format!("auditor:{auditor_id}"));
    assert_eq!(logged[0]["payload"]["path"], format!("/v1/approvals/{id}"));
    assert_eq!(logged[1]["payload"]["path"], "/v1/approvals");
    assert_eq!(logged[1]["payload"]["query"], "status=pending");
    // An approver's reads are not audited.
    let (_, approver) = api.store_key(Role::Approver, None).await;
    api.get(&approver, "/v1/approvals").await.expect(200);
    let global = walk(
        &api,
        ADMIN,
        "/v1/events?tenant_id=_global&event_type=audit.read",
    )
    .await;
    assert!(global.is_empty(), "{global:?}");
}

/// A refused approval step: the API's code for its status, and the state machine's reason in
/// `details`.
#[track_caller]
fn assert_refusal(r: &Resp, status: u16, reason: &str) {
    let code = match status {
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        _ => "validation_failed",
    };
    let details = assert_error(r, status, code);
    assert_eq!(details[0]["reason"], json!(reason), "{details:?}");
}
