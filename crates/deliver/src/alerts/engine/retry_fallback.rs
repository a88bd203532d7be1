//! A stand-in for `alerts::retry` with its public shape (`RetryPolicy`, `Next`), used until
//! that module is built; removed then.

use crate::alerts::Attempt;
use std::time::Duration;

/// What to do after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Done,
    RetryAfter(Duration),
    Dead(String),
}

/// Exponential backoff from `base` (capped at `max_backoff`), a receiver's `Retry-After` used
/// as given (capped); refused alerts die after `refused_attempts`, failing ones after
/// `give_up_after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    pub base: Duration,
    pub max_backoff: Duration,
    pub refused_attempts: u32,
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(60),
            refused_attempts: 3,
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    pub fn next(&self, attempts: u32, failing_for: Duration, last: &Attempt) -> Next {
        let backoff = self
            .base
            .saturating_mul(1u32 << attempts.saturating_sub(1).min(20))
            .min(self.max_backoff);
        match last {
            Attempt::Delivered { .. } => Next::Done,
            Attempt::Refused { error, .. } if attempts >= self.refused_attempts => {
                Next::Dead(format!("refused {attempts} times: {error}"))
            }
            Attempt::Refused { .. } => Next::RetryAfter(backoff),
            Attempt::Retry { error, .. } if failing_for >= self.give_up_after => Next::Dead(
                format!("still failing after {}s: {error}", failing_for.as_secs()),
            ),
            Attempt::Retry { after, .. } => {
                Next::RetryAfter(after.map_or(backoff, |a| a.min(self.max_backoff)))
            }
        }
    }
}
