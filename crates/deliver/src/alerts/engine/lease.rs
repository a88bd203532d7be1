//! A task's lease: who delivers a channel among the processes sharing a database.
//!
//! A lease lasts `ttl` from its last renewal; the holder renews it every [`Lease::renew_every`]
//! (at most 5 s, at most a third of the TTL) before each slice, each cursor save, and while it
//! waits. A failed renewal (another holder, or the store unreachable) counts as lost: the task
//! stops delivering until it gets the lease back, so two processes never deliver one channel
//! at the same time while both can reach the database.
//!
//! A send is held the same way, whatever it lasts ([`Lease::hold_during`]): the lease is renewed
//! right before it, for at least the channel's timeout plus [`SEND_MARGIN`] (unless it already
//! holds that long, as after a renewal moments before), then again every
//! [`Lease::renew_every`] while the send (its rate-limit wait, then its request) runs. When a
//! renewal fails, or does not answer before the lease would be within [`SEND_MARGIN`] of its
//! expiry, the send is dropped: no send of this holder is in flight once another process can
//! take the lease over.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;
use trailkeep_store::Store;

/// What a lease held during a send keeps beyond the channel's timeout, and how long before its
/// expiry a send in flight is given up when the lease cannot be renewed.
pub(crate) const SEND_MARGIN: Duration = Duration::from_secs(2);

pub(crate) struct Lease {
    name: String,
    holder: String,
    ttl: Duration,
    /// When the last successful renewal was asked for.
    renewed: Option<Instant>,
    /// Until when that renewal holds (counted from when it was asked for).
    expires: Option<Instant>,
}

impl Lease {
    pub fn new(name: String, holder: String, ttl: Duration) -> Lease {
        Lease {
            name,
            holder,
            ttl,
            renewed: None,
            expires: None,
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
        self.renew_for(store, self.ttl).await
    }

    /// Asks for the lease now, for `ttl`; `true` if this holder has it.
    async fn renew_for(&mut self, store: &dyn Store, ttl: Duration) -> bool {
        let asked = Instant::now();
        let answer = store.acquire_lease(&self.name, &self.holder, ttl).await;
        self.took(answer, asked, ttl)
    }

    /// Records the answer to a renewal for `ttl` asked for at `asked`.
    fn took(
        &mut self,
        answer: Result<bool, trailkeep_store::StoreError>,
        asked: Instant,
        ttl: Duration,
    ) -> bool {
        match answer {
            Ok(true) => {
                self.renewed = Some(asked);
                self.expires = Some(asked + ttl);
                true
            }
            Ok(false) => {
                self.lapse();
                false
            }
            Err(e) => {
                if self.renewed.is_some() {
                    tracing::warn!(
                        lease = self.name,
                        "could not renew the lease ({e}); pausing until it is renewed"
                    );
                }
                self.lapse();
                false
            }
        }
    }

    fn lapse(&mut self) {
        self.renewed = None;
        self.expires = None;
    }

    /// Runs `send` while holding the lease (see the module's description): renewed first for
    /// at least `timeout` + [`SEND_MARGIN`] (unless it already holds that long), then every
    /// [`Lease::renew_every`] until `send` ends. `None` when the lease was lost or could not be
    /// vouched for: `send` was dropped before the lease could lapse.
    pub async fn hold_during<F: Future>(
        &mut self,
        store: &dyn Store,
        timeout: Duration,
        send: F,
    ) -> Option<F::Output> {
        let need = timeout.saturating_add(SEND_MARGIN);
        let ttl = self.ttl.max(need);
        let good_for = self.expires.map_or(Duration::ZERO, |e| {
            e.saturating_duration_since(Instant::now())
        });
        if (!self.held() || good_for < need) && !self.renew_for(store, ttl).await {
            return None;
        }
        tokio::pin!(send);
        loop {
            let (Some(renewed), Some(expires)) = (self.renewed, self.expires) else {
                return None;
            };
            // Until when the lease is known to be ours, less the margin.
            let safe_until = expires.checked_sub(SEND_MARGIN).unwrap_or(renewed);
            let next = (renewed + self.renew_every()).min(safe_until);
            tokio::select! {
                out = &mut send => return Some(out),
                _ = tokio::time::sleep_until(next) => {}
            }
            let asked = Instant::now();
            if asked >= safe_until {
                return self.give_up_send();
            }
            let renewal = tokio::time::timeout_at(
                safe_until,
                store.acquire_lease(&self.name, &self.holder, ttl),
            );
            tokio::select! {
                out = &mut send => return Some(out),
                answer = renewal => match answer {
                    Ok(answer) => {
                        if !self.took(answer, asked, ttl) {
                            return None;
                        }
                    }
                    Err(_) => return self.give_up_send(),
                },
            }
        }
    }

    /// A send is dropped because the lease could not be renewed in time.
    fn give_up_send<T>(&mut self) -> Option<T> {
        tracing::warn!(
            lease = self.name,
            "the lease could not be renewed in time during a send; the send is given up and tried again once the lease is held"
        );
        self.lapse();
        None
    }
}
