//! Recent deliveries, for `GET /v1/alerts` and the metrics.
//!
//! The log and the delivery cursors are the durable record; the registry is a window on them
//! kept in memory by the [`super::engine`]: per status ([`Status::Pending`],
//! [`Status::Delivered`], [`Status::Dead`]) the last [`KEEP`] deliveries, and per channel what
//! it did since the process started and how far it is behind. Dead letters are also events
//! (`sink.alert_failed` in tenant `_global`), read back at start ([`Registry::dead_letter_event`]),
//! so the dead list survives a restart; the others start empty.
//!
//! The registry is a cheap handle ([`Clone`]: an `Arc` with a mutex inside, held only to copy
//! a few records in or out, never across an await).

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use trailkeep_core::StoredEvent;

/// Deliveries kept per status.
pub const KEEP: usize = 1_000;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being sent, or waiting to be sent again.
    Pending,
    /// The receiver took it.
    Delivered,
    /// Given up: recorded as a `sink.alert_failed` event.
    Dead,
}

impl Status {
    /// Parses `pending`, `delivered` or `dead` (the API's `status` parameter).
    pub fn parse(s: &str) -> Option<Status> {
        match s {
            "pending" => Some(Status::Pending),
            "delivered" => Some(Status::Delivered),
            "dead" => Some(Status::Dead),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Delivered => "delivered",
            Status::Dead => "dead",
        }
    }
}

/// One delivery as the API shows it. Times are RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    /// The delivery id ([`super::delivery_id`]), the same on every attempt.
    pub id: String,
    pub channel: String,
    /// The rule that matched.
    pub rule: String,
    /// The event's tenant and seq, and its id and type.
    pub tenant_id: String,
    pub seq: u64,
    pub event_id: String,
    pub event_type: String,
    pub status: Status,
    /// Attempts made so far.
    pub attempts: u32,
    /// The HTTP status of the last answer, if there was one.
    pub last_status: Option<u16>,
    /// Why the last attempt failed (or why the delivery was given up).
    pub last_error: Option<String>,
    /// When the first attempt was made.
    pub created_at: String,
    /// When the delivery last changed.
    pub updated_at: String,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<String>,
}

/// What one channel did since the process started, and where it stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ChannelView {
    pub channel: String,
    /// Whether this process delivers the channel (holds its lease); with several servers on
    /// one PostgreSQL database exactly one does.
    pub active: bool,
    /// Alerts being sent or waiting to be sent again.
    pub pending: u64,
    pub delivered: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    pub dead: u64,
    /// Events of the log not looked at yet (every tenant's count minus the channel's
    /// position), as of the channel's last pass.
    pub lag: u64,
}

#[derive(Default)]
struct Inner {
    /// Oldest first; each list at most [`KEEP`].
    pending: VecDeque<DeliveryView>,
    delivered: VecDeque<DeliveryView>,
    dead: VecDeque<DeliveryView>,
    channels: BTreeMap<String, ChannelView>,
}

impl Inner {
    fn list_mut(&mut self, status: Status) -> &mut VecDeque<DeliveryView> {
        match status {
            Status::Pending => &mut self.pending,
            Status::Delivered => &mut self.delivered,
            Status::Dead => &mut self.dead,
        }
    }

    fn channel(&mut self, name: &str) -> &mut ChannelView {
        self.channels
            .entry(name.to_string())
            .or_insert_with(|| ChannelView {
                channel: name.to_string(),
                ..ChannelView::default()
            })
    }

    fn pending_of(&self, channel: &str) -> u64 {
        self.pending.iter().filter(|v| v.channel == channel).count() as u64
    }
}

/// Recent deliveries and per-channel counts (see the module documentation).
#[derive(Clone, Default)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Registry")
    }
}

impl Registry {
    pub fn new() -> Registry {
        Registry::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves plain data behind: keep using it.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Recent deliveries, newest (last updated) first: of one status or all, of one channel or
    /// all, at most `limit`.
    pub fn list(
        &self,
        status: Option<Status>,
        channel: Option<&str>,
        limit: usize,
    ) -> Vec<DeliveryView> {
        let inner = self.lock();
        let lists: Vec<&VecDeque<DeliveryView>> = match status {
            Some(Status::Pending) => vec![&inner.pending],
            Some(Status::Delivered) => vec![&inner.delivered],
            Some(Status::Dead) => vec![&inner.dead],
            None => vec![&inner.pending, &inner.delivered, &inner.dead],
        };
        let mut out: Vec<DeliveryView> = lists
            .into_iter()
            .flatten()
            .filter(|v| channel.is_none_or(|c| v.channel == c))
            .cloned()
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(instant(&v.updated_at)));
        out.truncate(limit);
        out
    }

    /// Every channel the engine runs (and any that recorded a dead letter), by name.
    pub fn channels(&self) -> Vec<ChannelView> {
        self.lock().channels.values().cloned().collect()
    }

    /// One channel's counts.
    pub fn channel(&self, name: &str) -> Option<ChannelView> {
        self.lock().channels.get(name).cloned()
    }

    /// Declares a channel (so that it is listed before its first delivery).
    pub(crate) fn add_channel(&self, name: &str) {
        self.lock().channel(name);
    }

    pub(crate) fn set_active(&self, channel: &str, active: bool) {
        self.lock().channel(channel).active = active;
    }

    pub(crate) fn set_lag(&self, channel: &str, lag: u64) {
        self.lock().channel(channel).lag = lag;
    }

    pub(crate) fn count_retry(&self, channel: &str) {
        self.lock().channel(channel).retried += 1;
    }

    /// Records a delivery's new state: it leaves the pending list when it is no longer
    /// pending, and replaces an earlier record with the same id in its status's list. Returns
    /// how many alerts of the channel are now pending (for the gauge).
    pub(crate) fn record(&self, v: DeliveryView) -> u64 {
        let mut inner = self.lock();
        let channel = v.channel.clone();
        let status = v.status;
        inner.pending.retain(|p| p.id != v.id);
        match status {
            Status::Delivered => inner.channel(&channel).delivered += 1,
            Status::Dead => inner.channel(&channel).dead += 1,
            Status::Pending => {}
        }
        push(inner.list_mut(status), v);
        let pending = inner.pending_of(&channel);
        inner.channel(&channel).pending = pending;
        pending
    }

    /// Drops a pending delivery that this process stopped working on (shutdown, or another
    /// process took the channel over and will send it again).
    pub(crate) fn abandon(&self, id: &str, channel: &str) -> u64 {
        let mut inner = self.lock();
        inner.pending.retain(|p| p.id != id);
        let pending = inner.pending_of(channel);
        inner.channel(channel).pending = pending;
        pending
    }

    /// Adds a dead letter read back from the log (a `sink.alert_failed` event of `_global`);
    /// ignores events whose payload is not one. Channel counts are not changed: they count
    /// what this process did.
    pub(crate) fn dead_letter_event(&self, e: &StoredEvent) {
        let Some(v) = view_of_dead_letter(e) else {
            return;
        };
        let mut inner = self.lock();
        if inner.dead.iter().any(|d| d.id == v.id) {
            return;
        }
        // Read back in log order, possibly after newer ones were recorded: keep the list in
        // time order, and the newest `KEEP`.
        let t = instant(&v.updated_at);
        let at = inner
            .dead
            .iter()
            .position(|d| instant(&d.updated_at) > t)
            .unwrap_or(inner.dead.len());
        inner.dead.insert(at, v);
        while inner.dead.len() > KEEP {
            inner.dead.pop_front();
        }
    }
}

/// Nanoseconds since 1970 of an RFC 3339 time (texts of different precisions do not sort as
/// text).
fn instant(rfc3339: &str) -> i64 {
    trailkeep_core::Timestamp::parse(rfc3339).map_or(i64::MIN, |t| t.nanos)
}

fn push(list: &mut VecDeque<DeliveryView>, v: DeliveryView) {
    list.retain(|d| d.id != v.id);
    list.push_back(v);
    while list.len() > KEEP {
        list.pop_front();
    }
}

/// The delivery a `sink.alert_failed` event records.
fn view_of_dead_letter(e: &StoredEvent) -> Option<DeliveryView> {
    let p: serde_json::Value = serde_json::from_slice(e.payload.as_deref()?).ok()?;
    let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
    Some(DeliveryView {
        id: s("delivery_id")?,
        channel: s("channel")?,
        rule: s("rule").unwrap_or_default(),
        tenant_id: s("tenant_id").unwrap_or_default(),
        seq: p.get("seq").and_then(|v| v.as_u64()).unwrap_or_default(),
        event_id: s("event_id").unwrap_or_default(),
        event_type: s("event_type").unwrap_or_default(),
        status: Status::Dead,
        attempts: p
            .get("attempts")
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_default(),
        last_status: p
            .get("last_status")
            .and_then(|v| v.as_u64())
            .and_then(|n| u16::try_from(n).ok()),
        last_error: s("error"),
        created_at: s("first_attempt_at").unwrap_or_else(|| e.timestamp.to_rfc3339()),
        updated_at: e.timestamp.to_rfc3339(),
        next_attempt_at: None,
    })
}
