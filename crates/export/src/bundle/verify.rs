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
//! Only plain ustar regular files are accepted as members, named exactly, and nothing may
//! follow the tar's end-of-archive marker, nor the gzip member holding it: whatever a tar tool
//! would extract from the file is what this verifier checked.
//!
//! Memory: the leaves of the seq span are held (32 bytes each); events are streamed and
//! checked in parallel chunks of bounded lines and bytes (at most three chunks of about 33 MiB).

use std::cell::Cell;
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read};
use std::ops::Range;
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
/// Lines of events.ndjson checked at a time, at most.
const CHUNK_LINES: usize = 16_384;
/// Bytes of events.ndjson read into a chunk, about (a chunk ends at the first line that
/// reaches it): bounds the verifier's memory whatever the events' size.
const CHUNK_BYTES: usize = 32 << 20;
/// Longest line of events.ndjson accepted, its newline included. An event's client JSON is at
/// most 256 KiB; its API form adds the server's fields. A longer line is no event, and is not
/// read into memory.
const LINE_LIMIT: usize = 1 << 20;

/// Verifies a bundle (tar or gzip'd tar) read from `r` against `key`, or against the bundle's
/// own key when `key` is `None`. `Unreadable` for what cannot be read as a tar (or gzip'd tar)
/// at all: empty, truncated, corrupt, not a tar; `Failed` naming the first member or event that
/// does not verify, for everything else — including tar content that is not a trailkeep
/// bundle's.
pub fn verify_bundle<R: Read>(r: R, key: Option<&Verifier>) -> Result<BundleReport, BundleError> {
    let stream = tar_stream(r)?;
    let gzip = stream.gzip();
    let consumed = Rc::new(Cell::new(0u64));
    let mut archive = tar::Archive::new(Counting {
        inner: stream,
        count: consumed.clone(),
    });
    // Raw: every header is an entry of its own, none applied to the next (pax or GNU
    // extension headers are refused below, so the sizes read are those of the ustar headers,
    // as any tar tool reads them).
    let entries = archive
        .entries()
        .map_err(|e| unreadable(format!("not a tar file ({e})")))?
        .raw(true);

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
        let path = entry.path_bytes();
        let name = String::from_utf8_lossy(&path).into_owned();
        plain_member(&entry, &name)?;
        let size = entry.size();
        end_of_last = entry.raw_file_position() + size.div_ceil(512) * 512;
        if first && name != member::MANIFEST {
            return Err(BundleError::member(
                member::MANIFEST,
                format!(
                    "is missing: the tar's first member is {name:?}, and a trailkeep evidence \
                     bundle starts with {}",
                    member::MANIFEST
                ),
            ));
        }
        first = false;
        check.member(&name, size, &mut entry)?;
    }
    if first {
        return Err(BundleError::member(
            member::MANIFEST,
            "is missing: the tar holds no member",
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
            END_OF_ARCHIVE,
            "data follows the end-of-archive marker: something was appended to the bundle",
        ));
    }
    // The tar stream is read to its end (and a gzip member's checksum checked); nothing may
    // follow it in the file.
    let ends = rest
        .inner
        .file_ends_here()
        .map_err(|e| unreadable(format!("after the gzip stream: {e}")))?;
    if !ends {
        return Err(BundleError::member(
            END_OF_ARCHIVE,
            "data follows the gzip stream (another gzip member, or appended bytes): something \
             was appended to the bundle",
        ));
    }
    check.finish(gzip)
}

/// The culprit named for data after the archive.
const END_OF_ARCHIVE: &str = "(end of archive)";

/// A member must be a plain ustar regular file. trailkeep writes nothing else, and anything
/// else is read differently by different tools: a pax `x` header's `size` or `path` overrides
/// the next header's in GNU tar (so a forged size would make it extract bytes this verifier
/// reads as the next header), GNU long names rename the next member, and links, directories
/// and the rest are no bundle's content.
fn plain_member<R: Read>(entry: &tar::Entry<'_, R>, name: &str) -> Result<(), BundleError> {
    let header = entry.header();
    let kind = header.entry_type();
    let what = match kind {
        tar::EntryType::Regular => None,
        tar::EntryType::XHeader => Some("a pax extended header (type 'x')".to_string()),
        tar::EntryType::XGlobalHeader => {
            Some("a pax global extended header (type 'g')".to_string())
        }
        tar::EntryType::GNULongName => Some("a GNU long-name header (type 'L')".to_string()),
        tar::EntryType::GNULongLink => Some("a GNU long-link header (type 'K')".to_string()),
        tar::EntryType::GNUSparse => Some("a GNU sparse file (type 'S')".to_string()),
        tar::EntryType::Directory => Some("a directory".to_string()),
        tar::EntryType::Link | tar::EntryType::Symlink => Some("a link".to_string()),
        other => Some(format!("a tar entry of type {:?}", other.as_byte() as char)),
    };
    if let Some(what) = what {
        return Err(BundleError::member(
            name,
            format!(
                "is {what}, not a plain file: a trailkeep bundle holds only plain ustar files \
                 (a tar tool would read this archive differently from this verifier)"
            ),
        ));
    }
    if header.as_ustar().is_none() {
        return Err(BundleError::member(
            name,
            "has a tar header that is not ustar (GNU or old-style): a trailkeep bundle holds \
             only plain ustar files",
        ));
    }
    Ok(())
}

/// A manifest of another format than [`FORMAT`].
fn wrong_format(format: &str) -> BundleError {
    BundleError::member(
        member::MANIFEST,
        format!(
            "is of format {format:?}; this verifier reads {FORMAT:?} (a bundle of a newer \
             trailkeep needs its verifier; otherwise the manifest was altered)"
        ),
    )
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
            .ok_or_else(|| BundleError::member(member::MANIFEST, "is missing"))
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
            return Err(BundleError::member(member::MANIFEST, "is missing"));
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
        // The tar read cleanly: whatever is wrong with the manifest is a failed check of it.
        let bytes = read_small(r, member::MANIFEST, size, MANIFEST_LIMIT)?;
        let m: Manifest = serde_json::from_slice(&bytes).map_err(|e| {
            let format = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v.get("format").and_then(|f| f.as_str()).map(String::from));
            match format {
                Some(f) if f != FORMAT => wrong_format(&f),
                _ => BundleError::member(
                    member::MANIFEST,
                    format!("is not a trailkeep bundle manifest ({e})"),
                ),
            }
        })?;
        if m.format != FORMAT {
            return Err(wrong_format(&m.format));
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
            .ok_or_else(|| BundleError::member(member::MANIFEST, "is missing"))
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

    /// events.ndjson: read in chunks of lines (at most [`CHUNK_LINES`] lines and about
    /// [`CHUNK_BYTES`] bytes, in one buffer); each chunk's events are parsed and their leaves
    /// recomputed by worker threads while the next chunk is read (and decompressed, and
    /// hashed); then they are checked in order against the manifest and leaves.bin. At most
    /// three chunk buffers exist at a time (one checked, one read, one spare).
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
            let mut spare: Option<Chunk> = None;
            let mut pending = None;
            let mut line_no = 0usize;
            loop {
                let mut chunk = spare.take().unwrap_or_default();
                // An over-long line ends the chunk before it; it is reported after the lines
                // before it are checked, so that the first failure is the one named.
                let too_long = read_chunk(&mut input, &mut chunk, line_no)?;
                let n = chunk.lines.len();
                // A last line without its newline ends the member — or a truncated file.
                if too_long.is_none()
                    && chunk.last().is_some_and(|l| !l.ends_with(b"\n"))
                    && input.get_ref().bytes < size
                {
                    return Err(truncated(name));
                }
                let next = (n > 0).then(|| {
                    let handle = s.spawn(move || {
                        let checked = check_lines(&chunk, tenant);
                        (chunk, checked)
                    });
                    (handle, line_no)
                });
                line_no += n;
                if let Some((handle, first_line)) = pending.take() {
                    let (buffer, checked) = join(handle);
                    spare = Some(buffer);
                    order.accept(self, checked, first_line)?;
                }
                pending = next;
                if let Some(err) = too_long {
                    if let Some((handle, first_line)) = pending.take() {
                        let (_, checked) = join(handle);
                        order.accept(self, checked, first_line)?;
                    }
                    return Err(err);
                }
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

/// Lines of events.ndjson, in one buffer.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    /// Each line's range in `bytes`, its newline included.
    lines: Vec<Range<usize>>,
}

impl Chunk {
    fn line(&self, i: usize) -> &[u8] {
        &self.bytes[self.lines[i].clone()]
    }

    fn last(&self) -> Option<&[u8]> {
        self.lines.len().checked_sub(1).map(|i| self.line(i))
    }
}

/// Reads the next lines into `chunk` (emptied first): up to [`CHUNK_LINES`] lines, and no
/// more once it holds [`CHUNK_BYTES`]. A line longer than [`LINE_LIMIT`] is not read: the
/// chunk ends before it, and the failure naming it is returned.
fn read_chunk<B: BufRead>(
    input: &mut B,
    chunk: &mut Chunk,
    line_no: usize,
) -> Result<Option<BundleError>, BundleError> {
    chunk.bytes.clear();
    chunk.lines.clear();
    // The most a chunk holds: no reallocation while it is filled.
    chunk.bytes.reserve_exact(CHUNK_BYTES + LINE_LIMIT);
    while chunk.lines.len() < CHUNK_LINES && chunk.bytes.len() < CHUNK_BYTES {
        let start = chunk.bytes.len();
        let read = input
            .by_ref()
            .take(LINE_LIMIT as u64 + 1)
            .read_until(b'\n', &mut chunk.bytes)
            .map_err(|e| unreadable(format!("reading {}: {e}", member::EVENTS)))?;
        if read == 0 {
            break;
        }
        if read > LINE_LIMIT {
            chunk.bytes.truncate(start);
            return Ok(Some(BundleError::member(
                member::EVENTS,
                format!(
                    "line {}: longer than {} bytes, more than any event's API form: not an event",
                    line_no + chunk.lines.len() + 1,
                    LINE_LIMIT
                ),
            )));
        }
        chunk.lines.push(start..chunk.bytes.len());
    }
    Ok(None)
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

fn check_lines(chunk: &Chunk, tenant: &str) -> Vec<Line> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    let n = chunk.lines.len();
    if workers == 1 || n < 256 {
        return (0..n).map(|i| check_line(chunk.line(i), tenant)).collect();
    }
    let per = n.div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .step_by(per)
            .map(|from| {
                let to = (from + per).min(n);
                s.spawn(move || {
                    (from..to)
                        .map(|i| check_line(chunk.line(i), tenant))
                        .collect()
                })
            })
            .collect();
        let mut out: Vec<Line> = Vec::with_capacity(n);
        for h in handles {
            match h.join() {
                Ok(part) => out.extend::<Vec<Line>>(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chunks are bounded by bytes as well as by lines: events of 4 KiB fill
    /// [`CHUNK_BYTES`] long before [`CHUNK_LINES`], and every line is read exactly once.
    #[test]
    fn chunks_are_bounded_by_bytes() {
        let line = format!("{}\n", "x".repeat(4095));
        let total = CHUNK_BYTES / line.len() + 100;
        let text = line.repeat(total);
        let mut input = BufReader::new(text.as_bytes());
        let mut chunk = Chunk::default();
        let mut seen = 0;
        loop {
            assert!(read_chunk(&mut input, &mut chunk, seen).unwrap().is_none());
            let n = chunk.lines.len();
            if n == 0 {
                break;
            }
            assert!(n < CHUNK_LINES);
            assert!(chunk.bytes.len() <= CHUNK_BYTES, "{}", chunk.bytes.len());
            assert!(chunk.bytes.capacity() <= CHUNK_BYTES + LINE_LIMIT + 64);
            assert!((0..n).all(|i| chunk.line(i) == line.as_bytes()));
            seen += n;
        }
        assert_eq!(seen, total);
        assert_eq!(CHUNK_BYTES / line.len(), 8192);
    }

    /// A line longer than [`LINE_LIMIT`] ends the chunk before it and is named by its number;
    /// the line at the limit is read.
    #[test]
    fn over_long_lines_are_named() {
        let at_limit = format!("{}\n", "y".repeat(LINE_LIMIT - 1));
        let text = format!("a\n{at_limit}{}", "z".repeat(LINE_LIMIT + 1));
        let mut input = BufReader::new(text.as_bytes());
        let mut chunk = Chunk::default();
        let err = read_chunk(&mut input, &mut chunk, 10).unwrap().unwrap();
        assert_eq!(chunk.lines.len(), 2);
        assert_eq!(chunk.line(1), at_limit.as_bytes());
        let f = err.failure().unwrap();
        assert_eq!(
            f.culprit,
            super::super::Culprit::Member(member::EVENTS.into())
        );
        assert!(f.reason.starts_with("line 13: longer than"), "{f}");
    }
}
