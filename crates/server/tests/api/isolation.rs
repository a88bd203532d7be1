//! Tenant isolation and read auditing, on every route of the route table (so a new route cannot
//! be forgotten) × every role × bound / unbound keys × tenant A / B (docs/api.md): a key bound
//! to A never receives any of B's data and never writes to B, read-only keys never write, and
//! an auditor's successful read is logged exactly once, in the tenant it read (`_global` for a
//! read of every tenant) and nowhere else. A short property-based fuzz of query strings checks
//! the same on every GET route.

use crate::common::*;
use axum::http::Method;
use base64::Engine as _;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use trailkeep_server::checkpoint::checkpoint_round;
use trailkeep_server::Route;
use trailkeep_store::Role;

const A: &str = "t_iso_a";
const B: &str = "t_iso_b";

/// One key of the walk.
struct Key {
    id: String,
    secret: String,
    role: Role,
    bound: Option<&'static str>,
}

impl Key {
    fn name(&self) -> String {
        format!("{}@{}", self.role.as_str(), self.bound.unwrap_or("*"))
    }
}

/// Two tenants with events (each payload carries a marker of its tenant), signed checkpoints,
/// and keys of every role, unbound and bound to either tenant.
struct World {
    api: Api,
    /// Per tenant: the event ids.
    events: BTreeMap<&'static str, Vec<String>>,
    /// Per tenant: text that only that tenant's data holds (tenant id, event ids, payload
    /// marker, leaf hashes, checkpoint root).
    secrets: BTreeMap<&'static str, Vec<String>>,
    keys: Vec<Key>,
    /// A key the admin may revoke in the walk.
    victim: String,
    /// Per tenant: the id of an approval asked for by the env admin (so that every approver
    /// key may decide it).
    approvals: BTreeMap<&'static str, String>,
}

fn marker(t: &str) -> String {
    format!("MARKER-{t}-7f3a")
}

/// A request for approval in tenant `t`, its reason marked as the tenant's.
fn approval_request(t: &str) -> Value {
    json!({"tenant_id": t, "requested_by": "svc:iso", "reason": marker(t),
           "action": {"event_type": "tenant.disable", "payload": {"target": t}}})
}

/// The id of the tenant's impersonation session.
fn session_id(t: &str) -> String {
    format!("imp-{t}")
}

impl World {
    async fn new() -> World {
        let api = Api::new().await;
        let mut events = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        for t in [A, B] {
            let batch: Vec<Value> = (0..3)
                .map(|i| {
                    json!({"event_type": "iso.test", "actor": "user:iso@example.com",
                           "tenant_id": t, "payload": {"marker": marker(t), "i": i}})
                })
                .collect();
            let r = api.ingest(&json!(batch)).await;
            let ids: Vec<String> = r["receipts"]
                .as_array()
                .expect("receipts")
                .iter()
                .map(|x| x["event_id"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(ids.len(), 3, "{r}");
            events.insert(t, ids);
            // An open impersonation session with one action, its reason marked as the tenant's.
            let session = session_id(t);
            api.ingest(&json!([
                {"event_type": "impersonation.start", "actor": "admin:iso@example.com",
                 "tenant_id": t, "payload": {"impersonator": "admin:iso@example.com",
                 "impersonated": "user:iso@example.com", "session_id": session,
                 "reason": marker(t)}},
                {"event_type": "iso.test", "actor": "user:iso@example.com", "tenant_id": t,
                 "payload": {"marker": marker(t)}, "impersonation_session": session},
            ]))
            .await;
        }
        let mut approvals = BTreeMap::new();
        for t in [A, B] {
            let r = api
                .request(
                    Method::POST,
                    "/v1/approvals",
                    Some(ADMIN),
                    Some(JSON),
                    serde_json::to_vec(&approval_request(t)).unwrap(),
                )
                .await;
            r.expect(201);
            approvals.insert(t, r.json()["id"].as_str().unwrap().to_string());
        }
        let mut last = std::collections::HashMap::new();
        checkpoint_round(&api.state, &mut last).await.unwrap();
        for t in [A, B] {
            let mut s = vec![t.to_string(), marker(t), approvals[t].clone()];
            s.extend(events[t].iter().cloned());
            for e in api.store.read_log(t, 0, 1000).await.unwrap() {
                s.push(base64::engine::general_purpose::STANDARD.encode(e.leaf_hash));
            }
            let cp = api.store.latest_checkpoint(t).await.unwrap().expect("cp");
            s.push(base64::engine::general_purpose::STANDARD.encode(cp.root));
            secrets.insert(t, s);
        }
        let mut keys = vec![Key {
            id: "env-admin".into(),
            secret: ADMIN.into(),
            role: Role::Admin,
            bound: None,
        }];
        for role in [Role::Ingest, Role::Reader, Role::Auditor, Role::Approver] {
            for bound in [None, Some(A), Some(B)] {
                let (id, secret) = api.store_key(role, bound).await;
                keys.push(Key {
                    id,
                    secret,
                    role,
                    bound,
                });
            }
        }
        let (victim, _) = api.store_key(Role::Reader, None).await;
        World {
            api,
            events,
            secrets,
            keys,
            victim,
            approvals,
        }
    }

    /// The other tenant's secrets that the request does not itself contain.
    fn foreign_secrets(&self, bound: &str, request: &str) -> Vec<&String> {
        let other = if bound == A { B } else { A };
        self.secrets[other]
            .iter()
            .filter(|s| !request.contains(s.as_str()))
            .collect()
    }
}

/// What a request of the walk is about.
#[derive(Debug, Clone)]
struct Req {
    method: Method,
    uri: String,
    body: Vec<u8>,
    /// The tenants the request names (path, query or body).
    names: BTreeSet<&'static str>,
    /// The tenant whose data the path points at (`{tenant}`, `{event_id}` or `{session_id}`),
    /// if any.
    path_tenant: Option<&'static str>,
    /// `tenant_id` of the query, if any.
    query_tenant: Option<&'static str>,
    keyless: bool,
}

/// The concrete requests of one route: each path parameter filled with A's and B's values, the
/// required query parameters given, `tenant_id` absent / A / B where the route takes it, a
/// body for each tenant where the route takes one. A route this cannot fill fails the test.
fn requests(w: &World, r: &Route) -> Vec<Req> {
    let mut paths: Vec<(String, Option<&'static str>)> = Vec::new();
    let placeholders: Vec<&str> = r.path.split('/').filter(|s| s.starts_with('{')).collect();
    match placeholders.as_slice() {
        [] => paths.push((r.path.to_string(), None)),
        ["{tenant}"] => {
            for t in [A, B] {
                paths.push((r.path.replace("{tenant}", t), Some(t)));
            }
        }
        ["{event_id}"] => {
            for t in [A, B] {
                paths.push((r.path.replace("{event_id}", &w.events[t][0]), Some(t)));
            }
        }
        ["{session_id}"] => {
            for t in [A, B] {
                paths.push((r.path.replace("{session_id}", &session_id(t)), Some(t)));
            }
        }
        ["{id}"] if r.path.starts_with("/v1/approvals/") => {
            for t in [A, B] {
                paths.push((r.path.replace("{id}", &w.approvals[t]), Some(t)));
            }
        }
        ["{id}"] if r.path.starts_with("/v1/keys/") => {
            paths.push((r.path.replace("{id}", &w.victim), None));
        }
        other => panic!(
            "the isolation suite cannot fill {other:?} of {} {}: teach `requests` how",
            r.method, r.path
        ),
    }
    let mut required: Vec<String> = Vec::new();
    for p in r.params {
        match *p {
            "seq" => required.push("seq=0".into()),
            "from" => required.push("from=1".into()),
            _ => {}
        }
    }
    let mut queries: Vec<(Vec<String>, Option<&'static str>)> = vec![(required.clone(), None)];
    if r.params.contains(&"tenant_id") {
        for t in [A, B] {
            let mut q = required.clone();
            q.push(format!("tenant_id={t}"));
            queries.push((q.clone(), Some(t)));
            if r.params.contains(&"from_seq") {
                q.push("from_seq=0".into());
                queries.push((q, Some(t)));
            }
        }
    }
    let bodies: Vec<(Vec<u8>, Option<&'static str>)> = match (r.method.as_str(), r.path) {
        ("POST", "/v1/events") => [A, B]
            .iter()
            .map(|t| {
                let e = json!({"event_type": "iso.write", "actor": "user:iso@example.com",
                               "tenant_id": t, "payload": {"marker": marker(t)}});
                (serde_json::to_vec(&e).unwrap(), Some(*t))
            })
            .collect(),
        ("POST", "/v1/viewer-tokens") => [A, B]
            .iter()
            .map(|t| {
                (
                    serde_json::to_vec(&json!({"tenant_id": t})).unwrap(),
                    Some(*t),
                )
            })
            .collect(),
        ("POST", "/v1/approvals") => [A, B]
            .iter()
            .map(|t| (serde_json::to_vec(&approval_request(t)).unwrap(), Some(*t)))
            .collect(),
        ("POST", "/v1/approvals/{id}/approve" | "/v1/approvals/{id}/reject") => vec![(
            serde_json::to_vec(&json!({"approver": "user:iso@example.com"})).unwrap(),
            None,
        )],
        ("POST", "/v1/keys") => [A, B]
            .iter()
            .map(|t| {
                let k = json!({"role": "reader", "tenant_id": t});
                (serde_json::to_vec(&k).unwrap(), Some(*t))
            })
            .collect(),
        ("POST" | "PUT" | "PATCH", _) => panic!(
            "the isolation suite has no body for {} {}: teach `requests` one per tenant",
            r.method, r.path
        ),
        _ => vec![(Vec::new(), None)],
    };
    let mut methods = vec![r.method.clone()];
    if r.method == Method::GET {
        methods.push(Method::HEAD);
    }
    let mut out = Vec::new();
    for (path, path_tenant) in &paths {
        for (q, query_tenant) in &queries {
            for (body, body_tenant) in &bodies {
                for m in &methods {
                    let uri = if q.is_empty() {
                        path.clone()
                    } else {
                        format!("{path}?{}", q.join("&"))
                    };
                    let names = [*path_tenant, *query_tenant, *body_tenant]
                        .into_iter()
                        .flatten()
                        .collect();
                    out.push(Req {
                        method: m.clone(),
                        uri,
                        body: body.clone(),
                        names,
                        path_tenant: *path_tenant,
                        query_tenant: *query_tenant,
                        keyless: r.keyless,
                    });
                }
            }
        }
    }
    out
}

/// Every stored event as (tenant, event_id, event_type, actor, payload).
type Event = (String, String, String, String, Value);

async fn all_events(api: &Api) -> BTreeSet<(String, String, String, String, String)> {
    let mut out = BTreeSet::new();
    for t in api.store.tenants().await.unwrap() {
        for e in api
            .store
            .read_log(&t.tenant_id, 0, 1_000_000)
            .await
            .unwrap()
        {
            let payload = String::from_utf8_lossy(e.payload.as_deref().unwrap_or(&b"null"[..]));
            out.insert((
                e.tenant_id.to_string(),
                e.event_id.to_string(),
                e.event_type.to_string(),
                e.actor.to_string(),
                payload.into_owned(),
            ));
        }
    }
    out
}

async fn new_events(
    api: &Api,
    before: &BTreeSet<(String, String, String, String, String)>,
) -> Vec<Event> {
    all_events(api)
        .await
        .difference(before)
        .map(|(t, id, ty, actor, p)| {
            (
                t.clone(),
                id.clone(),
                ty.clone(),
                actor.clone(),
                serde_json::from_str(p).unwrap_or(Value::Null),
            )
        })
        .collect()
}

async fn key_states(api: &Api) -> BTreeSet<(String, bool)> {
    api.store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| (k.id, k.revoked))
        .collect()
}

/// The tenant an auditor's successful read must be logged in (`None`: not logged), from the
/// request alone: the tenant of the path, else the `tenant_id` asked for, else the key's
/// tenant, else `_global` (a read of every tenant).
fn expected_audit_tenant(req: &Req, bound: Option<&str>) -> Option<String> {
    if req.keyless {
        return None;
    }
    Some(
        req.path_tenant
            .or(req.query_tenant)
            .or(bound)
            .unwrap_or("_global")
            .to_string(),
    )
}

async fn send(api: &Api, key: &Key, req: &Req) -> Resp {
    let ct = (!req.body.is_empty()).then_some(JSON);
    api.request(
        req.method.clone(),
        &req.uri,
        Some(&key.secret),
        ct,
        req.body.clone(),
    )
    .await
}

/// Checks one answer and what it changed against the rules of the walk.
fn check(
    w: &World,
    key: &Key,
    req: &Req,
    resp: &Resp,
    new: &[Event],
    keys_changed: bool,
) -> Result<(), String> {
    let what = format!(
        "{} {} {} as {}",
        req.method,
        req.uri,
        req.body.len(),
        key.name()
    );
    let status = resp.status.as_u16();
    if status >= 500 {
        return Err(format!("{what}: {status} {}", resp.text()));
    }
    let success = (200..300).contains(&status);
    let request_text = format!("{} {}", req.uri, String::from_utf8_lossy(&req.body));
    if let Some(bound) = key.bound {
        // Nothing of the other tenant in any answer, headers included.
        let mut answer = resp.text();
        for (k, v) in &resp.headers {
            answer.push_str(&format!("\n{k}: {}", v.to_str().unwrap_or("")));
        }
        for s in w.foreign_secrets(bound, &request_text) {
            if answer.contains(s.as_str()) {
                return Err(format!("{what}: the answer holds {s:?}: {answer}"));
            }
        }
        // A request naming the other tenant is refused.
        if req.names.iter().any(|t| *t != bound) && success {
            return Err(format!(
                "{what}: {status} for a request naming another tenant"
            ));
        }
        // Nothing written outside the key's tenant.
        if let Some(e) = new.iter().find(|e| e.0 != bound) {
            return Err(format!("{what}: wrote {e:?} outside {bound}"));
        }
    }
    let (audits, others): (Vec<&Event>, Vec<&Event>) =
        new.iter().partition(|e| e.2 == "audit.read");
    if matches!(key.role, Role::Reader | Role::Auditor) && (!others.is_empty() || keys_changed) {
        return Err(format!("{what}: a read-only key wrote {others:?}"));
    }
    let audited =
        key.role == Role::Auditor && success && matches!(req.method, Method::GET | Method::HEAD);
    let expected = if audited {
        expected_audit_tenant(req, key.bound)
    } else {
        None
    };
    match (expected, audits.as_slice()) {
        (None, []) => {}
        (Some(t), [e]) => {
            let p = &e.4;
            let ok = e.0 == t
                && e.3 == format!("auditor:{}", key.id)
                && p["key_id"] == json!(key.id)
                && p["method"] == json!(req.method.as_str())
                && req.uri.starts_with(p["path"].as_str().unwrap_or("-"))
                && (p.get("scope") == Some(&json!("all_tenants"))) == (t == "_global");
            if !ok {
                return Err(format!("{what}: logged {e:?}, expected one in {t}"));
            }
        }
        (expected, audits) => {
            return Err(format!(
                "{what}: {status}; audit.read events {audits:?}, expected in {expected:?}"
            ))
        }
    }
    Ok(())
}

/// Every route × every key × every tenant filling: isolation, no writes by read-only keys, and
/// the audit rule.
#[tokio::test]
async fn every_route_with_every_key_keeps_tenants_apart_and_audits_exactly_what_was_read() {
    let w = World::new().await;
    // Routes authenticated by a viewer token ignore keys: walked with tokens below.
    let routes: Vec<Route> = trailkeep_server::routes()
        .into_iter()
        .filter(|r| !r.viewer_token)
        .collect();
    let mut failures = Vec::new();
    let mut answered = BTreeMap::<u16, usize>::new();
    let mut covered = BTreeSet::new();
    for r in &routes {
        for req in requests(&w, r) {
            for key in &w.keys {
                let before = all_events(&w.api).await;
                let keys_before = key_states(&w.api).await;
                let resp = send(&w.api, key, &req).await;
                let new = new_events(&w.api, &before).await;
                let keys_changed = key_states(&w.api).await != keys_before;
                *answered.entry(resp.status.as_u16()).or_default() += 1;
                if resp.status.is_success() {
                    covered.insert((r.method.to_string(), r.path, key.name()));
                }
                if let Err(e) = check(&w, key, &req, &resp, &new, keys_changed) {
                    failures.push(e);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The walk reached the data: every route answered some key successfully, and bound
    // auditors read their tenant through every tenant-scoped route.
    for r in &routes {
        assert!(
            covered
                .iter()
                .any(|(m, p, _)| *m == r.method.as_str() && *p == r.path),
            "{} {} never succeeded: {answered:?}",
            r.method,
            r.path
        );
        // Admin-only reads: keys, and the alert rules and deliveries (not tenant data).
        if !r.keyless
            && r.method == Method::GET
            && r.path != "/v1/keys"
            && !r.path.starts_with("/v1/alerts")
        {
            let name = format!("auditor@{A}");
            assert!(
                covered.contains(&(r.method.to_string(), r.path, name.clone())),
                "{name} never read {}",
                r.path
            );
        }
    }
}

/// Query-string fuzz: random names, values, repetitions and percent-encodings on every GET
/// route never give a 5xx, and never an `audit.read` event outside the key's scope (for an
/// unbound auditor: anywhere but the tenant it read).
#[test]
fn fuzzed_query_strings_never_fail_the_server_nor_steer_the_audit_log() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let w = rt.block_on(World::new());
    let gets: Vec<Route> = trailkeep_server::routes()
        .into_iter()
        .filter(|r| r.method == Method::GET)
        .collect();
    let names = prop::sample::select(vec![
        "tenant_id",
        "tenant_id",
        "tenant%5Fid",
        "tenant_id%00",
        "limit",
        "seq",
        "from",
        "to",
        "start",
        "end",
        "from_seq",
        "q",
        "since",
        "note",
        "",
        "%",
        "%zz",
        "+tenant_id",
    ]);
    let values = prop::sample::select(vec![
        A,
        B,
        "t_iso_%61",
        "t%5Fiso%5Fb",
        "new_tenant",
        "_global",
        "",
        "0",
        "1",
        "99999999999999999999",
        "-1",
        "%ff%fe",
        "%",
        "a+b",
        "2026-01-01T00:00:00Z",
    ]);
    let pair =
        (names, values, any::<bool>(), "[a-z0-9_%=&+]{0,6}").prop_map(|(n, v, raw, junk)| {
            if raw {
                format!("{n}={v}{junk}")
            } else {
                format!("{n}={v}")
            }
        });
    let strategy = (
        0..gets.len(),
        prop::bool::ANY,
        0..3usize,
        prop::collection::vec(pair, 0..4),
        prop::bool::ANY,
        prop::bool::ANY,
    );
    let auditors: Vec<&Key> = w
        .keys
        .iter()
        .filter(|k| k.role == Role::Auditor && k.bound != Some(B))
        .collect();
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let (served, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let result = runner.run(
        &strategy,
        |(route, tenant_b, key, pairs, head, enc_path)| {
            let r = &gets[route];
            let key = auditors[key % auditors.len()];
            let t = if tenant_b { B } else { A };
            // The path's tenant as is, or percent-encoded (`t%5Fiso%5Fa`).
            let path_t = if enc_path {
                t.replace('_', "%5F")
            } else {
                t.to_string()
            };
            let path = r
                .path
                .replace("{tenant}", &path_t)
                .replace("{event_id}", &w.events[t][0])
                .replace("{session_id}", &session_id(t))
                .replace("{id}", &w.approvals[t]);
            let uri = format!("{path}?{}", pairs.join("&"));
            let method = if head { Method::HEAD } else { Method::GET };
            rt.block_on(async {
                let before = all_events(&w.api).await;
                let resp = w
                    .api
                    .request(method.clone(), &uri, Some(&key.secret), None, Vec::new())
                    .await;
                let new = new_events(&w.api, &before).await;
                prop_assert!(
                    resp.status.as_u16() < 500,
                    "{method} {uri}: {} {}",
                    resp.status,
                    resp.text()
                );
                prop_assert!(new.iter().all(|e| e.2 == "audit.read"), "{new:?}");
                if resp.status.is_success() {
                    served.fetch_add(1, Ordering::Relaxed);
                } else {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
                if !resp.status.is_success() || r.keyless {
                    prop_assert!(new.is_empty(), "{method} {uri}: {} {new:?}", resp.status);
                    return Ok(());
                }
                prop_assert_eq!(new.len(), 1, "{} {}: {:?}", method, uri, new);
                let logged = &new[0].0;
                if let Some(bound) = key.bound {
                    prop_assert_eq!(logged, bound, "{} {}", method, uri);
                } else {
                    // The tenant read: the path's, else the one tenant_id the handler was given.
                    let parsed: Vec<(String, String)> =
                        axum::extract::Query::try_from_uri(&uri.parse().unwrap())
                            .map(|q: axum::extract::Query<Vec<(String, String)>>| q.0)
                            .map_err(|e| TestCaseError::fail(format!("{uri}: {e}")))?;
                    let asked = parsed
                        .iter()
                        .find(|(k, v)| k == "tenant_id" && !v.is_empty())
                        .map(|(_, v)| v.clone());
                    let expected = if r.path.contains('{') {
                        t.to_string()
                    } else {
                        asked.unwrap_or_else(|| "_global".to_string())
                    };
                    prop_assert_eq!(logged, &expected, "{} {}", method, uri);
                }
                Ok(())
            })
        },
    );
    if let Err(e) = result {
        panic!("{e}");
    }
    // The cases reached both outcomes.
    let (served, refused) = (served.into_inner(), refused.into_inner());
    assert!(
        served >= 10 && refused >= 10,
        "{served} served, {refused} refused"
    );
}

/// Every route authenticated by a viewer token × a token for A, a token for B, a token for A
/// bound to one actor, and tokens that are not valid × path parameters of A and of B: an
/// answer never holds the other tenant's data, a path naming the other tenant's event is never
/// a success, and every route answers its own tenant.
#[tokio::test]
async fn every_viewer_route_with_every_token_keeps_tenants_apart() {
    let w = World::new().await;
    let mint = |t: &'static str, actor: Option<&str>| {
        let body = match actor {
            Some(a) => json!({"tenant_id": t, "actor": a}),
            None => json!({"tenant_id": t}),
        };
        let api = &w.api;
        async move {
            let r = api
                .request(
                    Method::POST,
                    "/v1/viewer-tokens",
                    Some(ADMIN),
                    Some("application/json"),
                    serde_json::to_vec(&body).unwrap(),
                )
                .await;
            r.expect(201);
            r.json()["token"].as_str().unwrap().to_string()
        }
    };
    let mut tokens: Vec<(String, Option<&'static str>)> = vec![
        (mint(A, None).await, Some(A)),
        (mint(B, None).await, Some(B)),
        (mint(A, Some("user:iso@example.com")).await, Some(A)),
    ];
    let forged = {
        let (t, _) = &tokens[1];
        let mut chars: Vec<char> = t.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
        chars.into_iter().collect::<String>()
    };
    tokens.push((forged, None));
    tokens.push(("tkv1.e30.AAAA".to_string(), None));
    let routes: Vec<Route> = trailkeep_server::routes()
        .into_iter()
        .filter(|r| r.viewer_token)
        .collect();
    assert!(
        !routes.is_empty(),
        "the viewer's routes are marked in the route table"
    );
    let mut failures = Vec::new();
    let mut served = BTreeSet::new();
    for r in &routes {
        let paths: Vec<(String, Option<&'static str>)> = if r.path.contains("{event_id}") {
            [A, B]
                .iter()
                .map(|t| (r.path.replace("{event_id}", &w.events[t][0]), Some(*t)))
                .collect()
        } else {
            vec![(r.path.to_string(), None)]
        };
        for (path, path_tenant) in &paths {
            for (token, token_tenant) in &tokens {
                let uri = format!("{path}?token={}", enc(token));
                let resp = w
                    .api
                    .request(Method::GET, &uri, None, None, Vec::new())
                    .await;
                let status = resp.status.as_u16();
                let body = resp.text();
                let what = format!("GET {path} with a token for {token_tenant:?}: {status}");
                if status >= 500 {
                    failures.push(format!("{what}: a server error: {body}"));
                    continue;
                }
                let Some(own) = token_tenant else {
                    if resp.status.is_success() {
                        failures.push(format!("{what}: an invalid token was served"));
                    }
                    continue;
                };
                let other = if *own == A { B } else { A };
                // The other tenant's data, except what the request itself names (an
                // event id in the path is echoed by its 404).
                for s in w.secrets[other]
                    .iter()
                    .filter(|s| !uri.contains(s.as_str()))
                {
                    if body.contains(s.as_str()) {
                        failures.push(format!("{what}: the answer holds {other}'s {s}"));
                    }
                }
                if path_tenant.is_some_and(|p| p == other) && resp.status.is_success() {
                    failures.push(format!("{what}: another tenant's event was served"));
                }
                if resp.status.is_success() {
                    served.insert(r.path);
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    for r in &routes {
        assert!(
            served.contains(r.path),
            "{} never served its own tenant",
            r.path
        );
    }
}
