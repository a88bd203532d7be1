//! Google Chat: the request a channel sends, the card message and its size limit.

use crate::support::*;
use std::collections::BTreeSet;
use trailkeep_deliver::alerts::channel::ChannelKind;
use trailkeep_deliver::alerts::google_chat::{
    message, request_url, space_of, MAX_MESSAGE_BYTES, REPLY_OPTION,
};
use trailkeep_deliver::alerts::Attempt;

/// The field names of the Chat API v1 `Message`, `CardWithId` and `GoogleAppsCardV1Card`
/// schemas that messages use.
const CHAT_FIELDS: &[&str] = &[
    "text",
    "cardsV2",
    "cardId",
    "card",
    "header",
    "title",
    "subtitle",
    "sections",
    "widgets",
    "decoratedText",
    "topLabel",
    "textParagraph",
    "buttonList",
    "buttons",
    "onClick",
    "openLink",
    "url",
    "thread",
    "threadKey",
];

#[tokio::test]
async fn the_request_posts_a_card_to_the_space_with_a_request_id_and_thread() {
    let rx = Receiver::answering(200).await;
    let cfg = config(
        "ops-chat",
        ChannelKind::GoogleChat,
        &chat_url(&rx.base, "AAAAbc"),
        None,
    );
    let alert = prompt_alert("ops-chat");
    let a = channel(&cfg, Some("https://audit.example.com/"))
        .send(&alert)
        .await;
    assert_eq!(a, Attempt::Delivered { status: 200 });

    let r = rx.only();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/v1/spaces/AAAAbc/messages");
    let q = r.query_pairs();
    let get = |k: &str| {
        q.iter()
            .filter(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("key"), ["KEYabc123secret"]);
    assert_eq!(get("token"), ["TOKEN-xyz_789secret="]);
    assert_eq!(get("messageReplyOption"), [REPLY_OPTION]);
    assert_eq!(get("requestId"), [alert.delivery_id.as_str()]);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=UTF-8")
    );
    assert!(r.header("user-agent").unwrap().starts_with("trailkeep/"));

    let m = r.json();
    assert_eq!(m, message(&alert, Some("https://audit.example.com")));
    let text = m["text"].as_str().unwrap();
    assert!(!text.contains('\n'));
    for part in ["admin:alice", "prompt.update", "t_0042"] {
        assert!(text.contains(part), "{text}");
    }
    let card = &m["cardsV2"][0];
    assert_eq!(card["cardId"], format!("trailkeep-{}", alert.delivery_id));
    assert_eq!(card["card"]["header"]["title"], "prompt.update in t_0042");
    assert!(card["card"]["header"]["subtitle"]
        .as_str()
        .unwrap()
        .contains("high-risk"));
    let widgets = card["card"]["sections"][0]["widgets"].as_array().unwrap();
    let labelled: Vec<(&str, &str)> = widgets[..4]
        .iter()
        .map(|w| {
            (
                w["decoratedText"]["topLabel"].as_str().unwrap(),
                w["decoratedText"]["text"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        labelled,
        [
            ("Who", "admin:alice"),
            ("What", "prompt.update"),
            ("Tenant", "t_0042"),
            ("Time", "2026-11-23T10:15:00.125Z"),
        ]
    );
    let paragraph = widgets[4]["textParagraph"]["text"].as_str().unwrap();
    let before = format!("{{\"prompt_hash\":\"{}\",\"version\":3}}", "a".repeat(64));
    let after = format!("{{\"prompt_hash\":\"{}\",\"version\":4}}", "b".repeat(64));
    assert_eq!(
        paragraph,
        format!("<b>before</b> {before}<br>→ <b>after</b> {after}")
    );
    assert_eq!(
        widgets[5]["buttonList"]["buttons"][0]["onClick"]["openLink"]["url"],
        "https://audit.example.com/v1/events/0193a4f2-7c1e-7b3a-9f00-5d2c8e1a4b6f"
    );
    assert_eq!(widgets.len(), 6);
    assert_eq!(m["thread"]["threadKey"], "t_0042/prompt.update");

    let mut keys = BTreeSet::new();
    keys_of(&m, &mut keys);
    for k in &keys {
        assert!(
            CHAT_FIELDS.contains(&k.as_str()),
            "{k} is not a Chat API field"
        );
    }
}

#[test]
fn without_a_public_url_there_is_no_button_and_other_payloads_show_whole() {
    let alert = alert_on(
        "c",
        event(
            "t_1",
            "crawl.run",
            "svc:crawler",
            serde_json::json!({"domain": "example.com", "pages": 12}),
        ),
    );
    let m = message(&alert, None);
    let widgets = m["cardsV2"][0]["card"]["sections"][0]["widgets"]
        .as_array()
        .unwrap();
    assert_eq!(widgets.len(), 5);
    assert!(widgets.iter().all(|w| w.get("buttonList").is_none()));
    assert_eq!(
        widgets[4]["textParagraph"]["text"],
        "<b>payload</b> {\"domain\":\"example.com\",\"pages\":12}"
    );

    let mut purged = alert.clone();
    purged.event.payload = None;
    let m = message(&purged, None);
    assert_eq!(
        m["cardsV2"][0]["card"]["sections"][0]["widgets"][4]["textParagraph"]["text"],
        "<b>payload</b> (purged)"
    );

    let mut only_after = alert.clone();
    only_after.event.payload = Some(br#"{"after":{"x":1}}"#.to_vec());
    let m = message(&only_after, None);
    assert_eq!(
        m["cardsV2"][0]["card"]["sections"][0]["widgets"][4]["textParagraph"]["text"],
        "<b>before</b> (none)<br>→ <b>after</b> {\"x\":1}"
    );
}

#[test]
fn event_data_cannot_inject_markup_links_or_mentions() {
    let alert = alert_on(
        "c",
        event(
            "t_1",
            "policy.update",
            "<users/all> & <a href=\"https://evil.example\">x</a>",
            serde_json::json!({"before": "<b>old</b>", "after": "a & b"}),
        ),
    );
    let m = message(&alert, None);
    let text = m["text"].as_str().unwrap();
    assert!(!text.contains('<') && !text.contains('>'), "{text}");
    assert!(text.contains("‹users/all›"), "{text}");
    let widgets = &m["cardsV2"][0]["card"]["sections"][0]["widgets"];
    assert_eq!(
        widgets[0]["decoratedText"]["text"],
        "&lt;users/all&gt; &amp; &lt;a href=\"https://evil.example\"&gt;x&lt;/a&gt;"
    );
    assert_eq!(
        widgets[4]["textParagraph"]["text"],
        "<b>before</b> \"&lt;b&gt;old&lt;/b&gt;\"<br>→ <b>after</b> \"a &amp; b\""
    );
}

#[test]
fn a_huge_payload_is_cut_to_fit_32000_bytes() {
    // ~250 KiB on each side, with multi-byte characters and characters that escaping grows.
    let big = |c: &str| c.repeat(250 * 1024 / c.len());
    for (before, after) in [
        (big("a"), big("b")),
        (big("é"), big("ü€")),
        (big("<&>"), big("\"\\")),
        (big("\u{1F600}"), "short".to_string()),
    ] {
        let alert = alert_on(
            "c",
            event(
                "t_1",
                "prompt.update",
                "admin:bob",
                serde_json::json!({"before": before, "after": after}),
            ),
        );
        let m = message(&alert, Some("https://audit.example.com"));
        let size = serde_json::to_vec(&m).unwrap().len();
        assert!(size <= MAX_MESSAGE_BYTES, "{size} bytes");
        assert!(
            size > MAX_MESSAGE_BYTES - 2000,
            "cut far more than needed: {size} bytes"
        );
        let paragraph = m["cardsV2"][0]["card"]["sections"][0]["widgets"][4]["textParagraph"]
            ["text"]
            .as_str()
            .unwrap();
        assert!(paragraph.contains("… (truncated)"), "{}", &paragraph[..100]);
        assert!(paragraph.contains("<b>after</b>"));
        // The rest of the card is whole.
        assert_eq!(m["thread"]["threadKey"], "t_1/prompt.update");
        assert!(m["cardsV2"][0]["card"]["sections"][0]["widgets"][5]["buttonList"].is_object());
    }
    // Small changes are not cut.
    let m = message(&prompt_alert("c"), None);
    assert!(!m.to_string().contains("truncated"));
}

#[test]
fn request_urls_keep_the_credentials_and_replace_our_parameters() {
    let alert = prompt_alert("c");
    let url = request_url(
        "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=K1&token=T%3D1",
        &alert,
    );
    assert_eq!(
        url,
        format!(
            "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=K1&token=T%3D1&messageReplyOption={REPLY_OPTION}&requestId={}",
            alert.delivery_id
        )
    );
    let url = request_url(
        "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=K1&requestId=old&messageReplyOption=REPLY_MESSAGE_OR_FAIL",
        &alert,
    );
    assert!(!url.contains("old") && !url.contains("OR_FAIL"), "{url}");
    assert_eq!(url.matches("requestId=").count(), 1, "{url}");
    assert!(url.contains("key=K1"), "{url}");
}

#[test]
fn spaces_are_read_from_webhook_urls() {
    assert_eq!(
        space_of("https://chat.googleapis.com/v1/spaces/AAAA-b_9/messages?key=k&token=t"),
        Some("AAAA-b_9".to_string())
    );
    assert_eq!(
        space_of("http://127.0.0.1:8/v1/spaces/X/messages"),
        Some("X".to_string())
    );
    for bad in [
        "https://chat.googleapis.com/v1/spaces/AAAA",
        "https://chat.googleapis.com/v1/spaces//messages",
        "https://chat.googleapis.com/v1/spaces/A%20B/messages",
        "https://chat.googleapis.com/v1/spaces/AAAA/messages/extra",
        "https://chat.googleapis.com/v1/rooms/AAAA/messages",
        "not a url",
    ] {
        assert_eq!(space_of(bad), None, "{bad}");
    }
}
