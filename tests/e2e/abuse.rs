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
