//! Delivery: events of the log sent to the outside world, at least once.
//!
//! The log is the outbox. A destination (an alert channel here; streaming sinks later) reads
//! each tenant's log from a durable cursor ([`trailkeep_store::Store::read_log_matching`],
//! [`trailkeep_store::Store::load_cursor`]), keeps what its rules match, sends, and moves its
//! cursor only after the destination acknowledged. Nothing is copied into a second queue, so
//! a restart resumes from the cursor and a refused ingest request (never stored) is never
//! delivered.

pub mod alerts;
#[cfg(feature = "testkit")]
pub mod testkit;
