//! How a channel classifies what a receiver answers (or does not), over real HTTP.

use crate::support::*;
use std::time::{Duration, SystemTime};
use trailkeep_deliver::alerts::channel::{parse_retry_after, ChannelKind, MAX_RETRY_AFTER};
use trailkeep_deliver::alerts::Attempt;

/// Sends one alert through a webhook channel to a receiver answering `reply`.
async fn attempt_with(reply: Reply) -> Attempt {
    let rx = Receiver::start(move |_| reply.clone()).await;
    let cfg = config(
        "hook",
        ChannelKind::Webhook,
        &format!("{}/in", rx.base),
        Some("k"),
    );
    let attempt = channel(&cfg, None).send(&prompt_alert("hook")).await;
    assert_eq!(rx.requests().len(), 1, "one request per send");
    attempt
}

#[tokio::test]
async fn success_statuses_are_delivered() {
    for status in [200, 201, 202, 204] {
        assert_eq!(
            attempt_with(Reply::status(status)).await,
            Attempt::Delivered { status }
        );
    }
}

#[tokio::test]
async fn other_client_errors_are_refused_with_the_status_and_a_bounded_body() {
    let a =
        attempt_with(Reply::status(400).body(format!("bad request: {}", "x".repeat(5000)))).await;
    let Attempt::Refused { status, error } = a else {
        panic!("expected Refused, got {a:?}")
    };
    assert_eq!(status, 400);
    assert!(error.contains("400"), "{error}");
    assert!(error.contains("bad request: xxx"), "{error}");
    let xs = error.matches('x').count();
    assert!(
        (150..=200).contains(&xs),
        "{xs} bytes of body kept: {error}"
    );
    assert!(error.len() < 300, "{}", error.len());

    for status in [401, 403, 404, 410, 413, 422] {
        let a = attempt_with(Reply::status(status).body("no\nsuch\r\nhook")).await;
        let Attempt::Refused { status: s, error } = a else {
            panic!("{status}: expected Refused, got {a:?}")
        };
        assert_eq!(s, status);
        assert!(error.contains(&status.to_string()), "{error}");
        assert!(error.contains("no such  hook"), "one line: {error:?}");
    }
}

#[tokio::test]
async fn request_timeouts_rate_limits_and_server_errors_are_retried() {
    for status in [408, 429, 500, 502, 503, 504] {
        let a = attempt_with(Reply::status(status).body("busy")).await;
        let Attempt::Retry {
            status: s,
            after,
            error,
        } = a
        else {
            panic!("{status}: expected Retry, got {a:?}")
        };
        assert_eq!(s, Some(status));
        assert_eq!(after, None);
        assert!(
            error.contains(&status.to_string()) && error.contains("busy"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn retry_after_in_seconds_and_as_a_date_is_honoured_and_capped() {
    let after = |a: Attempt| match a {
        Attempt::Retry { after, .. } => after,
        other => panic!("expected Retry, got {other:?}"),
    };
    let a = attempt_with(Reply::status(429).header("Retry-After", "7")).await;
    assert_eq!(after(a), Some(Duration::from_secs(7)));
    let a = attempt_with(Reply::status(503).header("Retry-After", "0")).await;
    assert_eq!(after(a), Some(Duration::ZERO));
    let a = attempt_with(Reply::status(503).header("Retry-After", "86400")).await;
    assert_eq!(after(a), Some(MAX_RETRY_AFTER));
    let a = attempt_with(Reply::status(429).header("Retry-After", "soon")).await;
    assert_eq!(after(a), None);

    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
    let a = attempt_with(Reply::status(429).header("Retry-After", &date)).await;
    let d = after(a).expect("a date is understood");
    assert!(
        (Duration::from_secs(100)..=Duration::from_secs(121)).contains(&d),
        "{d:?}"
    );
    let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(600));
    let a = attempt_with(Reply::status(503).header("Retry-After", &past)).await;
    assert_eq!(after(a), Some(Duration::ZERO));
}

#[test]
fn retry_after_parsing() {
    // 60 s before Sun, 06 Nov 1994 08:49:37 GMT.
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 - 60);
    assert_eq!(
        parse_retry_after("120", now),
        Some(Duration::from_secs(120))
    );
    assert_eq!(parse_retry_after(" 5 ", now), Some(Duration::from_secs(5)));
    assert_eq!(
        parse_retry_after("99999999999999999999999", now),
        Some(MAX_RETRY_AFTER)
    );
    // RFC 9110's three date forms.
    for date in [
        "Sun, 06 Nov 1994 08:49:37 GMT",
        "Sunday, 06-Nov-94 08:49:37 GMT",
        "Sun Nov  6 08:49:37 1994",
    ] {
        assert_eq!(
            parse_retry_after(date, now),
            Some(Duration::from_secs(60)),
            "{date}"
        );
    }
    for bad in ["", "-1", "1.5", "tomorrow", "Sun, 06 Nov 1994"] {
        assert_eq!(parse_retry_after(bad, now), None, "{bad}");
    }
}

#[tokio::test]
async fn a_receiver_slower_than_the_timeout_is_retried() {
    let rx = Receiver::start(|_| Reply::status(200).delay(Duration::from_secs(10))).await;
    let mut cfg = config(
        "hook",
        ChannelKind::Webhook,
        &format!("{}/in", rx.base),
        Some("k"),
    );
    cfg.timeout = Some("300ms".to_string());
    let started = std::time::Instant::now();
    let a = channel(&cfg, None).send(&prompt_alert("hook")).await;
    let took = started.elapsed();
    let Attempt::Retry {
        status: None,
        after: None,
        error,
    } = a
    else {
        panic!("expected Retry without a status, got {a:?}")
    };
    assert!(error.contains("timed out"), "{error}");
    assert!(error.contains("300ms"), "{error}");
    assert!(took < Duration::from_secs(5), "gave up after {took:?}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_without_leaking_the_url_query() {
    // A port nothing listens on: bind one, then close it.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = config(
        "ops-chat",
        ChannelKind::GoogleChat,
        &chat_url(&format!("http://127.0.0.1:{port}"), "AAAA"),
        None,
    );
    let a = channel(&cfg, None).send(&prompt_alert("ops-chat")).await;
    let Attempt::Retry {
        status: None,
        after: None,
        error,
    } = a
    else {
        panic!("expected Retry without a status, got {a:?}")
    };
    assert!(error.contains("could not connect"), "{error}");
    assert!(
        error.contains(&format!("127.0.0.1:{port}/v1/spaces/AAAA/messages?…")),
        "{error}"
    );
    assert!(
        !error.contains("KEYabc123secret") && !error.contains("TOKEN-xyz_789secret"),
        "{error}"
    );
    assert!(!error.contains("requestId"), "{error}");
}

#[tokio::test]
async fn a_receiver_echoing_the_credentials_does_not_get_them_into_errors() {
    // Some services repeat the request line in their error page.
    let rx = Receiver::start(|r| {
        Reply::status(400).body(format!("bad key: {}", r.query.clone().unwrap_or_default()))
    })
    .await;
    let cfg = config(
        "ops-chat",
        ChannelKind::GoogleChat,
        &chat_url(&rx.base, "AAAA"),
        None,
    );
    let a = channel(&cfg, None).send(&prompt_alert("ops-chat")).await;
    let Attempt::Refused { status: 400, error } = a else {
        panic!("expected Refused, got {a:?}")
    };
    assert!(error.starts_with("HTTP 400"), "{error}");
    assert!(
        !error.contains("KEYabc123secret") && !error.contains("TOKEN-xyz_789secret"),
        "{error}"
    );
    // The receiver did get them.
    assert!(rx.only().query.unwrap().contains("TOKEN-xyz_789secret"));
}
