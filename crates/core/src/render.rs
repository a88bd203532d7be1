//! Writing stored events as the JSON the API returns.
//!
//! Hand-written rather than derived so that queries and exports render without building an
//! intermediate `Value` per event: the canonical payload bytes are copied as they are.
//! Field order is fixed (envelope, then what the server added). A purged event carries
//! `"payload": null`, `"purged": true` and its `payload_commitment`, so its leaf can still be
//! recomputed from what the API returns.

use crate::leaf::write_json_string;
use crate::StoredEvent;
use base64::Engine as _;

/// Appends one event as a JSON object.
pub fn write_event(out: &mut Vec<u8>, e: &StoredEvent) {
    let mut ts = String::with_capacity(32);
    out.extend_from_slice(b"{\"event_id\":\"");
    let mut idbuf = uuid::Uuid::encode_buffer();
    out.extend_from_slice(e.event_id.hyphenated().encode_lower(&mut idbuf).as_bytes());
    out.extend_from_slice(b"\",\"event_type\":");
    write_json_string(out, &e.event_type);
    out.extend_from_slice(b",\"actor\":");
    write_json_string(out, &e.actor);
    out.extend_from_slice(b",\"tenant_id\":");
    write_json_string(out, &e.tenant_id);
    out.extend_from_slice(b",\"payload\":");
    match &e.payload {
        Some(p) => out.extend_from_slice(p),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"timestamp\":\"");
    e.timestamp.write_to(&mut ts);
    out.extend_from_slice(ts.as_bytes());
    out.push(b'"');
    for (k, v) in [
        ("source_ip", &e.source_ip),
        ("impersonation_session", &e.impersonation_session),
        ("approval_id", &e.approval_id),
    ] {
        if let Some(v) = v {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b"\":");
            write_json_string(out, v);
        }
    }
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(e.seq.to_string().as_bytes());
    out.extend_from_slice(b",\"received_at\":\"");
    ts.clear();
    e.received_at.write_to(&mut ts);
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(b"\",\"leaf_hash\":\"");
    out.extend_from_slice(
        base64::engine::general_purpose::STANDARD
            .encode(e.leaf_hash)
            .as_bytes(),
    );
    out.push(b'"');
    if let Some(salt) = &e.payload_salt {
        out.extend_from_slice(b",\"payload_salt\":\"");
        out.extend_from_slice(hex::encode(salt).as_bytes());
        out.push(b'"');
    }
    if e.payload.is_none() {
        out.extend_from_slice(b",\"purged\":true");
        if let Some(c) = &e.payload_commitment {
            out.extend_from_slice(b",\"payload_commitment\":\"");
            out.extend_from_slice(hex::encode(c).as_bytes());
            out.push(b'"');
        }
    }
    out.push(b'}');
}

/// One event as a JSON string.
pub fn event_json(e: &StoredEvent) -> String {
    let mut out = Vec::with_capacity(512);
    write_event(&mut out, e);
    // Everything written above is UTF-8: JSON punctuation, escaped strings, canonical payload.
    String::from_utf8(out).unwrap_or_default()
}
