//! Appends in PostgreSQL: group commit inside a process, tenant row locks across processes.
//!
//! Requests go to a queue served by a few committer tasks. A committer takes every request
//! waiting (up to [`MAX_GROUP_EVENTS`]) and runs them as one transaction: create missing tenant
//! rows, lock every touched tenant row (`FOR UPDATE`, in one global order, so transactions never
//! deadlock on each other), look up the group's ids (after the locks, so an id committed by any
//! process is seen), decide each request in order exactly as the embedded store does
//! (duplicates get the original receipt, changed content is a conflict that contributes nothing
//! to the group, seqs come from `next_seq`), append the leaves to the trees, insert events and
//! hashes, update the tenant rows, `COMMIT`. Only then is any request of the group answered.
//!
//! A transaction that loses a race with another process (a unique violation on `event_id`, a
//! deadlock, a serialization failure) is rolled back whole and run again; the retry sees the
//! winner's rows.
//!
//! A group never waits without a bound (see `pool.rs`) and is never misreported: until `COMMIT`
//! is sent, any failure means nothing was stored (`Unavailable`). The transaction's id is
//! fetched with its first statement; if the answer to `COMMIT` is lost (the connection broke or
//! stopped answering), [`resolve`] asks `txid_status` on fresh connections, ending the old
//! session if it still runs the transaction, and answers each request with its receipts
//! (committed), `Unavailable` (rolled back) or `OutcomeUnknown` (no answer within the bound).

use super::pool::{connect, describe, unavailable, Conn, Pool};
use super::read::{event_from_row, EVENT_COLS};
use super::tree::MapReader;
use crate::dedupe::RequestIds;
use crate::{AppendOutcome, PreparedEvent, Receipt, StoreError};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio_postgres::error::SqlState;
use trailkeep_core::{StoredEvent, Uuid};
use trailkeep_tlog::Appender;

/// How often a group is run again after losing a race before its requests get `Unavailable`.
const MAX_ATTEMPTS: usize = 20;
/// Most events one group commit takes.
pub(crate) const MAX_GROUP_EVENTS: usize = 20_000;

type Reply = oneshot::Sender<Result<AppendOutcome, StoreError>>;

const QUEUED: u8 = 0;
const TAKEN: u8 = 1;
const GAVE_UP: u8 = 2;

/// One append request in the queue. `state` decides, once, whether a committer took it or its
/// caller gave up waiting: a request given up on is never run, so its "nothing was stored" holds.
struct Job {
    events: Vec<PreparedEvent>,
    reply: Reply,
    state: Arc<AtomicU8>,
}

impl Job {
    fn take(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, TAKEN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
    }
}

/// The queue in front of the committer tasks.
pub(crate) struct Committer {
    tx: mpsc::UnboundedSender<Job>,
    /// Longest a request waits in the queue for a committer (`pool_wait`).
    queue_wait: Duration,
}

impl Committer {
    /// Spawns `workers` committer tasks on the current runtime.
    pub fn spawn(pool: Arc<Pool>, workers: usize) -> Committer {
        let (tx, rx) = mpsc::unbounded_channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..workers.max(1) {
            let (pool, rx) = (pool.clone(), rx.clone());
            tokio::spawn(async move {
                loop {
                    let group = {
                        let mut rx = rx.lock().await;
                        let mut group: Vec<Job> = Vec::new();
                        let mut n = 0;
                        while group.is_empty() {
                            let Some(job) = rx.recv().await else { return };
                            if job.take() {
                                n += job.events.len();
                                group.push(job);
                            }
                        }
                        while n < MAX_GROUP_EVENTS {
                            match rx.try_recv() {
                                Ok(job) => {
                                    if job.take() {
                                        n += job.events.len();
                                        group.push(job);
                                    }
                                }
                                Err(_) => break,
                            }
                        }
                        group
                    };
                    commit_group(&pool, group).await;
                }
            });
        }
        Committer {
            tx,
            queue_wait: pool.timeouts.pool_wait,
        }
    }

    pub async fn append(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, StoreError> {
        if events.is_empty() {
            return Ok(AppendOutcome {
                accepted: 0,
                duplicates: 0,
                receipts: Vec::new(),
            });
        }
        let stopped = || StoreError::Unavailable("the committer stopped".into());
        let (tx, mut rx) = oneshot::channel();
        let state = Arc::new(AtomicU8::new(QUEUED));
        self.tx
            .send(Job {
                events,
                reply: tx,
                state: state.clone(),
            })
            .map_err(|_| stopped())?;
        tokio::select! {
            r = &mut rx => return r.map_err(|_| stopped())?,
            _ = tokio::time::sleep(self.queue_wait) => {}
        }
        if state
            .compare_exchange(QUEUED, GAVE_UP, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            return Err(StoreError::Unavailable(format!(
                "every committer stayed busy for pool_wait ({} ms); the database is slow or \
                 unreachable. Nothing was stored",
                self.queue_wait.as_millis()
            )));
        }
        // A committer has it: its answer comes within the group's own bounds.
        rx.await.map_err(|_| stopped())?
    }
}

enum Failure {
    /// Lost a race with another transaction: roll back and run again.
    Retry(String),
    Fatal(StoreError),
    /// `COMMIT` was sent but its answer never came (the connection broke): the outcome must be
    /// asked for (see [`resolve`]).
    CommitLost(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Fatal(e)
    }
}

fn pg(e: tokio_postgres::Error) -> Failure {
    match e.code() {
        Some(c)
            if *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::T_R_DEADLOCK_DETECTED
                || *c == SqlState::T_R_SERIALIZATION_FAILURE =>
        {
            Failure::Retry(e.to_string())
        }
        _ => Failure::Fatal(unavailable(e)),
    }
}

type Outcomes = Vec<Result<AppendOutcome, StoreError>>;

/// What an attempt learned, kept outside it so that it survives the attempt being cut off by
/// the operation bound.
#[derive(Default)]
struct Attempt {
    /// `(txid_current(), pg_backend_pid())` of the transaction, known after its first statement.
    tx: std::sync::Mutex<Option<(i64, i32)>>,
    /// The decisions, set just before `COMMIT` is sent.
    outcomes: std::sync::Mutex<Option<Outcomes>>,
    /// Set just before `COMMIT` is sent: from then on, a failure does not mean "not stored".
    commit_sent: AtomicBool,
}

async fn commit_group(pool: &Arc<Pool>, group: Vec<Job>) {
    let (requests, replies): (Vec<Vec<PreparedEvent>>, Vec<Reply>) =
        group.into_iter().map(|j| (j.events, j.reply)).unzip();
    let result = run_group(pool, &requests).await;
    match result {
        Ok(outcomes) => {
            let stored: usize = outcomes
                .iter()
                .filter_map(|o| o.as_ref().ok())
                .map(|o| o.accepted)
                .sum();
            metrics::counter!("trailkeep_events_stored_total").increment(stored as u64);
            metrics::histogram!("trailkeep_commit_group_events").record(stored as f64);
            for (reply, out) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(out);
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "PostgreSQL commit failed; answering the group with 503");
            let msg = match &e {
                StoreError::Unavailable(m) => m.clone(),
                other => other.to_string(),
            };
            for reply in replies {
                let _ = reply.send(Err(StoreError::Unavailable(msg.clone())));
            }
        }
    }
}

async fn run_group(
    pool: &Arc<Pool>,
    requests: &[Vec<PreparedEvent>],
) -> Result<Outcomes, StoreError> {
    let mut last = String::new();
    for attempt in 0..MAX_ATTEMPTS {
        let mut c = pool.get().await?;
        let mut at = Attempt::default();
        let r = pool.bounded(attempt_once(&mut c, requests, &at)).await;
        match r {
            Some(Ok(out)) => {
                c.release();
                return Ok(out);
            }
            Some(Err(Failure::Fatal(e))) => {
                c.release();
                return Err(e);
            }
            Some(Err(Failure::Retry(why))) => {
                c.release();
                tracing::debug!(attempt, %why, "append lost a race; running it again");
                last = why;
                tokio::time::sleep(Duration::from_millis(
                    (attempt as u64 + 1) * (rand::random::<u64>() % 5 + 1),
                ))
                .await;
            }
            Some(Err(Failure::CommitLost(why))) => {
                drop(c);
                return Ok(resolve(pool, at, why).await);
            }
            None => {
                // Closes the connection (and with it the server's session, once the network
                // lets the close through).
                drop(c);
                if *at.commit_sent.get_mut() {
                    let why = format!(
                        "no answer to COMMIT within {} ms",
                        pool.timeouts.operation().as_millis()
                    );
                    return Ok(resolve(pool, at, why).await);
                }
                return Err(pool.no_answer());
            }
        }
    }
    Err(StoreError::Unavailable(format!(
        "the append kept conflicting with concurrent writers ({last}); nothing was stored, try again"
    )))
}

/// The fate of a transaction whose `COMMIT` answer was lost.
enum Fate {
    Committed,
    Aborted,
    Unknown(String),
}

/// Learns whether the transaction of `at` committed, on fresh connections, for at most
/// `statement_timeout + connect_timeout` in all, and answers each request accordingly: committed → its
/// decided outcome; aborted → `Unavailable` (nothing stored); still unknown → `OutcomeUnknown`.
/// Requests whose outcome did not depend on the commit (only duplicates, or a conflict) keep it.
async fn resolve(pool: &Pool, at: Attempt, why: String) -> Outcomes {
    let outcomes = at.outcomes.into_inner().ok().flatten().unwrap_or_default();
    let tx = at.tx.into_inner().ok().flatten();
    let fate = match tx {
        Some((txid, pid)) => fate(pool, txid, pid).await,
        None => Fate::Unknown("the transaction id was not known".into()),
    };
    match &fate {
        Fate::Committed => {
            tracing::warn!(%why, "the answer to COMMIT was lost; the transaction committed, answering with the receipts")
        }
        Fate::Aborted => {
            tracing::warn!(%why, "the answer to COMMIT was lost; the transaction was rolled back, answering 503")
        }
        Fate::Unknown(last) => {
            tracing::error!(%why, %last, "the answer to COMMIT was lost and the outcome could not be learned; answering 503 (outcome unknown)")
        }
    }
    outcomes
        .into_iter()
        .map(|o| match (o, &fate) {
            (Ok(o), Fate::Aborted) if o.accepted > 0 => Err(StoreError::Unavailable(format!(
                "the connection to PostgreSQL broke while committing ({why}) and the transaction was rolled back; nothing of this request was stored, send it again"
            ))),
            (Ok(o), Fate::Unknown(last)) if o.accepted > 0 => Err(StoreError::OutcomeUnknown(format!(
                "the connection to PostgreSQL broke after COMMIT was sent ({why}) and asking the database afterwards failed too ({last})"
            ))),
            (o, _) => o,
        })
        .collect()
}

async fn fate(pool: &Pool, txid: i64, pid: i32) -> Fate {
    let t = pool.timeouts;
    let deadline = Instant::now() + t.statement + t.connect;
    let xid32 = (txid.rem_euclid(1 << 32)).to_string();
    loop {
        let ask = async {
            let link = connect(pool.config(), &t).await?;
            let status: Option<String> = link
                .client
                .query_one("SELECT txid_status($1)", &[&txid])
                .await
                .map_err(unavailable)?
                .get(0);
            if status.as_deref() == Some("in progress") {
                // The session that sent COMMIT is still alive on the server (the COMMIT may not
                // even have arrived): end it, after which the outcome is final. Only that
                // session is ended: the pid must still run this very transaction.
                link.client
                    .execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity                          WHERE pid = $1 AND backend_xid::text = $2",
                        &[&pid, &xid32],
                    )
                    .await
                    .map_err(unavailable)?;
            }
            link.close();
            Ok::<_, StoreError>(status)
        };
        let left = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(100));
        let last = match tokio::time::timeout(left, ask).await {
            Ok(Ok(Some(s))) if s == "committed" => return Fate::Committed,
            Ok(Ok(Some(s))) if s == "aborted" => return Fate::Aborted,
            Ok(Ok(Some(s))) => format!("the transaction was still {s}"),
            Ok(Ok(None)) => {
                return Fate::Unknown("txid_status knows the transaction no longer".into())
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "PostgreSQL did not answer".into(),
        };
        if Instant::now() >= deadline {
            return Fate::Unknown(last);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tenant row as locked at the start of the transaction, then updated in memory.
#[derive(Clone)]
struct TenantRow {
    next_seq: u64,
    count: u64,
    first: Option<(i64, i16)>,
    last: Option<(i64, i16)>,
    changed: bool,
}

/// An event accepted earlier in this group: (request, index, receipt).
type InGroup = (usize, usize, Receipt);

/// Decides one request against the locked tenant rows, the stored events and the group so far.
/// On success the tenant rows are updated and the request's new events recorded in `in_group`;
/// on conflict nothing changes.
fn decide(
    r: usize,
    requests: &[Vec<PreparedEvent>],
    tenants: &mut BTreeMap<String, TenantRow>,
    stored: &HashMap<Uuid, StoredEvent>,
    in_group: &mut HashMap<Uuid, InGroup>,
) -> Result<(AppendOutcome, Vec<usize>), StoreError> {
    let events = &requests[r];
    let mut receipts: Vec<Receipt> = Vec::with_capacity(events.len());
    let mut new_idx: Vec<usize> = Vec::with_capacity(events.len());
    let ids = RequestIds::new(events.iter().map(|p| &p.event));
    // Changes to tenant rows, applied only if the request is accepted.
    let mut work: HashMap<&str, TenantRow> = HashMap::new();
    for (i, p) in events.iter().enumerate() {
        let e = &p.event;
        let earlier = in_group
            .get(&e.event_id)
            .map(|(pr, pi, rc)| (&requests[*pr][*pi].event, rc));
        let prior = ids.prior(i, e, &receipts, earlier, || {
            Ok(stored.get(&e.event_id).cloned())
        })?;
        if let Some(rc) = prior {
            receipts.push(rc);
            continue;
        }
        let st = match work.get_mut(e.tenant_id.as_str()) {
            Some(st) => st,
            None => {
                let row = tenants.get(e.tenant_id.as_str()).cloned().ok_or_else(|| {
                    StoreError::Unavailable(format!("tenant row of {} was not locked", e.tenant_id))
                })?;
                work.entry(e.tenant_id.as_str()).or_insert(row)
            }
        };
        receipts.push(Receipt {
            event_id: e.event_id,
            tenant_id: e.tenant_id.clone(),
            seq: st.next_seq,
            leaf_hash: p.leaf_hash,
        });
        st.next_seq += 1;
        st.count += 1;
        st.changed = true;
        let ts = (e.timestamp.nanos, i16::from(e.timestamp.digits));
        if st.first.is_none_or(|f| ts.0 < f.0) {
            st.first = Some(ts);
        }
        if st.last.is_none_or(|l| ts.0 > l.0) {
            st.last = Some(ts);
        }
        new_idx.push(i);
    }
    for (name, st) in work {
        tenants.insert(name.to_string(), st);
    }
    for &i in &new_idx {
        in_group.insert(events[i].event.event_id, (r, i, receipts[i].clone()));
    }
    let accepted = new_idx.len();
    Ok((
        AppendOutcome {
            accepted,
            duplicates: receipts.len() - accepted,
            receipts,
        },
        new_idx,
    ))
}

async fn attempt_once(
    c: &mut Conn,
    requests: &[Vec<PreparedEvent>],
    at: &Attempt,
) -> Result<Outcomes, Failure> {
    let tx = c.transaction().await.map_err(pg)?;
    let names: Vec<String> = requests
        .iter()
        .flatten()
        .map(|p| p.event.tenant_id.to_string())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // The transaction id (to ask for the outcome should the answer to COMMIT be lost), sent
    // together with the first statement: no extra round trip.
    let names_param: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&names];
    let (first, second) = tokio::join!(
        tx.query_one("SELECT txid_current(), pg_backend_pid()", &[]),
        tx.execute(
            "INSERT INTO tenants (tenant_id) SELECT unnest($1::text[]) ORDER BY 1 \
             ON CONFLICT (tenant_id) DO NOTHING",
            &names_param,
        )
    );
    let ids_row = match (first, second) {
        (Ok(row), Ok(_)) => row,
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => return Err(pg(e)),
        // One failed and the other was then refused as "transaction aborted": report the cause.
        (Err(a), Err(b)) => {
            let aborted =
                |e: &tokio_postgres::Error| e.code() == Some(&SqlState::IN_FAILED_SQL_TRANSACTION);
            return Err(pg(if aborted(&a) { b } else { a }));
        }
    };
    if let Ok(mut slot) = at.tx.lock() {
        *slot = Some((ids_row.get(0), ids_row.get(1)));
    }
    let rows = tx
        .query(
            "SELECT tenant_id, next_seq, event_count, first_ts, first_digits, last_ts, last_digits \
             FROM tenants WHERE tenant_id = ANY($1) ORDER BY tenant_id FOR UPDATE",
            &[&names],
        )
        .await
        .map_err(pg)?;
    let mut tenants: BTreeMap<String, TenantRow> = BTreeMap::new();
    for r in &rows {
        let n: i64 = r.get(1);
        let cnt: i64 = r.get(2);
        let ft: Option<i64> = r.get(3);
        let fd: Option<i16> = r.get(4);
        let lt: Option<i64> = r.get(5);
        let ld: Option<i16> = r.get(6);
        tenants.insert(
            r.get(0),
            TenantRow {
                next_seq: n.max(0) as u64,
                count: cnt.max(0) as u64,
                first: ft.zip(fd),
                last: lt.zip(ld),
                changed: false,
            },
        );
    }

    let ids: Vec<Uuid> = requests
        .iter()
        .flatten()
        .map(|p| p.event.event_id)
        .collect();
    let stored_rows = tx
        .query(
            &format!("SELECT {EVENT_COLS} FROM events WHERE event_id = ANY($1)"),
            &[&ids],
        )
        .await
        .map_err(pg)?;
    let mut stored: HashMap<Uuid, StoredEvent> = HashMap::new();
    for r in &stored_rows {
        let e = event_from_row(r)?;
        stored.insert(e.event_id, e);
    }

    // Decide every request in order; collect the new events in commit order.
    let mut outcomes = Vec::with_capacity(requests.len());
    let mut in_group: HashMap<Uuid, InGroup> = HashMap::new();
    let mut new_events: Vec<(&PreparedEvent, u64)> = Vec::new();
    for r in 0..requests.len() {
        match decide(r, requests, &mut tenants, &stored, &mut in_group) {
            Ok((out, new_idx)) => {
                for &i in &new_idx {
                    new_events.push((&requests[r][i], out.receipts[i].seq));
                }
                outcomes.push(Ok(out));
            }
            Err(e) => outcomes.push(Err(e)),
        }
    }
    if new_events.is_empty() {
        // Nothing to write (duplicates and conflicts only): leave no trace.
        tx.rollback().await.map_err(pg)?;
        return Ok(outcomes);
    }

    // Tree hashes, per tenant, appended in seq order on top of the committed tree.
    let mut leaves: BTreeMap<&str, Vec<[u8; 32]>> = BTreeMap::new();
    for (p, _) in &new_events {
        leaves
            .entry(p.event.tenant_id.as_str())
            .or_default()
            .push(p.leaf_hash);
    }
    let tree = append_trees(&tx, &tenants, &leaves).await?;
    let (t_tenant, t_idx, t_hash): (Vec<&str>, Vec<i64>, Vec<&[u8]>) = tree
        .iter()
        .flat_map(|(t, first, hs)| {
            hs.iter()
                .enumerate()
                .map(move |(k, h)| (*t, (*first + k as u64) as i64, h.as_slice()))
        })
        .fold(
            (Vec::new(), Vec::new(), Vec::new()),
            |mut acc, (t, i, h)| {
                acc.0.push(t);
                acc.1.push(i);
                acc.2.push(h);
                acc
            },
        );
    tx.execute(
        "INSERT INTO tree_hashes (tenant_id, idx, hash) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::bytea[])",
        &[&t_tenant, &t_idx, &t_hash],
    )
    .await
    .map_err(pg)?;

    // Events, one multi-row insert.
    let n = new_events.len();
    let mut c_tenant = Vec::with_capacity(n);
    let mut c_seq = Vec::with_capacity(n);
    let mut c_id = Vec::with_capacity(n);
    let mut c_type = Vec::with_capacity(n);
    let mut c_actor = Vec::with_capacity(n);
    let mut c_ts = Vec::with_capacity(n);
    let mut c_digits = Vec::with_capacity(n);
    let mut c_assigned = Vec::with_capacity(n);
    let mut c_received = Vec::with_capacity(n);
    let mut c_ip = Vec::with_capacity(n);
    let mut c_session = Vec::with_capacity(n);
    let mut c_approval = Vec::with_capacity(n);
    let mut c_payload: Vec<&[u8]> = Vec::with_capacity(n);
    let mut c_salt: Vec<&[u8]> = Vec::with_capacity(n);
    let mut c_leaf: Vec<&[u8]> = Vec::with_capacity(n);
    for (p, seq) in &new_events {
        let e = &p.event;
        c_tenant.push(e.tenant_id.as_str());
        c_seq.push(*seq as i64);
        c_id.push(e.event_id);
        c_type.push(e.event_type.as_str());
        c_actor.push(e.actor.as_str());
        c_ts.push(e.timestamp.nanos);
        c_digits.push(i16::from(e.timestamp.digits));
        c_assigned.push(e.timestamp_assigned);
        c_received.push(p.received_at.nanos);
        c_ip.push(e.source_ip.as_deref());
        c_session.push(e.impersonation_session.as_deref());
        c_approval.push(e.approval_id.as_deref());
        c_payload.push(&e.payload[..]);
        c_salt.push(p.salt.as_slice());
        c_leaf.push(p.leaf_hash.as_slice());
    }
    tx.execute(
        "INSERT INTO events (tenant_id, seq, event_id, event_type, actor, ts_nanos, ts_digits, \
         ts_assigned, received_nanos, source_ip, session, approval_id, payload, salt, leaf_hash) \
         SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $4::text[], $5::text[], \
         $6::bigint[], $7::smallint[], $8::bool[], $9::bigint[], $10::text[], $11::text[], \
         $12::text[], $13::bytea[], $14::bytea[], $15::bytea[])",
        &[
            &c_tenant,
            &c_seq,
            &c_id,
            &c_type,
            &c_actor,
            &c_ts,
            &c_digits,
            &c_assigned,
            &c_received,
            &c_ip,
            &c_session,
            &c_approval,
            &c_payload,
            &c_salt,
            &c_leaf,
        ],
    )
    .await
    .map_err(pg)?;

    let changed: Vec<(&String, &TenantRow)> = tenants.iter().filter(|(_, st)| st.changed).collect();
    let u_name: Vec<&str> = changed.iter().map(|(n, _)| n.as_str()).collect();
    let u_next: Vec<i64> = changed.iter().map(|(_, s)| s.next_seq as i64).collect();
    let u_count: Vec<i64> = changed.iter().map(|(_, s)| s.count as i64).collect();
    let u_ft: Vec<Option<i64>> = changed.iter().map(|(_, s)| s.first.map(|f| f.0)).collect();
    let u_fd: Vec<Option<i16>> = changed.iter().map(|(_, s)| s.first.map(|f| f.1)).collect();
    let u_lt: Vec<Option<i64>> = changed.iter().map(|(_, s)| s.last.map(|f| f.0)).collect();
    let u_ld: Vec<Option<i16>> = changed.iter().map(|(_, s)| s.last.map(|f| f.1)).collect();
    tx.execute(
        "UPDATE tenants SET next_seq = u.next_seq, event_count = u.event_count, \
         first_ts = u.first_ts, first_digits = u.first_digits, last_ts = u.last_ts, \
         last_digits = u.last_digits \
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::smallint[], \
         $6::bigint[], $7::smallint[]) \
         AS u(tenant_id, next_seq, event_count, first_ts, first_digits, last_ts, last_digits) \
         WHERE tenants.tenant_id = u.tenant_id",
        &[&u_name, &u_next, &u_count, &u_ft, &u_fd, &u_lt, &u_ld],
    )
    .await
    .map_err(pg)?;
    if let Ok(mut slot) = at.outcomes.lock() {
        *slot = Some(outcomes);
    }
    at.commit_sent.store(true, Ordering::SeqCst);
    match tx.commit().await {
        Ok(()) => Ok(at
            .outcomes
            .lock()
            .ok()
            .and_then(|mut o| o.take())
            .unwrap_or_default()),
        // The server refused the COMMIT: rolled back, nothing stored.
        Err(e) if e.as_db_error().is_some() => Err(pg(e)),
        Err(e) => Err(Failure::CommitLost(describe(&e))),
    }
}

/// New tree hashes of every tenant that grew: `(tenant, first stored index, hashes)`.
///
/// One `Appender` per tenant on top of its committed tree (size = `next_seq` before the group).
/// Each appender reads its right edge once: a first pass over empty maps collects every index
/// needed, one query fetches them for all tenants, and a second pass appends.
async fn append_trees<'t>(
    tx: &tokio_postgres::Transaction<'_>,
    tenants: &BTreeMap<String, TenantRow>,
    leaves: &BTreeMap<&'t str, Vec<[u8; 32]>>,
) -> Result<Vec<(&'t str, u64, Vec<[u8; 32]>)>, Failure> {
    let base = |tenant: &str, n: usize| -> Result<u64, Failure> {
        let st = tenants.get(tenant).ok_or_else(|| {
            Failure::Fatal(StoreError::Unavailable(format!(
                "tenant row of {tenant} was not locked"
            )))
        })?;
        Ok(st.next_seq - n as u64)
    };
    let empty = HashMap::new();
    let mut want_t: Vec<&str> = Vec::new();
    let mut want_i: Vec<i64> = Vec::new();
    for (tenant, ls) in leaves {
        let r = MapReader::new(&empty);
        let _ = Appender::new(&r, base(tenant, ls.len())?);
        for i in r.take_missing() {
            want_t.push(tenant);
            want_i.push(i as i64);
        }
    }
    let mut known: HashMap<&str, HashMap<u64, [u8; 32]>> = HashMap::new();
    if !want_t.is_empty() {
        let rows = tx
            .query(
                "SELECT h.tenant_id, h.idx, h.hash FROM tree_hashes h \
                 JOIN unnest($1::text[], $2::bigint[]) AS w(tenant_id, idx) \
                 ON h.tenant_id = w.tenant_id AND h.idx = w.idx",
                &[&want_t, &want_i],
            )
            .await
            .map_err(pg)?;
        for r in &rows {
            let t: String = r.get(0);
            let idx: i64 = r.get(1);
            let h: Vec<u8> = r.get(2);
            let h: [u8; 32] = h.try_into().map_err(|_| {
                Failure::Fatal(StoreError::Corrupt(format!(
                    "stored hash {idx} of {t} is not 32 bytes"
                )))
            })?;
            if let Some((name, _)) = leaves.get_key_value(t.as_str()) {
                known.entry(*name).or_default().insert(idx as u64, h);
            }
        }
    }
    let mut out = Vec::with_capacity(leaves.len());
    for (tenant, ls) in leaves {
        let map = known.get(tenant).unwrap_or(&empty);
        let r = MapReader::new(map);
        let mut app = Appender::new(&r, base(tenant, ls.len())?)
            .map_err(|e| Failure::Fatal(StoreError::Corrupt(format!("tree of {tenant}: {e}"))))?;
        for l in ls {
            app.push(*l);
        }
        let (first, hashes) = app.into_pending();
        out.push((*tenant, first, hashes));
    }
    Ok(out)
}
