//! Starting and stopping servers, generating events.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_trailkeep");
pub const ADMIN: &str = "e2e-admin-secret-0123456789abcdef0123";

/// The `trailkeep` binary without any of the developer's `TRAILKEEP_*` variables: a test states
/// the configuration it runs with, and a variable set in the shell that runs the tests (an
/// unknown one is refused by `serve`) cannot change or break it.
pub fn trailkeep() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TRAILKEEP_") {
            c.env_remove(k);
        }
    }
    c
}

pub struct Server {
    pub child: Child,
    pub url: String,
}

impl Server {
    /// Starts `trailkeep serve` on a free loopback port over `data_dir`.
    pub fn start(data_dir: &Path) -> Server {
        Server::start_with_env(data_dir, &[])
    }

    /// Like [`Server::start`], with extra environment variables (configuration overrides).
    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_with(data_dir, &[], env)
    }

    /// Like [`Server::start`], with extra arguments to `serve` (`--config FILE`) and
    /// environment variables.
    pub fn start_with(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut child = trailkeep()
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("TRAILKEEP_ADMIN_KEY", ADMIN)
            .env("TRAILKEEP_LOG", "warn")
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn trailkeep serve");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(rest) = line.split("listening on http://").nth(1) {
                        let addr = rest.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                        sent = true;
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("server did not report its address");
        Server {
            child,
            url: format!("http://{addr}"),
        }
    }

    /// SIGTERM and wait (graceful shutdown).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        panic!("server did not stop within 30 s of SIGTERM");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// A valid free-form event.
pub fn event(id: &str, tenant: &str, n: usize) -> serde_json::Value {
    serde_json::json!({
        "event_id": id,
        "event_type": "auth.login",
        "actor": format!("user:u{n}@example.com"),
        "tenant_id": tenant,
        "payload": {"n": n, "method": "sso"},
        "timestamp": "2026-01-02T03:04:05.678Z",
    })
}

pub fn uuid(i: u64, salt: u64) -> String {
    format!("00000000-{:04x}-4000-8000-{:012x}", salt & 0xffff, i)
}

pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("client")
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every event of a tenant in log order.
pub async fn read_log(c: &reqwest::Client, url: &str, tenant: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    loop {
        let v: serde_json::Value = c
            .get(format!(
                "{url}/v1/events?tenant_id={tenant}&from_seq={}&limit=1000",
                out.len()
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let events = v["events"].as_array().expect("events").clone();
        if events.is_empty() {
            return out;
        }
        out.extend(events);
    }
}
