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
