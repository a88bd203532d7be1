//! Exports of the PostgreSQL store: every event matching a listing's filters, from one
//! snapshot, a batch at a time.
//!
//! An export checks out a connection of its own for its whole run and opens a `REPEATABLE READ
//! READ ONLY` transaction on it. Its first statement (the tenant's size when a tenant is named,
//! else the cursor's `DECLARE`) fixes the transaction's snapshot before [`start`] returns: every
//! transaction committed before is in it, none committed after, and a request's events, one
//! transaction, are all in it or none. The rows come from a server-side cursor (`DECLARE …
//! NO SCROLL CURSOR` + `FETCH FORWARD n`) over the listing's SQL ([`super::read::filters`]:
//! the same filters; `(ts_nanos, event_id)` in the query's order, or `seq` in log order) — a
//! declared cursor is planned for fast start, so it walks the `(tenant, …, ts, event_id)`
//! indexes instead of sorting the whole result first. `q` is checked in Rust on each row, as in
//! a listing.
//!
//! **Log order with a time filter** (an evidence bundle of a time range): the cursor would walk
//! the primary key `(tenant_id, seq)` from seq 0 and filter on time, so a late range on a large
//! tenant would read its whole history, perhaps for longer than `statement_timeout` in one
//! `FETCH`. So before the cursor, in the same transaction (the same snapshot), [`span_sql`]
//! asks the time index for the least and greatest seq in the range, and the cursor walks only
//! `seq BETWEEN` those (the time filter still applied); no match, no cursor.
//!
//! **Memory.** Rows are gathered into batches that end at the batch size or at
//! [`EXPORT_BATCH_BYTES`]. Each `FETCH` asks for about [`EXPORT_BATCH_BYTES`] of rows the size
//! of the largest row seen so far: [`FIRST_FETCH`] rows at first, then between 1 and
//! [`FETCH_ROWS`] (16 rows of 256 KiB events, 1,000 of typical ones). So one batch plus the rows
//! of one `FETCH` are in memory at a time, each about 4 MiB, whatever the events' size. The
//! exception is a `FETCH` whose rows turn out much larger than every row before (small events,
//! then a run of large ones): up to [`FETCH_ROWS`] of them, after which the size adapts. A
//! fixed `FETCH` of 250 rows would bound that case 4× lower but made the common case (small
//! events) ~9% slower (BENCHMARKS.md).
//!
//! Timeouts: each `FETCH` is one statement, under the connection's `statement_timeout` like
//! any read, and bounded on the client side too ([`super::pool::Pool::bounded`]); a batch
//! takes milliseconds, so a long export is never cut by them. Between statements the
//! transaction is idle while the consumer works through the batches already read: the export
//! raises `idle_in_transaction_session_timeout` for its own transaction to [`EXPORT_IDLE`], so
//! a slow client does not lose its export, while a consumer that takes nothing for that long
//! ends it (with an error, never a silently short export) and frees the snapshot for vacuum.
//!
//! When the consumer drops the receiver, the producer stops at its next batch, rolls the
//! transaction back and returns the connection to the pool (a connection whose statement did
//! not finish, or whose rollback failed, is closed instead, as everywhere in this backend).
//! An export holds one of `max_connections` for its whole run.

use super::pool::{unavailable, Conn, Pool};
use super::read::{direction, event_from_row, filters, EVENT_COLS, P};
use super::tree::{size_tx, snapshot};
use crate::EXPORT_BATCH_BYTES;
use crate::{export_event_bytes, EventBatches, EventQuery, ExportRequest, StoreError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Transaction;
use trailkeep_core::StoredEvent;

/// The longest an export's transaction may stay idle waiting for its consumer.
pub(crate) const EXPORT_IDLE: Duration = Duration::from_secs(300);

/// Most rows one `FETCH` asks for (fewer when rows are large, see the module doc).
const FETCH_ROWS: usize = 1_000;

/// Rows the first `FETCH` asks for, before any row's size is known.
const FIRST_FETCH: usize = 32;

type Batches = mpsc::Sender<Result<Vec<StoredEvent>, StoreError>>;

/// Starts an export: returns once the snapshot is taken, the batches following on the receiver.
pub(crate) async fn start(
    pool: &Arc<Pool>,
    req: ExportRequest,
    batch: usize,
) -> Result<EventBatches, StoreError> {
    let conn = pool.get().await?;
    let (ready_tx, ready_rx) = oneshot::channel();
    let (tx, rx) = mpsc::channel(crate::EXPORT_READ_AHEAD);
    let pool = pool.clone();
    tokio::spawn(async move {
        let mut conn = conn;
        if run(&pool, &mut conn, &req, batch, ready_tx, &tx).await {
            conn.release();
        }
        // Otherwise dropping `conn` closes the connection.
    });
    match ready_rx.await {
        Ok(Ok(())) => Ok(rx),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(StoreError::Unavailable(
            "the export stopped before its snapshot was taken".into(),
        )),
    }
}

/// `seq < tree_size`, if the request has one.
fn below_tree_size(sql: &mut super::read::Sql, req: &ExportRequest) {
    if let Some(n) = req.tree_size {
        // `tree_size` was checked against the tenant's size, which fits an i64.
        let p = sql.bind(P::I(i64::try_from(n).unwrap_or(i64::MAX)));
        sql.conds.push(format!("seq < {p}"));
    }
}

/// For a log-order export with a time filter, the SQL of the least and greatest seq in the
/// time range (and below the tree size); `None` for any other export.
///
/// `seq + 0` keeps the planner from answering `min`/`max` by walking the primary key from one
/// end until a row in the range turns up (it would assume the range's rows are spread evenly
/// over the seqs, while a late range is all at the end): the aggregate reads the time index
/// range `(tenant_id, ts_nanos, …)` instead.
fn span_sql(req: &ExportRequest) -> Option<(String, super::read::Sql)> {
    let q = &req.query;
    if !req.log_order || (q.since.is_none() && q.until.is_none()) {
        return None;
    }
    let mut sql = filters(&EventQuery {
        tenant_id: q.tenant_id.clone(),
        since: q.since,
        until: q.until,
        ..EventQuery::default()
    });
    below_tree_size(&mut sql, req);
    let text = format!(
        "SELECT min(seq + 0), max(seq + 0) FROM events {}",
        sql.where_clause()
    );
    Some((text, sql))
}

/// The SQL of an export's cursor and its parameters; `span` the seqs a log-order export with a
/// time filter walks (see [`span_sql`]).
fn cursor_sql(req: &ExportRequest, span: Option<(i64, i64)>) -> (String, super::read::Sql) {
    let mut sql = filters(&req.query);
    below_tree_size(&mut sql, req);
    if let Some((lo, hi)) = span {
        let (a, b) = (sql.bind(P::I(lo)), sql.bind(P::I(hi)));
        sql.conds.push(format!("seq BETWEEN {a} AND {b}"));
    }
    let order = if req.log_order {
        "seq ASC".to_string()
    } else {
        let dir = direction(req.query.order);
        format!("ts_nanos {dir}, event_id {dir}")
    };
    let text = format!(
        "DECLARE trailkeep_export NO SCROLL CURSOR FOR SELECT {EVENT_COLS} FROM events {} ORDER BY {order}",
        sql.where_clause()
    );
    (text, sql)
}

/// Runs one export on `conn`; whether the connection is clean (its transaction rolled back)
/// and may go back to the pool.
async fn run(
    pool: &Pool,
    conn: &mut Conn,
    req: &ExportRequest,
    batch: usize,
    ready: oneshot::Sender<Result<(), StoreError>>,
    out: &Batches,
) -> bool {
    let tx = match pool.bounded(snapshot(conn)).await {
        Some(Ok(tx)) => tx,
        Some(Err(e)) => {
            let _ = ready.send(Err(e));
            return false;
        }
        None => {
            let _ = ready.send(Err(pool.no_answer()));
            return false;
        }
    };
    // Fix the snapshot (the first statement does) and open the cursor.
    let opened = pool
        .bounded(async {
            tx.batch_execute(&format!(
                "SET LOCAL idle_in_transaction_session_timeout = {}",
                EXPORT_IDLE.as_millis()
            ))
            .await
            .map_err(unavailable)?;
            if let Some(tenant) = &req.query.tenant_id {
                req.check_tree_size(size_tx(&tx, tenant).await?)?;
            }
            let span = match span_sql(req) {
                None => None,
                Some((text, sql)) => {
                    let row = tx
                        .query_one(text.as_str(), &sql.refs())
                        .await
                        .map_err(unavailable)?;
                    let lo: Option<i64> = row.try_get(0).map_err(unavailable)?;
                    let hi: Option<i64> = row.try_get(1).map_err(unavailable)?;
                    match lo.zip(hi) {
                        Some(span) => Some(span),
                        // Nothing in the range: nothing to export.
                        None => return Ok(false),
                    }
                }
            };
            let (text, sql) = cursor_sql(req, span);
            tx.execute(text.as_str(), &sql.refs())
                .await
                .map_err(unavailable)?;
            Ok::<bool, StoreError>(true)
        })
        .await;
    match opened {
        Some(Ok(true)) => {}
        Some(Ok(false)) => {
            // Nothing matches: the receiver ends without a batch.
            let _ = ready.send(Ok(()));
            return rollback(pool, tx).await;
        }
        Some(Err(e)) => {
            let _ = ready.send(Err(e));
            return rollback(pool, tx).await;
        }
        None => {
            let _ = ready.send(Err(pool.no_answer()));
            return false;
        }
    }
    if ready.send(Ok(())).is_err() {
        // The caller went away before it got the receiver.
        return rollback(pool, tx).await;
    }
    match produce(pool, &tx, req, batch, out).await {
        Ok(()) => rollback(pool, tx).await,
        Err(e) => {
            let _ = out.send(Err(e)).await;
            false
        }
    }
}

/// Fetches, filters and sends batches until the cursor is done or the consumer went away.
async fn produce(
    pool: &Pool,
    tx: &Transaction<'_>,
    req: &ExportRequest,
    batch: usize,
    out: &Batches,
) -> Result<(), StoreError> {
    let mut events = Vec::with_capacity(batch.min(4096));
    // Bytes of `events`, as `EXPORT_BATCH_BYTES` counts them.
    let mut bytes = 0;
    let mut rows_wanted = FIRST_FETCH;
    // The largest row so far, as `EXPORT_BATCH_BYTES` counts it.
    let mut largest = 0;
    loop {
        if out.is_closed() {
            return Ok(());
        }
        let fetch = format!("FETCH FORWARD {rows_wanted} FROM trailkeep_export");
        let rows = match pool.bounded(tx.query(fetch.as_str(), &[])).await {
            Some(r) => r.map_err(unavailable)?,
            None => return Err(pool.no_answer()),
        };
        let last = rows.len() < rows_wanted;
        for r in &rows {
            let e = event_from_row(r)?;
            let size = export_event_bytes(&e);
            largest = largest.max(size);
            if req.query.matches(&e) {
                bytes += size;
                events.push(e);
            }
            if events.len() == batch || bytes >= EXPORT_BATCH_BYTES {
                let full = std::mem::replace(&mut events, Vec::with_capacity(batch.min(4096)));
                bytes = 0;
                if out.send(Ok(full)).await.is_err() {
                    return Ok(());
                }
            }
        }
        rows_wanted = (EXPORT_BATCH_BYTES / largest.max(1)).clamp(1, FETCH_ROWS);
        if last {
            if !events.is_empty() {
                let _ = out.send(Ok(events)).await;
            }
            return Ok(());
        }
    }
}

/// Ends the export's transaction; whether the connection is clean.
async fn rollback(pool: &Pool, tx: Transaction<'_>) -> bool {
    matches!(pool.bounded(tx.rollback()).await, Some(Ok(())))
}
