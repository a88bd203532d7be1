//! Fuzzing the text parsers under `cargo test`: signed notes, checkpoints and tlog-proofs.
//!
//! Arbitrary text and line-structured noise never make a parser panic; a valid note,
//! checkpoint or proof edited anywhere (characters replaced, inserted, deleted, lines repeated
//! or swapped) is never accepted as saying something else: whenever an edited note still opens,
//! its signed text is the original's, an edited checkpoint that opens is the original
//! checkpoint, and an edited proof that verifies proves the original index in the original
//! checkpoint. (Edits that only repeat a signature line, or undo each other, are harmless and
//! accepted, which is why the property is about what is accepted, not about every edit.)
//!
//! Cases per property: `PROPTEST_CASES` (default: a short pass, as in CI). A longer run:
//! `PROPTEST_CASES=100000 cargo test -p trailkeep-tlog --test tlog fuzz_`.

use proptest::prelude::*;
use trailkeep_tlog::checkpoint::{open_checkpoint, sign_checkpoint, Checkpoint};
use trailkeep_tlog::hash::leaf_hash;
use trailkeep_tlog::note::{open_note, sign_note, Signer, Verifier};
use trailkeep_tlog::proof_text::TlogProof;
use trailkeep_tlog::tree::{prove_inclusion, MemoryHashes};

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Characters that matter to the formats: separators, base64, digits, the em dash.
const CHARS: &[char] = &[
    '\n', ' ', '\u{2014}', '+', '/', '=', 'A', 'z', '0', '9', '1', '-', '.', 'é', '\t', '\r',
    '\u{0}', '\u{a0}', '\u{feff}',
];

#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, char),
    Delete(usize, usize),
    /// Repeats line `a` after line `b`.
    RepeatLine(usize, usize),
    SwapLines(usize, usize),
    DropLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let c = prop_oneof![prop::sample::select(CHARS), any::<char>()];
    prop_oneof![
        (any::<usize>(), c.clone()).prop_map(|(p, c)| Edit::Replace(p, c)),
        (any::<usize>(), c).prop_map(|(p, c)| Edit::Insert(p, c)),
        (any::<usize>(), 1usize..6).prop_map(|(p, n)| Edit::Delete(p, n)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::RepeatLine(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
        any::<usize>().prop_map(Edit::DropLine),
    ]
}

fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for e in edits {
        let n = chars.len();
        match *e {
            Edit::Replace(p, c) if n > 0 => chars[p % n] = c,
            Edit::Insert(p, c) => chars.insert(p % (n + 1), c),
            Edit::Delete(p, k) if n > 0 => {
                let p = p % n;
                chars.drain(p..(p + k).min(n));
            }
            Edit::RepeatLine(..) | Edit::SwapLines(..) | Edit::DropLine(..) => {
                let s: String = chars.iter().collect();
                let mut lines: Vec<&str> = s.split_inclusive('\n').collect();
                let m = lines.len();
                if m > 0 {
                    match *e {
                        Edit::RepeatLine(a, b) => {
                            let line = lines[a % m];
                            lines.insert(b % (m + 1), line);
                        }
                        Edit::SwapLines(a, b) => lines.swap(a % m, b % m),
                        Edit::DropLine(a) => {
                            lines.remove(a % m);
                        }
                        _ => {}
                    }
                }
                chars = lines.concat().chars().collect();
            }
            _ => {}
        }
    }
    chars.into_iter().collect()
}

fn signer() -> Signer {
    Signer::from_seed("trailkeep/fuzz/t_0001", [7; 32]).expect("a valid key name")
}

fn other_signer() -> Signer {
    Signer::from_seed("witness.example/w1", [9; 32]).expect("a valid key name")
}

/// A note signed by our key and a witness.
fn sample_note() -> (String, String) {
    let text = "trailkeep/fuzz/t_0001\n42\nline three\n\u{e9}t\u{e9}\n".to_string();
    let note = sign_note(&text, &[&signer(), &other_signer()]).expect("signs");
    (text, note)
}

fn sample_checkpoint() -> (Checkpoint, String) {
    let mem = MemoryHashes::from_leaves((0..37u64).map(|i| leaf_hash(&i.to_be_bytes())));
    let cp = Checkpoint::new("trailkeep/fuzz/t_0001", 37, mem.root());
    let note = sign_checkpoint(&cp, &signer()).expect("signs");
    (cp, note)
}

fn sample_proof() -> (TlogProof, String) {
    let size = 37u64;
    let index = 21u64;
    let mem = MemoryHashes::from_leaves((0..size).map(|i| leaf_hash(&i.to_be_bytes())));
    let cp = Checkpoint::new("trailkeep/fuzz/t_0001", size, mem.root());
    let p = TlogProof {
        extra: Some(b"extra".to_vec()),
        index,
        proof: prove_inclusion(size, index, &mem).expect("proves"),
        checkpoint_note: sign_checkpoint(&cp, &signer()).expect("signs"),
    };
    let text = p.to_text();
    (p, text)
}

/// Line-structured noise: lines made of pieces of the formats.
fn structured_text() -> impl Strategy<Value = String> {
    let piece = prop::sample::select(vec![
        "c2sp.org/tlog-proof@v1",
        "extra ",
        "index ",
        "\u{2014} ",
        "trailkeep/fuzz/t_0001",
        "trailkeep/fuzz/t_0001 ",
        "42",
        "18446744073709551616",
        "0",
        "AAAA",
        "+4Y=",
        "NmQuc8JUCrEh46a/lUWwokmCzYMOsT080Z3jzmwCHsE=",
        "=",
        " ",
        "",
        "\u{e9}",
    ]);
    prop::collection::vec(prop::collection::vec(piece, 0..4), 0..14)
        .prop_map(|lines| lines.into_iter().map(|l| l.concat() + "\n").collect())
}

proptest! {
    #![proptest_config(config(1000))]

    /// Arbitrary and structured text: every parser answers, none panics.
    #[test]
    fn fuzz_text_parsers_never_panic(
        text in prop_oneof!["(?s).{0,300}", structured_text()],
    ) {
        let v = signer().verifier();
        let w = other_signer().verifier();
        let _ = open_note(&text, &[&v, &w]);
        let _ = open_checkpoint(&text, &v);
        let _ = Checkpoint::parse(&text);
        let _ = Verifier::from_vkey(text.trim_end());
        if let Ok(p) = TlogProof::parse(&text) {
            // A parsed proof prints back to text that parses to the same proof.
            prop_assert_eq!(TlogProof::parse(&p.to_text()).ok(), Some(p.clone()));
            let _ = p.verify(&leaf_hash(b"x"), &v);
        }
        if let Ok(cp) = Checkpoint::parse(&text) {
            prop_assert_eq!(Checkpoint::parse(&cp.to_text()).ok(), Some(cp));
        }
    }

    /// An edited signed note never opens with a different signed text.
    #[test]
    fn fuzz_mutated_note_never_accepted(edits in prop::collection::vec(edit(), 1..4)) {
        let (text, note) = sample_note();
        let edited = mutate(&note, &edits);
        let v = signer().verifier();
        if let Ok(opened) = open_note(&edited, &[&v]) {
            prop_assert_eq!(&opened.text, &text, "edited note {:?} opened", edited);
            prop_assert_eq!(opened.verified.len(), 1);
        }
        // With both keys trusted, both must verify.
        if let Ok(opened) = open_note(&edited, &[&v, &other_signer().verifier()]) {
            prop_assert_eq!(&opened.text, &text, "edited note {:?} opened", edited);
        }
    }

    /// An edited checkpoint never opens as a different checkpoint.
    #[test]
    fn fuzz_mutated_checkpoint_never_accepted(edits in prop::collection::vec(edit(), 1..4)) {
        let (cp, note) = sample_checkpoint();
        let edited = mutate(&note, &edits);
        if let Ok(got) = open_checkpoint(&edited, &signer().verifier()) {
            prop_assert_eq!(&got, &cp, "edited checkpoint {:?} opened", edited);
        }
        // The unsigned body alone: a parse either fails or prints back to what it read.
        let body = mutate(&cp.to_text(), &edits);
        if let Ok(parsed) = Checkpoint::parse(&body) {
            prop_assert_eq!(parsed.to_text(), body);
        }
    }

    /// An edited tlog-proof never verifies anything but the original statement.
    #[test]
    fn fuzz_mutated_tlog_proof_never_accepted(edits in prop::collection::vec(edit(), 1..4)) {
        let (p, text) = sample_proof();
        let edited = mutate(&text, &edits);
        let v = signer().verifier();
        let leaf = leaf_hash(&p.index.to_be_bytes());
        if let Ok(q) = TlogProof::parse(&edited) {
            if let Ok(cp) = q.verify(&leaf, &v) {
                let original = open_checkpoint(&p.checkpoint_note, &v).expect("opens");
                prop_assert_eq!(cp, original, "edited proof {:?} verified", edited);
                prop_assert_eq!(q.index, p.index);
                prop_assert_eq!(&q.proof, &p.proof);
            }
            // Another leaf never verifies.
            prop_assert!(q.verify(&leaf_hash(b"another leaf"), &v).is_err());
        }
    }
}

/// The samples themselves are accepted (else the properties above would hold vacuously).
#[test]
fn fuzz_samples_are_accepted() {
    let v = signer().verifier();
    let (text, note) = sample_note();
    assert_eq!(open_note(&note, &[&v]).expect("opens").text, text);
    let (cp, note) = sample_checkpoint();
    assert_eq!(open_checkpoint(&note, &v).expect("opens"), cp);
    let (p, text) = sample_proof();
    let parsed = TlogProof::parse(&text).expect("parses");
    assert_eq!(parsed, p);
    parsed
        .verify(&leaf_hash(&p.index.to_be_bytes()), &v)
        .expect("verifies");
    // A repeated signature line is the one harmless edit.
    let (_, note) = sample_note();
    let last = note.lines().last().expect("a signature line").to_string() + "\n";
    assert!(open_note(&(note.clone() + &last), &[&v]).is_ok());
}
