//! NDJSON and the JSON array: each object is `GET /v1/events/{id}`'s, byte for byte.

use crate::formats_events::{export, synthetic, tricky};
use trailkeep_core::render::event_json;
use trailkeep_export::formats::Format;

#[test]
fn ndjson_lines_equal_the_api_objects() {
    let mut events = tricky();
    events.extend(synthetic(200, 30));
    let (a, b) = events.split_at(3);
    let out = String::from_utf8(export(Format::Ndjson, &[a, &[], b])).unwrap();
    assert!(out.ends_with('\n'));
    let lines: Vec<&str> = out.split_terminator('\n').collect();
    assert_eq!(lines.len(), events.len());
    for (line, e) in lines.iter().zip(&events) {
        assert_eq!(*line, event_json(e), "seq {}", e.seq);
        let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
        assert_eq!(v["purged"].as_bool().unwrap_or(false), e.payload.is_none());
    }
    assert!(export(Format::Ndjson, &[]).is_empty());
}

#[test]
fn json_arrays_parse_empty_one_and_many() {
    let events = tricky();
    for n in [0, 1, events.len()] {
        for batches in [
            vec![&events[..n]],
            vec![&events[..n / 2], &[][..], &events[n / 2..n]],
            vec![],
        ] {
            if batches.is_empty() && n > 0 {
                continue;
            }
            let out = export(Format::Json, &batches);
            let v: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON");
            let arr = v.as_array().expect("an array");
            assert_eq!(arr.len(), n);
            for (got, e) in arr.iter().zip(&events) {
                let want: serde_json::Value = serde_json::from_str(&event_json(e)).unwrap();
                assert_eq!(*got, want);
            }
            // And textually: the same bytes as the API, one per line.
            let text = String::from_utf8(out).unwrap();
            if n == 0 {
                assert_eq!(text, "[]\n");
            } else {
                let lines: Vec<&str> = text.lines().collect();
                assert_eq!(lines.first(), Some(&"["));
                assert_eq!(lines.last(), Some(&"]"));
                for (line, e) in lines[1..lines.len() - 1].iter().zip(&events) {
                    assert_eq!(line.strip_suffix(',').unwrap_or(line), event_json(e));
                }
            }
        }
    }
}
