//! Tenants whose log cannot be read (quarantined by the integrity check at open, or a read that
//! failed): the engine skips them and goes on with the others, and says so in the log, once
//! per tenant per [`WARN_EVERY`] so that a tenant that stays unreadable does not flood it.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use trailkeep_store::StoreError;

/// How often the same tenant is warned about.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub(crate) struct TenantWarnings {
    last: HashMap<String, Instant>,
}

impl TenantWarnings {
    /// Notes that `tenant` was skipped by `who` (`channel ops`, `overdue sessions`) because of
    /// `error`; logs a warning unless one was logged for it within [`WARN_EVERY`].
    pub fn skipped(&mut self, who: &str, tenant: &str, error: &StoreError) {
        let now = Instant::now();
        if let Some(at) = self.last.get(tenant) {
            if now.duration_since(*at) < WARN_EVERY {
                return;
            }
        }
        self.last.insert(tenant.to_string(), now);
        tracing::warn!(
            tenant_id = tenant,
            "{who}: skipping tenant {tenant}, whose log cannot be read ({error}); the other tenants go on, and it is tried again on every pass"
        );
    }
}
