//! Append-only storage that never moves what it holds: per-tenant event metadata and Merkle
//! tree hashes.
//!
//! A plain `Vec` doubles by copying everything: at 10 million events a tenant's tree hashes are
//! 640 MB, and one such copy stalls the apply thread (and every reader waiting on it) for
//! hundreds of milliseconds. [`ChunkedVec`] grows in chunks of [`CHUNK`] entries: the first
//! chunk grows like a `Vec` (small tenants stay small), later chunks are allocated full size,
//! and nothing already stored is copied again.

use trailkeep_tlog::tree::{stored_hash_count, HashReader};
use trailkeep_tlog::{node_hash, Hash, TlogError};

const SHIFT: u32 = 16;
/// Entries per chunk.
pub const CHUNK: usize = 1 << SHIFT;

/// An append-only vector in fixed-size chunks.
#[derive(Debug)]
pub struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for ChunkedVec<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ChunkedVec<T> {
    pub const fn new() -> Self {
        ChunkedVec {
            chunks: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn push(&mut self, v: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(v),
            _ => {
                // Every chunk but the last is full, so `get` can index by shifting.
                let mut c = Vec::with_capacity(if self.chunks.is_empty() { 16 } else { CHUNK });
                c.push(v);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }

    pub fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i >> SHIFT)?.get(i & (CHUNK - 1))
    }
}

/// One tenant's Merkle tree: every stored hash in the layout of `trailkeep_tlog::tree` (Go's
/// `sumdb/tlog`), appended leaf by leaf.
#[derive(Debug, Default)]
pub struct TreeHashes {
    hashes: ChunkedVec<Hash>,
    size: u64,
}

/// The tree of a tenant with no events.
pub static EMPTY_TREE: TreeHashes = TreeHashes {
    hashes: ChunkedVec::new(),
    size: 0,
};

impl TreeHashes {
    /// The hash of leaf `n`, if the tree has it.
    pub fn leaf(&self, n: u64) -> Option<Hash> {
        self.at(trailkeep_tlog::tree::stored_hash_index(0, n)).ok()
    }

    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf: stores its hash, then every subtree root it completes (at most
    /// log2(n)+1 hashes, one node hash per leaf on average).
    pub fn append_leaf(&mut self, leaf: Hash) -> Result<(), TlogError> {
        let mut h = leaf;
        self.hashes.push(h);
        let mut m = self.size;
        let mut level = 0u8;
        while m & 1 == 1 {
            let left = self.at(trailkeep_tlog::tree::stored_hash_index(level, m - 1))?;
            h = node_hash(&left, &h);
            self.hashes.push(h);
            m >>= 1;
            level += 1;
        }
        self.size += 1;
        debug_assert_eq!(self.hashes.len() as u64, stored_hash_count(self.size));
        Ok(())
    }

    fn at(&self, index: u64) -> Result<Hash, TlogError> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.hashes.get(i))
            .copied()
            .ok_or_else(|| TlogError::MissingHash { index })
    }
}

impl HashReader for TreeHashes {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes.iter().map(|&i| self.at(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use trailkeep_tlog::tree::{prove_inclusion, tree_hash, MemoryHashes};

    #[test]
    fn chunked_vec_indexes_across_chunks() {
        let mut v = ChunkedVec::default();
        for i in 0..(CHUNK * 2 + 7) {
            v.push(i as u64);
        }
        assert_eq!(v.len(), CHUNK * 2 + 7);
        for i in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 6] {
            assert_eq!(v.get(i), Some(&(i as u64)));
        }
        assert_eq!(v.get(2 * CHUNK + 7), None);
    }

    #[test]
    fn same_stored_hashes_roots_and_proofs_as_the_reference() {
        let mut ours = TreeHashes::default();
        let mut reference = MemoryHashes::new();
        for i in 0..1500u32 {
            let leaf = trailkeep_tlog::leaf_hash(&i.to_le_bytes());
            ours.append_leaf(leaf).unwrap();
            reference.append_leaf(leaf);
        }
        assert_eq!(ours.hashes.len(), reference.stored().len());
        for (i, h) in reference.stored().iter().enumerate() {
            assert_eq!(ours.hashes.get(i), Some(h));
        }
        for size in [1u64, 2, 3, 255, 256, 1000, 1500] {
            assert_eq!(
                tree_hash(size, &ours).unwrap(),
                tree_hash(size, &reference).unwrap()
            );
            assert_eq!(
                prove_inclusion(size, size / 2, &ours).unwrap(),
                prove_inclusion(size, size / 2, &reference).unwrap()
            );
        }
    }
}
