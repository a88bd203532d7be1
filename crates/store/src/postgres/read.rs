//! Reads of the PostgreSQL store: point lookups, filtered listings, log reads, tenants, stats.
//!
//! A listing is one SQL query with every filter in its `WHERE` (so the planner can use the
//! `(tenant, field, ts, event_id)` indexes) and keyset pagination on `(ts_nanos, event_id)`;
//! `q` (substring over payload and actor) is checked in Rust with [`EventQuery::matches`] on
//! fetched chunks until the page is full. Every row is re-checked against all filters, as in
//! the embedded store.

use super::pool::unavailable;
use crate::{
    EventPage, EventQuery, Order, Stats, StatsQuery, StoreError, TenantSummary, TypeFilter,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

/// Every column of `events`, in the order [`event_from_row`] reads them.
pub(crate) const EVENT_COLS: &str = "tenant_id, seq, event_id, event_type, actor, ts_nanos, \
    ts_digits, ts_assigned, received_nanos, source_ip, session, approval_id, payload, salt, \
    payload_commitment, leaf_hash";

fn hash32(v: Option<Vec<u8>>, what: &str) -> Result<Option<[u8; 32]>, StoreError> {
    match v {
        None => Ok(None),
        Some(b) => b
            .try_into()
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("stored {what} is not 32 bytes"))),
    }
}

fn digits(d: i16) -> Result<u8, StoreError> {
    match d {
        3 | 6 | 9 => Ok(d as u8),
        _ => Err(StoreError::Corrupt(format!("stored timestamp digits {d}"))),
    }
}

/// Decodes a row selected with [`EVENT_COLS`].
pub(crate) fn event_from_row(r: &Row) -> Result<StoredEvent, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Corrupt(format!("event row: {e}"));
    let seq: i64 = r.try_get(1).map_err(bad)?;
    let leaf: Vec<u8> = r.try_get(15).map_err(bad)?;
    Ok(StoredEvent {
        tenant_id: r.try_get(0).map_err(bad)?,
        seq: u64::try_from(seq).map_err(|_| StoreError::Corrupt("negative seq".into()))?,
        event_id: r.try_get(2).map_err(bad)?,
        event_type: r.try_get(3).map_err(bad)?,
        actor: r.try_get(4).map_err(bad)?,
        timestamp: Timestamp::from_nanos(
            r.try_get(5).map_err(bad)?,
            digits(r.try_get(6).map_err(bad)?)?,
        ),
        timestamp_assigned: r.try_get(7).map_err(bad)?,
        received_at: Timestamp::from_nanos(r.try_get(8).map_err(bad)?, 6),
        source_ip: r.try_get(9).map_err(bad)?,
        impersonation_session: r.try_get(10).map_err(bad)?,
        approval_id: r.try_get(11).map_err(bad)?,
        payload: r.try_get(12).map_err(bad)?,
        payload_salt: hash32(r.try_get(13).map_err(bad)?, "salt")?,
        payload_commitment: hash32(r.try_get(14).map_err(bad)?, "payload commitment")?,
        leaf_hash: hash32(Some(leaf), "leaf hash")?
            .ok_or_else(|| StoreError::Corrupt("leaf hash".into()))?,
    })
}

pub(crate) async fn get_event(c: &Client, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {EVENT_COLS} FROM events WHERE event_id = $1"),
            &[&id],
        )
        .await
        .map_err(unavailable)?;
    row.as_ref().map(event_from_row).transpose()
}

pub(crate) async fn read_log(
    c: &Client,
    tenant: &str,
    from: u64,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let Ok(from) = i64::try_from(from) else {
        return Ok(Vec::new());
    };
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = c
        .query(
            &format!(
                "SELECT {EVENT_COLS} FROM events WHERE tenant_id = $1 AND seq >= $2 \
                 ORDER BY seq LIMIT $3"
            ),
            &[&tenant, &from, &limit],
        )
        .await
        .map_err(unavailable)?;
    rows.iter().map(event_from_row).collect()
}

/// A query parameter (the kinds listings and stats bind).
#[derive(Clone)]
pub(crate) enum P {
    S(String),
    I(i64),
    U(Uuid),
}

/// Builds `WHERE` clauses and their parameters.
#[derive(Default, Clone)]
pub(crate) struct Sql {
    pub conds: Vec<String>,
    params: Vec<P>,
}

impl Sql {
    pub fn bind(&mut self, v: P) -> String {
        self.params.push(v);
        format!("${}", self.params.len())
    }
    pub fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.params
            .iter()
            .map(|p| match p {
                P::S(s) => s as &(dyn ToSql + Sync),
                P::I(i) => i as &(dyn ToSql + Sync),
                P::U(u) => u as &(dyn ToSql + Sync),
            })
            .collect()
    }
    pub fn where_clause(&self) -> String {
        if self.conds.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conds.join(" AND "))
        }
    }
}

/// The `WHERE` conditions of a listing's filters (tenant, type, actor, session, time; not the
/// cursor, and not `q`, which is checked in Rust).
pub(crate) fn filters(q: &EventQuery) -> Sql {
    let mut sql = Sql::default();
    if let Some(t) = &q.tenant_id {
        let p = sql.bind(P::S(t.clone()));
        sql.conds.push(format!("tenant_id = {p}"));
    }
    match &q.event_type {
        Some(TypeFilter::Exact(t)) => {
            let p = sql.bind(P::S(t.clone()));
            sql.conds.push(format!("event_type = {p}"));
        }
        Some(TypeFilter::Prefix(pre)) => {
            let p = sql.bind(P::S(pre.clone()));
            sql.conds.push(format!("starts_with(event_type, {p})"));
        }
        None => {}
    }
    if let Some(a) = &q.actor {
        let p = sql.bind(P::S(a.clone()));
        sql.conds.push(format!("actor = {p}"));
    }
    if let Some(s) = &q.session {
        let p = sql.bind(P::S(s.clone()));
        sql.conds.push(format!("session = {p}"));
    }
    if let Some(s) = q.since {
        let p = sql.bind(P::I(s.nanos));
        sql.conds.push(format!("ts_nanos >= {p}"));
    }
    if let Some(u) = q.until {
        let p = sql.bind(P::I(u.nanos));
        sql.conds.push(format!("ts_nanos < {p}"));
    }
    sql
}

/// The SQL direction of a listing order.
pub(crate) fn direction(order: Order) -> &'static str {
    match order {
        Order::Asc => "ASC",
        Order::Desc => "DESC",
    }
}

pub(crate) async fn query(c: &Client, q: &EventQuery) -> Result<EventPage, StoreError> {
    let limit = q.limit.max(1);
    let sql = filters(q);
    let dir = direction(q.order);
    let cmp = match q.order {
        Order::Asc => ">",
        Order::Desc => "<",
    };
    // Without `q` every row the SQL returns matches, so limit + 1 rows decide the page; with it,
    // rows are fetched in larger chunks and filtered here.
    let chunk = if q.q.is_some() {
        (limit + 1).max(500)
    } else {
        limit + 1
    };
    let chunk_i = i64::try_from(chunk).unwrap_or(i64::MAX);
    let mut after: Option<(i64, Uuid)> = q.cursor.map(|c| (c.ts_nanos, c.event_id));
    let mut events = Vec::with_capacity(limit.min(1024));
    let mut more = false;
    'outer: loop {
        let mut s = sql.clone();
        if let Some((ts, id)) = after {
            let a = s.bind(P::I(ts));
            let b = s.bind(P::U(id));
            s.conds
                .push(format!("(ts_nanos, event_id) {cmp} ({a}, {b})"));
        }
        let l = s.bind(P::I(chunk_i));
        let text = format!(
            "SELECT {EVENT_COLS} FROM events {} ORDER BY ts_nanos {dir}, event_id {dir} LIMIT {l}",
            s.where_clause()
        );
        let rows = c.query(&text, &s.refs()).await.map_err(unavailable)?;
        let n = rows.len();
        for r in &rows {
            let e = event_from_row(r)?;
            after = Some((e.timestamp.nanos, e.event_id));
            if !q.matches(&e) {
                continue;
            }
            if events.len() == limit {
                more = true;
                break 'outer;
            }
            events.push(e);
        }
        if n < chunk {
            break;
        }
    }
    Ok(EventPage::new(events, more, q.order))
}

pub(crate) async fn tenants(c: &Client) -> Result<Vec<TenantSummary>, StoreError> {
    let rows = c
        .query(
            "SELECT tenant_id, event_count, first_ts, first_digits, last_ts, last_digits \
             FROM tenants WHERE event_count > 0 ORDER BY tenant_id COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(unavailable)?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let bad = |e: tokio_postgres::Error| StoreError::Corrupt(format!("tenant row: {e}"));
        let ts = |n: Option<i64>, d: Option<i16>| -> Result<Option<Timestamp>, StoreError> {
            match (n, d) {
                (Some(n), Some(d)) => Ok(Some(Timestamp::from_nanos(n, digits(d)?))),
                _ => Ok(None),
            }
        };
        let count: i64 = r.try_get(1).map_err(bad)?;
        out.push(TenantSummary {
            tenant_id: r.try_get(0).map_err(bad)?,
            event_count: u64::try_from(count).unwrap_or(0),
            first_timestamp: ts(r.try_get(2).map_err(bad)?, r.try_get(3).map_err(bad)?)?,
            last_timestamp: ts(r.try_get(4).map_err(bad)?, r.try_get(5).map_err(bad)?)?,
        });
    }
    Ok(out)
}

const DAY_NANOS: i64 = 86_400_000_000_000;

/// Exact counts by type and UTC day, computed by PostgreSQL over the time index.
pub(crate) async fn stats(c: &Client, q: &StatsQuery) -> Result<Stats, StoreError> {
    let since = q.since.map(|t| t.nanos).unwrap_or(i64::MIN);
    let until = q.until.map(|t| t.nanos);
    let mut out = Stats::default();
    if until.is_some_and(|u| since >= u) {
        return Ok(out);
    }
    let mut sql = Sql::default();
    if let Some(t) = &q.tenant_id {
        let p = sql.bind(P::S(t.clone()));
        sql.conds.push(format!("tenant_id = {p}"));
    }
    let p = sql.bind(P::I(since));
    sql.conds.push(format!("ts_nanos >= {p}"));
    if let Some(u) = until {
        let p = sql.bind(P::I(u));
        sql.conds.push(format!("ts_nanos < {p}"));
    }
    // floor division (days before 1970 are negative)
    let text = format!(
        "SELECT event_type, floor(ts_nanos::numeric / {DAY_NANOS})::bigint AS day, count(*) \
         FROM events {} GROUP BY 1, 2",
        sql.where_clause()
    );
    let rows = c.query(&text, &sql.refs()).await.map_err(unavailable)?;
    for r in &rows {
        let bad = |e: tokio_postgres::Error| StoreError::Corrupt(format!("stats row: {e}"));
        let t: String = r.try_get(0).map_err(bad)?;
        let day: i64 = r.try_get(1).map_err(bad)?;
        let n: i64 = r.try_get(2).map_err(bad)?;
        let n = u64::try_from(n).unwrap_or(0);
        let day = i32::try_from(day).map_err(|_| StoreError::Corrupt("stats day".into()))?;
        *out.counts_by_type.entry(t).or_default() += n;
        *out.counts_by_day
            .entry(Timestamp::day_string(day))
            .or_default() += n;
        out.total += n;
    }
    Ok(out)
}
