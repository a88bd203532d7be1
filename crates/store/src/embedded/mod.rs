//! The embedded store: a log of blocks in the data directory, everything else in memory.
//!
//! Layout of `DATA_DIR`: `log/NNNNNNNN.seg` (the durable log, see [`segment`] and [`codec`]),
//! `keys.json` (API keys, see [`keyfile`]), `store.lock` (held while a process has the store
//! open), and the signing key the binary keeps there.
//!
//! Write path: request handlers validate, salt and hash events ([`crate::PreparedEvent`]);
//! [`EmbeddedStore::append`] finds repeated ids in the request and encodes and compresses its
//! bodies (still on the handler's thread, in parallel); the [`writer`]'s commit thread then
//! takes every request waiting and sequences them into one block, its sync thread writes and
//! fsyncs the blocks waiting and then answers their requests, and its apply thread applies
//! them to memory (reads wait for that: [`Visibility`]). A crash loses only
//! unanswered requests, and since a block is checked whole at recovery, never half of one.
//!
//! Read path: [`memory::Mem`] holds every tenant's event metadata, indexes by time, type, actor
//! and session, the Merkle trees and checkpoints, all rebuilt from the log at open. A listing
//! walks index ranges in memory and reads only the entries of the page from the log (one
//! `pread` and one small decompression per event). See ARCHITECTURE.md for the measurements
//! behind this design.

mod chunked;
mod codec;
mod compress;
mod index;
mod keyfile;
mod memory;
mod read;
mod segment;
mod writer;

use crate::{
    AppendOutcome, EventPage, EventQuery, Hash, KeyRecord, NewKey, PreparedEvent, SignedCheckpoint,
    Stats, StatsQuery, Store, StoreError, TenantSummary,
};
use async_trait::async_trait;
use memory::Mem;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use tokio::sync::oneshot;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

/// Tuning for the embedded store.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Most events committed in one group.
    pub max_group_events: usize,
    /// Events to collect before training the compression dictionary (0: never compress).
    pub dict_train_events: usize,
    /// Size at which a new log segment is started.
    pub segment_bytes: u64,
    /// Holds the apply thread back this long before each block, so that tests can watch
    /// reads wait for memory to catch up with what was answered. Zero outside tests.
    #[doc(hidden)]
    pub apply_delay: std::time::Duration,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_group_events: 50_000,
            dict_train_events: 20_000,
            segment_bytes: segment::SEGMENT_TARGET,
            apply_delay: std::time::Duration::ZERO,
        }
    }
}

/// Bodies collected to train the first dictionary.
#[derive(Default)]
struct Sampler {
    samples: Vec<Vec<u8>>,
    training: bool,
}

pub(crate) struct Shared {
    pub mem: RwLock<Mem>,
    /// The dictionary new events are compressed with.
    pub dict: RwLock<Option<Arc<compress::Dict>>>,
    /// Set when a write failed: no more writes until a restart.
    pub failed: AtomicBool,
    /// How far answers and memory have got (see [`Visibility`]).
    pub visible: Visibility,
}

/// Read-your-writes across the sync and apply threads.
///
/// A block's requests are answered as soon as it is durable, and memory takes it a moment
/// later (the apply thread). So that nothing answered is ever missing from a read, every read
/// first waits until memory holds every block answered when the read began: usually it
/// already does; otherwise the wait is for one block's apply (under a millisecond for 1,000
/// events).
#[derive(Default)]
pub(crate) struct Visibility {
    /// Number of the last block whose requests were answered (durable).
    pub answered: AtomicU64,
    /// Number of the last block the apply thread is done with.
    pub applied: AtomicU64,
    /// Set when memory stopped following the log (a block could not be applied, or the apply
    /// thread is gone): reads no longer wait, the store refuses writes and is not ready.
    gave_up: AtomicBool,
    lock: Mutex<()>,
    cv: Condvar,
}

impl Visibility {
    /// Called by the apply thread once it is done with block `number`.
    pub fn set_applied(&self, number: u64) {
        self.applied.store(number, Ordering::Release);
        let _guard = self.lock.lock();
        self.cv.notify_all();
    }

    /// Called when memory stops following the log.
    pub fn give_up(&self) {
        self.gave_up.store(true, Ordering::Release);
        let _guard = self.lock.lock();
        self.cv.notify_all();
    }

    /// Waits until memory holds every block answered so far.
    fn wait(&self) {
        let want = self.answered.load(Ordering::Acquire);
        if self.applied.load(Ordering::Acquire) >= want || self.gave_up.load(Ordering::Acquire) {
            return;
        }
        let Ok(mut guard) = self.lock.lock() else {
            return;
        };
        while self.applied.load(Ordering::Acquire) < want && !self.gave_up.load(Ordering::Acquire) {
            // The timeout only guards against a missed wake-up; `set_applied` notifies.
            match self
                .cv
                .wait_timeout(guard, std::time::Duration::from_millis(50))
            {
                Ok((g, _)) => guard = g,
                Err(_) => return,
            }
        }
    }
}

/// The embedded store. Cheap to clone; one per data directory per process (the directory is
/// locked while open).
#[derive(Clone)]
pub struct EmbeddedStore {
    shared: Arc<Shared>,
    writer: Arc<Mutex<Option<writer::Handle>>>,
    sampler: Arc<Mutex<Sampler>>,
    keys: Arc<keyfile::KeyFile>,
    dir: PathBuf,
    opts: EmbeddedOptions,
    _lock: Arc<std::fs::File>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, replaying its log into memory.
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("store.lock"))?;
        if lock.try_lock().is_err() {
            let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
            return Err(StoreError::InUse(format!(
                "the data directory {} is in use by another trailkeep process (a running trailkeep serve?): stop that process, or pass another --data-dir",
                abs.display()
            )));
        }
        if dir.join("db").is_dir() && !segment::log_dir(dir).is_dir() {
            return Err(StoreError::Unavailable(format!(
                "{} holds a store in the format of trailkeep before the log engine (a `db` directory); this version cannot read it: export it with the older version or start with an empty data directory",
                dir.display()
            )));
        }
        let keys = keyfile::KeyFile::open(dir)?;
        let log_dir = segment::log_dir(dir);
        let mut mem = Mem::new(segment::Segments::new(&log_dir));
        let started = std::time::Instant::now();
        let log = segment::recover(&log_dir, opts.segment_bytes, |seg, off, body| {
            mem.apply_block(seg, off, body)
        })?;
        let events: u64 = mem.tenants.values().map(|t| t.size()).sum();
        tracing::info!(events, elapsed = ?started.elapsed(), "embedded store opened");
        let dict = mem.dicts.last().cloned();
        let shared = Arc::new(Shared {
            mem: RwLock::new(mem),
            dict: RwLock::new(dict),
            failed: AtomicBool::new(false),
            visible: Visibility::default(),
        });
        let handle = writer::spawn(shared.clone(), log, opts.max_group_events, opts.apply_delay)?;
        Ok(EmbeddedStore {
            shared,
            writer: Arc::new(Mutex::new(Some(handle))),
            sampler: Arc::new(Mutex::new(Sampler::default())),
            keys: Arc::new(keys),
            dir: dir.to_path_buf(),
            opts,
            _lock: Arc::new(lock),
        })
    }

    /// Why `keys.json` cannot be read, when it cannot (it was damaged while the server runs:
    /// the keys read last stay in use). Checked at each call (one `stat`); readiness reports it.
    pub fn keyfile_problem(&self) -> Option<String> {
        self.keys.problem()
    }

    /// Opens only the key file of a data directory (for `trailkeep key …` while a server runs).
    pub fn open_keys(dir: &Path) -> Result<KeysOnly, StoreError> {
        std::fs::create_dir_all(dir)?;
        Ok(KeysOnly(keyfile::KeyFile::open(dir)?))
    }

    /// Whether `dir` holds an embedded store (its log, its key file or its lock file).
    pub fn exists(dir: &Path) -> bool {
        segment::log_dir(dir).is_dir()
            || dir.join("keys.json").is_file()
            || dir.join("store.lock").is_file()
    }

    /// Creates an empty store in `dir` (the directory and its log directory) if there is none;
    /// [`EmbeddedStore::open`] later finds it like any other.
    pub fn init(dir: &Path) -> Result<(), StoreError> {
        std::fs::create_dir_all(segment::log_dir(dir)).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compression dictionaries in the log (0 until enough events were seen to train one).
    pub fn dictionaries(&self) -> usize {
        self.shared.mem.read().map(|m| m.dicts.len()).unwrap_or(0)
    }

    /// Bytes used on disk by the log.
    pub fn disk_space(&self) -> u64 {
        self.shared
            .mem
            .read()
            .map(|m| m.segments.disk_bytes())
            .unwrap_or(0)
    }

    fn mem(&self) -> Result<std::sync::RwLockReadGuard<'_, Mem>, StoreError> {
        self.shared.visible.wait();
        self.shared
            .mem
            .read()
            .map_err(|_| StoreError::Unavailable("the store's memory lock is poisoned".into()))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mem) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            shared.visible.wait();
            let mem = shared.mem.read().map_err(|_| {
                StoreError::Unavailable("the store's memory lock is poisoned".into())
            })?;
            f(&mem)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    fn send(&self, m: writer::Msg) -> Result<(), StoreError> {
        let w = self
            .writer
            .lock()
            .map_err(|_| StoreError::Unavailable("writer lock poisoned".into()))?;
        match w.as_ref() {
            Some(h) => h.send(m),
            None => Err(StoreError::Unavailable("the store is shutting down".into())),
        }
    }

    /// A request for the commit thread: its repeated ids found, and every event's body
    /// encoded (and, with a dictionary, compressed) into one buffer, compressed together.
    fn request(&self, events: Vec<PreparedEvent>) -> Result<writer::Request, StoreError> {
        let ids = crate::dedupe::RequestIds::new(events.iter().map(|p| &p.event));
        // A dictionary that cannot compress (damaged in the log, or from a later version):
        // store bodies as they are and train a new one.
        let dict = self
            .shared
            .dict
            .read()
            .ok()
            .and_then(|d| d.clone())
            .filter(|d| d.can_compress());
        let sampling = dict.is_none() && self.opts.dict_train_events > 0;
        let mut raw = Vec::new();
        let mut raw_ends = Vec::with_capacity(events.len());
        for p in &events {
            let e = &p.event;
            codec::encode_body(
                &mut raw,
                e.source_ip.as_deref(),
                e.approval_id.as_deref(),
                &e.payload,
            );
            raw_ends.push(raw.len() as u64);
        }
        let (dict, bodies, ends) = match &dict {
            Some(d) => {
                let raws = writer::slices(&raw, &raw_ends);
                let (mut bodies, mut ends) = (Vec::with_capacity(raw.len() / 2), Vec::new());
                compress::compress_into(d, &raws, &mut bodies, &mut ends)?;
                (d.number, bodies, ends)
            }
            None => (0, raw, raw_ends),
        };
        if ends.len() != events.len() {
            return Err(StoreError::Unavailable(format!(
                "compressing {} bodies gave {}",
                events.len(),
                ends.len()
            )));
        }
        if sampling {
            self.sample(
                writer::slices(&bodies, &ends)
                    .into_iter()
                    .map(|b| b.to_vec())
                    .collect(),
            );
        }
        Ok(writer::Request {
            events,
            dict,
            bodies,
            ends,
            ids,
        })
    }

    /// Collects bodies until there are enough to train a dictionary, then trains it on a
    /// background thread and hands it to the commit thread.
    fn sample(&self, samples: Vec<Vec<u8>>) {
        let Ok(mut s) = self.sampler.lock() else {
            return;
        };
        if s.training {
            return;
        }
        let want = self.opts.dict_train_events;
        let room = want.saturating_sub(s.samples.len());
        s.samples.extend(samples.into_iter().take(room));
        if s.samples.len() < want {
            return;
        }
        s.training = true;
        let samples = std::mem::take(&mut s.samples);
        let tx = match self
            .writer
            .lock()
            .ok()
            .and_then(|w| w.as_ref().map(|h| h.sender()))
        {
            Some(tx) => tx,
            None => return,
        };
        let sampler = self.sampler.clone();
        let spawned = std::thread::Builder::new()
            .name("trailkeep-dict".into())
            .spawn(move || {
                let t = std::time::Instant::now();
                match compress::train(&samples) {
                    Some(d) => {
                        tracing::info!(bytes = d.len(), elapsed = ?t.elapsed(), "trained a compression dictionary");
                        let _ = tx.send(writer::Msg::Dict(d));
                    }
                    // Try again with fresh samples.
                    None => {
                        if let Ok(mut s) = sampler.lock() {
                            s.training = false;
                        }
                    }
                }
            });
        if spawned.is_err() {
            s.training = false;
        }
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
        let req = Arc::new(self.request(events)?);
        let (tx, rx) = oneshot::channel();
        self.send(writer::Msg::Append(req.clone(), tx))?;
        let slots = rx
            .await
            .map_err(|_| StoreError::Unavailable("the commit thread stopped".into()))??;
        let out = writer::receipts(&req.events, slots);
        // The commit threads have normally dropped their references: the events are freed
        // here, in parallel.
        drop(req);
        out
    }

    async fn get_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        self.blocking(move |m| read::get_event(m, &event_id)).await
    }

    async fn query(&self, q: EventQuery) -> Result<EventPage, StoreError> {
        self.blocking(move |m| read::query(m, &q)).await
    }

    async fn read_log(
        &self,
        tenant_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |m| read::read_log(m, &t, from_seq, limit))
            .await
    }

    async fn tenants(&self) -> Result<Vec<TenantSummary>, StoreError> {
        let mem = self.mem()?;
        let mut out = Vec::new();
        for (id, t) in &mem.tenants {
            if t.size() == 0 {
                continue;
            }
            out.push(TenantSummary {
                tenant_id: mem.sym(*id)?.to_string(),
                event_count: t.size(),
                first_timestamp: t.first_ts.map(|(n, d)| Timestamp::from_nanos(n, d)),
                last_timestamp: t.last_ts.map(|(n, d)| Timestamp::from_nanos(n, d)),
            });
        }
        out.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        Ok(out)
    }

    async fn stats(&self, q: StatsQuery) -> Result<Stats, StoreError> {
        self.blocking(move |m| read::stats(m, &q)).await
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
        Ok(read::tree_size(&*self.mem()?, tenant_id))
    }

    async fn tree_root(&self, tenant_id: &str, size: u64) -> Result<Hash, StoreError> {
        read::root(&*self.mem()?, tenant_id, size)
    }

    async fn inclusion_proof(
        &self,
        tenant_id: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        read::inclusion(&*self.mem()?, tenant_id, index, size)
    }

    async fn consistency_proof(
        &self,
        tenant_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        read::consistency(&*self.mem()?, tenant_id, from, to)
    }

    async fn leaves(&self, tenant_id: &str, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        let t = tenant_id.to_string();
        self.blocking(move |m| read::leaves(m, &t, start, end))
            .await
    }

    async fn put_checkpoint(
        &self,
        tenant_id: &str,
        cp: SignedCheckpoint,
    ) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(writer::Msg::Checkpoint(tenant_id.to_string(), cp, tx))?;
        rx.await
            .map_err(|_| StoreError::Unavailable("the commit thread stopped".into()))?
    }

    async fn latest_checkpoint(
        &self,
        tenant_id: &str,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        Ok(self
            .mem()?
            .tenant(tenant_id)
            .and_then(|(_, t)| t.latest_checkpoint.clone()))
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
        if self.shared.failed.load(Ordering::Acquire) {
            return Err(StoreError::Unavailable(
                "a write to the log failed; restart trailkeep to recover".into(),
            ));
        }
        if let Some(p) = self.keyfile_problem() {
            return Err(StoreError::Unavailable(p));
        }
        Ok(())
    }

    async fn shutdown(&self) {
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.stop()).await;
        }
    }
}
