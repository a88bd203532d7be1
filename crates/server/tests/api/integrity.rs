//! Integrity problems as the API reports them: a checkpoint the checkpointer refuses to sign
//! degrades `/readyz` and is recorded in `_global`; an event altered on disk is a `corrupt`
//! error naming it, never a generic 500.

use crate::common::*;
use serde_json::json;
use std::collections::HashMap;
use trailkeep_server::checkpoint::checkpoint_round;

#[tokio::test]
async fn a_refused_checkpoint_degrades_readyz_and_is_recorded_once() {
    let api = Api::new().await;
    for _ in 0..5 {
        api.ingest(&ev("t_refused", "x.y")).await;
    }
    api.request(axum::http::Method::GET, "/readyz", None, None, Vec::new())
        .await
        .expect(200);
    // The previous checkpoint the round compares with: one this log is not consistent with.
    let mut last = HashMap::from([("t_refused".to_string(), (3u64, [7u8; 32]))]);
    for _ in 0..2 {
        let r = checkpoint_round(&api.state, &mut last).await.unwrap();
        // (The second round signs `_global`, which the refusal's event grew.)
        assert_eq!(r.refused, 1);
    }
    let r = api
        .request(axum::http::Method::GET, "/readyz", None, None, Vec::new())
        .await;
    let details = assert_error(&r, 503, "degraded");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("tenant t_refused"), "{msg}");
    assert_eq!(details.len(), 1, "{details:?}");
    let events = api
        .get(
            ADMIN,
            "/v1/events?tenant_id=_global&event_type=log.checkpoint_refused",
        )
        .await;
    events.expect(200);
    let list = events.json()["events"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1, "recorded once: {list:?}");
    assert_eq!(list[0]["actor"], json!("trailkeep"));
    assert_eq!(list[0]["payload"]["tenant_id"], json!("t_refused"));
    assert_eq!(list[0]["payload"]["checkpoint_size"], json!(3));
    let metrics = api
        .request(axum::http::Method::GET, "/metrics", None, None, Vec::new())
        .await
        .text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("trailkeep_checkpoints_refused_total")),
        "{metrics}"
    );
    // Clients cannot write the log's own records.
    let r = api.post_json(ADMIN, &ev("_global", "log.restored")).await;
    r.expect(422);
}

#[tokio::test]
async fn an_event_altered_on_disk_is_a_corrupt_error_naming_it() {
    let api = Api::new().await;
    let id = uuid();
    api.ingest(&ev_full(
        "t_alt",
        "x.y",
        &id,
        "2026-06-01T10:00:00Z",
        json!({"note": "hello-unique-marker"}),
    ))
    .await;
    api.ingest(&ev("t_alt", "x.y")).await;
    // Edit the event's bytes on disk, leaving its block CRC and leaf hash as they were.
    let seg = api.dir().join("log").join("00000001.seg");
    let mut b = std::fs::read(&seg).unwrap();
    let at = b
        .windows(19)
        .position(|w| w == b"hello-unique-marker")
        .expect("the payload is in the log");
    b[at] = b'j';
    std::fs::write(&seg, &b).unwrap();

    let r = api.get_event(&id).await;
    assert_error(&r, 500, "corrupt");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains(&id) && msg.contains("t_alt/0"), "{msg}");
    let r = api.get(ADMIN, "/v1/events?tenant_id=t_alt").await;
    assert_error(&r, 500, "corrupt");
    assert!(r.text().contains(&id), "{}", r.text());
}
