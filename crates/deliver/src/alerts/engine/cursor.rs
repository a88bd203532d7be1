//! A channel's cursor as its loop keeps it: the positions (tenant → next seq to look at), the
//! overdue alerts raised, and when they are saved.
//!
//! # When the cursor is saved
//!
//! A save rewrites the cursor durably (on the embedded store a file with two fsyncs), so it is
//! not done after every slice:
//!
//! - **Promptly once an alert was decided**: after a slice in which an alert was delivered (and
//!   every [`SAVE_EVERY`] within a slice), right after a dead letter or an overdue alert. A
//!   restart then sends again only the alerts of the last moments, with the same delivery ids.
//! - **Otherwise at most every [`SAVE_EVERY`]**: positions that only moved past events no rule
//!   of the channel matched are saved between slices or at the end of a pass once that long
//!   has passed since the last save; losing them costs a re-read, never an alert.
//! - **At shutdown**, whatever is left.
//!
//! A position moves past an event only once its alert was delivered or recorded as a dead
//! letter, so the saved cursor never skips an alert that was neither. Nothing is saved unless
//! the lease is held at that moment ([`Lease::keep`]): a loop that lost it forgets its
//! positions instead of writing them over the new holder's.

use super::lease::Lease;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use trailkeep_store::{DeliveryCursor, Store, StoreError};

/// The longest a moved position waits to be saved while the loop is busy.
pub(crate) const SAVE_EVERY: Duration = Duration::from_secs(1);

/// The cursor key that says a channel's cursor was set up: no tenant id starts with `_` but
/// `_global` ([`trailkeep_core::validate::is_tenant_id`]).
pub(crate) const MARKER: &str = "_started";

/// How a save ended.
pub(crate) enum Saved {
    /// Saved, or nothing to save.
    Yes,
    /// The lease is not held: nothing was saved.
    LeaseLost,
}

pub(crate) struct ChannelCursor {
    /// `alerts/<channel>`.
    name: String,
    /// The saved entries and those moved since, valid while the lease is held (`None`: to be
    /// loaded).
    entries: Option<DeliveryCursor>,
    /// Entries moved in memory but not saved yet (a failed save is tried again).
    unsaved: BTreeMap<String, u64>,
    /// Whether an alert was delivered or recorded since the last save.
    decided: bool,
    saved_at: Instant,
}

impl ChannelCursor {
    pub fn new(name: String) -> ChannelCursor {
        ChannelCursor {
            name,
            entries: None,
            unsaved: BTreeMap::new(),
            decided: false,
            saved_at: Instant::now(),
        }
    }

    /// Whether the cursor is loaded (and the lease was held when it was).
    pub fn loaded(&self) -> bool {
        self.entries.is_some()
    }

    /// Loads the cursor if needed, setting it up the first time (see the engine's model):
    /// every tenant starts at its current size.
    pub async fn load(&mut self, store: &dyn Store, channel: &str) -> Result<(), StoreError> {
        if self.entries.is_some() {
            return Ok(());
        }
        let mut cursor = store.load_cursor(&self.name).await?;
        if !cursor.contains_key(MARKER) {
            let mut positions = vec![(MARKER.to_string(), 0)];
            for t in store.tenants().await? {
                if !cursor.contains_key(&t.tenant_id) {
                    positions.push((t.tenant_id, t.event_count));
                }
            }
            store.save_cursor(&self.name, &positions).await?;
            tracing::info!(
                channel,
                "alert cursor set up: alerting on events appended from now on"
            );
            cursor.extend(positions);
        }
        self.entries = Some(cursor);
        self.unsaved.clear();
        self.decided = false;
        self.saved_at = Instant::now();
        Ok(())
    }

    /// Forgets everything: the next holder may have moved the positions.
    pub fn forget(&mut self) {
        self.entries = None;
        self.unsaved.clear();
        self.decided = false;
    }

    /// An entry: a tenant's position, a marker, a raised overdue alert.
    pub fn get(&self, key: &str) -> Option<u64> {
        self.entries.as_ref().and_then(|c| c.get(key).copied())
    }

    /// A tenant's position (0 for a tenant not in the cursor: created after the set-up).
    pub fn pos(&self, tenant: &str) -> u64 {
        self.get(tenant).unwrap_or(0)
    }

    /// Moves an entry in memory.
    pub fn set(&mut self, key: &str, value: u64) {
        if let Some(c) = self.entries.as_mut() {
            if c.get(key) != Some(&value) {
                c.insert(key.to_string(), value);
                self.unsaved.insert(key.to_string(), value);
            }
        }
    }

    /// Notes that an alert was delivered or recorded: what moved is saved promptly.
    pub fn decided(&mut self) {
        self.decided = true;
    }

    /// Whether a save is due by the rules above (something moved, and either an alert was
    /// decided or the last save is [`SAVE_EVERY`] old).
    pub fn due(&self) -> bool {
        !self.unsaved.is_empty() && (self.decided || self.saved_at.elapsed() >= SAVE_EVERY)
    }

    /// Whether the last save is [`SAVE_EVERY`] old and something moved.
    pub fn stale(&self) -> bool {
        !self.unsaved.is_empty() && self.saved_at.elapsed() >= SAVE_EVERY
    }

    /// Saves what moved since the last save, if the lease is held.
    pub async fn save(
        &mut self,
        store: &dyn Store,
        lease: &mut Lease,
    ) -> Result<Saved, StoreError> {
        if self.unsaved.is_empty() {
            self.decided = false;
            return Ok(Saved::Yes);
        }
        if !lease.keep(store).await {
            return Ok(Saved::LeaseLost);
        }
        let positions: Vec<(String, u64)> =
            self.unsaved.iter().map(|(t, p)| (t.clone(), *p)).collect();
        store.save_cursor(&self.name, &positions).await?;
        self.unsaved.clear();
        self.decided = false;
        self.saved_at = Instant::now();
        Ok(Saved::Yes)
    }
}
