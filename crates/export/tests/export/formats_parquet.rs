//! Parquet: read back with the parquet crate's own reader — schema, logical types, every
//! value (nulls and purged rows included), row groups, encodings, statistics, memory.

use crate::formats_events::{export, synthetic, tricky};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use base64::Engine as _;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{
    Compression, Encoding, LogicalType, Repetition, TimeUnit, Type as PhysicalType,
};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use std::sync::Arc;
use trailkeep_core::{Bytes, StoredEvent};
use trailkeep_export::formats::parquet::{ParquetWriter, COLUMNS, ROW_GROUP_BYTES, ROW_GROUP_ROWS};
use trailkeep_export::formats::{ExportError, ExportWriter, Format};

/// The file's metadata and all its rows.
fn read(file: &[u8]) -> (Arc<ParquetMetaData>, Vec<RecordBatch>) {
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::copy_from_slice(file))
        .expect("a Parquet file");
    let meta = builder.metadata().clone();
    let batches = builder
        .build()
        .expect("reader")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows");
    (meta, batches)
}

/// The expected schema, written out by hand (not derived from `COLUMNS`): name, physical type,
/// logical type, required.
fn expected_schema() -> Vec<(&'static str, PhysicalType, Option<LogicalType>, bool)> {
    let s = Some(LogicalType::String);
    let ts = Some(LogicalType::timestamp(true, TimeUnit::MICROS));
    use PhysicalType::{BOOLEAN, BYTE_ARRAY, INT64};
    vec![
        ("event_id", BYTE_ARRAY, s.clone(), true),
        ("tenant_id", BYTE_ARRAY, s.clone(), true),
        ("seq", INT64, None, true),
        ("event_type", BYTE_ARRAY, s.clone(), true),
        ("actor", BYTE_ARRAY, s.clone(), true),
        ("timestamp", INT64, ts.clone(), true),
        ("received_at", INT64, ts, true),
        ("source_ip", BYTE_ARRAY, s.clone(), false),
        ("impersonation_session", BYTE_ARRAY, s.clone(), false),
        ("approval_id", BYTE_ARRAY, s.clone(), false),
        ("payload", BYTE_ARRAY, s.clone(), false),
        ("purged", BOOLEAN, None, true),
        ("payload_salt", BYTE_ARRAY, s.clone(), false),
        ("payload_commitment", BYTE_ARRAY, s.clone(), false),
        ("leaf_hash", BYTE_ARRAY, s.clone(), true),
        ("timestamp_text", BYTE_ARRAY, s, true),
    ]
}

pub fn assert_schema(meta: &ParquetMetaData) {
    let descr = meta.file_metadata().schema_descr();
    let want = expected_schema();
    assert_eq!(descr.num_columns(), want.len());
    assert_eq!(COLUMNS.len(), want.len());
    for (i, (name, physical, logical, required)) in want.into_iter().enumerate() {
        let c = descr.column(i);
        assert_eq!(c.name(), name, "column {i}");
        assert_eq!(c.physical_type(), physical, "{name}");
        assert_eq!(c.logical_type_ref(), logical.as_ref(), "{name}");
        let rep = c.self_type().get_basic_info().repetition();
        assert_eq!(
            rep,
            if required {
                Repetition::REQUIRED
            } else {
                Repetition::OPTIONAL
            },
            "{name}"
        );
    }
}

fn string(b: &RecordBatch, col: &str, row: usize) -> Option<String> {
    let a = b.column_by_name(col).expect(col).as_string::<i32>();
    (!a.is_null(row)).then(|| a.value(row).to_string())
}

fn int(b: &RecordBatch, col: &str, row: usize) -> i64 {
    let a = b.column_by_name(col).expect(col);
    assert_eq!(a.null_count(), 0, "{col}");
    match a.data_type() {
        arrow_schema::DataType::Int64 => a.as_primitive::<Int64Type>().value(row),
        arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, Some(tz)) => {
            assert_eq!(&**tz, "UTC", "{col}");
            a.as_primitive::<TimestampMicrosecondType>().value(row)
        }
        t => panic!("{col}: unexpected type {t}"),
    }
}

/// Every column of every row against the event it came from.
fn assert_rows(batches: &[RecordBatch], events: &[StoredEvent]) {
    let hex = |b: &[u8; 32]| hex::encode(b);
    let mut i = 0;
    for b in batches {
        for row in 0..b.num_rows() {
            let e = &events[i];
            let at = format!("row {i} (seq {})", e.seq);
            assert_eq!(
                string(b, "event_id", row).as_deref(),
                Some(e.event_id.hyphenated().to_string().as_str()),
                "{at}"
            );
            assert_eq!(
                string(b, "tenant_id", row).as_deref(),
                Some(e.tenant_id.as_str()),
                "{at}"
            );
            assert_eq!(int(b, "seq", row), e.seq as i64, "{at}");
            assert_eq!(
                string(b, "event_type", row).as_deref(),
                Some(e.event_type.as_str()),
                "{at}"
            );
            assert_eq!(
                string(b, "actor", row).as_deref(),
                Some(e.actor.as_str()),
                "{at}"
            );
            assert_eq!(
                int(b, "timestamp", row),
                e.timestamp.nanos.div_euclid(1000),
                "{at}"
            );
            assert_eq!(
                int(b, "received_at", row),
                e.received_at.nanos.div_euclid(1000),
                "{at}"
            );
            assert_eq!(string(b, "source_ip", row), e.source_ip, "{at}");
            assert_eq!(
                string(b, "impersonation_session", row),
                e.impersonation_session,
                "{at}"
            );
            assert_eq!(string(b, "approval_id", row), e.approval_id, "{at}");
            assert_eq!(
                string(b, "payload", row).map(String::into_bytes),
                e.payload,
                "{at}"
            );
            let purged = b.column_by_name("purged").unwrap().as_boolean();
            assert!(!purged.is_null(row));
            assert_eq!(purged.value(row), e.payload.is_none(), "{at}");
            assert_eq!(
                string(b, "payload_salt", row),
                e.payload_salt.as_ref().map(hex),
                "{at}"
            );
            let commitment = if e.payload.is_none() {
                e.payload_commitment.as_ref().map(hex)
            } else {
                None
            };
            assert_eq!(string(b, "payload_commitment", row), commitment, "{at}");
            let leaf = base64::engine::general_purpose::STANDARD.encode(e.leaf_hash);
            assert_eq!(string(b, "leaf_hash", row), Some(leaf), "{at}");
            assert_eq!(
                string(b, "timestamp_text", row),
                Some(e.timestamp.to_rfc3339()),
                "{at}"
            );
            i += 1;
        }
    }
    assert_eq!(i, events.len(), "row count");
}

#[test]
fn every_value_reads_back_with_its_type() {
    let events = tricky();
    let (a, b) = events.split_at(3);
    let file = export(Format::Parquet, &[a, &[], b]);
    let (meta, batches) = read(&file);
    assert_schema(&meta);
    assert_rows(&batches, &events);
    assert_eq!(meta.file_metadata().num_rows(), events.len() as i64);
}

#[test]
fn nanoseconds_are_cut_to_micros_in_timestamp_and_kept_in_timestamp_text() {
    let events = tricky();
    let (_, batches) = read(&export(Format::Parquet, &[&events]));
    let b = &batches[0];
    // seq 1: 10:15:00.123456789 → .123456, text exact.
    assert_eq!(int(b, "timestamp", 1), 1_795_428_900_123_456);
    assert_eq!(
        string(b, "timestamp_text", 1).unwrap(),
        "2026-11-23T10:15:00.123456789Z"
    );
    // seq 3: one nanosecond before 1970 → one microsecond before (rounded down, not to zero).
    assert_eq!(int(b, "timestamp", 3), -1);
    assert_eq!(
        string(b, "timestamp_text", 3).unwrap(),
        "1969-12-31T23:59:59.999999999Z"
    );
    // Purged rows: payload and salt null, commitment set.
    for row in [5, 6] {
        assert_eq!(string(b, "payload", row), None);
        assert_eq!(string(b, "payload_salt", row), None);
        assert_eq!(
            string(b, "payload_commitment", row).map(|c| c.len()),
            Some(64)
        );
    }
}

#[test]
fn an_empty_export_is_a_valid_file_with_the_schema() {
    let file = export(Format::Parquet, &[]);
    let (meta, batches) = read(&file);
    assert_schema(&meta);
    assert_eq!(meta.file_metadata().num_rows(), 0);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
}

#[test]
fn row_groups_go_out_as_they_fill() {
    let events = synthetic(2_500, 40);
    let mut w: Box<dyn ExportWriter> =
        Box::new(ParquetWriter::with_row_group_limits(1_000, ROW_GROUP_BYTES));
    let mut out = Vec::new();
    let mut after_each = Vec::new();
    for batch in events.chunks(300) {
        w.write_batch(batch, &mut out).unwrap();
        after_each.push(out.len());
    }
    // Nothing until the first row group (1,000 rows = the 4th batch) is full, then bytes.
    assert_eq!(
        after_each[..3],
        [4, 4, 4],
        "only the magic number before the first row group"
    );
    assert!(after_each[3] > 10_000, "{after_each:?}");
    assert_eq!(
        after_each[4..6],
        [after_each[3], after_each[3]],
        "nothing new until the second row group is full"
    );
    assert!(after_each[6] > after_each[5], "{after_each:?}");
    w.finish(&mut out).unwrap();
    let (meta, batches) = read(&out);
    assert_eq!(meta.num_row_groups(), 3);
    let sizes: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    assert_eq!(sizes, [1_000, 1_000, 500]);
    assert_rows(&batches, &events);
}

#[test]
fn dictionaries_for_low_cardinality_columns_snappy_for_compressible_ones_statistics_everywhere() {
    let events = synthetic(3_000, 40);
    let (meta, _) = read(&export(Format::Parquet, &[&events]));
    assert_eq!(
        meta.num_row_groups(),
        1,
        "default limit {ROW_GROUP_ROWS} rows"
    );
    let g = meta.row_group(0);
    for (i, c) in COLUMNS.iter().enumerate() {
        let chunk = g.column(i);
        let dict = chunk.encodings().any(|e| e == Encoding::RLE_DICTIONARY);
        let want = matches!(c.name, "tenant_id" | "event_type" | "actor" | "source_ip");
        assert_eq!(
            dict,
            want,
            "{}: {:?}",
            c.name,
            chunk.encodings().collect::<Vec<_>>()
        );
        let random = matches!(
            c.name,
            "event_id" | "payload_salt" | "payload_commitment" | "leaf_hash"
        );
        let want = if random {
            Compression::UNCOMPRESSED
        } else {
            Compression::SNAPPY
        };
        assert_eq!(chunk.compression(), want, "{}", c.name);
        assert!(chunk.statistics().is_some(), "{} has statistics", c.name);
        assert!(
            chunk.column_index_range().is_some() && chunk.offset_index_range().is_some(),
            "{} page index",
            c.name
        );
    }
    match g.column(2).statistics() {
        Some(Statistics::Int64(s)) => {
            assert_eq!((s.min_opt(), s.max_opt()), (Some(&0), Some(&2_999)));
        }
        s => panic!("seq statistics: {s:?}"),
    }
    assert_eq!(
        g.column(10).statistics().and_then(|s| s.null_count_opt()),
        Some(60),
        "60 purged payloads"
    );
}

#[test]
fn memory_stays_bounded_by_the_row_group_byte_limit() {
    // 4 KiB payloads, 1 MiB row groups: ~250 rows a group; 6,000 events = 24 MB of payload,
    // in batches of 75 (300 KB) so that row groups end between batches as well as inside them.
    let cap = 1 << 20;
    let mut w = ParquetWriter::with_row_group_limits(ROW_GROUP_ROWS, cap);
    let mut out = Vec::new();
    let mut most = 0;
    let mut total = 0;
    for (round, events) in synthetic(6_000, 4096).chunks(75).enumerate() {
        w.write_batch(events, &mut out).unwrap();
        total += events.len();
        most = most.max(w.buffered_bytes());
        assert!(
            w.buffered_rows() < 400,
            "rows buffered: {}",
            w.buffered_rows()
        );
        assert!(
            out.len() + 2 * cap > total * 4096 / 2,
            "round {round}: only {} bytes out",
            out.len()
        );
    }
    assert!(
        most > cap / 4,
        "a row group was being filled at some point ({most} bytes)"
    );
    assert!(
        most < 3 * cap,
        "held {most} bytes with a {cap}-byte row group limit"
    );
    assert!(out.len() > 20 * cap, "emitted {} bytes", out.len());
    Box::new(w).finish(&mut out).unwrap();
    let (meta, batches) = read(&out);
    assert!(
        meta.num_row_groups() >= 20,
        "{} row groups",
        meta.num_row_groups()
    );
    for g in meta.row_groups() {
        assert!(
            g.compressed_size() < 2 * cap as i64,
            "row group of {} bytes",
            g.compressed_size()
        );
    }
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), total);
}

#[test]
fn a_payload_that_is_not_utf8_is_an_error_naming_the_event() {
    let mut events = tricky();
    events[2].payload = Some(vec![b'{', 0xff, b'}']);
    let mut w = trailkeep_export::formats::writer(Format::Parquet);
    let err = w.write_batch(&events, &mut Vec::new()).unwrap_err();
    assert!(
        matches!(err, ExportError::Event { event_id, .. } if event_id == events[2].event_id),
        "{err}"
    );
    assert!(err.to_string().contains("not UTF-8"), "{err}");
}
