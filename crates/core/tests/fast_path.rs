//! Differential tests of the ingest fast path (`validate::parse_body`) against the reference
//! path it must equal: `split_body` + `validate_batch` (serde_json `Value`, the catalogue over
//! `Value`, `serde_json_canonicalizer`).
//!
//! For every body: when the fast path accepts, the reference accepts the same events (same
//! canonical payload bytes, same leaf hashes); when the reference accepts a body without
//! duplicate keys, the fast path accepts it too (it declines only what it leaves to the
//! reference); and `parse_body` answers exactly what the reference answers, refusals included.

use proptest::prelude::*;
use trailkeep_core::leaf::{event_leaf_hash, leaf_data, leaf_hash, payload_commitment, LeafFields};
use trailkeep_core::validate::{
    parse_body, parse_body_fast, split_body, validate_batch, BodyFormat, BodyRefusal,
};
use trailkeep_core::{NewEvent, Timestamp, Uuid};

#[path = "fast_path/fuzz.rs"]
mod fuzz;

fn now() -> Timestamp {
    Timestamp::parse("2026-11-23T10:15:00.123456789Z").unwrap()
}

fn reference(body: &[u8], format: BodyFormat) -> Result<Vec<NewEvent>, BodyRefusal> {
    let raws = split_body(body, format).map_err(BodyRefusal::Body)?;
    validate_batch(&raws, now()).map_err(BodyRefusal::Invalid)
}

/// Server-assigned ids are random: blank them on both sides.
fn masked(events: &[NewEvent]) -> Vec<NewEvent> {
    events
        .iter()
        .map(|e| {
            let mut e = e.clone();
            if e.event_id_assigned {
                e.event_id = Uuid::nil();
            }
            e
        })
        .collect()
}

/// The leaf hash as the store computes it (streamed) and as an auditor would (leaf data first).
fn leaf_hashes(e: &NewEvent) -> ([u8; 32], [u8; 32]) {
    let id = e.event_id.to_string();
    let ts = e.timestamp.to_rfc3339();
    let f = LeafFields {
        event_id: &id,
        event_type: &e.event_type,
        actor: &e.actor,
        tenant_id: &e.tenant_id,
        timestamp: &ts,
        source_ip: e.source_ip.as_deref(),
        impersonation_session: e.impersonation_session.as_deref(),
        approval_id: e.approval_id.as_deref(),
    };
    let salt = [0x5a; 32];
    (
        event_leaf_hash(&f, &salt, &e.payload),
        leaf_hash(&leaf_data(&f, &payload_commitment(&salt, &e.payload))),
    )
}

/// Checks one body; `has_duplicates` says whether the body holds a duplicate key anywhere.
fn check(body: &[u8], format: BodyFormat, has_duplicates: bool) -> (bool, bool) {
    let reference = reference(body, format);
    let fast = parse_body_fast(body, format, now());
    // Failure messages show the body, cut short.
    let text: String = String::from_utf8_lossy(body).chars().take(400).collect();
    match (&fast, &reference) {
        (Some(f), Ok(r)) => {
            assert_eq!(masked(f), masked(r), "{text}");
            for (a, b) in f.iter().zip(r) {
                if !a.event_id_assigned {
                    let (x, y) = leaf_hashes(a);
                    assert_eq!(x, y, "{text}");
                    assert_eq!(x, leaf_hashes(b).0, "{text}");
                }
            }
        }
        (Some(_), Err(e)) => {
            panic!("fast path accepted what the reference refuses ({e:?}): {text}")
        }
        (None, Ok(_)) => assert!(
            has_duplicates,
            "fast path declined a valid body without duplicate keys: {text}"
        ),
        (None, Err(_)) => {}
    }
    match (parse_body(body, format, now()), &reference) {
        (Ok(a), Ok(b)) => assert_eq!(masked(&a), masked(b), "{text}"),
        (a, b) => assert_eq!(a.as_ref().err(), b.as_ref().err(), "{text}"),
    }
    (fast.is_some(), reference.is_ok())
}

// ---- the generated sample of gen_events.py ----

const SAMPLE: &str = include_str!("fixtures/events300.ndjson");

#[test]
fn every_sample_event_takes_the_fast_path_with_reference_results() {
    for line in SAMPLE.lines() {
        assert_eq!(
            check(line.as_bytes(), BodyFormat::Json, false),
            (true, true)
        );
        assert_eq!(
            check(line.as_bytes(), BodyFormat::Ndjson, false),
            (true, true)
        );
    }
    assert_eq!(
        check(SAMPLE.as_bytes(), BodyFormat::Ndjson, false),
        (true, true)
    );
    let array = format!("[{}]", SAMPLE.lines().collect::<Vec<_>>().join(",\n "));
    assert_eq!(
        check(array.as_bytes(), BodyFormat::Json, false),
        (true, true)
    );
    let crlf = SAMPLE.replace('\n', "\r\n\r\n");
    assert_eq!(
        check(crlf.as_bytes(), BodyFormat::Ndjson, false),
        (true, true)
    );
}

#[test]
fn numbers_decide_like_the_reference() {
    for n in NUMBERS
        .iter()
        .chain(&["1e400", "-1e400", "01", "1.", ".5", "+1", "-", "1e", "--1"])
    {
        for ty in ["app.x", "crawl.run", "impersonation.end"] {
            let body = format!(
                r#"{{"event_type":"{ty}","actor":"svc:c","tenant_id":"t","payload":{{"n":[{n}],"pages_crawled":{n},"pages_failed":0,"domain":"a.b","run_id":"r","status":"success","trigger":"manual","session_id":"s","actions_taken":{n}}},"event_id":"0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f"}}"#
            );
            check(body.as_bytes(), BodyFormat::Json, false);
        }
    }
}

#[test]
fn one_mistake_in_a_valid_event_is_refused_like_the_reference() {
    let base: serde_json::Map<String, serde_json::Value> = serde_json::from_str(
        r#"{"event_id":"0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f","event_type":"killswitch.embed.disable",
            "actor":"admin:a","tenant_id":"_global","timestamp":"2026-11-23T10:15:00Z",
            "source_ip":"203.0.113.7","impersonation_session":"imp_1","approval_id":"apr_1",
            "payload":{"target":"x","scope":"global","reason":"r","n":[1,0.5,{"k":"v"}]}}"#,
    )
    .unwrap();
    let body = |m: &serde_json::Map<String, serde_json::Value>| serde_json::to_string(m).unwrap();
    assert_eq!(
        check(body(&base).as_bytes(), BodyFormat::Json, false),
        (true, true)
    );
    let bad: &[(&str, serde_json::Value)] = &[
        ("event_id", "0192f0c47d1e7a538f0e3c1d2b4a5e6f".into()),
        ("event_id", 5.into()),
        ("event_type", "audit.read".into()),
        ("event_type", "approval.grant".into()),
        ("event_type", "sink.x".into()),
        ("event_type", "Bad".into()),
        ("event_type", serde_json::Value::Null),
        ("actor", "".into()),
        ("actor", "a\u{85}".into()),
        ("actor", "a".repeat(257).into()),
        ("tenant_id", "t_1".into()),
        ("tenant_id", "_x".into()),
        ("timestamp", "2026-11-23T10:20:00.123456790Z".into()),
        ("timestamp", "2026-11-23T10:15:00".into()),
        ("timestamp", true.into()),
        ("source_ip", "1.2.3".into()),
        ("impersonation_session", "".into()),
        ("impersonation_session", "a\tb".into()),
        ("impersonation_session", "a".repeat(257).into()),
        ("approval_id", " ".into()),
        ("approval_id", serde_json::json!({})),
        ("payload", serde_json::json!([])),
        ("payload", serde_json::Value::Null),
        (
            "payload",
            serde_json::json!({"target":"x","scope":"world","reason":"r"}),
        ),
        (
            "payload",
            serde_json::json!({"target":"x","scope":"global","reason":" "}),
        ),
        (
            "payload",
            serde_json::json!({"scope":"global","reason":"r"}),
        ),
        (
            "payload",
            serde_json::json!({"target":"x","scope":"global","reason":"r","n":9007199254740992u64}),
        ),
        ("extra", 1.into()),
    ];
    for (k, v) in bad {
        let mut m = base.clone();
        m.insert(k.to_string(), v.clone());
        assert!(
            !check(body(&m).as_bytes(), BodyFormat::Json, false).1,
            "{k}: {v}"
        );
    }
    for k in ["event_type", "actor", "tenant_id", "payload"] {
        let mut m = base.clone();
        m.remove(k);
        assert!(
            !check(body(&m).as_bytes(), BodyFormat::Json, false).1,
            "{k}"
        );
    }
    // Optional fields may be absent or null.
    for k in [
        "event_id",
        "timestamp",
        "source_ip",
        "impersonation_session",
        "approval_id",
    ] {
        let mut m = base.clone();
        m.remove(k);
        assert_eq!(
            check(body(&m).as_bytes(), BodyFormat::Json, false),
            (true, true),
            "{k}"
        );
        m.insert(k.to_string(), serde_json::Value::Null);
        assert_eq!(
            check(body(&m).as_bytes(), BodyFormat::Json, false),
            (true, true),
            "{k}"
        );
    }
}

#[test]
fn event_size_limit_is_exact() {
    let sized = |n: usize| {
        let head = r#"{"event_type":"a","actor":"u","tenant_id":"t","payload":{"p":""#;
        let tail = r#""}}"#;
        format!("{head}{}{tail}", "x".repeat(n - head.len() - tail.len()))
    };
    let max = trailkeep_core::MAX_EVENT_BYTES;
    assert_eq!(sized(max).len(), max);
    for format in [BodyFormat::Json, BodyFormat::Ndjson] {
        assert_eq!(check(sized(max).as_bytes(), format, false), (true, true));
        assert_eq!(
            check(format!(" {} ", sized(max)).as_bytes(), format, false),
            (true, true)
        );
        assert_eq!(
            check(sized(max + 1).as_bytes(), format, false),
            (false, false)
        );
    }
    let batch = |n: usize, sep: &str| vec![sized(200); n].join(sep);
    let max_n = trailkeep_core::MAX_BATCH_EVENTS;
    assert_eq!(
        check(batch(max_n, "\n").as_bytes(), BodyFormat::Ndjson, false),
        (true, true)
    );
    assert_eq!(
        check(batch(max_n + 1, "\n").as_bytes(), BodyFormat::Ndjson, false),
        (false, false)
    );
    let array = |n: usize| format!("[{}]", batch(n, ","));
    assert_eq!(
        check(array(max_n).as_bytes(), BodyFormat::Json, false),
        (true, true)
    );
    assert_eq!(
        check(array(max_n + 1).as_bytes(), BodyFormat::Json, false),
        (false, false)
    );
}

#[test]
fn refusals_are_the_reference_refusals() {
    let ok = r#"{"event_type":"a","actor":"u","tenant_id":"t","payload":{}}"#;
    for (body, format) in [
        ("".to_string(), BodyFormat::Json),
        ("[]".into(), BodyFormat::Json),
        ("\n\n".into(), BodyFormat::Ndjson),
        (format!("{ok}\nnope"), BodyFormat::Ndjson),
        (format!("[{ok},5]"), BodyFormat::Json),
        (format!("[{ok},{{}}]"), BodyFormat::Json),
        (format!("{ok} {ok}"), BodyFormat::Ndjson),
        (format!("\u{a0}{ok}"), BodyFormat::Json),
        (format!("{ok}\n\u{a0}\n{ok}"), BodyFormat::Ndjson),
        (vec![ok; 10_001].join("\n"), BodyFormat::Ndjson),
        (
            format!("[{}]", vec![ok; 10_001].join(",")),
            BodyFormat::Json,
        ),
        (
            format!(
                r#"{{"event_type":"a","actor":"u","tenant_id":"t","payload":{{"p":"{}"}}}}"#,
                "x".repeat(trailkeep_core::MAX_EVENT_BYTES)
            ),
            BodyFormat::Ndjson,
        ),
    ] {
        check(body.as_bytes(), format, false);
    }
    // Not UTF-8.
    check(b"[\xff]", BodyFormat::Json, false);
    // Duplicates are left to the reference (the last one wins there).
    let dup = r#"{"event_type":"a","actor":"u","tenant_id":"t","payload":{"a":1,"a":[1e400]},"actor":"v"}"#;
    assert!(!check(dup.as_bytes(), BodyFormat::Json, true).0);
}

/// I-JSON (RFC 7493): a duplicate member name anywhere in an event is refused by both paths,
/// naming its path (a gateway reading the first `scope` would see another event). Number and
/// surrogate errors name their path too.
#[test]
fn duplicate_member_names_are_refused_naming_their_path() {
    let head = r#""event_type":"app.x","actor":"svc:c","tenant_id":"t""#;
    for (body, path) in [
        (
            format!(r#"{{{head},"payload":{{"scope":"global","scope":"tenant"}}}}"#),
            "payload.scope",
        ),
        (
            format!(r#"{{{head},"payload":{{"a":[{{"b":1,"b":1}}]}}}}"#),
            "payload.a[0].b",
        ),
        (
            format!(r#"{{{head},"payload":{{}},"tenant_id":"u"}}"#),
            "tenant_id",
        ),
        (
            format!(r#"{{{head},"payload":{{"x":1e-400}}}}"#),
            "payload.x",
        ),
        (
            format!(r#"{{{head},"payload":{{"x":[0,1e400]}}}}"#),
            "payload.x[1]",
        ),
        (
            format!(r#"{{{head},"payload":{{"x":"\udc00"}}}}"#),
            "payload.x",
        ),
    ] {
        for format in [BodyFormat::Json, BodyFormat::Ndjson] {
            assert!(
                parse_body_fast(body.as_bytes(), format, now()).is_none(),
                "{body}"
            );
            check(body.as_bytes(), format, true);
            let Err(BodyRefusal::Invalid(issues)) = parse_body(body.as_bytes(), format, now())
            else {
                panic!("not refused as invalid: {body}");
            };
            assert_eq!(issues.len(), 1, "{issues:?}");
            assert_eq!(issues[0].path, path, "{body}");
        }
    }
}

// ---- generated bodies ----

/// Number literals: every class the fast path distinguishes, and its edges.
/// The first [`NUMBERS_OK`] are accepted by the number rule.
const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "7",
    "12000",
    "9007199254740991",
    "-9007199254740991",
    "0.5",
    "-0.5",
    "0.08",
    "0.89",
    "1.0",
    "1.50",
    "-0.0",
    "0.0",
    "1e2",
    "1E2",
    "1e-7",
    "1E+3",
    "0.000001",
    "0.0000001",
    "0.0000012",
    "123456789012345.6",
    "12345678901234.56",
    "1234567890123456.7",
    "1.2345678901234567",
    "0.123456789012345",
    "0.1234567890123456",
    "5e-324",
    "4.35",
    "2.675",
    "9007199254740993.5",
    "-1.5e-7",
    "3.0e0",
    "0.1e1",
    "1.7976931348623157e-308",
    // Refused.
    "9007199254740992",
    "-9007199254740992",
    "18446744073709551615",
    "18446744073709551616",
    "100000000000000000000000",
    "1.5e300",
    "1e20",
    "1e21",
    "1e400",
    "1e-400",
    "-2.5E-999",
    "0.0e-400",
];
const NUMBERS_OK: usize = 37;

/// A small seeded generator (xorshift64*), so that proptest only has to supply seeds. Without
/// `noise` it makes (almost only) valid bodies; with it, every kind of mistake.
struct Rng {
    state: u64,
    noise: bool,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut r = Rng {
            state: seed | 1,
            noise: false,
        };
        r.noise = r.chance(50);
        r
    }
    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A mistake, `percent` of the time, in noisy bodies only.
    fn bad(&mut self, percent: u64) -> bool {
        self.noise && self.chance(percent)
    }
    /// One of the first `ok` of `xs` (the valid ones); in noisy bodies any, a fifth of the time.
    fn pick_ok<'a, T>(&mut self, xs: &'a [T], ok: usize) -> &'a T {
        if self.bad(20) {
            self.pick(xs)
        } else {
            self.pick(&xs[..ok])
        }
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

fn s(x: &str) -> J {
    J::Str(x.to_string())
}

const KEYS: &[&str] = &[
    "a",
    "b",
    "A",
    "before",
    "after",
    "prompt_hash",
    "plan",
    "quota",
    "é",
    "\u{e000}",
    "😀",
    "\u{ffff}",
    "a\"b",
    "",
    "x\ny",
    "/",
    "a\\",
    "\u{7f}",
    "ab",
    "ba",
];

fn gen_string(r: &mut Rng) -> String {
    const POOL: &[&str] = &[
        "x",
        "",
        " ",
        "customer request",
        "sha256:",
        "é€😀",
        "\u{2028}\u{2029}",
        "tab\there",
        "\u{0}\u{1}\u{1f}\u{7f}",
        "quote\"back\\slash/",
        "\u{e000}\u{ffff}\u{10000}",
    ];
    if r.chance(40) {
        return r.pick(POOL).to_string();
    }
    const CHARS: &[char] = &[
        'a', 'z', 'A', '0', ' ', '_', '/', '"', '\\', '\n', '\t', '\u{0}', '\u{1f}', '\u{7f}', 'é',
        '€', '😀', '\u{2028}', '\u{e000}',
    ];
    (0..r.below(12)).map(|_| *r.pick(CHARS)).collect()
}

fn gen_number(r: &mut Rng) -> String {
    if r.chance(50) {
        return r.pick_ok(NUMBERS, NUMBERS_OK).to_string();
    }
    let mut n = String::new();
    if r.chance(20) {
        n.push('-');
    }
    if r.chance(25) {
        n.push('0');
    } else {
        n.push(char::from(b'1' + r.below(9) as u8));
        // Up to 15 digits: always within ±(2^53−1).
        for _ in 0..r.below(if r.noise { 18 } else { 15 }) {
            n.push(char::from(b'0' + r.below(10) as u8));
        }
    }
    if r.chance(50) {
        n.push('.');
        for _ in 0..1 + r.below(18) {
            n.push(char::from(b'0' + r.below(10) as u8));
        }
    }
    if r.chance(20) {
        n.push(*r.pick(&['e', 'E']));
        match r.below(if r.noise { 3 } else { 1 }) {
            0 => n.push('-'),
            1 => n.push('+'),
            _ => {}
        }
        for _ in 0..1 + r.below(3) {
            n.push(char::from(b'0' + r.below(10) as u8));
        }
    }
    n
}

fn gen_value(r: &mut Rng, depth: usize, dup: &mut bool) -> J {
    if r.chance(2) {
        // A deep chain: around the payload depth limit when noisy, below it otherwise.
        let mut v = gen_scalar(r);
        let n = if r.noise {
            28 + r.below(8)
        } else {
            20 + r.below(6)
        };
        for _ in 0..n {
            v = if r.chance(50) {
                J::Arr(vec![v])
            } else {
                J::Obj(vec![("a".into(), v)])
            };
        }
        return v;
    }
    match r.below(10) {
        0..=4 => gen_scalar(r),
        5 | 6 if depth < 4 => J::Arr(
            (0..r.below(4))
                .map(|_| gen_value(r, depth + 1, dup))
                .collect(),
        ),
        7..=9 if depth < 4 => gen_object(r, depth, dup, &[]),
        _ => gen_scalar(r),
    }
}

fn gen_scalar(r: &mut Rng) -> J {
    match r.below(10) {
        0 => J::Null,
        1 => J::Bool(r.chance(50)),
        2..=5 => J::Num(gen_number(r)),
        _ => J::Str(gen_string(r)),
    }
}

fn gen_object(r: &mut Rng, depth: usize, dup: &mut bool, fixed: &[(&str, J)]) -> J {
    let mut members: Vec<(String, J)> = fixed
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    for _ in 0..r.below(if fixed.is_empty() { 5 } else { 2 }) {
        let k = if r.chance(70) {
            r.pick(KEYS).to_string()
        } else {
            gen_string(r)
        };
        if !r.noise && members.iter().any(|(k2, _)| *k2 == k) {
            continue;
        }
        members.push((k, gen_value(r, depth + 1, dup)));
    }
    shuffle(r, &mut members);
    for (i, (k, _)) in members.iter().enumerate() {
        if members[..i].iter().any(|(k2, _)| k2 == k) {
            *dup = true;
        }
    }
    J::Obj(members)
}

fn shuffle<T>(r: &mut Rng, xs: &mut [T]) {
    for i in (1..xs.len()).rev() {
        let j = r.below(i + 1);
        xs.swap(i, j);
    }
}

/// A value that is usually right for a catalogue field, sometimes not.
fn maybe(r: &mut Rng, good: J) -> J {
    if !r.noise {
        return good;
    }
    match r.below(40) {
        0 => J::Null,
        1 => J::Num(gen_number(r)),
        2 => J::Str(gen_string(r)),
        3 => s(" "),
        _ => good,
    }
}

fn sha(r: &mut Rng) -> J {
    let mut h = String::from("sha256:");
    for _ in 0..64 {
        h.push(*r.pick(&['0', '9', 'a', 'f', 'e']));
    }
    if r.bad(3) {
        h.push('A');
    }
    J::Str(h)
}

fn gen_payload(r: &mut Rng, ty: &str, tenant: &str, dup: &mut bool) -> J {
    let d = dup;
    let count = |r: &mut Rng| {
        J::Num(if !r.bad(15) {
            r.below(5000).to_string()
        } else {
            gen_number(r)
        })
    };
    let obj_or = |r: &mut Rng, d: &mut bool, fixed: &[(&str, J)]| gen_object(r, 1, d, fixed);
    let fields: Vec<(&str, J)> = match ty {
        "prompt.update" => {
            let h = sha(r);
            let before = obj_or(r, d, &[("prompt_hash", h)]);
            let h = sha(r);
            let after = obj_or(r, d, &[("prompt_hash", h)]);
            vec![
                ("prompt_id", s("pr_7")),
                ("before", before),
                ("after", after),
                ("editor", s("user:a")),
                ("reason", s("tone fix")),
            ]
        }
        "crawl.run" => vec![
            (
                "domain",
                J::Str(
                    r.pick_ok(
                        &["docs.t_1.com", "localhost", "x.io.", "-bad.com", "a..b"],
                        3,
                    )
                    .to_string(),
                ),
            ),
            ("run_id", s("r1")),
            ("pages_crawled", count(r)),
            ("pages_failed", count(r)),
            (
                "status",
                J::Str(r.pick_ok(&["success", "failure", "done"], 2).to_string()),
            ),
            (
                "trigger",
                J::Str(
                    r.pick_ok(&["schedule", "manual", "indexnow", "cron"], 3)
                        .to_string(),
                ),
            ),
        ],
        "policy.update" | "threshold.update" => vec![
            ("setting", s("pii_filter")),
            ("before", J::Num(gen_number(r))),
            ("after", gen_value(r, 2, d)),
            ("justification", s("customer request")),
        ],
        "impersonation.start" => vec![
            ("impersonator", s("admin:a")),
            ("impersonated", s("user:b")),
            ("session_id", s("imp_1")),
            ("reason", s("support")),
        ],
        "impersonation.end" => {
            let mut f = vec![("session_id", s("imp_1"))];
            if r.chance(60) {
                f.push(("actions_taken", count(r)));
            }
            f
        }
        "billing.plan.change"
        | "billing.quota.override"
        | "billing.grace.start"
        | "billing.grace.end" => {
            let q = count(r);
            let before = obj_or(r, d, &[("plan", s("pro")), ("quota", q)]);
            let after = obj_or(r, d, &[("plan", s("enterprise"))]);
            vec![("before", before), ("after", after), ("reason", s("r"))]
        }
        "killswitch.embed.disable" | "killswitch.embed.enable" => vec![
            ("target", s("embed")),
            (
                "scope",
                J::Str(
                    if tenant == "_global" {
                        r.pick_ok(&["tenant", "global", "world"], 2)
                    } else {
                        r.pick_ok(&["tenant", "global", "world"], 1)
                    }
                    .to_string(),
                ),
            ),
            ("reason", s("incident")),
        ],
        _ => return gen_object(r, 0, d, &[]),
    };
    let mut kept = Vec::new();
    for (k, v) in fields {
        if !r.bad(3) {
            kept.push((k, maybe(r, v)));
        }
    }
    let fields = kept;
    gen_object(r, 0, d, &fields)
}

/// One event object and whether it holds a duplicate key.
fn gen_event(r: &mut Rng, dup: &mut bool) -> J {
    const TYPES: &[&str] = &[
        "prompt.update",
        "crawl.run",
        "policy.update",
        "threshold.update",
        "impersonation.start",
        "impersonation.end",
        "billing.plan.change",
        "billing.quota.override",
        "billing.grace.start",
        "billing.grace.end",
        "killswitch.embed.disable",
        "killswitch.embed.enable",
        "auth.login",
        "app.x",
        "a",
        "Bad",
        "audit.read",
        "approval.x",
        "x..y",
        "",
    ];
    let ty = *r.pick_ok(TYPES, 14);
    let mut m: Vec<(String, J)> = Vec::new();
    let mut put = |k: &str, v: J| m.push((k.to_string(), v));
    // A string from `pool` (one of the first `ok` unless noisy), or when noisy another type.
    let string_or_other = |r: &mut Rng, pool: &[&str], ok: usize| -> J {
        match r.below(if r.noise { 60 } else { 100 }) {
            0 => J::Null,
            1 if r.noise => J::Num("5".into()),
            2 if r.noise => J::Arr(vec![]),
            _ => J::Str(r.pick_ok(pool, ok).to_string()),
        }
    };
    // Required fields: a null is as good as missing, so only noisy bodies get one.
    let required = |r: &mut Rng, pool: &[&str], ok: usize| -> J {
        match string_or_other(r, pool, ok) {
            J::Null if !r.noise => J::Str(pool[0].to_string()),
            v => v,
        }
    };
    if !r.bad(3) {
        put("event_type", required(r, &[ty], 1));
    }
    if !r.bad(3) {
        let long = "a".repeat(257);
        let ok = "a".repeat(256);
        put(
            "actor",
            required(
                r,
                &[
                    "user:a",
                    "svc:crawler",
                    "admin:x@y",
                    "user:é😀",
                    &ok,
                    "",
                    " ",
                    "a\u{7}",
                    &long,
                    "a\u{85}",
                ],
                5,
            ),
        );
    }
    let tenant = if ty.starts_with("killswitch") && r.chance(50) {
        "_global"
    } else {
        "t_1"
    };
    if !r.bad(3) {
        put("tenant_id", required(r, &[tenant, "_x", "", "t/1"], 1));
    }
    if !r.bad(3) {
        let p = match r.below(if r.noise { 30 } else { 1000 }) {
            0 => J::Null,
            1 => J::Arr(vec![]),
            2 => s("{}"),
            _ => gen_payload(r, ty, tenant, dup),
        };
        put("payload", p);
    }
    if r.chance(70) {
        let id = format!(
            "{:032x}",
            (u128::from(r.next()) << 64) | u128::from(r.next())
        );
        let hyph = format!(
            "{}-{}-{}-{}-{}",
            &id[..8],
            &id[8..12],
            &id[12..16],
            &id[16..20],
            &id[20..]
        );
        let upper = hyph.to_uppercase();
        put(
            "event_id",
            string_or_other(r, &[&hyph, &upper, &id, "x"], 2),
        );
    }
    if r.chance(60) {
        put(
            "timestamp",
            string_or_other(
                r,
                &[
                    "2026-01-01T00:00:00.195Z",
                    "2026-11-23T11:15:00.1+01:00",
                    "2026-11-23T10:15:00Z",
                    "2026-11-23T10:20:00.123456789Z",
                    "1969-12-31T23:59:59.999999Z",
                    "2026-11-23T10:20:00.12345679Z",
                    "soon",
                    "2016-12-31T23:59:60Z",
                    "2026-01-01t00:00:00z",
                    "9999-12-31T23:59:59Z",
                    "2026-11-23T10:15:00.1234567891Z",
                    "1600-01-01T00:00:00Z",
                    "2026-11-23T10:15:00",
                ],
                5,
            ),
        );
    }
    if r.chance(50) {
        put(
            "source_ip",
            string_or_other(
                r,
                &[
                    "203.0.113.7",
                    "2001:DB8:0:0::1",
                    "2001:db8::6eca",
                    "::ffff:1.2.3.4",
                    "::",
                    "1.2.3",
                    "1.2.3.4 ",
                    "010.1.1.1",
                ],
                5,
            ),
        );
    }
    if r.chance(20) {
        put(
            "impersonation_session",
            string_or_other(r, &["imp_1", "é", "", "a\nb"], 2),
        );
    }
    if r.chance(15) {
        put("approval_id", string_or_other(r, &["apr_1", "x", " "], 2));
    }
    if r.bad(3) {
        put("extra", J::Num("1".into()));
    }
    if r.bad(2) && !m.is_empty() {
        let i = r.below(m.len());
        let again = m[i].clone();
        m.push(again);
        *dup = true;
    }
    shuffle(r, &mut m);
    J::Obj(m)
}

/// Serialises with random whitespace and escaping; `ws` is the whitespace allowed.
fn ser(r: &mut Rng, j: &J, ws: &[char], out: &mut String) {
    let space = |r: &mut Rng, out: &mut String| {
        if r.chance(15) {
            for _ in 0..1 + r.below(2) {
                out.push(*r.pick(ws));
            }
        }
    };
    space(r, out);
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(n),
        J::Str(x) => ser_str(r, x, out),
        J::Arr(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                ser(r, v, ws, out);
            }
            if r.bad(1) && !items.is_empty() {
                out.push(',');
            }
            space(r, out);
            out.push(']');
        }
        J::Obj(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                space(r, out);
                ser_str(r, k, out);
                space(r, out);
                out.push(':');
                ser(r, v, ws, out);
            }
            space(r, out);
            out.push('}');
        }
    }
    space(r, out);
}

fn ser_str(r: &mut Rng, x: &str, out: &mut String) {
    out.push('"');
    for c in x.chars() {
        let u = |out: &mut String, c: char| {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        };
        match c {
            '"' | '\\' if r.chance(20) => u(out, c),
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' if r.chance(50) => out.push_str("\\n"),
            '\t' if r.chance(50) => out.push_str("\\t"),
            '\u{0}'..='\u{1f}' if r.bad(1) => out.push(c), // raw control: invalid JSON
            '\u{0}'..='\u{1f}' => u(out, c),
            '/' if r.chance(30) => out.push_str("\\/"),
            _ if r.chance(5) => {
                let mut buf = [0u16; 2];
                let units = c.encode_utf16(&mut buf);
                for unit in units.iter() {
                    out.push_str(&format!("\\u{:04X}", unit));
                }
            }
            _ => out.push(c),
        }
    }
    if r.bad(1) {
        out.push_str(r.pick::<&str>(&["\\ud800", "\\udc00", "\\ud800\\u0041", "\\x", "\\u12"]));
    }
    out.push('"');
}

/// A whole body: its bytes, format and whether it holds a duplicate key.
fn gen_body(seed: u64) -> (String, BodyFormat, bool) {
    let mut r = Rng::new(seed);
    let mut dup = false;
    let n = 1 + r.below(5);
    let events: Vec<J> = (0..n).map(|_| gen_event(&mut r, &mut dup)).collect();
    match r.below(3) {
        0 => {
            let mut body = String::new();
            for e in &events {
                if r.chance(10) {
                    body.push_str(r.pick::<&str>(&["\n", "\r\n", "  \t\n", "\u{a0}\n"]));
                }
                ser(&mut r, e, &[' ', '\t', '\r'], &mut body);
                body.push_str(r.pick::<&str>(&["\n", "\r\n"]));
            }
            if r.chance(50) {
                body.pop();
            }
            (body, BodyFormat::Ndjson, dup)
        }
        1 => {
            let mut body = String::from("[");
            for (i, e) in events.iter().enumerate() {
                if i > 0 {
                    body.push(',');
                }
                ser(&mut r, e, &[' ', '\t', '\r', '\n'], &mut body);
            }
            body.push(']');
            (body, BodyFormat::Json, dup)
        }
        _ => {
            let mut body = String::new();
            ser(&mut r, &events[0], &[' ', '\t', '\r', '\n'], &mut body);
            (body, BodyFormat::Json, dup)
        }
    }
}

#[test]
fn generated_bodies_exercise_both_outcomes() {
    // The generator is worth something only if it produces valid and invalid bodies alike.
    let (mut accepted, mut refused) = (0, 0);
    for seed in 0..3000u64 {
        let (body, format, dup) = gen_body(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let (fast, ok) = check(body.as_bytes(), format, dup);
        if fast {
            accepted += 1;
        }
        if !ok {
            refused += 1;
        }
    }
    assert!(
        accepted > 300,
        "only {accepted} of 3000 generated bodies were accepted"
    );
    assert!(
        refused > 300,
        "only {refused} of 3000 generated bodies were refused"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn fast_path_equals_reference(seed in any::<u64>()) {
        let (body, format, dup) = gen_body(seed);
        check(body.as_bytes(), format, dup);
    }

    #[test]
    fn single_payloads_equal_reference(seed in any::<u64>()) {
        // One valid envelope around a random payload: the canonicaliser and the number rule.
        let mut r = Rng::new(seed);
        let mut dup = false;
        let payload = gen_object(&mut r, 0, &mut dup, &[]);
        let mut p = String::new();
        ser(&mut r, &payload, &[' ', '\n'], &mut p);
        let body = format!(
            r#"{{"event_id":"0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f","event_type":"app.x","actor":"u","tenant_id":"t","payload":{p}}}"#
        );
        check(body.as_bytes(), BodyFormat::Json, dup);
    }
}
