//! The built-in catalogue (docs/events.md): one valid event per type, and invalid ones rejected with
//! the JSON path of the problem.

use crate::common::*;
use serde_json::{json, Value};

fn h(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn event(t: &str, tenant: &str, payload: Value) -> Value {
    json!({"event_type": t, "actor": "user:ana@acme.example", "tenant_id": tenant, "payload": payload})
}

/// Valid payloads per catalogue type.
fn valid(t: &str) -> Value {
    match t {
        "prompt.update" => json!({
            "prompt_id": "pr_7", "before": {"prompt_hash": h('a')}, "after": {"prompt_hash": h('b')},
            "editor": "user:ana@acme.example", "reason": "tone fix"}),
        "crawl.run" => json!({
            "domain": "docs.example.com", "run_id": "r_1", "pages_crawled": 10, "pages_failed": 0,
            "status": "success", "trigger": "schedule"}),
        "policy.update" | "threshold.update" => json!({
            "setting": "max_tokens", "before": 100, "after": {"v": [1, 2]},
            "justification": "customer request"}),
        "impersonation.start" => json!({
            "impersonator": "admin:root", "impersonated": "user:ana", "session_id": "imp_1",
            "reason": "ticket 42"}),
        "impersonation.end" => json!({"session_id": "imp_1", "actions_taken": 0}),
        t if t.starts_with("billing.") => json!({
            "before": {"plan": "free"}, "after": {"plan": "pro"}, "reason": "upgrade"}),
        t if t.starts_with("killswitch.") => json!({
            "target": "embed-widget", "scope": "tenant", "reason": "abuse"}),
        _ => unreachable!("{t}"),
    }
}

const TYPES: [&str; 13] = [
    "prompt.update",
    "crawl.run",
    "policy.update",
    "threshold.update",
    "impersonation.start",
    "impersonation.end",
    "billing.plan.change",
    "billing.quota.override",
    "billing.grace.start",
    "billing.grace.end",
    "killswitch.embed.disable",
    "killswitch.embed.enable",
    // Outside the catalogue: free-form.
    "prompt.delete",
];

fn with(mut p: Value, path: &[&str], v: Option<Value>) -> Value {
    let mut cur = &mut p;
    for k in &path[..path.len() - 1] {
        cur = &mut cur[*k];
    }
    let last = path[path.len() - 1];
    match v {
        Some(v) => cur[last] = v,
        None => {
            cur.as_object_mut().unwrap().remove(last);
        }
    }
    p
}

#[tokio::test]
async fn every_catalogue_type_accepts_a_valid_event() {
    let api = Api::new().await;
    for t in TYPES {
        let p = if t == "prompt.delete" {
            json!({"anything": [1, "goes"]})
        } else {
            valid(t)
        };
        let r = api.post_json(ADMIN, &event(t, "t_1", p)).await;
        r.expect(200);
    }
    // Optional and alternative forms.
    let ok = [
        ("impersonation.end", json!({"session_id": "imp_1"})),
        (
            "impersonation.end",
            json!({"session_id": "imp_1", "actions_taken": 12}),
        ),
        (
            "crawl.run",
            with(
                with(valid("crawl.run"), &["status"], Some(json!("failure"))),
                &["trigger"],
                Some(json!("indexnow")),
            ),
        ),
        (
            "crawl.run",
            with(valid("crawl.run"), &["trigger"], Some(json!("manual"))),
        ),
        (
            "crawl.run",
            with(
                valid("crawl.run"),
                &["domain"],
                Some(json!("help.t_0000.com")),
            ),
        ),
        (
            "policy.update",
            with(valid("policy.update"), &["before"], Some(Value::Null)),
        ),
        (
            "billing.plan.change",
            with(valid("billing.plan.change"), &["reason"], Some(json!(""))),
        ),
        ("prompt.update", {
            let mut p = valid("prompt.update");
            p["extra"] = json!("extra payload fields are fine");
            p
        }),
    ];
    for (t, p) in ok {
        if t == "impersonation.end" {
            // Ingest ends only open sessions: open it first.
            let mut start = valid("impersonation.start");
            start["session_id"] = p["session_id"].clone();
            api.post_json(ADMIN, &event("impersonation.start", "t_1", start))
                .await
                .expect(200);
        }
        let r = api.post_json(ADMIN, &event(t, "t_1", p.clone())).await;
        assert_eq!(r.status, 200, "{t} {p}: {}", r.text());
    }
}

#[tokio::test]
async fn catalogue_violations_name_their_path() {
    let api = Api::new().await;
    api.ingest(&ev("t_1", "seed")).await;
    let snap = api.snapshot().await;
    let m = |t: &str, path: &[&str], v: Option<Value>| with(valid(t), path, v);
    let cases: Vec<(&str, Value, &str)> = vec![
        // prompt.update
        (
            "prompt.update",
            m(
                "prompt.update",
                &["before", "prompt_hash"],
                Some(json!("sha256:abc")),
            ),
            "payload.before.prompt_hash",
        ),
        (
            "prompt.update",
            m(
                "prompt.update",
                &["after", "prompt_hash"],
                Some(json!(h('A'))),
            ),
            "payload.after.prompt_hash",
        ),
        (
            "prompt.update",
            m(
                "prompt.update",
                &["after", "prompt_hash"],
                Some(json!("a".repeat(64))),
            ),
            "payload.after.prompt_hash",
        ),
        (
            "prompt.update",
            m("prompt.update", &["before", "prompt_hash"], None),
            "payload.before.prompt_hash",
        ),
        (
            "prompt.update",
            m("prompt.update", &["before"], Some(json!("x"))),
            "payload.before",
        ),
        (
            "prompt.update",
            m("prompt.update", &["reason"], Some(json!(""))),
            "payload.reason",
        ),
        (
            "prompt.update",
            m("prompt.update", &["reason"], None),
            "payload.reason",
        ),
        (
            "prompt.update",
            m("prompt.update", &["prompt_id"], Some(json!(7))),
            "payload.prompt_id",
        ),
        (
            "prompt.update",
            m("prompt.update", &["editor"], None),
            "payload.editor",
        ),
        // crawl.run
        (
            "crawl.run",
            m("crawl.run", &["pages_failed"], Some(json!(-1))),
            "payload.pages_failed",
        ),
        (
            "crawl.run",
            m("crawl.run", &["pages_crawled"], Some(json!(1.5))),
            "payload.pages_crawled",
        ),
        (
            "crawl.run",
            m("crawl.run", &["pages_crawled"], Some(json!("10"))),
            "payload.pages_crawled",
        ),
        (
            "crawl.run",
            m("crawl.run", &["pages_failed"], None),
            "payload.pages_failed",
        ),
        (
            "crawl.run",
            m("crawl.run", &["status"], Some(json!("ok"))),
            "payload.status",
        ),
        (
            "crawl.run",
            m("crawl.run", &["trigger"], Some(json!("cron"))),
            "payload.trigger",
        ),
        (
            "crawl.run",
            m(
                "crawl.run",
                &["domain"],
                Some(json!("http://docs.example.com")),
            ),
            "payload.domain",
        ),
        (
            "crawl.run",
            m("crawl.run", &["domain"], Some(json!("-bad.example.com"))),
            "payload.domain",
        ),
        (
            "crawl.run",
            m("crawl.run", &["run_id"], None),
            "payload.run_id",
        ),
        // policy.update / threshold.update
        (
            "policy.update",
            m("policy.update", &["justification"], Some(json!(""))),
            "payload.justification",
        ),
        (
            "policy.update",
            m("policy.update", &["before"], None),
            "payload.before",
        ),
        (
            "threshold.update",
            m("threshold.update", &["after"], None),
            "payload.after",
        ),
        (
            "threshold.update",
            m("threshold.update", &["setting"], Some(json!(1))),
            "payload.setting",
        ),
        // impersonation.*
        (
            "impersonation.start",
            m("impersonation.start", &["reason"], None),
            "payload.reason",
        ),
        (
            "impersonation.start",
            m("impersonation.start", &["impersonator"], Some(json!(""))),
            "payload.impersonator",
        ),
        (
            "impersonation.start",
            m("impersonation.start", &["session_id"], Some(json!("  "))),
            "payload.session_id",
        ),
        (
            "impersonation.end",
            m("impersonation.end", &["actions_taken"], Some(json!(-1))),
            "payload.actions_taken",
        ),
        (
            "impersonation.end",
            m("impersonation.end", &["session_id"], None),
            "payload.session_id",
        ),
        // billing.*
        (
            "billing.plan.change",
            m("billing.plan.change", &["before"], Some(json!("free"))),
            "payload.before",
        ),
        (
            "billing.quota.override",
            m("billing.quota.override", &["after"], Some(json!([1]))),
            "payload.after",
        ),
        (
            "billing.grace.start",
            m("billing.grace.start", &["reason"], None),
            "payload.reason",
        ),
        (
            "billing.grace.end",
            m("billing.grace.end", &["before"], None),
            "payload.before",
        ),
        // killswitch.*
        (
            "killswitch.embed.disable",
            m(
                "killswitch.embed.disable",
                &["scope"],
                Some(json!("global")),
            ),
            "tenant_id",
        ),
        (
            "killswitch.embed.enable",
            m("killswitch.embed.enable", &["scope"], Some(json!("all"))),
            "payload.scope",
        ),
        (
            "killswitch.embed.disable",
            m("killswitch.embed.disable", &["reason"], Some(json!(""))),
            "payload.reason",
        ),
        (
            "killswitch.embed.enable",
            m("killswitch.embed.enable", &["target"], None),
            "payload.target",
        ),
    ];
    for (t, p, path) in cases {
        let r = api.post_json(ADMIN, &event(t, "t_1", p.clone())).await;
        assert_eq!(
            r.status,
            422,
            "{t} {p} should be refused at {path}: {}",
            r.text()
        );
        assert_invalid(&r, &[(0, path)]);
    }
    // An empty payload reports every required field of the type.
    let r = api
        .post_json(ADMIN, &event("crawl.run", "t_1", json!({})))
        .await;
    let details = assert_invalid(
        &r,
        &[
            (0, "payload.domain"),
            (0, "payload.run_id"),
            (0, "payload.pages_crawled"),
            (0, "payload.pages_failed"),
            (0, "payload.status"),
            (0, "payload.trigger"),
        ],
    );
    assert_eq!(details.len(), 6, "{details:?}");
    api.assert_unchanged(&snap).await;
}

#[tokio::test]
async fn global_kill_switch_needs_global_tenant() {
    let api = Api::new().await;
    let p = with(
        valid("killswitch.embed.disable"),
        &["scope"],
        Some(json!("global")),
    );
    let r = api
        .post_json(ADMIN, &event("killswitch.embed.disable", "t_1", p.clone()))
        .await;
    assert_invalid(&r, &[(0, "tenant_id")]);
    assert!(api.snapshot().await.events.is_empty());
    let r = api
        .post_json(ADMIN, &event("killswitch.embed.disable", "_global", p))
        .await;
    r.expect(200);
    assert_eq!(r.json()["receipts"][0]["tenant_id"], "_global");
    // scope "tenant" in a tenant's own log is accepted.
    let r = api
        .post_json(
            ADMIN,
            &event(
                "killswitch.embed.enable",
                "t_1",
                valid("killswitch.embed.enable"),
            ),
        )
        .await;
    r.expect(200);
}
