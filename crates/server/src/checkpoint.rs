//! Signed checkpoints (docs/verification.md): at most once per second per grown log, and never for a tree
//! that is not consistent with the tenant's previous checkpoint.
//!
//! [`checkpoint_round`] does one pass over every tenant: a log that grew since its last
//! checkpoint gets its new root computed from the store, a consistency proof from the previous
//! checkpoint generated *and verified*, and only then a signed note stored. [`spawn`] runs a
//! round every second. With several servers on one database the store refuses a second,
//! different checkpoint for the same size, so every server serves the same checkpoints.

use crate::AppState;
use std::collections::HashMap;
use std::time::Duration;
use trailkeep_store::{SignedCheckpoint, StoreError};
use trailkeep_tlog::{sign_checkpoint, verify_consistency, Checkpoint, Signer, Verifier};

/// The log's name and Ed25519 key.
pub struct LogIdentity {
    pub log_name: String,
    pub signer: Signer,
    pub verifier: Verifier,
}

impl LogIdentity {
    /// Key name `trailkeep/<log_name>`.
    pub fn new(log_name: &str, seed: [u8; 32]) -> Result<LogIdentity, String> {
        let signer = Signer::from_seed(&format!("trailkeep/{log_name}"), seed)
            .map_err(|e| format!("invalid log_name {log_name:?} for a signing key name: {e}"))?;
        let verifier = signer.verifier();
        Ok(LogIdentity {
            log_name: log_name.to_string(),
            signer,
            verifier,
        })
    }

    /// `trailkeep/<log-name>/<tenant>`
    pub fn origin(&self, tenant: &str) -> String {
        format!("trailkeep/{}/{}", self.log_name, tenant)
    }
}

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub signed: usize,
    pub refused: usize,
}

/// Signs a checkpoint for every tenant whose log grew. `last` caches the latest checkpoint
/// size and root per tenant between rounds.
pub async fn checkpoint_round(
    state: &AppState,
    last: &mut HashMap<String, (u64, [u8; 32])>,
) -> Result<RoundReport, StoreError> {
    let Some(id) = state.log.clone() else {
        return Ok(RoundReport::default());
    };
    let mut report = RoundReport::default();
    let mut signed = Vec::new();
    for t in state.store.tenants().await? {
        let tenant = t.tenant_id;
        let size = match state.store.tree_size(&tenant).await {
            // Refused at open (its log failed the integrity check): never signed again.
            Err(StoreError::Quarantined { .. }) => continue,
            other => other?,
        };
        if !last.contains_key(&tenant) {
            if let Some(cp) = state.store.latest_checkpoint(&tenant).await? {
                last.insert(tenant.clone(), (cp.size, cp.root));
            }
        }
        let prev = last.get(&tenant).copied();
        if prev.is_some_and(|(s, _)| s >= size) || size == 0 {
            continue;
        }
        match sign_grown(state, &id, &tenant, size, prev).await? {
            Some(cp) => signed.push((tenant, cp)),
            None => report.refused += 1,
        }
    }
    // Stored all at once: the embedded store commits them in one group (one fsync a round
    // instead of one per tenant), PostgreSQL on as many connections as its pool allows.
    let mut puts = tokio::task::JoinSet::new();
    for (tenant, cp) in signed {
        let store = state.store.clone();
        puts.spawn(async move {
            let (size, root) = (cp.size, cp.root);
            let out = store.put_checkpoint(&tenant, cp).await;
            (tenant, size, root, out)
        });
    }
    let mut first_err = None;
    while let Some(done) = puts.join_next().await {
        match done {
            Ok((tenant, size, root, Ok(()))) => {
                metrics::counter!("trailkeep_checkpoints_signed_total").increment(1);
                last.insert(tenant, (size, root));
                report.signed += 1;
            }
            Ok((_, _, _, Err(e))) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(StoreError::Unavailable(format!(
                    "storing a checkpoint failed: {e}"
                )));
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    Ok(report)
}

/// Signs a checkpoint of `tenant` at `size` after proving it consistent with `prev` (the
/// latest checkpoint's size and root); `None` if it is not (the refusal is recorded).
async fn sign_grown(
    state: &AppState,
    id: &LogIdentity,
    tenant: &str,
    size: u64,
    prev: Option<(u64, [u8; 32])>,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let root = state.store.tree_root(tenant, size).await?;
    if let Some((psize, proot)) = prev {
        let proof = state.store.consistency_proof(tenant, psize, size).await?;
        if let Err(e) = verify_consistency(psize, size, &proot, &root, &proof) {
            tracing::error!(%tenant, psize, size, error = %e,
                "the log is not consistent with its previous checkpoint; refusing to sign");
            metrics::counter!("trailkeep_checkpoints_refused_total").increment(1);
            refused(state, tenant, psize, size, &e.to_string()).await;
            return Ok(None);
        }
    }
    let cp = Checkpoint::new(id.origin(tenant), size, root);
    let note =
        sign_checkpoint(&cp, &id.signer).map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(Some(SignedCheckpoint { size, root, note }))
}

/// A signed checkpoint of everything `tenant` holds now: the latest one if it covers the whole
/// tree, else a new one signed (as a round would) and stored. `None` for a tenant without
/// events. Evidence bundles need it, so that they cover every event stored before they were
/// asked for.
pub async fn ensure_checkpoint(
    state: &AppState,
    id: &LogIdentity,
    tenant: &str,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let size = state.store.tree_size(tenant).await?;
    if size == 0 {
        return Ok(None);
    }
    let latest = state.store.latest_checkpoint(tenant).await?;
    if let Some(cp) = &latest {
        if cp.size >= size {
            return Ok(latest);
        }
    }
    match sign_grown(state, id, tenant, size, latest.map(|c| (c.size, c.root))).await? {
        Some(cp) => {
            state.store.put_checkpoint(tenant, cp.clone()).await?;
            metrics::counter!("trailkeep_checkpoints_signed_total").increment(1);
            Ok(Some(cp))
        }
        None => Err(StoreError::Unavailable(format!(
            "the log of tenant {tenant} is not consistent with its latest checkpoint, so nothing can be signed for it: restore the data directory from a backup"
        ))),
    }
}

/// How long [`checkpoint_for_bundle`] waits for the once-a-second round to cover the tree.
const ROUND_WAIT: Duration = Duration::from_millis(1500);

/// The checkpoint an evidence bundle of `tenant` is built on: one covering the whole tree as it
/// is now, signed with the current key. `None` for a tenant without events.
///
/// Events stored in the last second are covered by the next round's checkpoint, so this waits
/// for it (keeping to "at most one checkpoint a second"); only if no round covers the tree in
/// [`ROUND_WAIT`] (no checkpointer running, or it is failing) is one signed here, as a round
/// would. After a key rotation, a tenant whose latest checkpoint is signed with the old key gets
/// the same tree (size and root) signed with the current key for the bundle; it is not stored
/// (a stored checkpoint of that size exists), and it is consistent with it by being the same tree.
pub async fn checkpoint_for_bundle(
    state: &AppState,
    id: &LogIdentity,
    tenant: &str,
) -> Result<Option<SignedCheckpoint>, StoreError> {
    let size = state.store.tree_size(tenant).await?;
    if size == 0 {
        return Ok(None);
    }
    let waited = tokio::time::Instant::now();
    let mut cp = loop {
        match state.store.latest_checkpoint(tenant).await? {
            Some(cp) if cp.size >= size => break Some(cp),
            _ if waited.elapsed() >= ROUND_WAIT => break None,
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    if cp.is_none() {
        cp = ensure_checkpoint(state, id, tenant).await?;
    }
    let Some(cp) = cp else {
        return Ok(None);
    };
    if trailkeep_tlog::open_checkpoint_for_origin(&cp.note, &id.origin(tenant), &id.verifier)
        .is_ok()
    {
        return Ok(Some(cp));
    }
    let resigned = Checkpoint::new(id.origin(tenant), cp.size, cp.root);
    let note = sign_checkpoint(&resigned, &id.signer)
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    Ok(Some(SignedCheckpoint {
        size: cp.size,
        root: cp.root,
        note,
    }))
}

/// Records a refusal to sign once per tenant: a `/readyz` degradation and a
/// `log.checkpoint_refused` event in `_global` (the round retries every second; the event is
/// written again only after a restart).
async fn refused(state: &AppState, tenant: &str, from: u64, to: u64, why: &str) {
    let problem = format!(
        "the log of tenant {tenant} at size {to} is not consistent with its checkpoint of size {from} ({why}); no checkpoint is signed for it: restore the data directory from a backup"
    );
    let new = match state.degraded.lock() {
        Ok(mut d) => d
            .insert(format!("checkpoint:{tenant}"), problem.clone())
            .is_none(),
        Err(_) => false,
    };
    if !new {
        return;
    }
    let payload = serde_json::json!({
        "tenant_id": tenant, "checkpoint_size": from, "tree_size": to, "reason": why,
    });
    let Ok(canonical) = serde_json_canonicalizer::to_vec(&payload) else {
        return;
    };
    let now = trailkeep_core::Timestamp::now_micros();
    let event = trailkeep_core::NewEvent {
        event_id: trailkeep_core::Uuid::now_v7(),
        event_id_assigned: true,
        event_type: "log.checkpoint_refused".into(),
        actor: "trailkeep".into(),
        tenant_id: trailkeep_core::GLOBAL_TENANT.into(),
        payload: canonical.into(),
        timestamp: trailkeep_core::Timestamp::from_nanos(
            now.nanos - now.nanos.rem_euclid(1_000_000),
            3,
        ),
        timestamp_assigned: true,
        source_ip: None,
        impersonation_session: None,
        approval_id: None,
    };
    if let Err(e) = state
        .store
        .append(vec![trailkeep_store::PreparedEvent::new(event, now)])
        .await
    {
        tracing::warn!(error = %e, "could not record log.checkpoint_refused");
    }
}

/// Runs [`checkpoint_round`] every second until the runtime shuts down.
pub fn spawn(state: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last = HashMap::new();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = checkpoint_round(&state, &mut last).await {
                tracing::warn!(error = %e, "checkpoint round failed; retrying in a second");
                last.clear();
            }
        }
    })
}
