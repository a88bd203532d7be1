//! `trailkeep-bench proofs`: inclusion-proof generation straight from the embedded store on a
//! large log (issue 3: ≥ 20,000 proofs/s on a 1M-leaf log). Every proof is also verified against
//! the tree root, so a fast wrong answer cannot pass.

use anyhow::{bail, Result};
use std::sync::Arc;
use std::time::Instant;
use trailkeep_core::validate::validate_object;
use trailkeep_core::Timestamp;
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::{PreparedEvent, Store};

pub async fn run(events: u64, proofs: u64, threads: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> =
        Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default())?);
    let now = Timestamp::now_micros();
    let t0 = Instant::now();
    let mut done = 0u64;
    while done < events {
        let n = (events - done).min(10_000);
        let batch: Vec<PreparedEvent> = (0..n)
            .map(|i| {
                let v = serde_json::json!({"event_type": "bench.proof", "actor": "svc:bench",
                    "tenant_id": "t_proofs", "payload": {"i": done + i}});
                let serde_json::Value::Object(m) = v else {
                    unreachable!()
                };
                let e = validate_object(0, m, now).map_err(|i| anyhow::anyhow!("{i:?}"))?;
                Ok(PreparedEvent::new(e, now))
            })
            .collect::<Result<_>>()?;
        store.append(batch).await?;
        done += n;
    }
    let load_s = t0.elapsed().as_secs_f64();
    let size = store.tree_size("t_proofs").await?;
    let root = store.tree_root("t_proofs", size).await?;
    println!(
        "loaded {size} leaves in {load_s:.1} s ({:.0} events/s)",
        size as f64 / load_s
    );

    let t1 = Instant::now();
    let per = proofs / threads as u64;
    let mut tasks = Vec::new();
    for w in 0..threads {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1);
            let mut out = Vec::with_capacity(per as usize);
            for _ in 0..per {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = x % size;
                out.push((i, store.inclusion_proof("t_proofs", i, size).await?));
            }
            anyhow::Ok(out)
        }));
    }
    let mut generated = Vec::new();
    for t in tasks {
        generated.extend(t.await??);
    }
    let s = t1.elapsed().as_secs_f64();
    let rate = (per * threads as u64) as f64 / s;
    // Every generated proof is checked (untimed) against the leaf and the root.
    for (i, proof) in &generated {
        let leaf = store.leaves("t_proofs", *i, i + 1).await?;
        trailkeep_tlog::verify_inclusion(*i, size, &leaf[0], proof, &root)
            .map_err(|e| anyhow::anyhow!("proof {i} does not verify: {e}"))?;
    }
    println!("{} inclusion proofs generated (all verified afterwards) in {s:.2} s: {rate:.0} proofs/s with {threads} threads", per * threads as u64);
    println!(
        "RESULT proofs leaves={size} proofs={} proofs_per_s={rate:.0} load_events_per_s={:.0}",
        per * threads as u64,
        size as f64 / load_s
    );
    if size != events {
        bail!("expected {events} leaves, found {size}");
    }
    store.shutdown().await;
    Ok(())
}

/// Writes `out/{events.ndjson,checkpoint.txt,public-key.txt}`: `events` events of tenant
/// `t_bench` as the API returns them (prompt updates, crawls, logins in turn), the tree's
/// signed checkpoint at their count, and the verifier key.
pub fn verify_dir(events: u64, out: &std::path::Path) -> Result<()> {
    use std::io::Write;
    use trailkeep_core::StoredEvent;
    std::fs::create_dir_all(out)?;
    let signer = trailkeep_tlog::Signer::from_seed("trailkeep/bench", [7u8; 32])?;
    let now = Timestamp::now_micros();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("events.ndjson"))?);
    let mut leaves = Vec::with_capacity(events as usize);
    let mut line = Vec::with_capacity(1024);
    for seq in 0..events {
        let h = format!("sha256:{:064x}", seq);
        let (t, payload) = match seq % 3 {
            0 => (
                "prompt.update",
                serde_json::json!({"prompt_id": format!("pr_{}", seq % 30),
                "before": {"prompt_hash": h}, "after": {"prompt_hash": h}, "editor": "user:ana3@acme.example", "reason": "tone fix"}),
            ),
            1 => (
                "crawl.run",
                serde_json::json!({"domain": "docs.acme.example", "run_id": format!("run_{seq}"),
                "pages_crawled": seq % 5000, "pages_failed": 0, "status": "success", "trigger": "schedule"}),
            ),
            _ => (
                "auth.login",
                serde_json::json!({"method": "sso", "success": true}),
            ),
        };
        let v = serde_json::json!({"event_type": t, "actor": "user:ana3@acme.example", "tenant_id": "t_bench",
            "payload": payload, "source_ip": "203.0.113.7"});
        let serde_json::Value::Object(m) = v else {
            unreachable!()
        };
        let e = validate_object(0, m, now).map_err(|i| anyhow::anyhow!("{i:?}"))?;
        let p = PreparedEvent::new(e, now);
        let ev = p.event;
        let stored = StoredEvent {
            tenant_id: ev.tenant_id.to_string(),
            seq,
            event_id: ev.event_id,
            event_type: ev.event_type.to_string(),
            actor: ev.actor.to_string(),
            timestamp: ev.timestamp,
            timestamp_assigned: ev.timestamp_assigned,
            received_at: p.received_at,
            source_ip: ev.source_ip.map(String::from),
            impersonation_session: ev.impersonation_session.map(String::from),
            approval_id: ev.approval_id.map(String::from),
            payload: Some(ev.payload.to_vec()),
            payload_salt: Some(p.salt),
            payload_commitment: None,
            leaf_hash: p.leaf_hash,
        };
        leaves.push(p.leaf_hash);
        line.clear();
        trailkeep_core::render::write_event(&mut line, &stored);
        line.push(b'\n');
        f.write_all(&line)?;
    }
    f.flush()?;
    let (n, root) = trailkeep_tlog::root_from_leaves(leaves.into_iter());
    let cp = trailkeep_tlog::Checkpoint::new("trailkeep/bench/t_bench", n, root);
    std::fs::write(
        out.join("checkpoint.txt"),
        trailkeep_tlog::sign_checkpoint(&cp, &signer)?,
    )?;
    std::fs::write(
        out.join("public-key.txt"),
        signer.verifier().to_vkey() + "\n",
    )?;
    println!("wrote {n} events to {}", out.display());
    Ok(())
}
