//! Stored events for the format tests, built directly (no store): a hand-picked set that
//! reaches every rendering rule, and a deterministic synthetic stream for volume.

use trailkeep_core::leaf::{payload_commitment, stored_event_leaf_hash};
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

/// An event with a payload (salted, leaf hash computed as the store would).
pub fn event(
    seq: u64,
    event_type: &str,
    actor: &str,
    timestamp: &str,
    payload: &str,
) -> StoredEvent {
    let mut salt = [0u8; 32];
    salt[..8].copy_from_slice(&seq.to_le_bytes());
    salt[31] = 0xa5;
    let mut e = StoredEvent {
        tenant_id: "acme".into(),
        seq,
        event_id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | u128::from(seq)),
        event_type: event_type.into(),
        actor: actor.into(),
        timestamp: Timestamp::parse(timestamp).expect("test timestamp"),
        timestamp_assigned: false,
        received_at: Timestamp::from_nanos(1_796_000_000_123_456_000 + seq as i64 * 1_000, 6),
        source_ip: None,
        impersonation_session: None,
        approval_id: None,
        payload: Some(payload.as_bytes().to_vec()),
        payload_salt: Some(salt),
        payload_commitment: None,
        leaf_hash: [0; 32],
    };
    e.leaf_hash = stored_event_leaf_hash(&e).expect("leaf");
    e
}

/// `e` as retention leaves it: payload and salt gone, the commitment kept.
pub fn purged(mut e: StoredEvent) -> StoredEvent {
    let (Some(p), Some(s)) = (&e.payload, &e.payload_salt) else {
        return e;
    };
    e.payload_commitment = Some(payload_commitment(s, p));
    e.payload = None;
    e.payload_salt = None;
    e
}

/// Events that reach every rule: quoting, formula injection, optional fields, purged events,
/// nanosecond and pre-1970 timestamps, non-ASCII text, a seq beyond 32 bits.
pub fn tricky() -> Vec<StoredEvent> {
    let mut v = Vec::new();
    let mut e = event(
        0,
        "prompt.updated",
        "alice@example.com",
        "2026-11-23T10:15:00.123Z",
        r#"{"a":1,"b":"x"}"#,
    );
    e.source_ip = Some("203.0.113.7".into());
    e.impersonation_session = Some("sess-1".into());
    e.approval_id = Some("appr-9".into());
    v.push(e);
    v.push(event(
        1,
        "=HYPERLINK(\"http://x\")",
        "+1 attacker",
        "2026-11-23T10:15:00.123456789Z",
        r#"{"quote":"he said \"hi\"","nl":"a\nb","crlf":"c\r\nd"}"#,
    ));
    v.push(event(
        2,
        "-2+3",
        "@admin",
        "2026-11-23T10:15:00.000001Z",
        r#"{"k":"é ✓ 日本"}"#,
    ));
    let mut e = event(
        3,
        "tab.start",
        "\tactor",
        "1969-12-31T23:59:59.999999999Z",
        "{}",
    );
    e.tenant_id = "-tenant".into();
    e.source_ip = Some("::1".into());
    v.push(e);
    v.push(event(
        4,
        "cr.start",
        "\ractor,with comma",
        "2026-01-01T00:00:00.000Z",
        r#"{"=":"=1"}"#,
    ));
    v.push(purged(event(
        5,
        "user.erased",
        "bob",
        "2026-11-23T10:15:01.5Z",
        r#"{"email":"bob@example.com"}"#,
    )));
    let mut e = purged(event(
        6,
        "user.erased",
        "carol",
        "2026-11-23T10:15:02.987654321Z",
        r#"{"x":[1,2,3]}"#,
    ));
    e.approval_id = Some("=approved".into());
    v.push(e);
    v.push(event(
        5_000_000_000,
        "big.seq",
        "dave",
        "2261-12-31T23:59:59.999Z",
        r#"{"n":-1.5e-7}"#,
    ));
    v
}

/// `n` deterministic, realistic events: a few tenants, types and actors, a payload of about
/// `payload_bytes` bytes (pseudo-random text, so it does not compress away), every 50th purged.
pub fn synthetic(n: usize, payload_bytes: usize) -> Vec<StoredEvent> {
    let types = [
        "prompt.updated",
        "crawl.started",
        "user.login",
        "billing.invoice.paid",
        "key.created",
    ];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|i| {
            let mut text = String::with_capacity(payload_bytes);
            while text.len() < payload_bytes {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                text.push_str(&format!("{:x}", x));
            }
            let ts = format!(
                "2026-11-{:02}T{:02}:{:02}:{:02}.{:06}Z",
                1 + i % 28,
                i % 24,
                i % 60,
                (i / 60) % 60,
                i % 1_000_000
            );
            let payload = format!(r#"{{"i":{i},"text":"{text}"}}"#);
            let mut e = event(
                i as u64,
                types[i % types.len()],
                &format!("user{}@example.com", i % 37),
                &ts,
                &payload,
            );
            e.tenant_id = format!("tenant-{}", i % 3);
            if i % 4 == 0 {
                e.source_ip = Some(format!("10.0.{}.{}", i % 7, i % 250));
            }
            if i % 50 == 49 {
                purged(e)
            } else {
                e
            }
        })
        .collect()
}

/// Runs a writer over `batches` and returns the whole export.
pub fn export(format: trailkeep_export::formats::Format, batches: &[&[StoredEvent]]) -> Vec<u8> {
    let mut w = trailkeep_export::formats::writer(format);
    let mut out = Vec::new();
    for b in batches {
        w.write_batch(b, &mut out).expect("write_batch");
    }
    w.finish(&mut out).expect("finish");
    out
}
