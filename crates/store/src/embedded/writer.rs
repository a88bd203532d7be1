//! The group-commit thread: the only writer of the embedded store.
//!
//! It takes every request waiting in its queue (up to a cap), decides each request's fate
//! (new events get the next `seq` of their tenant; re-sent ids are duplicates or conflicts), puts
//! the accepted ones into one atomic fjall batch, fsyncs the journal once, and only then answers.
//! A request that conflicts is answered with an error and contributes nothing to the batch;
//! the others in its group are unaffected.

use super::codec::{
    self, day_key, encode_record, field_prefix, log_key, sort_key, tenant_prefix, with_sort_key,
};
use super::tree::{hash_key, TreeReader};
use super::{Shared, TenantState};
use crate::dedupe::RequestIds;
use crate::{AppendOutcome, PreparedEvent, Receipt, StoreError};
use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Instant;
use tokio::sync::oneshot;
use trailkeep_core::Uuid;
use trailkeep_core::{NewEvent, StoredEvent};
use trailkeep_tlog::Appender;

type Reply = oneshot::Sender<Result<AppendOutcome, StoreError>>;

enum Msg {
    Append(Vec<PreparedEvent>, Reply),
    Stop,
}

pub(crate) struct Handle {
    tx: mpsc::Sender<Msg>,
    thread: Option<JoinHandle<()>>,
}

impl Handle {
    pub fn submit(
        &self,
        events: Vec<PreparedEvent>,
    ) -> Result<oneshot::Receiver<Result<AppendOutcome, StoreError>>, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Msg::Append(events, tx))
            .map_err(|_| StoreError::Unavailable("the commit thread stopped".into()))?;
        Ok(rx)
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
    shared: std::sync::Arc<Shared>,
    max_group: usize,
) -> Result<Handle, StoreError> {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("trailkeep-commit".into())
        .spawn(move || run(&shared, rx, max_group))?;
    Ok(Handle {
        tx,
        thread: Some(thread),
    })
}

struct Request {
    events: Vec<PreparedEvent>,
    reply: Option<Reply>,
}

fn run(shared: &Shared, rx: mpsc::Receiver<Msg>, max_group: usize) {
    loop {
        let mut group = Vec::new();
        let mut n = 0;
        let mut stop = false;
        match rx.recv() {
            Ok(Msg::Append(events, reply)) => {
                n += events.len();
                group.push(Request {
                    events,
                    reply: Some(reply),
                });
            }
            Ok(Msg::Stop) | Err(_) => return,
        }
        while n < max_group {
            match rx.try_recv() {
                Ok(Msg::Append(events, reply)) => {
                    n += events.len();
                    group.push(Request {
                        events,
                        reply: Some(reply),
                    });
                }
                Ok(Msg::Stop) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(shared, group);
        if stop {
            return;
        }
    }
}

/// A stored or in-group event an `event_id` already refers to.
enum Prior {
    /// Accepted earlier in this group: (request, event index, receipt).
    InGroup(usize, usize, Receipt),
}

fn commit_group(shared: &Shared, mut group: Vec<Request>) {
    let ks = &shared.ks;
    let mut batch = shared.db.batch();
    let mut working: HashMap<String, TenantState> = HashMap::new();
    let mut in_group: HashMap<Uuid, Prior> = HashMap::new();
    let mut day_deltas: HashMap<(String, i32, String), u64> = HashMap::new();
    let mut outcomes: Vec<Option<Result<AppendOutcome, StoreError>>> =
        Vec::with_capacity(group.len());
    let mut stored_events = 0u64;
    // Leaves per tenant in seq order, appended to the trees once the group is decided.
    let mut new_leaves: HashMap<String, (u64, Vec<[u8; 32]>)> = HashMap::new();

    for r in 0..group.len() {
        let events = &group[r].events;
        match decide(shared, events, &group, &in_group, &mut working) {
            Err(e) => outcomes.push(Some(Err(e))),
            Ok((receipts, new_idx, next_seqs)) => {
                for (tenant, next) in next_seqs {
                    working_state(shared, &mut working, &tenant).next_seq = next;
                }
                for &i in &new_idx {
                    let p = &events[i];
                    let e = &p.event;
                    let rc = &receipts[i];
                    let lk = log_key(&e.tenant_id, rc.seq);
                    let sk = sort_key(e.timestamp.nanos, &e.event_id);
                    let seq_b = rc.seq.to_be_bytes();
                    batch.insert(&ks.events, lk.clone(), encode_record(p));
                    batch.insert(&ks.ids, e.event_id.as_bytes().to_vec(), lk);
                    batch.insert(
                        &ks.by_time,
                        with_sort_key(tenant_prefix(&e.tenant_id), &sk),
                        seq_b.to_vec(),
                    );
                    batch.insert(
                        &ks.by_type,
                        with_sort_key(field_prefix(&e.tenant_id, &e.event_type), &sk),
                        seq_b.to_vec(),
                    );
                    batch.insert(
                        &ks.by_actor,
                        with_sort_key(field_prefix(&e.tenant_id, &e.actor), &sk),
                        seq_b.to_vec(),
                    );
                    if let Some(s) = &e.impersonation_session {
                        batch.insert(
                            &ks.by_session,
                            with_sort_key(field_prefix(&e.tenant_id, s), &sk),
                            seq_b.to_vec(),
                        );
                    }
                    let st = working_state(shared, &mut working, &e.tenant_id);
                    st.count += 1;
                    let ts = (e.timestamp.nanos, e.timestamp.digits);
                    if st.first_ts.is_none_or(|f| ts.0 < f.0) {
                        st.first_ts = Some(ts);
                    }
                    if st.last_ts.is_none_or(|l| ts.0 > l.0) {
                        st.last_ts = Some(ts);
                    }
                    if !st.types.contains(&e.event_type) {
                        st.types.insert(e.event_type.clone());
                    }
                    *day_deltas
                        .entry((e.tenant_id.clone(), e.timestamp.day(), e.event_type.clone()))
                        .or_default() += 1;
                    new_leaves
                        .entry(e.tenant_id.clone())
                        .or_insert_with(|| (rc.seq, Vec::new()))
                        .1
                        .push(p.leaf_hash);
                    in_group.insert(e.event_id, Prior::InGroup(r, i, rc.clone()));
                    stored_events += 1;
                }
                let accepted = new_idx.len();
                outcomes.push(Some(Ok(AppendOutcome {
                    accepted,
                    duplicates: receipts.len() - accepted,
                    receipts,
                })));
            }
        }
    }

    let result = (|| -> Result<(), StoreError> {
        if stored_events == 0 {
            return Ok(());
        }
        for (tenant, (first_seq, leaves)) in &new_leaves {
            let reader = TreeReader {
                ks: &ks.tree,
                tenant,
            };
            let mut app = Appender::new(&reader, *first_seq)
                .map_err(|e| StoreError::Corrupt(format!("tree of {tenant}: {e}")))?;
            for leaf in leaves {
                app.push(*leaf);
            }
            let (first, hashes) = app.pending();
            for (i, h) in hashes.iter().enumerate() {
                batch.insert(&ks.tree, hash_key(tenant, first + i as u64), h.to_vec());
            }
        }
        for ((tenant, day, t), delta) in &day_deltas {
            let k = day_key(tenant, *day, t);
            let cur = match ks.day_counts.get(&k)? {
                Some(v) if v.len() == 8 => u64::from_be_bytes(v[..8].try_into().unwrap_or([0; 8])),
                _ => 0,
            };
            batch.insert(&ks.day_counts, k, (cur + delta).to_be_bytes().to_vec());
        }
        for (tenant, st) in &working {
            let v = serde_json::to_vec(st).map_err(|e| StoreError::Unavailable(e.to_string()))?;
            batch.insert(&ks.tenants, tenant.as_bytes().to_vec(), v);
        }
        batch.commit()?;
        let t = Instant::now();
        shared.db.persist(fjall::PersistMode::SyncAll)?;
        metrics::histogram!("trailkeep_fsync_seconds").record(t.elapsed().as_secs_f64());
        Ok(())
    })();

    match result {
        Ok(()) => {
            if !working.is_empty() {
                if let Ok(mut map) = shared.tenants.write() {
                    for (tenant, st) in working {
                        map.insert(tenant, st);
                    }
                }
            }
            metrics::histogram!("trailkeep_commit_group_events").record(stored_events as f64);
            metrics::counter!("trailkeep_events_stored_total").increment(stored_events);
            for (req, out) in group.iter_mut().zip(outcomes) {
                if let (Some(reply), Some(out)) = (req.reply.take(), out) {
                    let _ = reply.send(out);
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "commit failed; answering the group with 503");
            for (req, out) in group.iter_mut().zip(outcomes) {
                let out = match out {
                    Some(Err(conflict)) => Err(conflict),
                    _ => Err(StoreError::Unavailable(
                        "the write could not be made durable".into(),
                    )),
                };
                if let Some(reply) = req.reply.take() {
                    let _ = reply.send(out);
                }
            }
        }
    }
}

fn working_state<'a>(
    shared: &Shared,
    working: &'a mut HashMap<String, TenantState>,
    tenant: &str,
) -> &'a mut TenantState {
    if !working.contains_key(tenant) {
        let st = shared
            .tenants
            .read()
            .ok()
            .and_then(|m| m.get(tenant).cloned())
            .unwrap_or_default();
        working.insert(tenant.to_string(), st);
    }
    // Inserted just above when missing.
    working.get_mut(tenant).expect("tenant state present")
}

type Decision = (Vec<Receipt>, Vec<usize>, HashMap<String, u64>);

/// The stored event with `e`'s id (server-assigned UUIDv7 ids are new by construction).
fn stored_event(shared: &Shared, e: &NewEvent) -> Result<Option<StoredEvent>, StoreError> {
    if e.event_id_assigned {
        return Ok(None);
    }
    let Some(lk) = shared.ks.ids.get(e.event_id.as_bytes())? else {
        return Ok(None);
    };
    let (tenant, seq) =
        codec::split_log_key(&lk).ok_or_else(|| StoreError::Corrupt("id index entry".into()))?;
    let rec = shared.ks.events.get(&lk)?.ok_or_else(|| {
        StoreError::Corrupt(format!("id index points at a missing event {tenant}/{seq}"))
    })?;
    codec::decode_record(tenant, seq, &rec).map(Some)
}

/// Decides one request: receipts for every event, which ones are new, and the tenants' next seqs.
fn decide(
    shared: &Shared,
    events: &[PreparedEvent],
    group: &[Request],
    in_group: &HashMap<Uuid, Prior>,
    working: &mut HashMap<String, TenantState>,
) -> Result<Decision, StoreError> {
    let mut receipts: Vec<Receipt> = Vec::with_capacity(events.len());
    let mut new_idx = Vec::with_capacity(events.len());
    let mut ids = RequestIds::new(events);
    let mut next: HashMap<String, u64> = HashMap::new();
    for (i, p) in events.iter().enumerate() {
        let e = &p.event;
        let earlier = in_group
            .get(&e.event_id)
            .map(|Prior::InGroup(pr, pi, rc)| (&group[*pr].events[*pi].event, rc));
        let stored = || stored_event(shared, e);
        if let Some(rc) = ids.prior(i, &receipts, earlier, stored)? {
            receipts.push(rc);
            continue;
        }
        let seq = match next.get_mut(&e.tenant_id) {
            Some(s) => s,
            None => {
                let start = working_state(shared, working, &e.tenant_id).next_seq;
                next.entry(e.tenant_id.clone()).or_insert(start)
            }
        };
        receipts.push(Receipt {
            event_id: e.event_id,
            tenant_id: e.tenant_id.clone(),
            seq: *seq,
            leaf_hash: p.leaf_hash,
        });
        *seq += 1;
        new_idx.push(i);
    }
    Ok((receipts, new_idx, next))
}
