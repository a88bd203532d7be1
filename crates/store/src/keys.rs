//! API keys: roles, records, secrets.
//!
//! A key is a random secret shown once (`tk_…`); stores keep only its SHA-256, so a leaked
//! database does not leak working keys. A key has one role and may be bound to one tenant.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use trailkeep_core::Timestamp;

/// What a key may do (docs/api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, every tenant.
    Admin,
    /// Write events (to its tenant if bound).
    Ingest,
    /// Read events (of its tenant if bound).
    Reader,
    /// Read-only, always expires; its reads are themselves logged.
    Auditor,
    /// Decides dual approvals and reads them (of its tenant if bound); held by one person, so
    /// distinct approvers are distinct keys.
    Approver,
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "ingest" => Ok(Role::Ingest),
            "reader" => Ok(Role::Reader),
            "auditor" => Ok(Role::Auditor),
            "approver" => Ok(Role::Approver),
            _ => Err(format!(
                "unknown role {s:?}: expected admin, ingest, reader, auditor or approver"
            )),
        }
    }
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Ingest => "ingest",
            Role::Reader => "reader",
            Role::Auditor => "auditor",
            Role::Approver => "approver",
        }
    }
}

/// A stored key (never the secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Unix nanoseconds of `expires_at`, for fast checks.
    #[serde(default)]
    pub expires_nanos: Option<i64>,
    #[serde(default)]
    pub revoked: bool,
    /// Hex SHA-256 of the secret.
    pub secret_hash: String,
}

/// What the API shows of a key: everything but the secret's hash.
#[derive(Debug, Clone, Serialize)]
pub struct KeyView<'a> {
    pub id: &'a str,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<&'a str>,
    pub created_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<&'a str>,
    pub revoked: bool,
}

impl KeyRecord {
    pub fn view(&self) -> KeyView<'_> {
        KeyView {
            id: &self.id,
            role: self.role,
            tenant_id: self.tenant_id.as_deref(),
            created_at: &self.created_at,
            expires_at: self.expires_at.as_deref(),
            revoked: self.revoked,
        }
    }
}

impl KeyRecord {
    /// Whether the key may be used at `now`.
    pub fn is_live(&self, now_nanos: i64) -> bool {
        !self.revoked && self.expires_nanos.is_none_or(|e| now_nanos < e)
    }
}

/// A key to create: the caller generated the secret and passes its hash.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub role: Role,
    pub tenant_id: Option<String>,
    pub ttl_seconds: Option<u64>,
    pub secret_hash: String,
}

/// Default lifetime of auditor keys created without a TTL (they always expire).
pub const AUDITOR_DEFAULT_TTL_SECS: u64 = 30 * 86_400;

/// Default longest lifetime of an auditor key (`limits.max_auditor_ttl`).
pub const AUDITOR_MAX_TTL_SECS: u64 = 90 * 86_400;

/// Longest lifetime of any key: 10 years (3,650 days). Longer TTLs are refused, so an expiry
/// time is always a valid timestamp.
pub const MAX_KEY_TTL_SECS: u64 = 3_650 * 86_400;

impl NewKey {
    /// Builds the record for this key at `now`.
    pub fn into_record(self, now: Timestamp) -> KeyRecord {
        let ttl = match (self.role, self.ttl_seconds) {
            (Role::Auditor, None) => Some(AUDITOR_DEFAULT_TTL_SECS),
            (_, t) => t,
        };
        // TTLs are checked against MAX_KEY_TTL_SECS before a key is made; the bound is applied
        // again here so no TTL can wrap around into the past.
        let expires = ttl.map(|s| {
            let nanos = i64::try_from(s.min(MAX_KEY_TTL_SECS))
                .ok()
                .and_then(|s| s.checked_mul(1_000_000_000))
                .and_then(|d| now.nanos.checked_add(d))
                .unwrap_or(i64::MAX);
            Timestamp::from_nanos(nanos, 3)
        });
        let id_bytes: [u8; 6] = rand::random();
        KeyRecord {
            id: format!("key_{}", hex::encode(id_bytes)),
            role: self.role,
            tenant_id: self.tenant_id,
            created_at: Timestamp::from_nanos(now.nanos, 3).to_rfc3339(),
            expires_at: expires.map(|t| t.to_rfc3339()),
            expires_nanos: expires.map(|t| t.nanos),
            revoked: false,
            secret_hash: self.secret_hash,
        }
    }
}

/// A fresh secret (`tk_` + 32 random bytes, base64url) and its hash.
pub fn generate_secret() -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let secret = format!(
        "tk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let hash = hash_secret(&secret);
    (secret, hash)
}

/// Hex SHA-256 of a key secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Parses a TTL such as `30d`, `12h`, `15m`, `90s` (or plain seconds).
pub fn parse_duration_secs(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'd')) => (&s[..i], 86_400),
        Some((i, 'h')) => (&s[..i], 3_600),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 's')) => (&s[..i], 1),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| {
        if !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()) {
            format!("duration {s:?} is too long")
        } else {
            format!("invalid duration {s:?}: expected a number with d, h, m or s (e.g. 30d)")
        }
    })?;
    if n == 0 {
        return Err(format!("invalid duration {s:?}: must be greater than zero"));
    }
    n.checked_mul(mult)
        .ok_or_else(|| format!("duration {s:?} is too long"))
}

/// Parses a key's TTL and checks it against the bounds: at most [`MAX_KEY_TTL_SECS`] for any
/// key, at most `max_auditor_secs` for an auditor key.
pub fn parse_key_ttl(s: &str, role: Role, max_auditor_secs: u64) -> Result<u64, String> {
    let secs = parse_duration_secs(s).map_err(|e| format!("invalid ttl: {e}"))?;
    let (max, what) = if role == Role::Auditor {
        (max_auditor_secs.min(MAX_KEY_TTL_SECS), "an auditor key")
    } else {
        (MAX_KEY_TTL_SECS, "a key")
    };
    if secs > max {
        return Err(format!(
            "ttl {:?} is longer than the longest lifetime of {what}, {}; give a shorter ttl",
            s.trim(),
            describe_secs(max)
        ));
    }
    Ok(secs)
}

/// `90d`, `12h`, `15m` or `90s`: the largest unit that divides `secs`.
pub fn describe_secs(secs: u64) -> String {
    for (unit, n) in [("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs >= n && secs.is_multiple_of(n) {
            return format!("{}{unit}", secs / n);
        }
    }
    format!("{secs}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30d").unwrap(), 30 * 86400);
        assert_eq!(parse_duration_secs("8h").unwrap(), 8 * 3600);
        assert_eq!(parse_duration_secs("90").unwrap(), 90);
        assert!(parse_duration_secs("0d").is_err());
        assert!(parse_duration_secs("abc").is_err());
        assert!(parse_duration_secs("").is_err());
    }

    #[test]
    fn ttls_that_would_overflow_are_refused() {
        for (ttl, role) in [
            ("18446744073709551615s", Role::Reader),
            ("9223372036854775808s", Role::Ingest),
            ("106751d", Role::Admin),
            ("3651d", Role::Reader),
            ("91d", Role::Auditor),
            ("2161h", Role::Auditor),
        ] {
            let e = parse_key_ttl(ttl, role, AUDITOR_MAX_TTL_SECS).unwrap_err();
            assert!(e.contains("longer than the longest lifetime"), "{ttl}: {e}");
        }
        assert!(
            parse_key_ttl("99999999999999999999d", Role::Reader, AUDITOR_MAX_TTL_SECS)
                .unwrap_err()
                .contains("too long")
        );
        assert_eq!(
            parse_key_ttl("3650d", Role::Reader, AUDITOR_MAX_TTL_SECS),
            Ok(MAX_KEY_TTL_SECS)
        );
        assert_eq!(
            parse_key_ttl("90d", Role::Auditor, AUDITOR_MAX_TTL_SECS),
            Ok(AUDITOR_MAX_TTL_SECS)
        );
        // Even an unchecked TTL never yields an expiry in the past.
        let now = Timestamp::now_micros();
        let r = NewKey {
            role: Role::Reader,
            tenant_id: None,
            ttl_seconds: Some(u64::MAX),
            secret_hash: String::new(),
        }
        .into_record(now);
        assert!(r.is_live(now.nanos));
    }

    #[test]
    fn auditor_keys_always_expire() {
        let (_, h) = generate_secret();
        let r = NewKey {
            role: Role::Auditor,
            tenant_id: None,
            ttl_seconds: None,
            secret_hash: h,
        }
        .into_record(Timestamp::from_nanos(0, 3));
        assert!(r.expires_nanos.is_some());
        assert!(r.is_live(0));
        assert!(!r.is_live(r.expires_nanos.unwrap()));
    }
}
