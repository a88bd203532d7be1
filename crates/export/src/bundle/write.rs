//! Writing a finished bundle as a tar stream, optionally gzip'd.
//!
//! Tar headers are deterministic: ustar, mode 0644, uid and gid 0, no user or group names,
//! mtime = the bundle's `created_at`; gzip with no file name and mtime 0. The same bundle
//! therefore always gives the same bytes.

use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::{member, Manifest, MemberDigest};

/// A spooled member: its temporary file and digest.
pub(crate) struct Spooled {
    pub(crate) file: File,
    pub(crate) digest: MemberDigest,
}

/// A bundle ready to be written: the signed manifest and every member (the large ones still
/// in the spool's temporary files).
pub struct Bundle {
    manifest: Manifest,
    manifest_bytes: Vec<u8>,
    signature: Vec<u8>,
    /// public-key.txt, checkpoint.txt, and checkpoint-first.txt + consistency.json if any.
    small: Vec<(&'static str, Vec<u8>)>,
    /// leaves.bin and range-proof.json, for a bundle with events.
    leaves: Option<(Spooled, Vec<u8>)>,
    events: Spooled,
    mtime: u64,
}

impl Bundle {
    pub(crate) fn new(
        manifest: Manifest,
        manifest_bytes: Vec<u8>,
        signature: Vec<u8>,
        small: Vec<(&'static str, Vec<u8>)>,
        leaves: Option<(Spooled, Vec<u8>)>,
        events: Spooled,
        mtime: u64,
    ) -> Self {
        Bundle {
            manifest,
            manifest_bytes,
            signature,
            small,
            leaves,
            events,
            mtime,
        }
    }

    /// The manifest (counts, seq span, digests).
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Writes the bundle as a tar to `w` (gzip'd if `gzip`), and gives `w` back.
    pub fn write_tar<W: Write>(self, w: W, gzip: bool) -> io::Result<W> {
        if gzip {
            // Level 1: several times faster than the default, and NDJSON still shrinks a lot.
            let gz = GzEncoder::new(w, Compression::fast());
            self.write_members(gz)?.finish()
        } else {
            self.write_members(w)
        }
    }

    fn write_members<W: Write>(self, w: W) -> io::Result<W> {
        let mut tar = tar::Builder::new(w);
        let mtime = self.mtime;
        append(&mut tar, mtime, member::MANIFEST, &self.manifest_bytes)?;
        append(&mut tar, mtime, member::SIGNATURE, &self.signature)?;
        for (name, bytes) in &self.small {
            append(&mut tar, mtime, name, bytes)?;
        }
        if let Some((leaves, range_proof)) = self.leaves {
            append_spooled(&mut tar, mtime, member::LEAVES, leaves)?;
            append(&mut tar, mtime, member::RANGE_PROOF, &range_proof)?;
        }
        append_spooled(&mut tar, mtime, member::EVENTS, self.events)?;
        tar.into_inner()
    }
}

fn header(name: &str, size: u64, mtime: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name)?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    mtime: u64,
    name: &str,
    bytes: &[u8],
) -> io::Result<()> {
    tar.append(&header(name, bytes.len() as u64, mtime)?, bytes)
}

fn append_spooled<W: Write>(
    tar: &mut tar::Builder<W>,
    mtime: u64,
    name: &str,
    s: Spooled,
) -> io::Result<()> {
    let mut file = s.file;
    // The tar header carries the size the manifest records; the file must hold exactly that.
    let on_disk = file.metadata()?.len();
    if on_disk != s.digest.bytes {
        return Err(io::Error::other(format!(
            "the spooled {name} holds {on_disk} bytes, {} were written to it",
            s.digest.bytes
        )));
    }
    file.seek(SeekFrom::Start(0))?;
    let reader = io::BufReader::with_capacity(1 << 16, file);
    tar.append(&header(name, s.digest.bytes, mtime)?, reader)
}
