//! What every backend checks and computes the same way for delivery: the arguments of
//! [`Store::read_log_matching`](crate::Store::read_log_matching), delivery cursors and leases,
//! and where a filtered log read continues.
//!
//! Delivery (alert channels, sinks) reads each tenant's log as its outbox: a loop reads what
//! matches its filter with `read_log_matching`, delivers it, and saves where it got to in a
//! named cursor; with several PostgreSQL servers, a lease decides which one runs the loop of a
//! destination. The backends only store; the checks here make both refuse the same inputs with
//! the same messages.

use crate::{StoreError, LOG_SCAN_WINDOW};
use std::collections::BTreeMap;
use std::time::Duration;

/// Longest cursor or lease name, in bytes (names are short: `alerts/ops-chat`, `sinks/gcl`).
pub(crate) const NAME_MAX: usize = 200;

/// Longest lease: a holder that dies keeps the others waiting this long at most.
pub(crate) const LEASE_TTL_MAX: Duration = Duration::from_secs(24 * 3600);

/// Refuses a `limit` of 0 for a filtered log read.
pub(crate) fn check_limit(limit: usize) -> Result<(), StoreError> {
    if limit == 0 {
        return Err(StoreError::Invalid(
            "read_log_matching needs a limit of at least 1".into(),
        ));
    }
    Ok(())
}

/// Where a filtered log read of `from..` on a log of `size` seqs stops looking when it does
/// not reach its limit: the end of the window, or the log's end (never before `from`).
pub(crate) fn window_end(from: u64, size: u64) -> u64 {
    from.saturating_add(LOG_SCAN_WINDOW).min(size).max(from)
}

/// A cursor or lease name: 1 to [`NAME_MAX`] bytes, no control characters.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::Invalid(format!(
            "a {what} name must not be empty"
        )));
    }
    if name.len() > NAME_MAX {
        return Err(StoreError::Invalid(format!(
            "the {what} name {:?}… is {} bytes long; at most {NAME_MAX} are allowed",
            name.chars().take(40).collect::<String>(),
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "the {what} name {name:?} holds a control character"
        )));
    }
    Ok(())
}

/// Checks the positions of a cursor save and returns them as a map (a tenant given twice:
/// the last position wins). Tenants must be named; positions fit a PostgreSQL `bigint`.
pub(crate) fn check_positions(
    name: &str,
    positions: &[(String, u64)],
) -> Result<BTreeMap<String, u64>, StoreError> {
    check_name("cursor", name)?;
    let mut out = BTreeMap::new();
    for (tenant, seq) in positions {
        if tenant.is_empty() {
            return Err(StoreError::Invalid(format!(
                "a position of cursor {name:?} has an empty tenant id"
            )));
        }
        if i64::try_from(*seq).is_err() {
            return Err(StoreError::Invalid(format!(
                "the position {seq} of tenant {tenant} in cursor {name:?} is beyond any log (at most {})",
                i64::MAX
            )));
        }
        out.insert(tenant.clone(), *seq);
    }
    Ok(out)
}

/// Checks a lease request: a name, a holder, and a ttl from a millisecond to
/// [`LEASE_TTL_MAX`].
pub(crate) fn check_lease(name: &str, holder: &str, ttl: Duration) -> Result<(), StoreError> {
    check_name("lease", name)?;
    check_name("lease holder", holder)?;
    if ttl < Duration::from_millis(1) {
        return Err(StoreError::Invalid(format!(
            "the lease {name:?} needs a ttl of at least a millisecond (got {ttl:?})"
        )));
    }
    if ttl > LEASE_TTL_MAX {
        return Err(StoreError::Invalid(format!(
            "the lease {name:?} asks for a ttl of {ttl:?}; at most a day is allowed (a holder that dies would block delivery that long)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_end_stops_at_the_window_or_the_log() {
        assert_eq!(window_end(0, 10), 10);
        assert_eq!(window_end(0, 1 << 20), LOG_SCAN_WINDOW);
        assert_eq!(window_end(5, LOG_SCAN_WINDOW * 2), 5 + LOG_SCAN_WINDOW);
        assert_eq!(window_end(20, 10), 20, "never before from");
        assert_eq!(window_end(u64::MAX - 1, u64::MAX), u64::MAX);
    }

    #[test]
    fn names_positions_and_leases_are_checked() {
        assert!(check_name("cursor", "alerts/ops-chat").is_ok());
        assert!(check_name("cursor", "").is_err());
        assert!(check_name("cursor", &"x".repeat(NAME_MAX + 1)).is_err());
        assert!(check_name("cursor", "a\nb").is_err());
        let m = check_positions("c", &[("a".into(), 1), ("b".into(), 2), ("a".into(), 3)]).unwrap();
        assert_eq!(m.get("a"), Some(&3));
        assert_eq!(m.len(), 2);
        assert!(check_positions("c", &[(String::new(), 1)]).is_err());
        assert!(check_positions("c", &[("a".into(), u64::MAX)]).is_err());
        assert!(check_lease("l", "h", Duration::from_secs(1)).is_ok());
        assert!(check_lease("l", "h", Duration::ZERO).is_err());
        assert!(check_lease("l", "", Duration::from_secs(1)).is_err());
        assert!(check_lease("l", "h", LEASE_TTL_MAX + Duration::from_secs(1)).is_err());
    }
}
