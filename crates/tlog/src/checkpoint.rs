//! C2SP transparency-log checkpoints (`c2sp.org/tlog-checkpoint`).
//!
//! # The model
//!
//! A checkpoint commits a log to its tree at one size. Its text is at least
//! three non-empty lines, each ending in a newline:
//!
//! ```text
//! trailkeep/main/t_0042                          origin: which log
//! 20852163                                       tree size, decimal, no leading zeros
//! CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=   root hash, base64
//! [extension lines, opaque, non-empty]           optional, not recommended
//! ```
//!
//! and it is published as a [signed note](crate::note) by the log's key. A
//! client that trusts the key and has checked the origin can use the root to
//! verify inclusion proofs (an event is in the log) and consistency proofs
//! (the log only grew since an earlier checkpoint). A log must never sign two
//! checkpoints that are not consistent with each other.
//!
//! In trailkeep the origin is `trailkeep/<log-name>/<tenant>` (docs/verification.md).

use crate::hash::{decode_hash, encode_hash, Hash};
use crate::note::{open_note, sign_note, Signer, Verifier};
use crate::TlogError;

/// A checkpoint body: origin, tree size, root hash and extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Identifies the log (non-empty; for trailkeep `trailkeep/<log>/<tenant>`).
    pub origin: String,
    /// Number of records in the tree.
    pub size: u64,
    /// RFC 9162 root hash of the tree of `size` records.
    pub root: Hash,
    /// Opaque extra lines after the root (each non-empty). Usually empty.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extension lines.
    pub fn new(origin: impl Into<String>, size: u64, root: Hash) -> Self {
        Checkpoint {
            origin: origin.into(),
            size,
            root,
            extensions: Vec::new(),
        }
    }

    /// The checkpoint text: origin, decimal size, base64 root, then any
    /// extension lines, each followed by a newline. This is the text that gets
    /// signed; call [`Checkpoint::validate`] first if the fields came from
    /// untrusted input (or use [`sign_checkpoint`], which does).
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            encode_hash(&self.root)
        );
        for ext in &self.extensions {
            s.push_str(ext);
            s.push('\n');
        }
        s
    }

    /// Checks that [`Checkpoint::to_text`] would produce text that
    /// [`Checkpoint::parse`] reads back as `self`: the origin and each
    /// extension line non-empty and free of ASCII control characters
    /// (newlines included).
    pub fn validate(&self) -> Result<(), TlogError> {
        check_line("origin", &self.origin)?;
        for ext in &self.extensions {
            check_line("extension line", ext)?;
        }
        Ok(())
    }

    /// Parses checkpoint text strictly: at least three lines, all non-empty,
    /// the text ending in a newline, no ASCII control characters but newlines, a
    /// decimal size without sign or leading zeros that fits in 64 bits, and a
    /// canonical base64 root of exactly 32 bytes.
    pub fn parse(text: &str) -> Result<Self, TlogError> {
        let bad = |why: String| TlogError::MalformedCheckpoint(why);
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("the text does not end in a newline".into()))?;
        let lines: Vec<&str> = body.split('\n').collect();
        for (i, line) in lines.iter().enumerate() {
            check_line(&format!("line {}", i.saturating_add(1)), line)?;
        }
        let [origin, size, root, extensions @ ..] = lines.as_slice() else {
            return Err(bad(format!(
                "{} line(s) instead of at least origin, size and root hash",
                lines.len()
            )));
        };
        let size = parse_decimal(size)
            .ok_or_else(|| bad(format!("tree size {size:?} is not a canonical decimal u64")))?;
        let root = decode_hash(root).map_err(|e| bad(format!("root hash {root:?}: {e}")))?;
        Ok(Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: extensions.iter().map(|s| s.to_string()).collect(),
        })
    }
}

fn check_line(what: &str, s: &str) -> Result<(), TlogError> {
    if s.is_empty() {
        return Err(TlogError::MalformedCheckpoint(format!(
            "the {what} is empty"
        )));
    }
    if let Some(c) = s.chars().find(|&c| c < ' ') {
        return Err(TlogError::MalformedCheckpoint(format!(
            "the {what} contains the control character {c:?}"
        )));
    }
    Ok(())
}

/// Parses ASCII decimal digits with no sign and no leading zeros ("0" alone is
/// allowed) into a u64. Shared with the tlog-proof `index` line.
pub(crate) fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Signs a checkpoint as a signed note with the log's key.
pub fn sign_checkpoint(checkpoint: &Checkpoint, signer: &Signer) -> Result<String, TlogError> {
    checkpoint.validate()?;
    sign_note(&checkpoint.to_text(), &[signer])
}

/// Opens a signed checkpoint: verifies the log's signature with `verifier`
/// (other signatures, e.g. witnesses, are ignored) and parses the text.
///
/// The caller must still check that [`Checkpoint::origin`] is the log it
/// expects, or use [`open_checkpoint_for_origin`]: the same key may sign the
/// checkpoints of several logs (trailkeep signs every tenant's log).
pub fn open_checkpoint(note: &str, verifier: &Verifier) -> Result<Checkpoint, TlogError> {
    let opened = open_note(note, &[verifier])?;
    Checkpoint::parse(&opened.text)
}

/// [`open_checkpoint`], then checks that the origin is `origin`.
pub fn open_checkpoint_for_origin(
    note: &str,
    origin: &str,
    verifier: &Verifier,
) -> Result<Checkpoint, TlogError> {
    let cp = open_checkpoint(note, verifier)?;
    if cp.origin != origin {
        return Err(TlogError::OriginMismatch {
            expected: origin.to_string(),
            got: cp.origin,
        });
    }
    Ok(cp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal_rules() {
        assert_eq!(parse_decimal("0"), Some(0));
        assert_eq!(parse_decimal("18446744073709551615"), Some(u64::MAX));
        for bad in [
            "",
            "00",
            "01",
            "+1",
            "-1",
            " 1",
            "1 ",
            "18446744073709551616",
            "1e3",
            "١",
        ] {
            assert_eq!(parse_decimal(bad), None, "{bad:?}");
        }
    }
}
