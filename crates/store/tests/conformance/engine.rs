//! Embedded-only, adversarial: the log engine (`embedded/segment.rs`, `codec.rs`, `memory.rs`,
//! `writer.rs`, `read.rs`, `index.rs`, `compress.rs`) under torn writes, damaged files,
//! hand-written blocks, concurrent writers, a dictionary trained mid-flight, and listings checked
//! against an independent model.
//!
//! Files are damaged directly in a temporary data directory, following the on-disk format of
//! the module docs: `log/NNNNNNNN.seg` = 32-byte header (`TKLOG01\n`, segment number u64 LE,
//! length of the log before this segment u64 LE, log id u64 LE), then blocks `length u32 LE ‖
//! CRC-32 u32 LE ‖ log id u64 LE ‖ body`; a body is entries
//! `kind u8 ‖ length varint ‖ bytes`.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::{
    EventQuery, Order, PreparedEvent, SignedCheckpoint, StatsQuery, Store, StoreError, TypeFilter,
};
use trailkeep_tlog::{root_from_leaves, verify_inclusion};

type Hash = [u8; 32];

/// Bytes of a segment header (`segment.rs`).
const HEADER: usize = 32;
/// The log id of hand-written logs.
const TEST_LOG_ID: u64 = 0x7465_7374_6c6f_6701;

/// A segment header: magic, segment number, length of the whole log before this segment, log id.
fn seg_header(n: u32, start: u64) -> Vec<u8> {
    seg_header_of(n, start, TEST_LOG_ID)
}

fn seg_header_of(n: u32, start: u64, id: u64) -> Vec<u8> {
    let mut h = b"TKLOG01\n".to_vec();
    h.extend_from_slice(&(n as u64).to_le_bytes());
    h.extend_from_slice(&start.to_le_bytes());
    h.extend_from_slice(&id.to_le_bytes());
    assert_eq!(h.len(), HEADER);
    h
}

/// The log id a data directory's first segment carries.
fn log_id_of(dir: &Path) -> u64 {
    let b = std::fs::read(seg_path(dir, 1)).unwrap();
    u64::from_le_bytes(b[24..32].try_into().unwrap())
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn seg_path(dir: &Path, n: u32) -> PathBuf {
    dir.join("log").join(format!("{n:08}.seg"))
}

fn segment_count(dir: &Path) -> u32 {
    let mut n = 0;
    while seg_path(dir, n + 1).exists() {
        n += 1;
    }
    n
}

/// The high-water mark as it is now. A test that simulates a crash by cutting an acknowledged
/// block off the log after a clean close puts back the mark of before that block: in a real
/// crash the torn write was never durable, so the mark never covered it.
fn save_mark(dir: &Path) -> Vec<u8> {
    std::fs::read(dir.join("high-water")).expect("the store keeps a high-water mark")
}

fn restore_mark(dir: &Path, mark: &[u8]) {
    std::fs::write(dir.join("high-water"), mark).unwrap();
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

/// No background dictionary training: the log is byte-for-byte predictable.
fn plain() -> EmbeddedOptions {
    EmbeddedOptions {
        dict_train_events: 0,
        ..Default::default()
    }
}

fn open_store(dir: &Path, opts: EmbeddedOptions) -> Arc<dyn Store> {
    match EmbeddedStore::open(dir, opts) {
        Ok(s) => Arc::new(s),
        Err(e) => panic!("open {}: {e}", dir.display()),
    }
}

/// Opening must fail; returns the error (an open that succeeds is dropped and reported).
fn open_err(dir: &Path, opts: EmbeddedOptions, why: &str) -> StoreError {
    match EmbeddedStore::open(dir, opts) {
        Ok(_) => panic!("{why}: the store opened"),
        Err(e) => e,
    }
}

async fn close(store: Arc<dyn Store>) {
    store.shutdown().await;
    drop(store);
}

/// What a test knows was acknowledged: per tenant, `(event id, leaf hash)` in seq order.
type Model = BTreeMap<String, Vec<(Uuid, Hash)>>;

/// Appends one request and records its receipts, checking each gets the next seq.
async fn append_into(store: &Arc<dyn Store>, model: &mut Model, batch: Vec<PreparedEvent>) {
    let out = store.append(batch.clone()).await.unwrap();
    assert_eq!(out.accepted, batch.len());
    assert_eq!(out.duplicates, 0);
    for (p, rc) in batch.iter().zip(&out.receipts) {
        let list = model.entry(p.event.tenant_id.to_string()).or_default();
        assert_eq!(rc.tenant_id, p.event.tenant_id);
        assert_eq!(rc.event_id, p.event.event_id);
        assert_eq!(rc.leaf_hash, p.leaf_hash);
        assert_eq!(rc.seq, list.len() as u64, "next seq of {}", rc.tenant_id);
        list.push((rc.event_id, rc.leaf_hash));
    }
}

/// The tenant's log is exactly `want`: gap-free seqs, same ids and leaves, the tree is built of
/// those leaves, every inclusion proof verifies, and every event is found by id.
async fn assert_log(store: &Arc<dyn Store>, t: &str, want: &[(Uuid, Hash)], ctx: &str) {
    let log = store.read_log(t, 0, 1_000_000).await.unwrap();
    assert_eq!(
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (0..want.len() as u64).collect::<Vec<_>>(),
        "{ctx}: seqs of {t}"
    );
    for (e, (id, leaf)) in log.iter().zip(want) {
        assert_eq!(&e.event_id, id, "{ctx}: {t}/{}", e.seq);
        assert_eq!(&e.leaf_hash, leaf, "{ctx}: leaf of {t}/{}", e.seq);
        assert_eq!(e.tenant_id, t);
        let got = store.get_event(*id).await.unwrap();
        assert_eq!(got.as_ref(), Some(e), "{ctx}: get_event {id}");
    }
    let n = want.len() as u64;
    assert_eq!(
        store.tree_size(t).await.unwrap(),
        n,
        "{ctx}: tree size of {t}"
    );
    let leaves: Vec<Hash> = want.iter().map(|(_, l)| *l).collect();
    assert_eq!(store.leaves(t, 0, n).await.unwrap(), leaves, "{ctx}");
    if n > 0 {
        let root = store.tree_root(t, n).await.unwrap();
        assert_eq!(
            root,
            root_from_leaves(leaves.iter().copied()).1,
            "{ctx}: root"
        );
        for i in 0..n {
            let proof = store.inclusion_proof(t, i, n).await.unwrap();
            verify_inclusion(i, n, &leaves[i as usize], &proof, &root)
                .unwrap_or_else(|e| panic!("{ctx}: inclusion of {t}/{i} in {n}: {e}"));
        }
    }
    assert!(store.tree_root(t, n + 1).await.is_err(), "{ctx}");
}

/// Every tenant of `model` is as recorded, `tenants()` lists exactly them (with counts), and
/// none of `gone` is found.
async fn assert_model(store: &Arc<dyn Store>, model: &Model, gone: &[Uuid], ctx: &str) {
    for (t, want) in model {
        assert_log(store, t, want, ctx).await;
    }
    let listed: Vec<(String, u64)> = store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.tenant_id, s.event_count))
        .collect();
    let expected: Vec<(String, u64)> = model
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(t, v)| (t.clone(), v.len() as u64))
        .collect();
    assert_eq!(listed, expected, "{ctx}: tenants");
    for id in gone {
        assert!(
            store.get_event(*id).await.unwrap().is_none(),
            "{ctx}: {id} was never acknowledged and must not be found"
        );
    }
}

/// A pristine copy of every segment, to damage one at a time.
fn snapshot_log(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    (1..=segment_count(dir))
        .map(|n| (seg_path(dir, n), std::fs::read(seg_path(dir, n)).unwrap()))
        .collect()
}

fn restore_log(dir: &Path, snap: &[(PathBuf, Vec<u8>)]) {
    for e in std::fs::read_dir(dir.join("log")).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            std::fs::remove_dir_all(&p).unwrap();
        } else {
            std::fs::remove_file(&p).unwrap();
        }
    }
    for (p, b) in snap {
        std::fs::write(p, b).unwrap();
    }
}

fn assert_log_unchanged(snap: &[(PathBuf, Vec<u8>)], except: Option<(&Path, &[u8])>, ctx: &str) {
    for (p, b) in snap {
        let now = std::fs::read(p).unwrap();
        let want: &[u8] = match except {
            Some((q, damaged)) if q == p.as_path() => damaged,
            _ => b,
        };
        assert!(
            now == want,
            "{ctx}: a refused open changed {} ({} bytes, expected {})",
            p.display(),
            now.len(),
            want.len()
        );
    }
}

fn is_corrupt_naming(e: &StoreError, name: &str) -> bool {
    matches!(e, StoreError::Corrupt(m) if m.contains(name))
}

// ---------------------------------------------------------------------------------------------
// 1. Torn tails

/// A crash in the middle of the last block's write leaves any prefix of it on disk. For every
/// such prefix: exactly the earlier (acknowledged) requests come back, seqs stay gap-free, the
/// tree equals the events, the tail is cut off, and sequencing continues, also after another
/// restart. The lost block introduced new symbols (tenant, type, actor, session); a later block
/// defines other new ones, which must not clash.
#[tokio::test]
async fn torn_tail_at_every_offset_keeps_exactly_the_acknowledged_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (ta, tb, tc) = ("torn-a", "torn-b", "torn-c");
    let mut model = Model::new();
    let seg1 = seg_path(dir.path(), 1);
    let (boundary, full, lost_ids, mark) = {
        let store = open_store(dir.path(), plain());
        append_into(
            &store,
            &mut model,
            (0..3).map(|_| prep(ev(ta, "torn.x", |_| {}))).collect(),
        )
        .await;
        append_into(
            &store,
            &mut model,
            vec![
                prep(ev(tb, "torn.y", |_| {})),
                prep(ev(ta, "torn.x", |_| {})),
                prep(ev(tb, "torn.y", |m| {
                    m.insert("source_ip".into(), json!("192.0.2.7"));
                })),
            ],
        )
        .await;
        append_into(
            &store,
            &mut model,
            vec![prep(ev(ta, "torn.z", |m| {
                m.insert("impersonation_session".into(), json!("imp_torn"));
                m.insert("approval_id".into(), json!("apr_torn"));
                m.insert("payload".into(), json!({"k": "v", "n": [1, 2, 3]}));
            }))],
        )
        .await;
        append_into(
            &store,
            &mut model,
            (0..4)
                .map(|i| prep(ev(if i % 2 == 0 { ta } else { tb }, "torn.x", |_| {})))
                .collect(),
        )
        .await;
        let boundary = file_len(&seg1);
        let mark = save_mark(dir.path());
        // The last request: new tenant, type, actor and session symbols, and known tenants.
        let last = vec![
            prep(ev(tc, "torn.new_type", |m| {
                m.insert("actor".into(), json!("svc:only-in-the-lost-block"));
                m.insert("impersonation_session".into(), json!("imp_lost"));
                m.insert("payload".into(), json!({"lost": true}));
            })),
            prep(ev(ta, "torn.x", |_| {})),
            prep(ev(tb, "torn.y", |_| {})),
        ];
        let lost_ids: Vec<Uuid> = last.iter().map(|p| p.event.event_id).collect();
        let out = store.append(last).await.unwrap();
        assert_eq!(out.accepted, 3);
        let full = std::fs::read(&seg1).unwrap();
        assert!(
            full.len() as u64 > boundary + 300,
            "the last block is only {} bytes",
            full.len() as u64 - boundary
        );
        close(store).await;
        (boundary, full, lost_ids, mark)
    };
    assert_eq!(segment_count(dir.path()), 1);

    let n_a = model[ta].len() as u64;
    for cut in boundary..full.len() as u64 {
        let ctx = format!("cut at {cut} (last block {boundary}..{})", full.len());
        std::fs::write(&seg1, &full[..cut as usize]).unwrap();
        restore_mark(dir.path(), &mark);
        let store = open_store(dir.path(), plain());
        assert_eq!(file_len(&seg1), boundary, "{ctx}: the torn tail is cut off");
        assert_model(&store, &model, &lost_ids, &ctx).await;
        assert_eq!(store.tree_size(tc).await.unwrap(), 0, "{ctx}");
        let page = store
            .query(EventQuery {
                actor: Some("svc:only-in-the-lost-block".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.events.is_empty(), "{ctx}");

        // Sequencing continues where the acknowledged log ends, with fresh symbols.
        let again = vec![
            prep(ev(tc, "torn.other_type", |m| {
                m.insert("actor".into(), json!("svc:after-the-cut"));
                m.insert("impersonation_session".into(), json!("imp_after"));
            })),
            prep(ev(ta, "torn.after", |_| {})),
        ];
        let out = store.append(again.clone()).await.unwrap();
        assert_eq!(out.receipts[0].seq, 0, "{ctx}");
        assert_eq!(out.receipts[1].seq, n_a, "{ctx}");
        let mut m2 = model.clone();
        for (p, rc) in again.iter().zip(&out.receipts) {
            m2.entry(rc.tenant_id.to_string())
                .or_default()
                .push((p.event.event_id, p.leaf_hash));
        }
        assert_model(&store, &m2, &lost_ids, &ctx).await;
        close(store).await;

        // And after another restart.
        let store = open_store(dir.path(), plain());
        assert_model(&store, &m2, &lost_ids, &format!("{ctx}, reopened")).await;
        let e = store
            .get_event(again[0].event.event_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(e.actor, "svc:after-the-cut");
        assert_eq!(e.event_type, "torn.other_type");
        assert_eq!(e.impersonation_session.as_deref(), Some("imp_after"));
        close(store).await;
    }
}

/// Event ids (like timestamps and payloads) are the client's bytes, and they are written raw
/// in the event's entry. An id can be chosen to read as a whole block of the old format
/// (`8 ‖ CRC ‖ 8 bytes`); blocks now also carry the log's random id, which a client never sees.
/// If the write of the group holding such an event is torn by a crash, the request was never
/// answered: recovery must still cut it off and open, not take the client's bytes for an
/// acknowledged block and refuse to start.
#[tokio::test]
async fn a_torn_write_holding_block_like_client_bytes_is_still_cut() {
    let dir = tempfile::tempdir().unwrap();
    let t = "torn-crafted";
    let mut model = Model::new();
    let seg1 = seg_path(dir.path(), 1);
    let store = open_store(dir.path(), plain());
    append_into(
        &store,
        &mut model,
        vec![prep(ev(t, "tc.x", |_| {})), prep(ev(t, "tc.x", |_| {}))],
    )
    .await;
    let boundary = file_len(&seg1);
    let mark = save_mark(dir.path());
    let mut id = [0u8; 16];
    id[0] = 8;
    id[8..].copy_from_slice(b"trailkee");
    let crc = crc32fast::hash(&id[8..]);
    id[4..8].copy_from_slice(&crc.to_le_bytes());
    let crafted = Uuid::from_bytes(id);
    let mut last = vec![prep(ev_at(
        t,
        "tc.x",
        &crafted.to_string(),
        "2026-01-01T00:00:00Z",
    ))];
    last.extend((0..5).map(|_| prep(ev(t, "tc.x", |_| {}))));
    let lost: Vec<Uuid> = last.iter().map(|p| p.event.event_id).collect();
    store.append(last).await.unwrap();
    close(store).await;
    let full = std::fs::read(&seg1).unwrap();
    // The crash tore the last write: a few bytes of it, or most of it, never reached the disk.
    for cut in [full.len() - 1, full.len() - 100, boundary as usize + 200] {
        std::fs::write(&seg1, &full[..cut]).unwrap();
        restore_mark(dir.path(), &mark);
        let store = match EmbeddedStore::open(dir.path(), plain()) {
            Ok(s) => Arc::new(s) as Arc<dyn Store>,
            Err(e) => panic!(
                "cut at {cut} of {} (last block from {boundary}): the store refuses to start \
                 after an ordinary torn write: {e}",
                full.len()
            ),
        };
        assert_model(&store, &model, &lost, &format!("cut at {cut}")).await;
        close(store).await;
    }
}

/// Bytes after the last whole block (a crash after the file grew but before its data landed,
/// or plain garbage) never hide acknowledged events or break later writes.
#[tokio::test]
async fn garbage_after_the_last_block_never_breaks_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let t = "tail-garbage";
    let mut model = Model::new();
    let store = open_store(dir.path(), plain());
    for i in 0..4 {
        append_into(
            &store,
            &mut model,
            (0..=i).map(|_| prep(ev(t, "tg.x", |_| {}))).collect(),
        )
        .await;
    }
    close(store).await;
    let seg1 = seg_path(dir.path(), 1);
    let tails: Vec<Vec<u8>> = vec![
        vec![0u8; 1],
        vec![0u8; 7],
        vec![0u8; 8],
        vec![0u8; 13],
        vec![0u8; 4096],
        vec![0xffu8; 8],
        vec![0xa5u8; 300],
        (0..1000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        // A block header claiming 4 bytes with a wrong CRC, body present.
        vec![4, 0, 0, 0, 1, 2, 3, 4, 3, 1, 0, 0],
    ];
    for (k, tail) in tails.iter().enumerate() {
        let ctx = format!("tail #{k} ({} bytes)", tail.len());
        let mut b = std::fs::read(&seg1).unwrap();
        b.extend_from_slice(tail);
        std::fs::write(&seg1, &b).unwrap();
        let store = open_store(dir.path(), plain());
        assert_model(&store, &model, &[], &ctx).await;
        append_into(&store, &mut model, vec![prep(ev(t, "tg.after", |_| {}))]).await;
        close(store).await;
        let store = open_store(dir.path(), plain());
        assert_model(&store, &model, &[], &format!("{ctx}, reopened")).await;
        close(store).await;
    }
}

/// A block that fails its checksum but is followed by further whole blocks is not a torn tail:
/// the blocks after it were acknowledged (each was fsynced before its answer, and blocks are
/// written one after the other). Recovery must refuse to open (`Corrupt`) rather than silently
/// drop acknowledged events — and must not truncate them away on disk.
#[tokio::test]
async fn damage_before_acknowledged_blocks_of_the_last_segment_is_not_cut_silently() {
    let dir = tempfile::tempdir().unwrap();
    let t = "mid-damage";
    let mut model = Model::new();
    let seg1 = seg_path(dir.path(), 1);
    let mut ends = Vec::new();
    let store = open_store(dir.path(), plain());
    for _ in 0..4 {
        append_into(
            &store,
            &mut model,
            (0..3).map(|_| prep(ev(t, "md.x", |_| {}))).collect(),
        )
        .await;
        ends.push(file_len(&seg1));
    }
    close(store).await;
    assert_eq!(segment_count(dir.path()), 1);
    // Flip one byte in the middle of the second block's body (its length field is intact).
    let mut b = std::fs::read(&seg1).unwrap();
    let at = ((ends[0] + 8 + ends[1]) / 2) as usize;
    b[at] ^= 0x40;
    std::fs::write(&seg1, &b).unwrap();
    let len_before = b.len() as u64;
    let res = EmbeddedStore::open(dir.path(), plain());
    let after = file_len(&seg1);
    match res {
        Err(e) => {
            assert!(matches!(e, StoreError::Corrupt(_)), "{e}");
            assert!(e.to_string().contains("00000001.seg"), "{e}");
        }
        Ok(s) => {
            let store: Arc<dyn Store> = Arc::new(s);
            let n = store.tree_size(t).await.unwrap();
            close(store).await;
            panic!(
                "the store opened with {n} of {} acknowledged events of {t}: the damaged \
                 block 2 and the whole blocks 3 and 4 after it (fsynced and answered) were \
                 dropped; the log file went from {len_before} to \
                 {after} bytes",
                model[t].len()
            );
        }
    }
    assert_eq!(
        after, len_before,
        "a refused open must not truncate the log"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Damage in earlier segments

/// With tiny segments the log spans many files. Damage anywhere but the tail of the last one is
/// refused with `Corrupt`, naming the file; the refused open changes no file, and restoring the
/// file makes the store open again with everything in it (no stale lock either).
#[tokio::test]
async fn damage_in_an_earlier_segment_refuses_to_open_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        dict_train_events: 0,
        segment_bytes: 4096,
        ..Default::default()
    };
    let tenants = ["seg-a", "seg-b", "seg-c"];
    let mut model = Model::new();
    let store = open_store(dir.path(), opts.clone());
    for round in 0..40usize {
        let batch = (0..1 + round % 4)
            .map(|i| {
                prep(ev(tenants[(round + i) % 3], "seg.x", |m| {
                    m.insert("payload".into(), json!({"round": round, "i": i}));
                }))
            })
            .collect();
        append_into(&store, &mut model, batch).await;
    }
    close(store).await;
    let segs = segment_count(dir.path());
    assert!(segs >= 4, "expected several segments, got {segs}");
    let snap = snapshot_log(dir.path());

    // Sanity: the pristine log opens.
    let store = open_store(dir.path(), opts.clone());
    assert_model(&store, &model, &[], "pristine").await;
    close(store).await;
    assert_log_unchanged(&snap, None, "pristine open");

    type Damage = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(&str, u32, Damage)> = vec![
        (
            "flipped byte in segment 1",
            1,
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() / 2;
                b[i] ^= 0x01;
            }),
        ),
        (
            "flipped byte in the last block of segment 2",
            2,
            Box::new(|b: &mut Vec<u8>| {
                let i = b.len() - 3;
                b[i] ^= 0x80;
            }),
        ),
        (
            "segment 2 cut mid-block",
            2,
            Box::new(|b: &mut Vec<u8>| {
                let n = b.len() - 10;
                b.truncate(n);
            }),
        ),
        (
            "bad magic in segment 2",
            2,
            Box::new(|b: &mut Vec<u8>| b[0] = b'X'),
        ),
        (
            "wrong segment number in the header of segment 1",
            1,
            Box::new(|b: &mut Vec<u8>| b[8] = 9),
        ),
        (
            "garbage after the last block of segment 1",
            1,
            Box::new(|b: &mut Vec<u8>| b.extend_from_slice(&[0xa5; 37])),
        ),
        (
            "block length of segment 1's first block enlarged",
            1,
            Box::new(|b: &mut Vec<u8>| b[HEADER] = b[HEADER].wrapping_add(1)),
        ),
        (
            "segment 2 is empty",
            2,
            Box::new(|b: &mut Vec<u8>| b.clear()),
        ),
    ];
    for (what, n, damage) in &cases {
        restore_log(dir.path(), &snap);
        let p = seg_path(dir.path(), *n);
        let mut b = std::fs::read(&p).unwrap();
        damage(&mut b);
        std::fs::write(&p, &b).unwrap();
        let e = open_err(dir.path(), opts.clone(), what);
        let name = format!("{n:08}.seg");
        assert!(
            is_corrupt_naming(&e, &name),
            "{what}: expected Corrupt naming {name}, got {e:?}"
        );
        assert_log_unchanged(&snap, Some((&p, &b)), what);
    }
    restore_log(dir.path(), &snap);
    let store = open_store(dir.path(), opts.clone());
    assert_model(&store, &model, &[], "restored").await;
    append_into(
        &store,
        &mut model,
        vec![prep(ev("seg-a", "seg.after", |_| {}))],
    )
    .await;
    close(store).await;
    let store = open_store(dir.path(), opts);
    assert_model(&store, &model, &[], "restored, written, reopened").await;
    close(store).await;
}

/// An earlier segment that lost whole blocks at its end (a bad copy, a restore cut short) is
/// damage too: the blocks were acknowledged, and the segment was only rolled over because it
/// was full. Two cases: segment 1 cut to its header (later segments then refer to symbols it
/// defined), and segment 1 losing its last block, one event of a tenant that no later block
/// mentions (nothing later refers to it, so only the segment's own length can tell).
#[tokio::test]
async fn an_earlier_segment_cut_at_a_block_boundary_is_refused_naming_the_file() {
    let opts = EmbeddedOptions {
        dict_train_events: 0,
        segment_bytes: 4096,
        ..Default::default()
    };
    let (keep, lost) = ("cut-keep", "cut-lost");
    let dir = tempfile::tempdir().unwrap();
    let seg1 = seg_path(dir.path(), 1);
    let mut model = Model::new();
    let store = open_store(dir.path(), opts.clone());
    // Block 1 defines every symbol; block 2 is one event of `lost`; block 3 is too big for
    // what is left of segment 1, so it starts segment 2; later blocks are `keep` only.
    append_into(
        &store,
        &mut model,
        vec![
            prep(ev(keep, "cut.x", |_| {})),
            prep(ev(lost, "cut.x", |_| {})),
        ],
    )
    .await;
    let end_of_block1 = file_len(&seg1);
    append_into(&store, &mut model, vec![prep(ev(lost, "cut.x", |_| {}))]).await;
    let end_of_block2 = file_len(&seg1);
    append_into(
        &store,
        &mut model,
        vec![prep(ev(keep, "cut.x", |m| {
            m.insert("payload".into(), json!({"big": "x".repeat(5000)}));
        }))],
    )
    .await;
    for _ in 0..3 {
        append_into(&store, &mut model, vec![prep(ev(keep, "cut.x", |_| {}))]).await;
    }
    close(store).await;
    assert_eq!(file_len(&seg1), end_of_block2, "block 3 went to segment 2");
    assert!(segment_count(dir.path()) >= 2);
    let snap = snapshot_log(dir.path());
    let store = open_store(dir.path(), opts.clone());
    assert_model(&store, &model, &[], "pristine").await;
    close(store).await;

    let mut failures = Vec::new();
    for (what, cut) in [
        ("segment 1 cut to its header", HEADER as u64),
        ("segment 1 cut before its last block", end_of_block1),
    ] {
        restore_log(dir.path(), &snap);
        let f = std::fs::OpenOptions::new().write(true).open(&seg1).unwrap();
        f.set_len(cut).unwrap();
        drop(f);
        match EmbeddedStore::open(dir.path(), opts.clone()) {
            Err(e) if is_corrupt_naming(&e, "00000001.seg") => {}
            Err(e) => failures.push(format!(
                "{what}: expected Corrupt naming 00000001.seg, got {e:?}"
            )),
            Ok(s) => {
                let store: Arc<dyn Store> = Arc::new(s);
                let n = store.tree_size(lost).await.unwrap();
                close(store).await;
                failures.push(format!(
                    "{what}: the store opened; {lost} has {n} of its {} acknowledged events",
                    model[lost].len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A crash while a new segment was being created leaves it empty or with part of its header:
/// nothing in it was acknowledged, so the store opens with every event and keeps writing.
#[tokio::test]
async fn crash_while_creating_a_segment_is_recovered() {
    let opts = EmbeddedOptions {
        dict_train_events: 0,
        segment_bytes: 2048,
        ..Default::default()
    };
    // Empty, part of the header, the header and part of a first block.
    for partial in [0usize, 5, HEADER - 1, HEADER, HEADER + 5, HEADER + 40] {
        let dir = tempfile::tempdir().unwrap();
        let ctx = format!("new segment with {partial} header bytes");
        let mut model = Model::new();
        let store = open_store(dir.path(), opts.clone());
        for i in 0..12 {
            append_into(
                &store,
                &mut model,
                (0..3)
                    .map(|_| {
                        prep(ev("mk-seg", "mk.x", |m| {
                            m.insert("payload".into(), json!({"i": i}));
                        }))
                    })
                    .collect(),
            )
            .await;
        }
        close(store).await;
        let n = segment_count(dir.path());
        assert!(n >= 2, "{ctx}");
        let start: u64 = (1..=n).map(|k| file_len(&seg_path(dir.path(), k))).sum();
        let mut header = seg_header_of(n + 1, start, log_id_of(dir.path()));
        header.extend_from_slice(&[200, 0, 0, 0, 1, 2, 3, 4]);
        header.extend_from_slice(&[0x5a; 32]);
        std::fs::write(seg_path(dir.path(), n + 1), &header[..partial]).unwrap();
        let store = open_store(dir.path(), opts.clone());
        assert_model(&store, &model, &[], &ctx).await;
        for _ in 0..5 {
            append_into(&store, &mut model, vec![prep(ev("mk-seg", "mk.y", |_| {}))]).await;
        }
        close(store).await;
        let store = open_store(dir.path(), opts.clone());
        assert_model(&store, &model, &[], &format!("{ctx}, reopened")).await;
        close(store).await;
    }
}

/// The very first open of a data directory crashed while creating segment 1: `log/` is empty,
/// or `00000001.seg` is empty or holds part of its header. Nothing was ever acknowledged, so
/// the next start must open an empty store (not refuse the directory forever).
#[tokio::test]
async fn crash_while_creating_the_first_segment_is_recovered() {
    for partial in [None, Some(0usize), Some(5), Some(HEADER - 1)] {
        let ctx = format!("first segment with {partial:?} header bytes");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("log")).unwrap();
        if let Some(p) = partial {
            std::fs::write(seg_path(dir.path(), 1), &seg_header(1, 0)[..p]).unwrap();
        }
        let store = match EmbeddedStore::open(dir.path(), plain()) {
            Ok(s) => Arc::new(s) as Arc<dyn Store>,
            Err(e) => panic!("{ctx}: {e:?}"),
        };
        assert!(store.tenants().await.unwrap().is_empty(), "{ctx}");
        let mut model = Model::new();
        append_into(&store, &mut model, vec![prep(ev("first", "f.x", |_| {}))]).await;
        close(store).await;
        let store = open_store(dir.path(), plain());
        assert_model(&store, &model, &[], &ctx).await;
        close(store).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Checkpoints

fn cp(size: u64, root: Hash, note: &str) -> SignedCheckpoint {
    SignedCheckpoint {
        size,
        root,
        note: note.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkpoints_persist_and_a_stored_size_never_changes_root() {
    let dir = tempfile::tempdir().unwrap();
    let t = "cpe-a";
    let empty = "cpe-empty";
    let mut roots = Vec::new();
    let store = open_store(dir.path(), plain());
    assert_eq!(store.latest_checkpoint(t).await.unwrap(), None);
    for i in 0..5 {
        store
            .append(vec![prep(ev(t, "cpe.x", |m| {
                m.insert("payload".into(), json!({"i": i}));
            }))])
            .await
            .unwrap();
        roots.push(store.tree_root(t, i + 1).await.unwrap());
    }
    let first5 = roots.clone();
    let root = move |s: u64| first5[s as usize - 1];
    store
        .put_checkpoint(t, cp(2, root(2), "two\n"))
        .await
        .unwrap();
    store
        .put_checkpoint(t, cp(5, root(5), "five\n"))
        .await
        .unwrap();
    assert_eq!(
        store.latest_checkpoint(t).await.unwrap(),
        Some(cp(5, root(5), "five\n"))
    );
    // A smaller one later does not become the latest.
    store
        .put_checkpoint(t, cp(3, root(3), "three\n"))
        .await
        .unwrap();
    assert_eq!(store.latest_checkpoint(t).await.unwrap().unwrap().size, 5);
    // A different root for a stored size, and sizes beyond the log, are refused.
    for bad in [
        cp(5, [7; 32], "forged\n"),
        cp(2, root(3), "forged\n"),
        cp(6, [1; 32], "beyond\n"),
        cp(u64::MAX, [1; 32], "beyond\n"),
    ] {
        let r = store.put_checkpoint(t, bad.clone()).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad:?}: {r:?}");
    }
    // Concurrent different roots for one size: exactly one root is ever accepted.
    let mut tasks = Vec::new();
    for i in 0..16u8 {
        let store = store.clone();
        let r = if i % 4 == 0 { root(4) } else { [i; 32] };
        tasks.push(tokio::spawn(async move {
            let res = store
                .put_checkpoint(t, cp(4, r, &format!("race {i}\n")))
                .await;
            (r, res)
        }));
    }
    let mut accepted = HashSet::new();
    for task in tasks {
        let (r, res) = task.await.unwrap();
        match res {
            Ok(()) => {
                accepted.insert(r);
            }
            Err(StoreError::Invalid(_)) => {}
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(
        accepted.len(),
        1,
        "one root for size 4, got {}",
        accepted.len()
    );
    let winner = *accepted.iter().next().unwrap();
    // An empty tenant's size-0 checkpoint; size 1 of it is beyond its log.
    store
        .put_checkpoint(empty, cp(0, trailkeep_tlog::EMPTY_ROOT, "zero\n"))
        .await
        .unwrap();
    assert!(store
        .put_checkpoint(empty, cp(1, [0; 32], "one\n"))
        .await
        .is_err());
    assert_eq!(store.latest_checkpoint("cpe-other").await.unwrap(), None);
    close(store).await;

    for round in 0..2 {
        let ctx = format!("reopen #{round}");
        let store = open_store(dir.path(), plain());
        let latest = store.latest_checkpoint(t).await.unwrap().unwrap();
        assert_eq!(latest.size, 5 + round, "{ctx}");
        if round == 0 {
            assert_eq!(latest, cp(5, root(5), "five\n"), "{ctx}");
        }
        for (s, r) in [(2, root(2)), (3, root(3)), (4, winner), (5, root(5))] {
            store
                .put_checkpoint(t, cp(s, r, "same root, other note\n"))
                .await
                .unwrap_or_else(|e| panic!("{ctx}: same root of size {s}: {e}"));
            let other = if r == [3; 32] { [4; 32] } else { [3; 32] };
            let res = store.put_checkpoint(t, cp(s, other, "forged\n")).await;
            assert!(
                matches!(res, Err(StoreError::Invalid(_))),
                "{ctx}: a different root for size {s} must be refused: {res:?}"
            );
        }
        let size = store.tree_size(t).await.unwrap();
        assert!(store
            .put_checkpoint(t, cp(size + 1, [1; 32], "beyond\n"))
            .await
            .is_err());
        // The latest one did not take the re-sent note.
        if round == 0 {
            assert_eq!(
                store.latest_checkpoint(t).await.unwrap(),
                Some(cp(5, root(5), "five\n"))
            );
        }
        assert_eq!(
            store.latest_checkpoint(empty).await.unwrap(),
            Some(cp(0, trailkeep_tlog::EMPTY_ROOT, "zero\n")),
            "{ctx}"
        );
        if round == 0 {
            // The tenant created by a checkpoint alone gets seq 0 for its first event.
            let out = store
                .append(vec![prep(ev(empty, "cpe.first", |_| {}))])
                .await
                .unwrap();
            assert_eq!(out.receipts[0].seq, 0);
            let out = store
                .append(vec![prep(ev(t, "cpe.x", |_| {}))])
                .await
                .unwrap();
            assert_eq!(out.receipts[0].seq, 5);
            let r6 = store.tree_root(t, 6).await.unwrap();
            store.put_checkpoint(t, cp(6, r6, "six\n")).await.unwrap();
            roots.push(r6);
        } else {
            assert_eq!(store.tree_size(empty).await.unwrap(), 1);
            assert_eq!(
                store.latest_checkpoint(t).await.unwrap(),
                Some(cp(6, roots[5], "six\n"))
            );
        }
        close(store).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Compression dictionary trained under load

/// A textual dump of every observable read of some tenants.
async fn dump(store: &Arc<dyn Store>, tenants: &[String]) -> String {
    let mut out = String::new();
    for t in tenants {
        let log = store.read_log(t, 0, 1_000_000).await.unwrap();
        out.push_str(&format!("log {t}: {log:?}\n"));
        for e in &log {
            let got = store.get_event(e.event_id).await.unwrap();
            assert_eq!(got.as_ref(), Some(e));
        }
        for order in [Order::Asc, Order::Desc] {
            let all = walk(
                store,
                EventQuery {
                    tenant_id: Some(t.clone()),
                    limit: 37,
                    order,
                    ..Default::default()
                },
            )
            .await;
            out.push_str(&format!("walk {t} {order:?}: {:?}\n", ids(&all)));
        }
        let stats = store
            .stats(StatsQuery {
                tenant_id: Some(t.clone()),
                ..Default::default()
            })
            .await
            .unwrap();
        out.push_str(&format!("stats {t}: {stats:?}\n"));
        out.push_str(&format!(
            "root {t}: {:?}\n",
            store.tree_root(t, log.len() as u64).await.unwrap()
        ));
    }
    let all = walk(
        store,
        EventQuery {
            limit: 101,
            q: Some("dictionary".into()),
            ..Default::default()
        },
    )
    .await;
    out.push_str(&format!("q: {:?}\n", ids(&all)));
    out.push_str(&format!("tenants: {:?}\n", store.tenants().await.unwrap()));
    out
}

const STATUS: [&str; 3] = ["success", "failed", "partial"];

fn dict_event(tenant: &str, task: usize, round: usize, i: usize) -> Value {
    let mut v = ev_at(
        tenant,
        ["dict.run", "dict.plan_set", "acct.login"][(task + i) % 3],
        &uuid(),
        &format!(
            "2026-05-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1 + (task + round) % 28,
            (task * 7 + i) % 24,
            round % 60,
            i % 60,
            task
        ),
    );
    v["actor"] = json!(format!("user:u{}@example.com", task % 5));
    v["payload"] = json!({
        "domain": format!("help.t_{:04}.com", (task * 31 + round) % 17),
        "status": STATUS[(round + i) % 3],
        "note": "ünïcödé \"quoted\" \\ dictionary text",
        "n": task * 1000 + round * 10 + i,
    });
    if i.is_multiple_of(2) {
        v["source_ip"] = json!(format!("10.0.{task}.{round}"));
    }
    if i.is_multiple_of(3) {
        v["approval_id"] = json!(format!("apr_{task}_{round}"));
    }
    if (task + round).is_multiple_of(5) {
        v["impersonation_session"] = json!(format!("imp_{}", task % 3));
    }
    v
}

/// One phase of 16 concurrent writers; returns every (event, prepared, receipt) they stored.
async fn dict_phase(
    store: &Arc<dyn Store>,
    tenants: &Arc<Vec<String>>,
    rounds: std::ops::Range<usize>,
) -> Vec<(Value, PreparedEvent, trailkeep_store::Receipt)> {
    let mut tasks = Vec::new();
    for task in 0..16usize {
        let store = store.clone();
        let tenants = tenants.clone();
        let rounds = rounds.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for round in rounds {
                let vals: Vec<Value> = (0..1 + (task + round) % 4)
                    .map(|i| dict_event(&tenants[(task + i) % tenants.len()], task, round, i))
                    .collect();
                let batch: Vec<PreparedEvent> = vals.iter().map(|v| prep(v.clone())).collect();
                let out = store.append(batch.clone()).await.unwrap();
                assert_eq!(out.accepted, batch.len());
                for ((v, p), rc) in vals.into_iter().zip(batch).zip(out.receipts) {
                    got.push((v, p, rc));
                }
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

async fn resend_checks(
    store: &Arc<dyn Store>,
    stored: &[(Value, PreparedEvent, trailkeep_store::Receipt)],
    ctx: &str,
) {
    for (v, p, rc) in stored {
        let e = store.get_event(rc.event_id).await.unwrap().expect("stored");
        assert_eq!(e.payload.as_deref(), Some(&p.event.payload[..]), "{ctx}");
        assert_eq!(
            e.source_ip.as_deref(),
            p.event.source_ip.as_deref(),
            "{ctx}"
        );
        assert_eq!(
            e.approval_id.as_deref(),
            p.event.approval_id.as_deref(),
            "{ctx}"
        );
        assert_eq!(e.leaf_hash, rc.leaf_hash, "{ctx}");
        let out = store.append(vec![prep(v.clone())]).await.unwrap();
        assert_eq!((out.accepted, out.duplicates), (0, 1), "{ctx}");
        assert_eq!(&out.receipts[0], rc, "{ctx}: the original receipt");
        let mut changed = v.clone();
        changed["payload"]["n"] = json!(-1);
        let res = store
            .append(vec![
                prep(ev(&rc.tenant_id, "dict.other", |_| {})),
                prep(changed),
            ])
            .await;
        assert!(
            matches!(res, Err(StoreError::Conflict { index: 1, .. })),
            "{ctx}: {res:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dictionary_trained_under_concurrent_appends_reads_back_identically() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        dict_train_events: 100,
        segment_bytes: 64 * 1024,
        ..Default::default()
    };
    let tenants: Arc<Vec<String>> = Arc::new((0..5).map(|i| format!("dict-{i}")).collect());
    let emb = EmbeddedStore::open(dir.path(), opts.clone()).unwrap();
    let store: Arc<dyn Store> = Arc::new(emb.clone());
    // ~400 events from 16 writers: training starts in the middle of this phase.
    let mut stored = dict_phase(&store, &tenants, 0..10).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while emb.dictionaries() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no dictionary was trained from {} events",
            stored.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before_phase2 = emb.disk_space();
    let phase2 = dict_phase(&store, &tenants, 10..20).await;
    let per_event = (emb.disk_space() - before_phase2) / phase2.len() as u64;
    stored.extend(phase2);
    assert_eq!(emb.dictionaries(), 1);
    // Phase 2 events are compressed: smaller than their raw bodies alone (~230 bytes).
    assert!(
        per_event < 300,
        "{per_event} bytes per event after training"
    );

    // Every seq gap-free, every receipt where it says.
    let mut by_tenant: HashMap<String, BTreeMap<u64, Uuid>> = HashMap::new();
    for (_, _, rc) in &stored {
        let prev = by_tenant
            .entry(rc.tenant_id.to_string())
            .or_default()
            .insert(rc.seq, rc.event_id);
        assert!(prev.is_none());
    }
    for (t, seqs) in &by_tenant {
        assert_eq!(
            seqs.keys().copied().collect::<Vec<_>>(),
            (0..seqs.len() as u64).collect::<Vec<_>>(),
            "{t}"
        );
    }
    // First and last events of each writer: before and after the dictionary.
    let sample: Vec<_> = stored
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 23 == 0 || *i + 1 == stored.len())
        .map(|(_, x)| x.clone())
        .collect();
    resend_checks(&store, &sample, "before restart").await;
    let before = dump(&store, &tenants).await;
    close(store).await;
    drop(emb);

    let emb = EmbeddedStore::open(dir.path(), opts.clone()).unwrap();
    assert_eq!(emb.dictionaries(), 1);
    let store: Arc<dyn Store> = Arc::new(emb.clone());
    assert_eq!(dump(&store, &tenants).await, before);
    resend_checks(&store, &sample, "after restart").await;
    assert_eq!(
        dump(&store, &tenants).await,
        before,
        "re-sends changed nothing"
    );
    // New writes after the restart use the same dictionary and read back.
    let more = dict_phase(&store, &tenants, 20..22).await;
    resend_checks(&store, &more[..5], "written after restart").await;
    assert_eq!(emb.dictionaries(), 1);
    close(store).await;
}

// ---------------------------------------------------------------------------------------------
// 5. Listings against a model: many tenants, backfill, identical and pre-1970 timestamps

#[derive(Clone, Debug)]
struct Row {
    tenant: String,
    id: Uuid,
    ts: i64,
    ty: String,
    actor: String,
    session: Option<String>,
}

impl Row {
    fn key(&self) -> (i64, [u8; 16]) {
        (self.ts, *self.id.as_bytes())
    }
}

fn ts_text(nanos: i64) -> String {
    let digits = if nanos % 1_000_000 == 0 {
        3
    } else if nanos % 1_000 == 0 {
        6
    } else {
        9
    };
    Timestamp::from_nanos(nanos, digits).to_rfc3339()
}

const TYPES: [&str; 6] = [
    "billing.plan_set",
    "billing.quota_set",
    "billingx.other",
    "crawl.done",
    "acct.login",
    "acct.login.failed",
];

fn model_event(tenant: &str, k: usize, ts: Option<i64>) -> PreparedEvent {
    prep(ev(tenant, TYPES[k % TYPES.len()], |m| {
        m.insert("actor".into(), json!(format!("user:a{}@x.example", k % 37)));
        if k.is_multiple_of(5) {
            m.insert(
                "impersonation_session".into(),
                json!(format!("imp_{}", k % 11)),
            );
        }
        if !k.is_multiple_of(9) {
            m.insert("event_id".into(), json!(uuid()));
        }
        if let Some(n) = ts {
            m.insert("timestamp".into(), json!(ts_text(n)));
        }
        m.insert("payload".into(), json!({"k": k}));
    }))
}

async fn append_rows(store: &Arc<dyn Store>, rows: &mut Vec<Row>, batch: Vec<PreparedEvent>) {
    let out = store.append(batch.clone()).await.unwrap();
    assert_eq!(out.accepted, batch.len());
    for p in batch {
        let e = p.event;
        rows.push(Row {
            tenant: e.tenant_id.to_string(),
            id: e.event_id,
            ts: e.timestamp.nanos,
            ty: e.event_type.to_string(),
            actor: e.actor.to_string(),
            session: e.impersonation_session.map(String::from),
        });
    }
}

/// Walks `q` in both orders with cursors and compares with the model.
async fn check_walk(
    store: &Arc<dyn Store>,
    rows: &[Row],
    q: EventQuery,
    pred: impl Fn(&Row) -> bool,
    what: &str,
) -> usize {
    let mut want: Vec<&Row> = rows
        .iter()
        .filter(|r| q.tenant_id.as_ref().is_none_or(|t| &r.tenant == t))
        .filter(|r| q.since.is_none_or(|s| r.ts >= s.nanos))
        .filter(|r| q.until.is_none_or(|u| r.ts < u.nanos))
        .filter(|r| pred(r))
        .collect();
    want.sort_by_key(|r| r.key());
    let want_ids: Vec<String> = want.iter().map(|r| r.id.to_string()).collect();
    for order in [Order::Asc, Order::Desc] {
        let got = walk(store, EventQuery { order, ..q.clone() }).await;
        let got_ids = ids(&got);
        let mut seen = HashSet::new();
        for id in &got_ids {
            assert!(seen.insert(id.clone()), "{what} {order:?}: {id} repeated");
        }
        let mut expect = want_ids.clone();
        if order == Order::Desc {
            expect.reverse();
        }
        if got_ids != expect {
            let first_diff = got_ids
                .iter()
                .zip(&expect)
                .position(|(a, b)| a != b)
                .unwrap_or(got_ids.len().min(expect.len()));
            panic!(
                "{what} {order:?}: got {} events, expected {}; first difference at {first_diff}",
                got_ids.len(),
                expect.len()
            );
        }
        for (e, r) in got.iter().zip(if order == Order::Asc {
            want.clone()
        } else {
            want.iter().rev().copied().collect()
        }) {
            assert_eq!(e.timestamp.nanos, r.ts, "{what}");
            assert_eq!(e.tenant_id, r.tenant, "{what}");
        }
    }
    want_ids.len()
}

fn expected_stats(
    rows: &[Row],
    tenant: Option<&str>,
    since: Option<i64>,
    until: Option<i64>,
) -> (u64, BTreeMap<String, u64>, BTreeMap<String, u64>) {
    let mut by_type = BTreeMap::new();
    let mut by_day = BTreeMap::new();
    let mut total = 0;
    for r in rows {
        if tenant.is_some_and(|t| t != r.tenant)
            || since.is_some_and(|s| r.ts < s)
            || until.is_some_and(|u| r.ts >= u)
        {
            continue;
        }
        total += 1;
        *by_type.entry(r.ty.clone()).or_insert(0) += 1;
        *by_day
            .entry(Timestamp::from_nanos(r.ts, 3).to_rfc3339()[..10].to_string())
            .or_insert(0) += 1;
    }
    (total, by_type, by_day)
}

async fn check_listings(store: &Arc<dyn Store>, rows: &[Row], big: &str, ctx: &str) {
    let base = ts("2026-03-01T00:00:00Z").nanos;
    let sec = 1_000_000_000i64;
    let q = |limit: usize| EventQuery {
        limit,
        ..Default::default()
    };
    let n = check_walk(store, rows, q(97), |_| true, &format!("{ctx}: everything")).await;
    assert_eq!(n, rows.len());
    check_walk(
        store,
        rows,
        EventQuery {
            tenant_id: Some(big.into()),
            ..q(333)
        },
        |_| true,
        &format!("{ctx}: big tenant"),
    )
    .await;
    check_walk(
        store,
        rows,
        EventQuery {
            actor: Some("user:a3@x.example".into()),
            ..q(50)
        },
        |r| r.actor == "user:a3@x.example",
        &format!("{ctx}: one actor, all tenants"),
    )
    .await;
    check_walk(
        store,
        rows,
        EventQuery {
            session: Some("imp_2".into()),
            ..q(40)
        },
        |r| r.session.as_deref() == Some("imp_2"),
        &format!("{ctx}: one session, all tenants"),
    )
    .await;
    check_walk(
        store,
        rows,
        EventQuery {
            event_type: Some(TypeFilter::Prefix("billing.".into())),
            ..q(211)
        },
        |r| r.ty.starts_with("billing."),
        &format!("{ctx}: billing.*"),
    )
    .await;
    check_walk(
        store,
        rows,
        EventQuery {
            event_type: Some(TypeFilter::Prefix("acct.login".into())),
            actor: Some("user:a7@x.example".into()),
            ..q(13)
        },
        |r| r.ty.starts_with("acct.login") && r.actor == "user:a7@x.example",
        &format!("{ctx}: acct.login* by one actor"),
    )
    .await;
    // The backfilled region of the big tenant, bounds on an identical-timestamp cluster.
    for (since, until) in [
        (base + 1000 * sec, base + 1001 * sec),
        (base + 999 * sec, base + 1000 * sec),
        (base + 500 * sec, base + 3000 * sec + 500_000_000),
        (base - 1, base + 4096 * sec),
    ] {
        check_walk(
            store,
            rows,
            EventQuery {
                tenant_id: Some(big.into()),
                since: Some(Timestamp::from_nanos(since, 9)),
                until: Some(Timestamp::from_nanos(until, 9)),
                ..q(77)
            },
            |_| true,
            &format!("{ctx}: big {since}..{until}"),
        )
        .await;
        check_walk(
            store,
            rows,
            EventQuery {
                tenant_id: Some(big.into()),
                event_type: Some(TypeFilter::Exact("crawl.done".into())),
                since: Some(Timestamp::from_nanos(since, 9)),
                until: Some(Timestamp::from_nanos(until, 9)),
                ..q(19)
            },
            |r| r.ty == "crawl.done",
            &format!("{ctx}: big crawl.done {since}..{until}"),
        )
        .await;
    }
    // Before 1970 only, across tenants.
    check_walk(
        store,
        rows,
        EventQuery {
            since: Some(ts("1677-09-21T00:12:44Z")),
            until: Some(ts("1970-01-01T00:00:00Z")),
            ..q(29)
        },
        |_| true,
        &format!("{ctx}: before 1970"),
    )
    .await;
    check_walk(
        store,
        rows,
        EventQuery {
            until: Some(ts("1969-12-31T23:59:59.999Z")),
            actor: Some("user:a1@x.example".into()),
            ..q(3)
        },
        |r| r.actor == "user:a1@x.example",
        &format!("{ctx}: until 1969, one actor"),
    )
    .await;
    // Nothing for unknown names.
    for q in [
        EventQuery {
            actor: Some("user:nobody".into()),
            ..q(10)
        },
        EventQuery {
            session: Some("imp_none".into()),
            ..q(10)
        },
        EventQuery {
            tenant_id: Some("no-such-tenant".into()),
            ..q(10)
        },
        EventQuery {
            event_type: Some(TypeFilter::Prefix("zzz.".into())),
            ..q(10)
        },
    ] {
        let page = store.query(q.clone()).await.unwrap();
        assert!(
            page.events.is_empty() && page.next_cursor.is_none(),
            "{q:?}"
        );
    }
    // A small tenant, every filter combined.
    let small = rows
        .iter()
        .find(|r| r.tenant != big && r.session.is_some())
        .unwrap();
    let (st, sa, ss) = (
        small.tenant.clone(),
        small.actor.clone(),
        small.session.clone(),
    );
    check_walk(
        store,
        rows,
        EventQuery {
            tenant_id: Some(st.clone()),
            actor: Some(sa.clone()),
            session: ss.clone(),
            event_type: Some(TypeFilter::Exact(small.ty.clone())),
            ..q(1)
        },
        |r| r.actor == sa && r.session == ss && r.ty == small.ty,
        &format!("{ctx}: small tenant, all filters"),
    )
    .await;

    // Tenants: counts and first/last timestamps.
    let mut want: BTreeMap<String, (u64, i64, i64)> = BTreeMap::new();
    for r in rows {
        let w = want
            .entry(r.tenant.clone())
            .or_insert((0, i64::MAX, i64::MIN));
        w.0 += 1;
        w.1 = w.1.min(r.ts);
        w.2 = w.2.max(r.ts);
    }
    let got: BTreeMap<String, (u64, i64, i64)> = store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|s| {
            (
                s.tenant_id,
                (
                    s.event_count,
                    s.first_timestamp.unwrap().nanos,
                    s.last_timestamp.unwrap().nanos,
                ),
            )
        })
        .collect();
    assert_eq!(got, want, "{ctx}: tenants");

    // Stats, per tenant and across tenants, whole and partial days, before 1970.
    let cases: Vec<(Option<&str>, Option<i64>, Option<i64>)> = vec![
        (None, None, None),
        (Some(big), None, None),
        (
            None,
            Some(ts("1969-07-20T12:00:00Z").nanos),
            Some(ts("1970-01-01T00:00:00.001Z").nanos),
        ),
        (None, None, Some(ts("1969-12-31T00:00:00Z").nanos)),
        (
            Some(big),
            Some(base + 1000 * sec),
            Some(base + 86_400 * sec + 1),
        ),
        (
            None,
            Some(ts("1677-09-21T00:12:44Z").nanos),
            Some(ts("1677-09-22T06:00:00Z").nanos),
        ),
    ];
    for (t, since, until) in cases {
        let s = store
            .stats(StatsQuery {
                tenant_id: t.map(String::from),
                since: since.map(|n| Timestamp::from_nanos(n, 9)),
                until: until.map(|n| Timestamp::from_nanos(n, 9)),
            })
            .await
            .unwrap();
        let (total, by_type, by_day) = expected_stats(rows, t, since, until);
        let what = format!("{ctx}: stats {t:?} {since:?}..{until:?}");
        assert_eq!(s.counts_by_day, by_day, "{what}");
        assert_eq!(s.counts_by_type, by_type, "{what}");
        assert_eq!(s.total, total, "{what}");
    }
}

/// 300 small tenants plus one of ~6,500 events whose time index fills many index chunks (512 entries each) and then
/// takes a backfill into the full chunk (splitting it), an identical-timestamp cluster across
/// chunk boundaries, pre-1970 timestamps down to 1677, and server-assigned ones. Every listing
/// (cross-tenant and per tenant, every filter, both orders, walked by cursor) equals the model,
/// before and after a restart; so do `tenants()` and `stats()`.
#[tokio::test]
async fn listings_match_a_model_across_tenants_backfill_and_old_timestamps() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), plain());
    let mut rows: Vec<Row> = Vec::new();
    let base = ts("2026-03-01T00:00:00Z").nanos;
    let sec = 1_000_000_000i64;
    let pool: Vec<i64> = [
        "1677-09-21T12:00:00Z",
        "1677-09-22T00:00:00Z",
        "1900-01-01T00:00:00.000001Z",
        "1969-07-20T20:17:40Z",
        "1969-12-31T23:59:59.999Z",
        "1969-12-31T23:59:59.999999999Z",
        "1970-01-01T00:00:00Z",
        "1970-01-01T00:00:00.000000001Z",
        "2000-02-29T12:00:00Z",
        "2026-03-01T00:16:40Z",
        "2026-03-01T00:16:40.5Z",
        "2026-06-01T00:00:00Z",
    ]
    .iter()
    .map(|s| ts(s).nanos)
    .collect();
    let big = "big-tenant";

    // 300 small tenants, 4 events each, timestamps from a shared pool, shuffled batches.
    let mut small = Vec::new();
    for i in 0..300usize {
        let t = format!("mt-{i:03}");
        for j in 0..4usize {
            let k = i * 4 + j;
            let at = if k % 97 == 0 {
                None
            } else {
                Some(pool[(k * 7) % pool.len()])
            };
            small.push(model_event(&t, k, at));
        }
    }
    {
        use rand::seq::SliceRandom;
        small.shuffle(&mut rand::rng());
    }
    while !small.is_empty() {
        let rest = small.split_off(small.len().min(400));
        let batch = std::mem::replace(&mut small, rest);
        append_rows(&store, &mut rows, batch).await;
    }
    // The big tenant: 4,500 ascending (fills a 4096 chunk and starts another)…
    for c in 0..5 {
        let batch = (c * 900..(c + 1) * 900)
            .map(|i| model_event(big, i, Some(base + i as i64 * sec)))
            .collect();
        append_rows(&store, &mut rows, batch).await;
    }
    // …then 1,500 late events into the first chunk's range, newest first…
    let late: Vec<PreparedEvent> = (0..1500usize)
        .rev()
        .map(|i| model_event(big, 10_000 + i, Some(base + i as i64 * 3 * sec + sec / 2)))
        .collect();
    for chunk in late.chunks(500) {
        append_rows(&store, &mut rows, chunk.to_vec()).await;
    }
    // …300 with one identical timestamp (also that of an ascending one)…
    append_rows(
        &store,
        &mut rows,
        (0..300)
            .map(|i| model_event(big, 20_000 + i, Some(base + 1000 * sec)))
            .collect(),
    )
    .await;
    // …old ones, and a few without a timestamp.
    append_rows(
        &store,
        &mut rows,
        (0..200usize)
            .map(|i| model_event(big, 30_000 + i, Some(pool[i % 8] - (i as i64 % 3))))
            .collect(),
    )
    .await;
    append_rows(
        &store,
        &mut rows,
        (0..10)
            .map(|i| model_event(big, 40_000 + i, None))
            .collect(),
    )
    .await;
    assert!(rows.iter().filter(|r| r.tenant == big).count() > 6000);

    check_listings(&store, &rows, big, "live").await;
    // The big tenant's log is in arrival order.
    let log = store.read_log(big, 4000, 1000).await.unwrap();
    let want: Vec<Uuid> = rows
        .iter()
        .filter(|r| r.tenant == big)
        .skip(4000)
        .take(1000)
        .map(|r| r.id)
        .collect();
    assert_eq!(log.iter().map(|e| e.event_id).collect::<Vec<_>>(), want);
    close(store).await;

    let store = open_store(dir.path(), plain());
    check_listings(&store, &rows, big, "reopened").await;
    close(store).await;
}

// ---------------------------------------------------------------------------------------------
// 6. Foreign and damaged data directories

#[tokio::test]
async fn an_old_format_directory_is_refused_every_time() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("db")).unwrap();
    std::fs::write(dir.path().join("db").join("journal"), b"fjall data").unwrap();
    for attempt in 0..2 {
        let e = open_err(dir.path(), plain(), "a db/ directory without log/");
        let msg = e.to_string();
        assert!(msg.contains("db"), "attempt {attempt}: {msg}");
        assert!(
            !dir.path().join("log").exists(),
            "attempt {attempt}: a refused open created log/, so the next open would ignore db/"
        );
    }
    assert_eq!(
        std::fs::read(dir.path().join("db").join("journal")).unwrap(),
        b"fjall data"
    );
}

#[tokio::test]
async fn stray_or_missing_segment_files_are_refused_without_panic() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        dict_train_events: 0,
        segment_bytes: 2048,
        ..Default::default()
    };
    let mut model = Model::new();
    let store = open_store(dir.path(), opts.clone());
    for i in 0..20 {
        append_into(
            &store,
            &mut model,
            (0..3)
                .map(|_| {
                    prep(ev("stray", "st.x", |m| {
                        m.insert("payload".into(), json!({"i": i}));
                    }))
                })
                .collect(),
        )
        .await;
    }
    close(store).await;
    let n = segment_count(dir.path());
    assert!(n >= 3, "{n} segments");
    let snap = snapshot_log(dir.path());
    let log = dir.path().join("log");

    // A file whose name is not a segment number.
    std::fs::write(log.join("abc.seg"), b"whatever").unwrap();
    let e = open_err(dir.path(), opts.clone(), "log/abc.seg");
    assert!(is_corrupt_naming(&e, "abc.seg"), "{e:?}");
    assert_log_unchanged(&snap, None, "abc.seg");
    std::fs::remove_file(log.join("abc.seg")).unwrap();

    // A gap: segment 2 missing.
    std::fs::remove_file(seg_path(dir.path(), 2)).unwrap();
    let e = open_err(dir.path(), opts.clone(), "segment 2 missing");
    assert!(
        matches!(&e, StoreError::Corrupt(m) if m.contains("missing")),
        "{e:?}"
    );
    let remaining: Vec<_> = snap
        .iter()
        .filter(|(p, _)| *p != seg_path(dir.path(), 2))
        .cloned()
        .collect();
    assert_log_unchanged(&remaining, None, "gap");
    restore_log(dir.path(), &snap);

    // Segment 1 missing (the log starts at 2).
    std::fs::remove_file(seg_path(dir.path(), 1)).unwrap();
    let e = open_err(dir.path(), opts.clone(), "segment 1 missing");
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    restore_log(dir.path(), &snap);

    // One segment past the end, not dense.
    std::fs::write(seg_path(dir.path(), n + 2), b"").unwrap();
    let e = open_err(dir.path(), opts.clone(), "segment n+1 missing");
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    restore_log(dir.path(), &snap);

    // A directory where a segment should be.
    std::fs::remove_file(seg_path(dir.path(), 2)).unwrap();
    std::fs::create_dir(seg_path(dir.path(), 2)).unwrap();
    assert!(EmbeddedStore::open(dir.path(), opts.clone()).is_err());
    restore_log(dir.path(), &snap);

    // Unrelated files are ignored; the restored log opens with everything.
    std::fs::write(log.join("README"), b"notes").unwrap();
    std::fs::write(log.join("00000001.seg.bak"), b"a copy").unwrap();
    let store = open_store(dir.path(), opts);
    assert_model(&store, &model, &[], "restored").await;
    close(store).await;
}

// ---------------------------------------------------------------------------------------------
// 7. Hand-written blocks: valid CRC, bad content

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn entry(out: &mut Vec<u8>, kind: u8, content: &[u8]) {
    out.push(kind);
    varint(out, content.len() as u64);
    out.extend_from_slice(content);
}

fn sym(out: &mut Vec<u8>, id: u64, text: &str) {
    let mut c = Vec::new();
    varint(&mut c, id);
    c.extend_from_slice(text.as_bytes());
    entry(out, 1, &c);
}

struct Ev {
    tenant: u64,
    seq: u64,
    flags: u8,
    ts: i64,
    id: [u8; 16],
    ty: u64,
    actor: u64,
    session: u64,
    dict: u64,
    body: Vec<u8>,
}

/// The real leaf hash of a hand-written event over the symbols `crafted_log` defines (so the
/// engine's read-time leaf check passes for well-formed ones); anything else gets a dummy.
fn crafted_leaf(e: &Ev) -> Hash {
    let names = |s: u64| match s {
        1 => Some("crafted"),
        2 => Some("x.y"),
        3 => Some("user:c"),
        _ => None,
    };
    let (Some(tenant), Some(ty), Some(actor)) = (names(e.tenant), names(e.ty), names(e.actor))
    else {
        return [6; 32];
    };
    if e.flags != 0 || e.dict != 0 {
        return [6; 32];
    }
    let id = Uuid::from_bytes(e.id).hyphenated().to_string();
    let ts = Timestamp::from_nanos(e.ts, 3).to_rfc3339();
    let f = trailkeep_core::leaf::LeafFields {
        event_id: &id,
        event_type: ty,
        actor,
        tenant_id: tenant,
        timestamp: &ts,
        source_ip: None,
        impersonation_session: None,
        approval_id: None,
    };
    trailkeep_core::leaf::event_leaf_hash(&f, &[5; 32], &e.body)
}

fn event(out: &mut Vec<u8>, e: &Ev) {
    let mut c = Vec::new();
    varint(&mut c, e.tenant);
    varint(&mut c, e.seq);
    c.push(e.flags);
    c.push(3);
    c.extend_from_slice(&e.ts.to_le_bytes());
    c.extend_from_slice(&e.ts.to_le_bytes());
    c.extend_from_slice(&e.id);
    c.extend_from_slice(&[5; 32]);
    c.extend_from_slice(&crafted_leaf(e));
    varint(&mut c, e.ty);
    varint(&mut c, e.actor);
    if e.flags & 4 != 0 {
        varint(&mut c, e.session);
    }
    varint(&mut c, e.dict);
    c.extend_from_slice(&e.body);
    entry(out, 3, &c);
}

fn block(body: &[u8]) -> Vec<u8> {
    let mut b = (body.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    b.extend_from_slice(&TEST_LOG_ID.to_le_bytes());
    b.extend_from_slice(body);
    b
}

fn good_event(seq: u64, id: [u8; 16]) -> Ev {
    Ev {
        tenant: 1,
        seq,
        flags: 0,
        ts: ts("2026-01-01T00:00:00Z").nanos,
        id,
        ty: 2,
        actor: 3,
        session: 0,
        dict: 0,
        body: b"{}".to_vec(),
    }
}

/// Segment 1 holding one block: symbols 1 = "crafted", 2 = "x.y", 3 = "user:c", and event 0.
fn crafted_log(dir: &Path, id: [u8; 16], extra_blocks: &[Vec<u8>]) {
    let mut body = Vec::new();
    sym(&mut body, 1, "crafted");
    sym(&mut body, 2, "x.y");
    sym(&mut body, 3, "user:c");
    event(&mut body, &good_event(0, id));
    let mut seg = seg_header(1, 0);
    seg.extend_from_slice(&block(&body));
    for b in extra_blocks {
        seg.extend_from_slice(&block(b));
    }
    std::fs::create_dir_all(dir.join("log")).unwrap();
    std::fs::write(seg_path(dir, 1), seg).unwrap();
}

/// Blocks that pass their CRC but do not decode are corruption, never a torn tail (the file is
/// left as it is) and never a panic.
#[tokio::test]
async fn whole_blocks_that_do_not_decode_are_corrupt_not_cut_and_not_a_panic() {
    let id0 = [0x11u8; 16];
    // Baseline: the hand-written log is what the engine writes.
    {
        let dir = tempfile::tempdir().unwrap();
        crafted_log(dir.path(), id0, &[]);
        let store = open_store(dir.path(), plain());
        assert_eq!(store.tree_size("crafted").await.unwrap(), 1);
        let e = store
            .get_event(Uuid::from_bytes(id0))
            .await
            .unwrap()
            .unwrap();
        assert_eq!((e.tenant_id.as_str(), e.seq), ("crafted", 0));
        assert_eq!((e.event_type.as_str(), e.actor.as_str()), ("x.y", "user:c"));
        assert_eq!(e.payload.as_deref(), Some(&b"{}"[..]));
        assert_eq!(e.leaf_hash, crafted_leaf(&good_event(0, id0)));
        let out = store
            .append(vec![prep(ev("crafted", "x.y", |_| {}))])
            .await
            .unwrap();
        assert_eq!(out.receipts[0].seq, 1);
        close(store).await;
    }
    let id1 = [0x22u8; 16];
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut b = Vec::new();
    entry(&mut b, 9, b"future");
    cases.push(("unknown entry kind", b));
    let mut b = Vec::new();
    event(
        &mut b,
        &Ev {
            tenant: 99,
            ..good_event(1, id1)
        },
    );
    cases.push(("undefined tenant symbol", b));
    let mut b = Vec::new();
    event(
        &mut b,
        &Ev {
            actor: 4,
            ..good_event(1, id1)
        },
    );
    cases.push(("undefined actor symbol", b));
    let mut b = Vec::new();
    event(&mut b, &good_event(5, id1));
    cases.push(("seq gap", b));
    let mut b = Vec::new();
    event(&mut b, &good_event(0, id1));
    cases.push(("seq repeated", b));
    let mut b = Vec::new();
    sym(&mut b, 1, "again");
    cases.push(("symbol out of order", b));
    let mut b = Vec::new();
    sym(&mut b, 1 << 40, "huge");
    cases.push(("symbol id beyond u32", b));
    let mut b = vec![1u8];
    varint(&mut b, 1000);
    b.extend_from_slice(b"abc");
    cases.push(("entry longer than its block", b));
    let mut b = vec![3u8];
    b.extend_from_slice(&[0xff; 11]);
    cases.push(("overlong varint", b));
    let mut b = Vec::new();
    event(
        &mut b,
        &Ev {
            dict: 7,
            ..good_event(1, id1)
        },
    );
    cases.push(("dictionary not in the log", b));
    let mut b = Vec::new();
    event(
        &mut b,
        &Ev {
            flags: 4,
            session: 0,
            ..good_event(1, id1)
        },
    );
    cases.push(("session symbol 0", b));
    let mut b = Vec::new();
    let mut c = Vec::new();
    varint(&mut c, 1);
    varint(&mut c, 9);
    c.extend_from_slice(&[1; 32]);
    c.extend_from_slice(b"note");
    entry(&mut b, 4, &c);
    cases.push(("checkpoint beyond the log", b));
    let mut b = Vec::new();
    let mut c = Vec::new();
    varint(&mut c, 1);
    varint(&mut c, 0);
    c.extend_from_slice(&[1; 10]);
    entry(&mut b, 4, &c);
    cases.push(("checkpoint cut short", b));
    let mut b = Vec::new();
    entry(&mut b, 3, &[1, 1]);
    cases.push(("event header cut short", b));
    let mut b = Vec::new();
    let mut c = Vec::new();
    varint(&mut c, 2);
    c.extend_from_slice(b"dictionary two before one");
    entry(&mut b, 2, &c);
    cases.push(("dictionary out of order", b));
    for (what, bad) in cases {
        let dir = tempfile::tempdir().unwrap();
        crafted_log(dir.path(), id0, &[bad]);
        let p = seg_path(dir.path(), 1);
        let before = std::fs::read(&p).unwrap();
        let e = open_err(dir.path(), plain(), what);
        assert!(matches!(e, StoreError::Corrupt(_)), "{what}: {e:?}");
        assert!(
            std::fs::read(&p).unwrap() == before,
            "{what}: a whole block that does not decode is not a torn tail; the log was changed"
        );
    }
}

/// Event bodies are only decoded when read: a damaged body (valid CRC) is `Corrupt` on every
/// read path and for a re-send of its id, and the rest of the store keeps working.
#[tokio::test]
async fn undecodable_bodies_are_corrupt_on_read_not_a_panic() {
    let id0 = [0x11u8; 16];
    // (what, flags, dictionary bytes as stored (codec id first), body)
    type Case<'a> = (&'a str, u8, Option<Vec<u8>>, Vec<u8>);
    let fsst_empty = vec![1u8, 0];
    let bodies: Vec<Case> = vec![
        ("source ip longer than the body", 2, None, vec![200, b'1']),
        (
            "source ip not UTF-8",
            2,
            None,
            vec![2, 0xff, 0xfe, b'{', b'}'],
        ),
        ("approval id cut short", 8, None, vec![9]),
        (
            "a code the FSST table does not have",
            0,
            Some(fsst_empty.clone()),
            vec![0x05],
        ),
        (
            "an FSST escape cut short",
            0,
            Some(fsst_empty.clone()),
            vec![0xff],
        ),
        (
            "a dictionary of a codec this version does not know",
            0,
            Some([b'd'; 2000].to_vec()),
            b"whatever".to_vec(),
        ),
    ];
    for (what, flags, dict_bytes, body) in bodies {
        let dir = tempfile::tempdir().unwrap();
        let id1 = [0x33u8; 16];
        let mut b = Vec::new();
        let dict = u64::from(dict_bytes.is_some());
        if let Some(bytes) = &dict_bytes {
            let mut c = Vec::new();
            varint(&mut c, 1);
            c.extend_from_slice(bytes);
            entry(&mut b, 2, &c);
        }
        event(
            &mut b,
            &Ev {
                flags,
                dict,
                body,
                ..good_event(1, id1)
            },
        );
        crafted_log(dir.path(), id0, &[b]);
        let store = open_store(dir.path(), plain());
        assert_eq!(store.tree_size("crafted").await.unwrap(), 2, "{what}");
        let bad = Uuid::from_bytes(id1);
        let r = store.get_event(bad).await;
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{what}: {r:?}");
        let r = store.read_log("crafted", 0, 10).await;
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{what}: {r:?}");
        let r = store
            .query(EventQuery {
                tenant_id: Some("crafted".into()),
                limit: 10,
                ..Default::default()
            })
            .await;
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{what}: {r:?}");
        // The undamaged event still reads; a re-send of the damaged id is refused, not stored.
        assert!(store
            .get_event(Uuid::from_bytes(id0))
            .await
            .unwrap()
            .is_some());
        let resend = prep(ev("crafted", "x.y", |m| {
            m.insert("event_id".into(), json!(bad.to_string()));
        }));
        let r = store.append(vec![resend]).await;
        assert!(r.is_err(), "{what}: {r:?}");
        assert_eq!(store.tree_size("crafted").await.unwrap(), 2, "{what}");
        // Writes go on.
        let out = store
            .append(vec![
                prep(ev("crafted", "x.y", |_| {})),
                prep(ev("other", "x.y", |_| {})),
            ])
            .await
            .unwrap();
        assert_eq!((out.receipts[0].seq, out.receipts[1].seq), (2, 0), "{what}");
        store.ready().await.unwrap();
        close(store).await;
        let store = open_store(dir.path(), plain());
        assert_eq!(store.tree_size("crafted").await.unwrap(), 3, "{what}");
        close(store).await;
    }
}

// ---------------------------------------------------------------------------------------------
// 8. Conflicts inside commit groups leave nothing behind

/// Many concurrent requests share one event id with two different contents; each also carries
/// an event for a tenant of its own. Exactly the requests agreeing with the first stored copy
/// succeed (all with the same receipt); the others store nothing: their tenants do not exist,
/// before or after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conflicting_requests_in_one_group_leave_no_trace_across_restart() {
    // Default groups, one message per group, and groups cut after a few events.
    for max_group in [50_000, 1, 3] {
        conflict_case(max_group).await;
    }
}

async fn conflict_case(max_group: usize) {
    let opts = EmbeddedOptions {
        max_group_events: max_group,
        ..plain()
    };
    let dir = tempfile::tempdir().unwrap();
    let shared_id = uuid();
    let store = open_store(dir.path(), opts.clone());
    let mut tasks = Vec::new();
    for i in 0..48usize {
        let store = store.clone();
        let shared_id = shared_id.clone();
        tasks.push(tokio::spawn(async move {
            let own = format!("grp-own-{i:02}");
            let content = i % 2;
            let shared = ev_at("grp-shared", "grp.x", &shared_id, "2026-04-01T00:00:00Z");
            let mut shared = shared;
            shared["payload"] = json!({"variant": content});
            let batch = vec![
                prep(ev(&own, &format!("grp.own_{i}"), |m| {
                    m.insert("actor".into(), json!(format!("svc:own-{i}")));
                })),
                prep(shared),
            ];
            (i, store.append(batch).await)
        }));
    }
    let mut ok = Vec::new();
    let mut refused = Vec::new();
    let mut receipts = Vec::new();
    for t in tasks {
        let (i, res) = t.await.unwrap();
        match res {
            Ok(out) => {
                assert_eq!(out.accepted + out.duplicates, 2);
                assert_eq!(out.receipts[0].seq, 0);
                if !receipts.contains(&out.receipts[1]) {
                    receipts.push(out.receipts[1].clone());
                }
                ok.push(i);
            }
            Err(StoreError::Conflict { index, .. }) => {
                assert_eq!(index, 1);
                refused.push(i);
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(receipts.len(), 1, "one receipt for the shared id");
    let winner_variant = ok[0] % 2;
    assert!(ok.iter().all(|i| i % 2 == winner_variant));
    assert!(refused.iter().all(|i| i % 2 != winner_variant));
    assert_eq!(ok.len() + refused.len(), 48);
    assert_eq!(ok.len(), 24);
    grp_check(&store, &ok, &refused, "live").await;
    // A refused request's tenant starts at seq 0 when it later succeeds.
    let late = format!("grp-own-{:02}", refused[0]);
    let out = store
        .append(vec![prep(ev(&late, "grp.late", |_| {}))])
        .await
        .unwrap();
    assert_eq!(out.receipts[0].seq, 0);
    close(store).await;
    let store = open_store(dir.path(), opts.clone());
    assert_eq!(store.tree_size(&late).await.unwrap(), 1);
    grp_check(&store, &ok, &refused[1..], "reopened").await;
    assert_eq!(store.tenants().await.unwrap().len(), 2 + ok.len());
    close(store).await;
}

/// Re-sends while the original is still on its way to the disk: 32 writers send overlapping
/// batches drawn from one pool of ids (one content per id, some copies with a second,
/// conflicting content), with groups cut after every message or every few events, so a copy is
/// often in a block decided but not yet applied. Every id is stored at most once; every
/// accepted copy matches the stored content and gets the stored receipt; a refused request
/// names an event whose content differs from the stored one; a restart sees the same log.
/// Answers go out once a block is durable, before the apply thread has put it in memory. With
/// the apply thread held back, every read right after a receipt (by id, list, tree, tenants,
/// stats) must still see the event: reads wait for memory to catch up with what was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_right_after_a_receipt_see_the_event_while_memory_lags() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EmbeddedOptions {
        apply_delay: std::time::Duration::from_millis(150),
        ..plain()
    };
    let store = open_store(dir.path(), opts);
    let t = "lagging-t";
    for round in 1..=4u64 {
        let id = uuid();
        let batch = vec![prep(ev_at(t, "lag.x", &id, "2026-04-01T00:00:00Z"))];
        let out = store.append(batch).await.unwrap();
        assert_eq!(out.receipts[0].seq, round - 1);
        let uid = Uuid::parse_str(&id).unwrap();
        // Each read is the first one after its receipt.
        match round {
            1 => {
                let e = store.get_event(uid).await.unwrap();
                assert_eq!(
                    e.map(|e| e.seq),
                    Some(round - 1),
                    "get by id, round {round}"
                );
            }
            2 => assert_eq!(store.tree_size(t).await.unwrap(), round, "tree size"),
            3 => {
                let tenants = store.tenants().await.unwrap();
                let n = tenants
                    .iter()
                    .find(|x| x.tenant_id == t)
                    .map(|x| x.event_count);
                assert_eq!(n, Some(round), "tenants");
            }
            _ => {
                let q = EventQuery {
                    tenant_id: Some(t.into()),
                    limit: 10,
                    ..Default::default()
                };
                let page = store.query(q).await.unwrap();
                assert_eq!(page.events.len() as u64, round, "list");
                assert!(page.events.iter().any(|e| e.event_id == uid), "list");
            }
        }
    }
    close(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resends_of_events_not_yet_durable_are_recognised() {
    for max_group in [1, 3, 50_000] {
        let opts = EmbeddedOptions {
            max_group_events: max_group,
            ..plain()
        };
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path(), opts.clone());
        let pool: Vec<String> = (0..40).map(|_| uuid()).collect();
        let tenants = ["flight-a", "flight-b", "flight-c"];
        let event = {
            let pool = pool.clone();
            move |k: usize, variant: u64| {
                let mut v = ev_at(tenants[k % 3], "flight.x", &pool[k], "2026-04-01T00:00:00Z");
                v["payload"] = json!({"k": k, "variant": variant});
                v
            }
        };
        let mut tasks = Vec::new();
        for w in 0..32usize {
            let store = store.clone();
            let event = event.clone();
            tasks.push(tokio::spawn(async move {
                let mut sent = Vec::new();
                for round in 0..6usize {
                    let ks: Vec<(usize, u64)> = (0..8)
                        .map(|j| {
                            let k = (w * 5 + round * 11 + j * 3) % 40;
                            // Every 7th request carries a conflicting copy of its first id.
                            let variant = u64::from(j == 0 && (w * 6 + round) % 7 == 0);
                            (k, variant)
                        })
                        .collect();
                    let batch = ks.iter().map(|&(k, v)| prep(event(k, v))).collect();
                    sent.push((ks, store.append(batch).await));
                }
                sent
            }));
        }
        let mut requests = Vec::new();
        for t in tasks {
            requests.extend(t.await.unwrap());
        }
        let check = |store: Arc<dyn Store>, ctx: String| {
            let pool = pool.clone();
            let requests = &requests;
            async move {
                let mut stored: HashMap<usize, StoredEvent> = HashMap::new();
                for (k, id) in pool.iter().enumerate() {
                    if let Some(e) = store.get_event(Uuid::parse_str(id).unwrap()).await.unwrap() {
                        stored.insert(k, e);
                    }
                }
                let mut size = 0;
                for t in tenants {
                    size += store.tree_size(t).await.unwrap();
                }
                assert_eq!(size as usize, stored.len(), "{ctx}: every id stored once");
                let variant = |e: &StoredEvent| {
                    let p: Value = serde_json::from_slice(e.payload.as_ref().unwrap()).unwrap();
                    p["variant"].as_u64().unwrap()
                };
                let mut conflicts = 0;
                for (ks, res) in requests {
                    match res {
                        Ok(out) => {
                            assert_eq!(out.receipts.len(), ks.len(), "{ctx}");
                            for ((k, v), rc) in ks.iter().zip(&out.receipts) {
                                let e = &stored[k];
                                assert_eq!(variant(e), *v, "{ctx}: id {k}");
                                assert_eq!(
                                    (rc.seq, rc.leaf_hash),
                                    (e.seq, e.leaf_hash),
                                    "{ctx}: id {k}"
                                );
                            }
                        }
                        Err(StoreError::Conflict { index, .. }) => {
                            let (k, v) = ks[*index];
                            assert_ne!(variant(&stored[&k]), v, "{ctx}: id {k}");
                            conflicts += 1;
                        }
                        Err(e) => panic!("{ctx}: {e:?}"),
                    }
                }
                assert!(
                    conflicts > 0,
                    "{ctx}: conflicting copies met their originals"
                );
                size
            }
        };
        let size = check(store.clone(), format!("max_group {max_group}")).await;
        close(store).await;
        let store = open_store(dir.path(), opts);
        let again = check(store.clone(), format!("max_group {max_group}, reopened")).await;
        assert_eq!(again, size);
        close(store).await;
    }
}

async fn grp_check(store: &Arc<dyn Store>, ok: &[usize], refused: &[usize], ctx: &str) {
    assert_eq!(store.tree_size("grp-shared").await.unwrap(), 1, "{ctx}");
    for i in ok {
        let t = format!("grp-own-{i:02}");
        assert_eq!(store.tree_size(&t).await.unwrap(), 1, "{ctx}: {t}");
    }
    for i in refused {
        let t = format!("grp-own-{i:02}");
        assert_eq!(store.tree_size(&t).await.unwrap(), 0, "{ctx}: {t}");
        let page = store
            .query(EventQuery {
                actor: Some(format!("svc:own-{i}")),
                limit: 5,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(page.events.is_empty(), "{ctx}: {t}");
        assert!(store
            .tenants()
            .await
            .unwrap()
            .iter()
            .all(|s| s.tenant_id != t));
    }
}

// ---------------------------------------------------------------------------------------------
// 9. Large trees and shutdown races

/// One tenant past 65,536 events: event metadata and tree hashes cross their memory chunks.
/// Roots, inclusion and consistency proofs agree with an independent tree, and events around
/// the boundaries read back, before and after a restart.
#[tokio::test]
async fn a_tenant_past_one_memory_chunk_proves_and_reads_across_the_boundary() {
    use trailkeep_tlog::{prove_consistency, prove_inclusion, verify_consistency, MemoryHashes};
    let dir = tempfile::tempdir().unwrap();
    let t = "huge";
    let store = open_store(dir.path(), plain());
    let mut leaves: Vec<Hash> = Vec::new();
    let mut idents: Vec<Uuid> = Vec::new();
    let total = 70_000usize;
    let mut next = 0usize;
    while next < total {
        let n = (total - next).min(10_000);
        let batch: Vec<PreparedEvent> = (next..next + n)
            .map(|i| {
                prep(ev(t, "huge.x", |m| {
                    m.insert("payload".into(), json!({"i": i}));
                }))
            })
            .collect();
        let out = store.append(batch).await.unwrap();
        for rc in &out.receipts {
            assert_eq!(rc.seq, leaves.len() as u64);
            leaves.push(rc.leaf_hash);
            idents.push(rc.event_id);
        }
        next += n;
    }
    let reference = MemoryHashes::from_leaves(leaves.iter().copied());
    let size = total as u64;
    let sizes = [
        1u64, 2, 32_767, 32_768, 32_769, 65_535, 65_536, 65_537, 65_538, 69_999, size,
    ];
    let probe = |store: Arc<dyn Store>, ctx: &'static str| {
        let leaves = leaves.clone();
        let idents = idents.clone();
        let reference = &reference;
        async move {
            assert_eq!(store.tree_size(t).await.unwrap(), size, "{ctx}");
            for s in sizes {
                let root = store.tree_root(t, s).await.unwrap();
                assert_eq!(
                    root,
                    trailkeep_tlog::tree_hash(s, reference).unwrap(),
                    "{ctx}: root at {s}"
                );
                for i in [
                    0,
                    s / 2,
                    s.saturating_sub(2),
                    s - 1,
                    32_767,
                    32_768,
                    65_535,
                    65_536,
                ] {
                    if i >= s {
                        continue;
                    }
                    let proof = store.inclusion_proof(t, i, s).await.unwrap();
                    assert_eq!(
                        proof,
                        prove_inclusion(s, i, reference).unwrap(),
                        "{ctx}: {i} in {s}"
                    );
                    verify_inclusion(i, s, &leaves[i as usize], &proof, &root).unwrap();
                }
                for from in [1u64, 32_768, 65_536, s] {
                    if from > s {
                        continue;
                    }
                    let proof = store.consistency_proof(t, from, s).await.unwrap();
                    assert_eq!(
                        proof,
                        prove_consistency(from, s, reference).unwrap(),
                        "{ctx}: {from}..{s}"
                    );
                    let ra = store.tree_root(t, from).await.unwrap();
                    verify_consistency(from, s, &ra, &root, &proof).unwrap();
                }
            }
            for seq in [0u64, 32_767, 32_768, 65_535, 65_536, 65_537, size - 1] {
                let log = store.read_log(t, seq, 1).await.unwrap();
                assert_eq!(log.len(), 1, "{ctx}: seq {seq}");
                assert_eq!(log[0].event_id, idents[seq as usize], "{ctx}: seq {seq}");
                assert_eq!(log[0].leaf_hash, leaves[seq as usize], "{ctx}: seq {seq}");
                let e = store
                    .get_event(idents[seq as usize])
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(e.seq, seq);
            }
            let all = store.leaves(t, 0, size).await.unwrap();
            assert!(all == leaves, "{ctx}: every leaf hash");
            let log = store.read_log(t, 65_530, 20).await.unwrap();
            assert_eq!(
                log.iter().map(|e| e.seq).collect::<Vec<_>>(),
                (65_530..65_550).collect::<Vec<_>>()
            );
        }
    };
    probe(store.clone(), "live").await;
    close(store).await;
    let store = open_store(dir.path(), plain());
    probe(store.clone(), "reopened").await;
    let out = store
        .append(vec![prep(ev(t, "huge.after", |_| {}))])
        .await
        .unwrap();
    assert_eq!(out.receipts[0].seq, size);
    close(store).await;
}

/// Writers racing a shutdown: every append answered `Ok` is in the log after a restart (a
/// receipt means durable), every refused one is `Unavailable` and left nothing, and seqs stay
/// gap-free.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_shutdown_are_either_durable_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), plain());
    let tenants = ["race-a", "race-b", "race-c"];
    let mut tasks = Vec::new();
    for task in 0..12usize {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut refused = Vec::new();
            for round in 0..400usize {
                let batch: Vec<PreparedEvent> = (0..1 + (task + round) % 3)
                    .map(|i| prep(ev(tenants[(task + i) % 3], "race.x", |_| {})))
                    .collect();
                match store.append(batch.clone()).await {
                    Ok(out) => {
                        assert_eq!(out.accepted, batch.len());
                        acked.extend(out.receipts);
                    }
                    Err(StoreError::Unavailable(_)) => {
                        refused.extend(batch.iter().map(|p| p.event.event_id));
                    }
                    Err(e) => panic!("{e:?}"),
                }
            }
            (acked, refused)
        }));
    }
    // Let some commits happen, then shut down under load.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.tree_size("race-a").await.unwrap() < 200 {
        assert!(std::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    store.shutdown().await;
    let mut acked = Vec::new();
    let mut refused = Vec::new();
    for t in tasks {
        let (a, r) = t.await.unwrap();
        acked.extend(a);
        refused.extend(r);
    }
    assert!(!refused.is_empty(), "the shutdown came after every append");
    drop(store);
    let store = open_store(dir.path(), plain());
    let mut want: BTreeMap<String, BTreeMap<u64, (Uuid, Hash)>> = BTreeMap::new();
    for rc in &acked {
        want.entry(rc.tenant_id.to_string())
            .or_default()
            .insert(rc.seq, (rc.event_id, rc.leaf_hash));
    }
    for t in tenants {
        let w: Vec<(Uuid, Hash)> = want
            .get(t)
            .map(|m| m.values().copied().collect())
            .unwrap_or_default();
        assert_log(&store, t, &w, "after the race").await;
    }
    for id in refused {
        assert!(
            store.get_event(id).await.unwrap().is_none(),
            "{id} was refused but stored"
        );
    }
    close(store).await;
}

/// Cursor walks running while writers add events all over the walked range: a walk never
/// repeats an event, stays in order, and sees every event stored before it started.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn walks_concurrent_with_writers_never_repeat_or_skip_older_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), plain());
    let t = "walk-live";
    let base = ts("2026-02-01T00:00:00Z").nanos;
    let at = move |k: u64| base + ((k * 7919) % 5000) as i64 * 1_000_000_000;
    let mut before = Vec::new();
    for c in 0..5u64 {
        let batch: Vec<PreparedEvent> = (c * 1000..(c + 1) * 1000)
            .map(|k| model_event(t, k as usize, Some(at(k))))
            .collect();
        before.extend(batch.iter().map(|p| p.event.event_id));
        store.append(batch).await.unwrap();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..6u64 {
        let store = store.clone();
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut k = 100_000 + w * 100_000;
            // At most 500 batches each: a walk ends only once it overtakes the writers (their
            // events land all over the walked range), so unbounded writers on a starved
            // machine (a build running beside the tests) could keep it going forever.
            let last = k + 500 * 20;
            while k < last && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let batch: Vec<PreparedEvent> = (k..k + 20)
                    .map(|k| model_event(t, k as usize, Some(at(k) + 1)))
                    .collect();
                store.append(batch).await.unwrap();
                k += 20;
            }
        }));
    }
    for order in [Order::Asc, Order::Desc, Order::Asc] {
        let got = walk(
            &store,
            EventQuery {
                tenant_id: Some(t.into()),
                limit: 61,
                order,
                ..Default::default()
            },
        )
        .await;
        let mut seen = HashSet::new();
        for e in &got {
            assert!(
                seen.insert(e.event_id),
                "{order:?}: {} repeated",
                e.event_id
            );
        }
        for w in got.windows(2) {
            let (a, b) = (
                (w[0].timestamp.nanos, *w[0].event_id.as_bytes()),
                (w[1].timestamp.nanos, *w[1].event_id.as_bytes()),
            );
            match order {
                Order::Asc => assert!(a < b, "{order:?}: out of order"),
                Order::Desc => assert!(a > b, "{order:?}: out of order"),
            }
        }
        for id in &before {
            assert!(
                seen.contains(id),
                "{order:?}: {id}, stored before the walk, was skipped"
            );
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.unwrap();
    }
    let n = store.tree_size(t).await.unwrap();
    assert!(n > 5000);
    let all = walk(
        &store,
        EventQuery {
            tenant_id: Some(t.into()),
            limit: 1000,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(all.len() as u64, n);
    close(store).await;
}
