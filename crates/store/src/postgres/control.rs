//! Control locks of the PostgreSQL store ([`crate::Store::control_lock`]): by name, across
//! every process on the database.
//!
//! A lock is a session-level advisory lock, `pg_advisory_lock(key)`, where `key` is the first
//! eight bytes of SHA-256 of `trailkeep.control` NUL name (two names whose keys collide, odds
//! 2^-64, merely wait for each other). One acquisition takes all its names' locks in one
//! statement, in ascending key order (so two acquisitions never wait for each other in a
//! cycle), on one connection checked out of the pool, which the guard keeps: the locks live
//! exactly as long as that session, so a process that dies releases its locks with its
//! connections. Dropping the guard spawns a task that runs `pg_advisory_unlock_all()` and only
//! then returns the connection to the pool; if that fails, does not answer within the
//! operation bound, or there is no runtime to run it on, the connection is closed instead (the
//! server then ends the session and releases the locks), so a pooled connection never holds a
//! lock.
//!
//! Waiters of one process first queue on in-memory mutexes by name (the embedded store's
//! [`ControlLocks`]), so a process has at most one connection per name waiting on the
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

/// The advisory lock key of a control lock's name.
pub(crate) fn lock_key(name: &str) -> i64 {
    let mut h = Sha256::new();
    h.update(b"trailkeep.control\0");
    h.update(name.as_bytes());
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    i64::from_be_bytes(first)
}

/// Holds the advisory lock on its connection; releases it when dropped (see the module doc).
struct Advisory {
    conn: Option<Conn>,
    pool: Arc<Pool>,
    names: String,
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
        let (pool, names) = (self.pool.clone(), std::mem::take(&mut self.names));
        rt.spawn(async move {
            let unlocked = pool
                .bounded(conn.execute("SELECT pg_advisory_unlock_all()", &[]))
                .await;
            match unlocked {
                Some(Ok(_)) => conn.release(),
                other => {
                    let why = match other {
                        Some(Err(e)) => describe(&e),
                        _ => "no answer within the operation bound".to_string(),
                    };
                    tracing::warn!(locks = %names, problem = %why, "could not release control locks on their connection; closing the connection instead (which releases them)");
                    drop(conn);
                }
            }
        });
    }
}

/// Takes the control locks of `names` (see the module doc).
pub(crate) async fn lock(
    pool: &Arc<Pool>,
    local: &ControlLocks,
    names: &[String],
) -> Result<ControlGuard, StoreError> {
    let ordered = crate::embedded::control::ordered(names);
    if ordered.is_empty() {
        return Ok(ControlGuard::new(()));
    }
    let shown = ordered.join(", ");
    let t = pool.timeouts;
    let local_wait = if t.lock.is_zero() {
        t.operation()
    } else {
        t.lock
    };
    let in_process = tokio::time::timeout(local_wait, local.lock_all(names))
        .await
        .map_err(|_| busy(&shown, local_wait))?;
    let conn = pool.get().await?;
    let mut keys: Vec<i64> = ordered.iter().map(|n| lock_key(n)).collect();
    keys.sort_unstable();
    keys.dedup();
    // `unnest` yields the keys in array order, so they are locked in ascending order. Dropped
    // (closed) unless every lock was taken: locks granted just as the client gave up go with
    // the session.
    match pool
        .bounded(conn.execute(
            "SELECT pg_advisory_lock(k) FROM unnest($1::bigint[]) AS k",
            &[&keys],
        ))
        .await
    {
        Some(Ok(_)) => {}
        Some(Err(e)) => {
            if e.as_db_error().is_some() {
                // A refusal (lock_timeout): the statement failed, so locks it took before
                // the one it waited for are still held: release them, or close.
                let timed_out = e
                    .as_db_error()
                    .is_some_and(|db| db.code().code() == "55P03");
                if let Some(Ok(_)) = pool
                    .bounded(conn.execute("SELECT pg_advisory_unlock_all()", &[]))
                    .await
                {
                    conn.release();
                }
                if timed_out {
                    return Err(busy(&shown, t.lock));
                }
            }
            return Err(StoreError::Unavailable(format!(
                "cannot take the control locks of {shown}: PostgreSQL: {}",
                describe(&e)
            )));
        }
        None => return Err(pool.no_answer()),
    }
    let advisory = Advisory {
        conn: Some(conn),
        pool: pool.clone(),
        names: shown,
    };
    // Dropped in this order: the database locks first, then the in-process ones.
    Ok(ControlGuard::new((advisory, in_process)))
}

fn busy(names: &str, waited: Duration) -> StoreError {
    StoreError::Unavailable(format!(
        "a control lock of {names} stayed held by another request for {} ms (lock_timeout); try again",
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
