//! Gathering a bundle: events and leaves spooled to unlinked temporary files, then checked and
//! signed by [`BundleSpool::finish`].
//!
//! Memory stays flat in the size of the bundle: events go to disk as they are pushed (their
//! SHA-256 computed as they are written), and so do the leaves. To check every event's
//! `leaf_hash` against the log's leaf at its seq without keeping either in memory, `push` also
//! spools a 56-byte record per event (seq, event id, leaf hash); `push_leaves` walks those
//! records alongside the leaves, both in seq order.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use trailkeep_core::leaf::stored_event_leaf_hash;
use trailkeep_core::render::write_event;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};
use trailkeep_tlog::checkpoint::open_checkpoint;
use trailkeep_tlog::hash::encode_hash;
use trailkeep_tlog::range::root_from_range_stream;
use trailkeep_tlog::{verify_consistency, Checkpoint, Hash, Signer};

use super::manifest::{encode_hashes, json_bytes, ConsistencyJson, Manifest, RangeProofJson};
use super::write::{Bundle, Spooled};
use super::{member, origin_names_tenant, signed_text, BundleError, MemberDigest, FORMAT};

/// What the caller knows besides the events and leaves: the range asked for, the checkpoints
/// and the proofs (from the store), and the log's public key.
#[derive(Debug, Clone)]
pub struct BundleInputs {
    /// The tenant (must be every event's).
    pub tenant_id: String,
    /// The tenant log's checkpoint origin, `trailkeep/<log>/<tenant>`.
    pub origin: String,
    /// Start of the time range asked for (RFC 3339, inclusive).
    pub since: Option<String>,
    /// End of the time range asked for (RFC 3339, exclusive).
    pub until: Option<String>,
    /// When the bundle is made (RFC 3339); also the tar members' mtime.
    pub created_at: String,
    /// The latest signed checkpoint of the tenant (note text).
    pub checkpoint: String,
    /// Its tree size; every event must have seq below it.
    pub tree_size: u64,
    /// The oldest signed checkpoint whose size covers the last event (note text); `None` (or
    /// `checkpoint` itself, which is then left out) when that is the latest, or there are no
    /// events.
    pub first_checkpoint: Option<String>,
    /// Consistency proof from `first_checkpoint`'s size to `tree_size` (empty without one).
    pub consistency_proof: Vec<Hash>,
    /// Range proof of the leaves of the seq span in the tree of `tree_size`
    /// (`trailkeep_tlog::range_proof`; empty when there are no events).
    pub range_proof: Vec<Hash>,
    /// The log's verifier key (must be `signer`'s).
    pub public_key: String,
}

/// A temporary file written through a buffer, hashed as it is written.
struct SpoolFile {
    out: BufWriter<File>,
    sha: Sha256,
    bytes: u64,
}

impl SpoolFile {
    fn new(dir: &Path) -> io::Result<Self> {
        Ok(SpoolFile {
            out: BufWriter::with_capacity(1 << 16, tempfile::tempfile_in(dir)?),
            sha: Sha256::new(),
            bytes: 0,
        })
    }

    fn write(&mut self, data: &[u8]) -> io::Result<()> {
        self.out.write_all(data)?;
        self.sha.update(data);
        self.bytes += data.len() as u64;
        Ok(())
    }

    /// The file, rewound, and its digest.
    fn into_spooled(self) -> io::Result<Spooled> {
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(Spooled {
            file,
            digest: MemberDigest {
                sha256: hex::encode(self.sha.finalize()),
                bytes: self.bytes,
            },
        })
    }
}

/// Size of one per-event record: seq (8, big-endian), event id (16), leaf hash (32).
const RECORD: usize = 8 + 16 + 32;

/// The events' leaf records, first written, then read back by `push_leaves`.
enum Records {
    Writing(BufWriter<File>),
    Reading {
        input: BufReader<File>,
        /// Events whose record is still to be read.
        left: u64,
        /// The record read but not yet matched with its leaf.
        next: Option<(u64, Uuid, Hash)>,
    },
}

/// The earliest or latest event timestamp seen, and its event.
#[derive(Clone, Copy)]
struct Extreme {
    at: Timestamp,
    seq: u64,
    event_id: Uuid,
}

/// Gathers one tenant's events and leaves for a bundle; see the module documentation.
pub struct BundleSpool {
    events: SpoolFile,
    leaves: SpoolFile,
    records: Records,
    tenant: Option<String>,
    count: u64,
    first_seq: Option<u64>,
    last_seq: Option<u64>,
    leaves_pushed: u64,
    earliest: Option<Extreme>,
    latest: Option<Extreme>,
    line: Vec<u8>,
}

impl BundleSpool {
    /// A spool whose temporary files go to `tmp_dir` (default: the system's temporary
    /// directory). The files are unlinked at once: nothing is left behind, even after a crash.
    pub fn new(tmp_dir: Option<&Path>) -> io::Result<Self> {
        let default_dir = std::env::temp_dir();
        let dir = tmp_dir.unwrap_or(&default_dir);
        Ok(BundleSpool {
            events: SpoolFile::new(dir)?,
            leaves: SpoolFile::new(dir)?,
            records: Records::Writing(BufWriter::with_capacity(
                1 << 16,
                tempfile::tempfile_in(dir)?,
            )),
            tenant: None,
            count: 0,
            first_seq: None,
            last_seq: None,
            leaves_pushed: 0,
            earliest: None,
            latest: None,
            line: Vec::with_capacity(1024),
        })
    }

    /// Adds the next event: one tenant's, in log order (seq increasing), all before the first
    /// `push_leaves`. Its leaf hash is recomputed from its fields and must equal its
    /// `leaf_hash`.
    pub fn push(&mut self, e: &StoredEvent) -> Result<(), BundleError> {
        let Records::Writing(records) = &mut self.records else {
            return Err(BundleError::Build(format!(
                "event seq {} pushed after the leaves: push every event first",
                e.seq
            )));
        };
        match &self.tenant {
            Some(t) if *t != e.tenant_id => {
                return Err(BundleError::Build(format!(
                    "event seq {} is tenant {:?}'s, but the bundle is tenant {t:?}'s",
                    e.seq, e.tenant_id
                )));
            }
            Some(_) => {}
            None => self.tenant = Some(e.tenant_id.clone()),
        }
        if let Some(last) = self.last_seq {
            if e.seq <= last {
                return Err(BundleError::Build(format!(
                    "event seq {} pushed after seq {last}: events must come in log order",
                    e.seq
                )));
            }
        }
        match stored_event_leaf_hash(e) {
            Some(leaf) if leaf == e.leaf_hash => {}
            Some(_) => {
                return Err(BundleError::Build(format!(
                    "event seq {} (id {}): its stored leaf_hash is not the hash of its fields",
                    e.seq, e.event_id
                )))
            }
            None => {
                return Err(BundleError::Build(format!(
                    "event seq {} (id {}): neither payload and salt nor a payload commitment, so \
                     its leaf cannot be recomputed",
                    e.seq, e.event_id
                )))
            }
        }
        self.line.clear();
        write_event(&mut self.line, e);
        self.line.push(b'\n');
        self.events.write(&self.line)?;
        let mut record = [0u8; RECORD];
        record[..8].copy_from_slice(&e.seq.to_be_bytes());
        record[8..24].copy_from_slice(e.event_id.as_bytes());
        record[24..].copy_from_slice(&e.leaf_hash);
        records.write_all(&record)?;

        let here = Extreme {
            at: e.timestamp,
            seq: e.seq,
            event_id: e.event_id,
        };
        if self.earliest.is_none_or(|x| e.timestamp < x.at) {
            self.earliest = Some(here);
        }
        if self.latest.is_none_or(|x| e.timestamp > x.at) {
            self.latest = Some(here);
        }
        self.first_seq.get_or_insert(e.seq);
        self.last_seq = Some(e.seq);
        self.count += 1;
        Ok(())
    }

    /// The seqs whose leaves the bundle needs: `[first_seq, last_seq + 1)`, `None` without
    /// events.
    pub fn seq_span(&self) -> Option<(u64, u64)> {
        Some((self.first_seq?, self.last_seq?.checked_add(1)?))
    }

    /// Adds the next leaf hashes of the seq span, in order (any chunking). Each event's
    /// `leaf_hash` must equal the leaf at its seq.
    pub fn push_leaves(&mut self, leaves: &[Hash]) -> Result<(), BundleError> {
        let Some((start, end)) = self.seq_span() else {
            return Err(BundleError::Build(
                "leaves pushed for a bundle without events".into(),
            ));
        };
        if leaves.len() as u64 > end - start - self.leaves_pushed {
            return Err(BundleError::Build(format!(
                "more leaves pushed than the seq span [{start}, {end}) holds"
            )));
        }
        if let Records::Writing(w) = &mut self.records {
            w.flush()?;
            let mut file = w.get_ref().try_clone()?;
            file.seek(SeekFrom::Start(0))?;
            self.records = Records::Reading {
                input: BufReader::with_capacity(1 << 16, file),
                left: self.count,
                next: None,
            };
        }
        let Records::Reading { input, left, next } = &mut self.records else {
            return Err(BundleError::Build("the spool lost its records".into()));
        };
        for (i, leaf) in leaves.iter().enumerate() {
            let seq = start + self.leaves_pushed + i as u64;
            if next.is_none() && *left > 0 {
                let mut record = [0u8; RECORD];
                input.read_exact(&mut record)?;
                *left -= 1;
                let mut s = [0u8; 8];
                s.copy_from_slice(&record[..8]);
                let mut id = [0u8; 16];
                id.copy_from_slice(&record[8..24]);
                let mut h = [0u8; 32];
                h.copy_from_slice(&record[24..]);
                *next = Some((u64::from_be_bytes(s), Uuid::from_bytes(id), h));
            }
            if let Some((event_seq, id, event_leaf)) = *next {
                if event_seq == seq {
                    if event_leaf != *leaf {
                        return Err(BundleError::Build(format!(
                            "event seq {seq} (id {id}) has leaf_hash {} but the log's leaf at \
                             seq {seq} is {}: the store's events and tree disagree",
                            encode_hash(&event_leaf),
                            encode_hash(leaf)
                        )));
                    }
                    *next = None;
                }
            }
            self.leaves.write(leaf)?;
        }
        self.leaves_pushed += leaves.len() as u64;
        Ok(())
    }

    /// Checks everything that a verifier will check and that the spool can — the leaves are
    /// complete, the checkpoints are signed by `signer` for the tenant's origin and cover the
    /// events, the consistency proof holds, the range proof rebuilds the checkpoint's root, the
    /// events lie in the time range — then writes the manifest and signs it.
    pub fn finish(self, inputs: BundleInputs, signer: &Signer) -> Result<Bundle, BundleError> {
        let build = |m: String| Err(BundleError::Build(m));
        let span = self.seq_span();
        if let Some(t) = &self.tenant {
            if *t != inputs.tenant_id {
                return build(format!(
                    "the events are tenant {t:?}'s, the bundle is asked for tenant {:?}",
                    inputs.tenant_id
                ));
            }
        }
        if !origin_names_tenant(&inputs.origin, &inputs.tenant_id) {
            return build(format!(
                "origin {:?} is not trailkeep/<log>/{}",
                inputs.origin, inputs.tenant_id
            ));
        }
        let vkey = signer.verifier().to_vkey();
        if inputs.public_key.trim() != vkey {
            return build(format!(
                "public_key {:?} is not the signing key's {vkey:?}",
                inputs.public_key
            ));
        }
        let mtime = match Timestamp::parse(&inputs.created_at) {
            Ok(t) => u64::try_from(t.nanos.div_euclid(1_000_000_000)).unwrap_or(0),
            Err(e) => return build(format!("created_at {:?}: {e}", inputs.created_at)),
        };
        for (name, bound, check) in [
            ("since", &inputs.since, self.earliest),
            ("until", &inputs.until, self.latest),
        ] {
            let Some(text) = bound else { continue };
            let at = match Timestamp::parse(text) {
                Ok(t) => t,
                Err(e) => return build(format!("{name} {text:?}: {e}")),
            };
            let Some(x) = check else { continue };
            let outside = if name == "since" {
                x.at < at
            } else {
                x.at >= at
            };
            if outside {
                return build(format!(
                    "event seq {} (id {}) at {} is outside the time range ({name} {text})",
                    x.seq, x.event_id, x.at
                ));
            }
        }

        // The latest checkpoint.
        let verifier = signer.verifier();
        let open = |what: &str, note: &str| -> Result<Checkpoint, BundleError> {
            let cp = open_checkpoint(note, &verifier)
                .map_err(|e| BundleError::Build(format!("{what}: {e}")))?;
            if cp.origin != inputs.origin {
                return Err(BundleError::Build(format!(
                    "{what} is for log {:?}, not {:?}",
                    cp.origin, inputs.origin
                )));
            }
            Ok(cp)
        };
        let cp = open("the checkpoint", &inputs.checkpoint)?;
        if cp.size != inputs.tree_size {
            return build(format!(
                "the checkpoint's size is {}, tree_size says {}",
                cp.size, inputs.tree_size
            ));
        }
        if let Some((_, end)) = span {
            if end > cp.size {
                return build(format!(
                    "event seq {} is not covered by the checkpoint of size {}: bundle only \
                     checkpointed events",
                    end - 1,
                    cp.size
                ));
            }
        }

        // The first checkpoint covering the last event, and its consistency with the latest.
        let mut consistency = None;
        match (&inputs.first_checkpoint, span) {
            (None, _) => {
                if !inputs.consistency_proof.is_empty() {
                    return build("a consistency proof without a first checkpoint".into());
                }
            }
            (Some(_), None) => {
                return build("a first checkpoint for a bundle without events".into());
            }
            (Some(note), Some((_, end))) => {
                let first = open("the first checkpoint", note)?;
                if first.size < end || first.size > cp.size {
                    return build(format!(
                        "the first checkpoint's size {} is not between the last event's seq + 1 \
                         ({end}) and the checkpoint's size {}",
                        first.size, cp.size
                    ));
                }
                if let Err(e) = verify_consistency(
                    first.size,
                    cp.size,
                    &first.root,
                    &cp.root,
                    &inputs.consistency_proof,
                ) {
                    return build(format!(
                        "consistency proof {} → {}: {e}",
                        first.size, cp.size
                    ));
                }
                // The latest checkpoint itself (same size: the proof above checked the same
                // root) is not repeated as the first one.
                if first.size != cp.size {
                    consistency = Some(ConsistencyJson {
                        from: first.size,
                        to: cp.size,
                        proof: encode_hashes(&inputs.consistency_proof),
                    });
                }
            }
        }

        // The leaves: complete, every event matched, and they rebuild the checkpoint's root.
        let leaves_pushed = self.leaves_pushed;
        if let Some((start, end)) = span {
            if leaves_pushed != end - start {
                return build(format!(
                    "{leaves_pushed} leaves pushed for the seq span [{start}, {end})"
                ));
            }
            let unmatched = match &self.records {
                Records::Reading { left, next, .. } => *left > 0 || next.is_some(),
                Records::Writing(_) => true,
            };
            if unmatched {
                return build("an event's seq was not met by the leaves".into());
            }
        }
        let leaves = self.leaves.into_spooled()?;
        let mut range = None;
        if let Some((start, end)) = span {
            let mut reader = BufReader::with_capacity(1 << 16, &leaves.file);
            let mut read_error = None;
            let stream = std::iter::from_fn(|| {
                let mut h = [0u8; 32];
                match reader.read_exact(&mut h) {
                    Ok(()) => Some(h),
                    Err(e) => {
                        if e.kind() != io::ErrorKind::UnexpectedEof {
                            read_error = Some(e);
                        }
                        None
                    }
                }
            });
            let root = root_from_range_stream(start, end, cp.size, stream, &inputs.range_proof);
            if let Some(e) = read_error {
                return Err(e.into());
            }
            match root {
                Ok(root) if root == cp.root => {}
                Ok(root) => {
                    return build(format!(
                        "the leaves of seq {start}..{} and the range proof rebuild root {}, \
                         the checkpoint of size {} says {}",
                        end - 1,
                        encode_hash(&root),
                        cp.size,
                        encode_hash(&cp.root)
                    ))
                }
                Err(e) => return build(format!("range proof: {e}")),
            }
            range = Some(RangeProofJson {
                start,
                end,
                tree_size: cp.size,
                proof: encode_hashes(&inputs.range_proof),
            });
        } else if !inputs.range_proof.is_empty() {
            return build("a range proof for a bundle without events".into());
        }
        let mut leaves = leaves;
        leaves.file.seek(SeekFrom::Start(0))?;
        let events = self.events.into_spooled()?;

        // The members, in bundle order, and the manifest over them.
        let mut small: Vec<(&'static str, Vec<u8>)> = vec![
            (member::PUBLIC_KEY, format!("{vkey}\n").into_bytes()),
            (member::CHECKPOINT, inputs.checkpoint.clone().into_bytes()),
        ];
        if let (Some(note), Some(c)) = (&inputs.first_checkpoint, &consistency) {
            // (`consistency` is set only for a first checkpoint older than the latest.)
            small.push((member::FIRST_CHECKPOINT, note.clone().into_bytes()));
            small.push((member::CONSISTENCY, json_bytes(c)));
        }
        let range_bytes = range.as_ref().map(json_bytes);
        let digest = |bytes: &[u8]| MemberDigest {
            sha256: hex::encode(Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        };
        let mut members: std::collections::BTreeMap<String, MemberDigest> = small
            .iter()
            .map(|(name, bytes)| (name.to_string(), digest(bytes)))
            .collect();
        if let Some(r) = &range_bytes {
            members.insert(member::LEAVES.into(), leaves.digest.clone());
            members.insert(member::RANGE_PROOF.into(), digest(r));
        }
        members.insert(member::EVENTS.into(), events.digest.clone());
        let manifest = Manifest {
            format: FORMAT.into(),
            tenant_id: inputs.tenant_id.clone(),
            origin: inputs.origin.clone(),
            since: inputs.since.clone(),
            until: inputs.until.clone(),
            created_at: inputs.created_at.clone(),
            count: self.count,
            first_seq: self.first_seq,
            last_seq: self.last_seq,
            tree_size: cp.size,
            public_key: vkey,
            members,
        };
        let manifest_bytes = manifest.to_bytes();
        let text = signed_text(&Sha256::digest(&manifest_bytes).into());
        let signature = trailkeep_tlog::sign_note(&text, &[signer])
            .map_err(|e| BundleError::Build(format!("signing the manifest: {e}")))?;
        Ok(Bundle::new(
            manifest,
            manifest_bytes,
            signature.into_bytes(),
            small,
            range_bytes.map(|r| (leaves, r)),
            events,
            mtime,
        ))
    }
}
