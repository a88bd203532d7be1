//! Storage for trailkeep: the [`Store`] trait every backend implements, the query and cursor
//! types, API keys, and the backends themselves.
//!
//! A store holds one append-only log per tenant. [`Store::append`] sequences a request's events
//! (gap-free `seq` per tenant), makes them durable, and only then returns receipts; it is
//! all-or-nothing per request. Reads never see a half-written request.
//!
//! Backends: [`embedded::EmbeddedStore`] (the default; a log of blocks in the data directory,
//! group commit, indexes in memory) and [`postgres::PostgresStore`]. Every backend must pass the conformance suite in `tests/conformance.rs`.

mod dedupe;
mod delivery;
pub mod embedded;
pub mod error;
pub mod keys;
pub mod model;
pub mod postgres;
pub mod prepare;

pub use error::StoreError;
pub use keys::{KeyRecord, NewKey, Role};
pub use model::*;
pub use prepare::PreparedEvent;

use async_trait::async_trait;
use trailkeep_core::{StoredEvent, Uuid};
pub use trailkeep_tlog::Hash;

/// What [`Store::health`] reports: empty when all is well.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Whether writes are refused (a failed write whose effect could not be undone).
    pub writes_refused: bool,
    /// Each problem in a sentence, naming what is affected and what to do.
    pub problems: Vec<String>,
}

impl StoreHealth {
    pub fn is_healthy(&self) -> bool {
        !self.writes_refused && self.problems.is_empty()
    }
}

/// What an export reads (docs/export.md): a listing's filters, every matching event, from a
/// snapshot taken before [`Store::export`] returns its receiver.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// The filters of a listing; `limit` and `cursor` are ignored (an export has neither).
    pub query: EventQuery,
    /// Log order (`seq` ascending) instead of `(timestamp, event_id)` in `query.order`.
    /// Needs `query.tenant_id`.
    pub log_order: bool,
    /// Only events with `seq < tree_size` (needs `query.tenant_id`): an evidence bundle covers
    /// exactly the tree of one signed checkpoint.
    pub tree_size: Option<u64>,
    /// Events per batch (0: [`EXPORT_BATCH`]; at most [`EXPORT_BATCH_MAX`]); a batch also ends
    /// once it holds [`EXPORT_BATCH_BYTES`].
    pub batch: usize,
}

/// Events per export batch when the request does not say.
pub const EXPORT_BATCH: usize = 1_000;

/// Bytes per export batch, as [`export_event_bytes`] counts them: a batch ends at its event
/// count or as soon as its events reach this many bytes, whichever comes first, so a batch is
/// under this plus one event (at least one event per batch). An event may be ~256 KiB, so a
/// batch of 1,000 large events would otherwise be ~256 MiB, and an export with
/// [`EXPORT_READ_AHEAD`] batches read ahead ~1 GB.
pub const EXPORT_BATCH_BYTES: usize = 4 << 20;

/// What an event counts for against [`EXPORT_BATCH_BYTES`]: its payload and text fields plus
/// the struct itself (ids, timestamps, hashes), about what it holds in memory.
pub fn export_event_bytes(e: &StoredEvent) -> usize {
    let opt = |s: &Option<String>| s.as_ref().map_or(0, String::len);
    std::mem::size_of::<StoredEvent>()
        + e.payload.as_ref().map_or(0, Vec::len)
        + e.tenant_id.len()
        + e.event_type.len()
        + e.actor.len()
        + opt(&e.source_ip)
        + opt(&e.impersonation_session)
        + opt(&e.approval_id)
}

/// The largest export batch: a batch is held in memory whole (twice over while the next one is
/// read), so a larger request is cut to this.
pub const EXPORT_BATCH_MAX: usize = 100_000;

/// Batches an export may have read ahead of its consumer (the bounded channel's capacity): the
/// producer waits when they are all unread, so memory is at most this many batches plus the
/// one being read (each under [`EXPORT_BATCH_BYTES`] plus one event: ~20 MiB in all).
pub const EXPORT_READ_AHEAD: usize = 3;

impl ExportRequest {
    /// Checks what every backend refuses, and returns the batch size to use.
    ///
    /// `log_order` and `tree_size` need `query.tenant_id` (seqs are per tenant): without it the
    /// request is [`StoreError::Invalid`].
    pub fn checked_batch(&self) -> Result<usize, StoreError> {
        if self.query.tenant_id.is_none() {
            if self.log_order {
                return Err(StoreError::Invalid(
                    "an export in log order needs a tenant_id: seq order is per tenant".into(),
                ));
            }
            if self.tree_size.is_some() {
                return Err(StoreError::Invalid(
                    "an export up to a tree size needs a tenant_id: trees are per tenant".into(),
                ));
            }
        }
        Ok(match self.batch {
            0 => EXPORT_BATCH,
            n => n.min(EXPORT_BATCH_MAX),
        })
    }

    /// A `tree_size` beyond the tenant's tree (`size` leaves) is refused.
    pub(crate) fn check_tree_size(&self, size: u64) -> Result<(), StoreError> {
        match self.tree_size {
            Some(n) if n > size => Err(StoreError::Invalid(format!(
                "tree size {n} is beyond the log of {}, which has {size} leaves",
                self.query.tenant_id.as_deref().unwrap_or("?")
            ))),
            _ => Ok(()),
        }
    }
}

/// The batches of an export, in order. The producer stops when the receiver is dropped (a
/// client that disconnects stops the work); an `Err` ends the export.
pub type EventBatches = tokio::sync::mpsc::Receiver<Result<Vec<StoredEvent>, StoreError>>;

/// Seqs [`Store::read_log_matching`] looks at per call, at most.
pub const LOG_SCAN_WINDOW: u64 = 65_536;

/// What [`Store::read_log_matching`] returns.
#[derive(Debug, Clone, Default)]
pub struct LogSlice {
    /// The matching events, in seq order.
    pub events: Vec<StoredEvent>,
    /// The seq to continue from: one past the last seq looked at.
    pub next_seq: u64,
}

/// A delivery cursor: tenant → next seq to deliver.
pub type DeliveryCursor = std::collections::BTreeMap<String, u64>;

/// Held while control locks are (see [`Store::control_lock`]); dropping it releases
/// the lock.
pub struct ControlGuard {
    _inner: Box<dyn Send + Sync>,
}

impl ControlGuard {
    pub fn new(inner: impl Send + Sync + 'static) -> ControlGuard {
        ControlGuard {
            _inner: Box::new(inner),
        }
    }
}

impl std::fmt::Debug for ControlGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlGuard")
    }
}

/// What every storage backend provides.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Appends one request's events atomically and durably.
    ///
    /// Events whose `event_id` is already stored with the same content come back as duplicates
    /// with their original receipt; one with different content fails the whole request with
    /// [`StoreError::Conflict`] and stores nothing.
    /// [`StoreError::Unavailable`] means nothing of the request was stored;
    /// [`StoreError::OutcomeUnknown`] (PostgreSQL only) that all of it or none is, and a resend
    /// of the same events returns the stored ones' original receipts.
    async fn append(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, StoreError>;

    /// One event by id.
    async fn get_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError>;

    /// A page of events ordered by `(timestamp, event_id)`.
    async fn query(&self, q: EventQuery) -> Result<EventPage, StoreError>;

    /// A tenant's events in log order (`seq` ascending) starting at `from_seq`.
    async fn read_log(
        &self,
        tenant_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError>;

    /// Every event matching `req`, in batches, from one consistent snapshot, taken before
    /// this returns the receiver: every event acknowledged before the call is in it, no event
    /// of a request appended after it returned, none twice, and a request's events all or
    /// none. Events committed between the snapshot and the moment the caller does something
    /// visible (the HTTP handler calls this before it sends the response status) are not in
    /// it. Memory stays flat in the export's size: each batch holds at most `req`'s batch
    /// size and about [`EXPORT_BATCH_BYTES`] (embedded: one batch at a time under short read
    /// locks; PostgreSQL: a server-side cursor in a repeatable-read transaction, fetched a few
    /// hundred rows at a time). In log order with a time filter only the seqs between the
    /// first and last matching event are walked (found from the time index first).
    async fn export(&self, req: ExportRequest) -> Result<EventBatches, StoreError>;

    /// The oldest stored checkpoint of a tenant whose tree size is at least `size`: the first
    /// signed statement that covered seqs `0..size`.
    async fn checkpoint_covering(
        &self,
        tenant_id: &str,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// Every tenant with at least one event.
    async fn tenants(&self) -> Result<Vec<TenantSummary>, StoreError>;

    /// Counts by type and by day.
    async fn stats(&self, q: StatsQuery) -> Result<Stats, StoreError>;

    /// Stores a new API key record.
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError>;
    /// All key records (secrets are never stored, only their hashes).
    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Revokes a key; `false` if no key has that id.
    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError>;
    /// The key whose secret hashes to `secret_hash` (revoked and expired ones included: the
    /// caller decides). Backends may cache; a key created or revoked by another process is seen
    /// within about a second.
    async fn find_key(&self, secret_hash: &str) -> Result<Option<KeyRecord>, StoreError>;

    /// Leaves in a tenant's Merkle tree (= its event count; every acknowledged event is in it).
    async fn tree_size(&self, tenant_id: &str) -> Result<u64, StoreError>;
    /// Root of the tenant's tree at `size` (≤ tree_size).
    async fn tree_root(&self, tenant_id: &str, size: u64) -> Result<Hash, StoreError>;
    /// RFC 9162 inclusion proof of leaf `index` in the tree of `size`.
    async fn inclusion_proof(
        &self,
        tenant_id: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError>;
    /// RFC 9162 consistency proof between tree sizes `from` and `to`.
    async fn consistency_proof(
        &self,
        tenant_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, StoreError>;
    /// Leaf hashes `start..end`.
    async fn leaves(&self, tenant_id: &str, start: u64, end: u64) -> Result<Vec<Hash>, StoreError>;
    /// Records a signed checkpoint. Fails with `Invalid` if a different checkpoint of the same
    /// size is already stored (never two signed checkpoints for one tree size). The embedded
    /// store is stricter: a checkpoint must carry its own tree's root at that size, and one no
    /// newer than the latest is accepted without being written again.
    async fn put_checkpoint(&self, tenant_id: &str, cp: SignedCheckpoint)
        -> Result<(), StoreError>;
    /// The newest stored checkpoint of a tenant.
    async fn latest_checkpoint(
        &self,
        tenant_id: &str,
    ) -> Result<Option<SignedCheckpoint>, StoreError>;

    /// Events of a tenant's log from `from_seq` on, in seq order, keeping only those whose
    /// type matches one of `types` (all of them when `types` is empty): at most `limit`
    /// events, from at most [`LOG_SCAN_WINDOW`] seqs looked at. [`LogSlice::next_seq`] is
    /// where the next call continues (after the last seq looked at, matching or not), so a
    /// reader that saves it as its cursor skips what it did not want without reading it.
    /// Delivery (alert channels, sinks) reads the log this way: the log is the outbox. An
    /// unknown tenant gives no events and `next_seq = from_seq`; a `limit` of 0 is
    /// [`StoreError::Invalid`].
    async fn read_log_matching(
        &self,
        tenant_id: &str,
        from_seq: u64,
        types: &[TypeFilter],
        limit: usize,
    ) -> Result<LogSlice, StoreError>;

    /// [`Store::read_log_matching`] for several tenants at once: one slice per
    /// `(tenant, from_seq)`, in the order given, each as that method returns it. The ingest gate
    /// catches up on all the tenants of a request this way; the embedded store does it in one
    /// step on one blocking thread, the default reads the tenants one by one.
    async fn read_logs_matching(
        &self,
        from: &[(String, u64)],
        types: &[TypeFilter],
        limit: usize,
    ) -> Result<Vec<LogSlice>, StoreError> {
        let mut out = Vec::with_capacity(from.len());
        for (tenant, seq) in from {
            out.push(self.read_log_matching(tenant, *seq, types, limit).await?);
        }
        Ok(out)
    }

    /// A named delivery cursor (`alerts/ops-chat`, `sinks/gcl`): per tenant, the next seq to
    /// deliver. Empty when never saved. Names are 1 to 200 bytes without control characters
    /// (else [`StoreError::Invalid`]).
    async fn load_cursor(&self, name: &str) -> Result<DeliveryCursor, StoreError>;
    /// Sets the given tenants' positions of a cursor (others keep theirs), durably: fsync'd
    /// (embedded) or committed (PostgreSQL) when this returns.
    async fn save_cursor(&self, name: &str, positions: &[(String, u64)]) -> Result<(), StoreError>;
    /// Takes or renews the lease `name` for `holder` until `ttl` from now, if no other holder
    /// has an unexpired one; `true` when `holder` holds it. Several PostgreSQL servers run one
    /// delivery loop per destination between them this way; the embedded store (one process)
    /// always grants it. `ttl` is from a millisecond to a day, `name` and `holder` are not
    /// empty (else [`StoreError::Invalid`]).
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError>;

    /// Takes the control locks named in `names` (in one fixed order, so two holders never wait
    /// for each other in a cycle) and holds them until the guard is dropped: every other holder
    /// of any of them, in this process and, on PostgreSQL, in every process on the database,
    /// waits. Ingest takes one per impersonation session and per approval its events depend on
    /// (`<tenant>\u{1f}imp\u{1f}<session_id>`, `<tenant>\u{1f}apr\u{1f}<approval_id>`) around
    /// the check and the append, so that two requests about one session or one approval are
    /// decided one after the other, while requests about different ones go on together (and
    /// commit in one group). Waiting is bounded (PostgreSQL: `lock_timeout`), then
    /// [`StoreError::Unavailable`]. No names: a guard that holds nothing.
    async fn control_lock(&self, names: &[String]) -> Result<ControlGuard, StoreError>;

    /// Whether this process is the only one appending to the store (the embedded store: one
    /// process holds the data directory). Then what this process appended is all there is,
    /// and views of the log it keeps current itself need not read the log again; with
    /// PostgreSQL other servers append too.
    fn single_writer(&self) -> bool {
        false
    }

    /// Whether storage is reachable and accepting writes.
    async fn ready(&self) -> Result<(), StoreError>;

    /// Problems found by integrity checks or failed writes that the store lives with (a
    /// quarantined tenant, writes refused after a failed write). `/readyz` reports them.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }

    /// Flushes and stops background work; later calls fail with `Unavailable`.
    async fn shutdown(&self);
}
