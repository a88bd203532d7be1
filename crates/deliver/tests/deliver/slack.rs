//! Slack: the request a channel sends and the Block Kit message.

use crate::support::*;
use trailkeep_deliver::alerts::channel::ChannelKind;
use trailkeep_deliver::alerts::slack::{message, MAX_HEADER_CHARS, MAX_TEXT_CHARS};
use trailkeep_deliver::alerts::Attempt;

fn types(m: &serde_json::Value) -> Vec<&str> {
    m["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect()
}

#[tokio::test]
async fn the_request_posts_blocks_to_the_hook() {
    let rx = Receiver::answering(200).await;
    let url = format!("{}/services/T0001/B0002/SLACKsecretPART", rx.base);
    let cfg = config("ops-slack", ChannelKind::Slack, &url, None);
    let alert = prompt_alert("ops-slack");
    let a = channel(&cfg, Some("https://audit.example.com"))
        .send(&alert)
        .await;
    assert_eq!(a, Attempt::Delivered { status: 200 });

    let r = rx.only();
    assert_eq!(r.method, "POST");
    assert_eq!(r.path, "/services/T0001/B0002/SLACKsecretPART");
    assert_eq!(r.query, None);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(r.header("user-agent").unwrap().starts_with("trailkeep/"));
    assert!(r.header("x-trailkeep-signature").is_none());

    let m = r.json();
    assert_eq!(m, message(&alert, Some("https://audit.example.com")));
    assert_eq!(
        m["text"],
        "trailkeep alert: admin:alice did prompt.update in tenant t_0042"
    );
    assert_eq!(
        types(&m),
        ["header", "section", "section", "context", "actions"]
    );
    let b = &m["blocks"];
    assert_eq!(b[0]["text"]["type"], "plain_text");
    assert_eq!(b[0]["text"]["text"], "prompt.update in t_0042");
    let fields: Vec<&str> = b[1]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["type"], "mrkdwn");
            f["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        fields,
        [
            "*Who*\nadmin:alice",
            "*What*\nprompt.update",
            "*Tenant*\nt_0042",
            "*Time*\n2026-11-23T10:15:00.125Z",
        ]
    );
    let change = b[2]["text"]["text"].as_str().unwrap();
    assert_eq!(b[2]["text"]["type"], "mrkdwn");
    assert!(
        change.starts_with("*Change*\n```before: {\"prompt_hash\":\"aaaa"),
        "{change}"
    );
    assert!(
        change.contains("\n→ after: {\"prompt_hash\":\"bbbb"),
        "{change}"
    );
    assert!(change.ends_with("\"version\":4}```"), "{change}");
    let context = b[3]["elements"][0]["text"].as_str().unwrap();
    assert!(
        context.contains("0193a4f2-7c1e-7b3a-9f00-5d2c8e1a4b6f"),
        "{context}"
    );
    assert!(context.contains("high-risk"), "{context}");
    assert_eq!(b[4]["elements"][0]["type"], "button");
    assert_eq!(
        b[4]["elements"][0]["url"],
        "https://audit.example.com/v1/events/0193a4f2-7c1e-7b3a-9f00-5d2c8e1a4b6f"
    );
}

#[test]
fn without_a_public_url_there_is_no_button() {
    let m = message(&prompt_alert("s"), None);
    assert_eq!(types(&m), ["header", "section", "section", "context"]);
}

#[test]
fn mrkdwn_is_escaped_and_code_blocks_cannot_be_closed_early() {
    let alert = alert_on(
        "s",
        event(
            "t_1",
            "policy.update",
            "<!channel> & co",
            serde_json::json!({"before": "```<@U123>```", "after": "a&b"}),
        ),
    );
    let m = message(&alert, None);
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("&lt;!channel&gt; &amp; co"), "{text}");
    assert!(!text.contains('<'), "{text}");
    assert_eq!(
        m["blocks"][1]["fields"][0]["text"],
        "*Who*\n&lt;!channel&gt; &amp; co"
    );
    let change = m["blocks"][2]["text"]["text"].as_str().unwrap();
    assert!(change.contains("&lt;@U123&gt;"), "{change}");
    assert!(change.contains("\"a&amp;b\""), "{change}");
    // Only the block's own fences are triple backticks.
    assert_eq!(change.matches("```").count(), 2, "{change}");
    // The header is plain text: shown as it is, nothing to escape.
    assert_eq!(m["blocks"][0]["text"]["text"], "policy.update in t_1");
}

#[test]
fn long_texts_are_cut_to_slacks_limits() {
    let mut alert = alert_on(
        "s",
        event(
            "t_1",
            "prompt.update",
            "admin:bob",
            serde_json::json!({"before": "<".repeat(100_000), "after": "é".repeat(100_000)}),
        ),
    );
    alert.note = Some("Impersonation session is open for too long: ".repeat(10));
    let m = message(&alert, None);
    let header = m["blocks"][0]["text"]["text"].as_str().unwrap();
    assert!(
        header.chars().count() <= MAX_HEADER_CHARS,
        "{}",
        header.chars().count()
    );
    assert!(header.ends_with("… (truncated)"), "{header}");
    let change = m["blocks"][2]["text"]["text"].as_str().unwrap();
    let n = change.chars().count();
    assert!(n <= MAX_TEXT_CHARS && n > MAX_TEXT_CHARS - 100, "{n} chars");
    assert!(change.contains("… (truncated)"));
    assert!(change.contains("→ after: \"ééé"), "both sides are kept");
    assert!(change.ends_with("```"));
    // No entity cut in half.
    assert!(
        !change.contains("&l…") && !change.contains("&lt… "),
        "{}",
        &change[..200]
    );
    for block in m["blocks"].as_array().unwrap() {
        for f in block["fields"].as_array().into_iter().flatten() {
            assert!(f["text"].as_str().unwrap().chars().count() <= 2000);
        }
    }
    assert!(m["text"].as_str().unwrap().chars().count() <= MAX_TEXT_CHARS);
}
