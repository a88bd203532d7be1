//! The embedded store: a log of blocks in the data directory, everything else in memory.
//!
//! Layout of `DATA_DIR`: `log/NNNNNNNN.seg` (the durable log, see [`segment`] and [`codec`]),
//! `high-water` (how far the log is known to have got, see [`mark`]), `keys.json` (API keys,
//! see [`keyfile`]), `cursors/` (delivery cursors, see [`delivery`]), `store.lock` (held while
//! a process has the store open), and the signing key the binary keeps there.
//!
//! Integrity checks at open, after the log is replayed: the log must not be behind the
//! high-water mark (else it was rolled back: refused, unless
//! [`EmbeddedOptions::accept_rollback`], which records a `log.restored` event in `_global`);
//! and every tenant's rebuilt tree must have, at the size of its latest signed checkpoint, that
//! checkpoint's root, with a signature by one of the log's recorded keys (else the tenant is
//! quarantined: its reads fail with [`StoreError::Quarantined`] and [`Store::health`] names
//! it, while the other tenants are served).
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
//! `pread` and one small decompression per event). An export ([`export`]) takes a snapshot of
//! every tenant's size under one read lock and walks the same ranges a batch per read lock,
//! reading the log through read-ahead windows. See ARCHITECTURE.md for the measurements behind
//! this design.
//!
//! Delivery ([`delivery`]): a filtered log read decides from the events' metadata in memory
//! which seqs of its window match and reads only those from the log; delivery cursors are small
//! files in `cursors/`, replaced durably (temporary file, fsync, rename, directory fsync); a
//! lease is always granted (one process holds the data directory); control locks are
//! mutexes by name in memory ([`control`]).

mod chunked;
mod codec;
mod compress;
pub(crate) mod control;
mod delivery;
mod export;
mod index;
mod keyfile;
mod mark;
mod memory;
pub mod perm;
mod read;
mod segment;
mod writer;

pub use segment::Faults;

use crate::{
    AppendOutcome, EventPage, EventQuery, Hash, KeyRecord, NewKey, PreparedEvent, SignedCheckpoint,
    Stats, StatsQuery, Store, StoreError, StoreHealth, TenantSummary,
};
use async_trait::async_trait;
use memory::Mem;
use std::collections::BTreeMap;
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
    /// Open a log that is behind its high-water mark (restored from a backup on purpose): what
    /// is missing is recorded as a `log.restored` event in `_global` and the mark starts over
    /// from the log as it is. Without it such a log is refused.
    pub accept_rollback: bool,
    /// How often, at most, the high-water mark is rewritten while the log grows.
    pub mark_interval: std::time::Duration,
    /// Injected write failures (tests).
    #[doc(hidden)]
    pub faults: Option<Arc<Faults>>,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            max_group_events: 50_000,
            dict_train_events: 20_000,
            segment_bytes: segment::SEGMENT_TARGET,
            apply_delay: std::time::Duration::ZERO,
            accept_rollback: false,
            mark_interval: std::time::Duration::from_millis(200),
            faults: None,
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
    /// Set when a write failed and could not be undone: no more writes until a restart.
    pub failed: AtomicBool,
    /// Why `failed` was set.
    pub failure: Mutex<Option<String>>,
    /// Bumped each time the log is cut back after a failed write: blocks decided before it
    /// are refused, and the commit thread starts deciding afresh from memory.
    pub write_epoch: AtomicU64,
    /// Where the durable log ends (the sync thread publishes it after each fsync; the mark
    /// thread writes it down).
    pub durable: Mutex<mark::Pos>,
    /// How far answers and memory have got (see [`Visibility`]).
    pub visible: Visibility,
    /// Seqs examined by log-order exports (see [`EmbeddedStore::export_log_seqs_examined`]).
    pub export_log_seqs: AtomicU64,
}

/// Why writes are refused when they are.
pub(crate) const FAILED: &str =
    "an earlier write to the log failed and could not be undone; restart trailkeep to recover the log";

impl Shared {
    /// Refuses every later write, for `why` (reported by `health` and `ready`).
    pub fn fail(&self, why: String) {
        if let Ok(mut f) = self.failure.lock() {
            f.get_or_insert(why);
        }
        self.failed.store(true, Ordering::Release);
    }
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

    /// Waits until the apply thread is done with every block up to `number` (or gave up).
    pub fn wait_applied(&self, number: u64) {
        while self.applied.load(Ordering::Acquire) < number && !self.gave_up.load(Ordering::Acquire)
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
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
    /// Tenants that failed the integrity check at open, with why (fixed at open).
    quarantined: Arc<BTreeMap<String, String>>,
    control: Arc<control::ControlLocks>,
    cursors: Arc<delivery::Cursors>,
    _lock: Arc<std::fs::File>,
}

impl EmbeddedStore {
    /// Opens (creating if needed) the store in `dir`, replaying its log into memory.
    pub fn open(dir: &Path, opts: EmbeddedOptions) -> Result<EmbeddedStore, StoreError> {
        perm::create_dir_private(dir).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let lock = perm::private_file()
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
        perm::warn_if_wide(dir);
        let keys = keyfile::KeyFile::open(dir)?;
        let log_dir = segment::log_dir(dir);
        let mut mem = Mem::new(segment::Segments::new(&log_dir));
        let started = std::time::Instant::now();
        mark::clean(dir);
        let high_water = mark::read(dir)?;
        // The block the mark says was last: its CRC as recovery finds it.
        let watch = high_water
            .as_ref()
            .and_then(|m| m.last_block.as_ref().map(|b| (b.segment, b.end)));
        let mut seen_crc = None;
        let mut log = segment::recover(&log_dir, opts.segment_bytes, |seg, off, body| {
            if watch == Some((seg, off + body.len() as u64)) {
                seen_crc = Some(crc32fast::hash(body));
            }
            mem.apply_block(seg, off, body)
        })?;
        let events: u64 = mem.tenants.values().map(|t| t.size()).sum();
        tracing::info!(events, elapsed = ?started.elapsed(), "embedded store opened");
        let missing = match &high_water {
            Some(m) => mark::missing(m, log.id(), log.pos(), seen_crc, &mem),
            None => Vec::new(),
        };
        if !missing.is_empty() && !opts.accept_rollback {
            return Err(StoreError::Corrupt(format!(
                "the log in {} is behind its high-water mark ({}): acknowledged data is missing: {}. Restore the missing data (the data directory's backup) and start again; if this data directory was restored from a backup on purpose, start with --accept-restored-log to accept the loss (it is recorded in the log as a log.restored event)",
                log_dir.display(),
                mark::path(dir).display(),
                missing.join("; ")
            )));
        }
        mem.quarantined = check_trees(&mem, high_water.as_ref());
        let mut quarantined = BTreeMap::new();
        for (sym, why) in &mem.quarantined {
            let name = mem.sym(*sym)?.to_string();
            tracing::error!(tenant = %name, problem = %why, "quarantined a tenant: its log failed the integrity check at open and is not served");
            quarantined.insert(name, why.clone());
        }
        // The mark starts from the log as it is now (also the first time, and after an
        // accepted restore).
        let pos = log.pos();
        mark::write(dir, &mark::Mark::new(log.id(), pos, &mem)?).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot write the high-water mark {}: {e}",
                mark::path(dir).display()
            ))
        })?;
        log.set_faults(opts.faults.clone());
        let marker = writer::MarkWriter {
            dir: dir.to_path_buf(),
            interval: opts.mark_interval,
            log_id: log.id(),
            written: pos,
        };
        let dict = mem.dicts.last().cloned();
        let shared = Arc::new(Shared {
            mem: RwLock::new(mem),
            dict: RwLock::new(dict),
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            write_epoch: AtomicU64::new(0),
            durable: Mutex::new(pos),
            visible: Visibility::default(),
            export_log_seqs: AtomicU64::new(0),
        });
        let handle = writer::spawn(
            shared.clone(),
            log,
            opts.max_group_events,
            opts.apply_delay,
            marker,
        )?;
        let store = EmbeddedStore {
            shared,
            writer: Arc::new(Mutex::new(Some(handle))),
            sampler: Arc::new(Mutex::new(Sampler::default())),
            keys: Arc::new(keys),
            dir: dir.to_path_buf(),
            opts,
            quarantined: Arc::new(quarantined),
            control: Arc::default(),
            cursors: Arc::new(delivery::Cursors::new(dir)),
            _lock: Arc::new(lock),
        };
        if !missing.is_empty() {
            tracing::warn!(missing = %missing.join("; "), "opening a log that is behind its high-water mark, as asked (--accept-restored-log); recording it as log.restored");
            store.record(
                "log.restored",
                serde_json::json!({
                    "missing": missing,
                    "high_water_mark": high_water,
                }),
            )?;
        }
        Ok(store)
    }

    /// Appends an event trailkeep writes itself (`log.*`) to `_global` and waits until it is
    /// durable. Usable from synchronous code, also inside an async runtime (it polls).
    pub fn record(&self, event_type: &str, payload: serde_json::Value) -> Result<(), StoreError> {
        let canonical = serde_json_canonicalizer::to_vec(&payload)
            .map_err(|e| StoreError::Invalid(format!("payload of {event_type}: {e}")))?;
        let now = Timestamp::now_micros();
        let event = trailkeep_core::NewEvent {
            event_id: Uuid::now_v7(),
            event_id_assigned: true,
            event_type: event_type.into(),
            actor: "trailkeep".into(),
            tenant_id: trailkeep_core::GLOBAL_TENANT.into(),
            payload: canonical.into(),
            timestamp: Timestamp::from_nanos(now.nanos - now.nanos.rem_euclid(1_000_000), 3),
            timestamp_assigned: true,
            source_ip: None,
            impersonation_session: None,
            approval_id: None,
        };
        let req = Arc::new(self.request(vec![PreparedEvent::new(event, now)])?);
        let (tx, rx) = oneshot::channel();
        self.send(writer::Msg::Append(req, tx))?;
        wait_reply(rx).map(|_| ())
    }

    /// Pins the log's signing key: the first start records `vkey` (the C2SP verifier key of
    /// the checkpoint signer) in the log; later starts must offer the same key. Another key is
    /// refused (`Invalid`: the signing key was lost or replaced) unless `rotate`, which records
    /// a `log.key_rotated` event in `_global` naming the old and the new key, then the new key:
    /// every recorded key stays in the log, so older checkpoints stay verifiable.
    pub fn claim_signing_key(&self, vkey: &str, rotate: bool) -> Result<(), StoreError> {
        let verifier = trailkeep_tlog::Verifier::from_vkey(vkey)
            .map_err(|e| StoreError::Invalid(format!("the signing key is not usable: {e}")))?;
        let (current, unverified) = {
            let mem = self.mem()?;
            let current = mem.signing_keys.last().cloned();
            // A log from before keys were recorded: its checkpoints must verify with this key.
            let unverified = if current.is_none() {
                mem.tenants
                    .iter()
                    .filter_map(|(sym, t)| Some((*sym, t.latest_checkpoint.as_ref()?)))
                    .find(|(_, cp)| trailkeep_tlog::open_checkpoint(&cp.note, &verifier).is_err())
                    .and_then(|(sym, _)| mem.sym(sym).ok().map(str::to_string))
            } else {
                None
            };
            (current, unverified)
        };
        let old = match (current, unverified) {
            (Some(k), _) if k == vkey => {
                if rotate {
                    tracing::warn!(%vkey, "--rotate-signing-key given, but this is already the log's signing key: nothing to rotate");
                }
                return Ok(());
            }
            (None, None) => {
                self.write_key(vkey)?;
                tracing::info!(%vkey, "recorded the log's signing key in the log");
                return Ok(());
            }
            (Some(old), _) => old,
            (None, Some(tenant)) => {
                format!("(not recorded; the key that signed the checkpoints of {tenant})")
            }
        };
        if !rotate {
            return Err(StoreError::Invalid(format!(
                "the log's checkpoints are signed with the key {old}, but this process has the key {vkey} (was the signing-key file replaced or lost?). Restore the original key; or, to change it on purpose, start once with --rotate-signing-key: the rotation is recorded in the log and older checkpoints stay verifiable with the old key"
            )));
        }
        self.record(
            "log.key_rotated",
            serde_json::json!({"old_vkey": old, "new_vkey": vkey}),
        )?;
        self.write_key(vkey)?;
        tracing::warn!(old = %old, new = %vkey, "rotated the log's signing key, as asked (--rotate-signing-key); recorded as log.key_rotated");
        Ok(())
    }

    /// The log's signing keys (C2SP vkeys), oldest first; the last is the current one.
    pub fn signing_keys(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.mem()?.signing_keys.clone())
    }

    fn write_key(&self, vkey: &str) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.send(writer::Msg::Key(vkey.to_string(), tx))?;
        wait_reply(rx)
    }

    /// Why `keys.json` cannot be read, when it cannot (it was damaged while the server runs:
    /// the keys read last stay in use). Checked at each call (one `stat`); readiness reports it.
    pub fn keyfile_problem(&self) -> Option<String> {
        self.keys.problem()
    }

    /// Opens only the key file of a data directory (for `trailkeep key …` while a server runs).
    pub fn open_keys(dir: &Path) -> Result<KeysOnly, StoreError> {
        perm::create_dir_private(dir)?;
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
        perm::create_dir_private(&segment::log_dir(dir)).map_err(|e| {
            StoreError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })
    }

    /// Why writes are refused.
    fn failure(&self) -> String {
        self.shared
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_else(|| FAILED.to_string())
    }

    /// Refuses a quarantined tenant.
    fn check_tenants<'a>(
        &self,
        tenants: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), StoreError> {
        if self.quarantined.is_empty() {
            return Ok(());
        }
        for t in tenants {
            if let Some(why) = self.quarantined.get(t) {
                return Err(StoreError::Quarantined {
                    tenant: t.to_string(),
                    reason: why.clone(),
                });
            }
        }
        Ok(())
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Compression dictionaries in the log (0 until enough events were seen to train one).
    pub fn dictionaries(&self) -> usize {
        self.shared.mem.read().map(|m| m.dicts.len()).unwrap_or(0)
    }

    /// Seqs whose metadata log-order exports examined since the store was opened: what a
    /// test checks to see that an export with a time filter walks only the span of seqs that
    /// can match, not the tenant's whole log.
    #[doc(hidden)]
    pub fn export_log_seqs_examined(&self) -> u64 {
        self.shared.export_log_seqs.load(Ordering::Relaxed)
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

/// Waits for the commit thread's answer without an async runtime (polls).
fn wait_reply<T>(mut rx: oneshot::Receiver<Result<T, StoreError>>) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Ok(r) => return r,
            Err(oneshot::error::TryRecvError::Empty) => {
                if started.elapsed() > std::time::Duration::from_secs(60) {
                    return Err(StoreError::Unavailable(
                        "the commit thread did not answer within a minute".into(),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            Err(oneshot::error::TryRecvError::Closed) => {
                return Err(StoreError::Unavailable("the commit thread stopped".into()))
            }
        }
    }
}

/// The integrity check at open: every tenant's rebuilt tree must have, at the size of its
/// latest stored checkpoint, that checkpoint's root; the signed note must say the same size
/// and root and verify with one of the log's recorded keys (when any are recorded); and the
/// high-water mark's checkpoint root must match too. Tenants that fail, with why.
fn check_trees(mem: &Mem, high_water: Option<&mark::Mark>) -> foldhash::HashMap<u32, String> {
    let mut out = foldhash::HashMap::default();
    let verifiers: Vec<_> = mem
        .signing_keys
        .iter()
        .filter_map(|k| trailkeep_tlog::Verifier::from_vkey(k).ok())
        .collect();
    for (sym, t) in &mem.tenants {
        let mut problems = Vec::new();
        let root_at = |size: u64| trailkeep_tlog::tree::tree_hash(size, &t.tree).ok();
        if let Some(cp) = &t.latest_checkpoint {
            if root_at(cp.size) != Some(cp.root) {
                problems.push(format!(
                    "its events 0..{} no longer hash to the root of its signed checkpoint of size {} (events were altered on disk)",
                    cp.size, cp.size
                ));
            }
            if !verifiers.is_empty() {
                let opened = verifiers
                    .iter()
                    .find_map(|v| trailkeep_tlog::open_checkpoint(&cp.note, v).ok());
                match opened {
                    None => problems.push(format!(
                        "its checkpoint of size {} does not verify with any of the log's signing keys",
                        cp.size
                    )),
                    Some(c) if c.size != cp.size || c.root != cp.root => problems.push(format!(
                        "its stored checkpoint of size {} differs from the signed note it carries",
                        cp.size
                    )),
                    Some(_) => {}
                }
            }
        }
        if let (Some(m), Ok(name)) = (high_water, mem.sym(*sym)) {
            if let Some((size, root)) = m.tenants.get(name).and_then(|tm| tm.checkpoint.as_ref()) {
                if *size <= t.size() && root_at(*size).map(hex::encode).as_ref() != Some(root) {
                    problems.push(format!(
                        "its events 0..{size} no longer hash to the root of the checkpoint of size {size} the high-water mark recorded (events were altered on disk)"
                    ));
                }
            }
        }
        if !problems.is_empty() {
            problems.dedup();
            out.insert(
                *sym,
                format!(
                    "{}; restore the data directory from a backup",
                    problems.join("; ")
                ),
            );
        }
    }
    out
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
        if !self.quarantined.is_empty() {
            self.check_tenants(events.iter().map(|p| p.event.tenant_id.as_str()))?;
        }
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

    async fn export(&self, req: crate::ExportRequest) -> Result<crate::EventBatches, StoreError> {
        let batch = req.checked_batch()?;
        if let Some(t) = &req.query.tenant_id {
            self.check_tenants([t.as_str()])?;
        }
        // The snapshot is taken here, before this returns (see `export.rs`).
        let mut walk = self
            .blocking(move |m| export::Export::start(m, req, batch))
            .await?;
        let (tx, rx) = tokio::sync::mpsc::channel(crate::EXPORT_READ_AHEAD);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            while !walk.is_done() {
                // A consumer that went away stops the work (checked again at each send).
                if tx.is_closed() {
                    return;
                }
                let reading = shared.clone();
                let read = tokio::task::spawn_blocking(move || {
                    let page = match reading.mem.read() {
                        Ok(mem) => walk.page(&mem),
                        Err(_) => Err(StoreError::Unavailable(
                            "the store's memory lock is poisoned".into(),
                        )),
                    };
                    (walk, page)
                })
                .await;
                let page = match read {
                    Ok((w, page)) => {
                        walk = w;
                        shared
                            .export_log_seqs
                            .fetch_add(walk.take_examined(), Ordering::Relaxed);
                        page
                    }
                    Err(e) => {
                        let why = format!("the export's reading task failed: {e}");
                        let _ = tx.send(Err(StoreError::Unavailable(why))).await;
                        return;
                    }
                };
                match page {
                    Ok(events) if events.is_empty() => {}
                    Ok(events) => {
                        if tx.send(Ok(events)).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
        Ok(rx)
    }

    async fn checkpoint_covering(
        &self,
        tenant_id: &str,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.check_tenants([tenant_id])?;
        let t = tenant_id.to_string();
        self.blocking(move |m| read::checkpoint_covering(m, &t, size))
            .await
    }

    async fn read_log(
        &self,
        tenant_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        self.check_tenants([tenant_id])?;
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
        if let Some(t) = &q.tenant_id {
            self.check_tenants([t.as_str()])?;
        }
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
        self.check_tenants([tenant_id])?;
        Ok(read::tree_size(&*self.mem()?, tenant_id))
    }

    async fn tree_root(&self, tenant_id: &str, size: u64) -> Result<Hash, StoreError> {
        self.check_tenants([tenant_id])?;
        read::root(&*self.mem()?, tenant_id, size)
    }

    async fn inclusion_proof(
        &self,
        tenant_id: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.check_tenants([tenant_id])?;
        read::inclusion(&*self.mem()?, tenant_id, index, size)
    }

    async fn consistency_proof(
        &self,
        tenant_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        self.check_tenants([tenant_id])?;
        read::consistency(&*self.mem()?, tenant_id, from, to)
    }

    async fn leaves(&self, tenant_id: &str, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        self.check_tenants([tenant_id])?;
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
        self.check_tenants([tenant_id])?;
        Ok(self
            .mem()?
            .tenant(tenant_id)
            .and_then(|(_, t)| t.latest_checkpoint.clone()))
    }

    async fn read_log_matching(
        &self,
        tenant_id: &str,
        from_seq: u64,
        types: &[crate::TypeFilter],
        limit: usize,
    ) -> Result<crate::LogSlice, StoreError> {
        crate::delivery::check_limit(limit)?;
        self.check_tenants([tenant_id])?;
        let shared = self.shared.clone();
        let (t, types) = (tenant_id.to_string(), types.to_vec());
        tokio::task::spawn_blocking(move || {
            delivery::read_log_matching(&shared, &t, from_seq, &types, limit)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    fn single_writer(&self) -> bool {
        true
    }

    async fn read_logs_matching(
        &self,
        from: &[(String, u64)],
        types: &[crate::TypeFilter],
        limit: usize,
    ) -> Result<Vec<crate::LogSlice>, StoreError> {
        crate::delivery::check_limit(limit)?;
        self.check_tenants(from.iter().map(|(t, _)| t.as_str()))?;
        let shared = self.shared.clone();
        let (from, types) = (from.to_vec(), types.to_vec());
        tokio::task::spawn_blocking(move || {
            from.iter()
                .map(|(t, seq)| delivery::read_log_matching(&shared, t, *seq, &types, limit))
                .collect()
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    async fn load_cursor(&self, name: &str) -> Result<crate::DeliveryCursor, StoreError> {
        let (cursors, name) = (self.cursors.clone(), name.to_string());
        tokio::task::spawn_blocking(move || cursors.load(&name))
            .await
            .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    async fn save_cursor(&self, name: &str, positions: &[(String, u64)]) -> Result<(), StoreError> {
        let positions = crate::delivery::check_positions(name, positions)?;
        let (cursors, name) = (self.cursors.clone(), name.to_string());
        tokio::task::spawn_blocking(move || cursors.save(&name, positions))
            .await
            .map_err(|e| StoreError::Unavailable(format!("storage task failed: {e}")))?
    }

    /// Always granted: one process holds the data directory. The inputs are still checked.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        crate::delivery::check_lease(name, holder, ttl)?;
        Ok(true)
    }

    async fn control_lock(&self, names: &[String]) -> Result<crate::ControlGuard, StoreError> {
        Ok(self.control.lock(names).await)
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
            return Err(StoreError::Unavailable(self.failure()));
        }
        if let Some(p) = self.keyfile_problem() {
            return Err(StoreError::Unavailable(p));
        }
        Ok(())
    }

    fn health(&self) -> StoreHealth {
        let writes_refused = self.shared.failed.load(Ordering::Acquire);
        let mut problems = Vec::new();
        if writes_refused {
            problems.push(self.failure());
        }
        for (tenant, why) in self.quarantined.iter() {
            problems.push(format!(
                "tenant {tenant} is quarantined (not served): {why}"
            ));
        }
        StoreHealth {
            writes_refused,
            problems,
        }
    }

    async fn shutdown(&self) {
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.stop()).await;
        }
    }
}
