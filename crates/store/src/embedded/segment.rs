//! Segment files: the durable, append-only log of blocks under `DATA_DIR/log/`.
//!
//! A segment is `NNNNNNNN.seg` (numbers dense from 1): a 32-byte header (`MAGIC`, segment number
//! u64 LE, the log's total length before this segment u64 LE, which pins the exact length of
//! every earlier segment, and the log id u64 LE), then blocks `body length u32 LE ‖ CRC-32 of
//! body u32 LE ‖ log id u64 LE ‖ body` (bodies are never empty). The log id is drawn at random
//! when the log is created and never leaves the data directory: clients cannot make bytes in
//! their events look like a block of this log, which recovery relies on below. The sync thread
//! writes one block per commit group with a single `write` each and one `fdatasync` for all
//! the blocks waiting, before any request of those groups is answered. A new segment is started once the current one passes
//! [`SEGMENT_TARGET`]; its creation is made durable (file and directory fsync) before use.
//!
//! Recovery reads every block in order. Only the write in progress at a crash can be damaged,
//! and it is the last thing in the last segment: a block there that is short, runs past the end
//! of the file, or (with a zeroed header) is followed only by what that write could have left,
//! was never answered, and the segment is cut back to the last whole block. A damaged block with
//! more log after it, a damaged earlier segment, or segments whose lengths disagree with the
//! next segment's header are corruption of acknowledged data: the store refuses to open and
//! names the file, rather than silently dropping answered writes.

use crate::StoreError;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub const MAGIC: &[u8; 8] = b"TKLOG01\n";
pub const HEADER_LEN: u64 = 32;
pub const BLOCK_HEADER_LEN: u64 = 16;
/// Segment numbers fit in 24 bits of an in-memory location (16 PB of 1 GiB segments).
const MAX_SEGMENT: u32 = (1 << 24) - 1;
/// Segments are rolled once they pass this size (a block never spans two segments).
pub const SEGMENT_TARGET: u64 = 1 << 30;

pub fn log_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("log")
}

pub fn segment_path(log_dir: &Path, n: u32) -> PathBuf {
    log_dir.join(format!("{n:08}.seg"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment numbers present, ascending, checked to be dense from 1.
fn list_segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut ns = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".seg") {
            let n: u32 = stem.parse().map_err(|_| {
                StoreError::Corrupt(format!("unexpected file {name} in {}", dir.display()))
            })?;
            ns.push(n);
        }
    }
    ns.sort_unstable();
    for (i, n) in ns.iter().enumerate() {
        if *n as usize != i + 1 {
            return Err(StoreError::Corrupt(format!(
                "segment {} of the log in {} is missing; restore it from a backup",
                i + 1,
                dir.display()
            )));
        }
    }
    Ok(ns)
}

/// Creates segment `n` of log `id`, whose first byte is at `start` in the whole log.
fn create_segment(dir: &Path, n: u32, start: u64, id: u64) -> Result<File, StoreError> {
    let path = segment_path(dir, n);
    let mut f = super::perm::private_file()
        .create(true)
        .truncate(true)
        .write(true)
        .read(true)
        .open(&path)?;
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..16].copy_from_slice(&(n as u64).to_le_bytes());
    h[16..24].copy_from_slice(&start.to_le_bytes());
    h[24..32].copy_from_slice(&id.to_le_bytes());
    f.write_all(&h)?;
    f.sync_all()?;
    sync_dir(dir)?;
    Ok(f)
}

/// Write failures injected by tests (see [`super::EmbeddedOptions::faults`]): a disk that
/// fills up, or an fsync that fails, without needing a small file system.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Faults {
    /// When positive, counts down with each block write; the write that brings it to zero
    /// writes half its bytes and fails with ENOSPC, and so does every later one until it is
    /// set again (0: no injected failures; set it back to 0 to let writes succeed).
    pub writes_until_full: std::sync::atomic::AtomicI64,
    /// Every `fdatasync` fails with EIO while set.
    pub fail_syncs: std::sync::atomic::AtomicBool,
    /// Cutting the log back after a failed write fails with EIO while set.
    pub fail_cuts: std::sync::atomic::AtomicBool,
}

impl Faults {
    /// Lets `n` more block writes through, then fails them with ENOSPC.
    pub fn fill_disk_after(&self, n: i64) {
        self.writes_until_full
            .store(n + 1, std::sync::atomic::Ordering::SeqCst);
    }

    /// Makes room again: writes succeed.
    pub fn free_disk(&self) {
        self.writes_until_full
            .store(0, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Where a [`LogWriter`] stood, to cut the log back to after a failed write or fsync.
#[derive(Debug, Clone, Copy)]
pub struct Saved {
    seg: u32,
    base: u64,
    len: u64,
    last_block: Option<(u32, u64, u32)>,
}

/// Appends blocks to the newest segment. Owned by the sync thread.
pub struct LogWriter {
    dir: PathBuf,
    seg: u32,
    /// Log length before the current segment.
    base: u64,
    id: u64,
    file: File,
    len: u64,
    target: u64,
    buf: Vec<u8>,
    /// Blocks written since the last `fdatasync`.
    unsynced: bool,
    /// The last block written: (segment, offset where it ends, CRC-32 of its body).
    last_block: Option<(u32, u64, u32)>,
    faults: Option<std::sync::Arc<Faults>>,
}

impl LogWriter {
    /// Writes one block and makes it durable. Returns `(segment, offset of the body)`.
    #[cfg(test)]
    pub fn append(&mut self, body: &[u8]) -> Result<(u32, u64), StoreError> {
        let at = self.write(body)?;
        self.sync()?;
        Ok(at)
    }

    /// Writes one block, not yet durable: [`LogWriter::sync`] makes every block written so far
    /// durable with one `fdatasync`. Returns `(segment, offset of the body)`.
    pub fn write(&mut self, body: &[u8]) -> Result<(u32, u64), StoreError> {
        let n = u32::try_from(body.len()).map_err(|_| {
            StoreError::Unavailable("a commit group is over 4 GiB; send smaller requests".into())
        })?;
        if self.len > HEADER_LEN && self.len + BLOCK_HEADER_LEN + body.len() as u64 > self.target {
            if self.seg >= MAX_SEGMENT {
                return Err(StoreError::Unavailable(format!(
                    "the log has reached {MAX_SEGMENT} segments; raise the segment size"
                )));
            }
            // Blocks written to the old segment become durable before the log moves on.
            self.sync()?;
            self.seg += 1;
            self.base += self.len;
            self.file = create_segment(&self.dir, self.seg, self.base, self.id)?;
            self.len = HEADER_LEN;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&n.to_le_bytes());
        let crc = crc32fast::hash(body);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf.extend_from_slice(&self.id.to_le_bytes());
        // One write for header and body: fewer syscalls, and a torn write is caught by the CRC.
        self.buf.extend_from_slice(body);
        self.unsynced = true;
        if let Some(f) = &self.faults {
            use std::sync::atomic::Ordering::SeqCst;
            let left = f.writes_until_full.load(SeqCst);
            if left == 1 || left < 0 {
                f.writes_until_full.store(-1, SeqCst);
                let half = &self.buf[..self.buf.len() / 2];
                self.file.write_all_at(half, self.len)?;
                return Err(std::io::Error::from_raw_os_error(28).into());
            }
            if left > 1 {
                f.writes_until_full.store(left - 1, SeqCst);
            }
        }
        self.file.write_all_at(&self.buf, self.len)?;
        let at = self.len + BLOCK_HEADER_LEN;
        self.len += BLOCK_HEADER_LEN + body.len() as u64;
        self.last_block = Some((self.seg, self.len, crc));
        Ok((self.seg, at))
    }

    /// The log's id (in every segment header and block).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Where the log ends (durable once [`LogWriter::sync`] returned).
    pub fn pos(&self) -> super::mark::Pos {
        super::mark::Pos {
            length: self.base + self.len,
            last_block: self.last_block,
        }
    }

    /// Where the writer stands now (take it when everything written is durable).
    pub fn saved(&self) -> Saved {
        Saved {
            seg: self.seg,
            base: self.base,
            len: self.len,
            last_block: self.last_block,
        }
    }

    /// Cuts the log back to `to` after a failed write or fsync: segments started since are
    /// removed, the segment of `to` is cut to its length then, and both are made durable. On
    /// success the log on disk is exactly what it was at `to` (everything durable then) and
    /// writing can go on from there.
    pub fn cut_back(&mut self, to: Saved) -> Result<(), StoreError> {
        if self
            .faults
            .as_ref()
            .is_some_and(|f| f.fail_cuts.load(std::sync::atomic::Ordering::SeqCst))
        {
            return Err(std::io::Error::from_raw_os_error(5).into());
        }
        for n in (to.seg + 1..=self.seg).rev() {
            match std::fs::remove_file(segment_path(&self.dir, n)) {
                Err(e) if e.kind() != ErrorKind::NotFound => return Err(e.into()),
                _ => {}
            }
        }
        if self.seg != to.seg {
            sync_dir(&self.dir)?;
            self.file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(segment_path(&self.dir, to.seg))?;
        }
        self.seg = to.seg;
        self.base = to.base;
        self.file.set_len(to.len)?;
        self.file.sync_all()?;
        self.len = to.len;
        self.last_block = to.last_block;
        self.unsynced = false;
        Ok(())
    }

    /// Injects failures (tests).
    pub fn set_faults(&mut self, faults: Option<std::sync::Arc<Faults>>) {
        self.faults = faults;
    }

    /// Makes every block written so far durable.
    pub fn sync(&mut self) -> Result<(), StoreError> {
        if !self.unsynced {
            return Ok(());
        }
        let t = std::time::Instant::now();
        if self
            .faults
            .as_ref()
            .is_some_and(|f| f.fail_syncs.load(std::sync::atomic::Ordering::SeqCst))
        {
            return Err(std::io::Error::from_raw_os_error(5).into());
        }
        self.file.sync_data()?;
        metrics::histogram!("trailkeep_fsync_seconds").record(t.elapsed().as_secs_f64());
        self.unsynced = false;
        Ok(())
    }
}

/// Opens the log in `dir` (creating it), feeds every whole block to `on_block(segment, body
/// offset, body)` in order, cuts a torn tail off the last segment, and returns the writer.
pub fn recover(
    dir: &Path,
    target: u64,
    mut on_block: impl FnMut(u32, u64, &[u8]) -> Result<(), StoreError>,
) -> Result<LogWriter, StoreError> {
    super::perm::create_dir_private(dir)?;
    let mut segs = list_segments(dir)?;
    if segs.is_empty() {
        create_segment(dir, 1, 0, new_log_id())?;
        segs.push(1);
    }
    // The log id, from the first segment that has a whole header.
    let mut id: Option<u64> = None;
    let last = *segs.last().unwrap_or(&1);
    let mut body = Vec::new();
    // Length of the log before the segment being read.
    let mut base = 0u64;
    let mut last_block = None;
    for &n in &segs {
        let path = segment_path(dir, n);
        let corrupt = |what: String| {
            StoreError::Corrupt(format!(
                "{} {what}; the log holds acknowledged events there, so trailkeep will not guess: restore the data directory from a backup",
                path.display()
            ))
        };
        let f = File::open(&path)?;
        let size = f.metadata()?.len();
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut h = [0u8; HEADER_LEN as usize];
        let read_ok = r.read_exact(&mut h).is_ok();
        let word = |i: usize| u64::from_le_bytes(h[i..i + 8].try_into().unwrap_or_default());
        if !(read_ok && &h[..8] == MAGIC && word(8) == n as u64) {
            if n == last && size < HEADER_LEN + BLOCK_HEADER_LEN {
                // Crashed while creating this segment: nothing in it was ever acknowledged.
                tracing::warn!(segment = %path.display(), "recreating a segment whose creation did not complete");
                drop(r);
                let rid = *id.get_or_insert_with(new_log_id);
                create_segment(dir, n, base, rid)?;
                base += HEADER_LEN;
                continue;
            }
            return Err(corrupt(
                "is not a trailkeep log segment (bad header)".into(),
            ));
        }
        let log_id = *id.get_or_insert(word(24));
        if word(24) != log_id {
            return Err(corrupt(
                "belongs to another log (its log id differs from segment 1's)".into(),
            ));
        }
        if word(16) != base && n == 1 {
            return Err(corrupt(
                "has a damaged header (it must start the log at byte 0)".into(),
            ));
        }
        if word(16) != base {
            let prev = segment_path(dir, n.saturating_sub(1));
            return Err(StoreError::Corrupt(format!(
                "{} says the log before it is {} bytes long, but the earlier segments hold {base}: {} was cut short or extended; restore the data directory from a backup",
                path.display(),
                word(16),
                prev.display()
            )));
        }
        let mut pos = HEADER_LEN;
        // Where the log stops being whole, and why.
        let mut damage: Option<(u64, &str)> = None;
        loop {
            if pos == size {
                break;
            }
            let mut bh = [0u8; BLOCK_HEADER_LEN as usize];
            if let Err(e) = r.read_exact(&mut bh) {
                if e.kind() == ErrorKind::UnexpectedEof {
                    damage = Some((pos, "a block header is cut short"));
                    break;
                }
                return Err(e.into());
            }
            let len = u32::from_le_bytes([bh[0], bh[1], bh[2], bh[3]]) as u64;
            let crc = u32::from_le_bytes([bh[4], bh[5], bh[6], bh[7]]);
            if len == 0 || u64::from_le_bytes(bh[8..16].try_into().unwrap_or_default()) != log_id {
                damage = Some((pos, "a block header is damaged"));
                break;
            }
            if pos + BLOCK_HEADER_LEN + len > size {
                damage = Some((pos, "a block runs past the end of the file"));
                break;
            }
            body.resize(len as usize, 0);
            r.read_exact(&mut body)?;
            if crc32fast::hash(&body) != crc {
                // A torn final write is the last thing in the file; anything after this block
                // means an acknowledged block was damaged.
                if pos + BLOCK_HEADER_LEN + len < size {
                    return Err(corrupt(format!(
                        "is damaged at byte {pos} (a block fails its checksum) and {} bytes of later blocks follow",
                        size - (pos + BLOCK_HEADER_LEN + len)
                    )));
                }
                damage = Some((pos, "the last block fails its checksum"));
                break;
            }
            last_block = Some((n, pos + BLOCK_HEADER_LEN + len, crc));
            on_block(n, pos + BLOCK_HEADER_LEN, &body).map_err(|e| match e {
                StoreError::Corrupt(m) => corrupt(format!(
                    "has a block at byte {pos} that does not apply: {m}"
                )),
                other => other,
            })?;
            pos += BLOCK_HEADER_LEN + len;
        }
        if let Some((at, why)) = damage {
            if n != last {
                return Err(corrupt(format!(
                    "is damaged at byte {at} ({why}) and later segments exist"
                )));
            }
            // A crash tears only the write in progress, the last thing in the file: if a whole
            // block follows the damage anywhere, acknowledged data was damaged instead.
            let rest = size - at;
            let mut tail = Vec::with_capacity(rest as usize);
            let mut f = File::open(&path)?;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at))?;
            f.take(rest).read_to_end(&mut tail)?;
            // A torn write leaves part of one block. A whole block, checksum and all, under
            // another log id was changed after it was written (its id, or the segment header's):
            // cutting it off would drop acknowledged blocks.
            if let Some(own) = tail.get(8..16).and_then(|b| b.try_into().ok()) {
                let own = u64::from_le_bytes(own);
                if own != log_id && looks_like_block(&tail, own) {
                    return Err(corrupt(format!(
                        "has a whole block at byte {at} whose log id differs from the segment header's (the header or the block was changed)"
                    )));
                }
            }
            if let Some(later) = (1..tail.len()).find(|&i| looks_like_block(&tail[i..], log_id)) {
                return Err(corrupt(format!(
                    "is damaged at byte {at} ({why}) and a whole block follows at byte {}",
                    at + later as u64
                )));
            }
            tracing::warn!(
                segment = %path.display(),
                kept = at,
                dropped = size - at,
                reason = why,
                "cutting off the unfinished tail of the log (a commit that was never acknowledged)"
            );
            let f = OpenOptions::new().write(true).open(&path)?;
            f.set_len(at)?;
            f.sync_all()?;
            base += at;
        } else {
            base += size;
        }
    }
    let path = segment_path(dir, last);
    let file = OpenOptions::new().read(true).write(true).open(&path)?;
    let len = file.metadata()?.len();
    Ok(LogWriter {
        dir: dir.to_path_buf(),
        seg: last,
        base: base - len,
        id: id.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "no segment of the log in {} has a whole header",
                dir.display()
            ))
        })?,
        file,
        len,
        target,
        unsynced: false,
        buf: Vec::new(),
        last_block,
        faults: None,
    })
}

/// Whether `b` starts with a whole block of log `id` whose checksum holds. The id check comes
/// first, so scanning a tail costs a compare per byte, not a checksum.
fn looks_like_block(b: &[u8], id: u64) -> bool {
    let h = BLOCK_HEADER_LEN as usize;
    if b.len() < h || b[8..16] != id.to_le_bytes() {
        return false;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let crc = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    len > 0
        && b.get(h..h + len)
            .is_some_and(|body| crc32fast::hash(body) == crc)
}

/// A fresh random log id (never 0, so a zeroed header never matches).
fn new_log_id() -> u64 {
    rand::random::<u64>() | 1
}

/// Read handles on the segments, for point reads.
#[derive(Default)]
pub struct Segments {
    dir: PathBuf,
    files: Vec<File>,
}

impl Segments {
    pub fn new(dir: &Path) -> Self {
        Segments {
            dir: dir.to_path_buf(),
            files: Vec::new(),
        }
    }

    /// Makes sure segment `n` can be read (opened on first use by the commit path).
    pub fn ensure(&mut self, n: u32) -> Result<(), StoreError> {
        while self.files.len() < n as usize {
            let next = self.files.len() as u32 + 1;
            self.files.push(File::open(segment_path(&self.dir, next))?);
        }
        Ok(())
    }

    pub fn read(&self, seg: u32, off: u64, len: usize) -> Result<Vec<u8>, StoreError> {
        let f = seg
            .checked_sub(1)
            .and_then(|i| self.files.get(i as usize))
            .ok_or_else(|| StoreError::Corrupt(format!("log segment {seg} is not open")))?;
        let mut b = vec![0u8; len];
        f.read_exact_at(&mut b, off)
            .map_err(|e| StoreError::Corrupt(format!("reading segment {seg} at {off}: {e}")))?;
        Ok(b)
    }

    /// Reads up to `want` bytes of segment `seg` from `off` into `buf` (replacing what it
    /// held), fewer only where the file ends; fails unless at least `need` bytes were there.
    /// For reading many nearby entries with one call (see `read::EntryReader`).
    pub fn read_window(
        &self,
        seg: u32,
        off: u64,
        want: usize,
        need: usize,
        buf: &mut Vec<u8>,
    ) -> Result<(), StoreError> {
        let f = seg
            .checked_sub(1)
            .and_then(|i| self.files.get(i as usize))
            .ok_or_else(|| StoreError::Corrupt(format!("log segment {seg} is not open")))?;
        buf.clear();
        buf.resize(want.max(need), 0);
        let mut got = 0;
        while got < buf.len() {
            match f.read_at(&mut buf[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StoreError::Corrupt(format!(
                        "reading segment {seg} at {off}: {e}"
                    )))
                }
            }
        }
        if got < need {
            return Err(StoreError::Corrupt(format!(
                "reading segment {seg} at {off}: the file ends {} bytes short of the entry",
                need - got
            )));
        }
        buf.truncate(got);
        Ok(())
    }

    /// Bytes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.files
            .iter()
            .filter_map(|f| f.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(dir: &Path, target: u64) -> (Vec<Vec<u8>>, LogWriter) {
        let mut got = Vec::new();
        let w = recover(dir, target, |_, _, b| {
            got.push(b.to_vec());
            Ok(())
        })
        .unwrap();
        (got, w)
    }

    #[test]
    fn blocks_survive_reopen_and_roll_over() {
        let d = tempfile::tempdir().unwrap();
        let (got, mut w) = collect(d.path(), 64);
        assert!(got.is_empty());
        let mut locs = Vec::new();
        for i in 0..10u8 {
            locs.push(w.append(&[i; 40]).unwrap());
        }
        assert!(locs.last().unwrap().0 > 1, "small target rolls segments");
        drop(w);
        let (got, _) = collect(d.path(), 64);
        assert_eq!(got.len(), 10);
        let mut segs = Segments::new(d.path());
        segs.ensure(locs.last().unwrap().0).unwrap();
        for (i, (s, off)) in locs.iter().enumerate() {
            assert_eq!(segs.read(*s, *off, 40).unwrap(), vec![i as u8; 40]);
        }
    }

    /// Blocks written without a sync in between, across segment roll-overs, then synced once:
    /// all are in the log, in order, and the writer knows there is nothing left to sync.
    #[test]
    fn writes_share_one_sync_across_roll_overs() {
        let d = tempfile::tempdir().unwrap();
        let (_, mut w) = collect(d.path(), 100);
        assert!(!w.unsynced);
        let mut locs = Vec::new();
        for i in 0..9u8 {
            locs.push(w.write(&[i; 30]).unwrap());
            assert!(w.unsynced);
        }
        assert!(locs.last().unwrap().0 >= 3, "rolled over: {locs:?}");
        w.sync().unwrap();
        assert!(!w.unsynced);
        drop(w);
        let (got, _) = collect(d.path(), 100);
        assert_eq!(got, (0..9u8).map(|i| vec![i; 30]).collect::<Vec<_>>());
        let mut segs = Segments::new(d.path());
        segs.ensure(locs.last().unwrap().0).unwrap();
        for (i, (s, off)) in locs.iter().enumerate() {
            assert_eq!(segs.read(*s, *off, 30).unwrap(), vec![i as u8; 30]);
        }
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_writes_follow_it() {
        let d = tempfile::tempdir().unwrap();
        let (_, mut w) = collect(d.path(), SEGMENT_TARGET);
        w.append(b"one").unwrap();
        w.append(b"two").unwrap();
        drop(w);
        let p = segment_path(d.path(), 1);
        let full = std::fs::metadata(&p).unwrap().len();
        for cut in 1..(BLOCK_HEADER_LEN + 3) {
            let f = OpenOptions::new().write(true).open(&p).unwrap();
            f.set_len(full - cut).unwrap();
            drop(f);
            let (got, _) = collect(d.path(), SEGMENT_TARGET);
            assert_eq!(got, vec![b"one".to_vec()], "cut {cut}");
            // Restore the second block for the next round.
            let (_, mut w) = collect(d.path(), SEGMENT_TARGET);
            w.append(b"two").unwrap();
        }
        // A flipped byte in the last block fails its CRC and is dropped too.
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n - 1] ^= 0xff;
        std::fs::write(&p, &b).unwrap();
        let (got, mut w) = collect(d.path(), SEGMENT_TARGET);
        assert_eq!(got, vec![b"one".to_vec()]);
        w.append(b"three").unwrap();
        drop(w);
        let (got, _) = collect(d.path(), SEGMENT_TARGET);
        assert_eq!(got, vec![b"one".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn damage_before_the_last_segment_refuses_to_open() {
        let d = tempfile::tempdir().unwrap();
        let (_, mut w) = collect(d.path(), 40);
        for _ in 0..4 {
            w.append(&[7u8; 30]).unwrap();
        }
        drop(w);
        let p = segment_path(d.path(), 1);
        let mut b = std::fs::read(&p).unwrap();
        let n = b.len();
        b[n - 1] ^= 1;
        std::fs::write(&p, &b).unwrap();
        let err = recover(d.path(), 40, |_, _, _| Ok(())).err().unwrap();
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        std::fs::remove_file(segment_path(d.path(), 2)).unwrap();
        std::fs::remove_file(segment_path(d.path(), 3)).unwrap();
        std::fs::write(&p, &b).unwrap();
        // Now segment 1 is the last one again, but 4 is present: a gap.
        let err = recover(d.path(), 40, |_, _, _| Ok(())).err().unwrap();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
