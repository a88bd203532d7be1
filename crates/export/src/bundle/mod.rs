//! Evidence bundles: one tenant's events of a time range, with everything needed to prove them
//! offline against the log's signed checkpoint (docs/verification.md, "Evidence bundles").
//!
//! # The model
//!
//! A bundle is a tar file (optionally gzip'd) whose members come in a fixed order, so a
//! verifier reads it as a stream, once:
//!
//! 1. `manifest.json` ([`Manifest`]): tenant, origin, time range, counts, seq span, tree size,
//!    the public key, and the SHA-256 and size of every other member except the signature;
//! 2. `manifest.sig`: a signed note by the log key over `trailkeep-bundle/1\nsha256 <hex of
//!    manifest.json>\n`. Through the manifest's digests the log key attests every member, so
//!    removing an event and recomputing the manifest is still caught (the text's second line
//!    is not a number, so the note can never pass for a checkpoint);
//! 3. `public-key.txt`: the verifier key;
//! 4. `checkpoint.txt`: the tenant's latest signed checkpoint, of size N; the bundle covers only
//!    seq < N;
//! 5. `checkpoint-first.txt` and `consistency.json`: the oldest checkpoint that covers the last
//!    event, and the RFC 9162 consistency proof from it to `checkpoint.txt` (both left out when
//!    that is `checkpoint.txt` itself, or the bundle is empty);
//! 6. `leaves.bin` and `range-proof.json`: the raw 32-byte leaf hashes of *every* seq from the
//!    first to the last event (also those of events outside the time range), and the range
//!    proof (`trailkeep_tlog::range`) that rebuilds the root of `checkpoint.txt` from them (both
//!    left out when the bundle is empty);
//! 7. `events.ndjson`: the events of the range in log order, one per line as the API returns
//!    them.
//!
//! A verifier recomputes every event's leaf from the event and finds it in `leaves.bin` at its
//! seq, and rebuilds the checkpoint's root from `leaves.bin` and the range proof: every event
//! is then proven to be in the signed log at its seq, unaltered. The manifest's signature makes
//! the selection itself (tenant, range, count, first and last seq) the log's word.
//!
//! # Writing and reading
//!
//! The server fills a [`BundleSpool`] with the events (`push`, in log order) and then the leaf
//! hashes of their seq span (`push_leaves`), both spooled to unlinked temporary files, and
//! calls [`BundleSpool::finish`] with the checkpoints and proofs ([`BundleInputs`]) and the log
//! key: it checks that the bundle would verify and signs the manifest. [`Bundle::write_tar`]
//! then streams the tar. [`verify_bundle`] checks a bundle read from any `Read`.

mod manifest;
mod read;
mod spool;
mod verify;
mod write;

pub use manifest::{ConsistencyJson, Manifest, MemberDigest, RangeProofJson};
pub use spool::{BundleInputs, BundleSpool};
pub use verify::{verify_bundle, BundleReport};
pub use write::Bundle;

use std::fmt;

/// The `format` of the manifest, and the first line of the manifest's signed text.
pub const FORMAT: &str = "trailkeep-bundle/1";

/// Member names.
pub mod member {
    /// The manifest (JSON).
    pub const MANIFEST: &str = "manifest.json";
    /// The signed note over the manifest's digest.
    pub const SIGNATURE: &str = "manifest.sig";
    /// The verifier key.
    pub const PUBLIC_KEY: &str = "public-key.txt";
    /// The latest signed checkpoint.
    pub const CHECKPOINT: &str = "checkpoint.txt";
    /// The oldest signed checkpoint covering the last event.
    pub const FIRST_CHECKPOINT: &str = "checkpoint-first.txt";
    /// The consistency proof between the two checkpoints (JSON).
    pub const CONSISTENCY: &str = "consistency.json";
    /// The leaf hashes of the seq span, 32 raw bytes each.
    pub const LEAVES: &str = "leaves.bin";
    /// The range proof of the leaves against the checkpoint (JSON).
    pub const RANGE_PROOF: &str = "range-proof.json";
    /// The events, NDJSON.
    pub const EVENTS: &str = "events.ndjson";

    /// Every member, in the order a bundle holds them.
    pub const ORDER: [&str; 9] = [
        MANIFEST,
        SIGNATURE,
        PUBLIC_KEY,
        CHECKPOINT,
        FIRST_CHECKPOINT,
        CONSISTENCY,
        LEAVES,
        RANGE_PROOF,
        EVENTS,
    ];
}

/// The text `manifest.sig` signs: the format and the manifest's SHA-256.
pub fn signed_text(manifest_sha256: &[u8; 32]) -> String {
    format!("{FORMAT}\nsha256 {}\n", hex::encode(manifest_sha256))
}

/// What a bundle failure is about: a member of the tar, or one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Culprit {
    /// A member (by name), or the archive as a whole.
    Member(String),
    /// An event of `events.ndjson`.
    Event {
        /// Its seq (as the event says).
        seq: u64,
        /// Its event id (as the event says).
        event_id: String,
    },
}

impl fmt::Display for Culprit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Culprit::Member(name) => f.write_str(name),
            Culprit::Event { seq, event_id } => write!(f, "event seq {seq} (id {event_id})"),
        }
    }
}

/// A check of a bundle that failed: what, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The first member or event that failed.
    pub culprit: Culprit,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.culprit, self.reason)
    }
}

/// Errors of writing or verifying a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The bundle could not be built: its inputs would not make a bundle that verifies (events
    /// out of order, leaves that do not match, a proof that does not lead to the checkpoint).
    #[error("cannot build the evidence bundle: {0}")]
    Build(String),
    /// A temporary file of the spool failed.
    #[error("evidence bundle spool: {0} (check the temporary directory's free space)")]
    Spool(#[from] std::io::Error),
    /// Verifying: the input is not a bundle, or a corrupt or truncated tar or gzip file.
    #[error("not a readable evidence bundle: {0}")]
    Unreadable(String),
    /// Verifying: a check failed; names the first failing member or event.
    #[error("{0}")]
    Failed(Failure),
}

impl BundleError {
    pub(crate) fn member(name: &str, reason: impl Into<String>) -> Self {
        BundleError::Failed(Failure {
            culprit: Culprit::Member(name.to_string()),
            reason: reason.into(),
        })
    }

    pub(crate) fn event(seq: u64, event_id: &str, reason: impl Into<String>) -> Self {
        BundleError::Failed(Failure {
            culprit: Culprit::Event {
                seq,
                event_id: event_id.to_string(),
            },
            reason: reason.into(),
        })
    }

    /// The failure, when a check failed.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            BundleError::Failed(f) => Some(f),
            _ => None,
        }
    }
}

/// Whether `origin` is `trailkeep/<log>/<tenant_id>` with a non-empty log name.
pub(crate) fn origin_names_tenant(origin: &str, tenant_id: &str) -> bool {
    origin
        .strip_prefix("trailkeep/")
        .and_then(|rest| rest.strip_suffix(tenant_id))
        .and_then(|log| log.strip_suffix('/'))
        .is_some_and(|log| !log.is_empty())
}
