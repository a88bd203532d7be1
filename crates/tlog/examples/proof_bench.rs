//! Rough throughput figures for an in-memory tree of 1,000,000 leaves:
//! building it, streaming its root, and producing + verifying inclusion
//! proofs. Not a test; run it in release:
//!
//! ```text
//! cargo run --release --example proof_bench [LEAVES] [PROOFS]
//! ```

use std::hint::black_box;
use std::time::Instant;

use trailkeep_tlog::hash::leaf_hash;
use trailkeep_tlog::tree::{prove_inclusion, root_from_leaves, verify_inclusion, MemoryHashes};

fn main() {
    let mut args = std::env::args().skip(1);
    let leaves: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let proofs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);

    let t = Instant::now();
    let leaf_hashes: Vec<_> = (0..leaves)
        .map(|i| leaf_hash(format!("{{\"event_id\":\"evt_{i:012}\"}}").as_bytes()))
        .collect();
    let hashing = t.elapsed();

    let t = Instant::now();
    let tree = MemoryHashes::from_leaves(leaf_hashes.iter().copied());
    let build = t.elapsed();

    let t = Instant::now();
    let (n, root) = root_from_leaves(leaf_hashes.iter().copied());
    let stream = t.elapsed();
    assert_eq!((n, root), (tree.tree_size(), tree.root()));

    // Pseudo-random indexes (xorshift), so proofs hit all of the tree.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % leaves
    };
    let indexes: Vec<u64> = (0..proofs).map(|_| next()).collect();

    let t = Instant::now();
    let mut total_len = 0usize;
    for &i in &indexes {
        let p = prove_inclusion(leaves, i, &tree).expect("proof");
        total_len += black_box(p).len();
    }
    let prove = t.elapsed();

    let generated: Vec<_> = indexes
        .iter()
        .take(20_000)
        .map(|&i| prove_inclusion(leaves, i, &tree).expect("proof"))
        .collect();
    let t = Instant::now();
    for (p, &i) in generated.iter().zip(&indexes) {
        verify_inclusion(i, leaves, &leaf_hashes[i as usize], p, &root).expect("verifies");
    }
    let verify = t.elapsed();

    let per_sec = |count: u64, d: std::time::Duration| count as f64 / d.as_secs_f64();
    println!(
        "tree of {leaves} leaves, {} stored hashes",
        tree.stored().len()
    );
    println!(
        "  leaf hashing            {:>8.1} ms",
        hashing.as_secs_f64() * 1e3
    );
    println!(
        "  MemoryHashes build      {:>8.1} ms",
        build.as_secs_f64() * 1e3
    );
    println!(
        "  root_from_leaves        {:>8.1} ms",
        stream.as_secs_f64() * 1e3
    );
    println!(
        "  prove_inclusion         {:>8.0} proofs/s ({proofs} proofs, avg {:.1} hashes)",
        per_sec(proofs, prove),
        total_len as f64 / proofs as f64
    );
    println!(
        "  verify_inclusion        {:>8.0} proofs/s ({} proofs)",
        per_sec(generated.len() as u64, verify),
        generated.len()
    );
}
