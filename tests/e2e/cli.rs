//! The command line: key creation for scripts, ingest from a file, query, tail, config errors.

use crate::support::*;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

fn run(args: &[&str]) -> std::process::Output {
    trailkeep().args(args).output().expect("run trailkeep")
}

#[test]
fn key_create_prints_only_the_key_and_it_works_while_the_server_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = Server::start(dir.path());
    let out = run(&[
        "key",
        "create",
        "--role",
        "ingest",
        "--tenant",
        "t_cli",
        "--data-dir",
        d,
    ]);
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "stdout must hold only the key: {stdout:?}");
    let key = lines[0].to_string();
    assert!(key.starts_with("tk_"));
    let rt = rt();
    rt.block_on(async {
        let c = client();
        // The running server sees the new key within a second or two.
        let mut status = 0;
        for _ in 0..50 {
            let r = c
                .post(format!("{}/v1/events", s.url))
                .bearer_auth(&key)
                .json(&event(&uuid(1, 7), "t_cli", 1))
                .send()
                .await
                .unwrap();
            status = r.status().as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200);
        // Bound to t_cli: another tenant is refused.
        let r = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(&key)
            .json(&event(&uuid(2, 7), "t_other", 2))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403);
    });
    // Bad roles and bindings are refused before touching the store.
    assert!(!run(&["key", "create", "--role", "root", "--data-dir", d])
        .status
        .success());
    assert!(!run(&[
        "key",
        "create",
        "--role",
        "admin",
        "--tenant",
        "t1",
        "--data-dir",
        d
    ])
    .status
    .success());
    assert!(!run(&[
        "key",
        "create",
        "--role",
        "reader",
        "--ttl",
        "soon",
        "--data-dir",
        d
    ])
    .status
    .success());
    // list shows ids, never secrets; revoke works.
    let list = String::from_utf8(run(&["key", "list", "--data-dir", d]).stdout).unwrap();
    assert!(!list.contains(&key) && list.contains("\"role\":\"ingest\""));
    let id = list
        .lines()
        .find(|l| l.contains("t_cli"))
        .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(run(&["key", "revoke", &id, "--data-dir", d])
        .status
        .success());
    assert!(!run(&["key", "revoke", "key_nope", "--data-dir", d])
        .status
        .success());
    s.stop();
}

#[test]
fn ingest_query_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let file = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..2500u64 {
        writeln!(
            f,
            "{}",
            event(
                &uuid(i, 3),
                if i % 2 == 0 { "t_a" } else { "t_b" },
                i as usize
            )
        )
        .unwrap();
        if i == 10 {
            writeln!(f).unwrap(); // blank lines are skipped
        }
    }
    drop(f);
    let out = run(&[
        "ingest",
        file.to_str().unwrap(),
        "--url",
        &s.url,
        "--key",
        ADMIN,
        "--batch",
        "700",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("2500 accepted"));
    // Ingesting again: all duplicates, still success.
    let out = run(&[
        "ingest",
        file.to_str().unwrap(),
        "--url",
        &s.url,
        "--key",
        ADMIN,
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0 accepted, 2500 duplicates"));

    // A bad line is reported by its line number and nothing of that batch is stored.
    let bad = dir.path().join("bad.ndjson");
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"event_type\":\"x\"}}\n",
            event(&uuid(9999, 3), "t_a", 1)
        ),
    )
    .unwrap();
    let out = run(&[
        "ingest",
        bad.to_str().unwrap(),
        "--url",
        &s.url,
        "--key",
        ADMIN,
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 2"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = run(&[
        "query", "--url", &s.url, "--key", ADMIN, "--tenant", "t_a", "--limit", "0",
    ]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1250);

    // tail prints events that arrive after it starts, in seq order.
    let mut tail = trailkeep()
        .args([
            "tail",
            "--tenant",
            "t_a",
            "--url",
            &s.url,
            "--key",
            ADMIN,
            "--interval-ms",
            "100",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(800));
    let rt = rt();
    rt.block_on(async {
        let c = client();
        let events: Vec<_> = (0..3)
            .map(|i| event(&uuid(5000 + i, 3), "t_a", i as usize))
            .collect();
        let r = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(ADMIN)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    });
    let mut lines = BufReader::new(tail.stdout.take().unwrap()).lines();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let l = lines.next().unwrap().unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        seqs.push(v["seq"].as_u64().unwrap());
    }
    let _ = tail.kill();
    let _ = tail.wait();
    assert_eq!(seqs, vec![1250, 1251, 1252]);
    s.stop();
}

#[test]
fn bad_config_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("t.toml");
    std::fs::write(&cfg, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let out = run(&[
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--data-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("lisen"));
    let out = run(&["serve", "--config", "/nonexistent/trailkeep.toml"]);
    assert!(!out.status.success());
}

#[test]
fn version_flag() {
    let out = run(&["--version"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("trailkeep "));
}

#[test]
fn ingest_retries_429_until_everything_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    // Two requests a second per key, set through the environment (overrides the config file).
    let s = Server::start_with_env(
        &dir.path().join("data"),
        &[
            ("TRAILKEEP_LIMITS__REQUESTS_PER_SECOND", "2"),
            ("TRAILKEEP_LIMITS__BURST", "1"),
        ],
    );
    let file = dir.path().join("events.ndjson");
    let mut f = std::fs::File::create(&file).unwrap();
    for i in 0..40u64 {
        writeln!(f, "{}", event(&uuid(i, 4), "t_rl", i as usize)).unwrap();
    }
    drop(f);
    let rt = rt();
    // The limit is really on: a burst of requests gets a 429 with Retry-After.
    rt.block_on(async {
        let c = client();
        let mut saw_429 = false;
        for _ in 0..5 {
            let r = c
                .get(format!("{}/v1/tenants", s.url))
                .bearer_auth(ADMIN)
                .send()
                .await
                .unwrap();
            if r.status() == 429 {
                assert!(r.headers().contains_key("retry-after"));
                saw_429 = true;
            }
        }
        assert!(
            saw_429,
            "the rate limit from the environment was not applied"
        );
    });
    // 8 requests of 5 events at 2/s: the CLI must wait and retry, and store everything once.
    let out = run(&[
        "ingest",
        file.to_str().unwrap(),
        "--url",
        &s.url,
        "--key",
        ADMIN,
        "--batch",
        "5",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("40 accepted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Reading back goes through the same retrying client.
    let out = run(&[
        "query", "--url", &s.url, "--key", ADMIN, "--tenant", "t_rl", "--limit", "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 40);
    s.stop();
}
