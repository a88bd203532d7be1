//! Writes and verifies an evidence bundle of N synthetic events (default 1,000,000) and
//! reports the times:
//!
//! ```sh
//! cargo run -p trailkeep-export --release --example bundle_bench -- 1000000 /tmp/bench.tar
//! trailkeep verify /tmp/bench.tar --public-key "$(cat /tmp/bench.tar.vkey)"
//! ```
//!
//! Events look like real ones (envelope, a small payload, a source IP on some); the tree is
//! built in memory; the bundle covers the whole log, so leaves.bin holds every leaf. A third
//! argument K leaves out K events at each end (seqs K..N-K only), for a non-empty range proof.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::time::Instant;

use trailkeep_core::leaf::stored_event_leaf_hash;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};
use trailkeep_export::bundle::{verify_bundle, BundleInputs, BundleSpool};
use trailkeep_tlog::{
    prove_inclusion, range_proof, sign_checkpoint, Checkpoint, MemoryHashes, Signer,
};

fn event(seq: u64) -> StoredEvent {
    let ts = Timestamp::from_nanos(1_767_322_800_000_000_000 + seq as i64 * 1_000_000, 3);
    let mut e = StoredEvent {
        tenant_id: "t_bench".into(),
        seq,
        event_id: Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + u128::from(seq)),
        event_type: "prompt.update".into(),
        actor: format!("user:u{}@acme.example", seq % 977),
        timestamp: ts,
        timestamp_assigned: false,
        received_at: ts,
        source_ip: seq.is_multiple_of(3).then(|| "203.0.113.7".to_string()),
        impersonation_session: None,
        approval_id: None,
        payload: Some(
            format!(
                r#"{{"after":{{"prompt_hash":"sha256:{:064x}"}},"editor":"user:u{}@acme.example","prompt_id":"pr_{}","reason":"tone fix"}}"#,
                seq,
                seq % 977,
                seq % 101
            )
            .into_bytes(),
        ),
        payload_salt: Some([(seq % 251) as u8; 32]),
        payload_commitment: None,
        leaf_hash: [0; 32],
    };
    e.leaf_hash = stored_event_leaf_hash(&e).unwrap_or_default();
    e
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(1_000_000);
    let path = args.next().unwrap_or_else(|| "bench-bundle.tar".into());
    let gzip = path.ends_with(".gz");
    let skip: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(0);
    let signer = Signer::from_seed("trailkeep/bench", [7; 32])?;

    let t = Instant::now();
    let events: Vec<StoredEvent> = (0..n).map(event).collect();
    let tree = MemoryHashes::from_leaves(events.iter().map(|e| e.leaf_hash));
    println!("synthetic log of {n} events: {:.2?}", t.elapsed());

    let t = Instant::now();
    let mut spool = BundleSpool::new(None)?;
    let inner = events
        .get(skip..events.len().saturating_sub(skip))
        .unwrap_or(&[]);
    for e in inner {
        spool.push(e)?;
    }
    let (a, b) = spool.seq_span().ok_or("no events")?;
    for chunk in inner.chunks(10_000) {
        let leaves: Vec<_> = chunk.iter().map(|e| e.leaf_hash).collect();
        spool.push_leaves(&leaves)?;
    }
    let first = prove_inclusion(n, a, &tree)?;
    let last = prove_inclusion(n, b - 1, &tree)?;
    let origin = "trailkeep/bench/t_bench";
    let checkpoint = sign_checkpoint(&Checkpoint::new(origin, n, tree.root()), &signer)?;
    let bundle = spool.finish(
        BundleInputs {
            tenant_id: "t_bench".into(),
            origin: origin.into(),
            since: None,
            until: None,
            created_at: "2026-12-04T10:00:00Z".into(),
            checkpoint,
            tree_size: n,
            first_checkpoint: None,
            consistency_proof: vec![],
            range_proof: range_proof(a, b, n, &first, &last)?,
            public_key: signer.verifier().to_vkey(),
        },
        &signer,
    )?;
    let spooled = t.elapsed();
    let t = Instant::now();
    let out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
    bundle
        .write_tar(out, gzip)?
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    let written = t.elapsed();
    let bytes = std::fs::metadata(&path)?.len();
    std::fs::write(format!("{path}.vkey"), signer.verifier().to_vkey())?;
    println!(
        "write: spool + checks + sign {spooled:.2?}, tar{} {written:.2?} ({:.1} MB)",
        if gzip { ".gz" } else { "" },
        bytes as f64 / 1e6
    );

    let t = Instant::now();
    let report = verify_bundle(
        BufReader::with_capacity(1 << 20, File::open(&path)?),
        Some(&signer.verifier()),
    )?;
    println!(
        "verify: {} events in {:.2?}",
        report.manifest.count,
        t.elapsed()
    );
    Ok(())
}
