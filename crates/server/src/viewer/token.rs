//! Viewer tokens (docs/api.md#viewer-tokens): short-lived, signed links to one tenant's events.
//!
//! A token is `tkv1.<payload>.<mac>`, both parts unpadded base64url. The payload is compact
//! JSON: `{"v":1,"tid":tenant,"act":actor?,"exp":unix seconds,"jti":random id}`; the mac is
//! HMAC-SHA256 over `trailkeep viewer token v1` ‖ 0x00 ‖ the payload's base64url text, keyed with
//! the server's token key (a separate 32-byte secret, not the log's signing key). Nothing about
//! a token is stored: it is valid until it expires or until the token key changes, which revokes
//! every outstanding token at once (docs/operations.md#viewer).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use trailkeep_core::validate::is_tenant_id;

/// The prefix of every viewer token.
pub const PREFIX: &str = "tkv1.";
/// Tokens longer than this are refused unread.
pub const MAX_TOKEN_LEN: usize = 2048;
/// The longest actor a token can be bound to (as for an event's actor).
pub const MAX_ACTOR_LEN: usize = 256;
const CONTEXT: &[u8] = b"trailkeep viewer token v1\0";

/// The HMAC key tokens are signed with.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(…)")
    }
}

impl TokenKey {
    pub fn new(secret: [u8; 32]) -> TokenKey {
        TokenKey(secret)
    }

    /// A random key (tokens signed with it die with the process).
    pub fn random() -> TokenKey {
        let mut k = [0u8; 32];
        k[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        k[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        TokenKey(k)
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        m.update(CONTEXT);
        m
    }

    /// Signs `claims` into a token.
    pub fn sign(&self, claims: &Claims) -> String {
        let json = serde_json::to_vec(claims).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD.encode(json);
        let mut m = self.mac();
        m.update(payload.as_bytes());
        let tag = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        format!("{PREFIX}{payload}.{tag}")
    }

    /// Checks a token's form, signature and expiry (against `now`, unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let rest = token.strip_prefix(PREFIX).ok_or(TokenError::Malformed)?;
        let (payload, tag) = rest.split_once('.').ok_or(TokenError::Malformed)?;
        let tag = URL_SAFE_NO_PAD
            .decode(tag)
            .map_err(|_| TokenError::Malformed)?;
        let mut m = self.mac();
        m.update(payload.as_bytes());
        m.verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.v != 1 || !is_tenant_id(&claims.tid) || claims.jti.is_empty() {
            return Err(TokenError::Malformed);
        }
        if claims.exp <= now {
            return Err(TokenError::Expired(claims.exp));
        }
        Ok(claims)
    }
}

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claims {
    /// Format version (1).
    pub v: u8,
    /// The tenant the token reads.
    pub tid: String,
    /// The one actor whose events the token shows, if bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<String>,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// The token's id (random), named in the `audit.read` events of its reads.
    pub jti: String,
}

impl Claims {
    /// New claims with a fresh random id.
    pub fn new(tenant: &str, actor: Option<&str>, expires: i64) -> Claims {
        let id = uuid::Uuid::new_v4();
        Claims {
            v: 1,
            tid: tenant.to_string(),
            act: actor.map(str::to_string),
            exp: expires,
            jti: format!("vt_{}", &id.simple().to_string()[..20]),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    /// Expired at this unix time.
    Expired(i64),
}

impl TokenError {
    /// A sentence for the person holding the link.
    pub fn message(&self) -> String {
        match self {
            TokenError::Malformed => {
                "this viewer token is malformed (the link may be cut short); ask for a new link"
                    .into()
            }
            TokenError::BadSignature => "this viewer token is not valid: its signature does not \
                match (it was altered, or the server's token key was rotated); ask for a new link"
                .into(),
            TokenError::Expired(at) => {
                let when = time::OffsetDateTime::from_unix_timestamp(*at)
                    .ok()
                    .and_then(|t| {
                        t.format(&time::format_description::well_known::Rfc3339)
                            .ok()
                    })
                    .unwrap_or_else(|| at.to_string());
                format!("this viewer token expired at {when}; ask for a new link")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let k = TokenKey::new([7; 32]);
        let c = Claims::new("t_a", Some("user:x"), 1_000);
        let t = k.sign(&c);
        assert!(t.starts_with(PREFIX));
        assert_eq!(k.verify(&t, 999), Ok(c.clone()));
        assert_eq!(k.verify(&t, 1_000), Err(TokenError::Expired(1_000)));
        assert_eq!(
            TokenKey::new([8; 32]).verify(&t, 0),
            Err(TokenError::BadSignature)
        );
        // Another payload under the same tag.
        let other = k.sign(&Claims::new("t_b", None, 1_000));
        let (_, tag) = t.rsplit_once('.').unwrap();
        let (head, _) = other.rsplit_once('.').unwrap();
        assert_eq!(
            k.verify(&format!("{head}.{tag}"), 0),
            Err(TokenError::BadSignature)
        );
        for bad in [
            "",
            "tkv1.",
            "tkv1.a",
            "tkv1.a.b",
            "x.y.z",
            &"a".repeat(5000),
        ] {
            assert!(k.verify(bad, 0).is_err(), "{bad}");
        }
        assert_ne!(c.jti, Claims::new("t_a", None, 1).jti);
    }
}
