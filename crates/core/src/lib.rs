//! trailkeep's event model.
//!
//! An *event* is one action on the platform (a prompt edit, a crawl, an impersonation…). Clients
//! send events as JSON; [`validate::parse_event`] turns one JSON value into a [`NewEvent`] — every
//! rule of the envelope and of the built-in catalogue (docs/events.md) checked, every value
//! normalised — or into the list of [`Issue`]s that make it invalid, each with its JSON path.
//! [`validate::parse_body`] does it for a whole request body; bodies whose events are all valid
//! take a single-pass path (private modules `json` and `fast`: a borrowed JSON tree written
//! canonically as it is checked), and anything else is decided by the reference path above, so
//! both give the same events and the same refusals.
//!
//! A valid event becomes a leaf of its tenant's Merkle log. [`leaf`] builds the leaf data of
//! docs/verification.md (RFC 8785 canonical JSON with a salted commitment to the payload) and its RFC 6962
//! leaf hash, and [`render`] writes stored events back out as the JSON the API returns.
//!
//! Architecture invariant: this crate does no I/O and has no async code. "Now" and salts are
//! passed in by callers; the only ambient inputs are the clock and RNG behind a server-assigned
//! UUIDv7 `event_id` and [`Timestamp::now_micros`].

pub mod catalogue;
pub mod event;
mod fast;
pub mod ijson;
pub mod issue;
mod json;
pub mod leaf;
pub mod numbers;
pub mod render;
pub mod timestamp;
pub mod validate;

pub use catalogue::{risk_of, Risk};
pub use event::{Bytes, CompactString, NewEvent, StoredEvent};
pub use issue::Issue;
pub use timestamp::Timestamp;
pub use uuid::Uuid;

/// Largest accepted serialised size of one event (docs/events.md).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Most events accepted in one ingest request (docs/api.md).
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Deepest nesting of a payload (objects and arrays, the payload object itself counting as 1).
pub const MAX_PAYLOAD_DEPTH: usize = 32;
/// The reserved tenant that holds platform-wide events.
pub const GLOBAL_TENANT: &str = "_global";
