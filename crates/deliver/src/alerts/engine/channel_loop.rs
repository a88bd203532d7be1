//! One channel's delivery loop (see the engine's model): lease, cursor, slices, alerts, and
//! the channel's overdue impersonation sessions between slices.

use super::attempts::{self, Sent};
use super::cursor::{ChannelCursor, Saved};
use super::dead_letter::{self, Recorded};
use super::lease::Lease;
use super::overdue::{self, ChannelOverdue, Interrupted, SessionWatch};
use super::tenant_warnings::TenantWarnings;
use super::{Ctx, Destination, SLICE};
use crate::alerts::{delivery_id, Alert};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use trailkeep_control::rules::{RuleSet, TypePattern};
use trailkeep_core::StoredEvent;
use trailkeep_store::{StoreError, TypeFilter};

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
    /// Caught up with every readable tenant's count as of the start of the pass.
    CaughtUp,
    Stopped,
    LeaseLost,
}

impl From<Interrupted> for Pass {
    fn from(i: Interrupted) -> Pass {
        match i {
            Interrupted::Stopped => Pass::Stopped,
            Interrupted::LeaseLost => Pass::LeaseLost,
        }
    }
}

impl From<Saved> for Option<Pass> {
    fn from(s: Saved) -> Option<Pass> {
        match s {
            Saved::Yes => None,
            Saved::LeaseLost => Some(Pass::LeaseLost),
        }
    }
}

pub(crate) struct ChannelLoop {
    ctx: Ctx,
    dest: Arc<dyn Destination>,
    name: String,
    types: Vec<TypeFilter>,
    wake: Arc<Notify>,
    lease: Lease,
    cursor: ChannelCursor,
    /// The channel's overdue sessions; `None` when they are not checked (no limit, or no rule
    /// of the channel can match a session start).
    overdue: Option<ChannelOverdue>,
    warnings: TenantWarnings,
}

impl ChannelLoop {
    pub fn new(
        ctx: Ctx,
        dest: Arc<dyn Destination>,
        reads: Reads,
        wake: Arc<Notify>,
        sessions: Option<Arc<SessionWatch>>,
    ) -> Self {
        let name = dest.name().to_string();
        let lease = Lease::new(
            cursor_name(&name),
            ctx.shared.holder.clone(),
            ctx.shared.lease_ttl,
        );
        let overdue = sessions
            .filter(|_| overdue::reads_starts(&reads.0))
            .map(ChannelOverdue::new);
        ChannelLoop {
            ctx,
            dest,
            cursor: ChannelCursor::new(cursor_name(&name)),
            name,
            types: reads.0,
            wake,
            lease,
            overdue,
            warnings: TenantWarnings::default(),
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
            let store = self.ctx.shared.store.clone();
            let result = match self.cursor.load(&*store, &self.name).await {
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
        if self.cursor.loaded() {
            let store = self.ctx.shared.store.clone();
            match self.cursor.save(&*store, &mut self.lease).await {
                Ok(Saved::Yes) => {}
                Ok(Saved::LeaseLost) => tracing::info!(
                    channel = self.name,
                    "the lease was lost at shutdown; the alert cursor is left to the next holder"
                ),
                Err(e) => tracing::warn!(
                    channel = self.name,
                    "could not save the alert cursor at shutdown ({e}); the alerts since the last save will be sent again"
                ),
            }
        }
        self.ctx.shared.registry.set_active(&self.name, false);
    }

    /// Forgets the positions: the next holder may have moved them.
    fn lost(&mut self) {
        self.cursor.forget();
        if let Some(o) = self.overdue.as_mut() {
            o.forget();
        }
        self.ctx.shared.registry.set_active(&self.name, false);
    }

    /// Saves the cursor if a save is due ([`ChannelCursor::due`]).
    async fn save_if_due(&mut self) -> Result<Option<Pass>, StoreError> {
        if !self.cursor.due() {
            return Ok(None);
        }
        let store = self.ctx.shared.store.clone();
        Ok(self.cursor.save(&*store, &mut self.lease).await?.into())
    }

    /// Raises the channel's overdue alerts if a check is due.
    async fn check_overdue(&mut self) -> Result<Option<Pass>, StoreError> {
        let Some(o) = self.overdue.as_mut() else {
            return Ok(None);
        };
        let parts = overdue::Parts {
            ctx: &mut self.ctx,
            lease: &mut self.lease,
            cursor: &mut self.cursor,
            dest: &*self.dest,
            warnings: &mut self.warnings,
        };
        Ok(o.check_if_due(parts).await?.map(Pass::from))
    }

    /// One pass over the tenants that have events beyond the channel's position. A tenant
    /// whose log cannot be read is skipped (with a warning) and tried again next pass.
    async fn pass(&mut self) -> Result<Pass, StoreError> {
        if let Some(end) = self.save_if_due().await? {
            return Ok(end);
        }
        if let Some(end) = self.check_overdue().await? {
            return Ok(end);
        }
        let store = self.ctx.shared.store.clone();
        let tenants = store.tenants().await?;
        let lag = |me: &Self| {
            tenants
                .iter()
                .map(|t| t.event_count.saturating_sub(me.cursor.pos(&t.tenant_id)))
                .sum::<u64>()
        };
        self.ctx.shared.registry.set_lag(&self.name, lag(self));
        for t in &tenants {
            let tenant = t.tenant_id.as_str();
            while self.cursor.pos(tenant) < t.event_count {
                if self.ctx.stopping() {
                    return Ok(Pass::Stopped);
                }
                if !self.lease.keep(&*store).await {
                    return Ok(Pass::LeaseLost);
                }
                let from = self.cursor.pos(tenant);
                let slice = match store
                    .read_log_matching(tenant, from, &self.types, SLICE)
                    .await
                {
                    Ok(slice) => slice,
                    Err(e) => {
                        let who = format!("alert channel {}", self.name);
                        self.warnings.skipped(&who, tenant, &e);
                        break;
                    }
                };
                for e in &slice.events {
                    if let Err(end) = self.deliver(e).await {
                        return Ok(end);
                    }
                }
                // A store that does not move forward would make this loop spin: stop at what
                // it said and look again later.
                let next = slice.next_seq;
                if next <= from {
                    break;
                }
                self.cursor.set(tenant, next);
                if let Some(end) = self.save_if_due().await? {
                    return Ok(end);
                }
                self.ctx.shared.registry.set_lag(&self.name, lag(self));
                if let Some(end) = self.check_overdue().await? {
                    return Ok(end);
                }
            }
        }
        if let Some(end) = self.save_if_due().await? {
            return Ok(end);
        }
        Ok(Pass::CaughtUp)
    }

    /// Delivers the alert on `e`, if a rule naming this channel matches it, or records a dead
    /// letter if it is given up; then moves the position past it (saved at once after a dead
    /// letter, else at the end of the slice or once [`super::cursor::SAVE_EVERY`] passed).
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
        let dead = match attempts::send(&mut self.ctx, &*dest, &alert, "event", &mut self.lease)
            .await
        {
            Sent::Delivered => false,
            Sent::Stopped => return Err(Pass::Stopped),
            Sent::LeaseLost => return Err(Pass::LeaseLost),
            Sent::Dead(f) => {
                match dead_letter::record(&mut self.ctx, &mut self.lease, &alert, "event", &f).await
                {
                    Recorded::Yes => true,
                    Recorded::Stopped => return Err(Pass::Stopped),
                    Recorded::LeaseLost => return Err(Pass::LeaseLost),
                }
            }
        };
        self.cursor.set(&e.tenant_id, e.seq + 1);
        self.cursor.decided();
        if dead || self.cursor.stale() {
            let store = self.ctx.shared.store.clone();
            match self.cursor.save(&*store, &mut self.lease).await {
                Ok(Saved::Yes) => {}
                Ok(Saved::LeaseLost) => return Err(Pass::LeaseLost),
                Err(err) => {
                    // Tried again at the next save. A dead letter is recorded once per delivery
                    // id: a restart before the next save sends the alert again and finds it.
                    tracing::warn!(
                        channel = self.name,
                        "could not save the alert cursor after an alert: {err}"
                    );
                }
            }
        }
        Ok(())
    }
}

/// The cursor (and lease) name of a channel.
pub(crate) fn cursor_name(channel: &str) -> String {
    format!("alerts/{channel}")
}
