//! The integrity checks at start, with the real binary: a data directory tampered with while
//! the server was stopped (tail segment deleted, last blocks cut, a middle block removed, an
//! event rewritten with its CRC and leaf hash recomputed, the signing key replaced or lost) is
//! refused or its tenant quarantined, never served as if nothing happened; the operator's
//! options (`--accept-restored-log`, `--rotate-signing-key`) are recorded in `_global`. And a
//! full disk: a request answered 503 is never stored, also after a restart.

use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts `trailkeep serve` with extra arguments: the server, or (if it exits before
/// listening) everything it wrote to stderr.
fn try_start(data_dir: &Path, extra: &[&str]) -> Result<Server, String> {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .env("TRAILKEEP_LOG", "warn")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn trailkeep serve");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut all = String::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(Ok(addr));
                    sent = true;
                }
                all.push_str(&line);
                all.push('\n');
            }
        }
        if !sent {
            let _ = tx.send(Err(all));
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(Ok(addr)) => Ok(Server {
            child,
            url: format!("http://{addr}"),
        }),
        Ok(Err(stderr)) => {
            let status = child.wait().expect("wait");
            assert!(!status.success(), "a refusal exits with a failure status");
            Err(stderr)
        }
        Err(_) => {
            let _ = child.kill();
            panic!("the server neither listened nor exited within 60 s");
        }
    }
}

fn refused(data_dir: &Path, extra: &[&str], why: &str) -> String {
    match try_start(data_dir, extra) {
        Ok(s) => {
            s.stop();
            panic!("{why}: the server started");
        }
        Err(stderr) => stderr,
    }
}

fn seg(dir: &Path, n: u32) -> PathBuf {
    dir.join("log").join(format!("{n:08}.seg"))
}

fn len(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().len()
}

async fn post(c: &reqwest::Client, url: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post(format!("{url}/v1/events"))
        .bearer_auth(ADMIN)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: &str, path: &str) -> (u16, Value) {
    let r = c
        .get(format!("{url}{path}"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn batch(tenant: &str, from: u64, n: u64, salt: u64) -> Value {
    Value::Array(
        (from..from + n)
            .map(|i| event(&uuid(i, salt), tenant, i as usize))
            .collect(),
    )
}

/// Waits until `tenant` has a signed checkpoint of `size`.
async fn wait_checkpoint(c: &reqwest::Client, url: &str, tenant: &str, size: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = c
            .get(format!("{url}/v1/tenants/{tenant}/checkpoint"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let text = r.text().await.unwrap();
            if text.lines().nth(1) == Some(&size.to_string()) {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no checkpoint of size {size}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `_global` events trailkeep wrote of `event_type`.
async fn own(c: &reqwest::Client, url: &str, event_type: &str) -> Vec<Value> {
    let (status, v) = get(
        c,
        url,
        &format!("/v1/events?tenant_id=_global&event_type={event_type}"),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v["events"].as_array().cloned().unwrap_or_default()
}

#[test]
fn the_tail_segment_deleted_is_refused_until_the_restore_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let c = client();
    let s = Server::start(dir.path());
    rt.block_on(async {
        for i in 0..3 {
            assert_eq!(
                post(&c, &s.url, &batch("t_seg", i * 10, 10, 1)).await.0,
                200
            );
        }
        wait_checkpoint(&c, &s.url, "t_seg", 30).await;
    });
    s.stop();
    std::fs::remove_file(seg(dir.path(), 1)).unwrap();
    let err = refused(dir.path(), &[], "the only segment deleted");
    assert!(err.contains("behind its high-water mark"), "{err}");
    assert!(
        err.contains("tenant t_seg had 30 events, the log holds 0"),
        "{err}"
    );
    assert!(err.contains("--accept-restored-log"), "{err}");

    let s = try_start(dir.path(), &["--accept-restored-log"]).expect("accepted");
    rt.block_on(async {
        let restored = own(&c, &s.url, "log.restored").await;
        assert_eq!(restored.len(), 1);
        let text = restored[0]["payload"]["missing"].to_string();
        assert!(text.contains("tenant t_seg had 30 events"), "{text}");
    });
    s.stop();
    // Accepted once; the next start needs nothing.
    let s = Server::start(dir.path());
    s.stop();
}

#[test]
fn the_last_blocks_cut_off_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let c = client();
    let s = Server::start(dir.path());
    let mut ends = Vec::new();
    rt.block_on(async {
        for i in 0..4 {
            assert_eq!(post(&c, &s.url, &batch("t_cut", i * 5, 5, 2)).await.0, 200);
            // Answered means durable: the file holds the block now.
            ends.push(len(&seg(dir.path(), 1)));
        }
    });
    s.stop();
    let full = std::fs::read(seg(dir.path(), 1)).unwrap();
    std::fs::write(seg(dir.path(), 1), &full[..ends[1] as usize]).unwrap();
    let err = refused(dir.path(), &[], "the last blocks cut off");
    assert!(err.contains("bytes of durable log are missing"), "{err}");
    assert!(
        err.contains("tenant t_cut had 20 events, the log holds 10"),
        "{err}"
    );
    // Put back, it starts with everything.
    std::fs::write(seg(dir.path(), 1), &full).unwrap();
    let s = Server::start(dir.path());
    rt.block_on(async {
        assert_eq!(read_log(&c, &s.url, "t_cut").await.len(), 20);
    });
    s.stop();
}

/// Block boundaries of a segment's bytes: (start of the block header, end of its body).
fn blocks(b: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 32;
    while pos + 16 <= b.len() {
        let n = u32::from_le_bytes(b[pos..pos + 4].try_into().unwrap()) as usize;
        out.push((pos, pos + 16 + n));
        pos += 16 + n;
    }
    out
}

#[test]
fn a_block_removed_from_the_middle_is_refused() {
    // Requests a, b, a, b; the third block is taken out. It defines no new name and nothing
    // later builds on it, so the rest of the log replays cleanly: only the high-water mark can
    // tell. The checkpointer (a round a second) must not have signed in between, or its block
    // would give the removal away anyway: tried again if it did.
    for attempt in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let rt = rt();
        let c = client();
        let s = Server::start(dir.path());
        rt.block_on(async {
            for (i, t) in ["t_ma", "t_mb", "t_ma", "t_mb"].iter().enumerate() {
                // One actor throughout: the third request names nothing new.
                let body: Vec<Value> = (0..3)
                    .map(|j| event(&uuid(i as u64 * 3 + j, 3), t, 0))
                    .collect();
                let (status, v) = post(&c, &s.url, &Value::Array(body)).await;
                assert_eq!(status, 200, "{v}");
            }
            // Long enough for the high-water mark (written every 200 ms) to cover them.
            tokio::time::sleep(Duration::from_millis(500)).await;
        });
        s.kill9();
        let b = std::fs::read(seg(dir.path(), 1)).unwrap();
        let spans = blocks(&b);
        // The first block records the signing key, then the four requests.
        if spans.len() != 5 {
            eprintln!(
                "attempt {attempt}: {} blocks (a checkpoint got in)",
                spans.len()
            );
            continue;
        }
        let mut cut = b[..spans[3].0].to_vec();
        cut.extend_from_slice(&b[spans[4].0..]);
        std::fs::write(seg(dir.path(), 1), &cut).unwrap();
        let err = refused(dir.path(), &[], "a middle block removed");
        assert!(err.contains("behind its high-water mark"), "{err}");
        assert!(
            err.contains("tenant t_ma had 6 events, the log holds 3"),
            "{err}"
        );
        return;
    }
    panic!("the checkpointer signed between the requests in every attempt");
}

/// Rewrites event `id` of the stopped server's data directory like a careful forger: its
/// payload changed, its leaf hash recomputed to match, every block's CRC recomputed.
fn forge(dir: &Path, id: &str, from: &str, to: &str) {
    let rt = rt();
    let e = rt.block_on(async {
        use trailkeep_store::Store;
        let store = trailkeep_store::embedded::EmbeddedStore::open(dir, Default::default())
            .expect("open the stopped server's store");
        let e = store
            .get_event(id.parse().unwrap())
            .await
            .unwrap()
            .expect("the event");
        store.shutdown().await;
        e
    });
    let mut forged = e.clone();
    let p = String::from_utf8(e.payload.clone().unwrap()).unwrap();
    assert!(p.contains(from), "{p}");
    forged.payload = Some(p.replace(from, to).into_bytes());
    let leaf = trailkeep_core::leaf::stored_event_leaf_hash(&forged).unwrap();
    let path = seg(dir, 1);
    let mut b = std::fs::read(&path).unwrap();
    for (old, new) in [
        (from.as_bytes(), to.as_bytes()),
        (&e.leaf_hash[..], &leaf[..]),
    ] {
        let at = b
            .windows(old.len())
            .position(|w| w == old)
            .expect("bytes to replace are in the log");
        b[at..at + new.len()].copy_from_slice(new);
    }
    for (start, end) in blocks(&b) {
        let crc = crc32fast::hash(&b[start + 16..end]);
        b[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(&path, &b).unwrap();
}

#[test]
fn an_event_rewritten_with_crc_and_leaf_recomputed_quarantines_its_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let c = client();
    let s = Server::start(dir.path());
    let victim = uuid(1, 4);
    rt.block_on(async {
        let mut e = event(&victim, "t_forged", 1);
        e["payload"] = json!({"amount": "100", "method": "sso"});
        assert_eq!(post(&c, &s.url, &e).await.0, 200);
        assert_eq!(post(&c, &s.url, &batch("t_forged", 10, 5, 4)).await.0, 200);
        assert_eq!(post(&c, &s.url, &batch("t_honest", 0, 5, 5)).await.0, 200);
        wait_checkpoint(&c, &s.url, "t_forged", 6).await;
        wait_checkpoint(&c, &s.url, "t_honest", 5).await;
    });
    s.stop();
    forge(dir.path(), &victim, "\"100\"", "\"900\"");

    let s = Server::start(dir.path());
    rt.block_on(async {
        let (status, v) = get(&c, &s.url, &format!("/v1/events/{victim}")).await;
        assert_eq!(status, 503, "the forged event is not served: {v}");
        assert_eq!(v["error"]["code"], "quarantined", "{v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains("t_forged") && msg.contains("checkpoint of size 6"),
            "{msg}"
        );
        let (status, v) = get(&c, &s.url, "/v1/events?tenant_id=t_forged").await;
        assert_eq!(status, 503, "{v}");
        let (status, v) = get(&c, &s.url, "/readyz").await;
        assert_eq!(status, 503, "{v}");
        assert_eq!(v["error"]["code"], "degraded", "{v}");
        assert!(
            v.to_string().contains("tenant t_forged is quarantined"),
            "{v}"
        );
        // The other tenant is served.
        assert_eq!(read_log(&c, &s.url, "t_honest").await.len(), 5);
    });
    // An auditor's verify fails the check (exit 1), naming the tenant; not an I/O error.
    let out = Command::new(BIN)
        .args([
            "verify", "--url", &s.url, "--key", ADMIN, "--tenant", "t_forged",
        ])
        .env_remove("TRAILKEEP_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("t_forged"), "{stdout}");
    s.stop();
}

#[test]
fn a_naively_edited_event_makes_verify_fail_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let c = client();
    let s = Server::start(dir.path());
    let victim = uuid(2, 6);
    rt.block_on(async {
        assert_eq!(post(&c, &s.url, &batch("t_naive", 0, 2, 6)).await.0, 200);
        let mut e = event(&victim, "t_naive", 2);
        e["payload"] = json!({"note": "edit-me-marker", "method": "sso"});
        assert_eq!(post(&c, &s.url, &e).await.0, 200);
        assert_eq!(post(&c, &s.url, &batch("t_naive", 3, 2, 6)).await.0, 200);
        wait_checkpoint(&c, &s.url, "t_naive", 5).await;
    });
    // Edited while the server runs (at open the block's CRC would refuse it).
    let path = seg(dir.path(), 1);
    let mut b = std::fs::read(&path).unwrap();
    let at = b.windows(14).position(|w| w == b"edit-me-marker").unwrap();
    b[at] = b'E';
    std::fs::write(&path, &b).unwrap();
    rt.block_on(async {
        let (status, v) = get(&c, &s.url, &format!("/v1/events/{victim}")).await;
        assert_eq!(status, 500, "{v}");
        assert_eq!(v["error"]["code"], "corrupt", "{v}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(&victim),
            "{v}"
        );
    });
    let out = Command::new(BIN)
        .args([
            "verify", "--url", &s.url, "--key", ADMIN, "--tenant", "t_naive",
        ])
        .env_remove("TRAILKEEP_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a check failed, not an I/O error: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(&victim), "names the event: {stdout}");
    s.stop();
}

#[test]
fn a_replaced_or_lost_signing_key_is_refused_unless_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let c = client();
    let s = Server::start(dir.path());
    let old_vkey = rt.block_on(async {
        assert_eq!(post(&c, &s.url, &batch("t_key", 0, 3, 7)).await.0, 200);
        wait_checkpoint(&c, &s.url, "t_key", 3).await;
        c.get(format!("{}/v1/public-key", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .trim()
            .to_string()
    });
    s.stop();
    let key = dir.path().join("signing-key");
    let original = std::fs::read(&key).unwrap();

    // Lost: a new key would be generated, and is refused.
    std::fs::remove_file(&key).unwrap();
    let err = refused(dir.path(), &[], "signing key lost");
    assert!(err.contains(&old_vkey), "names the log's key: {err}");
    assert!(err.contains("--rotate-signing-key"), "{err}");
    // Replaced by another key: refused too.
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    let err = refused(dir.path(), &[], "signing key replaced");
    assert!(err.contains("--rotate-signing-key"), "{err}");
    // The original key back: it starts.
    std::fs::write(&key, &original).unwrap();
    Server::start(dir.path()).stop();

    // A rotation on purpose is recorded, with both keys.
    std::fs::write(&key, format!("{}\n", "cd".repeat(32))).unwrap();
    let s = try_start(dir.path(), &["--rotate-signing-key"]).expect("rotation accepted");
    rt.block_on(async {
        let new_vkey = c
            .get(format!("{}/v1/public-key", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .trim()
            .to_string();
        assert_ne!(new_vkey, old_vkey);
        let rotated = own(&c, &s.url, "log.key_rotated").await;
        assert_eq!(rotated.len(), 1);
        assert_eq!(
            rotated[0]["payload"],
            json!({"old_vkey": old_vkey, "new_vkey": new_vkey})
        );
    });
    s.stop();
    // From now on the new key is the one; the old one is refused.
    Server::start(dir.path()).stop();
    std::fs::write(&key, &original).unwrap();
    refused(dir.path(), &[], "the old key after a rotation");
}

/// A full disk under many small concurrent requests: after a restart, the stored events are
/// exactly the acknowledged ones; every request answered 503 is absent. On a 2 MiB tmpfs
/// (needs root to mount: fails, never skips, without it).
#[test]
fn a_full_disk_never_stores_a_request_answered_503() {
    let mnt = tempfile::tempdir().unwrap();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(mnt.path())
        .status();
    match status {
        Ok(s) if s.success() => {}
        other => panic!(
            "this test mounts a 2 MiB tmpfs to fill it up and needs root (mount -t tmpfs): {other:?}; run the suite as root (e.g. in the CI container)"
        ),
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.path().to_path_buf());
    let dir = mnt.path().join("data");
    let rt = rt();
    let c = client();
    let s = Server::start(&dir);
    let filler = mnt.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 4096];
        while f.write_all(&chunk).is_ok() {}
        let l = f.metadata().unwrap().len();
        f.set_len(l.saturating_sub(64 * 1024)).unwrap();
    }
    let (ok, refused503) = rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..8u64 {
            let c = c.clone();
            let url = s.url.clone();
            tasks.spawn(async move {
                let (mut ok, mut no) = (Vec::new(), Vec::new());
                for i in 0..40u64 {
                    let n = 1 + (i + w) % 3;
                    let body = batch(&format!("t_full{w}"), i * 10, n, 100 + w);
                    let ids: Vec<String> = body
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e["event_id"].as_str().unwrap().to_string())
                        .collect();
                    match post(&c, &url, &body).await {
                        (200, _) => ok.extend(ids),
                        (503, _) => no.extend(ids),
                        (status, v) => panic!("unexpected {status}: {v}"),
                    }
                }
                (ok, no)
            });
        }
        let (mut ok, mut no) = (Vec::new(), Vec::new());
        while let Some(r) = tasks.join_next().await {
            let (o, n) = r.unwrap();
            ok.extend(o);
            no.extend(n);
        }
        (ok, no)
    });
    assert!(!refused503.is_empty(), "the disk filled up");
    std::fs::remove_file(&filler).unwrap();
    s.stop();
    let s = Server::start(&dir);
    rt.block_on(async {
        let mut stored = std::collections::BTreeSet::new();
        for w in 0..8 {
            for e in read_log(&c, &s.url, &format!("t_full{w}")).await {
                stored.insert(e["event_id"].as_str().unwrap().to_string());
            }
        }
        let ghosts: Vec<_> = refused503
            .iter()
            .filter(|id| stored.contains(*id))
            .collect();
        assert!(ghosts.is_empty(), "answered 503 but stored: {ghosts:?}");
        let lost: Vec<_> = ok.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
        assert_eq!(stored.len(), ok.len());
    });
    s.stop();
}
