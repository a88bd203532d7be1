//! C2SP transparency-log proofs (`c2sp.org/tlog-proof@v1`): one self-contained,
//! offline-verifiable text proving that an entry is in a log.
//!
//! # The model
//!
//! ```text
//! c2sp.org/tlog-proof@v1                         header, exactly
//! extra <base64>                                 optional, opaque, NOT authenticated
//! index 73894                                    zero-based leaf index, decimal, no leading zeros
//! gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=   inclusion proof, one base64 hash per line,
//! B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=   from the leaf's sibling up (zero or more)
//!                                                blank line
//! <signed checkpoint note, verbatim>             see crate::checkpoint
//! ```
//!
//! Verifying it needs the entry's leaf hash (recomputed by the verifier from
//! the entry itself), the log's public key and the expected origin: open the
//! checkpoint, then check the inclusion proof of the leaf at `index` against
//! the checkpoint's size and root. trailkeep serves one of these per event at
//! `GET /v1/events/{event_id}/proof` (docs/api.md).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use crate::checkpoint::{open_checkpoint, open_checkpoint_for_origin, parse_decimal, Checkpoint};
use crate::hash::{decode_hash, encode_hash, Hash};
use crate::note::Verifier;
use crate::tree::verify_inclusion;
use crate::TlogError;

/// First line of every tlog-proof.
pub const TLOG_PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// An inclusion proof can never be longer than this (tree sizes are `u64`).
pub const MAX_PROOF_HASHES: usize = 64;

/// A parsed `c2sp.org/tlog-proof@v1` document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlogProof {
    /// Opaque application data from the `extra` line, if present. It is not
    /// covered by any signature: never trust it.
    pub extra: Option<Vec<u8>>,
    /// Zero-based index of the entry in the log.
    pub index: u64,
    /// Inclusion proof of the entry in the checkpoint's tree, leaf end first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, verbatim (ends in a newline).
    pub checkpoint_note: String,
}

impl TlogProof {
    /// Encodes the proof as text.
    pub fn to_text(&self) -> String {
        let mut s = String::with_capacity(64 + self.proof.len() * 45 + self.checkpoint_note.len());
        s.push_str(TLOG_PROOF_HEADER);
        s.push('\n');
        if let Some(extra) = &self.extra {
            s.push_str("extra ");
            s.push_str(&STANDARD.encode(extra));
            s.push('\n');
        }
        s.push_str("index ");
        s.push_str(&self.index.to_string());
        s.push('\n');
        for h in &self.proof {
            s.push_str(&encode_hash(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint_note);
        s
    }

    /// Parses tlog-proof text strictly (the checkpoint note is kept verbatim
    /// and only checked by [`TlogProof::verify`]).
    pub fn parse(text: &str) -> Result<Self, TlogError> {
        let bad = |why: String| TlogError::MalformedProof(why);
        let mut rest = text;
        let mut next_line = |what: &str| -> Result<&str, TlogError> {
            let (line, after) = rest
                .split_once('\n')
                .ok_or_else(|| TlogError::MalformedProof(format!("the text ends before {what}")))?;
            rest = after;
            Ok(line)
        };

        let header = next_line("the header line")?;
        if header != TLOG_PROOF_HEADER {
            return Err(bad(format!(
                "the first line is {header:?}, not {TLOG_PROOF_HEADER:?}"
            )));
        }

        let mut line = next_line("the index line")?;
        let mut extra = None;
        if let Some(b64) = line.strip_prefix("extra ") {
            extra = Some(
                STANDARD
                    .decode(b64)
                    .map_err(|_| bad("the extra data is not standard base64".into()))?,
            );
            line = next_line("the index line")?;
        }
        let index_text = line
            .strip_prefix("index ")
            .ok_or_else(|| bad(format!("expected \"index N\", found {line:?}")))?;
        let index = parse_decimal(index_text).ok_or_else(|| {
            bad(format!(
                "index {index_text:?} is not a canonical decimal u64"
            ))
        })?;

        let mut proof = Vec::new();
        loop {
            let line = next_line("the blank line before the checkpoint")?;
            if line.is_empty() {
                break;
            }
            if proof.len() == MAX_PROOF_HASHES {
                return Err(bad(format!("more than {MAX_PROOF_HASHES} proof hashes")));
            }
            proof.push(
                decode_hash(line).map_err(|e| bad(format!("proof hash {}: {e}", proof.len())))?,
            );
        }

        if rest.is_empty() {
            return Err(bad("the checkpoint is missing".into()));
        }
        Ok(TlogProof {
            extra,
            index,
            proof,
            checkpoint_note: rest.to_string(),
        })
    }

    /// Verifies the proof for an entry whose leaf hash is `leaf`: opens the
    /// checkpoint with the log's `verifier`, then checks inclusion of `leaf`
    /// at `index` against the checkpoint's size and root. Returns the
    /// checkpoint.
    ///
    /// The caller must check the returned checkpoint's `origin` (or use
    /// [`TlogProof::verify_for_origin`]), since one key may sign many logs.
    pub fn verify(&self, leaf: &Hash, verifier: &Verifier) -> Result<Checkpoint, TlogError> {
        let cp = open_checkpoint(&self.checkpoint_note, verifier)?;
        verify_inclusion(self.index, cp.size, leaf, &self.proof, &cp.root)?;
        Ok(cp)
    }

    /// [`TlogProof::verify`], also requiring the checkpoint's origin to be
    /// `origin`.
    pub fn verify_for_origin(
        &self,
        leaf: &Hash,
        origin: &str,
        verifier: &Verifier,
    ) -> Result<Checkpoint, TlogError> {
        let cp = open_checkpoint_for_origin(&self.checkpoint_note, origin, verifier)?;
        verify_inclusion(self.index, cp.size, leaf, &self.proof, &cp.root)?;
        Ok(cp)
    }
}
