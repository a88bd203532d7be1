//! Helpers for the conformance suite: building prepared events, unique names, cursor walks.
//!
//! Everything here goes through the `Store` trait only, and every test names its own tenants
//! (random suffix) so the suite also works against a database shared by concurrent tests.

#![allow(dead_code)]

use serde_json::{json, Map, Value};
use std::sync::Arc;
use trailkeep_core::validate::validate_object;
use trailkeep_core::{NewEvent, StoredEvent, Timestamp};
use trailkeep_store::{EventQuery, PreparedEvent, Store};

pub type Guard = Box<dyn std::any::Any + Send>;

/// A unique tenant id for one test.
pub fn tenant(prefix: &str) -> String {
    let r: u64 = rand::random();
    format!("{prefix}-{r:016x}")
}

pub fn uuid() -> String {
    trailkeep_core::Uuid::new_v4().to_string()
}

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).unwrap()
}

/// Validates an event object as the API would (index 0, now = the current time).
pub fn new_event(v: Value) -> NewEvent {
    let Value::Object(m) = v else {
        panic!("not an object")
    };
    validate_object(0, m, Timestamp::now_micros())
        .unwrap_or_else(|issues| panic!("test event is invalid: {issues:?}"))
}

/// A prepared event from a JSON object (fresh salt, received now).
pub fn prep(v: Value) -> PreparedEvent {
    PreparedEvent::new(new_event(v), Timestamp::now_micros())
}

/// A minimal free-form event; `f` may add or change fields.
pub fn ev(tenant: &str, event_type: &str, f: impl FnOnce(&mut Map<String, Value>)) -> Value {
    let mut m = Map::new();
    m.insert("event_type".into(), json!(event_type));
    m.insert("actor".into(), json!("user:alice@example.com"));
    m.insert("tenant_id".into(), json!(tenant));
    m.insert("payload".into(), json!({}));
    f(&mut m);
    Value::Object(m)
}

/// An event with explicit id and timestamp.
pub fn ev_at(tenant: &str, event_type: &str, id: &str, at: &str) -> Value {
    ev(tenant, event_type, |m| {
        m.insert("event_id".into(), json!(id));
        m.insert("timestamp".into(), json!(at));
    })
}

/// Every event of a listing, following cursors, checking page-size invariants.
pub async fn walk(store: &Arc<dyn Store>, mut q: EventQuery) -> Vec<StoredEvent> {
    let mut out = Vec::new();
    q.cursor = None;
    for _ in 0..100_000 {
        let page = store.query(q.clone()).await.unwrap();
        assert!(
            page.events.len() <= q.limit,
            "page of {} events for limit {}",
            page.events.len(),
            q.limit
        );
        if page.events.len() < q.limit {
            assert!(
                page.next_cursor.is_none(),
                "a page that is not full must be the last one"
            );
        }
        out.extend(page.events);
        match page.next_cursor {
            Some(c) => {
                assert_eq!(c.order, q.order);
                q.cursor = Some(c);
            }
            None => return out,
        }
    }
    panic!("listing never ended");
}

pub fn ids(events: &[StoredEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_id.to_string()).collect()
}
