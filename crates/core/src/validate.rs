//! Turning a request body into validated events (docs/events.md, docs/api.md).
//!
//! [`split_body`] splits a body (one object, an array, or NDJSON) into per-event raw JSON without
//! validating content, so size limits can be checked per event; [`parse_event`] validates one event
//! and normalises it into a [`NewEvent`]. Every problem of every event is reported, each with the
//! event's index and JSON path, so a client can fix a whole batch in one round trip.

use crate::catalogue::{check_payload, is_reserved};
use crate::numbers;
use crate::{Issue, NewEvent, Timestamp, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_PAYLOAD_DEPTH};
use compact_str::CompactString;
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
    let value: Value =
        crate::ijson::parse(raw.json).map_err(|e| vec![Issue::new(index, e.path, e.message)])?;
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
        if !is_identifier(a) {
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
        Some(s) => match client_timestamp(s, now) {
            Ok(t) => Some(t),
            Err(m) => {
                issues.push(Issue::new(index, "timestamp", m));
                None
            }
        },
    };
    let source_ip = match &source_ip_raw {
        None => None,
        Some(s) => match normalise_ip(s) {
            Some(ip) => Some(ip),
            None => {
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
            if !is_identifier(s) {
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
        event_type: event_type.into(),
        actor: actor.into(),
        tenant_id: tenant_id.into(),
        payload: canonical.into(),
        timestamp_assigned: timestamp.is_none(),
        timestamp: timestamp.unwrap_or_else(|| assigned_timestamp(now)),
        source_ip,
        impersonation_session: session.map(CompactString::from),
        approval_id: approval_id.map(CompactString::from),
    })
}

/// The timestamp of an event sent without one: `now` truncated to milliseconds.
pub(crate) fn assigned_timestamp(now: Timestamp) -> Timestamp {
    Timestamp {
        nanos: now.nanos - now.nanos.rem_euclid(1_000_000),
        digits: 3,
    }
}

/// A client's `timestamp`: RFC 3339, at most [`MAX_FUTURE_NANOS`] after `now`.
pub(crate) fn client_timestamp(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    match Timestamp::parse(s) {
        Ok(t) if t.nanos > now.nanos.saturating_add(MAX_FUTURE_NANOS) => {
            Err("timestamp is more than 5 minutes in the future".into())
        }
        other => other,
    }
}

/// A `source_ip` in its normalised text form (`IpAddr`'s `Display`), if it is an IPv4 or IPv6
/// address. Both are written by hand, without the formatting machinery: IPv4 as it came (the
/// parser takes only dotted decimal without leading zeros, which is what `Display` writes), IPv6
/// as RFC 5952 text, as `Display` writes it (tests compare the two).
pub(crate) fn normalise_ip(s: &str) -> Option<CompactString> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some(CompactString::from(s)),
        IpAddr::V6(v6) => {
            let mut buf = [0u8; 48];
            let n = write_ipv6(&v6, &mut buf);
            // Only ASCII hex digits, colons and dots are written.
            std::str::from_utf8(&buf[..n]).ok().map(CompactString::from)
        }
    }
}

/// Writes an IPv6 address as `Ipv6Addr`'s `Display` does (RFC 5952: lower-case hex without
/// leading zeros, the first longest run of two or more zero groups as `::`, and IPv4-mapped
/// addresses as `::ffff:a.b.c.d`). Returns the length written (at most 45 bytes).
fn write_ipv6(ip: &std::net::Ipv6Addr, out: &mut [u8; 48]) -> usize {
    /// A cursor over the fixed buffer (45 bytes is the longest text).
    struct W<'a>(&'a mut [u8; 48], usize);
    impl W<'_> {
        fn put(&mut self, b: u8) {
            if let Some(d) = self.0.get_mut(self.1) {
                *d = b;
                self.1 += 1;
            }
        }
        fn dec(&mut self, o: u8) {
            if o >= 100 {
                self.put(b'0' + o / 100);
            }
            if o >= 10 {
                self.put(b'0' + o / 10 % 10);
            }
            self.put(b'0' + o % 10);
        }
        fn hex(&mut self, g: u16) {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            let mut started = false;
            for shift in [12, 8, 4, 0] {
                let d = (g >> shift) & 0xf;
                if d != 0 || started || shift == 0 {
                    self.put(HEX[usize::from(d)]);
                    started = true;
                }
            }
        }
    }
    let mut w = W(out, 0);
    if let Some(v4) = ip.to_ipv4_mapped() {
        for &b in b"::ffff:" {
            w.put(b);
        }
        for (i, o) in v4.octets().into_iter().enumerate() {
            if i > 0 {
                w.put(b'.');
            }
            w.dec(o);
        }
        return w.1;
    }
    let seg = ip.segments();
    // The first longest run of zero groups; only a run of two or more is shortened.
    let (mut best, mut best_len, mut cur, mut cur_len) = (0, 0, 0, 0);
    for (i, &g) in seg.iter().enumerate() {
        if g == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    if best_len < 2 {
        best = 8;
        best_len = 0;
    }
    let mut i = 0;
    while i < 8 {
        if i == best {
            w.put(b':');
            w.put(b':');
            i += best_len;
            continue;
        }
        if i > 0 && i != best + best_len {
            w.put(b':');
        }
        w.hex(seg[i]);
        i += 1;
    }
    w.1
}

/// The rule for `actor`, `impersonation_session` and `approval_id`: non-empty (not only
/// whitespace), at most 256 bytes, no control characters (they are index keys).
pub(crate) fn is_identifier(s: &str) -> bool {
    !(s.trim().is_empty() || s.len() > 256 || has_control(s))
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

/// Why a request body was refused: its framing, event count or an event's size
/// ([`BodyError`], decided before any event is looked at), or the issues of its events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyRefusal {
    Body(BodyError),
    Invalid(Vec<Issue>),
}

/// Turns a request body into validated events: [`split_body`] then [`validate_batch`], with the
/// same result in every case, computed faster for bodies whose events are all valid.
///
/// The fast path (`crate::fast`) parses each event once into a borrowed tree, checks it with the
/// same rules and writes its canonical payload directly. It only ever *accepts*: at the first
/// thing it does not find plainly valid (bad framing, a limit, an invalid field, a duplicate
/// key, a number the rule refuses, a lone surrogate) it gives up, and the body is decided by
/// `split_body` and `validate_batch` alone, so every refusal, message and path is theirs.
pub fn parse_body(
    body: &[u8],
    format: BodyFormat,
    now: Timestamp,
) -> Result<Vec<NewEvent>, BodyRefusal> {
    if let Some(events) = crate::fast::parse_body(body, format, now) {
        return Ok(events);
    }
    let raws = split_body(body, format).map_err(BodyRefusal::Body)?;
    validate_batch(&raws, now).map_err(BodyRefusal::Invalid)
}

/// The fast path of [`parse_body`] alone: `Some` only when it accepts the whole body.
///
/// For differential tests and benchmarks; servers call [`parse_body`].
#[doc(hidden)]
pub fn parse_body_fast(body: &[u8], format: BodyFormat, now: Timestamp) -> Option<Vec<NewEvent>> {
    crate::fast::parse_body(body, format, now)
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

#[cfg(test)]
mod ip_tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn display(s: &str) -> Option<String> {
        s.parse::<IpAddr>().ok().map(|ip| ip.to_string())
    }

    proptest! {
        /// Groups drawn mostly from 0 and a few values, so zero runs of every length and
        /// position (and IPv4-mapped and -compatible addresses) come up often.
        #[test]
        fn ipv6_text_is_what_display_writes(
            groups in prop::array::uniform8(prop::sample::select(vec![0u16, 0, 0, 1, 0xffff, 0xdb8, 0x2001, 0xabc, 0x10])),
        ) {
            let ip = Ipv6Addr::from(groups);
            let text = ip.to_string();
            prop_assert_eq!(normalise_ip(&text).map(|c| c.to_string()), Some(text.clone()));
            // Non-canonical spellings normalise to the same text.
            let long = groups.iter().map(|g| format!("{g:04X}")).collect::<Vec<_>>().join(":");
            prop_assert_eq!(normalise_ip(&long).map(|c| c.to_string()), Some(text.clone()));
        }

        #[test]
        fn ipv4_text_is_what_display_writes(o in prop::array::uniform4(any::<u8>()), pad in any::<bool>()) {
            let text = Ipv4Addr::from(o).to_string();
            prop_assert_eq!(normalise_ip(&text).map(|c| c.to_string()), Some(text.clone()));
            // Leading zeros are refused by the parser, so input text is always Display's.
            let padded = o.iter().map(|x| if pad { format!("{x:03}") } else { x.to_string() }).collect::<Vec<_>>().join(".");
            prop_assert_eq!(normalise_ip(&padded).map(|c| c.to_string()), display(&padded));
        }

        #[test]
        fn any_text_normalises_as_display_does(s in "[0-9a-fA-F:.]{0,20}") {
            prop_assert_eq!(normalise_ip(&s).map(|c| c.to_string()), display(&s));
        }
    }

    #[test]
    fn ipv6_examples() {
        for s in [
            "::",
            "::1",
            "1::",
            "::ffff:1.2.3.4",
            "::1.2.3.4",
            "1:0:0:2:0:0:0:3",
            "1:0:0:2:0:0:3:4",
            "2001:db8::6eca",
            "2001:DB8:0:0:0:0:0:1",
            "fe80::1:0:0:1",
            "0:0:1:0:0:1:0:0",
            "1:2:3:4:5:6:7:8",
            "1:0:3:4:5:6:7:8",
            "::ffff:0:1.2.3.4",
            "::ffff:255.255.255.255",
        ] {
            assert_eq!(normalise_ip(s).map(|c| c.to_string()), display(s), "{s}");
        }
        assert_eq!(normalise_ip("010.1.2.3"), None);
        assert_eq!(normalise_ip("not an ip"), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A fixed "now": 2026-11-23T10:15:00.123456789Z.
    fn now() -> Timestamp {
        Timestamp::parse("2026-11-23T10:15:00.123456789Z").unwrap()
    }

    fn ev() -> Value {
        json!({"event_type": "app.x", "actor": "user:a", "tenant_id": "t_1", "payload": {}})
    }

    fn check(v: Value) -> Result<NewEvent, Vec<Issue>> {
        let Value::Object(m) = v else { panic!() };
        validate_object(0, m, now())
    }

    fn paths(v: Value) -> Vec<String> {
        match check(v) {
            Ok(_) => Vec::new(),
            Err(issues) => issues.into_iter().map(|i| i.path).collect(),
        }
    }

    fn with(mut v: Value, k: &str, x: Value) -> Value {
        v[k] = x;
        v
    }

    fn jsons(raws: &[RawEvent<'_>]) -> Vec<String> {
        raws.iter().map(|r| r.json.to_string()).collect()
    }

    // ---- split_body ----

    #[test]
    fn split_single_object_and_array() {
        let r = split_body(br#"  {"a": 1}  "#, BodyFormat::Json).unwrap();
        assert_eq!(jsons(&r), [r#"{"a": 1}"#]);
        assert_eq!(r[0].index, 0);
        let r = split_body(br#"[{"a":1}, {"b":2} ,3]"#, BodyFormat::Json).unwrap();
        assert_eq!(jsons(&r), [r#"{"a":1}"#, r#"{"b":2}"#, "3"]);
        assert_eq!(r.iter().map(|x| x.index).collect::<Vec<_>>(), [0, 1, 2]);
        // Leading whitespace before an array.
        let r = split_body(b"\n\t [{}]", BodyFormat::Json).unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn split_ndjson_skips_blank_lines_and_handles_crlf() {
        let body = b"\n{\"a\":1}\r\n\r\n   \n\t\n{\"b\":2}\r\n{\"c\":3}";
        let r = split_body(body, BodyFormat::Ndjson).unwrap();
        assert_eq!(jsons(&r), [r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
        // Indexes count events, not lines.
        assert_eq!(r.iter().map(|x| x.index).collect::<Vec<_>>(), [0, 1, 2]);
        // A trailing newline adds nothing.
        let r = split_body(b"{}\n", BodyFormat::Ndjson).unwrap();
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn split_refuses_what_is_not_json() {
        for (body, fmt) in [
            (&b"nope"[..], BodyFormat::Json),
            (b"{", BodyFormat::Json),
            (b"{} {}", BodyFormat::Json),
            (b"[{}] x", BodyFormat::Json),
            (b"[{},]", BodyFormat::Json),
            (b"", BodyFormat::Json),
            (b"   ", BodyFormat::Json),
            (b"\xff{}", BodyFormat::Json),
            (b"{}\n{\n}", BodyFormat::Ndjson),
            (b"{}\nnope\n", BodyFormat::Ndjson),
            (b"{} {}", BodyFormat::Ndjson),
            (b"{}\n\xff\n", BodyFormat::Ndjson),
        ] {
            assert!(
                matches!(split_body(body, fmt), Err(BodyError::NotJson(_))),
                "{:?} {fmt:?}",
                String::from_utf8_lossy(body)
            );
        }
        // The bad NDJSON line is named.
        match split_body(b"{}\n\n{}\nnope", BodyFormat::Ndjson) {
            Err(BodyError::NotJson(m)) => assert!(m.contains("line 4"), "{m}"),
            other => panic!("{:?}", other.map(|r| r.len())),
        }
    }

    #[test]
    fn split_empty_bodies() {
        assert_eq!(
            split_body(b"[]", BodyFormat::Json).err(),
            Some(BodyError::Empty)
        );
        assert_eq!(
            split_body(b" [ ] ", BodyFormat::Json).err(),
            Some(BodyError::Empty)
        );
        for body in [&b""[..], b"\n", b"\r\n\r\n", b"  \n \t \n"] {
            assert_eq!(
                split_body(body, BodyFormat::Ndjson).err(),
                Some(BodyError::Empty),
                "{body:?}"
            );
        }
    }

    #[test]
    fn split_counts_events() {
        let array = |n: usize| format!("[{}]", vec!["{}"; n].join(","));
        let lines = |n: usize| vec!["{}"; n].join("\n");
        assert_eq!(
            split_body(array(MAX_BATCH_EVENTS).as_bytes(), BodyFormat::Json)
                .unwrap()
                .len(),
            MAX_BATCH_EVENTS
        );
        assert_eq!(
            split_body(lines(MAX_BATCH_EVENTS).as_bytes(), BodyFormat::Ndjson)
                .unwrap()
                .len(),
            MAX_BATCH_EVENTS
        );
        assert_eq!(
            split_body(array(MAX_BATCH_EVENTS + 1).as_bytes(), BodyFormat::Json).err(),
            Some(BodyError::TooManyEvents(MAX_BATCH_EVENTS + 1))
        );
        assert_eq!(
            split_body(lines(MAX_BATCH_EVENTS + 1).as_bytes(), BodyFormat::Ndjson).err(),
            Some(BodyError::TooManyEvents(MAX_BATCH_EVENTS + 1))
        );
        // Blank lines do not count.
        let spaced = vec!["{}"; MAX_BATCH_EVENTS].join("\n\n\r\n");
        assert_eq!(
            split_body(spaced.as_bytes(), BodyFormat::Ndjson)
                .unwrap()
                .len(),
            MAX_BATCH_EVENTS
        );
    }

    #[test]
    fn split_limits_event_size() {
        // An event of exactly MAX_EVENT_BYTES passes; one byte more is refused with its index.
        let sized = |n: usize| format!("{{\"p\":\"{}\"}}", "x".repeat(n - 8));
        let ok = sized(MAX_EVENT_BYTES);
        assert_eq!(ok.len(), MAX_EVENT_BYTES);
        let big = sized(MAX_EVENT_BYTES + 1);
        assert!(split_body(ok.as_bytes(), BodyFormat::Json).is_ok());
        assert_eq!(
            split_body(big.as_bytes(), BodyFormat::Json).err(),
            Some(BodyError::EventTooLarge {
                index: 0,
                size: MAX_EVENT_BYTES + 1
            })
        );
        let arr = format!("[{{}}, {ok}, {big}]");
        assert_eq!(
            split_body(arr.as_bytes(), BodyFormat::Json).err(),
            Some(BodyError::EventTooLarge {
                index: 2,
                size: MAX_EVENT_BYTES + 1
            })
        );
        let nd = format!("{{}}\n\n{big}\r\n{{}}");
        assert_eq!(
            split_body(nd.as_bytes(), BodyFormat::Ndjson).err(),
            Some(BodyError::EventTooLarge {
                index: 1,
                size: MAX_EVENT_BYTES + 1
            })
        );
        // A CRLF line ending does not count toward the event.
        let nd = format!("{ok}\r\n");
        assert!(split_body(nd.as_bytes(), BodyFormat::Ndjson).is_ok());
    }

    // ---- patterns ----

    #[test]
    fn event_type_pattern() {
        for t in ["a", "prompt.update", "a1_.b_2", "x.0", "a__b.c", "a_"] {
            assert!(is_event_type(t), "{t}");
        }
        let max = format!("a.{}", "b".repeat(126));
        assert!(is_event_type(&max));
        assert!(!is_event_type(&format!("{max}b")));
        for t in [
            "", "A", "1a", "_a", ".a", "a.", "a..b", "a-b", "a.B", "a b", "é", "a.*", "a/b",
        ] {
            assert!(!is_event_type(t), "{t}");
        }
    }

    #[test]
    fn tenant_pattern() {
        for t in ["_global", "t", "0", "T_1.a:b-c", &"a".repeat(128)] {
            assert!(is_tenant_id(t), "{t}");
        }
        for t in [
            "",
            "_t",
            "-t",
            ".t",
            ":t",
            "t/1",
            "t 1",
            "té",
            "_GLOBAL",
            "t\u{0}",
            &"a".repeat(129),
        ] {
            assert!(!is_tenant_id(t), "{t:?}");
        }
    }

    // ---- validate_object ----

    #[test]
    fn valid_event_is_normalised() {
        let e = check(json!({
            "event_id": "0192F0C4-7D1E-7A53-8F0E-3C1D2B4A5E6F",
            "event_type": "app.x",
            "actor": "user:a",
            "tenant_id": "t_1",
            "payload": {"b": [1, {"d": 0, "c": 1}], "a": "é"},
            "timestamp": "2026-11-23T11:15:00.1+01:00",
            "source_ip": "2001:DB8:0:0::1",
            "impersonation_session": "imp_1",
            "approval_id": "apr_1",
        }))
        .unwrap();
        assert_eq!(
            e.event_id.to_string(),
            "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f"
        );
        assert!(!e.event_id_assigned);
        assert_eq!(e.timestamp.to_rfc3339(), "2026-11-23T10:15:00.100Z");
        assert!(!e.timestamp_assigned);
        assert_eq!(e.source_ip.as_deref(), Some("2001:db8::1"));
        assert_eq!(
            String::from_utf8(e.payload.to_vec()).unwrap(),
            r#"{"a":"é","b":[1,{"c":1,"d":0}]}"#
        );
        assert_eq!(e.impersonation_session.as_deref(), Some("imp_1"));
        assert_eq!(e.approval_id.as_deref(), Some("apr_1"));
    }

    #[test]
    fn absent_id_and_timestamp_are_assigned() {
        let e = check(ev()).unwrap();
        assert!(e.event_id_assigned);
        assert_eq!(e.event_id.get_version_num(), 7);
        assert!(e.timestamp_assigned);
        // "now" truncated to milliseconds.
        assert_eq!(e.timestamp.to_rfc3339(), "2026-11-23T10:15:00.123Z");
        // Nulls count as absent for optional fields.
        let e = check(
            json!({"event_type": "app.x", "actor": "user:a", "tenant_id": "t_1",
            "payload": {}, "event_id": null, "timestamp": null, "source_ip": null,
            "impersonation_session": null, "approval_id": null}),
        )
        .unwrap();
        assert!(e.event_id_assigned && e.timestamp_assigned);
        assert!(e.source_ip.is_none() && e.impersonation_session.is_none());
    }

    #[test]
    fn every_issue_is_reported_with_its_path() {
        let mut p = paths(json!({}));
        p.sort();
        assert_eq!(p, ["actor", "event_type", "payload", "tenant_id"]);
        let mut p = paths(json!({"event_type": "Bad", "actor": "", "tenant_id": "_x",
            "payload": [], "timestamp": "soon", "source_ip": "1.2.3", "event_id": "x",
            "impersonation_session": "", "approval_id": "a\nb", "extra": 1}));
        p.sort();
        assert_eq!(
            p,
            [
                "actor",
                "approval_id",
                "event_id",
                "event_type",
                "extra",
                "impersonation_session",
                "payload",
                "source_ip",
                "tenant_id",
                "timestamp"
            ]
        );
        // Issues carry the event's index.
        let Value::Object(m) = json!({}) else {
            panic!()
        };
        let issues = validate_object(7, m, now()).unwrap_err();
        assert!(issues.iter().all(|i| i.index == 7 && !i.message.is_empty()));
    }

    #[test]
    fn field_rules() {
        assert_eq!(
            paths(with(ev(), "actor", json!("a".repeat(256)))),
            Vec::<String>::new()
        );
        assert_eq!(
            paths(with(ev(), "actor", json!("a".repeat(257)))),
            ["actor"]
        );
        assert_eq!(paths(with(ev(), "actor", json!("user:\u{7}"))), ["actor"]);
        assert_eq!(paths(with(ev(), "actor", json!(5))), ["actor"]);
        assert_eq!(
            paths(with(ev(), "tenant_id", json!("_global"))),
            Vec::<String>::new()
        );
        assert_eq!(
            paths(with(ev(), "event_type", json!("audit.read"))),
            ["event_type"]
        );
        assert_eq!(
            paths(with(ev(), "event_type", json!("sink.x"))),
            ["event_type"]
        );
        assert_eq!(
            paths(with(ev(), "event_type", json!("approval.x"))),
            ["event_type"]
        );
        assert_eq!(
            paths(with(ev(), "event_type", json!("audit.reader"))),
            Vec::<String>::new()
        );
        // event_id: hyphenated form only.
        for id in [
            "0192f0c47d1e7a538f0e3c1d2b4a5e6f",
            "{0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f}",
            "urn:uuid:0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f",
            "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6g",
        ] {
            assert_eq!(
                paths(with(ev(), "event_id", json!(id))),
                ["event_id"],
                "{id}"
            );
        }
        assert_eq!(
            paths(with(ev(), "source_ip", json!("::ffff:1.2.3.4"))),
            Vec::<String>::new()
        );
        assert_eq!(
            paths(with(ev(), "source_ip", json!("1.2.3.4 "))),
            ["source_ip"]
        );
    }

    #[test]
    fn normalised_ips_are_display_text() {
        let mut x = 0x1234_5678_9abc_def1u64;
        for i in 0..5000u32 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v4 = std::net::Ipv4Addr::from((x >> 16) as u32 >> (i % 32));
            assert_eq!(normalise_ip(&v4.to_string()).unwrap(), v4.to_string());
            let v6 = std::net::Ipv6Addr::from(u128::from(x) << (i % 128) | u128::from(i));
            assert_eq!(normalise_ip(&v6.to_string()).unwrap(), v6.to_string());
        }
        for s in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.100.9",
            "::",
            "::1",
            "2001:DB8:0:0::1",
            "::FFFF:1.2.3.4",
            "::1.2.3.4",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert_eq!(normalise_ip(s).unwrap(), ip.to_string(), "{s}");
        }
        assert_eq!(normalise_ip("1.2.3"), None);
    }

    #[test]
    fn future_timestamp_boundary() {
        // now + 5 min exactly is accepted; one nanosecond later is not.
        let at = |s: &str| with(ev(), "timestamp", json!(s));
        assert!(check(at("2026-11-23T10:20:00.123456789Z")).is_ok());
        assert_eq!(paths(at("2026-11-23T10:20:00.12345679Z")), ["timestamp"]);
        assert!(check(at("1970-01-01T00:00:00Z")).is_ok());
        assert_eq!(paths(at("1600-01-01T00:00:00Z")), ["timestamp"]);
        assert_eq!(paths(at("2026-11-23T10:15:00")), ["timestamp"]);
    }

    #[test]
    fn accepted_timestamps_round_trip_through_their_returned_text() {
        // The returned (and hashed) text must denote exactly the stored instant: queries with
        // since/until and re-sends compare instants, verifiers read the text.
        for s in [
            "2026-11-23T10:15:00Z",
            "2026-11-23T10:15:00.5+05:30",
            "2026-11-23T10:15:00.123456789Z",
            "2026-11-23T10:15:00.1234567891Z",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "1969-12-31T23:59:59.999999Z",
        ] {
            let Ok(e) = check(with(ev(), "timestamp", json!(s))) else {
                continue; // refusing is fine too
            };
            let text = e.timestamp.to_rfc3339();
            let back = Timestamp::parse(&text).unwrap();
            assert_eq!(back.nanos, e.timestamp.nanos, "{s} -> {text}");
            assert_eq!(back.to_rfc3339(), text, "{s}");
        }
    }

    #[test]
    fn number_paths() {
        let p = |payload: &str| {
            let v: Value = serde_json::from_str(&format!(
                r#"{{"event_type":"a","actor":"u","tenant_id":"t","payload":{payload}}}"#
            ))
            .unwrap();
            paths(v)
        };
        assert_eq!(
            p(r#"{"a":{"b":[1,2,9007199254740992]}}"#),
            ["payload.a.b[2]"]
        );
        assert_eq!(
            p(r#"{"x":[[0,[-9007199254740992]]]}"#),
            ["payload.x[0][1][0]"]
        );
        assert_eq!(p(r#"{"f":1e300}"#), ["payload.f"]);
        assert_eq!(
            p(r#"{"a":9007199254740993,"b":{"c":18446744073709551615}}"#),
            ["payload.a", "payload.b.c"]
        );
        assert!(p(r#"{"a":9007199254740991,"b":-9007199254740991,"c":0.1,"d":-0.0}"#).is_empty());
    }

    #[test]
    fn depth_limit() {
        let nested = |n: usize| {
            let mut v = json!({});
            for _ in 1..n {
                v = json!({ "a": v });
            }
            with(ev(), "payload", v)
        };
        assert!(check(nested(MAX_PAYLOAD_DEPTH)).is_ok());
        let p = paths(nested(MAX_PAYLOAD_DEPTH + 1));
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0], format!("payload{}", ".a".repeat(MAX_PAYLOAD_DEPTH)));
        // Scalars at depth 33 do not nest further.
        let mut v = json!(1);
        for _ in 0..MAX_PAYLOAD_DEPTH {
            v = json!({ "a": v });
        }
        assert!(check(with(ev(), "payload", v)).is_ok());
    }

    #[test]
    fn catalogue_is_applied() {
        let e = json!({"event_type": "crawl.run", "actor": "svc:c", "tenant_id": "t",
            "payload": {"domain": "docs.example.com", "run_id": "r", "pages_crawled": 1,
                        "pages_failed": -1, "status": "done", "trigger": "manual"}});
        let mut p = paths(e);
        p.sort();
        assert_eq!(p, ["payload.pages_failed", "payload.status"]);
        let e = json!({"event_type": "killswitch.embed.disable", "actor": "admin:a",
            "tenant_id": "t_1", "payload": {"target": "x", "scope": "global", "reason": "r"}});
        assert_eq!(paths(e.clone()), ["tenant_id"]);
        assert!(check(with(e, "tenant_id", json!("_global"))).is_ok());
    }

    #[test]
    fn parse_event_and_batch() {
        let raws = split_body(
            br#"[{"event_type":"a","actor":"u","tenant_id":"t","payload":{}}, 5, {"x":1}]"#,
            BodyFormat::Json,
        )
        .unwrap();
        let issues = validate_batch(&raws, now()).unwrap_err();
        assert!(issues.iter().any(|i| i.index == 1 && i.path.is_empty()));
        assert!(issues.iter().any(|i| i.index == 2 && i.path == "x"));
        assert!(issues.iter().all(|i| i.index != 0));
        let ok = validate_batch(&raws[..1], now()).unwrap();
        assert_eq!(ok.len(), 1);
    }
}
