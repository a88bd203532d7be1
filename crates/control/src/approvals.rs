//! Dual approval: a sensitive action is taken only after N distinct people approved exactly it.
//!
//! # The model
//!
//! A service asks for approval of an *action* (`{event_type, payload}`: the event it wants to
//! log). The request's `digest` is the hex SHA-256 of the RFC 8785 canonical JSON of the action
//! ([`digest_of`]), so the action approved and the action later logged can be compared byte for
//! byte.
//!
//! An approval goes through these states ([`Status`]):
//!
//! ```text
//!            approve (distinct keys < N)
//!            ┌─────┐
//!            ▼     │  approve (N-th distinct key)           event with approval_id
//! request ─▶ pending ───────────────────────▶ approved ─────────────────────────▶ used
//!              │  │                              │  │
//!       reject │  │ expires_at passes     reject │  │ expires_at passes
//!              ▼  ▼                              ▼  ▼
//!          rejected  expired                rejected  expired
//! ```
//!
//! - *Distinct approvers are distinct keys.* Each `approver` key is held by one person, so the
//!   count is of key ids: the free-text `approver` field is recorded but never counted. The key
//!   that made the request never counts, and one key approving twice counts once (the second
//!   approve is refused, and a second one found in a log is not counted).
//! - *A rejection ends it*, while it is pending or approved but not yet used (a late veto). The
//!   requester's own key may reject: that withdraws the request.
//! - *Expiry*: a request carries `expires_at` (`now + ttl` when it was made). An approve, a
//!   reject or a use at or after `expires_at` is refused, whatever the state; an approved
//!   approval must be used before `expires_at` too. [`Approval::status_at`] reports `expired`
//!   as soon as the time has passed; an `approval.expired` step records it in the log
//!   ([`Approvals::due_to_expire`], [`decide_expire`]).
//! - *Used once*: an event whose `approval_id` names an approved approval, in the same tenant,
//!   whose `event_type` and canonical `payload` hash to the digest, uses it
//!   ([`decide_use`]). Any later use is refused.
//!
//! # Steps in the log
//!
//! Every step is an `approval.*` event in the approval's tenant, written by trailkeep with the
//! payloads of [`RequestPayload`], [`DecisionPayload`] (approve and reject), [`GrantedPayload`],
//! [`ExpiredPayload`] and [`UsedPayload`]. The actor of a request, approve or reject is the
//! caller's free text (`requested_by`, `approver`); the authenticated key id is in the payload.
//! The actor of `granted`, `expired` and `used` is `trailkeep`. Each step also carries the
//! approval's id in the envelope's `approval_id`.
//!
//! [`Approvals::apply`] folds these events. It re-checks every rule rather than trusting the
//! log: an approve from the requester's key, a repeated key, one after a rejection or after
//! expiry, a second use, or a use whose digest differs is ignored. So no log, whatever it
//! holds, makes the fold report `approved` with fewer than N distinct non-requester keys, or
//! report a second use (tested as a property).
//!
//! `approved` is derived from the approvals counted, not from the `approval.granted` event,
//! which is the human-readable record of the moment (written with the N-th approve, in the
//! same append).

use crate::rules::TypePattern;
use crate::{add, parse_payload, Applied, Refusal, RefusalKind};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::Duration;
use trailkeep_core::{NewEvent, StoredEvent, Timestamp};

/// `approval.request`: a service asked for approval of an action.
pub const REQUEST: &str = "approval.request";
/// `approval.approve`: one key approved.
pub const APPROVE: &str = "approval.approve";
/// `approval.reject`: one key rejected; the request is over.
pub const REJECT: &str = "approval.reject";
/// `approval.granted`: the N-th distinct key approved.
pub const GRANTED: &str = "approval.granted";
/// `approval.expired`: `expires_at` passed before the approval was decided or used.
pub const EXPIRED: &str = "approval.expired";
/// `approval.used`: an event with this `approval_id` carried out the approved action.
pub const USED: &str = "approval.used";

/// The actor of the steps trailkeep takes on its own (granted, expired, used).
pub const SYSTEM_ACTOR: &str = "trailkeep";

/// Longest `requested_by`, `approver` and key id accepted (the envelope's actor limit).
pub const MAX_NAME_BYTES: usize = 256;
/// Longest `reason` or `comment` accepted.
pub const MAX_TEXT_BYTES: usize = 4096;

/// The `[approvals]` configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ApprovalConfig {
    /// Event types (exact or `prefix.*`) that need an approved `approval_id` to be logged.
    pub required_for: Vec<TypePattern>,
    /// Distinct approver keys needed (at least 1; default 2).
    pub approvers: u32,
    /// How long a request stays open, and an approval usable (default 24 h).
    pub ttl: Duration,
}

impl Default for ApprovalConfig {
    fn default() -> Self {
        ApprovalConfig {
            required_for: Vec::new(),
            approvers: 2,
            ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl ApprovalConfig {
    /// Builds the configuration, checking every pattern and the approver count. Errors name
    /// the setting.
    pub fn new(required_for: &[String], approvers: u32, ttl: Duration) -> Result<Self, String> {
        if approvers == 0 {
            return Err("approvals.approvers must be at least 1".into());
        }
        if ttl.is_zero() {
            return Err("approvals.ttl must be longer than 0".into());
        }
        let required_for = required_for
            .iter()
            .map(|p| TypePattern::parse(p).map_err(|e| format!("approvals.required_for: {e}")))
            .collect::<Result<_, _>>()?;
        Ok(ApprovalConfig {
            required_for,
            approvers,
            ttl,
        })
    }

    /// Whether events of this type need an approval.
    pub fn requires(&self, event_type: &str) -> bool {
        self.required_for.iter().any(|p| p.matches(event_type))
    }
}

/// The action an approval is for: the event the service will log once approved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    pub event_type: String,
    pub payload: Map<String, Value>,
}

impl Action {
    /// The action's digest ([`digest_of`] its type and canonical payload).
    pub fn digest(&self) -> Result<String, Refusal> {
        let canonical = serde_json_canonicalizer::to_vec(&self.payload).map_err(|e| {
            Refusal::new(
                RefusalKind::Invalid,
                "invalid_action",
                format!("the action's payload cannot be written as canonical JSON: {e}"),
            )
            .at("action.payload")
        })?;
        Ok(digest_of(&self.event_type, &canonical))
    }
}

/// The digest of an action: hex SHA-256 of the RFC 8785 canonical JSON of
/// `{"event_type": event_type, "payload": payload}`, given the payload already in canonical
/// form (as stored events hold it). The members are in canonical order, and the event type is
/// escaped as RFC 8785 escapes strings, so this equals hashing the canonicalised action.
pub fn digest_of(event_type: &str, canonical_payload: &[u8]) -> String {
    let mut head = Vec::with_capacity(event_type.len() + 32);
    head.extend_from_slice(b"{\"event_type\":");
    trailkeep_core::leaf::write_json_string(&mut head, event_type);
    head.extend_from_slice(b",\"payload\":");
    let mut h = Sha256::new();
    h.update(&head);
    h.update(canonical_payload);
    h.update(b"}");
    hex::encode(h.finalize())
}

/// The body of `POST /v1/approvals`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestInput {
    pub tenant_id: String,
    pub requested_by: String,
    pub reason: String,
    pub action: Action,
}

/// The body of `POST /v1/approvals/{id}/approve` and `…/reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionInput {
    pub approver: String,
    #[serde(default)]
    pub comment: Option<String>,
}

/// Payload of `approval.request`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestPayload {
    pub approval_id: String,
    pub requested_by: String,
    /// The key that made the request; it can never approve it.
    pub key_id: String,
    pub reason: String,
    pub action: Action,
    pub digest: String,
    /// N at the time of the request (a later configuration change does not alter it).
    pub approvers_required: u32,
    /// RFC 3339, UTC.
    pub expires_at: String,
}

/// Payload of `approval.approve` and `approval.reject`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionPayload {
    pub approval_id: String,
    /// The authenticated key that decided: what is counted.
    pub key_id: String,
    /// The free text the caller gave: recorded, never counted.
    pub approver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// The digest decided on.
    pub digest: String,
}

/// One counted approver, as `approval.granted` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApproverRef {
    pub key_id: String,
    pub approver: String,
}

/// Payload of `approval.granted`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantedPayload {
    pub approval_id: String,
    pub digest: String,
    pub approvers: Vec<ApproverRef>,
    pub expires_at: String,
}

/// Payload of `approval.expired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiredPayload {
    pub approval_id: String,
    pub digest: String,
    pub expires_at: String,
    /// The state it expired in: `pending` or `approved`.
    pub status: Status,
}

/// Payload of `approval.used`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsedPayload {
    pub approval_id: String,
    pub digest: String,
    /// The event that carried out the action (written in the same append).
    pub event_id: String,
    pub event_type: String,
}

/// One event trailkeep must append for a step, in the approval's tenant.
///
/// The store turns it into an event with a fresh `event_id`, `timestamp` = [`NewStep::at`]
/// (the `now` the decision was made with: the fold compares step times with `expires_at`),
/// `approval_id` = [`NewStep::approval_id`] and the canonical payload as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub tenant_id: String,
    pub event_type: &'static str,
    pub actor: String,
    pub approval_id: String,
    /// RFC 8785 canonical JSON.
    pub payload: Vec<u8>,
    pub at: Timestamp,
}

impl NewStep {
    fn new<P: Serialize>(
        tenant_id: &str,
        event_type: &'static str,
        actor: &str,
        approval_id: &str,
        payload: &P,
        at: Timestamp,
    ) -> Result<NewStep, Refusal> {
        let payload = serde_json_canonicalizer::to_vec(payload).map_err(|e| {
            Refusal::new(
                RefusalKind::Internal,
                "step_encoding",
                format!("could not encode the {event_type} step: {e}"),
            )
        })?;
        Ok(NewStep {
            tenant_id: tenant_id.to_string(),
            event_type,
            actor: actor.to_string(),
            approval_id: approval_id.to_string(),
            payload,
            at,
        })
    }
}

/// The state of an approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Rejected,
    Expired,
    Used,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Used => "used",
        }
    }

    /// Parses the `status` query parameter.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pending" => Status::Pending,
            "approved" => Status::Approved,
            "rejected" => Status::Rejected,
            "expired" => Status::Expired,
            "used" => Status::Used,
            _ => return None,
        })
    }
}

/// One approve or reject, as folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub key_id: String,
    pub approver: String,
    pub comment: Option<String>,
    pub at: Timestamp,
    pub seq: u64,
}

/// The use of an approval, as folded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Use {
    pub event_id: String,
    pub event_type: String,
    pub at: Timestamp,
    pub seq: u64,
}

/// One approval: its request and every step folded so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    pub id: String,
    pub tenant_id: String,
    pub requested_by: String,
    pub requester_key: String,
    pub reason: String,
    pub action: Action,
    pub digest: String,
    pub approvers_required: u32,
    pub requested_at: Timestamp,
    pub expires_at: Timestamp,
    pub request_seq: u64,
    /// The approvals that count: distinct keys, none the requester's, each before expiry.
    pub approvals: Vec<Decision>,
    pub rejection: Option<Decision>,
    /// Seq of the `approval.granted` event, once folded.
    pub granted_seq: Option<u64>,
    /// When an `approval.expired` step was logged.
    pub expired_at: Option<Timestamp>,
    pub used: Option<Use>,
}

impl Approval {
    /// The state as the log records it (without looking at the clock).
    pub fn status(&self) -> Status {
        if self.rejection.is_some() {
            Status::Rejected
        } else if self.used.is_some() {
            Status::Used
        } else if self.expired_at.is_some() {
            Status::Expired
        } else if self.approvals.len() >= self.approvers_required as usize {
            Status::Approved
        } else {
            Status::Pending
        }
    }

    /// The state at `now`: like [`Approval::status`], but `expired` as soon as `expires_at`
    /// has passed for a pending or unused approved approval, logged or not.
    pub fn status_at(&self, now: Timestamp) -> Status {
        match self.status() {
            Status::Pending | Status::Approved if now >= self.expires_at => Status::Expired,
            s => s,
        }
    }

    /// Whether `key_id` already counts as an approver.
    pub fn approved_by(&self, key_id: &str) -> bool {
        self.approvals.iter().any(|d| d.key_id == key_id)
    }

    /// The approval as the API returns it at `now`.
    pub fn view(&self, now: Timestamp) -> ApprovalView {
        let decision = |d: &Decision| DecisionView {
            key_id: d.key_id.clone(),
            approver: d.approver.clone(),
            comment: d.comment.clone(),
            at: d.at.to_rfc3339(),
        };
        ApprovalView {
            id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            status: self.status_at(now),
            digest: self.digest.clone(),
            expires_at: self.expires_at.to_rfc3339(),
            requested_by: self.requested_by.clone(),
            requested_by_key_id: self.requester_key.clone(),
            requested_at: self.requested_at.to_rfc3339(),
            reason: self.reason.clone(),
            action: self.action.clone(),
            approvers_required: self.approvers_required,
            approvals: self.approvals.iter().map(decision).collect(),
            rejection: self.rejection.as_ref().map(decision),
            used_by: self.used.as_ref().map(|u| UsedView {
                event_id: u.event_id.clone(),
                event_type: u.event_type.clone(),
                at: u.at.to_rfc3339(),
            }),
        }
    }

    /// The refusal for a step at `now` on an approval no longer open to it, if any.
    fn closed(&self, now: Timestamp, what: &str) -> Option<Refusal> {
        let id = &self.id;
        match self.status_at(now) {
            Status::Rejected => Some(Refusal::new(
                RefusalKind::Conflict,
                "approval_rejected",
                format!("approval {id} was rejected; {what} is no longer possible: ask for a new approval"),
            )),
            Status::Expired => Some(Refusal::new(
                RefusalKind::Conflict,
                "approval_expired",
                format!(
                    "approval {id} expired at {}; {what} is no longer possible: ask for a new approval",
                    self.expires_at
                ),
            )),
            Status::Used => Some(Refusal::new(
                RefusalKind::Conflict,
                "approval_used",
                format!("approval {id} was already used; an approval is used once: ask for a new approval"),
            )),
            Status::Pending | Status::Approved => None,
        }
    }

    /// Checks that an event of `event_type` with this canonical payload, in `tenant_id`, may
    /// use this approval at `now`: approved, not yet used, not expired, same tenant, same
    /// digest. The path of every refusal is `approval_id`.
    pub fn check_use(
        &self,
        tenant_id: &str,
        event_type: &str,
        canonical_payload: &[u8],
        now: Timestamp,
    ) -> Result<(), Refusal> {
        let id = &self.id;
        let refuse = |code, msg: String| {
            Err(Refusal::new(RefusalKind::Invalid, code, msg).at("approval_id"))
        };
        if self.tenant_id != tenant_id {
            return refuse(
                "approval_unknown",
                format!("approval {id} does not exist in tenant {tenant_id}"),
            );
        }
        if let Some(r) = self.closed(now, "using it") {
            return refuse(r.code, r.message);
        }
        if self.status() == Status::Pending {
            return refuse(
                "approval_pending",
                format!(
                    "approval {id} is not approved yet ({} of {} approvers); wait until its status is approved",
                    self.approvals.len(),
                    self.approvers_required
                ),
            );
        }
        if digest_of(event_type, canonical_payload) != self.digest {
            return refuse(
                "approval_mismatch",
                format!(
                    "this event is not the action approval {id} approved: its event_type and payload must be exactly those of the request ({})",
                    self.action.event_type
                ),
            );
        }
        Ok(())
    }
}

/// An approve or reject as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DecisionView {
    pub key_id: String,
    pub approver: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub at: String,
}

/// The event that used an approval, as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsedView {
    pub event_id: String,
    pub event_type: String,
    pub at: String,
}

/// An approval as `GET /v1/approvals/{id}` returns it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalView {
    pub id: String,
    pub tenant_id: String,
    pub status: Status,
    pub digest: String,
    pub expires_at: String,
    pub requested_by: String,
    pub requested_by_key_id: String,
    pub requested_at: String,
    pub reason: String,
    pub action: Action,
    pub approvers_required: u32,
    pub approvals: Vec<DecisionView>,
    pub rejection: Option<DecisionView>,
    pub used_by: Option<UsedView>,
}

/// Every approval of the logs folded so far, by id.
#[derive(Debug, Clone, Default)]
pub struct Approvals {
    by_id: BTreeMap<String, Approval>,
}

impl Approvals {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, id: &str) -> Option<&Approval> {
        self.by_id.get(id)
    }

    /// Approvals of a tenant (or all), in a given state at `now` (or any), by id.
    pub fn list(
        &self,
        tenant_id: Option<&str>,
        status: Option<Status>,
        now: Timestamp,
    ) -> Vec<&Approval> {
        self.by_id
            .values()
            .filter(|a| tenant_id.is_none_or(|t| a.tenant_id == t))
            .filter(|a| status.is_none_or(|s| a.status_at(now) == s))
            .collect()
    }

    /// Approvals whose `expires_at` has passed while pending or approved and for which no
    /// `approval.expired` step is logged yet: write [`decide_expire`] for each.
    pub fn due_to_expire(&self, now: Timestamp) -> Vec<&Approval> {
        self.by_id
            .values()
            .filter(|a| matches!(a.status(), Status::Pending | Status::Approved))
            .filter(|a| now >= a.expires_at)
            .collect()
    }

    /// Folds one event of a tenant's log (events of each tenant in seq order).
    pub fn apply(&mut self, e: &StoredEvent) -> Applied {
        let ignored = |why: String| Applied::Ignored(why);
        match e.event_type.as_str() {
            REQUEST => {
                let p: RequestPayload = match parse_payload(e) {
                    Ok(p) => p,
                    Err(why) => return ignored(why),
                };
                if self.by_id.contains_key(&p.approval_id) {
                    return ignored(format!("approval {} was already requested", p.approval_id));
                }
                let Ok(expires_at) = Timestamp::parse(&p.expires_at) else {
                    return ignored(format!("approval {}: bad expires_at", p.approval_id));
                };
                match p.action.digest() {
                    Ok(d) if d == p.digest => {}
                    _ => {
                        return ignored(format!(
                            "approval {}: the digest is not the action's",
                            p.approval_id
                        ))
                    }
                }
                self.by_id.insert(
                    p.approval_id.clone(),
                    Approval {
                        id: p.approval_id,
                        tenant_id: e.tenant_id.clone(),
                        requested_by: p.requested_by,
                        requester_key: p.key_id,
                        reason: p.reason,
                        action: p.action,
                        digest: p.digest,
                        approvers_required: p.approvers_required.max(1),
                        requested_at: e.timestamp,
                        expires_at,
                        request_seq: e.seq,
                        approvals: Vec::new(),
                        rejection: None,
                        granted_seq: None,
                        expired_at: None,
                        used: None,
                    },
                );
                Applied::Changed
            }
            APPROVE | REJECT => {
                let p: DecisionPayload = match parse_payload(e) {
                    Ok(p) => p,
                    Err(why) => return ignored(why),
                };
                let a = match self.step_target(e, &p.approval_id, &p.digest) {
                    Ok(a) => a,
                    Err(why) => return ignored(why),
                };
                if let Some(r) = a.closed(e.timestamp, "deciding") {
                    return ignored(r.message);
                }
                let d = Decision {
                    key_id: p.key_id,
                    approver: p.approver,
                    comment: p.comment,
                    at: e.timestamp,
                    seq: e.seq,
                };
                if e.event_type == REJECT {
                    a.rejection = Some(d);
                    return Applied::Changed;
                }
                if a.status() != Status::Pending {
                    return ignored(format!("approval {} was already approved", a.id));
                }
                if d.key_id == a.requester_key {
                    return ignored(format!(
                        "approval {}: the requester's key cannot approve",
                        a.id
                    ));
                }
                if a.approved_by(&d.key_id) {
                    return ignored(format!(
                        "approval {}: key {} already approved",
                        a.id, d.key_id
                    ));
                }
                a.approvals.push(d);
                Applied::Changed
            }
            GRANTED => {
                let p: GrantedPayload = match parse_payload(e) {
                    Ok(p) => p,
                    Err(why) => return ignored(why),
                };
                let a = match self.step_target(e, &p.approval_id, &p.digest) {
                    Ok(a) => a,
                    Err(why) => return ignored(why),
                };
                if a.status() != Status::Approved || a.granted_seq.is_some() {
                    return ignored(format!(
                        "approval {}: granted while {}",
                        a.id,
                        a.status().as_str()
                    ));
                }
                a.granted_seq = Some(e.seq);
                Applied::Changed
            }
            EXPIRED => {
                let p: ExpiredPayload = match parse_payload(e) {
                    Ok(p) => p,
                    Err(why) => return ignored(why),
                };
                let a = match self.step_target(e, &p.approval_id, &p.digest) {
                    Ok(a) => a,
                    Err(why) => return ignored(why),
                };
                if !matches!(a.status(), Status::Pending | Status::Approved) {
                    return ignored(format!(
                        "approval {}: expired while {}",
                        a.id,
                        a.status().as_str()
                    ));
                }
                a.expired_at = Some(e.timestamp);
                Applied::Changed
            }
            USED => {
                let p: UsedPayload = match parse_payload(e) {
                    Ok(p) => p,
                    Err(why) => return ignored(why),
                };
                let a = match self.step_target(e, &p.approval_id, &p.digest) {
                    Ok(a) => a,
                    Err(why) => return ignored(why),
                };
                if let Some(r) = a.closed(e.timestamp, "using it") {
                    return ignored(r.message);
                }
                if a.status() != Status::Approved {
                    return ignored(format!("approval {}: used while pending", a.id));
                }
                if p.event_type != a.action.event_type {
                    return ignored(format!("approval {}: used by another event type", a.id));
                }
                a.used = Some(Use {
                    event_id: p.event_id,
                    event_type: p.event_type,
                    at: e.timestamp,
                    seq: e.seq,
                });
                Applied::Changed
            }
            _ => Applied::NotMine,
        }
    }

    /// The approval a step names, if it exists in the step's tenant with the same digest.
    fn step_target(
        &mut self,
        e: &StoredEvent,
        id: &str,
        digest: &str,
    ) -> Result<&mut Approval, String> {
        match self.by_id.get_mut(id) {
            Some(a) if a.tenant_id == e.tenant_id && a.digest == digest => Ok(a),
            Some(_) => Err(format!(
                "{} at seq {}: approval {id} is of another tenant or digest",
                e.event_type, e.seq
            )),
            None => Err(format!(
                "{} at seq {}: no approval {id} was requested",
                e.event_type, e.seq
            )),
        }
    }

    /// Checks the events of one ingest request against the approvals, in order: an event
    /// with an `approval_id` must use an approval as [`Approval::check_use`] says (and one
    /// approval serves one event of the request at most); an event of a type in
    /// `required_for` must have one. Returns the `approval.used` steps to append with the
    /// events (atomically), or every issue found (`approval_id` path, the event's index).
    pub fn check_ingest(
        &self,
        config: &ApprovalConfig,
        events: &[NewEvent],
        now: Timestamp,
    ) -> Result<Vec<NewStep>, Vec<trailkeep_core::Issue>> {
        let mut steps = Vec::new();
        let mut issues = Vec::new();
        let mut taken: Vec<&str> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            let Some(id) = e.approval_id.as_deref() else {
                if config.requires(&e.event_type) {
                    issues.push(trailkeep_core::Issue::new(
                        i,
                        "approval_id",
                        format!(
                            "events of type {} need dual approval: ask for one with POST /v1/approvals, then send this event with its approval_id once approved",
                            e.event_type
                        ),
                    ));
                }
                continue;
            };
            let Some(a) = self.get(id) else {
                issues.push(trailkeep_core::Issue::new(
                    i,
                    "approval_id",
                    format!("approval {id} does not exist in tenant {}", e.tenant_id),
                ));
                continue;
            };
            if taken.contains(&id) {
                issues.push(trailkeep_core::Issue::new(
                    i,
                    "approval_id",
                    format!("approval {id} is used by an earlier event of this request; an approval is used once"),
                ));
                continue;
            }
            let event_id = e.event_id.hyphenated().to_string();
            match decide_use(a, &event_id, &e.tenant_id, &e.event_type, &e.payload, now) {
                Ok(step) => {
                    taken.push(id);
                    steps.push(step);
                }
                Err(r) => issues.push(r.to_issue(i)),
            }
        }
        if issues.is_empty() {
            Ok(steps)
        } else {
            Err(issues)
        }
    }
}

fn invalid(code: &'static str, path: &str, msg: impl Into<String>) -> Refusal {
    Refusal::new(RefusalKind::Invalid, code, msg).at(path)
}

/// A non-empty name of at most [`MAX_NAME_BYTES`] without control characters.
fn check_name(path: &str, s: &str) -> Result<(), Refusal> {
    if s.trim().is_empty() {
        return Err(invalid(
            "invalid_field",
            path,
            "expected a non-empty string",
        ));
    }
    if s.len() > MAX_NAME_BYTES {
        return Err(invalid(
            "invalid_field",
            path,
            format!("at most {MAX_NAME_BYTES} bytes"),
        ));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(
            "invalid_field",
            path,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

fn check_text(path: &str, s: &str, non_empty: bool) -> Result<(), Refusal> {
    if non_empty && s.trim().is_empty() {
        return Err(invalid(
            "invalid_field",
            path,
            "expected a non-empty string",
        ));
    }
    if s.len() > MAX_TEXT_BYTES {
        return Err(invalid(
            "invalid_field",
            path,
            format!("at most {MAX_TEXT_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Decides `POST /v1/approvals` by key `key_id` at `now`, for a new approval `id` (chosen by
/// the caller, unique). Checks the request as ingest would check the action's event (type
/// pattern, not a type trailkeep reserves, catalogue payload rules, I-JSON numbers, depth), so
/// nothing can be approved that could not then be logged. Returns the `approval.request` step.
pub fn decide_request(
    config: &ApprovalConfig,
    id: &str,
    key_id: &str,
    input: &RequestInput,
    now: Timestamp,
) -> Result<NewStep, Refusal> {
    use trailkeep_core::validate::{is_event_type, is_tenant_id};
    check_name("id", id)?;
    check_name("key_id", key_id)?;
    if !is_tenant_id(&input.tenant_id) {
        return Err(invalid(
            "invalid_field",
            "tenant_id",
            "expected a tenant id: letters, digits and _.:- (at most 128), or _global",
        ));
    }
    check_name("requested_by", &input.requested_by)?;
    check_text("reason", &input.reason, true)?;
    let t = &input.action.event_type;
    if !is_event_type(t) {
        return Err(invalid(
            "invalid_field",
            "action.event_type",
            "expected an event type such as tenant.disable (lower case, dot-separated, at most 128 bytes)",
        ));
    }
    if trailkeep_core::catalogue::is_reserved(t) {
        return Err(invalid(
            "reserved_type",
            "action.event_type",
            format!("{t} is written by trailkeep itself and cannot be approved"),
        ));
    }
    let mut issues = Vec::new();
    let payload = Value::Object(input.action.payload.clone());
    let mut path = String::from("action.payload");
    trailkeep_core::numbers::walk(
        &payload,
        &mut path,
        1,
        trailkeep_core::MAX_PAYLOAD_DEPTH,
        &mut |p, m| issues.push(trailkeep_core::Issue::new(0, p, m)),
    );
    trailkeep_core::catalogue::check_payload(
        0,
        t,
        &input.tenant_id,
        &input.action.payload,
        &mut issues,
    );
    if let Some(first) = issues.first() {
        let path = match first.path.strip_prefix("payload") {
            Some(rest) => format!("action.payload{rest}"),
            None if first.path == "tenant_id" => "tenant_id".to_string(),
            None => first.path.clone(),
        };
        return Err(invalid("invalid_action", &path, &first.message));
    }
    let digest = input.action.digest()?;
    let payload = RequestPayload {
        approval_id: id.to_string(),
        requested_by: input.requested_by.clone(),
        key_id: key_id.to_string(),
        reason: input.reason.clone(),
        action: input.action.clone(),
        digest,
        approvers_required: config.approvers.max(1),
        expires_at: add(now, config.ttl).to_rfc3339(),
    };
    NewStep::new(
        &input.tenant_id,
        REQUEST,
        &input.requested_by,
        id,
        &payload,
        now,
    )
}

fn check_decision(
    a: &Approval,
    key_id: &str,
    input: &DecisionInput,
    now: Timestamp,
    what: &str,
) -> Result<(), Refusal> {
    check_name("key_id", key_id)?;
    check_name("approver", &input.approver)?;
    if let Some(c) = &input.comment {
        check_text("comment", c, false)?;
    }
    if let Some(r) = a.closed(now, what) {
        return Err(r);
    }
    Ok(())
}

/// Decides `POST /v1/approvals/{id}/approve` by key `key_id` at `now`: the `approval.approve`
/// step, followed by `approval.granted` when this is the N-th distinct key.
///
/// Refused: the requester's key (403), a key that already approved (409), a request already
/// approved, rejected, used or expired (409), a malformed body (422).
pub fn decide_approve(
    a: &Approval,
    key_id: &str,
    input: &DecisionInput,
    now: Timestamp,
) -> Result<Vec<NewStep>, Refusal> {
    check_decision(a, key_id, input, now, "approving it")?;
    let id = &a.id;
    if a.status() == Status::Approved {
        return Err(Refusal::new(
            RefusalKind::Conflict,
            "approval_approved",
            format!("approval {id} is already approved; no further approval is needed"),
        ));
    }
    if key_id == a.requester_key {
        return Err(Refusal::new(
            RefusalKind::Forbidden,
            "approver_is_requester",
            format!("key {key_id} asked for approval {id} and cannot approve it: another approver's key must"),
        ));
    }
    if a.approved_by(key_id) {
        return Err(Refusal::new(
            RefusalKind::Conflict,
            "approver_repeated",
            format!("key {key_id} already approved {id}; it counts once: another approver's key must approve"),
        ));
    }
    let decision = DecisionPayload {
        approval_id: id.clone(),
        key_id: key_id.to_string(),
        approver: input.approver.clone(),
        comment: input.comment.clone(),
        digest: a.digest.clone(),
    };
    let mut steps = vec![NewStep::new(
        &a.tenant_id,
        APPROVE,
        &input.approver,
        id,
        &decision,
        now,
    )?];
    if a.approvals.len() + 1 >= a.approvers_required as usize {
        let approvers = a
            .approvals
            .iter()
            .map(|d| ApproverRef {
                key_id: d.key_id.clone(),
                approver: d.approver.clone(),
            })
            .chain(std::iter::once(ApproverRef {
                key_id: key_id.to_string(),
                approver: input.approver.clone(),
            }))
            .collect();
        let granted = GrantedPayload {
            approval_id: id.clone(),
            digest: a.digest.clone(),
            approvers,
            expires_at: a.expires_at.to_rfc3339(),
        };
        steps.push(NewStep::new(
            &a.tenant_id,
            GRANTED,
            SYSTEM_ACTOR,
            id,
            &granted,
            now,
        )?);
    }
    Ok(steps)
}

/// Decides `POST /v1/approvals/{id}/reject` by key `key_id` at `now`: the `approval.reject`
/// step. Any key allowed to decide may reject, the requester's included (a withdrawal), while
/// the approval is pending or approved and unused.
pub fn decide_reject(
    a: &Approval,
    key_id: &str,
    input: &DecisionInput,
    now: Timestamp,
) -> Result<NewStep, Refusal> {
    check_decision(a, key_id, input, now, "rejecting it")?;
    let decision = DecisionPayload {
        approval_id: a.id.clone(),
        key_id: key_id.to_string(),
        approver: input.approver.clone(),
        comment: input.comment.clone(),
        digest: a.digest.clone(),
    };
    NewStep::new(&a.tenant_id, REJECT, &input.approver, &a.id, &decision, now)
}

/// The `approval.expired` step for an approval whose time has passed at `now` while pending
/// or approved and unused; `None` otherwise (not yet due, or already decided, used or
/// recorded as expired).
pub fn decide_expire(a: &Approval, now: Timestamp) -> Option<NewStep> {
    let status = a.status();
    if !matches!(status, Status::Pending | Status::Approved) || now < a.expires_at {
        return None;
    }
    let p = ExpiredPayload {
        approval_id: a.id.clone(),
        digest: a.digest.clone(),
        expires_at: a.expires_at.to_rfc3339(),
        status,
    };
    NewStep::new(&a.tenant_id, EXPIRED, SYSTEM_ACTOR, &a.id, &p, now).ok()
}

/// Decides the use of approval `a` by the event `event_id` (of `event_type`, with this
/// canonical payload, in `tenant_id`) at `now` ([`Approval::check_use`]): the `approval.used`
/// step to append with that event.
pub fn decide_use(
    a: &Approval,
    event_id: &str,
    tenant_id: &str,
    event_type: &str,
    canonical_payload: &[u8],
    now: Timestamp,
) -> Result<NewStep, Refusal> {
    a.check_use(tenant_id, event_type, canonical_payload, now)?;
    let p = UsedPayload {
        approval_id: a.id.clone(),
        digest: a.digest.clone(),
        event_id: event_id.to_string(),
        event_type: event_type.to_string(),
    };
    NewStep::new(&a.tenant_id, USED, SYSTEM_ACTOR, &a.id, &p, now)
}
