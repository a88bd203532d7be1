//! One channel's delivery loop (see the engine's model): lease, cursor, slices, alerts.

use super::attempts::{self, Sent};
use super::dead_letter::{self, Recorded};
use super::lease::Lease;
use super::{Ctx, Destination, SLICE};
use crate::alerts::{delivery_id, Alert};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use trailkeep_control::rules::{RuleSet, TypePattern};
use trailkeep_core::StoredEvent;
use trailkeep_store::{DeliveryCursor, StoreError, TypeFilter};

/// The cursor key that says a channel's cursor was set up: no tenant id starts with `_` but
/// `_global` ([`trailkeep_core::validate::is_tenant_id`]).
pub(crate) const MARKER: &str = "_started";

/// The shortest time between the starts of two passes: the latency a wake-up may add, and
/// what bounds the work of a loop while ingest runs.
const PASS_SPACING: Duration = Duration::from_millis(25);

/// What a channel reads from the log: the event types its rules can match (an empty list is
/// every type, as [`trailkeep_store::Store::read_log_matching`] takes it).
pub(crate) struct Reads(Vec<TypeFilter>);

impl Reads {
    /// What the rules naming `channel` need; `None` when no rule names it.
    pub fn of(rules: &RuleSet, channel: &str) -> Option<Reads> {
        let mut types: Vec<TypeFilter> = Vec::new();
        let mut any = false;
        let mut named = false;
        for r in rules
            .rules
            .iter()
            .filter(|r| r.channels().iter().any(|c| c == channel))
        {
            named = true;
            match r.type_patterns() {
                None => any = true,
                Some(ps) => {
                    for p in ps {
                        let f = match p {
                            TypePattern::Any => {
                                any = true;
                                continue;
                            }
                            TypePattern::Exact(t) => TypeFilter::Exact(t),
                            TypePattern::Prefix(p) => TypeFilter::Prefix(p),
                        };
                        if !types.contains(&f) {
                            types.push(f);
                        }
                    }
                }
            }
        }
        if !named {
            return None;
        }
        Some(Reads(if any { Vec::new() } else { types }))
    }
}

/// How a pass over the tenants ended.
enum Pass {
    /// Caught up with every tenant's count as of the start of the pass.
    CaughtUp,
    Stopped,
    LeaseLost,
}

pub(crate) struct ChannelLoop {
    ctx: Ctx,
    dest: Arc<dyn Destination>,
    name: String,
    types: Vec<TypeFilter>,
    wake: Arc<Notify>,
    lease: Lease,
    /// The positions, valid while the lease is held (`None`: to be loaded).
    cursor: Option<DeliveryCursor>,
    /// Positions moved in memory but not saved yet (a failed save is tried again).
    unsaved: BTreeMap<String, u64>,
}

impl ChannelLoop {
    pub fn new(ctx: Ctx, dest: Arc<dyn Destination>, reads: Reads, wake: Arc<Notify>) -> Self {
        let name = dest.name().to_string();
        let lease = Lease::new(
            cursor_name(&name),
            ctx.shared.holder.clone(),
            ctx.shared.lease_ttl,
        );
        ChannelLoop {
            ctx,
            dest,
            name,
            types: reads.0,
            wake,
            lease,
            cursor: None,
            unsaved: BTreeMap::new(),
        }
    }

    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            if self.ctx.stopping() {
                break;
            }
            let was_held = self.lease.held();
            if !self.lease.keep(&*self.ctx.shared.store).await {
                if was_held {
                    tracing::info!(
                        channel = self.name,
                        "another process delivers this channel now"
                    );
                }
                self.lost();
                let d = self.lease.renew_every();
                if !self.ctx.pause(d, None).await {
                    break;
                }
                continue;
            }
            let pass_started = Instant::now();
            let result = match self.load().await {
                Ok(()) => {
                    self.ctx.shared.registry.set_active(&self.name, true);
                    self.pass().await
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(Pass::CaughtUp) => {
                    failures = 0;
                    let d = self.ctx.shared.poll.min(self.lease.renew_every());
                    let wake = self.wake.clone();
                    if !self.ctx.pause(d, Some(&wake)).await {
                        break;
                    }
                    // Under a stream of appends, each one notifying, passes would run back to
                    // back: at most one per PASS_SPACING, which coalesces the wake-ups.
                    let since = pass_started.elapsed();
                    if since < PASS_SPACING && !self.ctx.pause(PASS_SPACING - since, None).await {
                        break;
                    }
                }
                Ok(Pass::Stopped) => break,
                Ok(Pass::LeaseLost) => self.lost(),
                Err(e) => {
                    failures += 1;
                    let d = Duration::from_millis(500 * u64::from(failures.min(20)));
                    tracing::warn!(
                        channel = self.name,
                        "alert delivery paused: {e}; trying again in {} ms",
                        d.as_millis()
                    );
                    if !self.ctx.pause(d, None).await {
                        break;
                    }
                }
            }
        }
        if self.lease.held() {
            if let Err(e) = self.flush().await {
                tracing::warn!(
                    channel = self.name,
                    "could not save the alert cursor at shutdown ({e}); the alerts since the last save will be sent again"
                );
            }
        }
        self.ctx.shared.registry.set_active(&self.name, false);
    }

    /// Forgets the positions: the next holder may have moved them.
    fn lost(&mut self) {
        self.cursor = None;
        self.unsaved.clear();
        self.ctx.shared.registry.set_active(&self.name, false);
    }

    /// The cursor, loaded (and set up the first time) if needed.
    async fn load(&mut self) -> Result<(), StoreError> {
        if self.cursor.is_some() {
            return Ok(());
        }
        let store = &self.ctx.shared.store;
        let name = cursor_name(&self.name);
        let mut cursor = store.load_cursor(&name).await?;
        if !cursor.contains_key(MARKER) {
            // First run: start at every tenant's current size.
            let mut positions = vec![(MARKER.to_string(), 0)];
            for t in store.tenants().await? {
                if !cursor.contains_key(&t.tenant_id) {
                    positions.push((t.tenant_id, t.event_count));
                }
            }
            store.save_cursor(&name, &positions).await?;
            tracing::info!(
                channel = self.name,
                "alert cursor set up: alerting on events appended from now on"
            );
            cursor.extend(positions);
        }
        self.cursor = Some(cursor);
        Ok(())
    }

    fn pos(&self, tenant: &str) -> u64 {
        self.cursor
            .as_ref()
            .and_then(|c| c.get(tenant).copied())
            .unwrap_or(0)
    }

    fn set_pos(&mut self, tenant: &str, pos: u64) {
        if let Some(c) = self.cursor.as_mut() {
            if c.get(tenant) != Some(&pos) {
                c.insert(tenant.to_string(), pos);
                self.unsaved.insert(tenant.to_string(), pos);
            }
        }
    }

    /// Saves the positions moved since the last save.
    async fn flush(&mut self) -> Result<(), StoreError> {
        if self.unsaved.is_empty() {
            return Ok(());
        }
        let positions: Vec<(String, u64)> =
            self.unsaved.iter().map(|(t, p)| (t.clone(), *p)).collect();
        self.ctx
            .shared
            .store
            .save_cursor(&cursor_name(&self.name), &positions)
            .await?;
        self.unsaved.clear();
        Ok(())
    }

    /// One pass over the tenants that have events beyond the channel's position.
    async fn pass(&mut self) -> Result<Pass, StoreError> {
        self.flush().await?;
        let store = self.ctx.shared.store.clone();
        let tenants = store.tenants().await?;
        let lag = |me: &Self| {
            tenants
                .iter()
                .map(|t| t.event_count.saturating_sub(me.pos(&t.tenant_id)))
                .sum::<u64>()
        };
        self.ctx.shared.registry.set_lag(&self.name, lag(self));
        for t in &tenants {
            let tenant = t.tenant_id.as_str();
            while self.pos(tenant) < t.event_count {
                if self.ctx.stopping() {
                    return Ok(Pass::Stopped);
                }
                if !self.lease.keep(&*store).await {
                    return Ok(Pass::LeaseLost);
                }
                let from = self.pos(tenant);
                let slice = store
                    .read_log_matching(tenant, from, &self.types, SLICE)
                    .await?;
                for e in &slice.events {
                    match self.deliver(e).await {
                        Ok(()) => {}
                        Err(end) => {
                            if matches!(end, Pass::Stopped) {
                                // Keep what was delivered of this slice.
                                self.set_pos(tenant, e.seq);
                            }
                            return Ok(end);
                        }
                    }
                }
                // A store that does not move forward would make this loop spin: stop at what
                // it said and look again later.
                let next = slice.next_seq;
                if next <= from {
                    break;
                }
                self.set_pos(tenant, next);
                self.flush().await?;
                self.ctx.shared.registry.set_lag(&self.name, lag(self));
            }
        }
        Ok(Pass::CaughtUp)
    }

    /// Delivers the alert on `e`, if a rule naming this channel matches it; records a dead
    /// letter if it is given up (then saves the cursor past it).
    async fn deliver(&mut self, e: &StoredEvent) -> Result<(), Pass> {
        let shared = self.ctx.shared.clone();
        let Some(rule) = shared
            .rules
            .matching(e)
            .into_iter()
            .find(|r| r.channels().contains(&self.name))
        else {
            return Ok(());
        };
        let alert = Alert {
            delivery_id: delivery_id("event", &self.name, &e.tenant_id, e.seq),
            rule: rule.name().to_string(),
            channel: self.name.clone(),
            event: e.clone(),
            note: None,
        };
        let dest = self.dest.clone();
        match attempts::send(&mut self.ctx, &*dest, &alert, "event", &mut self.lease).await {
            Sent::Delivered => Ok(()),
            Sent::Stopped => Err(Pass::Stopped),
            Sent::LeaseLost => Err(Pass::LeaseLost),
            Sent::Dead(f) => {
                match dead_letter::record(&mut self.ctx, &mut self.lease, &alert, "event", &f).await
                {
                    Recorded::Yes => {}
                    Recorded::Stopped => return Err(Pass::Stopped),
                    Recorded::LeaseLost => return Err(Pass::LeaseLost),
                }
                self.set_pos(&e.tenant_id, e.seq + 1);
                if let Err(err) = self.flush().await {
                    // The dead letter is recorded (once per delivery id): a restart before the
                    // next save sends the alert again and finds it.
                    tracing::warn!(
                        channel = self.name,
                        "could not save the alert cursor after a dead letter: {err}"
                    );
                }
                Ok(())
            }
        }
    }
}

/// The cursor (and lease) name of a channel.
pub(crate) fn cursor_name(channel: &str) -> String {
    format!("alerts/{channel}")
}
