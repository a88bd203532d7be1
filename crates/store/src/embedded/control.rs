//! Control locks of the embedded store ([`crate::Store::control_lock`]): one process holds the
//! data directory, so a mutex per lock name in memory excludes every other holder.

use crate::ControlGuard;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Async mutexes by lock name. An entry no guard holds is dropped when the next lock is taken,
/// so the map holds only the names being decided right now.
#[derive(Default)]
pub(crate) struct ControlLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The names of one acquisition, sorted and without repeats: every holder takes its locks in
/// this one order, so two holders never wait for each other in a cycle.
pub(crate) fn ordered(names: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = names.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

impl ControlLocks {
    /// Takes the locks of every name (in [`ordered`] order); held until the guard drops.
    pub async fn lock(&self, names: &[String]) -> ControlGuard {
        ControlGuard::new(self.lock_all(names).await)
    }

    pub(crate) async fn lock_all(&self, names: &[String]) -> Vec<tokio::sync::OwnedMutexGuard<()>> {
        let mut held = Vec::with_capacity(names.len());
        for name in ordered(names) {
            let m = {
                let mut map = self.locks.lock().unwrap_or_else(|p| p.into_inner());
                // Only the map holds an entry nobody waits for or holds.
                map.retain(|_, m| Arc::strong_count(m) > 1);
                map.entry(name.to_string()).or_default().clone()
            };
            held.push(m.lock_owned().await);
        }
        held
    }
}
