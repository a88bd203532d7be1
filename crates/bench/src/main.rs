//! `trailkeep-bench`: load generators for trailkeep's HTTP API and the PostgreSQL side of the
//! side-by-side figures of BENCHMARKS.md. `bench/compare.sh` drives it; each subcommand prints a
//! human-readable report and one `RESULT <name> key=value …` line for scripts, and exits
//! non-zero if any request failed or was answered wrongly.

mod http;
mod pg;
mod prepare;
mod proofs;
mod stats;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{Conn, Target};
use hyper::{Method, StatusCode};
use stats::{per_sec, Latencies, ResultLine};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "trailkeep-bench",
    about = "Benchmarks for trailkeep, side by side with PostgreSQL"
)]
struct Cli {
    /// Worker threads of the client's runtime. The client shares the machine with the server,
    /// so keep it small.
    #[arg(long, global = true, default_value_t = 1)]
    threads: usize,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes a signed evidence directory (events.ndjson, checkpoint.txt, public-key.txt) of
    /// EVENTS realistic events of one tenant, for timing `trailkeep verify DIR`.
    VerifyDir {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Store-level proof generation on a large log: appends EVENTS leaves to one tenant of a
    /// fresh embedded store, then generates inclusion proofs for random leaves (verifying each).
    Proofs {
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        #[arg(long, default_value_t = 200_000)]
        proofs: u64,
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
    /// Batched durable ingest: JSON-array bodies of --batch events from --clients connections.
    IngestBatch {
        #[arg(long)]
        url: String,
        #[arg(long, env = "TRAILKEEP_KEY")]
        key: String,
        /// NDJSON events (e.g. from scripts/gen_events.py).
        #[arg(long)]
        file: String,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Send only the first N events of the file (0 = all).
        #[arg(long, default_value_t = 0)]
        events: usize,
    },
    /// Single-event durable ingest: one event object per request from --clients connections.
    IngestSingle {
        #[arg(long)]
        url: String,
        #[arg(long, env = "TRAILKEEP_KEY")]
        key: String,
        #[arg(long)]
        file: String,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Events to send (the first N of the file).
        #[arg(long, default_value_t = 100_000)]
        events: usize,
    },
    /// Filtered first page over HTTP: tenant + type prefix + time range, newest first.
    Query {
        #[arg(long)]
        url: String,
        #[arg(long, env = "TRAILKEEP_KEY")]
        key: String,
        #[arg(long, default_value = "t_0000")]
        tenant: String,
        /// Event type prefix, e.g. `billing.` (sent as `event_type=billing.*`).
        #[arg(long, default_value = "billing.")]
        type_prefix: String,
        /// RFC 3339, inclusive.
        #[arg(long)]
        since: String,
        /// RFC 3339, exclusive.
        #[arg(long)]
        until: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        /// Untimed requests sent first (caches warm).
        #[arg(long, default_value_t = 200)]
        warmup: usize,
    },
    /// PostgreSQL: fresh indexed table `bench_events`, binary COPY of the file in one transaction.
    PgCopy {
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        pg: String,
        #[arg(long)]
        file: String,
        /// Load only the first N events of the file (0 = all).
        #[arg(long, default_value_t = 0)]
        events: usize,
    },
    /// PostgreSQL: the same filtered first page as `query`, on `bench_events`.
    PgQuery {
        #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
        pg: String,
        #[arg(long, default_value = "t_0000")]
        tenant: String,
        #[arg(long, default_value = "billing.")]
        type_prefix: String,
        #[arg(long)]
        since: String,
        #[arg(long)]
        until: String,
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, default_value_t = 4)]
        clients: usize,
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        #[arg(long, default_value_t = 200)]
        warmup: usize,
        /// Skip printing EXPLAIN ANALYZE of the query.
        #[arg(long)]
        no_explain: bool,
        /// Leave PostgreSQL's plan cache at its default (generic plans after 5 executions)
        /// instead of forcing a custom plan per execution.
        #[arg(long)]
        generic_plans: bool,
    },
    /// CPU cost of the request side of POST /v1/events on one thread, no server: bodies of
    /// --batch events through the handler's own pipeline (framing, validation, canonical JSON,
    /// salt, leaf hash), then the receipts response written for them.
    Prepare {
        /// NDJSON events (e.g. from scripts/gen_events.py).
        file: String,
        /// Use only the first N events of the file (0 = all).
        #[arg(long, default_value_t = 0)]
        events: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// JSON-array bodies (as ingest-batch sends) instead of NDJSON.
        #[arg(long)]
        json: bool,
        /// Timed passes; the best is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
    },
    /// Waits until GET /healthz answers 200.
    WaitHealthy {
        #[arg(long)]
        url: String,
        #[arg(long, default_value_t = 60)]
        timeout_secs: u64,
    },
    /// Prints the number of stored events (sum of `event_count` over GET /v1/tenants).
    Count {
        #[arg(long)]
        url: String,
        #[arg(long, env = "TRAILKEEP_KEY")]
        key: String,
    },
}

fn main() {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.threads.max(1))
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run(cli.cmd)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("trailkeep-bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(cmd: Cmd) -> Result<()> {
    match cmd {
        Cmd::IngestBatch {
            url,
            key,
            file,
            clients,
            batch,
            events,
        } => {
            if batch == 0 || batch > 10_000 {
                bail!("--batch must be 1..=10000 (docs/api.md)");
            }
            let lines = read_lines(&file, events)?;
            let total = lines.len();
            let t = Instant::now();
            let jobs: Vec<Job> = lines
                .chunks(batch)
                .map(|chunk| {
                    let size = chunk.iter().map(|l| l.len() + 1).sum::<usize>() + 1;
                    let mut body = Vec::with_capacity(size);
                    body.push(b'[');
                    for (i, l) in chunk.iter().enumerate() {
                        if i > 0 {
                            body.push(b',');
                        }
                        body.extend_from_slice(l);
                    }
                    body.push(b']');
                    Job {
                        body: Bytes::from(body),
                        events: chunk.len(),
                    }
                })
                .collect();
            drop(lines);
            println!(
                "ingest-batch: {total} events from {file} in {} requests of up to {batch} (bodies built in {:.2?}), {clients} clients",
                jobs.len(),
                t.elapsed()
            );
            let target = Target::new(&url, Some(&key))?;
            run_ingest("ingest_batch", &target, jobs, clients).await
        }
        Cmd::IngestSingle {
            url,
            key,
            file,
            clients,
            events,
        } => {
            let lines = read_lines(&file, events)?;
            if lines.len() < events {
                eprintln!(
                    "warning: {file} holds only {} events; sending those",
                    lines.len()
                );
            }
            println!(
                "ingest-single: {} events from {file}, one per request, {clients} clients",
                lines.len()
            );
            let jobs = lines
                .into_iter()
                .map(|l| Job { body: l, events: 1 })
                .collect();
            let target = Target::new(&url, Some(&key))?;
            run_ingest("ingest_single", &target, jobs, clients).await
        }
        Cmd::Query {
            url,
            key,
            tenant,
            type_prefix,
            since,
            until,
            limit,
            clients,
            requests,
            warmup,
        } => {
            let target = Target::new(&url, Some(&key))?;
            let path = format!(
                "/v1/events?tenant_id={}&event_type={}&since={}&until={}&limit={limit}",
                http::encode(&tenant),
                http::encode(&format!("{type_prefix}*")),
                http::encode(&since),
                http::encode(&until)
            );
            run_query(&target, &path, limit, clients, requests, warmup).await
        }
        Cmd::PgCopy { pg, file, events } => pg::copy(&pg, &file, events).await,
        Cmd::PgQuery {
            pg,
            tenant,
            type_prefix,
            since,
            until,
            limit,
            clients,
            requests,
            warmup,
            no_explain,
            generic_plans,
        } => {
            pg::query(pg::QueryArgs {
                url: pg,
                tenant,
                type_prefix,
                since,
                until,
                limit,
                clients,
                requests,
                warmup,
                explain: !no_explain,
                generic_plans,
            })
            .await
        }
        Cmd::Prepare {
            file,
            events,
            batch,
            json,
            rounds,
        } => prepare::run(prepare::Args {
            file,
            events,
            batch,
            json,
            rounds,
        }),
        Cmd::VerifyDir { events, out } => proofs::verify_dir(events, &out),
        Cmd::Proofs {
            events,
            proofs,
            threads,
        } => proofs::run(events, proofs, threads).await,
        Cmd::WaitHealthy { url, timeout_secs } => {
            let target = Target::new(&url, None)?;
            http::wait_healthy(&target, Duration::from_secs(timeout_secs)).await
        }
        Cmd::Count { url, key } => {
            let target = Target::new(&url, Some(&key))?;
            let mut c = Conn::open(&target).await?;
            let (status, body) = c
                .send(target.request(Method::GET, "/v1/tenants", None, Bytes::new()))
                .await?;
            if status != StatusCode::OK {
                bail!("GET /v1/tenants: {status}: {}", http::snippet(&body));
            }
            let v: serde_json::Value =
                serde_json::from_slice(&body).context("GET /v1/tenants: body is not JSON")?;
            let tenants = v["tenants"]
                .as_array()
                .context("GET /v1/tenants: no `tenants` array")?;
            let mut sum = 0u64;
            for t in tenants {
                sum += t["event_count"]
                    .as_u64()
                    .with_context(|| format!("tenant without integer event_count: {t}"))?;
            }
            println!("{sum}");
            ResultLine::new("count")
                .field("events", sum)
                .field("tenants", tenants.len())
                .print();
            Ok(())
        }
    }
}

/// The file's non-empty lines (first `limit`, 0 = all), as zero-copy slices of one buffer.
fn read_lines(file: &str, limit: usize) -> Result<Vec<Bytes>> {
    let data = Bytes::from(std::fs::read(file).with_context(|| format!("reading {file}"))?);
    let mut out = Vec::new();
    let mut start = 0;
    while start < data.len() {
        if limit > 0 && out.len() >= limit {
            break;
        }
        let end = memchr_nl(&data[start..]).map_or(data.len(), |i| start + i);
        let mut line_end = end;
        if line_end > start && data[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        if line_end > start {
            out.push(data.slice(start..line_end));
        }
        start = end + 1;
    }
    if out.is_empty() {
        bail!("{file} holds no events");
    }
    Ok(out)
}

fn memchr_nl(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

struct Job {
    body: Bytes,
    events: usize,
}

#[derive(Default)]
struct Tally {
    requests_ok: u64,
    events_ok: u64,
    accepted: u64,
    duplicates: u64,
    errors: u64,
    first_errors: Vec<String>,
    reconnects: u64,
    bytes_sent: u64,
}

impl Tally {
    fn error(&mut self, msg: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(msg);
        }
    }

    fn merge(&mut self, o: Tally) {
        self.requests_ok += o.requests_ok;
        self.events_ok += o.events_ok;
        self.accepted += o.accepted;
        self.duplicates += o.duplicates;
        self.errors += o.errors;
        self.reconnects += o.reconnects;
        self.bytes_sent += o.bytes_sent;
        // Keep the earliest requests' errors (the first failure usually explains the rest).
        self.first_errors.extend(o.first_errors);
        self.first_errors.sort_by_key(|e| {
            e.strip_prefix("request ")
                .and_then(|r| r.split(':').next())
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX)
        });
        self.first_errors.truncate(5);
    }
}

/// Checks a 200 ingest answer: `accepted + duplicates` and the receipts match the request.
///
/// Not parsed: the client shares the machine's two cores with the server, and parsing a
/// 1000-receipt answer (~140 KB) cost more client CPU than sending the request. It reads the
/// two counts at the head, checks that the receipts array closes the body, and counts the
/// receipts by their opening bytes. The receipts' content is checked by the server's tests.
fn check_ingest_response(body: &[u8], expected: usize) -> Result<(u64, u64), String> {
    let bad = |why: &str| {
        format!(
            "200 with a body that is not a receipts answer ({why}): {}",
            http::snippet(body)
        )
    };
    let rest = body
        .strip_prefix(b"{\"accepted\":")
        .ok_or_else(|| bad("no accepted count first"))?;
    let (accepted, rest) = leading_u64(rest).ok_or_else(|| bad("accepted is not a number"))?;
    let rest = rest
        .strip_prefix(b",\"duplicates\":")
        .ok_or_else(|| bad("no duplicates count second"))?;
    let (duplicates, rest) = leading_u64(rest).ok_or_else(|| bad("duplicates is not a number"))?;
    let receipts = rest
        .strip_prefix(b",\"receipts\":[")
        .and_then(|r| r.strip_suffix(b"]}"))
        .ok_or_else(|| bad("no receipts array closing the answer"))?;
    if (accepted + duplicates) as usize != expected {
        return Err(format!(
            "sent {expected} events, answer says accepted {accepted} + duplicates {duplicates}"
        ));
    }
    let n = memchr::memmem::find_iter(receipts, b"{\"event_id\":\"").count();
    if n != expected {
        return Err(format!("sent {expected} events, got {n} receipts"));
    }
    Ok((accepted, duplicates))
}

/// The decimal number at the start of `b`, and what follows it.
fn leading_u64(b: &[u8]) -> Option<(u64, &[u8])> {
    let digits = b.iter().take_while(|c| c.is_ascii_digit()).count();
    let n = std::str::from_utf8(&b[..digits]).ok()?.parse().ok()?;
    Some((n, &b[digits..]))
}

async fn open_conns(target: &Target, clients: usize) -> Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(clients);
    for _ in 0..clients {
        conns.push(Conn::open(target).await?);
    }
    Ok(conns)
}

async fn run_ingest(name: &str, target: &Target, jobs: Vec<Job>, clients: usize) -> Result<()> {
    if clients == 0 {
        bail!("--clients must be at least 1");
    }
    let total_events: usize = jobs.iter().map(|j| j.events).sum();
    let jobs = Arc::new(jobs);
    let next = Arc::new(AtomicUsize::new(0));
    let conns = open_conns(target, clients).await?;
    let cpu0 = stats::process_cpu(0);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut conn in conns {
        let jobs = jobs.clone();
        let next = next.clone();
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::new();
            let mut t = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(i) else { break };
                let req = target.request(
                    Method::POST,
                    "/v1/events",
                    Some("application/json"),
                    job.body.clone(),
                );
                let t0 = Instant::now();
                let res = conn.send(req).await;
                let dt = t0.elapsed();
                t.bytes_sent += job.body.len() as u64;
                match res {
                    Ok((StatusCode::OK, body)) => match check_ingest_response(&body, job.events) {
                        Ok((a, d)) => {
                            lat.record(dt);
                            t.requests_ok += 1;
                            t.events_ok += job.events as u64;
                            t.accepted += a;
                            t.duplicates += d;
                        }
                        Err(e) => t.error(format!("request {i}: {e}")),
                    },
                    Ok((status, body)) => {
                        t.error(format!("request {i}: {status}: {}", http::snippet(&body)))
                    }
                    Err(e) => t.error(format!("request {i}: {e:#}")),
                }
            }
            t.reconnects = conn.opened.saturating_sub(1);
            (lat, t)
        }));
    }
    let mut lat = Latencies::new();
    let mut tally = Tally::default();
    for task in tasks {
        let (l, t) = task.await.context("client task panicked")?;
        lat.merge(&l);
        tally.merge(t);
    }
    let elapsed = start.elapsed();
    let eps = per_sec(tally.events_ok, elapsed);
    println!(
        "  {} of {} events stored ({} accepted, {} duplicates) in {} requests, {:.2?}",
        tally.events_ok, total_events, tally.accepted, tally.duplicates, tally.requests_ok, elapsed
    );
    println!(
        "  {eps:.0} events/s, {:.0} requests/s, {:.1} MB/s of request bodies",
        per_sec(tally.requests_ok, elapsed),
        tally.bytes_sent as f64 / elapsed.as_secs_f64() / 1e6
    );
    println!("  request latency: {}", lat.summary());
    let client_cpu = client_cpu_since(cpu0);
    report_errors(&tally);
    ResultLine::new(name)
        .field("events", tally.events_ok)
        .field("accepted", tally.accepted)
        .field("duplicates", tally.duplicates)
        .field("requests", tally.requests_ok)
        .field("errors", tally.errors)
        .f("seconds", elapsed.as_secs_f64())
        .f("events_per_s", eps)
        .latencies(&lat)
        .f("client_cpu_s", client_cpu)
        .print();
    if tally.errors > 0 {
        bail!(
            "{} request(s) failed or were answered wrongly",
            tally.errors
        );
    }
    Ok(())
}

/// Prints and returns the CPU time this client used since `cpu0` (0 if unknown): the client
/// shares the machine's cores with the server.
fn client_cpu_since(cpu0: Option<Duration>) -> f64 {
    match (cpu0, stats::process_cpu(0)) {
        (Some(a), Some(b)) => {
            let s = b.saturating_sub(a).as_secs_f64();
            println!("  client CPU (user+sys): {s:.2} s");
            s
        }
        _ => 0.0,
    }
}

fn report_errors(t: &Tally) {
    if t.reconnects > 0 {
        println!("  connections re-opened after a failure: {}", t.reconnects);
    }
    if t.errors > 0 {
        println!("  ERRORS: {} (first {}):", t.errors, t.first_errors.len());
        for e in &t.first_errors {
            println!("    {e}");
        }
    }
}

async fn run_query(
    target: &Target,
    path: &str,
    limit: usize,
    clients: usize,
    requests: usize,
    warmup: usize,
) -> Result<()> {
    if clients == 0 || requests == 0 {
        bail!("--clients and --requests must be at least 1");
    }
    let mut conns = open_conns(target, clients).await?;
    // One checked request: the page is well-formed and how many events it holds.
    let (status, body) = conns[0]
        .send(target.request(Method::GET, path, None, Bytes::new()))
        .await?;
    if status != StatusCode::OK {
        bail!("GET {path}: {status}: {}", http::snippet(&body));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: body is not JSON"))?;
    let page = v["events"]
        .as_array()
        .with_context(|| format!("GET {path}: no `events` array"))?;
    let rows = page.len();
    if rows > limit {
        bail!("GET {path}: {rows} events in a page of limit {limit}");
    }
    let newest = page
        .first()
        .and_then(|e| e["timestamp"].as_str())
        .unwrap_or("-")
        .to_string();
    let oldest = page
        .last()
        .and_then(|e| e["timestamp"].as_str())
        .unwrap_or("-")
        .to_string();
    println!(
        "query: GET {path}\n  first page: {rows} events ({} bytes), newest {newest}, oldest {oldest}, next_cursor {}",
        body.len(),
        if v["next_cursor"].is_null() { "null" } else { "set" }
    );
    if rows == 0 {
        println!("  warning: the page is empty; the query measures nothing useful");
    }
    for i in 0..warmup {
        let c = &mut conns[i % clients];
        let (s, b) = c
            .send(target.request(Method::GET, path, None, Bytes::new()))
            .await?;
        if s != StatusCode::OK {
            bail!("warm-up GET {path}: {s}: {}", http::snippet(&b));
        }
    }
    let expected_len = body.len();
    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = stats::process_cpu(0);
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(clients);
    for mut conn in conns {
        let next = next.clone();
        let target = target.clone();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut lat = Latencies::new();
            let mut t = Tally::default();
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let req = target.request(Method::GET, &path, None, Bytes::new());
                let t0 = Instant::now();
                let res = conn.send(req).await;
                let dt = t0.elapsed();
                match res {
                    Ok((StatusCode::OK, b)) => {
                        lat.record(dt);
                        t.requests_ok += 1;
                        // Same data, same page: a different size means a different answer.
                        if b.len() != expected_len {
                            t.error(format!(
                                "page of {} bytes, the first was {expected_len}",
                                b.len()
                            ));
                        }
                    }
                    Ok((s, b)) => t.error(format!("{s}: {}", http::snippet(&b))),
                    Err(e) => t.error(format!("{e:#}")),
                }
            }
            t.reconnects = conn.opened.saturating_sub(1);
            (lat, t)
        }));
    }
    let mut lat = Latencies::new();
    let mut tally = Tally::default();
    for task in tasks {
        let (l, t) = task.await.context("client task panicked")?;
        lat.merge(&l);
        tally.merge(t);
    }
    let elapsed = start.elapsed();
    let qps = per_sec(tally.requests_ok, elapsed);
    println!(
        "  {} requests from {clients} clients in {elapsed:.2?}: {qps:.0} queries/s",
        tally.requests_ok
    );
    println!("  latency: {}", lat.summary());
    let client_cpu = client_cpu_since(cpu0);
    report_errors(&tally);
    ResultLine::new("query")
        .field("rows", rows)
        .field("requests", tally.requests_ok)
        .field("errors", tally.errors)
        .f("qps", qps)
        .latencies(&lat)
        .f("client_cpu_s", client_cpu)
        .print();
    if tally.errors > 0 {
        bail!(
            "{} request(s) failed or were answered wrongly",
            tally.errors
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_ingest_response;
    use trailkeep_server::ingest::outcome_json;
    use trailkeep_store::{AppendOutcome, Receipt};

    fn answer(accepted: usize, duplicates: usize, receipts: usize) -> Vec<u8> {
        outcome_json(&AppendOutcome {
            accepted,
            duplicates,
            receipts: (0..receipts)
                .map(|i| Receipt {
                    event_id: uuid::Uuid::from_u128(i as u128 * 7919),
                    tenant_id: format!("t_{i:04}").into(),
                    seq: i as u64,
                    leaf_hash: [i as u8; 32],
                })
                .collect(),
        })
    }

    #[test]
    fn the_server_answer_passes_with_its_counts() {
        assert_eq!(check_ingest_response(&answer(3, 0, 3), 3), Ok((3, 0)));
        assert_eq!(
            check_ingest_response(&answer(990, 10, 1000), 1000),
            Ok((990, 10))
        );
        assert_eq!(check_ingest_response(&answer(0, 0, 0), 0), Ok((0, 0)));
    }

    #[test]
    fn short_or_wrong_answers_fail() {
        // Counts that do not add up to what was sent.
        assert!(check_ingest_response(&answer(2, 0, 3), 3).is_err());
        // Fewer receipts than events.
        assert!(check_ingest_response(&answer(3, 0, 2), 3).is_err());
        // A body cut short.
        let a = answer(3, 0, 3);
        assert!(check_ingest_response(&a[..a.len() - 1], 3).is_err());
        assert!(check_ingest_response(&a[..20], 3).is_err());
        // Not an answer at all.
        assert!(check_ingest_response(br#"{"error":{"code":"x"}}"#, 3).is_err());
        assert!(check_ingest_response(b"", 0).is_err());
        assert!(
            check_ingest_response(br#"{"accepted":x,"duplicates":0,"receipts":[]}"#, 0).is_err()
        );
    }
}
