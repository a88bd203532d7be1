//! Keys API and operational endpoints.

use crate::common::*;
use axum::http::Method;
use serde_json::{json, Value};

async fn post_key(api: &Api, body: &str) -> Resp {
    api.request(
        Method::POST,
        "/v1/keys",
        Some(ADMIN),
        Some(JSON),
        body.as_bytes().to_vec(),
    )
    .await
}

#[tokio::test]
async fn key_creation_validation() {
    let api = Api::new().await;
    for body in [
        r#"{"role": "superuser"}"#,
        r#"{"role": "Admin"}"#,
        r#"{"role": ""}"#,
        r#"{"role": "admin", "tenant_id": "t_1"}"#,
        r#"{"role": "reader", "tenant_id": "bad tenant"}"#,
        r#"{"role": "reader", "ttl": "abc"}"#,
        r#"{"role": "reader", "ttl": "0d"}"#,
        r#"{"role": "reader", "ttl": "-5d"}"#,
        r#"{"role": "auditor", "ttl": "3w"}"#,
    ] {
        let r = post_key(&api, body).await;
        assert_eq!(r.status, 422, "{body}: {}", r.text());
        assert_error(&r, 422, "validation_failed");
    }
    for body in [
        r#"{"role": "reader", "colour": 1}"#,
        "{",
        r#"{"tenant_id": "t"}"#,
    ] {
        let r = post_key(&api, body).await;
        assert_error(&r, 400, "bad_request");
    }
    let v = api.get(ADMIN, "/v1/keys").await.json();
    assert_eq!(
        v["keys"],
        json!([]),
        "no key was created by a refused request"
    );
}

/// TTLs that overflowed the expiry time: a key expiring at once, one that expired in 1734, one
/// living to 2262. They and anything past the bounds are refused, and nothing is created.
#[tokio::test]
async fn key_ttls_out_of_range_are_refused() {
    let api = Api::new().await;
    for body in [
        r#"{"role": "reader", "ttl": "18446744073709551615s"}"#,
        r#"{"role": "reader", "ttl": "9223372036854775808s"}"#,
        r#"{"role": "ingest", "ttl": "106751d"}"#,
        r#"{"role": "admin", "ttl": "3651d"}"#,
        r#"{"role": "auditor", "ttl": "91d"}"#,
        r#"{"role": "auditor", "ttl": "99999999999999999999999d"}"#,
    ] {
        let r = post_key(&api, body).await;
        assert_error(&r, 422, "validation_failed");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains("longest lifetime") || msg.contains("too long"),
            "{body}: {msg}"
        );
    }
    assert_eq!(api.get(ADMIN, "/v1/keys").await.json()["keys"], json!([]));
    // The bounds themselves are accepted, with an expiry in the future.
    for (body, days) in [
        (r#"{"role": "reader", "ttl": "3650d"}"#, 3650),
        (r#"{"role": "auditor", "ttl": "90d"}"#, 90),
    ] {
        let r = post_key(&api, body).await;
        r.expect(201);
        let expires = r.json()["expires_at"].as_str().unwrap().to_string();
        let year: i32 = expires[..4].parse().unwrap();
        let now_year: i32 = now_plus(0)[..4].parse().unwrap();
        let want = now_year + days / 365;
        assert!(year == want || year == want + 1, "{body}: {expires}");
    }
    // The auditor bound is configurable.
    let api = Api::with_config(trailkeep_server::ServerConfig {
        max_auditor_ttl_secs: 7 * 86_400,
        ..Default::default()
    })
    .await;
    let r = post_key(&api, r#"{"role": "auditor", "ttl": "8d"}"#).await;
    assert_error(&r, 422, "validation_failed");
    assert!(r.text().contains("7d"), "{}", r.text());
    // Without a TTL an auditor key gets the default 30 days, or the bound when shorter.
    let r = post_key(&api, r#"{"role": "auditor"}"#).await;
    r.expect(201);
    let expires = r.json()["expires_at"].as_str().unwrap().to_string();
    assert!(expires <= now_plus(7 * 86_400 + 60), "{expires}");
}

#[tokio::test]
async fn created_keys_and_listing_never_show_secrets() {
    let api = Api::new().await;
    let r = post_key(&api, r#"{"role": "auditor", "tenant_id": "t_1"}"#).await;
    r.expect(201);
    let auditor = r.json();
    let secret = auditor["key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tk_"), "{secret}");
    assert_eq!(auditor["role"], "auditor");
    assert_eq!(auditor["tenant_id"], "t_1");
    assert_eq!(auditor["revoked"], false);
    assert!(auditor.get("secret_hash").is_none());
    let created = time::OffsetDateTime::parse(
        auditor["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        auditor["expires_at"]
            .as_str()
            .expect("auditor keys always expire"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(expires > created);

    let r = post_key(&api, r#"{"role": "auditor", "ttl": "2h"}"#).await;
    r.expect(201);
    let v = r.json();
    let created = time::OffsetDateTime::parse(
        v["created_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        v["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - created).whole_seconds(), 7200);

    let r = post_key(&api, r#"{"role": "ingest"}"#).await;
    r.expect(201);
    let ingest = r.json();
    assert!(ingest.get("expires_at").is_none() || ingest["expires_at"].is_null());
    let ingest_secret = ingest["key"].as_str().unwrap().to_string();
    assert_ne!(ingest_secret, secret);

    let r = api.get(ADMIN, "/v1/keys").await;
    r.expect(200);
    let text = r.text();
    let v = r.json();
    let keys = v["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    for k in keys {
        assert!(k.get("key").is_none(), "{k}");
        assert!(k.get("secret_hash").is_none(), "{k}");
        assert!(k.get("secret").is_none(), "{k}");
    }
    for s in [&secret, &ingest_secret] {
        assert!(!text.contains(s.as_str()), "listing leaks a secret");
        let hash = trailkeep_store::keys::hash_secret(s);
        assert!(!text.contains(&hash), "listing leaks a secret hash");
    }
    assert!(keys.iter().any(|k| k["id"] == auditor["id"]
        && k["role"] == "auditor"
        && k["tenant_id"] == "t_1"
        && k["expires_at"] == auditor["expires_at"]));

    // The new secrets authenticate.
    api.get(&secret, "/v1/tenants").await.expect(200);
    api.post_json(&ingest_secret, &ev("t_1", "x.y"))
        .await
        .expect(200);
}

#[tokio::test]
async fn revoking_unknown_key_is_404() {
    let api = Api::new().await;
    let r = api
        .request(
            Method::DELETE,
            "/v1/keys/key_000000000000",
            Some(ADMIN),
            None,
            Vec::new(),
        )
        .await;
    assert_error(&r, 404, "not_found");
    // A key revoked twice: the second time it is still known.
    let (id, key) = api.create_key("reader", None).await;
    for _ in 0..2 {
        let r = api
            .request(
                Method::DELETE,
                &format!("/v1/keys/{id}"),
                Some(ADMIN),
                None,
                Vec::new(),
            )
            .await;
        assert!(r.status == 204 || r.status == 200, "{}", r.status);
    }
    assert_error(&api.get(&key, "/v1/tenants").await, 401, "unauthorized");
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let api = Api::new().await;
    let r = api
        .request(Method::GET, "/healthz", None, None, Vec::new())
        .await;
    r.expect(200);
    let r = api
        .request(Method::GET, "/readyz", None, None, Vec::new())
        .await;
    r.expect(200);
    // Some traffic: an accepted event and a refusal.
    api.ingest(&ev("t_1", "x.y")).await;
    api.post_json(ADMIN, &json!({})).await.expect(422);
    let r = api
        .request(Method::GET, "/metrics", None, None, Vec::new())
        .await;
    r.expect(200);
    let text = r.text();
    for name in [
        "trailkeep_events_accepted_total",
        "trailkeep_requests_rejected_total",
    ] {
        assert!(
            text.lines()
                .any(|l| !l.starts_with('#') && l.starts_with(name)),
            "{name} missing from /metrics:\n{text}"
        );
    }
    assert!(
        text.contains("code=\"validation_failed\""),
        "rejections are labelled by code:\n{text}"
    );
    // /readyz fails once the store is shut down.
    api.store.shutdown().await;
    let r = api
        .request(Method::GET, "/readyz", None, None, Vec::new())
        .await;
    assert_error(&r, 503, "unavailable");
    // And ingest is a 503 that stores nothing.
    let r = api.post_json(ADMIN, &ev("t_1", "x.y")).await;
    assert_error(&r, 503, "unavailable");
}

/// `keys.json` damaged while the server runs: the keys read last keep working (never a 500),
/// `/readyz` answers 503 naming the file, and a good version makes it ready again with that
/// version's keys.
#[tokio::test]
async fn damaged_key_file_keeps_keys_working_and_readyz_names_it() {
    let api = Api::new().await;
    let (_, reader) = api.store_key(trailkeep_store::Role::Reader, None).await;
    api.get(&reader, "/v1/tenants").await.expect(200);
    let path = api.data_dir().join("keys.json");
    let good = std::fs::read(&path).unwrap();
    std::fs::write(&path, b"{\"keys\": [ oops").unwrap();

    for _ in 0..3 {
        api.get(&reader, "/v1/tenants").await.expect(200);
    }
    assert_error(
        &api.get("tk_not_a_key", "/v1/tenants").await,
        401,
        "unauthorized",
    );
    let r = api
        .request(Method::GET, "/readyz", None, None, Vec::new())
        .await;
    assert_error(&r, 503, "unavailable");
    assert!(r.text().contains("keys.json"), "{}", r.text());
    // The liveness probe is not about the key file.
    api.request(Method::GET, "/healthz", None, None, Vec::new())
        .await
        .expect(200);

    // Restored: ready again, and still the same keys.
    let tmp = path.with_extension("restored");
    std::fs::write(&tmp, &good).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    api.request(Method::GET, "/readyz", None, None, Vec::new())
        .await
        .expect(200);
    api.get(&reader, "/v1/tenants").await.expect(200);
}

#[tokio::test]
async fn unknown_route_and_method_are_json_errors() {
    let api = Api::new().await;
    for uri in ["/v1/nope", "/", "/v2/events", "/v1/events/a/b"] {
        let r = api.get(ADMIN, uri).await;
        assert_error(&r, 404, "not_found");
    }
    let r = api
        .request(
            Method::PUT,
            "/v1/events",
            Some(ADMIN),
            Some(JSON),
            b"{}".to_vec(),
        )
        .await;
    assert!(r.status == 405, "{}", r.status);
    let v: Value = r.json();
    assert!(v["error"]["code"].is_string(), "{v}");
    let r = api
        .request(Method::DELETE, "/v1/tenants", Some(ADMIN), None, Vec::new())
        .await;
    assert_eq!(r.status, 405);
    assert!(r.json()["error"]["code"].is_string());
}
