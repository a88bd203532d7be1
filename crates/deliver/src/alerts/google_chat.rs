//! Google Chat: an alert as a card message posted to a space's incoming webhook.
//!
//! The request is `POST https://chat.googleapis.com/v1/spaces/{space}/messages?key=…&token=…`
//! plus two parameters ([`request_url`]): `requestId` (the alert's delivery id, so a retried
//! send does not post twice) and `messageReplyOption=REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD` (so
//! alerts on one tenant's event type gather in one thread, `thread.threadKey`).
//!
//! The body ([`message`]) follows the Chat API v1 `Message` schema: `text` (a plain one-line
//! fallback, shown in notifications), `cardsV2` (one `CardWithId` whose card has a header and
//! one section: who, what, tenant and time as `decoratedText`, the change as a `textParagraph`,
//! and an "Open event" `buttonList` when trailkeep's public URL is known) and `thread`.
//! A message must stay under 32,000 bytes, so the change is cut to fit ([`MAX_MESSAGE_BYTES`]).
//!
//! Card text is a small HTML subset, so `<`, `>` and `&` of event data are escaped there; in
//! the plain `text` and the header, `<` and `>` become `‹` and `›`, so that event data cannot
//! form a link or a mention (`<users/all>`).
//!
//! Google Chat accepts one message per second per space; [`super::rate`] keys its limit by
//! space ([`space_of`]), whatever the channel's name.

use super::channel::{fit_parts, Facts};
use super::Alert;
use serde_json::{json, Value};
use std::borrow::Cow;

/// The largest serialised message Google Chat accepts is 32,000 bytes; messages are kept at or
/// under this.
pub const MAX_MESSAGE_BYTES: usize = 32_000;

/// The reply option added to every request: post in the thread of `thread.threadKey`, or
/// start it.
pub const REPLY_OPTION: &str = "REPLY_MESSAGE_FALLBACK_TO_NEW_THREAD";

/// The message for one alert (see the module documentation), at most [`MAX_MESSAGE_BYTES`]
/// when serialised.
pub fn message(alert: &Alert, public_url: Option<&str>) -> Value {
    let facts = Facts::of(alert, public_url);
    let labels: Vec<&str> = facts.change.iter().map(|(l, _)| *l).collect();
    let parts: Vec<String> = facts.change.iter().map(|(_, t)| t.clone()).collect();
    fit_parts(
        &parts,
        |cut| build(alert, &facts, &labels, cut),
        |v| serde_json::to_vec(v).map_or(usize::MAX, |b| b.len()) <= MAX_MESSAGE_BYTES,
    )
}

fn build(alert: &Alert, f: &Facts, labels: &[&str], change: &[Cow<'_, str>]) -> Value {
    let paragraph = labels
        .iter()
        .zip(change)
        .map(|(label, text)| format!("<b>{label}</b> {}", escape_html(text)))
        .collect::<Vec<_>>()
        .join("<br>→ ");
    let decorated = |label: &str, text: &str| json!({"decoratedText": {"topLabel": label, "text": escape_html(text)}});
    let mut widgets = vec![
        decorated("Who", &f.who),
        decorated("What", &f.what),
        decorated("Tenant", &f.tenant),
        decorated("Time", &f.time),
        json!({"textParagraph": {"text": paragraph}}),
    ];
    if let Some(link) = &f.link {
        widgets.push(json!({"buttonList": {"buttons": [
            {"text": "Open event", "onClick": {"openLink": {"url": link}}}
        ]}}));
    }
    json!({
        "text": plain(&f.fallback),
        "cardsV2": [{
            "cardId": format!("trailkeep-{}", alert.delivery_id),
            "card": {
                "header": {
                    "title": plain(&f.title),
                    "subtitle": plain(&format!("trailkeep · rule {}", alert.rule)),
                },
                "sections": [{"widgets": widgets}],
            },
        }],
        "thread": {"threadKey": format!("{}/{}", alert.event.tenant_id, alert.event.event_type)},
    })
}

/// The webhook URL with `messageReplyOption` and `requestId` (the delivery id) added to its
/// query (replacing any already there; `key` and `token` are kept as they are).
pub fn request_url(base: &str, alert: &Alert) -> String {
    let Ok(mut url) = reqwest::Url::parse(base) else {
        // Configurations are checked before a channel exists; keep the URL rather than panic.
        let sep = if base.contains('?') { '&' } else { '?' };
        return format!(
            "{base}{sep}messageReplyOption={REPLY_OPTION}&requestId={}",
            alert.delivery_id
        );
    };
    let ours = |k: &str| k == "messageReplyOption" || k == "requestId";
    if url.query_pairs().any(|(k, _)| ours(&k)) {
        let kept: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| !ours(k))
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    url.query_pairs_mut()
        .append_pair("messageReplyOption", REPLY_OPTION)
        .append_pair("requestId", &alert.delivery_id);
    url.to_string()
}

/// The space of a Google Chat webhook URL: `AAAA` of `…/v1/spaces/AAAA/messages?…`. `None`
/// when the path is not of that form (or the space has characters other than letters, digits,
/// `_` and `-`).
pub fn space_of(url: &str) -> Option<String> {
    let url = reqwest::Url::parse(url).ok()?;
    let segs: Vec<&str> = url.path_segments()?.collect();
    match segs.as_slice() {
        ["v1", "spaces", space, "messages"]
            if !space.is_empty()
                && space
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            Some(space.to_string())
        }
        _ => None,
    }
}

/// Escapes what card text (a small HTML subset) would interpret.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Plain text that Chat cannot read as a link or a mention: `<` and `>` become `‹` and `›`.
fn plain(s: &str) -> String {
    s.replace('<', "‹").replace('>', "›")
}
