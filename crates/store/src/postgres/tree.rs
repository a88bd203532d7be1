//! The tenants' Merkle trees and checkpoints in PostgreSQL.
//!
//! `trailkeep_tlog`'s `HashReader` is synchronous, and every tree operation makes a single
//! batched read. [`with_hashes`] runs an operation against an in-memory map of hashes; the map's
//! reader records every index it was asked for and lacked, those are fetched in one query, and
//! the operation runs again (two rounds for every operation of `trailkeep_tlog::tree`). Reads of
//! size and hashes happen in one `REPEATABLE READ` transaction, so they see one committed state.

use super::pool::unavailable;
use crate::{SignedCheckpoint, StoreError};
use std::cell::RefCell;
use std::collections::HashMap;
use tokio_postgres::{Client, IsolationLevel, Transaction};
use trailkeep_tlog::tree::{
    prove_consistency, prove_inclusion, stored_hash_index, tree_hash, HashReader,
};
use trailkeep_tlog::{Hash, TlogError};

/// Serves hashes from a map and records the ones it lacked.
pub(crate) struct MapReader<'a> {
    known: &'a HashMap<u64, Hash>,
    missing: RefCell<Vec<u64>>,
}

impl<'a> MapReader<'a> {
    pub(crate) fn new(known: &'a HashMap<u64, Hash>) -> Self {
        MapReader {
            known,
            missing: RefCell::new(Vec::new()),
        }
    }
    /// The indexes asked for and not in the map.
    pub(crate) fn take_missing(&self) -> Vec<u64> {
        self.missing.take()
    }
}

impl HashReader for MapReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        let mut out = Vec::with_capacity(indexes.len());
        let mut first_missing = None;
        for &i in indexes {
            match self.known.get(&i) {
                Some(h) => out.push(*h),
                None => {
                    self.missing.borrow_mut().push(i);
                    first_missing.get_or_insert(i);
                }
            }
        }
        match first_missing {
            Some(index) => Err(TlogError::MissingHash { index }),
            None => Ok(out),
        }
    }
}

fn tlog_err(e: TlogError) -> StoreError {
    match e {
        TlogError::Storage(inner) => StoreError::Corrupt(inner.to_string()),
        TlogError::MissingHash { index } => {
            StoreError::Corrupt(format!("stored tree hash {index} is missing"))
        }
        other => StoreError::Invalid(other.to_string()),
    }
}

/// Runs `f` over the tenant's stored hashes, fetching what it needs from `tx`.
pub(crate) async fn with_hashes<T>(
    tx: &Transaction<'_>,
    tenant: &str,
    f: impl Fn(&MapReader<'_>) -> Result<T, TlogError>,
) -> Result<T, StoreError> {
    let mut known: HashMap<u64, Hash> = HashMap::new();
    for _round in 0..8 {
        let missing = {
            let r = MapReader {
                known: &known,
                missing: RefCell::new(Vec::new()),
            };
            match f(&r) {
                Ok(v) => return Ok(v),
                Err(e) => {
                    let m = r.missing.take();
                    if m.is_empty() {
                        return Err(tlog_err(e));
                    }
                    m
                }
            }
        };
        let want: Vec<i64> = missing
            .iter()
            .map(|&i| i64::try_from(i).map_err(|_| StoreError::Invalid("tree index".into())))
            .collect::<Result<_, _>>()?;
        let rows = tx
            .query(
                "SELECT idx, hash FROM tree_hashes WHERE tenant_id = $1 AND idx = ANY($2)",
                &[&tenant, &want],
            )
            .await
            .map_err(unavailable)?;
        let before = known.len();
        for r in &rows {
            let idx: i64 = r.get(0);
            let h: Vec<u8> = r.get(1);
            let h: Hash = h.try_into().map_err(|_| {
                StoreError::Corrupt(format!("stored hash {idx} of {tenant} is not 32 bytes"))
            })?;
            known.insert(idx as u64, h);
        }
        if known.len() == before {
            return Err(StoreError::Corrupt(format!(
                "stored tree hashes of {tenant} are missing: {missing:?}"
            )));
        }
    }
    Err(StoreError::Corrupt(format!(
        "tree read of {tenant} did not converge"
    )))
}

/// Tree size (= next seq) of a tenant, 0 when it has no log.
pub(crate) async fn size(c: &Client, tenant: &str) -> Result<u64, StoreError> {
    let row = c
        .query_opt(
            "SELECT next_seq FROM tenants WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .map_err(unavailable)?;
    Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
}

pub(crate) async fn snapshot<'a>(c: &'a mut Client) -> Result<Transaction<'a>, StoreError> {
    c.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(unavailable)
}

pub(crate) async fn size_tx(tx: &Transaction<'_>, tenant: &str) -> Result<u64, StoreError> {
    let row = tx
        .query_opt(
            "SELECT next_seq FROM tenants WHERE tenant_id = $1",
            &[&tenant],
        )
        .await
        .map_err(unavailable)?;
    Ok(row.map(|r| r.get::<_, i64>(0)).unwrap_or(0).max(0) as u64)
}

async fn check_size(tx: &Transaction<'_>, tenant: &str, size: u64) -> Result<(), StoreError> {
    let n = size_tx(tx, tenant).await?;
    if size > n {
        return Err(StoreError::Invalid(format!(
            "tree size {size} is beyond the log of {tenant}, which has {n} leaves"
        )));
    }
    Ok(())
}

pub(crate) async fn root(c: &mut Client, tenant: &str, size: u64) -> Result<Hash, StoreError> {
    let tx = snapshot(c).await?;
    check_size(&tx, tenant, size).await?;
    with_hashes(&tx, tenant, |r| tree_hash(size, r)).await
}

pub(crate) async fn inclusion(
    c: &mut Client,
    tenant: &str,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    let tx = snapshot(c).await?;
    check_size(&tx, tenant, size).await?;
    with_hashes(&tx, tenant, |r| prove_inclusion(size, index, r)).await
}

pub(crate) async fn consistency(
    c: &mut Client,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, StoreError> {
    let tx = snapshot(c).await?;
    check_size(&tx, tenant, to).await?;
    with_hashes(&tx, tenant, |r| prove_consistency(from, to, r)).await
}

pub(crate) async fn leaves(
    c: &mut Client,
    tenant: &str,
    start: u64,
    end: u64,
) -> Result<Vec<Hash>, StoreError> {
    if start > end {
        return Err(StoreError::Invalid(format!(
            "start {start} is after end {end}"
        )));
    }
    let tx = snapshot(c).await?;
    check_size(&tx, tenant, end).await?;
    let idx: Vec<u64> = (start..end).map(|n| stored_hash_index(0, n)).collect();
    with_hashes(&tx, tenant, |r| r.read_hashes(&idx)).await
}

pub(crate) async fn put_checkpoint(
    c: &Client,
    tenant: &str,
    cp: &SignedCheckpoint,
) -> Result<(), StoreError> {
    let size = i64::try_from(cp.size)
        .map_err(|_| StoreError::Invalid(format!("checkpoint size {} is too large", cp.size)))?;
    let root = cp.root.to_vec();
    c.execute(
        "INSERT INTO checkpoints (tenant_id, size, root, note) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (tenant_id, size) DO NOTHING",
        &[&tenant, &size, &root, &cp.note],
    )
    .await
    .map_err(unavailable)?;
    let row = c
        .query_one(
            "SELECT root FROM checkpoints WHERE tenant_id = $1 AND size = $2",
            &[&tenant, &size],
        )
        .await
        .map_err(unavailable)?;
    let stored: Vec<u8> = row.get(0);
    if stored != root {
        return Err(StoreError::Invalid(format!(
            "a different checkpoint of size {} is already stored for {tenant}",
            cp.size
        )));
    }
    Ok(())
}

pub(crate) async fn latest_checkpoint(
    c: &Client,
    tenant: &str,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let row = c
        .query_opt(
            "SELECT size, root, note FROM checkpoints WHERE tenant_id = $1 \
             ORDER BY size DESC LIMIT 1",
            &[&tenant],
        )
        .await
        .map_err(unavailable)?;
    row.as_ref().map(checkpoint_from_row).transpose()
}

/// The oldest checkpoint of `tenant` whose size is at least `size` (the primary key's order).
pub(crate) async fn checkpoint_covering(
    c: &Client,
    tenant: &str,
    size: u64,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let Ok(size) = i64::try_from(size) else {
        return Ok(None);
    };
    let row = c
        .query_opt(
            "SELECT size, root, note FROM checkpoints WHERE tenant_id = $1 AND size >= $2 \
             ORDER BY size LIMIT 1",
            &[&tenant, &size],
        )
        .await
        .map_err(unavailable)?;
    row.as_ref().map(checkpoint_from_row).transpose()
}

/// Decodes a row of `size, root, note`.
fn checkpoint_from_row(r: &tokio_postgres::Row) -> Result<SignedCheckpoint, StoreError> {
    let bad = |e: tokio_postgres::Error| StoreError::Corrupt(format!("checkpoint row: {e}"));
    let size: i64 = r.try_get(0).map_err(bad)?;
    let root: Vec<u8> = r.try_get(1).map_err(bad)?;
    Ok(SignedCheckpoint {
        size: u64::try_from(size).map_err(|_| StoreError::Corrupt("checkpoint size".into()))?,
        root: root
            .try_into()
            .map_err(|_| StoreError::Corrupt("checkpoint root is not 32 bytes".into()))?,
        note: r.try_get(2).map_err(bad)?,
    })
}
