//! `Format`: names, content types, extensions.

use trailkeep_export::formats::Format;

#[test]
fn formats_parse_from_their_names_only() {
    for (name, f) in [
        ("csv", Format::Csv),
        ("ndjson", Format::Ndjson),
        ("json", Format::Json),
        ("parquet", Format::Parquet),
    ] {
        assert_eq!(name.parse::<Format>(), Ok(f));
        assert_eq!(f.to_string(), name);
        assert_eq!(f.extension(), name);
    }
    for bad in ["", "CSV", "xml", "jsonl", " csv"] {
        let err = bad.parse::<Format>().unwrap_err().to_string();
        assert!(err.contains("csv, ndjson, json, parquet"), "{err}");
        assert!(err.contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn content_types() {
    assert_eq!(
        Format::Csv.content_type(),
        "text/csv; charset=utf-8; header=present"
    );
    assert_eq!(Format::Ndjson.content_type(), "application/x-ndjson");
    assert_eq!(Format::Json.content_type(), "application/json");
    assert_eq!(
        Format::Parquet.content_type(),
        "application/vnd.apache.parquet"
    );
}
