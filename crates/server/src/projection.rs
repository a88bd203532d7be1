//! Reading the events a projection of the log is folded from (approvals, impersonation
//! sessions): a snapshot of every event whose type starts with a prefix, in log order.

use crate::{ApiError, AppState};
use trailkeep_core::StoredEvent;
use trailkeep_store::{EventQuery, ExportRequest, Order, TypeFilter};

/// Every event of `tenant` (or of every tenant) whose type starts with `type_prefix` (with its
/// trailing dot), from one snapshot, sorted by `(tenant_id, seq)`: each tenant's events in log
/// order, which is all a fold needs (tenants never interact).
pub(crate) async fn events_in_log_order(
    state: &AppState,
    tenant: Option<&str>,
    type_prefix: &str,
) -> Result<Vec<StoredEvent>, ApiError> {
    let mut batches = state
        .store
        .export(ExportRequest {
            query: EventQuery {
                tenant_id: tenant.map(str::to_string),
                event_type: Some(TypeFilter::Prefix(type_prefix.to_string())),
                order: Order::Asc,
                ..EventQuery::default()
            },
            // Seq order needs a tenant; across tenants the sort below restores it.
            log_order: tenant.is_some(),
            ..ExportRequest::default()
        })
        .await?;
    let mut events = Vec::new();
    while let Some(batch) = batches.recv().await {
        events.extend(batch?);
    }
    sort_log_order(&mut events);
    Ok(events)
}

/// Sorts events by `(tenant_id, seq)`.
pub(crate) fn sort_log_order(events: &mut [StoredEvent]) {
    events.sort_by(|a, b| (&a.tenant_id, a.seq).cmp(&(&b.tenant_id, b.seq)));
}
