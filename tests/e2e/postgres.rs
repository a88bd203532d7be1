//! Several `trailkeep serve --postgres` processes on one database (docs/operations.md): concurrent ingest
//! through all of them keeps every tenant's seq gap-free and unique, loses and duplicates
//! nothing, SIGKILL of one process mid-ingest loses nothing it acknowledged (and never half a
//! request), and every process serves the same signed checkpoint.
//!
//! Needs PostgreSQL on 127.0.0.1:5432 with trust auth for `postgres` (scripts/test.sh starts
//! it; `TRAILKEEP_TEST_POSTGRES` overrides the admin URL) and `psql`. Fails, never skips, when
//! it is not there.

use crate::support::*;
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn admin_url() -> String {
    std::env::var("TRAILKEEP_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn psql(sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .args(["-v", "ON_ERROR_STOP=1", "-qAtc", sql, &admin_url()])
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// A fresh database, dropped (with its connections) at the end of the test.
pub struct Db {
    name: String,
    pub url: String,
}

impl Db {
    pub fn create() -> Db {
        let name = format!("trailkeep_e2e_{:016x}", rand::random::<u64>());
        psql(&format!("CREATE DATABASE {name}")).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is needed at {} for this test and is not usable ({e}); start it (scripts/test.sh does) or set TRAILKEEP_TEST_POSTGRES",
                admin_url()
            )
        });
        let admin = admin_url();
        let base = &admin[..admin.rfind('/').expect("admin URL ends in /database")];
        Db {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = psql(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

/// Starts `trailkeep serve --postgres` with a shared signing key and its own data directory.
pub(crate) fn start_pg(db: &Db, seed_hex: &str, data_dir: &Path) -> Server {
    start_pg_at(&db.url, seed_hex, data_dir, &[])
}

/// Starts `trailkeep serve --postgres url` with extra environment variables.
fn start_pg_at(url: &str, seed_hex: &str, data_dir: &Path, env: &[(&str, &str)]) -> Server {
    let mut child = trailkeep()
        .args(["serve", "--listen", "127.0.0.1:0", "--postgres", url])
        .envs(env.iter().copied())
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .env("TRAILKEEP_LOG", "warn")
        .env("TRAILKEEP_SIGNING_KEY", seed_hex)
        .env_remove("TRAILKEEP_DATA_DIR")
        .current_dir(data_dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn trailkeep serve --postgres");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                    let _ = tx.send(Ok(addr));
                    sent = true;
                } else if line.contains("error") {
                    let _ = tx.send(Err(line.clone()));
                }
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("server did not report its address")
        .unwrap_or_else(|e| panic!("server failed to start: {e}"));
    Server {
        child,
        url: format!("http://{addr}"),
    }
}

const TENANTS: [&str; 3] = ["pg_a", "pg_b", "pg_c"];

/// A request of `n` events spread over the tenants.
fn batch(task: usize, round: usize, n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let k = ((task * 1000 + round) * 100 + i) as u64;
            event(&uuid(k, 0x5e), TENANTS[(task + round + i) % 3], i)
        })
        .collect()
}

type Ack = (String, u64, String, String); // tenant, seq, event_id, leaf_hash

fn acks_of(v: &serde_json::Value) -> Vec<Ack> {
    v["receipts"]
        .as_array()
        .expect("receipts")
        .iter()
        .map(|r| {
            (
                r["tenant_id"].as_str().unwrap().to_string(),
                r["seq"].as_u64().unwrap(),
                r["event_id"].as_str().unwrap().to_string(),
                r["leaf_hash"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn three_servers_one_database_gap_free_no_loss_same_checkpoints() {
    let db = Db::create();
    let dirs: Vec<_> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let seed_hex = hex_seed();
    // Start three processes at once: they race to migrate the fresh database.
    let servers: Vec<Server> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3)
            .map(|i| {
                let (db, seed, dir) = (&db, &seed_hex, dirs[i].path());
                s.spawn(move || start_pg(db, seed, dir))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let urls: Vec<String> = servers.iter().map(|s| s.url.clone()).collect();
    let rt = rt();
    let c = client();

    let acked: Arc<Mutex<Vec<Ack>>> = Arc::default();
    let unacked: Arc<Mutex<Vec<Vec<serde_json::Value>>>> = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    const TASKS: usize = 9;
    const ROUNDS: usize = 25;
    const PER: usize = 40;

    let mut servers: Vec<Option<Server>> = servers.into_iter().map(Some).collect();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for task in 0..TASKS {
            let (c, url) = (c.clone(), urls[task % 3].clone());
            let (acked, unacked, done) = (acked.clone(), unacked.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                for round in 0..ROUNDS {
                    let b = batch(task, round, PER);
                    let res = c
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(ADMIN)
                        .json(&b)
                        .send()
                        .await;
                    let v = match res {
                        Ok(r) if r.status() == 200 => r.json::<serde_json::Value>().await.ok(),
                        Ok(r) if task % 3 != 0 => panic!("server answered {}", r.status()),
                        _ => None,
                    };
                    match v {
                        Some(v) => {
                            assert_eq!(v["accepted"], PER as u64, "{v}");
                            acked.lock().unwrap().extend(acks_of(&v));
                            done.fetch_add(1, Ordering::SeqCst);
                        }
                        None => {
                            assert_eq!(task % 3, 0, "only the killed server may fail requests");
                            // Not acknowledged: this one and the rest were never answered.
                            let mut u = unacked.lock().unwrap();
                            u.push(b);
                            for r in round + 1..ROUNDS {
                                u.push(batch(task, r, PER));
                            }
                            return;
                        }
                    }
                }
            }));
        }
        // SIGKILL server 0 mid-ingest.
        let deadline = Instant::now() + Duration::from_secs(120);
        while done.load(Ordering::SeqCst) < TASKS * ROUNDS / 4 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        servers[0].take().expect("server 0").kill9();
        for t in tasks {
            t.await.expect("ingest task");
        }
    });
    let acked = acked.lock().unwrap().clone();
    let unacked = unacked.lock().unwrap().clone();
    assert!(!acked.is_empty());
    assert!(!unacked.is_empty(), "the kill did not happen mid-ingest");
    eprintln!(
        "postgres e2e: {} events acknowledged, {} requests unanswered by the killed server",
        acked.len(),
        unacked.len()
    );

    rt.block_on(async {
        // Every acknowledged event at its seq, every log gap-free (read through server 1).
        let mut logs: HashMap<&str, Vec<serde_json::Value>> = HashMap::new();
        for t in TENANTS {
            let log = read_log(&c, &urls[1], t).await;
            for (i, e) in log.iter().enumerate() {
                assert_eq!(e["seq"], i as u64, "{t}: gap or disorder at {i}");
            }
            logs.insert(t, log);
        }
        let mut seen = HashMap::new();
        for (t, s, id, leaf) in &acked {
            assert!(
                seen.insert(id.clone(), ()).is_none(),
                "{id} acknowledged twice"
            );
            let e = logs[t.as_str()]
                .get(*s as usize)
                .unwrap_or_else(|| panic!("acknowledged {t}/{s} is missing"));
            assert_eq!(e["event_id"].as_str(), Some(id.as_str()), "{t}/{s}");
            assert_eq!(e["leaf_hash"].as_str(), Some(leaf.as_str()), "{t}/{s}");
        }
        // A request the killed server never answered is all there or not at all.
        let stored: HashMap<String, ()> = logs
            .values()
            .flatten()
            .map(|e| (e["event_id"].as_str().unwrap().to_string(), ()))
            .collect();
        for b in &unacked {
            let n = b
                .iter()
                .filter(|e| stored.contains_key(e["event_id"].as_str().unwrap()))
                .count();
            assert!(
                n == 0 || n == b.len(),
                "half a request stored ({n} of {})",
                b.len()
            );
        }
        let total: usize = logs.values().map(|l| l.len()).sum();
        assert_eq!(stored.len(), total, "an event_id is stored twice");
        // Re-sending the unanswered requests (through another server) completes them; the
        // acknowledged ones come back as duplicates with their original receipts.
        for b in &unacked {
            let r = c
                .post(format!("{}/v1/events", urls[2]))
                .bearer_auth(ADMIN)
                .json(b)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let some: Vec<serde_json::Value> = batch(1, 3, PER);
        let v: serde_json::Value = c
            .post(format!("{}/v1/events", urls[2]))
            .bearer_auth(ADMIN)
            .json(&some)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["duplicates"], PER as u64);
        let want: Vec<Ack> = acks_of(&v);
        for a in &want {
            assert!(
                acked.contains(a),
                "duplicate receipt differs from the original: {a:?}"
            );
        }
        let mut counts: BTreeMap<&str, u64> = BTreeMap::new();
        let mut all = 0;
        for t in TENANTS {
            let log = read_log(&c, &urls[2], t).await;
            for (i, e) in log.iter().enumerate() {
                assert_eq!(e["seq"], i as u64, "{t}: gap after re-send at {i}");
            }
            counts.insert(t, log.len() as u64);
            all += log.len();
        }
        assert_eq!(all, TASKS * ROUNDS * PER, "every event stored exactly once");
    });

    // A fresh process on the same database, then: every process serves the same checkpoint
    // of the full logs (Ed25519 is deterministic and the store keeps one checkpoint per size).
    servers[0] = Some(start_pg(&db, &seed_hex, dirs[3].path()));
    let urls: Vec<String> = servers.iter().flatten().map(|s| s.url.clone()).collect();
    rt.block_on(async {
        for t in TENANTS {
            let n = read_log(&c, &urls[0], t).await.len();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mut notes = Vec::new();
                for u in &urls {
                    let r = c
                        .get(format!("{u}/v1/tenants/{t}/checkpoint"))
                        .bearer_auth(ADMIN)
                        .send()
                        .await
                        .unwrap();
                    notes.push(if r.status() == 200 {
                        r.text().await.unwrap()
                    } else {
                        String::new()
                    });
                }
                let full = notes
                    .iter()
                    .all(|n_| n_.lines().nth(1) == Some(n.to_string().as_str()));
                if full {
                    assert!(notes.windows(2).all(|w| w[0] == w[1]), "{t}: {notes:?}");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{t}: no checkpoint of size {n}: {notes:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
    // An auditor's full check of each process: every leaf recomputed, trees rebuilt, roots
    // equal to the signed checkpoints.
    for u in &urls {
        let out = trailkeep()
            .args(["verify", "--url", u, "--key", ADMIN])
            .output()
            .expect("run verify");
        assert!(
            out.status.success(),
            "verify --url {u} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A process with another signing key refuses to start on this database.
    let other = tempfile::tempdir().unwrap();
    let out = trailkeep()
        .args(["serve", "--listen", "127.0.0.1:0", "--postgres", &db.url])
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .env("TRAILKEEP_SIGNING_KEY", hex_seed())
        .env_remove("TRAILKEEP_DATA_DIR")
        .current_dir(other.path())
        .output()
        .expect("run serve");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("signed with a different key"), "{err}");
    for s in servers.into_iter().flatten() {
        s.stop();
    }
}

pub(crate) fn hex_seed() -> String {
    let seed: [u8; 32] = rand::random();
    seed.iter().map(|b| format!("{b:02x}")).collect()
}

/// `trailkeep migrate` and `trailkeep key create --postgres`, then a server (without
/// TRAILKEEP_ADMIN_KEY) that accepts the key made straight in the database, from the
/// `postgres` setting of its config file.
#[test]
fn migrate_and_keys_on_postgres() {
    let db = Db::create();
    let run = |args: &[&str]| {
        let out = trailkeep()
            .args(args)
            .env_remove("TRAILKEEP_DATA_DIR")
            .env_remove("TRAILKEEP_POSTGRES_URL")
            .output()
            .expect("run trailkeep");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, _, err) = run(&["migrate", "--postgres", &db.url]);
    assert!(ok && err.contains("applied migrations 1"), "{err}");
    let (ok, _, err) = run(&["migrate", "--postgres", &db.url]);
    assert!(ok && err.contains("up to date"), "{err}");
    let (ok, _, err) = run(&["migrate"]);
    assert!(!ok && err.contains("--postgres"), "{err}");
    let (ok, secret, err) = run(&["key", "create", "--role", "admin", "--postgres", &db.url]);
    assert!(ok && secret.starts_with("tk_"), "{err}");
    let (ok, list, err) = run(&["key", "list", "--postgres", &db.url]);
    assert!(ok && list.contains("\"role\":\"admin\""), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("trailkeep.toml");
    std::fs::write(&cfg, format!("postgres = \"{}\"\n", db.url)).unwrap();
    let mut child = trailkeep()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .env_remove("TRAILKEEP_ADMIN_KEY")
        .env_remove("TRAILKEEP_DATA_DIR")
        .env_remove("TRAILKEEP_POSTGRES_URL")
        .env("TRAILKEEP_LOG", "warn")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(rest) = line.split("listening on http://").nth(1) {
            assert!(line.contains("PostgreSQL"), "{line}");
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let server = Server {
        child,
        url: format!("http://{addr}"),
    };
    let rt = rt();
    let c = client();
    rt.block_on(async {
        let r = c
            .post(format!("{}/v1/events", server.url))
            .bearer_auth(&secret)
            .json(&event(&uuid(1, 0x77), "pg_cli", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c
            .post(format!("{}/v1/events", server.url))
            .bearer_auth("tk_not_a_key")
            .json(&event(&uuid(2, 0x77), "pg_cli", 2))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    });
    server.stop();
}

/// PostgreSQL that stops answering without closing connections (a partition, a hung server):
/// ingest, `/v1/tenants` and `/readyz` answer `503` with `Retry-After` within the configured
/// timeouts instead of hanging, and the same server serves again once the database answers.
#[test]
fn a_frozen_database_gets_503_with_retry_after_and_the_server_recovers() {
    let db = Db::create();
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = rt();
    let upstream: std::net::SocketAddr = {
        let admin = admin_url();
        let host_port = admin
            .split('@')
            .nth(1)
            .and_then(|r| r.split('/').next())
            .expect("admin URL is postgres://user@host:port/db")
            .to_string();
        let addrs: Vec<std::net::SocketAddr> = rt
            .block_on(tokio::net::lookup_host(host_port.as_str()))
            .expect("resolve PostgreSQL")
            .collect();
        addrs[0]
    };
    let proxy = rt.block_on(crate::proxy::Proxy::start(upstream));
    let via = format!("postgres://postgres@{}/{}", proxy.addr, db.name);
    let server = start_pg_at(
        &via,
        &"42".repeat(32),
        dir.path(),
        &[
            ("TRAILKEEP_POSTGRES_TIMEOUTS__CONNECT_TIMEOUT", "1s"),
            ("TRAILKEEP_POSTGRES_TIMEOUTS__STATEMENT_TIMEOUT", "1s"),
            ("TRAILKEEP_POSTGRES_TIMEOUTS__LOCK_TIMEOUT", "500ms"),
            ("TRAILKEEP_POSTGRES_TIMEOUTS__POOL_WAIT", "1s"),
        ],
    );
    let url = server.url.clone();
    let c = client();
    let post = |c: &reqwest::Client, k: u64| {
        c.post(format!("{url}/v1/events"))
            .bearer_auth(ADMIN)
            .json(&event(&uuid(k, 0xf2), "pg_frozen", 0))
            .send()
    };
    rt.block_on(async {
        let r = post(&c, 1).await.expect("post");
        assert_eq!(r.status(), 200, "{:?}", r.text().await);

        proxy.freeze();
        let t0 = Instant::now();
        let r = post(&c, 2).await.expect("post while frozen");
        let took = t0.elapsed();
        assert_eq!(r.status(), 503);
        assert_eq!(
            r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
            Some("1")
        );
        let body: serde_json::Value = r.json().await.expect("json");
        assert_eq!(body["error"]["code"], "unavailable");
        assert!(
            took < Duration::from_secs(5),
            "ingest answered after {took:?}"
        );

        let t0 = Instant::now();
        let r = c.get(format!("{url}/readyz")).send().await.expect("readyz");
        assert_eq!(r.status(), 503);
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "readyz took {:?}",
            t0.elapsed()
        );

        let t0 = Instant::now();
        let r = c
            .get(format!("{url}/v1/tenants"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("tenants");
        assert_eq!(r.status(), 503);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "tenants took {:?}",
            t0.elapsed()
        );

        proxy.unfreeze();
        // The same process serves again without a restart (its broken connections replaced).
        let t0 = Instant::now();
        let r = post(&c, 3).await.expect("post after unfreeze");
        assert_eq!(r.status(), 200, "{:?}", r.text().await);
        assert!(t0.elapsed() < Duration::from_secs(3));
        let r = c.get(format!("{url}/readyz")).send().await.expect("readyz");
        assert_eq!(r.status(), 200);
        let log = read_log(&c, &url, "pg_frozen").await;
        let ids: Vec<&str> = log
            .iter()
            .map(|e| e["event_id"].as_str().unwrap())
            .collect();
        // The event answered 503 before COMMIT was sent was not stored.
        assert_eq!(ids, [uuid(1, 0xf2), uuid(3, 0xf2)]);
    });
    server.stop();
}
