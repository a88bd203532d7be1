//! The `approval.expired` steps: an approval whose time passed while pending or approved and
//! unused gets its end written into the tenant's log, at most [`EVERY`] after `expires_at`.
//!
//! The status reads `expired` from the moment `expires_at` passes whether or not the step is
//! written (the fold compares times); the step makes the log itself say so, for auditors and
//! for the alert rules and sinks that read the log.
//!
//! A sweeper looks at every tenant's approvals as the gate's view has them (folded from the
//! log's `approval.*` events, each read once: [`crate::gate::ControlCache`]). For approvals
//! due it takes their control locks (the locks ingest holds while it uses an approval), reads
//! what was appended meanwhile, and appends the steps still due: a use and an expiry are never
//! both written, and two servers sweeping one PostgreSQL database write each step once (the
//! second reads the first's step under the lock).

use crate::AppState;
use std::time::Duration;
use trailkeep_control::approvals::decide_expire;
use trailkeep_core::Timestamp;
use trailkeep_store::{PreparedEvent, StoreError};

/// How often the sweeper looks.
pub const EVERY: Duration = Duration::from_secs(30);

/// Starts the sweeper; it runs until the task is aborted.
pub fn spawn(state: AppState, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut sweeper = Sweeper;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = sweeper.sweep(&state).await {
                tracing::warn!(error = %e, "approval expiry sweep failed; trying again later");
            }
        }
    })
}

/// One sweeper per server.
#[derive(Default)]
pub struct Sweeper;

impl Sweeper {
    /// One pass over every tenant: writes the `approval.expired` steps due. Returns how many
    /// it wrote. A tenant that cannot be read (a quarantined one) is skipped with a warning;
    /// the others are swept.
    pub async fn sweep(&mut self, state: &AppState) -> Result<usize, StoreError> {
        let mut written = 0;
        for summary in state.store.tenants().await? {
            match sweep_tenant(state, &summary.tenant_id).await {
                Ok(n) => written += n,
                Err(e) => tracing::warn!(
                    tenant = %summary.tenant_id,
                    error = %e,
                    "approval expiry: skipping this tenant for now"
                ),
            }
        }
        Ok(written)
    }
}

/// Writes one tenant's `approval.expired` steps due.
async fn sweep_tenant(state: &AppState, tenant: &str) -> Result<usize, StoreError> {
    let approvals = state.control.approvals(state, tenant).await?;
    let due: Vec<String> = approvals
        .due_to_expire(Timestamp::now_micros())
        .into_iter()
        .map(|a| crate::gate::approval_lock(tenant, &a.id))
        .collect();
    if due.is_empty() {
        return Ok(0);
    }
    let _turn = state.control.turn().await?;
    let _guard = state.store.control_lock(&due).await?;
    let approvals = state.control.approvals(state, tenant).await?;
    let now = Timestamp::now_micros();
    let steps: Vec<_> = approvals
        .due_to_expire(now)
        .into_iter()
        .filter(|a| due.contains(&crate::gate::approval_lock(tenant, &a.id)))
        .filter_map(|a| decide_expire(a, now))
        .map(crate::gate::step_event)
        .collect();
    if steps.is_empty() {
        return Ok(0);
    }
    let n = steps.len();
    state
        .store
        .append(PreparedEvent::new_all(steps, now))
        .await?;
    state.appended();
    Ok(n)
}
