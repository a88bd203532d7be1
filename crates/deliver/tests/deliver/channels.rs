//! Channel configuration: checks that name the key, timeouts, and redaction of credentials.

use crate::support::*;
use std::time::Duration;
use trailkeep_deliver::alerts::channel::{
    parse_timeout, Channel, ChannelConfig, ChannelKind, DEFAULT_TIMEOUT,
};
use trailkeep_deliver::alerts::rate::Limits;

const CHAT: &str = "https://chat.googleapis.com/v1/spaces/AAAAbc_-9/messages?key=KEYabc123secret&token=TOKEN-xyz_789secret%3D";
const SLACK: &str = "https://hooks.slack.com/services/T0001/B0002/SLACKsecretPART";

fn err(cfg: &ChannelConfig) -> String {
    cfg.check().expect_err("the configuration is refused")
}

#[test]
fn kinds_read_from_configuration_in_snake_case() {
    let cfg: ChannelConfig = serde_json::from_value(serde_json::json!({
        "name": "ops-chat", "kind": "google_chat", "url": CHAT, "timeout": "5s"
    }))
    .unwrap();
    assert_eq!(cfg.kind, ChannelKind::GoogleChat);
    assert_eq!(cfg.timeout().unwrap(), Duration::from_secs(5));
    for (text, kind) in [
        ("slack", ChannelKind::Slack),
        ("webhook", ChannelKind::Webhook),
    ] {
        let cfg: ChannelConfig = serde_json::from_value(
            serde_json::json!({"name": "x", "kind": text, "url": "https://a.example/"}),
        )
        .unwrap();
        assert_eq!(cfg.kind, kind);
        assert_eq!(cfg.kind.as_str(), text);
        assert_eq!(cfg.secret, None);
        assert_eq!(cfg.timeout().unwrap(), DEFAULT_TIMEOUT);
    }
    for bad in [
        serde_json::json!({"name": "x", "kind": "GoogleChat", "url": "https://a.example/"}),
        serde_json::json!({"name": "x", "kind": "email", "url": "https://a.example/"}),
        serde_json::json!({"name": "x", "kind": "slack", "url": "https://a.example/", "secrt": "s"}),
    ] {
        assert!(
            serde_json::from_value::<ChannelConfig>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn valid_configurations_pass() {
    for cfg in [
        config("ops-chat", ChannelKind::GoogleChat, CHAT, None),
        config("ops.slack_2", ChannelKind::Slack, SLACK, None),
        config(
            "hook",
            ChannelKind::Webhook,
            "http://10.0.0.5:8080/in",
            Some("s3cret"),
        ),
        config(&"a".repeat(64), ChannelKind::Slack, SLACK, None),
    ] {
        assert_eq!(cfg.check(), Ok(()), "{cfg:?}");
    }
}

#[test]
fn bad_names_are_refused_naming_the_key() {
    for name in [
        "",
        "-ops",
        ".ops",
        "ops chat",
        "ops/chat",
        "é",
        &"a".repeat(65),
    ] {
        let e = err(&config(name, ChannelKind::Slack, SLACK, None));
        assert!(e.starts_with("alerts.channels["), "{e}");
        assert!(e.contains("].name: "), "{e}");
        assert!(e.contains("not a channel name"), "{e}");
    }
}

#[test]
fn bad_urls_are_refused_naming_the_key_without_credentials() {
    let cases = [
        (ChannelKind::Slack, "not a url", "not a valid URL"),
        (ChannelKind::Slack, "/services/T/B/X", "not a valid URL"),
        (ChannelKind::Webhook, "ftp://files.example/in?token=TOKEN-xyz_789secret", "scheme must be https"),
        (ChannelKind::Webhook, "mailto:ops@example.com", "scheme must be https"),
        (ChannelKind::GoogleChat, "https://chat.googleapis.com/v1/spaces/AAAA?key=KEYabc123secret&token=TOKEN-xyz_789secret", "/v1/spaces/SPACE/messages"),
        (ChannelKind::GoogleChat, "https://chat.googleapis.com/v1/spaces//messages?key=KEYabc123secret&token=TOKEN-xyz_789secret", "/v1/spaces/SPACE/messages"),
        (ChannelKind::GoogleChat, "https://chat.googleapis.com/v2/spaces/AAAA/messages?token=TOKEN-xyz_789secret", "/v1/spaces/SPACE/messages"),
    ];
    for (kind, url, expected) in cases {
        let secret = (kind == ChannelKind::Webhook).then_some("s3cret");
        let e = err(&config("ops-chat", kind, url, secret));
        assert!(e.starts_with("alerts.channels[ops-chat].url: "), "{e}");
        assert!(e.contains(expected), "{url}: {e}");
        assert!(
            !e.contains("KEYabc123secret") && !e.contains("TOKEN-xyz_789secret"),
            "{e}"
        );
    }
}

#[test]
fn webhook_channels_need_a_secret_and_others_take_none() {
    for secret in [None, Some(""), Some("   ")] {
        let e = err(&config(
            "hook",
            ChannelKind::Webhook,
            "https://a.example/in",
            secret,
        ));
        assert!(e.starts_with("alerts.channels[hook].secret: "), "{e}");
        assert!(e.contains("needs a secret"), "{e}");
    }
    for (kind, url) in [(ChannelKind::Slack, SLACK), (ChannelKind::GoogleChat, CHAT)] {
        let e = err(&config("c", kind, url, Some("sup3rs3cretvalue")));
        assert!(e.starts_with("alerts.channels[c].secret: "), "{e}");
        assert!(e.contains("takes no secret"), "{e}");
        assert!(!e.contains("sup3rs3cretvalue"), "{e}");
    }
}

#[test]
fn timeouts_parse_with_units_and_bounds() {
    assert_eq!(parse_timeout("500ms").unwrap(), Duration::from_millis(500));
    assert_eq!(parse_timeout("10s").unwrap(), Duration::from_secs(10));
    assert_eq!(parse_timeout(" 1m ").unwrap(), Duration::from_secs(60));
    assert_eq!(parse_timeout("60000ms").unwrap(), Duration::from_secs(60));
    for (bad, says) in [
        ("0s", "more than zero"),
        ("0ms", "more than zero"),
        ("61s", "longest timeout"),
        ("2m", "longest timeout"),
        ("99999999999999999999s", "not a duration"),
        ("10", "not a duration"),
        ("1h", "not a duration"),
        ("ten s", "not a duration"),
        ("-5s", "not a duration"),
        ("1.5s", "not a duration"),
        ("", "not a duration"),
    ] {
        let e = parse_timeout(bad).expect_err(bad);
        assert!(e.contains(says), "{bad}: {e}");
        let mut cfg = config("ops-chat", ChannelKind::GoogleChat, CHAT, None);
        cfg.timeout = Some(bad.to_string());
        let e = err(&cfg);
        assert!(e.starts_with("alerts.channels[ops-chat].timeout: "), "{e}");
        assert!(!e.contains("TOKEN-xyz_789secret"), "{e}");
    }
}

#[test]
fn redacted_urls_hide_queries_user_info_and_slack_tokens() {
    let chat = config("c", ChannelKind::GoogleChat, CHAT, None);
    assert_eq!(
        chat.redacted_url(),
        "https://chat.googleapis.com/v1/spaces/AAAAbc_-9/messages?…"
    );
    let slack = config("s", ChannelKind::Slack, SLACK, None);
    assert_eq!(slack.redacted_url(), "https://hooks.slack.com/services/…");
    let hook = config(
        "h",
        ChannelKind::Webhook,
        "https://user:pa55word@hooks.example:8443/in?sig=abcdef",
        Some("s3cret"),
    );
    assert_eq!(hook.redacted_url(), "https://hooks.example:8443/in?…");
    let plain = config(
        "h",
        ChannelKind::Webhook,
        "http://[::1]:9000/a/b",
        Some("s"),
    );
    assert_eq!(plain.redacted_url(), "http://[::1]:9000/a/b");
    assert_eq!(
        config("h", ChannelKind::Webhook, "::", None).redacted_url(),
        "(invalid URL)"
    );
}

#[test]
fn debug_and_serialised_forms_carry_no_credentials() {
    let http = http();
    let limits = Limits::new();
    let hook = config(
        "hook",
        ChannelKind::Webhook,
        "https://hooks.example/in?sig=QUERYsecret1",
        Some("WEBHOOKsecret1"),
    );
    for cfg in [
        config("c", ChannelKind::GoogleChat, CHAT, None),
        config("s", ChannelKind::Slack, SLACK, None),
        hook,
    ] {
        let channel = Channel::new(&cfg, None, http.clone(), &limits).unwrap();
        let shown = [
            format!("{cfg:?}"),
            format!("{cfg:#?}"),
            format!("{channel:?}"),
            serde_json::to_string(&cfg).unwrap(),
        ];
        for text in shown {
            for secret in [
                "KEYabc123secret",
                "TOKEN-xyz_789secret",
                "SLACKsecretPART",
                "QUERYsecret1",
                "WEBHOOKsecret1",
            ] {
                assert!(!text.contains(secret), "{secret} in {text}");
            }
            assert!(text.contains(&cfg.redacted_url()), "{text}");
        }
    }
    let v = serde_json::to_value(config(
        "hook",
        ChannelKind::Webhook,
        "https://a.example/",
        Some("k"),
    ))
    .unwrap();
    assert_eq!(v["secret"], "(redacted)");
    assert_eq!(v["kind"], "webhook");
}

#[test]
fn channels_are_built_from_checked_configurations() {
    let limits = Limits::new();
    let bad = config("hook", ChannelKind::Webhook, "https://a.example/", None);
    let e = Channel::new(&bad, None, http(), &limits).unwrap_err();
    assert!(e.starts_with("alerts.channels[hook].secret: "), "{e}");
    let ok = config("ops-chat", ChannelKind::GoogleChat, CHAT, None);
    let e = Channel::new(&ok, Some("ftp://x"), http(), &limits).unwrap_err();
    assert!(e.contains("public_url"), "{e}");
    let c = Channel::new(&ok, Some("https://audit.example.com/"), http(), &limits).unwrap();
    assert_eq!(c.name(), "ops-chat");
    assert_eq!(c.kind(), ChannelKind::GoogleChat);
    assert_eq!(c.timeout(), DEFAULT_TIMEOUT);
    assert_eq!(c.rate_key(), "google_chat:AAAAbc_-9");
    let s = Channel::new(
        &config("s", ChannelKind::Slack, SLACK, None),
        None,
        http(),
        &limits,
    )
    .unwrap();
    assert_eq!(s.rate_key(), "slack:s");
}

#[tokio::test]
async fn the_test_alert_is_marked_as_a_test() {
    let rx = Receiver::answering(200).await;
    let cfg = config(
        "hook",
        ChannelKind::Webhook,
        &format!("{}/in", rx.base),
        Some("k3y"),
    );
    let c = channel(&cfg, None);
    let attempt = c.send_test().await;
    assert_eq!(
        attempt,
        trailkeep_deliver::alerts::Attempt::Delivered { status: 200 }
    );
    let body = rx.only().json();
    assert_eq!(body["rule"], "alerts test");
    assert_eq!(body["channel"], "hook");
    assert!(
        body["note"].as_str().unwrap().starts_with("TEST: "),
        "{body}"
    );
    assert_eq!(body["event"]["event_type"], "alert.test");
    assert_eq!(body["event"]["payload"]["test"], true);
    // A second test is a new delivery (receivers must not drop it as a repeat).
    let a = c.test_alert();
    let b = c.test_alert();
    assert_ne!(a.delivery_id, b.delivery_id);
    assert_eq!(a.delivery_id.len(), 32);
}
