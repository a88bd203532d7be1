//! What a receiver of trailkeep's signed webhooks checks, from the documented format alone.
//!
//! A webhook request is `POST` with a JSON body and two headers:
//!
//! - `X-Trailkeep-Delivery`: the delivery id, the same for every attempt of one alert;
//! - `X-Trailkeep-Signature: t=<unix seconds>,v1=<hex>`, where the hex is
//!   HMAC-SHA256(secret, `"<t>.<body>"`) (the timestamp's decimal digits, a dot, the body's
//!   bytes).
//!
//! A receiver recomputes the HMAC over the body it got and refuses the request unless one
//! `v1` matches (compared in constant time) and `t` is within [`TOLERANCE_SECS`] of its
//! own clock, which stops a captured request from being replayed later. This module is
//! written from that description, not from trailkeep's sender, so that a test using it
//! checks the sender against the format.

use super::Received;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far a signature's timestamp may be from the receiver's clock, either way.
pub const TOLERANCE_SECS: i64 = 300;

/// The `X-Trailkeep-Signature` value for `body` signed with `secret` at `timestamp`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    // Any key length is valid for HMAC, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// Problems of a signature header for `body`, checked at `now` (unix seconds).
pub fn verify(secret: &[u8], header: &str, body: &[u8], now: i64) -> Vec<String> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    let mut out = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) if timestamp.is_none() => match t.parse::<i64>() {
                Ok(t) => timestamp = Some(t),
                Err(_) => out.push(format!("signature: t={t:?} is not unix seconds")),
            },
            Some(("t", _)) => out.push("signature: t given twice".into()),
            Some(("v1", v)) => match hex::decode(v) {
                Ok(bytes) => signatures.push(bytes),
                Err(_) => out.push(format!("signature: v1={v:?} is not hex")),
            },
            _ => out.push(format!(
                "signature: unexpected part {part:?} (the format is t=<unix>,v1=<hex>)"
            )),
        }
    }
    let Some(t) = timestamp else {
        out.push("signature: no t=<unix seconds>".into());
        return out;
    };
    if signatures.is_empty() {
        out.push("signature: no v1=<hex>".into());
        return out;
    }
    if (now - t).abs() > TOLERANCE_SECS {
        out.push(format!(
            "signature: timestamp {t} is {}s from the receiver's clock (at most {TOLERANCE_SECS}s)",
            now - t
        ));
    }
    let expected = mac(secret, t, body);
    if !signatures.iter().any(|s| constant_time_eq(s, &expected)) {
        out.push("signature: no v1 matches HMAC-SHA256(secret, \"<t>.<body>\")".into());
    }
    out
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a webhook receiver with this secret would refuse in this request (empty if
/// nothing), checked at `now` (unix seconds).
pub fn check(secret: &[u8], req: &Received, now: i64) -> Vec<String> {
    let mut out = Vec::new();
    if req.method != "POST" {
        out.push(format!("method {}: webhooks are POSTed", req.method));
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
    if req.json.is_none() {
        out.push("body is not JSON".into());
    }
    if req.header("x-trailkeep-delivery").is_none_or(str::is_empty) {
        out.push("X-Trailkeep-Delivery: missing".into());
    }
    match req.header("x-trailkeep-signature") {
        Some(header) => out.extend(verify(secret, header, &req.body, now)),
        None => out.push("X-Trailkeep-Signature: missing".into()),
    }
    out
}
