//! Fuzzing under `cargo test`: cursor decoding, and the embedded store's log decoder fed
//! damaged segment files.
//!
//! - `Cursor::decode` on arbitrary text is an error or a cursor that encodes back to the same
//!   text; it never panics.
//! - A data directory whose segment files were edited (bytes flipped, replaced, inserted or
//!   deleted, garbage appended) either refuses to open with an error, or opens with exactly the
//!   original events, or with the original events but the last block's (the only damage a
//!   crash can cause, a torn final write, looks like that). It never serves an edited event and
//!   never loses an acknowledged block silently.
//! - A block whose body was edited *and* whose checksum was recomputed (what the checksum
//!   cannot catch) never makes opening or reading panic: every answer is a value or an error.
//!
//! Cases per property: `PROPTEST_CASES` (default: a short pass of a few seconds, as in CI). A
//! longer run: `PROPTEST_CASES=5000 cargo test -p trailkeep-store --test conformance fuzz_`.

use crate::helpers::*;
use proptest::prelude::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use trailkeep_core::{StoredEvent, Uuid};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::{Cursor, EventQuery, Order, SignedCheckpoint, StatsQuery, Store};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

const TENANTS: [&str; 3] = ["fz-a", "fz-b", "fz-c"];

fn options() -> EmbeddedOptions {
    EmbeddedOptions {
        // Dictionaries trained early and small segments: DICT entries and several segments.
        dict_train_events: 24,
        segment_bytes: 2 * 1024,
        ..Default::default()
    }
}

/// A small data directory written through the store, and what it holds.
struct Template {
    /// `log/NNNNNNNN.seg` files: (name, bytes).
    segments: Vec<(String, Vec<u8>)>,
    logs: BTreeMap<String, Vec<StoredEvent>>,
    checkpoints: BTreeMap<String, Option<SignedCheckpoint>>,
    /// The last segment's blocks: (byte where the block ends, ids of its events).
    last_blocks: Vec<(usize, Vec<Uuid>)>,
}

fn template() -> &'static Template {
    static T: OnceLock<Template> = OnceLock::new();
    T.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let rt = runtime();
        rt.block_on(async {
            let store: Arc<dyn Store> =
                Arc::new(EmbeddedStore::open(dir.path(), options()).expect("open"));
            for round in 0..24 {
                let mut batch = Vec::new();
                for (i, t) in TENANTS.iter().enumerate() {
                    if (round + i) % 3 == 2 {
                        continue;
                    }
                    let at = format!("2026-06-01T{:02}:{:02}:00Z", 10 + i, round);
                    let mut v = ev_at(t, &format!("fz.t{}", round % 4), &uuid(), &at);
                    v["payload"] = json!({"round": round, "note": format!("event {round} of {t}"), "x": [1, 2.5, null]});
                    if round % 5 == 0 {
                        v["source_ip"] = json!("203.0.113.9");
                        v["impersonation_session"] = json!(format!("imp_{round}"));
                        v["approval_id"] = json!("apr_1");
                    }
                    batch.push(prep(v));
                }
                store.append(batch).await.expect("append");
                if round == 12 {
                    // A checkpoint in the middle of the log.
                    for t in TENANTS {
                        let size = store.tree_size(t).await.expect("size");
                        let root = store.tree_root(t, size).await.expect("root");
                        let signer = trailkeep_tlog::note::Signer::from_seed("fz", [3; 32])
                            .expect("signer");
                        let cp = trailkeep_tlog::checkpoint::Checkpoint::new(t, size, root);
                        let note = trailkeep_tlog::checkpoint::sign_checkpoint(&cp, &signer)
                            .expect("signs");
                        store
                            .put_checkpoint(t, SignedCheckpoint { size, root, note })
                            .await
                            .expect("checkpoint");
                    }
                }
            }
            let (logs, checkpoints) = contents(&store).await.expect("reads");
            store.shutdown().await;
            let mut segments = Vec::new();
            let log = dir.path().join("log");
            let mut names: Vec<String> = std::fs::read_dir(&log)
                .expect("log dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            for n in names {
                let bytes = std::fs::read(log.join(&n)).expect("segment");
                segments.push((n, bytes));
            }
            assert!(
                segments.len() >= 3,
                "the template should span several segments: {:?}",
                segments.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>()
            );
            // An event header holds its id as 16 raw bytes (never compressed).
            let all: Vec<Uuid> = logs.values().flatten().map(|e| e.event_id).collect();
            let last = &segments[segments.len() - 1].1;
            let last_blocks = blocks(last)
                .into_iter()
                .map(|(at, len)| {
                    let body = &last[at + 16..at + 16 + len];
                    let ids = all
                        .iter()
                        .filter(|id| body.windows(16).any(|w| w == id.as_bytes()))
                        .copied()
                        .collect();
                    (at + 16 + len, ids)
                })
                .collect();
            Template {
                segments,
                logs,
                checkpoints,
                last_blocks,
            }
        })
    })
}

type Contents = (
    BTreeMap<String, Vec<StoredEvent>>,
    BTreeMap<String, Option<SignedCheckpoint>>,
);

/// Everything the store serves for the template's tenants, through every read path; an error
/// from any of them is returned (never a panic).
async fn contents(store: &Arc<dyn Store>) -> Result<Contents, String> {
    let mut logs = BTreeMap::new();
    let mut cps = BTreeMap::new();
    for t in TENANTS {
        let log = store
            .read_log(t, 0, 100_000)
            .await
            .map_err(|e| e.to_string())?;
        for e in &log {
            store
                .get_event(e.event_id)
                .await
                .map_err(|e| e.to_string())?;
        }
        store
            .query(EventQuery {
                tenant_id: Some(t.into()),
                limit: 1000,
                order: Order::Desc,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        store
            .stats(StatsQuery {
                tenant_id: Some(t.into()),
                since: None,
                until: None,
            })
            .await
            .map_err(|e| e.to_string())?;
        let size = store.tree_size(t).await.map_err(|e| e.to_string())?;
        if size > 0 {
            store.tree_root(t, size).await.map_err(|e| e.to_string())?;
            store
                .inclusion_proof(t, size / 2, size)
                .await
                .map_err(|e| e.to_string())?;
            store
                .consistency_proof(t, 1, size)
                .await
                .map_err(|e| e.to_string())?;
        }
        cps.insert(
            t.to_string(),
            store
                .latest_checkpoint(t)
                .await
                .map_err(|e| e.to_string())?,
        );
        logs.insert(t.to_string(), log);
    }
    store.tenants().await.map_err(|e| e.to_string())?;
    Ok((logs, cps))
}

/// Writes the template with `segments` as its log and opens it: `Err` when the store refuses to
/// open, else what it serves.
fn open_with(segments: &[(String, Vec<u8>)]) -> Result<Result<Contents, String>, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let log: PathBuf = dir.path().join("log");
    std::fs::create_dir_all(&log).expect("log dir");
    for (name, bytes) in segments {
        std::fs::write(log.join(name), bytes).expect("write segment");
    }
    open_dir(dir.path())
}

fn open_dir(dir: &Path) -> Result<Result<Contents, String>, String> {
    let store: Arc<dyn Store> = match EmbeddedStore::open(dir, options()) {
        Ok(s) => Arc::new(s),
        Err(e) => return Err(e.to_string()),
    };
    let rt = runtime();
    Ok(rt.block_on(async {
        let c = contents(&store).await;
        store.shutdown().await;
        c
    }))
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Append(Vec<u8>),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Edit::Flip(p, 1 << b)),
        (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..20))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), 1usize..20).prop_map(|(p, n)| Edit::Delete(p, n)),
        prop::collection::vec(any::<u8>(), 1..40).prop_map(Edit::Append),
    ]
}

fn apply(b: &mut Vec<u8>, e: &Edit) {
    let n = b.len();
    match e {
        Edit::Flip(p, m) if n > 0 => b[p % n] ^= m,
        Edit::Set(p, v) if n > 0 => b[p % n] = *v,
        Edit::Insert(p, v) => {
            let p = p % (n + 1);
            b.splice(p..p, v.iter().copied());
        }
        Edit::Delete(p, k) if n > 0 => {
            let p = p % n;
            b.drain(p..(p + k).min(n));
        }
        Edit::Append(v) => b.extend_from_slice(v),
        _ => {}
    }
}

/// The blocks of a segment: (offset of the header, body length).
fn blocks(seg: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 32;
    while pos + 16 <= seg.len() {
        let len = u32::from_le_bytes(seg[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 || pos + 16 + len > seg.len() {
            break;
        }
        out.push((pos, len));
        pos += 16 + len;
    }
    out
}

/// Where an edit starts in its file (`usize::MAX`: after the end).
fn edit_start(len: usize, e: &Edit) -> usize {
    match e {
        Edit::Flip(p, _) | Edit::Set(p, _) | Edit::Delete(p, _) => p % len.max(1),
        Edit::Insert(p, _) => p % (len + 1),
        Edit::Append(_) => usize::MAX,
    }
}

/// What a log with one edit may serve: everything, or everything but the events of the last
/// segment's blocks that end after the edit (a crash tears only writes not yet acknowledged, at
/// the end of the log: damage there cannot be told from a torn write; anywhere else it can).
/// With several edits (`from` = None) only: never an event that is not the original's.
fn check_served(got: &Contents, from: Option<usize>, what: &str) -> Result<(), TestCaseError> {
    let t = template();
    let (logs, cps) = got;
    for (tenant, cp) in cps {
        if let Some(cp) = cp {
            prop_assert_eq!(
                Some(cp),
                t.checkpoints[tenant].as_ref(),
                "checkpoint changed: {}",
                what
            );
        }
    }
    for (tenant, original) in &t.logs {
        let log = &logs[tenant];
        prop_assert!(
            log.len() <= original.len() && original[..log.len()] == log[..],
            "tenant {} serves events that are not a prefix of the original ({})",
            tenant,
            what
        );
        let Some(from) = from else { continue };
        for missing in &original[log.len()..] {
            let droppable = t
                .last_blocks
                .iter()
                .any(|(end, ids)| *end > from && ids.contains(&missing.event_id));
            prop_assert!(
                droppable,
                "tenant {} lost event seq {} of a block before the damage ({})",
                tenant,
                missing.seq,
                what
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(2000))]

    /// Arbitrary text never panics the cursor decoder; whatever decodes encodes back to it.
    #[test]
    fn fuzz_cursor_decode(s in prop_oneof!["(?s).{0,60}", "[A-Za-z0-9_=+/-]{0,40}"]) {
        if let Ok(c) = Cursor::decode(&s) {
            prop_assert_eq!(c.encode(), s);
        }
    }

    /// A valid cursor with a character changed is an error or another valid cursor.
    #[test]
    fn fuzz_cursor_mutated(ts in any::<i64>(), id in any::<u128>(), asc in any::<bool>(), pos in any::<usize>(), c in any::<char>()) {
        let cur = Cursor {
            order: if asc { Order::Asc } else { Order::Desc },
            ts_nanos: ts,
            event_id: Uuid::from_u128(id),
        };
        let text = cur.encode();
        prop_assert_eq!(Cursor::decode(&text), Ok(cur));
        let mut chars: Vec<char> = text.chars().collect();
        let p = pos % chars.len();
        chars[p] = c;
        let edited: String = chars.into_iter().collect();
        if let Ok(d) = Cursor::decode(&edited) {
            prop_assert_eq!(d.encode(), edited);
        }
    }
}

proptest! {
    #![proptest_config(config(100))]

    /// One edit of a segment file: an error, the original, or the original less the blocks at
    /// the end of the log that the edit reached.
    #[test]
    fn fuzz_damaged_segments_never_served(seg in any::<prop::sample::Index>(), e in edit()) {
        let t = template();
        let mut segments = t.segments.clone();
        let i = seg.index(segments.len());
        let from = if i + 1 == segments.len() {
            edit_start(segments[i].1.len(), &e)
        } else {
            usize::MAX
        };
        apply(&mut segments[i].1, &e);
        let what = format!("{} edited with {:?}", segments[i].0, e);
        match open_with(&segments) {
            Err(_) => {}
            Ok(Err(err)) => prop_assert!(false, "opened, then a read failed ({}): {}", err, what),
            Ok(Ok(got)) => check_served(&got, Some(from), &what)?,
        }
    }

    /// Several edits, anywhere: never an event or checkpoint that is not the original's.
    #[test]
    fn fuzz_damaged_segments_never_altered(edits in prop::collection::vec((any::<prop::sample::Index>(), edit()), 2..5)) {
        let t = template();
        let mut segments = t.segments.clone();
        for (seg, e) in &edits {
            let i = seg.index(segments.len());
            apply(&mut segments[i].1, e);
        }
        let what = format!("edited with {edits:?}");
        match open_with(&segments) {
            Err(_) => {}
            Ok(Err(err)) => prop_assert!(false, "opened, then a read failed ({}): {}", err, what),
            Ok(Ok(got)) => check_served(&got, None, &what)?,
        }
    }

    /// A block edited with its checksum recomputed: opening and every read answer a value or
    /// an error, never a panic.
    #[test]
    fn fuzz_forged_blocks_never_panic(seg in any::<prop::sample::Index>(), block in any::<prop::sample::Index>(), edits in prop::collection::vec(edit(), 1..4)) {
        let t = template();
        let mut segments = t.segments.clone();
        let i = seg.index(segments.len());
        let bs = blocks(&segments[i].1);
        prop_assume!(!bs.is_empty());
        let (at, len) = bs[block.index(bs.len())];
        let bytes = &mut segments[i].1;
        let mut body = bytes[at + 16..at + 16 + len].to_vec();
        for e in edits.iter().filter(|e| !matches!(e, Edit::Append(_))) {
            apply(&mut body, e);
        }
        prop_assume!(!body.is_empty());
        let mut block = Vec::with_capacity(16 + body.len());
        block.extend_from_slice(&(body.len() as u32).to_le_bytes());
        block.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        block.extend_from_slice(&bytes[at + 8..at + 16]);
        block.extend_from_slice(&body);
        bytes.splice(at..at + 16 + len, block);
        // Later segments' headers record the length of the log before them.
        let delta = segments[i].1.len() as i64 - t.segments[i].1.len() as i64;
        for (_, later) in &mut segments[i + 1..] {
            let before = u64::from_le_bytes(later[16..24].try_into().expect("8 bytes"));
            later[16..24].copy_from_slice(&((before as i64 + delta) as u64).to_le_bytes());
        }
        // Any outcome but a panic: refused, opened with read errors, or opened.
        let _ = open_with(&segments);
    }
}

/// The template and its copy open unchanged (else the properties hold vacuously), and the
/// edits reach every outcome.
#[test]
fn fuzz_template_opens_unchanged() {
    let t = template();
    let got = open_with(&t.segments).expect("opens").expect("reads");
    assert_eq!(got.0, t.logs);
    assert_eq!(got.1, t.checkpoints);
    assert!(t.checkpoints.values().all(|c| c.is_some()));
    // Garbage after the last block is a torn write: cut off, nothing lost.
    let mut segs = t.segments.clone();
    let last = segs.len() - 1;
    segs[last].1.extend_from_slice(&[0x55; 9]);
    assert_eq!(open_with(&segs).expect("opens").expect("reads").0, t.logs);
    // A byte of an early block: refused, naming the file.
    let mut segs = t.segments.clone();
    let (at, _) = blocks(&segs[0].1)[0];
    segs[0].1[at + 20] ^= 1;
    let err = open_with(&segs).expect_err("refused");
    assert!(err.contains("00000001.seg"), "{err}");
}

/// A log of one segment (the usual case below 1 GiB) whose header's log id was changed: the
/// blocks no longer carry the header's id, but they are whole, so this is damage to
/// acknowledged data, not a torn write. The store refuses to open rather than cut every block.
#[test]
fn fuzz_changed_log_id_in_the_only_segment_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let store: Arc<dyn Store> =
            Arc::new(EmbeddedStore::open(dir.path(), EmbeddedOptions::default()).unwrap());
        for i in 0..5 {
            let v = ev_at(
                "fz-one",
                "fz.x",
                &uuid(),
                &format!("2026-06-01T10:00:0{i}Z"),
            );
            store.append(vec![prep(v)]).await.unwrap();
        }
        store.shutdown().await;
    });
    let seg = dir.path().join("log").join("00000001.seg");
    let original = std::fs::read(&seg).unwrap();
    for byte in 24..32 {
        let mut b = original.clone();
        b[byte] ^= 0x10;
        std::fs::write(&seg, &b).unwrap();
        match open_dir(dir.path()) {
            Err(e) => assert!(e.contains("00000001.seg"), "{e}"),
            Ok(_) => panic!(
                "opened after the header's log id changed (byte {byte}): its blocks were cut off"
            ),
        }
    }
    std::fs::write(&seg, &original).unwrap();
    assert!(open_dir(dir.path()).is_ok());
}
