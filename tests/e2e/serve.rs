//! `serve` and the admin commands as a first-time user meets them: keys made with the CLI work
//! at once, key commands refuse a directory without a store, config errors name their source,
//! logs, a bad listen address, a held data directory, /metrics after a restart, completions and
//! the man page.

use crate::support::*;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The binary with no `TRAILKEEP_*` variable inherited from the developer's environment.
fn cmd() -> Command {
    let mut c = trailkeep();
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("TRAILKEEP_")) {
            c.env_remove(k);
        }
    }
    c.env_remove("NO_COLOR");
    c
}

fn run_in(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    cmd()
        .args(args)
        .current_dir(dir)
        .envs(env.iter().copied())
        .output()
        .expect("run trailkeep")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Names in `dir` (sorted), to show that a refused command created nothing.
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Posts one event with `key`; the status.
async fn post(c: &reqwest::Client, url: &str, key: &str, n: u64) -> u16 {
    c.post(format!("{url}/v1/events"))
        .bearer_auth(key)
        .json(&event(&uuid(n, 0x5e7e), "t_serve", n as usize))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn a_key_made_with_the_cli_works_the_moment_the_command_returns() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let s = Server::start(dir.path());
    let rt = rt();
    let c = client();
    for round in 0..20u64 {
        let out = run_in(
            dir.path(),
            &["key", "create", "--role", "ingest", "--data-dir", d],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let key = stdout(&out).trim().to_string();
        // Used at once, and a wrong key just before must not make the server miss it.
        rt.block_on(async {
            assert_eq!(post(&c, &s.url, "tk_wrong", round).await, 401);
            assert_eq!(post(&c, &s.url, &key, round).await, 200, "round {round}");
        });
        // Revoked: refused at once.
        let list = run_in(dir.path(), &["key", "list", "--data-dir", d], &[]);
        let id = stdout(&list)
            .lines()
            .last()
            .and_then(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .and_then(|v| v["id"].as_str().map(str::to_string))
            .expect("key list shows the new key");
        let out = run_in(dir.path(), &["key", "revoke", &id, "--data-dir", d], &[]);
        assert!(out.status.success(), "{}", stderr(&out));
        rt.block_on(async {
            assert_eq!(post(&c, &s.url, &key, 1000 + round).await, 401);
        });
    }
    s.stop();
}

#[test]
fn key_commands_refuse_a_directory_without_a_store_unless_init() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().canonicalize().unwrap();
    for args in [
        &["key", "create", "--role", "admin"][..],
        &["key", "list"][..],
        &["key", "revoke", "key_0"][..],
    ] {
        let out = run_in(&abs, args, &[]);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stdout(&out).is_empty(), "{args:?} printed a key");
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "no store at {}; pass --data-dir",
                abs.join("trailkeep-data").display()
            )) && err.contains("--init"),
            "{args:?}: {err}"
        );
        assert!(
            entries(&abs).is_empty(),
            "{args:?} created {:?}",
            entries(&abs)
        );
    }
    // --data-dir naming a directory without a store: refused the same way.
    let out = run_in(&abs, &["key", "list", "--data-dir", "elsewhere"], &[]);
    assert!(stderr(&out).contains(&format!("no store at {}", abs.join("elsewhere").display())));
    assert!(entries(&abs).is_empty());
    // --init creates the store; the key works when a server opens it.
    let out = run_in(&abs, &["key", "create", "--role", "ingest", "--init"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    let out = run_in(&abs, &["key", "list"], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    let s = Server::start(&abs.join("trailkeep-data"));
    rt().block_on(async {
        assert_eq!(post(&client(), &s.url, &key, 1).await, 200);
    });
    s.stop();
}

#[test]
fn key_commands_through_a_running_server_with_url() {
    let data = tempfile::tempdir().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let s = Server::start(data.path());
    let url = s.url.clone();
    let out = run_in(
        cwd.path(),
        &[
            "key", "create", "--role", "ingest", "--tenant", "t_serve", "--url", &url, "--key",
            ADMIN,
        ],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let key = stdout(&out).trim().to_string();
    assert!(key.starts_with("tk_") && !key.contains('\n'), "{key:?}");
    assert!(
        entries(cwd.path()).is_empty(),
        "--url created {:?}",
        entries(cwd.path())
    );
    let c = client();
    let rt = rt();
    rt.block_on(async { assert_eq!(post(&c, &url, &key, 1).await, 200) });
    // TRAILKEEP_URL and TRAILKEEP_KEY from the environment do the same.
    let env = [("TRAILKEEP_URL", url.as_str()), ("TRAILKEEP_KEY", ADMIN)];
    let out = run_in(cwd.path(), &["key", "list"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["tenant_id"], "t_serve");
    assert!(listed[0].get("key").is_none() && listed[0].get("secret_hash").is_none());
    let id = listed[0]["id"].as_str().unwrap().to_string();
    let out = run_in(cwd.path(), &["key", "revoke", &id], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    rt.block_on(async { assert_eq!(post(&c, &url, &key, 2).await, 401) });
    let out = run_in(cwd.path(), &["key", "revoke", "key_none"], &env);
    assert!(
        stderr(&out).contains("no key with id key_none"),
        "{}",
        stderr(&out)
    );
    // Without an admin key: a clear refusal, nothing printed.
    let out = run_in(cwd.path(), &["key", "list", "--url", &url], &[]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs an admin key"),
        "{}",
        stderr(&out)
    );
    // With a key that is not an admin's.
    let out = run_in(
        cwd.path(),
        &[
            "key", "create", "--role", "reader", "--url", &url, "--key", "tk_wrong",
        ],
        &[],
    );
    assert!(!out.status.success());
    assert!(stdout(&out).is_empty());
    assert!(stderr(&out).contains("refused (401)"), "{}", stderr(&out));
    // --url and --data-dir together are ambiguous; on the command line the flag beats the
    // variable.
    let out = run_in(
        cwd.path(),
        &["key", "list", "--url", &url, "--data-dir", "x"],
        &[],
    );
    assert!(stderr(&out).contains("not both"), "{}", stderr(&out));
    let d = data.path().to_str().unwrap();
    let out = run_in(cwd.path(), &["key", "list", "--data-dir", d], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 1);
    // --init means a store here, whatever TRAILKEEP_URL says.
    let out = run_in(cwd.path(), &["key", "list", "--init"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    assert!(cwd.path().join("trailkeep-data").is_dir());
    s.stop();
}

#[test]
fn config_errors_from_the_environment_name_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    for (var, want) in [
        (
            "TRAILKEEP_LISTEN_PORT",
            "invalid configuration in environment variable TRAILKEEP_LISTEN_PORT: unknown setting (expected one of: TRAILKEEP_LISTEN, ",
        ),
        (
            "TRAILKEEP_RETENTION__DEFAULT_DAYZ",
            "invalid configuration in environment variable TRAILKEEP_RETENTION__DEFAULT_DAYZ: unknown setting (expected one of: TRAILKEEP_RETENTION__DEFAULT_DAYS, TRAILKEEP_RETENTION__PURGE_INTERVAL)",
        ),
    ] {
        let out = run_in(
            dir.path(),
            &["serve", "--listen", "127.0.0.1:0"],
            &[(var, "1")],
        );
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(err.contains(want), "{var}: {err}");
        assert!(!err.contains('`') && !err.contains("default."), "{err}");
        assert!(entries(dir.path()).is_empty());
    }
    let out = run_in(
        dir.path(),
        &["serve", "--listen", "127.0.0.1:0"],
        &[("TRAILKEEP_MAX_BODY_BYTES", "lots")],
    );
    assert!(
        stderr(&out).contains(
            "invalid configuration in environment variable TRAILKEEP_MAX_BODY_BYTES: expected a whole number"
        ),
        "{}",
        stderr(&out)
    );
}

/// Starts `serve` on a free port with `env`; the child and its address (read from stderr,
/// whose lines are collected into the returned receiver's thread until the process ends).
fn spawn_serve(
    data_dir: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (Child, String, std::thread::JoinHandle<String>) {
    let mut child = cmd()
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(extra)
        .current_dir(data_dir)
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            let _ = child.kill();
            panic!("serve did not report its address:\n{text}");
        }
        text.push_str(&line);
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    let rest = std::thread::spawn(move || {
        let mut more = String::new();
        let _ = err.read_to_string(&mut more);
        text + &more
    });
    (child, format!("http://{addr}"), rest)
}

fn term(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[test]
fn logs_have_no_colour_off_a_terminal_and_one_listening_line() {
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TRAILKEEP_LOG", "info"),
        // Client variables in the server's environment are not configuration.
        ("TRAILKEEP_URL", "http://127.0.0.1:1"),
        ("TRAILKEEP_KEY", "tk_x"),
        // Nor are the test scripts' variables.
        (
            "TRAILKEEP_TEST_POSTGRES",
            "postgres://postgres@127.0.0.1:1/x",
        ),
        ("TRAILKEEP_FAULT_ROUNDS", "100"),
    ];
    let (mut child, _url, log) = spawn_serve(dir.path(), &["--data-dir", "d"], &env);
    term(&mut child);
    let log = log.join().unwrap();
    assert!(
        !log.contains('\u{1b}'),
        "colour codes off a terminal:\n{log:?}"
    );
    assert_eq!(log.matches("listening on http://").count(), 1, "{log}");
    assert!(log.contains(" INFO "), "{log}");
}

#[test]
fn serve_help_documents_the_admin_key_and_the_log_filter() {
    let out = cmd().args(["serve", "--help"]).output().unwrap();
    let help = stdout(&out);
    assert!(help.contains("TRAILKEEP_ADMIN_KEY"), "{help}");
    assert!(help.contains("in memory only"), "{help}");
    assert!(
        help.contains("TRAILKEEP_LOG") && help.contains("default: info"),
        "{help}"
    );
    assert!(help.contains("NO_COLOR"), "{help}");
    let out = cmd().args(["key", "create", "--help"]).output().unwrap();
    let help = stdout(&out);
    for flag in ["--url", "--key", "--init", "--data-dir", "--postgres"] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}

#[test]
fn a_bad_listen_address_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(
        dir.path(),
        &["serve", "--listen", "nonsense", "--data-dir", "data"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("invalid listen address \"nonsense\": expected HOST:PORT"),
        "{}",
        stderr(&out)
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    // The default data directory is not created either.
    let out = run_in(dir.path(), &["serve", "--listen", "127.0.0.1:99999"], &[]);
    assert!(!out.status.success());
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    // A port in use.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run_in(
        dir.path(),
        &["serve", "--listen", &addr, "--data-dir", "data"],
        &[],
    );
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&format!(
            "cannot listen on {addr}: the address is already in use"
        )),
        "{}",
        stderr(&out)
    );
    assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
}

#[test]
fn a_data_directory_in_use_is_one_clear_sentence() {
    let dir = tempfile::tempdir().unwrap();
    let abs = dir.path().canonicalize().unwrap();
    let s = Server::start(&abs);
    let out = run_in(
        &abs,
        &["serve", "--listen", "127.0.0.1:0", "--data-dir", "."],
        &[],
    );
    assert!(!out.status.success());
    let err = stderr(&out);
    let line = err
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(
        line,
        format!(
            "error: the data directory {} is in use by another trailkeep process (a running trailkeep serve?): stop that process, or pass another --data-dir",
            abs.display()
        )
    );
    s.stop();
}

/// Every metric the server exports, as a fresh process shows them.
const METRICS: &[&str] = &[
    "trailkeep_events_accepted_total",
    "trailkeep_events_duplicate_total",
    "trailkeep_ingest_batch_events_bucket{le=\"+Inf\"}",
    "trailkeep_ingest_batch_events_count",
    "trailkeep_events_stored_total",
    "trailkeep_commit_group_events_count",
    "trailkeep_fsync_seconds_count",
    "trailkeep_stored_events",
    "trailkeep_requests_rejected_total{code=\"unauthorized\"}",
    "trailkeep_requests_rejected_total{code=\"validation_failed\"}",
    "trailkeep_checkpoints_signed_total",
    "trailkeep_checkpoints_refused_total",
    "process_resident_memory_bytes",
    "process_cpu_seconds_total",
    "process_open_fds",
    "process_start_time_seconds",
];

/// The value of the sample named exactly `name` (with its labels).
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn metrics_after_a_restart_show_every_metric_and_the_stored_events() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(dir.path());
    let c = client();
    let rt = rt();
    let n = 37u64;
    rt.block_on(async {
        let events: Vec<_> = (0..n)
            .map(|i| event(&uuid(i, 0x3e), "t_m", i as usize))
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
    s.stop();
    let s = Server::start(dir.path());
    let text = rt.block_on(async {
        c.get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    for name in METRICS {
        assert!(
            sample(&text, name).is_some(),
            "{name} missing after a restart:\n{text}"
        );
    }
    assert_eq!(
        sample(&text, "trailkeep_stored_events"),
        Some(n as f64),
        "{text}"
    );
    assert_eq!(sample(&text, "trailkeep_events_accepted_total"), Some(0.0));
    assert!(sample(&text, "process_resident_memory_bytes").unwrap() > 1e6);
    assert!(sample(&text, "process_open_fds").unwrap() >= 3.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = sample(&text, "process_start_time_seconds").unwrap();
    assert!(
        start <= now + 1.0 && start > now - 600.0,
        "{start} vs {now}"
    );
    // Kept current: one more event.
    let text = rt.block_on(async {
        let r = c
            .post(format!("{}/v1/events", s.url))
            .bearer_auth(ADMIN)
            .json(&event(&uuid(n, 0x3e), "t_other", 0))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        c.get(format!("{}/metrics", s.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert_eq!(
        sample(&text, "trailkeep_stored_events"),
        Some((n + 1) as f64)
    );
    s.stop();
}

const SUBCOMMANDS: &[&str] = &[
    "serve",
    "key",
    "ingest",
    "query",
    "tail",
    "migrate",
    "verify",
    "approvals",
    "impersonations",
    "completions",
    "man",
];

#[test]
fn completions_and_the_man_page_cover_every_subcommand() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = cmd().args(["completions", shell]).output().unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let text = stdout(&out);
        for sub in SUBCOMMANDS.iter().chain(&["create", "list", "revoke"]) {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let out = cmd().args(["completions", "tcsh"]).output().unwrap();
    assert!(!out.status.success());
    let out = cmd().arg("man").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let page = stdout(&out);
    assert!(
        page.starts_with(".ie") || page.starts_with(".TH"),
        "{}",
        &page[..200.min(page.len())]
    );
    assert!(
        page.contains(".TH trailkeep"),
        "{}",
        &page[..400.min(page.len())]
    );
    for sub in SUBCOMMANDS {
        assert!(
            page.contains(&format!(".SH \"TRAILKEEP {}\"", sub.to_uppercase())),
            "the man page has no section for {sub}"
        );
    }
    for sub in ["create", "list", "revoke"] {
        assert!(page.contains(&format!(".SH \"TRAILKEEP KEY {}\"", sub.to_uppercase())));
    }
    for sub in ["list", "show", "approve", "reject"] {
        assert!(page.contains(&format!(
            ".SH \"TRAILKEEP APPROVALS {}\"",
            sub.to_uppercase()
        )));
    }
    for sub in ["list", "show"] {
        assert!(page.contains(&format!(
            ".SH \"TRAILKEEP IMPERSONATIONS {}\"",
            sub.to_uppercase()
        )));
    }
    assert!(page.contains("TRAILKEEP_ADMIN_KEY"));
}

/// PostgreSQL: keys live in the database, so a key made with the CLI works at once there too;
/// the server's NOTICEs (migrations' "already exists, skipping") are debug lines, not info.
#[test]
fn postgres_keys_work_at_once_and_notices_are_debug() {
    let db = crate::postgres::Db::create();
    let dir = tempfile::tempdir().unwrap();
    let pg = ["--postgres", db.url.as_str()];
    // The first start creates the schema; later ones find it and PostgreSQL says so.
    let (mut first, _, _) = spawn_serve(dir.path(), &pg, &[("TRAILKEEP_LOG", "warn")]);
    term(&mut first);
    let (mut child, url, log) = spawn_serve(dir.path(), &pg, &[("TRAILKEEP_LOG", "info")]);
    let c = client();
    let rt = rt();
    for round in 0..20u64 {
        let out = run_in(
            dir.path(),
            &["key", "create", "--role", "ingest", "--postgres", &db.url],
            &[],
        );
        assert!(out.status.success(), "{}", stderr(&out));
        let key = stdout(&out).trim().to_string();
        rt.block_on(async {
            assert_eq!(post(&c, &url, &key, round).await, 200, "round {round}");
        });
    }
    term(&mut child);
    let log = log.join().unwrap();
    assert!(!log.contains("already exists"), "a NOTICE at info:\n{log}");
    // At debug they are there (so the check above can see them).
    let (mut child, _, log) = spawn_serve(
        dir.path(),
        &pg,
        &[("TRAILKEEP_LOG", "warn,trailkeep_store=debug")],
    );
    term(&mut child);
    let log = log.join().unwrap();
    assert!(log.contains("already exists"), "no NOTICE at debug:\n{log}");
}

/// The address answers from the start: while the store opens (held back here by the test-only
/// TRAILKEEP_TEST_OPEN_DELAY_MS, as a long replay would), /healthz is 200, /readyz is 503
/// `starting` and the API is 503 with Retry-After and the JSON error body; then all is 200.
#[test]
fn probes_answer_while_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = trailkeep()
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .env("TRAILKEEP_LOG", "warn")
        .env("TRAILKEEP_TEST_OPEN_DELAY_MS", "4000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let url = format!("http://{listen}");
    let started = Instant::now();
    rt().block_on(async {
        let c = client();
        // The listener is up at once.
        let health = loop {
            match c.get(format!("{url}/healthz")).send().await {
                Ok(r) => break r,
                Err(e) => {
                    assert!(
                        started.elapsed() < Duration::from_secs(3),
                        "no answer on {url} while starting: {e}"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        assert_eq!(health.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "answered only after the delay"
        );
        let ready = c.get(format!("{url}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let body: serde_json::Value = ready.json().await.unwrap();
        assert_eq!(body["error"]["code"], "starting", "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("replaying the log"),
            "{body}"
        );
        let api = c
            .get(format!("{url}/v1/tenants"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 503);
        assert_eq!(api.headers()["retry-after"], "1");
        let body: serde_json::Value = api.json().await.unwrap();
        assert_eq!(body["error"]["code"], "starting", "{body}");
        // Then the store is open: ready, and the API answers.
        loop {
            let r = c.get(format!("{url}/readyz")).send().await.unwrap();
            if r.status() == 200 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(started.elapsed() >= Duration::from_secs(4));
        let r = c
            .get(format!("{url}/v1/tenants"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c.get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    });
    term(&mut child);
}

/// SIGTERM while the store is still opening stops the server at once (exit 0), without
/// waiting for the opening to finish.
#[test]
fn sigterm_while_the_store_opens_stops_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut child = trailkeep()
        .args(["serve", "--listen", &listen, "--data-dir"])
        .arg(dir.path())
        .env("TRAILKEEP_TEST_OPEN_DELAY_MS", "60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let started = Instant::now();
    rt().block_on(async {
        let c = client();
        loop {
            if let Ok(r) = c.get(format!("http://{listen}/readyz")).send().await {
                assert_eq!(r.status(), 503);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no answer while starting"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let sent = Instant::now();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = loop {
        if let Ok(Some(s)) = child.try_wait() {
            break s;
        }
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "still running 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
