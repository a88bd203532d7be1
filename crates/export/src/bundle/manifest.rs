//! `manifest.json`, `consistency.json` and `range-proof.json`.
//!
//! Hashes inside the JSON members are standard base64 (as in checkpoints and the API); member
//! digests are lower-case hex (as `sha256sum` prints them), so that they can be checked by hand.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use trailkeep_tlog::hash::{decode_hash, encode_hash};
use trailkeep_tlog::Hash;

/// The bundle's table of contents, signed through `manifest.sig`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`super::FORMAT`].
    pub format: String,
    /// The tenant whose events these are.
    pub tenant_id: String,
    /// The checkpoint origin of the tenant's log, `trailkeep/<log>/<tenant>`.
    pub origin: String,
    /// Start of the time range (RFC 3339, inclusive), if any.
    pub since: Option<String>,
    /// End of the time range (RFC 3339, exclusive), if any.
    pub until: Option<String>,
    /// When the bundle was made (RFC 3339).
    pub created_at: String,
    /// Number of events in `events.ndjson`.
    pub count: u64,
    /// Seq of the first event (`null` when there is none).
    pub first_seq: Option<u64>,
    /// Seq of the last event (`null` when there is none).
    pub last_seq: Option<u64>,
    /// Size of the tree of `checkpoint.txt`.
    pub tree_size: u64,
    /// The log's verifier key (signed-note vkey).
    pub public_key: String,
    /// SHA-256 and size of every member except `manifest.json` and `manifest.sig`.
    pub members: BTreeMap<String, MemberDigest>,
}

/// The digest and size of one member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberDigest {
    /// Lower-case hex SHA-256 of the member's bytes.
    pub sha256: String,
    /// The member's size in bytes.
    pub bytes: u64,
}

impl Manifest {
    /// The manifest as written into the bundle: pretty-printed JSON and a final newline.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising plain strings, integers and maps cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Seqs `[first_seq, last_seq + 1)` of the leaves the bundle holds, if any.
    pub fn seq_span(&self) -> Option<(u64, u64)> {
        match (self.first_seq, self.last_seq) {
            (Some(a), Some(b)) => Some((a, b.checked_add(1)?)),
            _ => None,
        }
    }
}

/// `consistency.json`: the RFC 9162 consistency proof from `checkpoint-first.txt` (size `from`)
/// to `checkpoint.txt` (size `to`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyJson {
    /// Size of the older tree.
    pub from: u64,
    /// Size of the newer tree.
    pub to: u64,
    /// The proof hashes, base64.
    pub proof: Vec<String>,
}

/// `range-proof.json`: the range proof of leaves `[start, end)` in the tree of `tree_size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProofJson {
    /// First seq of `leaves.bin`.
    pub start: u64,
    /// One past the last seq of `leaves.bin`.
    pub end: u64,
    /// Size of the tree of `checkpoint.txt`.
    pub tree_size: u64,
    /// The hashes of the maximal subtrees outside `[start, end)`, left to right, base64.
    pub proof: Vec<String>,
}

pub(crate) fn encode_hashes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(encode_hash).collect()
}

pub(crate) fn decode_hashes(texts: &[String]) -> Result<Vec<Hash>, String> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| decode_hash(t).map_err(|e| format!("proof hash {i}: {e}")))
        .collect()
}

/// JSON with a final newline.
pub(crate) fn json_bytes<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    out
}
