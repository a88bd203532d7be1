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
