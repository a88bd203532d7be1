//! Embedded-only: the integrity checks at open and the write-failure path.
//!
//! - a log behind its high-water mark (tail segment deleted, blocks cut off its end, a block
//!   taken out of the middle) is refused, naming what is missing, unless the operator accepts
//!   it, which is recorded as `log.restored`;
//! - an event rewritten on disk with its block CRC and leaf hash recomputed quarantines its
//!   tenant (the rebuilt tree no longer has the signed checkpoint's root), the others are served;
//! - the signing key is pinned in the log; another key is refused unless rotated, which is
//!   recorded as `log.key_rotated`;
//! - a write that fails (disk full, failed fsync) is cut back before it is answered: after a
//!   restart the stored events are exactly the acknowledged ones, and later writes succeed
//!   once there is room again. Tested with an injected fault and on a real full tmpfs.

use crate::helpers::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trailkeep_core::{StoredEvent, Uuid};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore, Faults};
use trailkeep_store::{EventQuery, Order, SignedCheckpoint, Store, StoreError};
use trailkeep_tlog::{sign_checkpoint, Checkpoint, Signer};

fn seg_path(dir: &Path, n: u32) -> PathBuf {
    dir.join("log").join(format!("{n:08}.seg"))
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

fn plain() -> EmbeddedOptions {
    EmbeddedOptions {
        dict_train_events: 0,
        ..Default::default()
    }
}

fn open(dir: &Path, opts: EmbeddedOptions) -> EmbeddedStore {
    // The data directory's lock is an open file: a process that a concurrent test spawns (the
    // tmpfs test runs `mount`) holds a copy of it between fork and exec. Try again briefly.
    for _ in 0..50 {
        match EmbeddedStore::open(dir, opts.clone()) {
            Err(e) if e.to_string().contains("another trailkeep process") => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            other => return other.unwrap_or_else(|e| panic!("open {}: {e}", dir.display())),
        }
    }
    panic!("open {}: the data directory stays locked", dir.display())
}

fn refused(dir: &Path, opts: EmbeddedOptions, why: &str) -> String {
    match EmbeddedStore::open(dir, opts) {
        Ok(_) => panic!("{why}: the store opened"),
        Err(e) => e.to_string(),
    }
}

async fn close(store: EmbeddedStore) {
    store.shutdown().await;
}

/// Appends one request of `n` events to `tenant`; their ids.
async fn put(store: &EmbeddedStore, tenant: &str, n: usize) -> Vec<Uuid> {
    let batch: Vec<_> = (0..n).map(|_| prep(ev(tenant, "int.x", |_| {}))).collect();
    let ids = batch.iter().map(|p| p.event.event_id).collect();
    store.append(batch).await.unwrap();
    ids
}

async fn log_of(store: &EmbeddedStore, tenant: &str) -> Vec<StoredEvent> {
    store.read_log(tenant, 0, 1_000_000).await.unwrap()
}

/// The `_global` events of a type trailkeep wrote itself.
async fn own_events(store: &EmbeddedStore, event_type: &str) -> Vec<StoredEvent> {
    let page = store
        .query(EventQuery {
            tenant_id: Some("_global".into()),
            limit: 100,
            order: Order::Asc,
            ..Default::default()
        })
        .await
        .unwrap();
    page.events
        .into_iter()
        .filter(|e| e.event_type == event_type)
        .collect()
}

fn payload(e: &StoredEvent) -> serde_json::Value {
    serde_json::from_slice(e.payload.as_ref().expect("payload")).unwrap()
}

/// A signed checkpoint of `tenant`'s tree at its current size, stored.
async fn checkpoint(store: &EmbeddedStore, signer: &Signer, tenant: &str) -> SignedCheckpoint {
    let size = store.tree_size(tenant).await.unwrap();
    let root = store.tree_root(tenant, size).await.unwrap();
    let cp = Checkpoint::new(format!("trailkeep/test/{tenant}"), size, root);
    let note = sign_checkpoint(&cp, signer).unwrap();
    let scp = SignedCheckpoint { size, root, note };
    store.put_checkpoint(tenant, scp.clone()).await.unwrap();
    scp
}

fn signer(seed: u8) -> Signer {
    Signer::from_seed("trailkeep/test", [seed; 32]).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Rolled back

#[tokio::test]
async fn a_deleted_tail_segment_is_refused_until_the_restore_is_accepted_and_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_bytes: 2048,
        ..plain()
    };
    let t = tenant("int-seg");
    let s = open(dir.path(), opts.clone());
    let sg = signer(1);
    s.claim_signing_key(&sg.verifier().to_vkey(), false)
        .unwrap();
    for _ in 0..12 {
        put(&s, &t, 4).await;
    }
    checkpoint(&s, &sg, &t).await;
    for _ in 0..6 {
        put(&s, &t, 4).await;
    }
    let size = s.tree_size(&t).await.unwrap();
    close(s).await;
    let mut last = 1;
    while seg_path(dir.path(), last + 1).exists() {
        last += 1;
    }
    assert!(last >= 3, "the log spans several segments ({last})");
    std::fs::remove_file(seg_path(dir.path(), last)).unwrap();

    let err = refused(dir.path(), opts.clone(), "tail segment deleted");
    assert!(err.contains("behind its high-water mark"), "{err}");
    assert!(
        err.contains(&format!("{last:08}.seg")),
        "names the segment: {err}"
    );
    assert!(
        err.contains(&format!("tenant {t} had {size} events")),
        "{err}"
    );
    assert!(err.contains("--accept-restored-log"), "{err}");
    // Still refused the second time: the refusal changed nothing.
    refused(dir.path(), opts.clone(), "tail segment deleted, again");

    let s = open(
        dir.path(),
        EmbeddedOptions {
            accept_rollback: true,
            ..opts.clone()
        },
    );
    let restored = own_events(&s, "log.restored").await;
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].actor, "trailkeep");
    let p = payload(&restored[0]);
    let missing = p["missing"].to_string();
    assert!(missing.contains(&format!("tenant {t}")), "{p}");
    assert!(s.tree_size(&t).await.unwrap() < size);
    close(s).await;
    // Accepted once: the mark starts over from the restored log.
    let s = open(dir.path(), opts);
    assert_eq!(own_events(&s, "log.restored").await.len(), 1);
    close(s).await;
}

/// Durable lengths after each request, so blocks can be cut off at their boundaries.
async fn blocks(dir: &Path, s: &EmbeddedStore, tenants: &[&str]) -> Vec<u64> {
    let mut ends = vec![file_len(&seg_path(dir, 1))];
    for t in tenants {
        put(s, t, 3).await;
        ends.push(file_len(&seg_path(dir, 1)));
    }
    ends
}

#[tokio::test]
async fn whole_blocks_cut_off_the_end_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("int-cut");
    let s = open(dir.path(), plain());
    let mut ends = blocks(dir.path(), &s, &[&t, &t, &t, &t]).await;
    checkpoint(&s, &signer(9), &t).await;
    ends.push(file_len(&seg_path(dir.path(), 1)));
    close(s).await;
    let seg = seg_path(dir.path(), 1);
    let full = std::fs::read(&seg).unwrap();
    // Only the checkpoint's block.
    std::fs::write(&seg, &full[..ends[4] as usize]).unwrap();
    let err = refused(dir.path(), plain(), "the checkpoint's block cut off");
    assert!(
        err.contains(&format!(
            "tenant {t} had a signed checkpoint of size 12, the log's latest is none"
        )),
        "{err}"
    );
    for keep in [ends[3], ends[2]] {
        std::fs::write(&seg, &full[..keep as usize]).unwrap();
        let err = refused(dir.path(), plain(), "blocks cut off the end");
        assert!(err.contains("bytes of durable log are missing"), "{err}");
        assert!(err.contains(&format!("tenant {t} had 12 events")), "{err}");
    }
    // Put back, it opens with everything.
    std::fs::write(&seg, &full).unwrap();
    let s = open(dir.path(), plain());
    assert_eq!(log_of(&s, &t).await.len(), 12);
    close(s).await;
}

#[tokio::test]
async fn a_block_removed_from_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (tenant("int-mid-a"), tenant("int-mid-b"));
    let s = open(dir.path(), plain());
    // a, b, a, b: the third block defines no symbol and no later block follows on it, so the
    // log without it still replays cleanly: only the mark can tell it is gone.
    let ends = blocks(dir.path(), &s, &[&a, &b, &a, &b]).await;
    close(s).await;
    let seg = seg_path(dir.path(), 1);
    let full = std::fs::read(&seg).unwrap();
    let mut cut = full[..ends[2] as usize].to_vec();
    cut.extend_from_slice(&full[ends[3] as usize..]);
    std::fs::write(&seg, &cut).unwrap();
    let err = refused(dir.path(), plain(), "a middle block removed");
    assert!(
        err.contains(&format!("tenant {a} had 6 events, the log holds 3")),
        "{err}"
    );
}

#[tokio::test]
async fn a_replaced_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let t = tenant("int-replaced");
    let s = open(dir.path(), plain());
    put(&s, &t, 5).await;
    close(s).await;
    let s = open(other.path(), plain());
    put(&s, &t, 9).await;
    close(s).await;
    std::fs::remove_dir_all(dir.path().join("log")).unwrap();
    std::fs::rename(other.path().join("log"), dir.path().join("log")).unwrap();
    let err = refused(dir.path(), plain(), "a different log");
    assert!(err.contains("the log was replaced"), "{err}");
}

/// The mark may trail the log (it is written after the fsync, at most every interval), never
/// lead it: a log that grew since its last mark opens, and a crash right after the fsync
/// loses nothing the mark claims.
#[tokio::test]
async fn a_log_ahead_of_its_mark_opens() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("int-ahead");
    let s = open(dir.path(), plain());
    put(&s, &t, 2).await;
    close(s).await;
    let old_mark = std::fs::read(dir.path().join("high-water")).unwrap();
    let s = open(dir.path(), plain());
    put(&s, &t, 2).await;
    close(s).await;
    std::fs::write(dir.path().join("high-water"), &old_mark).unwrap();
    let s = open(dir.path(), plain());
    assert_eq!(log_of(&s, &t).await.len(), 4);
    close(s).await;
}

// ---------------------------------------------------------------------------------------------
// Rewritten

/// Block boundaries of segment file bytes: (start of block header, end of body).
fn block_spans(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 32;
    while pos + 16 <= b.len() {
        let len = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, pos + 16 + len));
        pos += 16 + len;
    }
    out
}

/// Replaces `from` by `to` (same length) once in `b`; panics if absent.
fn replace(b: &mut [u8], from: &[u8], to: &[u8]) {
    assert_eq!(from.len(), to.len());
    let at = b
        .windows(from.len())
        .position(|w| w == from)
        .expect("bytes to replace are in the log");
    b[at..at + to.len()].copy_from_slice(to);
}

/// Rewrites event `e` in the segment: its payload, and its leaf hash recomputed to match, and
/// every block's CRC recomputed: a careful forger's edit, which only the signed checkpoint
/// can reveal.
fn forge(seg: &Path, e: &StoredEvent, from: &str, to: &str) {
    let mut b = std::fs::read(seg).unwrap();
    let mut forged = e.clone();
    let p = String::from_utf8(e.payload.clone().unwrap()).unwrap();
    assert!(p.contains(from), "{p}");
    forged.payload = Some(p.replace(from, to).into_bytes());
    let leaf = trailkeep_core::leaf::stored_event_leaf_hash(&forged).unwrap();
    replace(&mut b, from.as_bytes(), to.as_bytes());
    replace(&mut b, &e.leaf_hash, &leaf);
    for (start, end) in block_spans(&b) {
        let crc = crc32fast::hash(&b[start + 16..end]);
        b[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(seg, &b).unwrap();
}

#[tokio::test]
async fn an_event_rewritten_with_its_crc_and_leaf_recomputed_quarantines_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let (t, other) = (tenant("int-forged"), tenant("int-honest"));
    let s = open(dir.path(), plain());
    let sg = signer(2);
    s.claim_signing_key(&sg.verifier().to_vkey(), false)
        .unwrap();
    let victim = prep(ev(&t, "int.pay", |m| {
        m.insert("payload".into(), json!({"amount": "100"}));
    }));
    let victim_id = victim.event.event_id;
    s.append(vec![victim]).await.unwrap();
    put(&s, &t, 3).await;
    put(&s, &other, 3).await;
    checkpoint(&s, &sg, &t).await;
    checkpoint(&s, &sg, &other).await;
    let e = s.get_event(victim_id).await.unwrap().unwrap();
    close(s).await;

    forge(&seg_path(dir.path(), 1), &e, "\"100\"", "\"900\"");

    let s = open(dir.path(), plain());
    let health = s.health();
    assert!(!health.writes_refused);
    let problems = health.problems.join("\n");
    assert!(
        problems.contains(&format!("tenant {t} is quarantined")),
        "{problems}"
    );
    assert!(
        problems.contains("signed checkpoint of size 4"),
        "{problems}"
    );
    assert!(!problems.contains(&other), "{problems}");
    let quarantined = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Quarantined { tenant, .. }) => assert_eq!(tenant, t, "{what}"),
        other => panic!("{what}: {other:?}"),
    };
    quarantined(s.get_event(victim_id).await.map(|_| ()), "get_event");
    quarantined(s.read_log(&t, 0, 10).await.map(|_| ()), "read_log");
    quarantined(
        s.query(EventQuery {
            tenant_id: Some(t.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .map(|_| ()),
        "query",
    );
    quarantined(s.tree_size(&t).await.map(|_| ()), "tree_size");
    quarantined(
        s.latest_checkpoint(&t).await.map(|_| ()),
        "latest_checkpoint",
    );
    quarantined(s.inclusion_proof(&t, 0, 4).await.map(|_| ()), "inclusion");
    quarantined(
        s.append(vec![prep(ev(&t, "int.x", |_| {}))])
            .await
            .map(|_| ()),
        "append",
    );
    // The other tenant is served, and takes writes.
    assert_eq!(log_of(&s, &other).await.len(), 3);
    put(&s, &other, 1).await;
    close(s).await;
}

#[tokio::test]
async fn a_checkpoint_signed_by_an_unknown_key_quarantines_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("int-badsig");
    let s = open(dir.path(), plain());
    s.claim_signing_key(&signer(3).verifier().to_vkey(), false)
        .unwrap();
    put(&s, &t, 2).await;
    // Signed by a key the log never recorded.
    checkpoint(&s, &signer(4), &t).await;
    close(s).await;
    let s = open(dir.path(), plain());
    let problems = s.health().problems.join("\n");
    assert!(
        problems.contains("does not verify with any of the log's signing keys"),
        "{problems}"
    );
    close(s).await;
}

// ---------------------------------------------------------------------------------------------
// Signing key

#[tokio::test]
async fn the_signing_key_is_pinned_and_a_rotation_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("int-key");
    let (k1, k2) = (signer(5), signer(6));
    let (v1, v2) = (k1.verifier().to_vkey(), k2.verifier().to_vkey());
    let s = open(dir.path(), plain());
    s.claim_signing_key(&v1, false).unwrap();
    put(&s, &t, 3).await;
    checkpoint(&s, &k1, &t).await;
    close(s).await;

    let s = open(dir.path(), plain());
    s.claim_signing_key(&v1, false).unwrap();
    let err = s.claim_signing_key(&v2, false).unwrap_err().to_string();
    assert!(err.contains(&v1) && err.contains(&v2), "{err}");
    assert!(err.contains("--rotate-signing-key"), "{err}");
    assert!(own_events(&s, "log.key_rotated").await.is_empty());
    s.claim_signing_key(&v2, true).unwrap();
    let rotated = own_events(&s, "log.key_rotated").await;
    assert_eq!(rotated.len(), 1);
    assert_eq!(
        payload(&rotated[0]),
        json!({"old_vkey": v1, "new_vkey": v2})
    );
    assert_eq!(s.signing_keys().unwrap(), vec![v1.clone(), v2.clone()]);
    put(&s, &t, 1).await;
    close(s).await;

    // Now the new key is the one; the old checkpoint still verifies (no quarantine).
    let s = open(dir.path(), plain());
    assert!(s.health().is_healthy(), "{:?}", s.health());
    s.claim_signing_key(&v2, false).unwrap();
    assert!(s.claim_signing_key(&v1, false).is_err());
    checkpoint(&s, &k2, &t).await;
    close(s).await;
    let s = open(dir.path(), plain());
    assert!(s.health().is_healthy(), "{:?}", s.health());
    close(s).await;
}

/// A log from before keys were recorded: the first key offered must verify its checkpoints.
#[tokio::test]
async fn an_unrecorded_key_must_verify_the_existing_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("int-unrec");
    let s = open(dir.path(), plain());
    put(&s, &t, 2).await;
    checkpoint(&s, &signer(7), &t).await;
    let err = s
        .claim_signing_key(&signer(8).verifier().to_vkey(), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--rotate-signing-key"), "{err}");
    s.claim_signing_key(&signer(7).verifier().to_vkey(), false)
        .unwrap();
    close(s).await;
}

// ---------------------------------------------------------------------------------------------
// Failed writes

/// Many small concurrent requests against a store whose writes start failing; returns the ids
/// of the acknowledged and of the refused requests.
async fn hammer(
    store: &EmbeddedStore,
    tenants: &[String],
    rounds: usize,
) -> (BTreeSet<Uuid>, BTreeSet<Uuid>) {
    let mut tasks = tokio::task::JoinSet::new();
    for (w, t) in tenants.iter().enumerate() {
        let s = store.clone();
        let t = t.clone();
        tasks.spawn(async move {
            let (mut ok, mut no) = (BTreeSet::new(), BTreeSet::new());
            for i in 0..rounds {
                let batch: Vec<_> = (0..1 + (i + w) % 3)
                    .map(|_| {
                        prep(ev(&t, "int.fill", |m| {
                            m.insert("payload".into(), json!({"pad": "x".repeat(200)}));
                        }))
                    })
                    .collect();
                let ids: Vec<Uuid> = batch.iter().map(|p| p.event.event_id).collect();
                match s.append(batch).await {
                    Ok(_) => ok.extend(ids),
                    Err(StoreError::Unavailable(_)) => no.extend(ids),
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            (ok, no)
        });
    }
    let (mut ok, mut no) = (BTreeSet::new(), BTreeSet::new());
    while let Some(r) = tasks.join_next().await {
        let (o, n) = r.unwrap();
        ok.extend(o);
        no.extend(n);
    }
    (ok, no)
}

/// Every stored event of `tenants`, checking seqs are gap-free.
async fn stored(store: &EmbeddedStore, tenants: &[String]) -> BTreeSet<Uuid> {
    let mut out = BTreeSet::new();
    for t in tenants {
        let log = log_of(store, t).await;
        for (i, e) in log.iter().enumerate() {
            assert_eq!(e.seq, i as u64, "{t}: seqs are gap-free");
        }
        out.extend(log.iter().map(|e| e.event_id));
    }
    out
}

fn assert_exactly_acknowledged(
    got: &BTreeSet<Uuid>,
    ok: &BTreeSet<Uuid>,
    no: &BTreeSet<Uuid>,
    ctx: &str,
) {
    let lost: Vec<_> = ok.difference(got).collect();
    assert!(
        lost.is_empty(),
        "{ctx}: acknowledged events missing: {lost:?}"
    );
    let ghosts: Vec<_> = no.intersection(got).collect();
    assert!(
        ghosts.is_empty(),
        "{ctx}: {} events of requests answered 503 (nothing stored) are stored",
        ghosts.len()
    );
    assert_eq!(got.len(), ok.len(), "{ctx}: nothing else is stored");
}

async fn full_disk_round(faults: Arc<Faults>, fail_syncs: bool) {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        segment_bytes: 64 * 1024,
        faults: Some(faults.clone()),
        ..plain()
    };
    let tenants: Vec<String> = (0..8).map(|i| tenant(&format!("int-full{i}"))).collect();
    let s = open(dir.path(), opts.clone());
    let (mut ok, mut no) = hammer(&s, &tenants, 5).await;
    assert!(no.is_empty());
    if fail_syncs {
        faults
            .fail_syncs
            .store(true, std::sync::atomic::Ordering::SeqCst);
    } else {
        faults.fill_disk_after(7);
    }
    let (o, n) = hammer(&s, &tenants, 30).await;
    ok.extend(o);
    no.extend(n);
    assert!(!no.is_empty(), "some writes failed");
    let ctx = if fail_syncs {
        "failed fsync"
    } else {
        "disk full"
    };
    // While it fails, nothing refused is readable either.
    assert_exactly_acknowledged(&stored(&s, &tenants).await, &ok, &no, ctx);
    // Room again: the store took itself back and writes succeed.
    faults.free_disk();
    faults
        .fail_syncs
        .store(false, std::sync::atomic::Ordering::SeqCst);
    assert!(s.health().is_healthy(), "{:?}", s.health());
    let (o, n) = hammer(&s, &tenants, 5).await;
    assert!(
        n.is_empty(),
        "{ctx}: writes succeed again once there is room"
    );
    ok.extend(o);
    assert_exactly_acknowledged(&stored(&s, &tenants).await, &ok, &no, ctx);
    close(s).await;
    let s = open(dir.path(), plain());
    assert_exactly_acknowledged(
        &stored(&s, &tenants).await,
        &ok,
        &no,
        &format!("{ctx}, restarted"),
    );
    close(s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_never_stores_a_request_answered_503_and_the_store_recovers() {
    full_disk_round(Arc::new(Faults::default()), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_fsync_never_stores_a_request_answered_503_and_the_store_recovers() {
    full_disk_round(Arc::new(Faults::default()), true).await;
}

/// The same on a real file system that runs out of space: a small tmpfs, filled up with a
/// file that is removed later. Needs root to mount; fails (never skips) without it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_real_full_file_system_never_stores_a_request_answered_503() {
    let mnt = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(mnt.path())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "this test mounts a 1 MiB tmpfs to fill it up and needs root (mount -t tmpfs): {other:?}; run the suite as root (e.g. in the CI container)"
        ),
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path().to_path_buf());
    let dir = mnt.path().join("data");
    let tenants: Vec<String> = (0..8).map(|i| tenant(&format!("int-tmpfs{i}"))).collect();
    let s = open(&dir, plain());
    let (mut ok, mut no) = hammer(&s, &tenants, 3).await;
    assert!(no.is_empty());
    // Fill the file system, then leave a little room: far less than the writes below need.
    let filler = mnt.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(48 * 1024)).unwrap();
    }
    let (o, n) = hammer(&s, &tenants, 40).await;
    ok.extend(o);
    no.extend(n);
    assert!(!no.is_empty(), "the file system filled up");
    assert_exactly_acknowledged(&stored(&s, &tenants).await, &ok, &no, "tmpfs full");
    std::fs::remove_file(&filler).unwrap();
    let (o, n) = hammer(&s, &tenants, 3).await;
    assert!(n.is_empty(), "writes succeed again once there is room");
    ok.extend(o);
    close(s).await;
    let s = open(&dir, plain());
    assert_exactly_acknowledged(&stored(&s, &tenants).await, &ok, &no, "tmpfs, restarted");
    close(s).await;
}

/// If even cutting the log back fails, the file's end is unknown: every later write is
/// refused, `health` and `ready` say why, until a restart settles the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_cut_refuses_writes_and_says_so_until_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let faults = Arc::new(Faults::default());
    let opts = EmbeddedOptions {
        faults: Some(faults.clone()),
        ..plain()
    };
    let t = tenant("int-cutfail");
    let s = open(dir.path(), opts);
    let kept = put(&s, &t, 2).await;
    assert!(s.health().is_healthy());
    faults
        .fail_cuts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    faults.fill_disk_after(0);
    let r = s.append(vec![prep(ev(&t, "int.x", |_| {}))]).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    let h = s.health();
    assert!(h.writes_refused, "{h:?}");
    assert!(
        h.problems.join(" ").contains("cutting it back failed"),
        "{h:?}"
    );
    assert!(s.ready().await.is_err());
    // Room again, but the log's end is unknown: still refused.
    faults.free_disk();
    let r = s.append(vec![prep(ev(&t, "int.x", |_| {}))]).await;
    assert!(matches!(r, Err(StoreError::Unavailable(_))), "{r:?}");
    close(s).await;
    let s = open(dir.path(), plain());
    assert!(s.health().is_healthy());
    let got: Vec<Uuid> = log_of(&s, &t).await.iter().map(|e| e.event_id).collect();
    assert_eq!(got[..2], kept[..], "acknowledged events are kept");
    put(&s, &t, 1).await;
    close(s).await;
}
