//! Export formats and evidence bundles (docs/export.md), written here and nowhere else: the API
//! streams them, the CLI writes them, the archive sink will upload them, and `trailkeep verify`
//! reads bundles back.
//!
//! No I/O of its own beyond the `std::io::Write`/`Read` it is handed (and the bundle spool's
//! unlinked temporary files): the caller (server, CLI) reads events from the store and moves
//! bytes. Every writer is incremental, so memory stays
//! flat in the size of an export.
//!
//! * `formats`: CSV, NDJSON, JSON array and Parquet writers, fed batches of `StoredEvent`s, and
//!   the BigQuery schema that matches the Parquet files.
//! * `bundle`: evidence bundles — a spool that gathers a tenant's events and leaves, the tar
//!   writer (optionally gzip), and the offline verifier.
//! * `leaf`: an event as the API returns it, parsed, and its leaf hash recomputed from its own
//!   fields — the verifier's side, shared by the bundle verifier and `trailkeep verify`.

pub mod bundle;
pub mod formats;
pub mod leaf;
