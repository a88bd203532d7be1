//! Offline checks: a tenant's log in a directory, and one event with its tlog-proof.

use super::frontier::Frontier;
use super::leaf::{parse_event, LeafProblem};
use super::{event_label, load_verifier, load_verifier_file, split_origin, Report};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use trailkeep_tlog::hash::encode_hash;
use trailkeep_tlog::{open_checkpoint, verify_inclusion, Hash, TlogProof, Verifier, EMPTY_ROOT};

/// Lines handed to the worker threads at a time.
const CHUNK: usize = 16_384;

/// What one line of events.ndjson holds, decided in parallel.
#[derive(Debug)]
enum Line {
    Blank,
    Unreadable(String),
    Event {
        seq: u64,
        /// The recomputed leaf, or (event_id, why) if it cannot be trusted.
        leaf: Result<Hash, (String, String)>,
    },
}

fn check_line(bytes: &[u8], tenant: &str) -> Line {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Line::Unreadable("not UTF-8".into());
    };
    if text.trim().is_empty() {
        return Line::Blank;
    }
    let ev = match parse_event(text) {
        Ok(ev) => ev,
        Err(e) => return Line::Unreadable(e.to_string()),
    };
    let leaf = if ev.tenant_id != tenant {
        Err((
            ev.event_id.to_string(),
            format!(
                "tenant_id is {:?} but the checkpoint is for tenant {tenant:?}'s log (events of \
                 another tenant mixed in)",
                ev.tenant_id
            ),
        ))
    } else {
        ev.checked_leaf()
            .map_err(|e| (ev.event_id.to_string(), e.to_string()))
    };
    Line::Event { seq: ev.seq, leaf }
}

fn check_lines(lines: &[Vec<u8>], tenant: &str) -> Vec<Line> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, 8);
    if workers == 1 || lines.len() < 256 {
        return lines.iter().map(|l| check_line(l, tenant)).collect();
    }
    let per = lines.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = lines
            .chunks(per)
            .map(|part| s.spawn(move || part.iter().map(|l| check_line(l, tenant)).collect()))
            .collect();
        let mut out: Vec<Line> = Vec::with_capacity(lines.len());
        for h in handles {
            match h.join() {
                Ok(part) => out.extend::<Vec<Line>>(part),
                Err(p) => std::panic::resume_unwind(p),
            }
        }
        out
    })
}

fn event_id_of(bytes: &[u8]) -> String {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|t| parse_event(t).ok())
        .map(|e| e.event_id.to_string())
        .unwrap_or_else(|| "?".into())
}

/// `verify DIR`: events.ndjson against checkpoint.txt.
pub fn verify_dir(dir: &Path, public_key: Option<&str>, report: &mut Report) -> Result<()> {
    let verifier = match public_key {
        Some(k) => load_verifier(k)?,
        None => {
            let p = dir.join("public-key.txt");
            if !p.is_file() {
                bail!(
                    "no public key: pass --public-key or put public-key.txt in {}",
                    dir.display()
                );
            }
            eprintln!(
                "note: using the key in {}; it is only as trustworthy as the directory — compare \
                 it with the log key you trust, or pass --public-key",
                p.display()
            );
            load_verifier_file(&p)?
        }
    };
    let cp_path = dir.join("checkpoint.txt");
    let note = std::fs::read_to_string(&cp_path)
        .with_context(|| format!("cannot read {}", cp_path.display()))?;
    let events_path = dir.join("events.ndjson");
    let file = File::open(&events_path)
        .with_context(|| format!("cannot read {}", events_path.display()))?;

    let cp = match open_checkpoint(&note, &verifier) {
        Ok(cp) => cp,
        Err(e) => {
            report.fail(format!("{}: {e}", cp_path.display()));
            return Ok(());
        }
    };
    let Some((_, tenant)) = split_origin(&cp.origin) else {
        report.fail(format!(
            "{}: origin {:?} is not trailkeep/<log>/<tenant>",
            cp_path.display(),
            cp.origin
        ));
        return Ok(());
    };
    let tenant = tenant.to_string();
    let fail = |report: &mut Report, what: String| report.fail(format!("tenant {tenant}: {what}"));

    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut line_no = 0usize; // lines consumed before this chunk
    let mut tree = Frontier::new();
    let mut root_at_cp = (cp.size == 0).then_some(EMPTY_ROOT);
    loop {
        let mut n = 0;
        while n < CHUNK {
            if n == lines.len() {
                lines.push(Vec::with_capacity(512));
            }
            let buf = &mut lines[n];
            buf.clear();
            let read = reader
                .read_until(b'\n', buf)
                .with_context(|| format!("reading {}", events_path.display()))?;
            if read == 0 {
                break;
            }
            n += 1;
        }
        if n == 0 {
            break;
        }
        let results = check_lines(&lines[..n], &tenant);
        for (i, r) in results.into_iter().enumerate() {
            let at = line_no + i + 1;
            let expected = tree.size();
            match r {
                Line::Blank => continue,
                Line::Unreadable(why) => {
                    fail(
                        report,
                        format!(
                            "events.ndjson line {at} (where event seq {expected} was expected): \
                             {why}"
                        ),
                    );
                    return Ok(());
                }
                Line::Event { seq, leaf } => {
                    if seq != expected {
                        let id = event_id_of(&lines[i]);
                        let why = if seq > expected {
                            format!(
                                "found where seq {expected} was expected: event seq {expected}{} \
                                 missing (deleted?) or the lines are out of order",
                                if seq > expected + 1 {
                                    format!("..{} are", seq - 1)
                                } else {
                                    " is".into()
                                }
                            )
                        } else {
                            format!(
                                "found where seq {expected} was expected: a repeated event or \
                                 lines out of order"
                            )
                        };
                        fail(
                            report,
                            format!("{} at line {at}: {why}", event_label(seq, &id)),
                        );
                        return Ok(());
                    }
                    match leaf {
                        Ok(leaf) => {
                            tree.push(leaf);
                            if tree.size() == cp.size {
                                root_at_cp = Some(tree.root());
                            }
                        }
                        Err((id, why)) => {
                            fail(
                                report,
                                format!("{} at line {at}: {why}", event_label(seq, &id)),
                            );
                            return Ok(());
                        }
                    }
                }
            }
        }
        line_no += n;
    }

    let count = tree.size();
    let Some(root) = root_at_cp else {
        // Fewer events than the checkpoint covers.
        let first = count;
        let last = cp.size - 1;
        fail(
            report,
            format!(
                "event seq {first}{} missing: events.ndjson holds {count} events but the \
                 checkpoint covers {} (the log was truncated or events removed)",
                if last > first {
                    format!("..{last} are")
                } else {
                    " is".into()
                },
                cp.size
            ),
        );
        return Ok(());
    };
    if root != cp.root {
        fail(
            report,
            format!(
                "rebuilt root {} of events seq 0..{} does not match checkpoint {} root {}: events \
                 were altered together with their leaf_hash, replaced or renumbered (no single \
                 event can be named without the server's leaves)",
                encode_hash(&root),
                cp.size.saturating_sub(1),
                cp.size,
                encode_hash(&cp.root)
            ),
        );
        return Ok(());
    }
    if count > cp.size {
        fail(
            report,
            format!(
                "events seq 0..{} match checkpoint {} (root {}), but event seq {}{} not covered \
                 by the checkpoint ({} events): they cannot be verified with it",
                cp.size.saturating_sub(1),
                cp.size,
                encode_hash(&root),
                cp.size,
                if count - 1 > cp.size {
                    format!("..{} are", count - 1)
                } else {
                    " is".into()
                },
                count - cp.size
            ),
        );
        return Ok(());
    }
    report.ok(format!(
        "tenant {tenant}: {count} events, root {} matches checkpoint {}",
        encode_hash(&root),
        cp.size
    ));
    Ok(())
}

/// `verify PROOF_FILE --event EVENT.json --public-key KEY`.
pub fn verify_tlog_proof(
    proof_path: &Path,
    event_path: &Path,
    verifier: &Verifier,
    report: &mut Report,
) -> Result<()> {
    let proof_text = std::fs::read_to_string(proof_path)
        .with_context(|| format!("cannot read {}", proof_path.display()))?;
    let event_text = std::fs::read_to_string(event_path)
        .with_context(|| format!("cannot read {}", event_path.display()))?;
    let ev = match parse_event(&event_text) {
        Ok(ev) => ev,
        Err(e) => {
            report.fail(format!("{}: {e}", event_path.display()));
            return Ok(());
        }
    };
    let tenant = ev.tenant_id.to_string();
    let label = event_label(ev.seq, &ev.event_id);
    let fail = |report: &mut Report, what: String| {
        report.fail(format!("tenant {tenant}: {label}: {what}"))
    };
    let leaf = match ev.checked_leaf() {
        Ok(l) => l,
        Err(e @ LeafProblem::Mismatch { .. }) => {
            fail(report, e.to_string());
            return Ok(());
        }
        Err(e) => {
            fail(report, format!("{}: {e}", event_path.display()));
            return Ok(());
        }
    };
    let proof = match TlogProof::parse(&proof_text) {
        Ok(p) => p,
        Err(e) => {
            fail(report, format!("{}: {e}", proof_path.display()));
            return Ok(());
        }
    };
    if proof.index != ev.seq {
        fail(
            report,
            format!(
                "{} proves entry {} of the log, not the event's seq {}",
                proof_path.display(),
                proof.index,
                ev.seq
            ),
        );
        return Ok(());
    }
    let cp = match open_checkpoint(&proof.checkpoint_note, verifier) {
        Ok(cp) => cp,
        Err(e) => {
            fail(
                report,
                format!("the checkpoint in {}: {e}", proof_path.display()),
            );
            return Ok(());
        }
    };
    match split_origin(&cp.origin) {
        Some((_, t)) if t == tenant => {}
        _ => {
            fail(
                report,
                format!(
                    "the checkpoint in {} is for log {:?}, not trailkeep/<log>/{tenant}",
                    proof_path.display(),
                    cp.origin
                ),
            );
            return Ok(());
        }
    }
    if let Err(e) = verify_inclusion(proof.index, cp.size, &leaf, &proof.proof, &cp.root) {
        fail(report, format!("{}: {e}", proof_path.display()));
        return Ok(());
    }
    report.ok(format!(
        "tenant {tenant}: {label} is included in checkpoint {} (root {}) of {}, signed by {}",
        cp.size,
        encode_hash(&cp.root),
        cp.origin,
        verifier.name()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::testlog::{other_signer, signer, TestLog};
    use trailkeep_tlog::{Checkpoint, Signer};

    fn run_dir(lines: &[String], checkpoint: &str) -> Report {
        let dir = tempfile::tempdir().unwrap();
        TestLog::write_dir(dir.path(), lines, checkpoint);
        let mut report = Report::default();
        verify_dir(dir.path(), None, &mut report).unwrap();
        report
    }

    fn only_line(r: &Report) -> &str {
        assert_eq!(r.lines.len(), 1, "{:?}", r.lines);
        &r.lines[0]
    }

    #[test]
    fn an_intact_log_verifies() {
        for n in [0u64, 1, 2, 5, 17, 300] {
            let log = TestLog::new(n);
            let r = run_dir(&log.lines, &log.checkpoint(n, &signer()));
            assert!(!r.failed(), "{n}: {:?}", r.lines);
            assert!(
                only_line(&r).starts_with(&format!("ok: tenant t_1: {n} events, root ")),
                "{:?}",
                r.lines
            );
        }
    }

    #[test]
    fn blank_lines_and_crlf_are_tolerated() {
        let log = TestLog::new(4);
        let mut lines: Vec<String> = log.lines.iter().map(|l| format!("{l}\r")).collect();
        lines.insert(2, String::new());
        let r = run_dir(&lines, &log.checkpoint(4, &signer()));
        assert!(!r.failed(), "{:?}", r.lines);
    }

    fn tampered(n: u64, edit: impl FnOnce(&mut Vec<String>)) -> String {
        let log = TestLog::new(n);
        let mut lines = log.lines.clone();
        edit(&mut lines);
        let r = run_dir(&lines, &log.checkpoint(n, &signer()));
        assert!(r.failed());
        only_line(&r).to_string()
    }

    fn set(lines: &mut [String], i: usize, field: &str, value: serde_json::Value) {
        let mut v: serde_json::Value = serde_json::from_str(&lines[i]).unwrap();
        v[field] = value;
        lines[i] = serde_json::to_string(&v).unwrap();
    }

    #[test]
    fn edited_fields_name_the_event() {
        let id = |seq: u64| {
            crate::verify::testlog::event("t_1", seq)
                .event_id
                .to_string()
        };
        let line = tampered(20, |l| {
            set(
                l,
                7,
                "payload",
                serde_json::json!({"method": "sso", "n": 99}),
            )
        });
        assert!(
            line.contains(&format!("event seq 7 (id {})", id(7)))
                && line.contains("leaf hash mismatch"),
            "{line}"
        );
        let line = tampered(20, |l| {
            set(l, 3, "actor", "user:mallory@example.com".into())
        });
        assert!(
            line.contains("event seq 3 ") && line.contains("leaf hash mismatch"),
            "{line}"
        );
        let line = tampered(20, |l| {
            set(l, 19, "timestamp", "2026-01-02T03:04:05.679Z".into())
        });
        assert!(
            line.contains("event seq 19 ") && line.contains("leaf hash mismatch"),
            "{line}"
        );
        let line = tampered(20, |l| set(l, 0, "tenant_id", "t_2".into()));
        assert!(
            line.contains("event seq 0 ") && line.contains("another tenant"),
            "{line}"
        );
        let line = tampered(20, |l| l[5] = "{not json".into());
        assert!(line.contains("line 6") && line.contains("seq 5"), "{line}");
    }

    #[test]
    fn deleted_swapped_and_truncated_logs_fail() {
        let line = tampered(20, |l| {
            l.remove(5);
        });
        assert!(
            line.contains("event seq 6 ") && line.contains("seq 5 is missing"),
            "{line}"
        );
        let line = tampered(20, |l| l.swap(8, 9));
        assert!(
            line.contains("event seq 9 ") && line.contains("expected"),
            "{line}"
        );
        let line = tampered(20, |l| l.truncate(17));
        assert!(line.contains("event seq 17..19 are missing"), "{line}");
        let line = tampered(20, |l| {
            let dup = l[4].clone();
            l.insert(5, dup);
        });
        assert!(
            line.contains("event seq 4 ") && line.contains("repeated"),
            "{line}"
        );
    }

    #[test]
    fn consistently_rewritten_leaf_hash_fails_on_the_root() {
        // Payload edited and leaf_hash recomputed to match (the salt is public): only the
        // signed root catches it.
        let line = tampered(20, |l| {
            let mut e = crate::verify::testlog::event("t_1", 4);
            e.payload = Some(br#"{"method":"password","n":4}"#.to_vec());
            let ev_json = trailkeep_core::render::event_json(&e);
            let ev = parse_event(&ev_json).unwrap();
            e.leaf_hash = ev.recompute_leaf().unwrap();
            l[4] = trailkeep_core::render::event_json(&e);
        });
        assert!(line.contains("does not match checkpoint 20"), "{line}");
    }

    #[test]
    fn checkpoint_problems() {
        let log = TestLog::new(10);
        // Smaller checkpoint: the prefix verifies, the rest is reported as not covered.
        let r = run_dir(&log.lines, &log.checkpoint(8, &signer()));
        assert!(
            r.failed() && only_line(&r).contains("event seq 8..9 are not covered"),
            "{:?}",
            r.lines
        );
        // Signed by another key.
        let r = run_dir(&log.lines, &log.checkpoint(10, &other_signer()));
        assert!(
            r.failed() && only_line(&r).contains("signature"),
            "{:?}",
            r.lines
        );
        // Edited size or root.
        let good = log.checkpoint(10, &signer());
        let edited = good.replacen("\n10\n", "\n9\n", 1);
        assert_ne!(edited, good);
        let r = run_dir(&log.lines, &edited);
        assert!(
            r.failed() && only_line(&r).contains("does not verify"),
            "{:?}",
            r.lines
        );
        // Another tenant's origin, properly signed.
        let cp = Checkpoint::new(
            "trailkeep/default/t_2",
            10,
            trailkeep_tlog::tree_hash(10, &log.tree).unwrap(),
        );
        let note = trailkeep_tlog::sign_checkpoint(&cp, &signer()).unwrap();
        let r = run_dir(&log.lines, &note);
        assert!(
            r.failed() && only_line(&r).contains("another tenant"),
            "{:?}",
            r.lines
        );
    }

    #[test]
    fn tlog_proofs() {
        let log = TestLog::new(13);
        let note = log.checkpoint(13, &signer());
        let dir = tempfile::tempdir().unwrap();
        let check = |seq: u64, proof: &TlogProof, event: &str, key: &Signer| {
            let p = dir.path().join("proof.txt");
            let e = dir.path().join("event.json");
            std::fs::write(&p, proof.to_text()).unwrap();
            std::fs::write(&e, event).unwrap();
            let mut r = Report::default();
            verify_tlog_proof(&p, &e, &key.verifier(), &mut r).unwrap();
            let _ = seq;
            r
        };
        let proof_for = |seq: u64| TlogProof {
            extra: None,
            index: seq,
            proof: trailkeep_tlog::prove_inclusion(13, seq, &log.tree).unwrap(),
            checkpoint_note: note.clone(),
        };
        for seq in 0..13 {
            let r = check(seq, &proof_for(seq), &log.lines[seq as usize], &signer());
            assert!(!r.failed(), "{seq}: {:?}", r.lines);
        }
        // Wrong key.
        let r = check(3, &proof_for(3), &log.lines[3], &other_signer());
        assert!(r.failed(), "{:?}", r.lines);
        // A proof hash altered.
        let mut p = proof_for(3);
        p.proof[1][5] ^= 0x10;
        let r = check(3, &p, &log.lines[3], &signer());
        assert!(
            r.failed() && only_line(&r).contains("event seq 3 "),
            "{:?}",
            r.lines
        );
        // Another event's proof.
        let r = check(3, &proof_for(4), &log.lines[3], &signer());
        assert!(r.failed(), "{:?}", r.lines);
        // An altered event.
        let altered = log.lines[3].replace("\"sso\"", "\"password\"");
        let r = check(3, &proof_for(3), &altered, &signer());
        assert!(
            r.failed() && only_line(&r).contains("leaf hash mismatch"),
            "{:?}",
            r.lines
        );
    }
}
