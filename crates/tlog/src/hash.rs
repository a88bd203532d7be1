//! RFC 6962 / RFC 9162 hashing with SHA-256.
//!
//! A Merkle tree hash is defined over *leaf hashes* and *node hashes* that are
//! domain-separated by a one-byte prefix, so a leaf can never be confused with
//! an interior node (the second-preimage defence of RFC 6962 section 2.1):
//!
//! * leaf hash  = SHA-256(0x00 ‖ leaf data)
//! * node hash  = SHA-256(0x01 ‖ left ‖ right)
//! * empty tree = SHA-256("") ([`EMPTY_ROOT`])
//!
//! In trailkeep the leaf data is the RFC 8785 canonical JSON of an event's
//! leaf fields (docs/verification.md); this module does not care what the bytes are.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::TlogError;

/// A SHA-256 hash: a leaf hash, a node hash or a tree root.
pub type Hash = [u8; 32];

/// Size of a [`Hash`](type@Hash) in bytes.
pub const HASH_SIZE: usize = 32;

/// The root hash of the empty tree: SHA-256 of the empty string
/// (`e3b0c442…b855`), as RFC 9162 section 2.1.1 defines MTH({}).
pub const EMPTY_ROOT: Hash = [
    0xe3, 0xb0, 0xc4, 0x42, 0x98, 0xfc, 0x1c, 0x14, 0x9a, 0xfb, 0xf4, 0xc8, 0x99, 0x6f, 0xb9, 0x24,
    0x27, 0xae, 0x41, 0xe4, 0x64, 0x9b, 0x93, 0x4c, 0xa4, 0x95, 0x99, 0x1b, 0x78, 0x52, 0xb8, 0x55,
];

/// Hash of one leaf: SHA-256(0x00 ‖ `data`).
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// Hash of an interior node: SHA-256(0x01 ‖ `left` ‖ `right`).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    // One contiguous 65-byte input: a single pass over two blocks, no incremental buffering
    // (the hot path of every tree append and proof).
    let mut buf = [0u8; 65];
    buf[0] = 0x01;
    buf[1..33].copy_from_slice(left);
    buf[33..].copy_from_slice(right);
    Sha256::digest(buf).into()
}

/// Encodes a hash as standard, padded base64 (the form used by checkpoints,
/// tlog-proofs and the HTTP API).
pub fn encode_hash(hash: &Hash) -> String {
    STANDARD.encode(hash)
}

/// Decodes standard, padded base64 of exactly 32 bytes.
///
/// Strict: the encoding must be canonical (no whitespace, correct padding, no
/// stray bits in the last character), so every hash has exactly one text form.
pub fn decode_hash(text: &str) -> Result<Hash, TlogError> {
    let bytes = STANDARD
        .decode(text)
        .map_err(|e| TlogError::InvalidHash(format!("{text:?} is not base64 ({e})")))?;
    hash_from_slice(&bytes)
}

/// Converts a byte slice to a [`Hash`](type@Hash), rejecting any length other than 32.
pub fn hash_from_slice(bytes: &[u8]) -> Result<Hash, TlogError> {
    Hash::try_from(bytes).map_err(|_| {
        TlogError::InvalidHash(format!("{} bytes instead of {HASH_SIZE}", bytes.len()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_root_is_sha256_of_nothing() {
        let h: Hash = Sha256::digest(b"").into();
        assert_eq!(h, EMPTY_ROOT);
    }

    #[test]
    fn domain_separation() {
        // RFC 6962 test data: the leaf hash of the empty string.
        assert_eq!(
            encode_hash(&leaf_hash(b"")),
            "bjQLnP+zepicpUTmu3gKLHiQHT+zNzh2hRGjBhevoB0="
        );
        let l = leaf_hash(b"a");
        assert_ne!(node_hash(&l, &l), leaf_hash(&[l, l].concat()));
    }

    #[test]
    fn strict_base64() {
        let h = leaf_hash(b"x");
        assert_eq!(decode_hash(&encode_hash(&h)).ok(), Some(h));
        assert!(decode_hash("").is_err());
        assert!(decode_hash("AAAA").is_err());
        let unpadded = encode_hash(&h).trim_end_matches('=').to_string();
        assert!(decode_hash(&unpadded).is_err());
        assert!(decode_hash(&format!(" {}", encode_hash(&h))).is_err());
    }
}
