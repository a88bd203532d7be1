//! One alert's attempts: send, ask the retry policy, wait, send again, until it is delivered
//! or given up — or the task is stopped or loses its lease, which is renewed right before
//! every attempt and held while it runs ([`Lease::hold_during`]), and renewed at least every
//! [`Lease::renew_every`] while the task waits.
//!
//! Every step is recorded in the registry (the alert is pending from its first attempt) and in
//! the metrics.

use super::lease::Lease;
use super::{Ctx, Destination};
use crate::alerts::registry::{DeliveryView, Status};
use crate::alerts::retry::Next;
use crate::alerts::{Alert, Attempt};
use std::time::{Duration, Instant};
use trailkeep_core::Timestamp;

/// How sending an alert ended.
pub(crate) enum Sent {
    Delivered,
    /// Given up: to be recorded as a dead letter.
    Dead(Failure),
    /// Shutdown was asked for before the alert was delivered.
    Stopped,
    /// Another process holds the lease now (or the store could not renew it).
    LeaseLost,
}

/// Why an alert was given up, as its dead letter records it.
pub(crate) struct Failure {
    pub attempts: u32,
    pub last_status: Option<u16>,
    /// The retry policy's reason, with the last attempt's error.
    pub error: String,
    pub first_attempt_at: Timestamp,
}

/// Sends `alert` (of `kind`: `event` or `session_overdue`) through `dest` until the retry
/// policy is done with it.
pub(crate) async fn send(
    ctx: &mut Ctx,
    dest: &dyn Destination,
    alert: &Alert,
    kind: &str,
    lease: &mut Lease,
) -> Sent {
    let shared = ctx.shared.clone();
    let channel = alert.channel.as_str();
    let mut failing_since: Option<Instant> = None;
    let first_attempt_at = Timestamp::now_millis();
    let mut view = DeliveryView {
        id: alert.delivery_id.clone(),
        channel: channel.to_string(),
        rule: alert.rule.clone(),
        tenant_id: alert.event.tenant_id.clone(),
        seq: alert.event.seq,
        event_id: alert.event.event_id.hyphenated().to_string(),
        event_type: alert.event.event_type.clone(),
        status: Status::Pending,
        attempts: 0,
        last_status: None,
        last_error: None,
        created_at: first_attempt_at.to_rfc3339(),
        updated_at: first_attempt_at.to_rfc3339(),
        next_attempt_at: None,
    };
    let record = |v: &DeliveryView| {
        let pending = shared.registry.record(v.clone());
        metrics::gauge!("trailkeep_alerts_pending", "channel" => channel.to_string())
            .set(pending as f64);
    };
    let count = |outcome: &'static str| {
        metrics::counter!("trailkeep_alerts_total", "channel" => channel.to_string(), "outcome" => outcome)
            .increment(1);
    };
    let abandon = |end: Sent| {
        let pending = shared.registry.abandon(&alert.delivery_id, channel);
        metrics::gauge!("trailkeep_alerts_pending", "channel" => channel.to_string())
            .set(pending as f64);
        end
    };
    let mut attempts = 0u32;
    loop {
        if ctx.stopping() {
            return abandon(Sent::Stopped);
        }
        if attempts == 0 {
            record(&view);
        }
        let Some(attempt) = lease
            .hold_during(&*shared.store, dest.timeout(), dest.send(alert))
            .await
        else {
            return abandon(Sent::LeaseLost);
        };
        attempts += 1;
        if !matches!(attempt, Attempt::Delivered { .. }) && failing_since.is_none() {
            failing_since = Some(Instant::now());
        }
        let failing_for = failing_since.map_or(Duration::ZERO, |t| t.elapsed());
        let now = Timestamp::now_millis();
        let (last_status, error) = match &attempt {
            Attempt::Delivered { status } => (Some(*status), None),
            Attempt::Retry { status, error, .. } => (*status, Some(error.clone())),
            Attempt::Refused { status, error } => (Some(*status), Some(error.clone())),
        };
        view.attempts = attempts;
        view.last_status = last_status;
        view.last_error = error.clone();
        view.updated_at = now.to_rfc3339();
        match shared.retry.next(attempts, failing_for, &attempt) {
            Next::Done => {
                count("delivered");
                if kind == "event" {
                    let secs = now.nanos.saturating_sub(alert.event.received_at.nanos) as f64 / 1e9;
                    metrics::histogram!("trailkeep_alert_latency_seconds", "channel" => channel.to_string())
                        .record(secs.max(0.0));
                }
                view.status = Status::Delivered;
                view.next_attempt_at = None;
                record(&view);
                return Sent::Delivered;
            }
            Next::RetryAfter(delay) => {
                count(match attempt {
                    Attempt::Refused { .. } => "refused",
                    _ => "retried",
                });
                shared.registry.count_retry(channel);
                let due = now
                    .nanos
                    .saturating_add(i64::try_from(delay.as_nanos()).unwrap_or(i64::MAX));
                view.next_attempt_at = Some(Timestamp::from_nanos(due, 3).to_rfc3339());
                record(&view);
                if let Err(end) = wait(ctx, lease, delay).await {
                    return abandon(end);
                }
            }
            Next::Dead(reason) => {
                if matches!(attempt, Attempt::Refused { .. }) {
                    count("refused");
                }
                count("dead");
                let error = match error {
                    Some(e) if !reason.contains(&e) => format!("{reason}: {e}"),
                    _ => reason,
                };
                tracing::warn!(
                    channel,
                    delivery_id = alert.delivery_id,
                    tenant_id = alert.event.tenant_id,
                    seq = alert.event.seq,
                    "alert given up after {attempts} attempts: {error}"
                );
                view.status = Status::Dead;
                view.next_attempt_at = None;
                view.last_error = Some(error.clone());
                record(&view);
                return Sent::Dead(Failure {
                    attempts,
                    last_status,
                    error,
                    first_attempt_at,
                });
            }
        }
    }
}

/// Waits `d` between two attempts, renewing the lease meanwhile.
pub(crate) async fn wait(ctx: &mut Ctx, lease: &mut Lease, d: Duration) -> Result<(), Sent> {
    let until = Instant::now() + d;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        if !ctx.pause(left.min(lease.renew_every()), None).await {
            return Err(Sent::Stopped);
        }
        if !lease.keep(&*ctx.shared.store).await {
            return Err(Sent::LeaseLost);
        }
    }
}
