//! The in-memory side of the embedded store: symbols, every tenant's log metadata, the indexes,
//! the Merkle trees and checkpoints, all derived from the log.
//!
//! [`Mem::apply_block`] is the only way anything gets in: recovery feeds it every block of the
//! log at start, and the commit thread feeds it each block it has just made durable. So what
//! readers see after a restart is, by construction, what they saw before it.
//!
//! Per event this holds a [`Meta`] (where the entry is, its sort key and indexed fields), one
//! entry in the tenant's time index, one in its type index, one in its actor index (and one in
//! its session index when it has one), its id in the id map, and its tree hashes (about two per
//! leaf). Indexes are B-trees keyed by `(timestamp, event_id)`, the API's order, so a page is a
//! range walk plus a merge across the few ranges a filter opens.

use super::chunked::{ChunkedVec, TreeHashes};
use super::codec::{self, Reader, CHECKPOINT, DICT, EVENT, F_SESSION, SYMBOL};
use super::compress::Dict;
use super::segment::Segments;
use crate::{SignedCheckpoint, StoreError};
use foldhash::HashMap;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The API's list order: timestamp, then event id bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    pub ts: i64,
    pub id: [u8; 16],
}

/// One index: sort key → seq.
pub type Index = super::index::ChunkIndex<SortKey>;

/// What memory keeps of one event.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    /// Segment number (high 24 bits) and byte offset of the entry's contents (low 40 bits).
    pub loc: u64,
    pub len: u32,
    pub event_type: u32,
    pub actor: u32,
    pub session: u32,
}

impl Meta {
    pub fn segment(&self) -> u32 {
        (self.loc >> 40) as u32
    }
    pub fn offset(&self) -> u64 {
        self.loc & ((1 << 40) - 1)
    }
}

/// One tenant's log.
#[derive(Default)]
pub struct TenantMem {
    pub events: ChunkedVec<Meta>,
    pub by_time: Index,
    pub by_type: HashMap<u32, Index>,
    pub by_actor: HashMap<u32, Index>,
    pub by_session: HashMap<u32, Index>,
    /// (UTC day, type symbol) → count, for stats.
    pub day_counts: BTreeMap<(i32, u32), u64>,
    pub first_ts: Option<(i64, u8)>,
    pub last_ts: Option<(i64, u8)>,
    pub tree: TreeHashes,
    /// The newest checkpoint (older ones stay in the log; their roots follow from the tree).
    pub latest_checkpoint: Option<SignedCheckpoint>,
}

impl TenantMem {
    pub fn size(&self) -> u64 {
        self.events.len() as u64
    }
}

/// Everything the store knows, rebuilt from the log.
pub struct Mem {
    syms: Vec<String>,
    sym_ids: HashMap<String, u32>,
    pub tenants: HashMap<u32, TenantMem>,
    /// event id → (tenant symbol, seq), in 256 shards by the id's last byte, so that growing
    /// one never rehashes millions of entries at once (a stall of the commit thread).
    ids: Vec<HashMap<[u8; 16], (u32, u64)>>,
    pub dicts: Vec<Arc<Dict>>,
    pub segments: Segments,
}

pub const DAY_NANOS: i64 = 86_400_000_000_000;

pub fn day_of(ts: i64) -> i32 {
    ts.div_euclid(DAY_NANOS)
        .clamp(i32::MIN as i64, i32::MAX as i64) as i32
}

fn corrupt(what: String) -> StoreError {
    StoreError::Corrupt(what)
}

impl Mem {
    pub fn new(segments: Segments) -> Mem {
        Mem {
            syms: Vec::new(),
            sym_ids: HashMap::default(),
            tenants: HashMap::default(),
            ids: (0..256).map(|_| HashMap::default()).collect(),
            dicts: Vec::new(),
            segments,
        }
    }

    /// Where the event with this id is: (tenant symbol, seq).
    pub fn locate(&self, id: &[u8; 16]) -> Option<(u32, u64)> {
        self.ids.get(id[15] as usize)?.get(id).copied()
    }

    pub fn sym(&self, id: u32) -> Result<&str, StoreError> {
        id.checked_sub(1)
            .and_then(|i| self.syms.get(i as usize))
            .map(|s| s.as_str())
            .ok_or_else(|| corrupt(format!("symbol {id} is not defined")))
    }

    pub fn sym_id(&self, text: &str) -> Option<u32> {
        self.sym_ids.get(text).copied()
    }

    /// The next symbol id to hand out.
    pub fn next_sym(&self) -> u32 {
        self.syms.len() as u32 + 1
    }

    pub fn tenant(&self, name: &str) -> Option<(u32, &TenantMem)> {
        let id = self.sym_id(name)?;
        self.tenants.get(&id).map(|t| (id, t))
    }

    /// A tenant's tree; a tenant with no events has the empty tree.
    pub fn tree(&self, tenant: &str) -> &TreeHashes {
        self.tenant(tenant)
            .map(|(_, t)| &t.tree)
            .unwrap_or(&super::chunked::EMPTY_TREE)
    }

    pub fn dict(&self, number: u32) -> Result<&Arc<Dict>, StoreError> {
        number
            .checked_sub(1)
            .and_then(|i| self.dicts.get(i as usize))
            .ok_or_else(|| corrupt(format!("compression dictionary {number} is not in the log")))
    }

    /// Applies one durable block (the body that starts at `body_off` in segment `seg`).
    pub fn apply_block(&mut self, seg: u32, body_off: u64, body: &[u8]) -> Result<(), StoreError> {
        self.apply_block_with(seg, body_off, body, &[])
    }

    /// [`Self::apply_block`] for a block whose event headers the caller already has (the commit
    /// thread built them): `headers` lists them in block order, each with the offset of its
    /// entry's contents in the block. Only the framing is read again; a header that does not
    /// sit where the framing says is a bug and refused.
    pub fn apply_block_with(
        &mut self,
        seg: u32,
        body_off: u64,
        body: &[u8],
        headers: &[(usize, codec::EventHeader)],
    ) -> Result<(), StoreError> {
        self.segments.ensure(seg)?;
        let mut r = Reader::new(body);
        let mut known = headers.iter();
        while !r.is_empty() {
            let (kind, bytes, _) = r.entry()?;
            let rel = r.pos - bytes.len();
            let at = body_off + rel as u64;
            match kind {
                SYMBOL => self.apply_symbol(bytes)?,
                DICT => self.apply_dict(bytes)?,
                EVENT if headers.is_empty() => {
                    let h = codec::read_event_header(&mut Reader::new(bytes))?;
                    self.apply_event(seg, at, bytes.len(), &h)?
                }
                EVENT => match known.next() {
                    Some((off, h)) if *off == rel => self.apply_event(seg, at, bytes.len(), h)?,
                    _ => {
                        return Err(corrupt(
                            "a block's event headers do not match its entries".into(),
                        ))
                    }
                },
                CHECKPOINT => self.apply_checkpoint(bytes)?,
                k => return Err(corrupt(format!("unknown log entry kind {k}"))),
            }
        }
        Ok(())
    }

    fn apply_symbol(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let mut r = Reader::new(bytes);
        let id = r.varint_u32()?;
        let text = std::str::from_utf8(r.rest())
            .map_err(|_| corrupt("a symbol is not UTF-8".into()))?
            .to_string();
        if id != self.next_sym() {
            return Err(corrupt(format!(
                "symbol {id} out of order (expected {})",
                self.next_sym()
            )));
        }
        self.sym_ids.insert(text.clone(), id);
        self.syms.push(text);
        Ok(())
    }

    fn apply_dict(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let mut r = Reader::new(bytes);
        let number = r.varint_u32()?;
        if number as usize != self.dicts.len() + 1 {
            return Err(corrupt(format!("dictionary {number} out of order")));
        }
        self.dicts.push(Arc::new(Dict::new(number, r.rest())));
        Ok(())
    }

    fn apply_event(
        &mut self,
        seg: u32,
        at: u64,
        len: usize,
        h: &codec::EventHeader,
    ) -> Result<(), StoreError> {
        for s in [h.tenant, h.event_type, h.actor] {
            self.sym(s)?;
        }
        if h.flags & F_SESSION != 0 {
            self.sym(h.session)?;
        }
        if h.dict != 0 {
            self.dict(h.dict)?;
        }
        let t = self.tenants.entry(h.tenant).or_default();
        if h.seq != t.size() {
            return Err(corrupt(format!(
                "event {} of tenant symbol {} has seq {} where {} was next",
                codec::uuid(h),
                h.tenant,
                h.seq,
                t.size()
            )));
        }
        let key = SortKey {
            ts: h.ts,
            id: h.event_id,
        };
        t.events.push(Meta {
            loc: ((seg as u64) << 40) | at,
            len: len as u32,
            event_type: h.event_type,
            actor: h.actor,
            session: h.session,
        });
        t.by_time.insert(key, h.seq);
        t.by_type
            .entry(h.event_type)
            .or_default()
            .insert(key, h.seq);
        t.by_actor.entry(h.actor).or_default().insert(key, h.seq);
        if h.flags & F_SESSION != 0 {
            t.by_session
                .entry(h.session)
                .or_default()
                .insert(key, h.seq);
        }
        *t.day_counts
            .entry((day_of(h.ts), h.event_type))
            .or_default() += 1;
        let ts = (h.ts, h.digits);
        if t.first_ts.is_none_or(|f| ts.0 < f.0) {
            t.first_ts = Some(ts);
        }
        if t.last_ts.is_none_or(|l| ts.0 > l.0) {
            t.last_ts = Some(ts);
        }
        t.tree
            .append_leaf(h.leaf_hash)
            .map_err(|e| corrupt(format!("tree of tenant symbol {}: {e}", h.tenant)))?;
        debug_assert_eq!(
            t.tree.size(),
            t.size(),
            "a sequenced event is always in its tree"
        );
        if let Some(shard) = self.ids.get_mut(h.event_id[15] as usize) {
            shard.insert(h.event_id, (h.tenant, h.seq));
        }
        Ok(())
    }

    fn apply_checkpoint(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let mut r = Reader::new(bytes);
        let tenant = r.varint_u32()?;
        let size = r.varint()?;
        let root = r.arr::<32>()?;
        let note = std::str::from_utf8(r.rest())
            .map_err(|_| corrupt("a checkpoint note is not UTF-8".into()))?
            .to_string();
        self.sym(tenant)?;
        let t = self.tenants.entry(tenant).or_default();
        if size > t.size() {
            return Err(corrupt(format!(
                "checkpoint of size {size} precedes the events it covers"
            )));
        }
        if t.latest_checkpoint.as_ref().is_none_or(|c| size >= c.size) {
            t.latest_checkpoint = Some(SignedCheckpoint { size, root, note });
        }
        Ok(())
    }
}
