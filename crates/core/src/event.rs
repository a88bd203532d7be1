//! The two shapes of an event: as accepted ([`NewEvent`]) and as stored ([`StoredEvent`]).

use crate::Timestamp;
pub use bytes::Bytes;
pub use compact_str::CompactString;
use uuid::Uuid;

/// A validated, normalised event, ready to be sequenced.
///
/// Built only by [`crate::validate::parse_event`], so every field already satisfies docs/events.md.
/// `payload` holds the RFC 8785 canonical JSON of the payload object: the API returns payloads
/// in that form, and the leaf commits to exactly those bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// True when the client sent no `event_id` and the server assigned a UUIDv7.
    pub event_id_assigned: bool,
    pub event_type: CompactString,
    pub actor: CompactString,
    pub tenant_id: CompactString,
    /// A slice of one buffer that holds the payloads of the whole request (one allocation per
    /// request, freed with its last event, instead of one per event).
    pub payload: Bytes,
    pub timestamp: Timestamp,
    /// True when the client sent no `timestamp` and the time of receipt was used.
    pub timestamp_assigned: bool,
    pub source_ip: Option<CompactString>,
    pub impersonation_session: Option<CompactString>,
    pub approval_id: Option<CompactString>,
}

impl NewEvent {
    /// Whether `other` (a re-send of the same `event_id`) carries the same content.
    ///
    /// A re-send without a `timestamp` matches an original whose timestamp was also assigned by
    /// the server (the client did not choose one either time).
    pub fn same_content_as(&self, stored: &StoredEvent) -> bool {
        let ts_same = if self.timestamp_assigned {
            stored.timestamp_assigned
        } else {
            !stored.timestamp_assigned && self.timestamp.nanos == stored.timestamp.nanos
        };
        ts_same
            && self.event_type == stored.event_type
            && self.actor == stored.actor
            && self.tenant_id == stored.tenant_id
            && stored.payload.as_deref() == Some(&self.payload[..])
            && self.source_ip.as_deref() == stored.source_ip.as_deref()
            && self.impersonation_session.as_deref() == stored.impersonation_session.as_deref()
            && self.approval_id.as_deref() == stored.approval_id.as_deref()
    }

    /// Whether two events of one request with the same `event_id` carry the same content.
    pub fn same_content_as_new(&self, other: &NewEvent) -> bool {
        self.event_type == other.event_type
            && self.actor == other.actor
            && self.tenant_id == other.tenant_id
            && self.payload == other.payload
            && self.timestamp_assigned == other.timestamp_assigned
            && (self.timestamp_assigned || self.timestamp.nanos == other.timestamp.nanos)
            && self.source_ip == other.source_ip
            && self.impersonation_session == other.impersonation_session
            && self.approval_id == other.approval_id
    }
}

/// An event as the log holds it: the accepted event plus what the server added.
///
/// `payload` and `payload_salt` are `None` once retention or erasure removed them; the leaf hash
/// (and with it every proof) stays, and `payload_commitment` keeps the leaf recomputable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub tenant_id: String,
    pub seq: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub actor: String,
    pub timestamp: Timestamp,
    pub timestamp_assigned: bool,
    pub received_at: Timestamp,
    pub source_ip: Option<String>,
    pub impersonation_session: Option<String>,
    pub approval_id: Option<String>,
    /// Canonical JSON of the payload; `None` once purged.
    pub payload: Option<Vec<u8>>,
    pub payload_salt: Option<[u8; 32]>,
    /// Hex SHA-256 commitment, kept for purged events (derivable otherwise).
    pub payload_commitment: Option<[u8; 32]>,
    pub leaf_hash: [u8; 32],
}
