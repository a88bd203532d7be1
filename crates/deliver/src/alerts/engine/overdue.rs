//! Impersonation sessions open too long: one alert each per channel, once (see the engine's
//! model).
//!
//! The process keeps one fold of the tenants' `impersonation.*` events ([`SessionWatch`],
//! incrementally from where it stopped; it lives as long as the process), shared by its channel
//! loops. Only starts and ends decide whether a session is open, so the events that merely
//! carry a session id are not read.
//!
//! Each channel raises its own overdue alerts, from its own loop, under its own lease
//! ([`ChannelOverdue`]): a channel that is down delays only its own. A raised alert is recorded
//! in the channel's cursor as `"<tenant>\u{1f}<session_id>"` → the session's start seq (so a
//! later session reusing the id raises its own), which is how a restart, or another process
//! taking the channel over, knows it was raised. The first time a channel checks (its cursor
//! has no [`OVERDUE_MARKER`] yet), the sessions already overdue are recorded as raised without
//! an alert: configuring alerts does not send a flood of old sessions, as the channel cursor
//! does not send old events.

use super::attempts::{self, Sent};
use super::cursor::{ChannelCursor, Saved};
use super::dead_letter::{self, Recorded};
use super::lease::Lease;
use super::tenant_warnings::TenantWarnings;
use super::{Ctx, Destination, OVERDUE_EVERY};
use crate::alerts::{delivery_id, Alert};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use trailkeep_control::sessions::{Sessions, START};
use trailkeep_core::Timestamp;
use trailkeep_store::{Store, StoreError, TypeFilter};

/// The channel-cursor entry that says the channel's first overdue check was made.
pub(crate) const OVERDUE_MARKER: &str = "_overdue";

/// Impersonation events read per call.
const FOLD_SLICE: usize = 1_000;

/// An open session past the limit.
pub(crate) struct Due {
    pub tenant: String,
    pub session: String,
    pub start_seq: u64,
    /// Whole seconds open.
    pub open_for: u64,
}

/// The process's fold of impersonation sessions, shared by its channel loops.
pub(crate) struct SessionWatch {
    /// How long a session may stay open.
    pub max: Duration,
    /// How often a channel checks: every [`OVERDUE_EVERY`], or a quarter of the limit when
    /// that is shorter, at least every 100 ms.
    pub every: Duration,
    fold: tokio::sync::Mutex<Fold>,
}

#[derive(Default)]
struct Fold {
    sessions: Sessions,
    /// Tenant → next seq to fold.
    folded: HashMap<String, u64>,
    warnings: TenantWarnings,
}

impl SessionWatch {
    pub fn new(max: Duration) -> SessionWatch {
        SessionWatch {
            max,
            every: (max / 4).min(OVERDUE_EVERY).max(Duration::from_millis(100)),
            fold: tokio::sync::Mutex::new(Fold::default()),
        }
    }

    /// Folds what is new, then lists the open sessions past the limit, in the order they
    /// started. A tenant whose log cannot be read is skipped (with a warning) until it can.
    pub async fn due(&self, store: &dyn Store) -> Result<Vec<Due>, StoreError> {
        let mut guard = self.fold.lock().await;
        let fold = &mut *guard;
        let types = [TypeFilter::Prefix("impersonation.".into())];
        for t in store.tenants().await? {
            let mut pos = fold.folded.get(&t.tenant_id).copied().unwrap_or(0);
            while pos < t.event_count {
                let slice = match store
                    .read_log_matching(&t.tenant_id, pos, &types, FOLD_SLICE)
                    .await
                {
                    Ok(s) => s,
                    Err(e) => {
                        fold.warnings.skipped("overdue sessions", &t.tenant_id, &e);
                        break;
                    }
                };
                for e in &slice.events {
                    fold.sessions.apply(e);
                }
                if slice.next_seq <= pos {
                    break;
                }
                pos = slice.next_seq;
                fold.folded.insert(t.tenant_id.clone(), pos);
            }
        }
        let now = Timestamp::now_micros();
        Ok(fold
            .sessions
            .overdue(now, self.max)
            .into_iter()
            .map(|s| Due {
                tenant: s.tenant_id.clone(),
                session: s.session_id.clone(),
                start_seq: s.start_seq,
                open_for: s.duration_seconds(now),
            })
            .collect())
    }
}

/// Whether a channel reading `types` (every type when empty) can be alerted on a session start.
pub(crate) fn reads_starts(types: &[TypeFilter]) -> bool {
    types.is_empty() || types.iter().any(|f| f.matches(START))
}

/// The cursor key recording a session's overdue alert.
pub(crate) fn raised_key(tenant: &str, session: &str) -> String {
    format!("{tenant}\u{1f}{session}")
}

/// Why a check stopped before its end.
pub(crate) enum Interrupted {
    Stopped,
    LeaseLost,
}

/// One channel's overdue alerts.
pub(crate) struct ChannelOverdue {
    watch: std::sync::Arc<SessionWatch>,
    /// When the last check ended.
    checked: Option<Instant>,
    /// Overdue sessions this channel has nothing to send for (no rule naming it matches the
    /// start, or the start cannot be found): not recorded, decided again after a new lease.
    passed: HashSet<(String, u64)>,
}

/// What a check works with: the channel loop's parts.
pub(crate) struct Parts<'a> {
    pub ctx: &'a mut Ctx,
    pub lease: &'a mut Lease,
    pub cursor: &'a mut ChannelCursor,
    pub dest: &'a dyn Destination,
    pub warnings: &'a mut TenantWarnings,
}

impl ChannelOverdue {
    pub fn new(watch: std::sync::Arc<SessionWatch>) -> ChannelOverdue {
        ChannelOverdue {
            watch,
            checked: None,
            passed: HashSet::new(),
        }
    }

    /// Forgets what was decided under the lease: the cursor is loaded again.
    pub fn forget(&mut self) {
        self.checked = None;
        self.passed.clear();
    }

    /// Checks unless the last check is more recent than [`SessionWatch::every`]: raises the
    /// alerts due (or takes the baseline, the first time), each recorded and saved at once.
    pub async fn check_if_due(&mut self, p: Parts<'_>) -> Result<Option<Interrupted>, StoreError> {
        if self.checked.is_some_and(|t| t.elapsed() < self.watch.every) {
            return Ok(None);
        }
        let store = p.ctx.shared.store.clone();
        let due = self.watch.due(&*store).await?;
        let channel = p.dest.name().to_string();
        if p.cursor.get(OVERDUE_MARKER).is_none() {
            for d in &due {
                p.cursor
                    .set(&raised_key(&d.tenant, &d.session), d.start_seq);
            }
            p.cursor.set(OVERDUE_MARKER, 0);
            p.cursor.decided();
            if let Saved::LeaseLost = p.cursor.save(&*store, p.lease).await? {
                return Ok(Some(Interrupted::LeaseLost));
            }
            tracing::info!(
                channel,
                "overdue impersonation sessions: {} already overdue, not alerted on; alerting on sessions that become overdue from now on",
                due.len()
            );
            self.checked = Some(Instant::now());
            return Ok(None);
        }
        for d in due {
            let key = raised_key(&d.tenant, &d.session);
            if p.cursor.get(&key) == Some(d.start_seq)
                || self.passed.contains(&(key.clone(), d.start_seq))
            {
                continue;
            }
            if p.ctx.stopping() {
                return Ok(Some(Interrupted::Stopped));
            }
            let alert = match self.alert(&*p.ctx, p.dest, &mut *p.warnings, &d).await {
                Prepared::Send(a) => a,
                Prepared::Nothing => {
                    self.passed.insert((key, d.start_seq));
                    continue;
                }
                Prepared::NotNow => continue,
            };
            let kind = "session_overdue";
            match attempts::send(p.ctx, p.dest, &alert, kind, p.lease).await {
                Sent::Delivered => {}
                Sent::Stopped => return Ok(Some(Interrupted::Stopped)),
                Sent::LeaseLost => return Ok(Some(Interrupted::LeaseLost)),
                Sent::Dead(f) => {
                    match dead_letter::record(p.ctx, p.lease, &alert, kind, &f).await {
                        Recorded::Yes => {}
                        Recorded::Stopped => return Ok(Some(Interrupted::Stopped)),
                        Recorded::LeaseLost => return Ok(Some(Interrupted::LeaseLost)),
                    }
                }
            }
            p.cursor.set(&key, d.start_seq);
            p.cursor.decided();
            if let Saved::LeaseLost = p.cursor.save(&*store, p.lease).await? {
                return Ok(Some(Interrupted::LeaseLost));
            }
        }
        self.checked = Some(Instant::now());
        Ok(None)
    }

    /// The overdue alert of `d` for this channel.
    async fn alert(
        &self,
        ctx: &Ctx,
        dest: &dyn Destination,
        warnings: &mut TenantWarnings,
        d: &Due,
    ) -> Prepared {
        let channel = dest.name();
        let start = match ctx.shared.store.read_log(&d.tenant, d.start_seq, 1).await {
            Ok(events) => events.into_iter().find(|e| e.seq == d.start_seq),
            Err(e) => {
                warnings.skipped(&format!("channel {channel}"), &d.tenant, &e);
                return Prepared::NotNow;
            }
        };
        let Some(start) = start else {
            tracing::warn!(
                tenant_id = d.tenant,
                seq = d.start_seq,
                "the start event of impersonation session {} could not be read; no overdue alert",
                d.session
            );
            return Prepared::Nothing;
        };
        let Some(rule) = ctx
            .shared
            .rules
            .matching(&start)
            .into_iter()
            .find(|r| r.channels().iter().any(|c| c == channel))
        else {
            return Prepared::Nothing;
        };
        let note = format!(
            "impersonation session {} in {} has been open for {} (limit {})",
            d.session,
            d.tenant,
            hours_minutes(d.open_for),
            hours_minutes(self.watch.max.as_secs())
        );
        Prepared::Send(Box::new(Alert {
            delivery_id: delivery_id("session_overdue", channel, &d.tenant, d.start_seq),
            rule: rule.name().to_string(),
            channel: channel.to_string(),
            event: start,
            note: Some(note),
        }))
    }
}

/// A session's overdue alert for one channel, or why there is none.
enum Prepared {
    Send(Box<Alert>),
    /// No rule naming the channel matches the start (or the start is not in the log).
    Nothing,
    /// The start cannot be read now: its tenant is skipped until it can.
    NotNow,
}

/// `8h 5m`.
fn hours_minutes(secs: u64) -> String {
    format!("{}h {}m", secs / 3600, (secs % 3600) / 60)
}
