//! The embedded store: an fjall LSM database in the data directory, written by one group-commit
//! thread.
//!
//! Why fjall: ingest must reach ten times PostgreSQL's indexed `COPY` rate durably, and every
//! event carries four index entries. In an LSM those are sequential writes to a memtable and a
//! journal, not random B-tree page updates (SQLite measured here: ~24k events/s with three
//! indexes). See ARCHITECTURE.md for the measurements behind the choice.
//!
//! Write path: request handlers validate and hash events ([`crate::PreparedEvent`]), then send
//! them to the [`writer`] thread, which takes every request waiting, sequences them, writes one
//! atomic batch (events, indexes, counters, tenant state) and fsyncs the journal once for the
//! whole group before answering any of them. A crash loses only unanswered requests, and since a
//! batch is atomic in the journal, never half of one.

mod codec;
mod keyfile;
mod query;
mod tree;
mod writer;

use crate::{
    AppendOutcome, EventPage, EventQuery, Hash, KeyRecord, NewKey, PreparedEvent, SignedCheckpoint,
    Stats, StatsQuery, Store, StoreError, TenantSummary,
};
use async_trait::async_trait;
use fjall::{Database, Keyspace, KeyspaceCreateOptions};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

/// Tuning for the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Block cache size in bytes.
    pub cache_bytes: u64,
    /// Most events committed in one group.
    pub max_group_events: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            cache_bytes: 512 * 1024 * 1024,
            max_group_events: 50_000,
        }
    }
}

/// What the store keeps about each tenant's log, in memory and (in the same batch as the events
/// that change it) in the `tenants` keyspace.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TenantState {
    pub next_seq: u64,
    pub count: u64,
    pub first_ts: Option<(i64, u8)>,
    pub last_ts: Option<(i64, u8)>,
    /// Every event type the tenant has used (drives prefix queries and stats).
    pub types: BTreeSet<String>,
}

pub(crate) struct Keyspaces {
    pub events: Keyspace,
    pub ids: Keyspace,
    pub by_time: Keyspace,
    pub by_type: Keyspace,
    pub by_actor: Keyspace,
    pub by_session: Keyspace,
    pub day_counts: Keyspace,
    pub tenants: Keyspace,
    pub tree: Keyspace,
    pub checkpoints: Keyspace,
}

pub(crate) struct Shared {
    pub db: Database,
    pub ks: Keyspaces,
    pub tenants: RwLock<HashMap<String, TenantState>>,
}

/// The embedded store. Cheap to clone; one per data directory per process (the directory is
/// locked while open).
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<writer::Handle>>>,
    keys: Arc<keyfile::KeyFile>,
    dir: PathBuf,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`.
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let keys = keyfile::KeyFile::open(dir)?;
        let db = Database::builder(dir.join("db")).cache_size(opts.cache_bytes).open().map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot open the database in {} ({e}); is another trailkeep process using this data directory?",
                dir.display()
            ))
        })?;
        let ks = Keyspaces {
            events: db.keyspace("events", KeyspaceCreateOptions::default)?,
            ids: db.keyspace("ids", KeyspaceCreateOptions::default)?,
            by_time: db.keyspace("by_time", KeyspaceCreateOptions::default)?,
            by_type: db.keyspace("by_type", KeyspaceCreateOptions::default)?,
            by_actor: db.keyspace("by_actor", KeyspaceCreateOptions::default)?,
            by_session: db.keyspace("by_session", KeyspaceCreateOptions::default)?,
            day_counts: db.keyspace("day_counts", KeyspaceCreateOptions::default)?,
            tenants: db.keyspace("tenants", KeyspaceCreateOptions::default)?,
            tree: db.keyspace("tree", KeyspaceCreateOptions::default)?,
            checkpoints: db.keyspace("checkpoints", KeyspaceCreateOptions::default)?,
        };
        let mut tenants = HashMap::new();
        for g in ks.tenants.iter() {
            let (k, v) = g.into_inner()?;
            let name = String::from_utf8(k.to_vec())
                .map_err(|_| StoreError::Corrupt("tenant name".into()))?;
            let st: TenantState = serde_json::from_slice(&v)
                .map_err(|e| StoreError::Corrupt(format!("tenant state of {name}: {e}")))?;
            tenants.insert(name, st);
        }
        let shared = Arc::new(Shared {
            db,
            ks,
            tenants: RwLock::new(tenants),
        });
        let handle = writer::spawn(shared.clone(), opts.max_group_events)?;
        Ok(EmbeddedStore {
            shared,
            writer: Arc::new(Mutex::new(Some(handle))),
            keys: Arc::new(keys),
            dir: dir.to_path_buf(),
        })
    }

    /// Opens only the key file of a data directory (for `trailkeep key …` while a server runs).
    pub fn open_keys(dir: &Path) -> Result<KeysOnly, StoreError> {
        std::fs::create_dir_all(dir)?;
        Ok(KeysOnly(keyfile::KeyFile::open(dir)?))
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes used on disk by the database (journal and tables).
    pub fn disk_space(&self) -> u64 {
        self.shared.db.disk_space().unwrap_or(0)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || f(&shared))
            .await
            .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }
}

/// Key management on a data directory without opening the database.
pub struct KeysOnly(keyfile::KeyFile);

impl KeysOnly {
    pub fn create(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        self.0.create(key.into_record(Timestamp::now_micros()))
    }
    pub fn list(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.0.list()
    }
    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        self.0.revoke(id)
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn append(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, StoreError> {
        let rx = {
            let w = self
                .writer
                .lock()
                .map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?;
            match w.as_ref() {
                Some(h) => h.submit(events)?,
                None => return Err(StoreError::Unavailable("the store is shutting down".into())),
            }
        };
        rx.await
            .map_err(|_| StoreError::Unavailable("the commit thread stopped".into()))?
    }

    async fn get_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.blocking(move |s| query::get_event(s, &event_id)).await
    }

    async fn query(&self, q: EventQuery) -> Result<EventPage, StoreError> {
        self.blocking(move |s| query::query(s, &q)).await
    }

    async fn read_log(
        &self,
        tenant_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |s| query::read_log(s, &t, from_seq, limit))
            .await
    }

    async fn tenants(&self) -> Result<Vec<TenantSummary>, StoreError> {
        let map = self
            .shared
            .tenants
            .read()
            .map_err(|_| StoreError::Unavailable("tenant lock poisoned".into()))?;
        let mut out: Vec<TenantSummary> = map
            .iter()
            .filter(|(_, st)| st.count > 0)
            .map(|(name, st)| TenantSummary {
                tenant_id: name.clone(),
                event_count: st.count,
                first_timestamp: st.first_ts.map(|(n, d)| Timestamp::from_nanos(n, d)),
                last_timestamp: st.last_ts.map(|(n, d)| Timestamp::from_nanos(n, d)),
            })
            .collect();
        out.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        Ok(out)
    }

    async fn stats(&self, q: StatsQuery) -> Result<Stats, StoreError> {
        self.blocking(move |s| query::stats(s, &q)).await
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        let keys = self.keys.clone();
        tokio::task::spawn_blocking(move || keys.create(key.into_record(Timestamp::now_micros())))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.keys.list()
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let keys = self.keys.clone();
        let id = id.to_string();
        tokio::task::spawn_blocking(move || keys.revoke(&id))
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?
    }

    async fn find_key(&self, secret_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.keys.find(secret_hash)
    }

    async fn tree_size(&self, tenant_id: &str) -> Result<u64, StoreError> {
        tree::tree_size(&self.shared, tenant_id)
    }

    async fn tree_root(&self, tenant_id: &str, size: u64) -> Result<Hash, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |s| tree::root(s, &t, size)).await
    }

    async fn inclusion_proof(
        &self,
        tenant_id: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |s| tree::inclusion(s, &t, index, size))
            .await
    }

    async fn consistency_proof(
        &self,
        tenant_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |s| tree::consistency(s, &t, from, to))
            .await
    }

    async fn leaves(&self, tenant_id: &str, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |s| tree::leaves(s, &t, start, end))
            .await
    }

    async fn put_checkpoint(
        &self,
        tenant_id: &str,
        cp: SignedCheckpoint,
    ) -> Result<(), StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |s| tree::put_checkpoint(s, &t, &cp))
            .await
    }

    async fn latest_checkpoint(
        &self,
        tenant_id: &str,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |s| tree::latest_checkpoint(s, &t)).await
    }

    async fn ready(&self) -> Result<(), StoreError> {
        let alive = self
            .writer
            .lock()
            .map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?
            .as_ref()
            .is_some_and(|h| h.is_alive());
        if !alive {
            return Err(StoreError::Unavailable(
                "the commit thread is not running".into(),
            ));
        }
        self.shared
            .ks
            .tenants
            .first_key_value()
            .map(|_| ())
            .unwrap_or(());
        Ok(())
    }

    async fn shutdown(&self) {
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.stop()).await;
        }
        let _ = self.shared.db.persist(fjall::PersistMode::SyncAll);
        // Flush memtables to tables so the next start does not replay the journals (faster
        // starts, and the data directory shows its real size).
        let shared = self.shared.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let k = &shared.ks;
            for ks in [
                &k.events, &k.ids, &k.by_time, &k.by_type, &k.by_actor, &k.by_session, &k.day_counts, &k.tenants,
                &k.tree, &k.checkpoints,
            ] {
                if let Err(e) = ks.rotate_memtable_and_wait() {
                    tracing::warn!(error = %e, "flushing a memtable at shutdown failed; the journal still holds the data");
                }
            }
        })
        .await;
    }
}
