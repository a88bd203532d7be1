//! Signed webhooks: an alert as JSON POSTed to any endpoint, signed with the channel's secret.
//!
//! The body ([`body`]) is
//! `{"delivery_id", "rule", "channel", "note": null or a string, "event": …}` where `event` is
//! the event exactly as `GET /v1/events/{event_id}` returns it
//! ([`trailkeep_core::render::write_event`]).
//!
//! The request carries:
//!
//! - `Content-Type: application/json`
//! - `X-Trailkeep-Delivery: <delivery_id>`, the same on every retry: receivers drop repeats by it;
//! - `X-Trailkeep-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//!   ([`signature`]): the receiver recomputes it over the raw body and refuses a signature
//!   older than 5 minutes ([`verify`], [`DEFAULT_TOLERANCE_SECS`]), so a captured request
//!   cannot be replayed later. The timestamp is that of the attempt: a retry is signed anew.
//! - `User-Agent: trailkeep/<version>`.

use super::Alert;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Trailkeep-Signature";
/// The header carrying the delivery id.
pub const DELIVERY_HEADER: &str = "X-Trailkeep-Delivery";
/// How old (or how far in the future) a signature's timestamp may be: 5 minutes.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The request body for one alert (see the module documentation).
pub fn body(alert: &Alert) -> Vec<u8> {
    let mut out = Vec::with_capacity(512 + alert.event.payload.as_ref().map_or(0, Vec::len));
    let string = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string());
    out.extend_from_slice(b"{\"delivery_id\":");
    out.extend_from_slice(string(&alert.delivery_id).as_bytes());
    out.extend_from_slice(b",\"rule\":");
    out.extend_from_slice(string(&alert.rule).as_bytes());
    out.extend_from_slice(b",\"channel\":");
    out.extend_from_slice(string(&alert.channel).as_bytes());
    out.extend_from_slice(b",\"note\":");
    match &alert.note {
        Some(n) => out.extend_from_slice(string(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"event\":");
    trailkeep_core::render::write_event(&mut out, &alert.event);
    out.push(b'}');
    out
}

fn mac(secret: &[u8], t: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    m.update(t.as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The `X-Trailkeep-Signature` value: `t=<unix>,v1=<lowercase hex HMAC-SHA256(secret,
/// "<unix>.<body>")>`.
pub fn signature(secret: &[u8], unix: i64, body: &[u8]) -> String {
    let t = unix.to_string();
    let tag = mac(secret, &t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// What a receiver does with a request: parses `header` (`t=…,v1=…`; several `v1` are allowed,
/// e.g. while a secret is being replaced, and unknown keys are ignored), refuses a timestamp
/// more than `tolerance_secs` away from `now_unix` (either way), and compares the HMAC of
/// `"<t>.<body>"` with each `v1` in constant time. `body` is the raw request body, byte for
/// byte (not re-serialised JSON).
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: u64,
) -> Result<(), String> {
    let mut t: Option<&str> = None;
    let mut tags: Vec<Vec<u8>> = Vec::new();
    for item in header.split(',') {
        let Some((k, v)) = item.trim().split_once('=') else {
            return Err(format!(
                "malformed signature header: {:?} is not key=value",
                item.trim()
            ));
        };
        match k {
            "t" if t.is_some() => return Err("malformed signature header: two t=".to_string()),
            "t" => t = Some(v),
            "v1" => tags.push(
                hex::decode(v)
                    .ok()
                    .filter(|b| b.len() == 32)
                    .ok_or("malformed signature header: v1 is not 64 hex digits")?,
            ),
            _ => {}
        }
    }
    let t = t.ok_or("malformed signature header: no t=<unix seconds>")?;
    let ts: i64 = if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        t.parse()
            .map_err(|_| "malformed signature header: t is out of range")?
    } else {
        return Err("malformed signature header: t is not unix seconds".to_string());
    };
    if tags.is_empty() {
        return Err("malformed signature header: no v1=<signature>".to_string());
    }
    let age = now_unix.saturating_sub(ts);
    if age.unsigned_abs() > tolerance_secs {
        return Err(if age > 0 {
            format!("signature is {age} s old, more than the {tolerance_secs} s allowed (a replay, or a clock far off)")
        } else {
            format!(
                "signature is dated {} s in the future, more than the {tolerance_secs} s allowed (a clock far off)",
                -age
            )
        });
    }
    let m = mac(secret, t, body);
    if tags.iter().any(|tag| m.clone().verify_slice(tag).is_ok()) {
        Ok(())
    } else {
        Err("signature does not match the body (wrong secret, or the body was changed)".to_string())
    }
}
