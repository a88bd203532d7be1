//! A store for the engine's tests: the embedded store underneath, with what a test needs to
//! watch or break around it.
//!
//! - **Unreadable tenants**: reads of a tenant marked with [`WatchedStore::make_unreadable`]
//!   fail with [`StoreError::Quarantined`], as the embedded store answers for a tenant whose log
//!   failed its integrity check at open (while [`Store::tenants`] still lists it).
//! - **Cursor saves** are recorded ([`WatchedStore::saves`]).
//! - **Leases** behave as on PostgreSQL (the embedded store always grants them): granted when
//!   no other holder has an unexpired one, for the TTL asked. [`WatchedStore::steal`] hands
//!   one to another holder regardless, as if the holder's lease had lapsed unnoticed.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use trailkeep_core::{StoredEvent, Uuid};
use trailkeep_store::{
    AppendOutcome, ControlGuard, DeliveryCursor, EventBatches, EventPage, EventQuery,
    ExportRequest, Hash, KeyRecord, LogSlice, NewKey, PreparedEvent, SignedCheckpoint, Stats,
    StatsQuery, Store, StoreError, TenantSummary, TypeFilter,
};

/// One cursor save: the cursor's name and the positions given.
type Save = (String, Vec<(String, u64)>);

pub struct WatchedStore {
    inner: Arc<dyn Store>,
    unreadable: Mutex<HashSet<String>>,
    saves: Mutex<Vec<Save>>,
    /// Lease name → holder and expiry.
    leases: Mutex<HashMap<String, (String, Instant)>>,
}

impl WatchedStore {
    pub fn new(inner: Arc<dyn Store>) -> Arc<WatchedStore> {
        Arc::new(WatchedStore {
            inner,
            unreadable: Mutex::new(HashSet::new()),
            saves: Mutex::new(Vec::new()),
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// From now on, reads of `tenant` fail as for a quarantined tenant.
    pub fn make_unreadable(&self, tenant: &str) {
        self.unreadable.lock().unwrap().insert(tenant.to_string());
    }

    fn check(&self, tenant: &str) -> Result<(), StoreError> {
        if self.unreadable.lock().unwrap().contains(tenant) {
            return Err(StoreError::Quarantined {
                tenant: tenant.to_string(),
                reason: "its rebuilt tree does not match a signed checkpoint (test)".into(),
            });
        }
        Ok(())
    }

    /// The cursor saves of `name` so far, in order.
    pub fn saves(&self, name: &str) -> Vec<Vec<(String, u64)>> {
        self.saves
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .collect()
    }

    /// Gives the lease `name` to `holder` for `ttl`, whoever holds it.
    pub fn steal(&self, name: &str, holder: &str, ttl: Duration) {
        self.leases
            .lock()
            .unwrap()
            .insert(name.to_string(), (holder.to_string(), Instant::now() + ttl));
    }
}

#[async_trait::async_trait]
impl Store for WatchedStore {
    async fn append(&self, e: Vec<PreparedEvent>) -> Result<AppendOutcome, StoreError> {
        self.inner.append(e).await
    }
    async fn get_event(&self, id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.inner.get_event(id).await
    }
    async fn query(&self, q: EventQuery) -> Result<EventPage, StoreError> {
        self.inner.query(q).await
    }
    async fn read_log(
        &self,
        t: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.check(t)?;
        self.inner.read_log(t, from, limit).await
    }
    async fn read_log_matching(
        &self,
        t: &str,
        from: u64,
        types: &[TypeFilter],
        limit: usize,
    ) -> Result<LogSlice, StoreError> {
        self.check(t)?;
        self.inner.read_log_matching(t, from, types, limit).await
    }
    async fn load_cursor(&self, name: &str) -> Result<DeliveryCursor, StoreError> {
        self.inner.load_cursor(name).await
    }
    async fn save_cursor(&self, name: &str, p: &[(String, u64)]) -> Result<(), StoreError> {
        self.saves
            .lock()
            .unwrap()
            .push((name.to_string(), p.to_vec()));
        self.inner.save_cursor(name, p).await
    }
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap();
        match leases.get(name) {
            Some((h, until)) if h != holder && *until > now => Ok(false),
            _ => {
                leases.insert(name.to_string(), (holder.to_string(), now + ttl));
                Ok(true)
            }
        }
    }
    async fn control_lock(&self, n: &[String]) -> Result<ControlGuard, StoreError> {
        self.inner.control_lock(n).await
    }
    async fn export(&self, r: ExportRequest) -> Result<EventBatches, StoreError> {
        self.inner.export(r).await
    }
    async fn checkpoint_covering(
        &self,
        t: &str,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.inner.checkpoint_covering(t, size).await
    }
    async fn tenants(&self) -> Result<Vec<TenantSummary>, StoreError> {
        self.inner.tenants().await
    }
    async fn stats(&self, q: StatsQuery) -> Result<Stats, StoreError> {
        self.inner.stats(q).await
    }
    async fn create_key(&self, k: NewKey) -> Result<KeyRecord, StoreError> {
        self.inner.create_key(k).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.inner.list_keys().await
    }
    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_key(id).await
    }
    async fn find_key(&self, h: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.inner.find_key(h).await
    }
    async fn tree_size(&self, t: &str) -> Result<u64, StoreError> {
        self.inner.tree_size(t).await
    }
    async fn tree_root(&self, t: &str, size: u64) -> Result<Hash, StoreError> {
        self.inner.tree_root(t, size).await
    }
    async fn inclusion_proof(&self, t: &str, i: u64, n: u64) -> Result<Vec<Hash>, StoreError> {
        self.inner.inclusion_proof(t, i, n).await
    }
    async fn consistency_proof(&self, t: &str, a: u64, b: u64) -> Result<Vec<Hash>, StoreError> {
        self.inner.consistency_proof(t, a, b).await
    }
    async fn leaves(&self, t: &str, a: u64, b: u64) -> Result<Vec<Hash>, StoreError> {
        self.inner.leaves(t, a, b).await
    }
    async fn put_checkpoint(&self, t: &str, cp: SignedCheckpoint) -> Result<(), StoreError> {
        self.inner.put_checkpoint(t, cp).await
    }
    async fn latest_checkpoint(&self, t: &str) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.inner.latest_checkpoint(t).await
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}
