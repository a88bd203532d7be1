//! The in-memory side of the embedded store: symbols, every tenant's log metadata, the indexes,
//! the Merkle trees and checkpoints, all derived from the log.
//!
//! [`Mem::apply_block`] is the only way anything gets in: recovery feeds it every block of the
//! log at start, and the apply thread feeds it each block the sync thread has just made durable. So what
//! readers see after a restart is, by construction, what they saw before it.
//!
//! Per event this holds a [`Meta`] (its sort key `(timestamp, event_id)`, where the entry is,
//! and its indexed fields: 48 bytes), its seq in the tenant's time index, type index, actor
//! index (and session index when it has one), 8 bytes each, a fingerprint of its id in the id
//! map (16 bytes a slot), and its tree hashes (about two per leaf). Indexes are sorted chunks
//! of seqs ([`super::index`]) ordered by their events' sort keys, the API's order, which they
//! look up in the tenant's `Meta`s rather than repeat: a page is a range walk plus a merge
//! across the few ranges a filter opens.
//!
//! A block is applied in two steps: its entries in order (symbols, dictionaries, checkpoints,
//! and each event's metadata, day count and tree hashes), then its events' index entries and
//! ids, one loop per index. Nothing reads memory in between (the block is applied under the
//! write lock), and the second step runs even when the first stops at a bad entry, so what is
//! applied is exactly what one event at a time would have applied.

use super::chunked::{ChunkedVec, TreeHashes};
use super::codec::{self, Reader, CHECKPOINT, DICT, EVENT, F_SESSION, KEY, SYMBOL};
use super::compress::Dict;
use super::segment::Segments;
use crate::{SignedCheckpoint, StoreError};
use foldhash::HashMap;
use std::collections::BTreeMap;
use std::sync::Arc;
use trailkeep_core::CompactString;

/// The API's list order: timestamp, then event id bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SortKey {
    pub ts: i64,
    pub id: [u8; 16],
}

/// One index: seqs of a tenant, ordered by their events' sort keys (looked up in the
/// tenant's [`Meta`]s, see [`Events`]).
pub type Index = super::index::ChunkIndex<SortKey>;

/// A tenant's events by seq.
pub type Events = ChunkedVec<Meta>;

/// What memory keeps of one event: its sort key (which every index of its tenant orders it
/// by, and which holds its id), where its entry is, and its indexed fields.
#[derive(Debug, Clone, Copy)]
pub struct Meta {
    pub key: SortKey,
    /// Segment number (high 24 bits) and byte offset of the entry's contents (low 40 bits).
    pub loc: u64,
    pub len: u32,
    pub event_type: u32,
    pub actor: u32,
    pub session: u32,
}

// The layout the module doc and ARCHITECTURE.md count on: 48 bytes per event.
const _: () = assert!(std::mem::size_of::<Meta>() == 48);

/// Before every key: what an index would see for a seq that has no event (never, as every
/// event is in `events` before it is indexed).
const NO_KEY: SortKey = SortKey {
    ts: i64::MIN,
    id: [0; 16],
};

/// Event `seq` of a tenant's events.
#[inline]
pub fn meta_at(events: &Events, seq: u64) -> Option<&Meta> {
    events.get(usize::try_from(seq).ok()?)
}

impl super::index::Keys<SortKey> for Events {
    #[inline]
    fn key(&self, seq: u64) -> SortKey {
        let m = meta_at(self, seq);
        debug_assert!(m.is_some(), "an indexed seq has its event");
        m.map_or(NO_KEY, |m| m.key)
    }
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
    /// Dense number, in order of the tenants' first entries (what the id map stores).
    number: u32,
    pub events: Events,
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
    /// Every stored checkpoint by size, ascending, one per size (the first stored): where its
    /// entry is in the log, read back on demand ([`super::read::checkpoint_covering`]). The
    /// checkpointer signs at most one a second per growing tenant: 24 bytes a second, ~2 MB a
    /// day of constant growth.
    pub checkpoints: Vec<CheckpointAt>,
}

/// Where a stored checkpoint of a tenant is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointAt {
    pub size: u64,
    /// Segment number (high 24 bits) and byte offset of the entry's contents (low 40 bits), as
    /// in [`Meta::loc`].
    pub loc: u64,
    pub len: u32,
}

impl CheckpointAt {
    pub fn segment(&self) -> u32 {
        (self.loc >> 40) as u32
    }
    pub fn offset(&self) -> u64 {
        self.loc & ((1 << 40) - 1)
    }
}

/// Decodes a `CHECKPOINT` entry: the tenant symbol and the checkpoint.
pub fn decode_checkpoint(bytes: &[u8]) -> Result<(u32, SignedCheckpoint), StoreError> {
    let mut r = Reader::new(bytes);
    let tenant = r.varint_u32()?;
    let size = r.varint()?;
    let root = r.arr::<32>()?;
    let note = std::str::from_utf8(r.rest())
        .map_err(|_| corrupt("a checkpoint note is not UTF-8".into()))?
        .to_string();
    Ok((tenant, SignedCheckpoint { size, root, note }))
}

impl TenantMem {
    pub fn size(&self) -> u64 {
        self.events.len() as u64
    }
}

/// An event applied to its tenant's log but not yet to its indexes.
struct Unindexed {
    tenant: u32,
    key: SortKey,
    seq: u64,
    event_type: u32,
    actor: u32,
    session: Option<u32>,
}

/// Everything the store knows, rebuilt from the log.
pub struct Mem {
    /// Symbol texts by number − 1. `CompactString`, so that the short ones (most tenants,
    /// types and actors) sit in the map's own slots: the commit thread's lookups, three or four
    /// per event, then compare keys without following a pointer to another cache line.
    syms: Vec<CompactString>,
    sym_ids: HashMap<CompactString, u32>,
    pub tenants: HashMap<u32, TenantMem>,
    /// event id → (tenant number, seq).
    ids: IdMap,
    /// Tenant number → tenant symbol.
    tenant_syms: Vec<u32>,
    /// Events of the block being applied, not yet in their tenant's indexes.
    pending: Vec<Unindexed>,
    pub dicts: Vec<Arc<Dict>>,
    pub segments: Segments,
    /// The log's signing keys (C2SP vkeys) in the order they were recorded; the last one is
    /// the key checkpoints are signed with now.
    pub signing_keys: Vec<String>,
    /// Tenants that failed the integrity check at open (tenant symbol → why). Decided once,
    /// from the log as it was at open; not changed by later blocks.
    pub quarantined: HashMap<u32, String>,
}

/// Runs `f` on each pending event with its tenant's log (one pass of [`Mem::index_pending`]).
fn each_pending(
    tenants: &mut HashMap<u32, TenantMem>,
    pending: &[Unindexed],
    mut f: impl FnMut(&mut TenantMem, &Unindexed),
) {
    for u in pending {
        if let Some(t) = tenants.get_mut(&u.tenant) {
            f(t, u);
        }
    }
}

/// Event id → (tenant number, seq): where [`Mem::locate`] finds an event, and what the commit
/// thread checks every client id against.
///
/// The map does not hold the ids: an event's id is already in memory, in its [`Meta`]'s sort
/// key. An entry is a 64-bit fingerprint of the id (a hash with this process's random seed, so
/// clients cannot aim at one) and the packed location, 16 bytes where the id itself would make
/// it 24; a fingerprint that matches is confirmed against the id at that location
/// (`id_at`). The rare id whose fingerprint is already taken by another id goes to `overflow`,
/// by its full id, and so does a location that does not pack (tenant number 2^24 or more, seq
/// 2^40 or more); `overflow` is looked at first and is empty in practice.
///
/// 256 hash maps by a byte of the fingerprint, so that growing one never rehashes millions of
/// entries at once (a stall of the apply thread).
///
/// (Measured against open addressing with the whole entry in one cache line: a miss, the
/// commit thread's usual lookup, then reads the big slot array instead of the map's small
/// control bytes, and an insert must load the slot, where the map's insert only stores to it;
/// both were slower.)
struct IdMap {
    shards: Vec<std::collections::HashMap<u64, u64, BuildFingerprint>>,
    overflow: HashMap<[u8; 16], (u32, u64)>,
    seed: foldhash::quality::RandomState,
    /// Bits of the fingerprint kept: all of them, but in tests, which keep few to make
    /// fingerprints collide.
    mask: u64,
    /// Ids of the block being applied, inserted when it is done.
    pending: Vec<([u8; 16], u32, u64)>,
}

/// The maps' keys are fingerprints, already well-mixed hashes: they are used as they are.
#[derive(Default, Clone, Copy)]
struct BuildFingerprint;

struct FingerprintHasher(u64);

impl std::hash::BuildHasher for BuildFingerprint {
    type Hasher = FingerprintHasher;
    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher(0)
    }
}

impl std::hash::Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a u64); fold anything else in all the same.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

const SEQ_BITS: u32 = 40;

impl Default for IdMap {
    fn default() -> Self {
        IdMap {
            shards: (0..256)
                .map(|_| std::collections::HashMap::with_hasher(BuildFingerprint))
                .collect(),
            overflow: HashMap::default(),
            seed: foldhash::quality::RandomState::default(),
            mask: u64::MAX,
            pending: Vec::new(),
        }
    }
}

fn unpack(v: u64) -> (u32, u64) {
    ((v >> SEQ_BITS) as u32, v & ((1 << SEQ_BITS) - 1))
}

impl IdMap {
    #[inline]
    fn fingerprint(&self, id: &[u8; 16]) -> u64 {
        use std::hash::BuildHasher as _;
        self.seed.hash_one(id) & self.mask
    }

    /// The shard of a fingerprint: bits 48–55, which the maps use for neither the bucket
    /// (the low bits) nor the tag in their control bytes (the top 7 bits).
    #[inline]
    fn shard(fp: u64) -> usize {
        ((fp >> 48) & 0xff) as usize
    }

    /// Where `id` is; `id_at` gives the id stored at a location.
    #[inline]
    fn get(
        &self,
        id: &[u8; 16],
        id_at: impl Fn(u32, u64) -> Option<[u8; 16]>,
    ) -> Option<(u32, u64)> {
        if !self.overflow.is_empty() {
            if let Some(&found) = self.overflow.get(id) {
                return Some(found);
            }
        }
        let fp = self.fingerprint(id);
        let v = *self.shards.get(Self::shard(fp))?.get(&fp)?;
        let (number, seq) = unpack(v);
        (id_at(number, seq) == Some(*id)).then_some((number, seq))
    }

    /// Looks up every id's fingerprint and forgets the answers: the lookups of one tight
    /// loop are independent, so their cache misses overlap, and the real lookups after it
    /// (one per event, between the rest of each event's work) then find the map in cache.
    fn warm<'a>(&self, ids: impl Iterator<Item = &'a [u8; 16]>) {
        let mut seen = 0u64;
        for id in ids {
            let fp = self.fingerprint(id);
            if let Some(shard) = self.shards.get(Self::shard(fp)) {
                seen ^= shard.get(&fp).copied().unwrap_or(0);
            }
        }
        std::hint::black_box(seen);
    }

    /// Inserts the ids of the block being applied, after one reading pass over their entries
    /// (see [`Self::warm`]), so that the inserts find them in cache.
    fn insert_pending(&mut self, id_at: impl Fn(u32, u64) -> Option<[u8; 16]>) {
        let mut pending = std::mem::take(&mut self.pending);
        self.warm(pending.iter().map(|(id, _, _)| id));
        for (id, number, seq) in pending.drain(..) {
            self.insert(&id, number, seq, &id_at);
        }
        self.pending = pending;
    }

    /// Sets `id`'s location (a later insert of the same id wins, as in a map). `id_at` gives
    /// the id stored at a location.
    fn insert(
        &mut self,
        id: &[u8; 16],
        number: u32,
        seq: u64,
        id_at: &impl Fn(u32, u64) -> Option<[u8; 16]>,
    ) {
        use std::collections::hash_map::Entry;
        if number >= 1 << (64 - SEQ_BITS) || seq >= 1 << SEQ_BITS {
            self.overflow.insert(*id, (number, seq));
            return;
        }
        let packed = u64::from(number) << SEQ_BITS | seq;
        let fp = self.fingerprint(id);
        let Some(shard) = self.shards.get_mut(Self::shard(fp)) else {
            return;
        };
        match shard.entry(fp) {
            Entry::Vacant(e) => {
                e.insert(packed);
            }
            Entry::Occupied(mut e) => {
                let (n, s) = unpack(*e.get());
                if id_at(n, s) == Some(*id) {
                    e.insert(packed);
                } else {
                    // Another id holds this fingerprint.
                    self.overflow.insert(*id, (number, seq));
                    return;
                }
            }
        }
        if !self.overflow.is_empty() {
            self.overflow.remove(id);
        }
    }
}

/// The id of event `seq` of the tenant numbered `number`.
fn id_at(
    tenants: &HashMap<u32, TenantMem>,
    tenant_syms: &[u32],
    number: u32,
    seq: u64,
) -> Option<[u8; 16]> {
    let sym = tenant_syms.get(number as usize)?;
    let m = meta_at(&tenants.get(sym)?.events, seq)?;
    Some(m.key.id)
}

/// [`Mem::tenant_mut`] on borrowed fields.
fn tenant_entry<'t>(
    tenants: &'t mut HashMap<u32, TenantMem>,
    tenant_syms: &mut Vec<u32>,
    sym: u32,
) -> &'t mut TenantMem {
    tenants.entry(sym).or_insert_with(|| {
        let number = tenant_syms.len() as u32;
        tenant_syms.push(sym);
        TenantMem {
            number,
            ..TenantMem::default()
        }
    })
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
            ids: IdMap::default(),
            tenant_syms: Vec::new(),
            pending: Vec::new(),
            dicts: Vec::new(),
            segments,
            signing_keys: Vec::new(),
            quarantined: HashMap::default(),
        }
    }

    /// Where the event with this id is: (tenant symbol, seq).
    #[inline]
    pub fn locate(&self, id: &[u8; 16]) -> Option<(u32, u64)> {
        let (number, seq) = self
            .ids
            .get(id, |n, s| id_at(&self.tenants, &self.tenant_syms, n, s))?;
        Some((*self.tenant_syms.get(number as usize)?, seq))
    }

    /// Brings the id map's entries for `ids` into cache ahead of [`Self::locate`] calls for
    /// them (a request's ids, before the commit thread checks them one by one).
    pub fn warm_ids<'a>(&self, ids: impl Iterator<Item = &'a [u8; 16]>) {
        self.ids.warm(ids);
    }

    /// [`Self::warm_ids`] for symbols: brings the symbol table's entries for `texts` into cache
    /// ahead of [`Self::sym_id`] calls for them (a request's actors, the largest set of names).
    pub fn warm_syms<'a>(&self, texts: impl Iterator<Item = &'a str>) {
        let mut seen = 0u32;
        for t in texts {
            seen ^= self.sym_id(t).unwrap_or(0);
        }
        std::hint::black_box(seen);
    }

    /// The log of the tenant with symbol `sym`, created (and numbered) if new.
    fn tenant_mut(&mut self, sym: u32) -> &mut TenantMem {
        tenant_entry(&mut self.tenants, &mut self.tenant_syms, sym)
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

    /// Refuses reads of a quarantined tenant (symbol `sym`).
    #[inline]
    pub fn check(&self, sym: u32) -> Result<(), StoreError> {
        if self.quarantined.is_empty() {
            return Ok(());
        }
        match self.quarantined.get(&sym) {
            Some(why) => Err(StoreError::Quarantined {
                tenant: self.sym(sym).unwrap_or("?").to_string(),
                reason: why.clone(),
            }),
            None => Ok(()),
        }
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
        let applied = self.apply_entries(seg, body_off, body, headers);
        // Indexes and ids are filled in once the block is done: loops of nothing but inserts
        // let their cache misses overlap, where inserts between the rest of each event's work
        // wait for each miss in turn.
        self.index_pending();
        let (tenants, tenant_syms) = (&self.tenants, &self.tenant_syms);
        self.ids
            .insert_pending(|n, s| id_at(tenants, tenant_syms, n, s));
        applied
    }

    /// The type and actor indexes are many (15,000+ actors) and each insert reaches its own
    /// through two dependent loads (the map's entry, then the tail): this first pass only reads
    /// them, so that the misses of many events overlap before the inserts need them.
    fn warm_indexes(&self, pending: &[Unindexed]) {
        let mut seen = 0u64;
        for u in pending {
            if let Some(t) = self.tenants.get(&u.tenant) {
                if let Some(ix) = t.by_actor.get(&u.actor) {
                    seen ^= ix.touch();
                }
                if let Some(ix) = t.by_type.get(&u.event_type) {
                    seen ^= ix.touch();
                }
            }
        }
        std::hint::black_box(seen);
    }

    fn index_pending(&mut self) {
        let mut pending = std::mem::take(&mut self.pending);
        self.warm_indexes(&pending);
        // One pass per index: each is a short loop whose cache misses overlap.
        let tenants = &mut self.tenants;
        each_pending(tenants, &pending, |t, u| {
            t.by_time.insert(u.key, u.seq, &t.events)
        });
        each_pending(tenants, &pending, |t, u| {
            t.by_type
                .entry(u.event_type)
                .or_default()
                .insert(u.key, u.seq, &t.events)
        });
        each_pending(tenants, &pending, |t, u| {
            t.by_actor
                .entry(u.actor)
                .or_default()
                .insert(u.key, u.seq, &t.events)
        });
        each_pending(tenants, &pending, |t, u| {
            if let Some(session) = u.session {
                t.by_session
                    .entry(session)
                    .or_default()
                    .insert(u.key, u.seq, &t.events);
            }
        });
        pending.clear();
        self.pending = pending;
    }

    fn apply_entries(
        &mut self,
        seg: u32,
        body_off: u64,
        body: &[u8],
        headers: &[(usize, codec::EventHeader)],
    ) -> Result<(), StoreError> {
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
                CHECKPOINT => self.apply_checkpoint(seg, at, bytes)?,
                KEY => self.signing_keys.push(
                    std::str::from_utf8(bytes)
                        .map_err(|_| corrupt("a signing key is not UTF-8".into()))?
                        .to_string(),
                ),
                k => return Err(corrupt(format!("unknown log entry kind {k}"))),
            }
        }
        Ok(())
    }

    fn apply_symbol(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        let mut r = Reader::new(bytes);
        let id = r.varint_u32()?;
        let text = CompactString::from(
            std::str::from_utf8(r.rest()).map_err(|_| corrupt("a symbol is not UTF-8".into()))?,
        );
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
        let t = tenant_entry(&mut self.tenants, &mut self.tenant_syms, h.tenant);
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
            key,
            loc: ((seg as u64) << 40) | at,
            len: len as u32,
            event_type: h.event_type,
            actor: h.actor,
            session: h.session,
        });
        self.pending.push(Unindexed {
            tenant: h.tenant,
            key,
            seq: h.seq,
            event_type: h.event_type,
            actor: h.actor,
            session: (h.flags & F_SESSION != 0).then_some(h.session),
        });
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
        self.ids.pending.push((h.event_id, t.number, h.seq));
        Ok(())
    }

    /// Applies a checkpoint entry (its contents start at `at` in segment `seg`).
    fn apply_checkpoint(&mut self, seg: u32, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let (tenant, cp) = decode_checkpoint(bytes)?;
        let size = cp.size;
        self.sym(tenant)?;
        let t = self.tenant_mut(tenant);
        if size > t.size() {
            return Err(corrupt(format!(
                "checkpoint of size {size} precedes the events it covers"
            )));
        }
        // The writer stores checkpoints in growing sizes, so this is a push; anything else
        // keeps the list sorted and the first checkpoint stored for a size.
        let i = t.checkpoints.partition_point(|c| c.size < size);
        if t.checkpoints.get(i).is_none_or(|c| c.size != size) {
            t.checkpoints.insert(
                i,
                CheckpointAt {
                    size,
                    loc: ((seg as u64) << 40) | at,
                    len: bytes.len() as u32,
                },
            );
        }
        if t.latest_checkpoint.as_ref().is_none_or(|c| size >= c.size) {
            t.latest_checkpoint = Some(cp);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn id(n: u8) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[0] = n;
        id[15] = n % 3; // few shards, so ids share them
        id
    }

    proptest! {
        /// The id map against a std map: re-inserts win, ids whose fingerprints collide (with
        /// all 64 bits, and with only two kept) and locations that do not pack go to the
        /// overflow map and back, the pending ids of a block land like direct inserts, and an
        /// id never inserted is not found even where its fingerprint is.
        #[test]
        fn id_map_matches_a_hashmap(
            ops in proptest::collection::vec((0u8..40, any::<bool>(), any::<bool>(), 0u32..5, any::<bool>()), 0..300),
            narrow in any::<bool>(),
        ) {
            let mut ours = IdMap::default();
            if narrow {
                ours.mask = 3;
            }
            let mut reference = std::collections::HashMap::new();
            // What the log holds: each location one id, forever.
            let mut log = std::collections::HashMap::new();
            for (i, (n, big_number, big_seq, number, via_pending)) in ops.into_iter().enumerate() {
                let number = if big_number { (1 << 24) - 2 + number } else { number };
                let seq = if big_seq { (1 << 40) - 3 + i as u64 } else { i as u64 };
                log.insert((number, seq), id(n));
                let id_at = |n: u32, s: u64| log.get(&(n, s)).copied();
                if via_pending {
                    ours.pending.push((id(n), number, seq));
                } else {
                    ours.insert_pending(id_at);
                    ours.insert(&id(n), number, seq, &id_at);
                }
                reference.insert(id(n), (number, seq));
            }
            let id_at = |n: u32, s: u64| log.get(&(n, s)).copied();
            ours.insert_pending(id_at);
            // Warming (the commit thread's first pass) only reads: every answer stays the same.
            let all: Vec<[u8; 16]> = (0..=u8::MAX).map(id).collect();
            ours.warm(all.iter());
            for n in 0..=u8::MAX {
                prop_assert_eq!(ours.get(&id(n), id_at), reference.get(&id(n)).copied(), "id {}", n);
            }
        }
    }
}
