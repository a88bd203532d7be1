//! Impersonation sessions: who acted as whom, from when to when, and what they did meanwhile.
//!
//! # The model
//!
//! `impersonation.start` (payload `impersonator`, `impersonated`, `session_id`, `reason`)
//! opens a session in its tenant; `impersonation.end` (`session_id`, optional
//! `actions_taken`) closes it; every other event of the tenant whose `impersonation_session`
//! names the session is an action taken in it. [`Sessions::apply`] folds a tenant's events in
//! log order. A session is identified by its tenant and `session_id`.
//!
//! - A start for a session id that is open in the tenant is refused at ingest
//!   ([`Sessions::check_start`]); a start for an id whose session has ended opens a new
//!   session with that id (the id names the newest one; [`Sessions::history`] gives all).
//! - An end for an unknown or already closed session is refused ([`Sessions::check_end`]).
//!   [`Sessions::check_batch`] runs both checks over a whole request, so a request holding a
//!   start and its end is accepted, and one holding two starts for one id is not.
//! - Events the fold is given despite those rules (logs written before them) are ignored:
//!   the second start, an end of nothing.
//! - Actions are kept as their `seq` and `event_id` only; the API reads the events. An action
//!   naming a session that has not started (a client that sent a request's events out of
//!   order) is held and attached when the start arrives.
//! - `duration_seconds` is whole seconds from `start` to `end`, or to `now` while active (0 if
//!   a backfilled end precedes the start).
//! - A session open longer than `max_session` is [`Sessions::overdue`] until it is marked
//!   alerted ([`Sessions::mark_alerted`]), so it raises one alert. The mark lives only in
//!   memory: the alert outbox, keyed by the session's start seq, is the durable record that
//!   keeps a restart from alerting twice.

use crate::{parse_payload, seconds_between, Applied, Refusal, RefusalKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::Duration;
use trailkeep_core::{Issue, NewEvent, StoredEvent, Timestamp};

/// `impersonation.start`.
pub const START: &str = "impersonation.start";
/// `impersonation.end`.
pub const END: &str = "impersonation.end";

/// Payload of `impersonation.start`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartPayload {
    pub impersonator: String,
    pub impersonated: String,
    pub session_id: String,
    pub reason: String,
}

/// Payload of `impersonation.end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndPayload {
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions_taken: Option<u64>,
}

/// An action taken in a session: where to read the event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionRef {
    pub seq: u64,
    pub event_id: trailkeep_core::Uuid,
}

/// One impersonation session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub session_id: String,
    pub tenant_id: String,
    pub impersonator: String,
    pub impersonated: String,
    pub reason: String,
    pub start: Timestamp,
    pub start_seq: u64,
    pub end: Option<Timestamp>,
    pub end_seq: Option<u64>,
    /// `actions_taken` as the end event reported it (the client's count).
    pub actions_reported: Option<u64>,
    /// The events that carried this session's id, in log order.
    pub actions: Vec<ActionRef>,
    /// Whether the overdue alert was raised.
    pub alerted: bool,
}

impl Session {
    pub fn active(&self) -> bool {
        self.end.is_none()
    }

    /// Whole seconds from start to end, or to `now` while active.
    pub fn duration_seconds(&self, now: Timestamp) -> u64 {
        seconds_between(self.start, self.end.unwrap_or(now))
    }

    /// The session as the API returns it (the list's object; the single-session endpoint adds
    /// `actions`).
    pub fn view(&self, now: Timestamp) -> SessionView {
        SessionView {
            session_id: self.session_id.clone(),
            tenant_id: self.tenant_id.clone(),
            impersonator: self.impersonator.clone(),
            impersonated: self.impersonated.clone(),
            reason: self.reason.clone(),
            start: self.start.to_rfc3339(),
            end: self.end.map(|t| t.to_rfc3339()),
            active: self.active(),
            duration_seconds: self.duration_seconds(now),
        }
    }
}

/// A session in the API's shape: `end` is `null` while active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub session_id: String,
    pub tenant_id: String,
    pub impersonator: String,
    pub impersonated: String,
    pub reason: String,
    pub start: String,
    pub end: Option<String>,
    pub active: bool,
    pub duration_seconds: u64,
}

type Key = (String, String);

/// Every session of the logs folded so far.
#[derive(Debug, Clone, Default)]
pub struct Sessions {
    /// All sessions, in the order they started.
    all: Vec<Session>,
    /// (tenant, session id) → index in `all` of the newest session with that id.
    latest: HashMap<Key, usize>,
    /// Actions naming a session not started yet.
    waiting: HashMap<Key, Vec<ActionRef>>,
}

fn key(tenant: &str, id: &str) -> Key {
    (tenant.to_string(), id.to_string())
}

impl Sessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest session with this id in the tenant.
    pub fn get(&self, tenant_id: &str, session_id: &str) -> Option<&Session> {
        self.latest
            .get(&key(tenant_id, session_id))
            .and_then(|&i| self.all.get(i))
    }

    /// The newest session with this id in each tenant that has one (for
    /// `GET /v1/impersonations/{session_id}`, which names no tenant).
    pub fn find(&self, session_id: &str) -> Vec<&Session> {
        let mut v: Vec<&Session> = self
            .latest
            .iter()
            .filter(|((_, id), _)| id == session_id)
            .filter_map(|(_, &i)| self.all.get(i))
            .collect();
        v.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        v
    }

    /// Every session with this id in the tenant, oldest first.
    pub fn history(&self, tenant_id: &str, session_id: &str) -> Vec<&Session> {
        self.all
            .iter()
            .filter(|s| s.tenant_id == tenant_id && s.session_id == session_id)
            .collect()
    }

    /// Sessions of a tenant (or all), active or not (or both), in the order they started.
    pub fn list(&self, tenant_id: Option<&str>, active: Option<bool>) -> Vec<&Session> {
        self.all
            .iter()
            .filter(|s| tenant_id.is_none_or(|t| s.tenant_id == t))
            .filter(|s| active.is_none_or(|a| s.active() == a))
            .collect()
    }

    fn open_index(&self, tenant_id: &str, session_id: &str) -> Option<usize> {
        self.latest
            .get(&key(tenant_id, session_id))
            .copied()
            .filter(|&i| self.all.get(i).is_some_and(Session::active))
    }

    /// Folds one event of a tenant's log (each tenant's events in seq order).
    pub fn apply(&mut self, e: &StoredEvent) -> Applied {
        match e.event_type.as_str() {
            START => {
                let p: StartPayload = match parse_payload(e) {
                    Ok(p) => p,
                    Err(why) => return Applied::Ignored(why),
                };
                if self.open_index(&e.tenant_id, &p.session_id).is_some() {
                    return Applied::Ignored(format!(
                        "impersonation.start at seq {}: session {} is already open",
                        e.seq, p.session_id
                    ));
                }
                let k = key(&e.tenant_id, &p.session_id);
                let actions = self.waiting.remove(&k).unwrap_or_default();
                self.latest.insert(k, self.all.len());
                self.all.push(Session {
                    session_id: p.session_id,
                    tenant_id: e.tenant_id.clone(),
                    impersonator: p.impersonator,
                    impersonated: p.impersonated,
                    reason: p.reason,
                    start: e.timestamp,
                    start_seq: e.seq,
                    end: None,
                    end_seq: None,
                    actions_reported: None,
                    actions,
                    alerted: false,
                });
                Applied::Changed
            }
            END => {
                let p: EndPayload = match parse_payload(e) {
                    Ok(p) => p,
                    Err(why) => return Applied::Ignored(why),
                };
                let Some(i) = self.open_index(&e.tenant_id, &p.session_id) else {
                    return Applied::Ignored(format!(
                        "impersonation.end at seq {}: session {} is not open",
                        e.seq, p.session_id
                    ));
                };
                let s = &mut self.all[i];
                s.end = Some(e.timestamp);
                s.end_seq = Some(e.seq);
                s.actions_reported = p.actions_taken;
                Applied::Changed
            }
            _ => {
                let Some(id) = e.impersonation_session.as_deref() else {
                    return Applied::NotMine;
                };
                let action = ActionRef {
                    seq: e.seq,
                    event_id: e.event_id,
                };
                let k = key(&e.tenant_id, id);
                match self.latest.get(&k).and_then(|&i| self.all.get_mut(i)) {
                    Some(s) => s.actions.push(action),
                    None => self.waiting.entry(k).or_default().push(action),
                }
                Applied::Changed
            }
        }
    }

    /// Whether an `impersonation.start` for `session_id` in the tenant may be logged: refused
    /// (422, path `payload.session_id`) while a session with that id is open.
    pub fn check_start(&self, tenant_id: &str, session_id: &str) -> Result<(), Refusal> {
        match self.open_index(tenant_id, session_id) {
            Some(_) => Err(open_refusal(tenant_id, session_id)),
            None => Ok(()),
        }
    }

    /// Whether an `impersonation.end` for `session_id` in the tenant may be logged: refused
    /// (422, path `payload.session_id`) for an unknown session or one already ended.
    pub fn check_end(&self, tenant_id: &str, session_id: &str) -> Result<(), Refusal> {
        if self.open_index(tenant_id, session_id).is_some() {
            return Ok(());
        }
        let msg = if self.get(tenant_id, session_id).is_some() {
            format!("impersonation session {session_id} in tenant {tenant_id} has already ended")
        } else {
            format!("no impersonation session {session_id} was started in tenant {tenant_id}; send impersonation.start first")
        };
        Err(Refusal::new(RefusalKind::Invalid, "session_not_open", msg).at("payload.session_id"))
    }

    /// Runs [`Sessions::check_start`] and [`Sessions::check_end`] over the events of one
    /// ingest request in order, as if each accepted one had been applied: returns every issue,
    /// with the event's index. Payloads that do not parse are left to the event validator.
    pub fn check_batch(&self, events: &[NewEvent]) -> Result<(), Vec<Issue>> {
        check_events(
            events,
            |t, id| self.open_index(t, id).is_some(),
            |t, id| {
                self.check_end(t, id)
                    .err()
                    .unwrap_or_else(|| not_open_refusal(t, id))
            },
        )
    }

    /// Active sessions open for longer than `max_session` at `now` that have not raised their
    /// alert yet, in the order they started.
    pub fn overdue(&self, now: Timestamp, max_session: Duration) -> Vec<&Session> {
        let limit = i64::try_from(max_session.as_nanos()).unwrap_or(i64::MAX);
        self.all
            .iter()
            .filter(|s| s.active() && !s.alerted)
            .filter(|s| now.nanos.saturating_sub(s.start.nanos) > limit)
            .collect()
    }

    /// Records that the overdue alert of the open session with this id was raised. Returns
    /// false if there is no such open session, or it was already marked.
    pub fn mark_alerted(&mut self, tenant_id: &str, session_id: &str) -> bool {
        match self.open_index(tenant_id, session_id) {
            Some(i) if !self.all[i].alerted => {
                self.all[i].alerted = true;
                true
            }
            _ => false,
        }
    }
}

/// The session id of a start or an end event: `Some((is_start, id))`, `None` for any other
/// event (and for a payload that does not parse, which the event validator reports).
pub fn start_or_end(e: &NewEvent) -> Option<(bool, String)> {
    match e.event_type.as_str() {
        START => serde_json::from_slice::<StartPayload>(&e.payload)
            .ok()
            .map(|p| (true, p.session_id)),
        END => serde_json::from_slice::<EndPayload>(&e.payload)
            .ok()
            .map(|p| (false, p.session_id)),
        _ => None,
    }
}

fn open_refusal(tenant_id: &str, session_id: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Invalid,
        "session_open",
        format!("impersonation session {session_id} is already open in tenant {tenant_id}; end it first, or start one with another session_id"),
    )
    .at("payload.session_id")
}

fn not_open_refusal(tenant_id: &str, session_id: &str) -> Refusal {
    Refusal::new(
        RefusalKind::Invalid,
        "session_not_open",
        format!("no impersonation session {session_id} is open in tenant {tenant_id} (it was never started, or has ended); send impersonation.start first"),
    )
    .at("payload.session_id")
}

/// The checks of one request's start and end events, in order, against the open sessions
/// `is_open` reports, as if each accepted event had been applied. `not_open` words the refusal
/// of an end whose session is not open.
fn check_events(
    events: &[NewEvent],
    is_open: impl Fn(&str, &str) -> bool,
    not_open: impl Fn(&str, &str) -> Refusal,
) -> Result<(), Vec<Issue>> {
    // Sessions whose open state this request changed: (tenant, id) → open.
    let mut changed: HashMap<Key, bool> = HashMap::new();
    let mut issues = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Some((is_start, id)) = start_or_end(e) else {
            continue;
        };
        let k = key(&e.tenant_id, &id);
        let by_request = changed.get(&k).copied();
        let open = by_request.unwrap_or_else(|| is_open(&e.tenant_id, &id));
        let refusal = match (is_start, open, by_request) {
            (true, true, Some(_)) => Some(
                Refusal::new(
                    RefusalKind::Invalid,
                    "session_open",
                    format!("impersonation session {id} is opened by an earlier event of this request; end it first, or start one with another session_id"),
                )
                .at("payload.session_id"),
            ),
            (true, true, None) => Some(open_refusal(&e.tenant_id, &id)),
            (false, false, Some(_)) => Some(
                Refusal::new(
                    RefusalKind::Invalid,
                    "session_not_open",
                    format!("impersonation session {id} in tenant {} is ended by an earlier event of this request", e.tenant_id),
                )
                .at("payload.session_id"),
            ),
            (false, false, None) => Some(not_open(&e.tenant_id, &id)),
            _ => None,
        };
        match refusal {
            Some(r) => issues.push(r.to_issue(i)),
            None => {
                changed.insert(k, is_start);
            }
        }
    }
    if issues.is_empty() {
        Ok(())
    } else {
        Err(issues)
    }
}

/// The open sessions of the logs folded so far, and nothing else: what ingest needs to check
/// a start or an end ([`OpenSessions::check_batch`], the same rules as
/// [`Sessions::check_batch`]), in memory proportional to the sessions open, not to all there
/// ever were. Fed with a tenant's `impersonation.start` and `impersonation.end` events in log
/// order.
#[derive(Debug, Clone, Default)]
pub struct OpenSessions {
    /// (tenant, session id) → seq of the start.
    open: HashMap<Key, u64>,
}

impl OpenSessions {
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one start or end event (others are ignored), with the same rules as
    /// [`Sessions::apply`]: a second start of an open id and an end of nothing change nothing.
    pub fn apply(&mut self, e: &StoredEvent) {
        match e.event_type.as_str() {
            START => {
                if let Ok(p) = parse_payload::<StartPayload>(e) {
                    self.open
                        .entry(key(&e.tenant_id, &p.session_id))
                        .or_insert(e.seq);
                }
            }
            END => {
                if let Ok(p) = parse_payload::<EndPayload>(e) {
                    self.open.remove(&key(&e.tenant_id, &p.session_id));
                }
            }
            _ => {}
        }
    }

    pub fn is_open(&self, tenant_id: &str, session_id: &str) -> bool {
        self.open.contains_key(&key(tenant_id, session_id))
    }

    /// What [`OpenSessions::apply`] does for a start (`is_start`) or an end of `session_id`
    /// logged at `seq`, for a caller that has the session id already.
    pub fn apply_effect(&mut self, tenant_id: &str, session_id: &str, is_start: bool, seq: u64) {
        let k = key(tenant_id, session_id);
        if is_start {
            self.open.entry(k).or_insert(seq);
        } else {
            self.open.remove(&k);
        }
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// [`Sessions::check_batch`] against these open sessions.
    pub fn check_batch(&self, events: &[NewEvent]) -> Result<(), Vec<Issue>> {
        check_events(events, |t, id| self.is_open(t, id), not_open_refusal)
    }
}
