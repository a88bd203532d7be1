//! Impersonation sessions open too long: one alert each, once (see the engine's model).
//!
//! The task folds each tenant's `impersonation.*` events with [`Sessions`], from where it
//! stopped the time before (the fold lives as long as the process). Only starts and ends decide
//! whether a session is open, so the events that merely carry a session id are not read. The
//! alerts raised are recorded in the cursor `alerts/overdue` (`"<tenant>\u{1f}<session_id>"` →
//! the session's start seq, so a later session reusing the id raises its own), which every
//! process reads when it gains the lease `alerts/overdue`.

use super::attempts::{self, Sent};
use super::dead_letter::{self, Recorded};
use super::lease::Lease;
use super::{Ctx, Destination, OVERDUE_EVERY};
use crate::alerts::{delivery_id, Alert};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use trailkeep_control::sessions::Sessions;
use trailkeep_core::{StoredEvent, Timestamp};
use trailkeep_store::{DeliveryCursor, StoreError, TypeFilter};

/// The cursor (and lease) recording raised overdue alerts.
pub(crate) const CURSOR: &str = "alerts/overdue";

/// Impersonation events read per call.
const FOLD_SLICE: usize = 1_000;

/// How a check ended.
enum Check {
    Done,
    Stopped,
    LeaseLost,
}

pub(crate) struct Overdue {
    ctx: Ctx,
    channels: Vec<Arc<dyn Destination>>,
    max: Duration,
    lease: Lease,
    sessions: Sessions,
    /// Tenant → next seq to fold.
    folded: HashMap<String, u64>,
    /// The raised alerts, loaded when the lease is gained.
    raised: Option<DeliveryCursor>,
}

impl Overdue {
    pub fn new(ctx: Ctx, channels: Vec<Arc<dyn Destination>>, max: Duration) -> Overdue {
        let lease = Lease::new(
            CURSOR.to_string(),
            ctx.shared.holder.clone(),
            ctx.shared.lease_ttl,
        );
        Overdue {
            ctx,
            channels,
            max,
            lease,
            sessions: Sessions::new(),
            folded: HashMap::new(),
            raised: None,
        }
    }

    /// Checks at start and every [`OVERDUE_EVERY`] (or a quarter of the session limit when
    /// that is shorter, at least every 100 ms) while holding the lease (renewed meanwhile).
    pub async fn run(mut self) {
        let every = (self.max / 4)
            .min(OVERDUE_EVERY)
            .max(Duration::from_millis(100));
        let mut last: Option<Instant> = None;
        loop {
            if self.ctx.stopping() {
                return;
            }
            if self.lease.keep(&*self.ctx.shared.store).await {
                if last.is_none_or(|t| t.elapsed() >= every) {
                    match self.check().await {
                        Ok(Check::Done) => last = Some(Instant::now()),
                        Ok(Check::Stopped) => return,
                        Ok(Check::LeaseLost) => self.raised = None,
                        Err(e) => tracing::warn!(
                            "checking impersonation sessions for overdue alerts: {e}; trying again shortly"
                        ),
                    }
                }
            } else {
                self.raised = None;
                last = None;
            }
            let d = self.lease.renew_every().min(every);
            if !self.ctx.pause(d, None).await {
                return;
            }
        }
    }

    /// Folds what is new, then raises the alerts due.
    async fn check(&mut self) -> Result<Check, StoreError> {
        let store = self.ctx.shared.store.clone();
        if self.raised.is_none() {
            self.raised = Some(store.load_cursor(CURSOR).await?);
        }
        let types = [TypeFilter::Prefix("impersonation.".into())];
        for t in store.tenants().await? {
            let mut pos = self.folded.get(&t.tenant_id).copied().unwrap_or(0);
            while pos < t.event_count {
                if self.ctx.stopping() {
                    return Ok(Check::Stopped);
                }
                let slice = store
                    .read_log_matching(&t.tenant_id, pos, &types, FOLD_SLICE)
                    .await?;
                for e in &slice.events {
                    self.sessions.apply(e);
                }
                if slice.next_seq <= pos {
                    break;
                }
                pos = slice.next_seq;
                self.folded.insert(t.tenant_id.clone(), pos);
            }
        }
        let now = Timestamp::now_micros();
        let due: Vec<(String, String, u64, u64)> = self
            .sessions
            .overdue(now, self.max)
            .into_iter()
            .map(|s| {
                (
                    s.tenant_id.clone(),
                    s.session_id.clone(),
                    s.start_seq,
                    s.duration_seconds(now),
                )
            })
            .collect();
        for (tenant, session, start_seq, open_for) in due {
            let key = format!("{tenant}\u{1f}{session}");
            let already = self
                .raised
                .as_ref()
                .is_some_and(|r| r.get(&key) == Some(&start_seq));
            if !already {
                match self.raise(&tenant, &session, start_seq, open_for).await? {
                    Check::Done => {}
                    end => return Ok(end),
                }
                store
                    .save_cursor(CURSOR, &[(key.clone(), start_seq)])
                    .await?;
                if let Some(r) = self.raised.as_mut() {
                    r.insert(key, start_seq);
                }
            }
            self.sessions.mark_alerted(&tenant, &session);
        }
        Ok(Check::Done)
    }

    /// Sends the overdue alert of one session to the channels of the rules matching its start
    /// event (each channel once, for the first such rule).
    async fn raise(
        &mut self,
        tenant: &str,
        session: &str,
        start_seq: u64,
        open_for: u64,
    ) -> Result<Check, StoreError> {
        let store = self.ctx.shared.store.clone();
        let Some(start) = store
            .read_log(tenant, start_seq, 1)
            .await?
            .into_iter()
            .find(|e| e.seq == start_seq)
        else {
            tracing::warn!(
                tenant_id = tenant,
                seq = start_seq,
                "the start event of impersonation session {session} could not be read; no overdue alert"
            );
            return Ok(Check::Done);
        };
        let note = format!(
            "impersonation session {session} in {tenant} has been open for {} (limit {})",
            hours_minutes(open_for),
            hours_minutes(self.max.as_secs())
        );
        for (dest, rule) in self.targets(&start) {
            let alert = Alert {
                delivery_id: delivery_id("session_overdue", dest.name(), tenant, start_seq),
                rule,
                channel: dest.name().to_string(),
                event: start.clone(),
                note: Some(note.clone()),
            };
            let kind = "session_overdue";
            match attempts::send(&mut self.ctx, &*dest, &alert, kind, &mut self.lease).await {
                Sent::Delivered => {}
                Sent::Stopped => return Ok(Check::Stopped),
                Sent::LeaseLost => return Ok(Check::LeaseLost),
                Sent::Dead(f) => {
                    match dead_letter::record(&mut self.ctx, &mut self.lease, &alert, kind, &f)
                        .await
                    {
                        Recorded::Yes => {}
                        Recorded::Stopped => return Ok(Check::Stopped),
                        Recorded::LeaseLost => return Ok(Check::LeaseLost),
                    }
                }
            }
        }
        Ok(Check::Done)
    }

    /// The channels of the rules matching `start`, each with the first such rule's name.
    fn targets(&self, start: &StoredEvent) -> Vec<(Arc<dyn Destination>, String)> {
        let mut out: Vec<(Arc<dyn Destination>, String)> = Vec::new();
        for rule in self.ctx.shared.rules.matching(start) {
            for c in rule.channels() {
                if out.iter().any(|(d, _)| d.name() == c) {
                    continue;
                }
                if let Some(d) = self.channels.iter().find(|d| d.name() == c) {
                    out.push((d.clone(), rule.name().to_string()));
                }
            }
        }
        out
    }
}

/// `8h 5m`.
fn hours_minutes(secs: u64) -> String {
    format!("{}h {}m", secs / 3600, (secs % 3600) / 60)
}
