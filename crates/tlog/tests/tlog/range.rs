//! Range proofs (`trailkeep_tlog::range`): for every small tree and every range, the proof built
//! from two inclusion proofs equals the one read from stored hashes and rebuilds the tree's
//! root; any altered proof hash or leaf changes the root; wrong inputs are errors, never
//! panics.

use proptest::prelude::*;
use trailkeep_tlog::hash::{leaf_hash, Hash};
use trailkeep_tlog::range::{
    prove_range, range_proof, range_proof_len, root_from_range, root_from_range_stream,
    verify_range,
};
use trailkeep_tlog::tree::{prove_inclusion, tree_hash, MemoryHashes};
use trailkeep_tlog::TlogError;

fn tree(n: u64) -> (Vec<Hash>, MemoryHashes) {
    let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    let mem = MemoryHashes::from_leaves(leaves.iter().copied());
    (leaves, mem)
}

fn from_inclusion(a: u64, b: u64, n: u64, mem: &MemoryHashes) -> Vec<Hash> {
    let first = prove_inclusion(n, a, mem).unwrap();
    let last = prove_inclusion(n, b - 1, mem).unwrap();
    range_proof(a, b, n, &first, &last).unwrap()
}

/// The maximal outside subtrees, computed the naive way: all nodes of the tree, keep those
/// outside the range whose parent is not.
fn naive_outside(a: u64, b: u64, n: u64) -> Vec<(u64, u64)> {
    fn walk(lo: u64, hi: u64, a: u64, b: u64, out: &mut Vec<(u64, u64)>) {
        let inside = |x: u64| a <= x && x < b;
        if !(lo..hi).any(inside) {
            out.push((lo, hi));
        } else if !(lo..hi).all(inside) {
            let mut k = 1;
            while 2 * k < hi - lo {
                k *= 2;
            }
            walk(lo, lo + k, a, b, out);
            walk(lo + k, hi, a, b, out);
        }
    }
    let mut out = Vec::new();
    walk(0, n, a, b, &mut out);
    out
}

#[test]
fn range_every_range_of_every_small_tree() {
    for n in 1..=40u64 {
        let (leaves, mem) = tree(n);
        let root = tree_hash(n, &mem).unwrap();
        for a in 0..n {
            for b in a + 1..=n {
                let proof = from_inclusion(a, b, n, &mem);
                assert_eq!(
                    proof,
                    prove_range(a, b, n, &mem).unwrap(),
                    "[{a},{b}) of {n}"
                );
                let subtrees = naive_outside(a, b, n);
                assert_eq!(proof.len(), subtrees.len(), "[{a},{b}) of {n}");
                assert_eq!(range_proof_len(a, b, n).unwrap(), proof.len());
                for ((lo, hi), h) in subtrees.iter().zip(&proof) {
                    let sub = MemoryHashes::from_leaves(
                        leaves[*lo as usize..*hi as usize].iter().copied(),
                    );
                    assert_eq!(*h, sub.root(), "[{a},{b}) of {n}: subtree [{lo},{hi})");
                }
                let range = &leaves[a as usize..b as usize];
                assert_eq!(root_from_range(a, n, range, &proof).unwrap(), root);
                assert!(verify_range(a, n, range, &proof, &root).is_ok());
            }
        }
    }
}

#[test]
fn range_any_altered_hash_or_leaf_changes_the_root() {
    for n in [1u64, 2, 3, 7, 8, 9, 21] {
        let (leaves, mem) = tree(n);
        let root = tree_hash(n, &mem).unwrap();
        for a in 0..n {
            for b in a + 1..=n {
                let proof = from_inclusion(a, b, n, &mem);
                let range = leaves[a as usize..b as usize].to_vec();
                for i in 0..proof.len() {
                    let mut p = proof.clone();
                    p[i][i % 32] ^= 1;
                    assert!(matches!(
                        verify_range(a, n, &range, &p, &root),
                        Err(TlogError::RangeMismatch)
                    ));
                }
                for i in 0..range.len() {
                    let mut r = range.clone();
                    r[i][7] ^= 0x80;
                    assert!(verify_range(a, n, &r, &proof, &root).is_err());
                }
                // The same leaves at another position, or in another order.
                if a > 0 {
                    let p = range_proof_len(a - 1, b - 1, n).map(|len| vec![proof[0]; len]);
                    assert!(verify_range(a - 1, n, &range, &p.unwrap(), &root).is_err());
                }
                if range.len() > 1 && range[0] != range[1] {
                    let mut r = range.clone();
                    r.swap(0, 1);
                    assert!(verify_range(a, n, &r, &proof, &root).is_err());
                }
            }
        }
    }
}

#[test]
fn range_malformed_proofs_are_errors() {
    let n = 23;
    let (leaves, mem) = tree(n);
    for (a, b) in [(0, 1), (3, 9), (5, 23), (22, 23), (0, 23)] {
        let proof = from_inclusion(a, b, n, &mem);
        let range = &leaves[a as usize..b as usize];
        let mut longer = proof.clone();
        longer.push(proof.first().copied().unwrap_or_default());
        assert!(matches!(
            root_from_range(a, n, range, &longer),
            Err(TlogError::ProofLength { kind: "range", .. })
        ));
        if !proof.is_empty() {
            assert!(matches!(
                root_from_range(a, n, range, &proof[1..]),
                Err(TlogError::ProofLength { kind: "range", .. })
            ));
        }
        // An extra leaf makes the range another range.
        let mut more = range.to_vec();
        more.push(leaf_hash(b"x"));
        assert!(root_from_range(a, n, &more, &proof).is_err());
        // Inclusion proofs of the wrong length or for other leaves.
        let first = prove_inclusion(n, a, &mem).unwrap();
        let last = prove_inclusion(n, b - 1, &mem).unwrap();
        assert!(matches!(
            range_proof(a, b, n, &first[1..], &last),
            Err(TlogError::ProofLength {
                kind: "inclusion",
                ..
            })
        ));
        // Where both paths pass through the same subtree, the proofs must agree on it.
        // (Both leaves on the same side of the root's split at 16.)
        if b <= 16 || a >= 16 {
            let mut forged = last.clone();
            let top = forged.len() - 1;
            forged[top][0] ^= 1;
            assert!(matches!(
                range_proof(a, b, n, &first, &forged),
                Err(TlogError::RangeProofInputs(_))
            ));
        }
    }
    assert!(matches!(
        root_from_range(0, 0, &[], &[]),
        Err(TlogError::InvalidRange { .. })
    ));
    assert!(root_from_range(20, 23, &leaves[..5], &[]).is_err());
}

#[test]
fn range_streamed_leaves_must_be_exactly_the_range() {
    let n = 37;
    let (leaves, mem) = tree(n);
    for (a, b) in [(0, 1), (4, 30), (36, 37), (0, 37)] {
        let proof = from_inclusion(a, b, n, &mem);
        let range = &leaves[a as usize..b as usize];
        let streamed = root_from_range_stream(a, b, n, range.iter().copied(), &proof).unwrap();
        assert_eq!(streamed, mem.root());
        let fewer = root_from_range_stream(a, b, n, range[1..].iter().copied(), &proof);
        assert!(
            matches!(
                fewer,
                Err(TlogError::RangeLeafCount {
                    too_many: false,
                    ..
                })
            ),
            "{fewer:?}"
        );
        let more = range.iter().copied().chain([leaf_hash(b"extra")]);
        let more = root_from_range_stream(a, b, n, more, &proof);
        assert!(
            matches!(more, Err(TlogError::RangeLeafCount { too_many: true, .. })),
            "{more:?}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

    /// Larger trees, random ranges: both provers agree and the root is rebuilt.
    #[test]
    fn range_prop_large_trees((n, a, len) in (1u64..5000).prop_flat_map(|n| (Just(n), 0..n)).prop_flat_map(|(n, a)| (Just(n), Just(a), 1..=n - a))) {
        let (leaves, mem) = tree(n);
        let b = a + len;
        let proof = from_inclusion(a, b, n, &mem);
        prop_assert_eq!(&proof, &prove_range(a, b, n, &mem).unwrap());
        prop_assert!(proof.len() <= 2 * 64);
        let root = root_from_range(a, n, &leaves[a as usize..b as usize], &proof).unwrap();
        prop_assert_eq!(root, mem.root());
    }

    /// Arbitrary inputs never panic.
    #[test]
    fn range_prop_arbitrary_inputs_never_panic(
        start in any::<u64>(), n in any::<u64>(), leaves in 0usize..4, proof in 0usize..70, small in 0u64..40,
    ) {
        let h = leaf_hash(b"p");
        for (s, size) in [(start, n), (start % (small + 1), small), (small, n)] {
            let _ = root_from_range(s, size, &vec![h; leaves], &vec![h; proof]);
            let _ = range_proof(s, s.saturating_add(leaves as u64), size, &vec![h; proof], &vec![h; proof / 2]);
            let _ = range_proof_len(s, s.saturating_add(leaves as u64), size);
        }
    }
}
