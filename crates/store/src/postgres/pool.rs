//! A small connection pool: at most `max` connections, reused in LIFO order, reconnected when
//! one broke. Closing the pool drops every idle connection and makes later checkouts fail with
//! `Unavailable`.

use crate::StoreError;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

pub(crate) struct Pool {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
    closed: AtomicBool,
}

/// A checked-out connection; goes back to the pool when dropped (unless it broke or the pool
/// closed meanwhile).
pub(crate) struct Conn<'a> {
    pool: &'a Pool,
    client: Option<Client>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for Conn<'_> {
    type Target = Client;
    fn deref(&self) -> &Client {
        // Present from checkout until drop.
        self.client.as_ref().expect("connection present")
    }
}

impl std::ops::DerefMut for Conn<'_> {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("connection present")
    }
}

impl Drop for Conn<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            if !c.is_closed() && !self.pool.closed.load(Ordering::SeqCst) {
                if let Ok(mut idle) = self.pool.idle.lock() {
                    idle.push(c);
                }
            }
        }
    }
}

/// The useful text of a client error: the server's message and SQLSTATE, or the I/O cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(s) => format!("{e}: {s}"),
        None => e.to_string(),
    }
}

pub(crate) fn unavailable(e: tokio_postgres::Error) -> StoreError {
    StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e)))
}

/// Opens one connection and drives it on the current runtime.
pub(crate) async fn connect(config: &Config) -> Result<Client, StoreError> {
    let (client, conn) = config.connect(NoTls).await.map_err(|e| {
        StoreError::Unavailable(format!("cannot connect to PostgreSQL: {}", describe(&e)))
    })?;
    // Driven by hand rather than awaited: awaiting logs the server's NOTICEs (such as
    // "relation … already exists, skipping" from the migrations) at info; they are debug.
    let mut conn = conn;
    tokio::spawn(async move {
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
    });
    Ok(client)
}

impl Pool {
    pub fn new(config: Config, max: usize) -> Pool {
        Pool {
            config,
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

    pub async fn get(&self) -> Result<Conn<'_>, StoreError> {
        if self.is_closed() {
            return Err(Self::closed_error());
        }
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Self::closed_error())?;
        if self.is_closed() {
            return Err(Self::closed_error());
        }
        let reused = loop {
            let c = self.idle.lock().ok().and_then(|mut v| v.pop());
            match c {
                Some(c) if c.is_closed() => continue,
                other => break other,
            }
        };
        let client = match reused {
            Some(c) => c,
            None => connect(&self.config).await?,
        };
        Ok(Conn {
            pool: self,
            client: Some(client),
            _permit: permit,
        })
    }

    /// Drops idle connections and refuses later checkouts. Connections in use close when their
    /// holders finish.
    pub fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.permits.close();
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }
}
