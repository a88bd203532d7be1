//! Rate limits on sending, shared by every channel of the process.
//!
//! A limit is a token bucket per key, kept as its "theoretical arrival time" (GCRA): each send
//! reserves the next free slot, `interval` after the previous one, and waits for it; up to
//! `burst` sends may go at once after a quiet spell. Reserving is immediate and in order, so
//! concurrent waiters on one key are spaced out rather than released together.
//!
//! Keys are `<kind>:<name>` ([`super::channel::Channel::rate_key`]). Google Chat accepts one
//! message per second per space, so its key is `google_chat:<space>`: two channels posting to
//! one space share one bucket. A key's rate is the one set for the exact key, else the one set
//! for its kind (the part before `:`); kinds without a rate are not limited. The default
//! ([`Limits::new`]) limits `google_chat` to 1 per second, burst 1.
//!
//! The clock is tokio's ([`tokio::time::Instant`]), so tests can pause it; [`Limits::reserve`]
//! takes `now` explicitly for tests that drive time themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::time::Instant;

/// A rate: one send per `interval`, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub interval: Duration,
    pub burst: u32,
}

impl Rate {
    /// One send per `interval`, no burst.
    pub fn every(interval: Duration) -> Rate {
        Rate { interval, burst: 1 }
    }

    /// `n` sends per minute, no burst.
    pub fn per_minute(n: u32) -> Rate {
        Rate::every(Duration::from_secs(60) / n.max(1))
    }

    /// Google Chat's limit on messages to one space: 60 a minute.
    pub const GOOGLE_CHAT_SPACE: Rate = Rate {
        interval: Duration::from_secs(1),
        burst: 1,
    };
}

#[derive(Default)]
struct State {
    /// By exact key or by kind.
    rates: HashMap<String, Rate>,
    /// The theoretical arrival time of the next send, per key.
    next: HashMap<String, Instant>,
}

/// The process's rate limits: a cheap handle to shared state (clone it into every channel).
#[derive(Clone)]
pub struct Limits {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Limits")
            .field("rates", &st.rates)
            .field("keys", &st.next.len())
            .finish()
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new()
    }
}

impl Limits {
    /// The default limits: Google Chat spaces at 1 per second; nothing else limited.
    pub fn new() -> Limits {
        let limits = Limits::unlimited();
        limits.set_rate("google_chat", Rate::GOOGLE_CHAT_SPACE);
        limits
    }

    /// No limit on anything (until [`Limits::set_rate`]).
    pub fn unlimited() -> Limits {
        Limits {
            state: Arc::new(Mutex::new(State::default())),
        }
    }

    /// Sets the rate of a kind (`google_chat`, `slack`, `webhook`) or of one exact key
    /// (`google_chat:AAAA`, `webhook:ops-hook`). Takes effect for the next reservation.
    pub fn set_rate(&self, kind_or_key: &str, rate: Rate) {
        let rate = Rate {
            interval: rate.interval,
            burst: rate.burst.max(1),
        };
        self.lock().rates.insert(kind_or_key.to_string(), rate);
    }

    /// [`Limits::set_rate`], by value, for building.
    pub fn with_rate(self, kind_or_key: &str, rate: Rate) -> Limits {
        self.set_rate(kind_or_key, rate);
        self
    }

    /// The rate that applies to `key`, if any.
    pub fn rate_of(&self, key: &str) -> Option<Rate> {
        let st = self.lock();
        rate_in(&st, key)
    }

    /// Reserves the next slot of `key` at `now` and returns how long to wait for it (zero when
    /// it is free now).
    pub fn reserve(&self, key: &str, now: Instant) -> Duration {
        let mut st = self.lock();
        let Some(rate) = rate_in(&st, key) else {
            return Duration::ZERO;
        };
        let tat = st.next.get(key).copied().map_or(now, |t| t.max(now));
        let slack = rate.interval.saturating_mul(rate.burst - 1);
        let start = tat.checked_sub(slack).unwrap_or(now).max(now);
        st.next.insert(key.to_string(), tat + rate.interval);
        start - now
    }

    /// Waits for the next slot of `key`. Cancelling the wait does not give the slot back.
    pub async fn wait(&self, key: &str) {
        let now = Instant::now();
        let wait = self.reserve(key, now);
        if !wait.is_zero() {
            tokio::time::sleep_until(now + wait).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked (each update is one insert).
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn rate_in(st: &State, key: &str) -> Option<Rate> {
    let kind = key.split_once(':').map_or(key, |(k, _)| k);
    st.rates.get(key).or_else(|| st.rates.get(kind)).copied()
}
