//! The alert delivery engine over a real store: order, cursors across restarts, retries, dead
//! letters, leases on PostgreSQL, overdue impersonation sessions.
//!
//! Channels are [`TestDest`]s (scripted answers, every alert recorded), and at the end real
//! channels sending over HTTP to the testkit's receivers.

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trailkeep_control::rules::{RuleConfig, RuleSet};
use trailkeep_core::validate::validate_object;
use trailkeep_core::{NewEvent, StoredEvent, Timestamp, GLOBAL_TENANT};
use trailkeep_deliver::alerts::channel::{Channel, ChannelConfig, ChannelKind};
use trailkeep_deliver::alerts::engine::{self, AlertHandle, Destination, EngineConfig};
use trailkeep_deliver::alerts::rate::Limits;
use trailkeep_deliver::alerts::registry::Status;
use trailkeep_deliver::alerts::retry::RetryPolicy;
use trailkeep_deliver::alerts::{delivery_id, Alert, Attempt};
use trailkeep_deliver::testkit::{Behaviour, Received, Receiver, ReceiverKind};
use trailkeep_store::embedded::{EmbeddedOptions, EmbeddedStore};
use trailkeep_store::{PreparedEvent, Store, StoreError, TypeFilter};

/// A channel that answers from a script (then `Delivered`) and records every alert it is sent.
pub struct TestDest {
    name: String,
    script: Mutex<VecDeque<Attempt>>,
    /// Every attempt, in order (recorded when it starts).
    sent: Mutex<Vec<Alert>>,
    /// The alerts answered `Delivered`, in order.
    delivered: Mutex<Vec<Alert>>,
    /// How long each attempt takes.
    delay: Duration,
    /// What the channel says its timeout is.
    timeout: Duration,
}

impl TestDest {
    /// A channel answering at once (its timeout: 1 s).
    pub fn new(name: &str) -> Arc<TestDest> {
        TestDest::slow(name, Duration::ZERO, Duration::from_secs(1))
    }

    /// A channel whose attempts each take `delay`, with a timeout of `timeout`.
    pub fn slow(name: &str, delay: Duration, timeout: Duration) -> Arc<TestDest> {
        Arc::new(TestDest {
            name: name.into(),
            script: Mutex::new(VecDeque::new()),
            sent: Mutex::new(Vec::new()),
            delivered: Mutex::new(Vec::new()),
            delay,
            timeout,
        })
    }

    /// Queues answers for the next attempts.
    pub fn script(&self, answers: impl IntoIterator<Item = Attempt>) {
        self.script.lock().unwrap().extend(answers);
    }

    pub fn sent(&self) -> Vec<Alert> {
        self.sent.lock().unwrap().clone()
    }

    pub fn delivered(&self) -> Vec<Alert> {
        self.delivered.lock().unwrap().clone()
    }

    /// Waits until `n` alerts were delivered (panics after `timeout` with what arrived).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Alert> {
        let end = Instant::now() + timeout;
        loop {
            let d = self.delivered();
            if d.len() >= n {
                return d;
            }
            if Instant::now() > end {
                panic!(
                    "{}: {} of {n} alerts delivered after {timeout:?}: {:?}",
                    self.name,
                    d.len(),
                    summary(&d)
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Destination for TestDest {
    fn name(&self) -> &str {
        &self.name
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = Attempt> + Send + 'a>> {
        Box::pin(async move {
            self.sent.lock().unwrap().push(alert.clone());
            tokio::time::sleep(self.delay).await;
            let answer = self
                .script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Attempt::Delivered { status: 200 });
            if matches!(answer, Attempt::Delivered { .. }) {
                self.delivered.lock().unwrap().push(alert.clone());
            }
            answer
        })
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }
}

pub(crate) fn summary(alerts: &[Alert]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| {
            format!(
                "{}#{} {}",
                a.event.tenant_id, a.event.seq, a.event.event_type
            )
        })
        .collect()
}

pub(crate) fn retry_fast() -> RetryPolicy {
    RetryPolicy {
        base: Duration::from_millis(5),
        max_backoff: Duration::from_millis(20),
        refused_attempts: 3,
        give_up_after: Duration::from_secs(30),
    }
}

pub(crate) fn rules(rules: Vec<(&str, &[&str], &[&str])>) -> RuleSet {
    let configs = rules
        .into_iter()
        .map(|(name, types, channels)| RuleConfig {
            name: name.into(),
            event_types: types.iter().map(|s| s.to_string()).collect(),
            channels: channels.iter().map(|s| s.to_string()).collect(),
            ..RuleConfig::default()
        })
        .collect();
    RuleSet::compile(configs, &[]).unwrap()
}

pub(crate) fn config(rules: RuleSet, dests: &[&Arc<TestDest>]) -> EngineConfig {
    let channels = dests
        .iter()
        .map(|d| Arc::clone(d) as Arc<dyn Destination>)
        .collect();
    let mut c = EngineConfig::new(rules, channels, retry_fast());
    // Only `notify` wakes a caught-up loop quickly: tests that append call it, as ingest does.
    c.poll = Duration::from_millis(200);
    c
}

pub(crate) fn embedded(dir: &Path) -> Arc<dyn Store> {
    Arc::new(EmbeddedStore::open(dir, EmbeddedOptions::default()).unwrap())
}

pub(crate) fn tenant(prefix: &str) -> String {
    format!("{prefix}-{:08x}", rand::random::<u32>())
}

/// A valid event of `event_type` (a catalogue payload for the types that need one).
pub(crate) fn event(tenant: &str, event_type: &str, n: u64) -> Value {
    let payload = match event_type {
        "killswitch.embed.disable" | "killswitch.embed.enable" => {
            json!({"target": "embed", "scope": "tenant", "reason": format!("test {n}")})
        }
        _ => json!({"n": n}),
    };
    json!({
        "event_type": event_type,
        "actor": "admin:ana",
        "tenant_id": tenant,
        "payload": payload,
    })
}

pub(crate) fn new_event(v: Value) -> NewEvent {
    let Value::Object(m) = v else {
        panic!("not an object")
    };
    validate_object(0, m, Timestamp::now_micros()).unwrap_or_else(|i| panic!("invalid: {i:?}"))
}

pub(crate) async fn append(store: &Arc<dyn Store>, events: Vec<Value>) {
    let prepared = PreparedEvent::new_all(
        events.into_iter().map(new_event).collect(),
        Timestamp::now_micros(),
    );
    store.append(prepared).await.unwrap();
}

/// Appends `types` to `tenant` one request each, notifying the engine after each (as ingest
/// does).
pub(crate) async fn ingest(store: &Arc<dyn Store>, h: &AlertHandle, tenant: &str, types: &[&str]) {
    for (i, t) in types.iter().enumerate() {
        append(store, vec![event(tenant, t, i as u64)]).await;
        h.notify();
    }
}

pub(crate) fn seqs(alerts: &[Alert], tenant: &str) -> Vec<u64> {
    alerts
        .iter()
        .filter(|a| a.event.tenant_id == tenant)
        .map(|a| a.event.seq)
        .collect()
}

/// The dead letters in `_global`.
pub(crate) async fn dead_letters(store: &Arc<dyn Store>) -> Vec<StoredEvent> {
    let slice = store
        .read_log_matching(
            GLOBAL_TENANT,
            0,
            &[TypeFilter::Exact("sink.alert_failed".into())],
            1000,
        )
        .await
        .unwrap();
    slice.events
}

fn payload(e: &StoredEvent) -> Value {
    serde_json::from_slice(e.payload.as_deref().unwrap()).unwrap()
}

pub(crate) const KS: &str = "killswitch.embed.disable";

#[tokio::test]
async fn alerts_arrive_in_order_per_channel_and_only_for_their_rules() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let ops = TestDest::new("ops");
    let all = TestDest::new("all");
    let set = rules(vec![
        ("kill-switches", &["killswitch.*"], &["ops"]),
        ("everything", &["*"], &["all", "ops"]),
    ]);
    let mut cfg = config(set, &[&ops, &all]);
    // A caught-up loop sleeps this long unless notified: the kill switch below must arrive
    // through `notify`.
    cfg.poll = Duration::from_secs(60);
    let h = engine::start(store.clone(), cfg);
    // Let the loops set their cursors up (first start: nothing before this is alerted on).
    wait_until(|| h.registry().channels().iter().all(|c| c.active)).await;

    let (a, b) = (tenant("a"), tenant("b"));
    let types = ["crawl.run.x", KS, "prompt.edit", KS, "login.ok"];
    ingest(&store, &h, &a, &types).await;
    ingest(&store, &h, &b, &types).await;
    let got_all = all.wait_for(10, Duration::from_secs(10)).await;
    let got_ops = ops.wait_for(10, Duration::from_secs(10)).await;
    for t in [&a, &b] {
        assert_eq!(seqs(&got_all, t), [0, 1, 2, 3, 4]);
        assert_eq!(seqs(&got_ops, t), [0, 1, 2, 3, 4]);
    }
    // The first rule naming the channel makes the alert.
    for x in &got_ops {
        let want = if x.event.event_type == KS {
            "kill-switches"
        } else {
            "everything"
        };
        assert_eq!(x.rule, want, "{}", x.event.event_type);
        assert_eq!(
            x.delivery_id,
            delivery_id("event", "ops", &x.event.tenant_id, x.event.seq)
        );
        assert_eq!(x.channel, "ops");
        assert!(x.note.is_none());
    }
    assert_eq!(
        h.registry()
            .list(Some(Status::Delivered), Some("ops"), 100)
            .len(),
        10
    );
    assert_eq!(h.registry().channel("all").unwrap().delivered, 10);

    // A kill switch reaches a caught-up channel within 2 s of its receipt.
    let started = Instant::now();
    ingest(&store, &h, &a, &[KS]).await;
    ops.wait_for(11, Duration::from_secs(2)).await;
    assert!(started.elapsed() < Duration::from_secs(2));
    h.shutdown().await;
}

/// Waits (up to 10 s) until `f` holds.
pub(crate) async fn wait_until(f: impl Fn() -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < end, "condition not met within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn first_start_skips_old_events_and_later_tenants_start_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let old = tenant("old");
    append(&store, (0..5).map(|i| event(&old, KS, i)).collect()).await;
    let ops = TestDest::new("ops");
    let h = engine::start(
        store.clone(),
        config(rules(vec![("ks", &[KS], &["ops"])]), &[&ops]),
    );
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    let new = tenant("new");
    ingest(&store, &h, &old, &[KS]).await;
    ingest(&store, &h, &new, &[KS, KS]).await;
    let got = ops.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(seqs(&got, &old), [5]);
    assert_eq!(seqs(&got, &new), [0, 1]);
    // Nothing more comes (the old events stay unalerted).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ops.sent().len(), 3);
    h.shutdown().await;
}

#[tokio::test]
async fn a_refused_request_is_never_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let ops = TestDest::new("ops");
    let h = engine::start(
        store.clone(),
        config(rules(vec![("ks", &[KS], &["ops"])]), &[&ops]),
    );
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    let t = tenant("t");
    let id = trailkeep_core::Uuid::now_v7().to_string();
    let with_id = |n: u64| {
        let mut v = event(&t, KS, n);
        v["event_id"] = json!(id);
        v
    };
    append(&store, vec![with_id(1)]).await;
    // The same id with other content, in a request with a new event: nothing is stored.
    let refused = PreparedEvent::new_all(
        vec![new_event(event(&t, KS, 7)), new_event(with_id(2))],
        Timestamp::now_micros(),
    );
    assert!(matches!(
        store.append(refused).await,
        Err(StoreError::Conflict { .. })
    ));
    h.notify();
    ingest(&store, &h, &t, &[KS]).await;
    let got = ops.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seqs(&ops.delivered(), &t), [0, 1]);
    assert_eq!(payload(&got[0].event)["reason"], "test 1");
    assert_eq!(payload(&got[1].event)["reason"], "test 0");
    h.shutdown().await;
}

#[tokio::test]
async fn failures_then_recovery_deliver_everything_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let ops = TestDest::new("ops");
    let failing = |status| Attempt::Retry {
        status: Some(status),
        after: None,
        error: format!("HTTP {status}"),
    };
    ops.script([failing(503), failing(500), failing(429)]);
    let h = engine::start(
        store.clone(),
        config(rules(vec![("ks", &[KS], &["ops"])]), &[&ops]),
    );
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    let t = tenant("t");
    ingest(&store, &h, &t, &[KS; 6]).await;
    let got = ops.wait_for(6, Duration::from_secs(10)).await;
    assert_eq!(seqs(&got, &t), [0, 1, 2, 3, 4, 5]);
    // The first alert was tried four times, always with its one delivery id.
    let sent = ops.sent();
    assert_eq!(sent.len(), 9);
    assert!(sent[..4].iter().all(|a| a.event.seq == 0));
    assert!(sent[..4]
        .iter()
        .all(|a| a.delivery_id == sent[0].delivery_id));
    let first = h
        .registry()
        .list(Some(Status::Delivered), None, 100)
        .into_iter()
        .find(|v| v.seq == 0)
        .unwrap();
    assert_eq!(first.attempts, 4);
    let c = h.registry().channel("ops").unwrap();
    assert_eq!((c.delivered, c.retried, c.dead, c.pending), (6, 3, 0, 0));
    h.shutdown().await;
}

#[tokio::test]
async fn a_dead_letter_is_an_event_and_in_the_registry_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let ops = TestDest::new("ops");
    let refused = |n: usize| {
        (0..n).map(|_| Attempt::Refused {
            status: 400,
            error: "HTTP 400: bad payload".into(),
        })
    };
    // A catch-all rule: the dead letters (events of `_global`) are alerted on too.
    let set = rules(vec![("everything", &["*"], &["ops"])]);
    let h = engine::start(store.clone(), config(set.clone(), &[&ops]));
    wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
    let t = tenant("t");

    // t#0 is refused 3 times: dead. t#1 is delivered, and the alert on the dead letter.
    ops.script(refused(3));
    ingest(&store, &h, &t, &[KS, KS]).await;
    let got = ops.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(seqs(&got, &t), [1]);
    let on_dead_letter: Vec<&Alert> = got
        .iter()
        .filter(|a| a.event.tenant_id == GLOBAL_TENANT)
        .collect();
    assert_eq!(on_dead_letter.len(), 1);
    assert_eq!(on_dead_letter[0].event.event_type, "sink.alert_failed");
    let dls = dead_letters(&store).await;
    assert_eq!(dls.len(), 1);
    let p = payload(&dls[0]);
    assert_eq!(dls[0].actor, "svc:trailkeep");
    assert_eq!(p["channel"], "ops");
    assert_eq!(p["kind"], "event");
    assert_eq!(p["delivery_id"], delivery_id("event", "ops", &t, 0));
    assert_eq!(p["rule"], "everything");
    assert_eq!(p["tenant_id"], t.as_str());
    assert_eq!(p["seq"], 0);
    assert_eq!(p["event_type"], KS);
    assert_eq!(p["attempts"], 3);
    assert_eq!(p["last_status"], 400);
    assert!(p["error"].as_str().unwrap().contains("bad payload"), "{p}");
    assert!(Timestamp::parse(p["first_attempt_at"].as_str().unwrap()).is_ok());
    assert_eq!(p["event_id"], ops.sent()[0].event.event_id.to_string());

    // t#2 dies, and so does the alert on its dead letter: that one is not recorded (no loops).
    ops.script(refused(6));
    ingest(&store, &h, &t, &[KS]).await;
    wait_until(|| ops.sent().len() >= 5 + 6).await;
    // t#3 comes after the dead letter's alert (`_global` is passed first): once it arrived,
    // everything before it was decided.
    ingest(&store, &h, &t, &[KS]).await;
    let got = ops.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(seqs(&got, &t), [1, 3]);
    let dls = dead_letters(&store).await;
    assert_eq!(
        dls.len(),
        2,
        "one dead letter per given-up alert on a tenant's event"
    );
    assert_eq!(payload(&dls[1])["seq"], 2);

    let dead = h.registry().list(Some(Status::Dead), Some("ops"), 10);
    let dead_seqs: Vec<(String, u64)> = dead.iter().map(|v| (v.tenant_id.clone(), v.seq)).collect();
    assert_eq!(
        dead_seqs,
        [
            (GLOBAL_TENANT.to_string(), 1),
            (t.clone(), 2),
            (t.clone(), 0)
        ],
        "newest first"
    );
    assert_eq!(dead[2].last_status, Some(400));
    assert_eq!(h.registry().channel("ops").unwrap().dead, 3);
    h.shutdown().await;
    store.shutdown().await;
    drop(store);

    // After a restart the registry reads the recorded dead letters back from the log.
    let store = embedded(dir.path());
    let ops2 = TestDest::new("ops");
    let h = engine::start(store.clone(), config(set, &[&ops2]));
    wait_until(|| h.registry().list(Some(Status::Dead), None, 10).len() == 2).await;
    let dead = h.registry().list(Some(Status::Dead), None, 10);
    assert_eq!(dead[1].id, delivery_id("event", "ops", &t, 0));
    assert_eq!(dead[1].attempts, 3);
    assert_eq!(dead[1].tenant_id, t);
    assert_eq!(dead[1].rule, "everything");
    assert_eq!(dead[1].last_status, Some(400));
    assert_eq!(dead[0].seq, 2);
    h.shutdown().await;
}

#[tokio::test]
async fn a_restart_resumes_from_the_cursor_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let set = rules(vec![("ks", &[KS], &["ops"])]);
    {
        let store = embedded(dir.path());
        let ops = TestDest::new("ops");
        let h = engine::start(store.clone(), config(set.clone(), &[&ops]));
        wait_until(|| h.registry().channel("ops").is_some_and(|c| c.active)).await;
        ingest(&store, &h, &t, &[KS; 5]).await;
        ops.wait_for(5, Duration::from_secs(10)).await;
        // Then the channel fails: seq 5 is pending when the engine stops.
        ops.script((0..1000).map(|_| Attempt::Retry {
            status: None,
            after: None,
            error: "connection refused".into(),
        }));
        ingest(&store, &h, &t, &[KS]).await;
        wait_until(|| ops.sent().len() > 6).await;
        let pending = h.registry().list(Some(Status::Pending), Some("ops"), 10);
        assert_eq!(pending.len(), 1, "{pending:?}");
        assert_eq!(pending[0].seq, 5);
        assert!(pending[0].attempts >= 1);
        assert_eq!(pending[0].last_error.as_deref(), Some("connection refused"));
        assert!(pending[0].next_attempt_at.is_some());
        assert_eq!(h.registry().channel("ops").unwrap().pending, 1);
        h.shutdown().await;
        // Appended while no engine runs.
        append(&store, vec![event(&t, KS, 6), event(&t, KS, 7)]).await;
        store.shutdown().await;
    }
    let store = embedded(dir.path());
    let ops = TestDest::new("ops");
    let h = engine::start(store.clone(), config(set, &[&ops]));
    let got = ops.wait_for(3, Duration::from_secs(10)).await;
    assert_eq!(seqs(&got, &t), [5, 6, 7]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(ops.sent().len(), 3, "{:?}", summary(&ops.sent()));
    h.shutdown().await;
}

/// An `impersonation.start` of `session` in `tenant`, `ago` in the past.
pub(crate) fn impersonation_start(tenant: &str, session: &str, ago: Duration) -> Value {
    let at = Timestamp::now_millis().nanos - ago.as_nanos() as i64;
    json!({
        "event_type": "impersonation.start",
        "actor": "admin:ana",
        "tenant_id": tenant,
        "timestamp": Timestamp::from_nanos(at, 3).to_rfc3339(),
        "payload": {"impersonator": "admin:ana", "impersonated": "user:bo",
                    "session_id": session, "reason": "ticket 42"},
    })
}

/// Waits (up to 10 s) until `channel` took its overdue baseline: the sessions overdue until
/// then are never alerted on, those that become overdue later are.
pub(crate) async fn overdue_baseline_taken(store: &Arc<dyn Store>, channel: &str) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let c = store
            .load_cursor(&format!("alerts/{channel}"))
            .await
            .unwrap();
        if c.contains_key("_overdue") {
            return;
        }
        assert!(
            Instant::now() < end,
            "{channel}: no overdue baseline within 10 s: {c:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The overdue-session alerts a channel delivered.
pub(crate) fn overdue_alerts(d: &TestDest) -> Vec<Alert> {
    d.delivered()
        .into_iter()
        .filter(|a| a.note.is_some())
        .collect()
}

#[tokio::test]
async fn an_overdue_session_alerts_once_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let set = rules(vec![("imp", &["impersonation.*"], &["ops"])]);
    let hour = Duration::from_secs(3600);
    // A short limit, so that checks come every 5 s.
    let max = Duration::from_secs(20);
    let cfg = |ops: &Arc<TestDest>| {
        let mut c = config(set.clone(), &[ops]);
        c.max_session = Some(max);
        c
    };
    {
        let store = embedded(dir.path());
        let ops = TestDest::new("ops");
        let h = engine::start(store.clone(), cfg(&ops));
        overdue_baseline_taken(&store, "ops").await;
        append(
            &store,
            vec![
                impersonation_start(&t, "s1", 2 * hour + Duration::from_secs(600)),
                // Open, but not for long.
                impersonation_start(&t, "s2", Duration::ZERO),
                // Over the limit but ended.
                impersonation_start(&t, "s3", 3 * hour),
                json!({"event_type": "impersonation.end", "actor": "admin:ana", "tenant_id": t,
                       "payload": {"session_id": "s3"}}),
            ],
        )
        .await;
        h.notify();
        let end = Instant::now() + Duration::from_secs(15);
        while overdue_alerts(&ops).is_empty() {
            assert!(Instant::now() < end, "no overdue alert within 15 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = overdue_alerts(&ops);
        assert_eq!(got.len(), 1, "{:?}", summary(&got));
        assert_eq!(got[0].event.seq, 0);
        assert_eq!(got[0].event.event_type, "impersonation.start");
        assert_eq!(got[0].rule, "imp");
        assert_eq!(
            got[0].delivery_id,
            delivery_id("session_overdue", "ops", &t, 0)
        );
        let note = got[0].note.as_deref().unwrap();
        assert_eq!(
            note,
            format!("impersonation session s1 in {t} has been open for 2h 10m (limit 0h 0m)")
        );
        h.shutdown().await;
        store.shutdown().await;
    }
    let store = embedded(dir.path());
    // A new overdue session, appended while no engine runs: the first check after the restart
    // raises its alert after s1's, had s1's been raised again.
    append(&store, vec![impersonation_start(&t, "s4", 2 * hour)]).await;
    let ops = TestDest::new("ops");
    let h = engine::start(store.clone(), cfg(&ops));
    // s4's start is a new event: the channel alerts on it as well as the overdue check.
    wait_until(|| overdue_alerts(&ops).iter().any(|a| a.event.seq == 4)).await;
    let sessions: Vec<u64> = overdue_alerts(&ops).iter().map(|a| a.event.seq).collect();
    assert_eq!(sessions, [4], "s1 was alerted on before the restart");
    h.shutdown().await;
}

#[tokio::test]
async fn sessions_already_overdue_when_alerts_are_first_configured_are_not_alerted_on() {
    let dir = tempfile::tempdir().unwrap();
    let t = tenant("t");
    let set = rules(vec![("imp", &["impersonation.start"], &["ops"])]);
    let hour = Duration::from_secs(3600);
    let cfg = |ops: &Arc<TestDest>| {
        let mut c = config(set.clone(), &[ops]);
        c.max_session = Some(Duration::from_secs(4));
        c
    };
    let overdue_seqs =
        |d: &TestDest| -> Vec<u64> { overdue_alerts(d).iter().map(|a| a.event.seq).collect() };
    {
        let store = embedded(dir.path());
        // Overdue for long before alerts were configured.
        append(&store, vec![impersonation_start(&t, "old", 5 * hour)]).await;
        let ops = TestDest::new("ops");
        let h = engine::start(store.clone(), cfg(&ops));
        overdue_baseline_taken(&store, "ops").await;
        // Overdue from the first check after the baseline on.
        append(&store, vec![impersonation_start(&t, "new", 2 * hour)]).await;
        h.notify();
        let end = Instant::now() + Duration::from_secs(10);
        while overdue_seqs(&ops).is_empty() {
            assert!(Instant::now() < end, "no overdue alert within 10 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Checks come every second: a few more pass.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(
            overdue_seqs(&ops),
            [1],
            "only the session that became overdue later"
        );
        h.shutdown().await;
        store.shutdown().await;
    }
    // The baseline holds across a restart.
    let store = embedded(dir.path());
    let ops = TestDest::new("ops");
    let h = engine::start(store.clone(), cfg(&ops));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        overdue_seqs(&ops).is_empty(),
        "{:?}",
        summary(&overdue_alerts(&ops))
    );
    h.shutdown().await;
}

/// The PostgreSQL admin URL (`TRAILKEEP_TEST_POSTGRES`, default the local trust-auth server).
fn pg_admin_url() -> String {
    std::env::var("TRAILKEEP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh PostgreSQL database, dropped (with `FORCE`) when the guard is.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create() -> PgDatabase {
        let admin = pg_admin_url();
        let (c, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {admin} ({e}); start it (scripts/test.sh does) or set TRAILKEEP_TEST_POSTGRES")
            });
        tokio::spawn(conn);
        let name = format!("trailkeep_test_{:016x}", rand::random::<u64>());
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
        let url = match admin.rfind('/') {
            Some(i) => format!("{}/{name}", &admin[..i]),
            None => panic!("TRAILKEEP_TEST_POSTGRES must end in /<database>"),
        };
        PgDatabase { admin, name, url }
    }

    async fn open(&self) -> Arc<dyn Store> {
        use trailkeep_store::postgres::{PostgresOptions, PostgresStore};
        let s = PostgresStore::open(&self.url, PostgresOptions::default())
            .await
            .unwrap_or_else(|e| panic!("open {}: {e}", self.url));
        Arc::new(s)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs inside the test's runtime: use a thread with its own runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                if let Ok((c, conn)) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                }
            });
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_postgres_database_deliver_once_and_fail_over() {
    let db = PgDatabase::create().await;
    let (s1, s2) = (db.open().await, db.open().await);
    let set = rules(vec![("ks", &[KS], &["ops"])]);
    let (d1, d2) = (TestDest::new("ops"), TestDest::new("ops"));
    let cfg = |d: &Arc<TestDest>, holder: &str| {
        let mut c = config(set.clone(), &[d]);
        c.holder = holder.into();
        c.lease_ttl = Duration::from_secs(3);
        c.max_session = None;
        c
    };
    let h1 = engine::start(s1.clone(), cfg(&d1, "process-1"));
    wait_until(|| h1.registry().channel("ops").is_some_and(|c| c.active)).await;
    let h2 = engine::start(s2.clone(), cfg(&d2, "process-2"));
    let t = tenant("t");
    // Half appended through each process; each notifies only its own engine.
    for i in 0..10 {
        let (s, h) = if i % 2 == 0 { (&s1, &h1) } else { (&s2, &h2) };
        ingest(s, h, &t, &[KS]).await;
    }
    let got = d1.wait_for(10, Duration::from_secs(10)).await;
    assert_eq!(seqs(&got, &t), (0..10).collect::<Vec<_>>());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(d2.sent().is_empty(), "{:?}", summary(&d2.sent()));
    assert!(!h2.registry().channel("ops").unwrap().active);

    // The holder stops; the other takes over once the lease expires, from the saved cursor.
    h1.shutdown().await;
    ingest(&s1, &h2, &t, &[KS, KS]).await;
    let got = d2.wait_for(2, Duration::from_secs(15)).await;
    assert_eq!(seqs(&got, &t), [10, 11]);
    assert_eq!(d1.sent().len(), 10);
    h2.shutdown().await;
}

// ---- Through real channels to the testkit's receivers ----

const HOOK_SECRET: &str = "whsec_engine_0123456789";

/// A channel (Google Chat, Slack or webhook) to a fresh receiver, named `name`.
fn real_channel(name: &str, kind: ChannelKind, timeout: &str) -> (Arc<Channel>, Receiver) {
    let (rx, secret) = match kind {
        ChannelKind::GoogleChat => (Receiver::start(ReceiverKind::GoogleChat), None),
        ChannelKind::Slack => (Receiver::start(ReceiverKind::Slack), None),
        ChannelKind::Webhook => (
            Receiver::start(ReceiverKind::Webhook {
                secret: HOOK_SECRET.as_bytes().to_vec(),
            }),
            Some(HOOK_SECRET.to_string()),
        ),
    };
    let cfg = ChannelConfig {
        name: name.into(),
        kind,
        url: rx.url(),
        secret,
        timeout: Some(timeout.into()),
    };
    let channel = Channel::new(&cfg, None, crate::support::http(), &Limits::unlimited())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    (Arc::new(channel), rx)
}

/// What identifies the alert a request carried: Chat's `requestId`, the webhook's delivery
/// header, or (Slack sends no id) the event id in the message.
fn alert_key(kind: ChannelKind, r: &Received, event_ids: &[String]) -> String {
    match kind {
        ChannelKind::GoogleChat => r.request_id().unwrap_or_default().to_string(),
        ChannelKind::Webhook => r
            .header("x-trailkeep-delivery")
            .unwrap_or_default()
            .to_string(),
        ChannelKind::Slack => {
            let body = r.body_text();
            event_ids
                .iter()
                .find(|id| body.contains(id.as_str()))
                .cloned()
                .unwrap_or_default()
        }
    }
}

/// The distinct alerts a receiver accepted, in the order they first arrived (a request that
/// timed out on trailkeep's side may still have been accepted: its resend is a repeat).
fn accepted_alerts(kind: ChannelKind, rx: &Receiver, event_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rx.received().iter().filter(|r| r.accepted()) {
        let k = alert_key(kind, r, event_ids);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

async fn wait_for_alerts(kind: ChannelKind, rx: &Receiver, event_ids: &[String]) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let got = accepted_alerts(kind, rx, event_ids);
        if got.len() >= event_ids.len() {
            return got;
        }
        assert!(
            Instant::now() < end,
            "{kind}: {} of {} alerts accepted: {:#?}",
            got.len(),
            event_ids.len(),
            rx.received()
                .iter()
                .map(Received::summary)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn real_channels_get_every_alert_in_order_through_failures() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let kinds = [
        ("chat", ChannelKind::GoogleChat),
        ("slack", ChannelKind::Slack),
        ("hook", ChannelKind::Webhook),
    ];
    let channels: Vec<(ChannelKind, Arc<Channel>, Receiver)> = kinds
        .iter()
        .map(|(name, kind)| {
            let (c, rx) = real_channel(name, *kind, "500ms");
            (*kind, c, rx)
        })
        .collect();
    let set = rules(vec![("ks", &[KS], &["chat", "slack", "hook"])]);
    let dests = channels
        .iter()
        .map(|(_, c, _)| c.clone() as Arc<dyn Destination>)
        .collect();
    let mut cfg = EngineConfig::new(set, dests, retry_fast());
    cfg.poll = Duration::from_secs(60);
    let h = engine::start(store.clone(), cfg);
    wait_until(|| h.registry().channels().iter().all(|c| c.active)).await;

    // Each receiver fails in its own ways first.
    channels[0].2.script([
        Behaviour::Status(503),
        Behaviour::TooMany {
            retry_after: Some("0".into()),
        },
        Behaviour::Close,
    ]);
    channels[1]
        .2
        .script([Behaviour::Status(500), Behaviour::Status(502)]);
    channels[2].2.script([
        Behaviour::Hang(Duration::from_secs(1)),
        Behaviour::Status(503),
        Behaviour::Close,
    ]);
    let t = tenant("t");
    ingest(&store, &h, &t, &[KS, "crawl.other", KS, KS, KS, KS]).await;
    let events: Vec<StoredEvent> = store
        .read_log(&t, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event_type == KS)
        .collect();
    let event_ids: Vec<String> = events.iter().map(|e| e.event_id.to_string()).collect();
    for (kind, c, rx) in &channels {
        let want: Vec<String> = match kind {
            ChannelKind::Slack => event_ids.clone(),
            _ => events
                .iter()
                .map(|e| delivery_id("event", c.name(), &t, e.seq))
                .collect(),
        };
        let got = wait_for_alerts(*kind, rx, &want).await;
        assert_eq!(got, want, "{kind}: in log order, each once");
        assert!(rx.problems().is_empty(), "{kind}: {:#?}", rx.problems());
    }
    // Google Chat posts each message once: retries carry the same requestId.
    assert_eq!(channels[0].2.posted().len(), 5);

    // A kill switch reaches a healthy receiver within 2 s of its ingest receipt.
    let before: Vec<usize> = channels
        .iter()
        .map(|(_, _, rx)| rx.accepted().len())
        .collect();
    let started = Instant::now();
    ingest(&store, &h, &t, &[KS]).await;
    for ((kind, _, rx), n) in channels.iter().zip(before) {
        rx.wait_for(n + 1, Duration::from_secs(2)).await;
        assert!(started.elapsed() < Duration::from_secs(2), "{kind}");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_refusing_webhook_leaves_a_dead_letter_and_later_alerts_go_through() {
    let dir = tempfile::tempdir().unwrap();
    let store = embedded(dir.path());
    let (hook, rx) = real_channel("hook", ChannelKind::Webhook, "2s");
    let set = rules(vec![("ks", &[KS], &["hook"])]);
    let h = engine::start(
        store.clone(),
        EngineConfig::new(set, vec![hook as Arc<dyn Destination>], retry_fast()),
    );
    wait_until(|| h.registry().channel("hook").is_some_and(|c| c.active)).await;
    rx.script(vec![Behaviour::Status(404); 3]);
    let t = tenant("t");
    ingest(&store, &h, &t, &[KS, KS]).await;
    let accepted = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(
        accepted[0].header("x-trailkeep-delivery"),
        Some(delivery_id("event", "hook", &t, 1).as_str())
    );
    assert_eq!(rx.received().len(), 4, "3 refusals of seq 0, then seq 1");
    let dls = dead_letters(&store).await;
    assert_eq!(dls.len(), 1);
    let p = payload(&dls[0]);
    assert_eq!(p["seq"], 0);
    assert_eq!(p["attempts"], 3);
    assert_eq!(p["last_status"], 404);
    assert!(p["error"].as_str().unwrap().contains("404"), "{p}");
    let dead = h.registry().list(Some(Status::Dead), None, 10);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].id, delivery_id("event", "hook", &t, 0));
    assert!(rx.problems().is_empty(), "{:#?}", rx.problems());
    h.shutdown().await;
}
