//! `trailkeep export` against a real server on each backend: every format written whole (and
//! nothing left behind on failure), a bundle that `trailkeep verify` accepts offline, and the
//! BigQuery schema.

use crate::postgres::{hex_seed, start_pg, Db};
use crate::support::*;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;

const TENANTS: [&str; 2] = ["ex_a", "ex_b"];
const PER_TENANT: usize = 1500;

/// Stores `PER_TENANT` events in each tenant (timestamps spread over two days).
fn seed(url: &str) {
    rt().block_on(async {
        let c = client();
        for (t, tenant) in TENANTS.iter().enumerate() {
            for chunk in 0..(PER_TENANT / 500) {
                let batch: Vec<Value> = (0..500)
                    .map(|i| {
                        let n = chunk * 500 + i;
                        let mut e = event(&uuid(n as u64, 0x0e00 + t as u64), tenant, n);
                        e["timestamp"] = json!(format!(
                            "2026-01-0{}T{:02}:{:02}:{:02}.{:03}Z",
                            1 + n % 2,
                            n % 24,
                            n % 60,
                            (n / 60) % 60,
                            n % 1000
                        ));
                        e
                    })
                    .collect();
                let r = c
                    .post(format!("{url}/v1/events"))
                    .bearer_auth(ADMIN)
                    .json(&batch)
                    .send()
                    .await
                    .expect("post");
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            }
        }
    });
}

fn export(url: &str, args: &[&str]) -> std::process::Output {
    trailkeep()
        .arg("export")
        .args(["--url", url])
        .env("TRAILKEEP_KEY", ADMIN)
        .args(args)
        .output()
        .expect("run trailkeep export")
}

fn lines_as_set(text: &str) -> BTreeSet<String> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<Value>(l)
                .expect("JSON line")
                .to_string()
        })
        .collect()
}

fn no_partials(dir: &Path) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".partial"), "left behind: {name}");
    }
}

fn round_trip(url: &str, dir: &Path) {
    seed(url);
    let log = rt().block_on(read_log(&client(), url, "ex_a"));
    assert_eq!(log.len(), PER_TENANT);
    let want: BTreeSet<String> = log.iter().map(Value::to_string).collect();

    // NDJSON: every event of the tenant, as the API returns it.
    let out = export(url, &["--tenant", "ex_a", "-o"]);
    assert!(!out.status.success(), "-o needs a value");
    let nd = dir.join("a.ndjson");
    let out = export(url, &["--tenant", "ex_a", "-o", nd.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("{PER_TENANT} lines")));
    assert_eq!(lines_as_set(&std::fs::read_to_string(&nd).unwrap()), want);

    // The other formats, with filters.
    for (fmt, file) in [
        ("csv", "a.csv"),
        ("json", "a.json"),
        ("parquet", "a.parquet"),
    ] {
        let p = dir.join(file);
        let out = export(
            url,
            &[
                "--tenant",
                "ex_a",
                "--format",
                fmt,
                "--since",
                "2026-01-02",
                "--asc",
                "-o",
                p.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{fmt}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(std::fs::metadata(&p).unwrap().len() > 0);
    }
    let csv = std::fs::read_to_string(dir.join("a.csv")).unwrap();
    assert_eq!(
        csv.matches("\r\n").count(),
        1 + PER_TENANT / 2,
        "header + the second day's events"
    );
    let js: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("a.json")).unwrap()).unwrap();
    assert_eq!(js.len(), PER_TENANT / 2);
    assert!(js
        .windows(2)
        .all(|w| w[0]["timestamp"].as_str() <= w[1]["timestamp"].as_str()));
    assert_eq!(&std::fs::read(dir.join("a.parquet")).unwrap()[..4], b"PAR1");

    // A refused export leaves nothing behind and exits 1.
    let bad = dir.join("bad.ndjson");
    let out = export(
        url,
        &["--tenant", "no such tenant", "-o", bad.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("tenant_id"));
    assert!(!bad.exists());
    no_partials(dir);

    // A bundle of a day, verified offline with the server's key.
    let vkey = rt().block_on(async {
        client()
            .get(format!("{url}/v1/public-key"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let key_file = dir.join("log.vkey");
    std::fs::write(&key_file, vkey.trim()).unwrap();
    for name in ["day.tar", "day.tar.gz"] {
        let b = dir.join(name);
        let out = export(
            url,
            &[
                "--bundle",
                "--tenant",
                "ex_a",
                "--since",
                "2026-01-01",
                "--until",
                "2026-01-02",
                "-o",
                b.to_str().unwrap(),
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = trailkeep()
            .arg("verify")
            .arg(&b)
            .arg("--public-key")
            .arg(&key_file)
            .output()
            .unwrap();
        assert!(
            v.status.success(),
            "{name}: {}{}",
            String::from_utf8_lossy(&v.stdout),
            String::from_utf8_lossy(&v.stderr)
        );
    }
    no_partials(dir);
}

#[test]
fn export_and_bundle_round_trip_embedded() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&dir.path().join("data"));
    round_trip(&server.url, dir.path());
    server.stop();
}

#[test]
fn export_and_bundle_round_trip_postgres() {
    let db = Db::create();
    let dir = tempfile::tempdir().unwrap();
    let server = start_pg(&db, &hex_seed(), dir.path());
    round_trip(&server.url, dir.path());
    server.stop();
}

#[test]
fn bigquery_schema_needs_no_server() {
    // Server settings in the environment do not get in the way.
    let out = trailkeep()
        .args(["export", "--bigquery-schema"])
        .env("TRAILKEEP_URL", "http://127.0.0.1:9")
        .env("TRAILKEEP_KEY", "not-needed")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[0], "event_id");
    assert!(names.contains(&"payload") && names.contains(&"leaf_hash"));
}

/// A client that requests a large export and then reads nothing is disconnected after the idle
/// timeout, and its export stops and gives its slot back (with `max_exports = 1`, the next export
/// is served).
#[test]
fn a_client_that_stops_reading_is_dropped_and_frees_its_slot() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &[
            ("TRAILKEEP_LIMITS__IDLE_TIMEOUT", "2s"),
            ("TRAILKEEP_LIMITS__MAX_EXPORTS", "1"),
        ],
    );
    // About 60 MB of NDJSON: far more than the socket buffers hold.
    rt().block_on(async {
        let c = client();
        let big = "x".repeat(2000);
        for chunk in 0..30 {
            let batch: Vec<Value> = (0..1000)
                .map(|i| {
                    let mut e = event(&uuid(chunk * 1000 + i, 0x0f00), "ex_big", i as usize);
                    e["payload"] = json!({"filler": big});
                    e
                })
                .collect();
            let r = c
                .post(format!("{}/v1/events", server.url))
                .bearer_auth(ADMIN)
                .json(&batch)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
    });
    let addr = server.url.trim_start_matches("http://").to_string();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        stalled,
        "GET /v1/export?tenant_id=ex_big HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n\r\n"
    )
    .unwrap();
    // Read nothing until the server has given up on us.
    std::thread::sleep(std::time::Duration::from_secs(5));
    let status = rt().block_on(async {
        client()
            .get(format!(
                "{}/v1/export?tenant_id=ex_big&format=csv",
                server.url
            ))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200, "the stalled export still holds the only slot");
    // What the stalled client gets is cut off: the connection was closed mid-response.
    stalled
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut got = Vec::new();
    let r = stalled.read_to_end(&mut got);
    assert!(got.starts_with(b"HTTP/1.1 200"));
    assert!(
        r.is_err() || !got.ends_with(b"0\r\n\r\n"),
        "the stalled response must not end as if complete"
    );
    assert!(got.len() < 50_000_000, "got {} bytes", got.len());
    server.stop();
}
