//! Slack: an alert as a Block Kit message posted to an incoming webhook
//! (`https://hooks.slack.com/services/…`).
//!
//! The body ([`message`]) is `{"text": fallback, "blocks": [...]}`:
//!
//! - `header`: `plain_text` title (the note, or `prompt.update in t_0042`), at most
//!   [`MAX_HEADER_CHARS`] characters;
//! - `section` with four `mrkdwn` fields: who, what, tenant, time (RFC 3339);
//! - `section` with the change in a code block (`before` → `after` of the payload when it has
//!   them, else the payload; compact JSON), cut to [`MAX_TEXT_CHARS`];
//! - `context`: the event id and the rule;
//! - `actions`: an "Open event" button linking to `{public_url}/v1/events/{event_id}`, only when
//!   trailkeep's public URL is known.
//!
//! Event data in `mrkdwn` text has `&`, `<` and `>` escaped as Slack requires, so it cannot form
//! a link or a mention (`<!channel>`); a run of three backticks in the change is broken up so it
//! cannot close the code block.

use super::channel::{fit_parts, truncate_chars, Facts, TRUNCATED};
use super::Alert;
use serde_json::{json, Value};
use std::borrow::Cow;

/// Slack's limit on a header block's text.
pub const MAX_HEADER_CHARS: usize = 150;
/// Slack's limit on a section's text (and on the top-level `text` kept here).
pub const MAX_TEXT_CHARS: usize = 3000;
/// Slack's limit on one section field's text.
pub const MAX_FIELD_CHARS: usize = 2000;

/// The message for one alert (see the module documentation).
pub fn message(alert: &Alert, public_url: Option<&str>) -> Value {
    let f = Facts::of(alert, public_url);
    let field = |label: &str, value: &str| {
        let text = format!("*{label}*\n{}", escape(value));
        json!({"type": "mrkdwn", "text": cut(&text, MAX_FIELD_CHARS)})
    };
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate_chars(&f.title, MAX_HEADER_CHARS - TRUNCATED.chars().count()), "emoji": false},
        }),
        json!({
            "type": "section",
            "fields": [
                field("Who", &f.who),
                field("What", &f.what),
                field("Tenant", &f.tenant),
                field("Time", &f.time),
            ],
        }),
        json!({"type": "section", "text": {"type": "mrkdwn", "text": change_text(&f)}}),
        json!({
            "type": "context",
            "elements": [{
                "type": "mrkdwn",
                "text": cut(
                    &format!(
                        "event `{}` · rule {} · trailkeep",
                        alert.event.event_id.hyphenated(),
                        escape(&alert.rule)
                    ),
                    MAX_TEXT_CHARS
                ),
            }],
        }),
    ];
    if let Some(link) = &f.link {
        blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Open event"},
                "url": link,
            }],
        }));
    }
    json!({
        "text": cut(&escape(&f.fallback), MAX_TEXT_CHARS),
        "blocks": blocks,
    })
}

/// The change in a code block, cut so the whole text stays within [`MAX_TEXT_CHARS`].
fn change_text(f: &Facts) -> String {
    let labels: Vec<&str> = f.change.iter().map(|(l, _)| *l).collect();
    let parts: Vec<String> = f.change.iter().map(|(_, t)| t.clone()).collect();
    let build = |cut: &[Cow<'_, str>]| {
        let body = labels
            .iter()
            .zip(cut)
            .map(|(label, text)| format!("{label}: {}", code(text)))
            .collect::<Vec<_>>()
            .join("\n→ ");
        format!("*Change*\n```{body}```")
    };
    fit_parts(&parts, build, |t| t.chars().count() <= MAX_TEXT_CHARS)
}

/// Escapes `&`, `<` and `>` as Slack's `mrkdwn` requires.
pub fn escape(s: &str) -> String {
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

/// Text for inside a code block: escaped, and no run of three backticks (a zero-width space
/// goes between them).
fn code(s: &str) -> String {
    escape(s).replace("```", "`\u{200B}`\u{200B}`")
}

/// Escaped text cut to at most `max` characters, never inside an entity (`&amp;`).
fn cut(escaped: &str, max: usize) -> String {
    let marker = TRUNCATED;
    if escaped.chars().count() <= max {
        return escaped.to_string();
    }
    let keep = max.saturating_sub(marker.chars().count());
    let mut end = escaped
        .char_indices()
        .nth(keep)
        .map_or(escaped.len(), |(i, _)| i);
    // Back off an entity that would be cut in half.
    if let Some(amp) = escaped[..end].rfind('&') {
        if !escaped[amp..end].contains(';') {
            end = amp;
        }
    }
    format!("{}{marker}", &escaped[..end])
}
