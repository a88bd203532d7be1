//! Building stored events as a store would, so the folds are tested on what they will read.

use trailkeep_control::approvals::NewStep;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

pub fn ts(s: &str) -> Timestamp {
    Timestamp::parse(s).expect("test timestamp")
}

/// `t` plus `secs` seconds.
pub fn plus(t: Timestamp, secs: i64) -> Timestamp {
    Timestamp::from_nanos(t.nanos + secs * 1_000_000_000, t.digits)
}

pub fn canonical(v: &serde_json::Value) -> Vec<u8> {
    serde_json_canonicalizer::to_vec(v).expect("canonical")
}

/// A stored event with the given fields; the hashes are not those of a real log (the folds
/// never read them).
pub fn event(
    tenant: &str,
    seq: u64,
    event_type: &str,
    actor: &str,
    payload: Option<Vec<u8>>,
    at: Timestamp,
) -> StoredEvent {
    StoredEvent {
        tenant_id: tenant.to_string(),
        seq,
        event_id: Uuid::from_u128(u128::from(seq) + 1),
        event_type: event_type.to_string(),
        actor: actor.to_string(),
        timestamp: at,
        timestamp_assigned: false,
        received_at: at,
        source_ip: None,
        impersonation_session: None,
        approval_id: None,
        payload,
        payload_salt: Some([0; 32]),
        payload_commitment: None,
        leaf_hash: [0; 32],
    }
}

/// The event a store writes for an approval step.
pub fn step_event(step: &NewStep, seq: u64) -> StoredEvent {
    let mut e = event(
        &step.tenant_id,
        seq,
        step.event_type,
        &step.actor,
        Some(step.payload.clone()),
        step.at,
    );
    e.approval_id = Some(step.approval_id.clone());
    e
}
