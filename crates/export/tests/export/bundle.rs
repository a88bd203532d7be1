//! Evidence bundles: built from synthetic logs with a test key, verified, then tampered with
//! in every way the format must catch. Each tampering is tried as a forger without the key
//! would (the manifest left alone, or recomputed without a valid signature) and, where the
//! signature would hide the check behind it, as one holding the key (manifest re-signed), so
//! that every check is reached.

use super::bundle_log::*;
use proptest::prelude::*;
use trailkeep_export::bundle::{verify_bundle, BundleError, BundleReport, Culprit, Failure};
use trailkeep_tlog::Verifier;

fn key() -> Verifier {
    signer().verifier()
}

fn verify(bytes: &[u8]) -> Result<BundleReport, BundleError> {
    verify_bundle(bytes, Some(&key()))
}

fn failure(bytes: &[u8]) -> Failure {
    match verify(bytes) {
        Err(BundleError::Failed(f)) => f,
        other => panic!("expected a failed check, got {other:?}"),
    }
}

fn assert_member(bytes: &[u8], name: &str, reason_has: &str) {
    let f = failure(bytes);
    assert_eq!(f.culprit, Culprit::Member(name.into()), "{f}");
    assert!(f.reason.contains(reason_has), "{f}");
}

fn assert_event(bytes: &[u8], seq: u64, reason_has: &str) {
    let f = failure(bytes);
    let want_id = event(TENANT, seq).event_id.to_string();
    assert_eq!(
        f.culprit,
        Culprit::Event {
            seq,
            event_id: want_id
        },
        "{f}"
    );
    assert!(f.reason.contains(reason_has), "{f}");
}

fn assert_unreadable(bytes: &[u8]) -> String {
    match verify(bytes) {
        Err(BundleError::Unreadable(m)) => m,
        other => panic!("expected an unreadable bundle, got {other:?}"),
    }
}

/// A 40-event log's bundle of minutes [5, 30), with a first checkpoint at 32 and the latest
/// at 40: members of every kind. It holds the 20 events of seqs 6..=28 but 11, 17 and 23
/// (which come a day late), and the leaves of all of 6..=28.
fn standard() -> (Log, Vec<(String, Vec<u8>)>) {
    let log = Log::new(40);
    let spec = Spec {
        since: Some(5),
        until: Some(30),
        first_size: Some(32),
        ..Spec::default()
    };
    let bytes = build(&log, &spec, &signer());
    (log, members(&bytes))
}

#[test]
fn bundle_good_bundles_verify() {
    let log = Log::new(40);
    for spec in [
        Spec::default(),
        Spec {
            gzip: true,
            ..Spec::default()
        },
        Spec {
            since: Some(5),
            until: Some(30),
            first_size: Some(32),
            ..Spec::default()
        },
        Spec {
            since: Some(39),
            gzip: true,
            ..Spec::default()
        },
        Spec {
            until: Some(1),
            tree_size: Some(20),
            first_size: Some(1),
            ..Spec::default()
        },
        Spec {
            since: Some(12),
            until: Some(13),
            tree_size: Some(13),
            ..Spec::default()
        },
    ] {
        let bytes = build(&log, &spec, &signer());
        let r = verify(&bytes).unwrap();
        assert_eq!(r.gzip, spec.gzip);
        assert!(!r.key_from_bundle);
        let m = &r.manifest;
        let n = spec.tree_size.unwrap_or(40);
        let seqs = expected_seqs(&log, &spec);
        assert_eq!(m.count, seqs.len() as u64);
        assert_eq!(
            (m.first_seq, m.last_seq),
            (seqs.first().copied(), seqs.last().copied())
        );
        assert_eq!(m.tree_size, n);
        assert_eq!(r.first_checkpoint_size, spec.first_size.filter(|&f| f != n));
        // The bundle's own key gives the same answer, flagged as such.
        let own = verify_bundle(&bytes[..], None).unwrap();
        assert!(own.key_from_bundle);
        // The same bundle gives the same bytes.
        assert_eq!(build(&log, &spec, &signer()), bytes);
    }
}

#[test]
fn bundle_empty_ranges_verify() {
    let log = Log::new(10);
    for (since, until, gzip) in [(Some(5000), None, false), (Some(3), Some(3), true)] {
        let spec = Spec {
            since,
            until,
            gzip,
            ..Spec::default()
        };
        let bytes = build(&log, &spec, &signer());
        let r = verify(&bytes).unwrap();
        assert_eq!(r.manifest.count, 0);
        assert_eq!((r.manifest.first_seq, r.manifest.last_seq), (None, None));
        let m = members(&if gzip { gunzip(&bytes) } else { bytes.clone() });
        let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "manifest.json",
                "manifest.sig",
                "public-key.txt",
                "checkpoint.txt",
                "events.ndjson"
            ]
        );
        // The checkpoint is still checked.
        let mut m = m;
        *get(&mut m, "checkpoint.txt") = log.checkpoint(10, &other_signer()).into_bytes();
        recompute(&mut m, Some(&signer()));
        assert_member(&pack(&m), "checkpoint.txt", "signature");
    }
    // A log with no events at all.
    let log = Log::new(0);
    let bytes = build(&log, &Spec::default(), &signer());
    assert_eq!(verify(&bytes).unwrap().manifest.tree_size, 0);
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[test]
fn bundle_member_order_and_tar_headers() {
    let (_, m) = standard();
    let names: Vec<&str> = m.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "manifest.json",
            "manifest.sig",
            "public-key.txt",
            "checkpoint.txt",
            "checkpoint-first.txt",
            "consistency.json",
            "leaves.bin",
            "range-proof.json",
            "events.ndjson"
        ]
    );
    let bytes = build(&Log::new(40), &Spec::default(), &signer());
    let mut archive = tar::Archive::new(&bytes[..]);
    for e in archive.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!(h.mode().unwrap(), 0o644);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        // 2026-12-04T10:00:00Z
        assert_eq!(h.mtime().unwrap(), 1_796_378_400);
    }
    // Each event line is exactly the API's rendering, in log order.
    let events = String::from_utf8(get(&mut members(&bytes), "events.ndjson").clone()).unwrap();
    assert_eq!(events.lines().count(), 40);
    for (i, l) in events.lines().enumerate() {
        assert_eq!(l, line(&event(TENANT, i as u64)));
    }
    let (_, mut m) = standard();
    let events = String::from_utf8(get(&mut m, "events.ndjson").clone()).unwrap();
    let lines: Vec<String> = events.lines().map(String::from).collect();
    assert_eq!(lines.len(), 20);
    assert_eq!(pos(&lines, 6), 0);
    assert_eq!(pos(&lines, 12), 5);
    assert_eq!(get(&mut m, "leaves.bin").len(), 23 * 32);
    let sig = String::from_utf8(get(&mut members(&bytes), "manifest.sig").clone()).unwrap();
    assert!(sig.starts_with("trailkeep-bundle/1\nsha256 "), "{sig}");
}

#[test]
fn bundle_changed_event_is_named() {
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        let i = pos(l, 8);
        l[i] = l[i].replace("\"sso\"", "\"password\"");
    });
    assert_event(&pack(&m), 8, "leaf hash mismatch");

    // With its leaf_hash recomputed too: it is not the log's leaf at seq 8.
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        let mut e = event(TENANT, 8);
        e.payload = Some(br#"{"method":"password"}"#.to_vec());
        e.leaf_hash = trailkeep_core::leaf::stored_event_leaf_hash(&e).unwrap();
        let i = pos(l, 8);
        l[i] = line(&e);
    });
    assert_event(&pack(&m), 8, "not the log's leaf at seq 8");

    // A field outside the leaf (received_at): only the digest catches it.
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        let i = pos(l, 8);
        l[i] = l[i].replacen("\"received_at\":\"2026", "\"received_at\":\"2027", 1);
    });
    assert_member(&pack(&m), "events.ndjson", "does not match the manifest");
    recompute(&mut m, None);
    assert_member(&pack(&m), "manifest.sig", "changed after it was signed");
}

#[test]
fn bundle_added_events_are_named() {
    // Events of the log outside the time range, slipped in at their place: before the first,
    // in a gap of the seqs (its leaf is the log's: only its time gives it away), after the
    // last.
    let (log, mut m) = standard();
    edit_events(&mut m, |l| l.insert(0, line(&log.events[4])));
    assert_event(&pack(&m), 4, "first_seq");
    let (log, mut m) = standard();
    edit_events(&mut m, |l| {
        let i = pos(l, 12);
        l.insert(i, line(&log.events[11]));
    });
    assert_event(&pack(&m), 11, "outside the bundle's range");
    let (log, mut m) = standard();
    edit_events(&mut m, |l| l.push(line(&log.events[30])));
    assert_event(&pack(&m), 30, "last_seq");
    // A forged event in a gap, dated inside the range.
    let (log, mut m) = standard();
    let mut forged = log.events[11].clone();
    forged.timestamp = trailkeep_core::Timestamp::parse(&at(11)).unwrap();
    forged.leaf_hash = trailkeep_core::leaf::stored_event_leaf_hash(&forged).unwrap();
    edit_events(&mut m, |l| {
        let i = pos(l, 12);
        l.insert(i, line(&forged));
    });
    assert_event(&pack(&m), 11, "not the log's leaf at seq 11");
    // Re-signed by the key holder, the time and the leaves still catch them.
    recompute(&mut m, Some(&signer()));
    assert_event(&pack(&m), 11, "not the log's leaf at seq 11");
    let (log, mut m) = standard();
    edit_events(&mut m, |l| {
        let i = pos(l, 12);
        l.insert(i, line(&log.events[11]));
    });
    recompute(&mut m, Some(&signer()));
    assert_event(&pack(&m), 11, "outside the bundle's range");
    let (log, mut m) = standard();
    edit_events(&mut m, |l| l.push(line(&log.events[30])));
    recompute(&mut m, Some(&signer()));
    assert_member(&pack(&m), "leaves.bin", "the leaves of seqs 6..30");
}

#[test]
fn bundle_removed_events_are_caught() {
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        l.remove(10);
    });
    assert_member(
        &pack(&m),
        "events.ndjson",
        "holds 19 events, the manifest says 20",
    );
    // The manifest recomputed to match: its signature no longer holds.
    recompute(&mut m, None);
    assert_member(&pack(&m), "manifest.sig", "changed after it was signed");
    // The first or last event removed.
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        l.remove(0);
    });
    assert_event(&pack(&m), 7, "first_seq");
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        l.pop();
    });
    assert_member(&pack(&m), "events.ndjson", "holds 19 events");
}

#[test]
fn bundle_reordered_and_duplicated_events_are_named() {
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        let (a, b) = (pos(l, 10), pos(l, 12));
        l.swap(a, b);
    });
    assert_event(&pack(&m), 10, "out of order");
    let (_, mut m) = standard();
    edit_events(&mut m, |l| {
        let i = pos(l, 14);
        let dup = l[i].clone();
        l.insert(i + 1, dup);
    });
    assert_event(&pack(&m), 14, "repeated");
    // Even re-signed.
    recompute(&mut m, Some(&signer()));
    assert_event(&pack(&m), 14, "repeated");
}

#[test]
fn bundle_altered_leaf_or_range_proof() {
    let (_, mut m) = standard();
    get(&mut m, "leaves.bin")[32 * 3 + 5] ^= 1;
    assert_member(&pack(&m), "leaves.bin", "does not match the manifest");
    recompute(&mut m, None);
    assert_member(&pack(&m), "manifest.sig", "changed after it was signed");
    recompute(&mut m, Some(&signer()));
    assert_member(&pack(&m), "range-proof.json", "rebuilds root");

    let (_, mut m) = standard();
    let rp = String::from_utf8(get(&mut m, "range-proof.json").clone()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&rp).unwrap();
    let h0 = v["proof"][0].as_str().unwrap().to_string();
    let other = trailkeep_tlog::hash::encode_hash(&trailkeep_tlog::leaf_hash(b"forged"));
    assert_ne!(h0, other);
    v["proof"][0] = other.into();
    *get(&mut m, "range-proof.json") = format!("{v}\n").into_bytes();
    assert_member(&pack(&m), "range-proof.json", "does not match the manifest");
    recompute(&mut m, Some(&signer()));
    assert_member(&pack(&m), "range-proof.json", "rebuilds root");
    // A hash too many.
    v["proof"][0] = h0.clone().into();
    v["proof"].as_array_mut().unwrap().push(h0.into());
    *get(&mut m, "range-proof.json") = format!("{v}\n").into_bytes();
    recompute(&mut m, Some(&signer()));
    assert_member(&pack(&m), "range-proof.json", "hashes");
}

#[test]
fn bundle_altered_checkpoints_and_consistency() {
    let (log, mut m) = standard();
    let cp = String::from_utf8(get(&mut m, "checkpoint.txt").clone()).unwrap();
    *get(&mut m, "checkpoint.txt") = cp.replacen("\n40\n", "\n41\n", 1).into_bytes();
    assert_member(&pack(&m), "checkpoint.txt", "does not match the manifest");
    recompute(&mut m, Some(&signer()));
    assert_member(&pack(&m), "checkpoint.txt", "does not verify");

    // Properly signed, but another tenant's.
    let (_, mut m) = standard();
    let other = trailkeep_tlog::Checkpoint::new(
        "trailkeep/default/t_2",
        40,
        trailkeep_tlog::tree_hash(40, &log.tree).unwrap(),
    );
    *get(&mut m, "checkpoint.txt") = trailkeep_tlog::sign_checkpoint(&other, &signer())
        .unwrap()
        .into_bytes();
    recompute(&mut m, Some(&signer()));
    assert_member(
        &pack(&m),
        "checkpoint.txt",
        "not of \"trailkeep/default/t_1\"",
    );

    // An older checkpoint in place of the latest: the range proof is for size 40.
    let (_, mut m) = standard();
    *get(&mut m, "checkpoint.txt") = log.checkpoint(36, &signer()).into_bytes();
    recompute(&mut m, Some(&signer()));
    assert_member(&pack(&m), "checkpoint.txt", "tree_size is 40");

    // The first checkpoint replaced by one that does not cover the last event.
    let (_, mut m) = standard();
    *get(&mut m, "checkpoint-first.txt") = log.checkpoint(20, &signer()).into_bytes();
    recompute(&mut m, Some(&signer()));
    assert_member(&pack(&m), "checkpoint-first.txt", "does not cover");

    // The consistency proof altered.
    let (_, mut m) = standard();
    let c = String::from_utf8(get(&mut m, "consistency.json").clone()).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&c).unwrap();
    let forged = trailkeep_tlog::hash::encode_hash(&trailkeep_tlog::leaf_hash(b"forged"));
    v["proof"][0] = forged.into();
    *get(&mut m, "consistency.json") = format!("{v}\n").into_bytes();
    assert_member(&pack(&m), "consistency.json", "does not match the manifest");
    recompute(&mut m, Some(&signer()));
    assert_member(
        &pack(&m),
        "consistency.json",
        "consistency proof does not match",
    );
}

#[test]
fn bundle_manifest_tampering() {
    // A digest edited, not re-signed.
    let (_, mut m) = standard();
    let text = String::from_utf8(get(&mut m, "manifest.json").clone()).unwrap();
    let sha = manifest_of(&m).members["public-key.txt"].sha256.clone();
    let edited = text.replace(&sha, &"0".repeat(64));
    assert_ne!(edited, text);
    *get(&mut m, "manifest.json") = edited.into_bytes();
    assert_member(&pack(&m), "manifest.sig", "changed after it was signed");
    // Re-signed: the member no longer matches.
    let mut mf = manifest_of(&m);
    mf.members.get_mut("public-key.txt").unwrap().sha256 = "0".repeat(64);
    let bytes = mf.to_bytes();
    let sig = trailkeep_tlog::sign_note(
        &trailkeep_export::bundle::signed_text(&sha2_digest(&bytes)),
        &[&signer()],
    )
    .unwrap();
    *get(&mut m, "manifest.json") = bytes;
    *get(&mut m, "manifest.sig") = sig.into_bytes();
    assert_member(&pack(&m), "public-key.txt", "does not match the manifest");

    // Not JSON, not a manifest, another format, too large: the tar reads cleanly, so these
    // are failed checks of manifest.json, not unreadable files.
    let (_, mut m) = standard();
    *get(&mut m, "manifest.json") = b"{not json".to_vec();
    assert_member(
        &pack(&m),
        "manifest.json",
        "not a trailkeep bundle manifest",
    );
    *get(&mut m, "manifest.json") = b"{\"format\":\"trailkeep-bundle/1\"}".to_vec();
    assert_member(
        &pack(&m),
        "manifest.json",
        "not a trailkeep bundle manifest",
    );
    *get(&mut m, "manifest.json") = vec![b' '; 2 << 20];
    assert_member(&pack(&m), "manifest.json", "at most");
    let (_, mut m) = standard();
    let text = String::from_utf8(get(&mut m, "manifest.json").clone()).unwrap();
    *get(&mut m, "manifest.json") = text
        .replace("trailkeep-bundle/1", "trailkeep-bundle/2")
        .into_bytes();
    assert_member(&pack(&m), "manifest.json", "trailkeep-bundle/2");
}

fn sha2_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

#[test]
fn bundle_keys() {
    let log = Log::new(12);
    let spec = Spec {
        first_size: Some(8),
        until: Some(6),
        ..Spec::default()
    };
    // Built and signed by another key: checked against ours, the signature fails.
    let bytes = build(&log, &spec, &other_signer());
    assert_member(&bytes, "manifest.sig", "no signature from a trusted key");
    // With its own key it is consistent with itself, and says so.
    let r = verify_bundle(&bytes[..], None).unwrap();
    assert!(r.key_from_bundle);
    assert_eq!(r.key, other_signer().verifier().to_vkey());
    // Our bundle checked against another key.
    let bytes = build(&log, &spec, &signer());
    let f = match verify_bundle(&bytes[..], Some(&other_signer().verifier())) {
        Err(BundleError::Failed(f)) => f,
        other => panic!("{other:?}"),
    };
    assert_eq!(f.culprit, Culprit::Member("manifest.sig".into()));
    // The key swapped inside the bundle (public-key.txt and the manifest's, re-signed by the
    // other key) still fails against ours.
    let mut m = members(&bytes);
    *get(&mut m, "public-key.txt") =
        format!("{}\n", other_signer().verifier().to_vkey()).into_bytes();
    recompute(&mut m, Some(&other_signer()));
    assert_member(&pack(&m), "manifest.sig", "no signature from a trusted key");
    // A checkpoint signed by another key under a manifest signed by ours.
    let mut m = members(&bytes);
    *get(&mut m, "checkpoint.txt") = log.checkpoint(12, &other_signer()).into_bytes();
    recompute(&mut m, Some(&signer()));
    assert_member(
        &pack(&m),
        "checkpoint.txt",
        "no signature from a trusted key",
    );
}

#[test]
fn bundle_members_missing_extra_duplicated() {
    let (_, m) = standard();
    let without = |name: &str| -> Vec<(String, Vec<u8>)> {
        m.iter().filter(|(n, _)| n != name).cloned().collect()
    };
    assert_member(&pack(&without("leaves.bin")), "leaves.bin", "missing");
    assert_member(
        &pack(&without("consistency.json")),
        "consistency.json",
        "missing",
    );
    assert_member(&pack(&without("events.ndjson")), "events.ndjson", "missing");
    assert_member(&pack(&without("manifest.sig")), "manifest.sig", "missing");

    let mut extra = m.clone();
    extra.push(("notes.txt".into(), b"hi".to_vec()));
    assert_member(&pack(&extra), "notes.txt", "extra member");
    let mut extra = m.clone();
    extra.insert(4, ("notes.txt".into(), b"hi".to_vec()));
    assert_member(&pack(&extra), "notes.txt", "not a member");

    let mut dup = m.clone();
    let cp = dup[3].clone();
    dup.insert(4, cp);
    assert_member(&pack(&dup), "checkpoint.txt", "twice");
    let mut dup = m.clone();
    let ev = dup[8].clone();
    dup.push(ev);
    assert_member(&pack(&dup), "events.ndjson", "twice");

    let mut swapped = m.clone();
    swapped.swap(6, 7);
    assert_member(&pack(&swapped), "leaves.bin", "missing");
}

#[test]
fn bundle_unreadable_inputs() {
    let log = Log::new(30);
    for gzip in [false, true] {
        let bytes = build(
            &log,
            &Spec {
                gzip,
                ..Spec::default()
            },
            &signer(),
        );
        for cut in [
            1,
            100,
            511,
            512,
            1024,
            1536,
            bytes.len() / 2,
            bytes.len() - 1024,
            bytes.len() - 1,
        ] {
            let msg = assert_unreadable(&bytes[..cut]);
            assert!(!msg.is_empty());
        }
    }
    // Cut exactly between two members: truncated, not a shorter bundle.
    let bytes = build(&log, &Spec::default(), &signer());
    let m = members(&bytes);
    let head = pack(&m[..4]);
    assert!(assert_unreadable(&head[..head.len() - 1024]).contains("truncated"));

    assert!(assert_unreadable(b"").contains("empty"));
    assert_unreadable(b"this is a plain text file, not a bundle\n");
    assert_unreadable(&"plain text\n".repeat(200).into_bytes());
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let random: Vec<u8> = (0..10_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    assert_unreadable(&random);
    let mut gz = vec![0x1f, 0x8b];
    gz.extend_from_slice(&random);
    assert_unreadable(&gz);
    // A tar, but not a bundle: it reads, and its manifest is missing.
    assert_member(
        &pack(&[("readme.txt".into(), b"x".to_vec())]),
        "manifest.json",
        "\"readme.txt\"",
    );
    assert_member(&[0u8; 1024], "manifest.json", "no member");

    // Data appended after the end of the archive.
    let mut appended = bytes.clone();
    appended.extend_from_slice(&[7u8; 512]);
    assert_member(&appended, "(end of archive)", "appended");
}

#[test]
fn bundle_spool_refuses_what_would_not_verify() {
    use trailkeep_export::bundle::{BundleInputs, BundleSpool};
    let log = Log::new(10);
    let tmp = tempfile::tempdir().unwrap();
    let spool = || BundleSpool::new(Some(tmp.path())).unwrap();
    let build_err = |r: Result<(), BundleError>| match r {
        Err(BundleError::Build(m)) => m,
        other => panic!("{other:?}"),
    };

    let mut s = spool();
    s.push(&log.events[3]).unwrap();
    assert!(build_err(s.push(&log.events[2])).contains("log order"));
    assert!(build_err(s.push(&log.events[3])).contains("log order"));
    assert!(build_err(s.push(&event("t_2", 4))).contains("tenant"));
    let mut bad = log.events[4].clone();
    bad.leaf_hash[0] ^= 1;
    assert!(build_err(s.push(&bad)).contains("not the hash of its fields"));
    s.push(&log.events[5]).unwrap();
    assert_eq!(s.seq_span(), Some((3, 6)));
    let wrong = [
        log.events[3].leaf_hash,
        log.events[4].leaf_hash,
        log.events[4].leaf_hash,
    ];
    assert!(build_err(s.push_leaves(&wrong)).contains("event seq 5"));

    let inputs = |since: Option<String>, range: Vec<trailkeep_tlog::Hash>| BundleInputs {
        tenant_id: TENANT.into(),
        origin: ORIGIN.into(),
        since,
        until: None,
        created_at: "2026-12-04T10:00:00Z".into(),
        checkpoint: log.checkpoint(10, &signer()),
        tree_size: 10,
        first_checkpoint: None,
        consistency_proof: vec![],
        range_proof: range,
        public_key: signer().verifier().to_vkey(),
    };
    let finish_err = |s: BundleSpool, i: BundleInputs| match s.finish(i, &signer()) {
        Err(BundleError::Build(m)) => m,
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("finished"),
    };
    let leaves: Vec<_> = log.events[3..6].iter().map(|e| e.leaf_hash).collect();
    let good_range = {
        let a = trailkeep_tlog::prove_inclusion(10, 3, &log.tree).unwrap();
        let b = trailkeep_tlog::prove_inclusion(10, 5, &log.tree).unwrap();
        trailkeep_tlog::range_proof(3, 6, 10, &a, &b).unwrap()
    };
    let filled = || {
        let mut s = spool();
        for e in &log.events[3..6] {
            s.push(e).unwrap();
        }
        s
    };
    // Leaves missing.
    let mut s = filled();
    s.push_leaves(&leaves[..2]).unwrap();
    assert!(finish_err(s, inputs(None, good_range.clone())).contains("leaves pushed"));
    // A range proof that does not lead to the checkpoint.
    let mut s = filled();
    s.push_leaves(&leaves).unwrap();
    let mut forged = good_range.clone();
    forged[0][0] ^= 1;
    assert!(finish_err(s, inputs(None, forged)).contains("rebuild root"));
    // An event before `since`.
    let mut s = filled();
    s.push_leaves(&leaves).unwrap();
    assert!(
        finish_err(s, inputs(Some(at(4)), good_range.clone())).contains("outside the time range")
    );
    // The wrong key.
    let mut s = filled();
    s.push_leaves(&leaves).unwrap();
    let mut i = inputs(None, good_range.clone());
    i.public_key = other_signer().verifier().to_vkey();
    assert!(finish_err(s, i).contains("public_key"));
    // Too many leaves.
    let mut s = filled();
    assert!(
        build_err(s.push_leaves(&[leaves.clone(), leaves.clone()].concat()))
            .contains("more leaves")
    );
    // And the good one finishes.
    let mut s = filled();
    s.push_leaves(&leaves).unwrap();
    // The latest checkpoint given as the first one too is not repeated.
    let mut i = inputs(Some(at(3)), good_range);
    i.first_checkpoint = Some(log.checkpoint(10, &signer()));
    let b = s.finish(i, &signer()).unwrap();
    assert_eq!(b.manifest().count, 3);
    assert!(!b.manifest().members.contains_key("checkpoint-first.txt"));
    let bytes = b.write_tar(Vec::new(), false).unwrap();
    verify(&bytes).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, failure_persistence: None, ..ProptestConfig::default() })]

    /// Bytes flipped, cut or inserted anywhere never make the verifier panic, and whatever
    /// still verifies says exactly what the original said.
    #[test]
    fn bundle_prop_mangled_bytes(edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4), gzip in any::<bool>()) {
        let log = Log::new(9);
        let original = build(&log, &Spec { gzip, since: Some(2), ..Spec::default() }, &signer());
        let good = verify(&original).unwrap();
        let mut bytes = original.clone();
        for (at, value, kind) in edits {
            let i = at.index(bytes.len());
            match kind {
                0 => bytes[i] ^= value | 1,
                1 => bytes.truncate(i),
                _ => bytes.insert(i, value),
            }
            if bytes.is_empty() { break; }
        }
        if let Ok(r) = verify(&bytes) {
            prop_assert_eq!(r.manifest, good.manifest);
            prop_assert_eq!(r.root, good.root);
        }
    }
}

/// A ustar header as the bundle writer makes them, of any type; the name is written as is
/// (`set_path` would normalise `./x` or `x/`).
fn ustar(name: &str, size: u64, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(kind);
    h.set_cksum();
    h
}

/// One pax record: `<length> <key>=<value>\n`, the length counting itself.
fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// A tar of `members`, with `extra` (a header and its data, written raw: the data may be
/// longer than the header says) before member `before`.
fn pack_with(
    members: &[(String, Vec<u8>)],
    before: &str,
    extra: &[(tar::Header, Vec<u8>)],
) -> Vec<u8> {
    use std::io::Write;
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        if name == before {
            for (h, data) in extra {
                let out = b.get_mut();
                out.write_all(h.as_bytes()).unwrap();
                out.write_all(data).unwrap();
                out.write_all(&vec![0; data.len().next_multiple_of(512) - data.len()])
                    .unwrap();
            }
        }
        b.append(
            &ustar(name, data.len() as u64, tar::EntryType::Regular),
            &data[..],
        )
        .unwrap();
    }
    b.into_inner().unwrap()
}

/// [`pack`] with names written as they are.
fn pack_raw(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    pack_with(members, "", &[])
}

/// The pax attack: an `x` header whose `size` covers events.ndjson plus forged lines, then
/// events.ndjson's ustar header with its true size. A pax-aware tar tool extracts the forged
/// lines with the events; the verifier must refuse the archive, not read the lines after the
/// true size as padding and the next header.
#[test]
fn bundle_pax_size_override_is_refused() {
    let (log, m) = standard();
    let events = m[8].1.clone();
    let forged = format!("{}\n", line(&log.events[35])).into_bytes();
    let pax = pax_record("size", &(events.len() + forged.len()).to_string());
    let pax_header = ustar(
        "PaxHeaders/events.ndjson",
        pax.len() as u64,
        tar::EntryType::XHeader,
    );
    let events_header = ustar(
        "events.ndjson",
        events.len() as u64,
        tar::EntryType::Regular,
    );
    // Written by hand: the pax header, then events.ndjson's header and the events followed
    // by the forged lines, padded once.
    let mut bytes = pack(&m[..8]);
    bytes.truncate(bytes.len() - 1024);
    bytes.extend_from_slice(pax_header.as_bytes());
    bytes.extend_from_slice(&pax);
    bytes.resize(bytes.len().next_multiple_of(512), 0);
    bytes.extend_from_slice(events_header.as_bytes());
    bytes.extend_from_slice(&events);
    bytes.extend_from_slice(&forged);
    bytes.resize(bytes.len().next_multiple_of(512) + 1024, 0);
    // A pax-aware reader (the tar crate's default) sees the forged line in events.ndjson.
    let seen = members(&bytes);
    assert_eq!(seen.len(), 9);
    assert_eq!(seen[8].0, "events.ndjson");
    assert!(seen[8].1.ends_with(&forged));
    assert_member(&bytes, "PaxHeaders/events.ndjson", "pax extended header");
    // And gzip'd: the same.
    assert_member(
        &gzip(&bytes),
        "PaxHeaders/events.ndjson",
        "pax extended header",
    );

    // Any pax header at all, even one that changes nothing a verifier reads.
    let mtime = pax_record("mtime", "1");
    let h = ustar(
        "PaxHeaders/manifest.json",
        mtime.len() as u64,
        tar::EntryType::XHeader,
    );
    let bytes = pack_with(&m, "manifest.json", &[(h, mtime.clone())]);
    assert_member(&bytes, "PaxHeaders/manifest.json", "pax extended header");
    let h = ustar(
        "GlobalHead",
        mtime.len() as u64,
        tar::EntryType::XGlobalHeader,
    );
    let bytes = pack_with(&m, "leaves.bin", &[(h, mtime)]);
    assert_member(&bytes, "GlobalHead", "pax global");
}

/// Every other kind of tar entry, a GNU header, and names a tar tool would extract as other
/// files (or the same one again) fail, naming the entry.
#[test]
fn bundle_only_plain_ustar_files() {
    let (_, m) = standard();
    // A GNU long name renaming the next member.
    let long = b"events.ndjson\0".to_vec();
    let mut h = tar::Header::new_gnu();
    h.set_path("@LongLink").unwrap();
    h.set_size(long.len() as u64);
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_cksum();
    let bytes = pack_with(&m, "range-proof.json", &[(h, long)]);
    assert_member(&bytes, "@LongLink", "GNU long-name");
    for (kind, says) in [
        (tar::EntryType::Directory, "a directory"),
        (tar::EntryType::Symlink, "a link"),
        (tar::EntryType::Link, "a link"),
        (tar::EntryType::GNUSparse, "sparse"),
        (tar::EntryType::Continuous, "type '7'"),
        (tar::EntryType::GNULongLink, "long-link"),
    ] {
        let bytes = pack_with(&m, "events.ndjson", &[(ustar("extra", 0, kind), vec![])]);
        assert_member(&bytes, "extra", says);
    }
    // A regular file with a GNU (not ustar) header.
    let mut bytes = pack(&m);
    let mut h = tar::Header::new_gnu();
    h.set_path("checkpoint.txt").unwrap();
    let data = &m[3].1;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let at = find_header(&bytes, "checkpoint.txt");
    bytes[at..at + 512].copy_from_slice(h.as_bytes());
    assert_member(&bytes, "checkpoint.txt", "not ustar");
    // Names: the same file to a tar tool, but not the member.
    for name in [
        "./events.ndjson",
        "events.ndjson/",
        "/events.ndjson",
        "x/../events.ndjson",
    ] {
        let mut renamed = m.clone();
        renamed[8].0 = name.into();
        assert_member(&pack_raw(&renamed), name, "not a member");
        let mut extra = m.clone();
        extra.push((name.into(), m[8].1.clone()));
        assert_member(&pack_raw(&extra), name, "extra member");
    }
    let mut renamed = m.clone();
    renamed[0].0 = "./manifest.json".into();
    assert_member(&pack_raw(&renamed), "manifest.json", "\"./manifest.json\"");
    verify(&pack_raw(&m)).unwrap();
    // A whole member after the end-of-archive marker.
    let mut bytes = pack(&m);
    bytes.extend_from_slice(&pack(&[("notes.txt".into(), b"forged".to_vec())]));
    assert_member(&bytes, "(end of archive)", "appended");
    assert_member(&gzip(&bytes), "(end of archive)", "appended");
}

fn find_header(tar_bytes: &[u8], name: &str) -> usize {
    (0..tar_bytes.len())
        .step_by(512)
        .find(|&i| tar_bytes[i..].starts_with(name.as_bytes()) && tar_bytes[i + name.len()] == 0)
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Nothing may follow the gzip member: neither a second member (which `gzip -d`, and so
/// `tar -xzf`, decompresses as more of the tar) nor plain bytes.
#[test]
fn bundle_data_after_the_gzip_stream() {
    let log = Log::new(12);
    let spec = Spec {
        gzip: true,
        ..Spec::default()
    };
    let good = build(&log, &spec, &signer());
    verify(&good).unwrap();
    // A second member holding a whole tar member (its end blocks dropped from the first
    // would make it part of the archive; here it follows a whole one).
    let mut two = good.clone();
    two.extend_from_slice(&gzip(&pack(&[("notes.txt".into(), b"forged".to_vec())])));
    assert_member(&two, "(end of archive)", "gzip stream");
    // A second member of zeros only, and bytes.
    let mut zeros = good.clone();
    zeros.extend_from_slice(&gzip(&[0; 1024]));
    assert_member(&zeros, "(end of archive)", "gzip stream");
    for tail in [&b"x"[..], b"\0", &[7u8; 5000]] {
        let mut appended = good.clone();
        appended.extend_from_slice(tail);
        assert_member(&appended, "(end of archive)", "gzip stream");
    }
    // The tar's end blocks left out of the first member and put in a second one, after a
    // forged member: the decompressed stream holds a member after events.ndjson.
    let tar_bytes = gunzip(&good);
    let body = &tar_bytes[..tar_bytes.len() - 1024];
    let mut split = gzip(body);
    split.extend_from_slice(&gzip(&pack(&[("notes.txt".into(), b"forged".to_vec())])));
    assert!(verify(&split).is_err());
}

/// A line of events.ndjson longer than any event fails, named, without being read into
/// memory; so does one in a gzip bomb. An altered event before it is named first.
#[test]
fn bundle_over_long_event_lines() {
    let (_, m) = standard();
    for gz in [false, true] {
        let mut long = m.clone();
        let events = get(&mut long, "events.ndjson");
        let first_two: usize = events
            .iter()
            .enumerate()
            .filter(|(_, &b)| b == b'\n')
            .nth(1)
            .unwrap()
            .0
            + 1;
        events.truncate(first_two);
        events.extend(std::iter::repeat_n(b'a', 8 << 20));
        let bytes = pack(&long);
        let bytes = if gz { gzip(&bytes) } else { bytes };
        assert_member(&bytes, "events.ndjson", "line 3: longer than 1048576 bytes");
    }
    // With a newline after it, too.
    let mut long = m.clone();
    edit_events(&mut long, |l| l.insert(4, "x".repeat(2 << 20)));
    assert_member(&pack(&long), "events.ndjson", "line 5: longer than");
    // An altered event before the long line is the failure named.
    let mut both = m.clone();
    edit_events(&mut both, |l| {
        let i = pos(l, 8);
        l[i] = l[i].replace("\"sso\"", "\"password\"");
        l.insert(i + 1, "x".repeat(2 << 20));
    });
    assert_event(&pack(&both), 8, "leaf hash mismatch");
}
