//! What a Slack incoming webhook takes.
//!
//! `POST` with a JSON body (`Content-Type: application/json`) that has `text`, a string
//! (the notification text, and the fallback when there are blocks), and optionally `blocks`,
//! Block Kit layout blocks. [`check`] knows the blocks an alert uses and Slack's limits for
//! them:
//!
//! | block | fields | limits |
//! |---|---|---|
//! | `header` | `text` (plain_text) | text ≤ 150 characters |
//! | `section` | `text`, `fields`, `accessory` | text ≤ 3000, ≤ 10 fields of ≤ 2000 |
//! | `context` | `elements` (text objects, images) | 1 to 10 elements |
//! | `actions` | `elements` (buttons) | 1 to 25 elements; button text ≤ 75, url ≤ 3000 |
//! | `divider` | | |
//!
//! Every block may have a `block_id` (≤ 255 characters); a message has at most 50 blocks.
//! A text object is `{"type": "plain_text" | "mrkdwn", "text": "..."}` with a non-empty
//! `text` (plus `emoji` for plain_text, `verbatim` for mrkdwn).
//!
//! Stricter than Slack: unknown fields, in blocks and at the top level, are reported (Slack
//! refuses them in blocks with `invalid_blocks` and ignores them at the top level).

use super::Received;
use serde_json::{Map, Value};

/// Fields of an incoming webhook's body that Slack reads.
const TOP_LEVEL: &[&str] = &[
    "text",
    "blocks",
    "attachments",
    "thread_ts",
    "mrkdwn",
    "unfurl_links",
    "unfurl_media",
    "username",
    "icon_emoji",
    "icon_url",
    "channel",
    "metadata",
];

/// What Slack would refuse in this request (empty if nothing).
pub fn check(req: &Received) -> Vec<String> {
    let mut out = Vec::new();
    if req.method != "POST" {
        out.push(format!(
            "method {}: an incoming webhook takes POST",
            req.method
        ));
    }
    if req.path != "/hook" {
        out.push(format!(
            "path {}: the webhook URL's path is /hook",
            req.path
        ));
    }
    let json_type = req.header("content-type").is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json_type {
        out.push(format!(
            "Content-Type {:?}: send application/json",
            req.header("content-type").unwrap_or("")
        ));
    }
    let Some(body) = &req.json else {
        out.push("body is not JSON".into());
        return out;
    };
    let Some(body) = body.as_object() else {
        out.push("$: expected an object".into());
        return out;
    };
    for name in body.keys() {
        if !TOP_LEVEL.contains(&name.as_str()) {
            out.push(format!(
                "$.{name}: unknown field of an incoming webhook message"
            ));
        }
    }
    match body.get("text") {
        Some(Value::String(t)) if !t.is_empty() => {
            if t.chars().count() > 40_000 {
                out.push("$.text: longer than 40000 characters (Slack truncates it)".into());
            }
        }
        Some(Value::String(_)) => out.push("$.text: empty (Slack answers no_text)".into()),
        Some(_) => out.push("$.text: expected a string".into()),
        None => out.push("$.text: missing (the notification text and the blocks' fallback)".into()),
    }
    match body.get("blocks") {
        None => {}
        Some(Value::Array(blocks)) => {
            if blocks.len() > 50 {
                out.push(format!(
                    "$.blocks: {} blocks, Slack takes at most 50",
                    blocks.len()
                ));
            }
            for (i, block) in blocks.iter().enumerate() {
                check_block(block, &format!("$.blocks[{i}]"), &mut out);
            }
        }
        Some(_) => out.push("$.blocks: expected an array".into()),
    }
    out
}

fn check_block(block: &Value, path: &str, out: &mut Vec<String>) {
    let Some(fields) = block.as_object() else {
        return out.push(format!("{path}: expected a block object"));
    };
    let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
    let allowed: &[&str] = match kind {
        "header" => &["type", "block_id", "text"],
        "section" => &["type", "block_id", "text", "fields", "accessory", "expand"],
        "context" => &["type", "block_id", "elements"],
        "actions" => &["type", "block_id", "elements"],
        "divider" => &["type", "block_id"],
        other => {
            return out.push(format!(
                "{path}.type: {other:?} is not one of header, section, context, actions, divider"
            ))
        }
    };
    unknown_fields(fields, allowed, path, kind, out);
    if let Some(id) = fields.get("block_id") {
        match id.as_str() {
            Some(s) if s.chars().count() <= 255 => {}
            _ => out.push(format!(
                "{path}.block_id: expected a string of ≤ 255 characters"
            )),
        }
    }
    match kind {
        "header" => match fields.get("text") {
            Some(text) => check_text(text, &format!("{path}.text"), Some("plain_text"), 150, out),
            None => out.push(format!("{path}.text: a header needs text")),
        },
        "section" => {
            if let Some(text) = fields.get("text") {
                check_text(text, &format!("{path}.text"), None, 3000, out);
            }
            match fields.get("fields") {
                None if fields.get("text").is_none() => {
                    out.push(format!("{path}: a section needs text or fields"))
                }
                None => {}
                Some(Value::Array(items)) => {
                    if items.len() > 10 {
                        out.push(format!(
                            "{path}.fields: {} fields, Slack takes at most 10",
                            items.len()
                        ));
                    }
                    for (i, item) in items.iter().enumerate() {
                        check_text(item, &format!("{path}.fields[{i}]"), None, 2000, out);
                    }
                }
                Some(_) => out.push(format!("{path}.fields: expected an array")),
            }
            if let Some(accessory) = fields.get("accessory") {
                if !accessory.get("type").is_some_and(Value::is_string) {
                    out.push(format!("{path}.accessory: expected an element with a type"));
                }
            }
        }
        "context" => check_elements(fields, path, 10, out, |e, p, out| {
            match e["type"].as_str() {
                Some("image") => check_image(e, p, out),
                _ => check_text(e, p, None, 3000, out),
            }
        }),
        "actions" => check_elements(fields, path, 25, out, check_action),
        _ => {}
    }
}

fn check_elements(
    fields: &Map<String, Value>,
    path: &str,
    max: usize,
    out: &mut Vec<String>,
    each: impl Fn(&Value, &str, &mut Vec<String>),
) {
    match fields.get("elements") {
        Some(Value::Array(elements)) if (1..=max).contains(&elements.len()) => {
            for (i, element) in elements.iter().enumerate() {
                each(element, &format!("{path}.elements[{i}]"), out);
            }
        }
        Some(Value::Array(elements)) => out.push(format!(
            "{path}.elements: {} elements, Slack takes 1 to {max}",
            elements.len()
        )),
        _ => out.push(format!("{path}.elements: expected an array")),
    }
}

/// A text object: `{"type": "plain_text" | "mrkdwn", "text": "..."}`; `only` restricts the
/// type, `max` is the limit on `text` in characters.
fn check_text(value: &Value, path: &str, only: Option<&str>, max: usize, out: &mut Vec<String>) {
    let Some(fields) = value.as_object() else {
        return out.push(format!("{path}: expected a text object"));
    };
    let kind = fields.get("type").and_then(Value::as_str).unwrap_or("");
    let allowed: &[&str] = match kind {
        "plain_text" => &["type", "text", "emoji"],
        "mrkdwn" => &["type", "text", "verbatim"],
        other => {
            return out.push(format!(
                "{path}.type: {other:?} is not a text object type (plain_text, mrkdwn)"
            ))
        }
    };
    if only.is_some_and(|o| o != kind) {
        out.push(format!("{path}.type: must be {}", only.unwrap_or("")));
    }
    unknown_fields(fields, allowed, path, kind, out);
    match fields.get("text").and_then(Value::as_str) {
        Some("") => out.push(format!("{path}.text: empty")),
        Some(t) if t.chars().count() > max => out.push(format!(
            "{path}.text: {} characters, Slack takes at most {max}",
            t.chars().count()
        )),
        Some(_) => {}
        None => out.push(format!("{path}.text: expected a string")),
    }
    for flag in ["emoji", "verbatim"] {
        if fields.get(flag).is_some_and(|v| !v.is_boolean()) {
            out.push(format!("{path}.{flag}: expected true or false"));
        }
    }
}

fn check_image(value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(fields) = value.as_object() else {
        return out.push(format!("{path}: expected an image element"));
    };
    unknown_fields(
        fields,
        &["type", "image_url", "alt_text"],
        path,
        "image",
        out,
    );
    for name in ["image_url", "alt_text"] {
        if !fields.get(name).is_some_and(Value::is_string) {
            out.push(format!("{path}.{name}: expected a string"));
        }
    }
}

/// An interactive element of an actions block; buttons (what an alert links with) in full.
fn check_action(value: &Value, path: &str, out: &mut Vec<String>) {
    let Some(fields) = value.as_object() else {
        return out.push(format!("{path}: expected an element object"));
    };
    match fields.get("type").and_then(Value::as_str) {
        Some("button") => {
            let allowed = [
                "type",
                "text",
                "action_id",
                "url",
                "value",
                "style",
                "confirm",
                "accessibility_label",
            ];
            unknown_fields(fields, &allowed, path, "button", out);
            match fields.get("text") {
                Some(text) => {
                    check_text(text, &format!("{path}.text"), Some("plain_text"), 75, out)
                }
                None => out.push(format!("{path}.text: a button needs text")),
            }
            if let Some(url) = fields.get("url") {
                if url.as_str().is_none_or(|u| u.chars().count() > 3000) {
                    out.push(format!(
                        "{path}.url: expected a string of ≤ 3000 characters"
                    ));
                }
            }
            if let Some(style) = fields.get("style") {
                if !matches!(style.as_str(), Some("primary" | "danger")) {
                    out.push(format!("{path}.style: expected primary or danger"));
                }
            }
        }
        Some(_) => {}
        None => out.push(format!("{path}.type: expected a string")),
    }
}

fn unknown_fields(
    fields: &Map<String, Value>,
    allowed: &[&str],
    path: &str,
    what: &str,
    out: &mut Vec<String>,
) {
    for name in fields.keys() {
        if !allowed.contains(&name.as_str()) {
            out.push(format!(
                "{path}.{name}: unknown field of a {what} (Slack answers invalid_blocks)"
            ));
        }
    }
}

/// Slack's answer body for a status (plain text, as incoming webhooks answer).
pub(crate) fn answer_text(status: u16) -> &'static str {
    match status {
        200..=299 => "ok",
        400 => "invalid_payload",
        403 => "action_prohibited",
        404 => "no_service",
        410 => "channel_is_archived",
        429 => "rate_limited",
        _ => "internal_error",
    }
}
