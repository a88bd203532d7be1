//! The group-commit thread: the only writer of the embedded store.
//!
//! It takes every message waiting in its queue (up to a cap), decides each request's fate (new
//! events get the next `seq` of their tenant; re-sent ids are duplicates or conflicts), encodes
//! the accepted events, new symbols, dictionaries and checkpoints into **one block**, writes it
//! with one `write` and one `fdatasync`, applies the block to memory, and only then answers.
//! A request that conflicts is answered with an error and contributes nothing to the block; the
//! others in its group are unaffected.
//!
//! Decisions read memory under a read lock; nothing else writes memory, so the state they saw
//! is still the state when the block is applied under the write lock after the fsync.
//!
//! If a write or fsync fails, the state of the file is unknown: the thread answers the group
//! with 503 and refuses every later write (`ready` fails) until a restart, whose recovery cuts
//! any unfinished block off the log.

use super::codec::{self, EventHeader, F_APPROVAL, F_IP, F_SESSION, F_TS_ASSIGNED};
use super::memory::Mem;
use super::segment::LogWriter;
use super::{Encoded, Shared};
use crate::dedupe::RequestIds;
use crate::{AppendOutcome, Receipt, SignedCheckpoint, StoreError};
use foldhash::HashMap;
use foldhash::HashMapExt;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use tokio::sync::oneshot;
use trailkeep_core::{NewEvent, StoredEvent, Uuid};

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

pub(crate) enum Msg {
    /// Shared with the submitting handler, which frees the events after the answer (so the
    /// commit thread does not spend its time in the allocator).
    Append(Arc<Vec<Encoded>>, Reply<AppendOutcome>),
    Checkpoint(String, SignedCheckpoint, Reply<()>),
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

    /// Commits what is queued, then stops the thread.
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
) -> Result<Handle, StoreError> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("trailkeep-commit".into())
        .spawn(move || run(&shared, log, rx, max_group))?;
    Ok(Handle {
        tx,
        thread: Some(thread),
    })
}

fn run(shared: &Shared, mut log: LogWriter, rx: mpsc::Receiver<Msg>, max_group: usize) {
    let mut block = Buffers {
        block: Vec::with_capacity(1 << 20),
        headers: Vec::new(),
    };
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
            refuse(
                group,
                "an earlier write failed; restart trailkeep to recover the log",
            );
        } else {
            commit_group(shared, &mut log, &mut block, group);
        }
        if stop {
            return;
        }
    }
}

fn weight(m: &Msg) -> usize {
    match m {
        Msg::Append(e, _) => e.len().max(1),
        _ => 1,
    }
}

fn refuse(group: Vec<Msg>, why: &str) {
    let (_, replies) = split(group);
    send_all(replies, Vec::new(), Some(why));
}

/// Symbols, seqs and dictionaries handed out in this group, beyond what memory holds.
struct Pending<'m> {
    mem: &'m Mem,
    syms: HashMap<String, u32>,
    next_sym: u32,
    next_seq: HashMap<String, u64>,
}

impl Pending<'_> {
    /// The symbol for `text`, writing its definition into the block when it is new.
    fn sym(&mut self, block: &mut Vec<u8>, text: &str) -> u32 {
        if let Some(id) = self.mem.sym_id(text) {
            return id;
        }
        if let Some(id) = self.syms.get(text) {
            return *id;
        }
        let id = self.next_sym;
        self.next_sym += 1;
        codec::put_symbol(block, id, text);
        self.syms.insert(text.to_string(), id);
        id
    }

    fn next_seq(&self, tenant: &str) -> u64 {
        match self.next_seq.get(tenant) {
            Some(s) => *s,
            None => self.mem.tenant(tenant).map(|(_, t)| t.size()).unwrap_or(0),
        }
    }
}

enum Item {
    Append(Arc<Vec<Encoded>>),
    Checkpoint(String, SignedCheckpoint),
    Dict(Vec<u8>),
}

enum AnyReply {
    Append(Reply<AppendOutcome>),
    Checkpoint(Reply<()>),
    None,
}

enum Outcome {
    Append(Result<AppendOutcome, StoreError>),
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

/// Where an id accepted earlier in this group is: (item, event index, seq).
type InGroup = HashMap<Uuid, (usize, usize, u64)>;

/// The block being built and the headers of its events (so applying it needs no re-parse).
struct Buffers {
    block: Vec<u8>,
    headers: Vec<(usize, EventHeader)>,
}

fn commit_group(shared: &Shared, log: &mut LogWriter, bufs: &mut Buffers, group: Vec<Msg>) {
    bufs.block.clear();
    bufs.headers.clear();
    let Buffers { block, headers } = bufs;
    let (items, replies) = split(group);
    let mut outcomes = Vec::with_capacity(items.len());
    let mut stored = 0u64;
    let mut new_dict = false;
    {
        let mem = match shared.mem.read() {
            Ok(m) => m,
            Err(_) => {
                send_all(
                    replies,
                    outcomes,
                    Some("the store's memory lock is poisoned; restart trailkeep"),
                );
                return;
            }
        };
        let mut p = Pending {
            mem: &mem,
            syms: HashMap::new(),
            next_sym: mem.next_sym(),
            next_seq: HashMap::new(),
        };
        let mut in_group: InGroup = HashMap::new();
        let mut cps: HashMap<(String, u64), [u8; 32]> = HashMap::new();
        let mut next_dict = mem.dicts.len() as u32 + 1;
        for k in 0..items.len() {
            match &items[k] {
                Item::Append(events) => {
                    let out =
                        append_request(&mut p, block, headers, &items, &mut in_group, k, events);
                    if let Ok(o) = &out {
                        stored += o.accepted as u64;
                    }
                    outcomes.push(Outcome::Append(out));
                }
                Item::Checkpoint(tenant, cp) => {
                    let out = checkpoint(&mut p, block, &mut cps, tenant, cp);
                    outcomes.push(Outcome::Checkpoint(out));
                }
                Item::Dict(bytes) => {
                    codec::put_dict(block, next_dict, bytes);
                    next_dict += 1;
                    new_dict = true;
                    outcomes.push(Outcome::None);
                }
            }
        }
    }
    // Our references go before the answers, so each handler's is the last and frees there.
    drop(items);

    let result = if block.is_empty() {
        Ok(())
    } else {
        log.append(block).and_then(|(seg, off)| {
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
        })
    };
    match result {
        Ok(()) => {
            if stored > 0 {
                metrics::histogram!("trailkeep_commit_group_events").record(stored as f64);
                metrics::counter!("trailkeep_events_stored_total").increment(stored);
            }
            send_all(replies, outcomes, None);
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; answering the group with 503 and refusing writes until restart");
            shared.failed.store(true, Ordering::Release);
            send_all(
                replies,
                outcomes,
                Some("the write could not be made durable"),
            );
        }
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
    p: &mut Pending<'_>,
    block: &mut Vec<u8>,
    headers: &mut Vec<(usize, EventHeader)>,
    items: &[Item],
    in_group: &mut InGroup,
    item: usize,
    events: &[Encoded],
) -> Result<AppendOutcome, StoreError> {
    let mut receipts: Vec<Receipt> = Vec::with_capacity(events.len());
    let mut new_idx = Vec::with_capacity(events.len());
    let mut next: HashMap<&str, u64> = HashMap::new();
    {
        let mut ids = RequestIds::new(events.iter().map(|e| &e.prepared.event));
        for (i, enc) in events.iter().enumerate() {
            let e = &enc.prepared.event;
            let earlier_ev = in_group
                .get(&e.event_id)
                .and_then(|&(k, j, seq)| match &items[k] {
                    Item::Append(ev) => ev.get(j).map(|x| (x, seq)),
                    _ => None,
                });
            let earlier_rc = earlier_ev.map(|(x, seq)| Receipt {
                event_id: x.prepared.event.event_id,
                tenant_id: x.prepared.event.tenant_id.clone(),
                seq,
                leaf_hash: x.prepared.leaf_hash,
            });
            let earlier = earlier_ev
                .zip(earlier_rc.as_ref())
                .map(|((x, _), rc)| (&x.prepared.event, rc));
            let stored = || stored_event(p.mem, e);
            if let Some(rc) = ids.prior(i, &receipts, earlier, stored)? {
                receipts.push(rc);
                continue;
            }
            let seq = match next.get_mut(e.tenant_id.as_str()) {
                Some(s) => s,
                None => next
                    .entry(e.tenant_id.as_str())
                    .or_insert(p.next_seq(&e.tenant_id)),
            };
            receipts.push(Receipt {
                event_id: e.event_id,
                tenant_id: e.tenant_id.clone(),
                seq: *seq,
                leaf_hash: enc.prepared.leaf_hash,
            });
            *seq += 1;
            new_idx.push(i);
        }
    }
    for (t, s) in next {
        p.next_seq.insert(t.to_string(), s);
    }
    for &i in &new_idx {
        let enc = &events[i];
        let pe = &enc.prepared;
        let e = &pe.event;
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
                p.sym(block, s)
            }
            None => 0,
        };
        let h = EventHeader {
            tenant: p.sym(block, &e.tenant_id),
            seq: receipts[i].seq,
            flags,
            digits: e.timestamp.digits,
            ts: e.timestamp.nanos,
            received: pe.received_at.nanos,
            event_id: *e.event_id.as_bytes(),
            salt_or_commitment: pe.salt,
            leaf_hash: pe.leaf_hash,
            event_type: p.sym(block, &e.event_type),
            actor: p.sym(block, &e.actor),
            session,
            dict: enc.dict,
        };
        let at = codec::put_event(block, &h, &enc.body);
        headers.push((at, h));
        if !e.event_id_assigned {
            in_group.insert(e.event_id, (item, i, receipts[i].seq));
        }
    }
    let accepted = new_idx.len();
    Ok(AppendOutcome {
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
    p: &mut Pending<'_>,
    block: &mut Vec<u8>,
    cps: &mut HashMap<(String, u64), [u8; 32]>,
    tenant: &str,
    cp: &SignedCheckpoint,
) -> Result<(), StoreError> {
    let tree = p.mem.tree(tenant);
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
    let latest = p
        .mem
        .tenant(tenant)
        .and_then(|(_, t)| t.latest_checkpoint.as_ref().map(|c| c.size))
        .into_iter()
        .chain(
            cps.iter()
                .filter(|((n, _), _)| n == tenant)
                .map(|((_, s), _)| *s),
        )
        .max();
    if latest.is_some_and(|l| cp.size <= l) {
        return Ok(());
    }
    let sym = p.sym(block, tenant);
    codec::put_checkpoint(block, sym, cp.size, &cp.root, &cp.note);
    cps.insert((tenant.to_string(), cp.size), cp.root);
    Ok(())
}
