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

/// Two servers on one database, the same approval used, and the same session ended, through
/// both at the same moment: exactly one of each pair is stored (the tenant's control lock is
/// a PostgreSQL advisory lock, shared by every process).
#[test]
fn one_approval_used_and_one_session_ended_at_once_through_two_servers_store_one() {
    let db = Db::create();
    let dirs: Vec<_> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let seed = hex_seed();
    let a = start_pg(&db, &seed, dirs[0].path());
    let b = start_pg(&db, &seed, dirs[1].path());
    let (ua, ub) = (a.url.clone(), b.url.clone());
    let (ea, eb) = (format!("{ua}/v1/events"), format!("{ub}/v1/events"));
    rt().block_on(async {
        let c = client();
        let mut approvers = Vec::new();
        for _ in 0..2 {
            let (s, k) = post(
                &c,
                &format!("{ua}/v1/keys"),
                ADMIN,
                &json!({"role": "approver"}),
            )
            .await;
            assert_eq!(s, 201, "{k}");
            approvers.push(k["key"].as_str().unwrap().to_string());
        }
        for round in 0..6 {
            let action = json!({"event_type": "tenant.disable",
                                "payload": {"target": format!("t_{round}"), "reason": "fraud"}});
            let (s, v) = post(
                &c,
                &format!("{ua}/v1/approvals"),
                ADMIN,
                &json!({"tenant_id": "pg_race", "requested_by": "svc:console", "reason": "asked",
                        "action": action}),
            )
            .await;
            assert_eq!(s, 201, "{v}");
            let id = v["id"].as_str().unwrap().to_string();
            for (i, k) in approvers.iter().enumerate() {
                let (s, v) = post(
                    &c,
                    &format!("{ub}/v1/approvals/{id}/approve"),
                    k,
                    &json!({"approver": format!("user:a{i}")}),
                )
                .await;
                assert_eq!(s, 200, "{v}");
            }
            let event = json!({"event_type": "tenant.disable", "actor": "svc:console",
                               "tenant_id": "pg_race", "payload": action["payload"],
                               "approval_id": id});
            let (ra, rb) =
                tokio::join!(post(&c, &ea, ADMIN, &event), post(&c, &eb, ADMIN, &event),);
            let mut codes = [ra.0, rb.0];
            codes.sort();
            assert_eq!(codes, [200, 422], "round {round}: {ra:?} {rb:?}");
            let (_, v) = get(&c, &format!("{ub}/v1/approvals/{id}"), ADMIN).await;
            assert_eq!(v["status"], "used", "{v}");

            let session = format!("imp_{round}");
            let start = json!({"event_type": "impersonation.start", "actor": "admin:ops",
                "tenant_id": "pg_race",
                "payload": {"impersonator": "admin:ops", "impersonated": "user:bo",
                            "session_id": session, "reason": "ticket"}});
            let (s, v) = post(&c, &format!("{ua}/v1/events"), ADMIN, &start).await;
            assert_eq!(s, 200, "{v}");
            let end = json!({"event_type": "impersonation.end", "actor": "admin:ops",
                "tenant_id": "pg_race", "payload": {"session_id": session}});
            let (ra, rb) = tokio::join!(post(&c, &ea, ADMIN, &end), post(&c, &eb, ADMIN, &end),);
            let mut codes = [ra.0, rb.0];
            codes.sort();
            assert_eq!(codes, [200, 422], "round {round}: {ra:?} {rb:?}");
        }
        let (_, v) = get(
            &c,
            &format!("{ua}/v1/events?tenant_id=pg_race&event_type=approval.used&limit=100"),
            ADMIN,
        )
        .await;
        assert_eq!(v["events"].as_array().unwrap().len(), 6, "{v}");
        let (_, v) = get(
            &c,
            &format!("{ub}/v1/events?tenant_id=pg_race&event_type=impersonation.end&limit=100"),
            ADMIN,
        )
        .await;
        assert_eq!(v["events"].as_array().unwrap().len(), 6, "{v}");
    });
}
