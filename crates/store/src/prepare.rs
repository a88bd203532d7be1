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

    /// Salts and hashes a request's events: their salts come from one draw of the thread's
    /// CSPRNG (one call for the whole request instead of one per event).
    pub fn new_all(events: Vec<NewEvent>, received_at: Timestamp) -> Vec<Self> {
        use rand::RngCore as _;
        let mut salts = vec![[0u8; 32]; events.len()];
        rand::rng().fill_bytes(salts.as_flattened_mut());
        events
            .into_iter()
            .zip(salts)
            .map(|(e, salt)| Self::with_salt(e, received_at, salt))
            .collect()
    }

    /// Salts and hashes an event with a given salt (tests, imports).
    ///
    /// The id and timestamp texts are written into stack buffers and the leaf data is streamed
    /// into the hash: nothing is allocated per event.
    pub fn with_salt(event: NewEvent, received_at: Timestamp, salt: [u8; 32]) -> Self {
        let mut id_buf = trailkeep_core::Uuid::encode_buffer();
        let id = event.event_id.hyphenated().encode_lower(&mut id_buf);
        let (ts_buf, ts_len) = event.timestamp.rfc3339_bytes();
        // `rfc3339_bytes` writes ASCII only.
        let ts = std::str::from_utf8(&ts_buf[..ts_len]).unwrap_or_default();
        let leaf_hash = event_leaf_hash(
            &LeafFields {
                event_id: id,
                event_type: &event.event_type,
                actor: &event.actor,
                tenant_id: &event.tenant_id,
                timestamp: ts,
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

#[cfg(test)]
mod tests {
    use super::*;
    use trailkeep_core::leaf::{leaf_data, leaf_hash, payload_commitment};
    use trailkeep_core::Uuid;

    /// The leaf hash computed the plain way: texts allocated, leaf data collected, then hashed.
    fn plain_leaf_hash(e: &NewEvent, salt: &[u8; 32]) -> [u8; 32] {
        let id = e.event_id.hyphenated().to_string();
        let ts = e.timestamp.to_rfc3339();
        let f = LeafFields {
            event_id: &id,
            event_type: &e.event_type,
            actor: &e.actor,
            tenant_id: &e.tenant_id,
            timestamp: &ts,
            source_ip: e.source_ip.as_deref(),
            impersonation_session: e.impersonation_session.as_deref(),
            approval_id: e.approval_id.as_deref(),
        };
        leaf_hash(&leaf_data(&f, &payload_commitment(salt, &e.payload)))
    }

    #[test]
    fn salts_of_a_request_are_fresh_and_distinct() {
        let e = |i: u128| NewEvent {
            event_id: Uuid::from_u128(i),
            event_id_assigned: false,
            event_type: "auth.login".into(),
            actor: "user:a".into(),
            tenant_id: "t_1".into(),
            payload: trailkeep_core::Bytes::from_static(b"{}"),
            timestamp: Timestamp::from_nanos(0, 3),
            timestamp_assigned: false,
            source_ip: None,
            impersonation_session: None,
            approval_id: None,
        };
        let now = Timestamp::now_micros();
        let all = PreparedEvent::new_all((0..100).map(e).collect(), now);
        assert_eq!(all.len(), 100);
        let salts: std::collections::HashSet<[u8; 32]> = all.iter().map(|p| p.salt).collect();
        assert_eq!(salts.len(), 100, "every event gets its own salt");
        assert!(!salts.contains(&[0u8; 32]));
        for (i, p) in all.iter().enumerate() {
            assert_eq!(p.event.event_id, Uuid::from_u128(i as u128), "order kept");
            assert_eq!(p.leaf_hash, plain_leaf_hash(&p.event, &p.salt));
            assert_eq!(p.received_at, now);
        }
    }

    #[test]
    fn leaf_hash_is_the_hash_of_the_leaf_data() {
        let long = format!("user:{}\"\\\u{1}é😀", "a".repeat(600));
        for (i, actor) in ["user:a", "admin:\"q\"\n", long.as_str()]
            .into_iter()
            .enumerate()
        {
            for digits in [3, 6, 9] {
                let e = NewEvent {
                    event_id: Uuid::from_u128(0x0192f0c4_7d1e_7a53_8f0e_3c1d2b4a5e6f + i as u128),
                    event_id_assigned: false,
                    event_type: "prompt.update".into(),
                    actor: actor.into(),
                    tenant_id: "t_0042".into(),
                    payload: trailkeep_core::Bytes::from_static(br#"{"a":"\u0000","b":[1,2.5]}"#),
                    timestamp: Timestamp::from_nanos(1_795_432_500_123_456_789, digits),
                    timestamp_assigned: false,
                    source_ip: (i != 1).then(|| "2001:db8::1".into()),
                    impersonation_session: (i != 0).then(|| "imp_\t1".into()),
                    approval_id: (i == 2).then(|| "apr_1".into()),
                };
                let salt = [i as u8 + digits; 32];
                let p = PreparedEvent::with_salt(e.clone(), Timestamp::now_micros(), salt);
                assert_eq!(p.leaf_hash, plain_leaf_hash(&e, &salt), "{i} {digits}");
            }
        }
    }
}
