//! Verifying a bundle offline, in one pass over its bytes.
//!
//! The order of the checks follows the members: the manifest is parsed, its signature checked
//! with the trusted key (or the bundle's own, which only proves internal consistency), and
//! from then on every member must be the next one the manifest lists, with the size and
//! SHA-256 it records. The checkpoints must be signed by the same key for the manifest's
//! origin, the consistency proof must link them, `leaves.bin` and the range proof must rebuild
//! the root of `checkpoint.txt`, and every event's leaf, recomputed from the event itself, must
//! be `leaves.bin`'s leaf at its seq. The first failure ends the check and is named.
//!
//! Memory: the leaves of the seq span are held (32 bytes each); events are streamed and
//! checked in parallel chunks.

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::rc::Rc;

use sha2::Digest;
use trailkeep_core::Timestamp;
use trailkeep_tlog::checkpoint::open_checkpoint;
use trailkeep_tlog::hash::encode_hash;
use trailkeep_tlog::{open_note, root_from_range, verify_consistency, Checkpoint, Hash, Verifier};

use super::manifest::{decode_hashes, ConsistencyJson, RangeProofJson};
use super::read::{read_small, tar_stream, truncated, unreadable, Counting, Hashing};
use super::{member, origin_names_tenant, signed_text, BundleError, Manifest, FORMAT};
use crate::leaf::parse_event;

/// What a verified bundle holds.
#[derive(Debug, Clone)]
pub struct BundleReport {
    /// The (verified) manifest.
    pub manifest: Manifest,
    /// Whether the bundle was gzip'd.
    pub gzip: bool,
    /// The key everything was checked with.
    pub key: String,
    /// Whether that key was the bundle's own (no key given): then the bundle is only proven
    /// consistent with itself, not to come from the log the caller trusts.
    pub key_from_bundle: bool,
    /// Root of `checkpoint.txt`.
    pub root: Hash,
    /// Size of `checkpoint-first.txt`, if the bundle has one.
    pub first_checkpoint_size: Option<u64>,
}

/// Largest manifest.json accepted.
const MANIFEST_LIMIT: u64 = 1 << 20;
/// Largest note or JSON proof member accepted.
const SMALL_LIMIT: u64 = 1 << 16;
/// Lines of events.ndjson checked at a time.
const CHUNK: usize = 16_384;

/// Verifies a bundle (tar or gzip'd tar) read from `r` against `key`, or against the bundle's
/// own key when `key` is `None`. `Unreadable` for what is not a readable bundle, `Failed`
/// naming the first member or event that does not verify.
pub fn verify_bundle<R: Read>(r: R, key: Option<&Verifier>) -> Result<BundleReport, BundleError> {
    let (stream, gzip) = tar_stream(r)?;
    let consumed = Rc::new(Cell::new(0u64));
    let mut archive = tar::Archive::new(Counting {
        inner: stream,
        count: consumed.clone(),
    });
    let entries = archive
        .entries()
        .map_err(|e| unreadable(format!("not a tar file ({e})")))?;

    let mut check = Check {
        key_given: key.cloned(),
        ..Check::default()
    };
    // End of the last member's data (with padding): where the end-of-archive marker begins.
    let mut end_of_last = 0u64;
    let mut first = true;
    for entry in entries {
        let mut entry = entry.map_err(|e| {
            if first {
                unreadable(format!("not a tar file ({e})"))
            } else {
                unreadable(format!("corrupt or truncated tar ({e})"))
            }
        })?;
        let name = match std::str::from_utf8(&entry.path_bytes()) {
            Ok(n) => n.strip_prefix("./").unwrap_or(n).to_string(),
            Err(_) => {
                return Err(unreadable("a member's name is not UTF-8"));
            }
        };
        let size = entry
            .header()
            .entry_size()
            .map_err(|e| unreadable(format!("member {name}: {e}")))?;
        end_of_last = entry.raw_file_position() + size.div_ceil(512) * 512;
        if first && name != member::MANIFEST {
            return Err(unreadable(format!(
                "its first member is {name:?}, not {}: this is not a trailkeep evidence bundle",
                member::MANIFEST
            )));
        }
        first = false;
        if entry.header().entry_type() != tar::EntryType::Regular {
            return Err(BundleError::member(&name, "is not a regular file"));
        }
        check.member(&name, size, &mut entry)?;
    }
    if first {
        return Err(unreadable(
            "it holds no tar member: not a trailkeep evidence bundle",
        ));
    }
    // The tar reader stops at the end-of-archive marker (a zero block) or at the end of the
    // file; only the first is a whole archive.
    let mut rest = archive.into_inner();
    if consumed.get() <= end_of_last {
        return Err(unreadable(
            "the tar ends without its end-of-archive marker: the bundle is truncated",
        ));
    }
    let mut trailing = Vec::new();
    rest.inner
        .by_ref()
        .take(1 << 20)
        .read_to_end(&mut trailing)
        .map_err(|e| unreadable(format!("after the last member: {e}")))?;
    let mut more = [0u8; 1];
    let past_limit = rest
        .inner
        .read(&mut more)
        .map_err(|e| unreadable(format!("after the last member: {e}")))?;
    // The marker is two zero blocks; the reader consumed the first.
    if consumed.get() + (trailing.len() as u64) < end_of_last + 1024 {
        return Err(unreadable(
            "the tar's end-of-archive marker is incomplete: the bundle is truncated",
        ));
    }
    if past_limit > 0 || trailing.iter().any(|&b| b != 0) {
        return Err(BundleError::member(
            "(end of archive)",
            "data follows the end-of-archive marker: something was appended to the bundle",
        ));
    }
    check.finish(gzip)
}

/// The state of a check, member after member.
#[derive(Default)]
struct Check {
    key_given: Option<Verifier>,
    manifest: Option<Manifest>,
    manifest_sha: [u8; 32],
    verifier: Option<Verifier>,
    /// Members still expected, in order (after the manifest is read).
    expected: Vec<&'static str>,
    seen: HashSet<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
    checkpoint: Option<Checkpoint>,
    first_checkpoint: Option<Checkpoint>,
    leaves: Vec<Hash>,
    /// Every member checked; events.ndjson last.
    done: bool,
}

impl Check {
    fn manifest(&self) -> Result<&Manifest, BundleError> {
        self.manifest
            .as_ref()
            .ok_or_else(|| unreadable("manifest.json is missing"))
    }

    /// Checks one member.
    fn member<R: Read>(&mut self, name: &str, size: u64, r: &mut R) -> Result<(), BundleError> {
        if name == member::MANIFEST && self.manifest.is_none() {
            self.seen.insert(name.to_string());
            return self.read_manifest(size, r);
        }
        self.expect(name)?;
        self.seen.insert(name.to_string());
        let manifest = self.manifest()?;
        // (events.ndjson is compared at its end, after its events: a changed event is then
        // named, rather than the member.)
        if name != member::SIGNATURE && name != member::EVENTS {
            let want = manifest.members.get(name).map(|d| d.bytes).unwrap_or(0);
            if size != want {
                return Err(BundleError::member(
                    name,
                    format!("is {size} bytes, the manifest says {want}: it was altered"),
                ));
            }
        }
        match name {
            member::SIGNATURE => self.signature(size, r),
            member::LEAVES => self.read_leaves(size, r),
            member::EVENTS => self.events(size, r),
            _ => {
                let bytes = read_small(r, name, size, SMALL_LIMIT)?;
                self.digest(name, &sha2::Sha256::digest(&bytes).into(), size)?;
                let text = std::str::from_utf8(&bytes)
                    .map_err(|_| BundleError::member(name, "is not UTF-8 text"))?;
                match name {
                    member::PUBLIC_KEY => self.public_key(text),
                    member::CHECKPOINT => self.checkpoint(text),
                    member::FIRST_CHECKPOINT => self.first_checkpoint(text),
                    member::CONSISTENCY => self.consistency(text),
                    member::RANGE_PROOF => self.range_proof(text),
                    _ => Err(BundleError::member(name, "is not a bundle member")),
                }
            }
        }
    }

    /// The member `name` must be the next one expected.
    fn expect(&mut self, name: &str) -> Result<(), BundleError> {
        if self.manifest.is_none() {
            return Err(unreadable("manifest.json is missing"));
        }
        if self.expected.first() == Some(&name) {
            self.expected.remove(0);
            return Ok(());
        }
        let why = if self.seen.contains(name) {
            "appears twice in the bundle".to_string()
        } else if let Some(missing) = self
            .expected
            .first()
            .filter(|_| self.expected.contains(&name))
        {
            return Err(BundleError::member(
                missing,
                format!("is missing (found {name} where {missing} belongs)"),
            ));
        } else if self.expected.is_empty() {
            format!(
                "follows {}, the last member: an extra member",
                member::EVENTS
            )
        } else if member::ORDER.contains(&name) {
            "is not listed in the manifest".to_string()
        } else {
            "is not a member of a trailkeep bundle".to_string()
        };
        Err(BundleError::member(name, why))
    }

    /// A member's SHA-256 and size against the manifest.
    fn digest(&self, name: &str, sha: &[u8; 32], bytes: u64) -> Result<(), BundleError> {
        let manifest = self.manifest()?;
        let Some(want) = manifest.members.get(name) else {
            return Err(BundleError::member(name, "is not listed in the manifest"));
        };
        let got = hex::encode(sha);
        if got != want.sha256 || bytes != want.bytes {
            return Err(BundleError::member(
                name,
                format!(
                    "SHA-256 {got} ({bytes} bytes) does not match the manifest's {} ({} bytes): \
                     the member was altered",
                    want.sha256, want.bytes
                ),
            ));
        }
        Ok(())
    }

    fn read_manifest<R: Read>(&mut self, size: u64, r: &mut R) -> Result<(), BundleError> {
        let bytes = read_small(r, member::MANIFEST, size, MANIFEST_LIMIT).map_err(|e| match e {
            BundleError::Failed(f) => unreadable(f),
            e => e,
        })?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            let format = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("format").and_then(|f| f.as_str()).map(String::from));
            match format {
                Some(f) if f != FORMAT => unreadable(format!(
                    "manifest.json is of format {f:?}; this verifier reads {FORMAT:?}"
                )),
                _ => unreadable(format!(
                    "manifest.json is not a trailkeep bundle manifest ({e})"
                )),
            }
        })?;
        if m.format != FORMAT {
            return Err(unreadable(format!(
                "manifest.json is of format {:?}; this verifier reads {FORMAT:?}",
                m.format
            )));
        }
        self.manifest_sha = sha2::Sha256::digest(&bytes).into();
        let bad = |why: String| Err(BundleError::member(member::MANIFEST, why));

        // The manifest must describe a possible bundle.
        match (m.first_seq, m.last_seq) {
            (None, None) if m.count == 0 => {}
            (Some(a), Some(b)) if a <= b && b < m.tree_size => {
                let span = b - a + 1;
                let fits = if a == b {
                    m.count == 1
                } else {
                    m.count >= 2 && m.count <= span
                };
                if !fits {
                    return bad(format!("count {} does not fit seqs {a}..{b}", m.count));
                }
            }
            _ => {
                return bad(format!(
                    "count {}, first_seq {:?}, last_seq {:?} and tree_size {} do not fit \
                     together",
                    m.count, m.first_seq, m.last_seq, m.tree_size
                ))
            }
        }
        if !origin_names_tenant(&m.origin, &m.tenant_id) {
            return bad(format!(
                "origin {:?} is not trailkeep/<log>/{}",
                m.origin, m.tenant_id
            ));
        }
        for (field, value, slot) in [
            ("since", &m.since, &mut self.since),
            ("until", &m.until, &mut self.until),
        ] {
            if let Some(text) = value {
                match Timestamp::parse(text) {
                    Ok(t) => *slot = Some(t),
                    Err(e) => return bad(format!("{field} {text:?}: {e}")),
                }
            }
        }
        let has = |n: &str| m.members.contains_key(n);
        let events = m.count > 0;
        let shape = [
            (member::PUBLIC_KEY, true),
            (member::CHECKPOINT, true),
            (
                member::FIRST_CHECKPOINT,
                events && has(member::FIRST_CHECKPOINT),
            ),
            (member::CONSISTENCY, events && has(member::FIRST_CHECKPOINT)),
            (member::LEAVES, events),
            (member::RANGE_PROOF, events),
            (member::EVENTS, true),
        ];
        for (name, want) in shape {
            if has(name) != want {
                return bad(format!(
                    "{} member {name} for a bundle of {} events{}",
                    if want {
                        "lacks the"
                    } else {
                        "lists the unexpected"
                    },
                    m.count,
                    if name == member::CONSISTENCY {
                        " (checkpoint-first.txt and consistency.json go together)"
                    } else {
                        ""
                    }
                ));
            }
        }
        if let Some(other) = m
            .members
            .keys()
            .find(|k| !shape.iter().any(|(n, _)| n == k))
        {
            return bad(format!(
                "lists {other:?}, which is not a member of a bundle"
            ));
        }
        if let Some((name, d)) = m.members.iter().find(|(_, d)| {
            d.sha256.len() != 64
                || !d
                    .sha256
                    .bytes()
                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
        }) {
            return bad(format!(
                "the sha256 of {name}, {:?}, is not 64 lower-case hex digits",
                d.sha256
            ));
        }
        self.verifier = Some(match &self.key_given {
            Some(k) => k.clone(),
            None => Verifier::from_vkey(m.public_key.trim())
                .map_err(|e| BundleError::member(member::MANIFEST, format!("public_key: {e}")))?,
        });
        self.expected = member::ORDER
            .iter()
            .copied()
            .filter(|n| *n == member::SIGNATURE || has(n))
            .collect();
        self.manifest = Some(m);
        Ok(())
    }

    fn verifier(&self) -> Result<&Verifier, BundleError> {
        self.verifier
            .as_ref()
            .ok_or_else(|| unreadable("manifest.json is missing"))
    }

    fn signature<R: Read>(&mut self, size: u64, r: &mut R) -> Result<(), BundleError> {
        let name = member::SIGNATURE;
        let bytes = read_small(r, name, size, SMALL_LIMIT)?;
        let note = std::str::from_utf8(&bytes)
            .map_err(|_| BundleError::member(name, "is not UTF-8 text"))?;
        let verifier = self.verifier()?;
        let opened =
            open_note(note, &[verifier]).map_err(|e| BundleError::member(name, e.to_string()))?;
        let want = signed_text(&self.manifest_sha);
        if opened.text != want {
            return Err(BundleError::member(
                name,
                format!(
                    "signs {:?}, but manifest.json's text to sign is {want:?}: the manifest was \
                     changed after it was signed",
                    opened.text
                ),
            ));
        }
        Ok(())
    }

    fn public_key(&mut self, text: &str) -> Result<(), BundleError> {
        let manifest = self.manifest()?;
        let verifier = self.verifier()?;
        if text.trim() != manifest.public_key.trim() {
            return Err(BundleError::member(
                member::PUBLIC_KEY,
                "is not the manifest's public_key",
            ));
        }
        if manifest.public_key.trim() != verifier.to_vkey() {
            return Err(BundleError::member(
                member::PUBLIC_KEY,
                format!(
                    "names the key {}, not the key given ({})",
                    manifest.public_key.trim(),
                    verifier.to_vkey()
                ),
            ));
        }
        Ok(())
    }

    fn open(&self, name: &str, note: &str) -> Result<Checkpoint, BundleError> {
        let manifest = self.manifest()?;
        let cp = open_checkpoint(note, self.verifier()?)
            .map_err(|e| BundleError::member(name, e.to_string()))?;
        if cp.origin != manifest.origin {
            return Err(BundleError::member(
                name,
                format!(
                    "is a checkpoint of log {:?}, not of {:?} (tenant {})",
                    cp.origin, manifest.origin, manifest.tenant_id
                ),
            ));
        }
        Ok(cp)
    }

    fn checkpoint(&mut self, note: &str) -> Result<(), BundleError> {
        let cp = self.open(member::CHECKPOINT, note)?;
        let manifest = self.manifest()?;
        if cp.size != manifest.tree_size {
            return Err(BundleError::member(
                member::CHECKPOINT,
                format!(
                    "has size {}, the manifest's tree_size is {}",
                    cp.size, manifest.tree_size
                ),
            ));
        }
        self.checkpoint = Some(cp);
        Ok(())
    }

    fn first_checkpoint(&mut self, note: &str) -> Result<(), BundleError> {
        let first = self.open(member::FIRST_CHECKPOINT, note)?;
        let manifest = self.manifest()?;
        let end = manifest.seq_span().map(|(_, e)| e).unwrap_or(0);
        if first.size < end || first.size > manifest.tree_size {
            return Err(BundleError::member(
                member::FIRST_CHECKPOINT,
                format!(
                    "has size {}: it does not cover the last event (seq {}) or is larger than \
                     checkpoint.txt ({})",
                    first.size,
                    end.saturating_sub(1),
                    manifest.tree_size
                ),
            ));
        }
        self.first_checkpoint = Some(first);
        Ok(())
    }

    fn consistency(&mut self, text: &str) -> Result<(), BundleError> {
        let name = member::CONSISTENCY;
        let c: ConsistencyJson = serde_json::from_str(text)
            .map_err(|e| BundleError::member(name, format!("is not a consistency proof ({e})")))?;
        let (Some(first), Some(cp)) = (&self.first_checkpoint, &self.checkpoint) else {
            return Err(BundleError::member(name, "comes without both checkpoints"));
        };
        if c.from != first.size || c.to != cp.size {
            return Err(BundleError::member(
                name,
                format!(
                    "proves {} → {}, the checkpoints are of sizes {} and {}",
                    c.from, c.to, first.size, cp.size
                ),
            ));
        }
        let proof = decode_hashes(&c.proof).map_err(|e| BundleError::member(name, e))?;
        verify_consistency(first.size, cp.size, &first.root, &cp.root, &proof).map_err(|e| {
            BundleError::member(
                name,
                format!(
                    "checkpoint-first.txt ({}) → checkpoint.txt ({}): {e}",
                    first.size, cp.size
                ),
            )
        })
    }

    fn read_leaves<R: Read>(&mut self, size: u64, r: &mut R) -> Result<(), BundleError> {
        let name = member::LEAVES;
        let manifest = self.manifest()?;
        let (start, end) = manifest.seq_span().unwrap_or((0, 0));
        let want = (end - start).saturating_mul(32);
        if size != want {
            return Err(BundleError::member(
                name,
                format!(
                    "is {size} bytes; the leaves of seqs {start}..{} are {want}",
                    end.saturating_sub(1)
                ),
            ));
        }
        let mut input = Hashing::new(BufReader::with_capacity(1 << 16, r.take(size)));
        let mut leaves = Vec::new();
        let mut h = [0u8; 32];
        loop {
            match input.read_exact(&mut h) {
                Ok(()) => leaves.push(h),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(unreadable(format!("reading {name}: {e}"))),
            }
        }
        if input.bytes != size {
            return Err(truncated(name));
        }
        let sha: [u8; 32] = input.sha.finalize().into();
        self.digest(name, &sha, size)?;
        self.leaves = leaves;
        Ok(())
    }

    fn range_proof(&mut self, text: &str) -> Result<(), BundleError> {
        let name = member::RANGE_PROOF;
        let p: RangeProofJson = serde_json::from_str(text)
            .map_err(|e| BundleError::member(name, format!("is not a range proof ({e})")))?;
        let manifest = self.manifest()?;
        let (start, end) = manifest.seq_span().unwrap_or((0, 0));
        let Some(cp) = &self.checkpoint else {
            return Err(BundleError::member(name, "comes without checkpoint.txt"));
        };
        if (p.start, p.end, p.tree_size) != (start, end, cp.size) {
            return Err(BundleError::member(
                name,
                format!(
                    "proves leaves [{}, {}) of a tree of {}, the bundle holds [{start}, {end}) \
                     of checkpoint.txt's {}",
                    p.start, p.end, p.tree_size, cp.size
                ),
            ));
        }
        let proof = decode_hashes(&p.proof).map_err(|e| BundleError::member(name, e))?;
        let root = root_from_range(start, cp.size, &self.leaves, &proof)
            .map_err(|e| BundleError::member(name, e.to_string()))?;
        if root != cp.root {
            return Err(BundleError::member(
                name,
                format!(
                    "with leaves.bin it rebuilds root {}, but checkpoint.txt (size {}) says {}: \
                     the leaves are not the log's",
                    encode_hash(&root),
                    cp.size,
                    encode_hash(&cp.root)
                ),
            ));
        }
        Ok(())
    }

    /// events.ndjson: read in chunks of lines; each chunk's events are parsed and their leaves
    /// recomputed by worker threads while the next chunk is read (and decompressed, and
    /// hashed); then they are checked in order against the manifest and leaves.bin.
    fn events<R: Read>(&mut self, size: u64, r: &mut R) -> Result<(), BundleError> {
        let name = member::EVENTS;
        let manifest = self.manifest()?.clone();
        let tenant = manifest.tenant_id.as_str();
        let mut input = BufReader::with_capacity(1 << 20, Hashing::new(r.take(size)));
        let mut order = Order {
            manifest: &manifest,
            count: 0,
            last: None,
        };
        std::thread::scope(|s| -> Result<(), BundleError> {
            let mut spare: Vec<Vec<u8>> = Vec::new();
            let mut pending = None;
            let mut line_no = 0usize;
            loop {
                let mut lines = std::mem::take(&mut spare);
                let n = read_lines(&mut input, &mut lines)?;
                // A last line without its newline ends the member — or a truncated file.
                if n > 0 && !lines[n - 1].ends_with(b"\n") && input.get_ref().bytes < size {
                    return Err(truncated(name));
                }
                let next = (n > 0).then(|| {
                    let chunk = s.spawn(move || {
                        let checked = check_lines(&lines[..n], tenant);
                        (lines, checked)
                    });
                    (chunk, line_no)
                });
                line_no += n;
                if let Some((chunk, first_line)) = pending.take() {
                    let (buffers, checked) = join(chunk);
                    spare = buffers;
                    order.accept(self, checked, first_line)?;
                }
                pending = next;
                if pending.is_none() {
                    return Ok(());
                }
            }
        })?;
        let (count, last) = (order.count, order.last);
        let hashing = input.into_inner();
        if hashing.bytes != size {
            return Err(truncated(name));
        }
        if count != manifest.count {
            return Err(BundleError::member(
                name,
                format!(
                    "holds {count} events, the manifest says {}: events were removed or added",
                    manifest.count
                ),
            ));
        }
        if last != manifest.last_seq {
            return Err(BundleError::member(
                name,
                format!(
                    "ends with seq {last:?}, the manifest's last_seq is {:?}: events were \
                     removed or added",
                    manifest.last_seq
                ),
            ));
        }
        let sha: [u8; 32] = hashing.sha.finalize().into();
        self.digest(name, &sha, size)?;
        self.done = true;
        Ok(())
    }

    fn finish(self, gzip: bool) -> Result<BundleReport, BundleError> {
        if let Some(missing) = self.expected.first() {
            return Err(BundleError::member(missing, "is missing from the bundle"));
        }
        let (Some(manifest), Some(verifier), Some(cp), true) =
            (self.manifest, self.verifier, self.checkpoint, self.done)
        else {
            return Err(unreadable("the bundle is incomplete"));
        };
        Ok(BundleReport {
            manifest,
            gzip,
            key: verifier.to_vkey(),
            key_from_bundle: self.key_given.is_none(),
            root: cp.root,
            first_checkpoint_size: self.first_checkpoint.map(|c| c.size),
        })
    }
}

/// Reads up to [`CHUNK`] lines into `lines` (reusing its buffers); returns how many.
fn read_lines<B: BufRead>(input: &mut B, lines: &mut Vec<Vec<u8>>) -> Result<usize, BundleError> {
    let mut n = 0;
    while n < CHUNK {
        if n == lines.len() {
            lines.push(Vec::with_capacity(512));
        }
        let buf = &mut lines[n];
        buf.clear();
        let read = input
            .read_until(b'\n', buf)
            .map_err(|e| unreadable(format!("reading {}: {e}", member::EVENTS)))?;
        if read == 0 {
            break;
        }
        n += 1;
    }
    Ok(n)
}

fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// The checks of events.ndjson that need the events in order.
struct Order<'m> {
    manifest: &'m Manifest,
    count: u64,
    last: Option<u64>,
}

impl Order<'_> {
    /// Checks a chunk's events, the first of them at line `first_line + 1`.
    fn accept(
        &mut self,
        check: &Check,
        lines: Vec<Line>,
        first_line: usize,
    ) -> Result<(), BundleError> {
        let manifest = self.manifest;
        let first_seq = manifest.first_seq.unwrap_or(0);
        let last_seq = manifest.last_seq;
        for (i, c) in lines.into_iter().enumerate() {
            let at = first_line + i + 1;
            let (seq, event_id, result) = match c {
                Line::Blank => continue,
                Line::Unreadable(why) => {
                    return Err(BundleError::member(
                        member::EVENTS,
                        format!("line {at}: {why}"),
                    ));
                }
                Line::Event {
                    seq,
                    event_id,
                    result,
                } => (seq, event_id, result),
            };
            let fail = |why: String| Err(BundleError::event(seq, &event_id, why));
            let (leaf, at_time) = match result {
                Ok(x) => x,
                Err(why) => return fail(why),
            };
            match self.last {
                Some(prev) if seq <= prev => {
                    return fail(format!(
                        "follows seq {prev}: a repeated event or events out of order (line {at})"
                    ));
                }
                None if Some(seq) != manifest.first_seq => {
                    return fail(format!(
                        "is the first event, but the manifest's first_seq is {:?}: events were \
                         removed, added or replaced",
                        manifest.first_seq
                    ));
                }
                _ => {}
            }
            if last_seq.is_none_or(|l| seq > l) {
                return fail(format!(
                    "is beyond the manifest's last_seq {last_seq:?}: an added event"
                ));
            }
            let offset = seq
                .checked_sub(first_seq)
                .and_then(|o| usize::try_from(o).ok())
                .unwrap_or(usize::MAX);
            match check.leaves.get(offset) {
                Some(l) if *l == leaf => {}
                _ => {
                    return fail(format!(
                        "its recomputed leaf {} is not the log's leaf at seq {seq} in \
                         leaves.bin: the event was altered or is not the log's",
                        encode_hash(&leaf)
                    ));
                }
            }
            if check.since.is_some_and(|s| at_time < s) || check.until.is_some_and(|u| at_time >= u)
            {
                return fail(format!(
                    "its timestamp {at_time} is outside the bundle's range [{}, {})",
                    manifest.since.as_deref().unwrap_or("-∞"),
                    manifest.until.as_deref().unwrap_or("∞")
                ));
            }
            self.last = Some(seq);
            self.count += 1;
        }
        Ok(())
    }
}

/// One line of events.ndjson, checked on its own (in parallel with others).
enum Line {
    Blank,
    Unreadable(String),
    Event {
        seq: u64,
        event_id: String,
        /// The recomputed leaf and the timestamp, or why the event cannot be trusted.
        result: Result<(Hash, Timestamp), String>,
    },
}

fn check_line(bytes: &[u8], tenant: &str) -> Line {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Line::Unreadable("not UTF-8".into());
    };
    if text.trim().is_empty() {
        return Line::Blank;
    }
    let ev = match parse_event(text) {
        Ok(ev) => ev,
        Err(e) => return Line::Unreadable(e.to_string()),
    };
    let result = if ev.tenant_id != tenant {
        Err(format!(
            "tenant_id is {:?}, the bundle is tenant {tenant:?}'s",
            ev.tenant_id
        ))
    } else {
        ev.checked_leaf()
            .map_err(|e| e.to_string())
            .and_then(|leaf| {
                Timestamp::parse(&ev.timestamp)
                    .map(|t| (leaf, t))
                    .map_err(|e| format!("timestamp {:?}: {e}", ev.timestamp))
            })
    };
    Line::Event {
        seq: ev.seq,
        event_id: ev.event_id.to_string(),
        result,
    }
}

fn check_lines(lines: &[Vec<u8>], tenant: &str) -> Vec<Line> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    if workers == 1 || lines.len() < 256 {
        return lines.iter().map(|l| check_line(l, tenant)).collect();
    }
    let per = lines.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(|l| check_line(l, tenant)).collect()))
            .collect();
        let mut out: Vec<Line> = Vec::with_capacity(lines.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend::<Vec<Line>>(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}
