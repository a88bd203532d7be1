//! `trailkeep approvals list|show|approve|reject`: dual approval through a running server's
//! approvals API (docs/api.md#dual-approval).
//!
//! The server holds every rule (distinct approver keys, never the requester's, expiry, a
//! rejection ends it); these commands only ask and show the answer. A refusal prints the
//! server's message with its specific reason (`details[0].reason`, e.g. `approver_repeated`),
//! so a script can tell a repeated approve from an expired approval.

use crate::client::{path_segment, runtime, Client, Refused};
use crate::table::{cell, printable, Table};
use crate::ServerArgs;
use anyhow::{anyhow, Context, Result};
use clap::{Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

/// Shown by `approvals --help`.
pub const HELP: &str = "\
An approval is asked for with POST /v1/approvals (by the service that wants to act); these
commands read and decide approvals. Approving and rejecting need an approver or admin key, and
each approver key counts once (the key that asked never counts); reading needs an admin,
reader, auditor or approver key. A tenant-bound key sees only its tenant's approvals.

A refusal prints the server's message, its status and code, and the specific reason, e.g.
  error: key key_… already approved apr_…; it counts once: another approver's key must
  approve (HTTP 409 conflict; reason approver_repeated)
and the exit status is 1.";

/// The state of an approval, as `--status` takes it.
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Status {
    /// Waiting for approvers.
    Pending,
    /// Enough distinct approvers approved it, before it expired.
    Approved,
    /// Someone rejected it.
    Rejected,
    /// Its time ran out before it was approved, or before it was used.
    Expired,
    /// The approved action was logged.
    Used,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Rejected => "rejected",
            Status::Expired => "expired",
            Status::Used => "used",
        }
    }
}

#[derive(Subcommand)]
pub enum ApprovalsCmd {
    /// List approvals, newest request first: a table, or one JSON object a line with --json.
    List {
        /// Only this tenant's approvals.
        #[arg(long)]
        tenant: Option<String>,
        /// Only approvals in this state now.
        #[arg(long, value_enum)]
        status: Option<Status>,
        /// One JSON object a line (as the API returns each approval) instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one approval as JSON: its action, digest, the approvals counted and any rejection.
    Show {
        /// The approval's id (apr_…).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve: counts once per approver key; prints the approval after the decision.
    Approve(Decision),
    /// Reject (also once approved, while not yet used); prints the approval after it.
    Reject(Decision),
}

/// The arguments of `approve` and `reject`.
#[derive(clap::Args)]
pub struct Decision {
    /// The approval's id (apr_…).
    id: String,
    /// Who decides, recorded with the decision (e.g. user:lea@platform.example); what counts
    /// is the key.
    #[arg(long)]
    approver: String,
    /// Why, recorded with the decision.
    #[arg(long)]
    comment: Option<String>,
    #[command(flatten)]
    server: ServerArgs,
}

/// The API error of a refused request with its specific reason on the same line; other errors
/// as they are.
fn explain(e: anyhow::Error) -> anyhow::Error {
    let Some(r) = e.downcast_ref::<Refused>() else {
        return e;
    };
    let first = r.details().into_iter().next().unwrap_or(Value::Null);
    let Some(reason) = first["reason"].as_str() else {
        return e;
    };
    let code = r
        .envelope()
        .and_then(|env| env["code"].as_str().map(str::to_string))
        .unwrap_or_default();
    let field = match first["path"].as_str() {
        Some(p) if !p.is_empty() => format!("; field {p}"),
        _ => String::new(),
    };
    anyhow!(
        "{} (HTTP {} {code}; reason {reason}{field})",
        r.message(),
        r.status
    )
}

/// `approvals` with its subcommand.
pub fn run(cmd: ApprovalsCmd) -> Result<ExitCode> {
    match cmd {
        ApprovalsCmd::List {
            tenant,
            status,
            json,
            server,
        } => list(&server, tenant, status, json),
        ApprovalsCmd::Show { id, server } => {
            let client = Client::new(&server)?;
            let path = format!("/v1/approvals/{}", path_segment(&id)?);
            let v = runtime()?
                .block_on(client.get_json(&path))
                .map_err(explain)?;
            print_pretty(&v)
        }
        ApprovalsCmd::Approve(d) => decide(d, "approve"),
        ApprovalsCmd::Reject(d) => decide(d, "reject"),
    }
}

fn print_pretty(v: &Value) -> Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(v)?).context("writing to stdout")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn list(
    server: &ServerArgs,
    tenant: Option<String>,
    status: Option<Status>,
    json: bool,
) -> Result<ExitCode> {
    let client = Client::new(server)?;
    let mut params: Vec<(&str, String)> = Vec::new();
    if let Some(t) = tenant {
        params.push(("tenant_id", t));
    }
    if let Some(s) = status {
        params.push(("status", s.as_str().to_string()));
    }
    let mut path = "/v1/approvals".to_string();
    if !params.is_empty() {
        path = format!("{path}?{}", serde_urlencoded::to_string(&params)?);
    }
    let v = runtime()?
        .block_on(client.get_json(&path))
        .map_err(explain)?;
    let approvals = v["approvals"]
        .as_array()
        .ok_or_else(|| anyhow!("the server's answer to GET /v1/approvals holds no approvals"))?;
    let mut out = std::io::stdout().lock();
    if json {
        for a in approvals {
            writeln!(out, "{a}").context("writing to stdout")?;
        }
    } else if approvals.is_empty() {
        eprintln!("no approvals match");
    } else {
        let mut t = Table::new(&[
            "ID",
            "TENANT",
            "ACTION",
            "STATUS",
            "APPROVALS",
            "REQUESTED BY",
            "EXPIRES AT",
        ]);
        for a in approvals {
            t.row(vec![
                cell(&a["id"]),
                cell(&a["tenant_id"]),
                cell(&a["action"]["event_type"]),
                cell(&a["status"]),
                counted(a),
                cell(&a["requested_by"]),
                cell(&a["expires_at"]),
            ]);
        }
        t.write(&mut out).context("writing to stdout")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `n/N`: approvals counted of those required.
fn counted(a: &Value) -> String {
    let n = a["approvals"].as_array().map_or(0, Vec::len);
    format!("{n}/{}", cell(&a["approvers_required"]))
}

/// `approve` or `reject`: prints the approval after the decision (JSON on stdout) and its
/// state in one line on stderr.
fn decide(d: Decision, verb: &str) -> Result<ExitCode> {
    let client = Client::new(&d.server)?;
    let path = format!("/v1/approvals/{}/{verb}", path_segment(&d.id)?);
    let mut body = json!({ "approver": d.approver });
    if let Some(c) = d.comment {
        body["comment"] = c.into();
    }
    let v = runtime()?
        .block_on(client.post_json(&path, &body))
        .map_err(explain)?;
    eprintln!(
        "approval {} is {}: {} approvals",
        printable(&cell(&v["id"])),
        cell(&v["status"]),
        counted(&v)
    );
    print_pretty(&v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_reads_as_message_status_and_reason() {
        let e = anyhow::Error::new(Refused {
            status: 409,
            body: json!({"error": {"code": "conflict", "message": "this key already approved",
                "details": [{"index": 0, "path": "", "message": "this key already approved",
                             "reason": "approver_repeated"}]}})
            .to_string(),
        });
        assert_eq!(
            explain(e).to_string(),
            "this key already approved (HTTP 409 conflict; reason approver_repeated)"
        );
        let e = anyhow::Error::new(Refused {
            status: 422,
            body: json!({"error": {"code": "validation_failed", "message": "bad payload",
                "details": [{"index": 0, "path": "action.payload.reason", "message": "bad payload",
                             "reason": "invalid_action"}]}})
            .to_string(),
        });
        assert_eq!(
            explain(e).to_string(),
            "bad payload (HTTP 422 validation_failed; reason invalid_action; field \
             action.payload.reason)"
        );
        // Without a reason the refusal prints as every client command prints it.
        let e = anyhow::Error::new(Refused {
            status: 404,
            body: json!({"error": {"code": "not_found", "message": "no approval \"x\"",
                "details": []}})
            .to_string(),
        });
        assert_eq!(
            explain(e).to_string(),
            "no approval \"x\" (HTTP 404 not_found)"
        );
    }

    #[test]
    fn counted_reads_approvals_of_required() {
        let a = json!({"approvals": [{"key_id": "k1"}], "approvers_required": 2});
        assert_eq!(counted(&a), "1/2");
        assert_eq!(counted(&json!({})), "0/-");
    }
}
