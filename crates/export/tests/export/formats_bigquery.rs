//! The BigQuery schema matches the Parquet file column by column.

use crate::formats_events::{export, tricky};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{LogicalType, Repetition, Type as PhysicalType};
use trailkeep_core::Bytes;
use trailkeep_export::formats::{bigquery_schema, Format};

#[test]
fn bigquery_schema_matches_the_parquet_file() {
    let text = bigquery_schema();
    let fields: Vec<serde_json::Value> = serde_json::from_str(&text).expect("a JSON array");
    let file = export(Format::Parquet, &[&tricky()]);
    let builder = ParquetRecordBatchReaderBuilder::try_new(Bytes::from(file)).unwrap();
    let descr = builder.metadata().file_metadata().schema_descr();
    assert_eq!(fields.len(), descr.num_columns());
    for (i, f) in fields.iter().enumerate() {
        let c = descr.column(i);
        let obj = f.as_object().expect("an object");
        let keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        assert_eq!(f["name"], c.name(), "field {i}");
        let want_type = match (c.physical_type(), c.logical_type_ref()) {
            (PhysicalType::BYTE_ARRAY, Some(LogicalType::String)) => "STRING",
            (PhysicalType::INT64, None) => "INTEGER",
            (PhysicalType::INT64, Some(LogicalType::Timestamp(_))) => "TIMESTAMP",
            (PhysicalType::BOOLEAN, None) => "BOOLEAN",
            other => panic!("{}: no BigQuery type for {other:?}", c.name()),
        };
        assert_eq!(f["type"], want_type, "{}", c.name());
        let want_mode = match c.self_type().get_basic_info().repetition() {
            Repetition::REQUIRED => "REQUIRED",
            _ => "NULLABLE",
        };
        assert_eq!(f["mode"], want_mode, "{}", c.name());
        assert!(
            f["description"].as_str().is_some_and(|d| d.len() > 10),
            "{}",
            c.name()
        );
    }
    assert_eq!(fields[10]["name"], "payload");
    assert_eq!(fields[10]["type"], "STRING");
    assert!(fields[10]["description"]
        .as_str()
        .unwrap()
        .contains("PARSE_JSON"));
    // Pretty, keys in the order of `bq`'s documentation.
    assert!(text.starts_with("[\n  {\n    \"name\": \"event_id\",\n    \"type\": \"STRING\",\n    \"mode\": \"REQUIRED\",\n    \"description\": "), "{text}");
    assert!(text.ends_with("]\n"));
}
