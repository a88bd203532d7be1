//! The README's Quick start, pasted as one block into bash against a fresh server: if a step of
//! what new users are told to run fails, this test fails.
//!
//! The block is taken from README.md between `<!-- quickstart:begin -->` and
//! `<!-- quickstart:end -->`, run with the test build of `trailkeep` first on `PATH`, `REPO` set to
//! the checkout, a free port in place of 7438 (`TRAILKEEP_LISTEN` for the server), and no other
//! `TRAILKEEP_*` variable inherited. bash runs
//! it with `-e -o pipefail`, so the first failing command fails the test.

use std::path::Path;
use std::process::Command;

/// The shell block of the README's Quick start.
fn quickstart_block() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("<!-- quickstart:begin -->")
        .expect("README.md has no <!-- quickstart:begin --> marker");
    let end = readme
        .find("<!-- quickstart:end -->")
        .expect("README.md has no <!-- quickstart:end --> marker");
    let section = &readme[start..end];
    let body = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the Quick start holds a ```sh block");
    body.to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn readme_quick_start_runs_as_one_pasted_block() {
    let block = quickstart_block();
    assert!(
        block.contains("localhost:7438") && block.contains("trailkeep serve"),
        "the Quick start should start a server on the default port"
    );
    let port = free_port();
    let script = block.replace("7438", &port.to_string());
    let bin_dir = Path::new(super::support::BIN)
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let home = tempfile::tempdir().expect("temp dir");
    let mut cmd = Command::new("bash");
    // A server the block started must not outlive a failure.
    cmd.arg("-c")
        .arg(format!(
            "set -eo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
        ))
        .env("PATH", path)
        .env("REPO", env!("CARGO_MANIFEST_DIR"))
        .env("TMPDIR", home.path());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TRAILKEEP_") {
            cmd.env_remove(k);
        }
    }
    // The block's server listens on the default port; here on the free one.
    cmd.env("TRAILKEEP_LISTEN", format!("127.0.0.1:{port}"));
    let out = run_with_timeout(cmd, std::time::Duration::from_secs(180));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Quick start failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    // What each step should have shown.
    assert!(stdout.contains("\"accepted\":1"), "one event accepted:\n{stdout}");
    assert!(stdout.contains("\"tenant_id\":\"t_0042\""), "tenants listed:\n{stdout}");
    assert!(
        stdout.contains("\"event_type\":\"billing."),
        "billing events queried:\n{stdout}"
    );
    assert!(
        stdout.contains("trailkeep/default/t_0042"),
        "the signed checkpoint:\n{stdout}"
    );
    assert!(!stdout.contains("\"error\""), "no error answer:\n{stdout}");
}

/// Runs `cmd` to its end, or kills it (and its process group's server) after `limit`.
fn run_with_timeout(mut cmd: Command, limit: std::time::Duration) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0);
    let child = cmd.spawn().expect("run bash");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("bash output"),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            panic!("the Quick start did not finish within {limit:?}");
        }
    }
}
