//! The export formats of docs/export.md: CSV, NDJSON, a JSON array and Parquet, plus the
//! BigQuery schema that matches the Parquet files.
//!
//! An export is a stream: [`writer`] gives an [`ExportWriter`] for a [`Format`], the caller
//! hands it the events in batches (in the order they are to appear) and sends whatever bytes
//! each batch appended to its buffer, then calls [`ExportWriter::finish`] for the last bytes.
//! No writer keeps more than one batch's worth of text, except Parquet, which holds the row
//! group it is filling (bounded: see [`parquet`]). The formats are a contract with the tools
//! that load them (spreadsheets, `jq`, BigQuery, DuckDB): column names, their order and the
//! rendering of each value never change.
//!
//! * [`csv`]: RFC 4180 with a fixed header; cells that a spreadsheet would read as a formula
//!   are defused.
//! * [`ndjson`]: NDJSON and the JSON array, both made of the objects `GET /v1/events/{id}`
//!   returns, byte for byte (`trailkeep_core::render::write_event`).
//! * [`parquet`]: one fixed schema ([`parquet::COLUMNS`]), row groups emitted as they fill.
//! * [`bigquery`]: [`bigquery_schema`], the same columns as BigQuery sees them.

pub mod bigquery;
pub mod csv;
pub mod ndjson;
pub mod parquet;

pub use bigquery::bigquery_schema;

use trailkeep_core::{StoredEvent, Uuid};

/// An export format, as named in `format=` and `--format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Csv,
    Ndjson,
    Json,
    Parquet,
}

impl Format {
    /// Every format, in the order error messages and docs list them.
    pub const ALL: [Format; 4] = [Format::Csv, Format::Ndjson, Format::Json, Format::Parquet];

    /// The name `FromStr` accepts: `csv`, `ndjson`, `json`, `parquet`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
            Format::Json => "json",
            Format::Parquet => "parquet",
        }
    }

    /// The `Content-Type` of an export in this format.
    pub fn content_type(&self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8; header=present",
            Format::Ndjson => "application/x-ndjson",
            Format::Json => "application/json",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// The file name extension, without the dot (the same as [`Format::name`]).
    pub fn extension(&self) -> &'static str {
        self.name()
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = UnknownFormat;

    /// Exact, lower-case names only.
    fn from_str(s: &str) -> Result<Format, UnknownFormat> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| UnknownFormat(s.to_string()))
    }
}

/// A format name that is not one of [`Format::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown export format {0:?}: use one of csv, ndjson, json, parquet")]
pub struct UnknownFormat(pub String);

/// Why an export could not be written. The bytes already sent are a truncated file: the caller
/// ends the stream as failed (the HTTP handler aborts the body, the CLI removes its file).
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A stored event has a value the format cannot hold. Stored events are checked when they
    /// are read, so this points at a damaged store or a bug; the message names the event.
    #[error("event {event_id} cannot be exported: {problem}")]
    Event {
        event_id: Uuid,
        problem: &'static str,
    },
    /// The Parquet encoder refused (an internal error: the schema and the values are fixed by
    /// this crate).
    #[error("writing the Parquet file failed: {0}")]
    Parquet(String),
}

/// An export being written. Batches go in the order of the export; bytes come out in the
/// buffer the caller passes, ready to send (appended: the caller drains it as it likes).
pub trait ExportWriter: Send {
    /// Appends a batch; bytes ready to send are appended to `out` (Parquet: possibly none until
    /// a row group is full).
    fn write_batch(&mut self, events: &[StoredEvent], out: &mut Vec<u8>)
        -> Result<(), ExportError>;
    /// Ends the export (JSON's closing bracket, Parquet's last row group and footer).
    fn finish(self: Box<Self>, out: &mut Vec<u8>) -> Result<(), ExportError>;
}

/// A new writer for `format`, with the default settings (Parquet: [`parquet::ROW_GROUP_ROWS`]
/// and [`parquet::ROW_GROUP_BYTES`]).
pub fn writer(format: Format) -> Box<dyn ExportWriter> {
    match format {
        Format::Csv => Box::new(csv::CsvWriter::new()),
        Format::Ndjson => Box::new(ndjson::NdjsonWriter::new()),
        Format::Json => Box::new(ndjson::JsonArrayWriter::new()),
        Format::Parquet => Box::new(parquet::ParquetWriter::new()),
    }
}
