//! The viewer (docs/api.md#viewer): minting viewer tokens, verifying them, the token's tenant
//! (and actor) as the only scope of every viewer endpoint, the page's security headers, and
//! `audit.read` events for viewer reads.

use crate::common::*;
use axum::http::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use trailkeep_server::checkpoint::checkpoint_round;
use trailkeep_server::viewer::token::{Claims, TokenKey};
use trailkeep_server::viewer::{check_frame_ancestor, ViewerConfig};
use trailkeep_server::ServerConfig;

async fn mint_raw(api: &Api, key: Option<&str>, body: &[u8]) -> Resp {
    api.request(
        Method::POST,
        "/v1/viewer-tokens",
        key,
        Some(JSON),
        body.to_vec(),
    )
    .await
}

/// Mints a token as the admin; returns the response body.
async fn mint(api: &Api, body: Value) -> Value {
    let r = mint_raw(api, Some(ADMIN), &serde_json::to_vec(&body).unwrap()).await;
    r.expect(201);
    r.json()
}

async fn token_for(api: &Api, tenant: &str, actor: Option<&str>) -> String {
    let mut body = json!({ "tenant_id": tenant });
    if let Some(a) = actor {
        body["actor"] = json!(a);
    }
    mint(api, body).await["token"].as_str().unwrap().to_string()
}

async fn vget(api: &Api, uri: &str) -> Resp {
    api.request(Method::GET, uri, None, None, Vec::new()).await
}

/// Every event a token lists, following cursors.
async fn viewer_walk(api: &Api, token: &str, extra: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut uri = format!("/viewer/api/events?token={}&limit=2{extra}", enc(token));
        if let Some(c) = &cursor {
            uri.push_str(&format!("&cursor={}", enc(c)));
        }
        let r = vget(api, &uri).await;
        r.expect(200);
        let v = r.json();
        out.extend(v["events"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

fn with_actor(tenant: &str, actor: &str, n: u32) -> Value {
    json!({
        "event_type": "policy.change",
        "actor": actor,
        "tenant_id": tenant,
        "payload": {"before": {"limit": n}, "after": {"limit": n + 1}, "note": format!("{tenant} secret {n}")},
    })
}

/// Tenants t_a (5 events, two actors) and t_b (3 events); returns t_b's event ids.
async fn two_tenants(api: &Api) -> Vec<String> {
    let mut batch = Vec::new();
    for n in 0..3 {
        batch.push(with_actor("t_a", "user:ana@a.example", n));
    }
    for n in 0..2 {
        batch.push(with_actor("t_a", "user:bo@a.example", n));
    }
    for n in 0..3 {
        batch.push(with_actor("t_b", "user:ana@a.example", n));
    }
    let v = api.ingest(&json!(batch)).await;
    v["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["tenant_id"] == "t_b")
        .map(|r| r["event_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn minting_needs_an_admin_key() {
    let api = Api::new().await;
    let body = br#"{"tenant_id":"t_a"}"#;
    assert_error(&mint_raw(&api, None, body).await, 401, "unauthorized");
    for role in ["reader", "auditor", "ingest"] {
        let (_, key) = api.create_key(role, None).await;
        assert_error(&mint_raw(&api, Some(&key), body).await, 403, "forbidden");
    }
    let (_, bound) = api.create_key("reader", Some("t_a")).await;
    assert_error(&mint_raw(&api, Some(&bound), body).await, 403, "forbidden");
    mint_raw(&api, Some(ADMIN), body).await.expect(201);
}

#[tokio::test]
async fn a_minted_token_is_short_lived_and_names_its_scope() {
    let api = Api::new().await;
    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let v = mint(&api, json!({"tenant_id": "t_a"})).await;
    let token = v["token"].as_str().unwrap();
    assert!(token.starts_with("tkv1."), "{v}");
    assert_eq!(v["tenant_id"], "t_a");
    assert_eq!(v["actor"], Value::Null);
    assert!(v["token_id"].as_str().unwrap().starts_with("vt_"));
    assert_eq!(v["viewer_path"], format!("/viewer?token={token}"));
    let exp = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    // Default: 15 minutes.
    assert!((before + 900..=before + 902).contains(&exp), "{v}");

    let v = mint(
        &api,
        json!({"tenant_id": "t_a", "actor": "user:x", "ttl_seconds": 3600}),
    )
    .await;
    assert_eq!(v["actor"], "user:x");
    let s = vget(
        &api,
        &format!(
            "/viewer/api/session?token={}",
            enc(v["token"].as_str().unwrap())
        ),
    )
    .await;
    s.expect(200);
    let s = s.json();
    assert_eq!(s["tenant_id"], "t_a");
    assert_eq!(s["actor"], "user:x");
    assert_eq!(s["token_id"], v["token_id"]);
    assert_eq!(s["expires_at"], v["expires_at"]);
    // Two tokens, two ids.
    let again = mint(&api, json!({"tenant_id": "t_a"})).await;
    assert_ne!(again["token_id"], v["token_id"]);
}

#[tokio::test]
async fn bad_mint_requests_are_refused_with_the_field_named() {
    let api = Api::with_config(ServerConfig {
        viewer: ViewerConfig {
            max_ttl_secs: 600,
            ..ViewerConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    assert_error(
        &mint_raw(&api, Some(ADMIN), b"{not json").await,
        400,
        "bad_request",
    );
    for (body, path) in [
        (json!(["t_a"]), ""),
        (json!({}), "tenant_id"),
        (json!({"tenant_id": "bad tenant"}), "tenant_id"),
        (json!({"tenant_id": "-x"}), "tenant_id"),
        (json!({"tenant_id": 5}), "tenant_id"),
        (json!({"tenant_id": "t_a", "ttl_seconds": 0}), "ttl_seconds"),
        (
            json!({"tenant_id": "t_a", "ttl_seconds": -5}),
            "ttl_seconds",
        ),
        (
            json!({"tenant_id": "t_a", "ttl_seconds": 601}),
            "ttl_seconds",
        ),
        (
            json!({"tenant_id": "t_a", "ttl_seconds": 1.5}),
            "ttl_seconds",
        ),
        (
            json!({"tenant_id": "t_a", "ttl_seconds": "60"}),
            "ttl_seconds",
        ),
        (json!({"tenant_id": "t_a", "actor": ""}), "actor"),
        (
            json!({"tenant_id": "t_a", "actor": "a".repeat(257)}),
            "actor",
        ),
        (json!({"tenant_id": "t_a", "role": "admin"}), "role"),
    ] {
        let r = mint_raw(&api, Some(ADMIN), &serde_json::to_vec(&body).unwrap()).await;
        let details = assert_invalid(&r, &[(0, path)]);
        assert_eq!(details.len(), 1, "{body}: {details:?}");
    }
    // The maximum itself is fine, and without ttl_seconds the default is capped by it.
    mint(&api, json!({"tenant_id": "t_a", "ttl_seconds": 600})).await;
    let v = mint(&api, json!({"tenant_id": "t_a"})).await;
    let exp = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
    .unix_timestamp();
    assert!(exp <= time::OffsetDateTime::now_utc().unix_timestamp() + 600);
}

#[tokio::test]
async fn expired_tampered_foreign_and_missing_tokens_are_401_with_a_reason() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expired = api
        .state
        .viewer_key
        .sign(&Claims::new("t_a", None, now - 1));
    let good = token_for(&api, "t_a", None).await;
    // Tampered: the payload says another tenant, the tag is the good token's.
    let (_, tag) = good.rsplit_once('.').unwrap();
    let other = api
        .state
        .viewer_key
        .sign(&Claims::new("t_b", None, now + 600));
    let (head, _) = other.rsplit_once('.').unwrap();
    let tampered = format!("{head}.{tag}");
    // One flipped character of the tag.
    let mut flipped = good.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == 'A' { 'B' } else { 'A' });
    // Signed with another key (a rotated token key).
    let rotated = TokenKey::new([1; 32]).sign(&Claims::new("t_a", None, now + 600));
    for (token, needle) in [
        (expired.as_str(), "expired"),
        (tampered.as_str(), "signature"),
        (flipped.as_str(), ""),
        (rotated.as_str(), "signature"),
        ("tkv1.garbage", "malformed"),
        ("tk_notaviewertoken", "malformed"),
    ] {
        for path in [
            "/viewer/api/session",
            "/viewer/api/events",
            "/viewer/api/events/0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f",
            "/viewer/api/events/0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f/proof",
        ] {
            let r = vget(&api, &format!("{path}?token={}", enc(token))).await;
            assert_error(&r, 401, "unauthorized");
            let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(msg.contains(needle), "{path} {token}: {msg}");
            assert!(msg.contains("new link"), "{msg}");
        }
    }
    let r = vget(&api, "/viewer/api/events").await;
    assert_error(&r, 401, "unauthorized");
    assert!(r.text().contains("missing viewer token"), "{}", r.text());
    // An API key is not a viewer token, and a viewer token is not an API key.
    let (_, reader) = api.create_key("reader", Some("t_a")).await;
    assert_error(
        &vget(&api, &format!("/viewer/api/events?token={}", enc(&reader))).await,
        401,
        "unauthorized",
    );
    assert_error(&api.get(&good, "/v1/events").await, 401, "unauthorized");
    // Nothing refused was logged.
    let logged = walk(&api, ADMIN, "/v1/events?event_type=audit.read").await;
    assert!(logged.is_empty(), "{logged:?}");
}

#[tokio::test]
async fn a_token_for_one_tenant_never_shows_another_tenants_events() {
    let api = Api::new().await;
    let b_ids = two_tenants(&api).await;
    checkpoint_round(&api.state, &mut HashMap::new())
        .await
        .unwrap();
    let a = token_for(&api, "t_a", None).await;
    let ta = enc(&a);
    // The walk's own reads are logged as `audit.read` in t_a; one logged in the same
    // millisecond as the seeded events sorts among them (its time is cut to the millisecond),
    // so only the seeded events are counted.
    let seen: Vec<Value> = viewer_walk(&api, &a, "")
        .await
        .into_iter()
        .filter(|e| e["event_type"] != "audit.read")
        .collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    // The viewer's own reads are `audit.read` events of t_a whose payload holds their filters
    // (`q=t_b` among them): they are t_a's, and not what this counts.
    let not_audit =
        |v: Vec<Value>| -> usize { v.iter().filter(|e| e["event_type"] != "audit.read").count() };
    assert_eq!(not_audit(viewer_walk(&api, &a, "&q=t_b").await), 0);
    assert!(seen.iter().all(|e| e["tenant_id"] == "t_a"), "{seen:?}");
    // Filters never widen the scope: a search for B's text, B's actor, every type.
    for extra in [
        "&q=t_b",
        "&q=secret",
        "&actor=user%3Aana%40a.example",
        "&event_type=*",
        "&order=asc",
    ] {
        let got = viewer_walk(&api, &a, extra).await;
        assert!(
            got.iter().all(|e| e["tenant_id"] == "t_a"),
            "{extra}: {got:?}"
        );
    }
    // (Viewer reads are logged in t_a with their filters, so only the tenant's own events are
    // counted here.)
    assert_eq!(
        not_audit(viewer_walk(&api, &a, "&q=t_b&event_type=policy.change").await),
        0
    );
    // Naming a tenant is refused, not obeyed.
    let r = vget(
        &api,
        &format!("/viewer/api/events?token={ta}&tenant_id=t_b"),
    )
    .await;
    assert_error(&r, 400, "bad_request");
    // B's events, one by one, and their proofs: 404 as if they did not exist.
    for id in &b_ids {
        for path in [
            format!("/viewer/api/events/{id}?token={ta}"),
            format!("/viewer/api/events/{id}/proof?token={ta}"),
        ] {
            assert_error(&vget(&api, &path).await, 404, "not_found");
        }
    }
    // The token's parameter given twice is refused (the second cannot widen the first).
    let b = token_for(&api, "t_b", None).await;
    let r = vget(
        &api,
        &format!("/viewer/api/events?token={ta}&token={}", enc(&b)),
    )
    .await;
    assert_error(&r, 400, "bad_request");
}

#[tokio::test]
async fn a_token_bound_to_an_actor_shows_only_that_actors_events() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let t = token_for(&api, "t_a", Some("user:bo@a.example")).await;
    let seen = viewer_walk(&api, &t, "").await;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|e| e["actor"] == "user:bo@a.example"));
    let r = vget(
        &api,
        &format!(
            "/viewer/api/events?token={}&actor=user%3Aana%40a.example",
            enc(&t)
        ),
    )
    .await;
    assert_error(&r, 403, "forbidden");
    // Ana's event in the same tenant is invisible to Bo's token.
    let all = walk(&api, ADMIN, "/v1/events?tenant_id=t_a").await;
    let ana = all
        .iter()
        .find(|e| e["actor"] == "user:ana@a.example")
        .unwrap();
    let id = ana["event_id"].as_str().unwrap();
    assert_error(
        &vget(&api, &format!("/viewer/api/events/{id}?token={}", enc(&t))).await,
        404,
        "not_found",
    );
}

#[tokio::test]
async fn event_detail_and_proof_status_pending_then_verified() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let t = enc(&token_for(&api, "t_a", None).await);
    let first = &viewer_walk(&api, &token_for(&api, "t_a", None).await, "").await[0];
    let id = first["event_id"].as_str().unwrap();
    let r = vget(&api, &format!("/viewer/api/events/{id}?token={t}")).await;
    r.expect(200);
    let e = r.json();
    assert_eq!(e["event_id"], id);
    assert_eq!(
        e["payload"]["after"]["limit"],
        first["payload"]["after"]["limit"]
    );
    assert!(e["leaf_hash"].is_string());
    // No checkpoint yet: pending.
    let r = vget(&api, &format!("/viewer/api/events/{id}/proof?token={t}")).await;
    r.expect(200);
    let p = r.json();
    assert_eq!(p["status"], "pending", "{p}");
    assert_eq!(p["tree_size"], Value::Null);
    checkpoint_round(&api.state, &mut HashMap::new())
        .await
        .unwrap();
    let r = vget(&api, &format!("/viewer/api/events/{id}/proof?token={t}")).await;
    r.expect(200);
    let p = r.json();
    assert_eq!(p["status"], "verified", "{p}");
    assert_eq!(p["leaf_hash"], e["leaf_hash"]);
    assert_eq!(p["seq"], e["seq"]);
    // The answer carries what a client needs to check it again itself.
    let verifier = trailkeep_tlog::Verifier::from_vkey(p["public_key"].as_str().unwrap()).unwrap();
    let cp = trailkeep_tlog::open_checkpoint(p["checkpoint"].as_str().unwrap(), &verifier).unwrap();
    assert_eq!(Some(cp.size), p["tree_size"].as_u64());
    let proof: Vec<trailkeep_tlog::Hash> = p["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| b64(h.as_str().unwrap()).try_into().unwrap())
        .collect();
    let leaf: trailkeep_tlog::Hash = b64(p["leaf_hash"].as_str().unwrap()).try_into().unwrap();
    trailkeep_tlog::verify_inclusion(e["seq"].as_u64().unwrap(), cp.size, &leaf, &proof, &cp.root)
        .unwrap();
    // A malformed id is a 400.
    assert_error(
        &vget(&api, &format!("/viewer/api/events/nope?token={t}")).await,
        400,
        "bad_request",
    );
}

#[tokio::test]
async fn viewer_reads_are_logged_in_the_tokens_tenant_with_its_id() {
    let api = Api::new().await;
    two_tenants(&api).await;
    let v = mint(
        &api,
        json!({"tenant_id": "t_a", "actor": "user:ana@a.example"}),
    )
    .await;
    let token = v["token"].as_str().unwrap();
    let token_id = v["token_id"].as_str().unwrap();
    let t = enc(token);
    // The session and the page read no events: not logged.
    vget(&api, &format!("/viewer/api/session?token={t}"))
        .await
        .expect(200);
    vget(&api, &format!("/viewer?token={t}")).await.expect(200);
    assert!(walk(&api, ADMIN, "/v1/events?event_type=audit.read")
        .await
        .is_empty());
    let r = vget(
        &api,
        &format!("/viewer/api/events?token={t}&event_type=policy.change&q=secret&limit=2"),
    )
    .await;
    r.expect(200);
    let id = r.json()["events"][0]["event_id"]
        .as_str()
        .unwrap()
        .to_string();
    vget(&api, &format!("/viewer/api/events/{id}?token={t}"))
        .await
        .expect(200);
    vget(&api, &format!("/viewer/api/events/{id}/proof?token={t}"))
        .await
        .expect(200);
    let logged = walk(
        &api,
        ADMIN,
        "/v1/events?event_type=audit.read&order=asc&tenant_id=t_a",
    )
    .await;
    assert_eq!(logged.len(), 3, "{logged:?}");
    for e in &logged {
        assert_eq!(e["actor"], format!("viewer:{token_id}"));
        assert_eq!(e["payload"]["token_id"], token_id);
        assert_eq!(e["payload"]["actor_scope"], "user:ana@a.example");
        let text = e.to_string();
        assert!(!text.contains(token), "the token itself is logged: {text}");
    }
    assert_eq!(logged[0]["payload"]["path"], "/viewer/api/events");
    assert_eq!(
        logged[0]["payload"]["filters"],
        json!({"event_type": "policy.change", "q": "secret", "limit": "2"})
    );
    assert_eq!(
        logged[1]["payload"]["path"],
        format!("/viewer/api/events/{id}")
    );
    assert_eq!(
        logged[2]["payload"]["path"],
        format!("/viewer/api/events/{id}/proof")
    );
    // Nothing in any other tenant.
    let all = walk(&api, ADMIN, "/v1/events?event_type=audit.read").await;
    assert_eq!(all.len(), 3);
    // The logged filters are bounded.
    let long = "x".repeat(5000);
    vget(&api, &format!("/viewer/api/events?token={t}&q={long}"))
        .await
        .expect(200);
    let last = walk(&api, ADMIN, "/v1/events?event_type=audit.read&limit=1").await;
    assert!(last[0]["payload"]["filters"]["q"].as_str().unwrap().len() <= 256);
    // A read that cannot be logged is not served.
    api.store.shutdown().await;
    let r = vget(&api, &format!("/viewer/api/events?token={t}")).await;
    assert_eq!(r.status.as_u16(), 503, "{}", r.text());
}

fn csp_directives(r: &Resp) -> HashMap<String, String> {
    let csp = r
        .headers
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("no Content-Security-Policy: {:?}", r.headers));
    csp.split(';')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| match d.split_once(' ') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (d.to_string(), String::new()),
        })
        .collect()
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_no_framing_by_default() {
    let api = Api::new().await;
    let r = vget(&api, "/viewer?token=whatever").await;
    r.expect(200);
    let ct = r.headers["content-type"].to_str().unwrap();
    assert!(ct.starts_with("text/html"), "{ct}");
    let d = csp_directives(&r);
    assert_eq!(d["default-src"], "'none'");
    assert_eq!(d["script-src"], "'self'");
    assert_eq!(d["style-src"], "'self'");
    assert_eq!(d["connect-src"], "'self'");
    assert_eq!(d["img-src"], "'self' data:");
    assert_eq!(d["frame-ancestors"], "'none'");
    assert_eq!(d["base-uri"], "'none'");
    assert_eq!(d["form-action"], "'none'");
    assert_eq!(r.headers["x-frame-options"], "DENY");
    assert_eq!(r.headers["referrer-policy"], "no-referrer");
    assert_eq!(r.headers["cache-control"], "no-store");
    assert_eq!(r.headers["x-content-type-options"], "nosniff");
    // The page loads its script and style from the server, and has no inline code.
    let html = r.text();
    assert!(html.contains(r#"<script src="viewer/assets/viewer.js" defer></script>"#));
    assert!(html.contains(r#"href="viewer/assets/viewer.css""#));
    assert!(!html.contains("<script>") && !html.contains("style=") && !html.contains(" on"));
    for (path, ct) in [
        ("/viewer/assets/viewer.js", "text/javascript"),
        ("/viewer/assets/viewer.css", "text/css"),
    ] {
        let r = vget(&api, path).await;
        r.expect(200);
        assert!(r.headers["content-type"].to_str().unwrap().starts_with(ct));
        assert!(r.body.len() > 1000, "{path}");
    }
    let js = vget(&api, "/viewer/assets/viewer.js").await.text();
    assert!(
        !js.contains("innerHTML") && !js.contains("eval("),
        "the script builds DOM by text"
    );
}

#[tokio::test]
async fn configured_origins_may_embed_the_page() {
    let api = Api::with_config(ServerConfig {
        viewer: ViewerConfig {
            frame_ancestors: vec![
                "https://app.example".into(),
                "https://*.partner.example:8443".into(),
            ],
            ..ViewerConfig::default()
        },
        ..ServerConfig::default()
    })
    .await;
    let r = vget(&api, "/viewer").await;
    r.expect(200);
    assert_eq!(
        csp_directives(&r)["frame-ancestors"],
        "https://app.example https://*.partner.example:8443"
    );
    assert!(r.headers.get("x-frame-options").is_none());
}

#[test]
fn frame_ancestor_entries_are_origins_only() {
    for ok in [
        "https://app.example",
        "http://localhost:3000",
        "https://*.example.com",
        "'self'",
    ] {
        assert_eq!(check_frame_ancestor(ok), Ok(()), "{ok}");
    }
    for bad in [
        "app.example",
        "https://app.example/path",
        "https://a.example; script-src *",
        "https://a.example https://b.example",
        "*",
        "'none'",
        "'unsafe-inline'",
        "https://",
        "https://a.example:99999",
        "javascript:alert(1)",
        "https://a.*.example",
    ] {
        let e = check_frame_ancestor(bad).unwrap_err();
        assert!(e.contains("viewer.frame_ancestors"), "{e}");
    }
}
