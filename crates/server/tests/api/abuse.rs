//! Abuse resistance of the API, each test written as the attack.

use crate::common::*;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use std::net::SocketAddr;
use tower::ServiceExt;

/// GET /v1/events with `key`, from the address `from`; the status and Retry-After.
async fn get_from(api: &Api, key: &str, from: &str) -> (StatusCode, Option<String>) {
    let mut req = Request::builder()
        .uri("/v1/events")
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let addr: SocketAddr = from.parse().unwrap();
    req.extensions_mut().insert(ConnectInfo(addr));
    let resp = api.router.clone().oneshot(req).await.unwrap();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (resp.status(), retry)
}

/// Guessing keys: 2,000 wrong-key requests from one address were all answered 401. With the
/// default limits, after a burst of failures the address gets 429 with Retry-After, even with a
/// right key; other addresses and good keys are not affected.
#[tokio::test]
async fn wrong_keys_from_one_address_are_throttled_by_default() {
    let api = Api::new().await;
    let mut statuses = std::collections::BTreeMap::new();
    for i in 0..2_000 {
        let (s, retry) = get_from(&api, &format!("tk_guess{i}"), "192.0.2.7:5000").await;
        *statuses.entry(s.as_u16()).or_insert(0) += 1;
        if s == StatusCode::TOO_MANY_REQUESTS {
            assert!(retry.unwrap().parse::<u64>().unwrap() >= 1);
        }
    }
    let unauthorized = statuses.get(&401).copied().unwrap_or(0);
    assert!(
        (50..=80).contains(&unauthorized),
        "{statuses:?}: the default burst is 50 failures"
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 1_900,
        "{statuses:?}"
    );
    // The throttled address cannot use a right key either until it waits.
    assert_eq!(
        get_from(&api, ADMIN, "192.0.2.7:5001").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another address is served.
    assert_eq!(
        get_from(&api, ADMIN, "192.0.2.8:5000").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get_from(&api, "tk_wrong", "192.0.2.8:5000").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Successful requests do not count: many are served from one address.
    for _ in 0..200 {
        assert_eq!(
            get_from(&api, ADMIN, "192.0.2.9:5000").await.0,
            StatusCode::OK
        );
    }
}

/// The per-key limit is on by default, and high: a burst far above the benchmarks' load on one
/// key passes.
#[tokio::test]
async fn the_default_per_key_limit_is_on_and_high() {
    let config = trailkeep_server::ServerConfig::default();
    assert!(config.rate_limit_rps >= 50_000.0 && config.rate_limit_burst >= 100_000.0);
    let api = Api::new().await;
    for _ in 0..300 {
        assert_eq!(
            get_from(&api, ADMIN, "192.0.2.10:1").await.0,
            StatusCode::OK
        );
    }
}

/// An empty or reversed time range was answered as if it were a query (nothing found); it is
/// a mistake, refused with 400 naming both bounds. Likewise leaves with start > end.
#[tokio::test]
async fn reversed_ranges_are_refused() {
    let api = Api::new().await;
    api.ingest(&ev("t_r", "x.y")).await;
    for path in ["/v1/stats", "/v1/events"] {
        for (since, until) in [
            ("2026-06-02T00:00:00Z", "2026-06-02T00:00:00Z"),
            ("2026-06-03T00:00:00Z", "2026-06-02T00:00:00Z"),
        ] {
            let r = api
                .get(
                    ADMIN,
                    &format!(
                        "{path}?tenant_id=t_r&since={}&until={}",
                        enc(since),
                        enc(until)
                    ),
                )
                .await;
            assert_error(&r, 400, "bad_request");
            let m = r.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(
                m.contains("since") && m.contains("must be before until"),
                "{m}"
            );
        }
    }
    let r = api.get(ADMIN, "/v1/tenants/t_r/leaves?start=5&end=2").await;
    assert_error(&r, 400, "bad_request");
    let m = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(m.contains("start 5 is greater than end 2"), "{m}");
    api.get(ADMIN, "/v1/tenants/t_r/leaves?start=0&end=1")
        .await
        .expect(200);
}

/// I-JSON: duplicate member names (a gateway reading the first `scope` sees another event),
/// numbers that underflow to 0, and surrogate errors are refused naming their path.
#[tokio::test]
async fn duplicate_names_and_bad_numbers_are_refused_with_their_path() {
    let api = Api::new().await;
    let head = r#""event_type":"app.x","actor":"svc:c","tenant_id":"t_1""#;
    for (body, path) in [
        (
            format!(r#"{{{head},"payload":{{"scope":"global","scope":"tenant"}}}}"#),
            "payload.scope",
        ),
        (
            format!(r#"{{{head},"payload":{{"x":[1e-400]}}}}"#),
            "payload.x[0]",
        ),
        (
            format!(r#"{{{head},"payload":{{"x":[1,1e400]}}}}"#),
            "payload.x[1]",
        ),
        (
            format!(r#"{{{head},"payload":{{"s":"\ud800"}}}}"#),
            "payload.s",
        ),
    ] {
        let r = api
            .post_raw(Some(ADMIN), Some(JSON), body.clone().into_bytes())
            .await;
        assert_invalid(&r, &[(0, path)]);
    }
}
