//! Group commit in three stages: the only writers of the embedded store.
//!
//! The **commit thread** takes every message waiting in its queue (up to a cap) and decides
//! each request's fate: new events get the next `seq` of their tenant, re-sent ids are
//! duplicates or conflicts. It encodes the accepted events, new symbols, dictionaries and
//! checkpoints into **one block** and hands the block to the **sync thread**, which writes
//! every block waiting for it (one `write` each), makes them all durable with one
//! `fdatasync` and answers their groups; the **apply thread** then applies them to memory in
//! order. Reads wait until memory holds every block answered before they began
//! ([`super::Visibility`]), so an answer never has to wait for memory, and a receipt is never
//! missing from a read. Each stage works on the next blocks while the one after it is busy:
//! the commit thread decides while the disk syncs, the disk syncs while memory is updated, so
//! the serial CPU work and the disk wait overlap instead of adding up, and a slow fsync makes
//! the next one cover more blocks.
//!
//! Blocks are written and applied in the order they were decided. The commit thread decides
//! against memory (everything applied) plus a [`Carry`] of what it handed over but the apply
//! thread has not applied yet: the next `seq` of each tenant, symbols defined in those blocks,
//! and the ids of their events (so a re-send is recognised while its original is still on
//! its way to the disk). A request that conflicts is answered with an error and contributes
//! nothing to the block; the others in its group are unaffected. A duplicate is answered only
//! after its original's block is durable, because answers go out in block order.
//!
//! If a write or fsync fails (a full disk), the sync thread cuts the log back to where it was
//! after the last successful fsync (removing a segment started since, truncating and fsyncing
//! the file) before it answers anything: every group of the failed fsync is answered 503 and
//! is not in the log, so a 503 always means "nothing was stored", also after a restart. The
//! groups decided after the failed ones counted on them (their seqs, symbols) and are refused
//! too, unwritten; the commit thread then waits until memory has every durable block, starts
//! deciding afresh from memory, and later writes are tried again: the store recovers by itself
//! once there is room. Only if the cut itself fails is the file's state unknown: then every
//! later write is refused, [`super::EmbeddedStore::health`] and `ready` say so, and a restart's
//! recovery settles it.

use super::codec::{self, EventHeader, F_APPROVAL, F_IP, F_SESSION, F_TS_ASSIGNED};
use super::memory::Mem;
use super::segment::{LogWriter, Saved};
use super::Shared;
use crate::dedupe::{Prior, RequestIds};
use crate::{PreparedEvent, Receipt, SignedCheckpoint, StoreError};
use foldhash::HashMap;
use foldhash::HashMapExt;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc, Weak};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use trailkeep_core::{NewEvent, StoredEvent, Uuid};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

/// Most blocks made durable by one `fdatasync`.
const MAX_BLOCKS_PER_SYNC: usize = 16;

/// One `POST /v1/events` for the commit thread: its prepared events, their encoded bodies,
/// and their repeats within the request (all found by the handler, off the serial path).
pub(crate) struct Request {
    pub events: Vec<PreparedEvent>,
    /// Dictionary the bodies are compressed with; 0 = stored as they are.
    pub dict: u32,
    /// Every event's body, back to back; `ends[i]` is where body `i` ends.
    pub bodies: Vec<u8>,
    pub ends: Vec<u64>,
    pub ids: RequestIds,
}

impl Request {
    fn body(&self, i: usize) -> &[u8] {
        let start = i.checked_sub(1).map_or(0, |j| self.ends[j]) as usize;
        &self.bodies[start..self.ends[i] as usize]
    }
}

/// The pieces of `buf` that end at `ends`.
pub(crate) fn slices<'a>(buf: &'a [u8], ends: &[u64]) -> Vec<&'a [u8]> {
    let mut start = 0;
    ends.iter()
        .map(|&end| {
            let b = &buf[start..end as usize];
            start = end as usize;
            b
        })
        .collect()
}

/// The commit's answer for one event of a request.
#[derive(Debug)]
pub(crate) enum Slot {
    /// Stored now with this `seq`.
    New(u64),
    /// A duplicate of event `.0` of the same request.
    SameAs(u32),
    /// A duplicate of an event stored earlier (or of an earlier request): its receipt.
    Prior(Receipt),
}

pub(crate) enum Msg {
    /// Shared with the submitting handler and held by the apply thread until the block is
    /// applied (`Batch::keep`); whichever lets go last frees the events.
    Append(Arc<Request>, Reply<Vec<Slot>>),
    Checkpoint(String, SignedCheckpoint, Reply<()>),
    /// Records the log's signing key (a C2SP vkey).
    Key(String, Reply<()>),
    /// A freshly trained compression dictionary to write and then use.
    Dict(Vec<u8>),
    Stop,
}

pub(crate) struct Handle {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    pub fn send(&self, m: Msg) -> Result<(), StoreError> {
        self.tx
            .send(m)
            .map_err(|_| StoreError::Unavailable("the commit thread stopped".into()))
    }

    pub fn sender(&self) -> mpsc::Sender<Msg> {
        self.tx.clone()
    }

    pub fn is_alive(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// Commits what is queued, then stops the commit, sync and apply threads.
    pub fn stop(mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub(crate) fn spawn(
    shared: Arc<Shared>,
    log: LogWriter,
    max_group: usize,
    apply_delay: std::time::Duration,
    mark: MarkWriter,
) -> Result<Handle, StoreError> {
    let (tx, rx) = mpsc::channel();
    // Blocks decided while the sync thread waits for the disk queue up and share its next
    // fsync; beyond this many, the commit thread waits, and its next group grows instead.
    let (batch_tx, batch_rx) = mpsc::sync_channel::<Batch>(MAX_BLOCKS_PER_SYNC);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    let (apply_tx, apply_rx) = mpsc::channel::<Durable>();
    let apply = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("trailkeep-apply".into())
            .spawn(move || {
                run_apply(&shared, apply_rx, free_tx, apply_delay);
                // Nothing applies blocks any more: reads stop waiting for them.
                shared.visible.give_up();
            })?
    };
    let (mark_stop, mark_rx) = mpsc::channel::<()>();
    let marker = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("trailkeep-mark".into())
            .spawn(move || run_mark(&shared, mark, mark_rx))?
    };
    let sync = {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("trailkeep-sync".into())
            .spawn(move || {
                run_sync(&shared, log, batch_rx, apply_tx);
                let _ = apply.join();
                // Memory has every block now: the last mark covers all of them.
                drop(mark_stop);
                let _ = marker.join();
            })?
    };
    let thread = std::thread::Builder::new()
        .name("trailkeep-commit".into())
        .spawn(move || {
            run(&shared, rx, batch_tx, free_rx, max_group);
            let _ = sync.join();
        })?;
    Ok(Handle {
        tx,
        thread: Some(thread),
    })
}

/// The commit thread: gathers groups, decides and encodes them, hands blocks on in order.
fn run(
    shared: &Shared,
    rx: mpsc::Receiver<Msg>,
    batch_tx: mpsc::SyncSender<Batch>,
    free_rx: mpsc::Receiver<Vec<u8>>,
    max_group: usize,
) {
    let mut carry = match shared.mem.read() {
        Ok(mem) => Carry::new(&mem),
        Err(_) => {
            shared.fail("the store's memory lock is poisoned; restart trailkeep".into());
            Carry::empty()
        }
    };
    let mut block_no = 0u64;
    let mut epoch = shared.write_epoch.load(Ordering::Acquire);
    loop {
        let mut group = Vec::new();
        let mut n = 0;
        let mut stop = false;
        match rx.recv() {
            Ok(Msg::Stop) | Err(_) => return,
            Ok(m) => {
                n += weight(&m);
                group.push(m);
            }
        }
        while n < max_group {
            match rx.try_recv() {
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Ok(m) => {
                    n += weight(&m);
                    group.push(m);
                }
                Err(_) => break,
            }
        }
        if shared.failed.load(Ordering::Acquire) {
            refuse(group, super::FAILED);
        } else {
            let now = shared.write_epoch.load(Ordering::Acquire);
            if now != epoch {
                // The log was cut back after a failed write: the blocks handed over since the
                // last good fsync are not in it. Once the apply thread is past all of them,
                // memory is exactly the log, and deciding starts afresh from it.
                shared.visible.wait_applied(block_no);
                carry = match shared.mem.read() {
                    Ok(mem) => Carry::new(&mem),
                    Err(_) => {
                        shared.fail("the store's memory lock is poisoned".into());
                        Carry::empty()
                    }
                };
                epoch = now;
            }
            carry.prune(shared.visible.applied.load(Ordering::Acquire));
            let block = free_rx
                .try_recv()
                .unwrap_or_else(|_| Vec::with_capacity(1 << 20));
            block_no += 1;
            let mut batch = decide_group(shared, &mut carry, block_no, block, group);
            batch.epoch = epoch;
            if let Err(mpsc::SendError(b)) = batch_tx.send(batch) {
                shared.fail("the log writer thread stopped; restart trailkeep".into());
                send_all(b.replies, b.outcomes, Some("the log writer stopped"));
            }
        }
        if stop {
            return;
        }
    }
}

fn weight(m: &Msg) -> usize {
    match m {
        Msg::Append(r, _) => r.events.len().max(1),
        _ => 1,
    }
}

fn refuse(group: Vec<Msg>, why: &str) {
    let (_, replies) = split(group);
    send_all(replies, Vec::new(), Some(why));
}

/// A decided group on its way to the disk.
struct Batch {
    number: u64,
    /// [`Shared::write_epoch`] when the block was decided: a block decided before the log was
    /// last cut back may count on blocks that are gone, and is refused.
    epoch: u64,
    block: Vec<u8>,
    /// The block's event entries, parsed already (so applying it needs no re-parse).
    headers: Vec<(usize, EventHeader)>,
    replies: Vec<AnyReply>,
    outcomes: Vec<Outcome>,
    stored: u64,
    new_dict: bool,
    /// The block's requests, held until the block is applied: a request the commit thread
    /// still remembers (see [`InFlight`]) is then either alive or applied.
    keep: Vec<Arc<Request>>,
}

/// The sync thread: writes every block waiting, makes them durable with one `fdatasync`, hands
/// them on, in order, to the apply thread, and answers their groups. While that one applies,
/// this one is already making the next blocks durable.
fn run_sync(
    shared: &Shared,
    mut log: LogWriter,
    rx: mpsc::Receiver<Batch>,
    apply_tx: mpsc::Sender<Durable>,
) {
    // Where the log stood after the last good fsync: what a failed write is cut back to.
    let mut saved = log.saved();
    while let Ok(first) = rx.recv() {
        let mut batches = vec![first];
        while batches.len() < MAX_BLOCKS_PER_SYNC {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        // Write them all, then one fsync for all.
        let epoch = shared.write_epoch.load(Ordering::Acquire);
        let written: Result<Vec<Option<(u32, u64)>>, &'static str> =
            if shared.failed.load(Ordering::Acquire) {
                Err(super::FAILED)
            } else {
                write_all(shared, &mut log, &mut saved, &batches, epoch)
            };
        for (i, mut batch) in batches.into_iter().enumerate() {
            let at = match &written {
                Ok(_) if batch.epoch != epoch => Err(STALE),
                Ok(locs) => Ok(locs.get(i).copied().flatten()),
                Err(why) => Err(*why),
            };
            let replies = std::mem::take(&mut batch.replies);
            let outcomes = std::mem::take(&mut batch.outcomes);
            let (number, stored) = (batch.number, batch.stored);
            // Durable: from here a read waits for this block to be in memory (see
            // `Visibility`), so an answer can go out before the apply thread takes it.
            if at.is_ok() {
                shared.visible.answered.store(number, Ordering::Release);
            }
            if apply_tx.send(Durable { batch, at }).is_err() {
                shared.fail("the apply thread stopped; restart trailkeep".into());
                shared.visible.give_up();
            }
            match at {
                Ok(_) => {
                    if stored > 0 {
                        metrics::histogram!("trailkeep_commit_group_events").record(stored as f64);
                        metrics::counter!("trailkeep_events_stored_total").increment(stored);
                    }
                    send_all(replies, outcomes, None);
                }
                Err(why) => send_all(replies, outcomes, Some(why)),
            }
        }
    }
}

/// Refusal of a block decided before the log was cut back.
const STALE: &str = "an earlier write in the same commit failed (is the disk full?); nothing of this request was stored";

/// Writes the blocks of `batches` decided in `epoch` (the others are refused: they were decided
/// before the log was last cut back) and fsyncs them once; their places in the log, in
/// `batches` order. If a write or the fsync fails, the log is cut back to `saved` (what was
/// durable before) before anything is answered; if even that fails, writes stop for good.
fn write_all(
    shared: &Shared,
    log: &mut LogWriter,
    saved: &mut Saved,
    batches: &[Batch],
    epoch: u64,
) -> Result<Vec<Option<(u32, u64)>>, &'static str> {
    let locs = batches
        .iter()
        .map(|b| {
            (b.epoch == epoch && !b.block.is_empty())
                .then(|| log.write(&b.block))
                .transpose()
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|locs| log.sync().map(|()| locs));
    match locs {
        Ok(locs) => {
            *saved = log.saved();
            if let Ok(mut d) = shared.durable.lock() {
                *d = log.pos();
            }
            Ok(locs)
        }
        Err(e) => {
            metrics::counter!("trailkeep_write_failures_total").increment(1);
            match log.cut_back(*saved) {
                Ok(()) => {
                    tracing::error!(error = %e, "a write to the log failed; cut the log back to its last durable length, answered the group with 503 (nothing stored), and will try later writes again");
                    shared.write_epoch.fetch_add(1, Ordering::AcqRel);
                    Err("the write could not be made durable (is the disk full?); nothing of this request was stored")
                }
                Err(cut) => {
                    tracing::error!(error = %e, cut_error = %cut, "a write to the log failed and the log could not be cut back to its last durable length; refusing writes until restart");
                    shared.fail(format!(
                        "a write to the log failed ({e}) and cutting it back failed too ({cut}); writes are refused: free space or fix the disk, then restart trailkeep (recovery settles the log's end)"
                    ));
                    Err("the write could not be made durable and the log's end is unknown until a restart; send the request again after the restart (events with an event_id are then stored once)")
                }
            }
        }
    }
}

/// What the mark thread needs: where to write, how often, and the log's id.
pub(crate) struct MarkWriter {
    pub dir: std::path::PathBuf,
    pub interval: std::time::Duration,
    pub log_id: u64,
    /// The position the mark on disk describes now.
    pub written: super::mark::Pos,
}

/// The mark thread: writes the high-water mark (see [`super::mark`]) when the durable log has
/// moved on, at most once per interval, and once more when the store stops.
fn run_mark(shared: &Shared, mut m: MarkWriter, stop: mpsc::Receiver<()>) {
    let mut warned = false;
    loop {
        let stopping = !matches!(
            stop.recv_timeout(m.interval),
            Err(mpsc::RecvTimeoutError::Timeout)
        );
        let pos = match shared.durable.lock() {
            Ok(p) => *p,
            Err(_) => return,
        };
        if pos != m.written || stopping {
            // Only a copy under the lock; the rest after it is let go.
            let states = match shared.mem.read() {
                Ok(mem) => super::mark::tenants(&mem),
                Err(_) => return,
            };
            let mark = states.map(|t| super::mark::Mark::from_parts(m.log_id, pos, t));
            match mark.and_then(|mk| Ok(super::mark::write(&m.dir, &mk)?)) {
                Ok(()) => {
                    m.written = pos;
                    warned = false;
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "cannot update the high-water mark; retrying");
                }
                Err(_) => {}
            }
        }
        if stopping {
            return;
        }
    }
}

/// A block after its fsync: where it is in the log (`None`: nothing to write), or why it
/// could not be made durable.
struct Durable {
    batch: Batch,
    at: Result<Option<(u32, u64)>, &'static str>,
}

/// The apply thread: applies durable blocks to memory in log order (their groups are answered
/// already, by the sync thread).
fn run_apply(
    shared: &Shared,
    rx: mpsc::Receiver<Durable>,
    free_tx: mpsc::Sender<Vec<u8>>,
    delay: std::time::Duration,
) {
    // Set when a durable block could not be applied: memory no longer follows the log.
    let mut broken = false;
    while let Ok(Durable { batch, at }) = rx.recv() {
        let Batch {
            number,
            mut block,
            headers,
            new_dict,
            keep,
            ..
        } = batch;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if let (Ok(Some((seg, off))), false) = (at, broken) {
            if let Err(e) = apply(shared, seg, off, &block, &headers, new_dict) {
                // The block is durable and was answered; a restart replays it. Until then
                // memory no longer follows the log: refuse writes, fail readiness, and stop
                // making reads wait for blocks that will not be applied.
                tracing::error!(error = %e, "a durable block could not be applied to memory; refusing writes until restart");
                shared.fail(format!("a durable block could not be applied to memory ({e}); writes are refused: restart trailkeep"));
                shared.visible.give_up();
                broken = true;
            }
        }
        shared.visible.set_applied(number);
        // Memory has the block's events now: the commit thread may forget its requests.
        drop(keep);
        block.clear();
        let _ = free_tx.send(block);
    }
}

/// Applies a durable block to memory (and publishes a new dictionary it carries).
fn apply(
    shared: &Shared,
    seg: u32,
    off: u64,
    block: &[u8],
    headers: &[(usize, EventHeader)],
    new_dict: bool,
) -> Result<(), StoreError> {
    let mut mem = shared
        .mem
        .write()
        .map_err(|_| StoreError::Unavailable("memory lock poisoned".into()))?;
    mem.apply_block_with(seg, off, block, headers)?;
    if new_dict {
        if let Ok(mut cur) = shared.dict.write() {
            *cur = mem.dicts.last().cloned();
        }
    }
    Ok(())
}

/// What the commit thread has handed on and the apply thread has not applied
/// yet, beyond what memory holds.
struct Carry {
    /// The next symbol number (memory's, plus those defined in blocks on their way).
    next_sym: u32,
    /// Symbols defined in blocks not applied yet, with the block defining each.
    syms: HashMap<trailkeep_core::CompactString, (u32, u64)>,
    /// The next `seq` of every tenant that has written since start, by tenant symbol.
    next_seq: HashMap<u32, u64>,
    /// The next dictionary number.
    next_dict: u32,
    /// Blocks handed on and not applied yet, oldest first.
    blocks: VecDeque<InFlight>,
}

/// One block's events and checkpoints, for decisions made before it is applied.
struct InFlight {
    number: u64,
    /// The requests in the block. Weak, so that the handler frees its events once its block
    /// is applied; a request that is gone was applied (the apply thread holds every request of
    /// a block, `Batch::keep`, until it has applied the block), so memory has its events.
    requests: Vec<Weak<Request>>,
    /// Accepted client ids → (request, event, seq).
    ids: HashMap<Uuid, (u32, u32, u64)>,
    /// Checkpoints written: (tenant, size).
    checkpoints: Vec<(String, u64)>,
}

impl InFlight {
    fn new(number: u64, events: usize) -> InFlight {
        InFlight {
            number,
            requests: Vec::new(),
            ids: HashMap::with_capacity(events),
            checkpoints: Vec::new(),
        }
    }
}

impl Carry {
    fn new(mem: &Mem) -> Carry {
        Carry {
            next_sym: mem.next_sym(),
            next_dict: mem.dicts.len() as u32 + 1,
            ..Carry::empty()
        }
    }

    fn empty() -> Carry {
        Carry {
            next_sym: 1,
            syms: HashMap::new(),
            next_seq: HashMap::new(),
            next_dict: 1,
            blocks: VecDeque::new(),
        }
    }

    /// Forgets what blocks up to `applied` brought: memory has it now.
    fn prune(&mut self, applied: u64) {
        while self.blocks.front().is_some_and(|b| b.number <= applied) {
            self.blocks.pop_front();
        }
        if !self.syms.is_empty() {
            self.syms.retain(|_, (_, b)| *b > applied);
        }
    }

    /// The symbol for `text`, writing its definition into the block when it is new.
    fn sym(&mut self, mem: &Mem, block_no: u64, block: &mut Vec<u8>, text: &str) -> u32 {
        if let Some(id) = mem.sym_id(text) {
            return id;
        }
        if let Some((id, _)) = self.syms.get(text) {
            return *id;
        }
        let id = self.next_sym;
        self.next_sym += 1;
        codec::put_symbol(block, id, text);
        self.syms.insert(text.into(), (id, block_no));
        id
    }

    /// The symbol of `text` if it has one yet.
    fn sym_id(&self, mem: &Mem, text: &str) -> Option<u32> {
        mem.sym_id(text)
            .or_else(|| self.syms.get(text).map(|(id, _)| *id))
    }

    fn next_seq(&self, mem: &Mem, tenant: &str) -> u64 {
        let Some(sym) = self.sym_id(mem, tenant) else {
            return 0;
        };
        match self.next_seq.get(&sym) {
            Some(s) => *s,
            None => mem.tenants.get(&sym).map(|t| t.size()).unwrap_or(0),
        }
    }

    /// An accepted copy of `id` in a block not applied yet (or in `cur`, the block being
    /// built), with its seq.
    fn earlier(&self, cur: &InFlight, id: &Uuid) -> Option<(Arc<Request>, usize, u64)> {
        for b in std::iter::once(cur).chain(self.blocks.iter().rev()) {
            if let Some(&(r, j, seq)) = b.ids.get(id) {
                // A request that is gone was let go by the apply thread, so its block is
                // applied and memory has the event.
                return b.requests[r as usize]
                    .upgrade()
                    .map(|req| (req, j as usize, seq));
            }
        }
        None
    }

    /// The newest checkpoint size of `tenant` written or on its way.
    fn latest_checkpoint(&self, mem: &Mem, cur: &InFlight, tenant: &str) -> Option<u64> {
        mem.tenant(tenant)
            .and_then(|(_, t)| t.latest_checkpoint.as_ref().map(|c| c.size))
            .into_iter()
            .chain(
                std::iter::once(cur)
                    .chain(self.blocks.iter())
                    .flat_map(|b| b.checkpoints.iter())
                    .filter(|(n, _)| n == tenant)
                    .map(|(_, s)| *s),
            )
            .max()
    }
}

enum Item {
    Append(Arc<Request>),
    Checkpoint(String, SignedCheckpoint),
    Key(String),
    Dict(Vec<u8>),
}

enum AnyReply {
    Append(Reply<Vec<Slot>>),
    Checkpoint(Reply<()>),
    None,
}

enum Outcome {
    Append(Result<Vec<Slot>, StoreError>),
    Checkpoint(Result<(), StoreError>),
    None,
}

/// Separates a group's work from its reply channels (same order, one reply slot per item).
fn split(group: Vec<Msg>) -> (Vec<Item>, Vec<AnyReply>) {
    let mut items = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    for m in group {
        match m {
            Msg::Append(e, r) => {
                items.push(Item::Append(e));
                replies.push(AnyReply::Append(r));
            }
            Msg::Checkpoint(t, cp, r) => {
                items.push(Item::Checkpoint(t, cp));
                replies.push(AnyReply::Checkpoint(r));
            }
            Msg::Key(k, r) => {
                items.push(Item::Key(k));
                replies.push(AnyReply::Checkpoint(r));
            }
            Msg::Dict(d) => {
                items.push(Item::Dict(d));
                replies.push(AnyReply::None);
            }
            // `Handle::stop` sends Stop last; run() returns before passing it on.
            Msg::Stop => {}
        }
    }
    (items, replies)
}

/// Decides a group and encodes its block. Memory is read one request at a time, so the apply
/// thread can apply an earlier block in between.
fn decide_group(
    shared: &Shared,
    carry: &mut Carry,
    number: u64,
    mut block: Vec<u8>,
    group: Vec<Msg>,
) -> Batch {
    block.clear();
    let mut headers = Vec::new();
    let (items, replies) = split(group);
    let mut outcomes = Vec::with_capacity(items.len());
    let mut stored = 0u64;
    let mut new_dict = false;
    let events = items
        .iter()
        .map(|i| match i {
            Item::Append(r) => r.events.len(),
            _ => 0,
        })
        .sum();
    let mut cur = InFlight::new(number, events);
    for item in &items {
        let Ok(mem) = shared.mem.read() else {
            let poisoned = || StoreError::Unavailable("the store's memory lock is poisoned".into());
            outcomes.push(match item {
                Item::Append(_) => Outcome::Append(Err(poisoned())),
                Item::Checkpoint(..) | Item::Key(_) => Outcome::Checkpoint(Err(poisoned())),
                Item::Dict(_) => Outcome::None,
            });
            continue;
        };
        match item {
            Item::Append(req) => {
                let out = append_request(&mem, carry, &mut cur, &mut block, &mut headers, req);
                if let Ok(slots) = &out {
                    stored += slots.iter().filter(|s| matches!(s, Slot::New(_))).count() as u64;
                }
                outcomes.push(Outcome::Append(out));
            }
            Item::Checkpoint(tenant, cp) => {
                let out = checkpoint(&mem, carry, &mut cur, &mut block, tenant, cp);
                outcomes.push(Outcome::Checkpoint(out));
            }
            Item::Key(vkey) => {
                codec::put_key(&mut block, vkey);
                outcomes.push(Outcome::Checkpoint(Ok(())));
            }
            Item::Dict(bytes) => {
                codec::put_dict(&mut block, carry.next_dict, bytes);
                carry.next_dict += 1;
                new_dict = true;
                outcomes.push(Outcome::None);
            }
        }
    }
    carry.blocks.push_back(cur);
    let keep = items
        .into_iter()
        .filter_map(|i| match i {
            Item::Append(r) => Some(r),
            _ => None,
        })
        .collect();
    Batch {
        number,
        epoch: 0,
        block,
        headers,
        replies,
        outcomes,
        stored,
        new_dict,
        keep,
    }
}

/// Answers every request; with `failed`, whatever was not already refused becomes a 503.
fn send_all(replies: Vec<AnyReply>, outcomes: Vec<Outcome>, failed: Option<&str>) {
    let mut outcomes = outcomes.into_iter();
    for r in replies {
        let out = outcomes.next().unwrap_or(Outcome::None);
        let unavailable = |why: &str| StoreError::Unavailable(why.into());
        match (r, out) {
            (AnyReply::Append(r), Outcome::Append(Err(e))) => {
                let _ = r.send(Err(e));
            }
            (AnyReply::Append(r), Outcome::Append(Ok(o))) => {
                let _ = r.send(match failed {
                    Some(why) => Err(unavailable(why)),
                    None => Ok(o),
                });
            }
            (AnyReply::Append(r), _) => {
                let _ = r.send(Err(unavailable(failed.unwrap_or("not committed"))));
            }
            (AnyReply::Checkpoint(r), Outcome::Checkpoint(out)) => {
                let _ = r.send(match (failed, out) {
                    (Some(why), _) => Err(unavailable(why)),
                    (None, out) => out,
                });
            }
            (AnyReply::Checkpoint(r), _) => {
                let _ = r.send(Err(unavailable(failed.unwrap_or("not committed"))));
            }
            (AnyReply::None, _) => {}
        }
    }
}

/// Decides one request and, unless it conflicts, encodes its new events into the block.
fn append_request(
    mem: &Mem,
    carry: &mut Carry,
    cur: &mut InFlight,
    block: &mut Vec<u8>,
    headers: &mut Vec<(usize, EventHeader)>,
    req: &Arc<Request>,
) -> Result<Vec<Slot>, StoreError> {
    let events = &req.events;
    let mut slots: Vec<Slot> = Vec::with_capacity(events.len());
    let mut new_idx = Vec::with_capacity(events.len());
    // Next seq per tenant as this request would leave it; kept only if the request is accepted.
    let mut next: HashMap<&str, u64> = HashMap::new();
    mem.warm_ids(
        events
            .iter()
            .filter(|pe| !pe.event.event_id_assigned)
            .map(|pe| pe.event.event_id.as_bytes()),
    );
    mem.warm_syms(events.iter().map(|pe| pe.event.actor.as_str()));
    for (i, pe) in events.iter().enumerate() {
        let e = &pe.event;
        let earlier = if e.event_id_assigned {
            None
        } else {
            carry.earlier(cur, &e.event_id)
        };
        let in_group = earlier.as_ref().and_then(|(r, j, seq)| {
            let x = r.events.get(*j)?;
            Some((
                &x.event,
                Receipt {
                    event_id: x.event.event_id,
                    tenant_id: x.event.tenant_id.clone(),
                    seq: *seq,
                    leaf_hash: x.leaf_hash,
                },
            ))
        });
        match req.ids.decide(i, e, in_group, || stored_event(mem, e))? {
            Prior::SameAs(j) => slots.push(Slot::SameAs(j as u32)),
            Prior::Earlier(rc) => slots.push(Slot::Prior(rc)),
            Prior::New => {
                let seq = match next.get_mut(e.tenant_id.as_str()) {
                    Some(s) => s,
                    None => next
                        .entry(e.tenant_id.as_str())
                        .or_insert(carry.next_seq(mem, &e.tenant_id)),
                };
                slots.push(Slot::New(*seq));
                *seq += 1;
                new_idx.push(i);
            }
        }
    }
    let r = cur.requests.len() as u32;
    cur.requests.push(Arc::downgrade(req));
    for (t, s) in next {
        let sym = carry.sym(mem, cur.number, block, t);
        carry.next_seq.insert(sym, s);
    }
    for &i in &new_idx {
        let pe = &events[i];
        let e = &pe.event;
        let Some(Slot::New(seq)) = slots.get(i) else {
            continue;
        };
        let seq = *seq;
        let mut flags = 0;
        if e.timestamp_assigned {
            flags |= F_TS_ASSIGNED;
        }
        if e.source_ip.is_some() {
            flags |= F_IP;
        }
        if e.approval_id.is_some() {
            flags |= F_APPROVAL;
        }
        let session = match &e.impersonation_session {
            Some(s) => {
                flags |= F_SESSION;
                carry.sym(mem, cur.number, block, s)
            }
            None => 0,
        };
        let h = EventHeader {
            tenant: carry.sym(mem, cur.number, block, &e.tenant_id),
            seq,
            flags,
            digits: e.timestamp.digits,
            ts: e.timestamp.nanos,
            received: pe.received_at.nanos,
            event_id: *e.event_id.as_bytes(),
            salt_or_commitment: pe.salt,
            leaf_hash: pe.leaf_hash,
            event_type: carry.sym(mem, cur.number, block, &e.event_type),
            actor: carry.sym(mem, cur.number, block, &e.actor),
            session,
            dict: req.dict,
        };
        let at = codec::put_event(block, &h, req.body(i));
        headers.push((at, h));
        if !e.event_id_assigned {
            cur.ids.insert(e.event_id, (r, i as u32, seq));
        }
    }
    Ok(slots)
}

/// The receipts of a request from the commit's answer (built on the handler's thread).
pub(crate) fn receipts(
    events: &[PreparedEvent],
    slots: Vec<Slot>,
) -> Result<crate::AppendOutcome, StoreError> {
    let mut receipts: Vec<Receipt> = Vec::with_capacity(slots.len());
    let mut accepted = 0;
    for (pe, slot) in events.iter().zip(slots) {
        let rc = match slot {
            Slot::New(seq) => {
                accepted += 1;
                let e = &pe.event;
                Receipt {
                    event_id: e.event_id,
                    tenant_id: e.tenant_id.clone(),
                    seq,
                    leaf_hash: pe.leaf_hash,
                }
            }
            Slot::SameAs(j) => receipts.get(j as usize).cloned().ok_or_else(|| {
                StoreError::Unavailable(format!("no receipt for event {j} of the request"))
            })?,
            Slot::Prior(rc) => rc,
        };
        receipts.push(rc);
    }
    if receipts.len() != events.len() {
        return Err(StoreError::Unavailable(
            "the commit answered for a different number of events".into(),
        ));
    }
    Ok(crate::AppendOutcome {
        accepted,
        duplicates: receipts.len() - accepted,
        receipts,
    })
}

/// The stored event with `e`'s id (server-assigned UUIDv7 ids are new by construction).
fn stored_event(mem: &Mem, e: &NewEvent) -> Result<Option<StoredEvent>, StoreError> {
    if e.event_id_assigned {
        return Ok(None);
    }
    match mem.locate(e.event_id.as_bytes()) {
        Some((tenant, seq)) => super::read::load(mem, tenant, seq).map(Some),
        None => Ok(None),
    }
}

/// Records a checkpoint if it is new. A checkpoint must carry this log's own root at its size
/// (so two different checkpoints of one size can never both be stored); one of the latest size
/// or older is already implied by the stored one and the tree, and is not written again. Only
/// the latest is kept in memory: a busy tenant gets one a second, forever.
fn checkpoint(
    mem: &Mem,
    carry: &mut Carry,
    cur: &mut InFlight,
    block: &mut Vec<u8>,
    tenant: &str,
    cp: &SignedCheckpoint,
) -> Result<(), StoreError> {
    let tree = mem.tree(tenant);
    let size = tree.size();
    if cp.size > size {
        return Err(StoreError::Invalid(format!(
            "checkpoint size {} is beyond the log of {tenant}, which has {size} events",
            cp.size
        )));
    }
    let root = trailkeep_tlog::tree::tree_hash(cp.size, tree)
        .map_err(|e| StoreError::Corrupt(format!("tree of {tenant}: {e}")))?;
    if root != cp.root {
        return Err(StoreError::Invalid(format!(
            "a checkpoint of size {} for {tenant} must carry the log's root at that size; a different one is never stored",
            cp.size
        )));
    }
    if carry
        .latest_checkpoint(mem, cur, tenant)
        .is_some_and(|l| cp.size <= l)
    {
        return Ok(());
    }
    let sym = carry.sym(mem, cur.number, block, tenant);
    codec::put_checkpoint(block, sym, cp.size, &cp.root, &cp.note);
    cur.checkpoints.push((tenant.to_string(), cp.size));
    Ok(())
}
