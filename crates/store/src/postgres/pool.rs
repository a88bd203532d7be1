//! A small connection pool: at most `max` connections, reused in LIFO order, reconnected when
//! one broke. Closing the pool drops every idle connection and makes later checkouts fail with
//! `Unavailable`.
//!
//! Nothing here waits without a bound (PostgreSQL that stops answering without closing its
//! connections must not hang a request): a checkout waits at most `pool_wait` for a free slot
//! and `connect_timeout` for a new connection; an operation on a connection is bounded by
//! [`Pool::bounded`]. A connection goes back to the pool only through [`Conn::release`], after
//! its operation finished; one dropped otherwise (its operation timed out or was cancelled) is
//! closed at once, so a frozen or half-used connection is never handed out again.

use crate::StoreError;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;
use tokio_postgres::{Client, Config, NoTls};

/// The bounds every connection and operation obeys (from `PostgresOptions`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub connect: Duration,
    pub statement: Duration,
    pub lock: Duration,
    pub pool_wait: Duration,
}

impl Timeouts {
    /// The client-side bound on one operation (a read, or one group-commit transaction): the
    /// server cancels a statement after `statement_timeout`; a second more covers the answer's
    /// way back. Past it the connection is presumed dead.
    pub fn operation(&self) -> Duration {
        self.statement + Duration::from_secs(1)
    }
}

/// A connection and the task driving its socket. Dropping it aborts that task, which closes the
/// socket at once even if the peer stopped answering; [`Link::close`] ends a healthy one
/// politely (the server sees a Terminate message, not a broken connection).
pub(crate) struct Link {
    pub client: Client,
    task: Option<AbortHandle>,
}

impl Link {
    pub fn close(mut self) {
        self.task = None;
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

pub(crate) struct Pool {
    config: Config,
    pub timeouts: Timeouts,
    idle: Mutex<Vec<Link>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

/// A checked-out connection. [`Conn::release`] returns it to the pool; dropping it closes it.
pub(crate) struct Conn {
    pool: Arc<Pool>,
    link: Option<Link>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present from checkout until release or drop.
        &self.link.as_ref().expect("connection present").client
    }
}

impl std::ops::DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut Client {
        &mut self.link.as_mut().expect("connection present").client
    }
}

impl Conn {
    /// Returns the connection to the pool (unless it broke or the pool closed meanwhile). Call
    /// only after the operation using it finished.
    pub fn release(mut self) {
        if let Some(l) = self.link.take() {
            if !l.client.is_closed() && !self.pool.closed.load(Ordering::SeqCst) {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(l);
                }
            }
        }
    }
}

/// The useful text of a client error: the server's message and SQLSTATE, or the I/O cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let hint = match db.code().code() {
            "55P03" => " (a lock held by another session did not come free within lock_timeout)",
            "57014" => " (the statement ran longer than statement_timeout)",
            _ => "",
        };
        return format!("{} (SQLSTATE {}){hint}", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

pub(crate) fn unavailable(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e)))
}

/// Opens one connection, drives it on the current runtime and sets the session's
/// `statement_timeout`, `lock_timeout` and `idle_in_transaction_session_timeout` (so a
/// transaction whose client vanished releases its locks; zero turns a setting off). Bounded by
/// `connect_timeout` as a whole, handshake and settings included.
pub(crate) async fn connect(config: &Config, t: &Timeouts) -> Result<Link, StoreError> {
    let fail =
        |why: String| StoreError::Unavailable(format!("cannot connect to PostgreSQL: {why}"));
    let open = async {
        let (client, conn) = config
            .connect(NoTls)
            .await
            .map_err(|e| fail(describe(&e)))?;
        // Driven by hand rather than awaited: awaiting logs the server's NOTICEs (such as
        // "relation … already exists, skipping" from the migrations) at info; they are debug.
        let mut conn = conn;
        let task = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| conn.poll_message(cx)).await {
                    Some(Ok(tokio_postgres::AsyncMessage::Notice(n))) => {
                        tracing::debug!(severity = n.severity(), "PostgreSQL: {}", n.message());
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "PostgreSQL connection ended");
                        break;
                    }
                    None => break,
                }
            }
        })
        .abort_handle();
        let link = Link {
            client,
            task: Some(task),
        };
        link.client
            .batch_execute(&format!(
                "SET statement_timeout = {}; SET lock_timeout = {}; \
                 SET idle_in_transaction_session_timeout = {}",
                t.statement.as_millis(),
                t.lock.as_millis(),
                t.statement.as_millis(),
            ))
            .await
            .map_err(|e| fail(describe(&e)))?;
        Ok(link)
    };
    match tokio::time::timeout(t.connect, open).await {
        Ok(r) => r,
        Err(_) => Err(fail(format!(
            "no answer within connect_timeout ({} ms); check that the database is up and reachable",
            t.connect.as_millis()
        ))),
    }
}

impl Pool {
    pub fn new(mut config: Config, max: usize, timeouts: Timeouts) -> Pool {
        // A dead peer is noticed by TCP keepalive too, not only by the timeouts (the libpq
        // default waits two hours before the first probe).
        if config.get_keepalives_idle() > Duration::from_secs(30) {
            config.keepalives_idle(Duration::from_secs(30));
        }
        Pool {
            config,
            timeouts,
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(max.max(1))),
            closed: AtomicBool::new(false),
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    fn closed_error() -> StoreError {
        StoreError::Unavailable("the store is shut down".into())
    }

    /// A connection: an idle one, or a new one. Waits at most `pool_wait` for a free slot and
    /// `connect_timeout` to connect.
    pub async fn get(self: &Arc<Self>) -> Result<Conn, StoreError> {
        if self.is_closed() {
            return Err(Self::closed_error());
        }
        let t = self.timeouts;
        let permit =
            match tokio::time::timeout(t.pool_wait, self.permits.clone().acquire_owned()).await {
                Ok(p) => p.map_err(|_| Self::closed_error())?,
                Err(_) => {
                    return Err(StoreError::Unavailable(format!(
                "every PostgreSQL connection of this process stayed busy for pool_wait ({} ms); \
                         the database is slow or unreachable, or max_connections is too small",
                t.pool_wait.as_millis()
            )))
                }
            };
        if self.is_closed() {
            return Err(Self::closed_error());
        }
        let reused = loop {
            let c = self.idle.lock().ok().and_then(|mut v| v.pop());
            match c {
                Some(c) if c.client.is_closed() => continue,
                other => break other,
            }
        };
        let link = match reused {
            Some(c) => c,
            None => connect(&self.config, &t).await?,
        };
        Ok(Conn {
            pool: self.clone(),
            link: Some(link),
            _permit: permit,
        })
    }

    /// Runs `op` for at most the operation bound; `None` if it did not finish (PostgreSQL did
    /// not answer). Idle connections are then dropped too: they are likely as dead as the one
    /// that timed out, and new ones are opened on demand once the database answers again.
    pub async fn bounded<T>(&self, op: impl Future<Output = T>) -> Option<T> {
        match tokio::time::timeout(self.timeouts.operation(), op).await {
            Ok(r) => Some(r),
            Err(_) => {
                self.discard_idle();
                None
            }
        }
    }

    /// The error of an operation [`Pool::bounded`] gave up on.
    pub fn no_answer(&self) -> StoreError {
        StoreError::Unavailable(format!(
            "PostgreSQL did not answer within {} ms (statement_timeout and a second); \
             the connection was dropped and a new one is opened for the next request",
            self.timeouts.operation().as_millis()
        ))
    }

    /// Drops idle connections without a goodbye (they may be as dead as the one that failed).
    pub fn discard_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    /// Closes idle connections and refuses later checkouts. Connections in use close when their
    /// holders finish.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        self.close_idle();
    }

    fn close_idle(&self) {
        let idle = match self.idle.lock() {
            Ok(mut idle) => std::mem::take(&mut *idle),
            Err(_) => return,
        };
        for l in idle {
            l.close();
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.close_idle();
    }
}
