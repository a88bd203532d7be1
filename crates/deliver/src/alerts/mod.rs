//! Alerts: events that [`trailkeep_control::rules`] match, told to humans through channels
//! (Google Chat, Slack, signed webhooks).
//!
//! - [`channel`]: a configured channel (`[[alerts.channels]]`), ready to send one [`Alert`];
//!   one module per kind builds its request ([`google_chat`], [`slack`], [`webhook`]).
//! - [`rate`]: shared rate limits (Google Chat: per space, whatever the channel's name).
//! - [`retry`]: what to do after an [`Attempt`]: try again when, or give up (dead letter).
//! - [`engine`]: one delivery loop per channel over the log, from a durable cursor.
//! - [`registry`]: recent deliveries and dead letters, for the API and metrics.

pub mod channel;
pub mod engine;
pub mod google_chat;
pub mod rate;
pub mod registry;
pub mod retry;
pub mod slack;
pub mod webhook;

use std::time::Duration;
use trailkeep_core::StoredEvent;

/// One alert to send: an event a rule matched, for one channel.
#[derive(Debug, Clone)]
pub struct Alert {
    /// The same for every attempt and across restarts ([`delivery_id`]): receivers (and
    /// Google Chat's `requestId`) use it to drop a repeated send.
    pub delivery_id: String,
    /// The rule that matched (the first one, in configuration order, that names the channel).
    pub rule: String,
    /// The channel's name.
    pub channel: String,
    /// The event, as the API returns it.
    pub event: StoredEvent,
    /// What the alert is about when it is not the event itself (an impersonation session
    /// open too long); `None` for an alert on the event.
    pub note: Option<String>,
}

/// What one attempt to send an alert came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver took it (2xx).
    Delivered { status: u16 },
    /// Worth trying again: 429, 5xx, 408, a timeout or a connection error; `after` is the
    /// receiver's `Retry-After`, if it sent one.
    Retry {
        status: Option<u16>,
        after: Option<Duration>,
        error: String,
    },
    /// The receiver refused it (another 4xx): tried a few times more, then dead.
    Refused { status: u16, error: String },
}

/// The delivery id of the alert on event `seq` of `tenant` for `channel` (`kind` tells alerts
/// on the event from other alerts about it, such as `session_overdue`): 32 hex digits of
/// SHA-256 over the parts, so a retry or a resend after a restart carries the same id.
pub fn delivery_id(kind: &str, channel: &str, tenant: &str, seq: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for part in [kind.as_bytes(), channel.as_bytes(), tenant.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(seq.to_be_bytes());
    hex::encode(&h.finalize()[..16])
}
