//! C2SP signed notes (`c2sp.org/signed-note`) with Ed25519 keys.
//!
//! # The model
//!
//! A *note* is UTF-8 text ending in a newline, followed by a blank line and
//! one or more signature lines:
//!
//! ```text
//! <text, one or more lines, each ending in \n>
//!
//! — <key name> <base64(4-byte key id ‖ 64-byte Ed25519 signature)>
//! ```
//!
//! The signature line starts with an em dash (U+2014) and a space. Each
//! signature covers the text *including* its final newline but not the blank
//! line. A key is identified by its **name** (non-empty, no Unicode spaces, no
//! `+`) together with its **key id**, the first four bytes (big-endian) of
//! `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ 32-byte public key)`, `0x01` being the
//! Ed25519 signature type.
//!
//! Verifiers are configured with *verifier keys* ("vkeys"):
//! `<name>+<key id as 8 hex digits>+<base64(0x01 ‖ public key)>`.
//!
//! Opening a note follows the spec: signatures from unknown keys are ignored
//! (they may be witnesses or a rotated key); a failing signature from a known
//! key rejects the whole note; a note with no verified known signature is
//! rejected. The note text must never be used unless opening succeeded.
//!
//! Keys are built from a 32-byte seed the caller supplies (this crate does no
//! I/O and uses no randomness).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::TlogError;

/// Signature type byte of Ed25519 in signed notes and verifier keys.
pub const ED25519_TYPE: u8 = 0x01;

/// Most signature lines [`open_note`] accepts (the spec requires at least 16).
pub const MAX_SIGNATURES: usize = 100;

/// Prefix of every signature line: em dash (U+2014) and a space.
pub const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Whether `name` is a valid key name: non-empty, no Unicode white space, no
/// `+`. (Control characters are white space or forbidden in notes anyway.)
pub fn is_valid_key_name(name: &str) -> bool {
    !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || c == '+' || c.is_control())
}

fn check_key_name(name: &str) -> Result<(), TlogError> {
    if is_valid_key_name(name) {
        Ok(())
    } else {
        Err(TlogError::InvalidKeyName(name.to_string()))
    }
}

/// The signed-note key id of an Ed25519 key:
/// `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ public key)[:4]`, big-endian.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update([b'\n', ED25519_TYPE]);
    h.update(public_key);
    let digest: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// An Ed25519 signing key with its key name, e.g. a log's checkpoint key.
///
/// Its `Debug` output never shows the secret.
pub struct Signer {
    name: String,
    key: SigningKey,
    key_id: u32,
}

impl Signer {
    /// Builds a signer from a key name and a 32-byte Ed25519 seed (RFC 8032
    /// secret key). The caller generates and stores the seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, TlogError> {
        check_key_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, key.verifying_key().as_bytes());
        Ok(Signer {
            name: name.to_string(),
            key,
            key_id,
        })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier (public key), e.g. to publish as a vkey.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key: self.key.verifying_key(),
            key_id: self.key_id,
        }
    }

    fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// An Ed25519 public key with its key name: what a client trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key: VerifyingKey,
    key_id: u32,
}

impl Verifier {
    /// Builds a verifier from a key name and a 32-byte Ed25519 public key.
    /// Rejects invalid names, keys that are not curve points and weak
    /// (small-order) keys.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, TlogError> {
        check_key_name(name)?;
        let key = VerifyingKey::from_bytes(&public_key).map_err(|_| {
            TlogError::InvalidVerifierKey("the public key is not a valid Ed25519 point".into())
        })?;
        if key.is_weak() {
            return Err(TlogError::InvalidVerifierKey(
                "the public key has small order and would accept forged signatures".into(),
            ));
        }
        Ok(Verifier {
            name: name.to_string(),
            key,
            key_id: key_id(name, &public_key),
        })
    }

    /// Parses a verifier key `<name>+<hex key id>+<base64(0x01 ‖ key)>`,
    /// checking that the key id matches the name and key.
    pub fn from_vkey(vkey: &str) -> Result<Self, TlogError> {
        let bad = |why: &str| TlogError::InvalidVerifierKey(why.to_string());
        // The name has no '+', so the first two '+' end the name and the id;
        // the base64 part may itself contain '+'.
        let mut parts = vkey.splitn(3, '+');
        let (Some(name), Some(id_hex), Some(key_b64)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected three '+'-separated fields"));
        };
        check_key_name(name)?;
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad("the key id is not 8 hex digits"));
        }
        let id = u32::from_str_radix(id_hex, 16).map_err(|_| bad("the key id is not hex"))?;
        let raw = STANDARD
            .decode(key_b64)
            .map_err(|_| bad("the key is not standard base64"))?;
        let (alg, key) = raw.split_first().ok_or_else(|| bad("the key is empty"))?;
        if *alg != ED25519_TYPE {
            return Err(bad("the key type is not Ed25519 (0x01)"));
        }
        let key: [u8; 32] = key
            .try_into()
            .map_err(|_| bad("the Ed25519 key is not 32 bytes"))?;
        let v = Verifier::new(name, key)?;
        if v.key_id != id {
            return Err(bad("the key id does not match the name and key"));
        }
        Ok(v)
    }

    /// The verifier key string `<name>+<hex key id>+<base64(0x01 ‖ key)>`.
    pub fn to_vkey(&self) -> String {
        let mut raw = Vec::with_capacity(33);
        raw.push(ED25519_TYPE);
        raw.extend_from_slice(self.key.as_bytes());
        format!("{}+{:08x}+{}", self.name, self.key_id, STANDARD.encode(raw))
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The 32-byte Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(sig) = <[u8; 64]>::try_from(sig) else {
            return false;
        };
        self.key
            .verify_strict(msg, &Signature::from_bytes(&sig))
            .is_ok()
    }
}

impl fmt::Display for Verifier {
    /// Formats as the vkey string.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_vkey())
    }
}

impl FromStr for Verifier {
    type Err = TlogError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Verifier::from_vkey(s)
    }
}

/// One signature line of a note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name.
    pub name: String,
    /// Key id.
    pub key_id: u32,
    /// The signature bytes after the key id.
    pub signature: Vec<u8>,
}

/// A note whose signatures were checked by [`open_note`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signatures from the given verifiers, all verified (at least one).
    pub verified: Vec<NoteSignature>,
    /// Signatures from keys the caller did not pass (not checked).
    pub unverified: Vec<NoteSignature>,
}

fn check_note_chars(s: &str) -> Option<char> {
    s.chars().find(|&c| c < ' ' && c != '\n')
}

/// Signs `text` with each signer, producing the signed note: the text, a blank
/// line, then one `— <name> <base64(key id ‖ signature)>` line per signer.
///
/// The text must be non-empty, end in a newline and contain no ASCII control
/// characters other than newline; there must be at least one signer and no
/// key twice.
pub fn sign_note(text: &str, signers: &[&Signer]) -> Result<String, TlogError> {
    if !text.ends_with('\n') {
        return Err(TlogError::InvalidNoteText(
            "note text must be non-empty and end in a newline".into(),
        ));
    }
    if let Some(c) = check_note_chars(text) {
        return Err(TlogError::InvalidNoteText(format!(
            "note text contains the control character {c:?}"
        )));
    }
    if signers.is_empty() {
        return Err(TlogError::InvalidNoteText(
            "a signed note needs at least one signer".into(),
        ));
    }
    let mut out = String::with_capacity(text.len() + 1 + signers.len() * 120);
    out.push_str(text);
    out.push('\n');
    for (i, s) in signers.iter().enumerate() {
        if signers[..i]
            .iter()
            .any(|o| o.name == s.name && o.key_id == s.key_id)
        {
            return Err(TlogError::DuplicateSigner {
                name: s.name.clone(),
                key_id: s.key_id,
            });
        }
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&s.key_id.to_be_bytes());
        blob.extend_from_slice(&s.sign(text.as_bytes()));
        out.push_str(SIGNATURE_PREFIX);
        out.push_str(&s.name);
        out.push(' ');
        out.push_str(&STANDARD.encode(blob));
        out.push('\n');
    }
    Ok(out)
}

/// Parses a signed note and verifies it against the trusted `verifiers`.
///
/// Succeeds only if at least one signature is from a trusted key (same name
/// and key id) and every trusted-key signature verifies. Signatures from
/// other keys are returned unchecked in [`OpenedNote::unverified`]; repeated
/// identical lines are reported once.
pub fn open_note(note: &str, verifiers: &[&Verifier]) -> Result<OpenedNote, TlogError> {
    let malformed = |why: &str| TlogError::MalformedNote(why.to_string());
    if let Some(c) = check_note_chars(note) {
        return Err(TlogError::MalformedNote(format!(
            "it contains the control character {c:?}"
        )));
    }
    // The text ends at the last blank line; signatures follow it.
    let split = note
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line separates the text from the signatures"))?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(malformed(
            "the signature block is empty or does not end in a newline",
        ));
    }

    let mut opened = OpenedNote {
        text: text.to_string(),
        verified: Vec::new(),
        unverified: Vec::new(),
    };
    let mut seen_lines: Vec<&str> = Vec::new();
    for (n, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        if n >= MAX_SIGNATURES {
            return Err(TlogError::MalformedNote(format!(
                "more than {MAX_SIGNATURES} signature lines"
            )));
        }
        let sig = parse_signature_line(line)?;
        // Identical repeated lines carry no extra information.
        if seen_lines.contains(&line) {
            continue;
        }
        seen_lines.push(line);
        let known = verifiers
            .iter()
            .find(|v| v.name == sig.name && v.key_id == sig.key_id);
        match known {
            None => opened.unverified.push(sig),
            Some(v) => {
                // Every signature from a trusted key must verify (the spec's
                // MUST verify / SHOULD reject), including a second one by a
                // key that already verified.
                if !v.verify(text.as_bytes(), &sig.signature) {
                    return Err(TlogError::BadSignature {
                        name: sig.name,
                        key_id: sig.key_id,
                    });
                }
                let already = opened
                    .verified
                    .iter()
                    .any(|s| s.name == sig.name && s.key_id == sig.key_id);
                if !already {
                    opened.verified.push(sig);
                }
            }
        }
    }
    if opened.verified.is_empty() {
        let signers = opened
            .unverified
            .iter()
            .map(|s| format!("{}+{:08x}", s.name, s.key_id))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(TlogError::UnknownSigner { signers });
    }
    Ok(opened)
}

fn parse_signature_line(line: &str) -> Result<NoteSignature, TlogError> {
    let malformed = |why: String| TlogError::MalformedNote(why);
    let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
        malformed(format!(
            "signature line {line:?} does not start with an em dash and a space"
        ))
    })?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| malformed(format!("signature line {line:?} has no signature")))?;
    if !is_valid_key_name(name) {
        return Err(malformed(format!(
            "signature line has the invalid key name {name:?}"
        )));
    }
    let blob = STANDARD
        .decode(b64)
        .map_err(|_| malformed(format!("signature by {name} is not standard base64")))?;
    if blob.len() < 5 {
        return Err(malformed(format!("signature by {name} is too short")));
    }
    let Some((id, signature)) = blob.split_first_chunk::<4>() else {
        return Err(malformed(format!("signature by {name} is too short")));
    };
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: u32::from_be_bytes(*id),
        signature: signature.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert!(is_valid_key_name("trailkeep/main/t_0042"));
        for bad in ["", "a b", "a+b", "a\u{00a0}b", "a\tb", "a\u{2003}b", "a\nb"] {
            assert!(!is_valid_key_name(bad), "{bad:?}");
            assert!(Signer::from_seed(bad, [1; 32]).is_err());
        }
    }

    #[test]
    fn weak_key_rejected() {
        // The identity point (small order) encodes as 1 followed by zeros.
        let mut k = [0u8; 32];
        k[0] = 1;
        assert!(Verifier::new("weak", k).is_err());
    }

    #[test]
    fn signer_debug_hides_secret() {
        let s = Signer::from_seed("x", [7; 32]).unwrap();
        let d = format!("{s:?}");
        assert!(d.contains("key_id") && !d.contains("07, 07"));
    }
}
