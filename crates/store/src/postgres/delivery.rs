//! Delivery in the PostgreSQL store: filtered log reads, delivery cursors and leases.
//!
//! - A filtered log read is one statement: the tenant's row (its `next_seq`, the tree size)
//!   joined laterally with a range scan of the `(tenant_id, seq)` primary key over the window,
//!   the type filter in SQL (`event_type = ANY(…)` for exact types, `event_type LIKE ANY(…)`
//!   with `\`, `%` and `_` escaped for prefixes), `ORDER BY seq LIMIT`. The size and the events
//!   come from the statement's one snapshot, so the window never ends past what the events read
//!   could see: a `next_seq` never skips an event committed after the read.
//! - Cursors are rows of `delivery_cursors (name, tenant_id, next_seq, updated_at)`; a save is
//!   one upsert of every given position (one statement: all or none), so concurrent saves of one
//!   cursor by several servers each set their tenants and never lose the others'.
//! - A lease is a row of `delivery_leases (name, holder, expires_at)`, taken or renewed by one
//!   `INSERT … ON CONFLICT DO UPDATE … WHERE` (the holder renews; anyone takes an expired one)
//!   with the database's clock, so the servers' clocks need not agree. Two servers asking at
//!   once are decided by the row lock: one wins, the other sees its lease.
//!
//! Schema: `migrations/0002_delivery.sql`.

use super::pool::unavailable;
use super::read::{event_from_row, EVENT_COLS};
use crate::{DeliveryCursor, LogSlice, StoreError, TypeFilter};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// A `LIKE` pattern matching every text that starts with `prefix` (the default escape
/// character `\` before `\`, `%` and `_`).
pub(crate) fn like_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len() + 2);
    for ch in prefix.chars() {
        if matches!(ch, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(ch);
    }
    out.push('%');
    out
}

/// [`crate::Store::read_log_matching`] in one statement (see the module doc).
pub(crate) async fn read_log_matching(
    c: &Client,
    tenant: &str,
    from: u64,
    types: &[TypeFilter],
    limit: usize,
) -> Result<LogSlice, StoreError> {
    crate::delivery::check_limit(limit)?;
    let empty = LogSlice {
        events: Vec::new(),
        next_seq: from,
    };
    // Seqs are bigints: a log never reaches a position beyond them.
    let Ok(from_i) = i64::try_from(from) else {
        return Ok(empty);
    };
    let window_end = i64::try_from(crate::delivery::window_end(from, u64::MAX)).unwrap_or(i64::MAX);
    let limit_i = i64::try_from(limit).unwrap_or(i64::MAX);
    let exact: Vec<String> = types
        .iter()
        .filter_map(|f| match f {
            TypeFilter::Exact(t) => Some(t.clone()),
            TypeFilter::Prefix(_) => None,
        })
        .collect();
    let prefixes: Vec<String> = types
        .iter()
        .filter_map(|f| match f {
            TypeFilter::Prefix(p) => Some(like_prefix(p)),
            TypeFilter::Exact(_) => None,
        })
        .collect();
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![&tenant, &from_i, &window_end, &limit_i];
    let mut conds = Vec::new();
    if !exact.is_empty() {
        params.push(&exact);
        conds.push(format!("e.event_type = ANY(${}::text[])", params.len()));
    }
    if !prefixes.is_empty() {
        params.push(&prefixes);
        conds.push(format!("e.event_type LIKE ANY(${}::text[])", params.len()));
    }
    let filter = if conds.is_empty() {
        String::new()
    } else {
        format!("AND ({})", conds.join(" OR "))
    };
    let cols: String = EVENT_COLS
        .split(',')
        .map(|c| format!("m.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let inner_cols: String = EVENT_COLS
        .split(',')
        .map(|c| format!("e.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    // One row per matching event, or one row with NULL event columns when none matches (the
    // tenant's size is still wanted); no row for a tenant without a log.
    let sql = format!(
        "SELECT {cols}, t.next_seq FROM tenants t LEFT JOIN LATERAL ( \
             SELECT {inner_cols} FROM events e \
             WHERE e.tenant_id = t.tenant_id AND e.seq >= $2 \
               AND e.seq < LEAST($3::bigint, t.next_seq) {filter} \
             ORDER BY e.seq LIMIT $4 \
         ) m ON true \
         WHERE t.tenant_id = $1 \
         ORDER BY m.seq"
    );
    let rows = c.query(&sql, &params).await.map_err(unavailable)?;
    let Some(first) = rows.first() else {
        return Ok(empty);
    };
    let bad = |e: tokio_postgres::Error| StoreError::Corrupt(format!("log read row: {e}"));
    let size: i64 = first.try_get(16).map_err(bad)?;
    let size = u64::try_from(size)
        .map_err(|_| StoreError::Corrupt(format!("tenant {tenant} has a negative next_seq")))?;
    let mut events = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq: Option<i64> = r.try_get(1).map_err(bad)?;
        if seq.is_some() {
            events.push(event_from_row(r)?);
        }
    }
    let next_seq = match events.last() {
        Some(last) if events.len() == limit => last.seq + 1,
        _ => crate::delivery::window_end(from, size),
    };
    Ok(LogSlice { events, next_seq })
}

pub(crate) async fn load_cursor(c: &Client, name: &str) -> Result<DeliveryCursor, StoreError> {
    crate::delivery::check_name("cursor", name)?;
    let rows = c
        .query(
            "SELECT tenant_id, next_seq FROM delivery_cursors WHERE name = $1",
            &[&name],
        )
        .await
        .map_err(unavailable)?;
    let mut out = DeliveryCursor::new();
    for r in &rows {
        let bad = |e: tokio_postgres::Error| StoreError::Corrupt(format!("cursor row: {e}"));
        let tenant: String = r.try_get(0).map_err(bad)?;
        let seq: i64 = r.try_get(1).map_err(bad)?;
        let seq = u64::try_from(seq).map_err(|_| {
            StoreError::Corrupt(format!(
                "delivery cursor {name:?} holds the negative position {seq} for tenant {tenant}"
            ))
        })?;
        out.insert(tenant, seq);
    }
    Ok(out)
}

/// Sets the given positions (already checked and deduplicated: one statement may not update a
/// row twice) in one upsert.
pub(crate) async fn save_cursor(
    c: &Client,
    name: &str,
    positions: &BTreeMap<String, u64>,
) -> Result<(), StoreError> {
    if positions.is_empty() {
        return Ok(());
    }
    let tenants: Vec<&str> = positions.keys().map(String::as_str).collect();
    // Checked to fit (`check_positions`).
    let seqs: Vec<i64> = positions
        .values()
        .map(|&s| i64::try_from(s).unwrap_or(i64::MAX))
        .collect();
    c.execute(
        "INSERT INTO delivery_cursors (name, tenant_id, next_seq, updated_at) \
         SELECT $1, u.tenant_id, u.next_seq, now() \
         FROM unnest($2::text[], $3::bigint[]) AS u(tenant_id, next_seq) \
         ON CONFLICT (name, tenant_id) DO UPDATE \
         SET next_seq = EXCLUDED.next_seq, updated_at = EXCLUDED.updated_at",
        &[&name, &tenants, &seqs],
    )
    .await
    .map_err(unavailable)?;
    Ok(())
}

/// Takes or renews a lease in one statement with the database's clock; `true` when `holder`
/// holds it afterwards.
pub(crate) async fn acquire_lease(
    c: &Client,
    name: &str,
    holder: &str,
    ttl: Duration,
) -> Result<bool, StoreError> {
    let secs = ttl.as_secs_f64();
    let row = c
        .query_opt(
            "INSERT INTO delivery_leases (name, holder, expires_at) \
             VALUES ($1, $2, now() + make_interval(secs => $3)) \
             ON CONFLICT (name) DO UPDATE \
             SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at \
             WHERE delivery_leases.holder = EXCLUDED.holder \
                OR delivery_leases.expires_at < now() \
             RETURNING holder",
            &[&name, &holder, &secs],
        )
        .await
        .map_err(unavailable)?;
    Ok(row.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_prefixes_escape_wildcards() {
        assert_eq!(like_prefix("billing."), "billing.%");
        assert_eq!(like_prefix("a_b%c\\d."), "a\\_b\\%c\\\\d.%");
    }
}
