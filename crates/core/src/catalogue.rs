//! The built-in event catalogue (docs/events.md): required payload fields per type, and risk levels.
//!
//! Types outside the catalogue that match the `event_type` pattern carry a free-form payload.
//! Types trailkeep writes itself (`approval.*`, `review.*`, `retention.*`, `audit.read`,
//! `sink.*`, `log.*`) are refused from clients so that nobody can forge the log's own records.

use crate::Issue;
use serde_json::{Map, Value};

/// Risk level of an event type; drives default alert rules and sink filters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Low,
    Medium,
    High,
}

/// The catalogue's types above [`Risk::Low`], with their risk: the one list [`risk_of`] reads,
/// and what an alert rule filtering on risk turns into a type filter (a delivery loop then
/// reads only those types from the log).
pub const RATED_TYPES: [(&str, Risk); 11] = [
    ("prompt.update", Risk::High),
    ("impersonation.start", Risk::High),
    ("impersonation.end", Risk::High),
    ("killswitch.embed.disable", Risk::High),
    ("killswitch.embed.enable", Risk::High),
    ("policy.update", Risk::Medium),
    ("threshold.update", Risk::Medium),
    ("billing.plan.change", Risk::Medium),
    ("billing.quota.override", Risk::Medium),
    ("billing.grace.start", Risk::Medium),
    ("billing.grace.end", Risk::Medium),
];

/// Risk of a type: from the catalogue ([`RATED_TYPES`]), `Low` for everything else.
pub fn risk_of(event_type: &str) -> Risk {
    RATED_TYPES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map_or(Risk::Low, |&(_, r)| r)
}

/// The catalogue's types of a risk level above `Low` (every other type is `Low`).
pub fn types_of_risk(risk: Risk) -> impl Iterator<Item = &'static str> {
    RATED_TYPES
        .iter()
        .filter(move |(_, r)| *r == risk)
        .map(|&(t, _)| t)
}

/// Whether a type is reserved for events trailkeep writes itself.
pub fn is_reserved(event_type: &str) -> bool {
    event_type == "audit.read"
        || ["approval.", "review.", "retention.", "sink.", "log."]
            .iter()
            .any(|p| event_type.starts_with(p))
}

/// Read access to one JSON value, as the payload checks need it. Implemented for
/// `serde_json::Value` (the reference path) and for the ingest fast path's borrowed tree
/// (`crate::json`), so both run this one implementation of docs/events.md.
pub(crate) trait JsonValue<'v>: Copy {
    type Object: JsonObject<'v, Value = Self>;
    /// The string, if the value is one.
    fn as_str(self) -> Option<&'v str>;
    /// The value if it is a non-negative integer as serde_json reads it (`PosInt`).
    fn as_u64(self) -> Option<u64>;
    /// The object, if the value is one.
    fn as_object(self) -> Option<Self::Object>;
}

/// Read access to one JSON object (keys unique: the last of duplicates, as serde_json keeps).
pub(crate) trait JsonObject<'v>: Copy {
    type Value: JsonValue<'v, Object = Self>;
    /// The member `key`.
    fn get(self, key: &str) -> Option<Self::Value>;
}

impl<'v> JsonValue<'v> for &'v Value {
    type Object = &'v Map<String, Value>;
    fn as_str(self) -> Option<&'v str> {
        Value::as_str(self)
    }
    fn as_u64(self) -> Option<u64> {
        Value::as_u64(self)
    }
    fn as_object(self) -> Option<Self::Object> {
        Value::as_object(self)
    }
}

impl<'v> JsonObject<'v> for &'v Map<String, Value> {
    type Value = &'v Value;
    fn get(self, key: &str) -> Option<&'v Value> {
        Map::get(self, key)
    }
}

/// Collects issues for one event's payload, with paths rooted at `payload`.
struct Check<'a> {
    index: usize,
    issues: &'a mut Vec<Issue>,
}

impl Check<'_> {
    fn issue(&mut self, path: &str, msg: impl Into<String>) {
        self.issues.push(Issue::new(self.index, path, msg));
    }

    fn field<'v, O: JsonObject<'v>>(&mut self, obj: O, base: &str, key: &str) -> Option<O::Value> {
        match obj.get(key) {
            Some(v) => Some(v),
            None => {
                self.issue(&format!("{base}.{key}"), "required field is missing");
                None
            }
        }
    }

    fn string<'v, O: JsonObject<'v>>(
        &mut self,
        obj: O,
        base: &str,
        key: &str,
        non_empty: bool,
    ) -> Option<&'v str> {
        let v = self.field(obj, base, key)?;
        match v.as_str() {
            Some(s) if non_empty && s.trim().is_empty() => {
                self.issue(&format!("{base}.{key}"), "expected a non-empty string");
                None
            }
            Some(s) => Some(s),
            None => {
                let want = if non_empty {
                    "expected a non-empty string"
                } else {
                    "expected a string"
                };
                self.issue(&format!("{base}.{key}"), want);
                None
            }
        }
    }

    fn object<'v, O: JsonObject<'v>>(&mut self, obj: O, base: &str, key: &str) -> Option<O> {
        let v = self.field(obj, base, key)?;
        match v.as_object() {
            Some(o) => Some(o),
            None => {
                self.issue(&format!("{base}.{key}"), "expected an object");
                None
            }
        }
    }

    fn sha256<'v, O: JsonObject<'v>>(&mut self, obj: O, base: &str, key: &str) {
        if let Some(s) = self.string(obj, base, key, false) {
            if !is_sha256(s) {
                self.issue(&format!("{base}.{key}"), "expected sha256:<64 hex>");
            }
        }
    }

    fn count<'v, O: JsonObject<'v>>(&mut self, obj: O, base: &str, key: &str, required: bool) {
        match obj.get(key) {
            None if !required => {}
            None => self.issue(&format!("{base}.{key}"), "required field is missing"),
            Some(v) => {
                if v.as_u64().is_none() {
                    self.issue(&format!("{base}.{key}"), "expected an integer ≥ 0");
                }
            }
        }
    }

    fn one_of<'v, O: JsonObject<'v>>(
        &mut self,
        obj: O,
        base: &str,
        key: &str,
        allowed: &[&str],
    ) -> Option<&'v str> {
        let s = self.string(obj, base, key, false)?;
        if allowed.contains(&s) {
            Some(s)
        } else {
            self.issue(
                &format!("{base}.{key}"),
                format!("expected one of: {}", allowed.join(", ")),
            );
            None
        }
    }
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn is_sha256(s: &str) -> bool {
    s.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// A DNS hostname: dot-separated labels of letters, digits, `-` and `_` (seen in real crawl
/// targets), each 1–63 bytes and not starting or ending with `-`; at most 253 bytes.
pub fn is_hostname(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Checks a catalogue type's payload. Returns nothing for types outside the catalogue.
pub fn check_payload(
    index: usize,
    event_type: &str,
    tenant_id: &str,
    p: &Map<String, Value>,
    issues: &mut Vec<Issue>,
) {
    check_payload_in(index, event_type, tenant_id, p, issues)
}

/// [`check_payload`] over any JSON representation.
pub(crate) fn check_payload_in<'v, O: JsonObject<'v>>(
    index: usize,
    event_type: &str,
    tenant_id: &str,
    p: O,
    issues: &mut Vec<Issue>,
) {
    let mut c = Check { index, issues };
    let b = "payload";
    match event_type {
        "prompt.update" => {
            c.string(p, b, "prompt_id", false);
            if let Some(before) = c.object(p, b, "before") {
                c.sha256(before, "payload.before", "prompt_hash");
            }
            if let Some(after) = c.object(p, b, "after") {
                c.sha256(after, "payload.after", "prompt_hash");
            }
            c.string(p, b, "editor", false);
            c.string(p, b, "reason", true);
        }
        "crawl.run" => {
            if let Some(d) = c.string(p, b, "domain", false) {
                if !is_hostname(d) {
                    c.issue(
                        "payload.domain",
                        "expected a hostname such as docs.example.com",
                    );
                }
            }
            c.string(p, b, "run_id", false);
            c.count(p, b, "pages_crawled", true);
            c.count(p, b, "pages_failed", true);
            c.one_of(p, b, "status", &["success", "failure"]);
            c.one_of(p, b, "trigger", &["schedule", "manual", "indexnow"]);
        }
        "policy.update" | "threshold.update" => {
            c.string(p, b, "setting", false);
            c.field(p, b, "before");
            c.field(p, b, "after");
            c.string(p, b, "justification", true);
        }
        "impersonation.start" => {
            for k in ["impersonator", "impersonated", "session_id", "reason"] {
                c.string(p, b, k, true);
            }
        }
        "impersonation.end" => {
            c.string(p, b, "session_id", false);
            c.count(p, b, "actions_taken", false);
        }
        "billing.plan.change"
        | "billing.quota.override"
        | "billing.grace.start"
        | "billing.grace.end" => {
            c.object(p, b, "before");
            c.object(p, b, "after");
            c.string(p, b, "reason", false);
        }
        "killswitch.embed.disable" | "killswitch.embed.enable" => {
            c.string(p, b, "target", false);
            let scope = c.one_of(p, b, "scope", &["tenant", "global"]);
            c.string(p, b, "reason", true);
            if scope == Some("global") && tenant_id != crate::GLOBAL_TENANT {
                c.issue(
                    "tenant_id",
                    "a kill switch with scope \"global\" must be sent with tenant_id \"_global\"",
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_types() {
        for t in [
            "approval.request",
            "review.signoff",
            "retention.purge",
            "audit.read",
            "sink.failed",
            "log.restored",
            "log.key_rotated",
            "log.checkpoint_refused",
        ] {
            assert!(is_reserved(t), "{t}");
        }
        for t in [
            "audit.reader",
            "approvals.x",
            "prompt.update",
            "reviewer.x",
            "login.success",
            "logs.x",
        ] {
            assert!(!is_reserved(t), "{t}");
        }
    }

    #[test]
    fn risk_levels() {
        assert_eq!(risk_of("prompt.update"), Risk::High);
        assert_eq!(risk_of("billing.grace.end"), Risk::Medium);
        assert_eq!(risk_of("crawl.run"), Risk::Low);
        assert_eq!(risk_of("prompt.update.x"), Risk::Low);
        assert_eq!(types_of_risk(Risk::High).count(), 5);
        assert_eq!(types_of_risk(Risk::Low).count(), 0);
        for (t, r) in RATED_TYPES {
            assert_eq!(risk_of(t), r, "{t}");
        }
    }

    #[test]
    fn hostnames() {
        assert!(is_hostname("help.t_0000.com"));
        assert!(is_hostname("localhost"));
        assert!(!is_hostname("-bad.com"));
        assert!(!is_hostname("a..b"));
        assert!(!is_hostname("http://x.com"));
        assert!(!is_hostname(""));
    }

    #[test]
    fn sha256_rule() {
        assert!(is_sha256(&format!("sha256:{}", "a".repeat(64))));
        assert!(!is_sha256(&format!("sha256:{}", "A".repeat(64))));
        assert!(!is_sha256(&format!("sha256:{}", "a".repeat(63))));
        assert!(!is_sha256(&"a".repeat(64)));
    }
}
