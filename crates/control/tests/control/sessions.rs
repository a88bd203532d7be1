//! Impersonation sessions: the fold, the ingest checks and the overdue alert.

use crate::support::{canonical, event, plus, ts};
use serde_json::json;
use std::time::Duration;
use trailkeep_control::sessions::*;
use trailkeep_control::Applied;
use trailkeep_core::{NewEvent, StoredEvent, Timestamp, Uuid};

const T: &str = "t_0042";

fn t0() -> Timestamp {
    ts("2026-12-04T09:00:00.000Z")
}

fn start(seq: u64, tenant: &str, id: &str, at: Timestamp) -> StoredEvent {
    let p = json!({"impersonator": "admin:ana", "impersonated": "user:bo", "session_id": id, "reason": "ticket 12"});
    event(tenant, seq, START, "admin:ana", Some(canonical(&p)), at)
}

fn end(seq: u64, tenant: &str, id: &str, at: Timestamp) -> StoredEvent {
    let p = json!({"session_id": id, "actions_taken": 2});
    event(tenant, seq, END, "admin:ana", Some(canonical(&p)), at)
}

fn action(seq: u64, tenant: &str, id: &str, at: Timestamp) -> StoredEvent {
    let mut e = event(
        tenant,
        seq,
        "prompt.view",
        "user:bo",
        Some(b"{}".to_vec()),
        at,
    );
    e.impersonation_session = Some(id.into());
    e
}

#[test]
fn a_session_from_start_to_end_in_the_api_shape() {
    let mut s = Sessions::new();
    assert_eq!(s.apply(&start(0, T, "imp_1", t0())), Applied::Changed);
    s.apply(&action(1, T, "imp_1", plus(t0(), 5)));
    s.apply(&action(2, T, "imp_1", plus(t0(), 6)));
    s.apply(&action(3, T, "imp_other", plus(t0(), 6)));
    let v = serde_json::to_value(s.get(T, "imp_1").unwrap().view(plus(t0(), 90))).unwrap();
    assert_eq!(
        v,
        json!({"session_id": "imp_1", "tenant_id": T, "impersonator": "admin:ana",
               "impersonated": "user:bo", "reason": "ticket 12",
               "start": "2026-12-04T09:00:00.000Z", "end": null, "active": true,
               "duration_seconds": 90})
    );
    s.apply(&end(4, T, "imp_1", plus(t0(), 125)));
    let sess = s.get(T, "imp_1").unwrap();
    let v = serde_json::to_value(sess.view(plus(t0(), 9999))).unwrap();
    assert_eq!(v["end"], "2026-12-04T09:02:05.000Z");
    assert_eq!(v["active"], false);
    assert_eq!(v["duration_seconds"], 125);
    assert_eq!(
        sess.actions.iter().map(|a| a.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!(sess.actions[0].event_id, Uuid::from_u128(2));
    assert_eq!(sess.actions_reported, Some(2));
    assert_eq!((sess.start_seq, sess.end_seq), (0, Some(4)));
}

#[test]
fn start_for_an_open_id_and_end_for_unknown_or_closed_are_refused() {
    let mut s = Sessions::new();
    let r = s.check_end(T, "imp_1").unwrap_err();
    assert_eq!(
        (r.path.as_deref(), r.kind.http_status()),
        (Some("payload.session_id"), 422)
    );
    assert!(
        r.message.contains("send impersonation.start first"),
        "{}",
        r.message
    );
    assert!(s.check_start(T, "imp_1").is_ok());
    s.apply(&start(0, T, "imp_1", t0()));
    let r = s.check_start(T, "imp_1").unwrap_err();
    assert_eq!(r.path.as_deref(), Some("payload.session_id"));
    assert!(r.message.contains("already open"), "{}", r.message);
    assert!(
        s.check_start("t_other", "imp_1").is_ok(),
        "ids are per tenant"
    );
    assert!(s.check_end(T, "imp_1").is_ok());
    s.apply(&end(1, T, "imp_1", t0()));
    let r = s.check_end(T, "imp_1").unwrap_err();
    assert!(r.message.contains("already ended"), "{}", r.message);
    // A closed id may start again: a new session, which the id now names.
    assert!(s.check_start(T, "imp_1").is_ok());
    s.apply(&start(2, T, "imp_1", plus(t0(), 60)));
    assert_eq!(s.history(T, "imp_1").len(), 2);
    assert!(s.get(T, "imp_1").unwrap().active());
}

#[test]
fn the_fold_ignores_what_the_checks_would_refuse() {
    let mut s = Sessions::new();
    assert!(matches!(
        s.apply(&end(0, T, "imp_1", t0())),
        Applied::Ignored(_)
    ));
    s.apply(&start(1, T, "imp_1", t0()));
    assert!(matches!(
        s.apply(&start(2, T, "imp_1", t0())),
        Applied::Ignored(_)
    ));
    let mut purged = start(3, T, "imp_2", t0());
    purged.payload = None;
    assert!(matches!(s.apply(&purged), Applied::Ignored(_)));
    assert_eq!(
        s.apply(&event(T, 4, "prompt.view", "x", None, t0())),
        Applied::NotMine
    );
    assert_eq!(s.list(None, None).len(), 1);
    assert_eq!(s.get(T, "imp_1").unwrap().start_seq, 1);
}

fn new_event(event_type: &str, payload: serde_json::Value) -> NewEvent {
    NewEvent {
        event_id: Uuid::from_u128(1),
        event_id_assigned: true,
        event_type: event_type.into(),
        actor: "admin:ana".into(),
        tenant_id: T.into(),
        payload: canonical(&payload).into(),
        timestamp: t0(),
        timestamp_assigned: true,
        source_ip: None,
        impersonation_session: None,
        approval_id: None,
    }
}

fn start_new(id: &str) -> NewEvent {
    new_event(
        START,
        json!({"impersonator": "a", "impersonated": "b", "session_id": id, "reason": "r"}),
    )
}

fn end_new(id: &str) -> NewEvent {
    new_event(END, json!({"session_id": id}))
}

#[test]
fn a_request_is_checked_in_order() {
    let mut s = Sessions::new();
    assert!(s
        .check_batch(&[start_new("a"), end_new("a"), start_new("a")])
        .is_ok());
    let issues = s
        .check_batch(&[start_new("a"), start_new("a")])
        .unwrap_err();
    assert_eq!(issues.len(), 1);
    assert_eq!(
        (issues[0].index, issues[0].path.as_str()),
        (1, "payload.session_id")
    );
    let issues = s
        .check_batch(&[end_new("b"), start_new("b"), end_new("b"), end_new("b")])
        .unwrap_err();
    assert_eq!(issues.iter().map(|i| i.index).collect::<Vec<_>>(), [0, 3]);
    s.apply(&start(0, T, "c", t0()));
    let issues = s.check_batch(&[start_new("c")]).unwrap_err();
    assert!(issues[0].message.contains("already open"));
    assert!(s.check_batch(&[end_new("c"), start_new("c")]).is_ok());
    // Unparseable payloads are the validator's business.
    assert!(s
        .check_batch(&[new_event(END, json!({"session_id": 5}))])
        .is_ok());
}

#[test]
fn overdue_sessions_alert_once() {
    let mut s = Sessions::new();
    let max = Duration::from_secs(8 * 3600);
    s.apply(&start(0, T, "long", t0()));
    s.apply(&start(1, T, "short", plus(t0(), 3600)));
    s.apply(&start(2, T, "ended", t0()));
    s.apply(&end(3, T, "ended", plus(t0(), 60)));
    assert!(
        s.overdue(plus(t0(), 8 * 3600), max).is_empty(),
        "exactly the limit is not over it"
    );
    let later = plus(t0(), 8 * 3600 + 1);
    let ids: Vec<_> = s
        .overdue(later, max)
        .iter()
        .map(|x| x.session_id.clone())
        .collect();
    assert_eq!(ids, ["long"]);
    assert!(s.mark_alerted(T, "long"));
    assert!(!s.mark_alerted(T, "long"));
    assert!(!s.mark_alerted(T, "ended"));
    assert!(s.overdue(later, max).is_empty());
    let ids: Vec<_> = s
        .overdue(plus(t0(), 10 * 3600), max)
        .iter()
        .map(|x| x.session_id.clone())
        .collect();
    assert_eq!(ids, ["short"]);
}

#[test]
fn actions_before_their_start_are_attached_and_tenants_are_apart() {
    let mut s = Sessions::new();
    s.apply(&action(0, T, "imp_1", t0()));
    s.apply(&action(1, "t_b", "imp_1", t0()));
    s.apply(&start(2, T, "imp_1", t0()));
    s.apply(&start(3, "t_b", "imp_1", t0()));
    s.apply(&action(4, T, "imp_1", t0()));
    let a: Vec<_> = s
        .get(T, "imp_1")
        .unwrap()
        .actions
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(a, [0, 4]);
    let b: Vec<_> = s
        .get("t_b", "imp_1")
        .unwrap()
        .actions
        .iter()
        .map(|a| a.seq)
        .collect();
    assert_eq!(b, [1]);
    let found: Vec<_> = s
        .find("imp_1")
        .iter()
        .map(|x| x.tenant_id.clone())
        .collect();
    assert_eq!(found, ["t_0042", "t_b"]);
    assert_eq!(s.list(Some("t_b"), Some(true)).len(), 1);
    assert_eq!(s.list(None, Some(false)).len(), 0);
}

#[test]
fn duration_never_negative_for_a_backfilled_end() {
    let mut s = Sessions::new();
    s.apply(&start(0, T, "x", t0()));
    s.apply(&end(1, T, "x", plus(t0(), -30)));
    assert_eq!(s.get(T, "x").unwrap().duration_seconds(t0()), 0);
}

proptest::proptest! {
    /// The lean view ingest keeps (open sessions only) decides every request exactly as the
    /// full fold does, whatever mix of starts and ends of a few ids the requests hold; and
    /// folding what each accepted leaves both agreeing on which sessions are open.
    #[test]
    fn open_sessions_decide_as_the_full_fold(
        requests in proptest::collection::vec(
            proptest::collection::vec((proptest::bool::ANY, 0u8..3), 1..5),
            1..30,
        )
    ) {
        let mut full = Sessions::new();
        let mut lean = OpenSessions::new();
        let mut seq = 0u64;
        for request in requests {
            let events: Vec<NewEvent> = request
                .iter()
                .map(|&(is_start, id)| {
                    let id = format!("imp_{id}");
                    if is_start { start_new(&id) } else { end_new(&id) }
                })
                .collect();
            let a = full.check_batch(&events);
            let b = lean.check_batch(&events);
            proptest::prop_assert_eq!(
                a.as_ref().map_err(|i| i.iter().map(|x| x.index).collect::<Vec<_>>()),
                b.as_ref().map_err(|i| i.iter().map(|x| x.index).collect::<Vec<_>>())
            );
            if a.is_ok() {
                for &(is_start, id) in &request {
                    let id = format!("imp_{id}");
                    let e = if is_start { start(seq, T, &id, t0()) } else { end(seq, T, &id, t0()) };
                    seq += 1;
                    full.apply(&e);
                    lean.apply(&e);
                }
            }
            for id in 0..3 {
                let id = format!("imp_{id}");
                proptest::prop_assert_eq!(
                    full.get(T, &id).is_some_and(|s| s.active()),
                    lean.is_open(T, &id)
                );
            }
        }
    }
}
