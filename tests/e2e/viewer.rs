//! The viewer's token key as `serve` keeps it (docs/operations.md#revoking-viewer-tokens):
//! created 0600 in the data directory on first start, kept across restarts (tokens stay valid),
//! and rotating it revokes every token; bad `[viewer]` settings stop `serve` before it creates
//! anything.

use crate::support::*;
use std::path::Path;

async fn mint(url: &str) -> String {
    let r = client()
        .post(format!("{url}/v1/viewer-tokens"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"tenant_id": "t_v", "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let v: serde_json::Value = r.json().await.unwrap();
    v["token"].as_str().unwrap().to_string()
}

/// The status and body of `GET /viewer/api/session` with `token`.
async fn session(url: &str, token: &str) -> (u16, String) {
    let r = client()
        // Tokens are base64url and dots: nothing to escape.
        .get(format!("{url}/viewer/api/session?token={token}"))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[test]
fn the_token_key_is_private_kept_across_restarts_and_rotating_it_revokes_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let rt = rt();
    let server = Server::start(&data);
    let token = rt.block_on(mint(&server.url));
    assert_eq!(rt.block_on(session(&server.url, &token)).0, 200);
    let key_file = data.join("viewer-token-key");
    let text = std::fs::read_to_string(&key_file).expect("viewer-token-key created");
    assert_eq!(text.trim().len(), 64, "{text}");
    assert!(text.trim().bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    // The token key is not the signing key.
    let signing = std::fs::read_to_string(data.join("signing-key")).unwrap();
    assert_ne!(signing.trim(), text.trim());
    server.stop();

    // Restarted: the same key, the token still works.
    let server = Server::start(&data);
    assert_eq!(rt.block_on(session(&server.url, &token)).0, 200);
    server.stop();

    // Rotated (removed; a new one is created at start): the token is refused.
    std::fs::remove_file(&key_file).unwrap();
    let server = Server::start(&data);
    let (status, body) = rt.block_on(session(&server.url, &token));
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("signature does not match"), "{body}");
    assert_ne!(
        std::fs::read_to_string(&key_file).unwrap().trim(),
        text.trim()
    );
    // A key given in the environment wins over the file.
    server.stop();
    let server =
        Server::start_with_env(&data, &[("TRAILKEEP_VIEWER__TOKEN_KEY", &"ab".repeat(32))]);
    let t2 = rt.block_on(mint(&server.url));
    server.stop();
    let server =
        Server::start_with_env(&data, &[("TRAILKEEP_VIEWER__TOKEN_KEY", &"ab".repeat(32))]);
    assert_eq!(rt.block_on(session(&server.url, &t2)).0, 200);
    server.stop();
}

/// `serve` with this configuration file; it must fail. Its stderr, and whether it created the
/// data directory.
fn serve_with_config(dir: &Path, toml: &str) -> (String, bool) {
    let cfg = dir.join("trailkeep.toml");
    std::fs::write(&cfg, toml).unwrap();
    let out = trailkeep()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let created = dir.join("data").exists();
    let _ = std::fs::remove_dir_all(dir.join("data"));
    (String::from_utf8_lossy(&out.stderr).into_owned(), created)
}

#[test]
fn bad_viewer_settings_stop_serve_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // Settings are checked before anything is created.
    let (err, created) = serve_with_config(
        dir.path(),
        "[viewer]\nframe_ancestors = [\"https://a.example; script-src *\"]\n",
    );
    assert!(
        err.contains("invalid viewer.frame_ancestors entry"),
        "{err}"
    );
    assert!(!created);
    let (err, created) = serve_with_config(dir.path(), "[viewer]\nmax_ttl = \"soon\"\n");
    assert!(
        err.contains("viewer.max_ttl: invalid duration \"soon\""),
        "{err}"
    );
    assert!(!created);
    let (err, _) = serve_with_config(
        dir.path(),
        "[viewer]\ntoken_key_file = \"/nonexistent/viewer-key\"\n",
    );
    assert!(
        err.contains("cannot read the viewer token key /nonexistent/viewer-key"),
        "{err}"
    );
}
