//! `trailkeep ingest FILE.ndjson` (or `-` for stdin): send a file's events in batches, with a
//! progress bar on a terminal and retries on 429/503.
//!
//! Re-running is safe: every event without an `event_id` gets one computed from its line (see
//! [`HELP`]), so the server recognises an event it already stored and does not store it twice.
//! At the first refused batch or unreachable server, no new batch is sent, the batches in flight
//! are awaited, and the command says which file lines were stored and which were not.

use crate::client::{detail_text, Client, Refused, Unreachable};
use crate::ServerArgs;
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserializer as _;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// Requests in flight at once.
const IN_FLIGHT: usize = 4;
/// Domain tag of the client-computed event ids.
const ID_TAG: &[u8] = b"trailkeep ingest event_id v1\n";
/// Problems listed per refused batch.
const MAX_DETAILS: usize = 50;

/// Extra `--help` text: the id rule and what a failure reports.
pub const HELP: &str = "\
Input: one JSON event per line (NDJSON); blank lines are skipped; FILE `-` reads standard input.
Every line is checked to be JSON before anything is sent: if one is not, nothing is sent.

Re-running is safe. An event without an event_id (or with \"event_id\": null) gets one computed
from its line before it is sent: a UUID (version 8, RFC 9562 layout) made of the first 16 bytes
of SHA-256 over \"trailkeep ingest event_id v1\\n\", the line's length (8 bytes, big-endian), the
line's exact bytes (without its line ending), and the number of identical lines before it in the
input (8 bytes, big-endian). The same line in the same input always gets the same id, so
re-sending a file (whole, or fixed after a failure) stores each event once: the server answers
an event it already holds as a duplicate with its original receipt. Two identical lines are two
events. An event that has an event_id is sent unchanged.

On a refused batch or an unreachable server no new batch is sent; the batches already sent are
awaited and the command prints which file lines were stored and which were not (and why, by file
line and JSON path), then exits 1. Fix the file and run the same command again.

Exit status: 0 every event stored (or already stored); 1 something was not stored.";

/// What the input's lines hold, ready to send.
struct Prepared {
    batches: Vec<Batch>,
    /// Lines that are not JSON: (file line, why).
    not_json: Vec<(usize, String)>,
    /// Events to send.
    total: usize,
}

#[derive(Default)]
struct Batch {
    /// File line number (1-based) of each event, in order.
    lines: Vec<usize>,
    body: Vec<u8>,
    /// Holds an event that ingest accepts only after earlier ones are stored (an
    /// `impersonation.end`, an event using an approval): sent alone, once every earlier batch
    /// is stored, and no later batch is sent before it is stored, so that the file's order
    /// holds where it matters (an end after its start, a session id reused after its end).
    after_earlier: bool,
}

/// Whether a line may depend on earlier lines being stored (see [`Batch::after_earlier`]): a
/// plain text search, which at worst makes a batch wait that did not need to.
fn depends_on_earlier(line: &str) -> bool {
    line.contains("impersonation.end") || line.contains("approval_id")
}

/// What became of one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Stored,
    NotSent,
    /// Refused or failed: a short reason for the summary.
    Failed(String),
}

/// The top-level shape of a line, as far as the event id is concerned.
#[derive(Debug, PartialEq, Eq)]
enum Shape {
    /// An object: its member count, and whether `event_id` is present with a non-null value
    /// (`Some(true)`), present and null (`Some(false)`) or absent (`None`).
    Object {
        members: usize,
        event_id: Option<bool>,
    },
    NotObject,
}

/// A key seed: is this key `event_id`?
struct IsEventId;
impl<'de> DeserializeSeed<'de> for IsEventId {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = bool;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_str<E>(self, v: &str) -> Result<bool, E> {
                Ok(v == "event_id")
            }
        }
        d.deserialize_str(V)
    }
}

struct ShapeVisitor;
impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut members = 0;
        let mut event_id = None;
        while let Some(is_id) = map.next_key_seed(IsEventId)? {
            members += 1;
            if is_id {
                let v: Option<IgnoredAny> = map.next_value()?;
                event_id = Some(v.is_some());
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Shape::Object { members, event_id })
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Shape::NotObject)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
        Ok(Shape::NotObject)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
        Ok(Shape::NotObject)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
        Ok(Shape::NotObject)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
        Ok(Shape::NotObject)
    }
    fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
        Ok(Shape::NotObject)
    }
    fn visit_unit<E>(self) -> Result<Shape, E> {
        Ok(Shape::NotObject)
    }
}

/// Checks that a line is one JSON value and returns its shape, or serde's message without its
/// position within the line ("at line 1 column 7" becomes "at column 7").
fn shape(line: &str) -> Result<Shape, String> {
    let mut de = serde_json::Deserializer::from_str(line);
    let result = de
        .deserialize_any(ShapeVisitor)
        .and_then(|s| de.end().map(|_| s));
    result.map_err(|e| {
        let col = e.column();
        let msg = e.to_string();
        let msg = msg.rsplit_once(" at line ").map(|(m, _)| m).unwrap_or(&msg);
        format!("not valid JSON: {msg} at column {col}")
    })
}

/// The id given to the `occurrence`-th (0-based) copy of `line` in the input.
fn line_id(line: &[u8], occurrence: u64) -> uuid::Uuid {
    let mut h = Sha256::new();
    h.update(ID_TAG);
    h.update((line.len() as u64).to_be_bytes());
    h.update(line);
    h.update(occurrence.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80; // version 8
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 9562 variant
    uuid::Uuid::from_bytes(b)
}

/// The line with `"event_id": id` as its first member (replacing a null `event_id`).
fn with_id(line: &str, members: usize, id_is_null: bool, id: uuid::Uuid) -> Result<String> {
    let mut out = String::with_capacity(line.len() + 52);
    out.push_str("{\"event_id\":\"");
    out.push_str(
        id.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    out.push('"');
    if id_is_null {
        // Rebuild the object without the null member; every other value keeps its bytes.
        struct Members(Vec<(String, Box<RawValue>)>);
        impl<'de> serde::Deserialize<'de> for Members {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Members;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                        let mut v = Vec::new();
                        while let Some(e) = m.next_entry::<String, Box<RawValue>>()? {
                            v.push(e);
                        }
                        Ok(Members(v))
                    }
                }
                d.deserialize_map(V)
            }
        }
        let Members(ms) = serde_json::from_str(line).context("re-reading the line")?;
        for (k, v) in ms.iter().filter(|(k, _)| k != "event_id") {
            out.push(',');
            out.push_str(&serde_json::to_string(k)?);
            out.push(':');
            out.push_str(v.get());
        }
        out.push('}');
    } else {
        let rest = line
            .trim_start()
            .strip_prefix('{')
            .context("not an object")?;
        if members > 0 {
            out.push(',');
        }
        out.push_str(rest);
    }
    Ok(out)
}

/// Splits the input into batches, giving every event without an `event_id` its computed id.
fn prepare(input: &[u8], batch: usize) -> Result<Prepared> {
    let mut p = Prepared {
        batches: Vec::new(),
        not_json: Vec::new(),
        total: 0,
    };
    let mut seen: HashMap<&[u8], u64> = HashMap::new();
    let mut cur = Batch::default();
    let mut raw_lines = input.split(|&b| b == b'\n').peekable();
    let mut n = 0usize;
    while let Some(raw) = raw_lines.next() {
        n += 1;
        if raw.is_empty() && raw_lines.peek().is_none() {
            break; // after the final newline
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let Ok(line) = std::str::from_utf8(raw) else {
            p.not_json.push((n, "not valid UTF-8".into()));
            continue;
        };
        let owned;
        let text = match shape(line) {
            Err(why) => {
                p.not_json.push((n, why));
                continue;
            }
            Ok(Shape::Object {
                members,
                event_id: id @ (None | Some(false)),
            }) => {
                let k = seen.entry(raw).or_insert(0);
                let id_value = line_id(raw, *k);
                *k += 1;
                owned = with_id(line, members, id.is_some(), id_value)
                    .with_context(|| format!("line {n}"))?;
                owned.as_str()
            }
            Ok(_) => line,
        };
        cur.lines.push(n);
        cur.after_earlier |= depends_on_earlier(text);
        cur.body.extend_from_slice(text.as_bytes());
        cur.body.push(b'\n');
        p.total += 1;
        if cur.lines.len() == batch {
            p.batches.push(std::mem::take(&mut cur));
        }
    }
    if !cur.lines.is_empty() {
        p.batches.push(cur);
    }
    Ok(p)
}

/// `12,345` for 12345.4.
pub fn thousands(x: f64) -> String {
    let n = if x.is_finite() && x > 0.0 {
        x.round() as u64
    } else {
        0
    };
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn read_input(file: &Path) -> Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .lock()
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
        Ok(buf)
    } else {
        std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
    }
}

pub fn run(file: &Path, server: &ServerArgs, batch: usize) -> Result<ExitCode> {
    if !(1..=10_000).contains(&batch) {
        bail!("--batch must be between 1 and 10000");
    }
    let client = Arc::new(Client::new(server)?);
    let input = read_input(file)?;
    let prepared = prepare(&input, batch)?;
    drop(input);
    if !prepared.not_json.is_empty() {
        let n = prepared.not_json.len();
        eprintln!(
            "error: {n} line(s) are not JSON events; nothing was sent{}",
            if n > MAX_DETAILS {
                format!(" (the first {MAX_DETAILS} are listed)")
            } else {
                String::new()
            }
        );
        for (line, why) in prepared.not_json.iter().take(MAX_DETAILS) {
            eprintln!("  line {line}: {why}");
        }
        eprintln!("stored: none. Fix the file and run the same command again.");
        return Ok(ExitCode::from(1));
    }
    let total = prepared.total;
    let pb = ProgressBar::new(total as u64);
    pb.set_style(
        ProgressStyle::with_template("{bar:40} {human_pos}/{human_len} events {rate} eta {eta}")
            .map(|s| {
                s.with_key(
                    "rate",
                    |state: &ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{} events/s", thousands(state.per_sec()));
                    },
                )
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let batches = prepared.batches;
    let mut outcomes = vec![Outcome::NotSent; batches.len()];
    let (accepted, duplicates) = rt.block_on(async {
        let mut set: JoinSet<(usize, Result<(usize, usize)>)> = JoinSet::new();
        let (mut accepted, mut duplicates) = (0usize, 0usize);
        let mut next = 0usize;
        let mut failed = false;
        // A batch that must not be overtaken is in flight (see `Batch::after_earlier`).
        let mut barrier = false;
        loop {
            while !failed && set.len() < IN_FLIGHT && next < batches.len() && !barrier {
                if batches[next].after_earlier && !set.is_empty() {
                    // Wait until every earlier batch is stored (see `Batch::after_earlier`).
                    break;
                }
                // While this batch is in flight, no later one is sent.
                barrier = batches[next].after_earlier;
                let i = next;
                next += 1;
                let c = client.clone();
                let body = batches[i].body.clone();
                set.spawn(async move {
                    let r = async {
                        let resp = c
                            .send(
                                reqwest::Method::POST,
                                "/v1/events",
                                Some("application/x-ndjson"),
                                Some(body),
                            )
                            .await?;
                        let v: serde_json::Value = serde_json::from_slice(&resp)
                            .context("the server's answer is not JSON")?;
                        Ok((
                            v["accepted"].as_u64().unwrap_or(0) as usize,
                            v["duplicates"].as_u64().unwrap_or(0) as usize,
                        ))
                    }
                    .await;
                    (i, r)
                });
            }
            let Some(done) = set.join_next().await else {
                break;
            };
            if set.is_empty() {
                barrier = false;
            }
            let (i, r) = match done {
                Ok(x) => x,
                Err(e) => {
                    // A panicked task: its batch's fate is unknown; count it as failed.
                    failed = true;
                    pb.suspend(|| eprintln!("error: a request task failed: {e}"));
                    continue;
                }
            };
            let lines = &batches[i].lines;
            match r {
                Ok((a, d)) => {
                    accepted += a;
                    duplicates += d;
                    outcomes[i] = Outcome::Stored;
                    pb.inc(lines.len() as u64);
                }
                Err(e) => {
                    failed = true;
                    let (reason, problems) = explain(&e, lines);
                    pb.suspend(|| {
                        eprintln!(
                            "error: {} not stored: {}",
                            range_text(&[(lines[0], lines[lines.len() - 1])]),
                            headline(&e)
                        );
                        for p in &problems {
                            eprintln!("  {p}");
                        }
                    });
                    outcomes[i] = Outcome::Failed(reason);
                }
            }
        }
        (accepted, duplicates)
    });
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if outcomes.iter().all(|o| *o == Outcome::Stored) {
        eprintln!(
            "ingested {total} events: {accepted} accepted, {duplicates} duplicates in {secs:.1} s \
             ({} events/s)",
            thousands(total as f64 / secs.max(1e-3))
        );
        return Ok(ExitCode::SUCCESS);
    }
    let spans: Vec<(usize, usize)> = batches
        .iter()
        .map(|b| (b.lines[0], b.lines[b.lines.len() - 1]))
        .collect();
    eprintln!("{}", summary(&spans, &outcomes));
    eprintln!(
        "{} events stored ({accepted} accepted, {duplicates} already stored). Fix the cause and \
         run the same command again: events already stored are recognised by their event_id and \
         not stored twice.",
        outcomes
            .iter()
            .zip(&batches)
            .filter(|(o, _)| **o == Outcome::Stored)
            .map(|(_, b)| b.lines.len())
            .sum::<usize>()
    );
    Ok(ExitCode::from(1))
}

/// The error's first line: the server's message or the transport failure.
fn headline(e: &anyhow::Error) -> String {
    match e.downcast_ref::<Refused>() {
        Some(r) => format!("{} (HTTP {})", r.message(), r.status),
        None => format!("{e:#}"),
    }
}

/// A refused batch's reason for the summary, and its problems as `line N: path: message`
/// (the server's `index` within the batch mapped to the file line).
fn explain(e: &anyhow::Error, lines: &[usize]) -> (String, Vec<String>) {
    if let Some(u) = e.downcast_ref::<Unreachable>() {
        let mut why = format!("cannot reach the server at {} ({})", u.base, u.why);
        if u.maybe_delivered {
            why.push_str(
                "; the connection failed after the request was sent, so the server may have \
                 stored them: a re-run tells, and stores nothing twice",
            );
        }
        return (why, Vec::new());
    }
    let Some(r) = e.downcast_ref::<Refused>() else {
        return (format!("{e:#}"), Vec::new());
    };
    let mut out = Vec::new();
    let details = r.details();
    for d in details.iter().take(MAX_DETAILS) {
        let line = d["index"]
            .as_u64()
            .and_then(|i| lines.get(i as usize))
            .copied();
        out.push(match line {
            Some(l) => format!("line {l}: {}", detail_text(d)),
            None => detail_text(d),
        });
    }
    if details.len() > MAX_DETAILS {
        out.push(format!("… and {} more", details.len() - MAX_DETAILS));
    }
    let reason = match out.first() {
        Some(first) if details.len() > 1 => {
            format!(
                "{first}; {} more problem(s) listed above",
                details.len() - 1
            )
        }
        Some(first) => first.clone(),
        None => headline(e),
    };
    (reason, out)
}

/// `line 7` or `lines 1-3000, 4001-5000`.
fn range_text(ranges: &[(usize, usize)]) -> String {
    let one = |&(a, b): &(usize, usize)| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}-{b}")
        }
    };
    let single = ranges.len() == 1 && ranges[0].0 == ranges[0].1;
    let list: Vec<String> = ranges.iter().map(one).collect();
    format!(
        "{} {}",
        if single { "line" } else { "lines" },
        list.join(", ")
    )
}

/// `stored: lines 1-3000, 4001-5000; not stored: lines 3001-4000 (why), 5001-6000 (not sent)`,
/// from each batch's (first, last) file line and outcome. Neighbouring batches with the same
/// outcome (stored, or not sent) are joined.
fn summary(spans: &[(usize, usize)], outcomes: &[Outcome]) -> String {
    let mut groups: Vec<((usize, usize), &Outcome)> = Vec::new();
    for (&(a, b), o) in spans.iter().zip(outcomes) {
        match groups.last_mut() {
            Some((r, prev)) if *prev == o && !matches!(o, Outcome::Failed(_)) => r.1 = b,
            _ => groups.push(((a, b), o)),
        }
    }
    let stored: Vec<(usize, usize)> = groups
        .iter()
        .filter(|(_, o)| **o == Outcome::Stored)
        .map(|(r, _)| *r)
        .collect();
    let not: Vec<&((usize, usize), &Outcome)> = groups
        .iter()
        .filter(|(_, o)| **o != Outcome::Stored)
        .collect();
    let stored_text = if stored.is_empty() {
        "none".to_string()
    } else {
        range_text(&stored)
    };
    let not_text = if not.is_empty() {
        "none".to_string()
    } else {
        let ranges: Vec<(usize, usize)> = not.iter().map(|(r, _)| *r).collect();
        let prefix = range_text(&ranges);
        let prefix = prefix.split(' ').next().unwrap_or("lines");
        let parts: Vec<String> = not
            .iter()
            .map(|(r, o)| {
                let why = match o {
                    Outcome::Failed(w) => w.as_str(),
                    _ => "not sent",
                };
                let r = range_text(&[*r]);
                let r = r.split_once(' ').map(|(_, x)| x).unwrap_or(&r);
                format!("{r} ({why})")
            })
            .collect();
        format!("{prefix} {}", parts.join(", "))
    };
    format!("stored: {stored_text}; not stored: {not_text}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> serde_json::Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn shapes() {
        assert_eq!(
            shape(r#"{"a":1,"event_id":"x"}"#),
            Ok(Shape::Object {
                members: 2,
                event_id: Some(true)
            })
        );
        assert_eq!(
            shape(r#" { "event_id" : null } "#),
            Ok(Shape::Object {
                members: 1,
                event_id: Some(false)
            })
        );
        assert_eq!(
            shape(r#"{"event\u005fid":"x"}"#),
            Ok(Shape::Object {
                members: 1,
                event_id: Some(true)
            })
        );
        assert_eq!(
            shape(r#"{"p":{"event_id":"x"}}"#),
            Ok(Shape::Object {
                members: 1,
                event_id: None
            })
        );
        assert_eq!(shape("[1,{}]"), Ok(Shape::NotObject));
        assert_eq!(shape("3"), Ok(Shape::NotObject));
        let e = shape(r#"{"a":1,}"#).unwrap_err();
        assert!(
            e.starts_with("not valid JSON: ") && e.ends_with("column 8"),
            "{e}"
        );
        assert!(shape(r#"{"a":1} x"#).is_err());
        assert!(shape(r#"{"a":1}{"b":2}"#).is_err());
    }

    #[test]
    fn ids_are_deterministic_per_line_and_occurrence() {
        let a = line_id(b"{\"x\":1}", 0);
        assert_eq!(a, line_id(b"{\"x\":1}", 0));
        assert_ne!(a, line_id(b"{\"x\":1}", 1));
        assert_ne!(a, line_id(b"{\"x\": 1}", 0));
        assert_eq!(a.get_version_num(), 8);
        assert_eq!(a.get_variant(), uuid::Variant::RFC4122);
        // The server's parser takes it.
        let s = a.hyphenated().to_string();
        assert_eq!(trailkeep_core::validate::parse_uuid(&s), Some(a));
    }

    #[test]
    fn the_id_is_inserted_and_everything_else_kept() {
        let id = line_id(b"x", 0);
        let out = with_id(r#"{"b":[1.50,2],"a":{}}"#, 2, false, id).unwrap();
        assert_eq!(
            out,
            format!(r#"{{"event_id":"{id}","b":[1.50,2],"a":{{}}}}"#)
        );
        let out = with_id(" {}", 0, false, id).unwrap();
        assert_eq!(out, format!(r#"{{"event_id":"{id}"}}"#));
        let out = with_id(r#"{"a":1, "event_id": null ,"c":"\u00e9"}"#, 3, true, id).unwrap();
        assert_eq!(
            parse(&out),
            parse(&format!(r#"{{"event_id":"{id}","a":1,"c":"é"}}"#))
        );
    }

    #[test]
    fn batches_holding_an_end_or_an_approval_wait_for_earlier_ones() {
        let input = concat!(
            r#"{"event_type":"impersonation.start","actor":"a","tenant_id":"t","payload":{}}"#,
            "\n",
            r#"{"event_type":"note.add","actor":"a","tenant_id":"t","payload":{}}"#,
            "\n",
            r#"{"event_type":"impersonation.end","actor":"a","tenant_id":"t","payload":{}}"#,
            "\n",
            r#"{"event_type":"tenant.disable","actor":"a","tenant_id":"t","payload":{},"approval_id":"apr_1"}"#,
            "\n",
        );
        let p = prepare(input.as_bytes(), 1).unwrap();
        let flags: Vec<bool> = p.batches.iter().map(|b| b.after_earlier).collect();
        assert_eq!(flags, [false, false, true, true]);
        let p = prepare(input.as_bytes(), 2).unwrap();
        let flags: Vec<bool> = p.batches.iter().map(|b| b.after_earlier).collect();
        assert_eq!(flags, [false, true]);
    }

    #[test]
    fn prepare_numbers_lines_and_keeps_given_ids() {
        let input = b"{\"a\":1}\n\n  \r\n{\"a\":1}\r\n{\"event_id\":\"given\",\"a\":1}\n{\"a\":1";
        let p = prepare(input, 2).unwrap();
        assert_eq!(p.not_json.len(), 1);
        assert_eq!(p.not_json[0].0, 6);
        assert_eq!(p.total, 3);
        assert_eq!(p.batches.len(), 2);
        assert_eq!(p.batches[0].lines, vec![1, 4]);
        assert_eq!(p.batches[1].lines, vec![5]);
        let body = String::from_utf8(p.batches[0].body.clone()).unwrap();
        let ids: Vec<String> = body
            .lines()
            .map(|l| parse(l)["event_id"].as_str().unwrap().to_string())
            .collect();
        // Identical lines (a CRLF ending is not part of the line) are distinct events.
        assert_eq!(ids[0], line_id(b"{\"a\":1}", 0).to_string());
        assert_eq!(ids[1], line_id(b"{\"a\":1}", 1).to_string());
        assert_eq!(
            p.batches[1].body,
            b"{\"event_id\":\"given\",\"a\":1}\n".to_vec()
        );
        // The same input gives the same bodies.
        let q = prepare(input, 2).unwrap();
        assert_eq!(q.batches[0].body, p.batches[0].body);
        // A final newline adds no line; a non-UTF-8 line is reported.
        let p = prepare(b"{}\n\xff\n", 10).unwrap();
        assert_eq!(p.not_json, vec![(2, "not valid UTF-8".to_string())]);
    }

    #[test]
    fn rates_are_whole_numbers() {
        assert_eq!(thousands(175_343.684_8), "175,344");
        assert_eq!(thousands(999.4), "999");
        assert_eq!(thousands(1000.0), "1,000");
        assert_eq!(thousands(1_234_567.0), "1,234,567");
        assert_eq!(thousands(f64::NAN), "0");
    }

    #[test]
    fn summaries_name_line_ranges() {
        let spans = [
            (1, 1000),
            (1001, 2000),
            (2002, 3000),
            (3001, 4000),
            (4001, 5000),
        ];
        let o = [
            Outcome::Stored,
            Outcome::Stored,
            Outcome::Failed("line 2042: payload.reason: expected a non-empty string".into()),
            Outcome::Stored,
            Outcome::NotSent,
        ];
        assert_eq!(
            summary(&spans, &o),
            "stored: lines 1-2000, 3001-4000; not stored: lines 2002-3000 (line 2042: \
             payload.reason: expected a non-empty string), 4001-5000 (not sent)"
        );
        let o = [Outcome::NotSent, Outcome::NotSent];
        assert_eq!(
            summary(&[(1, 1), (3, 3)], &o),
            "stored: none; not stored: lines 1-3 (not sent)"
        );
        assert_eq!(
            summary(&[(7, 7)], &[Outcome::Failed("x".into())]),
            "stored: none; not stored: line 7 (x)"
        );
    }
}
