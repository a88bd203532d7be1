//! GET /v1/events (filters, order, cursors, from_seq), GET /v1/events/{id} (leaf recomputation),
//! GET /v1/tenants and GET /v1/stats.

use crate::common::*;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use trailkeep_core::leaf::{leaf_data, payload_commitment, LeafFields};

/// One event of a model dataset.
#[derive(Clone, Debug)]
struct M {
    id: String,
    tenant: &'static str,
    etype: &'static str,
    actor: &'static str,
    ts: &'static str,
    session: Option<&'static str>,
    payload: Value,
}

fn nanos(ts: &str) -> i128 {
    time::OffsetDateTime::parse(ts, &time::format_description::well_known::Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
}

impl M {
    fn json(&self) -> Value {
        let mut v = json!({
            "event_id": self.id, "event_type": self.etype, "actor": self.actor,
            "tenant_id": self.tenant, "timestamp": self.ts, "payload": self.payload,
        });
        if let Some(s) = self.session {
            v["impersonation_session"] = json!(s);
        }
        v
    }
    fn key(&self) -> (i128, String) {
        (nanos(self.ts), self.id.clone())
    }
}

fn dataset() -> Vec<M> {
    type Row = (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Value,
    );
    let rows: Vec<Row> = vec![
        (
            "t_q1",
            "app.login",
            "user:alice",
            "2026-03-01T10:00:00Z",
            None,
            json!({"msg": "Hello World"}),
        ),
        (
            "t_q1",
            "app.login.failed",
            "user:bob",
            "2026-03-01T11:00:00Z",
            None,
            json!({"msg": "bad password"}),
        ),
        (
            "t_q1",
            "billing.custom",
            "svc:billing",
            "2026-03-01T12:00:00Z",
            None,
            json!({}),
        ),
        (
            "t_q1",
            "billing.plan.change",
            "svc:billing",
            "2026-03-02T00:00:00Z",
            None,
            json!({"before": {"plan": "free"}, "after": {"plan": "pro"}, "reason": "Upgrade"}),
        ),
        (
            "t_q1",
            "billingx.foo",
            "user:alice",
            "2026-03-02T08:00:00Z",
            None,
            json!({}),
        ),
        (
            "t_q1",
            "billing",
            "user:alice",
            "2026-03-02T09:00:00Z",
            None,
            json!({}),
        ),
        (
            "t_q1",
            "app.action",
            "admin:root",
            "2026-03-02T10:00:00Z",
            Some("imp_1"),
            json!({"what": "reset"}),
        ),
        (
            "t_q1",
            "app.action",
            "admin:root",
            "2026-03-02T10:00:00Z",
            Some("imp_1"),
            json!({"what": "view"}),
        ),
        (
            "t_q2",
            "app.login",
            "user:alice",
            "2026-03-01T10:30:00Z",
            None,
            json!({"msg": "HELLO there"}),
        ),
        (
            "t_q2",
            "billing.custom",
            "user:carol",
            "2026-03-03T00:00:00Z",
            Some("imp_1"),
            json!({"k": "v"}),
        ),
        (
            "t_q2",
            "app.action",
            "user:carol",
            "2026-03-03T00:00:00.000500Z",
            Some("imp_2"),
            json!({}),
        ),
    ];
    rows.into_iter()
        .enumerate()
        .map(|(n, (tenant, etype, actor, ts, session, payload))| M {
            // Later rows get smaller ids: ties in timestamp must sort by id, not by arrival.
            id: ordered_uuid(0x5eed, 100 - n as u32),
            tenant,
            etype,
            actor,
            ts,
            session,
            payload,
        })
        .collect()
}

async fn seed(api: &Api, rows: &[M]) {
    let batch: Vec<Value> = rows.iter().map(M::json).collect();
    api.ingest(&Value::Array(batch)).await;
}

fn expect(rows: &[M], pred: impl Fn(&M) -> bool, asc: bool) -> Vec<String> {
    let mut v: Vec<&M> = rows.iter().filter(|m| pred(m)).collect();
    v.sort_by_key(|m| m.key());
    if !asc {
        v.reverse();
    }
    v.into_iter().map(|m| m.id.clone()).collect()
}

#[tokio::test]
async fn filters_match_a_model() {
    let api = Api::new().await;
    let rows = dataset();
    seed(&api, &rows).await;
    let since = nanos("2026-03-01T11:00:00Z");
    let until = nanos("2026-03-02T00:00:00Z");
    type Pred = Box<dyn Fn(&M) -> bool>;
    let cases: Vec<(String, Pred)> = vec![
        ("".into(), Box::new(|_| true)),
        ("tenant_id=t_q1".into(), Box::new(|m| m.tenant == "t_q1")),
        ("tenant_id=t_q2".into(), Box::new(|m| m.tenant == "t_q2")),
        ("tenant_id=t_none".into(), Box::new(|_| false)),
        (
            "event_type=app.login".into(),
            Box::new(|m| m.etype == "app.login"),
        ),
        (
            "event_type=billing.*".into(),
            Box::new(|m| m.etype.starts_with("billing.")),
        ),
        (
            "event_type=app.*&tenant_id=t_q1".into(),
            Box::new(|m| m.etype.starts_with("app.") && m.tenant == "t_q1"),
        ),
        (
            "event_type=app.login.*".into(),
            Box::new(|m| m.etype.starts_with("app.login.")),
        ),
        (
            "event_type=billing".into(),
            Box::new(|m| m.etype == "billing"),
        ),
        (
            "actor=user:alice".into(),
            Box::new(|m| m.actor == "user:alice"),
        ),
        ("actor=user:ali".into(), Box::new(|_| false)),
        (
            "actor=svc:billing&event_type=billing.*".into(),
            Box::new(|m| m.actor == "svc:billing" && m.etype.starts_with("billing.")),
        ),
        (
            format!("since={}", enc("2026-03-01T11:00:00Z")),
            Box::new(move |m| nanos(m.ts) >= since),
        ),
        (
            format!("until={}", enc("2026-03-02T00:00:00Z")),
            Box::new(move |m| nanos(m.ts) < until),
        ),
        (
            format!(
                "since={}&until={}",
                enc("2026-03-01T11:00:00Z"),
                enc("2026-03-02T00:00:00Z")
            ),
            Box::new(move |m| nanos(m.ts) >= since && nanos(m.ts) < until),
        ),
        (
            // Offsets are understood: 12:00+01:00 is 11:00Z.
            format!("since={}", enc("2026-03-01T12:00:00+01:00")),
            Box::new(move |m| nanos(m.ts) >= since),
        ),
        (
            // Sub-millisecond bounds.
            format!("since={}", enc("2026-03-01T10:00:00.000001Z")),
            Box::new(|m| nanos(m.ts) > nanos("2026-03-01T10:00:00Z")),
        ),
        (
            format!("until={}", enc("2026-03-03T00:00:00.0005Z")),
            Box::new(|m| nanos(m.ts) < nanos("2026-03-03T00:00:00.0005Z")),
        ),
        (
            format!(
                "since={}&until={}&event_type=billing.*",
                enc("2026-03-01T12:00:00Z"),
                enc("2026-03-03T00:00:00Z")
            ),
            Box::new(|m| {
                m.etype.starts_with("billing.")
                    && nanos(m.ts) >= nanos("2026-03-01T12:00:00Z")
                    && nanos(m.ts) < nanos("2026-03-03T00:00:00Z")
            }),
        ),
        (
            "session=imp_1".into(),
            Box::new(|m| m.session == Some("imp_1")),
        ),
        (
            "session=imp_1&tenant_id=t_q2".into(),
            Box::new(|m| m.session == Some("imp_1") && m.tenant == "t_q2"),
        ),
        ("session=imp_9".into(), Box::new(|_| false)),
        (
            "q=hello".into(),
            Box::new(|m| m.payload.to_string().to_lowercase().contains("hello")),
        ),
        (
            "q=HeLLo%20WORLD".into(),
            Box::new(|m| m.payload.to_string().to_lowercase().contains("hello world")),
        ),
        ("q=ALICE".into(), Box::new(|m| m.actor.contains("alice"))),
        (
            "q=upgrade".into(),
            Box::new(|m| m.etype == "billing.plan.change"),
        ),
        (
            "q=plan&tenant_id=t_q1&event_type=billing.*".into(),
            Box::new(|m| m.etype == "billing.plan.change"),
        ),
        ("q=zzz-no-match".into(), Box::new(|_| false)),
    ];
    for (qs, pred) in &cases {
        for asc in [false, true] {
            let want = expect(&rows, pred, asc);
            let order = if asc { "&order=asc" } else { "" };
            // One page, then small pages.
            let r = api.get(ADMIN, &format!("/v1/events?{qs}{order}")).await;
            r.expect(200);
            let v = r.json();
            assert_eq!(ids(v["events"].as_array().unwrap()), want, "?{qs}{order}");
            assert_eq!(v["next_cursor"], Value::Null, "?{qs}{order}");
            let got = walk(&api, ADMIN, &format!("/v1/events?{qs}{order}&limit=2")).await;
            assert_eq!(ids(&got), want, "paged ?{qs}{order}");
        }
    }
    // order=desc is the default and can be given explicitly.
    let a = api.get(ADMIN, "/v1/events").await.json();
    let b = api.get(ADMIN, "/v1/events?order=desc").await.json();
    assert_eq!(a, b);
}

#[tokio::test]
async fn listed_events_carry_the_full_envelope() {
    let api = Api::new().await;
    let rows = dataset();
    seed(&api, &rows).await;
    let r = api
        .get(ADMIN, "/v1/events?tenant_id=t_q1&session=imp_1&order=asc")
        .await
        .json();
    let evs = r["events"].as_array().unwrap();
    assert_eq!(evs.len(), 2);
    let e = &evs[0];
    assert_eq!(e["event_id"], json!(rows[7].id));
    assert_eq!(e["event_type"], "app.action");
    assert_eq!(e["actor"], "admin:root");
    assert_eq!(e["tenant_id"], "t_q1");
    assert_eq!(e["timestamp"], "2026-03-02T10:00:00.000Z");
    assert_eq!(e["impersonation_session"], "imp_1");
    assert_eq!(e["payload"], json!({"what": "view"}));
    assert_eq!(e["seq"], 7);
    assert!(e["received_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(b64(e["leaf_hash"].as_str().unwrap()).len(), 32);
    assert_eq!(e["payload_salt"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn bad_query_parameters_are_400() {
    let api = Api::new().await;
    seed(&api, &dataset()).await;
    let r = api.get(ADMIN, "/v1/events?limit=1").await.json();
    let cursor = r["next_cursor"].as_str().unwrap().to_string();
    for qs in [
        "limit=0".to_string(),
        "limit=1001".to_string(),
        "limit=-1".to_string(),
        "limit=ten".to_string(),
        "cursor=garbage".to_string(),
        "cursor=AAAA".to_string(),
        format!("cursor={}x", enc(&cursor)),
        // A cursor of a descending listing used for an ascending one.
        format!("cursor={}&order=asc", enc(&cursor)),
        "since=yesterday".to_string(),
        "since=2026-03-01".to_string(),
        "until=2026-13-01T00:00:00Z".to_string(),
        "order=up".to_string(),
        "event_type=Bad.Type".to_string(),
        "event_type=billing*".to_string(),
        "event_type=*.x".to_string(),
        "tenant_id=bad%20tenant".to_string(),
        "from_seq=-1&tenant_id=t_q1".to_string(),
        "from_seq=abc&tenant_id=t_q1".to_string(),
        // from_seq follows one tenant's log.
        "from_seq=0".to_string(),
    ] {
        let r = api.get(ADMIN, &format!("/v1/events?{qs}")).await;
        assert_error(&r, 400, "bad_request");
    }
    for qs in ["since=yesterday", "until=x", "tenant_id=bad%20t"] {
        let r = api.get(ADMIN, &format!("/v1/stats?{qs}")).await;
        assert_error(&r, 400, "bad_request");
    }
    // The bounds themselves are fine.
    api.get(ADMIN, "/v1/events?limit=1").await.expect(200);
    let r = api.get(ADMIN, "/v1/events?limit=1000").await;
    r.expect(200);
    assert_eq!(r.json()["events"].as_array().unwrap().len(), 11);
}

#[tokio::test]
async fn limit_defaults_to_100() {
    let api = Api::new().await;
    let batch: Vec<Value> = (0..150).map(|_| ev("t_1", "x.y")).collect();
    api.ingest(&Value::Array(batch)).await;
    let v = api.get(ADMIN, "/v1/events").await.json();
    assert_eq!(v["events"].as_array().unwrap().len(), 100);
    assert!(v["next_cursor"].is_string());
}

#[tokio::test]
async fn cursor_walk_over_250_events_returns_each_once_in_order() {
    let api = Api::new().await;
    // 250 events over 40 distinct timestamps (many ties) in two tenants, random ids.
    let mut model = Vec::new();
    let batch: Vec<Value> = (0..250)
        .map(|i| {
            let ts = format!("2026-04-01T00:{:02}:{:02}.5Z", (i * 7) % 40, (i * 13) % 3);
            let id = uuid();
            let tenant = if i % 3 == 0 { "t_p2" } else { "t_p1" };
            model.push((nanos(&ts), id.clone(), tenant));
            ev_full(tenant, "page.test", &id, &ts, json!({"i": i}))
        })
        .collect();
    api.ingest(&Value::Array(batch)).await;
    model.sort();
    for (tenant, order) in [
        (None, "desc"),
        (None, "asc"),
        (Some("t_p1"), "desc"),
        (Some("t_p1"), "asc"),
    ] {
        let mut want: Vec<String> = model
            .iter()
            .filter(|m| tenant.is_none_or(|t| m.2 == t))
            .map(|m| m.1.clone())
            .collect();
        if order == "desc" {
            want.reverse();
        }
        let mut uri = format!("/v1/events?limit=7&order={order}");
        if let Some(t) = tenant {
            uri.push_str(&format!("&tenant_id={t}"));
        }
        // Walk by hand to check page sizes.
        let mut got = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut u = uri.clone();
            if let Some(c) = &cursor {
                u.push_str(&format!("&cursor={}", enc(c)));
            }
            let v = api.get(ADMIN, &u).await.json();
            let page = v["events"].as_array().unwrap().clone();
            assert!(page.len() <= 7);
            got.extend(ids(&page));
            match v["next_cursor"].as_str() {
                Some(c) => {
                    assert_eq!(page.len(), 7, "a non-final page is full");
                    cursor = Some(c.to_string());
                }
                None => break,
            }
        }
        assert_eq!(got.len(), want.len(), "{uri}");
        assert_eq!(got, want, "{uri}");
    }
}

#[tokio::test]
async fn cursor_walk_during_ingest_never_repeats_or_skips() {
    let api = Api::new().await;
    let mut original = HashSet::new();
    let batch: Vec<Value> = (0..120)
        .map(|i| {
            let ts = format!(
                "2025-{:02}-{:02}T{:02}:00:00Z",
                1 + i % 12,
                1 + (i * 7) % 28,
                (i * 5) % 24
            );
            let id = uuid();
            original.insert(id.clone());
            ev_full("t_w", "walk.test", &id, &ts, json!({}))
        })
        .collect();
    api.ingest(&Value::Array(batch)).await;

    for order in ["desc", "asc"] {
        let mut seen: Vec<(i128, String)> = Vec::new();
        let mut cursor: Option<String> = None;
        let mut page_no = 0u32;
        loop {
            let mut u = format!("/v1/events?tenant_id=t_w&limit=7&order={order}");
            if let Some(c) = &cursor {
                u.push_str(&format!("&cursor={}", enc(c)));
            }
            let v = api.get(ADMIN, &u).await.json();
            for e in v["events"].as_array().unwrap() {
                seen.push((
                    nanos(e["timestamp"].as_str().unwrap()),
                    e["event_id"].as_str().unwrap().to_string(),
                ));
            }
            // Between pages: a "now" event, back-filled events on both sides of the walk's
            // position, and an event in another tenant.
            page_no += 1;
            let ts_a = format!(
                "2025-{:02}-{:02}T12:30:00Z",
                1 + page_no % 12,
                1 + page_no % 28
            );
            let ts_b = format!(
                "2025-{:02}-{:02}T03:15:00Z",
                12 - page_no % 12,
                28 - page_no % 28
            );
            api.ingest(&json!([
                ev("t_w", "walk.new"),
                ev_full("t_w", "walk.back", &uuid(), &ts_a, json!({})),
                ev_full("t_w", "walk.back", &uuid(), &ts_b, json!({})),
                ev("t_other", "walk.new"),
            ]))
            .await;
            match v["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
            assert!(page_no < 10_000);
        }
        let mut uniq = HashSet::new();
        for (_, id) in &seen {
            assert!(uniq.insert(id.clone()), "{order}: event {id} listed twice");
        }
        for id in &original {
            assert!(uniq.contains(id), "{order}: event {id} skipped");
        }
        // Strictly monotonic in (timestamp, event_id).
        for w in seen.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            let a = (a.0, uuid::Uuid::parse_str(&a.1).unwrap());
            let b = (b.0, uuid::Uuid::parse_str(&b.1).unwrap());
            if order == "desc" {
                assert!(a > b, "{order}: {a:?} then {b:?}");
            } else {
                assert!(a < b, "{order}: {a:?} then {b:?}");
            }
        }
    }
}

#[tokio::test]
async fn from_seq_lists_the_log_in_seq_order_including_backfill() {
    let api = Api::new().await;
    let rows = dataset();
    // Timestamps are not in seq order: the log order must be seq order regardless.
    seed(&api, &rows).await;
    let v = api
        .get(ADMIN, "/v1/events?tenant_id=t_q1&from_seq=3&limit=3")
        .await
        .json();
    let evs = v["events"].as_array().unwrap();
    let seqs: Vec<u64> = evs.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, [3, 4, 5]);
    assert_eq!(evs[0]["event_id"], json!(rows[3].id));
    // Back-filled events come after in log order.
    let back = api
        .ingest(&ev_full(
            "t_q1",
            "x.back",
            &uuid(),
            "2001-01-01T00:00:00Z",
            json!({}),
        ))
        .await;
    let v = api
        .get(ADMIN, "/v1/events?tenant_id=t_q1&from_seq=8")
        .await
        .json();
    let evs = v["events"].as_array().unwrap();
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0]["seq"], 8);
    assert_eq!(evs[0]["event_id"], back["receipts"][0]["event_id"]);
    // Past the end, and an unknown tenant: empty.
    for uri in [
        "/v1/events?tenant_id=t_q1&from_seq=9",
        "/v1/events?tenant_id=t_q1&from_seq=1000000",
        "/v1/events?tenant_id=t_nobody&from_seq=0",
    ] {
        let v = api.get(ADMIN, uri).await;
        v.expect(200);
        assert_eq!(v.json()["events"], json!([]), "{uri}");
    }
    // t_q2 has its own log.
    let v = api
        .get(ADMIN, "/v1/events?tenant_id=t_q2&from_seq=1&limit=1000")
        .await
        .json();
    let seqs: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2]);
}

#[tokio::test]
async fn get_event_leaf_is_recomputable() {
    let api = Api::new().await;
    let id = uuid();
    let payload = json!({"reason": "tone \"fix\"\n", "prompt_id": "pr_7", "editor": "user:ana3@acme.example",
                    "before": {"prompt_hash": format!("sha256:{}", "0".repeat(64))},
                    "after": {"prompt_hash": format!("sha256:{}", "f".repeat(64))}});
    let apr = api.approval_for("t_0042", "prompt.update", &payload).await;
    let full = json!({
        "event_id": id,
        "event_type": "prompt.update",
        "actor": "user:ana3@acme.example",
        "tenant_id": "t_0042",
        "payload": payload,
        "timestamp": "2026-11-23T10:15:00.123Z",
        "source_ip": "2001:DB8::7",
        "impersonation_session": "imp_8812",
        "approval_id": apr,
    });
    let id2 = uuid();
    let minimal = json!({
        "event_id": id2, "event_type": "x.y", "actor": "svc:a", "tenant_id": "t_0042",
        "payload": {"n": 10, "b": [true, false, null], "a": "é😀"},
    });
    let receipts = api.ingest(&json!([full, minimal])).await;
    // The canonical payloads (RFC 8785), written out by hand.
    let canon_full = format!(
        r#"{{"after":{{"prompt_hash":"sha256:{}"}},"before":{{"prompt_hash":"sha256:{}"}},"editor":"user:ana3@acme.example","prompt_id":"pr_7","reason":"tone \"fix\"\n"}}"#,
        "f".repeat(64),
        "0".repeat(64)
    );
    let canon_min = r#"{"a":"é😀","b":[true,false,null],"n":10}"#.to_string();

    // Seqs: the approval's four steps (request, two approves, granted) come first; the
    // approval.used step follows the request's own events.
    for (idx, (eid, canon, seq)) in [(&id, canon_full, 4u64), (&id2, canon_min, 5)]
        .into_iter()
        .enumerate()
    {
        let r = api.get_event(eid).await;
        r.expect(200);
        let text = r.text();
        let v = r.json();
        assert_eq!(v["seq"], seq);
        assert!(v["received_at"].as_str().unwrap().ends_with('Z'));
        let salt_hex = v["payload_salt"].as_str().unwrap();
        assert_eq!(salt_hex.len(), 64);
        assert!(salt_hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        let salt: [u8; 32] = hex::decode(salt_hex).unwrap().try_into().unwrap();
        // The payload is returned as its canonical bytes.
        assert!(
            text.contains(&format!("\"payload\":{canon},")),
            "payload not canonical: {text}"
        );
        let ts = v["timestamp"].as_str().unwrap().to_string();
        let data = leaf_data(
            &LeafFields {
                event_id: v["event_id"].as_str().unwrap(),
                event_type: v["event_type"].as_str().unwrap(),
                actor: v["actor"].as_str().unwrap(),
                tenant_id: v["tenant_id"].as_str().unwrap(),
                timestamp: &ts,
                source_ip: v["source_ip"].as_str(),
                impersonation_session: v["impersonation_session"].as_str(),
                approval_id: v["approval_id"].as_str(),
            },
            &payload_commitment(&salt, canon.as_bytes()),
        );
        let mut h = Sha256::new();
        h.update([0u8]);
        h.update(&data);
        let expected: [u8; 32] = h.finalize().into();
        assert_eq!(b64(v["leaf_hash"].as_str().unwrap()), expected.to_vec());
        // The receipt's leaf hash is the same.
        assert_eq!(receipts["receipts"][idx]["leaf_hash"], v["leaf_hash"]);
        // Leaf data carries the normalised source_ip and omits absent fields.
        let d = String::from_utf8(data).unwrap();
        if idx == 0 {
            assert!(d.contains(r#""source_ip":"2001:db8::7""#), "{d}");
        } else {
            assert!(
                !d.contains("source_ip") && !d.contains("approval_id"),
                "{d}"
            );
        }
    }
    // Ids are accepted in upper case; unknown ids are 404.
    api.get_event(&id.to_uppercase()).await.expect(200);
    assert_error(&api.get_event(&uuid()).await, 404, "not_found");
}

#[tokio::test]
async fn tenants_summaries() {
    let api = Api::new().await;
    let r = api.get(ADMIN, "/v1/tenants").await;
    r.expect(200);
    assert_eq!(r.json(), json!({"tenants": []}));
    // Newest first in the request: first/last come from timestamps, not arrival.
    api.ingest(&json!([
        ev_full("t_b", "x.y", &uuid(), "2026-05-03T00:00:00.250Z", json!({})),
        ev_full("t_b", "x.y", &uuid(), "2026-05-01T00:00:00Z", json!({})),
        ev_full(
            "t_b",
            "x.y",
            &uuid(),
            "2026-05-02T00:00:00.123456Z",
            json!({})
        ),
        ev_full("t_a", "x.y", &uuid(), "2026-01-01T00:00:00Z", json!({})),
        ev_full("_global", "x.y", &uuid(), "2026-02-01T00:00:00Z", json!({})),
    ]))
    .await;
    let v = api.get(ADMIN, "/v1/tenants").await.json();
    let list = v["tenants"].as_array().unwrap();
    let by: BTreeMap<&str, &Value> = list
        .iter()
        .map(|t| (t["tenant_id"].as_str().unwrap(), t))
        .collect();
    assert_eq!(by.len(), 3);
    let b = by["t_b"];
    assert_eq!(b["event_count"], 3);
    assert_eq!(b["first_timestamp"], "2026-05-01T00:00:00.000Z");
    assert_eq!(b["last_timestamp"], "2026-05-03T00:00:00.250Z");
    assert_eq!(b["retention_days"], 365);
    assert_eq!(b["legal_hold"], false);
    assert_eq!(by["t_a"]["event_count"], 1);
    assert_eq!(by["t_a"]["first_timestamp"], by["t_a"]["last_timestamp"]);
    assert_eq!(by["_global"]["event_count"], 1);
    let g = api.get(ADMIN, "/v1/events?tenant_id=_global").await.json();
    assert_eq!(g["events"].as_array().unwrap().len(), 1);
    assert_eq!(g["events"][0]["tenant_id"], "_global");
    // Duplicates do not count twice; a later event moves last_timestamp.
    api.ingest(&ev_full(
        "t_a",
        "x.y",
        &uuid(),
        "2026-01-05T00:00:00Z",
        json!({}),
    ))
    .await;
    let v = api.get(ADMIN, "/v1/tenants").await.json();
    let a = v["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["tenant_id"] == "t_a")
        .unwrap()
        .clone();
    assert_eq!(a["event_count"], 2);
    assert_eq!(a["first_timestamp"], "2026-01-01T00:00:00.000Z");
    assert_eq!(a["last_timestamp"], "2026-01-05T00:00:00.000Z");
}

#[tokio::test]
async fn stats_exact_counts_with_partial_days() {
    let api = Api::new().await;
    let rows: Vec<(&str, &str, &str)> = vec![
        ("t_s", "a.x", "2026-06-01T00:00:00Z"),
        ("t_s", "a.x", "2026-06-01T10:00:00Z"),
        ("t_s", "b.y", "2026-06-01T23:00:00Z"),
        ("t_s", "b.y", "2026-06-01T23:59:59.999999Z"),
        ("t_s", "a.x", "2026-06-02T00:00:00Z"),
        ("t_s", "b.y", "2026-06-02T12:00:00Z"),
        ("t_s", "a.x", "2026-06-03T05:00:00Z"),
        ("t_s", "a.x", "2026-06-04T00:00:00Z"),
        ("t_o", "a.x", "2026-06-02T12:00:00Z"),
        ("t_o", "c.z", "2026-06-05T12:00:00Z"),
    ];
    let batch: Vec<Value> = rows
        .iter()
        .map(|(t, ty, ts)| ev_full(t, ty, &uuid(), ts, json!({})))
        .collect();
    api.ingest(&Value::Array(batch.clone())).await;
    // Re-sent duplicates and a refused conflicting request must not count.
    let dup = api.ingest(&Value::Array(batch.clone())).await;
    assert_eq!(dup["duplicates"], 10);
    let mut conflicting = batch.clone();
    conflicting[0]["payload"] = json!({"changed": 1});
    conflicting.push(ev_full(
        "t_s",
        "a.x",
        &uuid(),
        "2026-06-02T12:00:00Z",
        json!({}),
    ));
    api.post_json(ADMIN, &Value::Array(conflicting))
        .await
        .expect(409);

    let model = |tenant: Option<&str>, since: Option<&str>, until: Option<&str>| {
        let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_day: BTreeMap<String, u64> = BTreeMap::new();
        let mut total = 0u64;
        for (t, ty, ts) in &rows {
            let n = nanos(ts);
            if tenant.is_some_and(|x| x != *t)
                || since.is_some_and(|s| n < nanos(s))
                || until.is_some_and(|u| n >= nanos(u))
            {
                continue;
            }
            *by_type.entry(ty.to_string()).or_default() += 1;
            *by_day.entry(ts[..10].to_string()).or_default() += 1;
            total += 1;
        }
        (total, json!(by_type), json!(by_day))
    };
    let cases: Vec<(Option<&str>, Option<&str>, Option<&str>)> = vec![
        (None, None, None),
        (Some("t_s"), None, None),
        (Some("t_o"), None, None),
        (Some("t_none"), None, None),
        // Cuts days in the middle at both ends.
        (
            Some("t_s"),
            Some("2026-06-01T12:00:00Z"),
            Some("2026-06-03T01:00:00Z"),
        ),
        (
            None,
            Some("2026-06-01T12:00:00Z"),
            Some("2026-06-03T01:00:00Z"),
        ),
        // Inside one day.
        (
            Some("t_s"),
            Some("2026-06-01T05:00:00Z"),
            Some("2026-06-01T23:30:00Z"),
        ),
        // Exactly at day boundaries.
        (
            Some("t_s"),
            Some("2026-06-01T00:00:00Z"),
            Some("2026-06-02T00:00:00Z"),
        ),
        (
            Some("t_s"),
            Some("2026-06-02T00:00:00Z"),
            Some("2026-06-04T00:00:00Z"),
        ),
        // Sub-millisecond edges.
        (
            Some("t_s"),
            Some("2026-06-01T23:59:59.999999Z"),
            Some("2026-06-02T00:00:00.000001Z"),
        ),
        (Some("t_s"), Some("2026-06-01T23:00:00.000001Z"), None),
        // Only one bound.
        (Some("t_s"), Some("2026-06-02T06:00:00Z"), None),
        (Some("t_s"), None, Some("2026-06-02T06:00:00Z")),
        (None, None, Some("2026-06-02T12:00:00Z")),
        // Empty and reversed ranges are refused (400), see tests/api/abuse.rs.
    ];
    for (tenant, since, until) in cases {
        let mut qs = Vec::new();
        if let Some(t) = tenant {
            qs.push(format!("tenant_id={t}"));
        }
        if let Some(s) = since {
            qs.push(format!("since={}", enc(s)));
        }
        if let Some(u) = until {
            qs.push(format!("until={}", enc(u)));
        }
        let uri = format!("/v1/stats?{}", qs.join("&"));
        let r = api.get(ADMIN, &uri).await;
        r.expect(200);
        let v = r.json();
        let (total, by_type, by_day) = model(tenant, since, until);
        assert_eq!(v["counts_by_type"], by_type, "{uri}: {v}");
        assert_eq!(v["counts_by_day"], by_day, "{uri}: {v}");
        assert_eq!(v["total"], total, "{uri}: {v}");
    }
}

#[tokio::test]
async fn q_is_case_insensitive_beyond_ascii() {
    // docs/api.md: `q` is a case-insensitive substring search over the payload and actor.
    let api = Api::new().await;
    let v = api
        .ingest(&json!([
            ev_full(
                "t_u",
                "x.y",
                &uuid(),
                "2026-01-01T00:00:00Z",
                json!({"city": "MÜNCHEN"})
            ),
            ev_full(
                "t_u",
                "x.y",
                &uuid(),
                "2026-01-01T00:00:01Z",
                json!({"city": "Berlin"})
            ),
        ]))
        .await;
    let munich = v["receipts"][0]["event_id"].as_str().unwrap().to_string();
    let r = api
        .get(ADMIN, &format!("/v1/events?q={}", enc("München")))
        .await
        .json();
    assert_eq!(ids(r["events"].as_array().unwrap()), [munich], "q=München");
}

#[tokio::test]
async fn q_finds_text_holding_json_escaped_characters() {
    // The payload is stored as canonical JSON; a search for a value's text must still find it.
    let api = Api::new().await;
    let v = api
        .ingest(&json!([
            ev_full(
                "t_u",
                "x.y",
                &uuid(),
                "2026-01-01T00:00:00Z",
                json!({"note": "say \"hi\""})
            ),
            ev_full(
                "t_u",
                "x.y",
                &uuid(),
                "2026-01-01T00:00:01Z",
                json!({"path": "C:\\temp"})
            ),
            ev_full(
                "t_u",
                "x.y",
                &uuid(),
                "2026-01-01T00:00:02Z",
                json!({"note": "say hi"})
            ),
        ]))
        .await;
    let quoted = v["receipts"][0]["event_id"].as_str().unwrap().to_string();
    let path = v["receipts"][1]["event_id"].as_str().unwrap().to_string();
    let r = api
        .get(ADMIN, &format!("/v1/events?q={}", enc("say \"hi")))
        .await
        .json();
    assert_eq!(ids(r["events"].as_array().unwrap()), [quoted], "q=say \"hi");
    let r = api
        .get(ADMIN, &format!("/v1/events?q={}", enc("c:\\temp")))
        .await
        .json();
    assert_eq!(ids(r["events"].as_array().unwrap()), [path], "q=c:\\temp");
}

#[tokio::test]
async fn from_seq_lists_the_log_from_n_as_documented() {
    // crates/server/src/query.rs documents `from_seq=N` (seq ≥ N, ascending), and
    // `trailkeep tail` (src/query_cmd.rs) sends it.
    let api = Api::new().await;
    seed(&api, &dataset()).await;
    let r = api
        .get(ADMIN, "/v1/events?tenant_id=t_q1&from_seq=2&limit=3")
        .await;
    r.expect(200);
    let v = r.json();
    let seqs: Vec<u64> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 3, 4], "{v}");
}
