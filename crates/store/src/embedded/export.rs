//! Exports of the embedded store: every event matching a listing's filters, from one snapshot,
//! a batch at a time.
//!
//! **Snapshot.** [`Export::start`] records, under one read lock of [`Mem`], the size of every
//! tenant in scope (taken after the read waited for memory to hold every answered block, as all
//! reads do). An event is in the export only if its tenant was in scope then and its `seq` is
//! below that size. Memory only ever changes by whole blocks, each applied under the write
//! lock, and a request is never split across blocks (the commit thread puts whole requests in
//! a group, one group is one block), so a request's events, in one tenant or several, are all
//! below their tenants' sizes or all above: the snapshot never holds half a request. Events
//! appended later get higher seqs and are skipped, wherever their timestamps put them in the
//! indexes.
//!
//! **Walk.** Each [`Export::page`] takes the read lock afresh for one batch, so the apply
//! thread is never held back longer than one batch takes to read. A batch ends at the batch
//! size or once its events reach [`EXPORT_BATCH_BYTES`], whichever comes first. In log order it
//! reads seqs onwards from where the last page stopped; with a time filter it first finds the
//! span of seqs that can match (the least and greatest seq in the tenant's time index between
//! `since` and `until`, reading index entries only, a page of [`SPAN_BUDGET`] at a time, each
//! resuming after the last key seen) and then walks only that span, so an evidence bundle of
//! a late hour does not examine the tenant's whole history first. Otherwise it re-opens the ranges a listing would
//! ([`super::read`]: the most selective index, merged across tenants and types) strictly after
//! the last key it examined, like a listing's cursor (keys are unique and never change, so no
//! event is read twice or skipped). A tenant whose ranges ran out is not opened again. Type,
//! actor, session and time are checked in memory before an entry is read from the log; every
//! event read is then checked against all filters, as in a listing.
//!
//! A page stops early after examining [`SCAN_BUDGET`] index entries or reading
//! [`READ_SLACK`] events more than a batch without filling it (a `q` that matches little), so
//! that no lock is held long; the caller then simply asks for the next page.

use super::memory::{meta_at, Mem, SortKey, TenantMem};
use super::read::{self, EntryReader, PreFilter};
use crate::EXPORT_BATCH_BYTES;
use crate::{export_event_bytes, Cursor, EventQuery, ExportRequest, Order, StoreError};
use std::collections::BinaryHeap;
use std::ops::Bound;
use trailkeep_core::{StoredEvent, Uuid};

/// Most index entries one page examines.
const SCAN_BUDGET: usize = 65_536;

/// Most events one page reads from the log beyond its batch size without filling the batch.
const READ_SLACK: usize = 2_048;

/// Most time index entries one page examines while finding a log-order export's span (values
/// only, 8 bytes each, read in order: about a millisecond).
const SPAN_BUDGET: usize = 1 << 20;

/// What is left to read.
enum Walk {
    /// Log order with a time filter, before the walk: finding the least (`lo`) and greatest
    /// (`hi` − 1) seq below `end` among the tenant's time index entries in the filter's range,
    /// those after `after` still to examine. Then [`Walk::Log`] over `lo..hi`.
    Span {
        tenant: u32,
        after: Option<SortKey>,
        lo: u64,
        hi: u64,
        end: u64,
    },
    /// One tenant's seqs `next..end`.
    Log {
        tenant: u32,
        next: u64,
        end: u64,
    },
    /// `(timestamp, event_id)` order: keys after `after` (in the query's order) of the tenants
    /// whose ranges have not run out, each with its size at the snapshot.
    Keys {
        after: Option<SortKey>,
        tenants: Vec<(u32, u64)>,
    },
    Done,
}

/// One export in progress: its filters, the snapshot, and where it is.
pub(crate) struct Export {
    q: EventQuery,
    batch: usize,
    walk: Walk,
    /// Read-ahead and decompression buffers, kept from page to page.
    reader: EntryReader,
    /// Seqs examined in log order (their metadata checked) since [`Self::take_examined`].
    examined: u64,
}

impl Export {
    /// Takes the snapshot (see the module doc). `batch` is the checked batch size.
    pub fn start(mem: &Mem, req: ExportRequest, batch: usize) -> Result<Export, StoreError> {
        let mut q = req.query.clone();
        q.cursor = None;
        q.limit = batch;
        let mut walk = match q.tenant_id.as_deref() {
            Some(name) => {
                let found = mem.tenant(name);
                let size = found.map_or(0, |(_, t)| t.size());
                req.check_tree_size(size)?;
                let end = req.tree_size.unwrap_or(size);
                let timed = q.since.is_some() || q.until.is_some();
                match found {
                    None => Walk::Done,
                    Some((sym, _)) if req.log_order && timed => Walk::Span {
                        tenant: sym,
                        after: None,
                        lo: u64::MAX,
                        hi: 0,
                        end,
                    },
                    Some((sym, _)) if req.log_order => Walk::Log {
                        tenant: sym,
                        next: 0,
                        end,
                    },
                    Some((sym, _)) => Walk::Keys {
                        after: None,
                        tenants: vec![(sym, end)],
                    },
                }
            }
            None => Walk::Keys {
                after: None,
                tenants: mem
                    .tenants
                    .iter()
                    .filter(|(_, t)| t.size() > 0)
                    .map(|(sym, t)| (*sym, t.size()))
                    .collect(),
            },
        };
        if let Walk::Keys { tenants, .. } = &mut walk {
            tenants.sort_unstable();
        }
        Ok(Export {
            q,
            batch,
            walk,
            reader: EntryReader::windowed(),
            examined: 0,
        })
    }

    /// Seqs examined in log order since the last call (see
    /// [`super::EmbeddedStore::export_log_seqs_examined`]).
    pub fn take_examined(&mut self) -> u64 {
        std::mem::take(&mut self.examined)
    }

    /// Whether every event has been read.
    pub fn is_done(&self) -> bool {
        matches!(self.walk, Walk::Done)
    }

    /// The next events, at most a batch: empty when the page ran out of budget first (or the
    /// export is done, see [`Self::is_done`]).
    pub fn page(&mut self, mem: &Mem) -> Result<Vec<StoredEvent>, StoreError> {
        let page = self.read_page(mem);
        // The window must not outlive the read lock.
        self.reader.forget();
        page
    }

    fn read_page(&mut self, mem: &Mem) -> Result<Vec<StoredEvent>, StoreError> {
        let mut out = Vec::with_capacity(self.batch.min(4096));
        // Bytes of `out`, as `EXPORT_BATCH_BYTES` counts them.
        let mut bytes = 0;
        let reader = &mut self.reader;
        match &mut self.walk {
            Walk::Done => {}
            Walk::Span {
                tenant,
                after,
                lo,
                hi,
                end,
            } => {
                let (sym, end) = (*tenant, *end);
                let t = tenant_mem(mem, sym)?;
                let (since, until) = read::bounds(&self.q);
                let from = match after {
                    Some(k) => Bound::Excluded(*k),
                    None => since,
                };
                if !read::valid(&from, &until) {
                    self.walk = Walk::Done;
                    return Ok(out);
                }
                let mut range = t.by_time.range(from.as_ref(), until.as_ref(), &t.events);
                let mut scanned = 0;
                let mut last = None;
                while scanned < SPAN_BUDGET {
                    let Some(seq) = range.next_value() else {
                        // Every entry in the range examined: walk the span, if any.
                        self.walk = if *lo < *hi {
                            Walk::Log {
                                tenant: sym,
                                next: *lo,
                                end: *hi,
                            }
                        } else {
                            Walk::Done
                        };
                        return Ok(out);
                    };
                    scanned += 1;
                    last = Some(seq);
                    if seq < end {
                        *lo = (*lo).min(seq);
                        *hi = (*hi).max(seq + 1);
                    }
                }
                // Out of budget: the next page goes on after the last key examined.
                if let Some(seq) = last {
                    let m = meta_at(&t.events, seq).ok_or_else(|| {
                        StoreError::Corrupt(format!("no event {seq} in tenant symbol {sym}"))
                    })?;
                    *after = Some(m.key);
                }
            }
            Walk::Log { tenant, next, end } => {
                let (sym, end) = (*tenant, *end);
                let t = tenant_mem(mem, sym)?;
                let pre = PreFilter::new(mem, &self.q)?;
                let (since, until) = time_range(&self.q);
                let (mut examined, mut read) = (0, 0);
                while *next < end && out.len() < self.batch && bytes < EXPORT_BATCH_BYTES {
                    if examined == SCAN_BUDGET || read == self.batch + READ_SLACK {
                        self.examined += examined as u64;
                        return Ok(out);
                    }
                    let seq = *next;
                    *next += 1;
                    examined += 1;
                    let m = meta_at(&t.events, seq).ok_or_else(|| {
                        StoreError::Corrupt(format!("no event {seq} in tenant symbol {sym}"))
                    })?;
                    if m.key.ts < since || m.key.ts >= until || !pre.passes(mem, m)? {
                        continue;
                    }
                    read += 1;
                    let e = reader.load(mem, sym, t, seq)?;
                    if self.q.matches(&e) {
                        bytes += export_event_bytes(&e);
                        out.push(e);
                    }
                }
                self.examined += examined as u64;
                if *next >= end {
                    self.walk = Walk::Done;
                }
            }
            Walk::Keys { after, tenants } => {
                let mut q = self.q.clone();
                q.cursor = after.map(|k| Cursor {
                    order: q.order,
                    ts_nanos: k.ts,
                    event_id: Uuid::from_bytes(k.id),
                });
                let (lo, hi) = read::bounds(&q);
                if !read::valid(&lo, &hi) {
                    self.walk = Walk::Done;
                    return Ok(out);
                }
                let mut scope = Vec::with_capacity(tenants.len());
                for (sym, _) in tenants.iter() {
                    scope.push((*sym, tenant_mem(mem, *sym)?));
                }
                let mut sources = read::open_sources(mem, &q, scope, lo, hi)?;
                let mut merge = Merge::new(&sources, q.order);
                let pre = PreFilter::new(mem, &q)?;
                let size_of = |sym: u32| {
                    tenants
                        .binary_search_by_key(&sym, |(s, _)| *s)
                        .map_or(0, |i| tenants[i].1)
                };
                let (mut examined, mut read) = (0, 0);
                let mut exhausted = false;
                while out.len() < self.batch && bytes < EXPORT_BATCH_BYTES {
                    if examined == SCAN_BUDGET || read == self.batch + READ_SLACK {
                        break;
                    }
                    let Some((b, key, seq)) = merge.next(&mut sources) else {
                        exhausted = true;
                        break;
                    };
                    examined += 1;
                    *after = Some(key);
                    let (sym, t) = (sources[b].tenant, sources[b].t);
                    if seq >= size_of(sym) {
                        continue; // appended after the snapshot
                    }
                    let m = meta_at(&t.events, seq).ok_or_else(|| {
                        StoreError::Corrupt(format!("no event {seq} in tenant symbol {sym}"))
                    })?;
                    if !pre.passes(mem, m)? {
                        continue;
                    }
                    read += 1;
                    let e = reader.load(mem, sym, t, seq)?;
                    if q.matches(&e) {
                        bytes += export_event_bytes(&e);
                        out.push(e);
                    }
                }
                if exhausted {
                    // Every range ran out.
                    self.walk = Walk::Done;
                } else {
                    // Tenants whose ranges all ran out have nothing left in the snapshot.
                    let mut live: Vec<u32> = sources
                        .iter()
                        .filter(|s| s.head.is_some())
                        .map(|s| s.tenant)
                        .collect();
                    live.sort_unstable();
                    tenants.retain(|(sym, _)| live.binary_search(sym).is_ok());
                    if tenants.is_empty() {
                        self.walk = Walk::Done;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The tenant with symbol `sym` (in the snapshot, so it exists: tenants are never removed).
fn tenant_mem(mem: &Mem, sym: u32) -> Result<&TenantMem, StoreError> {
    mem.tenants
        .get(&sym)
        .ok_or_else(|| StoreError::Corrupt(format!("tenant symbol {sym} has no log")))
}

/// A query's time filter as `since..until` in nanoseconds.
fn time_range(q: &EventQuery) -> (i64, i64) {
    (
        q.since.map_or(i64::MIN, |t| t.nanos),
        q.until.map_or(i64::MAX, |t| t.nanos),
    )
}

/// The merge of an export's ranges (one per tenant, or per tenant and type: hundreds with
/// every tenant in scope, where a listing's linear scan for the next head would cost a
/// comparison per range per event): a heap of their heads.
struct Merge {
    heap: BinaryHeap<Head>,
    asc: bool,
}

/// A range's next entry in the heap; the greatest is the next in the export's order.
#[derive(PartialEq, Eq)]
struct Head {
    key: SortKey,
    source: usize,
    asc: bool,
}

impl Ord for Head {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        let by_key = self.key.cmp(&o.key).then(o.source.cmp(&self.source));
        if self.asc {
            by_key.reverse()
        } else {
            by_key
        }
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}

impl Merge {
    fn new(sources: &[read::Source<'_>], order: Order) -> Merge {
        let asc = order == Order::Asc;
        let heap = sources
            .iter()
            .enumerate()
            .filter_map(|(source, s)| s.head.map(|(key, _)| Head { key, source, asc }))
            .collect();
        Merge { heap, asc }
    }

    /// The next entry in order: its range, key and seq (the range is advanced past it).
    fn next(&mut self, sources: &mut [read::Source<'_>]) -> Option<(usize, SortKey, u64)> {
        let top = self.heap.pop()?;
        let s = sources.get_mut(top.source)?;
        let (key, seq) = s.head?;
        s.advance();
        if let Some((next, _)) = s.head {
            self.heap.push(Head {
                key: next,
                source: top.source,
                asc: self.asc,
            });
        }
        Some((top.source, key, seq))
    }
}
