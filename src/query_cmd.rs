//! `trailkeep query` (filtered listing, following cursors; or one tenant's whole log in `seq`
//! order, optionally written as a directory that `trailkeep verify DIR` checks) and `trailkeep
//! tail` (follow a tenant's log in `seq` order, so back-filled events are not missed).

use crate::client::{Client, Refused};
use crate::ServerArgs;
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};
use trailkeep_core::timestamp::Timestamp;
use trailkeep_tlog::{open_checkpoint, Verifier};

/// Events printed when `--limit` is not given (the server's default page).
const DEFAULT_LIMIT: usize = 100;
/// Events per listing request (the API's maximum).
const PAGE: usize = 1000;
/// How long `--out-dir` waits for a tenant's first checkpoint (signed within about a second of
/// new events).
const CHECKPOINT_WAIT: Duration = Duration::from_secs(5);

/// Extra `--help` text of `query`.
pub const QUERY_HELP: &str = "\
Without --log-order, events are listed newest first (oldest first with --asc), 100 unless --limit
says otherwise; when more match, a note on stderr says so.

--since and --until take an RFC 3339 time (2026-01-01T09:30:00Z, 2026-01-01T10:30:00+01:00) or a
date (2026-01-01, meaning midnight UTC at the start of that day).

Offline verification of one tenant's log:
  trailkeep query --tenant t_0042 --log-order --out-dir audit-t_0042
  trailkeep verify audit-t_0042 --public-key KEY
--out-dir writes the tenant's latest signed checkpoint (checkpoint.txt), exactly the events it
covers (events.ndjson, seq 0..size-1 as the server returns them) and the server's public key
(public-key.txt). Events logged after that checkpoint was signed are left out.

Errors print the server's message and one line per detail; the exit status is then 1.";

/// `--since`/`--until`: an RFC 3339 time, or a date meaning midnight UTC.
pub(crate) fn time_arg(s: &str) -> Result<String, String> {
    if Timestamp::parse(s).is_ok() {
        return Ok(s.to_string());
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if s.len() == 10 && time::Date::parse(s, &date_format).is_ok() {
        return Ok(format!("{s}T00:00:00Z"));
    }
    Err(
        "expected an RFC 3339 time such as 2026-01-01T09:30:00Z or a date such as 2026-01-01 \
         (midnight UTC)"
            .into(),
    )
}

/// The filters of a listing beyond the tenant, shared by `query` and `export`.
#[derive(clap::Args)]
pub struct Filters {
    /// Exact type or prefix wildcard (billing.*).
    #[arg(long = "type")]
    pub event_type: Option<String>,
    /// Only events by this actor (exact match).
    #[arg(long)]
    pub actor: Option<String>,
    /// From this time, inclusive: RFC 3339, or a date (2026-01-01) meaning midnight UTC.
    #[arg(long, value_parser = time_arg)]
    pub since: Option<String>,
    /// Before this time, exclusive: RFC 3339, or a date (2026-01-01) meaning midnight UTC.
    #[arg(long, value_parser = time_arg)]
    pub until: Option<String>,
    /// Impersonation session id.
    #[arg(long)]
    pub session: Option<String>,
    /// Case-insensitive substring of payload or actor.
    #[arg(long)]
    pub q: Option<String>,
    /// Oldest first (the default is newest first).
    #[arg(long)]
    pub asc: bool,
}

impl Filters {
    /// The listing's query parameters for these filters and `tenant` (`order=asc` included).
    pub fn params(&self, tenant: &Option<String>) -> Vec<(&'static str, String)> {
        let mut params = Vec::new();
        for (k, v) in [
            ("tenant_id", tenant),
            ("event_type", &self.event_type),
            ("actor", &self.actor),
            ("since", &self.since),
            ("until", &self.until),
            ("session", &self.session),
            ("q", &self.q),
        ] {
            if let Some(v) = v {
                params.push((k, v.clone()));
            }
        }
        if self.asc {
            params.push(("order", "asc".into()));
        }
        params
    }
}

#[derive(clap::Args)]
#[command(after_long_help = QUERY_HELP)]
pub struct QueryArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Only this tenant's events.
    #[arg(long)]
    tenant: Option<String>,
    #[command(flatten)]
    filters: Filters,
    /// Most events to print (0 = all). Default 100, or all with --log-order.
    #[arg(long)]
    limit: Option<usize>,
    /// Every event of --tenant in log order (seq 0, 1, 2, …), as `trailkeep verify DIR` reads
    /// them; no other filter applies.
    #[arg(
        long,
        requires = "tenant",
        conflicts_with_all = ["event_type", "actor", "since", "until", "session", "q", "asc"]
    )]
    log_order: bool,
    /// With --log-order: write DIR/checkpoint.txt (the tenant's latest signed checkpoint),
    /// DIR/events.ndjson (exactly the events it covers) and DIR/public-key.txt, for `trailkeep
    /// verify DIR`; nothing goes to stdout.
    #[arg(
        long,
        value_name = "DIR",
        requires = "log_order",
        conflicts_with = "limit"
    )]
    out_dir: Option<PathBuf>,
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
    if a.log_order {
        let tenant = a.tenant.clone().unwrap_or_default();
        if !trailkeep_core::validate::is_tenant_id(&tenant) {
            bail!("--tenant {tenant:?} is not a valid tenant id");
        }
        return rt.block_on(async {
            match &a.out_dir {
                Some(dir) => write_dir(&client, &tenant, dir).await,
                None => {
                    let limit = a.limit.filter(|&l| l > 0).map(|l| l as u64);
                    let mut out = std::io::stdout().lock();
                    log_order(&client, &tenant, limit, |raw| {
                        writeln!(out, "{raw}").context("writing to stdout")
                    })
                    .await?;
                    out.flush()?;
                    Ok(ExitCode::SUCCESS)
                }
            }
        });
    }
    rt.block_on(async {
        let limit = a.limit.unwrap_or(DEFAULT_LIMIT);
        // Without --limit one event more is asked for, to know whether more match.
        let wanted = match a.limit {
            None => DEFAULT_LIMIT + 1,
            Some(0) => usize::MAX,
            Some(l) => l,
        };
        let mut fetched = 0usize;
        let mut printed = 0usize;
        let mut cursor: Option<String> = None;
        let stdout = std::io::stdout();
        #[derive(Deserialize)]
        struct Page<'a> {
            #[serde(borrow)]
            events: Vec<&'a RawValue>,
            next_cursor: Option<String>,
        }
        loop {
            let page = (wanted - fetched).min(PAGE);
            let mut params: Vec<(&str, String)> = vec![("limit", page.to_string())];
            params.extend(a.filters.params(&a.tenant));
            if let Some(c) = &cursor {
                params.push(("cursor", c.clone()));
            }
            let qs = serde_urlencoded::to_string(&params)?;
            let body = client
                .send(
                    reqwest::Method::GET,
                    &format!("/v1/events?{qs}"),
                    None,
                    None,
                )
                .await?;
            let v: Page = serde_json::from_slice(&body)
                .context("the server's answer is not the expected list of events")?;
            let mut out = stdout.lock();
            for e in &v.events {
                fetched += 1;
                if limit == 0 || printed < limit {
                    writeln!(out, "{}", e.get())?;
                    printed += 1;
                }
            }
            out.flush()?;
            cursor = v.next_cursor;
            if cursor.is_none() || v.events.is_empty() || fetched >= wanted {
                break;
            }
        }
        if a.limit.is_none() && fetched > printed {
            eprintln!(
                "note: showing the first {printed} matching events ({}); more match. Pass \
                 --limit N to print up to N, or --limit 0 to print all.",
                if a.filters.asc {
                    "oldest first"
                } else {
                    "newest first"
                }
            );
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Deserialize)]
struct Page<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct SeqOf {
    seq: u64,
}

/// Hands `emit` the tenant's events in seq order from 0 (as the server wrote them), up to
/// `limit` events or, without one, until the listing ends. Returns how many were emitted.
async fn log_order(
    client: &Client,
    tenant: &str,
    limit: Option<u64>,
    mut emit: impl FnMut(&str) -> Result<()>,
) -> Result<u64> {
    let mut next = 0u64;
    loop {
        let page = match limit {
            Some(l) if l <= next => return Ok(next),
            Some(l) => (l - next).min(PAGE as u64),
            None => PAGE as u64,
        };
        let body = client
            .send(
                reqwest::Method::GET,
                &format!("/v1/events?tenant_id={tenant}&from_seq={next}&limit={page}"),
                None,
                None,
            )
            .await
            .with_context(|| format!("fetching tenant {tenant}'s events from seq {next}"))?;
        let page: Page = serde_json::from_slice(&body)
            .context("the server's answer is not the expected list of events")?;
        if page.events.is_empty() {
            return Ok(next);
        }
        for raw in page.events {
            if limit.is_some_and(|l| next >= l) {
                return Ok(next);
            }
            let seq = serde_json::from_str::<SeqOf>(raw.get())
                .map(|s| s.seq)
                .with_context(|| format!("the event listed at seq {next} has no seq"))?;
            if seq != next {
                bail!(
                    "the server listed event seq {seq} where seq {next} was expected: events \
                     missing or out of order"
                );
            }
            emit(raw.get())?;
            next += 1;
        }
    }
}

/// `query --log-order --out-dir DIR`: the latest checkpoint, exactly the events it covers and
/// the public key, written so that `verify DIR` checks them.
async fn write_dir(client: &Client, tenant: &str, dir: &Path) -> Result<ExitCode> {
    // The checkpoint first: the events written must be exactly the ones it covers.
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    let note = loop {
        match client
            .send(
                reqwest::Method::GET,
                &format!("/v1/tenants/{tenant}/checkpoint"),
                None,
                None,
            )
            .await
        {
            Ok(b) => break String::from_utf8_lossy(&b).into_owned(),
            Err(e)
                if e.downcast_ref::<Refused>().is_some_and(|r| r.status == 404)
                    && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => {
                return Err(e.context(format!(
                    "tenant {tenant} has no signed checkpoint to export (checkpoints are signed \
                     within about a second of new events)"
                )))
            }
        }
    };
    let vkey = client
        .send(reqwest::Method::GET, "/v1/public-key", None, None)
        .await
        .context("fetching the log's public key (GET /v1/public-key)")?;
    let vkey = String::from_utf8_lossy(&vkey).trim().to_string();
    let verifier = Verifier::from_vkey(&vkey)
        .with_context(|| format!("the server's public key {vkey:?} is not a verifier key"))?;
    let cp = open_checkpoint(&note, &verifier)
        .context("the server's checkpoint does not verify with its own public key")?;

    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = |name: &str| dir.join(format!(".{name}.tmp"));
    let events_tmp = tmp("events.ndjson");
    let file = std::fs::File::create(&events_tmp)
        .with_context(|| format!("cannot write {}", events_tmp.display()))?;
    let mut w = std::io::BufWriter::new(file);
    let n = log_order(client, tenant, Some(cp.size), |raw| {
        writeln!(w, "{raw}").with_context(|| format!("writing {}", events_tmp.display()))
    })
    .await?;
    if n < cp.size {
        let _ = std::fs::remove_file(&events_tmp);
        bail!(
            "the server listed {n} events of tenant {tenant} but its checkpoint covers {}: \
             nothing was written (run `trailkeep verify --url` against it)",
            cp.size
        );
    }
    w.into_inner()
        .map_err(|e| e.into_error())
        .and_then(|f| f.sync_all())
        .with_context(|| format!("writing {}", events_tmp.display()))?;
    for (name, text) in [
        ("checkpoint.txt", note.as_str()),
        ("public-key.txt", &format!("{vkey}\n")),
    ] {
        std::fs::write(tmp(name), text)
            .with_context(|| format!("cannot write {}", tmp(name).display()))?;
    }
    for name in ["events.ndjson", "checkpoint.txt", "public-key.txt"] {
        std::fs::rename(tmp(name), dir.join(name))
            .with_context(|| format!("cannot write {}", dir.join(name).display()))?;
    }
    eprintln!(
        "wrote tenant {tenant}'s log to {}: events.ndjson ({n} events, seq 0..{}), checkpoint.txt \
         (size {}) and public-key.txt. Check it with `trailkeep verify {} --public-key KEY` \
         (public-key.txt is only as trustworthy as the server it came from). Events logged after \
         this checkpoint are not included.",
        dir.display(),
        n.saturating_sub(1),
        cp.size,
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn tail(a: TailArgs) -> Result<ExitCode> {
    let client = Client::new(&a.server)?.persistent();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_dates() {
        assert_eq!(time_arg("2026-01-01").unwrap(), "2026-01-01T00:00:00Z");
        assert_eq!(
            time_arg("2026-01-01T09:30:00+01:00").unwrap(),
            "2026-01-01T09:30:00+01:00"
        );
        for bad in ["2026-13-01", "2026-02-30", "yesterday", "2026-1-1", ""] {
            assert!(time_arg(bad).is_err(), "{bad}");
        }
    }
}
