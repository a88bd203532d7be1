//! Turning a request body into validated events (SPEC §2, §3, §4.1).
//!
//! [`split_body`] splits a body (one object, an array, or NDJSON) into per-event raw JSON without
//! validating content, so size limits can be checked per event; [`parse_event`] validates one event
//! and normalises it into a [`NewEvent`]. Every problem of every event is reported, each with the
//! event's index and JSON path, so a client can fix a whole batch in one round trip.

use crate::catalogue::{check_payload, is_reserved};
use crate::numbers;
use crate::{Issue, NewEvent, Timestamp, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_PAYLOAD_DEPTH};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::net::IpAddr;
use uuid::Uuid;

/// How far in the future a client timestamp may be.
pub const MAX_FUTURE_NANOS: i64 = 5 * 60 * 1_000_000_000;

/// The top-level fields an event may carry.
pub const ENVELOPE_FIELDS: [&str; 9] = [
    "event_id",
    "event_type",
    "actor",
    "tenant_id",
    "payload",
    "timestamp",
    "source_ip",
    "impersonation_session",
    "approval_id",
];

/// The body's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One event object or a JSON array of them.
    Json,
    /// One event object per line.
    Ndjson,
}

/// Why a body was refused before any event was looked at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("{0}")]
    NotJson(String),
    #[error("the request holds {0} events; at most {MAX_BATCH_EVENTS} are accepted per request: split it")]
    TooManyEvents(usize),
    #[error("event {index} is {size} bytes; one event may be at most {MAX_EVENT_BYTES} bytes")]
    EventTooLarge { index: usize, size: usize },
    #[error("the request holds no events")]
    Empty,
}

/// One event's raw JSON as sent.
pub struct RawEvent<'a> {
    pub index: usize,
    pub json: &'a str,
}

/// Splits a body into raw events and checks the count and per-event size limits.
pub fn split_body(body: &[u8], format: BodyFormat) -> Result<Vec<RawEvent<'_>>, BodyError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| BodyError::NotJson("the body is not UTF-8 text".into()))?;
    let raws: Vec<&str> = match format {
        BodyFormat::Ndjson => {
            let mut out = Vec::new();
            for (n, line) in text.split('\n').enumerate() {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                // Validate the framing now: each line must be one JSON value.
                let raw: &RawValue = serde_json::from_str(line)
                    .map_err(|e| BodyError::NotJson(format!("line {} is not JSON: {e}", n + 1)))?;
                out.push(raw.get());
                if out.len() > MAX_BATCH_EVENTS {
                    return Err(BodyError::TooManyEvents(count_lines(text)));
                }
            }
            out
        }
        BodyFormat::Json => {
            let trimmed = text.trim_start();
            if trimmed.starts_with('[') {
                let items: Vec<&RawValue> = serde_json::from_str(text)
                    .map_err(|e| BodyError::NotJson(format!("the body is not JSON: {e}")))?;
                if items.len() > MAX_BATCH_EVENTS {
                    return Err(BodyError::TooManyEvents(items.len()));
                }
                items.into_iter().map(|r| r.get()).collect()
            } else {
                let raw: &RawValue = serde_json::from_str(text)
                    .map_err(|e| BodyError::NotJson(format!("the body is not JSON: {e}")))?;
                vec![raw.get()]
            }
        }
    };
    if raws.is_empty() {
        return Err(BodyError::Empty);
    }
    let mut out = Vec::with_capacity(raws.len());
    for (index, json) in raws.into_iter().enumerate() {
        if json.len() > MAX_EVENT_BYTES {
            return Err(BodyError::EventTooLarge {
                index,
                size: json.len(),
            });
        }
        out.push(RawEvent { index, json });
    }
    Ok(out)
}

fn count_lines(text: &str) -> usize {
    text.split('\n').filter(|l| !l.trim().is_empty()).count()
}

/// `^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$`, at most 128 bytes.
pub fn is_event_type(s: &str) -> bool {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 128 || !b[0].is_ascii_lowercase() {
        return false;
    }
    s.split('.').enumerate().all(|(i, seg)| {
        !seg.is_empty()
            && seg
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
            && (i > 0 || seg.as_bytes()[0].is_ascii_lowercase())
    })
}

/// `^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$` or `_global`.
pub fn is_tenant_id(s: &str) -> bool {
    if s == crate::GLOBAL_TENANT {
        return true;
    }
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b':' | b'-'))
}

/// Parses and validates one raw event. `now` bounds future timestamps and fills absent ones.
pub fn parse_event(raw: &RawEvent<'_>, now: Timestamp) -> Result<NewEvent, Vec<Issue>> {
    let index = raw.index;
    let value: Value = serde_json::from_str(raw.json)
        .map_err(|e| vec![Issue::new(index, "", format!("not valid JSON: {e}"))])?;
    let Value::Object(obj) = value else {
        return Err(vec![Issue::new(
            index,
            "",
            "expected a JSON object (an event)",
        )]);
    };
    validate_object(index, obj, now)
}

/// Validates an already-parsed event object.
pub fn validate_object(
    index: usize,
    mut obj: Map<String, Value>,
    now: Timestamp,
) -> Result<NewEvent, Vec<Issue>> {
    let mut issues = Vec::new();
    for k in obj.keys() {
        if !ENVELOPE_FIELDS.contains(&k.as_str()) {
            issues.push(Issue::new(
                index,
                k.clone(),
                format!(
                    "unknown field; an event has only: {}",
                    ENVELOPE_FIELDS.join(", ")
                ),
            ));
        }
    }
    // Optional fields given as null count as absent.
    obj.retain(|_, v| !v.is_null());

    let take_string = |obj: &mut Map<String, Value>,
                       key: &str,
                       required: bool,
                       issues: &mut Vec<Issue>|
     -> Option<String> {
        match obj.remove(key) {
            None if required => {
                issues.push(Issue::new(index, key, "required field is missing"));
                None
            }
            None => None,
            Some(Value::String(s)) => Some(s),
            Some(_) => {
                issues.push(Issue::new(index, key, "expected a string"));
                None
            }
        }
    };

    let event_id_raw = take_string(&mut obj, "event_id", false, &mut issues);
    let event_type = take_string(&mut obj, "event_type", true, &mut issues);
    let actor = take_string(&mut obj, "actor", true, &mut issues);
    let tenant_id = take_string(&mut obj, "tenant_id", true, &mut issues);
    let timestamp_raw = take_string(&mut obj, "timestamp", false, &mut issues);
    let source_ip_raw = take_string(&mut obj, "source_ip", false, &mut issues);
    let session = take_string(&mut obj, "impersonation_session", false, &mut issues);
    let approval_id = take_string(&mut obj, "approval_id", false, &mut issues);

    let event_id = match &event_id_raw {
        None => None,
        Some(s) => match parse_uuid(s) {
            Some(u) => Some(u),
            None => {
                issues.push(Issue::new(
                    index,
                    "event_id",
                    "expected a UUID such as 0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f",
                ));
                None
            }
        },
    };
    if let Some(t) = &event_type {
        if !is_event_type(t) {
            issues.push(Issue::new(
                index,
                "event_type",
                "expected a dotted lower-case type such as prompt.update (pattern ^[a-z][a-z0-9_]*(\\.[a-z0-9_]+)*$, at most 128 bytes)",
            ));
        } else if is_reserved(t) {
            issues.push(Issue::new(
                index,
                "event_type",
                "approval.*, review.*, retention.*, audit.read and sink.* events are written by trailkeep itself and cannot be sent",
            ));
        }
    }
    if let Some(a) = &actor {
        if a.trim().is_empty() || a.len() > 256 || has_control(a) {
            issues.push(Issue::new(index, "actor", "expected a non-empty string of at most 256 bytes without control characters (user:…, admin:… or svc:…)"));
        }
    }
    if let Some(t) = &tenant_id {
        if !is_tenant_id(t) {
            issues.push(Issue::new(
                index,
                "tenant_id",
                "expected a tenant id matching ^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$ or \"_global\"",
            ));
        }
    }
    let timestamp = match &timestamp_raw {
        None => None,
        Some(s) => match Timestamp::parse(s) {
            Ok(t) if t.nanos > now.nanos.saturating_add(MAX_FUTURE_NANOS) => {
                issues.push(Issue::new(
                    index,
                    "timestamp",
                    "timestamp is more than 5 minutes in the future",
                ));
                None
            }
            Ok(t) => Some(t),
            Err(m) => {
                issues.push(Issue::new(index, "timestamp", m));
                None
            }
        },
    };
    let source_ip = match &source_ip_raw {
        None => None,
        Some(s) => match s.parse::<IpAddr>() {
            Ok(ip) => Some(ip.to_string()),
            Err(_) => {
                issues.push(Issue::new(
                    index,
                    "source_ip",
                    "expected an IPv4 or IPv6 address",
                ));
                None
            }
        },
    };
    for (key, v) in [
        ("impersonation_session", &session),
        ("approval_id", &approval_id),
    ] {
        if let Some(s) = v {
            if s.trim().is_empty() || s.len() > 256 || has_control(s) {
                issues.push(Issue::new(
                    index,
                    key,
                    "expected a non-empty string of at most 256 bytes without control characters",
                ));
            }
        }
    }

    let payload = match obj.remove("payload") {
        None => {
            issues.push(Issue::new(
                index,
                "payload",
                "required field is missing (send {} for none)",
            ));
            None
        }
        Some(Value::Object(p)) => {
            let mut path = String::from("payload");
            let before = issues.len();
            let pv = Value::Object(p);
            numbers::walk(&pv, &mut path, 1, MAX_PAYLOAD_DEPTH, &mut |path, msg| {
                issues.push(Issue::new(index, path, msg))
            });
            let ok = issues.len() == before;
            if let (Value::Object(p), Some(t), Some(tenant)) = (&pv, &event_type, &tenant_id) {
                check_payload(index, t, tenant, p, &mut issues);
            }
            ok.then_some(pv)
        }
        Some(_) => {
            issues.push(Issue::new(
                index,
                "payload",
                "expected a JSON object (may be {})",
            ));
            None
        }
    };

    if !issues.is_empty() {
        return Err(issues);
    }
    // Every required field is present here: an absent one produced an issue above.
    let (Some(event_type), Some(actor), Some(tenant_id), Some(payload)) =
        (event_type, actor, tenant_id, payload)
    else {
        return Err(vec![Issue::new(index, "", "event is incomplete")]);
    };
    let canonical = serde_json_canonicalizer::to_vec(&payload).map_err(|e| {
        vec![Issue::new(
            index,
            "payload",
            format!("payload cannot be canonicalised: {e}"),
        )]
    })?;
    Ok(NewEvent {
        event_id_assigned: event_id.is_none(),
        event_id: event_id.unwrap_or_else(Uuid::now_v7),
        event_type,
        actor,
        tenant_id,
        payload: canonical,
        timestamp_assigned: timestamp.is_none(),
        timestamp: timestamp.unwrap_or(Timestamp {
            nanos: now.nanos - now.nanos.rem_euclid(1_000_000),
            digits: 3,
        }),
        source_ip,
        impersonation_session: session,
        approval_id,
    })
}

/// Identifiers (actor, session, approval) may not hold control characters: they are index keys.
fn has_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control())
}

/// Accepts the hyphenated UUID form (any case); returns it for lower-case storage.
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::try_parse(s).ok()
}

/// Validates a whole request: every event, all issues collected.
pub fn validate_batch(raws: &[RawEvent<'_>], now: Timestamp) -> Result<Vec<NewEvent>, Vec<Issue>> {
    let mut events = Vec::with_capacity(raws.len());
    let mut issues = Vec::new();
    for raw in raws {
        match parse_event(raw, now) {
            Ok(e) => events.push(e),
            Err(mut i) => issues.append(&mut i),
        }
    }
    if issues.is_empty() {
        Ok(events)
    } else {
        Err(issues)
    }
}
