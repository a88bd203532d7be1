//! `trailkeep-bench prepare`: the CPU cost of the request side of `POST /v1/events`, with no
//! server, socket or store.
//!
//! The file's events are cut into bodies of `--batch` events (NDJSON by default, or JSON arrays
//! as `ingest-batch` sends them), and each body goes through
//! `trailkeep_server::ingest::prepare_body` — exactly what the handler runs between reading the
//! body and calling the store: framing, validation and canonical JSON of every event, a random
//! salt and the leaf hash — on one thread. The response side is measured apart: the
//! `AppendOutcome` a store would answer for those events (one receipt per event), written by
//! `trailkeep_server::ingest::outcome_json`, the function the handler answers with.
//!
//! Bodies are built before the clock starts; each body's `Vec<PreparedEvent>` is dropped inside
//! the timed loop, as the handler's is (it moves into the store).

use anyhow::{bail, Result};
use std::time::{Duration, Instant};
use trailkeep_core::validate::BodyFormat;
use trailkeep_core::Timestamp;
use trailkeep_server::ingest::{outcome_json, prepare_body};
use trailkeep_store::{AppendOutcome, Receipt};

/// Options of the `prepare` subcommand.
pub struct Args {
    pub file: String,
    /// First N events of the file (0 = all).
    pub events: usize,
    pub batch: usize,
    /// Bodies as JSON arrays instead of NDJSON.
    pub json: bool,
    /// Timed passes over all bodies; the best pass is reported.
    pub rounds: usize,
}

pub fn run(a: Args) -> Result<()> {
    if a.batch == 0 || a.batch > trailkeep_core::MAX_BATCH_EVENTS {
        bail!("--batch must be 1..=10000 (docs/api.md)");
    }
    let lines = crate::read_lines(&a.file, a.events)?;
    let total = lines.len();
    let format = if a.json {
        BodyFormat::Json
    } else {
        BodyFormat::Ndjson
    };
    let bodies: Vec<Vec<u8>> = lines
        .chunks(a.batch)
        .map(|chunk| {
            let mut body = Vec::with_capacity(chunk.iter().map(|l| l.len() + 1).sum::<usize>() + 2);
            if a.json {
                body.push(b'[');
            }
            for (i, l) in chunk.iter().enumerate() {
                if i > 0 {
                    body.push(if a.json { b',' } else { b'\n' });
                }
                body.extend_from_slice(l);
            }
            body.push(if a.json { b']' } else { b'\n' });
            body
        })
        .collect();
    let bytes: usize = bodies.iter().map(Vec::len).sum();
    drop(lines);
    println!(
        "prepare: {total} events ({:.0} bytes each) from {} in {} {} bodies of up to {}, {} round(s), one thread",
        bytes as f64 / total as f64,
        a.file,
        bodies.len(),
        if a.json { "JSON-array" } else { "NDJSON" },
        a.batch,
        a.rounds
    );

    // Request side.
    let mut best = Duration::MAX;
    let mut receipts: Vec<Vec<Receipt>> = Vec::new();
    for round in 0..a.rounds.max(1) {
        let keep = round == 0;
        let t = Instant::now();
        for body in &bodies {
            let received_at = Timestamp::now_micros();
            let prepared = match prepare_body(body, format, received_at, None) {
                Ok(p) => p,
                Err(e) => bail!("a body was refused: {e:?}"),
            };
            if keep {
                receipts.push(
                    prepared
                        .iter()
                        .enumerate()
                        .map(|(i, p)| Receipt {
                            event_id: p.event.event_id,
                            tenant_id: p.event.tenant_id.clone(),
                            seq: 1_000_000 + i as u64,
                            leaf_hash: p.leaf_hash,
                        })
                        .collect(),
                );
            }
            drop(prepared);
        }
        let el = t.elapsed();
        if keep {
            // Round 0 also collected receipts; time it but prefer a clean round.
            if a.rounds <= 1 {
                best = el;
            }
        } else {
            best = best.min(el);
        }
    }
    report("prepare", total, best, bytes);

    // Response side.
    let outcomes: Vec<AppendOutcome> = receipts
        .into_iter()
        .map(|r| AppendOutcome {
            accepted: r.len(),
            duplicates: 0,
            receipts: r,
        })
        .collect();
    let mut best = Duration::MAX;
    let mut out_bytes = 0usize;
    for _ in 0..a.rounds.max(1) {
        let t = Instant::now();
        let mut n = 0usize;
        for o in &outcomes {
            let body = outcome_json(o);
            n += body.len();
            drop(body);
        }
        best = best.min(t.elapsed());
        out_bytes = n;
    }
    report("receipts", total, best, out_bytes);
    Ok(())
}

fn report(name: &str, events: usize, el: Duration, bytes: usize) {
    let secs = el.as_secs_f64();
    let per_sec = events as f64 / secs;
    let us = secs * 1e6 / events as f64;
    println!(
        "  {name:<9} {events} events in {el:.2?}: {per_sec:.0} events/s, {us:.3} µs/event, {:.0} MB/s",
        bytes as f64 / secs / 1e6
    );
    println!("RESULT {name} events={events} secs={secs:.4} events_per_sec={per_sec:.0} us_per_event={us:.3}");
}
