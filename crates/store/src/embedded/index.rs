//! An ordered in-memory index tuned for logs: sorted chunks of seqs, each ordered by its
//! event's key.
//!
//! An entry is only the value (a seq, 8 bytes); its key is looked up where it already lives
//! (the tenant's event metadata, through [`Keys`]), so an index entry costs a quarter of a
//! `(key, seq)` pair and a tenant's three or four indexes no longer repeat the 24-byte key.
//!
//! Audit events arrive in roughly timestamp order, so nearly every insert lands at the end.
//! A `BTreeMap` pays a root-to-leaf search per insert and leaves its nodes half full on
//! ascending inserts (~2× the memory of the entries). Here entries live in sorted chunks of up
//! to [`CHUNK`] entries: an insert after the last entry just pushes (reading only the index
//! itself, which keeps its last chunk and greatest key inline, and no key lookup at all), and a
//! full last chunk starts a new one instead of splitting, so an ascending index is packed
//! full. A late insert (a backfill, a slow client's batch committed after a newer one)
//! binary-searches the chunk list, then the chunk (looking keys up as it goes), and shifts at
//! most [`MAX_SHIFT`] entries: further from both ends of its chunk, it splits the chunk there,
//! and the rest of a late batch, which follows in key order, is pushed onto the lower part. A
//! full chunk splits in two.
//!
//! Ranges are double-ended iterators, so descending pages cost the same as ascending ones.

use std::ops::Bound;

/// Entries per chunk before a split (8-byte seqs: 4 KiB per full chunk). Small enough that a
/// late insert shifts little (clients' batches commit slightly out of timestamp order all the
/// time): 512 measured 16% faster at replay and ~4% at ingest than 4096.
pub const CHUNK: usize = 512;

/// Most entries a late insert shifts: one further from both ends of its chunk splits it there.
const MAX_SHIFT: usize = 64;

/// Where an index finds the key of an entry (the embedded store: a tenant's event metadata,
/// by seq). Every value inserted must have its key here for as long as the index is used.
pub trait Keys<K> {
    fn key(&self, v: u64) -> K;
}

/// An ordered set of values, each ordered by its key (keys are unique).
///
/// The chunks are `chunks` followed by `tail`, the last one. The tail and the greatest key are
/// kept inline, so an append (nearly every insert) reads nothing but this struct: with an index
/// per actor, the chunk list and the end of the last chunk are cold in cache on every insert.
/// Every chunk holds at least one entry; only the tail of an empty index is empty.
#[derive(Debug)]
pub struct ChunkIndex<K> {
    chunks: Vec<Vec<u64>>,
    tail: Vec<u64>,
    /// The greatest key (`None` when empty).
    last: Option<K>,
    len: usize,
}

impl<K> Default for ChunkIndex<K> {
    fn default() -> Self {
        ChunkIndex {
            chunks: Vec::new(),
            tail: Vec::new(),
            last: None,
            len: 0,
        }
    }
}

impl<K: Ord + Copy> ChunkIndex<K> {
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Chunks, counting the tail.
    fn chunk_count(&self) -> usize {
        self.chunks.len() + 1
    }

    /// Chunk `i` (`chunk_count() - 1` is the tail).
    fn chunk(&self, i: usize) -> Option<&[u64]> {
        match self.chunks.get(i) {
            Some(c) => Some(c),
            None if i == self.chunks.len() => Some(&self.tail),
            None => None,
        }
    }

    /// The chunk a key belongs in: the last whose first key is ≤ `k` (0 if none).
    fn chunk_for(&self, k: &K, keys: &impl Keys<K>) -> usize {
        if self.tail.first().is_some_and(|&f| keys.key(f) <= *k) {
            return self.chunks.len();
        }
        self.chunk_before_tail(k, keys)
    }

    /// Among the chunks before the tail, the one a key belongs in (for a key before the tail's
    /// first): the last whose first key is ≤ `k` (0 if none).
    fn chunk_before_tail(&self, k: &K, keys: &impl Keys<K>) -> usize {
        self.chunks
            .partition_point(|c| c.first().is_some_and(|&f| keys.key(f) <= *k))
            .saturating_sub(1)
    }

    /// Reads what an append reads (the tail's end), for nothing but to bring it into cache
    /// ahead of [`Self::insert`] (see `Mem::index_pending`).
    #[inline]
    pub fn touch(&self) -> u64 {
        self.tail.last().copied().unwrap_or(0) ^ self.len as u64
    }

    /// Inserts `v`, whose key is `k` (`keys.key(v) == k`: the caller has it at hand, and an
    /// append, nearly every insert, then compares it with `last` without a lookup); a key
    /// already present keeps its old value (keys are unique ids).
    pub fn insert(&mut self, k: K, v: u64, keys: &impl Keys<K>) {
        debug_assert!(keys.key(v) == k, "the key given is the value's key");
        if self.last.is_none_or(|lk| k > lk) {
            let n = self.tail.len();
            if n >= CHUNK {
                let full = std::mem::replace(&mut self.tail, Vec::with_capacity(CHUNK));
                self.chunks.push(full);
            } else {
                room_for_one(&mut self.tail);
            }
            self.tail.push(v);
            self.last = Some(k);
            self.len += 1;
            return;
        }
        // Before the greatest key: into its chunk, which splits in two when full. A late
        // insert nearly always lands near the end of the tail (a batch committed just after a
        // newer one), so the tail is searched from its end, where the keys it looks up belong
        // to recent events, warm in cache.
        let (ci, pos) = match gallop_back(&self.tail, &k, keys) {
            Ok(_) => return,
            Err(pos) if pos > 0 || self.chunks.is_empty() => (self.chunks.len(), pos),
            Err(_) => {
                let ci = self.chunk_before_tail(&k, keys);
                match self.chunks[ci].binary_search_by(|&x| keys.key(x).cmp(&k)) {
                    Ok(_) => return,
                    Err(pos) => (ci, pos),
                }
            }
        };
        let in_tail = ci == self.chunks.len();
        let c = if in_tail {
            &mut self.tail
        } else {
            &mut self.chunks[ci]
        };
        self.len += 1;
        if c.len() - pos > MAX_SHIFT && pos > MAX_SHIFT {
            // Far from both ends of the chunk: split it here instead of shifting many entries.
            // A late batch arrives in key order, so the keys after this one land at the end of
            // this chunk, where they are pushed, not shifted in. (Both parts keep more than
            // MAX_SHIFT entries, so a backfill between old keys cannot make tiny chunks.)
            let upper = c.split_off(pos);
            if c.capacity() > 4 * pos {
                c.shrink_to(2 * pos);
            }
            room_for_one(c);
            c.push(v);
            if in_tail {
                let lower = std::mem::replace(&mut self.tail, upper);
                self.chunks.push(lower);
            } else {
                self.chunks.insert(ci + 1, upper);
            }
            return;
        }
        if c.len() < CHUNK {
            room_for_one(c);
            c.insert(pos, v);
            return;
        }
        // Full: split in two first (a full chunk never regrows), then insert into the half
        // the key belongs in. The lower half of the tail moves out, so the tail keeps its
        // room for appends.
        let half = c.len() / 2;
        if in_tail {
            let mut lower: Vec<u64> = self.tail.drain(..half).collect();
            if pos <= half {
                lower.insert(pos, v);
            } else {
                self.tail.insert(pos - half, v);
            }
            self.chunks.push(lower);
        } else {
            let mut upper = c.split_off(half);
            if pos <= half {
                c.insert(pos, v);
            } else {
                upper.insert(pos - half, v);
            }
            self.chunks.insert(ci + 1, upper);
        }
    }

    /// Position of the first entry not before `lo`, normalised forward.
    fn lower(&self, lo: Bound<&K>, keys: &impl Keys<K>) -> Pos {
        let (ci, off) = match lo {
            Bound::Unbounded => (0, 0),
            Bound::Included(k) => {
                let ci = self.chunk_for(k, keys);
                (
                    ci,
                    self.chunk(ci)
                        .map_or(0, |c| c.partition_point(|&x| keys.key(x) < *k)),
                )
            }
            Bound::Excluded(k) => {
                let ci = self.chunk_for(k, keys);
                (
                    ci,
                    self.chunk(ci)
                        .map_or(0, |c| c.partition_point(|&x| keys.key(x) <= *k)),
                )
            }
        };
        self.forward(Pos { chunk: ci, off })
    }

    /// Position just past the last entry before `hi`, normalised backward.
    fn upper(&self, hi: Bound<&K>, keys: &impl Keys<K>) -> Pos {
        let (ci, off) = match hi {
            Bound::Unbounded => (self.chunks.len(), self.tail.len()),
            Bound::Included(k) => {
                let ci = self.chunk_for(k, keys);
                (
                    ci,
                    self.chunk(ci)
                        .map_or(0, |c| c.partition_point(|&x| keys.key(x) <= *k)),
                )
            }
            Bound::Excluded(k) => {
                let ci = self.chunk_for(k, keys);
                (
                    ci,
                    self.chunk(ci)
                        .map_or(0, |c| c.partition_point(|&x| keys.key(x) < *k)),
                )
            }
        };
        self.backward(Pos { chunk: ci, off })
    }

    fn forward(&self, mut p: Pos) -> Pos {
        while p.chunk < self.chunk_count() && p.off >= self.chunk(p.chunk).map_or(0, |c| c.len()) {
            p.chunk += 1;
            p.off = 0;
        }
        p
    }

    fn backward(&self, mut p: Pos) -> Pos {
        while p.off == 0 && p.chunk > 0 {
            p.chunk -= 1;
            p.off = self.chunk(p.chunk).map_or(0, |c| c.len());
        }
        p
    }

    /// The entries with `lo ≤ key < hi` (per the bounds), in key order, from either end, each
    /// as `(key, value)`.
    pub fn range<'a, S: Keys<K>>(
        &'a self,
        lo: Bound<&K>,
        hi: Bound<&K>,
        keys: &'a S,
    ) -> Range<'a, K, S> {
        Range {
            idx: self,
            keys,
            front: self.lower(lo, keys),
            back: self.upper(hi, keys),
        }
    }
}

/// `binary_search` of `k` in a sorted chunk, probing from its end: the entries 1, 2, 4, 8 …
/// from the end until one is not after `k`, then a binary search between the last two probes.
/// An insertion point `d` entries from the end costs about 2·log2(d) key lookups, all of them
/// recent entries.
fn gallop_back<K: Ord + Copy>(c: &[u64], k: &K, keys: &impl Keys<K>) -> Result<usize, usize> {
    let mut hi = c.len(); // every entry from `hi` on is after `k`
    let mut step = 1;
    while hi > 0 {
        let i = hi.saturating_sub(step);
        let Some(&v) = c.get(i) else { break };
        match keys.key(v).cmp(k) {
            std::cmp::Ordering::Equal => return Ok(i),
            std::cmp::Ordering::Less => {
                let lo = i + 1;
                let window = c.get(lo..hi).unwrap_or(&[]);
                return match window.binary_search_by(|&x| keys.key(x).cmp(k)) {
                    Ok(j) => Ok(lo + j),
                    Err(j) => Err(lo + j),
                };
            }
            std::cmp::Ordering::Greater => {
                hi = i;
                step *= 2;
            }
        }
    }
    Err(0)
}

/// Makes room for one more entry in a chunk of fewer than [`CHUNK`]: grows it by half (a
/// `Vec` doubles), never past a full chunk. Most indexes are small (one per actor), and spare
/// room is memory.
fn room_for_one<E>(c: &mut Vec<E>) {
    let n = c.len();
    if n == c.capacity() {
        c.reserve_exact((n / 2).max(4).min(CHUNK.saturating_sub(n).max(1)));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pos {
    chunk: usize,
    off: usize,
}

/// A range of a [`ChunkIndex`]: `front` is the next entry forward (inclusive), `back` the
/// end (exclusive).
pub struct Range<'a, K, S> {
    idx: &'a ChunkIndex<K>,
    keys: &'a S,
    front: Pos,
    back: Pos,
}

impl<K, S> Range<'_, K, S> {
    fn is_empty(&self) -> bool {
        (self.front.chunk, self.front.off) >= (self.back.chunk, self.back.off)
    }
}

impl<K: Ord + Copy, S> Range<'_, K, S> {
    /// The next entry's value alone, without looking its key up: a walk that only needs the
    /// values reads nothing but the index's chunks.
    pub fn next_value(&mut self) -> Option<u64> {
        if self.is_empty() {
            return None;
        }
        let v = *self.idx.chunk(self.front.chunk)?.get(self.front.off)?;
        self.front.off += 1;
        self.front = self.idx.forward(self.front);
        Some(v)
    }
}

impl<K: Ord + Copy, S: Keys<K>> Iterator for Range<'_, K, S> {
    type Item = (K, u64);

    fn next(&mut self) -> Option<Self::Item> {
        let v = self.next_value()?;
        Some((self.keys.key(v), v))
    }
}

impl<K: Ord + Copy, S: Keys<K>> DoubleEndedIterator for Range<'_, K, S> {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.is_empty() {
            return None;
        }
        self.back.off = self.back.off.checked_sub(1)?;
        let v = *self.idx.chunk(self.back.chunk)?.get(self.back.off)?;
        self.back = self.idx.backward(self.back);
        Some((self.keys.key(v), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    /// Keys of the tests' entries: value `i` has key `table[i]`.
    struct Table<'a>(&'a [u32]);

    impl Keys<u32> for Table<'_> {
        fn key(&self, v: u64) -> u32 {
            self.0[v as usize]
        }
    }

    /// The layout's invariants: chunks non-empty (but an empty index's tail) and in key order,
    /// `last` the greatest key, `len` the entries, and capacity within a small factor of use.
    fn check_layout(ci: &ChunkIndex<u32>, table: &Table) {
        let all: Vec<&[u64]> = (0..ci.chunk_count()).filter_map(|i| ci.chunk(i)).collect();
        assert_eq!(all.len(), ci.chunk_count());
        assert!(ci.chunks.iter().all(|c| !c.is_empty()));
        assert!(!ci.tail.is_empty() || ci.len == 0);
        let keys: Vec<u32> = all
            .iter()
            .flat_map(|c| c.iter().map(|&v| table.key(v)))
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "chunks out of order");
        assert_eq!(keys.len(), ci.len);
        assert_eq!(ci.last, keys.last().copied());
        assert!(all.iter().all(|c| c.len() <= CHUNK));
        let cap: usize = ci.chunks.iter().map(|c| c.capacity()).sum::<usize>() + ci.tail.capacity();
        assert!(
            cap <= 3 * ci.len + 2 * CHUNK + 64 * ci.chunk_count(),
            "capacity {cap} for {} entries in {} chunks",
            ci.len,
            ci.chunk_count()
        );
    }

    fn check(keys: &[u32], probes: &[(u32, u32, u8)]) {
        let table = Table(keys);
        let mut ci = ChunkIndex::default();
        let mut bt = BTreeMap::new();
        for (i, k) in keys.iter().enumerate() {
            ci.insert(*k, i as u64, &table);
            bt.entry(*k).or_insert(i as u64);
        }
        check_layout(&ci, &table);
        assert_eq!(ci.len(), bt.len());
        let all: Vec<_> = ci
            .range(Bound::Unbounded, Bound::Unbounded, &table)
            .collect();
        assert_eq!(all, bt.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
        for &(a, b, kind) in probes {
            let lo = match kind % 3 {
                0 => Bound::Included(&a),
                1 => Bound::Excluded(&a),
                _ => Bound::Unbounded,
            };
            let hi = match (kind / 3) % 3 {
                0 => Bound::Included(&b),
                1 => Bound::Excluded(&b),
                _ => Bound::Unbounded,
            };
            let valid = match (lo, hi) {
                (Bound::Unbounded, _) | (_, Bound::Unbounded) => true,
                (Bound::Included(x), Bound::Included(y)) => x <= y,
                (Bound::Excluded(x), Bound::Excluded(y)) => x < y,
                (Bound::Included(x), Bound::Excluded(y))
                | (Bound::Excluded(x), Bound::Included(y)) => x < y,
            };
            let got: Vec<_> = ci.range(lo, hi, &table).collect();
            let got_rev: Vec<_> = ci.range(lo, hi, &table).rev().collect();
            let want: Vec<_> = if valid {
                bt.range::<u32, _>((lo, hi))
                    .map(|(k, v)| (*k, *v))
                    .collect()
            } else {
                Vec::new()
            };
            assert_eq!(got, want, "{lo:?}..{hi:?}");
            // Values alone: the same entries.
            let mut r = ci.range(lo, hi, &table);
            let values: Vec<u64> = std::iter::from_fn(|| r.next_value()).collect();
            let want_values: Vec<u64> = want.iter().map(|(_, v)| *v).collect();
            assert_eq!(values, want_values, "values {lo:?}..{hi:?}");
            let mut want_rev = want.clone();
            want_rev.reverse();
            assert_eq!(got_rev, want_rev, "rev {lo:?}..{hi:?}");
            // Mixed ends meet in the middle without repeating.
            let mut r = ci.range(lo, hi, &table);
            let mut mixed = Vec::new();
            let mut tail = Vec::new();
            while let Some(x) = r.next() {
                mixed.push(x);
                match r.next_back() {
                    Some(x) => tail.push(x),
                    None => break,
                }
            }
            tail.reverse();
            mixed.extend(tail);
            assert_eq!(mixed, want);
        }
    }

    #[test]
    fn ascending_descending_and_backfill_match_a_btreemap() {
        let asc: Vec<u32> = (0..20_000).map(|i| i * 3).collect();
        let desc: Vec<u32> = (0..10_000).rev().collect();
        let mut mixed: Vec<u32> = (0..10_000).map(|i| i * 2 + 1).collect();
        mixed.extend((0..9_000).map(|i| i * 2)); // a backfill into full chunks
        let probes: Vec<(u32, u32, u8)> = (0..60)
            .map(|i| (i * 997 % 60_000, (i * 1999 + 5000) % 60_000, (i % 9) as u8))
            .collect();
        check(&asc, &probes);
        check(&desc, &probes);
        check(&mixed, &probes);
        check(&[], &probes);
    }

    /// What clients do: batches of ascending keys, committed a little out of order (a later
    /// batch first), each spanning many chunks or a few entries.
    fn late_batches(batches: &[(u16, u8)], swaps: &[u16]) -> Vec<u32> {
        let mut out: Vec<Vec<u32>> = Vec::new();
        let mut next = 0u32;
        for &(len, gap) in batches {
            out.push(
                (0..len as u32)
                    .map(|i| next + i * (gap as u32 + 1))
                    .collect(),
            );
            next += len as u32 * (gap as u32 + 1) / 2 + 1; // overlaps the next batch
        }
        for &s in swaps {
            let i = s as usize % out.len().max(1);
            if i + 1 < out.len() {
                out.swap(i, i + 1);
            }
        }
        out.concat()
    }

    #[test]
    fn layout_stays_compact_for_random_and_descending_inserts() {
        let mut x = 12345u32;
        let random: Vec<u32> = (0..50_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            })
            .collect();
        let probes = [(0, u32::MAX, 0), (1 << 30, 3 << 30, 4)];
        check(&random, &probes);
        let descending: Vec<u32> = (0..50_000).rev().collect();
        check(&descending, &probes);
        let sawtooth: Vec<u32> = (0..50_000).map(|i| (i % 700) * 1000 + i / 700).collect();
        check(&sawtooth, &probes);
    }

    proptest! {
        /// Probing from the end finds what a binary search finds, for keys anywhere.
        #[test]
        fn gallop_back_is_a_binary_search(
            mut keys in proptest::collection::vec(0u32..5000, 0..600),
            probes in proptest::collection::vec(0u32..5100, 1..40),
        ) {
            keys.sort_unstable();
            keys.dedup();
            let table = Table(&keys);
            let values: Vec<u64> = (0..keys.len() as u64).collect();
            for k in probes {
                prop_assert_eq!(gallop_back(&values, &k, &table), keys.binary_search(&k), "key {}", k);
            }
        }

        #[test]
        fn late_batches_match_a_btreemap(
            batches in proptest::collection::vec((1u16..1500, 0u8..3), 1..12),
            swaps in proptest::collection::vec(any::<u16>(), 0..8),
            probes in proptest::collection::vec((0u32..20_000, 0u32..20_000, 0u8..9), 1..10),
        ) {
            check(&late_batches(&batches, &swaps), &probes);
        }

        #[test]
        fn random_inserts_and_ranges_match_a_btreemap(
            keys in proptest::collection::vec(0u32..3000, 0..9000),
            probes in proptest::collection::vec((0u32..3100, 0u32..3100, 0u8..9), 1..20),
        ) {
            check(&keys, &probes);
        }
    }
}
