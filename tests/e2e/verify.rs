//! `trailkeep verify` against a real server: live audits with saved checkpoints, offline
//! directories built from the API, tlog-proofs, and every kind of tampering it must catch.

use crate::support::*;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use trailkeep_tlog::{sign_checkpoint, Checkpoint, Signer};

/// Runs `trailkeep verify ARGS`; returns (exit code, stdout).
fn verify(args: &[&str]) -> (i32, String) {
    let out: Output = trailkeep()
        .arg("verify")
        .args(args)
        .env_remove("TRAILKEEP_KEY")
        .output()
        .expect("run trailkeep verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "verify {args:?} -> {:?}\n{stdout}{stderr}",
        out.status.code()
    );
    (out.status.code().unwrap_or(-1), stdout)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Varied events: optional fields, Unicode, nested payloads, floats (canonical JSON matters).
fn events(tenant: &str, from: usize, to: usize, salt: u64) -> Vec<Value> {
    (from..to)
        .map(|i| {
            let mut e = json!({
                "event_id": uuid(i as u64, salt),
                "event_type": "app.note",
                "actor": format!("user:u{i}@example.com"),
                "tenant_id": tenant,
                "payload": {"n": i, "z": {"b": [1, 2.5, {"y": null}], "a": true},
                            "text": "é \u{2028} \"q\" 😀", "f": 1.5e-7},
                "timestamp": "2026-01-02T03:04:05.678901Z",
            });
            if i % 2 == 0 {
                e["source_ip"] = "2001:db8::1".into();
            }
            if i % 3 == 0 {
                e["impersonation_session"] = format!("imp_{i}").into();
            }
            e
        })
        .collect()
}

async fn ingest(c: &reqwest::Client, url: &str, evs: Vec<Value>) {
    let r = c
        .post(format!("{url}/v1/events"))
        .bearer_auth(ADMIN)
        .json(&evs)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn get_text(c: &reqwest::Client, url: &str) -> (u16, String) {
    let r = c.get(url).bearer_auth(ADMIN).send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Waits until the tenant's latest checkpoint covers `size` events; returns its note.
async fn wait_checkpoint(c: &reqwest::Client, url: &str, tenant: &str, size: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, text) = get_text(c, &format!("{url}/v1/tenants/{tenant}/checkpoint")).await;
        if status == 200 && text.lines().nth(1) == Some(&size.to_string()) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "no checkpoint of size {size} for {tenant}: {status} {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The tenant's events exactly as the API returns them, one JSON text per event, seq order.
async fn raw_log(c: &reqwest::Client, url: &str, tenant: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Page {
        events: Vec<Box<RawValue>>,
    }
    let mut out = Vec::new();
    loop {
        let (status, text) = get_text(
            c,
            &format!(
                "{url}/v1/events?tenant_id={tenant}&from_seq={}&limit=1000",
                out.len()
            ),
        )
        .await;
        assert_eq!(status, 200, "{text}");
        let page: Page = serde_json::from_str(&text).unwrap();
        if page.events.is_empty() {
            return out;
        }
        out.extend(page.events.into_iter().map(|e| e.get().to_string()));
    }
}

fn write_dir(dir: &Path, lines: &[String], checkpoint: &str, vkey: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(dir.join("events.ndjson"), body).unwrap();
    std::fs::write(dir.join("checkpoint.txt"), checkpoint).unwrap();
    std::fs::write(dir.join("public-key.txt"), vkey).unwrap();
}

fn set(line: &str, field: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(line).unwrap();
    v[field] = value;
    serde_json::to_string(&v).unwrap()
}

fn id_of(line: &str) -> String {
    let v: Value = serde_json::from_str(line).unwrap();
    v["event_id"].as_str().unwrap().to_string()
}

/// The server's signing key, from its data directory (to forge "valid" checkpoints).
fn server_signer(data_dir: &Path) -> Signer {
    let hex_seed = std::fs::read_to_string(data_dir.join("signing-key")).unwrap();
    let seed: [u8; 32] = hex::decode(hex_seed.trim()).unwrap().try_into().unwrap();
    Signer::from_seed("trailkeep/default", seed).unwrap()
}

#[test]
fn live_audit_of_every_tenant_and_saved_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let saved = dir.path().join("saved");
    let s = Server::start(&data);
    let url = s.url.clone();
    let rt = rt();
    let c = client();
    let vkey = rt.block_on(async {
        ingest(&c, &url, events("t_a", 0, 30, 1)).await;
        ingest(&c, &url, events("t_b", 0, 12, 2)).await;
        wait_checkpoint(&c, &url, "t_a", 30).await;
        wait_checkpoint(&c, &url, "t_b", 12).await;
        get_text(&c, &format!("{url}/v1/public-key")).await.1
    });

    let (code, out) = verify(&["--url", &url, "--key", ADMIN]);
    assert_eq!(code, 0);
    assert!(out.contains("ok: tenant t_a: 30 events, root "), "{out}");
    assert!(out.contains("matches checkpoint 30"), "{out}");
    assert!(out.contains("ok: tenant t_b: 12 events, root "), "{out}");
    assert!(!out.contains("FAIL"));

    // One tenant only, with the key pinned (inline and as a file).
    let key_file = dir.path().join("log.vkey");
    std::fs::write(&key_file, &vkey).unwrap();
    let (code, out) = verify(&[
        "--url",
        &url,
        "--key",
        ADMIN,
        "--tenant",
        "t_b",
        "--public-key",
        vkey.trim(),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("tenant t_b") && !out.contains("tenant t_a"),
        "{out}"
    );
    let (code, _) = verify(&["--url", &url, "--key", ADMIN, "--public-key", p(&key_file)]);
    assert_eq!(code, 0);
    // A different pinned key: the server's checkpoints prove nothing.
    let other = Signer::from_seed("trailkeep/default", [7; 32]).unwrap();
    let (code, out) = verify(&[
        "--url",
        &url,
        "--key",
        ADMIN,
        "--public-key",
        &other.verifier().to_vkey(),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("FAIL: the server's public key"), "{out}");

    // Save the checkpoints, let t_a grow, and prove the old ones consistent with the new.
    let (code, _) = verify(&[
        "--url",
        &url,
        "--key",
        ADMIN,
        "--save-checkpoint",
        p(&saved),
    ]);
    assert_eq!(code, 0);
    let saved_a = saved.join("t_a.txt");
    let saved_b = saved.join("t_b.txt");
    assert_eq!(
        std::fs::read_to_string(&saved_a).unwrap().lines().nth(1),
        Some("30")
    );
    assert!(saved_b.is_file());
    rt.block_on(async {
        ingest(&c, &url, events("t_a", 30, 75, 1)).await;
        wait_checkpoint(&c, &url, "t_a", 75).await;
    });
    let (code, out) = verify(&["--url", &url, "--key", ADMIN, "--checkpoint", p(&saved_a)]);
    assert_eq!(code, 0);
    assert!(out.contains("ok: tenant t_a: 75 events"), "{out}");
    assert!(
        out.contains(
            "(size 30) is consistent with checkpoint 75 (consistency proof and rebuilt tree)"
        ),
        "{out}"
    );
    // A directory of saved checkpoints, also the cron form (read, then overwritten).
    let (code, out) = verify(&[
        "--url",
        &url,
        "--key",
        ADMIN,
        "--checkpoint",
        p(&saved),
        "--save-checkpoint",
        p(&saved),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.contains("(size 12) is consistent with checkpoint 12"),
        "{out}"
    );
    assert!(
        out.contains("(size 30) is consistent with checkpoint 75"),
        "{out}"
    );
    assert_eq!(
        std::fs::read_to_string(&saved_a).unwrap().lines().nth(1),
        Some("75")
    );

    // No key: a usage error, not a verification failure.
    let (code, _) = verify(&["--url", &url]);
    assert_eq!(code, 2);
    s.stop();
}

#[test]
fn a_saved_checkpoint_that_is_not_consistent_fails() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let url = s.url.clone();
    let rt = rt();
    let c = client();
    let note = rt.block_on(async {
        ingest(&c, &url, events("t_a", 0, 20, 3)).await;
        wait_checkpoint(&c, &url, "t_a", 20).await
    });
    let good = dir.path().join("good.txt");
    std::fs::write(&good, &note).unwrap();
    let (code, _) = verify(&["--url", &url, "--key", ADMIN, "--checkpoint", p(&good)]);
    assert_eq!(code, 0);

    // Its root edited: the signature no longer holds.
    let lines: Vec<&str> = note.split('\n').collect();
    let fake_root = trailkeep_tlog::hash::encode_hash(&[0x42; 32]);
    let edited = note.replacen(lines[2], &fake_root, 1);
    let edited_path = dir.path().join("edited.txt");
    std::fs::write(&edited_path, edited).unwrap();
    let (code, out) = verify(&[
        "--url",
        &url,
        "--key",
        ADMIN,
        "--checkpoint",
        p(&edited_path),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL: checkpoint ") && out.contains("edited.txt"),
        "{out}"
    );

    // Properly signed by the log key but for another history (a fork): size 10, wrong root.
    let signer = server_signer(&data);
    let forked = sign_checkpoint(
        &Checkpoint::new("trailkeep/default/t_a", 10, [0x42; 32]),
        &signer,
    )
    .unwrap();
    let forked_path = dir.path().join("forked.txt");
    std::fs::write(&forked_path, forked).unwrap();
    let (code, out) = verify(&[
        "--url",
        &url,
        "--key",
        ADMIN,
        "--checkpoint",
        p(&forked_path),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL: tenant t_a: checkpoint ")
            && out.contains("forked.txt (size 10)")
            && out.contains("rewritten"),
        "{out}"
    );
    // Signed, but larger than what the server now shows: the log was rolled back.
    let ahead = sign_checkpoint(
        &Checkpoint::new("trailkeep/default/t_a", 25, [0x43; 32]),
        &signer,
    )
    .unwrap();
    let ahead_path = dir.path().join("ahead.txt");
    std::fs::write(&ahead_path, ahead).unwrap();
    let (code, out) = verify(&[
        "--url",
        &url,
        "--key",
        ADMIN,
        "--checkpoint",
        p(&ahead_path),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("rolled back"), "{out}");
    s.stop();
}

#[test]
fn offline_directory_and_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let url = s.url.clone();
    let rt = rt();
    let c = client();
    let (lines, note, vkey) = rt.block_on(async {
        ingest(&c, &url, events("t_a", 0, 25, 4)).await;
        let note = wait_checkpoint(&c, &url, "t_a", 25).await;
        let lines = raw_log(&c, &url, "t_a").await;
        let vkey = get_text(&c, &format!("{url}/v1/public-key")).await.1;
        (lines, note, vkey)
    });
    s.stop();
    assert_eq!(lines.len(), 25);

    let good = dir.path().join("good");
    write_dir(&good, &lines, &note, &vkey);
    let (code, out) = verify(&[p(&good)]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ok: tenant t_a: 25 events, root "), "{out}");
    let (code, _) = verify(&[p(&good), "--public-key", vkey.trim()]);
    assert_eq!(code, 0);

    // Re-serialised by another tool (keys re-ordered, numbers re-written): still verifies.
    let reformatted: Vec<String> = lines
        .iter()
        .map(|l| serde_json::to_string(&serde_json::from_str::<Value>(l).unwrap()).unwrap())
        .collect();
    let d = dir.path().join("reformatted");
    write_dir(&d, &reformatted, &note, &vkey);
    assert_eq!(verify(&[p(&d)]).0, 0);

    let mut case = 0;
    let mut tampered = |name: &str, lines: Vec<String>, checkpoint: &str, expect: &[&str]| {
        case += 1;
        let d = dir.path().join(format!("t{case}-{name}"));
        write_dir(&d, &lines, checkpoint, &vkey);
        let (code, out) = verify(&[p(&d)]);
        assert_eq!(code, 1, "{name}: {out}");
        assert!(out.starts_with("FAIL: "), "{name}: {out}");
        for e in expect {
            assert!(out.contains(e), "{name}: {out:?} lacks {e:?}");
        }
    };

    let mut l = lines.clone();
    l[7] = set(&l[7], "payload", json!({"n": 7, "text": "something else"}));
    let who = format!("event seq 7 (id {})", id_of(&lines[7]));
    tampered("payload", l, &note, &[&who, "leaf hash mismatch"]);

    let mut l = lines.clone();
    l[3] = set(&l[3], "actor", "user:mallory@example.com".into());
    let who = format!("event seq 3 (id {})", id_of(&lines[3]));
    tampered("actor", l, &note, &[&who, "leaf hash mismatch"]);

    let mut l = lines.clone();
    l[11] = set(&l[11], "timestamp", "2026-01-02T03:04:05.679901Z".into());
    let who = format!("event seq 11 (id {})", id_of(&lines[11]));
    tampered("timestamp", l, &note, &[&who, "leaf hash mismatch"]);

    let mut l = lines.clone();
    l.remove(5);
    let who = format!("event seq 6 (id {})", id_of(&lines[6]));
    tampered("deleted", l, &note, &[&who, "event seq 5 is missing"]);

    let mut l = lines.clone();
    l.swap(14, 15);
    let who = format!("event seq 15 (id {})", id_of(&lines[15]));
    tampered("swapped", l, &note, &[&who, "seq 14 was expected"]);

    let mut l = lines.clone();
    l.truncate(22);
    tampered(
        "truncated",
        l,
        &note,
        &["event seq 22..24 are missing", "covers 25"],
    );

    // Checkpoint signed by another key (same name, same content).
    let body = format!("{}\n", note.split_once("\n\n").unwrap().0);
    let cp = Checkpoint::parse(&body).unwrap();
    let other = Signer::from_seed("trailkeep/default", [8; 32]).unwrap();
    let foreign = sign_checkpoint(&cp, &other).unwrap();
    tampered(
        "other-key",
        lines.clone(),
        &foreign,
        &["checkpoint.txt", "no signature from a trusted key"],
    );

    // Edited size, edited root.
    let edited = note.replacen("\n25\n", "\n24\n", 1);
    assert_ne!(edited, note);
    tampered(
        "size",
        lines.clone(),
        &edited,
        &["checkpoint.txt", "does not verify"],
    );
    let root_line = note.split('\n').nth(2).unwrap();
    let edited = note.replacen(root_line, &trailkeep_tlog::hash::encode_hash(&[1; 32]), 1);
    tampered(
        "root",
        lines.clone(),
        &edited,
        &["checkpoint.txt", "does not verify"],
    );

    // Usage and I/O errors exit 2.
    assert_eq!(verify(&[]).0, 2);
    assert_eq!(verify(&[p(&dir.path().join("missing"))]).0, 2);
    let nokey = dir.path().join("nokey");
    write_dir(&nokey, &lines, &note, &vkey);
    std::fs::remove_file(nokey.join("public-key.txt")).unwrap();
    assert_eq!(verify(&[p(&nokey)]).0, 2);
}

#[test]
fn tlog_proof_of_one_event() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let url = s.url.clone();
    let rt = rt();
    let c = client();
    let id = uuid(4, 5);
    let (proof, event, vkey) = rt.block_on(async {
        ingest(&c, &url, events("t_p", 0, 9, 5)).await;
        wait_checkpoint(&c, &url, "t_p", 9).await;
        let (status, proof) = get_text(&c, &format!("{url}/v1/events/{id}/proof")).await;
        assert_eq!(status, 200, "{proof}");
        let (status, event) = get_text(&c, &format!("{url}/v1/events/{id}")).await;
        assert_eq!(status, 200, "{event}");
        let vkey = get_text(&c, &format!("{url}/v1/public-key")).await.1;
        (proof, event, vkey)
    });
    s.stop();
    assert!(
        proof.starts_with("c2sp.org/tlog-proof@v1\nindex 4\n"),
        "{proof}"
    );

    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let proof_path = write("proof.txt", &proof);
    let event_path = write("e.json", &event);
    let key_path = write("key.txt", &vkey);
    let (code, out) = verify(&[
        p(&proof_path),
        "--event",
        p(&event_path),
        "--public-key",
        vkey.trim(),
    ]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!(
            "ok: tenant t_p: event seq 4 (id {id}) is included in checkpoint 9"
        )),
        "{out}"
    );
    let (code, _) = verify(&[
        p(&proof_path),
        "--event",
        p(&event_path),
        "--public-key",
        p(&key_path),
    ]);
    assert_eq!(code, 0);

    // A proof hash with one base64 character changed.
    let mut lines: Vec<String> = proof.split('\n').map(str::to_string).collect();
    let h = &mut lines[2];
    let c5 = h.as_bytes()[5];
    let replacement = if c5 == b'A' { "B" } else { "A" };
    h.replace_range(5..6, replacement);
    let bad_proof = write("bad-proof.txt", &lines.join("\n"));
    let (code, out) = verify(&[
        p(&bad_proof),
        "--event",
        p(&event_path),
        "--public-key",
        vkey.trim(),
    ]);
    assert_eq!(code, 1);
    assert!(
        out.contains(&format!("FAIL: tenant t_p: event seq 4 (id {id})")),
        "{out}"
    );
    assert!(out.contains("inclusion proof does not match"), "{out}");

    // The event altered.
    let altered = write(
        "altered.json",
        &set(&event, "actor", "user:mallory@example.com".into()),
    );
    let (code, out) = verify(&[
        p(&proof_path),
        "--event",
        p(&altered),
        "--public-key",
        vkey.trim(),
    ]);
    assert_eq!(code, 1);
    assert!(out.contains("leaf hash mismatch"), "{out}");

    // Another key.
    let other = Signer::from_seed("trailkeep/default", [9; 32]).unwrap();
    let (code, _) = verify(&[
        p(&proof_path),
        "--event",
        p(&event_path),
        "--public-key",
        &other.verifier().to_vkey(),
    ]);
    assert_eq!(code, 1);

    // Without a key, or without the event: usage errors.
    assert_eq!(verify(&[p(&proof_path), "--event", p(&event_path)]).0, 2);
    assert_eq!(verify(&[p(&proof_path), "--public-key", vkey.trim()]).0, 2);
}

// ----- evidence bundles ----------------------------------------------------------------------

/// Runs `trailkeep verify ARGS`; returns (exit code, stdout, stderr).
fn verify_full(args: &[&str]) -> (i32, String, String) {
    let out: Output = trailkeep()
        .arg("verify")
        .args(args)
        .output()
        .expect("run trailkeep verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!(
        "verify {args:?} -> {:?}\n{stdout}{stderr}",
        out.status.code()
    );
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

/// Events at minute `i` after 2026-01-02T03:00Z, every sixth a day late (so a time range
/// leaves gaps in the seqs), with varied optional fields.
fn timed_events(tenant: &str, from: usize, to: usize, salt: u64) -> Vec<Value> {
    (from..to)
        .map(|i| {
            let minute = i + if i % 6 == 5 { 24 * 60 } else { 0 };
            let ts = trailkeep_core::Timestamp::from_nanos(
                1_767_322_800_000_000_000 + minute as i64 * 60_000_000_000,
                3,
            );
            let mut e = json!({
                "event_id": uuid(i as u64, salt),
                "event_type": "app.note",
                "actor": format!("user:u{i}@example.com"),
                "tenant_id": tenant,
                "payload": {"n": i, "text": "é \u{2028} \"q\" 😀", "f": 1.5e-7},
                "timestamp": ts.to_rfc3339(),
            });
            if i % 2 == 0 {
                e["source_ip"] = "2001:db8::1".into();
            }
            e
        })
        .collect()
}

/// `2026-01-02T03:00Z` plus `minutes`.
fn minute(m: i64) -> String {
    trailkeep_core::Timestamp::from_nanos(1_767_322_800_000_000_000 + m * 60_000_000_000, 3)
        .to_rfc3339()
}

/// Builds a tenant's evidence bundle from a (stopped) server's data directory the way the
/// server does: the events of [since, until) in log order up to the latest checkpoint, the
/// leaves of their seq span, a range proof from two inclusion proofs, the first checkpoint
/// covering the last event and its consistency proof; signed with `signer`. `seen` is an
/// older checkpoint the test kept, used as the first covering one when it covers the last
/// event and the store names none older (its lookup may only know the latest).
fn bundle_from_store(
    data: &Path,
    tenant: &str,
    (since, until): (Option<i64>, Option<i64>),
    seen: Option<&str>,
    signer: &Signer,
    gzip: bool,
) -> Vec<u8> {
    use trailkeep_export::bundle::{BundleInputs, BundleSpool};
    use trailkeep_store::Store;
    let ts = |m: Option<i64>| m.map(|m| trailkeep_core::Timestamp::parse(&minute(m)).unwrap());
    rt().block_on(async {
        let store =
            trailkeep_store::embedded::EmbeddedStore::open(data, Default::default()).unwrap();
        let cp = store.latest_checkpoint(tenant).await.unwrap().unwrap();
        let n = cp.size;
        let mut batches = store
            .export(trailkeep_store::ExportRequest {
                query: trailkeep_store::EventQuery {
                    tenant_id: Some(tenant.into()),
                    since: ts(since),
                    until: ts(until),
                    ..Default::default()
                },
                log_order: true,
                tree_size: Some(n),
                batch: 7,
            })
            .await
            .unwrap();
        let mut spool = BundleSpool::new(None).unwrap();
        while let Some(batch) = batches.recv().await {
            for e in batch.unwrap() {
                spool.push(&e).unwrap();
            }
        }
        let (mut range_proof, mut first_checkpoint, mut consistency_proof) = (vec![], None, vec![]);
        if let Some((a, b)) = spool.seq_span() {
            let mut at = a;
            while at < b {
                let end = (at + 10).min(b);
                spool
                    .push_leaves(&store.leaves(tenant, at, end).await.unwrap())
                    .unwrap();
                at = end;
            }
            let first = store.inclusion_proof(tenant, a, n).await.unwrap();
            let last = store.inclusion_proof(tenant, b - 1, n).await.unwrap();
            range_proof = trailkeep_tlog::range_proof(a, b, n, &first, &last).unwrap();
            let mut covering = store.checkpoint_covering(tenant, b).await.unwrap().unwrap();
            if let Some(note) = seen {
                let size: u64 = note.lines().nth(1).unwrap().parse().unwrap();
                if b <= size && size < covering.size {
                    covering.size = size;
                    covering.note = note.to_string();
                }
            }
            if covering.size != n {
                consistency_proof = store
                    .consistency_proof(tenant, covering.size, n)
                    .await
                    .unwrap();
                first_checkpoint = Some(covering.note);
            }
        }
        store.shutdown().await;
        let bundle = spool
            .finish(
                BundleInputs {
                    tenant_id: tenant.into(),
                    origin: format!("trailkeep/default/{tenant}"),
                    since: since.map(minute),
                    until: until.map(minute),
                    created_at: "2026-12-04T10:00:00Z".into(),
                    checkpoint: cp.note,
                    tree_size: n,
                    first_checkpoint,
                    consistency_proof,
                    range_proof,
                    public_key: signer.verifier().to_vkey(),
                },
                signer,
            )
            .unwrap();
        bundle.write_tar(Vec::new(), gzip).unwrap()
    })
}

fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(bytes);
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (name, data)
        })
        .collect()
}

fn retar(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn member<'a>(m: &'a mut [(String, Vec<u8>)], name: &str) -> &'a mut Vec<u8> {
    &mut m.iter_mut().find(|(n, _)| n == name).unwrap().1
}

/// Recomputes the manifest's member digests and counts as a forger would (it cannot sign it).
fn recompute_manifest(m: &mut [(String, Vec<u8>)]) {
    use sha2::Digest;
    let mut manifest: Value = serde_json::from_slice(member(m, "manifest.json")).unwrap();
    for (name, data) in m.iter() {
        if manifest["members"].get(name).is_some() {
            manifest["members"][name] =
                json!({"sha256": hex::encode(sha2::Sha256::digest(data)), "bytes": data.len()});
        }
    }
    let events = String::from_utf8(member(m, "events.ndjson").clone()).unwrap();
    manifest["count"] = events.lines().count().into();
    *member(m, "manifest.json") = serde_json::to_vec_pretty(&manifest).unwrap();
}

/// Re-signs every signed member with `key` and makes the bundle name it: a bundle forged
/// from scratch by someone without the log key.
fn resign_all(m: &mut [(String, Vec<u8>)], key: &Signer) {
    use sha2::Digest;
    for name in ["checkpoint.txt", "checkpoint-first.txt"] {
        let note = String::from_utf8(member(m, name).clone()).unwrap();
        let body = &note[..note.find("\n\n").unwrap() + 1];
        let cp = Checkpoint::parse(body).unwrap();
        *member(m, name) = sign_checkpoint(&cp, key).unwrap().into_bytes();
    }
    let vkey = key.verifier().to_vkey();
    *member(m, "public-key.txt") = format!("{vkey}\n").into_bytes();
    recompute_manifest(m);
    let mut manifest: Value = serde_json::from_slice(member(m, "manifest.json")).unwrap();
    manifest["public_key"] = vkey.into();
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let text = format!(
        "trailkeep-bundle/1\nsha256 {}\n",
        hex::encode(sha2::Sha256::digest(&bytes))
    );
    *member(m, "manifest.sig") = trailkeep_tlog::sign_note(&text, &[key])
        .unwrap()
        .into_bytes();
    *member(m, "manifest.json") = bytes;
}

fn edit_lines(m: &mut [(String, Vec<u8>)], f: impl FnOnce(&mut Vec<String>)) {
    let text = String::from_utf8(member(m, "events.ndjson").clone()).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    f(&mut lines);
    *member(m, "events.ndjson") = format!("{}\n", lines.join("\n")).into_bytes();
}

fn seq_of(line: &str) -> u64 {
    serde_json::from_str::<Value>(line).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn evidence_bundles() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let s = Server::start(&data);
    let url = s.url.clone();
    let rt_ = rt();
    let c = client();
    let (vkey, cp40) = rt_.block_on(async {
        ingest(&c, &url, timed_events("t_b", 0, 40, 77)).await;
        ingest(&c, &url, timed_events("t_c", 0, 5, 78)).await;
        let cp40 = wait_checkpoint(&c, &url, "t_b", 40).await;
        ingest(&c, &url, timed_events("t_b", 40, 60, 77)).await;
        wait_checkpoint(&c, &url, "t_b", 60).await;
        (get_text(&c, &format!("{url}/v1/public-key")).await.1, cp40)
    });
    s.stop();
    drop(rt_);
    let signer = server_signer(&data);
    let other = Signer::from_seed("trailkeep/default", [3; 32]).unwrap();
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };

    // Minutes [5, 30): seqs 6..=28 but 11, 17, 23; first covered by the checkpoint of 40.
    let tar_bytes = bundle_from_store(
        &data,
        "t_b",
        (Some(5), Some(30)),
        Some(&cp40),
        &signer,
        false,
    );
    let good = write("good.tar", &tar_bytes);
    let names: Vec<String> = untar(&tar_bytes).into_iter().map(|(n, _)| n).collect();
    assert!(
        names.contains(&"checkpoint-first.txt".to_string()),
        "{names:?}"
    );
    let (code, out, _) = verify_full(&[p(&good), "--public-key", vkey.trim()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok: ") && out.contains("20 events"), "{out}");
    assert!(
        out.contains("seq 6..28") && out.contains("checkpoint-first.txt (size 40)"),
        "{out}"
    );
    // The key as a file, and no key at all (with the warning).
    let key_file = write("log.vkey", vkey.as_bytes());
    assert_eq!(verify_full(&[p(&good), "--public-key", p(&key_file)]).0, 0);
    let (code, _, err) = verify_full(&[p(&good)]);
    assert_eq!(code, 0);
    assert!(
        err.contains("only proves") && err.contains("--public-key"),
        "{err}"
    );
    // gzip'd, the whole log, an empty range.
    let gz = write(
        "good.tar.gz",
        &bundle_from_store(
            &data,
            "t_b",
            (Some(5), Some(30)),
            Some(&cp40),
            &signer,
            true,
        ),
    );
    let (code, out, _) = verify_full(&[p(&gz), "--public-key", vkey.trim()]);
    assert!(code == 0 && out.contains("(gzip)"), "{out}");
    let whole = write(
        "whole.tar",
        &bundle_from_store(&data, "t_b", (None, None), None, &signer, false),
    );
    let (code, out, _) = verify_full(&[p(&whole), "--public-key", vkey.trim()]);
    assert!(code == 0 && out.contains("60 events"), "{out}");
    let empty = write(
        "empty.tar",
        &bundle_from_store(&data, "t_b", (Some(9000), None), None, &signer, true),
    );
    let (code, out, _) = verify_full(&[p(&empty), "--public-key", vkey.trim()]);
    assert!(code == 0 && out.contains("no events"), "{out}");

    // Tampering: each case fails (exit 1) naming the first failing event or member.
    let good_members = untar(&tar_bytes);
    let lines: Vec<String> =
        String::from_utf8(member(&mut good_members.clone(), "events.ndjson").clone())
            .unwrap()
            .lines()
            .map(String::from)
            .collect();
    let label = |i: usize| format!("event seq {} (id {})", seq_of(&lines[i]), id_of(&lines[i]));
    let all = untar(&bundle_from_store(
        &data,
        "t_b",
        (None, None),
        None,
        &signer,
        false,
    ));
    let all_lines: Vec<String> = String::from_utf8(all[all.len() - 1].1.clone())
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    type Edit = Box<dyn Fn(&mut Vec<(String, Vec<u8>)>)>;
    let cases: Vec<(&str, Edit, String)> = vec![
        (
            "event changed",
            Box::new(|m| {
                edit_lines(m, |l| {
                    l[3] = set(&l[3], "actor", "user:mallory@example.com".into())
                })
            }),
            label(3),
        ),
        (
            "event added",
            Box::new({
                let extra = all_lines[11].clone();
                move |m| {
                    let extra = extra.clone();
                    edit_lines(m, move |l| {
                        let i = l.iter().position(|x| seq_of(x) == 12).unwrap();
                        l.insert(i, extra);
                    })
                }
            }),
            format!("event seq 11 (id {})", id_of(&all_lines[11])),
        ),
        (
            "event removed",
            Box::new(|m| {
                edit_lines(m, |l| {
                    l.remove(7);
                })
            }),
            "events.ndjson: holds 19 events".into(),
        ),
        (
            "event removed, manifest recomputed",
            Box::new(|m| {
                edit_lines(m, |l| {
                    l.remove(7);
                });
                recompute_manifest(m);
            }),
            "manifest.sig".into(),
        ),
        (
            "events reordered",
            Box::new(|m| edit_lines(m, |l| l.swap(4, 5))),
            label(4),
        ),
        (
            "event duplicated",
            Box::new(|m| {
                edit_lines(m, |l| {
                    let d = l[9].clone();
                    l.insert(10, d);
                })
            }),
            label(9),
        ),
        (
            "leaf altered",
            Box::new(|m| member(m, "leaves.bin")[40] ^= 1),
            "leaves.bin".into(),
        ),
        (
            "range-proof hash altered",
            Box::new(|m| {
                let t = String::from_utf8(member(m, "range-proof.json").clone()).unwrap();
                let mut v: Value = serde_json::from_str(&t).unwrap();
                v["proof"][0] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
                *member(m, "range-proof.json") = format!("{v}\n").into_bytes();
            }),
            "range-proof.json".into(),
        ),
        (
            "checkpoint altered",
            Box::new(|m| {
                let t = String::from_utf8(member(m, "checkpoint.txt").clone()).unwrap();
                *member(m, "checkpoint.txt") = t.replacen("\n60\n", "\n61\n", 1).into_bytes();
            }),
            "checkpoint.txt".into(),
        ),
        (
            "consistency proof altered",
            Box::new(|m| {
                let t = String::from_utf8(member(m, "consistency.json").clone()).unwrap();
                let mut v: Value = serde_json::from_str(&t).unwrap();
                v["proof"][0] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into();
                *member(m, "consistency.json") = format!("{v}\n").into_bytes();
            }),
            "consistency.json".into(),
        ),
        (
            "manifest digest wrong",
            Box::new(|m| {
                let mut v: Value = serde_json::from_slice(member(m, "manifest.json")).unwrap();
                v["members"]["leaves.bin"]["sha256"] = "0".repeat(64).into();
                *member(m, "manifest.json") = serde_json::to_vec_pretty(&v).unwrap();
            }),
            "manifest.sig".into(),
        ),
    ];
    for (what, edit, names) in cases {
        let mut m = good_members.clone();
        edit(&mut m);
        let path = write("tampered.tar", &retar(&m));
        let (code, out, _) = verify_full(&[p(&path), "--public-key", vkey.trim()]);
        assert_eq!(code, 1, "{what}: {out}");
        let fail = out
            .lines()
            .find(|l| l.starts_with("FAIL: "))
            .unwrap_or_default();
        assert!(
            fail.contains(&names),
            "{what}: expected {names:?} in {fail:?}"
        );
    }
    // Everything re-signed by another key: consistent with itself, but not the log's.
    let mut m = good_members.clone();
    resign_all(&mut m, &other);
    let forged = write("forged.tar", &retar(&m));
    let (code, out, _) = verify_full(&[p(&forged), "--public-key", vkey.trim()]);
    assert!(
        code == 1 && out.contains("FAIL: ") && out.contains("manifest.sig"),
        "{out}"
    );
    let (code, _, err) = verify_full(&[p(&forged)]);
    assert!(code == 0 && err.contains("only proves"), "{err}");
    // The good bundle against another key.
    let (code, out, _) = verify_full(&[p(&good), "--public-key", &other.verifier().to_vkey()]);
    assert!(code == 1 && out.contains("manifest.sig"), "{out}");

    // Tar content that is not a bundle's, in a tar that reads cleanly: exit 1, named.
    let pax_size = {
        // A pax header whose `size` makes a tar tool extract a forged line with the events.
        let events = member(&mut good_members.clone(), "events.ndjson").clone();
        let forged = format!("{}\n", all_lines[11]).into_bytes();
        let value = events.len() + forged.len();
        let body = format!(" size={value}\n");
        let record = format!("{}{body}", body.len() + 2); // a two-digit length
        assert_eq!(record.len(), body.len() + 2);
        let mut bytes = retar(&good_members[..good_members.len() - 1]);
        bytes.truncate(bytes.len() - 1024);
        let mut h = tar::Header::new_ustar();
        h.set_path("PaxHeaders/events.ndjson").unwrap();
        h.set_size(record.len() as u64);
        h.set_entry_type(tar::EntryType::XHeader);
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(record.as_bytes());
        bytes.resize(bytes.len().next_multiple_of(512), 0);
        let mut h = tar::Header::new_ustar();
        h.set_path("events.ndjson").unwrap();
        h.set_size(events.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        bytes.extend_from_slice(h.as_bytes());
        bytes.extend_from_slice(&events);
        bytes.extend_from_slice(&forged);
        bytes.resize(bytes.len().next_multiple_of(512) + 1024, 0);
        bytes
    };
    let mut gz_appended = std::fs::read(&gz).unwrap();
    gz_appended.extend_from_slice(&gz_appended.clone());
    let mut not_json = good_members.clone();
    *member(&mut not_json, "manifest.json") = b"{not json".to_vec();
    for (what, bytes, names) in [
        ("pax size", pax_size, "PaxHeaders/events.ndjson"),
        ("second gzip member", gz_appended, "(end of archive)"),
        ("manifest not JSON", retar(&not_json), "manifest.json"),
    ] {
        let path = write("odd.tar", &bytes);
        let (code, out, err) = verify_full(&[p(&path), "--public-key", vkey.trim()]);
        assert_eq!(code, 1, "{what}: {out}{err}");
        let fail = out
            .lines()
            .find(|l| l.starts_with("FAIL: "))
            .unwrap_or_default();
        assert!(
            fail.contains(names),
            "{what}: expected {names:?} in {fail:?}"
        );
    }

    // Not bundles: exit 2 with a message, never a panic.
    let gz_bytes = std::fs::read(&gz).unwrap();
    let mut x: u32 = 12345;
    let random: Vec<u8> = (0..5000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    for (what, bytes) in [
        ("truncated tar", tar_bytes[..tar_bytes.len() / 2].to_vec()),
        ("truncated gzip", gz_bytes[..gz_bytes.len() - 100].to_vec()),
        ("random bytes", random),
        ("plain text", b"just some notes\nnot a bundle\n".to_vec()),
    ] {
        let path = write("bad.bin", &bytes);
        let (code, out, err) = verify_full(&[p(&path), "--public-key", vkey.trim()]);
        assert_eq!(code, 2, "{what}: {out}{err}");
        assert!(
            err.starts_with("error: ") && !err.contains("panicked"),
            "{what}: {err}"
        );
    }
}
