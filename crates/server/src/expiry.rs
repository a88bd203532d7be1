//! The `approval.expired` steps: an approval whose time passed while pending or approved and
//! unused gets its end written into the tenant's log, at most [`EVERY`] after `expires_at`.
//!
//! The status reads `expired` from the moment `expires_at` passes whether or not the step is
//! written (the fold compares times); the step makes the log itself say so, for auditors and
//! for the alert rules and sinks that read the log.
//!
//! A sweeper keeps, per tenant, the fold of its `approval.*` events and how far it has read
//! ([`trailkeep_store::Store::read_log_matching`], so only those events are read, and each
//! once). When some approval is due, it takes the tenant's control lock (the lock ingest holds
//! while it uses an approval), reads what was appended meanwhile, and appends the steps still
//! due: a use and an expiry are never both written, and two servers sweeping one PostgreSQL
//! database write each step once (the second reads the first's step under the lock).

use crate::AppState;
use std::collections::HashMap;
use std::time::Duration;
use trailkeep_control::approvals::{decide_expire, Approvals};
use trailkeep_core::Timestamp;
use trailkeep_store::{PreparedEvent, StoreError, TypeFilter};

/// How often the sweeper looks.
pub const EVERY: Duration = Duration::from_secs(30);

/// Starts the sweeper; it runs until the task is aborted.
pub fn spawn(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sweeper = Sweeper::default();
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = sweeper.sweep(&state).await {
                tracing::warn!(error = %e, "approval expiry sweep failed; trying again later");
            }
        }
    })
}

/// The folds and read positions of every tenant seen.
#[derive(Default)]
pub struct Sweeper {
    tenants: HashMap<String, Tenant>,
}

#[derive(Default)]
struct Tenant {
    next_seq: u64,
    approvals: Approvals,
}

impl Sweeper {
    /// One pass over every tenant: reads new `approval.*` events, writes the steps due.
    /// Returns how many `approval.expired` steps it wrote.
    pub async fn sweep(&mut self, state: &AppState) -> Result<usize, StoreError> {
        let mut written = 0;
        for summary in state.store.tenants().await? {
            let name = summary.tenant_id;
            let t = self.tenants.entry(name.clone()).or_default();
            catch_up(state, &name, t).await?;
            if t.approvals
                .due_to_expire(Timestamp::now_micros())
                .is_empty()
            {
                continue;
            }
            let _guard = state.store.control_lock(&name).await?;
            catch_up(state, &name, t).await?;
            let now = Timestamp::now_micros();
            let steps: Vec<_> = t
                .approvals
                .due_to_expire(now)
                .into_iter()
                .filter_map(|a| decide_expire(a, now))
                .map(crate::gate::step_event)
                .collect();
            if steps.is_empty() {
                continue;
            }
            written += steps.len();
            state
                .store
                .append(PreparedEvent::new_all(steps, now))
                .await?;
            catch_up(state, &name, t).await?;
        }
        Ok(written)
    }
}

/// Folds the tenant's `approval.*` events appended since the last read.
async fn catch_up(state: &AppState, tenant: &str, t: &mut Tenant) -> Result<(), StoreError> {
    let types = [TypeFilter::Prefix("approval.".into())];
    loop {
        let size = state.store.tree_size(tenant).await?;
        if t.next_seq >= size {
            return Ok(());
        }
        let slice = state
            .store
            .read_log_matching(tenant, t.next_seq, &types, 1000)
            .await?;
        for e in &slice.events {
            let _ = t.approvals.apply(e);
        }
        if slice.next_seq <= t.next_seq {
            return Ok(());
        }
        t.next_seq = slice.next_seq;
    }
}
