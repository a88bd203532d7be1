//! The PostgreSQL side of the benchmarks (BENCHMARKS.md): binary COPY of the generator's events into an indexed
//! table, and the same filtered first page as trailkeep's `GET /v1/events`.

use crate::stats::{per_sec, Latencies, ResultLine};
use anyhow::{bail, Context, Result};
use bytes::{BufMut, BytesMut};
use futures_util::pin_mut;
use std::error::Error;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{to_sql_checked, IsNull, ToSql, Type};
use tokio_postgres::{Client, NoTls};
use uuid::Uuid;

const DDL: &[&str] = &[
    "DROP TABLE IF EXISTS bench_events",
    "CREATE TABLE bench_events (
        event_id   uuid PRIMARY KEY,
        event_type text NOT NULL,
        actor      text NOT NULL,
        tenant_id  text NOT NULL,
        ts         timestamptz NOT NULL,
        source_ip  inet NULL,
        payload    jsonb NOT NULL
    )",
    "CREATE INDEX bench_events_tenant_ts ON bench_events (tenant_id, ts)",
    "CREATE INDEX bench_events_tenant_type_ts ON bench_events (tenant_id, event_type, ts)",
    "CREATE INDEX bench_events_tenant_actor_ts ON bench_events (tenant_id, actor, ts)",
];

/// The first page of the benchmarks' filtered query (BENCHMARKS.md). The LIKE pattern is a literal, as an
/// application would write it, so the planner sees the prefix.
fn query_sql(pattern: &str) -> String {
    format!(
        "SELECT event_id, event_type, actor, tenant_id, ts, source_ip, payload
    FROM bench_events
    WHERE tenant_id = $1 AND event_type LIKE '{}' AND ts >= $2 AND ts < $3
    ORDER BY ts DESC, event_id DESC
    LIMIT $4",
        pattern.replace('\'', "''")
    )
}

async fn connect(url: &str) -> Result<Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to PostgreSQL at {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            eprintln!("postgres connection error: {e}");
        }
    });
    Ok(client)
}

/// A jsonb value sent as the text we already hold (binary jsonb = version byte 1 + text).
#[derive(Debug)]
struct RawJsonb<'a>(&'a [u8]);

impl ToSql for RawJsonb<'_> {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn Error + Sync + Send>> {
        out.put_u8(1);
        out.extend_from_slice(self.0);
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB
    }

    to_sql_checked!();
}

struct Row {
    event_id: Uuid,
    event_type: String,
    actor: String,
    tenant_id: String,
    ts: OffsetDateTime,
    source_ip: Option<IpAddr>,
    payload: Vec<u8>,
}

fn parse_row(line: &[u8]) -> Result<Row> {
    let v: serde_json::Value = serde_json::from_slice(line).context("not JSON")?;
    let s = |k: &str| -> Result<&str> {
        v[k].as_str()
            .with_context(|| format!("missing string field `{k}`"))
    };
    let event_id = Uuid::parse_str(s("event_id")?).context("event_id is not a UUID")?;
    let ts =
        OffsetDateTime::parse(s("timestamp")?, &Rfc3339).context("timestamp is not RFC 3339")?;
    let source_ip = match v.get("source_ip").and_then(|x| x.as_str()) {
        Some(ip) => Some(
            ip.parse()
                .with_context(|| format!("bad source_ip {ip:?}"))?,
        ),
        None => None,
    };
    let payload = v.get("payload").context("missing payload")?;
    Ok(Row {
        event_id,
        event_type: s("event_type")?.to_string(),
        actor: s("actor")?.to_string(),
        tenant_id: s("tenant_id")?.to_string(),
        ts,
        source_ip,
        payload: serde_json::to_vec(payload)?,
    })
}

pub async fn copy(url: &str, file: &str, limit: usize) -> Result<()> {
    let data = std::fs::read(file).with_context(|| format!("reading {file}"))?;
    let t = Instant::now();
    let mut rows = Vec::new();
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        if limit > 0 && rows.len() >= limit {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        rows.push(parse_row(line).with_context(|| format!("{file}:{}", i + 1))?);
    }
    drop(data);
    if rows.is_empty() {
        bail!("{file} holds no events");
    }
    let n = rows.len() as u64;
    println!(
        "pg-copy: {n} events from {file} parsed in {:.2?} (not timed)",
        t.elapsed()
    );

    let mut client = connect(url).await?;
    let server_version: String = client.query_one("SHOW server_version", &[]).await?.get(0);
    let mut settings = Vec::new();
    for name in [
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "shared_buffers",
    ] {
        let v: String = client.query_one(&format!("SHOW {name}"), &[]).await?.get(0);
        settings.push(format!("{name}={v}"));
    }
    println!("  PostgreSQL {server_version} ({})", settings.join(", "));
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .context("SET synchronous_commit")?;
    for stmt in DDL {
        client
            .batch_execute(stmt)
            .await
            .with_context(|| format!("running: {stmt}"))?;
    }
    // Flush the DDL's dirty pages so the timed part starts from a quiet server.
    client.batch_execute("CHECKPOINT").await.ok();

    let backend_pid: i32 = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await?
        .get(0);
    let backend_cpu0 = crate::stats::process_cpu(backend_pid as u32);
    let start = Instant::now();
    let tx = client.transaction().await?;
    let sink = tx
        .copy_in(
            "COPY bench_events (event_id, event_type, actor, tenant_id, ts, source_ip, payload) FROM STDIN (FORMAT binary)",
        )
        .await
        .context("starting COPY")?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TIMESTAMPTZ,
            Type::INET,
            Type::JSONB,
        ],
    );
    pin_mut!(writer);
    for r in &rows {
        let payload = RawJsonb(&r.payload);
        writer
            .as_mut()
            .write(&[
                &r.event_id,
                &r.event_type,
                &r.actor,
                &r.tenant_id,
                &r.ts,
                &r.source_ip,
                &payload,
            ])
            .await
            .with_context(|| format!("COPY of event {}", r.event_id))?;
    }
    let copied = writer.finish().await.context("finishing COPY")?;
    let copy_done = start.elapsed();
    tx.commit().await.context("COMMIT")?;
    let elapsed = start.elapsed();
    if copied != n {
        bail!("COPY reported {copied} rows, sent {n}");
    }
    let backend_cpu = match (backend_cpu0, crate::stats::process_cpu(backend_pid as u32)) {
        (Some(a), Some(b)) => b.saturating_sub(a).as_secs_f64(),
        _ => 0.0,
    };
    let rps = per_sec(n, elapsed);
    println!(
        "  COPY of {n} rows in one transaction: {elapsed:.2?} (COPY {copy_done:.2?}, COMMIT {:.2?})",
        elapsed - copy_done
    );
    println!("  {rps:.0} rows/s (synchronous_commit=on, 3 secondary indexes + primary key)");
    if backend_cpu > 0.0 {
        println!(
            "  backend CPU (user+sys, pid {backend_pid}): {backend_cpu:.2} s = {:.1} µs/row (WAL writer and checkpointer not counted)",
            backend_cpu * 1e6 / n as f64
        );
    }

    let t = Instant::now();
    client.batch_execute("ANALYZE bench_events").await?;
    let size: i64 = client
        .query_one("SELECT pg_total_relation_size('bench_events')", &[])
        .await?
        .get(0);
    println!(
        "  ANALYZE in {:.2?} (not timed); table + indexes + toast: {size} bytes = {:.0} bytes/row",
        t.elapsed(),
        size as f64 / n as f64
    );
    // Write the loaded table out now, untimed, so that the next step (a trailkeep run in
    // `compare.sh`) does not share the disk with this COPY's deferred checkpoint writes.
    let t = Instant::now();
    client.batch_execute("CHECKPOINT").await?;
    println!("  CHECKPOINT in {:.2?} (not timed)", t.elapsed());
    ResultLine::new("pg_copy")
        .field("rows", n)
        .f("seconds", elapsed.as_secs_f64())
        .f("rows_per_s", rps)
        .f("bytes_per_row", size as f64 / n as f64)
        .f("backend_cpu_s", backend_cpu)
        .print();
    Ok(())
}

pub struct QueryArgs {
    pub url: String,
    pub tenant: String,
    pub type_prefix: String,
    pub since: String,
    pub until: String,
    pub limit: usize,
    pub clients: usize,
    pub requests: usize,
    pub warmup: usize,
    pub explain: bool,
    pub generic_plans: bool,
}

fn like_prefix(p: &str) -> String {
    let mut s = String::with_capacity(p.len() + 1);
    for c in p.chars() {
        if matches!(c, '%' | '_' | '\\') {
            s.push('\\');
        }
        s.push(c);
    }
    s.push('%');
    s
}

pub async fn query(a: QueryArgs) -> Result<()> {
    if a.clients == 0 || a.requests == 0 {
        bail!("--clients and --requests must be at least 1");
    }
    let since = OffsetDateTime::parse(&a.since, &Rfc3339).context("--since is not RFC 3339")?;
    let until = OffsetDateTime::parse(&a.until, &Rfc3339).context("--until is not RFC 3339")?;
    let pattern = like_prefix(&a.type_prefix);
    let limit = a.limit as i64;

    let sql = query_sql(&pattern);
    let mut clients = Vec::with_capacity(a.clients);
    for _ in 0..a.clients {
        let c = connect(&a.url).await?;
        if !a.generic_plans {
            // A generic plan cannot see the time range: on this data PostgreSQL then picks a
            // backward scan of the whole tenant (~80 ms at 200k rows instead of ~0.4 ms). Give it
            // its best plan for every execution.
            c.batch_execute("SET plan_cache_mode = force_custom_plan")
                .await
                .context("SET plan_cache_mode")?;
        }
        let stmt = c.prepare(&sql).await.context("preparing the query")?;
        clients.push((c, stmt));
    }
    let (c0, s0) = &clients[0];
    let params: [&(dyn ToSql + Sync); 4] = [&a.tenant, &since, &until, &limit];
    let first = c0.query(s0, &params).await.context("running the query")?;
    let rows = first.len();
    let newest: Option<OffsetDateTime> = first.first().map(|r| r.get(4));
    let oldest: Option<OffsetDateTime> = first.last().map(|r| r.get(4));
    println!(
        "pg-query ({}): tenant_id = {:?} AND event_type LIKE {pattern:?} AND ts in [{}, {}) ORDER BY ts DESC, event_id DESC LIMIT {limit}",
        if a.generic_plans { "default plan cache" } else { "plan_cache_mode=force_custom_plan" },
        a.tenant, a.since, a.until
    );
    println!(
        "  first page: {rows} rows, newest {}, oldest {}",
        newest.map_or("-".into(), |t| t.format(&Rfc3339).unwrap_or_default()),
        oldest.map_or("-".into(), |t| t.format(&Rfc3339).unwrap_or_default())
    );
    if a.explain {
        let plan = c0
            .query(&format!("EXPLAIN (ANALYZE, BUFFERS) {sql}"), &params)
            .await
            .context("EXPLAIN")?;
        println!("  plan:");
        for r in plan {
            let line: String = r.get(0);
            println!("    {line}");
        }
    }
    for i in 0..a.warmup {
        let (c, s) = &clients[i % a.clients];
        c.query(s, &params).await?;
    }

    let next = Arc::new(AtomicUsize::new(0));
    let shared = Arc::new((a.tenant.clone(), since, until, limit));
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(a.clients);
    for (c, s) in clients {
        let next = next.clone();
        let shared = shared.clone();
        let requests = a.requests;
        tasks.push(tokio::spawn(async move {
            let (tenant, since, until, limit) = &*shared;
            let params: [&(dyn ToSql + Sync); 4] = [tenant, since, until, limit];
            let mut lat = Latencies::new();
            let mut errors = Vec::new();
            let mut ok = 0u64;
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                let t0 = Instant::now();
                match c.query(&s, &params).await {
                    Ok(r) => {
                        lat.record(t0.elapsed());
                        ok += 1;
                        if r.len() != rows {
                            errors.push(format!("{} rows, the first query had {rows}", r.len()));
                        }
                    }
                    Err(e) => errors.push(format!("{e}")),
                }
            }
            (lat, ok, errors)
        }));
    }
    let mut lat = Latencies::new();
    let mut ok = 0;
    let mut errors = Vec::new();
    for t in tasks {
        let (l, o, e) = t.await.context("client task panicked")?;
        lat.merge(&l);
        ok += o;
        errors.extend(e);
    }
    let elapsed = start.elapsed();
    let qps = per_sec(ok, elapsed);
    println!(
        "  {ok} queries from {} connections in {elapsed:.2?}: {qps:.0} queries/s",
        a.clients
    );
    println!("  latency: {}", lat.summary());
    if !errors.is_empty() {
        println!("  ERRORS: {} (first 5):", errors.len());
        for e in errors.iter().take(5) {
            println!("    {e}");
        }
    }
    ResultLine::new("pg_query")
        .field("rows", rows)
        .field("requests", ok)
        .field("errors", errors.len())
        .f("qps", qps)
        .latencies(&lat)
        .print();
    if !errors.is_empty() {
        bail!("{} queries failed", errors.len());
    }
    Ok(())
}
