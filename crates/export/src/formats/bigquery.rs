//! The BigQuery schema of the Parquet export, for `bq load --schema`.
//!
//! Derived from [`super::parquet::COLUMNS`], so the two cannot drift: same names, same order,
//! STRING / INTEGER / TIMESTAMP / BOOLEAN for the Parquet string, INT64, timestamp and boolean
//! columns, REQUIRED / NULLABLE for required / optional. `payload` stays STRING: BigQuery does
//! not load Parquet's JSON logical type; queries use `PARSE_JSON(payload)`.

use super::parquet::{ColumnType, COLUMNS};
use serde::Serialize;

/// One field of a BigQuery schema file (its keys in this order).
#[derive(Serialize)]
struct Field {
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: &'static str,
    description: &'static str,
}

/// The schema as pretty-printed JSON, a newline at the end.
pub fn bigquery_schema() -> String {
    let fields: Vec<Field> = COLUMNS
        .iter()
        .map(|c| Field {
            name: c.name,
            kind: match c.kind {
                ColumnType::String => "STRING",
                ColumnType::Int64 => "INTEGER",
                ColumnType::TimestampMicros => "TIMESTAMP",
                ColumnType::Boolean => "BOOLEAN",
            },
            mode: if c.required { "REQUIRED" } else { "NULLABLE" },
            description: c.description,
        })
        .collect();
    // Serialising plain strings cannot fail; an empty array would be the only fallback.
    let mut s = serde_json::to_string_pretty(&fields).unwrap_or_else(|_| "[]".into());
    s.push('\n');
    s
}
