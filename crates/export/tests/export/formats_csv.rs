//! CSV: RFC 4180 framing, formula defusing, and a round trip through an independent reader.

use crate::formats_events::{export, synthetic, tricky};
use trailkeep_core::StoredEvent;
use trailkeep_export::formats::csv::{cell, HEADER};
use trailkeep_export::formats::Format;

fn one_cell(v: &str) -> String {
    let mut out = Vec::new();
    cell(&mut out, v.as_bytes());
    String::from_utf8(out).unwrap()
}

#[test]
fn cells_are_quoted_only_when_needed_and_quotes_are_doubled() {
    let cases = [
        ("plain", "plain"),
        ("", ""),
        ("a b", "a b"),
        ("a,b", "\"a,b\""),
        ("say \"hi\"", "\"say \"\"hi\"\"\""),
        ("\"", "\"\"\"\""),
        ("line\nbreak", "\"line\nbreak\""),
        ("cr\rhere", "\"cr\rhere\""),
        ("a=b", "a=b"),
        ("é ✓", "é ✓"),
        (r#"{"a":1,"b":"x"}"#, r#""{""a"":1,""b"":""x""}""#),
    ];
    for (value, want) in cases {
        assert_eq!(one_cell(value), want, "cell {value:?}");
    }
}

#[test]
fn cells_starting_like_a_formula_get_a_quote_mark_before_quoting() {
    let cases = [
        ("=1+2", "'=1+2"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "\"'\rx\""),
        (
            "=HYPERLINK(\"http://x\")",
            "\"'=HYPERLINK(\"\"http://x\"\")\"",
        ),
        ("-1,2", "\"'-1,2\""),
        // Only the first character counts.
        ("x=1", "x=1"),
        (" =1", " =1"),
        ("'=1", "'=1"),
    ];
    for (value, want) in cases {
        assert_eq!(one_cell(value), want, "cell {value:?}");
    }
}

#[test]
fn an_empty_export_is_the_header_alone_without_bom() {
    let out = export(Format::Csv, &[]);
    assert_eq!(out, format!("{HEADER}\r\n").into_bytes());
    assert_eq!(
        HEADER,
        "event_id,event_type,actor,tenant_id,timestamp,source_ip,seq,payload"
    );
    let out = export(Format::Csv, &[&[], &[]]);
    assert_eq!(out, format!("{HEADER}\r\n").into_bytes());
}

/// A strict RFC 4180 reader: records end with CRLF, quoted fields may hold anything with `"`
/// doubled, an unquoted field may not hold `"`, CR or LF. Errors on anything else.
fn read_csv(text: &str) -> Result<Vec<Vec<String>>, String> {
    let b: Vec<char> = text.chars().collect();
    let (mut rows, mut row, mut field) = (Vec::new(), Vec::new(), String::new());
    let mut i = 0;
    if b.is_empty() {
        return Ok(rows);
    }
    loop {
        // One field.
        if b.get(i) == Some(&'"') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err("unterminated quoted field".into()),
                    Some('"') if b.get(i + 1) == Some(&'"') => {
                        field.push('"');
                        i += 2;
                    }
                    Some('"') => {
                        i += 1;
                        break;
                    }
                    Some(&c) => {
                        field.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while let Some(&c) = b.get(i) {
                match c {
                    ',' | '\r' => break,
                    '"' | '\n' => return Err(format!("{c:?} in an unquoted field at char {i}")),
                    _ => field.push(c),
                }
                i += 1;
            }
        }
        row.push(std::mem::take(&mut field));
        match (b.get(i), b.get(i + 1)) {
            (Some(','), _) => i += 1,
            (Some('\r'), Some('\n')) => {
                rows.push(std::mem::take(&mut row));
                i += 2;
                if i == b.len() {
                    return Ok(rows);
                }
            }
            (None, _) => return Err("the last record does not end with CRLF".into()),
            (c, _) => return Err(format!("{c:?} after a field at char {i}")),
        }
    }
}

/// A cell's value without the defusing quote mark.
fn undefused(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

fn expected_row(e: &StoredEvent) -> Vec<String> {
    vec![
        e.event_id.hyphenated().to_string(),
        e.event_type.clone(),
        e.actor.clone(),
        e.tenant_id.clone(),
        e.timestamp.to_rfc3339(),
        e.source_ip.clone().unwrap_or_default(),
        e.seq.to_string(),
        match &e.payload {
            Some(p) => String::from_utf8(p.clone()).unwrap(),
            None => "null".into(),
        },
    ]
}

#[test]
fn a_strict_reader_gets_every_field_back() {
    let mut events = tricky();
    events.extend(synthetic(300, 40));
    let (a, b) = events.split_at(5);
    let out = export(Format::Csv, &[a, &[], b]);
    assert!(!out.starts_with(b"\xef\xbb\xbf"), "no BOM");
    let text = String::from_utf8(out).expect("UTF-8");
    let rows = read_csv(&text).expect("RFC 4180");
    assert_eq!(rows.len(), events.len() + 1);
    assert_eq!(rows[0].join(","), HEADER);
    for (row, e) in rows[1..].iter().zip(&events) {
        let want = expected_row(e);
        assert_eq!(row.len(), 8, "seq {}", e.seq);
        for (col, (got, want)) in row.iter().zip(&want).enumerate() {
            // Defused exactly when the value starts like a formula.
            let defused = want.starts_with(['=', '+', '-', '@', '\t', '\r']);
            assert_eq!(
                got.starts_with('\'') && undefused(got) != got,
                defused,
                "seq {} col {col}: {got:?}",
                e.seq
            );
            assert_eq!(undefused(got), want, "seq {} col {col}", e.seq);
        }
        // The payload cell is the stored canonical JSON, byte for byte, and parses.
        let payload: serde_json::Value = serde_json::from_str(&row[7]).expect("payload JSON");
        assert_eq!(payload.is_null(), e.payload.is_none());
    }
    // The rows that needed it really were defused and quoted in the raw text.
    assert!(
        text.contains(",\"'=HYPERLINK(\"\"http://x\"\")\",'+1 attacker,"),
        "{text}"
    );
    assert!(text.contains(",'-tenant,"), "{text}");
    assert!(text.contains(",\"'\ractor,with comma\","), "{text}");
}

#[test]
fn purged_events_have_null_payload_cells_and_timestamps_keep_their_precision() {
    let events = tricky();
    let text = String::from_utf8(export(Format::Csv, &[&events])).unwrap();
    let rows = read_csv(&text).unwrap();
    let purged: Vec<_> = rows[1..].iter().filter(|r| r[7] == "null").collect();
    assert_eq!(purged.len(), 2);
    assert_eq!(rows[2][4], "2026-11-23T10:15:00.123456789Z");
    assert_eq!(rows[4][4], "1969-12-31T23:59:59.999999999Z");
    assert_eq!(rows[6][4], "2026-11-23T10:15:01.500Z");
    assert_eq!(rows[8][6], "5000000000");
}
