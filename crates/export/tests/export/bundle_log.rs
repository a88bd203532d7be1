//! Synthetic tenant logs and the bundles built from them, the way the server builds them:
//! events rendered by `trailkeep_core`, leaves and proofs from `trailkeep_tlog`, checkpoints
//! signed by a test key. Plus tar surgery for the tampering tests.

use std::io::Read;

use sha2::{Digest, Sha256};
use trailkeep_core::leaf::stored_event_leaf_hash;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};
use trailkeep_export::bundle::{signed_text, BundleInputs, BundleSpool, Manifest, MemberDigest};
use trailkeep_tlog::checkpoint::sign_checkpoint;
use trailkeep_tlog::{
    prove_consistency, prove_inclusion, range_proof, tree_hash, Checkpoint, MemoryHashes, Signer,
};

pub const TENANT: &str = "t_1";
pub const KEY_NAME: &str = "trailkeep/default";
pub const ORIGIN: &str = "trailkeep/default/t_1";
/// 2026-01-02T03:00:00Z.
const BASE_NANOS: i64 = 1_767_322_800 * 1_000_000_000;

pub fn signer() -> Signer {
    Signer::from_seed(KEY_NAME, [9; 32]).unwrap()
}

pub fn other_signer() -> Signer {
    Signer::from_seed(KEY_NAME, [10; 32]).unwrap()
}

/// `2026-01-02T03:00:00Z` plus `minutes`.
pub fn at(minutes: i64) -> String {
    Timestamp::from_nanos(BASE_NANOS + minutes * 60_000_000_000, 3).to_rfc3339()
}

/// The minute of event `seq`: `seq`, except that every sixth event (seq 5, 11, …) comes a day
/// late (client timestamps are not in log order), so a time range leaves gaps in the seqs.
pub fn minute(seq: u64) -> i64 {
    seq as i64 + if seq % 6 == 5 { 24 * 60 } else { 0 }
}

/// Event `seq` of a tenant, at [`minute`]`(seq)`; every fifth one purged (commitment only).
pub fn event(tenant: &str, seq: u64) -> StoredEvent {
    let ts = Timestamp::from_nanos(BASE_NANOS + minute(seq) * 60_000_000_000, 3);
    let mut e = StoredEvent {
        tenant_id: tenant.into(),
        seq,
        event_id: Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + u128::from(seq)),
        event_type: "auth.login".into(),
        actor: format!("user:u{seq}@example.com"),
        timestamp: ts,
        timestamp_assigned: false,
        received_at: ts,
        source_ip: seq.is_multiple_of(3).then(|| "203.0.113.7".to_string()),
        impersonation_session: None,
        approval_id: seq.is_multiple_of(7).then(|| format!("ap_{seq}")),
        payload: Some(format!(r#"{{"method":"sso","n":{seq},"note":"é\"x"}}"#).into_bytes()),
        payload_salt: Some([(seq % 251) as u8; 32]),
        payload_commitment: None,
        leaf_hash: [0; 32],
    };
    e.leaf_hash = stored_event_leaf_hash(&e).unwrap();
    if seq % 5 == 4 {
        let salt = e.payload_salt.take().unwrap();
        let payload = e.payload.take().unwrap();
        e.payload_commitment = Some(trailkeep_core::leaf::payload_commitment(&salt, &payload));
    }
    e
}

/// One tenant's log of `n` events.
pub struct Log {
    pub events: Vec<StoredEvent>,
    pub tree: MemoryHashes,
}

impl Log {
    pub fn new(n: u64) -> Log {
        let events: Vec<StoredEvent> = (0..n).map(|s| event(TENANT, s)).collect();
        let tree = MemoryHashes::from_leaves(events.iter().map(|e| e.leaf_hash));
        Log { events, tree }
    }

    pub fn checkpoint(&self, size: u64, signer: &Signer) -> String {
        let cp = Checkpoint::new(ORIGIN, size, tree_hash(size, &self.tree).unwrap());
        sign_checkpoint(&cp, signer).unwrap()
    }
}

/// How to build a bundle.
#[derive(Default)]
pub struct Spec {
    pub since: Option<i64>,
    pub until: Option<i64>,
    /// Size of the latest checkpoint (default: the whole log).
    pub tree_size: Option<u64>,
    /// Size of the first checkpoint covering the last event (if it differs from tree_size).
    pub first_size: Option<u64>,
    pub gzip: bool,
}

/// Builds the bundle of `spec` from `log` as the server would, signed by `signer`.
pub fn build(log: &Log, spec: &Spec, signer: &Signer) -> Vec<u8> {
    let n = spec.tree_size.unwrap_or(log.events.len() as u64);
    let tmp = tempfile::tempdir().unwrap();
    let mut spool = BundleSpool::new(Some(tmp.path())).unwrap();
    let since = spec.since.map(at);
    let until = spec.until.map(at);
    for e in log.events.iter().take(n as usize) {
        let ts = e.timestamp.to_rfc3339();
        if since.as_ref().is_some_and(|s| ts < *s) || until.as_ref().is_some_and(|u| ts >= *u) {
            continue;
        }
        spool.push(e).unwrap();
    }
    let mut range = Vec::new();
    let mut first_checkpoint = None;
    let mut consistency_proof = Vec::new();
    if let Some((a, b)) = spool.seq_span() {
        let leaves: Vec<_> = log.events[a as usize..b as usize]
            .iter()
            .map(|e| e.leaf_hash)
            .collect();
        for chunk in leaves.chunks(7) {
            spool.push_leaves(chunk).unwrap();
        }
        let first = prove_inclusion(n, a, &log.tree).unwrap();
        let last = prove_inclusion(n, b - 1, &log.tree).unwrap();
        range = range_proof(a, b, n, &first, &last).unwrap();
        if let Some(m) = spec.first_size.filter(|&m| m != n) {
            first_checkpoint = Some(log.checkpoint(m, signer));
            consistency_proof = prove_consistency(m, n, &log.tree).unwrap();
        }
    }
    let inputs = BundleInputs {
        tenant_id: TENANT.into(),
        origin: ORIGIN.into(),
        since,
        until,
        created_at: "2026-12-04T10:00:00Z".into(),
        checkpoint: log.checkpoint(n, signer),
        tree_size: n,
        first_checkpoint,
        consistency_proof,
        range_proof: range,
        public_key: signer.verifier().to_vkey(),
    };
    let bundle = spool.finish(inputs, signer).unwrap();
    bundle.write_tar(Vec::new(), spec.gzip).unwrap()
}

/// A tar's members, in order.
pub fn members(tar_bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(tar_bytes);
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().to_string();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, data));
    }
    out
}

/// A tar of the given members (the bundle writer's header style).
pub fn pack(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn get<'a>(members: &'a mut [(String, Vec<u8>)], name: &str) -> &'a mut Vec<u8> {
    &mut members.iter_mut().find(|(n, _)| n == name).unwrap().1
}

pub fn manifest_of(members: &[(String, Vec<u8>)]) -> Manifest {
    serde_json::from_slice(
        &members
            .iter()
            .find(|(n, _)| n == "manifest.json")
            .unwrap()
            .1,
    )
    .unwrap()
}

/// Recomputes the manifest's digests (and count, first and last seq from events.ndjson), as a
/// forger would; re-signs it with `resign` if given (a forger holding the log key, to reach
/// the checks behind the signature).
pub fn recompute(members: &mut [(String, Vec<u8>)], resign: Option<&Signer>) {
    let mut m = manifest_of(members);
    for (name, data) in members.iter() {
        if let Some(d) = m.members.get_mut(name) {
            *d = MemberDigest {
                sha256: hex::encode(Sha256::digest(data)),
                bytes: data.len() as u64,
            };
        }
    }
    let events = String::from_utf8(get(members, "events.ndjson").clone()).unwrap();
    let seqs: Vec<u64> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    m.count = seqs.len() as u64;
    m.first_seq = seqs.first().copied();
    m.last_seq = seqs.last().copied();
    let bytes = m.to_bytes();
    if let Some(s) = resign {
        let text = signed_text(&Sha256::digest(&bytes).into());
        *get(members, "manifest.sig") =
            trailkeep_tlog::sign_note(&text, &[s]).unwrap().into_bytes();
    }
    *get(members, "manifest.json") = bytes;
}

/// The lines of events.ndjson, edited by `f`, written back.
pub fn edit_events(members: &mut [(String, Vec<u8>)], f: impl FnOnce(&mut Vec<String>)) {
    let text = String::from_utf8(get(members, "events.ndjson").clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    f(&mut lines);
    let mut out = lines.join("\n");
    if !lines.is_empty() {
        out.push('\n');
    }
    *get(members, "events.ndjson") = out.into_bytes();
}

/// The seqs a bundle of `spec` holds.
pub fn expected_seqs(log: &Log, spec: &Spec) -> Vec<u64> {
    let n = spec.tree_size.unwrap_or(log.events.len() as u64);
    (0..n)
        .filter(|&s| {
            spec.since.is_none_or(|a| minute(s) >= a) && spec.until.is_none_or(|b| minute(s) < b)
        })
        .collect()
}

/// The index of the line of event `seq`.
pub fn pos(lines: &[String], seq: u64) -> usize {
    lines
        .iter()
        .position(|l| l.contains(&format!(",\"seq\":{seq},")))
        .unwrap()
}

/// The rendered line of an event, as the bundle holds it.
pub fn line(e: &StoredEvent) -> String {
    trailkeep_core::render::event_json(e)
}
