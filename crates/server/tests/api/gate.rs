//! The ingest gate (docs/api.md#dual-approval, #impersonation-sessions): events accepted only
//! on the log's state. An `impersonation.end` needs an open session and an
//! `impersonation.start` a session id not open; an event of a `required_for` type needs an
//! approved approval of exactly its action, used once, with its `approval.used` step written in
//! the same append. Every refusal is a 422 that stores nothing.

use crate::common::*;
use axum::http::Method;
use serde_json::{json, Value};
use std::time::Duration;
use trailkeep_server::{ApprovalConfig, ServerConfig};
use trailkeep_store::Role;

fn start(tenant: &str, session: &str) -> Value {
    json!({"event_type": "impersonation.start", "actor": "admin:root@example.com",
           "tenant_id": tenant,
           "payload": {"impersonator": "admin:root@example.com", "impersonated": "user:bo@example.com",
                       "session_id": session, "reason": "ticket 42"}})
}

fn end(tenant: &str, session: &str) -> Value {
    json!({"event_type": "impersonation.end", "actor": "admin:root@example.com",
           "tenant_id": tenant, "payload": {"session_id": session}})
}

fn disable(tenant: &str, target: &str) -> Value {
    json!({"event_type": "tenant.disable", "actor": "svc:console", "tenant_id": tenant,
           "payload": {"target": target, "reason": "fraud"}})
}

fn with_approval(mut e: Value, id: &str) -> Value {
    e["approval_id"] = json!(id);
    e
}

async fn gated_api(approvers: u32, ttl: Duration) -> Api {
    Api::with_config(ServerConfig {
        approvals: ApprovalConfig::new(&["tenant.disable".to_string()], approvers, ttl).unwrap(),
        ..ServerConfig::default()
    })
    .await
}

async fn send(api: &Api, uri: &str, key: &str, body: &Value) -> Resp {
    api.request(
        Method::POST,
        uri,
        Some(key),
        Some(JSON),
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

/// An approval of `action` in `tenant`, approved by `approvers` distinct approver keys.
async fn approved(api: &Api, tenant: &str, action: &Value, approvers: u32) -> String {
    let r = send(
        api,
        "/v1/approvals",
        ADMIN,
        &json!({"tenant_id": tenant, "requested_by": "svc:console", "reason": "asked",
                "action": {"event_type": action["event_type"], "payload": action["payload"]}}),
    )
    .await;
    r.expect(201);
    let id = r.json()["id"].as_str().unwrap().to_string();
    for n in 0..approvers {
        let (_, key) = api.store_key(Role::Approver, None).await;
        send(
            api,
            &format!("/v1/approvals/{id}/approve"),
            &key,
            &json!({"approver": format!("user:approver{n}")}),
        )
        .await
        .expect(200);
    }
    id
}

async fn status_of(api: &Api, id: &str) -> Value {
    api.get(ADMIN, &format!("/v1/approvals/{id}")).await.json()
}

#[tokio::test]
async fn an_end_needs_an_open_session_and_a_start_an_id_not_open() {
    let api = Api::new().await;
    let before = api.snapshot().await;
    let r = api.post_json(ADMIN, &end("t_a", "imp_1")).await;
    let d = assert_invalid(&r, &[(0, "payload.session_id")]);
    assert!(d[0]["message"].as_str().unwrap().contains("imp_1"), "{d:?}");
    api.assert_unchanged(&before).await;

    api.post_json(ADMIN, &start("t_a", "imp_1"))
        .await
        .expect(200);
    // Open: a second start is refused, in the same tenant only.
    let before = api.snapshot().await;
    let r = api.post_json(ADMIN, &start("t_a", "imp_1")).await;
    assert_invalid(&r, &[(0, "payload.session_id")]);
    api.assert_unchanged(&before).await;
    api.post_json(ADMIN, &start("t_b", "imp_1"))
        .await
        .expect(200);

    // A valid event before the refused one is not stored either (all or nothing).
    let before = api.snapshot().await;
    let r = api
        .post_json(ADMIN, &json!([ev("t_a", "note.add"), end("t_a", "imp_2")]))
        .await;
    assert_invalid(&r, &[(1, "payload.session_id")]);
    api.assert_unchanged(&before).await;

    api.post_json(ADMIN, &end("t_a", "imp_1")).await.expect(200);
    // Ended: a second end is refused; the id may start a new session.
    let r = api.post_json(ADMIN, &end("t_a", "imp_1")).await;
    let d = assert_invalid(&r, &[(0, "payload.session_id")]);
    assert!(
        d[0]["message"].as_str().unwrap().contains("is open"),
        "{d:?}"
    );
    api.post_json(ADMIN, &start("t_a", "imp_1"))
        .await
        .expect(200);

    // Start and end in one request; a start and a second start of one id in one request.
    api.post_json(ADMIN, &json!([start("t_a", "imp_3"), end("t_a", "imp_3")]))
        .await
        .expect(200);
    let r = api
        .post_json(
            ADMIN,
            &json!([start("t_a", "imp_4"), start("t_a", "imp_4")]),
        )
        .await;
    assert_invalid(&r, &[(1, "payload.session_id")]);
}

#[tokio::test]
async fn a_resent_start_or_end_is_a_duplicate_not_a_refusal() {
    let api = Api::new().await;
    let mut s = start("t_a", "imp_1");
    s["event_id"] = json!(uuid());
    let first = api.post_json(ADMIN, &s).await;
    first.expect(200);
    let again = api.post_json(ADMIN, &s).await;
    again.expect(200);
    assert_eq!(again.json()["duplicates"], 1);
    assert_eq!(again.json()["receipts"], first.json()["receipts"]);
    let mut e = end("t_a", "imp_1");
    e["event_id"] = json!(uuid());
    api.post_json(ADMIN, &e).await.expect(200);
    let again = api.post_json(ADMIN, &e).await;
    again.expect(200);
    assert_eq!(again.json()["duplicates"], 1);
}

#[tokio::test]
async fn two_ends_of_one_session_at_once_exactly_one_is_stored() {
    let api = Api::new().await;
    for n in 0..10 {
        let id = format!("imp_{n}");
        api.post_json(ADMIN, &start("t_a", &id)).await.expect(200);
        let (e1, e2) = (end("t_a", &id), end("t_a", &id));
        let (r1, r2) = tokio::join!(api.post_json(ADMIN, &e1), api.post_json(ADMIN, &e2));
        let mut codes = [r1.status.as_u16(), r2.status.as_u16()];
        codes.sort();
        assert_eq!(codes, [200, 422], "round {n}");
    }
    let ends = walk(
        &api,
        ADMIN,
        "/v1/events?tenant_id=t_a&event_type=impersonation.end",
    )
    .await;
    assert_eq!(ends.len(), 10);
}

#[tokio::test]
async fn a_required_type_needs_an_approved_approval_of_exactly_its_action() {
    let api = gated_api(2, Duration::from_secs(3600)).await;
    let before = api.snapshot().await;
    let r = api.post_json(ADMIN, &disable("t_app", "t_x")).await;
    let d = assert_invalid(&r, &[(0, "approval_id")]);
    assert!(
        d[0]["message"]
            .as_str()
            .unwrap()
            .contains("POST /v1/approvals"),
        "{d:?}"
    );
    // An approval id that does not exist, and one of another shape.
    let r = api
        .post_json(
            ADMIN,
            &with_approval(
                disable("t_app", "t_x"),
                "apr_0123456789abcdef0123456789abcdef",
            ),
        )
        .await;
    assert_invalid(&r, &[(0, "approval_id")]);
    api.assert_unchanged(&before).await;

    // Pending (one of two approvers): refused.
    let action = disable("t_app", "t_x");
    let id = approved(&api, "t_app", &action, 1).await;
    assert_eq!(status_of(&api, &id).await["status"], "pending");
    let r = api
        .post_json(ADMIN, &with_approval(action.clone(), &id))
        .await;
    assert_invalid(&r, &[(0, "approval_id")]);

    // Approved, but another payload (or type, or tenant): refused.
    let id = approved(&api, "t_app", &action, 2).await;
    assert_eq!(status_of(&api, &id).await["status"], "approved");
    let before = api.snapshot().await;
    for other in [
        disable("t_app", "t_y"),
        disable("t_other", "t_x"),
        json!({"event_type": "tenant.enable", "actor": "svc:console", "tenant_id": "t_app",
               "payload": {"target": "t_x", "reason": "fraud"}}),
    ] {
        let r = api.post_json(ADMIN, &with_approval(other, &id)).await;
        assert_invalid(&r, &[(0, "approval_id")]);
    }
    api.assert_unchanged(&before).await;

    // The approved action: stored with its approval.used step; the receipt is the event's only.
    let mut e = with_approval(action.clone(), &id);
    e["event_id"] = json!(uuid());
    let r = api.post_json(ADMIN, &e).await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["accepted"], 1, "{v}");
    assert_eq!(v["receipts"].as_array().unwrap().len(), 1);
    let s = status_of(&api, &id).await;
    assert_eq!(s["status"], "used", "{s}");
    let used = walk(
        &api,
        ADMIN,
        "/v1/events?tenant_id=t_app&event_type=approval.used",
    )
    .await;
    assert_eq!(used.len(), 1);
    assert_eq!(used[0]["approval_id"], json!(id));
    assert_eq!(used[0]["payload"]["event_id"], e["event_id"]);

    // Re-sending that event is a duplicate; using the approval again is refused.
    let again = api.post_json(ADMIN, &e).await;
    again.expect(200);
    assert_eq!(again.json()["duplicates"], 1);
    let r = api
        .post_json(ADMIN, &with_approval(action.clone(), &id))
        .await;
    let d = assert_invalid(&r, &[(0, "approval_id")]);
    assert!(d[0]["message"].as_str().unwrap().contains("used"), "{d:?}");
    // One approval for two events of one request: the second is refused.
    let id = approved(&api, "t_app", &action, 2).await;
    let r = api
        .post_json(
            ADMIN,
            &json!([
                with_approval(action.clone(), &id),
                with_approval(action.clone(), &id)
            ]),
        )
        .await;
    assert_invalid(&r, &[(1, "approval_id")]);
    assert_eq!(status_of(&api, &id).await["status"], "approved");
}

#[tokio::test]
async fn an_expired_approval_cannot_be_used() {
    let api = gated_api(1, Duration::from_millis(300)).await;
    let action = disable("t_app", "t_x");
    let id = approved(&api, "t_app", &action, 1).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = api.snapshot().await;
    let r = api.post_json(ADMIN, &with_approval(action, &id)).await;
    let d = assert_invalid(&r, &[(0, "approval_id")]);
    assert!(
        d[0]["message"].as_str().unwrap().contains("expired"),
        "{d:?}"
    );
    api.assert_unchanged(&before).await;
}

#[tokio::test]
async fn two_events_using_one_approval_at_once_exactly_one_is_stored() {
    let api = gated_api(1, Duration::from_secs(3600)).await;
    for n in 0..5 {
        let action = disable("t_app", &format!("t_{n}"));
        let id = approved(&api, "t_app", &action, 1).await;
        let (e1, e2) = (
            with_approval(action.clone(), &id),
            with_approval(action.clone(), &id),
        );
        let (r1, r2) = tokio::join!(api.post_json(ADMIN, &e1), api.post_json(ADMIN, &e2));
        let mut codes = [r1.status.as_u16(), r2.status.as_u16()];
        codes.sort();
        assert_eq!(codes, [200, 422], "round {n}");
        assert_eq!(status_of(&api, &id).await["status"], "used");
    }
    let done = walk(
        &api,
        ADMIN,
        "/v1/events?tenant_id=t_app&event_type=tenant.disable",
    )
    .await;
    assert_eq!(done.len(), 5);
    let used = walk(
        &api,
        ADMIN,
        "/v1/events?tenant_id=t_app&event_type=approval.used",
    )
    .await;
    assert_eq!(used.len(), 5);
}

#[tokio::test]
async fn an_approval_id_on_a_type_not_required_is_still_checked_and_used_once() {
    let api = Api::new().await;
    let action = json!({"event_type": "killswitch.embed.disable", "actor": "admin:ops",
        "tenant_id": "_global",
        "payload": {"target": "embed", "scope": "global", "reason": "incident 7"}});
    let id = approved(&api, "_global", &action, 2).await;
    api.post_json(ADMIN, &with_approval(action.clone(), &id))
        .await
        .expect(200);
    let r = api.post_json(ADMIN, &with_approval(action, &id)).await;
    assert_invalid(&r, &[(0, "approval_id")]);
}

#[tokio::test]
async fn the_sweeper_writes_approval_expired_once_and_never_for_a_used_approval() {
    let api = gated_api(1, Duration::from_millis(300)).await;
    let used_action = disable("t_app", "t_used");
    let used = approved(&api, "t_app", &used_action, 1).await;
    api.post_json(ADMIN, &with_approval(used_action, &used))
        .await
        .expect(200);
    let pending = send(
        &api,
        "/v1/approvals",
        ADMIN,
        &json!({"tenant_id": "t_app", "requested_by": "svc:console", "reason": "asked",
                "action": {"event_type": "tenant.disable", "payload": {"target": "t_p", "reason": "r"}}}),
    )
    .await
    .json()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let granted = approved(&api, "t_app", &disable("t_app", "t_g"), 1).await;
    let mut sweeper = trailkeep_server::expiry::Sweeper;
    // Not due yet: nothing written.
    assert_eq!(sweeper.sweep(&api.state).await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(sweeper.sweep(&api.state).await.unwrap(), 2);
    // A second pass, and a fresh sweeper (another server, or a restart), write nothing more.
    assert_eq!(sweeper.sweep(&api.state).await.unwrap(), 0);
    let mut other = trailkeep_server::expiry::Sweeper;
    assert_eq!(other.sweep(&api.state).await.unwrap(), 0);
    let expired = walk(
        &api,
        ADMIN,
        "/v1/events?tenant_id=t_app&event_type=approval.expired&order=asc",
    )
    .await;
    let mut ids: Vec<&str> = expired
        .iter()
        .map(|e| e["approval_id"].as_str().unwrap())
        .collect();
    ids.sort();
    let mut want = vec![pending.as_str(), granted.as_str()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(expired[0]["actor"], "trailkeep");
    assert_eq!(status_of(&api, &used).await["status"], "used");
    assert_eq!(status_of(&api, &pending).await["status"], "expired");
}

#[tokio::test]
async fn approve_and_reject_at_once_and_use_and_reject_at_once_end_consistently() {
    let api = gated_api(1, Duration::from_secs(3600)).await;
    let (_, approver) = api.store_key(Role::Approver, None).await;
    let (_, vetoer) = api.store_key(Role::Approver, None).await;
    let decision = |who: &str| json!({"approver": who, "comment": "race"});
    for n in 0..5 {
        // Approve and reject at once: whatever the order, the approval ends rejected (a
        // rejection after the approval is a late veto), and it cannot be used.
        let action = disable("t_app", &format!("t_a{n}"));
        let r = send(
            &api,
            "/v1/approvals",
            ADMIN,
            &json!({"tenant_id": "t_app", "requested_by": "svc:console", "reason": "asked",
                    "action": {"event_type": "tenant.disable", "payload": action["payload"]}}),
        )
        .await;
        let id = r.json()["id"].as_str().unwrap().to_string();
        let (ua, ur) = (
            format!("/v1/approvals/{id}/approve"),
            format!("/v1/approvals/{id}/reject"),
        );
        let (da, dr) = (decision("user:lea"), decision("user:max"));
        let (ra, rr) = tokio::join!(
            send(&api, &ua, &approver, &da),
            send(&api, &ur, &vetoer, &dr)
        );
        assert_eq!(rr.status.as_u16(), 200, "the rejection always lands");
        assert!(matches!(ra.status.as_u16(), 200 | 409), "{}", ra.text());
        assert_eq!(status_of(&api, &id).await["status"], "rejected");
        let r = api.post_json(ADMIN, &with_approval(action, &id)).await;
        assert_invalid(&r, &[(0, "approval_id")]);

        // Use and reject at once: exactly one wins, and the state says which.
        let action = disable("t_app", &format!("t_b{n}"));
        let id = approved(&api, "t_app", &action, 1).await;
        let event = with_approval(action, &id);
        let ur = format!("/v1/approvals/{id}/reject");
        let dr = decision("user:max");
        let (ru, rr) = tokio::join!(api.post_json(ADMIN, &event), send(&api, &ur, &vetoer, &dr));
        let status = status_of(&api, &id).await["status"].clone();
        match (ru.status.as_u16(), rr.status.as_u16()) {
            (200, 409) => assert_eq!(status, "used"),
            (422, 200) => assert_eq!(status, "rejected"),
            other => panic!("use and reject: {other:?}: {} / {}", ru.text(), rr.text()),
        }
    }
}

#[tokio::test]
async fn a_resent_start_of_an_ended_session_does_not_reopen_it() {
    let api = Api::new().await;
    let mut s = start("t_a", "imp_r");
    s["event_id"] = json!(uuid());
    api.post_json(ADMIN, &s).await.expect(200);
    api.post_json(ADMIN, &end("t_a", "imp_r")).await.expect(200);
    // The old start again (a client retrying late): a duplicate, nothing changes.
    let again = api.post_json(ADMIN, &s).await;
    again.expect(200);
    assert_eq!(again.json()["duplicates"], 1);
    // The session is still ended: a new start is accepted, a second end after it too.
    let r = api.post_json(ADMIN, &end("t_a", "imp_r")).await;
    assert_invalid(&r, &[(0, "payload.session_id")]);
    api.post_json(ADMIN, &start("t_a", "imp_r"))
        .await
        .expect(200);
    api.post_json(ADMIN, &end("t_a", "imp_r")).await.expect(200);
    // The same with the old start beside a new event of the same session in one request.
    let r = api
        .post_json(ADMIN, &json!([s.clone(), start("t_a", "imp_r")]))
        .await;
    r.expect(200);
    assert_eq!(r.json()["duplicates"], 1);
    let r = api.post_json(ADMIN, &start("t_a", "imp_r")).await;
    assert_invalid(&r, &[(0, "payload.session_id")]);
}
