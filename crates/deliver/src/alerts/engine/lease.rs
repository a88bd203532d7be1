//! A task's lease: who delivers a channel (or checks sessions) among the processes sharing a
//! database.
//!
//! A lease lasts `ttl` from its last renewal; the holder renews it every [`Lease::renew_every`]
//! (at most 5 s, at most a third of the TTL) before each slice, each attempt, and while it
//! waits. A failed renewal (another holder, or the store unreachable) counts as lost: the task
//! stops delivering until it gets the lease back, so two processes never deliver one channel
//! at the same time while both can reach the database.

use std::time::{Duration, Instant};
use trailkeep_store::Store;

pub(crate) struct Lease {
    name: String,
    holder: String,
    ttl: Duration,
    renewed: Option<Instant>,
}

impl Lease {
    pub fn new(name: String, holder: String, ttl: Duration) -> Lease {
        Lease {
            name,
            holder,
            ttl,
            renewed: None,
        }
    }

    /// How often the lease is renewed.
    pub fn renew_every(&self) -> Duration {
        (self.ttl / 3).min(Duration::from_secs(5))
    }

    /// Whether the lease was held at the last renewal.
    pub fn held(&self) -> bool {
        self.renewed.is_some()
    }

    /// Renews the lease if it is due (or not held); `true` while it is held.
    pub async fn keep(&mut self, store: &dyn Store) -> bool {
        match self.renewed {
            Some(at) if at.elapsed() < self.renew_every() => true,
            _ => self.renew(store).await,
        }
    }

    /// Asks for the lease now; `true` if this holder has it.
    pub async fn renew(&mut self, store: &dyn Store) -> bool {
        match store
            .acquire_lease(&self.name, &self.holder, self.ttl)
            .await
        {
            Ok(true) => {
                self.renewed = Some(Instant::now());
                true
            }
            Ok(false) => {
                self.renewed = None;
                false
            }
            Err(e) => {
                if self.renewed.is_some() {
                    tracing::warn!(
                        lease = self.name,
                        "could not renew the lease ({e}); pausing until it is renewed"
                    );
                }
                self.renewed = None;
                false
            }
        }
    }
}
