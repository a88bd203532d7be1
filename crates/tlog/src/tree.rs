//! Merkle tree storage, proof construction and proof verification (RFC 9162
//! section 2.1), using the stored-hash layout of Go's
//! `golang.org/x/mod/sumdb/tlog`.
//!
//! # The model
//!
//! A log is a sequence of records `0, 1, 2, …`; record `i` contributes the leaf
//! hash `leaf_hash(data_i)`. The tree of size `n` is the RFC 9162 Merkle tree
//! over the first `n` leaf hashes. Its nodes are the roots of *perfect*
//! subtrees: the hash at **level `L`, index `k`** covers records
//! `k·2^L .. (k+1)·2^L` (level 0 holds the leaf hashes themselves). These hashes
//! never change once written, so a log stores each exactly once, in the order
//! they become known:
//!
//! * appending record `n` writes its leaf hash `(0, n)`, then every perfect
//!   subtree that record completes, `(1, n/2)`, `(2, n/4)`, … — one hash per
//!   trailing 1 bit of `n`, so at most `log2(n) + 1` hashes per append;
//! * the linear position of `(L, k)` in that append order is
//!   [`stored_hash_index`]; [`split_stored_hash_index`] inverts it; a tree of
//!   `n` records has [`stored_hash_count`]`(n)` (= `2n − popcount(n)`) hashes.
//!
//! The roots of trees whose size is not a power of two are *not* stored: they
//! are folded on demand from the O(log n) perfect subtrees that tile the range
//! (the "compact range"). Every operation here asks its [`HashReader`] for all
//! the stored hashes it needs in **one** `read_hashes` call, which suits a
//! key-value backend.
//!
//! Proofs are lists of hashes ordered from the leaf (or old-tree) end upward,
//! byte-identical to RFC 6962 / RFC 9162 proofs (and to those of
//! transparency-dev/merkle), so any RFC 9162 verifier can check them.
//!
//! # Sizes
//!
//! Tree sizes are limited to [`MAX_TREE_SIZE`] (2^62) when storage is
//! involved, so that stored indexes never overflow. The pure verification
//! functions accept any `u64`.

use std::ops::Range;

use crate::hash::{node_hash, Hash, EMPTY_ROOT};
use crate::TlogError;

/// Largest tree size the stored-hash functions accept (2^62 records).
pub const MAX_TREE_SIZE: u64 = 1 << 62;

fn check_size(size: u64) -> Result<(), TlogError> {
    if size > MAX_TREE_SIZE {
        Err(TlogError::TreeTooLarge { size })
    } else {
        Ok(())
    }
}

// ----- stored-hash index arithmetic -----------------------------------------------

/// The linear storage position of the hash at `level`, index `n` (the node
/// covering records `n·2^level .. (n+1)·2^level`).
///
/// That hash is written when its last record, `r = (n+1)·2^level − 1`, is
/// appended: after the [`stored_hash_count`]`(r)` hashes of earlier records,
/// after `r`'s own leaf hash and after the `level − 1` nodes below it on `r`'s
/// path. Meaningful for nodes inside trees of at most [`MAX_TREE_SIZE`]
/// records; outside that domain the arithmetic wraps (it never panics).
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    let last_record = n
        .wrapping_add(1)
        .checked_shl(u32::from(level))
        .unwrap_or(0)
        .wrapping_sub(1);
    stored_hash_count(last_record).wrapping_add(u64::from(level))
}

/// Inverse of [`stored_hash_index`]: the `(level, n)` stored at position `index`.
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    // Find the record r whose append wrote position `index`:
    // count(r) <= index < count(r + 1). Since count(r) = 2r − popcount(r), r is
    // at least index/2 and at most about index/2 + 32.
    let count = |r: u64| 2 * u128::from(r) - u128::from(r.count_ones());
    let target = u128::from(index);
    let mut record = index / 2;
    while count(record.saturating_add(1)) <= target && record < u64::MAX {
        record += 1;
    }
    // Record r writes (0, r), (1, r/2), (2, r/4), … in that order.
    let level = (target - count(record)) as u32; // < 1 + trailing_ones(r) <= 64
    (level as u8, record.checked_shr(level).unwrap_or(0))
}

/// Number of hashes stored for a tree of `n` records: `2n − popcount(n)`
/// (each record `r` adds `1 + trailing_ones(r)` hashes). Also the position of
/// record `n`'s leaf hash.
pub fn stored_hash_count(n: u64) -> u64 {
    n.wrapping_mul(2).wrapping_sub(u64::from(n.count_ones()))
}

// ----- reading stored hashes ------------------------------------------------------

/// Read access to stored hashes, addressed by [`stored_hash_index`].
///
/// Implementations are usually a key-value table; each operation of this module
/// makes a single `read_hashes` call with every index it needs (sorted
/// ascending when that is natural, but implementations must not rely on
/// order). The result must hold exactly one hash per requested index, in the
/// request order; an index that is not stored should give
/// [`TlogError::MissingHash`], a backend failure [`TlogError::storage`].
pub trait HashReader {
    /// Returns the hashes at `indexes`, in the same order.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError>;
}

impl<R: HashReader + ?Sized> HashReader for &R {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        (**self).read_hashes(indexes)
    }
}

/// One batched read, with the reader's answer checked for length.
fn read_exact<R: HashReader + ?Sized>(r: &R, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = r.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(TlogError::ReaderContract {
            requested: indexes.len(),
            returned: hashes.len(),
        });
    }
    Ok(hashes)
}

/// Appends the stored indexes of the perfect subtrees tiling records
/// `[lo, hi)`, left to right (largest first).
fn subtree_indexes(mut lo: u64, hi: u64, out: &mut Vec<u64>) {
    while lo < hi {
        // Largest power of two that fits in the range and is aligned at lo.
        let level = (63 - (hi - lo).leading_zeros()).min(lo.trailing_zeros());
        out.push(stored_hash_index(level as u8, lo >> level));
        lo += 1 << level;
    }
}

/// Folds the perfect-subtree hashes of a range (left to right) into the range's
/// Merkle tree hash: the rightmost pieces join first, as RFC 9162 splits.
fn fold_range(hashes: &[Hash]) -> Hash {
    match hashes.split_last() {
        None => EMPTY_ROOT,
        Some((last, rest)) => rest
            .iter()
            .rev()
            .fold(*last, |acc, left| node_hash(left, &acc)),
    }
}

/// Largest power of two strictly below `m` (for `m >= 2`).
fn split_point(m: u64) -> u64 {
    1 << (63 - (m - 1).leading_zeros())
}

/// The subtree hashes a proof needs, gathered top-down, read in one batch.
#[derive(Default)]
pub(crate) struct ProofPlan {
    indexes: Vec<u64>,
    segments: Vec<Range<usize>>,
}

impl ProofPlan {
    pub(crate) fn add_range(&mut self, lo: u64, hi: u64) {
        let start = self.indexes.len();
        subtree_indexes(lo, hi, &mut self.indexes);
        self.segments.push(start..self.indexes.len());
    }

    /// Reads every needed hash at once; returns the proof bottom-up.
    pub(crate) fn resolve<R: HashReader + ?Sized>(self, r: &R) -> Result<Vec<Hash>, TlogError> {
        let hashes = read_exact(r, &self.indexes)?;
        Ok(self
            .segments
            .iter()
            .rev()
            .map(|seg| fold_range(hashes.get(seg.clone()).unwrap_or(&[])))
            .collect())
    }
}

// ----- appending ------------------------------------------------------------------

/// The hashes to store when record `n` (with leaf hash `leaf`) is appended to a
/// tree of `n` records: they go at stored indexes
/// `stored_hash_count(n) .. stored_hash_count(n + 1)`.
///
/// Reads the `trailing_ones(n)` left-sibling subtree hashes it needs in one
/// call. To append many records in one transaction, use [`Appender`].
pub fn stored_hashes_for_record<R: HashReader + ?Sized>(
    n: u64,
    leaf: Hash,
    r: &R,
) -> Result<Vec<Hash>, TlogError> {
    check_size(n.saturating_add(1))?;
    let completed = n.trailing_ones();
    // Left siblings from the highest level down, i.e. ascending stored index.
    let indexes: Vec<u64> = (0..completed)
        .rev()
        .map(|level| stored_hash_index(level as u8, (n >> level) - 1))
        .collect();
    let siblings = read_exact(r, &indexes)?;
    let mut out = Vec::with_capacity(1 + siblings.len());
    let mut h = leaf;
    out.push(h);
    for left in siblings.iter().rev() {
        h = node_hash(left, &h);
        out.push(h);
    }
    Ok(out)
}

/// The right edge of a tree: the roots of the perfect subtrees that tile
/// records `[0, size)`, largest (leftmost) first — one per set bit of `size`.
/// Appending a leaf merges the trailing equal-sized subtrees, like a binary
/// counter; the root is their right-to-left fold. O(log n) memory.
#[derive(Clone, Debug, Default)]
struct Frontier {
    size: u64,
    stack: Vec<Hash>,
}

impl Frontier {
    /// Adds a leaf, reporting every new stored hash (leaf first, then the
    /// subtrees it completes, bottom-up) to `emit`.
    fn push(&mut self, leaf: Hash, mut emit: impl FnMut(Hash)) {
        emit(leaf);
        let mut h = leaf;
        let mut n = self.size;
        while n & 1 == 1 {
            let Some(left) = self.stack.pop() else { break };
            h = node_hash(&left, &h);
            emit(h);
            n >>= 1;
        }
        self.stack.push(h);
        self.size += 1;
    }

    fn root(&self) -> Hash {
        fold_range(&self.stack)
    }
}

/// Appends a batch of records on top of a stored tree, keeping the new hashes
/// in memory until the caller commits them.
///
/// Built for group commit: [`Appender::new`] reads the O(log n) right-edge
/// hashes of the stored tree in one call; after that [`Appender::push`] never
/// touches storage (each new node only combines hashes of the tree's right
/// edge, which the appender tracks, including ones it produced itself). When
/// the batch is done, write [`Appender::pending`] at the stored indexes it
/// names, in the same transaction as the records.
///
/// The appender is itself a [`HashReader`] over "storage + pending", so proofs
/// and roots of the uncommitted tree can be computed before commit.
#[derive(Debug)]
pub struct Appender<'r, R: HashReader + ?Sized> {
    reader: &'r R,
    base_size: u64,
    base_index: u64,
    frontier: Frontier,
    pending: Vec<Hash>,
}

impl<'r, R: HashReader + ?Sized> Appender<'r, R> {
    /// Starts a batch on top of the stored tree of `tree_size` records.
    pub fn new(reader: &'r R, tree_size: u64) -> Result<Self, TlogError> {
        check_size(tree_size)?;
        let indexes: Vec<u64> = (0..64u32)
            .rev()
            .filter(|level| (tree_size >> level) & 1 == 1)
            .map(|level| stored_hash_index(level as u8, (tree_size >> level) - 1))
            .collect();
        let stack = read_exact(reader, &indexes)?;
        Ok(Appender {
            reader,
            base_size: tree_size,
            base_index: stored_hash_count(tree_size),
            frontier: Frontier {
                size: tree_size,
                stack,
            },
            pending: Vec::new(),
        })
    }

    /// Appends a record by its leaf hash; returns its record index.
    pub fn push(&mut self, leaf: Hash) -> u64 {
        let index = self.frontier.size;
        let pending = &mut self.pending;
        self.frontier.push(leaf, |h| pending.push(h));
        index
    }

    /// Tree size the batch started from (already stored).
    pub fn base_size(&self) -> u64 {
        self.base_size
    }

    /// Tree size including the pending records.
    pub fn tree_size(&self) -> u64 {
        self.frontier.size
    }

    /// Root of the tree including the pending records (no storage access).
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// The hashes to store: `(first stored index, hashes)`; hash `i` goes at
    /// stored index `first + i`.
    pub fn pending(&self) -> (u64, &[Hash]) {
        (self.base_index, &self.pending)
    }

    /// Consumes the appender, returning what [`Appender::pending`] returns.
    pub fn into_pending(self) -> (u64, Vec<Hash>) {
        (self.base_index, self.pending)
    }
}

impl<R: HashReader + ?Sized> HashReader for Appender<'_, R> {
    /// Serves pending hashes from memory and everything older from the wrapped
    /// reader (in one call).
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let stored: Vec<u64> = indexes
            .iter()
            .copied()
            .filter(|&i| i < self.base_index)
            .collect();
        let mut from_storage = read_exact(self.reader, &stored)?.into_iter();
        indexes
            .iter()
            .map(|&i| {
                if i < self.base_index {
                    from_storage
                        .next()
                        .ok_or(TlogError::MissingHash { index: i })
                } else {
                    usize::try_from(i - self.base_index)
                        .ok()
                        .and_then(|off| self.pending.get(off))
                        .copied()
                        .ok_or(TlogError::MissingHash { index: i })
                }
            })
            .collect()
    }
}

/// A whole tree's stored hashes in memory, for auditors who rebuild a tenant's
/// tree from its leaf hashes and then check or produce proofs locally.
#[derive(Clone, Debug, Default)]
pub struct MemoryHashes {
    hashes: Vec<Hash>,
    frontier: Frontier,
}

impl MemoryHashes {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the tree of the given leaf hashes.
    pub fn from_leaves(leaves: impl IntoIterator<Item = Hash>) -> Self {
        let mut t = Self::new();
        for leaf in leaves {
            t.append_leaf(leaf);
        }
        t
    }

    /// Appends a record by its leaf hash; returns its record index.
    pub fn append_leaf(&mut self, leaf: Hash) -> u64 {
        let index = self.frontier.size;
        let hashes = &mut self.hashes;
        self.frontier.push(leaf, |h| hashes.push(h));
        index
    }

    /// Number of records.
    pub fn tree_size(&self) -> u64 {
        self.frontier.size
    }

    /// Root hash of the whole tree (no lookups).
    pub fn root(&self) -> Hash {
        self.frontier.root()
    }

    /// All stored hashes, in stored-index order.
    pub fn stored(&self) -> &[Hash] {
        &self.hashes
    }
}

impl HashReader for MemoryHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .copied()
                    .ok_or(TlogError::MissingHash { index: i })
            })
            .collect()
    }
}

/// Streams leaf hashes into a root hash with O(log n) memory: returns
/// `(number of leaves, root)`. One node hash per leaf on average; the empty
/// iterator gives `(0, EMPTY_ROOT)`.
pub fn root_from_leaves(leaves: impl Iterator<Item = Hash>) -> (u64, Hash) {
    let mut f = Frontier::default();
    for leaf in leaves {
        f.push(leaf, |_| {});
    }
    (f.size, f.root())
}

// ----- tree hash and proofs ---------------------------------------------------------

/// Root hash of the stored tree of `tree_size` records (one batched read of at
/// most 62 hashes). The empty tree's root is [`EMPTY_ROOT`].
pub fn tree_hash<R: HashReader + ?Sized>(tree_size: u64, r: &R) -> Result<Hash, TlogError> {
    check_size(tree_size)?;
    let mut indexes = Vec::new();
    subtree_indexes(0, tree_size, &mut indexes);
    let hashes = read_exact(r, &indexes)?;
    Ok(fold_range(&hashes))
}

/// Inclusion proof for record `index` in the tree of `tree_size` records
/// (RFC 9162 section 2.1.3.1 `PATH`): sibling hashes from the leaf upward.
pub fn prove_inclusion<R: HashReader + ?Sized>(
    tree_size: u64,
    index: u64,
    r: &R,
) -> Result<Vec<Hash>, TlogError> {
    check_size(tree_size)?;
    if index >= tree_size {
        return Err(TlogError::IndexOutOfRange { index, tree_size });
    }
    let mut plan = ProofPlan::default();
    let (mut lo, mut hi) = (0, tree_size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            plan.add_range(lo + k, hi);
            hi = lo + k;
        } else {
            plan.add_range(lo, lo + k);
            lo += k;
        }
    }
    plan.resolve(r)
}

/// Consistency proof from the tree of `old_size` records to the tree of
/// `new_size` records (RFC 9162 section 2.1.4.1 `PROOF`).
///
/// Equal sizes give the empty proof. `old_size == 0 < new_size` is an error:
/// every tree extends the empty tree, and RFC 9162 defines no proof for it.
pub fn prove_consistency<R: HashReader + ?Sized>(
    old_size: u64,
    new_size: u64,
    r: &R,
) -> Result<Vec<Hash>, TlogError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(TlogError::TreeSizesReversed { old_size, new_size });
    }
    if old_size == new_size {
        return Ok(Vec::new());
    }
    if old_size == 0 {
        return Err(TlogError::ConsistencyFromEmptyTree { new_size });
    }
    // SUBPROOF(m, D[lo:hi], b) with b == (lo == 0), unrolled.
    let mut plan = ProofPlan::default();
    let (mut lo, mut hi) = (0, new_size);
    loop {
        if old_size == hi {
            if lo != 0 {
                plan.add_range(lo, hi);
            }
            break;
        }
        let k = split_point(hi - lo);
        if old_size <= lo + k {
            plan.add_range(lo + k, hi);
            hi = lo + k;
        } else {
            plan.add_range(lo, lo + k);
            lo += k;
        }
    }
    plan.resolve(r)
}

// ----- verification (pure, no storage) ------------------------------------------------

/// Splits an inclusion path into the part below the point where the paths to
/// `index` and to the last leaf meet, and the border part above it.
fn decompose_inclusion(index: u64, tree_size: u64) -> (u32, u32) {
    let inner = 64 - (index ^ (tree_size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// The root implied by an inclusion proof (RFC 9162 section 2.1.3.2, steps
/// 1–5). Errors if the index is outside the tree or the proof has the wrong
/// length; compare the result with a trusted root, or use [`verify_inclusion`].
pub fn root_from_inclusion_proof(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    proof: &[Hash],
) -> Result<Hash, TlogError> {
    if index >= tree_size {
        return Err(TlogError::IndexOutOfRange { index, tree_size });
    }
    let (inner, border) = decompose_inclusion(index, tree_size);
    let want = (inner + border) as usize;
    if proof.len() != want {
        return Err(TlogError::ProofLength {
            kind: "inclusion",
            got: proof.len(),
            want,
        });
    }
    let (mut fnode, mut snode) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in proof {
        if snode == 0 {
            return Err(TlogError::InclusionMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(TlogError::InclusionMismatch);
    }
    Ok(r)
}

/// Checks that `leaf` is record `index` of the tree of `tree_size` records
/// whose root is `root` (RFC 9162 section 2.1.3.2).
pub fn verify_inclusion(
    index: u64,
    tree_size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), TlogError> {
    if root_from_inclusion_proof(index, tree_size, leaf, proof)? == *root {
        Ok(())
    } else {
        Err(TlogError::InclusionMismatch)
    }
}

/// The new root implied by a consistency proof, after checking that the proof
/// reproduces `old_root` (RFC 9162 section 2.1.4.2). For equal sizes the proof
/// must be empty and `old_root` is returned (for size 0 it must be
/// [`EMPTY_ROOT`]).
pub fn root_from_consistency_proof(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    proof: &[Hash],
) -> Result<Hash, TlogError> {
    if old_size > new_size {
        return Err(TlogError::TreeSizesReversed { old_size, new_size });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(TlogError::ProofLength {
                kind: "consistency",
                got: proof.len(),
                want: 0,
            });
        }
        if old_size == 0 && *old_root != EMPTY_ROOT {
            return Err(TlogError::ConsistencyMismatch);
        }
        return Ok(*old_root);
    }
    if old_size == 0 {
        return Err(TlogError::ConsistencyFromEmptyTree { new_size });
    }

    // Expected length: the old tree's last leaf's inclusion path in the new
    // tree, minus the levels inside the old tree's largest left-aligned perfect
    // subtree, plus that subtree's hash unless it is the whole old tree.
    let (inner, border) = decompose_inclusion(old_size - 1, new_size);
    let shift = old_size.trailing_zeros();
    let old_is_perfect = old_size.is_power_of_two();
    let want = usize::from(!old_is_perfect) + (inner.saturating_sub(shift) + border) as usize;
    if proof.len() != want {
        return Err(TlogError::ProofLength {
            kind: "consistency",
            got: proof.len(),
            want,
        });
    }

    // Step 2: if the old size is a power of two, the old root starts the path.
    let (seed, rest) = if old_is_perfect {
        (*old_root, proof)
    } else {
        match proof.split_first() {
            Some((first, rest)) => (*first, rest),
            None => return Err(TlogError::ConsistencyMismatch),
        }
    };
    let (mut fnode, mut snode) = (old_size - 1, new_size - 1);
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr) = (seed, seed);
    for c in rest {
        if snode == 0 {
            return Err(TlogError::ConsistencyMismatch);
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while fnode & 1 == 0 && fnode != 0 {
                fnode >>= 1;
                snode >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 || fr != *old_root {
        return Err(TlogError::ConsistencyMismatch);
    }
    Ok(sr)
}

/// Checks that the tree of `new_size` records with root `new_root` extends the
/// tree of `old_size` records with root `old_root` (RFC 9162 section 2.1.4.2).
///
/// Equal sizes need an empty proof and equal roots; `old_size == 0 < new_size`
/// is [`TlogError::ConsistencyFromEmptyTree`] (trivially consistent, but there
/// is no proof to check — handle it before calling).
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), TlogError> {
    if root_from_consistency_proof(old_size, new_size, old_root, proof)? == *new_root {
        Ok(())
    } else {
        Err(TlogError::ConsistencyMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    /// Go's StoredHashIndex, written as the loop it uses.
    fn go_stored_hash_index(level: u8, mut n: u64) -> u64 {
        for _ in 0..level {
            n = 2 * n + 1;
        }
        let mut i = 0;
        while n > 0 {
            i += n;
            n >>= 1;
        }
        i + u64::from(level)
    }

    #[test]
    fn index_layout_matches_append_order() {
        // Replay appends and record the (level, n) written at each position.
        let mut order = Vec::new();
        for r in 0..2000u64 {
            order.push((0u8, r));
            for level in 1..=r.trailing_ones() {
                order.push((level as u8, r >> level));
            }
            assert_eq!(stored_hash_count(r + 1), order.len() as u64);
        }
        for (i, &(level, n)) in order.iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), i as u64, "({level},{n})");
            assert_eq!(go_stored_hash_index(level, n), i as u64);
            assert_eq!(split_stored_hash_index(i as u64), (level, n));
        }
    }

    #[test]
    fn split_handles_extremes() {
        for i in [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) - 1] {
            let (level, n) = split_stored_hash_index(i);
            assert!(level <= 64);
            let _ = stored_hash_index(level, n);
        }
        let top = stored_hash_index(62, 0);
        assert_eq!(split_stored_hash_index(top), (62, 0));
    }

    #[test]
    fn stored_hashes_for_record_matches_memory_tree() {
        let mut mem = MemoryHashes::new();
        for i in 0..300u64 {
            let leaf = leaf_hash(&i.to_be_bytes());
            let want = stored_hashes_for_record(i, leaf, &mem).unwrap();
            let before = mem.stored().len();
            mem.append_leaf(leaf);
            assert_eq!(&mem.stored()[before..], &want[..]);
            assert_eq!(before as u64, stored_hash_count(i));
        }
    }

    #[test]
    fn out_of_range_is_an_error() {
        let mem = MemoryHashes::from_leaves((0..5u8).map(|i| leaf_hash(&[i])));
        assert!(matches!(
            prove_inclusion(5, 5, &mem),
            Err(TlogError::IndexOutOfRange { .. })
        ));
        assert!(matches!(
            tree_hash(6, &mem),
            Err(TlogError::MissingHash { .. })
        ));
        assert!(matches!(
            prove_consistency(6, 5, &mem),
            Err(TlogError::TreeSizesReversed { .. })
        ));
        assert!(matches!(
            tree_hash(u64::MAX, &mem),
            Err(TlogError::TreeTooLarge { .. })
        ));
        assert!(matches!(
            prove_inclusion(u64::MAX, 3, &mem),
            Err(TlogError::TreeTooLarge { .. })
        ));
    }

    #[test]
    fn verification_never_panics_on_extreme_sizes() {
        let h = leaf_hash(b"x");
        for (i, n) in [
            (0, u64::MAX),
            (u64::MAX - 1, u64::MAX),
            (1 << 63, u64::MAX),
            (0, 1 << 63),
        ] {
            assert!(verify_inclusion(i, n, &h, &[h; 3], &h).is_err());
            assert!(verify_consistency(i.max(1), n, &h, &h, &[h; 3]).is_err());
        }
    }
}
