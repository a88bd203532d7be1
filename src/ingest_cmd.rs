//! `trailkeep ingest FILE.ndjson`: send a file's events in batches, with a progress bar on a
//! terminal, retries on 429/503, and errors reported by file line number.

use crate::client::{Client, Refused};
use crate::ServerArgs;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::task::JoinSet;

/// Requests in flight at once.
const IN_FLIGHT: usize = 4;

pub fn run(file: &Path, server: &ServerArgs, batch: usize) -> Result<ExitCode> {
    if !(1..=10_000).contains(&batch) {
        bail!("--batch must be between 1 and 10000");
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    // (first line number, body) per batch; blank lines are skipped but keep numbering right.
    let mut batches: Vec<(Vec<usize>, Vec<u8>)> = Vec::new();
    let mut lines = Vec::new();
    let mut body = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines.push(n + 1);
        body.extend_from_slice(line.as_bytes());
        body.push(b'\n');
        if lines.len() == batch {
            batches.push((std::mem::take(&mut lines), std::mem::take(&mut body)));
        }
    }
    if !lines.is_empty() {
        batches.push((lines, body));
    }
    let total: usize = batches.iter().map(|b| b.0.len()).sum();
    let client = Arc::new(Client::new(server)?);
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (accepted, duplicates) = rt.block_on(async {
        let mut set: JoinSet<Result<(usize, usize, usize)>> = JoinSet::new();
        let mut accepted = 0usize;
        let mut duplicates = 0usize;
        let mut it = batches.into_iter();
        loop {
            while set.len() < IN_FLIGHT {
                let Some((lines, body)) = it.next() else {
                    break;
                };
                let c = client.clone();
                set.spawn(async move {
                    let n = lines.len();
                    let resp = c
                        .send(
                            reqwest::Method::POST,
                            "/v1/events",
                            Some("application/x-ndjson"),
                            Some(body),
                        )
                        .await
                        .map_err(|e| explain(e, &lines))?;
                    let v: serde_json::Value = serde_json::from_slice(&resp)?;
                    Ok((
                        n,
                        v["accepted"].as_u64().unwrap_or(0) as usize,
                        v["duplicates"].as_u64().unwrap_or(0) as usize,
                    ))
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            let (n, a, d) = done??;
            accepted += a;
            duplicates += d;
            pb.inc(n as u64);
        }
        anyhow::Ok((accepted, duplicates))
    })?;
    pb.finish_and_clear();
    eprintln!("ingested {total} events: {accepted} accepted, {duplicates} duplicates");
    Ok(ExitCode::SUCCESS)
}

/// Rewrites a 422's per-event indexes as file line numbers.
fn explain(e: anyhow::Error, lines: &[usize]) -> anyhow::Error {
    let Some(r) = e.downcast_ref::<Refused>() else {
        return e;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&r.body) else {
        return e;
    };
    let msg = v["error"]["message"].as_str().unwrap_or("").to_string();
    let mut out = format!("server answered {}: {msg}", r.status);
    if let Some(details) = v["error"]["details"].as_array() {
        for d in details.iter().take(20) {
            let line = d["index"]
                .as_u64()
                .and_then(|i| lines.get(i as usize))
                .copied();
            out.push_str(&format!(
                "\n  line {}: {} {}",
                line.map(|l| l.to_string()).unwrap_or_else(|| "?".into()),
                d["path"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("")
            ));
        }
    }
    anyhow::anyhow!(out)
}
