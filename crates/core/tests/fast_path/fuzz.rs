//! Fuzzing the event parser under `cargo test`: arbitrary bytes, JSON-shaped noise and mutated
//! valid events go through [`parse_body`] (and the reference path, compared by `check`): it
//! never panics, and every refusal is an error value. Accepted events survive a round trip:
//! written back out as an ingest event (canonical payload included) they parse to the same
//! event with the same canonical payload bytes, and the canonical payload is a fixed point of
//! the reference canonicaliser.
//!
//! Cases per property: `PROPTEST_CASES` (default: a short pass of a few seconds, as in CI). A
//! longer run: `PROPTEST_CASES=100000 cargo test -p trailkeep-core --test fast_path fuzz_`.

use super::{check, now, SAMPLE};
use proptest::prelude::*;
use trailkeep_core::validate::{parse_body, BodyFormat};
use trailkeep_core::NewEvent;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One edit of a byte string.
#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Set(usize, u8),
    Insert(usize, u8),
    Delete(usize, usize),
    /// Copies `len` bytes from `from` to `to` (inserted).
    Splice(usize, usize, usize),
    Truncate(usize),
}

/// Bytes a JSON parser cares about, and a few that break UTF-8.
const INTERESTING: &[u8] =
    b"{}[]\",:\\ \n\r\t0123456789-+.eEtfnu_aZ\x00\x7f\xc3\xa9\xff\xed\xa0\x80";

fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![any::<u8>(), prop::sample::select(INTERESTING)];
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(p, b)| Edit::Flip(p, 1 << b)),
        (any::<usize>(), byte.clone()).prop_map(|(p, b)| Edit::Set(p, b)),
        (any::<usize>(), byte).prop_map(|(p, b)| Edit::Insert(p, b)),
        (any::<usize>(), 1usize..8).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), any::<usize>(), 1usize..40).prop_map(|(f, t, n)| Edit::Splice(f, t, n)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// Applies edits; positions are taken modulo the current length.
fn mutate(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        let n = b.len();
        match *e {
            Edit::Flip(p, m) if n > 0 => b[p % n] ^= m,
            Edit::Set(p, v) if n > 0 => b[p % n] = v,
            Edit::Insert(p, v) => b.insert(p % (n + 1), v),
            Edit::Delete(p, k) if n > 0 => {
                let p = p % n;
                b.drain(p..(p + k).min(n));
            }
            Edit::Splice(f, t, k) if n > 0 => {
                let f = f % n;
                let part: Vec<u8> = b[f..(f + k).min(n)].to_vec();
                let t = t % (n + 1);
                b.splice(t..t, part);
            }
            Edit::Truncate(p) => b.truncate(p % (n + 1)),
            _ => {}
        }
    }
    b
}

fn sample_lines() -> Vec<&'static str> {
    SAMPLE.lines().collect()
}

/// An accepted event written back as an ingest event: every field it holds, the canonical
/// payload as its text.
fn ingest_form(e: &NewEvent) -> String {
    let payload: serde_json::Value =
        serde_json::from_slice(&e.payload).expect("an accepted payload is JSON");
    let mut m = serde_json::Map::new();
    m.insert("event_id".into(), e.event_id.to_string().into());
    m.insert("event_type".into(), e.event_type.as_str().into());
    m.insert("actor".into(), e.actor.as_str().into());
    m.insert("tenant_id".into(), e.tenant_id.as_str().into());
    m.insert("timestamp".into(), e.timestamp.to_rfc3339().into());
    m.insert("payload".into(), payload);
    for (k, v) in [
        ("source_ip", &e.source_ip),
        ("impersonation_session", &e.impersonation_session),
        ("approval_id", &e.approval_id),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), v.as_str().into());
        }
    }
    serde_json::to_string(&m).expect("a map of JSON values serialises")
}

/// Accepted events round-trip: re-sent in their ingest form they parse to the same events, and
/// their canonical payloads are fixed points of the reference canonicaliser.
fn assert_round_trip(events: &[NewEvent]) {
    for e in events {
        let v: serde_json::Value = serde_json::from_slice(&e.payload).expect("payload is JSON");
        let again = serde_json_canonicalizer::to_vec(&v).expect("canonicalises");
        assert_eq!(
            again,
            &e.payload[..],
            "the canonical payload is not canonical: {}",
            String::from_utf8_lossy(&e.payload)
        );
        let text = ingest_form(e);
        let back = parse_body(text.as_bytes(), BodyFormat::Json, now())
            .unwrap_or_else(|r| panic!("an accepted event, re-sent, is refused ({r:?}): {text}"));
        assert_eq!(back.len(), 1, "{text}");
        let b = &back[0];
        assert_eq!(b.payload, e.payload, "{text}");
        assert_eq!(
            (
                b.event_id,
                &b.event_type,
                &b.actor,
                &b.tenant_id,
                b.timestamp.nanos
            ),
            (
                e.event_id,
                &e.event_type,
                &e.actor,
                &e.tenant_id,
                e.timestamp.nanos
            ),
            "{text}"
        );
        assert_eq!(
            (&b.source_ip, &b.impersonation_session, &b.approval_id),
            (&e.source_ip, &e.impersonation_session, &e.approval_id),
            "{text}"
        );
    }
}

/// Parses `body` both ways (never panicking: `check` compares the fast path with the
/// reference) and round-trips whatever is accepted.
fn fuzz_one(body: &[u8], format: BodyFormat) {
    // Mutations can create duplicate keys, which the fast path declines: allowed.
    check(body, format, true);
    if let Ok(events) = parse_body(body, format, now()) {
        assert_round_trip(&events);
    }
}

/// A recursive JSON value with the awkward parts: big and small numbers, floats, escapes,
/// non-ASCII keys, nesting.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        (-1000i32..1000, -400i32..400).prop_map(|(m, e)| {
            serde_json::from_str::<Value>(&format!("{m}e{e}")).unwrap_or(Value::Null)
        }),
        ".{0,12}".prop_map(Value::String),
        "[\\\\\"\u{0}-\u{1f}\u{7f}\u{2028}\u{fffd}\u{1f600}a-z]{0,6}".prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::vec(("[a-zé\u{1f600}\u{e000}_ ]{0,5}", inner), 0..6)
                .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config(2000))]

    /// Arbitrary bytes, in both body formats.
    #[test]
    fn fuzz_parser_arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..300), ndjson in any::<bool>()) {
        let format = if ndjson { BodyFormat::Ndjson } else { BodyFormat::Json };
        fuzz_one(&body, format);
    }

    /// JSON-shaped noise: the parser's own alphabet, so that it gets past the first byte.
    #[test]
    fn fuzz_parser_json_shaped_noise(body in "[\\[\\]{}\",:0-9.eE+\\- \\ntfnrulsa_\\\\é]{0,200}", ndjson in any::<bool>()) {
        let format = if ndjson { BodyFormat::Ndjson } else { BodyFormat::Json };
        fuzz_one(body.as_bytes(), format);
    }

    /// One valid event of the sample, edited a few times at the byte level.
    #[test]
    fn fuzz_parser_mutated_valid_events(
        line in any::<prop::sample::Index>(),
        edits in prop::collection::vec(edit(), 1..5),
        ndjson in any::<bool>(),
    ) {
        let lines = sample_lines();
        let base = lines[line.index(lines.len())].as_bytes().to_vec();
        let format = if ndjson { BodyFormat::Ndjson } else { BodyFormat::Json };
        fuzz_one(&mutate(base, &edits), format);
    }

    /// A batch of valid events (array or NDJSON), edited: framing, separators and limits.
    #[test]
    fn fuzz_parser_mutated_valid_batches(
        start in any::<prop::sample::Index>(),
        count in 1usize..6,
        edits in prop::collection::vec(edit(), 1..6),
        ndjson in any::<bool>(),
    ) {
        let lines = sample_lines();
        let s = start.index(lines.len());
        let picked = &lines[s..(s + count).min(lines.len())];
        let (body, format) = if ndjson {
            (picked.join("\n"), BodyFormat::Ndjson)
        } else {
            (format!("[{}]", picked.join(",")), BodyFormat::Json)
        };
        fuzz_one(&mutate(body.into_bytes(), &edits), format);
    }

    /// Canonical JSON: any payload that is accepted comes out canonical, and canonicalising it
    /// again, or sending it again, changes nothing.
    #[test]
    fn fuzz_canonical_payload_round_trip(payload in prop::collection::vec(("[a-z_é]{1,6}", json_value()), 0..8)) {
        let payload = serde_json::Value::Object(payload.into_iter().collect());
        let body = format!(
            r#"{{"event_id":"0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f","event_type":"app.x","actor":"u","tenant_id":"t","payload":{}}}"#,
            serde_json::to_string_pretty(&payload).expect("serialises")
        );
        fuzz_one(body.as_bytes(), BodyFormat::Json);
    }
}

/// The mutator is worth something only if it reaches both outcomes.
#[test]
fn fuzz_mutations_reach_acceptance_and_refusal() {
    let lines = sample_lines();
    let (mut accepted, mut refused) = (0, 0);
    for (i, line) in lines.iter().enumerate().take(200) {
        let edits = [Edit::Set(i * 7919, b' '), Edit::Flip(i * 104_729, 1)];
        match parse_body(
            &mutate(line.as_bytes().to_vec(), &edits),
            BodyFormat::Json,
            now(),
        ) {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 5 && refused > 5,
        "{accepted} accepted, {refused} refused"
    );
}
