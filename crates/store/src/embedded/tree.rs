//! The tenants' Merkle trees in the embedded store.
//!
//! Hashes are stored one per key, `tenant ‖ 0 ‖ stored index (u64 BE)` in the `tree` keyspace,
//! with the stored-hash layout of `trailkeep_tlog::tree` (every node at every level, at most
//! log2(n)+1 new hashes per leaf). The commit thread appends a group's leaves with one
//! `Appender` per tenant and writes the new hashes in the same atomic batch as the events, so a
//! sequenced event is always in its tree. Proofs read O(log n) keys in one batch.

use super::codec::tenant_prefix;
use super::Shared;
use crate::{SignedCheckpoint, StoreError};
use fjall::Keyspace;
use trailkeep_tlog::tree::{
    prove_consistency, prove_inclusion, stored_hash_index, tree_hash, HashReader,
};
use trailkeep_tlog::{Hash, TlogError};

pub(crate) fn hash_key(tenant: &str, index: u64) -> Vec<u8> {
    let mut k = tenant_prefix(tenant);
    k.extend_from_slice(&index.to_be_bytes());
    k
}

/// Reads a tenant's stored hashes.
pub(crate) struct TreeReader<'a> {
    pub ks: &'a Keyspace,
    pub tenant: &'a str,
}

impl HashReader for TreeReader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, TlogError> {
        indexes
            .iter()
            .map(|&i| match self.ks.get(hash_key(self.tenant, i)) {
                Ok(Some(v)) => v.as_ref().try_into().map_err(|_| {
                    TlogError::storage(format!(
                        "stored hash {i} of {} is not 32 bytes",
                        self.tenant
                    ))
                }),
                Ok(None) => Err(TlogError::storage(format!(
                    "stored hash {i} of {} is missing",
                    self.tenant
                ))),
                Err(e) => Err(TlogError::storage(e)),
            })
            .collect()
    }
}

fn tlog_err(e: TlogError) -> StoreError {
    match e {
        TlogError::Storage(inner) => StoreError::Corrupt(inner.to_string()),
        other => StoreError::Invalid(other.to_string()),
    }
}

fn size_of(s: &Shared, tenant: &str) -> Result<u64, StoreError> {
    let map = s
        .tenants
        .read()
        .map_err(|_| StoreError::Unavailable("tenant lock poisoned".into()))?;
    Ok(map.get(tenant).map(|t| t.next_seq).unwrap_or(0))
}

fn check_size(s: &Shared, tenant: &str, size: u64) -> Result<(), StoreError> {
    let n = size_of(s, tenant)?;
    if size > n {
        return Err(StoreError::Invalid(format!(
            "tree size {size} is beyond the log of {tenant}, which has {n} leaves"
        )));
    }
    Ok(())
}

pub(crate) fn tree_size(s: &Shared, tenant: &str) -> Result<u64, StoreError> {
    size_of(s, tenant)
}

pub(crate) fn root(s: &Shared, tenant: &str, size: u64) -> Result<Hash, StoreError> {
    check_size(s, tenant, size)?;
    tree_hash(
        size,
        &TreeReader {
            ks: &s.ks.tree,
            tenant,
        },
    )
    .map_err(tlog_err)
}

pub(crate) fn inclusion(
    s: &Shared,
    tenant: &str,
    index: u64,
    size: u64,
) -> Result<Vec<Hash>, StoreError> {
    check_size(s, tenant, size)?;
    prove_inclusion(
        size,
        index,
        &TreeReader {
            ks: &s.ks.tree,
            tenant,
        },
    )
    .map_err(tlog_err)
}

pub(crate) fn consistency(
    s: &Shared,
    tenant: &str,
    from: u64,
    to: u64,
) -> Result<Vec<Hash>, StoreError> {
    check_size(s, tenant, to)?;
    prove_consistency(
        from,
        to,
        &TreeReader {
            ks: &s.ks.tree,
            tenant,
        },
    )
    .map_err(tlog_err)
}

pub(crate) fn leaves(
    s: &Shared,
    tenant: &str,
    start: u64,
    end: u64,
) -> Result<Vec<Hash>, StoreError> {
    check_size(s, tenant, end)?;
    if start > end {
        return Err(StoreError::Invalid(format!(
            "start {start} is after end {end}"
        )));
    }
    let idx: Vec<u64> = (start..end).map(|n| stored_hash_index(0, n)).collect();
    TreeReader {
        ks: &s.ks.tree,
        tenant,
    }
    .read_hashes(&idx)
    .map_err(tlog_err)
}

fn checkpoint_key(tenant: &str, size: u64) -> Vec<u8> {
    hash_key(tenant, size)
}

pub(crate) fn put_checkpoint(
    s: &Shared,
    tenant: &str,
    cp: &SignedCheckpoint,
) -> Result<(), StoreError> {
    let k = checkpoint_key(tenant, cp.size);
    if let Some(existing) = s.ks.checkpoints.get(&k)? {
        let old: SignedCheckpoint =
            serde_json::from_slice(&existing).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if old.root != cp.root {
            return Err(StoreError::Invalid(format!(
                "a different checkpoint of size {} is already stored for {tenant}",
                cp.size
            )));
        }
        return Ok(());
    }
    let v = serde_json::to_vec(cp).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    s.ks.checkpoints.insert(k, v)?;
    s.db.persist(fjall::PersistMode::SyncAll)?;
    Ok(())
}

pub(crate) fn latest_checkpoint(
    s: &Shared,
    tenant: &str,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let Some(g) = s.ks.checkpoints.prefix(tenant_prefix(tenant)).next_back() else {
        return Ok(None);
    };
    let (_, v) = g.into_inner()?;
    Ok(Some(
        serde_json::from_slice(&v).map_err(|e| StoreError::Corrupt(e.to_string()))?,
    ))
}
