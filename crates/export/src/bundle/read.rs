//! Reading a bundle's bytes: gzip detected by its magic number, the tar read as a stream, each
//! member hashed as it is read, and the end of the archive checked (a tar cut off between two
//! members is truncated, not a shorter bundle).

use std::cell::Cell;
use std::io::{self, BufRead, BufReader, Read};
use std::rc::Rc;

use flate2::bufread::GzDecoder;
use sha2::{Digest, Sha256};

use super::BundleError;

pub(crate) fn unreadable(what: impl std::fmt::Display) -> BundleError {
    BundleError::Unreadable(what.to_string())
}

/// The bundle's tar stream: the file itself, or its first gzip member decompressed if it starts
/// with the gzip magic number.
pub(crate) enum Source<R: Read> {
    Plain(Raw<R>),
    Gzip(Box<GzDecoder<BufReader<Raw<R>>>>),
}

/// The file's bytes: the first ones, read to look for the gzip magic number, then the rest.
pub(crate) type Raw<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

impl<R: Read> Source<R> {
    /// Whether the file is gzip'd.
    pub(crate) fn gzip(&self) -> bool {
        matches!(self, Source::Gzip(_))
    }

    /// Whether the file holds nothing after the stream read so far, once that stream has been
    /// read to its end. A gzip file must be one gzip member: a tar tool (through `gzip -d`)
    /// would also decompress a second member appended to it, or warn about bytes after it and
    /// go on, so either is data the bundle's signature does not cover.
    pub(crate) fn file_ends_here(&mut self) -> io::Result<bool> {
        match self {
            Source::Plain(_) => Ok(true),
            Source::Gzip(gz) => Ok(gz.get_mut().fill_buf()?.is_empty()),
        }
    }
}

impl<R: Read> Read for Source<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Source::Plain(r) => r.read(buf),
            Source::Gzip(r) => r.read(buf),
        }
    }
}

/// Opens the bundle's tar stream (see [`Source`]).
pub(crate) fn tar_stream<R: Read>(mut r: R) -> Result<Source<R>, BundleError> {
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match r.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(unreadable(format!("reading it failed: {e}"))),
        }
    }
    if got == 0 {
        return Err(unreadable("the file is empty"));
    }
    let whole = io::Cursor::new(magic[..got].to_vec()).chain(r);
    if magic == [0x1f, 0x8b] {
        // The bufread decoder consumes exactly its member, so what follows it stays readable.
        let raw = BufReader::with_capacity(1 << 16, whole);
        Ok(Source::Gzip(Box::new(GzDecoder::new(raw))))
    } else {
        Ok(Source::Plain(whole))
    }
}

/// Counts the bytes the tar reader consumes, so that the end of the archive can be located.
pub(crate) struct Counting<R> {
    pub(crate) inner: R,
    pub(crate) count: Rc<Cell<u64>>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get() + n as u64);
        Ok(n)
    }
}

/// Hashes and counts what is read through it.
pub(crate) struct Hashing<R> {
    pub(crate) inner: R,
    pub(crate) sha: Sha256,
    pub(crate) bytes: u64,
}

impl<R> Hashing<R> {
    pub(crate) fn new(inner: R) -> Self {
        Hashing {
            inner,
            sha: Sha256::new(),
            bytes: 0,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.sha.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// Reads all of a member into memory, refusing more than `limit` bytes (a bundle's small
/// members are small; a huge one is not a bundle written by trailkeep).
pub(crate) fn read_small<R: Read>(
    r: &mut R,
    name: &str,
    size: u64,
    limit: u64,
) -> Result<Vec<u8>, BundleError> {
    if size > limit {
        return Err(BundleError::member(
            name,
            format!("is {size} bytes; a trailkeep bundle's {name} is at most {limit}"),
        ));
    }
    let mut out = Vec::with_capacity(size as usize);
    r.take(size)
        .read_to_end(&mut out)
        .map_err(|e| unreadable(format!("reading {name}: {e}")))?;
    if out.len() as u64 != size {
        return Err(truncated(name));
    }
    Ok(out)
}

pub(crate) fn truncated(name: &str) -> BundleError {
    unreadable(format!(
        "the file ends inside member {name}: the bundle is truncated (an interrupted download \
         or copy?)"
    ))
}
