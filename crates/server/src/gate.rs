//! The ingest gate: events whose acceptance depends on what the log already holds.
//!
//! Most events are accepted on their own content. A few are not:
//!
//! - `impersonation.start` is refused while a session with its `session_id` is open in the
//!   tenant, and `impersonation.end` unless one is ([`Sessions::check_batch`]);
//! - an event carrying an `approval_id` must use an approved, unexpired, unused approval of its
//!   tenant whose digest is that of the event's type and canonical payload, and an event of a
//!   type in `[approvals] required_for` must carry one ([`Approvals::check_ingest`]). The event
//!   is appended together with the `approval.used` step that marks the approval used, in one
//!   atomic append: both are stored, or neither.
//!
//! # Atomicity
//!
//! A request holding such an event takes the control lock of each of its tenants
//! ([`trailkeep_store::Store::control_lock`]: per tenant, across every process on a PostgreSQL
//! database), in tenant order so that two requests never wait for each other in a cycle, then
//! reads the tenant's state from the log, checks, appends, and only then lets go. Two requests
//! using one approval, or ending one session, are decided one after the other: exactly one
//! succeeds. Requests without such events never take a lock, and the test for them is a few
//! string comparisons per event (`needs_gate`), so ordinary ingest pays nothing.
//!
//! # Re-sends
//!
//! An event already stored with the same content is a duplicate (answered with its original
//! receipt), not a new use: the gate leaves it out of the checks, so re-sending the event that
//! used an approval, or the start of a session still open, is answered as the duplicate it is.
//!
//! Refusals are 422 `validation_failed`, every issue at once with its event's index and the
//! path (`approval_id` or `payload.session_id`); nothing of the request is stored.

use crate::{ApiError, AppState};
use std::collections::BTreeSet;
use trailkeep_control::approvals::{ApprovalConfig, Approvals, NewStep};
use trailkeep_control::sessions::Sessions;
use trailkeep_core::{Issue, NewEvent, Timestamp, Uuid};
use trailkeep_store::{AppendOutcome, PreparedEvent, StoreError};

const START: &str = "impersonation.start";
const END: &str = "impersonation.end";

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

/// Appends a request that [`needs_gate`]: lock, check, append with the `approval.used` steps,
/// unlock. The outcome covers the request's own events only (receipts in request order).
pub(crate) async fn append_gated(
    state: &AppState,
    prepared: Vec<PreparedEvent>,
) -> Result<AppendOutcome, GateError> {
    let config = &state.config.approvals;
    let tenants: BTreeSet<String> = prepared
        .iter()
        .filter(|p| gated(config, &p.event))
        .map(|p| p.event.tenant_id.to_string())
        .collect();
    let mut guards = Vec::with_capacity(tenants.len());
    for t in &tenants {
        guards.push(state.store.control_lock(t).await?);
    }

    // The events to check: gated ones not already stored with the same content. `index` maps
    // each back to its place in the request.
    let mut checked: Vec<NewEvent> = Vec::new();
    let mut index: Vec<usize> = Vec::new();
    for (i, p) in prepared.iter().enumerate() {
        if !gated(config, &p.event) {
            continue;
        }
        if let Some(stored) = state.store.get_event(p.event.event_id).await? {
            if p.event.same_content_as(&stored) {
                continue;
            }
        }
        checked.push(p.event.clone());
        index.push(i);
    }

    let now = Timestamp::now_micros();
    let mut issues: Vec<Issue> = Vec::new();
    let mut steps: Vec<NewStep> = Vec::new();
    if checked
        .iter()
        .any(|e| matches!(e.event_type.as_str(), START | END))
    {
        let mut sessions = Sessions::new();
        for t in &tenants {
            for e in crate::projection::events_in_log_order(state, Some(t), "impersonation.")
                .await
                .map_err(GateError::Api)?
            {
                let _ = sessions.apply(&e);
            }
        }
        if let Err(found) = sessions.check_batch(&checked) {
            issues.extend(found);
        }
    }
    if checked
        .iter()
        .any(|e| e.approval_id.is_some() || config.requires(&e.event_type))
    {
        let mut approvals = Approvals::new();
        for t in &tenants {
            for e in crate::projection::events_in_log_order(state, Some(t), "approval.")
                .await
                .map_err(GateError::Api)?
            {
                let _ = approvals.apply(&e);
            }
        }
        match approvals.check_ingest(config, &checked, now) {
            Ok(s) => steps = s,
            Err(found) => issues.extend(found),
        }
    }
    if !issues.is_empty() {
        for issue in &mut issues {
            issue.index = index.get(issue.index).copied().unwrap_or(issue.index);
        }
        issues.sort_by_key(|i| i.index);
        return Err(GateError::Api(ApiError::validation(issues)));
    }

    let own = prepared.len();
    let extra = steps.len();
    let mut all = prepared;
    all.extend(PreparedEvent::new_all(
        steps.into_iter().map(step_event).collect(),
        now,
    ));
    let mut outcome = state.store.append(all).await?;
    drop(guards);
    outcome.receipts.truncate(own);
    // The steps are new whenever they were written: they exist only for events that were new.
    outcome.accepted = outcome.accepted.saturating_sub(extra);
    Ok(outcome)
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

/// Why a gated append failed: a refusal to answer as is, or the store's error (which the
/// handler answers as every append error, ids included).
pub(crate) enum GateError {
    Api(ApiError),
    Store(StoreError),
}

impl From<StoreError> for GateError {
    fn from(e: StoreError) -> Self {
        GateError::Store(e)
    }
}
