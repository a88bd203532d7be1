//! `trailkeep impersonations list|show`: impersonation sessions through a running server
//! (docs/api.md#impersonation-sessions).
//!
//! The server derives each session from the tenant's `impersonation.start` and
//! `impersonation.end` events and the events that name the session; these commands show its
//! answer, as a table for people or as JSON (`--json`) for programs.

use crate::client::{path_segment, runtime, Client};
use crate::table::{cell, duration, printable, Table};
use crate::ServerArgs;
use anyhow::{anyhow, Context, Result};
use clap::{ArgAction, Subcommand};
use serde_json::Value;
use std::io::Write;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ImpersonationsCmd {
    /// List sessions, newest start first: a table, or one JSON object a line with --json.
    List {
        /// Only this tenant's sessions.
        #[arg(long)]
        tenant: Option<String>,
        /// true: only open sessions; false: only ended ones (default: both).
        #[arg(long, value_name = "true|false", action = ArgAction::Set)]
        active: Option<bool>,
        /// One JSON object a line (as the API returns each session) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one session and the actions taken in it (oldest first).
    Show {
        /// The session's id (payload.session_id of its impersonation.start).
        session_id: String,
        /// The tenant whose session this is, when several tenants use the same id (without it,
        /// the one that started last).
        #[arg(long)]
        tenant: Option<String>,
        /// The server's JSON (the session with its actions, each event as the API returns it),
        /// pretty-printed.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `impersonations` with its subcommand.
pub fn run(cmd: ImpersonationsCmd) -> Result<ExitCode> {
    match cmd {
        ImpersonationsCmd::List {
            tenant,
            active,
            json,
            server,
        } => list(&server, tenant, active, json),
        ImpersonationsCmd::Show {
            session_id,
            tenant,
            json,
            server,
        } => show(&server, &session_id, tenant, json),
    }
}

/// `?k=v&…` of the parameters given, or nothing.
fn query(params: &[(&str, String)]) -> Result<String> {
    Ok(if params.is_empty() {
        String::new()
    } else {
        format!("?{}", serde_urlencoded::to_string(params)?)
    })
}

/// The end of a session, or `active` while it is open.
fn end(s: &Value) -> String {
    if s["active"] == Value::Bool(true) {
        "active".into()
    } else {
        cell(&s["end"])
    }
}

/// The duration for people (`15m 12s`), or `-` when the server gave none.
fn length(s: &Value) -> String {
    s["duration_seconds"]
        .as_u64()
        .map(duration)
        .unwrap_or_else(|| "-".into())
}

fn list(
    server: &ServerArgs,
    tenant: Option<String>,
    active: Option<bool>,
    json: bool,
) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(t) = tenant {
        params.push(("tenant_id", t));
    }
    if let Some(a) = active {
        params.push(("active", a.to_string()));
    }
    let path = format!("/v1/impersonations{}", query(&params)?);
    let v = runtime()?.block_on(client.get_json(&path))?;
    let sessions = v["impersonations"].as_array().ok_or_else(|| {
        anyhow!("the server's answer to GET /v1/impersonations holds no impersonations")
    })?;
    let mut out = std::io::stdout().lock();
    if json {
        for s in sessions {
            writeln!(out, "{s}").context("writing to stdout")?;
        }
    } else if sessions.is_empty() {
        eprintln!("no impersonation sessions match");
    } else {
        let mut t = Table::new(&["SESSION", "TENANT", "WHO", "START", "END", "DURATION"]);
        for s in sessions {
            t.row(vec![
                cell(&s["session_id"]),
                cell(&s["tenant_id"]),
                format!(
                    "{} → {}",
                    cell(&s["impersonator"]),
                    cell(&s["impersonated"])
                ),
                cell(&s["start"]),
                end(s),
                length(s),
            ]);
        }
        t.write(&mut out).context("writing to stdout")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn show(
    server: &ServerArgs,
    session_id: &str,
    tenant: Option<String>,
    json: bool,
) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let params: Vec<(&str, String)> = tenant.into_iter().map(|t| ("tenant_id", t)).collect();
    let path = format!(
        "/v1/impersonations/{}{}",
        path_segment(session_id)?,
        query(&params)?
    );
    let v = runtime()?.block_on(client.get_json(&path))?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?).context("writing to stdout")?;
        out.flush()?;
        return Ok(ExitCode::SUCCESS);
    }
    let actions = v["actions"].as_array().cloned().unwrap_or_default();
    for (k, val) in [
        ("session", cell(&v["session_id"])),
        ("tenant", cell(&v["tenant_id"])),
        ("impersonator", cell(&v["impersonator"])),
        ("impersonated", cell(&v["impersonated"])),
        ("reason", cell(&v["reason"])),
        ("start", cell(&v["start"])),
        ("end", end(&v)),
        ("duration", length(&v)),
        ("actions", actions.len().to_string()),
    ] {
        writeln!(out, "{k:<14}{}", printable(&val)).context("writing to stdout")?;
    }
    if !actions.is_empty() {
        writeln!(out)?;
        let mut t = Table::new(&["SEQ", "TIMESTAMP", "TYPE", "ACTOR", "EVENT ID"]);
        for a in &actions {
            t.row(vec![
                cell(&a["seq"]),
                cell(&a["timestamp"]),
                cell(&a["event_type"]),
                cell(&a["actor"]),
                cell(&a["event_id"]),
            ]);
        }
        t.write(&mut out).context("writing to stdout")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_open_session_ends_as_active() {
        let open = json!({"active": true, "end": null, "duration_seconds": 912});
        assert_eq!(
            (end(&open), length(&open)),
            ("active".into(), "15m 12s".into())
        );
        let closed = json!({"active": false, "end": "2026-11-23T10:20:00.000Z",
                            "duration_seconds": 1200});
        assert_eq!(end(&closed), "2026-11-23T10:20:00.000Z");
        assert_eq!(length(&closed), "20m 00s");
    }
}
