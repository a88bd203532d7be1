//! Leaf data and leaf hashes (SPEC §7).
//!
//! The leaf data of an event is the RFC 8785 canonical JSON of its envelope fields with the payload
//! replaced by `payload_commitment` = hex SHA-256(salt ‖ canonical payload). All values are
//! strings, so canonical form is: keys in code-unit order, no whitespace, JSON.stringify string
//! escaping (which serde_json's compact writer produces). Absent optional fields are left out.
//! The leaf hash is the RFC 6962 leaf hash SHA-256(0x00 ‖ leaf data).

use sha2::{Digest, Sha256};

/// The envelope fields that make up a leaf, borrowed from an event.
pub struct LeafFields<'a> {
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub actor: &'a str,
    pub tenant_id: &'a str,
    pub timestamp: &'a str,
    pub source_ip: Option<&'a str>,
    pub impersonation_session: Option<&'a str>,
    pub approval_id: Option<&'a str>,
}

/// SHA-256(salt ‖ canonical payload).
pub fn payload_commitment(salt: &[u8; 32], canonical_payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update(canonical_payload);
    h.finalize().into()
}

/// The canonical JSON leaf data.
pub fn leaf_data(f: &LeafFields<'_>, commitment: &[u8; 32]) -> Vec<u8> {
    let commitment_hex = hex::encode(commitment);
    // Keys in RFC 8785 order (all ASCII, so byte order is code-unit order).
    let fields: [(&str, Option<&str>); 9] = [
        ("actor", Some(f.actor)),
        ("approval_id", f.approval_id),
        ("event_id", Some(f.event_id)),
        ("event_type", Some(f.event_type)),
        ("impersonation_session", f.impersonation_session),
        ("payload_commitment", Some(&commitment_hex)),
        ("source_ip", f.source_ip),
        ("tenant_id", Some(f.tenant_id)),
        ("timestamp", Some(f.timestamp)),
    ];
    let mut out = Vec::with_capacity(320);
    out.push(b'{');
    let mut first = true;
    for (k, v) in fields {
        let Some(v) = v else { continue };
        if !first {
            out.push(b',');
        }
        first = false;
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\":");
        write_json_string(&mut out, v);
    }
    out.push(b'}');
    out
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Leaf hash of an event given its fields, salt and canonical payload.
pub fn event_leaf_hash(f: &LeafFields<'_>, salt: &[u8; 32], canonical_payload: &[u8]) -> [u8; 32] {
    leaf_hash(&leaf_data(f, &payload_commitment(salt, canonical_payload)))
}

/// Writes a JSON string with RFC 8785 / JSON.stringify escaping.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(format!("\\u{:04x}", b).as_bytes());
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leaf_data_is_canonical_and_omits_absent_fields() {
        let f = LeafFields {
            event_id: "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f",
            event_type: "prompt.update",
            actor: "user:ana\"3\n",
            tenant_id: "t_0042",
            timestamp: "2026-11-23T10:15:00.123Z",
            source_ip: None,
            impersonation_session: Some("imp_1"),
            approval_id: None,
        };
        let data = leaf_data(&f, &[0xab; 32]);
        let text = String::from_utf8(data.clone()).unwrap();
        assert!(
            text.starts_with(r#"{"actor":"user:ana\"3\n","event_id":"#),
            "{text}"
        );
        assert!(!text.contains("source_ip") && !text.contains("approval_id"));
        // Same bytes as a general RFC 8785 canonicaliser produces.
        let v: serde_json::Value = serde_json::from_slice(&data).unwrap();
        assert_eq!(serde_json_canonicalizer::to_vec(&v).unwrap(), data);
    }

    #[test]
    fn escaping_matches_canonicalizer_for_control_characters() {
        let s: String = (0u8..0x80)
            .map(|b| b as char)
            .chain("é€😀\u{2028}".chars())
            .collect();
        let mut out = Vec::new();
        write_json_string(&mut out, &s);
        let canon = serde_json_canonicalizer::to_vec(&serde_json::Value::String(s)).unwrap();
        assert_eq!(out, canon);
    }
}
