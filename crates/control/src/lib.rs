//! trailkeep's control features as pure logic: dual approvals ([`approvals`]), impersonation
//! sessions ([`sessions`]) and alert rules ([`rules`]).
//!
//! The log is the source of truth. Every state kept here is a fold over the events of the
//! tenants' logs: `approval.*` steps that trailkeep writes itself, `impersonation.*` events and
//! events carrying `impersonation_session` that clients send. A store rebuilds the state by
//! calling `apply` on each event in log order (or keeps it in tables updated in the same
//! transaction as the events), and asks the decision functions what to write next:
//!
//! - a decision function takes the current state, the authenticated caller and `now`, and
//!   returns the events to append (a [`approvals::NewStep`] each), or a [`Refusal`] saying what
//!   went wrong and what to do;
//! - the caller appends those events atomically with whatever triggered them, then applies them
//!   to the state like any other event.
//!
//! Decisions are made under the store's per-tenant write lock, so two racing approvals, or two
//! events using one approval, are decided one after the other against the state the first one
//! left: exactly one succeeds.
//!
//! Architecture invariant: no I/O, no async, no clock reads. Time is always passed in.

pub mod approvals;
pub mod rules;
pub mod sessions;

use serde::Serialize;
use trailkeep_core::Timestamp;

/// Why a request or an event was refused: a class (which HTTP status the server answers), a
/// stable machine code, the JSON path of the offending field when there is one, and a message
/// for humans that says what went wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub kind: RefusalKind,
    /// Stable snake_case code, e.g. `approval_expired`.
    pub code: &'static str,
    /// Dotted JSON path of the field at fault (`payload.session_id`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub message: String,
}

/// The class of a [`Refusal`], which decides the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalKind {
    /// The input is malformed or breaks a rule of the contract (422).
    Invalid,
    /// The caller may not do this (403): e.g. the requester's key approving its own request.
    Forbidden,
    /// The approval, session or other object named does not exist (404).
    NotFound,
    /// The object is not in a state that allows this (409): decided, expired, used.
    Conflict,
    /// Something trailkeep itself could not do (500); never caused by the caller.
    Internal,
}

impl RefusalKind {
    /// The HTTP status the server answers with.
    pub fn http_status(self) -> u16 {
        match self {
            RefusalKind::Invalid => 422,
            RefusalKind::Forbidden => 403,
            RefusalKind::NotFound => 404,
            RefusalKind::Conflict => 409,
            RefusalKind::Internal => 500,
        }
    }
}

impl Refusal {
    pub(crate) fn new(kind: RefusalKind, code: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            kind,
            code,
            path: None,
            message: message.into(),
        }
    }

    pub(crate) fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// The refusal as a validation issue of event `index` of a request (section 3 of the API
    /// errors: index, path, message).
    pub fn to_issue(&self, index: usize) -> trailkeep_core::Issue {
        trailkeep_core::Issue::new(index, self.path.clone().unwrap_or_default(), &self.message)
    }
}

/// What [`approvals::Approvals::apply`] and [`sessions::Sessions::apply`] did with an event.
///
/// A fold never fails: the log is what it is. Events that do not concern the fold are
/// [`Applied::NotMine`]; events that concern it but cannot change the state (a second
/// `impersonation.start` for an open session, an approval step whose payload was purged or
/// does not parse, an approve after the request was decided) are [`Applied::Ignored`] with the
/// reason, which a store may log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Changed,
    NotMine,
    Ignored(String),
}

/// `t + d`, saturating at the representable range.
pub(crate) fn add(t: Timestamp, d: std::time::Duration) -> Timestamp {
    let n = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
    Timestamp::from_nanos(t.nanos.saturating_add(n), t.digits)
}

/// Whole seconds from `a` to `b` (0 if `b` is before `a`).
pub(crate) fn seconds_between(a: Timestamp, b: Timestamp) -> u64 {
    u64::try_from(b.nanos.saturating_sub(a.nanos).max(0) / 1_000_000_000).unwrap_or(0)
}

/// Parses a stored event's canonical payload as a typed struct.
pub(crate) fn parse_payload<T: serde::de::DeserializeOwned>(
    e: &trailkeep_core::StoredEvent,
) -> Result<T, String> {
    let Some(p) = &e.payload else {
        return Err(format!(
            "the payload of {} at seq {} was purged",
            e.event_type, e.seq
        ));
    };
    serde_json::from_slice(p).map_err(|err| {
        format!(
            "the payload of {} at seq {} does not parse: {err}",
            e.event_type, e.seq
        )
    })
}
