//! docs/api.md: public key, checkpoints (and the checkpoint round), inclusion and consistency
//! proofs, tlog-proofs for events, leaves; their refusals and tenant scoping.

use crate::common::*;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::HashMap;
use trailkeep_server::checkpoint::checkpoint_round;
use trailkeep_store::{SignedCheckpoint, Store, StoreError};
use trailkeep_tlog::{
    open_checkpoint_for_origin, verify_consistency, verify_inclusion, Hash, TlogProof, Verifier,
};

fn h(s: &Value) -> Hash {
    let v = base64::engine::general_purpose::STANDARD
        .decode(s.as_str().unwrap())
        .unwrap();
    v.try_into().unwrap()
}

fn hs(v: &Value) -> Vec<Hash> {
    v.as_array().unwrap().iter().map(h).collect()
}

async fn verifier(api: &Api) -> Verifier {
    let r = api
        .request(
            axum::http::Method::GET,
            "/v1/public-key",
            None,
            None,
            vec![],
        )
        .await;
    r.expect(200);
    Verifier::from_vkey(r.text().trim()).unwrap()
}

/// Ingests `n` events for `tenant`, returning their receipts' leaf hashes.
async fn load(api: &Api, tenant: &str, n: usize) -> Vec<(String, Hash)> {
    let batch: Vec<Value> = (0..n).map(|_| ev(tenant, "proof.x")).collect();
    let out = api.ingest(&json!(batch)).await;
    out["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["event_id"].as_str().unwrap().to_string(),
                h(&r["leaf_hash"]),
            )
        })
        .collect()
}

#[tokio::test]
async fn checkpoints_inclusion_consistency_and_tlog_proofs_verify() {
    let api = Api::new().await;
    let vk = verifier(&api).await;
    assert_eq!(vk.name(), "trailkeep/test");
    assert_error(
        &api.get(ADMIN, "/v1/tenants/t_p/checkpoint").await,
        404,
        "not_found",
    );

    let first = load(&api, "t_p", 37).await;
    load(&api, "t_other", 3).await;
    let mut last = HashMap::new();
    let r = checkpoint_round(&api.state, &mut last).await.unwrap();
    assert_eq!(r.signed, 2);
    // Nothing grew: nothing is signed again.
    assert_eq!(
        checkpoint_round(&api.state, &mut last)
            .await
            .unwrap()
            .signed,
        0
    );

    let note = api.get(ADMIN, "/v1/tenants/t_p/checkpoint").await;
    note.expect(200);
    let cp1 = open_checkpoint_for_origin(&note.text(), "trailkeep/test/t_p", &vk).unwrap();
    assert_eq!(cp1.size, 37);
    // Another tenant's checkpoint does not pass as this one's.
    let other = api
        .get(ADMIN, "/v1/tenants/t_other/checkpoint")
        .await
        .text();
    assert!(open_checkpoint_for_origin(&other, "trailkeep/test/t_p", &vk).is_err());

    for (seq, (_, leaf)) in first.iter().enumerate() {
        let v = api
            .get(ADMIN, &format!("/v1/tenants/t_p/proof/inclusion?seq={seq}"))
            .await
            .json();
        assert_eq!(v["tree_size"], 37);
        assert_eq!(h(&v["leaf_hash"]), *leaf);
        assert_eq!(h(&v["root"]), cp1.root);
        verify_inclusion(seq as u64, 37, leaf, &hs(&v["proof"]), &cp1.root).unwrap();
    }
    let v = api
        .get(ADMIN, "/v1/tenants/t_p/leaves?start=0&end=37")
        .await
        .json();
    assert_eq!(
        hs(&v["leaves"]),
        first.iter().map(|x| x.1).collect::<Vec<_>>()
    );

    // The log grows; the new checkpoint is provably an extension of the old one.
    load(&api, "t_p", 100).await;
    assert_eq!(
        checkpoint_round(&api.state, &mut last)
            .await
            .unwrap()
            .signed,
        1
    );
    let cp2 = open_checkpoint_for_origin(
        &api.get(ADMIN, "/v1/tenants/t_p/checkpoint").await.text(),
        "trailkeep/test/t_p",
        &vk,
    )
    .unwrap();
    assert_eq!(cp2.size, 137);
    let v = api
        .get(ADMIN, "/v1/tenants/t_p/proof/consistency?from=37")
        .await
        .json();
    assert_eq!(v["to"], 137);
    verify_consistency(37, 137, &cp1.root, &cp2.root, &hs(&v["proof"])).unwrap();
    // An old tree size still proves inclusion against the old root.
    let v = api
        .get(ADMIN, "/v1/tenants/t_p/proof/inclusion?seq=5&tree_size=37")
        .await
        .json();
    verify_inclusion(5, 37, &first[5].1, &hs(&v["proof"]), &cp1.root).unwrap();

    // A C2SP tlog-proof for an event verifies with nothing but the public key.
    let (id, leaf) = &first[11];
    let r = api.get(ADMIN, &format!("/v1/events/{id}/proof")).await;
    r.expect(200);
    let proof = TlogProof::parse(&r.text()).unwrap();
    assert_eq!(proof.index, 11);
    let cp = proof
        .verify_for_origin(leaf, "trailkeep/test/t_p", &vk)
        .unwrap();
    assert_eq!(cp.size, 137);
    assert!(proof
        .verify_for_origin(&[0u8; 32], "trailkeep/test/t_p", &vk)
        .is_err());
}

#[tokio::test]
async fn events_newer_than_the_checkpoint_get_a_retryable_404() {
    let api = Api::new().await;
    load(&api, "t_n", 2).await;
    checkpoint_round(&api.state, &mut HashMap::new())
        .await
        .unwrap();
    let newer = load(&api, "t_n", 1).await;
    let r = api
        .get(ADMIN, &format!("/v1/events/{}/proof", newer[0].0))
        .await;
    assert_error(&r, 404, "not_found");
    assert_eq!(r.headers.get("retry-after").unwrap(), "1");
    assert_error(
        &api.get(ADMIN, &format!("/v1/events/{}/proof", uuid()))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.get(ADMIN, "/v1/events/not-a-uuid/proof").await,
        400,
        "bad_request",
    );
}

#[tokio::test]
async fn bad_proof_parameters_are_400_json() {
    let api = Api::new().await;
    load(&api, "t_b", 5).await;
    checkpoint_round(&api.state, &mut HashMap::new())
        .await
        .unwrap();
    for uri in [
        "/v1/tenants/t_b/proof/inclusion",
        "/v1/tenants/t_b/proof/inclusion?seq=5",
        "/v1/tenants/t_b/proof/inclusion?seq=0&tree_size=6",
        "/v1/tenants/t_b/proof/inclusion?seq=abc",
        "/v1/tenants/t_b/proof/inclusion?seq=-1",
        "/v1/tenants/t_b/proof/inclusion?seq=1&bogus=1",
        "/v1/tenants/t_b/proof/consistency",
        "/v1/tenants/t_b/proof/consistency?from=0&to=5",
        "/v1/tenants/t_b/proof/consistency?from=4&to=3",
        "/v1/tenants/t_b/proof/consistency?from=1&to=99",
        "/v1/tenants/t_b/leaves?start=9",
        "/v1/tenants/bad%20tenant/checkpoint",
    ] {
        assert_error(&api.get(ADMIN, uri).await, 400, "bad_request");
    }
    // Leaves are capped to the log.
    let v = api
        .get(ADMIN, "/v1/tenants/t_b/leaves?start=3&end=99")
        .await
        .json();
    assert_eq!(v["end"], 5);
    assert_eq!(v["leaves"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn proofs_are_tenant_scoped_and_need_a_read_key() {
    let api = Api::new().await;
    let mine = load(&api, "t_1", 3).await;
    let theirs = load(&api, "t_2", 3).await;
    checkpoint_round(&api.state, &mut HashMap::new())
        .await
        .unwrap();
    let (_, reader) = api.create_key("reader", Some("t_1")).await;
    let (_, ingest) = api.create_key("ingest", None).await;
    api.get(&reader, "/v1/tenants/t_1/checkpoint")
        .await
        .expect(200);
    api.get(&reader, &format!("/v1/events/{}/proof", mine[0].0))
        .await
        .expect(200);
    for uri in [
        "/v1/tenants/t_2/checkpoint",
        "/v1/tenants/t_2/proof/inclusion?seq=0",
        "/v1/tenants/t_2/proof/consistency?from=1",
        "/v1/tenants/t_2/leaves",
    ] {
        assert_error(&api.get(&reader, uri).await, 403, "forbidden");
    }
    assert_error(
        &api.get(&reader, &format!("/v1/events/{}/proof", theirs[0].0))
            .await,
        404,
        "not_found",
    );
    assert_error(
        &api.get(&ingest, "/v1/tenants/t_1/checkpoint").await,
        403,
        "forbidden",
    );
    let r = api
        .request(
            axum::http::Method::GET,
            "/v1/tenants/t_1/checkpoint",
            None,
            None,
            vec![],
        )
        .await;
    assert_error(&r, 401, "unauthorized");
}

/// A store whose latest checkpoint of `t_x` is one its tree does not have, as if the log had
/// been rewritten after that checkpoint was signed (the embedded store itself refuses to record
/// such a checkpoint, so the rewrite is simulated here). Everything else is the real store.
struct RewrittenLog {
    inner: std::sync::Arc<dyn Store>,
    forged: SignedCheckpoint,
}

#[async_trait::async_trait]
impl Store for RewrittenLog {
    async fn append(
        &self,
        e: Vec<trailkeep_store::PreparedEvent>,
    ) -> Result<trailkeep_store::AppendOutcome, StoreError> {
        self.inner.append(e).await
    }
    async fn get_event(
        &self,
        id: trailkeep_core::Uuid,
    ) -> Result<Option<trailkeep_core::StoredEvent>, StoreError> {
        self.inner.get_event(id).await
    }
    async fn query(
        &self,
        q: trailkeep_store::EventQuery,
    ) -> Result<trailkeep_store::EventPage, StoreError> {
        self.inner.query(q).await
    }
    async fn read_log(
        &self,
        t: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<trailkeep_core::StoredEvent>, StoreError> {
        self.inner.read_log(t, from, limit).await
    }
    async fn read_log_matching(
        &self,
        t: &str,
        from: u64,
        types: &[trailkeep_store::TypeFilter],
        limit: usize,
    ) -> Result<trailkeep_store::LogSlice, StoreError> {
        self.inner.read_log_matching(t, from, types, limit).await
    }
    async fn load_cursor(&self, name: &str) -> Result<trailkeep_store::DeliveryCursor, StoreError> {
        self.inner.load_cursor(name).await
    }
    async fn save_cursor(&self, name: &str, p: &[(String, u64)]) -> Result<(), StoreError> {
        self.inner.save_cursor(name, p).await
    }
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.acquire_lease(name, holder, ttl).await
    }
    async fn control_lock(
        &self,
        n: &[String],
    ) -> Result<trailkeep_store::ControlGuard, StoreError> {
        self.inner.control_lock(n).await
    }
    async fn export(
        &self,
        r: trailkeep_store::ExportRequest,
    ) -> Result<trailkeep_store::EventBatches, StoreError> {
        self.inner.export(r).await
    }
    async fn checkpoint_covering(
        &self,
        t: &str,
        size: u64,
    ) -> Result<Option<SignedCheckpoint>, StoreError> {
        self.inner.checkpoint_covering(t, size).await
    }
    async fn tenants(&self) -> Result<Vec<trailkeep_store::TenantSummary>, StoreError> {
        self.inner.tenants().await
    }
    async fn stats(
        &self,
        q: trailkeep_store::StatsQuery,
    ) -> Result<trailkeep_store::Stats, StoreError> {
        self.inner.stats(q).await
    }
    async fn create_key(
        &self,
        k: trailkeep_store::NewKey,
    ) -> Result<trailkeep_store::KeyRecord, StoreError> {
        self.inner.create_key(k).await
    }
    async fn list_keys(&self) -> Result<Vec<trailkeep_store::KeyRecord>, StoreError> {
        self.inner.list_keys().await
    }
    async fn revoke_key(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.revoke_key(id).await
    }
    async fn find_key(&self, h: &str) -> Result<Option<trailkeep_store::KeyRecord>, StoreError> {
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
        if t == "t_x" {
            return Ok(Some(self.forged.clone()));
        }
        self.inner.latest_checkpoint(t).await
    }
    async fn ready(&self) -> Result<(), StoreError> {
        self.inner.ready().await
    }
    async fn shutdown(&self) {
        self.inner.shutdown().await
    }
}

#[tokio::test]
async fn a_log_inconsistent_with_its_last_checkpoint_is_never_signed() {
    let api = Api::new().await;
    load(&api, "t_x", 4).await;
    let forged = SignedCheckpoint {
        size: 2,
        root: [9; 32],
        note: "forged\n".into(),
    };
    // The real store refuses a checkpoint its tree does not have…
    assert!(matches!(
        api.store.put_checkpoint("t_x", forged.clone()).await,
        Err(StoreError::Invalid(_))
    ));
    // …so the rewritten log is simulated: the checkpointer must refuse to sign on top of it.
    let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(RewrittenLog {
        inner: api.store.clone(),
        forged,
    });
    let state = trailkeep_server::AppState::new(store, Default::default(), Some(ADMIN))
        .with_signer("test", [42u8; 32])
        .expect("signer");
    let r = checkpoint_round(&state, &mut HashMap::new()).await.unwrap();
    assert_eq!(
        r,
        trailkeep_server::checkpoint::RoundReport {
            signed: 0,
            refused: 1
        }
    );
    // Nothing was signed or stored for t_x.
    assert_eq!(api.store.latest_checkpoint("t_x").await.unwrap(), None);
    let m = trailkeep_server::app(state);
    let resp = tower::ServiceExt::oneshot(
        m,
        axum::http::Request::builder()
            .uri("/metrics")
            .header("authorization", format!("Bearer {ADMIN}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    let body = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&body).contains("trailkeep_checkpoints_refused_total"));
}
