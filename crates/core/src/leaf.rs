//! Leaf data and leaf hashes (docs/verification.md).
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
    let mut out = Vec::with_capacity(320);
    write_leaf_data(&mut out, f, commitment);
    out
}

/// Writes the leaf data to `out` (see [`leaf_data`]).
///
/// Each field goes out as two pieces, the literal `{"key":"` (or `","key":"`) and the escaped
/// value, then `"}` closes the object: few, larger writes into the sink.
fn write_leaf_data<S: Sink>(out: &mut S, f: &LeafFields<'_>, commitment: &[u8; 32]) {
    let commitment_hex = hex32(commitment);
    // Every byte of `hex32` is an ASCII hex digit.
    let commitment_hex = std::str::from_utf8(&commitment_hex).unwrap_or_default();
    // Keys in RFC 8785 order (all ASCII, so byte order is code-unit order); each with the
    // opening of its string value, as the first member and as a later one.
    let fields: [(&[u8], Option<&str>); 9] = [
        (b",\"actor\":\"", Some(f.actor)),
        (b",\"approval_id\":\"", f.approval_id),
        (b",\"event_id\":\"", Some(f.event_id)),
        (b",\"event_type\":\"", Some(f.event_type)),
        (b",\"impersonation_session\":\"", f.impersonation_session),
        (b",\"payload_commitment\":\"", Some(commitment_hex)),
        (b",\"source_ip\":\"", f.source_ip),
        (b",\"tenant_id\":\"", Some(f.tenant_id)),
        (b",\"timestamp\":\"", Some(f.timestamp)),
    ];
    let mut first = true;
    for (key, v) in fields {
        let Some(v) = v else { continue };
        if first {
            out.put(b"{");
            out.put(&key[1..]);
            first = false;
        } else {
            out.put(b"\"");
            out.put(key);
        }
        write_escaped_body(out, v);
    }
    out.put(if first { b"{}" } else { b"\"}" });
}

/// RFC 6962 leaf hash: SHA-256(0x00 ‖ data).
pub fn leaf_hash(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// Leaf hash of an event given its fields, salt and canonical payload.
///
/// The same as `leaf_hash(&leaf_data(f, &payload_commitment(salt, canonical_payload)))`, with
/// the leaf data streamed into the hash instead of collected first.
pub fn event_leaf_hash(f: &LeafFields<'_>, salt: &[u8; 32], canonical_payload: &[u8]) -> [u8; 32] {
    let commitment = payload_commitment(salt, canonical_payload);
    let mut sink = HashSink::new();
    sink.put(&[0u8]);
    write_leaf_data(&mut sink, f, &commitment);
    sink.finish()
}

/// The leaf hash of a stored event, recomputed from its fields: from its salt and payload, or
/// from its payload commitment once those were purged. `None` when it has neither (no leaf
/// can be recomputed).
pub fn stored_event_leaf_hash(e: &crate::StoredEvent) -> Option<[u8; 32]> {
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
    match (&e.payload, &e.payload_salt, &e.payload_commitment) {
        (Some(p), Some(salt), _) => Some(event_leaf_hash(&f, salt, p)),
        (_, _, Some(c)) => Some(leaf_hash(&leaf_data(&f, c))),
        _ => None,
    }
}

/// Lower-case hex of 32 bytes.
pub fn hex32(bytes: &[u8; 32]) -> [u8; 64] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 64];
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
    out
}

/// Where escaped JSON goes: a buffer, or a hash.
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// SHA-256 fed through a small buffer, so that the many short pieces of leaf data reach the
/// hash in a few large updates.
struct HashSink {
    h: Sha256,
    buf: [u8; 512],
    len: usize,
}

impl HashSink {
    fn new() -> Self {
        HashSink {
            h: Sha256::new(),
            buf: [0; 512],
            len: 0,
        }
    }

    fn finish(mut self) -> [u8; 32] {
        self.h.update(&self.buf[..self.len]);
        self.h.finalize().into()
    }
}

impl Sink for HashSink {
    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
            return;
        }
        self.h.update(&self.buf[..self.len]);
        self.len = 0;
        if bytes.len() >= self.buf.len() {
            self.h.update(bytes);
        } else {
            self.buf[..bytes.len()].copy_from_slice(bytes);
            self.len = bytes.len();
        }
    }
}

/// Writes a JSON string with RFC 8785 / JSON.stringify escaping.
pub fn write_json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    write_escaped_body(out, s);
    out.push(b'"');
}

/// Whether a byte must be escaped in a JSON string (and may not appear raw in one).
#[inline]
pub(crate) fn needs_escape(b: u8) -> bool {
    b < 0x20 || b == b'"' || b == b'\\'
}

/// Index of the first byte of `bytes` that [`needs_escape`], or `bytes.len()`. Scans eight bytes
/// at a time, and takes the position within the word from the lowest flag: each test's flags
/// can be wrong only above a byte it rightly flags (a borrow runs upwards), never below it.
#[inline]
pub(crate) fn escape_free_prefix(bytes: &[u8]) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let mut w = [0u8; 8];
        w.copy_from_slice(chunk);
        let v = u64::from_le_bytes(w);
        // Exact per-word tests: some byte < 0x20, some byte == '"', some byte == '\\'.
        let lt = v.wrapping_sub(LO * 0x20) & !v;
        let q = v ^ (LO * u64::from(b'"'));
        let bs = v ^ (LO * u64::from(b'\\'));
        let zq = q.wrapping_sub(LO) & !q;
        let zb = bs.wrapping_sub(LO) & !bs;
        let flags = (lt | zq | zb) & HI;
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if needs_escape(b) {
            return i;
        }
        i += 1;
    }
    i
}

/// The inside of a JSON string (no quotes) with RFC 8785 / JSON.stringify escaping.
fn write_escaped_body<S: Sink>(out: &mut S, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = escape_free_prefix(bytes);
    if i == bytes.len() {
        out.put(bytes);
        return;
    }
    while let Some(&b) = bytes.get(i) {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.put(&bytes[start..i]);
                out.put(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[usize::from(b >> 4)],
                    HEX[usize::from(b & 0xf)],
                ]);
                start = i + 1;
                i += 1;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.put(&bytes[start..i]);
        out.put(esc);
        start = i + 1;
        i += 1;
    }
    out.put(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_event_leaf_is_the_same_before_and_after_a_purge() {
        let salt = [7u8; 32];
        let payload = br#"{"a":"\u00e9","n":1}"#.to_vec();
        let mut e = crate::StoredEvent {
            tenant_id: "t_1".into(),
            seq: 4,
            event_id: uuid::Uuid::from_bytes([3; 16]),
            event_type: "x.y".into(),
            actor: "user:é".into(),
            timestamp: crate::Timestamp::from_nanos(1_700_000_000_123_000_000, 3),
            timestamp_assigned: false,
            received_at: crate::Timestamp::from_nanos(1_700_000_000_124_000_000, 6),
            source_ip: Some("10.0.0.1".into()),
            impersonation_session: None,
            approval_id: Some("ap_1".into()),
            payload: Some(payload.clone()),
            payload_salt: Some(salt),
            payload_commitment: None,
            leaf_hash: [0; 32],
        };
        let id = e.event_id.hyphenated().to_string();
        let ts = e.timestamp.to_rfc3339();
        let f = LeafFields {
            event_id: &id,
            event_type: "x.y",
            actor: "user:é",
            tenant_id: "t_1",
            timestamp: &ts,
            source_ip: Some("10.0.0.1"),
            impersonation_session: None,
            approval_id: Some("ap_1"),
        };
        let want = event_leaf_hash(&f, &salt, &payload);
        assert_eq!(stored_event_leaf_hash(&e), Some(want));
        e.payload = None;
        e.payload_salt = None;
        e.payload_commitment = Some(payload_commitment(&salt, &payload));
        assert_eq!(stored_event_leaf_hash(&e), Some(want));
        e.actor = "user:other".into();
        assert_ne!(stored_event_leaf_hash(&e), Some(want));
        e.payload_commitment = None;
        assert_eq!(stored_event_leaf_hash(&e), None);
    }

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

    proptest::proptest! {
        /// The word-at-a-time scan finds exactly the first byte that needs an escape.
        #[test]
        fn escape_free_prefix_is_the_first_byte_to_escape(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::num::u8::ANY,
                    proptest::sample::select(vec![b'"', b'\\', 0x1f, 0x20, 0x21, 0x00, 0x7f, 0x80, 0xa0, 0xdf, 0xe0, 0xff]),
                ],
                0..40,
            ),
        ) {
            let want = bytes.iter().position(|&b| needs_escape(b)).unwrap_or(bytes.len());
            proptest::prop_assert_eq!(escape_free_prefix(&bytes), want);
        }

        /// Leaf data is what a general RFC 8785 canonicaliser writes for the same object, for
        /// any field texts and any set of optional fields; the streamed hash is the hash of it.
        #[test]
        fn leaf_data_is_the_canonical_json_of_the_fields(
            texts in proptest::collection::vec("(\\PC|[\"\\\\\u{0}-\u{1f}]){0,40}", 8),
            present in proptest::array::uniform3(proptest::bool::ANY),
            commitment in proptest::array::uniform32(proptest::num::u8::ANY),
            salt in proptest::array::uniform32(proptest::num::u8::ANY),
        ) {
            let f = LeafFields {
                event_id: &texts[0],
                event_type: &texts[1],
                actor: &texts[2],
                tenant_id: &texts[3],
                timestamp: &texts[4],
                source_ip: present[0].then_some(texts[5].as_str()),
                impersonation_session: present[1].then_some(texts[6].as_str()),
                approval_id: present[2].then_some(texts[7].as_str()),
            };
            let data = leaf_data(&f, &commitment);
            let mut obj = serde_json::Map::new();
            obj.insert("event_id".into(), texts[0].clone().into());
            obj.insert("event_type".into(), texts[1].clone().into());
            obj.insert("actor".into(), texts[2].clone().into());
            obj.insert("tenant_id".into(), texts[3].clone().into());
            obj.insert("timestamp".into(), texts[4].clone().into());
            obj.insert("payload_commitment".into(), std::str::from_utf8(&hex32(&commitment)).unwrap().into());
            for (i, k) in ["source_ip", "impersonation_session", "approval_id"].into_iter().enumerate() {
                if present[i] {
                    obj.insert(k.into(), texts[5 + i].clone().into());
                }
            }
            let canon = serde_json_canonicalizer::to_vec(&serde_json::Value::Object(obj)).unwrap();
            proptest::prop_assert_eq!(&data, &canon);
            let payload = texts[7].as_bytes();
            proptest::prop_assert_eq!(
                event_leaf_hash(&f, &salt, payload),
                leaf_hash(&leaf_data(&f, &payload_commitment(&salt, payload)))
            );
        }
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
