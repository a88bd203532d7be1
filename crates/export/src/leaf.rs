//! Recomputing an event's leaf hash from the event as the API returns it (docs/verification.md).
//!
//! This is the verifier's side: `trailkeep verify` (directories, tlog-proofs, live servers) and
//! the bundle verifier parse events with it. It reads only the JSON text — never the server's
//! stored form — so that a verifier checks what was handed to it.
//!
//! The leaf data is built from the event's own fields — never from `leaf_hash`, which is only
//! what the event *claims*. The payload is re-canonicalised (RFC 8785, so a pretty-printed or
//! re-ordered copy still verifies) and committed to with the event's `payload_salt`; a purged
//! event (`"payload": null`) contributes its `payload_commitment` instead.

use serde::de::{Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use trailkeep_core::leaf::{leaf_data, leaf_hash, payload_commitment, LeafFields};
use trailkeep_tlog::hash::decode_hash;
use trailkeep_tlog::Hash;

/// One event as the API returns it, borrowing from the JSON text where it can. Fields the leaf
/// does not cover (`received_at`, …) are ignored; unknown fields are allowed so that a newer
/// server's additions do not break old verifiers.
#[derive(Deserialize, Debug)]
pub struct ApiEvent<'a> {
    #[serde(borrow)]
    pub event_id: Cow<'a, str>,
    #[serde(borrow)]
    pub event_type: Cow<'a, str>,
    #[serde(borrow)]
    pub actor: Cow<'a, str>,
    #[serde(borrow)]
    pub tenant_id: Cow<'a, str>,
    #[serde(borrow, default)]
    pub payload: Option<&'a RawValue>,
    #[serde(borrow)]
    pub timestamp: Cow<'a, str>,
    #[serde(borrow, default)]
    pub source_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub impersonation_session: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub approval_id: Option<Cow<'a, str>>,
    pub seq: u64,
    #[serde(borrow)]
    pub leaf_hash: Cow<'a, str>,
    #[serde(borrow, default)]
    pub payload_salt: Option<Cow<'a, str>>,
    #[serde(default)]
    pub purged: bool,
    #[serde(borrow, default)]
    pub payload_commitment: Option<Cow<'a, str>>,
}

/// Why an event's leaf could not be recomputed or does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeafProblem {
    /// The text is not an event as the API returns it.
    Malformed(String),
    /// The recomputed leaf differs from the event's `leaf_hash`.
    Mismatch { recomputed: Hash, claimed: Hash },
}

impl fmt::Display for LeafProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeafProblem::Malformed(why) => f.write_str(why),
            LeafProblem::Mismatch { .. } => {
                f.write_str("leaf hash mismatch (payload, salt or envelope altered)")
            }
        }
    }
}

/// Parses one event (a JSON object as the API returns it).
pub fn parse_event(text: &str) -> Result<ApiEvent<'_>, LeafProblem> {
    serde_json::from_str(text)
        .map_err(|e| LeafProblem::Malformed(format!("not an event as the API returns it ({e})")))
}

fn hex32(what: &str, s: &str) -> Result<[u8; 32], LeafProblem> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out)
        .map_err(|_| LeafProblem::Malformed(format!("{what} is not 64 hex digits")))?;
    Ok(out)
}

impl ApiEvent<'_> {
    /// The `leaf_hash` the event claims (standard base64 of 32 bytes).
    pub fn claimed_leaf(&self) -> Result<Hash, LeafProblem> {
        decode_hash(&self.leaf_hash).map_err(|e| LeafProblem::Malformed(format!("leaf_hash: {e}")))
    }

    /// The payload commitment: SHA-256(salt ‖ canonical payload), or the purged event's
    /// `payload_commitment`.
    pub fn commitment(&self) -> Result<[u8; 32], LeafProblem> {
        let Some(raw) = self.payload.filter(|r| r.get() != "null") else {
            let c = self.payload_commitment.as_deref().ok_or_else(|| {
                LeafProblem::Malformed(
                    "payload is null (purged) but payload_commitment is missing: the leaf \
                     cannot be recomputed"
                        .into(),
                )
            })?;
            return hex32("payload_commitment", c);
        };
        if self.purged {
            return Err(LeafProblem::Malformed(
                "the event says it is purged but carries a payload".into(),
            ));
        }
        let salt = self.payload_salt.as_deref().ok_or_else(|| {
            LeafProblem::Malformed(
                "payload_salt is missing: the payload commitment cannot be recomputed".into(),
            )
        })?;
        let salt = hex32("payload_salt", salt)?;
        let canonical = canonical_payload(raw.get())?;
        let c = payload_commitment(&salt, &canonical);
        if let Some(claimed) = self.payload_commitment.as_deref() {
            if hex32("payload_commitment", claimed)? != c {
                return Err(LeafProblem::Malformed(
                    "payload_commitment does not match the payload and salt".into(),
                ));
            }
        }
        Ok(c)
    }

    /// The leaf hash recomputed from the event's fields (docs/verification.md).
    pub fn recompute_leaf(&self) -> Result<Hash, LeafProblem> {
        let commitment = self.commitment()?;
        let fields = LeafFields {
            event_id: &self.event_id,
            event_type: &self.event_type,
            actor: &self.actor,
            tenant_id: &self.tenant_id,
            timestamp: &self.timestamp,
            source_ip: self.source_ip.as_deref(),
            impersonation_session: self.impersonation_session.as_deref(),
            approval_id: self.approval_id.as_deref(),
        };
        Ok(leaf_hash(&leaf_data(&fields, &commitment)))
    }

    /// Recomputes the leaf and checks it equals the event's `leaf_hash`; returns it.
    pub fn checked_leaf(&self) -> Result<Hash, LeafProblem> {
        let claimed = self.claimed_leaf()?;
        let recomputed = self.recompute_leaf()?;
        if recomputed != claimed {
            return Err(LeafProblem::Mismatch {
                recomputed,
                claimed,
            });
        }
        Ok(recomputed)
    }
}

/// RFC 8785 canonical form of a payload given as JSON text. A payload with a repeated key is
/// refused: parsers disagree on which value wins, so it could show one thing and prove another.
pub fn canonical_payload(raw: &str) -> Result<Vec<u8>, LeafProblem> {
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| LeafProblem::Malformed(format!("payload is not valid JSON ({e})")))?;
    if !value.is_object() {
        return Err(LeafProblem::Malformed(
            "payload is not a JSON object".into(),
        ));
    }
    let canonical = serde_json_canonicalizer::to_vec(&value)
        .map_err(|e| LeafProblem::Malformed(format!("payload cannot be canonicalised ({e})")))?;
    // The API returns canonical text; only text that differs can hide a duplicate key.
    if canonical != raw.as_bytes() {
        let mut de = serde_json::Deserializer::from_str(raw);
        NoDuplicateKeys::deserialize(&mut de)
            .map_err(|e| LeafProblem::Malformed(format!("payload: {e}")))?;
    }
    Ok(canonical)
}

/// Walks JSON and fails on an object with a repeated key.
struct NoDuplicateKeys;

impl<'de> Deserialize<'de> for NoDuplicateKeys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDupVisitor)
    }
}

struct NoDupVisitor;

impl<'de> Visitor<'de> for NoDupVisitor {
    type Value = NoDuplicateKeys;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(NoDuplicateKeys)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<NoDuplicateKeys>()?.is_some() {}
        Ok(NoDuplicateKeys)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if !seen.insert(key.to_string()) {
                return Err(serde::de::Error::custom(format!(
                    "the key {key:?} appears twice in one object"
                )));
            }
            map.next_value::<NoDuplicateKeys>()?;
        }
        Ok(NoDuplicateKeys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailkeep_core::leaf::stored_event_leaf_hash;
    use trailkeep_core::render::event_json;
    use trailkeep_core::validate::{parse_event as core_parse, RawEvent};
    use trailkeep_core::{StoredEvent, Timestamp};
    use trailkeep_tlog::hash::encode_hash;

    /// The event of docs/events.md, with a fixed salt.
    const SPEC_EVENT: &str = r#"{
        "event_id": "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f",
        "event_type": "prompt.update",
        "actor": "user:ana3@acme.example",
        "tenant_id": "t_0042",
        "payload": {"before": {"prompt_hash": "sha256:1111111111111111111111111111111111111111111111111111111111111111"},
                    "after": {"prompt_hash": "sha256:2222222222222222222222222222222222222222222222222222222222222222"},
                    "editor": "user:ana3@acme.example", "reason": "tone fix", "prompt_id": "pr_7"},
        "timestamp": "2026-11-23T10:15:00.123Z",
        "source_ip": "203.0.113.7",
        "impersonation_session": "imp_8812"
    }"#;

    /// The server's path: validate, hash the leaf from the stored fields (core's leaf module,
    /// as the store does before sequencing), render as the API does.
    fn server_side(json: &str, salt: [u8; 32]) -> (StoredEvent, String) {
        let now = Timestamp::parse("2026-11-23T10:16:00Z").unwrap();
        let e = core_parse(&RawEvent { index: 0, json }, now).expect("valid event");
        let mut stored = StoredEvent {
            tenant_id: e.tenant_id.to_string(),
            seq: 7,
            event_id: e.event_id,
            event_type: e.event_type.to_string(),
            actor: e.actor.to_string(),
            timestamp: e.timestamp,
            timestamp_assigned: e.timestamp_assigned,
            received_at: now,
            source_ip: e.source_ip.map(String::from),
            impersonation_session: e.impersonation_session.map(String::from),
            approval_id: e.approval_id.map(String::from),
            payload: Some(e.payload.to_vec()),
            payload_salt: Some(salt),
            payload_commitment: None,
            leaf_hash: [0; 32],
        };
        stored.leaf_hash = stored_event_leaf_hash(&stored).expect("salt and payload");
        let json = event_json(&stored);
        (stored, json)
    }

    #[test]
    fn recomputed_leaf_equals_the_servers_receipt() {
        let (stored, json) = server_side(SPEC_EVENT, [0x5a; 32]);
        let ev = parse_event(&json).unwrap();
        assert_eq!(ev.seq, 7);
        assert_eq!(ev.recompute_leaf().unwrap(), stored.leaf_hash);
        assert_eq!(ev.checked_leaf().unwrap(), stored.leaf_hash);
    }

    #[test]
    fn known_vector() {
        // Computed independently (Python: json.dumps(sort_keys=True, separators=(",", ":")),
        // hashlib.sha256) for the docs/events.md event with salt 0x5a × 32.
        let (_, json) = server_side(SPEC_EVENT, [0x5a; 32]);
        let ev = parse_event(&json).unwrap();
        assert_eq!(
            hex::encode(ev.commitment().unwrap()),
            "caa4081155354d38db2a03982fa53bf5c4bf8b52b724450981d6d4d204726648"
        );
        assert_eq!(
            encode_hash(&ev.recompute_leaf().unwrap()),
            "M3E8BQtVC3qoLSOLPab7qFleoeXUGS1GtR0EMGNnMSU="
        );
    }

    #[test]
    fn pretty_printed_and_reordered_payload_still_verifies() {
        let (stored, json) = server_side(SPEC_EVENT, [1; 32]);
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        // serde_json's map is ordered by key; pretty-printing adds whitespace.
        let pretty = serde_json::to_string_pretty(&v).unwrap();
        assert_eq!(
            parse_event(&pretty).unwrap().checked_leaf().unwrap(),
            stored.leaf_hash
        );
        v["payload"]["reason"] = "other".into();
        let altered = serde_json::to_string(&v).unwrap();
        assert!(matches!(
            parse_event(&altered).unwrap().checked_leaf(),
            Err(LeafProblem::Mismatch { .. })
        ));
    }

    #[test]
    fn every_leaf_field_is_covered() {
        let (stored, json) = server_side(SPEC_EVENT, [2; 32]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        for (field, new) in [
            ("event_id", "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e70"),
            ("event_type", "prompt.delete"),
            ("actor", "user:mallory@acme.example"),
            ("tenant_id", "t_0043"),
            ("timestamp", "2026-11-23T10:15:00.124Z"),
            ("source_ip", "203.0.113.8"),
            ("impersonation_session", "imp_8813"),
            ("approval_id", "ap_1"),
            ("payload_salt", &hex::encode([3u8; 32])),
        ] {
            let mut t = v.clone();
            t[field] = new.into();
            let text = serde_json::to_string(&t).unwrap();
            let got = parse_event(&text).unwrap().checked_leaf();
            assert!(
                matches!(got, Err(LeafProblem::Mismatch { claimed, .. }) if claimed == stored.leaf_hash),
                "{field}: {got:?}"
            );
        }
        // Removing an optional field changes the leaf too.
        let mut t = v.clone();
        t.as_object_mut().unwrap().remove("source_ip");
        let text = serde_json::to_string(&t).unwrap();
        assert!(matches!(
            parse_event(&text).unwrap().checked_leaf(),
            Err(LeafProblem::Mismatch { .. })
        ));
    }

    #[test]
    fn purged_event_verifies_from_its_commitment() {
        let (mut stored, json) = server_side(SPEC_EVENT, [4; 32]);
        let commitment = parse_event(&json).unwrap().commitment().unwrap();
        stored.payload = None;
        stored.payload_salt = None;
        stored.payload_commitment = Some(commitment);
        let purged = event_json(&stored);
        assert!(purged.contains("\"payload\":null") && purged.contains("\"purged\":true"));
        assert_eq!(
            parse_event(&purged).unwrap().checked_leaf().unwrap(),
            stored.leaf_hash
        );
        // Without its commitment it cannot be recomputed.
        stored.payload_commitment = None;
        let bare = event_json(&stored);
        assert!(matches!(
            parse_event(&bare).unwrap().checked_leaf(),
            Err(LeafProblem::Malformed(_))
        ));
    }

    #[test]
    fn duplicate_payload_keys_are_refused() {
        let (_, json) = server_side(SPEC_EVENT, [5; 32]);
        let text = json.replacen(
            "\"reason\":\"tone fix\"",
            "\"reason\":\"evil\",\"reason\":\"tone fix\"",
            1,
        );
        assert_ne!(text, json);
        let got = parse_event(&text).unwrap().checked_leaf();
        assert!(
            matches!(&got, Err(LeafProblem::Malformed(m)) if m.contains("twice")),
            "{got:?}"
        );
    }

    #[test]
    fn malformed_events_are_reported() {
        for bad in [
            "",
            "[]",
            "{}",
            r#"{"event_id":"x","event_type":"a","actor":"b","tenant_id":"t","payload":{},"timestamp":"t","seq":-1,"leaf_hash":"x"}"#,
        ] {
            assert!(parse_event(bad).is_err(), "{bad:?}");
        }
        let (_, json) = server_side(SPEC_EVENT, [6; 32]);
        let short_salt = json.replace(&hex::encode([6u8; 32]), "abcd");
        assert!(matches!(
            parse_event(&short_salt).unwrap().checked_leaf(),
            Err(LeafProblem::Malformed(_))
        ));
    }
}
