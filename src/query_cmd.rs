//! `trailkeep query` (filtered listing, following cursors) and `trailkeep tail` (follow a
//! tenant's log in `seq` order, so back-filled events are not missed).

use crate::client::Client;
use crate::ServerArgs;
use anyhow::{Context, Result};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(clap::Args)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    /// Exact type or prefix wildcard (billing.*).
    #[arg(long = "type")]
    event_type: Option<String>,
    /// Only events by this actor (exact match).
    #[arg(long)]
    actor: Option<String>,
    /// RFC 3339, inclusive.
    #[arg(long)]
    since: Option<String>,
    /// RFC 3339, exclusive.
    #[arg(long)]
    until: Option<String>,
    /// Impersonation session id.
    #[arg(long)]
    session: Option<String>,
    /// Case-insensitive substring of payload or actor.
    #[arg(long)]
    q: Option<String>,
    /// Oldest first.
    #[arg(long)]
    asc: bool,
    /// Most events to print (0 = all).
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

#[derive(clap::Args)]
pub struct TailArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// The tenant whose log to follow.
    #[arg(long)]
    tenant: String,
    /// Print the whole log first instead of only new events.
    #[arg(long)]
    from_start: bool,
    /// Poll interval in milliseconds.
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
}

pub fn query(a: QueryArgs) -> Result<ExitCode> {
    let client = Client::new(&a.server)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut printed = 0usize;
        let mut cursor: Option<String> = None;
        let stdout = std::io::stdout();
        loop {
            let page = if a.limit == 0 {
                1000
            } else {
                (a.limit - printed).min(1000)
            };
            let mut params: Vec<(&str, String)> = vec![("limit", page.to_string())];
            for (k, v) in [
                ("tenant_id", &a.tenant),
                ("event_type", &a.event_type),
                ("actor", &a.actor),
                ("since", &a.since),
                ("until", &a.until),
                ("session", &a.session),
                ("q", &a.q),
                ("cursor", &cursor),
            ] {
                if let Some(v) = v {
                    params.push((k, v.clone()));
                }
            }
            if a.asc {
                params.push(("order", "asc".into()));
            }
            let qs = serde_urlencoded::to_string(&params)?;
            let v = client.get_json(&format!("/v1/events?{qs}")).await?;
            let mut out = stdout.lock();
            for e in v["events"].as_array().context("no events in the answer")? {
                writeln!(out, "{e}")?;
                printed += 1;
            }
            cursor = v["next_cursor"].as_str().map(str::to_string);
            if cursor.is_none() || (a.limit != 0 && printed >= a.limit) {
                break;
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

pub fn tail(a: TailArgs) -> Result<ExitCode> {
    let client = Client::new(&a.server)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tenant = serde_urlencoded::to_string([("tenant_id", &a.tenant)])?;
        // Next seq to print.
        let mut next: u64 = 0;
        if !a.from_start {
            let v = client.get_json("/v1/tenants").await?;
            next = v["tenants"]
                .as_array()
                .and_then(|ts| ts.iter().find(|t| t["tenant_id"] == a.tenant.as_str()))
                .and_then(|t| t["event_count"].as_u64())
                .unwrap_or(0);
        }
        loop {
            let v = client
                .get_json(&format!("/v1/events?{tenant}&from_seq={next}&limit=1000"))
                .await?;
            let events = v["events"].as_array().cloned().unwrap_or_default();
            let mut out = std::io::stdout().lock();
            for e in &events {
                let seq = e["seq"].as_u64().unwrap_or(0);
                if seq >= next {
                    writeln!(out, "{e}")?;
                    next = seq + 1;
                }
            }
            out.flush()?;
            drop(out);
            if events.len() < 1000 {
                tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
            }
        }
    })
}
