//! Storage errors. Messages say what went wrong and what to do; internal detail is kept for logs.

use trailkeep_core::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An `event_id` is already stored (or repeated in the request) with different content.
    #[error("event_id {event_id} (event {index} of the request) was already used with different content; nothing of this request was stored")]
    Conflict { index: usize, event_id: Uuid },
    /// Storage cannot take the request now (I/O failure, shutting down). Nothing was stored.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// The data directory is held by another process (its `store.lock`). The message is one
    /// sentence naming the directory and what to do.
    #[error("{0}")]
    InUse(String),
    /// A write was sent but its outcome could not be learned (the database stopped answering
    /// after `COMMIT` was sent, and asking again afterwards failed too). The events are either
    /// all stored or none is; resending the same events (same `event_id`s) is safe: stored ones
    /// come back as duplicates with their original receipts.
    #[error("the outcome of the write is unknown: {0}")]
    OutcomeUnknown(String),
    /// A request the store refuses (bad cursor, unknown id…).
    #[error("{0}")]
    Invalid(String),
    /// Stored data that does not decode: a bug or disk corruption.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A tenant whose stored log failed an integrity check at open (its rebuilt tree does not
    /// match a checkpoint it signed): none of its data is served until an operator acts.
    #[error("the log of tenant {tenant} failed an integrity check and is not served: {reason}")]
    Quarantined { tenant: String, reason: String },
}

impl From<std::io::Error> for StoreError {
    fn from(e: std::io::Error) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}
