//! Channels against the testkit's receivers, which check each request against what the real
//! service takes (Google Chat against its published discovery document, Slack's Block Kit
//! limits, the documented webhook signature) and answer with scripted failures.

use crate::support::{alert_on, config, event, http, prompt_alert};
use std::time::Duration;
use trailkeep_deliver::alerts::channel::{Channel, ChannelKind};
use trailkeep_deliver::alerts::rate::Limits;
use trailkeep_deliver::alerts::{Alert, Attempt};
use trailkeep_deliver::testkit::{Behaviour, Receiver, ReceiverKind};

const SECRET: &str = "whsec_services_0123456789";

fn kinds() -> [(ChannelKind, ReceiverKind); 3] {
    [
        (ChannelKind::GoogleChat, ReceiverKind::GoogleChat),
        (ChannelKind::Slack, ReceiverKind::Slack),
        (
            ChannelKind::Webhook,
            ReceiverKind::Webhook {
                secret: SECRET.as_bytes().to_vec(),
            },
        ),
    ]
}

fn channel_for(kind: ChannelKind, rx: &Receiver) -> Channel {
    let secret = (kind == ChannelKind::Webhook).then_some(SECRET);
    let cfg = config("svc", kind, &rx.url(), secret);
    Channel::new(
        &cfg,
        Some("https://audit.example.com"),
        http(),
        &Limits::unlimited(),
    )
    .expect("valid channel")
}

/// Alerts that stress the formats: plain, markup and mentions in the data, a huge payload,
/// a purged one, a long note.
fn awkward_alerts() -> Vec<Alert> {
    let mut out = vec![prompt_alert("svc")];
    out.push(alert_on(
        "svc",
        event(
            "t_9",
            "policy.update",
            "<users/all> & <!channel> ```",
            serde_json::json!({"before": "<b>x</b> & ```", "after": {"rules": ["a", "b"]}}),
        ),
    ));
    out.push(alert_on(
        "svc",
        event(
            "t_9",
            "prompt.update",
            "admin:bob",
            serde_json::json!({"before": "é<".repeat(60_000), "after": "\u{1F600}".repeat(60_000)}),
        ),
    ));
    let mut purged = prompt_alert("svc");
    purged.event.payload = None;
    purged.event.payload_commitment = Some([1; 32]);
    purged.note = Some("Impersonation session open for too long ".repeat(20));
    out.push(purged);
    out
}

#[tokio::test]
async fn every_kind_sends_what_the_service_takes() {
    for (kind, receiver_kind) in kinds() {
        let rx = Receiver::start(receiver_kind);
        let channel = channel_for(kind, &rx);
        let alerts = awkward_alerts();
        for alert in &alerts {
            let a = channel.send(alert).await;
            assert!(
                matches!(a, Attempt::Delivered { .. }),
                "{kind}: {a:?}; {:#?}",
                rx.problems()
            );
        }
        assert_eq!(
            channel.send_test().await,
            Attempt::Delivered { status: 200 }
        );
        assert!(rx.problems().is_empty(), "{kind}: {:#?}", rx.problems());
        assert_eq!(rx.accepted().len(), alerts.len() + 1, "{kind}");
    }
}

#[tokio::test]
async fn a_retried_google_chat_alert_keeps_its_request_id() {
    let rx = Receiver::start(ReceiverKind::GoogleChat);
    rx.script([Behaviour::Status(503)]);
    let channel = channel_for(ChannelKind::GoogleChat, &rx);
    let alert = prompt_alert("svc");
    let first = channel.send(&alert).await;
    assert!(
        matches!(
            first,
            Attempt::Retry {
                status: Some(503),
                ..
            }
        ),
        "{first:?}"
    );
    assert_eq!(
        channel.send(&alert).await,
        Attempt::Delivered { status: 200 }
    );
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].request_id(), Some(alert.delivery_id.as_str()));
    assert_eq!(got[0].request_id(), got[1].request_id());
    assert!(rx.problems().is_empty(), "{:#?}", rx.problems());
}

#[tokio::test]
async fn scripted_failures_are_classified() {
    let rx = Receiver::start(ReceiverKind::Slack);
    let mut cfg = config("svc", ChannelKind::Slack, &rx.url(), None);
    cfg.timeout = Some("300ms".to_string());
    let channel = Channel::new(&cfg, None, http(), &Limits::unlimited()).unwrap();
    rx.script([
        Behaviour::TooMany {
            retry_after: Some("3".into()),
        },
        Behaviour::TooMany { retry_after: None },
        Behaviour::Status(404),
        Behaviour::Close,
        Behaviour::Hang(Duration::from_secs(5)),
    ]);
    let alert = prompt_alert("svc");
    let mut outcomes = Vec::new();
    for _ in 0..6 {
        outcomes.push(channel.send(&alert).await);
    }
    assert!(
        matches!(&outcomes[0], Attempt::Retry { status: Some(429), after: Some(d), .. } if *d == Duration::from_secs(3)),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(
            &outcomes[1],
            Attempt::Retry {
                status: Some(429),
                after: None,
                ..
            }
        ),
        "{:?}",
        outcomes[1]
    );
    assert!(
        matches!(&outcomes[2], Attempt::Refused { status: 404, .. }),
        "{:?}",
        outcomes[2]
    );
    assert!(
        matches!(&outcomes[3], Attempt::Retry { status: None, .. }),
        "{:?}",
        outcomes[3]
    );
    assert!(
        matches!(&outcomes[4], Attempt::Retry { status: None, error, .. } if error.contains("timed out")),
        "{:?}",
        outcomes[4]
    );
    assert_eq!(outcomes[5], Attempt::Delivered { status: 200 });
}
