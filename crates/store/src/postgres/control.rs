//! Control locks of the PostgreSQL store ([`crate::Store::control_lock`]): per tenant, across
//! every process on the database.
//!
//! A lock is a session-level advisory lock, `pg_advisory_lock(key)`, where `key` is the first
//! eight bytes of SHA-256 of `trailkeep.control` NUL tenant (two tenants whose keys collide,
//! odds 2^-64, merely wait for each other). It is taken on a connection checked out of the
//! pool, which the guard keeps: the lock lives exactly as long as that session, so a process
//! that dies releases its locks with its connections. Dropping the guard spawns a task that
//! runs `pg_advisory_unlock` and only then returns the connection to the pool; if the unlock
//! fails, does not answer within the operation bound, or there is no runtime to run it on, the
//! connection is closed instead (the server then ends the session and releases the lock), so a
//! pooled connection never holds a lock.
//!
//! Waiters of one process first queue on an in-memory per-tenant mutex (the embedded store's
//! [`ControlLocks`]), so a process has at most one connection per tenant waiting on the
//! database, and requests queued behind a lock do not use up the pool its holder needs for
//! its reads and append. Every wait is bounded: the in-process one by `lock_timeout`, the
//! database one by `lock_timeout` too (advisory locks honour it) and by the operation bound,
//! after which the request fails with `Unavailable`.

use super::pool::{describe, Conn, Pool};
use crate::embedded::control::ControlLocks;
use crate::{ControlGuard, StoreError};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// The advisory lock key of a tenant's control lock.
pub(crate) fn lock_key(tenant: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"trailkeep.control\0");
    h.update(tenant.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    i64::from_be_bytes(first)
}

/// Holds the advisory lock on its connection; releases it when dropped (see the module doc).
struct Advisory {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    key: i64,
    tenant: String,
}

impl Drop for Advisory {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            // No runtime to unlock on: closing the connection ends the session and its lock.
            drop(conn);
            return;
        };
        let (pool, key, tenant) = (
            self.pool.clone(),
            self.key,
            std::mem::take(&mut self.tenant),
        );
        rt.spawn(async move {
            let unlocked = pool
                .bounded(conn.query_one("SELECT pg_advisory_unlock($1)", &[&key]))
                .await;
            match unlocked {
                Some(Ok(row)) if row.try_get::<_, bool>(0).unwrap_or(false) => conn.release(),
                other => {
                    let why = match other {
                        Some(Ok(_)) => "the session did not hold it".to_string(),
                        Some(Err(e)) => describe(&e),
                        None => "no answer within the operation bound".to_string(),
                    };
                    tracing::warn!(tenant = %tenant, problem = %why, "could not release a control lock on its connection; closing the connection instead (which releases it)");
                    drop(conn);
                }
            }
        });
    }
}

/// Takes the control lock of `tenant` (see the module doc).
pub(crate) async fn lock(
    pool: &Arc<Pool>,
    local: &ControlLocks,
    tenant: &str,
) -> Result<ControlGuard, StoreError> {
    let t = pool.timeouts;
    let local_wait = if t.lock.is_zero() {
        t.operation()
    } else {
        t.lock
    };
    let in_process = tokio::time::timeout(local_wait, local.lock(tenant))
        .await
        .map_err(|_| busy(tenant, local_wait))?;
    let conn = pool.get().await?;
    let key = lock_key(tenant);
    // Dropped (closed) unless the lock was taken: a lock granted just as the client gave up
    // goes with the session.
    match pool
        .bounded(conn.execute("SELECT pg_advisory_lock($1)", &[&key]))
        .await
    {
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            if e.as_db_error().is_some() {
                // A refusal (lock_timeout): the session holds nothing and stays usable.
                let timed_out = e
                    .as_db_error()
                    .is_some_and(|db| db.code().code() == "55P03");
                conn.release();
                if timed_out {
                    return Err(busy(tenant, t.lock));
                }
            }
            return Err(StoreError::Unavailable(format!(
                "cannot take the control lock of tenant {tenant}: PostgreSQL: {}",
                describe(&e)
            )));
        }
        None => return Err(pool.no_answer()),
    }
    let advisory = Advisory {
        conn: Some(conn),
        pool: pool.clone(),
        key,
        tenant: tenant.to_string(),
    };
    // Dropped in this order: the database lock first, then the in-process one.
    Ok(ControlGuard::new((advisory, in_process)))
}

fn busy(tenant: &str, waited: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "the control lock of tenant {tenant} stayed held by another request for {} ms (lock_timeout); try again",
        waited.as_millis()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_differ_per_tenant_and_are_stable() {
        assert_eq!(lock_key("acme"), lock_key("acme"));
        assert_ne!(lock_key("acme"), lock_key("acme2"));
        assert_ne!(lock_key(""), lock_key("a"));
    }
}
