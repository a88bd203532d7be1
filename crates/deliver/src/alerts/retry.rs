//! What to do after an attempt: done, try again after a delay, or give up (a dead letter).
//!
//! - [`Attempt::Delivered`] (2xx): done.
//! - [`Attempt::Retry`] (408, 429, 5xx, timeouts, connection errors): try again after the
//!   receiver's `Retry-After` if it sent one (capped at [`MAX_RETRY_AFTER`]), else after an
//!   exponential backoff with jitter: a random delay between `base` and
//!   `min(max_backoff, base × 2^(attempts − 1))`. Dead once the alert has been failing for
//!   `give_up_after` (24 h by default).
//! - [`Attempt::Refused`] (other 4xx: a bad URL, a revoked webhook): the receiver is unlikely to
//!   change its mind, so it is tried `refused_attempts` times in all (with backoff), then dead.
//!
//! Jitter spreads the retries of many alerts that failed together (an outage of the receiver)
//! instead of sending them again in lockstep.
//!
//! No retry comes sooner than `base` (500 ms) after the attempt before it, whatever the
//! receiver asked for (`Retry-After: 0`) or the jitter drew: a failing channel never sends back
//! to back.

use super::channel::{describe_duration, MAX_RETRY_AFTER};
use super::Attempt;
use rand::Rng;
use std::time::Duration;

/// When to give up, and how long to wait between attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The first backoff ceiling (500 ms); it doubles with each attempt. Also the shortest
    /// delay before any retry.
    pub base: Duration,
    /// The largest backoff ceiling (60 s).
    pub max_backoff: Duration,
    /// Attempts in all before a refused alert is dead (3).
    pub refused_attempts: u32,
    /// How long an alert may keep failing with retryable errors before it is dead (24 h).
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

/// The decision after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Delivered: nothing more to do.
    Done,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Give up: a dead letter, and why.
    Dead(String),
}

impl RetryPolicy {
    /// The decision after `attempts` attempts in all (counting `last`, so 1 after the first),
    /// the alert having been failing for `failing_for` (since its first failed attempt). A
    /// retry is never sooner than [`RetryPolicy::base`].
    pub fn next(&self, attempts: u32, failing_for: Duration, last: &Attempt) -> Next {
        self.next_with(attempts, failing_for, last, &mut rand::rng())
    }

    /// [`RetryPolicy::next`] with the jitter drawn from `rng`.
    pub fn next_with<R: Rng + ?Sized>(
        &self,
        attempts: u32,
        failing_for: Duration,
        last: &Attempt,
        rng: &mut R,
    ) -> Next {
        let attempts = attempts.max(1);
        match last {
            Attempt::Delivered { .. } => Next::Done,
            Attempt::Refused { error, .. } => {
                if attempts >= self.refused_attempts {
                    Next::Dead(format!(
                        "refused {attempts} time{} (last: {error}); check the channel's URL and the receiver",
                        if attempts == 1 { "" } else { "s" }
                    ))
                } else {
                    Next::RetryAfter(self.backoff(attempts, rng))
                }
            }
            Attempt::Retry { after, error, .. } => {
                if failing_for >= self.give_up_after {
                    Next::Dead(format!(
                        "failing for {} after {attempts} attempts, more than the {} allowed (last: {error})",
                        describe_duration(whole_seconds(failing_for)),
                        describe_duration(self.give_up_after)
                    ))
                } else {
                    match after {
                        Some(after) => {
                            Next::RetryAfter((*after).min(MAX_RETRY_AFTER).max(self.base))
                        }
                        None => Next::RetryAfter(self.backoff(attempts, rng)),
                    }
                }
            }
        }
    }

    /// The backoff ceiling after `attempts` attempts: `base × 2^(attempts − 1)`, at most
    /// `max_backoff`.
    pub fn ceiling(&self, attempts: u32) -> Duration {
        let doublings = attempts.max(1) - 1;
        let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
        self.base
            .checked_mul(factor)
            .unwrap_or(self.max_backoff)
            .min(self.max_backoff)
    }

    /// A delay drawn uniformly from [`RetryPolicy::base`] to [`RetryPolicy::ceiling`] (the
    /// base when `max_backoff` is below it).
    pub fn backoff<R: Rng + ?Sized>(&self, attempts: u32, rng: &mut R) -> Duration {
        let nanos = |d: Duration| d.as_nanos().min(u64::MAX as u128) as u64;
        let ceiling = nanos(self.ceiling(attempts));
        let floor = nanos(self.base).min(ceiling);
        Duration::from_nanos(rng.random_range(floor..=ceiling)).max(self.base)
    }
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}
