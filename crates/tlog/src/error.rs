//! The one error type of this crate.
//!
//! Every message says what went wrong *and* what it means for the caller: a
//! verifier that gets [`TlogError::InclusionMismatch`] must not trust the event,
//! a log that gets [`TlogError::MissingHash`] has incomplete storage, and so on.
//! The variants are grouped by the layer that produces them (tree math and
//! proofs, hash storage, signed notes, checkpoints, tlog-proof text).

use std::error::Error as StdError;

/// Errors from building or checking trees, proofs, notes and checkpoints.
///
/// Verification failures are ordinary values, never panics: feeding this
/// crate altered proofs, truncated text or out-of-range indexes always ends in
/// one of these variants.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlogError {
    // ----- tree sizes and indexes -------------------------------------------------
    /// A leaf index is not inside the tree it was checked against.
    #[error(
        "leaf index {index} is outside a tree of size {tree_size}: the entry is not covered by \
         this tree (it may be newer than the checkpoint, or the index is wrong)"
    )]
    IndexOutOfRange {
        /// The leaf index asked for.
        index: u64,
        /// The size of the tree it was asked against.
        tree_size: u64,
    },

    /// A consistency check was asked from a larger tree to a smaller one.
    #[error(
        "old tree size {old_size} is larger than new tree size {new_size}: an append-only log \
         only grows, so no consistency proof can exist for this pair"
    )]
    TreeSizesReversed {
        /// The size claimed for the older tree.
        old_size: u64,
        /// The size claimed for the newer tree.
        new_size: u64,
    },

    /// A consistency proof from the empty tree was asked for or supplied.
    #[error(
        "there is no consistency proof from the empty tree to a tree of size {new_size}: every \
         tree extends the empty tree, so there is nothing to prove (treat size 0 as trivially \
         consistent after checking its root is the empty-tree hash)"
    )]
    ConsistencyFromEmptyTree {
        /// The size of the newer tree.
        new_size: u64,
    },

    /// A tree size beyond what the stored-hash layout can address.
    #[error(
        "tree size {size} exceeds the supported maximum of 2^62 entries: the request is invalid \
         or the size was corrupted"
    )]
    TreeTooLarge {
        /// The size that was rejected.
        size: u64,
    },

    // ----- proof verification -----------------------------------------------------
    /// A proof has the wrong number of hashes for the sizes it claims to cover.
    #[error(
        "{kind} proof has {got} hashes but a proof for these tree sizes has exactly {want}: the \
         proof was truncated, padded or made for different sizes"
    )]
    ProofLength {
        /// `"inclusion"` or `"consistency"`.
        kind: &'static str,
        /// Number of hashes supplied.
        got: usize,
        /// Number of hashes such a proof must have.
        want: usize,
    },

    /// An inclusion proof does not lead to the expected root.
    #[error(
        "inclusion proof does not match the root: the event is not in this tree or the proof \
         was altered"
    )]
    InclusionMismatch,

    /// A consistency proof does not link the two roots.
    #[error(
        "consistency proof does not match the roots: the newer tree does not extend the older \
         one (the log may have been rewritten) or the proof or a root was altered"
    )]
    ConsistencyMismatch,

    /// A leaf range that is empty or not inside the tree.
    #[error(
        "leaf range [{start}, {end}) is empty or reaches beyond a tree of size {tree_size}: a \
         range proof covers one or more leaves of the tree it is checked against"
    )]
    InvalidRange {
        /// First leaf of the range.
        start: u64,
        /// One past the last leaf of the range.
        end: u64,
        /// The size of the tree.
        tree_size: u64,
    },

    /// A range was checked with more or fewer leaves than it holds.
    #[error(
        "the leaf range [{start}, {end}) has {} leaves, but {} were given: the list of leaves \
         was truncated or padded",
        end.saturating_sub(*start),
        more_or_fewer(*too_many)
    )]
    RangeLeafCount {
        /// First leaf of the range.
        start: u64,
        /// One past the last leaf of the range.
        end: u64,
        /// More leaves than the range holds (else fewer).
        too_many: bool,
    },

    /// A range proof and its leaves do not lead to the expected root.
    #[error(
        "range proof does not match the root: the leaves are not those of this tree at these \
         positions (a leaf was altered, added or removed) or the proof was altered"
    )]
    RangeMismatch,

    /// The inclusion proofs a range proof is built from do not fit together.
    #[error(
        "cannot build the range proof: {0}; both inclusion proofs must come from the same tree \
         of the given size"
    )]
    RangeProofInputs(String),

    // ----- hash storage -----------------------------------------------------------
    /// A stored hash that the operation needs is not available.
    #[error(
        "stored hash {index} is missing: the hash storage does not hold the tree size asked for \
         (it is incomplete, behind, or corrupted)"
    )]
    MissingHash {
        /// The stored-hash index (see `tree::stored_hash_index`).
        index: u64,
    },

    /// A [`crate::tree::HashReader`] answered with the wrong number of hashes.
    #[error(
        "hash reader returned {returned} hashes for {requested} requested indexes: the storage \
         backend breaks the HashReader contract"
    )]
    ReaderContract {
        /// How many indexes were requested.
        requested: usize,
        /// How many hashes came back.
        returned: usize,
    },

    /// The storage behind a [`crate::tree::HashReader`] failed.
    #[error(
        "reading stored hashes failed: {0}; the operation can be retried once storage is healthy"
    )]
    Storage(#[source] Box<dyn StdError + Send + Sync + 'static>),

    /// A hash in text form is not base64 of exactly 32 bytes.
    #[error("invalid hash encoding: {0}; expected standard base64 of exactly 32 bytes")]
    InvalidHash(String),

    // ----- keys and signed notes --------------------------------------------------
    /// A key name breaks the signed-note rules.
    #[error(
        "invalid key name {0:?}: a key name must be non-empty and contain no spaces and no '+'"
    )]
    InvalidKeyName(String),

    /// A verifier key string (`name+keyid+base64`) is malformed or inconsistent.
    #[error("invalid verifier key: {0}; expected <name>+<8 hex digit key id>+<base64(0x01 || 32-byte Ed25519 key)>")]
    InvalidVerifierKey(String),

    /// Text handed to the signer cannot be signed as a note.
    #[error("cannot sign note text: {0}")]
    InvalidNoteText(String),

    /// The same key was passed twice to the signer.
    #[error("duplicate signer {name}+{key_id:08x}: each key may sign a note only once")]
    DuplicateSigner {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },

    /// A signed note does not follow the signed-note format.
    #[error("malformed signed note: {0}; it was altered, truncated, or is not a signed note")]
    MalformedNote(String),

    /// None of the note's signatures is from a key the caller trusts.
    #[error(
        "the note has no signature from a trusted key (signed by: {signers}): it was not signed \
         by the log key you configured, or that key was rotated"
    )]
    UnknownSigner {
        /// `name+keyid` of every signature found, comma-separated.
        signers: String,
    },

    /// A signature from a trusted key does not verify.
    #[error(
        "signature by trusted key {name}+{key_id:08x} does not verify: the note was altered \
         after signing or the signature is forged; reject the whole note"
    )]
    BadSignature {
        /// Key name.
        name: String,
        /// Key id.
        key_id: u32,
    },

    // ----- checkpoints and tlog-proof text ----------------------------------------
    /// Checkpoint text does not follow C2SP tlog-checkpoint.
    #[error("malformed checkpoint: {0}; it is not a valid c2sp.org/tlog-checkpoint body")]
    MalformedCheckpoint(String),

    /// The checkpoint is for another log.
    #[error(
        "checkpoint origin is {got:?} but {expected:?} was expected: it belongs to another log \
         (or tenant) and proves nothing about this one"
    )]
    OriginMismatch {
        /// The origin the caller expected.
        expected: String,
        /// The origin found in the checkpoint.
        got: String,
    },

    /// tlog-proof text does not follow C2SP tlog-proof.
    #[error("malformed tlog-proof: {0}; it is not a valid c2sp.org/tlog-proof@v1 document")]
    MalformedProof(String),
}

fn more_or_fewer(too_many: bool) -> &'static str {
    if too_many {
        "more"
    } else {
        "fewer"
    }
}

impl TlogError {
    /// Wraps a storage backend error for return from a
    /// [`HashReader`](crate::tree::HashReader).
    pub fn storage(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        TlogError::Storage(err.into())
    }
}
