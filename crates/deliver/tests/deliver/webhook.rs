//! Signed webhooks: the request, the body, and signatures as a receiver verifies them.

use crate::support::*;
use std::time::{SystemTime, UNIX_EPOCH};
use trailkeep_deliver::alerts::channel::ChannelKind;
use trailkeep_deliver::alerts::webhook::{body, signature, verify, DEFAULT_TOLERANCE_SECS};
use trailkeep_deliver::alerts::Attempt;

const SECRET: &str = "whsec_0123456789abcdef";

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

#[tokio::test]
async fn the_request_is_signed_and_carries_the_event_as_the_api_returns_it() {
    let rx = Receiver::answering(204).await;
    let cfg = config(
        "ops-hook",
        ChannelKind::Webhook,
        &format!("{}/hooks/trailkeep?src=tk", rx.base),
        Some(SECRET),
    );
    let mut alert = prompt_alert("ops-hook");
    alert.note = Some("session open for 2h".to_string());
    let a = channel(&cfg, Some("https://audit.example.com"))
        .send(&alert)
        .await;
    assert_eq!(a, Attempt::Delivered { status: 204 });

    let r = rx.only();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/hooks/trailkeep");
    assert_eq!(r.query.as_deref(), Some("src=tk"));
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("x-trailkeep-delivery"),
        Some(alert.delivery_id.as_str())
    );
    assert_eq!(
        r.header("user-agent"),
        Some(format!("trailkeep/{}", env!("CARGO_PKG_VERSION")).as_str())
    );
    let sig = r.header("x-trailkeep-signature").unwrap();
    assert_eq!(
        verify(
            SECRET.as_bytes(),
            sig,
            &r.body,
            now(),
            DEFAULT_TOLERANCE_SECS
        ),
        Ok(())
    );
    assert!(verify(
        b"another secret",
        sig,
        &r.body,
        now(),
        DEFAULT_TOLERANCE_SECS
    )
    .is_err());

    assert_eq!(r.body, body(&alert));
    let v = r.json();
    assert_eq!(v["delivery_id"], alert.delivery_id.as_str());
    assert_eq!(v["rule"], "high-risk");
    assert_eq!(v["channel"], "ops-hook");
    assert_eq!(v["note"], "session open for 2h");
    let api: serde_json::Value =
        serde_json::from_str(&trailkeep_core::render::event_json(&alert.event)).unwrap();
    assert_eq!(v["event"], api);
    assert_eq!(v["event"]["seq"], 42);
    assert_eq!(v["event"]["payload"]["after"]["version"], 4);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
}

#[test]
fn the_body_has_a_null_note_and_a_purged_event_as_the_api_shows_it() {
    let mut alert = prompt_alert("h");
    alert.event.payload = None;
    alert.event.payload_commitment = Some([3; 32]);
    let v: serde_json::Value = serde_json::from_slice(&body(&alert)).unwrap();
    assert!(v["note"].is_null());
    assert!(v.as_object().unwrap().contains_key("note"));
    assert_eq!(v["event"]["purged"], true);
    assert!(v["event"]["payload"].is_null());
    // Quotes and control characters in the strings stay valid JSON.
    alert.rule = "a \"rule\"\n".to_string();
    let v: serde_json::Value = serde_json::from_slice(&body(&alert)).unwrap();
    assert_eq!(v["rule"], "a \"rule\"\n");
}

#[test]
fn signatures_match_an_independent_hmac() {
    // python3: hmac.new(b"whsec_test", b'1700000000.{"hello":"world"}', hashlib.sha256).hexdigest()
    assert_eq!(
        signature(b"whsec_test", 1_700_000_000, br#"{"hello":"world"}"#),
        "t=1700000000,v1=f592bbf3951cfc94e560eecfb5d9dd4da6b0fff2e626235f8ab4b54860925d0b"
    );
}

#[test]
fn tampered_wrong_or_malformed_signatures_are_refused() {
    let body = br#"{"delivery_id":"x"}"#;
    let t = 1_700_000_000;
    let good = signature(SECRET.as_bytes(), t, body);
    assert_eq!(verify(SECRET.as_bytes(), &good, body, t, 300), Ok(()));

    let e = verify(SECRET.as_bytes(), &good, br#"{"delivery_id":"y"}"#, t, 300).unwrap_err();
    assert!(e.contains("does not match"), "{e}");
    assert!(verify(b"whsec_other", &good, body, t, 300).is_err());
    // A changed timestamp breaks the signature too.
    let moved = good.replace("t=1700000000", "t=1700000001");
    assert!(verify(SECRET.as_bytes(), &moved, body, t, 300).is_err());
    // One flipped hex digit.
    let mut flipped = good.clone();
    let last = flipped.pop().unwrap();
    flipped.push(if last == '0' { '1' } else { '0' });
    assert!(verify(SECRET.as_bytes(), &flipped, body, t, 300).is_err());

    for bad in [
        "",
        "t=1700000000",
        "v1=00",
        "t=abc,v1=00",
        "t=-5,v1=00",
        "t=1,t=2,v1=00",
        "t=1700000000,v1=zz",
        "t=1700000000,v1=abcd",
        "garbage",
    ] {
        let e = verify(SECRET.as_bytes(), bad, body, t, 300).unwrap_err();
        assert!(e.contains("malformed"), "{bad}: {e}");
    }
}

#[test]
fn old_and_future_signatures_are_refused_as_replays() {
    let body = b"{}";
    let t = 1_700_000_000;
    let sig = signature(SECRET.as_bytes(), t, body);
    assert_eq!(verify(SECRET.as_bytes(), &sig, body, t + 300, 300), Ok(()));
    assert_eq!(verify(SECRET.as_bytes(), &sig, body, t - 300, 300), Ok(()));
    let e = verify(SECRET.as_bytes(), &sig, body, t + 301, 300).unwrap_err();
    assert!(e.contains("301 s old"), "{e}");
    let e = verify(SECRET.as_bytes(), &sig, body, t + 86_400, 300).unwrap_err();
    assert!(e.contains("old"), "{e}");
    let e = verify(SECRET.as_bytes(), &sig, body, t - 301, 300).unwrap_err();
    assert!(e.contains("future"), "{e}");
}

#[test]
fn any_of_several_signatures_may_match() {
    let body = b"{}";
    let t = 1_700_000_000;
    let old = signature(b"old secret", t, body);
    let new = signature(SECRET.as_bytes(), t, body);
    let v1 = |s: &str| s.split_once(",v1=").unwrap().1.to_string();
    let both = format!("t={t},v1={},v1={},v2=ignored", v1(&old), v1(&new));
    assert_eq!(verify(SECRET.as_bytes(), &both, body, t, 300), Ok(()));
    assert_eq!(verify(b"old secret", &both, body, t, 300), Ok(()));
    assert!(verify(b"third", &both, body, t, 300).is_err());
}
