//! The documentation's example configuration is a working one, and documented key by key.

use crate::support::{client, rt, trailkeep, ADMIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// `trailkeep serve --config docs/trailkeep.example.toml` starts and answers `/healthz`.
#[test]
fn example_config_starts_a_server() {
    let data = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut cmd = trailkeep();
    // The test must see what a user with a clean environment sees: no inherited overrides.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TRAILKEEP_") {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd
        .arg("serve")
        .arg("--config")
        .arg(repo_file("docs/trailkeep.example.toml"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(data.path())
        .env("TRAILKEEP_ADMIN_KEY", ADMIN)
        .env("TRAILKEEP_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn trailkeep serve");
    let url = format!("http://127.0.0.1:{port}");
    let c = client();
    let healthy = rt().block_on(async {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(r) = c.get(format!("{url}/healthz")).send().await {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    });
    let exited = child.try_wait().expect("try_wait");
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut status = None;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    assert!(
        healthy,
        "the example configuration did not start a server answering /healthz (exited early: {exited:?}); stderr:\n{stderr}"
    );
    let status = status.expect("the server did not stop within 30 s of SIGTERM");
    assert!(
        status.success(),
        "serve exited with {status}; stderr:\n{stderr}"
    );
}

/// The dotted keys of a TOML file, including keys of commented-out lines (`# key = …`).
fn example_keys(text: &str) -> Vec<String> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let l = line.trim();
        if let Some(h) = l.strip_prefix('[') {
            section = h.trim_matches(|c| c == '[' || c == ']').trim().to_string();
            continue;
        }
        let l = l.strip_prefix('#').map(str::trim_start).unwrap_or(l);
        let Some((k, _)) = l.split_once('=') else {
            continue;
        };
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            continue;
        }
        keys.push(if section.is_empty() {
            k.to_string()
        } else {
            format!("{section}.{k}")
        });
    }
    keys
}

#[test]
fn every_example_key_is_documented() {
    let example = std::fs::read_to_string(repo_file("docs/trailkeep.example.toml"))
        .expect("read docs/trailkeep.example.toml");
    let doc = std::fs::read_to_string(repo_file("docs/configuration.md"))
        .expect("read docs/configuration.md");
    let keys = example_keys(&example);
    // The scan itself works: the file's best-known keys are found.
    for k in [
        "listen",
        "signing_key",
        "retention.default_days",
        "limits.burst",
    ] {
        assert!(keys.iter().any(|x| x == k), "{k} not found in {keys:?}");
    }
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("`{k}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "keys of docs/trailkeep.example.toml not documented (as `key`) in docs/configuration.md: {missing:?}"
    );
}

#[test]
fn key_scan_reads_sections_and_comments() {
    let keys = example_keys(
        "a = 1\n# b = \"x\"\n# Some prose = not a key\n[s]\nc = 2\n[[t.u]]\n# d = 3\n",
    );
    assert_eq!(keys, ["a", "b", "s.c", "t.u.d"]);
}
