//! What a Google Chat incoming webhook takes.
//!
//! An incoming webhook is the Chat API's `spaces.messages.create` called with the webhook's
//! `key` and `token` instead of OAuth: `POST /v1/spaces/{space}/messages?key=..&token=..`
//! with a `Message` as the JSON body. [`check`] reports, for one request:
//!
//! - a method other than POST, a `Content-Type` other than `application/json` (with
//!   `charset=UTF-8` or none), a path not of that shape, `key` or `token` missing;
//! - query parameters the method does not declare, or with values it does not allow
//!   (`messageReplyOption`), and the deprecated `threadKey`
//!   ([`Schemas::validate_query`](super::discovery::Schemas::validate_query));
//! - a body that is not a `Message` ([`Schemas::validate`](super::discovery::Schemas::validate)),
//!   or has neither `text` nor `cardsV2`;
//! - a body over [`MAX_MESSAGE_BYTES`].
//!
//! A repeated `requestId` is not a problem: Google answers it with the message the first
//! request created and posts nothing ([`Receiver::posted`](super::Receiver::posted)).

use super::discovery::{Schemas, CHAT_CREATE_MESSAGE};
use super::Received;
use serde_json::Value;

/// The largest message Google Chat takes, in bytes, contents included.
pub const MAX_MESSAGE_BYTES: usize = 32_000;

/// The space of a path `/v1/spaces/{space}/messages`, if it is one.
pub fn space_of(path: &str) -> Option<&str> {
    let space = path
        .strip_prefix("/v1/spaces/")?
        .strip_suffix("/messages")?;
    (!space.is_empty() && !space.contains('/')).then_some(space)
}

/// What Google Chat would refuse in this request (empty if nothing).
pub fn check(req: &Received) -> Vec<String> {
    let mut out = Vec::new();
    if req.method != "POST" {
        out.push(format!(
            "method {}: an incoming webhook takes POST",
            req.method
        ));
    }
    match req.header("content-type") {
        Some(ct) if is_json(ct) => {}
        Some(ct) => out.push(format!(
            "Content-Type {ct:?}: Google Chat takes `application/json; charset=UTF-8`"
        )),
        None => {
            out.push("no Content-Type: Google Chat takes `application/json; charset=UTF-8`".into())
        }
    }
    if space_of(&req.path).is_none() {
        out.push(format!(
            "path {}: not /v1/spaces/{{space}}/messages",
            req.path
        ));
    }
    for name in ["key", "token"] {
        if req.param(name).is_none_or(str::is_empty) {
            out.push(format!(
                "query parameter `{name}`: missing (the webhook URL has it)"
            ));
        }
    }
    let method_params: Vec<(String, String)> = req
        .query
        .iter()
        .filter(|(name, _)| name != "token")
        .cloned()
        .collect();
    out.extend(Schemas::chat().validate_query(CHAT_CREATE_MESSAGE, &method_params));
    if req.body.len() > MAX_MESSAGE_BYTES {
        out.push(format!(
            "body of {} bytes: Google Chat takes at most {MAX_MESSAGE_BYTES}",
            req.body.len()
        ));
    }
    match &req.json {
        None => out.push(format!(
            "body is not JSON: {}",
            serde_json::from_slice::<Value>(&req.body)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        )),
        Some(message) => {
            out.extend(Schemas::chat().validate("Message", message));
            let text = message["text"].as_str().is_some_and(|t| !t.is_empty());
            let cards = message["cardsV2"].as_array().is_some_and(|c| !c.is_empty());
            if message.is_object() && !text && !cards {
                out.push(
                    "$: a message needs `text` or `cardsV2` (Google refuses an empty message)"
                        .into(),
                );
            }
        }
    }
    out
}

/// `application/json`, optionally with `charset=UTF-8` (in any case).
fn is_json(content_type: &str) -> bool {
    let mut parts = content_type.split(';').map(str::trim);
    parts
        .next()
        .is_some_and(|t| t.eq_ignore_ascii_case("application/json"))
        && parts.all(|p| p.eq_ignore_ascii_case("charset=utf-8"))
}

/// The answer body of a created message: the request's message with the names Google
/// fills in (`name`, `thread.name`), as an incoming webhook answers.
pub(crate) fn created(message: &Value, space: &str, id: u64) -> Value {
    let mut out = match message {
        Value::Object(m) => m.clone(),
        _ => Default::default(),
    };
    out.insert(
        "name".into(),
        format!("spaces/{space}/messages/m{id}").into(),
    );
    let mut thread = match out.remove("thread") {
        Some(Value::Object(t)) => t,
        _ => Default::default(),
    };
    thread
        .entry("name")
        .or_insert_with(|| format!("spaces/{space}/threads/t{id}").into());
    out.insert("thread".into(), Value::Object(thread));
    out.insert(
        "space".into(),
        serde_json::json!({ "name": format!("spaces/{space}") }),
    );
    Value::Object(out)
}

/// Google's error body for a status (`{"error": {"code", "message", "status"}}`).
pub(crate) fn error(status: u16, message: &str) -> Value {
    let name = match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        500 => "INTERNAL",
        501 => "NOT_IMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    };
    serde_json::json!({ "error": { "code": status, "message": message, "status": name } })
}
