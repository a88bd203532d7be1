//! The dual-approval state machine: decisions, the fold over the steps they write, and the
//! invariant that no log yields `approved` with too few distinct keys, or a second use.

use crate::support::{canonical, event, plus, step_event, ts};
use proptest::prelude::*;
use serde_json::json;
use sha2::{Digest, Sha256};
use std::time::Duration;
use trailkeep_control::approvals::*;
use trailkeep_control::{Applied, RefusalKind};
use trailkeep_core::{NewEvent, StoredEvent, Timestamp, Uuid};

const T: &str = "t_0042";

fn now() -> Timestamp {
    ts("2026-12-04T10:00:00.000Z")
}

fn config(n: u32) -> ApprovalConfig {
    ApprovalConfig::new(
        &["tenant.disable".to_string(), "killswitch.*".to_string()],
        n,
        Duration::from_secs(3600),
    )
    .unwrap()
}

fn action() -> Action {
    Action {
        event_type: "tenant.disable".into(),
        payload: json!({"tenant": "t_0042", "reason": "fraud", "n": 1.5, "é": "\u{1}"})
            .as_object()
            .unwrap()
            .clone(),
    }
}

fn input() -> RequestInput {
    RequestInput {
        tenant_id: T.into(),
        requested_by: "svc:billing".into(),
        reason: "chargebacks".into(),
        action: action(),
    }
}

fn by(approver: &str) -> DecisionInput {
    DecisionInput {
        approver: approver.into(),
        comment: Some("ok".into()),
    }
}

/// A log of one approval: the steps written so far and the fold over them.
struct Log {
    events: Vec<StoredEvent>,
    fold: Approvals,
}

impl Log {
    fn new() -> Log {
        Log {
            events: Vec::new(),
            fold: Approvals::new(),
        }
    }

    fn write(&mut self, steps: &[NewStep]) {
        for s in steps {
            let e = step_event(s, self.events.len() as u64);
            self.fold.apply(&e);
            self.events.push(e);
        }
    }

    fn requested(n: u32) -> Log {
        let mut log = Log::new();
        let step = decide_request(&config(n), "apr_1", "k_req", &input(), now()).unwrap();
        log.write(&[step]);
        log
    }

    fn a(&self) -> &Approval {
        self.fold.get("apr_1").expect("approval")
    }
}

fn payload_bytes() -> Vec<u8> {
    canonical(&serde_json::Value::Object(action().payload))
}

#[test]
fn digest_is_sha256_of_the_canonical_action() {
    let a = action();
    let whole = canonical(&serde_json::to_value(&a).unwrap());
    let want = hex::encode(Sha256::digest(&whole));
    assert_eq!(a.digest().unwrap(), want);
    assert_eq!(digest_of(&a.event_type, &payload_bytes()), want);
    // A different payload or type gives another digest.
    assert_ne!(digest_of("tenant.enable", &payload_bytes()), want);
    assert_ne!(digest_of(&a.event_type, b"{}"), want);
}

#[test]
fn two_distinct_keys_approve_then_one_use() {
    let mut log = Log::requested(2);
    let a = log.a();
    assert_eq!(a.status(), Status::Pending);
    assert_eq!(a.expires_at, plus(now(), 3600));
    assert_eq!(a.requester_key, "k_req");
    assert_eq!(log.events[0].actor, "svc:billing");
    assert_eq!(log.events[0].approval_id.as_deref(), Some("apr_1"));

    let steps = decide_approve(log.a(), "k_1", &by("user:ana"), plus(now(), 10)).unwrap();
    assert_eq!(steps.len(), 1, "one of two: no grant yet");
    assert_eq!(steps[0].event_type, APPROVE);
    log.write(&steps);
    assert_eq!(log.a().status(), Status::Pending);

    let steps = decide_approve(log.a(), "k_2", &by("user:bo"), plus(now(), 20)).unwrap();
    let types: Vec<_> = steps.iter().map(|s| s.event_type).collect();
    assert_eq!(types, [APPROVE, GRANTED]);
    let granted: GrantedPayload = serde_json::from_slice(&steps[1].payload).unwrap();
    assert_eq!(
        granted
            .approvers
            .iter()
            .map(|a| a.key_id.as_str())
            .collect::<Vec<_>>(),
        ["k_1", "k_2"]
    );
    assert_eq!(steps[1].actor, SYSTEM_ACTOR);
    log.write(&steps);
    assert_eq!(log.a().status(), Status::Approved);
    assert_eq!(log.a().granted_seq, Some(3));

    let view = serde_json::to_value(log.a().view(plus(now(), 30))).unwrap();
    assert_eq!(view["status"], "approved");
    assert_eq!(view["digest"], action().digest().unwrap());
    assert_eq!(view["expires_at"], "2026-12-04T11:00:00.000Z");
    assert_eq!(view["approvals"][1]["approver"], "user:bo");
    assert_eq!(view["used_by"], serde_json::Value::Null);

    let used = decide_use(
        log.a(),
        "ev-1",
        T,
        "tenant.disable",
        &payload_bytes(),
        plus(now(), 40),
    )
    .unwrap();
    assert_eq!(used.event_type, USED);
    log.write(&[used]);
    assert_eq!(log.a().status(), Status::Used);
    assert_eq!(log.a().used.as_ref().unwrap().event_id, "ev-1");

    let again = decide_use(
        log.a(),
        "ev-2",
        T,
        "tenant.disable",
        &payload_bytes(),
        plus(now(), 41),
    )
    .unwrap_err();
    assert_eq!(again.code, "approval_used");
    assert_eq!(again.path.as_deref(), Some("approval_id"));
    assert!(again.message.contains("used once"), "{}", again.message);
}

#[test]
fn the_requesters_key_never_approves_whatever_the_name() {
    let log = Log::requested(2);
    let r = decide_approve(log.a(), "k_req", &by("user:someone-else"), now()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Forbidden);
    assert_eq!(r.kind.http_status(), 403);
    assert_eq!(r.code, "approver_is_requester");
}

#[test]
fn one_key_counts_once_whatever_the_name() {
    let mut log = Log::requested(2);
    log.write(&decide_approve(log.a(), "k_1", &by("user:ana"), now()).unwrap());
    let r = decide_approve(log.a(), "k_1", &by("user:bo"), now()).unwrap_err();
    assert_eq!(r.kind, RefusalKind::Conflict);
    assert_eq!(r.code, "approver_repeated");
    assert_eq!(log.a().status(), Status::Pending);
}

#[test]
fn stale_decisions_written_by_racing_servers_do_not_overcount() {
    // Two servers decide from the same state, without the lock: both approve with k_1, and
    // the requester's key forged in too. The fold counts k_1 once and never the requester.
    let mut log = Log::requested(2);
    let stale = log.a().clone();
    let first = decide_approve(&stale, "k_1", &by("user:ana"), now()).unwrap();
    let second = decide_approve(&stale, "k_1", &by("user:ana again"), now()).unwrap();
    log.write(&first);
    log.write(&second);
    let forged = DecisionPayload {
        approval_id: "apr_1".into(),
        key_id: "k_req".into(),
        approver: "user:ana".into(),
        comment: None,
        digest: stale.digest.clone(),
    };
    let e = event(T, 9, APPROVE, "x", Some(canonical(&json!(forged))), now());
    assert!(matches!(log.fold.apply(&e), Applied::Ignored(_)));
    assert_eq!(log.a().approvals.len(), 1);
    assert_eq!(log.a().status(), Status::Pending);
}

#[test]
fn approve_and_reject_at_once_the_first_in_the_log_wins() {
    let mut log = Log::requested(1);
    let stale = log.a().clone();
    let reject = decide_reject(&stale, "k_2", &by("user:bo"), now()).unwrap();
    let approve = decide_approve(&stale, "k_1", &by("user:ana"), now()).unwrap();
    log.write(&[reject]);
    log.write(&approve);
    assert_eq!(log.a().status(), Status::Rejected);
    assert!(log.a().approvals.is_empty());
    // Decided in order against the state, the approve is refused.
    let r = decide_approve(log.a(), "k_1", &by("user:ana"), now()).unwrap_err();
    assert_eq!(r.code, "approval_rejected");
}

#[test]
fn a_rejection_ends_it_even_after_approval_and_the_requester_may_withdraw() {
    let mut log = Log::requested(1);
    log.write(&decide_approve(log.a(), "k_1", &by("user:ana"), now()).unwrap());
    assert_eq!(log.a().status(), Status::Approved);
    log.write(&[decide_reject(log.a(), "k_req", &by("svc:billing"), now()).unwrap()]);
    assert_eq!(log.a().status(), Status::Rejected);
    let r = decide_use(log.a(), "ev", T, "tenant.disable", &payload_bytes(), now()).unwrap_err();
    assert_eq!(r.code, "approval_rejected");
    let r = decide_reject(log.a(), "k_2", &by("user:bo"), now()).unwrap_err();
    assert_eq!(r.code, "approval_rejected");
}

#[test]
fn nothing_happens_after_expiry() {
    let mut log = Log::requested(2);
    log.write(&decide_approve(log.a(), "k_1", &by("user:ana"), now()).unwrap());
    let at = plus(now(), 3600);
    assert_eq!(log.a().status_at(plus(now(), 3599)), Status::Pending);
    assert_eq!(log.a().status_at(at), Status::Expired);
    let r = decide_approve(log.a(), "k_2", &by("user:bo"), at).unwrap_err();
    assert_eq!(r.code, "approval_expired");
    assert!(
        r.message.contains("2026-12-04T11:00:00.000Z"),
        "{}",
        r.message
    );
    assert_eq!(
        decide_reject(log.a(), "k_2", &by("user:bo"), at)
            .unwrap_err()
            .code,
        "approval_expired"
    );

    // A stale approve written after expiry is not counted by the fold.
    let late = decide_approve(log.a(), "k_2", &by("user:bo"), plus(now(), 3599)).unwrap();
    let mut late_log = Log {
        events: log.events.clone(),
        fold: log.fold.clone(),
    };
    let mut shifted = late.clone();
    for s in &mut shifted {
        s.at = at;
    }
    late_log.write(&shifted);
    assert_eq!(late_log.a().approvals.len(), 1);

    assert!(log.fold.due_to_expire(plus(now(), 3599)).is_empty());
    assert!(decide_expire(log.a(), plus(now(), 3599)).is_none());
    let due: Vec<_> = log
        .fold
        .due_to_expire(at)
        .iter()
        .map(|a| a.id.clone())
        .collect();
    assert_eq!(due, ["apr_1"]);
    let step = decide_expire(log.a(), at).unwrap();
    let p: ExpiredPayload = serde_json::from_slice(&step.payload).unwrap();
    assert_eq!(p.status, Status::Pending);
    log.write(&[step]);
    assert_eq!(log.a().status(), Status::Expired);
    assert!(log.fold.due_to_expire(at).is_empty());
    assert!(decide_expire(log.a(), at).is_none());
}

#[test]
fn an_approved_approval_must_be_used_before_it_expires() {
    let mut log = Log::requested(1);
    log.write(&decide_approve(log.a(), "k_1", &by("user:ana"), now()).unwrap());
    let at = plus(now(), 3600);
    let r = decide_use(log.a(), "ev", T, "tenant.disable", &payload_bytes(), at).unwrap_err();
    assert_eq!(r.code, "approval_expired");
    let step = decide_expire(log.a(), at).unwrap();
    let p: ExpiredPayload = serde_json::from_slice(&step.payload).unwrap();
    assert_eq!(p.status, Status::Approved);
}

#[test]
fn use_needs_the_exact_action_in_the_same_tenant() {
    let mut log = Log::requested(1);
    let r = log
        .a()
        .check_use(T, "tenant.disable", &payload_bytes(), now())
        .unwrap_err();
    assert_eq!(r.code, "approval_pending");
    assert!(r.message.contains("0 of 1"), "{}", r.message);
    log.write(&decide_approve(log.a(), "k_1", &by("user:ana"), now()).unwrap());
    let a = log.a();
    assert!(a
        .check_use(T, "tenant.disable", &payload_bytes(), now())
        .is_ok());
    let other = canonical(&json!({"tenant": "t_0042", "reason": "fraud", "n": 1.5}));
    let r = a.check_use(T, "tenant.disable", &other, now()).unwrap_err();
    assert_eq!((r.code, r.kind.http_status()), ("approval_mismatch", 422));
    let r = a
        .check_use(T, "tenant.enable", &payload_bytes(), now())
        .unwrap_err();
    assert_eq!(r.code, "approval_mismatch");
    let r = a
        .check_use("t_other", "tenant.disable", &payload_bytes(), now())
        .unwrap_err();
    assert_eq!(r.code, "approval_unknown");
}

fn new_event(event_type: &str, payload: Vec<u8>, approval_id: Option<&str>, n: u128) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(n),
        event_id_assigned: false,
        event_type: event_type.into(),
        actor: "svc:admin".into(),
        tenant_id: T.into(),
        payload: payload.into(),
        timestamp: now(),
        timestamp_assigned: false,
        source_ip: None,
        impersonation_session: None,
        approval_id: approval_id.map(Into::into),
    }
}

#[test]
fn ingest_refuses_required_types_without_approval_and_double_use_in_a_request() {
    let cfg = config(1);
    let mut log = Log::requested(1);
    let none = [new_event("tenant.disable", payload_bytes(), None, 1)];
    let issues = log.fold.check_ingest(&cfg, &none, now()).unwrap_err();
    assert_eq!(issues[0].index, 0);
    assert_eq!(issues[0].path, "approval_id");
    assert!(
        issues[0].message.contains("POST /v1/approvals"),
        "{}",
        issues[0].message
    );
    // A prefix pattern of required_for applies too; other types pass.
    let ks = [new_event(
        "killswitch.embed.disable",
        b"{}".to_vec(),
        None,
        2,
    )];
    assert!(log.fold.check_ingest(&cfg, &ks, now()).is_err());
    let free = [new_event("crawl.note", b"{}".to_vec(), None, 3)];
    assert_eq!(log.fold.check_ingest(&cfg, &free, now()).unwrap(), vec![]);

    // Pending: refused with the reason.
    let one = [new_event(
        "tenant.disable",
        payload_bytes(),
        Some("apr_1"),
        4,
    )];
    let issues = log.fold.check_ingest(&cfg, &one, now()).unwrap_err();
    assert!(
        issues[0].message.contains("not approved yet"),
        "{}",
        issues[0].message
    );

    log.write(&decide_approve(log.a(), "k_1", &by("user:ana"), now()).unwrap());
    let two = [
        new_event("tenant.disable", payload_bytes(), Some("apr_1"), 5),
        new_event("tenant.disable", payload_bytes(), Some("apr_1"), 6),
    ];
    let issues = log.fold.check_ingest(&cfg, &two, now()).unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!(issues[0].index, 1);
    let steps = log.fold.check_ingest(&cfg, &two[..1], now()).unwrap();
    let used: UsedPayload = serde_json::from_slice(&steps[0].payload).unwrap();
    assert_eq!(used.event_id, Uuid::from_u128(5).hyphenated().to_string());
    log.write(&steps);
    // The second request, decided after the first was applied, is refused.
    let issues = log.fold.check_ingest(&cfg, &two[1..], now()).unwrap_err();
    assert!(
        issues[0].message.contains("already used"),
        "{}",
        issues[0].message
    );

    let unknown = [new_event(
        "tenant.disable",
        payload_bytes(),
        Some("apr_x"),
        7,
    )];
    let issues = log.fold.check_ingest(&cfg, &unknown, now()).unwrap_err();
    assert!(issues[0].message.contains("apr_x does not exist"));
}

#[test]
fn requests_are_checked_like_the_event_they_approve() {
    let cfg = config(2);
    let check = |f: &dyn Fn(&mut RequestInput)| {
        let mut i = input();
        f(&mut i);
        decide_request(&cfg, "apr_1", "k_req", &i, now()).unwrap_err()
    };
    let r = check(&|i| i.action.event_type = "approval.grant".into());
    assert_eq!(
        (r.code, r.path.as_deref()),
        ("reserved_type", Some("action.event_type"))
    );
    let r = check(&|i| i.action.event_type = "Tenant Disable".into());
    assert_eq!(r.path.as_deref(), Some("action.event_type"));
    let r = check(&|i| {
        i.action = Action {
            event_type: "killswitch.embed.disable".into(),
            payload: json!({"target": "embed", "scope": "tenant"})
                .as_object()
                .unwrap()
                .clone(),
        }
    });
    assert_eq!(r.path.as_deref(), Some("action.payload.reason"));
    let r = check(&|i| {
        i.action
            .payload
            .insert("big".into(), json!(9007199254740993u64));
    });
    assert_eq!(r.path.as_deref(), Some("action.payload.big"));
    assert_eq!(
        check(&|i| i.reason = " ".into()).path.as_deref(),
        Some("reason")
    );
    assert_eq!(
        check(&|i| i.tenant_id = "no spaces".into()).path.as_deref(),
        Some("tenant_id")
    );
    assert_eq!(
        check(&|i| i.requested_by = String::new()).path.as_deref(),
        Some("requested_by")
    );
    let r = check(&|i| {
        i.action = Action {
            event_type: "killswitch.embed.disable".into(),
            payload: json!({"target": "embed", "scope": "global", "reason": "x"})
                .as_object()
                .unwrap()
                .clone(),
        }
    });
    assert_eq!(r.path.as_deref(), Some("tenant_id"));
    assert_eq!(r.kind.http_status(), 422);
}

#[test]
fn configuration_rules() {
    assert!(ApprovalConfig::new(&[], 0, Duration::from_secs(1)).is_err());
    assert!(ApprovalConfig::new(&[], 1, Duration::ZERO).is_err());
    let e = ApprovalConfig::new(&["Bad Type".into()], 2, Duration::from_secs(1)).unwrap_err();
    assert!(e.starts_with("approvals.required_for"), "{e}");
    let d = ApprovalConfig::default();
    assert_eq!((d.approvers, d.ttl), (2, Duration::from_secs(86_400)));
    assert!(!d.requires("tenant.disable"));
    // N is fixed at request time.
    let mut log = Log::requested(3);
    assert_eq!(log.a().approvers_required, 3);
    log.write(&decide_approve(log.a(), "k_1", &by("a"), now()).unwrap());
    log.write(&decide_approve(log.a(), "k_2", &by("b"), now()).unwrap());
    assert_eq!(log.a().status(), Status::Pending);
}

#[test]
fn the_fold_ignores_steps_it_cannot_trust() {
    let mut log = Log::requested(2);
    let digest = log.a().digest.clone();
    // A grant without the approvals: ignored.
    let granted = GrantedPayload {
        approval_id: "apr_1".into(),
        digest: digest.clone(),
        approvers: vec![],
        expires_at: "2026-12-04T11:00:00.000Z".into(),
    };
    let e = event(
        T,
        1,
        GRANTED,
        "trailkeep",
        Some(canonical(&json!(granted))),
        now(),
    );
    assert!(matches!(log.fold.apply(&e), Applied::Ignored(_)));
    // A use while pending: ignored.
    let used = UsedPayload {
        approval_id: "apr_1".into(),
        digest: digest.clone(),
        event_id: "e".into(),
        event_type: "tenant.disable".into(),
    };
    let e = event(
        T,
        2,
        USED,
        "trailkeep",
        Some(canonical(&json!(used))),
        now(),
    );
    assert!(matches!(log.fold.apply(&e), Applied::Ignored(_)));
    // A step from another tenant, or with a purged payload: ignored.
    let step = &decide_approve(log.a(), "k_1", &by("a"), now()).unwrap()[0];
    let mut other = step_event(step, 3);
    other.tenant_id = "t_other".into();
    assert!(matches!(log.fold.apply(&other), Applied::Ignored(_)));
    let mut purged = step_event(step, 4);
    purged.payload = None;
    assert!(matches!(log.fold.apply(&purged), Applied::Ignored(_)));
    // A request whose digest is not its action's: ignored.
    let mut bad: RequestPayload =
        serde_json::from_slice(&log.events[0].payload.clone().unwrap()).unwrap();
    bad.approval_id = "apr_2".into();
    bad.digest = "00".repeat(32);
    let e = event(T, 5, REQUEST, "svc", Some(canonical(&json!(bad))), now());
    assert!(matches!(log.fold.apply(&e), Applied::Ignored(_)));
    assert!(log.fold.get("apr_2").is_none());
    assert_eq!(
        log.fold
            .apply(&event(T, 6, "prompt.update", "x", None, now())),
        Applied::NotMine
    );
    assert_eq!(log.a().status(), Status::Pending);
    assert!(log.a().approvals.is_empty());
}

#[test]
fn listing_by_tenant_and_status() {
    let mut log = Log::requested(1);
    let mut other = input();
    other.tenant_id = "t_2".into();
    log.write(&[decide_request(&config(1), "apr_2", "k_req", &other, now()).unwrap()]);
    log.write(&decide_approve(log.a(), "k_1", &by("a"), now()).unwrap());
    let ids = |v: Vec<&Approval>| v.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(log.fold.list(None, None, now())), ["apr_1", "apr_2"]);
    assert_eq!(ids(log.fold.list(Some("t_2"), None, now())), ["apr_2"]);
    assert_eq!(
        ids(log.fold.list(None, Some(Status::Approved), now())),
        ["apr_1"]
    );
    let later = plus(now(), 7200);
    assert_eq!(
        ids(log.fold.list(None, Some(Status::Expired), later)),
        ["apr_1", "apr_2"]
    );
    assert_eq!(Status::parse("used"), Some(Status::Used));
    assert_eq!(Status::parse("nope"), None);
}

#[derive(Debug, Clone)]
enum Op {
    Approve(u8),
    Reject(u8),
    Advance(u16),
    Expire,
    Use(bool),
    /// Raw steps a broken or racing writer might leave in the log.
    ForgeApprove(u8),
    ForgeGranted,
    ForgeUse,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..5).prop_map(Op::Approve),
        1 => (0u8..5).prop_map(Op::Reject),
        2 => (0u16..2400).prop_map(Op::Advance),
        1 => Just(Op::Expire),
        3 => any::<bool>().prop_map(Op::Use),
        2 => (0u8..5).prop_map(Op::ForgeApprove),
        1 => Just(Op::ForgeGranted),
        2 => Just(Op::ForgeUse),
    ]
}

proptest! {
    /// Whatever the steps, decided or forged: `approved` or `used` only with N distinct
    /// non-requester keys that approved before expiry, and never a second successful use.
    #[test]
    fn never_approved_short_of_n_keys_never_used_twice(
        n in 1u32..4,
        ops in prop::collection::vec(op(), 0..40),
    ) {
        let mut log = Log::requested(n);
        let mut t = now();
        let key = |k: u8| if k == 0 { "k_req".to_string() } else { format!("k_{k}") };
        let mut uses = 0;
        let digest = log.a().digest.clone();
        let expires = log.a().expires_at;
        for op in ops {
            let a = log.a().clone();
            match op {
                Op::Approve(k) => if let Ok(s) = decide_approve(&a, &key(k), &by("x"), t) { log.write(&s) },
                Op::Reject(k) => if let Ok(s) = decide_reject(&a, &key(k), &by("x"), t) { log.write(&[s]) },
                Op::Advance(s) => t = plus(t, i64::from(s)),
                Op::Expire => if let Some(s) = decide_expire(&a, t) { log.write(&[s]) },
                Op::Use(exact) => {
                    let p = if exact { payload_bytes() } else { b"{}".to_vec() };
                    if let Ok(s) = decide_use(&a, &format!("ev{uses}"), T, "tenant.disable", &p, t) {
                        uses += 1;
                        log.write(&[s]);
                    }
                }
                Op::ForgeApprove(k) => {
                    let p = DecisionPayload { approval_id: "apr_1".into(), key_id: key(k), approver: "x".into(), comment: None, digest: digest.clone() };
                    let e = event(T, log.events.len() as u64, APPROVE, "x", Some(canonical(&json!(p))), t);
                    log.fold.apply(&e);
                    log.events.push(e);
                }
                Op::ForgeGranted => {
                    let p = GrantedPayload { approval_id: "apr_1".into(), digest: digest.clone(), approvers: vec![], expires_at: String::new() };
                    let e = event(T, log.events.len() as u64, GRANTED, "x", Some(canonical(&json!(p))), t);
                    log.fold.apply(&e);
                    log.events.push(e);
                }
                Op::ForgeUse => {
                    let p = UsedPayload { approval_id: "apr_1".into(), digest: digest.clone(), event_id: "forged".into(), event_type: "tenant.disable".into() };
                    let e = event(T, log.events.len() as u64, USED, "x", Some(canonical(&json!(p))), t);
                    log.fold.apply(&e);
                    log.events.push(e);
                }
            }
            // The oracle, from the raw log: distinct non-requester keys approving before
            // expiry and before any rejection.
            let mut keys = std::collections::BTreeSet::new();
            for e in &log.events {
                if e.event_type == REJECT { break; }
                if e.event_type == APPROVE && e.timestamp < expires {
                    let p: DecisionPayload = serde_json::from_slice(e.payload.as_ref().unwrap()).unwrap();
                    if p.key_id != "k_req" { keys.insert(p.key_id); }
                }
            }
            let s = log.a().status();
            if matches!(s, Status::Approved | Status::Used) {
                prop_assert!(keys.len() >= n as usize, "{s:?} with {} keys of {n}", keys.len());
            }
            prop_assert!(log.a().approvals.iter().all(|d| d.key_id != "k_req"));
            prop_assert!(uses <= 1, "a second use was decided");
            prop_assert!(log.a().used.is_none() || s == Status::Used || s == Status::Rejected);
            if uses == 1 {
                let used = log.a().used.as_ref().unwrap();
                prop_assert_eq!(&used.event_id, "ev0");
            }
        }
    }
}
