//! Reads of the embedded store: point lookups, filtered listings, log reads, stats, trees.
//!
//! A listing picks the most selective index for its filters (session, then actor, then type,
//! then time), opens one range per (tenant, index) — a `billing.*` filter opens one per
//! matching type — and merges them by `(timestamp, event_id)`. Every candidate is then read
//! from the log and checked against all filters, so an index only narrows, never decides.

use super::chunked::TreeHashes;
use super::codec::{self, F_PURGED, F_TS_ASSIGNED};
use super::compress;
use super::memory::{
    day_of, decode_checkpoint, meta_at, Index, Mem, Meta, SortKey, TenantMem, DAY_NANOS,
};
use crate::{EventPage, EventQuery, Order, Stats, StatsQuery, StoreError};
use std::ops::Bound;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};
use trailkeep_tlog::tree::{
    prove_consistency, prove_inclusion, stored_hash_index, tree_hash, HashReader,
};
use trailkeep_tlog::{Hash, TlogError};

/// Reads and decodes event `seq` of the tenant with symbol `tenant`.
pub(crate) fn load(mem: &Mem, tenant: u32, seq: u64) -> Result<StoredEvent, StoreError> {
    let t = mem
        .tenants
        .get(&tenant)
        .ok_or_else(|| StoreError::Corrupt(format!("tenant symbol {tenant} has no log")))?;
    load_from(mem, tenant, t, seq)
}

/// The metadata of event `seq` of tenant `t` (symbol `tenant`).
fn meta(t: &TenantMem, tenant: u32, seq: u64) -> Result<&Meta, StoreError> {
    meta_at(&t.events, seq)
        .ok_or_else(|| StoreError::Corrupt(format!("no event {seq} in tenant symbol {tenant}")))
}

/// [`load`] for a tenant already looked up.
pub(crate) fn load_from(
    mem: &Mem,
    tenant: u32,
    t: &TenantMem,
    seq: u64,
) -> Result<StoredEvent, StoreError> {
    EntryReader::exact().load(mem, tenant, t, seq)
}

/// Largest read-ahead window of an [`EntryReader`].
const WINDOW_MAX: usize = 64 * 1024;

/// Reads events' entries from the log for a walk over many of them (an export page).
///
/// Entries that follow each other in a walk are often near each other in the log (an export in
/// log order; `(timestamp, event_id)` order, which is roughly arrival order), so one `pread` of
/// a window around an entry serves the next ones from memory, forwards or backwards as the
/// walk goes. The window adapts: it doubles (up to [`WINDOW_MAX`]) while windows serve many
/// entries, and shrinks to the entry alone while they serve few (a filter that picks scattered
/// events). The buffers are reused from event to event. A reader must not outlive the read
/// lock it was used under (bytes past the entries in memory may still be being written):
/// [`EntryReader::forget`] drops the window.
pub(crate) struct EntryReader {
    window: Vec<u8>,
    /// Where `window` starts: segment and offset (segment 0: no window).
    seg: u32,
    start: u64,
    /// The next window's size (0: each entry alone).
    size: usize,
    /// The largest window (0: an exact reader).
    max: usize,
    /// Entries read alone in a row (a windowed reader tries a window again after a few).
    alone: usize,
    /// Entries the current window served.
    hits: usize,
    /// Decompressed body.
    body: Vec<u8>,
}

impl EntryReader {
    /// A reader that reads each entry on its own (a page of a listing, a single event).
    pub fn exact() -> Self {
        EntryReader {
            window: Vec::new(),
            seg: 0,
            start: 0,
            size: 0,
            max: 0,
            alone: 0,
            hits: 0,
            body: Vec::new(),
        }
    }

    /// A reader with read-ahead windows.
    pub fn windowed() -> Self {
        EntryReader {
            size: 16 * 1024,
            max: WINDOW_MAX,
            ..Self::exact()
        }
    }

    /// Drops the window (before the read lock it was read under is released).
    pub fn forget(&mut self) {
        self.seg = 0;
        self.window.clear();
    }

    /// Reads and decodes event `seq` of tenant `t` (symbol `tenant`), checked against its leaf.
    pub fn load(
        &mut self,
        mem: &Mem,
        tenant: u32,
        t: &TenantMem,
        seq: u64,
    ) -> Result<StoredEvent, StoreError> {
        mem.check(tenant)?;
        let m = meta(t, tenant, seq)?;
        self.decode_entry(mem, tenant, t, seq, m).map_err(|e| match e {
            // Name the event: the operator restores it, an auditor reports it.
            StoreError::Corrupt(why) if !why.starts_with("event ") => StoreError::Corrupt(format!(
                "event {} ({}/{seq}) cannot be read back from the log ({why}): the log was altered or damaged on disk; restore the data directory from a backup",
                Uuid::from_bytes(m.key.id),
                mem.sym(tenant).unwrap_or("?"),
            )),
            other => other,
        })
    }

    /// Where entry `m` is in the window, reading a new window if it is not in this one.
    fn locate(&mut self, mem: &Mem, m: &Meta) -> Result<std::ops::Range<usize>, StoreError> {
        let (seg, off, len) = (m.segment(), m.offset(), m.len as usize);
        let end = off + len as u64;
        if seg == self.seg && off >= self.start && end <= self.start + self.window.len() as u64 {
            self.hits += 1;
            let from = (off - self.start) as usize;
            return Ok(from..from + len);
        }
        // A miss: size the next window by how well this one did.
        if self.seg != 0 && self.max > 0 {
            if self.size == 0 {
                self.alone += 1;
                if self.alone == 32 {
                    self.alone = 0;
                    self.size = 2048; // try a window again: the walk may have reached denser parts
                }
            } else if self.hits >= 16 {
                self.size = (self.size * 2).min(self.max);
            } else if self.hits <= 2 {
                self.size /= 4;
                if self.size < 2048 {
                    self.size = 0;
                }
            }
        }
        let want = self.size.max(len);
        // Walking backwards (the entry is before the window): the window ends at the entry.
        let backwards = seg == self.seg && off < self.start;
        let start = if backwards {
            end.saturating_sub(want as u64)
        } else {
            off
        };
        let need = (end - start) as usize;
        mem.segments
            .read_window(seg, start, want, need, &mut self.window)?;
        self.seg = seg;
        self.start = start;
        self.hits = 1;
        let from = (off - start) as usize;
        Ok(from..from + len)
    }

    /// Reads and decodes the entry of event `seq` (metadata `m`) and checks it against its
    /// leaf.
    fn decode_entry(
        &mut self,
        mem: &Mem,
        tenant: u32,
        t: &TenantMem,
        seq: u64,
        m: &Meta,
    ) -> Result<StoredEvent, StoreError> {
        let at = self.locate(mem, m)?;
        let bytes = self
            .window
            .get(at)
            .ok_or_else(|| StoreError::Corrupt("entry outside its read window".into()))?;
        let e = decode_bytes(mem, tenant, t, seq, bytes, &mut self.body)?;
        Ok(e)
    }
}

/// Decodes the entry `bytes` of event `seq` and checks it against its leaf; `body` is scratch
/// space for the decompressed body.
fn decode_bytes(
    mem: &Mem,
    tenant: u32,
    t: &TenantMem,
    seq: u64,
    bytes: &[u8],
    body: &mut Vec<u8>,
) -> Result<StoredEvent, StoreError> {
    let mut r = codec::Reader::new(bytes);
    let h = codec::read_event_header(&mut r)?;
    if h.seq != seq || h.tenant != tenant {
        return Err(StoreError::Corrupt(format!(
            "the log entry for {tenant}/{seq} holds {}/{}",
            h.tenant, h.seq
        )));
    }
    let stored_body = r.rest();
    let body_bytes = if h.dict == 0 {
        stored_body
    } else {
        compress::decompress_into(mem.dict(h.dict)?, stored_body, body)?;
        &body[..]
    };
    let body = codec::decode_body(h.flags, body_bytes)?;
    let purged = h.flags & F_PURGED != 0;
    let e = StoredEvent {
        tenant_id: mem.sym(tenant)?.to_string(),
        seq,
        event_id: Uuid::from_bytes(h.event_id),
        event_type: mem.sym(h.event_type)?.to_string(),
        actor: mem.sym(h.actor)?.to_string(),
        timestamp: codec::timestamp(&h),
        timestamp_assigned: h.flags & F_TS_ASSIGNED != 0,
        received_at: Timestamp::from_nanos(h.received, 6),
        source_ip: body.source_ip,
        impersonation_session: if h.session != 0 {
            Some(mem.sym(h.session)?.to_string())
        } else {
            None
        },
        approval_id: body.approval_id,
        payload: (!purged).then_some(body.payload),
        payload_salt: (!purged).then_some(h.salt_or_commitment),
        payload_commitment: purged.then_some(h.salt_or_commitment),
        leaf_hash: h.leaf_hash,
    };
    // End to end: what is served must still be the leaf the tree was built from (checked
    // against the block CRC at open). An entry altered on disk since is refused, not served.
    let leaf = trailkeep_core::leaf::stored_event_leaf_hash(&e);
    let in_tree = t.tree.leaf(seq);
    if leaf.is_none() || in_tree != leaf {
        return Err(StoreError::Corrupt(format!(
            "event {} ({}/{seq}) no longer matches its Merkle leaf: the log was altered on disk; restore the data directory from a backup",
            e.event_id, e.tenant_id
        )));
    }
    Ok(e)
}

pub(crate) fn get_event(mem: &Mem, id: &Uuid) -> Result<Option<StoredEvent>, StoreError> {
    match mem.locate(id.as_bytes()) {
        Some((t, seq)) => load(mem, t, seq).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn read_log(
    mem: &Mem,
    tenant: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let Some((id, t)) = mem.tenant(tenant) else {
        return Ok(Vec::new());
    };
    let end = t.size().min(from.saturating_add(limit as u64));
    (from..end).map(|seq| load(mem, id, seq)).collect()
}

/// The tenants a read covers: one by name, or all.
fn in_scope<'m>(mem: &'m Mem, tenant: Option<&str>) -> Vec<(u32, &'m TenantMem)> {
    match tenant {
        Some(name) => mem.tenant(name).into_iter().collect(),
        None => mem.tenants.iter().map(|(id, t)| (*id, t)).collect(),
    }
}

type Entries<'m> = Box<dyn Iterator<Item = (SortKey, u64)> + 'm>;

/// One ordered range of one index.
pub(crate) struct Source<'m> {
    pub tenant: u32,
    pub t: &'m TenantMem,
    iter: Entries<'m>,
    pub head: Option<(SortKey, u64)>,
}

impl Source<'_> {
    pub fn advance(&mut self) {
        self.head = self.iter.next();
    }
}

/// The tighter of two lower bounds.
fn max_lo(a: Bound<SortKey>, b: Bound<SortKey>) -> Bound<SortKey> {
    use Bound::*;
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.max(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.max(y)),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i > e {
                Included(i)
            } else {
                Excluded(e)
            }
        }
    }
}

/// The tighter of two upper bounds.
fn min_hi(a: Bound<SortKey>, b: Bound<SortKey>) -> Bound<SortKey> {
    use Bound::*;
    match (a, b) {
        (Unbounded, x) | (x, Unbounded) => x,
        (Included(x), Included(y)) => Included(x.min(y)),
        (Excluded(x), Excluded(y)) => Excluded(x.min(y)),
        (Included(i), Excluded(e)) | (Excluded(e), Included(i)) => {
            if i < e {
                Included(i)
            } else {
                Excluded(e)
            }
        }
    }
}

/// Whether a range is non-empty enough for `BTreeMap::range` (which panics on start > end,
/// and on start == end with both bounds excluded).
pub(crate) fn valid(lo: &Bound<SortKey>, hi: &Bound<SortKey>) -> bool {
    use Bound::*;
    match (lo, hi) {
        (Unbounded, _) | (_, Unbounded) => true,
        (Included(a), Included(b)) => a <= b,
        (Included(a), Excluded(b)) | (Excluded(a), Included(b)) => a < b,
        (Excluded(a), Excluded(b)) => a < b,
    }
}

const MIN_ID: [u8; 16] = [0; 16];

/// The key range a query covers: since (inclusive), until (exclusive), and the cursor.
pub(crate) fn bounds(q: &EventQuery) -> (Bound<SortKey>, Bound<SortKey>) {
    let mut lo = match q.since {
        Some(s) => Bound::Included(SortKey {
            ts: s.nanos,
            id: MIN_ID,
        }),
        None => Bound::Unbounded,
    };
    let mut hi = match q.until {
        Some(u) => Bound::Excluded(SortKey {
            ts: u.nanos,
            id: MIN_ID,
        }),
        None => Bound::Unbounded,
    };
    if let Some(c) = &q.cursor {
        let k = SortKey {
            ts: c.ts_nanos,
            id: *c.event_id.as_bytes(),
        };
        match q.order {
            Order::Desc => hi = min_hi(hi, Bound::Excluded(k)),
            Order::Asc => lo = max_lo(lo, Bound::Excluded(k)),
        }
    }
    (lo, hi)
}

fn open<'m>(
    index: &'m Index,
    tenant: u32,
    t: &'m TenantMem,
    lo: Bound<SortKey>,
    hi: Bound<SortKey>,
    order: Order,
) -> Source<'m> {
    let range = index.range(lo.as_ref(), hi.as_ref(), &t.events);
    let iter: Entries<'m> = match order {
        Order::Asc => Box::new(range),
        Order::Desc => Box::new(range.rev()),
    };
    Source {
        tenant,
        t,
        iter,
        head: None,
    }
}

/// The index of one field value (an actor, a session), if the tenant has used it.
fn pick<'m>(mem: &Mem, by: &'m foldhash::HashMap<u32, Index>, name: &str) -> Option<&'m Index> {
    mem.sym_id(name).and_then(|s| by.get(&s))
}

/// The filters that memory alone can decide (type, actor, session), checked before an event is
/// read from the log. `q` and the exact checks still run on the decoded event.
pub(crate) struct PreFilter<'q> {
    types: Option<&'q crate::TypeFilter>,
    actor: Option<u32>,
    session: Option<u32>,
}

impl<'q> PreFilter<'q> {
    pub fn new(mem: &Mem, q: &'q EventQuery) -> Result<Self, StoreError> {
        // An actor or session no event has used has no symbol; no index opened for it either.
        Ok(PreFilter {
            types: q.event_type.as_ref(),
            actor: q.actor.as_deref().map(|a| mem.sym_id(a).unwrap_or(0)),
            session: q.session.as_deref().map(|s| mem.sym_id(s).unwrap_or(0)),
        })
    }

    pub fn passes(&self, mem: &Mem, m: &Meta) -> Result<bool, StoreError> {
        if self.actor.is_some_and(|a| a != m.actor) || self.session.is_some_and(|s| s != m.session)
        {
            return Ok(false);
        }
        match self.types {
            Some(f) => Ok(f.matches(mem.sym(m.event_type)?)),
            None => Ok(true),
        }
    }
}

/// The index ranges a listing reads, for the tenants `tenants`: the most selective index its
/// filters allow (session, then actor, then type, then time) within `lo..hi`, each already
/// advanced to its first entry.
pub(crate) fn open_sources<'m>(
    mem: &'m Mem,
    q: &EventQuery,
    tenants: impl IntoIterator<Item = (u32, &'m TenantMem)>,
    lo: Bound<SortKey>,
    hi: Bound<SortKey>,
) -> Result<Vec<Source<'m>>, StoreError> {
    let mut sources = Vec::new();
    for (tid, t) in tenants {
        if let Some(session) = &q.session {
            if let Some(i) = pick(mem, &t.by_session, session) {
                sources.push(open(i, tid, t, lo, hi, q.order));
            }
        } else if let Some(actor) = &q.actor {
            if let Some(i) = pick(mem, &t.by_actor, actor) {
                sources.push(open(i, tid, t, lo, hi, q.order));
            }
        } else if let Some(tf) = &q.event_type {
            for (ty, i) in &t.by_type {
                if tf.matches(mem.sym(*ty)?) {
                    sources.push(open(i, tid, t, lo, hi, q.order));
                }
            }
        } else {
            sources.push(open(&t.by_time, tid, t, lo, hi, q.order));
        }
    }
    for s in &mut sources {
        s.advance();
    }
    Ok(sources)
}

/// The next entry of the merge of `sources` in `order`: its source, key and seq (the source is
/// advanced past it).
pub(crate) fn next_entry(
    sources: &mut [Source<'_>],
    order: Order,
) -> Option<(usize, SortKey, u64)> {
    // Few sources: a linear scan for the next one beats a heap.
    let mut best: Option<(usize, SortKey, u64)> = None;
    for (i, s) in sources.iter().enumerate() {
        let Some((k, seq)) = s.head else { continue };
        let better = match (best, order) {
            (None, _) => true,
            (Some((_, b, _)), Order::Asc) => k < b,
            (Some((_, b, _)), Order::Desc) => k > b,
        };
        if better {
            best = Some((i, k, seq));
        }
    }
    let (b, _, _) = best?;
    sources[b].advance();
    best
}

pub(crate) fn query(mem: &Mem, q: &EventQuery) -> Result<EventPage, StoreError> {
    let limit = q.limit.max(1);
    let (lo, hi) = bounds(q);
    if !valid(&lo, &hi) {
        return Ok(EventPage::new(Vec::new(), false, q.order));
    }
    let mut sources = open_sources(mem, q, in_scope(mem, q.tenant_id.as_deref()), lo, hi)?;
    let pre = PreFilter::new(mem, q)?;
    let mut events = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    while let Some((b, _, seq)) = next_entry(&mut sources, q.order) {
        let (tenant, t) = (sources[b].tenant, sources[b].t);
        if !pre.passes(mem, meta(t, tenant, seq)?)? {
            continue;
        }
        let e = load_from(mem, tenant, t, seq)?;
        if !q.matches(&e) {
            continue;
        }
        if events.len() == limit {
            more = true;
            break;
        }
        events.push(e);
    }
    Ok(EventPage::new(events, more, q.order))
}

pub(crate) fn stats(mem: &Mem, q: &StatsQuery) -> Result<Stats, StoreError> {
    let since = q.since.map(|t| t.nanos).unwrap_or(i64::MIN);
    let until = q.until.map(|t| t.nanos).unwrap_or(i64::MAX);
    let mut out = Stats::default();
    if since >= until {
        return Ok(out);
    }
    // Whole days inside [since, until) come from the day counters; the partial days at either
    // end are counted from the time index over the exact range.
    let first_full = since.div_euclid(DAY_NANOS) + (since.rem_euclid(DAY_NANOS) != 0) as i64;
    let end_full = until.div_euclid(DAY_NANOS); // exclusive
    let add = |out: &mut Stats, ty: u32, day: i32, n: u64| -> Result<(), StoreError> {
        *out.counts_by_type
            .entry(mem.sym(ty)?.to_string())
            .or_default() += n;
        *out.counts_by_day
            .entry(Timestamp::day_string(day))
            .or_default() += n;
        out.total += n;
        Ok(())
    };
    let clamp = |d: i64| d.clamp(i32::MIN as i64, i32::MAX as i64) as i32;
    for (tid, t) in in_scope(mem, q.tenant_id.as_deref()) {
        if first_full < end_full {
            let lo = (clamp(first_full), 0u32);
            let hi = (clamp(end_full), 0u32);
            if lo < hi {
                for (&(day, ty), &n) in t.day_counts.range(lo..hi) {
                    add(&mut out, ty, day, n)?;
                }
            }
        }
        let mut partial = Vec::new();
        if first_full >= end_full {
            partial.push((since, until));
        } else {
            if since.rem_euclid(DAY_NANOS) != 0 {
                partial.push((since, first_full.saturating_mul(DAY_NANOS)));
            }
            if until.rem_euclid(DAY_NANOS) != 0 && until != i64::MAX {
                partial.push((end_full.saturating_mul(DAY_NANOS), until));
            }
        }
        for (a, b) in partial {
            let lo = Bound::Included(SortKey { ts: a, id: MIN_ID });
            let hi = if b == i64::MAX {
                Bound::Unbounded
            } else {
                Bound::Excluded(SortKey { ts: b, id: MIN_ID })
            };
            if !valid(&lo, &hi) {
                continue;
            }
            for (k, seq) in t.by_time.range(lo.as_ref(), hi.as_ref(), &t.events) {
                let m = meta(t, tid, seq)?;
                add(&mut out, m.event_type, day_of(k.ts), 1)?;
            }
        }
    }
    Ok(out)
}

fn tlog_err(e: TlogError) -> StoreError {
    match e {
        TlogError::Storage(inner) => StoreError::Corrupt(inner.to_string()),
        other => StoreError::Invalid(other.to_string()),
    }
}

/// A tenant's tree checked against `size` (an unknown tenant has the empty tree).
fn tree_at<'m>(mem: &'m Mem, tenant: &str, size: u64) -> Result<&'m TreeHashes, StoreError> {
    let tree = mem.tree(tenant);
    if size > tree.size() {
        return Err(StoreError::Invalid(format!(
            "tree size {size} is beyond the log of {tenant}, which has {} leaves",
            tree.size()
        )));
    }
    Ok(tree)
}

pub(crate) fn tree_size(mem: &Mem, tenant: &str) -> u64 {
    mem.tree(tenant).size()
}

pub(crate) fn root(mem: &Mem, tenant: &str, size: u64) -> Result<Hash, StoreError> {
    tree_hash(size, tree_at(mem, tenant, size)?).map_err(tlog_err)
}

pub(crate) fn inclusion(
    mem: &Mem,
    tenant: &str,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    prove_inclusion(size, index, tree_at(mem, tenant, size)?).map_err(tlog_err)
}

pub(crate) fn consistency(
    mem: &Mem,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, StoreError> {
    prove_consistency(from, to, tree_at(mem, tenant, to)?).map_err(tlog_err)
}

pub(crate) fn leaves(
    mem: &Mem,
    tenant: &str,
    start: u64,
    end: u64,
) -> Result<Vec<Hash>, StoreError> {
    let tree = tree_at(mem, tenant, end)?;
    if start > end {
        return Err(StoreError::Invalid(format!(
            "start {start} is after end {end}"
        )));
    }
    let idx: Vec<u64> = (start..end).map(|n| stored_hash_index(0, n)).collect();
    tree.read_hashes(&idx).map_err(tlog_err)
}

/// The oldest stored checkpoint of a tenant whose size is at least `size`, read back from the
/// log (memory keeps only where each one is; the newest is at hand).
pub(crate) fn checkpoint_covering(
    mem: &Mem,
    tenant: &str,
    size: u64,
) -> Result<Option<crate::SignedCheckpoint>, StoreError> {
    let Some((sym, t)) = mem.tenant(tenant) else {
        return Ok(None);
    };
    let i = t.checkpoints.partition_point(|c| c.size < size);
    let Some(at) = t.checkpoints.get(i) else {
        return Ok(None);
    };
    if let Some(latest) = t.latest_checkpoint.as_ref().filter(|c| c.size == at.size) {
        return Ok(Some(latest.clone()));
    }
    let bytes = mem
        .segments
        .read(at.segment(), at.offset(), at.len as usize)?;
    let (owner, cp) = decode_checkpoint(&bytes)?;
    if owner != sym || cp.size != at.size {
        return Err(StoreError::Corrupt(format!(
            "the checkpoint of size {} of {tenant} cannot be read back from the log (the entry there is another one): the log was altered on disk; restore the data directory from a backup",
            at.size
        )));
    }
    Ok(Some(cp))
}
