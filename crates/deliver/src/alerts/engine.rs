//! The alert delivery engine: one loop per channel over the tenants' logs, from a durable
//! cursor, at least once and in order.
//!
//! # The model
//!
//! - **One task per channel.** Its cursor is the store's delivery cursor `alerts/<channel>`
//!   ([`Store::load_cursor`]): tenant → next seq to look at. The first time a channel runs
//!   (no cursor yet) it starts at every tenant's current size, so configuring alerts does not
//!   flood the channel with old events, and saves that at once together with a marker entry
//!   `_started` → 0 (no tenant id starts with `_` but `_global`). From then on a tenant
//!   missing from the cursor starts at 0: a tenant created later is alerted on from its first
//!   event.
//! - **One process per channel.** A task delivers only while it holds the lease
//!   `alerts/<channel>` ([`Store::acquire_lease`], [`EngineConfig::lease_ttl`], 15 s by
//!   default), renewed at least every 5 s (a third of the TTL if that is shorter), also while
//!   it waits to retry. Each attempt renews it right before it is sent, for at least the
//!   channel's timeout ([`Destination::timeout`]) plus 2 s, and keeps renewing it while the
//!   attempt runs; an attempt whose lease cannot be renewed is dropped before the lease could
//!   lapse, and no cursor is saved without the lease. A process that is not the holder sleeps
//!   and asks again; the cursor is loaded again whenever the lease is (re)gained, so the new
//!   holder resumes where the old one saved. The embedded store (one process) always grants
//!   the lease.
//! - **What is read.** For each tenant whose event count ([`Store::tenants`]) is beyond the
//!   channel's position, [`Store::read_log_matching`] returns up to 100 events of the types the
//!   channel's rules can match (the union of [`Rule::type_patterns`] of the rules naming the
//!   channel; everything if one of them can match any type), skipping the rest cheaply. A
//!   tenant whose log cannot be read (quarantined by the integrity check at open) is skipped,
//!   with a warning once a minute, and the pass goes on with the others. Each
//!   event goes through [`RuleSet::matching`]; the first rule (in configuration order) that
//!   names the channel makes one [`Alert`], with
//!   [`delivery_id`]`("event", channel, tenant, seq)`.
//! - **Sending.** The alert is sent ([`Destination::send`]) and the [`RetryPolicy`] decides
//!   what follows each [`Attempt`]: done, try again after a delay, or give up. The channel
//!   waits meanwhile: deliveries are in order per channel. The cursor is saved
//!   ([`Store::save_cursor`]) promptly once an alert was delivered (at the end of its slice,
//!   and at least every second within one) or dead-lettered, positions that only skipped
//!   unmatched events at most every second, and on shutdown up to the last alert delivered; a
//!   restart sends again only the alerts of the last moments, with the same delivery ids
//!   (receivers drop repeats by id).
//! - **Waking up.** A channel loop that caught up sleeps until [`AlertHandle::notify`] (which
//!   ingest calls after every successful append) or [`EngineConfig::poll`] (500 ms by default:
//!   other processes on the same PostgreSQL database append too), starting passes at most
//!   every 25 ms so that a stream of appends does not keep a loop spinning. A kill switch
//!   reaches a healthy receiver well within 2 s of its ingest receipt.
//! - **Dead letters.** An alert given up is recorded as one event of tenant `_global`:
//!   `sink.alert_failed` by `svc:trailkeep`, payload `channel`, `kind`, `delivery_id`, `rule`,
//!   `tenant_id`, `seq`, `event_id`, `event_type`, `attempts`, `last_status` (the last HTTP
//!   status, or null), `error`, `first_attempt_at`. Its event id is derived from the delivery
//!   id, so recording it twice (a retried append, a restart before the cursor was saved)
//!   stores it once. An alert on a `sink.alert_failed` event is never dead-lettered (no
//!   loops). If the append fails it is tried again; the cursor never moves past an alert that
//!   was neither delivered nor recorded.
//! - **Overdue impersonation sessions** ([`EngineConfig::max_session`], 8 h by default): the
//!   process folds each tenant's `impersonation.*` events once ([`Sessions`], incrementally
//!   from where it stopped), and each channel loop whose rules can match an
//!   `impersonation.start` checks, at its first pass and then every 30 s between slices, for
//!   open sessions older than the limit. For each it sends one alert (the start event, with a
//!   note) if a rule naming the channel matches that start event, with
//!   [`delivery_id`]`("session_overdue", channel, tenant, start_seq)`, in its own loop and
//!   under its own lease: a channel that is down delays only its own overdue alerts. The
//!   channel's cursor records each raised alert as `"<tenant>\u{1f}<session_id>"` → start seq,
//!   so a restart (or another process taking the channel over) does not raise it again. The
//!   first check of a channel (no `_overdue` entry in its cursor yet) records the sessions
//!   already overdue as raised without alerting, as the cursor's first start skips old events.
//! - **Never in ingest's way.** Ingest only calls [`AlertHandle::notify`]; the engine takes no
//!   lock ingest takes (it reads the store like any reader), so a slow or failing channel
//!   never delays or fails an append.
//!
//! What happened is kept in the [`Registry`] (recent deliveries, dead letters read back from
//! the log at start, per-channel counts and lag) and in the metrics
//! `trailkeep_alerts_total{channel,outcome}` (one count per attempt: `delivered`, `retried`
//! for a failure that will be tried again, `refused` for a 4xx refusal; plus `dead` per alert
//! given up), `trailkeep_alerts_pending{channel}`, `trailkeep_alert_latency_seconds{channel}`
//! (the event's receipt to the receiver's acknowledgement) and
//! `trailkeep_alerts_dead_letters_total{channel}`.
//!
//! [`Store::load_cursor`]: trailkeep_store::Store::load_cursor
//! [`Store::acquire_lease`]: trailkeep_store::Store::acquire_lease
//! [`Store::tenants`]: trailkeep_store::Store::tenants
//! [`Store::read_log_matching`]: trailkeep_store::Store::read_log_matching
//! [`Store::save_cursor`]: trailkeep_store::Store::save_cursor
//! [`Rule::type_patterns`]: trailkeep_control::rules::Rule::type_patterns
//! [`RuleSet::matching`]: trailkeep_control::rules::RuleSet::matching
//! [`Sessions`]: trailkeep_control::sessions::Sessions
//! [`delivery_id`]: super::delivery_id

mod attempts;
mod channel_loop;
mod cursor;
mod dead_letter;
mod lease;
mod overdue;
mod tenant_warnings;

use super::channel::{Channel, DEFAULT_TIMEOUT};
use super::registry::Registry;
use super::retry::RetryPolicy;
use super::{Alert, Attempt};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use trailkeep_control::rules::RuleSet;
use trailkeep_store::Store;

/// Where a channel's alerts go: one attempt per call. An alert channel
/// ([`super::channel::Channel`]) is one; tests use their own.
pub trait Destination: Send + Sync + 'static {
    /// The channel's name, as rules name it.
    fn name(&self) -> &str;
    /// One attempt to send the alert (waiting for the channel's rate limit first).
    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = Attempt> + Send + 'a>>;
    /// The longest one attempt's request may take once the rate limit let it go: the lease is
    /// renewed for at least this long (plus a margin) right before each attempt.
    /// [`DEFAULT_TIMEOUT`] unless the destination says otherwise.
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }
}

impl Destination for Channel {
    fn name(&self) -> &str {
        Channel::name(self)
    }

    fn send<'a>(&'a self, alert: &'a Alert) -> Pin<Box<dyn Future<Output = Attempt> + Send + 'a>> {
        Box::pin(Channel::send(self, alert))
    }

    fn timeout(&self) -> Duration {
        Channel::timeout(self)
    }
}

/// What the engine runs with.
#[derive(Clone)]
pub struct EngineConfig {
    /// The rules in force; a rule's `channels` name destinations by [`Destination::name`].
    pub rules: RuleSet,
    /// The channels, one delivery loop each.
    pub channels: Vec<Arc<dyn Destination>>,
    /// What to do after each attempt.
    pub retry: RetryPolicy,
    /// How often a caught-up loop looks at the log without being notified.
    pub poll: Duration,
    /// How long an impersonation session may stay open before it raises an alert; `None`
    /// disables the check.
    pub max_session: Option<Duration>,
    /// This process's name in leases: unique per process.
    pub holder: String,
    /// How long a lease lasts unless renewed.
    pub lease_ttl: Duration,
}

/// How often a caught-up loop looks at the log by default.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);
/// The default limit of an impersonation session.
pub const DEFAULT_MAX_SESSION: Duration = Duration::from_secs(8 * 3600);
/// The default lease TTL.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);
/// How often open impersonation sessions are checked.
pub const OVERDUE_EVERY: Duration = Duration::from_secs(30);
/// Events read per slice.
pub const SLICE: usize = 100;

impl EngineConfig {
    /// A configuration with the defaults: poll 500 ms, sessions limited to 8 h, a random
    /// holder name, leases of 15 s.
    pub fn new(
        rules: RuleSet,
        channels: Vec<Arc<dyn Destination>>,
        retry: RetryPolicy,
    ) -> EngineConfig {
        EngineConfig {
            rules,
            channels,
            retry,
            poll: DEFAULT_POLL,
            max_session: Some(DEFAULT_MAX_SESSION),
            holder: format!("trailkeep-{}", uuid::Uuid::new_v4()),
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

/// The running engine: wake it, read its registry, stop it. Cheap to clone; when the last
/// clone is dropped without [`AlertHandle::shutdown`], the tasks stop at their next pause.
#[derive(Clone)]
pub struct AlertHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    wakes: Vec<Arc<Notify>>,
    registry: Registry,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for AlertHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertHandle")
            .field("channels", &self.inner.wakes.len())
            .finish()
    }
}

impl AlertHandle {
    /// Tells every channel loop that events were appended. Never blocks: a loop busy
    /// delivering looks again when it is done.
    pub fn notify(&self) {
        for w in &self.inner.wakes {
            w.notify_one();
        }
    }

    /// Recent deliveries and per-channel counts.
    pub fn registry(&self) -> &Registry {
        &self.inner.registry
    }

    /// Stops every task between two attempts (an attempt in flight is finished), saving the
    /// cursors up to the last alert delivered, and waits for them.
    pub async fn shutdown(self) {
        let _ = self.inner.stop.send(true);
        let tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for t in tasks {
            if let Err(e) = t.await {
                tracing::error!("an alert task ended abnormally: {e}");
            }
        }
    }
}

/// What every task of the engine shares.
pub(crate) struct Shared {
    pub store: Arc<dyn Store>,
    pub rules: RuleSet,
    pub retry: RetryPolicy,
    pub registry: Registry,
    pub holder: String,
    pub lease_ttl: Duration,
    pub poll: Duration,
}

/// One task's view: the shared parts and its own stop signal.
pub(crate) struct Ctx {
    pub shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

impl Ctx {
    /// Whether shutdown was asked for.
    pub fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Waits `d`, or until `wake` is notified, or until shutdown. Returns `false` on shutdown.
    pub async fn pause(&mut self, d: Duration, wake: Option<&Notify>) -> bool {
        if self.stopping() {
            return false;
        }
        let woken = async {
            match wake {
                Some(n) => n.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = woken => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }
}

/// Starts the engine: a delivery loop per channel that some rule names (each also raising the
/// channel's overdue-session alerts, unless disabled), and the read-back of dead letters into
/// the registry. Must be called within a tokio runtime.
pub fn start(store: Arc<dyn Store>, cfg: EngineConfig) -> AlertHandle {
    let registry = Registry::new();
    let (stop, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        store,
        rules: cfg.rules,
        retry: cfg.retry,
        registry: registry.clone(),
        holder: cfg.holder,
        lease_ttl: cfg.lease_ttl,
        poll: cfg.poll,
    });
    let ctx = || Ctx {
        shared: shared.clone(),
        stop: stop_rx.clone(),
    };
    let mut tasks = Vec::new();
    let mut wakes = Vec::new();
    // One fold of impersonation sessions for the process; each channel raises its own alerts.
    let sessions = cfg
        .max_session
        .map(|max| Arc::new(overdue::SessionWatch::new(max)));
    for dest in &cfg.channels {
        registry.add_channel(dest.name());
        let Some(reads) = channel_loop::Reads::of(&shared.rules, dest.name()) else {
            tracing::info!(
                channel = dest.name(),
                "no alert rule names this channel: nothing to deliver"
            );
            continue;
        };
        let wake = Arc::new(Notify::new());
        wakes.push(wake.clone());
        let l = channel_loop::ChannelLoop::new(ctx(), dest.clone(), reads, wake, sessions.clone());
        tasks.push(tokio::spawn(l.run()));
    }
    tasks.push(tokio::spawn(dead_letter::read_back(ctx())));
    AlertHandle {
        inner: Arc::new(HandleInner {
            wakes,
            registry,
            stop,
            tasks: Mutex::new(tasks),
        }),
    }
}
