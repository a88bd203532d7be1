//! Abuse resistance, each test written as the attack: a guessable admin key, key lifetimes that
//! overflow, files at rest readable by everyone, secrets in the logs, floods of wrong keys, slow
//! and half-open connections, requests hyper refuses on its own.

use crate::support::*;
use std::process::Stdio;

/// `serve` with `TRAILKEEP_ADMIN_KEY` set to `key`, over a fresh data directory; its output.
fn serve_with_admin_key(key: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    trailkeep()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("TRAILKEEP_ADMIN_KEY", key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run serve")
}

#[test]
fn a_short_admin_key_is_refused_at_start_with_how_to_make_one() {
    for key in ["abc", "change-me", "0123456789abcdef0123456789abcde"] {
        let out = serve_with_admin_key(key);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key:?} accepted: {err}");
        assert!(
            err.contains(&format!(
                "TRAILKEEP_ADMIN_KEY is {} characters long; it must have at least 32",
                key.len()
            )) && err.contains("openssl rand -hex 32"),
            "{err}"
        );
        // The key itself is not echoed.
        assert!(!err.contains(key), "{err}");
    }
}

#[test]
fn key_create_refuses_ttls_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let run = |args: &[&str], env: &[(&str, &str)]| {
        trailkeep()
            .args(args)
            .envs(env.iter().copied())
            .output()
            .expect("run trailkeep")
    };
    for (role, ttl) in [
        ("reader", "18446744073709551615s"),
        ("ingest", "9223372036854775808s"),
        ("admin", "106751d"),
        ("auditor", "91d"),
    ] {
        let out = run(
            &[
                "key",
                "create",
                "--role",
                role,
                "--ttl",
                ttl,
                "--init",
                "--data-dir",
                data,
            ],
            &[],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{role} {ttl} accepted");
        assert!(err.contains("longer than the longest lifetime"), "{err}");
    }
    // The configured auditor bound applies to the CLI too.
    let out = run(
        &[
            "key",
            "create",
            "--role",
            "auditor",
            "--ttl",
            "8d",
            "--init",
            "--data-dir",
            data,
        ],
        &[("TRAILKEEP_LIMITS__MAX_AUDITOR_TTL", "7d")],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("7d"), "{err}");
    let out = run(
        &[
            "key",
            "create",
            "--role",
            "auditor",
            "--ttl",
            "90d",
            "--init",
            "--data-dir",
            data,
        ],
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `serve` over `data` with `env`, its stderr read up to the listening line: the child, the
/// URL, and a thread returning all of stderr once the process ends.
fn spawn(
    data: &std::path::Path,
    env: &[(&str, &str)],
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    use std::io::{BufRead, BufReader, Read};
    let mut child = trailkeep()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .env("TRAILKEEP_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut text = String::new();
    let addr = loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap_or(0) == 0 {
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

fn term(child: &mut std::process::Child) {
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

#[cfg(unix)]
fn mode(p: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every directory and file under `dir`, with its mode.
#[cfg(unix)]
fn modes(dir: &std::path::Path) -> Vec<(String, u32)> {
    let mut out = vec![(dir.display().to_string(), mode(dir))];
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(modes(&p));
        } else {
            out.push((p.display().to_string(), mode(&p)));
        }
    }
    out
}

/// The data directory, segments, `keys.json` and the signing key are private to the account
/// (payloads and key hashes were world-readable); wider existing ones are reported at start.
#[cfg(unix)]
#[test]
fn files_at_rest_are_private_and_wider_ones_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url, log) = spawn(&data, &[]);
    rt().block_on(async {
        let c = client();
        let r = c
            .post(format!("{url}/v1/events"))
            .bearer_auth(ADMIN)
            .json(&event(&uuid(1, 0xab), "t_perm", 1))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let r = c
            .post(format!("{url}/v1/keys"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"role": "reader"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    });
    term(&mut child);
    let log = log.join().unwrap();
    assert!(!log.contains("readable by other users"), "{log}");
    let all = modes(&data);
    assert!(all.len() >= 5, "{all:?}");
    assert!(all.iter().any(|(p, _)| p.ends_with("keys.json")), "{all:?}");
    assert!(
        all.iter().any(|(p, _)| p.ends_with("signing-key")),
        "{all:?}"
    );
    for (p, m) in &all {
        let want = if std::path::Path::new(p).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*m, want, "{p} is {m:o}");
    }
    // Widened by hand: reported at the next start, naming the paths.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        data.join("keys.json"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let (mut child, _, log) = spawn(&data, &[]);
    term(&mut child);
    let log = log.join().unwrap();
    assert!(
        log.contains("readable by other users")
            && log.contains(&format!("{} (755)", data.display()))
            && log.contains("keys.json (644)")
            && log.contains("chmod -R go-rwx"),
        "{log}"
    );
}

/// Secrets never reach the log, at any level: the admin key, a created key and the signing
/// key's seed are absent from everything `serve` writes at `TRAILKEEP_LOG=trace`.
#[test]
fn secrets_never_appear_in_logs_even_at_trace() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url, log) = spawn(&data, &[("TRAILKEEP_LOG", "trace")]);
    let created = rt().block_on(async {
        let c = client();
        let r = c
            .post(format!("{url}/v1/keys"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({"role": "ingest"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: serde_json::Value = r.json().await.unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        for (k, want) in [(key.as_str(), 200), ("tk_wrong-key", 401)] {
            let r = c
                .post(format!("{url}/v1/events"))
                .bearer_auth(k)
                .json(&event(&uuid(2, 0xab), "t_logs", 2))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), want);
        }
        let r = c
            .get(format!("{url}/v1/events?tenant_id=t_logs"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        // A checkpoint is signed about once a second.
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        key
    });
    term(&mut child);
    let log = log.join().unwrap();
    let seed = std::fs::read_to_string(data.join("signing-key")).unwrap();
    let seed = seed.trim();
    assert_eq!(seed.len(), 64);
    // The log did run at trace (it is not empty of debug detail).
    assert!(log.lines().count() > 3, "{log}");
    for (what, secret) in [
        ("admin key", ADMIN),
        ("created key", &created),
        ("seed", seed),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log:\n{log}");
    }
    // Nor the part of a key after its prefix.
    assert!(!log.contains(&created[3..]), "{log}");
}

/// Opens a TCP connection to the server of `url` and sends `bytes`.
fn raw_conn(url: &str, bytes: &[u8]) -> std::net::TcpStream {
    use std::io::Write;
    let addr = url.trim_start_matches("http://");
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.write_all(bytes).expect("write");
    s
}

/// Whether the server closed `s` (EOF or reset), after reading any response it sent.
fn closed_by_server(s: &mut std::net::TcpStream) -> (bool, String) {
    use std::io::Read;
    s.set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (true, String::from_utf8_lossy(&got).into_owned()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (true, String::from_utf8_lossy(&got).into_owned())
            }
            Err(_) => return (false, String::from_utf8_lossy(&got).into_owned()),
        }
    }
}

/// Connections that send half a header line and stop, that send nothing, or that send a body
/// slowly were held forever (file descriptors run out). They are closed after the configured
/// timeouts (a slow body gets 408 with a JSON error), and a normal client is served at once
/// while they pile up.
#[test]
fn slow_and_silent_connections_are_closed_while_others_are_served() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TRAILKEEP_LIMITS__HEADER_READ_TIMEOUT", "1s"),
        ("TRAILKEEP_LIMITS__BODY_READ_TIMEOUT", "1s"),
        ("TRAILKEEP_LIMITS__IDLE_TIMEOUT", "2s"),
    ];
    let (mut child, url, _log) = spawn(&dir.path().join("data"), &env);
    let started = Instant::now();
    let mut half: Vec<_> = (0..300)
        .map(|_| raw_conn(&url, b"GET /v1/events HTTP/1.1\r\nHost: x\r\nAuthoriz"))
        .collect();
    let mut silent: Vec<_> = (0..50).map(|_| raw_conn(&url, b"")).collect();
    let body = serde_json::to_string(&event(&uuid(1, 0x51), "t_slow", 1)).unwrap();
    let mut slow_body = raw_conn(
        &url,
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..10]
        )
        .as_bytes(),
    );
    // A normal client is served at once.
    rt().block_on(async {
        let t = Instant::now();
        let r = client()
            .get(format!("{url}/v1/events?tenant_id=t_slow"))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    });
    std::thread::sleep(Duration::from_millis(3_500).saturating_sub(started.elapsed()));
    let open = half
        .iter_mut()
        .chain(silent.iter_mut())
        .map(|s| closed_by_server(s).0)
        .filter(|closed| !closed)
        .count();
    assert_eq!(
        open, 0,
        "slow or silent connections still open after their timeouts"
    );
    let (closed, resp) = closed_by_server(&mut slow_body);
    assert!(
        resp.starts_with("HTTP/1.1 408") && resp.contains(r#""code":"body_timeout""#),
        "{resp}"
    );
    let _ = closed;
    // Nothing of the slow request was stored.
    rt().block_on(async {
        let events = read_log(&client(), &url, "t_slow").await;
        assert!(events.is_empty(), "{events:?}");
    });
    term(&mut child);
}

/// With every connection slot taken by silent connections, a new client waits for a slot
/// (rather than the server running out of file descriptors) and is served once one frees up.
#[test]
fn connections_beyond_the_cap_wait_for_a_slot() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let env = [
        ("TRAILKEEP_LIMITS__MAX_CONNECTIONS", "10"),
        ("TRAILKEEP_LIMITS__IDLE_TIMEOUT", "1s"),
    ];
    let (mut child, url, _log) = spawn(&dir.path().join("data"), &env);
    let _silent: Vec<_> = (0..10).map(|_| raw_conn(&url, b"")).collect();
    std::thread::sleep(Duration::from_millis(100));
    rt().block_on(async {
        let t = Instant::now();
        let r = client().get(format!("{url}/healthz")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        // Served only once the silent connections were closed as idle.
        assert!(
            t.elapsed() >= Duration::from_millis(700),
            "{:?}",
            t.elapsed()
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    });
    term(&mut child);
}

/// Over a real socket, guessing keys from one address is throttled after the default burst.
#[test]
fn wrong_keys_over_the_network_get_429_after_a_burst() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, _log) = spawn(&dir.path().join("data"), &[]);
    rt().block_on(async {
        let c = client();
        let mut codes = Vec::new();
        for i in 0..80 {
            let r = c
                .get(format!("{url}/v1/events"))
                .bearer_auth(format!("tk_guess{i}"))
                .send()
                .await
                .unwrap();
            codes.push(r.status().as_u16());
        }
        assert!(codes[..50].iter().all(|&c| c == 401), "{codes:?}");
        assert!(codes[60..].iter().all(|&c| c == 429), "{codes:?}");
    });
    term(&mut child);
}

/// Requests that hyper refuses itself (before any handler) came back with empty bodies. Every
/// refusal carries the API's JSON error body; checked with raw TCP requests.
#[test]
fn refusals_of_the_http_layer_carry_the_json_error_body() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, url, _log) = spawn(&dir.path().join("data"), &[]);
    let long_uri = format!(
        "GET /v1/events?q={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70_000)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: a\r\n")).collect();
    let many_headers = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec(), 400, "bad_request"),
        (
            "NUL in a header",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
        (
            "duplicate Content-Length",
            b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"
                .to_vec(),
            400,
            "bad_request",
        ),
        ("long URI", long_uri.into_bytes(), 414, "uri_too_long"),
        ("too many headers", many_headers.into_bytes(), 431, "headers_too_large"),
        (
            "unknown HTTP version",
            b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            400,
            "bad_request",
        ),
    ];
    for (what, req, status, code) in cases {
        let mut s = raw_conn(&url, &req);
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let mut resp = Vec::new();
        let _ = std::io::Read::read_to_end(&mut s, &mut resp);
        let resp = String::from_utf8_lossy(&resp).into_owned();
        assert!(
            resp.starts_with(&format!("HTTP/1.1 {status} ")),
            "{what}: {resp}"
        );
        let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("content-type: application/json"),
            "{what}: {resp}"
        );
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{what}: {resp}"
        );
        let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
        assert_eq!(v["error"]["code"], code, "{what}: {resp}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert_eq!(v["error"]["details"], serde_json::json!([]), "{what}");
    }
    // Ordinary answers are untouched.
    let mut s = raw_conn(
        &url,
        b"GET /v1/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    let mut resp = String::new();
    let _ = std::io::Read::read_to_string(&mut s, &mut resp);
    assert!(
        resp.starts_with("HTTP/1.1 404") && resp.contains(r#""code":"not_found""#),
        "{resp}"
    );
    term(&mut child);
}

/// The accept loop keeps graceful shutdown: a request in progress at SIGTERM (its body half
/// sent) is finished and answered, and its event is durable; the listener closes at once.
#[test]
fn sigterm_finishes_a_request_in_progress() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut child, url, _log) = spawn(&data, &[]);
    let body = serde_json::to_string(&event(&uuid(7, 0x7e), "t_term", 7)).unwrap();
    let mut s = raw_conn(
        &url,
        format!(
            "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{}",
            body.len(),
            &body[..20]
        )
        .as_bytes(),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    std::thread::sleep(std::time::Duration::from_millis(300));
    // No new connection is accepted any more.
    let addr = url.trim_start_matches("http://");
    let refused = match std::net::TcpStream::connect(addr) {
        Err(_) => true,
        Ok(mut c) => {
            let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
            c.set_read_timeout(Some(std::time::Duration::from_secs(2)))
                .unwrap();
            let mut b = [0u8; 64];
            !matches!(c.read(&mut b), Ok(n) if n > 0)
        }
    };
    assert!(refused, "a new connection was served after SIGTERM");
    s.write_all(&body.as_bytes()[20..]).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let mut resp = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&resp).contains("\"receipts\"") {
            break;
        }
    }
    let resp = String::from_utf8_lossy(&resp).into_owned();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let server = Server::start(&data);
    rt().block_on(async {
        let events = read_log(&client(), &server.url, "t_term").await;
        assert_eq!(events.len(), 1, "{events:?}");
    });
    server.stop();
}
