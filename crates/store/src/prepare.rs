//! Preparing an event for the log: salt, payload commitment and leaf hash.
//!
//! This is the CPU-heavy part of ingest that does not depend on the event's position in the log,
//! so request handlers do it in parallel before the single commit thread sequences the batch.

use trailkeep_core::leaf::{event_leaf_hash, LeafFields};
use trailkeep_core::{NewEvent, Timestamp};

/// A validated event with its salt and leaf hash, waiting for a `seq`.
#[derive(Debug, Clone)]
pub struct PreparedEvent {
    pub event: NewEvent,
    pub received_at: Timestamp,
    pub salt: [u8; 32],
    pub leaf_hash: [u8; 32],
}

impl PreparedEvent {
    /// Salts and hashes an event with a fresh random salt.
    pub fn new(event: NewEvent, received_at: Timestamp) -> Self {
        Self::with_salt(event, received_at, rand::random())
    }

    /// Salts and hashes an event with a given salt (tests, imports).
    pub fn with_salt(event: NewEvent, received_at: Timestamp, salt: [u8; 32]) -> Self {
        let id = event.event_id.hyphenated().to_string();
        let ts = event.timestamp.to_rfc3339();
        let leaf_hash = event_leaf_hash(
            &LeafFields {
                event_id: &id,
                event_type: &event.event_type,
                actor: &event.actor,
                tenant_id: &event.tenant_id,
                timestamp: &ts,
                source_ip: event.source_ip.as_deref(),
                impersonation_session: event.impersonation_session.as_deref(),
                approval_id: event.approval_id.as_deref(),
            },
            &salt,
            &event.payload,
        );
        PreparedEvent {
            event,
            received_at,
            salt,
            leaf_hash,
        }
    }
}
