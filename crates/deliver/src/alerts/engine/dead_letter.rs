//! Dead letters: alerts given up, recorded in the log as `sink.alert_failed` events of tenant
//! `_global`, and read back into the registry at start.
//!
//! A dead letter's event id is derived from its delivery id ([`event_id_of`]): appending it
//! again (after a failed append whose outcome is unknown, or after a restart that resent the
//! alert because the cursor had not been saved yet) finds the first one, as a duplicate or,
//! with other attempt counts, as a conflict, and either way there is one dead letter per
//! delivery.

use super::attempts::{wait, Failure, Sent};
use super::lease::Lease;
use super::Ctx;
use crate::alerts::Alert;
use std::time::Duration;
use trailkeep_core::{NewEvent, Timestamp, Uuid, GLOBAL_TENANT};
use trailkeep_store::{PreparedEvent, StoreError, TypeFilter};

/// The type of a dead letter.
pub const DEAD_LETTER_TYPE: &str = "sink.alert_failed";
/// Who writes dead letters.
pub const DEAD_LETTER_ACTOR: &str = "svc:trailkeep";

/// Whether an alert's dead letter is in the log.
pub(crate) enum Recorded {
    Yes,
    Stopped,
    LeaseLost,
}

/// The event id of the dead letter of a delivery: a version 8 UUID from SHA-256 of the type
/// and the delivery id.
pub fn event_id_of(delivery_id: &str) -> Uuid {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(DEAD_LETTER_TYPE.as_bytes());
    h.update([0]);
    h.update(delivery_id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// The dead letter's payload (canonical JSON).
fn payload(alert: &Alert, kind: &str, f: &Failure) -> Result<Vec<u8>, String> {
    let e = &alert.event;
    let v = serde_json::json!({
        "channel": alert.channel,
        "kind": kind,
        "delivery_id": alert.delivery_id,
        "rule": alert.rule,
        "tenant_id": e.tenant_id,
        "seq": e.seq,
        "event_id": e.event_id.hyphenated().to_string(),
        "event_type": e.event_type,
        "attempts": f.attempts,
        "last_status": f.last_status,
        "error": f.error,
        "first_attempt_at": f.first_attempt_at.to_rfc3339(),
    });
    serde_json_canonicalizer::to_vec(&v).map_err(|e| format!("writing the dead letter: {e}"))
}

/// Appends the dead letter of `alert`, trying again (backing off up to a minute) until the
/// store takes it, the task is stopped, or it loses its lease. An alert on a dead letter is
/// not recorded (no loops): it is only logged.
pub(crate) async fn record(
    ctx: &mut Ctx,
    lease: &mut Lease,
    alert: &Alert,
    kind: &str,
    f: &Failure,
) -> Recorded {
    if alert.event.event_type == DEAD_LETTER_TYPE {
        tracing::error!(
            channel = alert.channel,
            seq = alert.event.seq,
            "an alert on a dead letter was given up too; it is not recorded as another dead letter: {}",
            f.error
        );
        return Recorded::Yes;
    }
    let payload = match payload(alert, kind, f) {
        Ok(p) => p,
        Err(e) => {
            // Only reachable with a payload serde cannot write: log it, never block the channel.
            tracing::error!(channel = alert.channel, "{e}");
            return Recorded::Yes;
        }
    };
    let store = ctx.shared.store.clone();
    let mut delay = Duration::from_secs(1);
    loop {
        if !lease.keep(&*store).await {
            return Recorded::LeaseLost;
        }
        let now = Timestamp::now_millis();
        let event = NewEvent {
            event_id: event_id_of(&alert.delivery_id),
            event_id_assigned: true,
            event_type: DEAD_LETTER_TYPE.into(),
            actor: DEAD_LETTER_ACTOR.into(),
            tenant_id: GLOBAL_TENANT.into(),
            payload: payload.clone().into(),
            timestamp: now,
            timestamp_assigned: true,
            source_ip: None,
            impersonation_session: None,
            approval_id: None,
        };
        match store
            .append(PreparedEvent::new_all(vec![event], Timestamp::now_micros()))
            .await
        {
            Ok(_) | Err(StoreError::Conflict { .. }) => {
                metrics::counter!("trailkeep_alerts_dead_letters_total", "channel" => alert.channel.clone())
                    .increment(1);
                return Recorded::Yes;
            }
            Err(e) => {
                tracing::warn!(
                    channel = alert.channel,
                    delivery_id = alert.delivery_id,
                    "could not record the dead letter ({e}); trying again in {}s (the channel waits)",
                    delay.as_secs()
                );
                match wait(ctx, lease, delay).await {
                    Ok(()) => {}
                    Err(Sent::LeaseLost) => return Recorded::LeaseLost,
                    Err(_) => return Recorded::Stopped,
                }
                delay = (delay * 2).min(Duration::from_secs(60));
            }
        }
    }
}

/// Reads the dead letters of `_global` into the registry (those in the log when the engine
/// started; later ones this process records itself).
pub(crate) async fn read_back(mut ctx: Ctx) {
    let store = ctx.shared.store.clone();
    let types = [TypeFilter::Exact(DEAD_LETTER_TYPE.into())];
    let mut size = None;
    let mut pos = 0;
    let mut failures = 0u32;
    loop {
        if ctx.stopping() {
            return;
        }
        let step = async {
            let end = match size {
                Some(n) => n,
                None => {
                    let n = store
                        .tenants()
                        .await?
                        .into_iter()
                        .find(|t| t.tenant_id == GLOBAL_TENANT)
                        .map_or(0, |t| t.event_count);
                    size = Some(n);
                    n
                }
            };
            if pos >= end {
                return Ok::<bool, StoreError>(true);
            }
            let slice = store
                .read_log_matching(GLOBAL_TENANT, pos, &types, 1000)
                .await?;
            for e in &slice.events {
                ctx.shared.registry.dead_letter_event(e);
            }
            pos = slice.next_seq.max(pos + 1);
            Ok(false)
        };
        match step.await {
            Ok(true) => return,
            Ok(false) => failures = 0,
            Err(e) => {
                failures += 1;
                tracing::warn!("reading dead letters back from the log: {e}; trying again");
                let d = Duration::from_secs(u64::from(failures.min(30)));
                if !ctx.pause(d, None).await {
                    return;
                }
            }
        }
    }
}
