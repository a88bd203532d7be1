//! Test logs built the way the server builds them: events rendered by `trailkeep_core::render`
//! with leaf hashes from `trailkeep_core::leaf`, checkpoints signed by `trailkeep_tlog`.

use std::io::Write;
use std::path::Path;
use trailkeep_core::leaf::{event_leaf_hash, LeafFields};
use trailkeep_core::render::write_event;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};
use trailkeep_tlog::checkpoint::sign_checkpoint;
use trailkeep_tlog::{tree_hash, Checkpoint, MemoryHashes, Signer};

pub const TENANT: &str = "t_1";
pub const KEY_NAME: &str = "trailkeep/default";

pub fn signer() -> Signer {
    Signer::from_seed(KEY_NAME, [9; 32]).unwrap()
}

pub fn other_signer() -> Signer {
    Signer::from_seed(KEY_NAME, [10; 32]).unwrap()
}

pub fn event(tenant: &str, seq: u64) -> StoredEvent {
    let ts = Timestamp::parse("2026-01-02T03:04:05.678Z").unwrap();
    let payload = format!(r#"{{"method":"sso","n":{seq}}}"#).into_bytes();
    let salt = [(seq % 251) as u8; 32];
    let event_id = Uuid::from_u128(0x0192_0000_0000_7000_8000_0000_0000_0000 + u128::from(seq));
    let id = event_id.hyphenated().to_string();
    let actor = format!("user:u{seq}@example.com");
    let leaf = event_leaf_hash(
        &LeafFields {
            event_id: &id,
            event_type: "auth.login",
            actor: &actor,
            tenant_id: tenant,
            timestamp: &ts.to_rfc3339(),
            source_ip: seq.is_multiple_of(3).then_some("203.0.113.7"),
            impersonation_session: None,
            approval_id: None,
        },
        &salt,
        &payload,
    );
    StoredEvent {
        tenant_id: tenant.into(),
        seq,
        event_id,
        event_type: "auth.login".into(),
        actor,
        timestamp: ts,
        timestamp_assigned: false,
        received_at: ts,
        source_ip: seq.is_multiple_of(3).then(|| "203.0.113.7".to_string()),
        impersonation_session: None,
        approval_id: None,
        payload: Some(payload),
        payload_salt: Some(salt),
        payload_commitment: None,
        leaf_hash: leaf,
    }
}

/// A tenant's log of `n` events: NDJSON lines and the tree.
pub struct TestLog {
    pub lines: Vec<String>,
    pub tree: MemoryHashes,
}

impl TestLog {
    pub fn new(n: u64) -> TestLog {
        let mut lines = Vec::new();
        let mut tree = MemoryHashes::new();
        for seq in 0..n {
            let e = event(TENANT, seq);
            tree.append_leaf(e.leaf_hash);
            let mut out = Vec::new();
            write_event(&mut out, &e);
            lines.push(String::from_utf8(out).unwrap());
        }
        TestLog { lines, tree }
    }

    pub fn checkpoint(&self, size: u64, signer: &Signer) -> String {
        let cp = Checkpoint::new(
            format!("{KEY_NAME}/{TENANT}"),
            size,
            tree_hash(size, &self.tree).unwrap(),
        );
        sign_checkpoint(&cp, signer).unwrap()
    }

    /// Writes DIR with the given lines, a checkpoint and the public key.
    pub fn write_dir(dir: &Path, lines: &[String], checkpoint: &str) {
        let mut f =
            std::io::BufWriter::new(std::fs::File::create(dir.join("events.ndjson")).unwrap());
        for l in lines {
            f.write_all(l.as_bytes()).unwrap();
            f.write_all(b"\n").unwrap();
        }
        f.flush().unwrap();
        std::fs::write(dir.join("checkpoint.txt"), checkpoint).unwrap();
        std::fs::write(
            dir.join("public-key.txt"),
            format!("{}\n", signer().verifier().to_vkey()),
        )
        .unwrap();
    }
}
