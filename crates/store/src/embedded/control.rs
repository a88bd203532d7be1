//! Control locks of the embedded store ([`crate::Store::control_lock`]): one process holds the
//! data directory, so a per-tenant mutex in memory excludes every other holder.

use crate::ControlGuard;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per-tenant async mutexes. An entry no guard holds is dropped when the next lock is taken,
/// so the map holds only the tenants being decided right now.
#[derive(Default)]
pub(crate) struct ControlLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl ControlLocks {
    pub async fn lock(&self, tenant: &str) -> ControlGuard {
        let m = {
            let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            // Only the map holds an entry nobody waits for or holds.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(tenant.to_string()).or_default().clone()
        };
        ControlGuard::new(m.lock_owned().await)
    }
}
