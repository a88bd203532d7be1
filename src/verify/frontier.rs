//! A streaming RFC 9162 tree root with O(log n) memory, readable at every size.
//!
//! `trailkeep_tlog::root_from_leaves` gives the root of a whole stream; the verifier also needs
//! the root at earlier sizes (a checkpoint smaller than the file, saved checkpoints) without
//! keeping every leaf, so it keeps the same frontier itself: the perfect subtrees of the
//! leaves seen so far, largest first. The tests check it against the tlog crate at every size.

use trailkeep_tlog::{node_hash, Hash, EMPTY_ROOT};

#[derive(Default, Debug, Clone)]
pub struct Frontier {
    size: u64,
    /// (height, hash) of each perfect subtree, left to right, heights strictly decreasing.
    stack: Vec<(u32, Hash)>,
}

impl Frontier {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut height = 0;
        while let Some(&(h, left)) = self.stack.last() {
            if h != height {
                break;
            }
            self.stack.pop();
            hash = node_hash(&left, &hash);
            height += 1;
        }
        self.stack.push((height, hash));
        self.size += 1;
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Root of the tree of the leaves pushed so far.
    pub fn root(&self) -> Hash {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut root)) = it.next() else {
            return EMPTY_ROOT;
        };
        for (_, left) in it {
            root = node_hash(left, &root);
        }
        root
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailkeep_tlog::{leaf_hash, root_from_leaves, tree_hash, MemoryHashes};

    #[test]
    fn matches_the_tlog_crate_at_every_size() {
        let leaves: Vec<Hash> = (0u32..300).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        let mem = MemoryHashes::from_leaves(leaves.iter().copied());
        let mut f = Frontier::new();
        assert_eq!(f.root(), EMPTY_ROOT);
        for (i, leaf) in leaves.iter().enumerate() {
            f.push(*leaf);
            let n = i as u64 + 1;
            assert_eq!(f.size(), n);
            assert_eq!(f.root(), tree_hash(n, &mem).unwrap(), "size {n}");
            assert_eq!(
                f.root(),
                root_from_leaves(leaves[..=i].iter().copied()).1,
                "size {n}"
            );
        }
    }
}
