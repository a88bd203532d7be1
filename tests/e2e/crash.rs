//! Durability: a restart loses nothing; SIGKILL mid-ingest loses no acknowledged event and
//! leaves no partial batch, and every tenant's log stays gap-free.

use crate::support::*;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[test]
fn restart_loses_nothing_and_seq_continues() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = Server::start(dir.path());
    let c = client();
    let batch: Vec<_> = (0..300)
        .map(|i| event(&uuid(i, 1), "t_restart", i as usize))
        .collect();
    let receipts: serde_json::Value = rt.block_on(async {
        let r = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(ADMIN)
            .json(&batch)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json().await.unwrap()
    });
    s.stop();
    let s = Server::start(dir.path());
    rt.block_on(async {
        let log = read_log(&c, &s.url, "t_restart").await;
        assert_eq!(log.len(), 300);
        for (i, (e, r)) in log
            .iter()
            .zip(receipts["receipts"].as_array().unwrap())
            .enumerate()
        {
            assert_eq!(e["seq"], i as u64);
            assert_eq!(e["event_id"], r["event_id"]);
            assert_eq!(e["leaf_hash"], r["leaf_hash"]);
        }
        // Re-sending after the restart is still a duplicate with the original receipt.
        let again: serde_json::Value = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(ADMIN)
            .json(&batch[5])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(again["duplicates"], 1);
        assert_eq!(again["receipts"][0]["seq"], 5);
        // New events continue the sequence.
        let next: serde_json::Value = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(ADMIN)
            .json(&event(&uuid(1000, 1), "t_restart", 1000))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(next["receipts"][0]["seq"], 300);
    });
    s.stop();
}

#[test]
fn sigkill_mid_ingest_loses_no_acknowledged_event_and_no_partial_batch() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let s = Server::start(dir.path());
    let url = s.url.clone();
    // event id → (tenant, seq, leaf hash) of every receipt.
    type Acked = HashMap<String, (String, u64, String)>;
    let acked: Arc<Mutex<Acked>> = Arc::default();
    let batches_sent: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    const BATCH: u64 = 200;
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..4u64 {
            let (acked, batches_sent, url) = (acked.clone(), batches_sent.clone(), url.clone());
            tasks.push(tokio::spawn(async move {
                let c = client();
                for b in 0.. {
                    let ids: Vec<String> =
                        (0..BATCH).map(|i| uuid(b * BATCH + i, w + 10)).collect();
                    let events: Vec<_> = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| event(id, &format!("t_crash{}", (i as u64 + w) % 3), i))
                        .collect();
                    batches_sent.lock().unwrap().push(ids.clone());
                    let Ok(r) = c
                        .post(format!("{url}/v1/events"))
                        .bearer_auth(ADMIN)
                        .json(&events)
                        .send()
                        .await
                    else {
                        return;
                    };
                    if r.status() != 200 {
                        return;
                    }
                    let Ok(v) = r.json::<serde_json::Value>().await else {
                        return;
                    };
                    let mut a = acked.lock().unwrap();
                    for rc in v["receipts"].as_array().unwrap() {
                        a.insert(
                            rc["event_id"].as_str().unwrap().to_string(),
                            (
                                rc["tenant_id"].as_str().unwrap().to_string(),
                                rc["seq"].as_u64().unwrap(),
                                rc["leaf_hash"].as_str().unwrap().to_string(),
                            ),
                        );
                    }
                }
            }));
        }
        // Let a good number of batches land, then pull the plug while requests are in flight.
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            if acked.lock().unwrap().len() >= 20 * BATCH as usize {
                break;
            }
        }
        s.kill9();
        for t in tasks {
            let _ = t.await;
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 20 * BATCH as usize);

    let s = Server::start(dir.path());
    rt.block_on(async {
        let c = client();
        let mut stored: HashMap<String, (String, u64, String)> = HashMap::new();
        for t in 0..3 {
            let tenant = format!("t_crash{t}");
            let log = read_log(&c, &s.url, &tenant).await;
            for (i, e) in log.iter().enumerate() {
                assert_eq!(
                    e["seq"], i as u64,
                    "tenant {tenant} has a gap or reordering at {i}"
                );
                stored.insert(
                    e["event_id"].as_str().unwrap().to_string(),
                    (
                        tenant.clone(),
                        i as u64,
                        e["leaf_hash"].as_str().unwrap().to_string(),
                    ),
                );
            }
        }
        for (id, rc) in &acked {
            assert_eq!(
                stored.get(id),
                Some(rc),
                "acknowledged event {id} lost or changed after SIGKILL"
            );
        }
        // All-or-nothing: every batch is either wholly stored or wholly absent.
        for ids in batches_sent.lock().unwrap().iter() {
            let present: HashSet<bool> = ids.iter().map(|id| stored.contains_key(id)).collect();
            assert_eq!(present.len(), 1, "a batch was partially stored");
        }
    });
    s.stop();
}

/// What the fault suite knows about the log: every receipt, every batch sent, every
/// checkpoint the server ever handed out.
#[derive(Default)]
struct Ledger {
    /// event id → (tenant, seq, leaf hash) of every receipt.
    acked: HashMap<String, (String, u64, String)>,
    /// Every batch sent (answered or not), as its event ids.
    sent: Vec<Vec<String>>,
    /// Distinct checkpoint notes seen.
    checkpoints: HashSet<String>,
}

const FAULT_TENANTS: [&str; 3] = ["t_fault0", "t_fault1", "t_fault2"];

/// Checks the log after a fault: every acknowledged event is there unchanged, every request is
/// wholly stored or wholly absent (an unanswered one may be either), nothing else is stored,
/// `seq` is gap-free per tenant, and every checkpoint ever issued verifies against the log
/// (`trailkeep verify --url` with all of them as saved checkpoints).
fn check_after_fault(
    rt: &tokio::runtime::Runtime,
    url: &str,
    ledger: &Ledger,
    saved: &std::path::Path,
    round: usize,
) {
    let stored: HashMap<String, (String, u64, String)> = rt.block_on(async {
        let c = client();
        let mut stored = HashMap::new();
        for tenant in FAULT_TENANTS {
            for (i, e) in read_log(&c, url, tenant).await.iter().enumerate() {
                assert_eq!(
                    e["seq"], i as u64,
                    "round {round}: tenant {tenant} has a gap at {i}"
                );
                stored.insert(
                    e["event_id"].as_str().unwrap().to_string(),
                    (
                        tenant.to_string(),
                        i as u64,
                        e["leaf_hash"].as_str().unwrap().to_string(),
                    ),
                );
            }
        }
        stored
    });
    for (id, rc) in &ledger.acked {
        assert_eq!(
            stored.get(id),
            Some(rc),
            "round {round}: acknowledged event {id} lost or changed"
        );
    }
    let mut in_batches = 0;
    for ids in &ledger.sent {
        let present = ids.iter().filter(|id| stored.contains_key(*id)).count();
        assert!(
            present == 0 || present == ids.len(),
            "round {round}: a request was partially stored ({present} of {})",
            ids.len()
        );
        in_batches += present;
    }
    assert_eq!(
        in_batches,
        stored.len(),
        "round {round}: events stored that no request sent"
    );
    // Every checkpoint ever issued, as saved checkpoints of a live audit.
    std::fs::create_dir_all(saved).unwrap();
    for (i, note) in ledger.checkpoints.iter().enumerate() {
        std::fs::write(saved.join(format!("cp{i}.txt")), note).unwrap();
    }
    let out = trailkeep()
        .args(["verify", "--url", url, "--key", ADMIN, "--checkpoint"])
        .arg(saved)
        .output()
        .expect("run trailkeep verify");
    assert!(
        out.status.success(),
        "round {round}: verify failed with {} checkpoints:\n{}{}",
        ledger.checkpoints.len(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sends batches from a few writers and collects checkpoints until `stop`; returns when all
/// writers have stopped (the server being killed stops them).
async fn ingest_until(
    url: &str,
    ledger: &Arc<Mutex<Ledger>>,
    round: u64,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut tasks = Vec::new();
    for w in 0..3u64 {
        let (ledger, url, stop) = (ledger.clone(), url.to_string(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let c = client();
            for b in 0u64.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let size = 1 + (b * 37 + w * 11) % 60;
                let salt = 0x100 + round * 8 + w;
                let ids: Vec<String> = (0..size).map(|i| uuid(b * 1000 + i, salt)).collect();
                let events: Vec<_> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| event(id, FAULT_TENANTS[(i + w as usize) % 3], i))
                    .collect();
                ledger.lock().unwrap().sent.push(ids);
                let Ok(r) = c
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(ADMIN)
                    .json(&events)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() != 200 {
                    return;
                }
                let Ok(v) = r.json::<serde_json::Value>().await else {
                    return;
                };
                let mut l = ledger.lock().unwrap();
                for rc in v["receipts"].as_array().unwrap() {
                    l.acked.insert(
                        rc["event_id"].as_str().unwrap().to_string(),
                        (
                            rc["tenant_id"].as_str().unwrap().to_string(),
                            rc["seq"].as_u64().unwrap(),
                            rc["leaf_hash"].as_str().unwrap().to_string(),
                        ),
                    );
                }
            }
        }));
    }
    // Checkpoints, as a monitor would collect them.
    let (l, u, s) = (ledger.clone(), url.to_string(), stop.clone());
    tasks.push(tokio::spawn(async move {
        let c = client();
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            for t in FAULT_TENANTS {
                let Ok(r) = c
                    .get(format!("{u}/v1/tenants/{t}/checkpoint"))
                    .bearer_auth(ADMIN)
                    .send()
                    .await
                else {
                    return;
                };
                if r.status() == 200 {
                    if let Ok(text) = r.text().await {
                        l.lock().unwrap().checkpoints.insert(text);
                    }
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    }));
    for t in tasks {
        let _ = t.await;
    }
}

/// The fault-injection suite: SIGKILL during ingest and during replay, round after round on
/// one data directory, the log checked after every fault (`check_after_fault`). Rounds:
/// `TRAILKEEP_FAULT_ROUNDS` (default 4, a few seconds each); `scripts/fault-suite.sh` runs the
/// long variant. Every `ROUNDS_PER_DIR` rounds the suite moves on to a fresh data directory
/// (and a fresh ledger), so that checking the whole log after each fault stays quick.
#[test]
fn fault_suite_sigkill_during_ingest_and_replay() {
    let rounds: usize = std::env::var("TRAILKEEP_FAULT_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    const ROUNDS_PER_DIR: usize = 20;
    let rt = rt();
    let mut dir = tempfile::tempdir().unwrap();
    let mut saved = tempfile::tempdir().unwrap();
    let mut ledger: Arc<Mutex<Ledger>> = Arc::default();
    let (mut total_acked, mut total_sent, mut total_cps) = (0, 0, 0);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut replay_kills = 0;
    for round in 0..rounds {
        let mut s = Server::start(dir.path());
        check_after_fault(&rt, &s.url, &ledger.lock().unwrap(), saved.path(), round);
        if round > 0 && round % ROUNDS_PER_DIR == 0 {
            // Checked after its last fault: on to a fresh data directory.
            s.stop();
            let l = ledger.lock().unwrap();
            assert!(!l.acked.is_empty());
            (total_acked, total_sent, total_cps) = (
                total_acked + l.acked.len(),
                total_sent + l.sent.len(),
                total_cps + l.checkpoints.len(),
            );
            drop(l);
            dir = tempfile::tempdir().unwrap();
            saved = tempfile::tempdir().unwrap();
            ledger = Arc::default();
            s = Server::start(dir.path());
        }
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let url = s.url.clone();
        let run_ms = 200 + next() % 500;
        let during_ingest = round % 2 == 0;
        let pid = s.child.id();
        rt.block_on(async {
            let work = ingest_until(&url, &ledger, round as u64, stop.clone());
            let fault = async {
                tokio::time::sleep(std::time::Duration::from_millis(run_ms)).await;
                if during_ingest {
                    // SIGKILL while the writers' requests are in flight.
                    let _ = std::process::Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                } else {
                    // Let the requests in flight finish: this round's fault is at the restart.
                    stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                }
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
            };
            tokio::join!(work, async {
                fault.await;
            });
        });
        s.kill9();
        if !during_ingest {
            // SIGKILL during the next start, while the store replays (or cuts) its log.
            let mut child = trailkeep()
                .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir.path())
                .env("TRAILKEEP_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("spawn serve");
            std::thread::sleep(std::time::Duration::from_millis(next() % 60));
            let _ = child.kill();
            let _ = child.wait();
            replay_kills += 1;
        }
    }
    let s = Server::start(dir.path());
    let l = ledger.lock().unwrap();
    check_after_fault(&rt, &s.url, &l, saved.path(), rounds);
    eprintln!(
        "fault suite: {rounds} rounds ({replay_kills} killed during replay), {} events acknowledged, {} requests sent, {} checkpoints verified",
        total_acked + l.acked.len(),
        total_sent + l.sent.len(),
        total_cps + l.checkpoints.len()
    );
    assert!(rounds == 0 || !l.acked.is_empty());
    drop(l);
    s.stop();
}
