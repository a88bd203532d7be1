//! The I-JSON number rule (RFC 7493) that keeps canonical JSON one-to-one.
//!
//! Integers must lie within ±(2^53−1). serde_json reads an integer literal too large for 64 bits
//! as a float, so a float whose value is a whole number beyond that range is refused as well
//! (`1e20` included): such values cannot be told apart from integer literals that would collapse
//! onto the same canonical bytes. Other finite floats are accepted.

use serde_json::{Number, Value};

/// Largest integer magnitude that survives IEEE-754 double round trips.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Checks one number; returns why it is refused.
pub fn check_number(n: &Number) -> Result<(), String> {
    if let Some(u) = n.as_u64() {
        if u > MAX_SAFE_INTEGER {
            return Err(format!(
                "integer {u} is outside ±(2^53−1); send large numbers as strings"
            ));
        }
    } else if let Some(i) = n.as_i64() {
        if i.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(format!(
                "integer {i} is outside ±(2^53−1); send large numbers as strings"
            ));
        }
    } else if let Some(f) = n.as_f64() {
        if !f.is_finite() {
            return Err("number is not finite".into());
        }
        if f.fract() == 0.0 && f.abs() > MAX_SAFE_INTEGER as f64 {
            return Err(format!(
                "number {n} is a whole number outside ±(2^53−1); send large numbers as strings"
            ));
        }
    }
    Ok(())
}

/// Walks a value, reporting each bad number and the payload depth limit.
///
/// `on_issue(path, message)` is called for every problem found; `depth` is the nesting depth of
/// `v` itself (the payload object is depth 1).
pub fn walk(
    v: &Value,
    path: &mut String,
    depth: usize,
    max_depth: usize,
    on_issue: &mut dyn FnMut(&str, String),
) {
    match v {
        Value::Number(n) => {
            if let Err(m) = check_number(n) {
                on_issue(path, m);
            }
        }
        Value::Array(items) => {
            if depth > max_depth {
                on_issue(path, format!("nesting deeper than {max_depth} levels"));
                return;
            }
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                walk(item, path, depth + 1, max_depth, on_issue);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            if depth > max_depth {
                on_issue(path, format!("nesting deeper than {max_depth} levels"));
                return;
            }
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                walk(item, path, depth + 1, max_depth, on_issue);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Number {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn boundaries() {
        assert!(check_number(&n("9007199254740991")).is_ok());
        assert!(check_number(&n("-9007199254740991")).is_ok());
        assert!(check_number(&n("9007199254740992")).is_err());
        assert!(check_number(&n("-9007199254740992")).is_err());
        assert!(check_number(&n("18446744073709551615")).is_err());
        assert!(check_number(&n("100000000000000000000000")).is_err());
        assert!(check_number(&n("1e20")).is_err());
        assert!(check_number(&n("0.5")).is_ok());
        assert!(check_number(&n("1.5e300")).is_err() == (1.5e300f64.fract() == 0.0));
        assert!(check_number(&n("-0.0")).is_ok());
    }
}
