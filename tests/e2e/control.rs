//! The control endpoints on PostgreSQL (the API tests run them on the embedded store): dual
//! approval with two approver keys, and an impersonation session with its actions, through a
//! real server on its own database.

use crate::postgres::{hex_seed, start_pg, Db};
use crate::support::*;
use serde_json::{json, Value};

async fn post(c: &reqwest::Client, url: &str, key: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post(url)
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: &str, key: &str) -> (u16, Value) {
    let r = c.get(url).bearer_auth(key).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[test]
fn approvals_and_impersonation_sessions_on_postgres() {
    let db = Db::create();
    let dir = tempfile::tempdir().unwrap();
    let server = start_pg(&db, &hex_seed(), dir.path());
    let u = server.url.clone();
    rt().block_on(async {
        let c = client();
        // Two approver keys, made through the key API.
        let mut approvers = Vec::new();
        for _ in 0..2 {
            let (s, k) = post(&c, &format!("{u}/v1/keys"), ADMIN, &json!({"role": "approver"})).await;
            assert_eq!(s, 201, "{k}");
            approvers.push(k["key"].as_str().unwrap().to_string());
        }
        let (s, v) = post(
            &c,
            &format!("{u}/v1/approvals"),
            ADMIN,
            &json!({"tenant_id": "pg_ctl", "requested_by": "svc:console", "reason": "customer asked",
                    "action": {"event_type": "tenant.disable", "payload": {"target": "pg_ctl"}}}),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        assert_eq!(v["status"], "pending");
        let id = v["id"].as_str().unwrap().to_string();
        for (i, k) in approvers.iter().enumerate() {
            let (s, v) = post(
                &c,
                &format!("{u}/v1/approvals/{id}/approve"),
                k,
                &json!({"approver": format!("user:a{i}"), "comment": "ok"}),
            )
            .await;
            assert_eq!(s, 200, "{v}");
        }
        // The same key again counts once: refused.
        let (s, _) = post(
            &c,
            &format!("{u}/v1/approvals/{id}/approve"),
            &approvers[0],
            &json!({"approver": "user:a0", "comment": "again"}),
        )
        .await;
        assert_eq!(s, 409);
        let (s, v) = get(&c, &format!("{u}/v1/approvals/{id}"), ADMIN).await;
        assert_eq!(s, 200);
        assert_eq!(v["status"], "approved", "{v}");

        // An impersonation session with two actions, then its end.
        let ev = |t: &str, payload: Value, session: Option<&str>| {
            let mut e = json!({"event_type": t, "actor": "admin:ops", "tenant_id": "pg_ctl", "payload": payload});
            if let Some(s) = session {
                e["impersonation_session"] = json!(s);
            }
            e
        };
        let batch = json!([
            ev("impersonation.start", json!({"impersonator": "admin:ops", "impersonated": "user:ana",
                "session_id": "imp_1", "reason": "ticket 42"}), None),
            ev("settings.view", json!({}), Some("imp_1")),
            ev("settings.change", json!({"before": 1, "after": 2}), Some("imp_1")),
        ]);
        let (s, v) = post(&c, &format!("{u}/v1/events"), ADMIN, &batch).await;
        assert_eq!(s, 200, "{v}");
        let (_, v) = get(&c, &format!("{u}/v1/impersonations?tenant_id=pg_ctl&active=true"), ADMIN).await;
        assert_eq!(v["impersonations"].as_array().unwrap().len(), 1, "{v}");
        let (s, v) = post(
            &c,
            &format!("{u}/v1/events"),
            ADMIN,
            &ev("impersonation.end", json!({"session_id": "imp_1", "actions_taken": 2}), None),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        let (s, v) = get(&c, &format!("{u}/v1/impersonations/imp_1"), ADMIN).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["active"], false);
        assert_eq!(v["impersonated"], "user:ana");
        let actions: Vec<&str> = v["actions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["event_type"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["settings.view", "settings.change"]);
    });
    server.stop();
}
