//! The ingest fast path behind [`crate::validate::parse_body`]: a whole body of valid events in
//! one pass per event.
//!
//! Each event is read once by [`crate::json`] (envelope strings borrowed from the body, the
//! payload into a reusable arena), checked with the same predicates as
//! [`crate::validate::validate_object`] and the same catalogue code, and its payload is written
//! canonically straight from the arena: no `serde_json::Value`, no per-key `String`, no second
//! framing pass.
//!
//! It answers `Some(events)` only when the body is well framed, within every limit and every
//! event is valid, and then the events are exactly those the reference path (`split_body` +
//! `validate_batch`) returns (up to the server-assigned UUIDv7s, which are random). Anything
//! else is `None`, and the caller runs the reference path, which decides the refusal.

use crate::catalogue::{check_payload_in, is_reserved};
use crate::json::{Cursor, Doc, Node, NodeRef};
use crate::validate::{
    assigned_timestamp, client_timestamp, is_event_type, is_identifier, is_tenant_id, normalise_ip,
    parse_uuid, BodyFormat,
};
use crate::{NewEvent, Timestamp, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_PAYLOAD_DEPTH};
use bytes::Bytes;
use compact_str::CompactString;
use std::borrow::Cow;
use uuid::Uuid;

/// Every event of a body, if all are plainly valid (see the module doc).
pub(crate) fn parse_body(body: &[u8], format: BodyFormat, now: Timestamp) -> Option<Vec<NewEvent>> {
    let text = std::str::from_utf8(body).ok()?;
    let mut doc = Doc::default();
    // A guess (events of ~300 bytes) to spare most regrowth.
    let mut events = Vec::with_capacity((text.len() / 256).clamp(1, MAX_BATCH_EVENTS));
    // Every payload's canonical JSON, back to back; `ends[i]` is where event i's ends.
    let mut payloads = Vec::with_capacity(text.len() / 2);
    let mut ends = Vec::with_capacity(events.capacity());
    match format {
        BodyFormat::Ndjson => {
            // The same lines as `split_body`: split on LF, one trailing CR dropped, lines of
            // (Unicode) whitespace skipped; each line one JSON value.
            for line in text.split('\n') {
                let line = line.trim_end_matches('\r');
                if line.trim().is_empty() {
                    continue;
                }
                if events.len() == MAX_BATCH_EVENTS {
                    return None;
                }
                let mut c = Cursor::new(line);
                let e = event(&mut doc, &mut c, events.len(), now, &mut payloads)?;
                ends.push(payloads.len());
                if !c.at_end() {
                    return None;
                }
                events.push(e);
            }
        }
        BodyFormat::Json => {
            let mut c = Cursor::new(text);
            c.skip_ws();
            match c.peek()? {
                b'[' => {
                    c.pos += 1;
                    loop {
                        if events.len() == MAX_BATCH_EVENTS {
                            return None;
                        }
                        let e = event(&mut doc, &mut c, events.len(), now, &mut payloads)?;
                        ends.push(payloads.len());
                        events.push(e);
                        if c.next_or_close(b']')? {
                            break;
                        }
                    }
                }
                b'{' => {
                    events.push(event(&mut doc, &mut c, 0, now, &mut payloads)?);
                    ends.push(payloads.len());
                }
                _ => return None,
            }
            if !c.at_end() {
                return None;
            }
        }
    }
    if events.is_empty() {
        return None;
    }
    let payloads = Bytes::from(payloads);
    let mut start = 0;
    for (e, &end) in events.iter_mut().zip(&ends) {
        e.payload = payloads.slice(start..end);
        start = end;
    }
    Some(events)
}

/// Where each envelope string field goes while the object is read.
const EVENT_ID: usize = 0;
const EVENT_TYPE: usize = 1;
const ACTOR: usize = 2;
const TENANT_ID: usize = 3;
const TIMESTAMP: usize = 4;
const SOURCE_IP: usize = 5;
const SESSION: usize = 6;
const APPROVAL_ID: usize = 7;
const PAYLOAD: usize = 8;

/// Reads and validates one event object at the cursor.
fn event<'a>(
    doc: &mut Doc<'a>,
    c: &mut Cursor<'a>,
    index: usize,
    now: Timestamp,
    payloads: &mut Vec<u8>,
) -> Option<NewEvent> {
    doc.clear();
    c.skip_ws();
    let start = c.pos;
    c.eat(b'{')?;
    let mut fields: [Option<Cow<'a, str>>; 8] = Default::default();
    let mut payload = None;
    let mut seen = 0u16;
    loop {
        c.skip_ws();
        let key = c.string()?;
        c.eat(b':')?;
        c.skip_ws();
        let slot = match &*key {
            "event_id" => EVENT_ID,
            "event_type" => EVENT_TYPE,
            "actor" => ACTOR,
            "tenant_id" => TENANT_ID,
            "timestamp" => TIMESTAMP,
            "source_ip" => SOURCE_IP,
            "impersonation_session" => SESSION,
            "approval_id" => APPROVAL_ID,
            "payload" => PAYLOAD,
            _ => return None,
        };
        if seen & (1 << slot) != 0 {
            return None;
        }
        seen |= 1 << slot;
        if slot == PAYLOAD {
            let id = doc.value(c, 1, MAX_PAYLOAD_DEPTH)?;
            if !matches!(doc.node(id), Node::Obj(..)) {
                return None;
            }
            payload = Some(id);
        } else {
            match c.peek()? {
                b'"' => fields[slot] = Some(c.string()?),
                // Optional fields given as null count as absent; a required one is then missing.
                b'n' => c.null()?,
                _ => return None,
            }
        }
        if c.next_or_close(b'}')? {
            break;
        }
    }
    if c.pos - start > MAX_EVENT_BYTES {
        return None;
    }
    let [event_id, event_type, actor, tenant_id, timestamp, source_ip, session, approval_id] =
        fields;
    let (event_type, actor, tenant_id, payload) = (event_type?, actor?, tenant_id?, payload?);

    let event_id = match event_id {
        None => None,
        Some(s) => Some(parse_uuid(&s)?),
    };
    if !is_event_type(&event_type) || is_reserved(&event_type) {
        return None;
    }
    if !is_identifier(&actor) || !is_tenant_id(&tenant_id) {
        return None;
    }
    let timestamp = match timestamp {
        None => None,
        Some(s) => Some(client_timestamp(&s, now).ok()?),
    };
    let source_ip = match source_ip {
        None => None,
        Some(s) => Some(normalise_ip(&s)?),
    };
    for s in [&session, &approval_id].into_iter().flatten() {
        if !is_identifier(s) {
            return None;
        }
    }
    let mut issues = Vec::new();
    check_payload_in(
        index,
        &event_type,
        &tenant_id,
        NodeRef { doc, id: payload },
        &mut issues,
    );
    if !issues.is_empty() {
        return None;
    }
    // Into the request's payload buffer; the caller slices it out once the body is read.
    doc.write_canonical(payload, payloads);
    Some(NewEvent {
        event_id_assigned: event_id.is_none(),
        event_id: event_id.unwrap_or_else(Uuid::now_v7),
        event_type: CompactString::from(&*event_type),
        actor: CompactString::from(&*actor),
        tenant_id: CompactString::from(&*tenant_id),
        payload: Bytes::new(),
        timestamp_assigned: timestamp.is_none(),
        timestamp: timestamp.unwrap_or_else(|| assigned_timestamp(now)),
        source_ip,
        impersonation_session: session.map(|s| CompactString::from(&*s)),
        approval_id: approval_id.map(|s| CompactString::from(&*s)),
    })
}
