//! The ingest gate: events whose acceptance depends on what the log already holds.
//!
//! Most events are accepted on their own content. A few are not:
//!
//! - `impersonation.start` is refused while a session with its `session_id` is open in the
//!   tenant, and `impersonation.end` unless one is ([`OpenSessions::check_batch`]);
//! - an event carrying an `approval_id` must use an approved, unexpired, unused approval of its
//!   tenant whose digest is that of the event's type and canonical payload, and an event of a
//!   type in `[approvals] required_for` must carry one ([`Approvals::check_ingest`]). The event
//!   is appended together with the `approval.used` step that marks the approval used, in one
//!   atomic append: both are stored, or neither.
//!
//! # Atomicity without serialising ingest
//!
//! A request holding such events takes one control lock per session and per approval they
//! name ([`trailkeep_store::Store::control_lock`]; on PostgreSQL shared by every process on the
//! database), then brings its view of those tenants' state up to date from the log, checks,
//! appends, and only then lets go. Every change to a session or an approval goes through its
//! lock and is durable before the lock is released, so the view read under the lock is exact:
//! two requests ending one session, or using one approval, are decided one after the other and
//! exactly one succeeds. Requests about different sessions hold different locks and go on
//! together, into the same commit group. Requests without such events take no lock at all;
//! telling them apart ([`needs_gate`]) is a few string comparisons per event.
//!
//! The view ([`ControlCache`]) is per tenant: the open sessions and the approvals folded from
//! the tenant's `impersonation.*` and `approval.*` events, each with the seq it has read up to.
//! It only ever moves forward through the log ([`trailkeep_store::Store::read_log_matching`]
//! reads just those events, from where it stopped), so each is read once per process, and
//! changes made by other processes on the same PostgreSQL database are read like any other.
//!
//! # Re-sends
//!
//! An event already stored with the same content is a duplicate (answered with its original
//! receipt), not a new use. When a check fails, the gate looks the refused events up: one that
//! is stored with the same content is dropped from the refusal (and uses nothing), so
//! re-sending the event that used an approval, or the start of a session still open, is
//! answered as the duplicate it is.
//!
//! Refusals are 422 `validation_failed`, every issue at once with its event's index and the
//! path (`approval_id` or `payload.session_id`); nothing of the request is stored.

use crate::{ApiError, AppState};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use trailkeep_control::approvals::{ApprovalConfig, Approvals, NewStep};
use trailkeep_control::sessions::{start_or_end, OpenSessions};
use trailkeep_core::{Issue, NewEvent, Timestamp, Uuid};
use trailkeep_store::{AppendOutcome, PreparedEvent, StoreError, TypeFilter};

const START: &str = "impersonation.start";
const END: &str = "impersonation.end";

/// Events read per step while a view catches up.
const CATCH_UP_BATCH: usize = 1_000;

/// Whether the event's acceptance depends on the log's state.
#[inline]
fn gated(config: &ApprovalConfig, e: &NewEvent) -> bool {
    e.approval_id.is_some()
        || matches!(e.event_type.as_str(), START | END)
        || config.requires(&e.event_type)
}

/// Whether any event of the request goes through the gate.
#[inline]
pub(crate) fn needs_gate(config: &ApprovalConfig, events: &[PreparedEvent]) -> bool {
    events.iter().any(|p| gated(config, &p.event))
}

/// The control lock of impersonation session `id` of `tenant`.
pub(crate) fn session_lock(tenant: &str, id: &str) -> String {
    format!("{tenant}\u{1f}imp\u{1f}{id}")
}

/// The control lock of approval `id` of `tenant`.
pub(crate) fn approval_lock(tenant: &str, id: &str) -> String {
    format!("{tenant}\u{1f}apr\u{1f}{id}")
}

/// Requests deciding under control locks at once, per process. On PostgreSQL each holds a
/// pooled connection for its locks and needs others meanwhile (its reads, a committer's), so
/// their number stays well below the pool's 16 connections; others queue here first.
pub const DECIDING_AT_ONCE: usize = 4;

/// Per tenant, the state the gate checks against, folded from the log (see the module doc).
pub struct ControlCache {
    tenants: std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<TenantControl>>>>,
    deciding: Arc<tokio::sync::Semaphore>,
}

impl Default for ControlCache {
    fn default() -> Self {
        ControlCache {
            tenants: Default::default(),
            deciding: Arc::new(tokio::sync::Semaphore::new(DECIDING_AT_ONCE)),
        }
    }
}

#[derive(Default)]
struct TenantControl {
    sessions_seq: u64,
    sessions: OpenSessions,
    /// The open sessions are current without reading the log: this process is the store's
    /// only writer, the view caught up once, and every gated append since applied its own
    /// starts and ends (see [`ControlCache::applied`]).
    sessions_live: bool,
    approvals_seq: u64,
    approvals: Approvals,
}

impl ControlCache {
    /// A turn to take control locks (see [`DECIDING_AT_ONCE`]); held until the decision's
    /// append is done.
    pub(crate) async fn turn(&self) -> Result<tokio::sync::OwnedSemaphorePermit, StoreError> {
        self.deciding
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("the server is shutting down".into()))
    }

    fn tenant(&self, tenant: &str) -> Arc<tokio::sync::Mutex<TenantControl>> {
        let mut map = self.tenants.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_string()).or_default().clone()
    }

    /// The tenant's approvals as the log now says (the caller holds the locks it relies on).
    pub(crate) async fn approvals(
        &self,
        state: &AppState,
        tenant: &str,
    ) -> Result<Approvals, StoreError> {
        let t = self.tenant(tenant);
        let mut t = t.lock().await;
        let TenantControl {
            approvals_seq,
            approvals,
            ..
        } = &mut *t;
        let from = vec![(tenant.to_string(), *approvals_seq)];
        let seqs = catch_up(state, "approval.", from, |_, e| {
            let _ = approvals.apply(e);
        })
        .await?;
        if let Some(&seq) = seqs.first() {
            *approvals_seq = seq;
        }
        Ok(approvals.clone())
    }

    /// The open-session views of `tenants` (sorted, distinct), each brought up to date with
    /// its log, locked until the guards drop. One store read covers every tenant (a request
    /// names many). On a store with a single writer a view caught up once stays current from
    /// the gate's own appends ([`ControlCache::applied`]) and is not read again.
    async fn sessions_views(
        &self,
        state: &AppState,
        tenants: &[&str],
    ) -> Result<Vec<tokio::sync::OwnedMutexGuard<TenantControl>>, StoreError> {
        let mut guards = Vec::with_capacity(tenants.len());
        for t in tenants {
            guards.push(self.tenant(t).lock_owned().await);
        }
        let behind: Vec<usize> = (0..guards.len())
            .filter(|&i| !guards[i].sessions_live)
            .collect();
        let from = behind
            .iter()
            .map(|&i| (tenants[i].to_string(), guards[i].sessions_seq))
            .collect();
        let seqs = catch_up(state, "impersonation.", from, |k, e| {
            guards[behind[k]].sessions.apply(e)
        })
        .await?;
        let single_writer = state.store.single_writer();
        for (&i, seq) in behind.iter().zip(seqs) {
            guards[i].sessions_seq = seq;
            guards[i].sessions_live = single_writer;
        }
        Ok(guards)
    }

    /// After a gated append on a store with a single writer (this process): applies the
    /// request's starts and ends to the open-session views, while the request still holds
    /// their sessions' locks, so the next holder of a lock finds the view current. When some
    /// of the request's events were duplicates (already stored: their effect is the log's,
    /// not this request's), the views go back to reading the log instead.
    async fn applied(&self, starts_ends: &[(usize, bool, String)], outcome: &AppendOutcome) {
        let mut by_tenant: std::collections::BTreeMap<&str, Vec<(bool, &str, u64)>> =
            Default::default();
        for (i, is_start, id) in starts_ends {
            if let Some(r) = outcome.receipts.get(*i) {
                by_tenant.entry(r.tenant_id.as_str()).or_default().push((
                    *is_start,
                    id.as_str(),
                    r.seq,
                ));
            }
        }
        for (tenant, effects) in by_tenant {
            let t = self.tenant(tenant);
            let mut g = t.lock().await;
            if !g.sessions_live {
                continue;
            }
            if outcome.duplicates > 0 {
                g.sessions_live = false;
                continue;
            }
            for (is_start, id, seq) in effects {
                g.sessions.apply_effect(tenant, id, is_start, seq);
            }
        }
    }
}

/// Reads the events of `prefix` that each `(tenant, seq)` of `from` has not folded yet, handing
/// each to `apply` with the tenant's index in `from`, in log order per tenant; returns where
/// each tenant's view now stands. One store read covers every tenant, repeated only for
/// tenants with more to read.
async fn catch_up(
    state: &AppState,
    prefix: &str,
    from: Vec<(String, u64)>,
    mut apply: impl FnMut(usize, &trailkeep_core::StoredEvent),
) -> Result<Vec<u64>, StoreError> {
    let types = [TypeFilter::Prefix(prefix.to_string())];
    let mut seqs: Vec<u64> = from.iter().map(|(_, s)| *s).collect();
    let mut behind: Vec<usize> = (0..from.len()).collect();
    while !behind.is_empty() {
        let ask: Vec<(String, u64)> = behind
            .iter()
            .map(|&k| (from[k].0.clone(), seqs[k]))
            .collect();
        let slices = state
            .store
            .read_logs_matching(&ask, &types, CATCH_UP_BATCH)
            .await?;
        let mut still = Vec::new();
        for (&k, slice) in behind.iter().zip(slices) {
            for e in &slice.events {
                apply(k, e);
            }
            let was = seqs[k];
            if slice.next_seq <= was {
                continue;
            }
            seqs[k] = slice.next_seq;
            // A slice that stopped short of its limit and of its window reached the log's end.
            let at_end = slice.events.len() < CATCH_UP_BATCH
                && slice.next_seq - was < trailkeep_store::LOG_SCAN_WINDOW;
            if !at_end {
                still.push(k);
            }
        }
        behind = still;
    }
    Ok(seqs)
}

/// Appends a request that [`needs_gate`]: lock, check, append with the `approval.used` steps,
/// unlock. The outcome covers the request's own events only (receipts in request order).
///
/// The work runs in a task of its own, so that a client hanging up (which drops the handler's
/// future) cannot end it early: the locks are released only once the append is durable and
/// visible, never while it is still on its way.
pub(crate) async fn append_gated(
    state: &AppState,
    prepared: Vec<PreparedEvent>,
) -> Result<AppendOutcome, GateError> {
    let state = state.clone();
    tokio::spawn(async move { append_gated_inner(&state, prepared).await })
        .await
        .map_err(|e| GateError::Api(ApiError::internal(format!("the gated append failed: {e}"))))?
}

async fn append_gated_inner(
    state: &AppState,
    prepared: Vec<PreparedEvent>,
) -> Result<AppendOutcome, GateError> {
    let _turn = state.control.turn().await?;
    // Events found to be re-sends of stored ones: appended (the store answers them as
    // duplicates) but not checked again. Looked up first where a re-send would change how
    // another event of the request is decided: when one session or approval is named by more
    // than one event of the request.
    let mut resent: BTreeSet<usize> = stored_repeats(state, &prepared).await?;
    loop {
        match decide(state, &prepared, &resent).await? {
            Decision::Resent(more) => resent.extend(more),
            Decision::Refused(issues) => return Err(GateError::Api(ApiError::validation(issues))),
            Decision::Accepted(steps, guard) => {
                let own = prepared.len();
                let extra = steps.len();
                // The request's starts and ends with their places (for their receipts).
                let starts_ends: Vec<(usize, bool, String)> = if state.store.single_writer() {
                    prepared
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| start_or_end(&p.event).map(|(s, id)| (i, s, id)))
                        .collect()
                } else {
                    Vec::new()
                };
                let mut all = prepared;
                all.extend(PreparedEvent::new_all(
                    steps.into_iter().map(step_event).collect(),
                    Timestamp::now_micros(),
                ));
                let mut outcome = state.store.append(all).await?;
                if state.store.single_writer() {
                    state.control.applied(&starts_ends, &outcome).await;
                }
                drop(guard);
                outcome.receipts.truncate(own);
                // The steps are new whenever they were written: they exist only for events
                // that were new.
                outcome.accepted = outcome.accepted.saturating_sub(extra);
                return Ok(outcome);
            }
        }
    }
}

/// The control lock names an event's acceptance depends on.
fn lock_names(config: &ApprovalConfig, e: &NewEvent) -> Vec<String> {
    let mut names = Vec::new();
    if !gated(config, e) {
        return names;
    }
    if let Some((_, id)) = start_or_end(e) {
        names.push(session_lock(&e.tenant_id, &id));
    }
    if let Some(id) = e.approval_id.as_deref() {
        names.push(approval_lock(&e.tenant_id, id));
    }
    names
}

/// The gated events, with client-given ids, that share a session or an approval with another
/// event of the request and are stored already with the same content.
async fn stored_repeats(
    state: &AppState,
    prepared: &[PreparedEvent],
) -> Result<BTreeSet<usize>, StoreError> {
    let config = &state.config.approvals;
    let mut count: HashMap<String, usize> = HashMap::new();
    let names: Vec<Vec<String>> = prepared
        .iter()
        .map(|p| lock_names(config, &p.event))
        .collect();
    for n in names.iter().flatten() {
        *count.entry(n.clone()).or_default() += 1;
    }
    let mut out = BTreeSet::new();
    for (i, p) in prepared.iter().enumerate() {
        let shared = names[i]
            .iter()
            .any(|n| count.get(n).is_some_and(|&c| c > 1));
        if !shared || p.event.event_id_assigned {
            continue;
        }
        if let Some(stored) = state.store.get_event(p.event.event_id).await? {
            if p.event.same_content_as(&stored) {
                out.insert(i);
            }
        }
    }
    Ok(out)
}

/// What [`decide`] came to.
enum Decision {
    /// Append the request with these steps, then drop the guard.
    Accepted(Vec<NewStep>, trailkeep_store::ControlGuard),
    /// Refused: every issue, by request index.
    Refused(Vec<Issue>),
    /// These refused events are stored already with the same content: decide again
    /// without checking them.
    Resent(Vec<usize>),
}

/// Takes the locks, brings the views up to date and checks the request's gated events (all
/// but `skip`), tenant by tenant (sessions and approvals never span tenants).
async fn decide(
    state: &AppState,
    prepared: &[PreparedEvent],
    skip: &BTreeSet<usize>,
) -> Result<Decision, GateError> {
    let config = &state.config.approvals;
    let mut locks = Vec::new();
    // Per tenant: the request indexes of its gated events.
    let mut by_tenant: std::collections::BTreeMap<&str, Vec<usize>> = Default::default();
    for (i, p) in prepared.iter().enumerate() {
        let e = &p.event;
        if skip.contains(&i) || !gated(config, e) {
            continue;
        }
        locks.extend(lock_names(config, e));
        by_tenant.entry(e.tenant_id.as_str()).or_default().push(i);
    }
    let guard = state.store.control_lock(&locks).await?;

    let now = Timestamp::now_micros();
    let mut issues: Vec<Issue> = Vec::new();
    let mut steps: Vec<NewStep> = Vec::new();
    let session_tenants: Vec<&str> = by_tenant
        .iter()
        .filter(|(_, index)| {
            index
                .iter()
                .any(|&i| matches!(prepared[i].event.event_type.as_str(), START | END))
        })
        .map(|(t, _)| *t)
        .collect();
    let views = state
        .control
        .sessions_views(state, &session_tenants)
        .await?;
    for (tenant, index) in &by_tenant {
        let events: Vec<NewEvent> = index.iter().map(|&i| prepared[i].event.clone()).collect();
        let mut found = Vec::new();
        if let Ok(v) = session_tenants.binary_search(tenant) {
            if let Err(f) = views[v].sessions.check_batch(&events) {
                found.extend(f);
            }
        }
        if events
            .iter()
            .any(|e| e.approval_id.is_some() || config.requires(&e.event_type))
        {
            let approvals = state.control.approvals(state, tenant).await?;
            match approvals.check_ingest(config, &events, now) {
                Ok(s) => steps.extend(s),
                Err(f) => found.extend(f),
            }
        }
        for mut issue in found {
            issue.index = index.get(issue.index).copied().unwrap_or(issue.index);
            issues.push(issue);
        }
    }
    drop(views);
    if issues.is_empty() {
        return Ok(Decision::Accepted(steps, guard));
    }
    drop(guard);
    // A refused event already stored with the same content is a re-send: a duplicate, not a
    // refusal.
    let mut resent = Vec::new();
    for issue in &issues {
        if resent.contains(&issue.index) {
            continue;
        }
        if let Some(p) = prepared.get(issue.index) {
            if let Some(stored) = state.store.get_event(p.event.event_id).await? {
                if p.event.same_content_as(&stored) {
                    resent.push(issue.index);
                }
            }
        }
    }
    if !resent.is_empty() {
        return Ok(Decision::Resent(resent));
    }
    issues.sort_by_key(|i| i.index);
    Ok(Decision::Refused(issues))
}

/// A step of an approval as the event trailkeep writes (the approval's tenant, its id in the
/// envelope's `approval_id`, a fresh id).
pub(crate) fn step_event(s: NewStep) -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_id_assigned: true,
        event_type: s.event_type.into(),
        actor: s.actor.into(),
        tenant_id: s.tenant_id.into(),
        payload: s.payload.into(),
        timestamp: s.at,
        timestamp_assigned: true,
        source_ip: None,
        impersonation_session: None,
        approval_id: Some(s.approval_id.into()),
    }
}

/// Why a gated append did not go through.
pub(crate) enum GateError {
    /// A refusal to answer as is.
    Api(ApiError),
    /// The store's error (answered as every append error, ids included).
    Store(StoreError),
}

impl From<StoreError> for GateError {
    fn from(e: StoreError) -> Self {
        GateError::Store(e)
    }
}
