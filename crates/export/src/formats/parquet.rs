//! Parquet: one fixed schema, written with arrow-rs, emitted a row group at a time.
//!
//! The schema is [`COLUMNS`], in that order, forever: loaders address columns by position as
//! well as by name, and files written years apart must load into one table. Columns are only
//! ever appended at the end, never removed, renamed, retyped or reordered.
//!
//! Encoding: Snappy compression everywhere; dictionary encoding for the low-cardinality
//! strings (`tenant_id`, `event_type`, `actor`, `source_ip`) and plain encoding for the rest;
//! page-level statistics (min/max, null counts) and page indexes on every column, so readers
//! skip row groups and pages by tenant, seq and time.
//!
//! Memory: a row group ends at [`ROW_GROUP_ROWS`] rows or once its encoded size reaches
//! [`ROW_GROUP_BYTES`], whichever comes first. The encoder writes into an in-memory sink that
//! is drained into the caller's buffer after every batch, so a writer holds at most the row
//! group it is filling (plus one page and one dictionary per column) and the file's footer
//! metadata (a few hundred bytes per row group): flat in the size of the export.
//!
//! Values: timestamps as microseconds since 1970 UTC (the API's nanoseconds rounded down; the
//! exact text is kept in `timestamp_text`, from which the leaf is computed); `payload` as the
//! canonical JSON text (BigQuery cannot load Parquet's JSON logical type); hashes as the API
//! writes them (hex, base64).

use super::{ExportError, ExportWriter};
use ::parquet::arrow::ArrowWriter;
use ::parquet::basic::Compression;
use ::parquet::file::properties::{EnabledStatistics, WriterProperties};
use ::parquet::schema::types::ColumnPath;
use arrow_array::builder::{BooleanBuilder, StringBuilder};
use arrow_array::{ArrayRef, Int64Array, RecordBatch, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use base64::Engine as _;
use std::sync::Arc;
use trailkeep_core::{StoredEvent, Timestamp};

/// Most rows in a row group: large enough for analytic readers (a row group is their unit of
/// work), small enough to hold in memory while it fills.
pub const ROW_GROUP_ROWS: usize = 64 * 1024;
/// Largest encoded size of a row group (events with large payloads end a row group early).
pub const ROW_GROUP_BYTES: usize = 32 * 1024 * 1024;
/// Events turned into Arrow arrays at once: a caller's batch is cut into pieces of this size,
/// so the arrays alongside the row group stay small whatever the caller's batch size.
const CHUNK_ROWS: usize = 4096;

/// The type of a column, as Parquet stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// BYTE_ARRAY, logical type STRING (UTF-8).
    String,
    /// INT64, no logical type.
    Int64,
    /// INT64, logical type TIMESTAMP(MICROS, isAdjustedToUTC=true).
    TimestampMicros,
    /// BOOLEAN.
    Boolean,
}

/// One column of the export schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Column {
    pub name: &'static str,
    pub kind: ColumnType,
    /// REQUIRED (never null) rather than OPTIONAL.
    pub required: bool,
    /// What it holds (also the BigQuery description).
    pub description: &'static str,
}

const fn col(
    name: &'static str,
    kind: ColumnType,
    required: bool,
    description: &'static str,
) -> Column {
    Column {
        name,
        kind,
        required,
        description,
    }
}

/// The columns of every Parquet export, in file order. Append only.
pub const COLUMNS: [Column; 16] = {
    use ColumnType::*;
    [
        col("event_id", String, true, "The event's UUID, lower-case and hyphenated."),
        col("tenant_id", String, true, "The tenant whose log holds the event."),
        col("seq", Int64, true, "The event's position in its tenant's log, from 0, without gaps."),
        col("event_type", String, true, "The event type, e.g. prompt.update."),
        col("actor", String, true, "Who acted: the user, service or system the event names."),
        col("timestamp", TimestampMicros, true, "When it happened, UTC, to the microsecond (timestamp_text has the exact value)."),
        col("received_at", TimestampMicros, true, "When the server received it, UTC, to the microsecond."),
        col("source_ip", String, false, "The client address the event names, if any."),
        col("impersonation_session", String, false, "The impersonation session the action was taken in, if any."),
        col("approval_id", String, false, "The approval the action relied on, if any."),
        col("payload", String, false, "The payload as canonical JSON text (use PARSE_JSON); null once purged."),
        col("purged", Boolean, true, "True once retention or erasure removed the payload; the leaf stays verifiable."),
        col("payload_salt", String, false, "The payload commitment's salt, 64 hex digits; null once purged."),
        col("payload_commitment", String, false, "SHA-256 of salt and canonical payload, 64 hex digits; set for purged events only."),
        col("leaf_hash", String, true, "The event's Merkle leaf hash, base64, as the API returns it."),
        col("timestamp_text", String, true, "The timestamp exactly as the API returns it (up to nanoseconds); the leaf is computed from this text."),
    ]
};

/// Columns written with dictionary encoding (few distinct values per row group).
const DICTIONARY_COLUMNS: [&str; 4] = ["tenant_id", "event_type", "actor", "source_ip"];

/// Columns of random-looking text (ids, salts, hashes): Snappy finds nothing to shorten in
/// them, so they are stored uncompressed and the time goes to the columns that do compress.
const RANDOM_COLUMNS: [&str; 4] = [
    "event_id",
    "payload_salt",
    "payload_commitment",
    "leaf_hash",
];

/// The Arrow schema of [`COLUMNS`] (timestamps in the `UTC` zone).
pub fn arrow_schema() -> SchemaRef {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|c| {
            let dt = match c.kind {
                ColumnType::String => DataType::Utf8,
                ColumnType::Int64 => DataType::Int64,
                ColumnType::TimestampMicros => {
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
                }
                ColumnType::Boolean => DataType::Boolean,
            };
            Field::new(c.name, dt, !c.required)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The Parquet writer. The encoder is made on first use (so that [`super::writer`] cannot
/// fail); its sink is the `Vec` drained after every batch.
pub struct ParquetWriter {
    max_rows: usize,
    max_bytes: usize,
    schema: SchemaRef,
    encoder: Option<ArrowWriter<Vec<u8>>>,
}

impl Default for ParquetWriter {
    fn default() -> Self {
        ParquetWriter::new()
    }
}

impl ParquetWriter {
    /// A writer with the default row group limits.
    pub fn new() -> ParquetWriter {
        ParquetWriter::with_row_group_limits(ROW_GROUP_ROWS, ROW_GROUP_BYTES)
    }

    /// A writer whose row groups end at `max_rows` rows or `max_bytes` encoded bytes (each at
    /// least 1).
    pub fn with_row_group_limits(max_rows: usize, max_bytes: usize) -> ParquetWriter {
        ParquetWriter {
            max_rows: max_rows.max(1),
            max_bytes: max_bytes.max(1),
            schema: arrow_schema(),
            encoder: None,
        }
    }

    /// Bytes the writer holds between batches: the estimated memory of the row group being
    /// filled and anything encoded but not yet handed out.
    pub fn buffered_bytes(&self) -> usize {
        self.encoder
            .as_ref()
            .map_or(0, |w| w.memory_size() + w.inner().len())
    }

    /// Rows in the row group being filled.
    pub fn buffered_rows(&self) -> usize {
        self.encoder.as_ref().map_or(0, |w| w.in_progress_rows())
    }

    fn properties(&self) -> WriterProperties {
        let mut b = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(self.max_rows))
            .set_max_row_group_bytes(Some(self.max_bytes))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_dictionary_enabled(false);
        for name in DICTIONARY_COLUMNS {
            b = b.set_column_dictionary_enabled(ColumnPath::from(name), true);
        }
        for name in RANDOM_COLUMNS {
            b = b.set_column_compression(ColumnPath::from(name), Compression::UNCOMPRESSED);
        }
        b.build()
    }

    fn encoder(&mut self) -> Result<&mut ArrowWriter<Vec<u8>>, ExportError> {
        if self.encoder.is_none() {
            let w = ArrowWriter::try_new(Vec::new(), self.schema.clone(), Some(self.properties()))
                .map_err(parquet_error)?;
            self.encoder = Some(w);
        }
        self.encoder
            .as_mut()
            .ok_or_else(|| ExportError::Parquet("the encoder is missing".into()))
    }
}

impl ExportWriter for ParquetWriter {
    fn write_batch(
        &mut self,
        events: &[StoredEvent],
        out: &mut Vec<u8>,
    ) -> Result<(), ExportError> {
        for chunk in events.chunks(CHUNK_ROWS) {
            let batch = record_batch(&self.schema, chunk)?;
            let w = self.encoder()?;
            w.write(&batch).map_err(parquet_error)?;
            // Push what the encoder buffered into the sink, then hand the sink's bytes out.
            w.sync().map_err(|e| ExportError::Parquet(e.to_string()))?;
            out.append(w.inner_mut());
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>, out: &mut Vec<u8>) -> Result<(), ExportError> {
        let w = self.encoder()?;
        w.finish().map_err(parquet_error)?;
        w.sync().map_err(|e| ExportError::Parquet(e.to_string()))?;
        out.append(w.inner_mut());
        Ok(())
    }
}

fn parquet_error(e: ::parquet::errors::ParquetError) -> ExportError {
    ExportError::Parquet(e.to_string())
}

/// Microseconds since 1970, rounded down (towards the past, also before 1970).
pub fn micros(t: &Timestamp) -> i64 {
    t.nanos.div_euclid(1000)
}

/// The events of `chunk` as one record batch of [`arrow_schema`].
fn record_batch(schema: &SchemaRef, chunk: &[StoredEvent]) -> Result<RecordBatch, ExportError> {
    let n = chunk.len();
    let strings = |bytes_each: usize| StringBuilder::with_capacity(n, n * bytes_each);
    let mut event_id = strings(36);
    let mut tenant_id = strings(16);
    let mut seq = Vec::with_capacity(n);
    let mut event_type = strings(24);
    let mut actor = strings(24);
    let mut timestamp = Vec::with_capacity(n);
    let mut received_at = Vec::with_capacity(n);
    let mut source_ip = strings(16);
    let mut session = strings(0);
    let mut approval = strings(0);
    let mut payload = strings(128);
    let mut purged = BooleanBuilder::with_capacity(n);
    let mut salt = strings(64);
    let mut commitment = strings(0);
    let mut leaf = strings(44);
    let mut timestamp_text = strings(30);

    for e in chunk {
        let problem = |problem| ExportError::Event {
            event_id: e.event_id,
            problem,
        };
        let mut id = trailkeep_core::Uuid::encode_buffer();
        event_id.append_value(e.event_id.hyphenated().encode_lower(&mut id));
        tenant_id.append_value(&e.tenant_id);
        seq.push(
            i64::try_from(e.seq)
                .map_err(|_| problem("its seq is beyond the range of a Parquet INT64"))?,
        );
        event_type.append_value(&e.event_type);
        actor.append_value(&e.actor);
        timestamp.push(micros(&e.timestamp));
        received_at.push(micros(&e.received_at));
        source_ip.append_option(e.source_ip.as_deref());
        session.append_option(e.impersonation_session.as_deref());
        approval.append_option(e.approval_id.as_deref());
        match &e.payload {
            Some(p) => {
                let text = std::str::from_utf8(p)
                    .map_err(|_| problem("its stored payload is not UTF-8"))?;
                payload.append_value(text);
            }
            None => payload.append_null(),
        }
        purged.append_value(e.payload.is_none());
        match &e.payload_salt {
            Some(s) => salt.append_value(hex_str(&trailkeep_core::leaf::hex32(s))),
            None => salt.append_null(),
        }
        match (&e.payload, &e.payload_commitment) {
            (None, Some(c)) => commitment.append_value(hex_str(&trailkeep_core::leaf::hex32(c))),
            _ => commitment.append_null(),
        }
        let mut b64 = [0u8; 44];
        let len = base64::engine::general_purpose::STANDARD
            .encode_slice(e.leaf_hash, &mut b64)
            .map_err(|_| problem("its leaf hash does not fit base64's 44 characters"))?;
        leaf.append_value(std::str::from_utf8(&b64[..len]).unwrap_or_default());
        let (ts, len) = e.timestamp.rfc3339_bytes();
        timestamp_text.append_value(std::str::from_utf8(&ts[..len]).unwrap_or_default());
    }

    let columns: Vec<ArrayRef> = vec![
        Arc::new(event_id.finish()),
        Arc::new(tenant_id.finish()),
        Arc::new(Int64Array::from(seq)),
        Arc::new(event_type.finish()),
        Arc::new(actor.finish()),
        Arc::new(TimestampMicrosecondArray::from(timestamp).with_timezone("UTC")),
        Arc::new(TimestampMicrosecondArray::from(received_at).with_timezone("UTC")),
        Arc::new(source_ip.finish()),
        Arc::new(session.finish()),
        Arc::new(approval.finish()),
        Arc::new(payload.finish()),
        Arc::new(purged.finish()),
        Arc::new(salt.finish()),
        Arc::new(commitment.finish()),
        Arc::new(leaf.finish()),
        Arc::new(timestamp_text.finish()),
    ];
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| ExportError::Parquet(e.to_string()))
}

/// Hex digits as a `&str` (they are ASCII).
fn hex_str(digits: &[u8; 64]) -> &str {
    std::str::from_utf8(digits).unwrap_or_default()
}
