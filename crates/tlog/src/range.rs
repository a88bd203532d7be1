//! Range proofs: a contiguous run of leaves `[start, end)` of a tree of size `n`, proven against
//! the tree's root with a handful of hashes.
//!
//! # The model
//!
//! Walk the tree the way RFC 6962 / RFC 9162 define it (a node over `m > 1` leaves splits at
//! the largest power of two below `m`). Every node is either
//!
//! * **inside** the range: its hash is computed from the range's own leaves;
//! * **outside** it (no leaf in the range): its hash is one proof hash;
//! * **partial**: its hash is `node_hash(left, right)` of its two children, walked in turn.
//!
//! The proof is the hashes of the outside nodes met this way — the maximal subtrees lying
//! entirely outside the range — in left-to-right (depth-first) order. Partial nodes are the
//! ancestors of the range's first or last leaf, so a proof has at most two hashes per level
//! (`2·log2(n)`), however long the range; the range's leaves are hashed exactly once, as when
//! building the tree.
//!
//! A range of one leaf gives the hashes of the leaf's inclusion proof, ordered by position
//! instead of bottom-up: the left siblings from the top down, then the right siblings from the
//! bottom up.
//!
//! # Building proofs without the tree
//!
//! A log's storage usually answers inclusion proofs, not arbitrary subtree hashes.
//! [`range_proof`] builds the range proof from two inclusion proofs, of the first leaf and of
//! the last leaf of the range: every outside node the walk meets is the sibling of a partial
//! node, and every partial node is on the path to the first or the last leaf, so its sibling is
//! one of the two proofs' hashes. Where the two paths share a node (above the point where they
//! part) both proofs hold the same sibling, and they must agree. [`prove_range`] does the same
//! from stored hashes.
//!
//! [`root_from_range`] is the verifier: it rebuilds the root from the leaves and the proof and
//! refuses a proof with too few or too many hashes; compare its result with a trusted root, or
//! use [`verify_range`].

use crate::hash::{node_hash, Hash};
use crate::tree::{root_from_leaves, HashReader, ProofPlan};
use crate::TlogError;

/// Largest power of two strictly below `m` (for `m >= 2`).
fn split_point(m: u64) -> u64 {
    1 << (63 - (m - 1).leading_zeros())
}

fn check_range(start: u64, end: u64, tree_size: u64) -> Result<(), TlogError> {
    if start < end && end <= tree_size {
        Ok(())
    } else {
        Err(TlogError::InvalidRange {
            start,
            end,
            tree_size,
        })
    }
}

/// Calls `outside(lo, hi)` for each maximal subtree `[lo, hi)` of the tree of `tree_size`
/// leaves that lies entirely outside `[start, end)`, left to right. The range must be valid.
fn for_each_outside(start: u64, end: u64, tree_size: u64, outside: &mut impl FnMut(u64, u64)) {
    fn walk(lo: u64, hi: u64, start: u64, end: u64, outside: &mut impl FnMut(u64, u64)) {
        if hi <= start || lo >= end {
            outside(lo, hi);
        } else if start <= lo && hi <= end {
            // Inside: hashed from the leaves.
        } else {
            // Partial: at least one leaf in and one out, so hi - lo >= 2.
            let k = split_point(hi - lo);
            walk(lo, lo + k, start, end, outside);
            walk(lo + k, hi, start, end, outside);
        }
    }
    walk(0, tree_size, start, end, outside);
}

/// Number of hashes in the range proof of `[start, end)` in a tree of `tree_size` leaves.
pub fn range_proof_len(start: u64, end: u64, tree_size: u64) -> Result<usize, TlogError> {
    check_range(start, end, tree_size)?;
    let mut n = 0;
    for_each_outside(start, end, tree_size, &mut |_, _| n += 1);
    Ok(n)
}

/// The range proof of leaves `[start, end)` of the stored tree of `tree_size` leaves (one
/// batched read).
pub fn prove_range<R: HashReader + ?Sized>(
    start: u64,
    end: u64,
    tree_size: u64,
    r: &R,
) -> Result<Vec<Hash>, TlogError> {
    check_range(start, end, tree_size)?;
    let mut plan = ProofPlan::default();
    for_each_outside(start, end, tree_size, &mut |lo, hi| plan.add_range(lo, hi));
    let mut proof = plan.resolve(r)?;
    // `resolve` returns the segments last first (the bottom-up order of the other proofs).
    proof.reverse();
    Ok(proof)
}

/// The subtrees `[lo, hi)` whose hashes form the inclusion proof of leaf `index` in a tree of
/// `tree_size` leaves, from the top (the root's child) down.
fn inclusion_siblings(index: u64, tree_size: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, tree_size);
    while hi - lo > 1 {
        let k = split_point(hi - lo);
        if index < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out
}

/// Builds the range proof of leaves `[start, end)` of the tree of `tree_size` leaves from the
/// inclusion proofs (RFC 9162, leaf end first, as [`crate::prove_inclusion`] returns them) of
/// leaf `start` and of leaf `end - 1` in that tree.
///
/// The inclusion proofs are not checked against a root here (there is none to check against);
/// a proof built from wrong ones simply fails [`verify_range`]. They must have the right
/// lengths, and where both paths pass through the same subtree they must give it the same
/// hash.
pub fn range_proof(
    start: u64,
    end: u64,
    tree_size: u64,
    proof_of_first: &[Hash],
    proof_of_last: &[Hash],
) -> Result<Vec<Hash>, TlogError> {
    check_range(start, end, tree_size)?;
    // Every sibling on either path, by the subtree it covers.
    let mut known: Vec<((u64, u64), Hash)> = Vec::with_capacity(128);
    for (index, proof) in [(start, proof_of_first), (end - 1, proof_of_last)] {
        let siblings = inclusion_siblings(index, tree_size);
        if proof.len() != siblings.len() {
            return Err(TlogError::ProofLength {
                kind: "inclusion",
                got: proof.len(),
                want: siblings.len(),
            });
        }
        // The proof runs bottom-up, the sibling list top-down.
        for (range, hash) in siblings.into_iter().rev().zip(proof) {
            match known.iter().find(|(r, _)| *r == range) {
                Some((_, h)) if h != hash => {
                    return Err(TlogError::RangeProofInputs(format!(
                        "the inclusion proofs of leaves {start} and {} give different hashes \
                         for the subtree of leaves [{}, {})",
                        end - 1,
                        range.0,
                        range.1
                    )));
                }
                Some(_) => {}
                None => known.push((range, *hash)),
            }
        }
    }
    let mut proof = Vec::new();
    let mut missing = None;
    for_each_outside(start, end, tree_size, &mut |lo, hi| match known
        .iter()
        .find(|(r, _)| *r == (lo, hi))
    {
        Some((_, h)) => proof.push(*h),
        None => {
            missing.get_or_insert((lo, hi));
        }
    });
    match missing {
        // Unreachable by the argument in the module documentation; an error, not a panic.
        Some((lo, hi)) => Err(TlogError::RangeProofInputs(format!(
            "the subtree of leaves [{lo}, {hi}) is on neither inclusion path"
        ))),
        None => Ok(proof),
    }
}

/// The root of the tree of `tree_size` leaves implied by `leaves` (the leaf hashes of
/// `[start, start + leaves.len())`) and their range `proof`.
///
/// Errors if the range is empty or reaches beyond the tree, or if the proof does not have
/// exactly the hashes the range needs. Compare the result with a trusted root, or use
/// [`verify_range`].
pub fn root_from_range(
    start: u64,
    tree_size: u64,
    leaves: &[Hash],
    proof: &[Hash],
) -> Result<Hash, TlogError> {
    let end = u64::try_from(leaves.len())
        .ok()
        .and_then(|n| start.checked_add(n))
        .ok_or(TlogError::InvalidRange {
            start,
            end: u64::MAX,
            tree_size,
        })?;
    root_from_range_stream(start, end, tree_size, leaves.iter().copied(), proof)
}

/// [`root_from_range`] for leaves that arrive as a stream (read from a file, say), so they
/// need not all be in memory: `leaves` must yield exactly the `end - start` leaf hashes of
/// `[start, end)`, in order; fewer or more is [`TlogError::RangeLeafCount`]. Memory is
/// O(log n).
pub fn root_from_range_stream(
    start: u64,
    end: u64,
    tree_size: u64,
    leaves: impl IntoIterator<Item = Hash>,
    proof: &[Hash],
) -> Result<Hash, TlogError> {
    let want = range_proof_len(start, end, tree_size)?;
    if proof.len() != want {
        return Err(TlogError::ProofLength {
            kind: "range",
            got: proof.len(),
            want,
        });
    }

    struct Walk<'a, I> {
        start: u64,
        end: u64,
        leaves: I,
        /// Leaves taken from `leaves` so far.
        taken: u64,
        proof: std::slice::Iter<'a, Hash>,
    }
    impl<I: Iterator<Item = Hash>> Walk<'_, I> {
        /// `None` if the proof or the leaves run out.
        fn hash(&mut self, lo: u64, hi: u64) -> Option<Hash> {
            if hi <= self.start || lo >= self.end {
                self.proof.next().copied()
            } else if self.start <= lo && hi <= self.end {
                // Inside subtrees are met left to right, so they take the leaves in order.
                let (n, root) = root_from_leaves(self.leaves.by_ref().take_n(hi - lo));
                self.taken += n;
                (n == hi - lo).then_some(root)
            } else {
                let k = split_point(hi - lo);
                let left = self.hash(lo, lo + k)?;
                let right = self.hash(lo + k, hi)?;
                Some(node_hash(&left, &right))
            }
        }
    }
    let mut walk = Walk {
        start,
        end,
        leaves: leaves.into_iter(),
        taken: 0,
        proof: proof.iter(),
    };
    let root = walk.hash(0, tree_size);
    let extra = walk.leaves.next().is_some();
    match root {
        Some(root) if !extra => Ok(root),
        // The proof's length was checked, so it is the leaves that were too few or too many.
        _ => Err(TlogError::RangeLeafCount {
            start,
            end,
            too_many: extra || walk.taken > end - start,
        }),
    }
}

/// `Iterator::take` with a `u64` count.
trait TakeN: Iterator + Sized {
    fn take_n(self, n: u64) -> std::iter::Take<Self> {
        self.take(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

impl<I: Iterator> TakeN for I {}

/// Checks that `leaves` are the leaves `[start, start + leaves.len())` of the tree of
/// `tree_size` leaves whose root is `root`.
pub fn verify_range(
    start: u64,
    tree_size: u64,
    leaves: &[Hash],
    proof: &[Hash],
    root: &Hash,
) -> Result<(), TlogError> {
    if root_from_range(start, tree_size, leaves, proof)? == *root {
        Ok(())
    } else {
        Err(TlogError::RangeMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;
    use crate::tree::{prove_inclusion, tree_hash, MemoryHashes};

    #[test]
    fn one_leaf_is_its_inclusion_proof_in_position_order() {
        let mem = MemoryHashes::from_leaves((0..13u8).map(|i| leaf_hash(&[i])));
        for i in 0..13 {
            let inclusion = prove_inclusion(13, i, &mem).unwrap();
            let range = prove_range(i, i + 1, 13, &mem).unwrap();
            let (mut a, mut b) = (inclusion.clone(), range.clone());
            a.sort();
            b.sort();
            assert_eq!(a, b, "{i}");
            if i == 0 {
                // Every sibling is on the right: bottom-up is left to right.
                assert_eq!(range, inclusion);
            }
            if i == 12 {
                // In a tree of 13, leaf 12's siblings are all on the left: top-down.
                assert_eq!(range, inclusion.into_iter().rev().collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn the_whole_tree_needs_no_proof() {
        let leaves: Vec<Hash> = (0..7u8).map(|i| leaf_hash(&[i])).collect();
        let mem = MemoryHashes::from_leaves(leaves.iter().copied());
        assert!(prove_range(0, 7, 7, &mem).unwrap().is_empty());
        assert_eq!(
            root_from_range(0, 7, &leaves, &[]).unwrap(),
            tree_hash(7, &mem).unwrap()
        );
    }

    #[test]
    fn bad_ranges_are_errors() {
        let h = leaf_hash(b"x");
        for (start, end, n) in [(0, 0, 1), (3, 2, 5), (4, 6, 5), (0, 1, 0)] {
            assert!(matches!(
                range_proof_len(start, end, n),
                Err(TlogError::InvalidRange { .. })
            ));
            assert!(range_proof(start, end, n, &[], &[]).is_err());
        }
        assert!(root_from_range(0, 5, &[], &[]).is_err());
        assert!(root_from_range(u64::MAX, u64::MAX, &[h, h], &[]).is_err());
        assert!(root_from_range(u64::MAX - 1, u64::MAX, &[h], &[h; 64]).is_err());
    }
}
