//! The PostgreSQL store: the same behaviour as the embedded store, for several `trailkeep serve`
//! processes on one database (docs/operations.md).
//!
//! # Model
//!
//! - Schema: plain SQL migrations in `crates/store/migrations/`, versioned in
//!   `schema_migrations`, applied by [`PostgresStore::open`] and `trailkeep migrate` inside one
//!   transaction holding a transaction-level advisory lock, so processes starting together apply
//!   each migration exactly once.
//! - Sequencing: group commit. A few committer tasks each take every append request waiting
//!   and run them as one transaction (see `append.rs`). A transaction locks the row of every
//!   tenant its requests touch (`SELECT … FOR UPDATE`, in one global order, so transactions
//!   never deadlock on each other), and only then looks up the event ids: an id already
//!   committed by any process is seen, so a re-send gets its original receipt and changed
//!   content is a conflict, which fails only its own request and contributes nothing to the
//!   group. `tenants.next_seq` under the row lock gives gap-free, unique seqs across processes;
//!   a rolled-back transaction consumes nothing.
//! - Trees: hashes in `tree_hashes` (the stored-hash layout of `trailkeep_tlog::tree`), appended
//!   with an `Appender` in the same transaction as the events, so tree size = event count =
//!   `next_seq` in every committed state. The sync `HashReader` is fed from an in-memory map:
//!   an operation first runs against the map, which records the indexes it lacked; those are
//!   fetched in one query and the operation runs again (see `tree.rs`).
//! - Durability: a receipt is returned only after `COMMIT` succeeded (PostgreSQL's own
//!   `synchronous_commit` decides the fsync; the default is on).
//! - Races between processes: a unique violation on `event_id` (the same id sent at once for two
//!   different tenants), a deadlock or a serialization failure rolls the group back and runs it
//!   again from the start; the retry sees the winner and answers duplicate or conflict.
//! - Never hang (see `pool.rs`): every connection has `statement_timeout`, `lock_timeout` and
//!   `idle_in_transaction_session_timeout` set, a checkout waits at most `pool_wait` and
//!   `connect_timeout`, and every operation is also bounded on the client side (a frozen socket
//!   returns no error by itself), after which its connection is closed, never reused. All of
//!   these fail with `Unavailable` (503); new connections are opened as soon as the database
//!   answers again.
//! - Lost `COMMIT` answers: a group transaction learns its transaction id (`txid_current()`,
//!   pipelined with its first statement) before deciding anything. If the connection breaks or
//!   stops answering after `COMMIT` was sent, the outcome is resolved on a fresh connection with
//!   `txid_status` before any request is answered (see `append.rs`): committed → the receipts,
//!   aborted → `Unavailable`, still unknown after the bound → `OutcomeUnknown`, whose answer
//!   tells the client that resending the same events (same `event_id`s) is safe.
//! - Exports (see `export.rs`): a connection of their own, a `REPEATABLE READ READ ONLY`
//!   transaction whose first statement fixes the snapshot before `export` returns, and a
//!   server-side cursor read a batch per `FETCH` (each under `statement_timeout`; the
//!   transaction may idle for up to five minutes while a slow consumer catches up).
//! - Checkpoints: `INSERT … ON CONFLICT DO NOTHING` and a compare, so every process that signs a
//!   tree size stores (and later serves) the first signed checkpoint, and a different root for a
//!   stored size is refused.
//! - Delivery (see `delivery.rs` and `control.rs`): a filtered log read is one statement over
//!   the `(tenant_id, seq)` key with the type filter in SQL and the tenant's size from the same
//!   snapshot; cursors and leases are rows written by one upsert each (leases on the database's
//!   clock); a control lock is a session-level advisory lock held on a connection the guard
//!   keeps out of the pool, unlocked (or the connection closed) when the guard drops.

mod append;
mod control;
mod delivery;
mod export;
mod pool;
mod read;
mod tree;

use crate::{
    AppendOutcome, EventPage, EventQuery, Hash, KeyRecord, NewKey, PreparedEvent, Role,
    SignedCheckpoint, Stats, StatsQuery, Store, StoreError, TenantSummary,
};
use async_trait::async_trait;
use pool::{unavailable, Pool, Timeouts};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::Config;
use trailkeep_core::{StoredEvent, Timestamp, Uuid};

/// The schema migrations, in order: `(version, SQL)`.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/0001_init.sql")),
    (2, include_str!("../../migrations/0002_delivery.sql")),
];

/// Advisory lock key held while migrating (an arbitrary constant: "trailkeep" in ASCII-ish).
const MIGRATION_LOCK: i64 = 0x7472_6169_6c6b_6570;

/// Tuning for the PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// Most connections this process opens.
    pub max_connections: usize,
    /// Group-commit tasks: each takes every append request waiting and commits them as one
    /// transaction (more than one lets groups of different tenants commit in parallel).
    pub committers: usize,
    /// Longest wait to open a connection (TCP, handshake and session settings).
    pub connect_timeout: Duration,
    /// Longest a statement may run on the server (`statement_timeout`); also the client-side
    /// bound on one operation (a read, or one group-commit transaction), plus a second for the
    /// answer, after which the connection is presumed dead and closed.
    pub statement_timeout: Duration,
    /// Longest a statement waits for a lock held by another session (`lock_timeout`).
    pub lock_timeout: Duration,
    /// Longest a request waits for a free connection when all `max_connections` are busy, and
    /// an append for a free committer (it is then answered `Unavailable`, nothing stored).
    pub pool_wait: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            max_connections: 16,
            committers: 4,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(5),
            pool_wait: Duration::from_secs(5),
        }
    }
}

impl PostgresOptions {
    fn timeouts(&self) -> Timeouts {
        Timeouts {
            connect: self.connect_timeout,
            statement: self.statement_timeout,
            lock: self.lock_timeout,
            pool_wait: self.pool_wait,
        }
    }
}

/// How long `/readyz` waits for the database at most (load balancers probe with short
/// timeouts of their own).
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Checks out a connection, runs `$body` (an expression using the connection `$c`, evaluating
/// to a future of `Result<T, StoreError>`) within the operation bound, and returns the
/// connection to the pool only if the operation finished.
macro_rules! on_conn {
    ($pool:expr, |$c:ident| $body:expr) => {{
        let pool = &$pool;
        #[allow(unused_mut)]
        let mut $c = pool.get().await?;
        let r = pool.bounded(async { $body.await }).await;
        match r {
            Some(r) => {
                $c.release();
                r
            }
            None => Err(pool.no_answer()),
        }
    }};
}

/// The PostgreSQL store. Cheap to clone; any number of processes may open the same database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Arc<Pool>,
    committer: Arc<append::Committer>,
    keys: Arc<KeyCache>,
    /// The readiness probe's own connection, outside the pool: `/readyz` reports whether the
    /// database answers, not whether this process's connections are all busy.
    probe: Arc<tokio::sync::Mutex<Option<pool::Link>>>,
    /// Control-lock waiters of this process queue here before they take a connection.
    control: Arc<crate::embedded::control::ControlLocks>,
}

/// `find_key` answers (found or not) kept for at most [`KEY_CACHE_TTL`]: every API request
/// looks its key up, and a key created or revoked by another process only needs to be seen
/// within about a second. Revocations made through this store drop the entry at once.
#[derive(Default)]
struct KeyCache {
    entries: std::sync::Mutex<HashMap<String, (Instant, Option<KeyRecord>)>>,
}

const KEY_CACHE_TTL: Duration = Duration::from_millis(1000);
const KEY_CACHE_MAX: usize = 10_000;

impl KeyCache {
    fn get(&self, hash: &str) -> Option<Option<KeyRecord>> {
        let map = self.entries.lock().ok()?;
        match map.get(hash) {
            Some((at, rec)) if at.elapsed() < KEY_CACHE_TTL => Some(rec.clone()),
            _ => None,
        }
    }
    fn put(&self, hash: &str, rec: Option<KeyRecord>) {
        if let Ok(mut map) = self.entries.lock() {
            if map.len() >= KEY_CACHE_MAX {
                map.retain(|_, (at, _)| at.elapsed() < KEY_CACHE_TTL);
                if map.len() >= KEY_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(hash.to_string(), (Instant::now(), rec));
        }
    }
    fn clear(&self) {
        if let Ok(mut map) = self.entries.lock() {
            map.clear();
        }
    }
}

/// Parses a `postgres://` URL (or a libpq key=value string).
pub fn parse_url(url: &str) -> Result<Config, StoreError> {
    url.parse::<Config>().map_err(|e| {
        StoreError::Invalid(format!(
            "invalid PostgreSQL URL: {e} (expected postgres://user[:password]@host[:port]/database)"
        ))
    })
}

/// Applies every migration not yet applied; returns the versions applied now. Safe to run from
/// several processes at once (they serialise on an advisory lock).
pub async fn migrate(url: &str) -> Result<Vec<i64>, StoreError> {
    let config = parse_url(url)?;
    let mut link = pool::connect(&config, &migration_timeouts(&PostgresOptions::default())).await?;
    let applied = migrate_client(&mut link.client).await;
    link.close();
    applied
}

/// Migrations may take long and wait for another process's migration: only connecting is
/// bounded.
fn migration_timeouts(opts: &PostgresOptions) -> Timeouts {
    Timeouts {
        statement: Duration::ZERO,
        lock: Duration::ZERO,
        ..opts.timeouts()
    }
}

async fn migrate_client(client: &mut tokio_postgres::Client) -> Result<Vec<i64>, StoreError> {
    let tx = client.transaction().await.map_err(unavailable)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(unavailable)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version bigint PRIMARY KEY,
             applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .await
    .map_err(unavailable)?;
    let done: Vec<i64> = tx
        .query("SELECT version FROM schema_migrations", &[])
        .await
        .map_err(unavailable)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if let Some(newest) = done.iter().max() {
        let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
        if *newest > known {
            return Err(StoreError::Unavailable(format!(
                "the database schema is at version {newest}, newer than this build knows ({known}); upgrade trailkeep"
            )));
        }
    }
    let mut applied = Vec::new();
    for (version, sql) in MIGRATIONS {
        if done.contains(version) {
            continue;
        }
        tx.batch_execute(sql).await.map_err(|e| {
            StoreError::Unavailable(format!(
                "migration {version} failed: {}",
                pool::describe(&e)
            ))
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version) VALUES ($1)",
            &[version],
        )
        .await
        .map_err(unavailable)?;
        applied.push(*version);
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(applied)
}

impl PostgresStore {
    /// Connects to `url`, applies pending migrations and returns the store.
    pub async fn open(url: &str, opts: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let config = parse_url(url)?;
        let mut link = pool::connect(&config, &migration_timeouts(&opts)).await?;
        let applied = migrate_client(&mut link.client).await?;
        if !applied.is_empty() {
            tracing::info!(?applied, "applied PostgreSQL schema migrations");
        }
        link.close();
        let pool = Arc::new(Pool::new(config, opts.max_connections, opts.timeouts()));
        let committer = append::Committer::spawn(pool.clone(), opts.committers);
        Ok(PostgresStore {
            pool,
            committer: Arc::new(committer),
            keys: Arc::default(),
            probe: Arc::default(),
            control: Arc::default(),
        })
    }

    /// Records `vkey` (the C2SP verifier key of the log's signing key) as the key of
    /// `log_name`, or checks it against the one recorded by the first process. Every process on
    /// one database must sign with the same key, or auditors would see checkpoints they cannot
    /// verify with the key a given process publishes; a mismatch is `Invalid` and the caller
    /// should refuse to start.
    pub async fn claim_signing_key(&self, log_name: &str, vkey: &str) -> Result<(), StoreError> {
        let stored: String = on_conn!(self.pool, |c| async {
            c.execute(
                "INSERT INTO log_keys (log_name, vkey) VALUES ($1, $2) ON CONFLICT (log_name) DO NOTHING",
                &[&log_name, &vkey],
            )
            .await
            .map_err(unavailable)?;
            let row = c
                .query_one(
                    "SELECT vkey FROM log_keys WHERE log_name = $1",
                    &[&log_name],
                )
                .await
                .map_err(unavailable)?;
            Ok::<String, StoreError>(row.get(0))
        })?;
        if stored != vkey {
            return Err(StoreError::Invalid(format!(
                "the checkpoints of log {log_name:?} in this database are signed with a different key ({stored}); give every trailkeep process on this database the same signing_key or signing_key_file"
            )));
        }
        Ok(())
    }
}

fn key_from_row(r: &tokio_postgres::Row) -> Result<KeyRecord, StoreError> {
    let role: String = r.get(1);
    Ok(KeyRecord {
        id: r.get(0),
        role: role
            .parse::<Role>()
            .map_err(|e| StoreError::Corrupt(format!("api key role: {e}")))?,
        tenant_id: r.get(2),
        created_at: r.get(3),
        expires_at: r.get(4),
        expires_nanos: r.get(5),
        revoked: r.get(6),
        secret_hash: r.get(7),
    })
}

const KEY_COLS: &str =
    "id, role, tenant_id, created_at, expires_at, expires_nanos, revoked, secret_hash";

#[async_trait]
impl Store for PostgresStore {
    async fn append(&self, events: Vec<PreparedEvent>) -> Result<AppendOutcome, StoreError> {
        if self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        self.committer.append(events).await
    }

    async fn get_event(&self, event_id: Uuid) -> Result<Option<StoredEvent>, StoreError> {
        on_conn!(self.pool, |c| read::get_event(&c, event_id))
    }

    async fn query(&self, q: EventQuery) -> Result<EventPage, StoreError> {
        on_conn!(self.pool, |c| read::query(&c, &q))
    }

    async fn export(&self, req: crate::ExportRequest) -> Result<crate::EventBatches, StoreError> {
        let batch = req.checked_batch()?;
        if self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        export::start(&self.pool, req, batch).await
    }

    async fn checkpoint_covering(
        &self,
        tenant_id: &str,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        on_conn!(self.pool, |c| tree::checkpoint_covering(
            &c, tenant_id, size
        ))
    }

    async fn read_log(
        &self,
        tenant_id: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        on_conn!(self.pool, |c| read::read_log(
            &c, tenant_id, from_seq, limit
        ))
    }

    async fn tenants(&self) -> Result<Vec<TenantSummary>, StoreError> {
        on_conn!(self.pool, |c| read::tenants(&c))
    }

    async fn stats(&self, q: StatsQuery) -> Result<Stats, StoreError> {
        on_conn!(self.pool, |c| read::stats(&c, &q))
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord, StoreError> {
        let rec = key.into_record(Timestamp::now_micros());
        on_conn!(self.pool, |c| async {
            c.execute(
                "INSERT INTO api_keys (id, role, tenant_id, created_at, expires_at, expires_nanos, revoked, secret_hash)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &rec.id,
                    &rec.role.as_str(),
                    &rec.tenant_id,
                    &rec.created_at,
                    &rec.expires_at,
                    &rec.expires_nanos,
                    &rec.revoked,
                    &rec.secret_hash,
                ],
            )
            .await
            .map_err(unavailable)
        })?;
        self.keys.clear();
        Ok(rec)
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        let sql = format!("SELECT {KEY_COLS} FROM api_keys ORDER BY created_at, id");
        let rows = on_conn!(self.pool, |c| async {
            c.query(&sql, &[]).await.map_err(unavailable)
        })?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        let n = on_conn!(self.pool, |c| async {
            c.execute("UPDATE api_keys SET revoked = true WHERE id = $1", &[&id])
                .await
                .map_err(unavailable)
        })?;
        self.keys.clear();
        Ok(n > 0)
    }

    /// Cached for at most a second (see `KeyCache`); a revocation through this store is seen
    /// at once, one made by another process within a second.
    async fn find_key(&self, secret_hash: &str) -> Result<Option<KeyRecord>, StoreError> {
        if self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        if let Some(hit) = self.keys.get(secret_hash) {
            return Ok(hit);
        }
        let sql = format!("SELECT {KEY_COLS} FROM api_keys WHERE secret_hash = $1");
        let row = on_conn!(self.pool, |c| async {
            c.query_opt(&sql, &[&secret_hash])
                .await
                .map_err(unavailable)
        })?;
        let rec = row.as_ref().map(key_from_row).transpose()?;
        self.keys.put(secret_hash, rec.clone());
        Ok(rec)
    }

    async fn tree_size(&self, tenant_id: &str) -> Result<u64, StoreError> {
        on_conn!(self.pool, |c| tree::size(&c, tenant_id))
    }

    async fn tree_root(&self, tenant_id: &str, size: u64) -> Result<Hash, StoreError> {
        on_conn!(self.pool, |c| tree::root(&mut c, tenant_id, size))
    }

    async fn inclusion_proof(
        &self,
        tenant_id: &str,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        on_conn!(self.pool, |c| tree::inclusion(
            &mut c, tenant_id, index, size
        ))
    }

    async fn consistency_proof(
        &self,
        tenant_id: &str,
        from: u64,
        to: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        on_conn!(self.pool, |c| tree::consistency(
            &mut c, tenant_id, from, to
        ))
    }

    async fn leaves(&self, tenant_id: &str, start: u64, end: u64) -> Result<Vec<Hash>, StoreError> {
        on_conn!(self.pool, |c| tree::leaves(&mut c, tenant_id, start, end))
    }

    async fn put_checkpoint(
        &self,
        tenant_id: &str,
        cp: SignedCheckpoint,
    ) -> Result<(), StoreError> {
        on_conn!(self.pool, |c| tree::put_checkpoint(&c, tenant_id, &cp))
    }

    async fn latest_checkpoint(
        &self,
        tenant_id: &str,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        on_conn!(self.pool, |c| tree::latest_checkpoint(&c, tenant_id))
    }

    async fn read_log_matching(
        &self,
        tenant_id: &str,
        from_seq: u64,
        types: &[crate::TypeFilter],
        limit: usize,
    ) -> Result<crate::LogSlice, StoreError> {
        crate::delivery::check_limit(limit)?;
        on_conn!(self.pool, |c| delivery::read_log_matching(
            &c, tenant_id, from_seq, types, limit
        ))
    }

    async fn load_cursor(&self, name: &str) -> Result<crate::DeliveryCursor, StoreError> {
        crate::delivery::check_name("cursor", name)?;
        on_conn!(self.pool, |c| delivery::load_cursor(&c, name))
    }

    async fn save_cursor(&self, name: &str, positions: &[(String, u64)]) -> Result<(), StoreError> {
        let positions = crate::delivery::check_positions(name, positions)?;
        on_conn!(self.pool, |c| delivery::save_cursor(&c, name, &positions))
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        crate::delivery::check_lease(name, holder, ttl)?;
        on_conn!(self.pool, |c| delivery::acquire_lease(
            &c, name, holder, ttl
        ))
    }

    async fn control_lock(&self, names: &[String]) -> Result<crate::ControlGuard, StoreError> {
        if self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        control::lock(&self.pool, &self.control, names).await
    }

    /// Bounded by [`READY_TIMEOUT`] as a whole (connect and `SELECT 1` on the probe's own
    /// connection), so a probe gets its 503 quickly when the database does not answer.
    async fn ready(&self) -> Result<(), StoreError> {
        if self.pool.is_closed() {
            return Err(StoreError::Unavailable("the store is shut down".into()));
        }
        let probe = async {
            let mut slot = self.probe.lock().await;
            let link = match slot.take() {
                Some(l) if !l.client.is_closed() => l,
                _ => pool::connect(self.pool.config(), &self.pool.timeouts).await?,
            };
            link.client
                .simple_query("SELECT 1")
                .await
                .map_err(unavailable)?;
            *slot = Some(link);
            Ok(())
        };
        match tokio::time::timeout(READY_TIMEOUT, probe).await {
            Ok(r) => r,
            Err(_) => Err(StoreError::Unavailable(format!(
                "PostgreSQL did not answer a readiness probe within {} ms",
                READY_TIMEOUT.as_millis()
            ))),
        }
    }

    async fn shutdown(&self) {
        self.pool.close();
        if let Some(l) = self.probe.lock().await.take() {
            l.close();
        }
    }
}
