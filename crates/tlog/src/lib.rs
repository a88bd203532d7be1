//! # trailkeep-tlog: the verifiable part of trailkeep's audit log
//!
//! Everything needed to build *and independently check* trailkeep's
//! tamper-evident logs, with no I/O, no async and no randomness, so the same
//! code runs inside the server and inside an auditor's tool:
//!
//! * [`hash`]: RFC 6962 / RFC 9162 leaf and node hashes (SHA-256 with
//!   0x00 / 0x01 domain separation).
//! * [`tree`]: the Merkle tree as stored hashes addressed by (level, index)
//!   in Go `sumdb/tlog` order, behind a batch-reading [`tree::HashReader`];
//!   appending (one record or a whole batch with [`tree::Appender`]), tree
//!   roots, RFC 9162 inclusion and consistency proofs and their verification,
//!   an in-memory tree ([`tree::MemoryHashes`]) and a streaming root
//!   ([`tree::root_from_leaves`]).
//! * [`range`]: range proofs — a contiguous run of leaves proven against a
//!   root with the maximal subtrees outside it, built from two inclusion
//!   proofs ([`range::range_proof`]) and checked with [`range::root_from_range`].
//! * [`note`]: C2SP signed notes with Ed25519 keys and verifier-key strings.
//! * [`checkpoint`]: C2SP tlog-checkpoints (origin, size, root) signed as notes.
//! * [`proof_text`]: C2SP tlog-proof documents (a checkpoint plus an inclusion
//!   proof for one entry), verifiable offline.
//! * [`error`]: the single [`TlogError`].
//!
//! Formats are bit-compatible with the published specifications (RFC 9162
//! section 2.1, c2sp.org/signed-note, c2sp.org/tlog-checkpoint,
//! c2sp.org/tlog-proof), so other implementations can verify trailkeep's logs
//! and vice versa.
//!
//! ```
//! use trailkeep_tlog::{checkpoint, hash, note, tree};
//!
//! # fn main() -> Result<(), trailkeep_tlog::TlogError> {
//! // A log appends leaves and keeps the stored hashes.
//! let mut log = tree::MemoryHashes::new();
//! for event in [&b"event 0"[..], b"event 1", b"event 2"] {
//!     log.append_leaf(hash::leaf_hash(event));
//! }
//! let root = tree::tree_hash(3, &log)?;
//!
//! // It signs a checkpoint with its key (the seed comes from the caller).
//! let signer = note::Signer::from_seed("trailkeep/main/t_0042", [42; 32])?;
//! let cp = checkpoint::Checkpoint::new("trailkeep/main/t_0042", 3, root);
//! let signed = checkpoint::sign_checkpoint(&cp, &signer)?;
//!
//! // An auditor holding the public key checks that event 1 is in the log.
//! let verifier = note::Verifier::from_vkey(&signer.verifier().to_vkey())?;
//! let opened = checkpoint::open_checkpoint_for_origin(&signed, "trailkeep/main/t_0042", &verifier)?;
//! let proof = tree::prove_inclusion(3, 1, &log)?;
//! tree::verify_inclusion(1, opened.size, &hash::leaf_hash(b"event 1"), &proof, &opened.root)?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod checkpoint;
pub mod error;
pub mod hash;
pub mod note;
pub mod proof_text;
pub mod range;
pub mod tree;

pub use checkpoint::{open_checkpoint, open_checkpoint_for_origin, sign_checkpoint, Checkpoint};
pub use error::TlogError;
pub use hash::{leaf_hash, node_hash, Hash, EMPTY_ROOT};
pub use note::{open_note, sign_note, OpenedNote, Signer, Verifier};
pub use proof_text::TlogProof;
pub use range::{prove_range, range_proof, root_from_range, root_from_range_stream, verify_range};
pub use tree::{
    prove_consistency, prove_inclusion, root_from_leaves, tree_hash, verify_consistency,
    verify_inclusion, Appender, HashReader, MemoryHashes,
};
