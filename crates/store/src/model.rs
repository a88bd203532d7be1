//! Query, cursor and result types shared by every backend and the API.

use base64::Engine as _;
use serde::Serialize;
use std::collections::BTreeMap;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

/// Proof of acceptance for one event (docs/api.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Receipt {
    pub event_id: Uuid,
    /// Inline for names up to 24 bytes: a receipt per event costs no allocation.
    pub tenant_id: trailkeep_core::CompactString,
    pub seq: u64,
    #[serde(serialize_with = "ser_b64")]
    pub leaf_hash: [u8; 32],
}

fn ser_b64<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(h))
}

/// What an append did: a receipt per event in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppendOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    pub receipts: Vec<Receipt>,
}

/// List order by `(timestamp, event_id)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Desc,
    Asc,
}

/// `event_type` filter: an exact type or a prefix wildcard (`billing.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeFilter {
    Exact(String),
    /// The prefix including its trailing dot (`billing.`).
    Prefix(String),
}

impl TypeFilter {
    pub fn matches(&self, t: &str) -> bool {
        match self {
            TypeFilter::Exact(e) => e == t,
            TypeFilter::Prefix(p) => t.starts_with(p.as_str()),
        }
    }
}

/// A position in a `(timestamp, event_id)` ordered listing; the page after it starts strictly
/// after (or before, descending) this key. Keys are unique and never change, so a walk with
/// cursors never repeats an event and never skips one that was stored before the walk reached
/// its position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub order: Order,
    pub ts_nanos: i64,
    pub event_id: Uuid,
}

impl Cursor {
    /// Opaque text form: base64url of a version byte, the order, the timestamp and the id.
    pub fn encode(&self) -> String {
        let mut b = Vec::with_capacity(26);
        b.push(1u8);
        b.push(matches!(self.order, Order::Asc) as u8);
        b.extend_from_slice(&self.ts_nanos.to_be_bytes());
        b.extend_from_slice(self.event_id.as_bytes());
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    }

    pub fn decode(s: &str) -> Result<Cursor, String> {
        let bad = || "invalid cursor: pass next_cursor from a previous page unchanged".to_string();
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| bad())?;
        if b.len() != 26 || b[0] != 1 || b[1] > 1 {
            return Err(bad());
        }
        let ts = i64::from_be_bytes(b[2..10].try_into().map_err(|_| bad())?);
        let id = Uuid::from_slice(&b[10..26]).map_err(|_| bad())?;
        Ok(Cursor {
            order: if b[1] == 1 { Order::Asc } else { Order::Desc },
            ts_nanos: ts,
            event_id: id,
        })
    }
}

/// A filtered listing request (docs/api.md). `tenant_id: None` means every tenant.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub tenant_id: Option<String>,
    pub event_type: Option<TypeFilter>,
    pub actor: Option<String>,
    pub session: Option<String>,
    /// Inclusive lower bound.
    pub since: Option<Timestamp>,
    /// Exclusive upper bound.
    pub until: Option<Timestamp>,
    /// Case-insensitive substring over payload and actor.
    pub q: Option<String>,
    pub limit: usize,
    pub order: Order,
    pub cursor: Option<Cursor>,
}

impl EventQuery {
    /// Whether an event passes every filter (used by backends after an index narrowed the scan).
    pub fn matches(&self, e: &StoredEvent) -> bool {
        if let Some(t) = &self.tenant_id {
            if &e.tenant_id != t {
                return false;
            }
        }
        if let Some(f) = &self.event_type {
            if !f.matches(&e.event_type) {
                return false;
            }
        }
        if let Some(a) = &self.actor {
            if &e.actor != a {
                return false;
            }
        }
        if let Some(s) = &self.session {
            if e.impersonation_session.as_deref() != Some(s.as_str()) {
                return false;
            }
        }
        if let Some(s) = self.since {
            if e.timestamp.nanos < s.nanos {
                return false;
            }
        }
        if let Some(u) = self.until {
            if e.timestamp.nanos >= u.nanos {
                return false;
            }
        }
        if let Some(q) = &self.q {
            let hit = e.actor.to_lowercase().contains(q.as_str())
                || e.payload.as_deref().is_some_and(|p| payload_contains(p, q));
            if !hit {
                return false;
            }
        }
        true
    }
}

/// Whether any key or value of a payload (strings, numbers as written) contains `needle`, which
/// must already be lower-case. Matching is on the decoded text (so `"` and `\` match as
/// themselves), JSON punctuation never matches, and case folding is Unicode.
pub fn payload_contains(payload: &[u8], needle: &str) -> bool {
    fn walk(v: &serde_json::Value, needle: &str) -> bool {
        match v {
            serde_json::Value::String(s) => s.to_lowercase().contains(needle),
            serde_json::Value::Number(n) => n.to_string().contains(needle),
            serde_json::Value::Bool(b) => b.to_string() == needle,
            serde_json::Value::Array(a) => a.iter().any(|x| walk(x, needle)),
            serde_json::Value::Object(m) => m
                .iter()
                .any(|(k, x)| k.to_lowercase().contains(needle) || walk(x, needle)),
            serde_json::Value::Null => false,
        }
    }
    match serde_json::from_slice::<serde_json::Value>(payload) {
        Ok(v) => walk(&v, needle),
        Err(_) => false,
    }
}

/// A signed checkpoint as stored: its size and root, and the signed note text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, Serialize)]
pub struct SignedCheckpoint {
    pub size: u64,
    #[serde(with = "b64_hash")]
    pub root: [u8; 32],
    pub note: String,
}

mod b64_hash {
    use base64::Engine as _;
    pub fn serialize<S: serde::Serializer>(h: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(h))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s: String = serde::Deserialize::deserialize(d)?;
        let v = base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("expected 32 bytes"))
    }
}

/// One page of events.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<StoredEvent>,
    pub next_cursor: Option<Cursor>,
}

impl EventPage {
    /// A page; when `more` events follow, the cursor points after the page's last event.
    pub fn new(events: Vec<StoredEvent>, more: bool, order: Order) -> EventPage {
        let next_cursor = if more {
            events.last().map(|e| Cursor {
                order,
                ts_nanos: e.timestamp.nanos,
                event_id: e.event_id,
            })
        } else {
            None
        };
        EventPage {
            events,
            next_cursor,
        }
    }
}

/// A tenant's log at a glance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSummary {
    pub tenant_id: String,
    pub event_count: u64,
    pub first_timestamp: Option<Timestamp>,
    pub last_timestamp: Option<Timestamp>,
}

/// Counts request: `tenant_id: None` means every tenant.
#[derive(Debug, Clone, Default)]
pub struct StatsQuery {
    pub tenant_id: Option<String>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
}

/// Event counts by type and by UTC day (`YYYY-MM-DD`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub total: u64,
    pub counts_by_type: BTreeMap<String, u64>,
    pub counts_by_day: BTreeMap<String, u64>,
}
