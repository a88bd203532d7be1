//! The high-water mark: `DATA_DIR/high-water`, what the log is known to have held, kept
//! outside the log so that a log rolled back (a segment deleted, blocks cut off its end, a
//! block taken out of the middle, the whole directory replaced by an older copy) is refused at
//! open instead of silently reusing `seq`s (two different trees of one size, both signed).
//!
//! The mark holds the log's id and total length, the last durable block (segment, where it
//! ends, its CRC), and for each tenant its event count and latest signed checkpoint (size and
//! root). The sync thread publishes the position after each `fdatasync` (a lock and a copy of
//! a few words: O(1) per group); the mark thread writes the file at most every
//! [`super::EmbeddedOptions::mark_interval`] (written to `high-water.tmp`, fsync'd, renamed
//! over the old one, directory fsync'd), and once more at shutdown. Everything in it comes
//! from durable state (the published position, memory, which holds only durable blocks), so
//! the mark may trail the log by up to one interval but never leads it: a log behind the mark
//! has lost durable, acknowledged data.

use super::memory::Mem;
use crate::StoreError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "high-water";

/// Where the durable log ends, as the sync thread publishes it after each fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    /// Total length of the log (every segment, headers included).
    pub length: u64,
    /// The last block: (segment, offset where it ends, CRC-32 of its body).
    pub last_block: Option<(u32, u64, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mark {
    pub format: u32,
    /// The log id of the segments' headers, in hex.
    pub log_id: String,
    pub length: u64,
    pub last_block: Option<BlockMark>,
    pub tenants: BTreeMap<String, TenantMark>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMark {
    pub segment: u32,
    /// Offset in the segment just past the block.
    pub end: u64,
    pub crc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantMark {
    pub events: u64,
    /// Latest signed checkpoint: size and root (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<(u64, String)>,
}

pub fn path(dir: &Path) -> PathBuf {
    dir.join(FILE)
}

/// What the mark needs of one tenant, copied out of memory quickly (the read lock is held
/// while the apply thread may wait for it).
pub struct TenantState {
    name: trailkeep_core::CompactString,
    events: u64,
    checkpoint: Option<(u64, [u8; 32])>,
}

/// Every tenant's state: a copy per tenant, no formatting (done after the lock is let go).
pub fn tenants(mem: &Mem) -> Result<Vec<TenantState>, StoreError> {
    let mut out = Vec::with_capacity(mem.tenants.len());
    for (sym, t) in &mem.tenants {
        if t.size() == 0 && t.latest_checkpoint.is_none() {
            continue;
        }
        out.push(TenantState {
            name: mem.sym(*sym)?.into(),
            events: t.size(),
            checkpoint: t.latest_checkpoint.as_ref().map(|c| (c.size, c.root)),
        });
    }
    Ok(out)
}

impl Mark {
    /// The mark for log `log_id` at `pos`, with memory's tenants.
    pub fn new(log_id: u64, pos: Pos, mem: &Mem) -> Result<Mark, StoreError> {
        Ok(Mark::from_parts(log_id, pos, tenants(mem)?))
    }

    /// The mark for log `log_id` at `pos` with these tenants (see [`tenants`]).
    pub fn from_parts(log_id: u64, pos: Pos, states: Vec<TenantState>) -> Mark {
        let tenants = states
            .into_iter()
            .map(|t| {
                (
                    t.name.to_string(),
                    TenantMark {
                        events: t.events,
                        checkpoint: t.checkpoint.map(|(s, r)| (s, hex::encode(r))),
                    },
                )
            })
            .collect();
        Mark {
            format: 1,
            log_id: format!("{log_id:016x}"),
            length: pos.length,
            last_block: pos
                .last_block
                .map(|(segment, end, crc)| BlockMark { segment, end, crc }),
            tenants,
        }
    }
}

/// Removes temporary files a crash left behind.
pub fn clean(dir: &Path) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(&format!("{FILE}.")) && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// The mark in `dir`, if there is one.
pub fn read(dir: &Path) -> Result<Option<Mark>, StoreError> {
    let p = path(dir);
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            StoreError::Corrupt(format!(
                "{} is damaged ({e}); it records how far the log had got, so trailkeep will not guess: restore it from the backup of this data directory, or start with --accept-restored-log to accept the log as it is",
                p.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::Unavailable(format!(
            "cannot read {}: {e}",
            p.display()
        ))),
    }
}

/// Replaces the mark in `dir` atomically and durably.
pub fn write(dir: &Path, mark: &Mark) -> std::io::Result<()> {
    let p = path(dir);
    // A name of its own: a store dropped without `shutdown` may still write its last mark
    // while the next one opens (in one process; the lock keeps other processes out).
    let tmp = dir.join(format!("{FILE}.{:016x}.tmp", rand::random::<u64>()));
    let text = serde_json::to_vec_pretty(mark).map_err(std::io::Error::other)?;
    {
        let mut f = super::perm::private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
    }
    if let Err(e) = std::fs::rename(&tmp, &p) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::File::open(dir)?.sync_all()
}

/// What the log, as recovered, lacks of what the mark says it held: empty when the log is at
/// or past the mark. `seen_crc` is the CRC of the block recovery found ending where the mark's
/// last block ended (`None`: no block ends there).
pub fn missing(
    mark: &Mark,
    log_id: u64,
    pos: Pos,
    seen_crc: Option<u32>,
    mem: &Mem,
) -> Vec<String> {
    let mut out = Vec::new();
    if mark.log_id != format!("{log_id:016x}") {
        out.push(format!(
            "the log in log/ is not the one the high-water mark describes (log id {:016x}, the mark's is {}): the log was replaced",
            log_id, mark.log_id
        ));
    }
    if pos.length < mark.length {
        let at = match mark.last_block.as_ref() {
            Some(b) => format!(" (up to byte {} of segment {:08}.seg)", b.end, b.segment),
            None => String::new(),
        };
        let now = match pos.last_block {
            Some((s, e, _)) => format!("byte {e} of segment {s:08}.seg"),
            None => "its first segment's header".to_string(),
        };
        out.push(format!(
            "the log held {} bytes{at} but now ends at {now} after {} bytes: {} bytes of durable log are missing",
            mark.length,
            pos.length,
            mark.length - pos.length
        ));
    } else if let Some(b) = &mark.last_block {
        if seen_crc != Some(b.crc) {
            out.push(format!(
                "the block that ended at byte {} of segment {:08}.seg is not there any more (the log was rewritten from that point)",
                b.end, b.segment
            ));
        }
    }
    for (name, tm) in &mark.tenants {
        let (events, cp) = match mem.tenant(name) {
            Some((_, t)) => (t.size(), t.latest_checkpoint.as_ref().map(|c| c.size)),
            None => (0, None),
        };
        if events < tm.events {
            out.push(format!(
                "tenant {name} had {} events, the log holds {events}",
                tm.events
            ));
        }
        if let Some((size, _)) = &tm.checkpoint {
            if cp.is_none_or(|c| c < *size) {
                out.push(format!(
                    "tenant {name} had a signed checkpoint of size {size}, the log's latest is {}",
                    cp.map_or("none".to_string(), |c| c.to_string())
                ));
            }
        }
    }
    out
}
