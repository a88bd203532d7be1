//! Rate limits: token buckets per key, and Google Chat's limit shared per space.

use crate::support::*;
use std::time::Duration;
use tokio::time::Instant;
use trailkeep_deliver::alerts::channel::{Channel, ChannelKind};
use trailkeep_deliver::alerts::rate::{Limits, Rate};
use trailkeep_deliver::alerts::Attempt;

const S: Duration = Duration::from_secs(1);

#[test]
fn google_chat_spaces_get_one_send_a_second_each() {
    let limits = Limits::new();
    let t0 = Instant::now();
    assert_eq!(limits.reserve("google_chat:AAAA", t0), Duration::ZERO);
    assert_eq!(limits.reserve("google_chat:AAAA", t0), S);
    assert_eq!(limits.reserve("google_chat:AAAA", t0), 2 * S);
    // Another space has its own bucket.
    assert_eq!(limits.reserve("google_chat:BBBB", t0), Duration::ZERO);
    // Half a second later the third reservation is 1.5 s away.
    assert_eq!(
        limits.reserve("google_chat:AAAA", t0 + S / 2),
        Duration::from_millis(2500)
    );
    // After a quiet spell the bucket is full again (burst 1: one send).
    let later = t0 + 60 * S;
    assert_eq!(limits.reserve("google_chat:AAAA", later), Duration::ZERO);
    assert_eq!(limits.reserve("google_chat:AAAA", later), S);
}

#[test]
fn other_kinds_are_not_limited_unless_configured() {
    let limits = Limits::new();
    let t0 = Instant::now();
    for _ in 0..100 {
        assert_eq!(limits.reserve("slack:ops", t0), Duration::ZERO);
        assert_eq!(limits.reserve("webhook:hook", t0), Duration::ZERO);
    }
    assert_eq!(limits.rate_of("slack:ops"), None);
    assert_eq!(
        limits.rate_of("google_chat:X"),
        Some(Rate::GOOGLE_CHAT_SPACE)
    );

    let limits = Limits::new()
        .with_rate("slack", Rate::per_minute(120))
        .with_rate(
            "webhook:fast",
            Rate {
                interval: Duration::from_millis(100),
                burst: 3,
            },
        );
    assert_eq!(limits.reserve("slack:ops", t0), Duration::ZERO);
    assert_eq!(limits.reserve("slack:ops", t0), Duration::from_millis(500));
    // A burst of 3, then one every 100 ms.
    let waits: Vec<Duration> = (0..5).map(|_| limits.reserve("webhook:fast", t0)).collect();
    let ms = Duration::from_millis;
    assert_eq!(waits, [ms(0), ms(0), ms(0), ms(100), ms(200)]);
    // Only that key: other webhooks are free.
    assert_eq!(limits.reserve("webhook:other", t0), Duration::ZERO);
    assert_eq!(limits.reserve("webhook:other", t0), Duration::ZERO);
}

#[tokio::test]
async fn two_channels_posting_to_one_space_share_its_limit() {
    let rx = Receiver::answering(200).await;
    let limits = Limits::new();
    let http = http();
    let make = |name: &str, space: &str| {
        let cfg = config(
            name,
            ChannelKind::GoogleChat,
            &chat_url(&rx.base, space),
            None,
        );
        Channel::new(&cfg, None, http.clone(), &limits).unwrap()
    };
    let first = make("ops-chat", "SHARED");
    let second = make("sec-chat", "SHARED");
    let elsewhere = make("dev-chat", "OTHER");
    assert_eq!(first.rate_key(), second.rate_key());
    assert_ne!(first.rate_key(), elsewhere.rate_key());

    let (one, two) = (prompt_alert("ops-chat"), prompt_alert("sec-chat"));
    let (a, b) = tokio::join!(first.send(&one), second.send(&two));
    assert_eq!(a, Attempt::Delivered { status: 200 });
    assert_eq!(b, Attempt::Delivered { status: 200 });
    let r = rx.requests();
    assert_eq!(r.len(), 2);
    let gap = r[1].at.duration_since(r[0].at);
    assert!(
        gap >= Duration::from_millis(900),
        "the second send waited only {gap:?}"
    );
    assert!(gap < Duration::from_secs(5), "{gap:?}");

    // The other space is not held up by the first two (its slot is free now).
    assert_eq!(
        limits.reserve(elsewhere.rate_key(), Instant::now()),
        Duration::ZERO
    );
    assert!(limits.reserve(first.rate_key(), Instant::now()) > Duration::ZERO);
}
