//! The client commands as a first-time user meets them: re-running `ingest` after a failure,
//! what a failed ingest says it stored, stdin, an unreachable server, the progress rate,
//! `query`'s paging hint, dates and errors, and a log exported for `verify DIR`.

use crate::support::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

/// Runs `trailkeep ARGS` with the API key in TRAILKEEP_KEY (never on the command line).
fn tk(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = trailkeep()
        .args(args)
        .env("TRAILKEEP_KEY", ADMIN)
        .env_remove("TRAILKEEP_URL")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run trailkeep");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(bytes) = stdin {
        input.write_all(bytes).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("wait");
    eprintln!(
        "trailkeep {args:?} -> {:?}\n--- stderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// An event without `event_id` (and, for odd `n`, without `timestamp`: the server assigns both).
fn idless(tenant: &str, n: usize) -> Value {
    let mut e = json!({
        "event_type": "app.note",
        "actor": format!("user:u{n}@example.com"),
        "tenant_id": tenant,
        "payload": {"n": n, "f": 1.50},
    });
    if n.is_multiple_of(2) {
        e["timestamp"] = "2026-01-02T03:04:05.678Z".into();
    }
    e
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut body = lines.join("\n");
    body.push('\n');
    std::fs::write(path, body).unwrap();
}

/// How many events the tenant's log holds.
fn count(url: &str, tenant: &str) -> usize {
    rt().block_on(async {
        let v: Value = client()
            .get(format!("{url}/v1/tenants"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        v["tenants"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tenant_id"] == tenant)
            .map(|t| t["event_count"].as_u64().unwrap() as usize)
            .unwrap_or(0)
    })
}

/// The file lines a `stored: lines 1-5, 11-15; not stored: …` summary says were stored.
fn stored_lines(summary: &str) -> Vec<usize> {
    let line = summary
        .lines()
        .find(|l| l.starts_with("stored: "))
        .unwrap_or_else(|| panic!("no summary in {summary}"));
    let stored = line
        .strip_prefix("stored: ")
        .and_then(|s| s.split(';').next())
        .unwrap();
    if stored == "none" {
        return Vec::new();
    }
    let list = stored
        .strip_prefix("lines ")
        .or_else(|| stored.strip_prefix("line "))
        .unwrap();
    let mut out = Vec::new();
    for r in list.split(", ") {
        let (a, b) = r.split_once('-').unwrap_or((r, r));
        out.extend(a.parse::<usize>().unwrap()..=b.parse::<usize>().unwrap());
    }
    out
}

#[test]
fn ingest_rerun_after_a_failure_stores_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let t = "t_idem";
    let mut lines: Vec<String> = (0..30).map(|n| idless(t, n).to_string()).collect();
    // Two identical lines are two events.
    lines[21] = lines[20].clone();
    let good = lines.clone();
    // Line 13 (batch 3 of 5-line batches: lines 11-15) is invalid.
    let mut bad = idless(t, 12);
    bad["actor"] = "".into();
    lines[12] = bad.to_string();
    let file = dir.path().join("events.ndjson");
    write_lines(&file, &lines);

    let out = tk(&["ingest", p(&file), "--url", &s.url, "--batch", "5"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("  line 13: actor: "), "{err}");
    assert!(
        err.contains("; not stored: lines 11-15 (line 13: actor: ")
            || err.contains(", 11-15 (line 13: actor: "),
        "{err}"
    );
    let stored = stored_lines(&err);
    assert!(!stored.iter().any(|l| (11..=15).contains(l)), "{err}");
    assert_eq!(count(&s.url, t), stored.len(), "{err}");

    // The fixed file: what was stored is recognised, the rest stored once.
    write_lines(&file, &good);
    let out = tk(&["ingest", p(&file), "--url", &s.url, "--batch", "5"], None);
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "ingested 30 events: {} accepted, {} duplicates",
            30 - stored.len(),
            stored.len()
        )),
        "{err}"
    );
    assert_eq!(count(&s.url, t), 30);
    // Once more, in other batch sizes: all duplicates.
    let out = tk(&["ingest", p(&file), "--url", &s.url, "--batch", "7"], None);
    assert!(
        stderr(&out).contains("ingested 30 events: 0 accepted, 30 duplicates"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&s.url, t), 30);
    // The ids are version-8 UUIDs, and the identical lines got different ones.
    let log = rt().block_on(read_log(&client(), &s.url, t));
    let ids: std::collections::BTreeSet<&str> = log
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 30);
    assert!(ids.iter().all(|id| id.as_bytes()[14] == b'8'), "{ids:?}");
    s.stop();
}

#[test]
fn ingest_names_the_file_line_of_a_json_syntax_error_and_sends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let t = "t_syntax";
    let mut lines: Vec<String> = (0..10).map(|n| idless(t, n).to_string()).collect();
    lines.insert(3, String::new()); // a blank line: skipped, but counted
    lines[7] = r#"{"event_type": "app.note", "actor": }"#.into();
    let file = dir.path().join("events.ndjson");
    write_lines(&file, &lines);
    let out = tk(&["ingest", p(&file), "--url", &s.url, "--batch", "3"], None);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("line 8: not valid JSON"), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
    assert_eq!(count(&s.url, t), 0);
    s.stop();
}

#[test]
fn ingest_reads_stdin_and_reports_a_whole_rate() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let lines: Vec<String> = (0..2000)
        .map(|n| idless("t_stdin", n).to_string())
        .collect();
    let body = lines.join("\n");
    let out = tk(&["ingest", "-", "--url", &s.url], Some(body.as_bytes()));
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("ingested 2000 events: 2000 accepted, 0 duplicates"),
        "{err}"
    );
    // The rate is a whole number of events per second, with thousands separators.
    let rate = err
        .split(" events/s")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .unwrap();
    assert!(
        !rate.is_empty() && rate.chars().all(|c| c.is_ascii_digit() || c == ','),
        "{err}"
    );
    assert_eq!(count(&s.url, "t_stdin"), 2000);
    // The same input again: nothing new.
    let out = tk(&["ingest", "-", "--url", &s.url], Some(body.as_bytes()));
    assert!(stderr(&out).contains("0 accepted, 2000 duplicates"));
    s.stop();
}

/// A loopback URL whose port nothing listens on.
fn dead_url() -> (String, u16) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    (format!("http://127.0.0.1:{port}"), port)
}

/// Spawns `trailkeep ARGS` and returns it with a channel of its stderr lines.
fn spawn(args: &[&str]) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = trailkeep()
        .args(args)
        .env("TRAILKEEP_KEY", ADMIN)
        .env_remove("TRAILKEEP_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trailkeep");
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

#[test]
fn an_unreachable_server_is_reported_at_once_then_given_up_or_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (url, port) = dead_url();
    let file = dir.path().join("e.ndjson");
    write_lines(&file, &[idless("t_down", 1).to_string()]);
    let started = Instant::now();
    let mut runs: Vec<(&str, Child, std::sync::mpsc::Receiver<String>)> = Vec::new();
    for (name, args) in [
        ("query", vec!["query", "--url", &url, "--tenant", "t_down"]),
        ("ingest", vec!["ingest", p(&file), "--url", &url]),
        ("verify", vec!["verify", "--url", &url]),
        (
            "tail",
            vec![
                "tail",
                "--url",
                &url,
                "--tenant",
                "t_down",
                "--interval-ms",
                "100",
            ],
        ),
    ] {
        let (child, rx) = spawn(&args);
        runs.push((name, child, rx));
    }
    // Each says at once that it cannot reach the server, where, and that it retries.
    for (name, _, rx) in &runs {
        let line = rx
            .recv_timeout(Duration::from_secs(3))
            .unwrap_or_else(|_| panic!("{name}: nothing on stderr within 3 s"));
        assert!(
            line.contains("cannot reach the server at")
                && line.contains(&url)
                && line.contains("retrying"),
            "{name}: {line}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    // query, ingest and verify give up within about 20 s with a clear error.
    let mut tail = None;
    for (name, mut child, rx) in runs {
        if name == "tail" {
            tail = Some((child, rx));
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(40);
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "{name} did not give up");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(!status.success(), "{name}");
        let rest: Vec<String> = rx.try_iter().collect();
        assert!(
            rest.iter()
                .any(|l| l.starts_with("error:") && l.contains("cannot reach the server at")),
            "{name}: {rest:?}"
        );
        if name == "ingest" {
            assert!(
                rest.iter().any(|l| l
                    .starts_with("stored: none; not stored: line 1 (cannot reach the server at")),
                "{rest:?}"
            );
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed > Duration::from_secs(15) && elapsed < Duration::from_secs(30),
        "{elapsed:?}"
    );
    // tail kept trying, said so only once, and says when the server is back.
    let (mut tail, rx) = tail.unwrap();
    assert!(tail.try_wait().unwrap().is_none(), "tail gave up");
    let said: Vec<String> = rx.try_iter().collect();
    assert!(said.is_empty(), "tail repeated itself: {said:?}");
    let data = dir.path().join("data");
    let mut server = trailkeep()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(&data)
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .env("TRAILKEEP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let line = rx.recv_timeout(Duration::from_secs(20));
    let _ = server.kill();
    let _ = server.wait();
    let _ = tail.kill();
    let _ = tail.wait();
    let line = line.expect("tail said nothing when the server came up");
    assert!(
        line.contains("answers again") && line.contains(&url),
        "{line}"
    );
}

#[test]
fn query_hints_at_more_accepts_dates_and_prints_errors_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let t = "t_query";
    let lines: Vec<String> = (0..150)
        .map(|n| {
            let mut e = idless(t, n);
            e["timestamp"] = "2026-01-02T03:04:05.678Z".into();
            e.to_string()
        })
        .collect();
    let file = dir.path().join("e.ndjson");
    write_lines(&file, &lines);
    assert!(tk(&["ingest", p(&file), "--url", &s.url], None)
        .status
        .success());

    let q = |extra: &[&str]| {
        let mut args = vec!["query", "--url", &s.url, "--tenant", t];
        args.extend_from_slice(extra);
        tk(&args, None)
    };
    // The default page: 100 events and a hint that more match.
    let out = q(&[]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 100);
    let err = stderr(&out);
    assert!(
        err.contains("showing the first 100") && err.contains("--limit 0"),
        "{err}"
    );
    // Asked for: no hint.
    let out = q(&["--limit", "100"]);
    assert_eq!(stdout(&out).lines().count(), 100);
    assert!(!stderr(&out).contains("--limit"), "{}", stderr(&out));
    let out = q(&["--limit", "0"]);
    assert_eq!(stdout(&out).lines().count(), 150);
    assert!(stderr(&out).is_empty(), "{}", stderr(&out));
    // Fewer than a page: no hint.
    let out = q(&["--type", "app.nothing"]);
    assert!(out.status.success() && stderr(&out).is_empty());

    // Plain dates mean midnight UTC.
    let n = |extra: &[&str]| {
        let out = q(extra);
        assert!(out.status.success(), "{extra:?}: {}", stderr(&out));
        stdout(&out).lines().count()
    };
    assert_eq!(n(&["--since", "2026-01-02", "--limit", "0"]), 150);
    assert_eq!(n(&["--since", "2026-01-03"]), 0);
    assert_eq!(n(&["--until", "2026-01-02"]), 0);
    assert_eq!(
        n(&[
            "--since",
            "2026-01-02T03:04:05.678Z",
            "--until",
            "2026-01-03",
            "--limit",
            "0"
        ]),
        150
    );
    let out = q(&["--since", "January"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("2026-01-01"), "{}", stderr(&out));

    // A refusal: the server's message, not its JSON envelope.
    let out = q(&["--type", "Not A Type"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.starts_with("error: invalid event_type"), "{err}");
    assert!(!err.contains("{\""), "{err}");
    s.stop();
}

#[test]
fn a_log_exported_with_out_dir_verifies_offline_and_tampering_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(&dir.path().join("data"));
    let t = "t_export";
    let lines: Vec<String> = (0..1234).map(|n| idless(t, n).to_string()).collect();
    let file = dir.path().join("e.ndjson");
    write_lines(&file, &lines);
    assert!(tk(&["ingest", p(&file), "--url", &s.url], None)
        .status
        .success());

    // The whole log, in seq order, on stdout.
    let out = tk(
        &["query", "--url", &s.url, "--tenant", t, "--log-order"],
        None,
    );
    assert!(out.status.success());
    let seqs: Vec<u64> = stdout(&out)
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, (0..1234).collect::<Vec<u64>>());
    let out = tk(
        &[
            "query",
            "--url",
            &s.url,
            "--tenant",
            t,
            "--log-order",
            "--limit",
            "5",
        ],
        None,
    );
    assert_eq!(stdout(&out).lines().count(), 5);

    // A directory for verify DIR: checkpoint, exactly its events, key.
    let d = dir.path().join("export");
    let out = tk(
        &[
            "query",
            "--url",
            &s.url,
            "--tenant",
            t,
            "--log-order",
            "--out-dir",
            p(&d),
        ],
        None,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let cp = std::fs::read_to_string(d.join("checkpoint.txt")).unwrap();
    let size: usize = cp.lines().nth(1).unwrap().parse().unwrap();
    let events = std::fs::read_to_string(d.join("events.ndjson")).unwrap();
    assert_eq!(events.lines().count(), size);
    assert!(size > 0);
    let out = tk(&["verify", p(&d)], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with(&format!("ok: tenant {t}: {size} events")));

    // One event altered: caught.
    let mut altered: Vec<String> = events.lines().map(str::to_string).collect();
    let mut v: Value = serde_json::from_str(&altered[5]).unwrap();
    v["actor"] = "user:mallory@example.com".into();
    altered[5] = v.to_string();
    write_lines(&d.join("events.ndjson"), &altered);
    let out = tk(&["verify", p(&d)], None);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("FAIL: "), "{}", stdout(&out));

    // The live audit reads the key from TRAILKEEP_KEY too.
    let out = tk(&["verify", "--url", &s.url, "--tenant", t], None);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    s.stop();
}

#[test]
fn every_client_command_prefers_the_key_from_the_environment() {
    for cmd in [
        &["ingest"][..],
        &["query"],
        &["tail"],
        &["verify"],
        &["approvals", "approve"],
        &["impersonations", "list"],
    ] {
        let out = trailkeep()
            .args(cmd)
            .arg("--help")
            .env_remove("TRAILKEEP_KEY")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&out.stdout);
        let key = help
            .split("--key <KEY>")
            .nth(1)
            .unwrap_or_else(|| panic!("{cmd:?}: no --key in {help}"));
        let key_help: String = key.lines().take(4).collect::<Vec<_>>().join(" ");
        assert!(
            key_help.contains("Prefer setting TRAILKEEP_KEY")
                && key_help.contains("[env: TRAILKEEP_KEY"),
            "{cmd:?}: {key_help}"
        );
    }
    // The value itself is never shown in --help.
    let out = trailkeep()
        .args(["query", "--help"])
        .env("TRAILKEEP_KEY", "tk_secret_value")
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&out.stdout).contains("tk_secret_value"));
    // ingest documents its id rule.
    let out = trailkeep().args(["ingest", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("SHA-256") && help.contains("version 8"),
        "{help}"
    );
}
