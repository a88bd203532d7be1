//! Strict parsing of one event for the full validator: I-JSON (RFC 7493) on top of JSON.
//!
//! Besides what serde_json refuses, this refuses duplicate member names (serde_json keeps the
//! last; a gateway reading the first would see another event) and numbers that underflow to 0
//! (`1e-400`, refused like `1e400`). Every error names the JSON path where it happened
//! (`payload.items[2].price`), written as [`crate::numbers::walk`] writes paths.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::cell::{Cell, RefCell};
use std::fmt;

/// Why a text was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// The path of the value (or member) in error; empty for the whole text.
    pub path: String,
    pub message: String,
}

enum Seg {
    Key(String),
    Index(usize),
}

#[derive(Default)]
struct Ctx {
    /// The path of the value being read. Segments are popped only after their value was read,
    /// so after an error it still names where the error happened.
    path: RefCell<Vec<Seg>>,
    duplicate: Cell<bool>,
    /// The paths of the values read as a floating-point 0, in document order.
    zeros: RefCell<Vec<String>>,
}

impl Ctx {
    fn path(&self) -> String {
        let mut out = String::new();
        for s in self.path.borrow().iter() {
            match s {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

/// Parses `text` as one JSON value under the I-JSON rules above.
pub fn parse(text: &str) -> Result<Value, JsonError> {
    let ctx = Ctx::default();
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Seed(&ctx)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    let value = match value {
        Ok(v) => v,
        Err(e) => {
            let message = if ctx.duplicate.get() {
                "duplicate member name: an object may hold each name once (I-JSON, RFC 7493)"
                    .to_string()
            } else {
                format!("not valid JSON: {e}")
            };
            return Err(JsonError {
                path: ctx.path(),
                message,
            });
        }
    };
    let zeros = ctx.zeros.into_inner();
    if !zeros.is_empty() {
        if let Some((path, lit)) = zero_literals(text)
            .into_iter()
            .zip(zeros)
            .find(|(lit, _)| underflows(lit))
            .map(|(lit, path)| (path, lit))
        {
            return Err(JsonError {
                path,
                message: format!(
                    "number {lit} is too small to be represented (it would read as 0); send it as a string"
                ),
            });
        }
    }
    Ok(value)
}

/// Whether a number literal that reads as 0 has a non-zero digit in its mantissa.
fn underflows(lit: &str) -> bool {
    lit.bytes()
        .take_while(|b| !matches!(b, b'e' | b'E'))
        .any(|b| matches!(b, b'1'..=b'9'))
}

/// The number literals of a valid JSON text that serde_json reads as a floating-point 0 (every
/// literal with a value of 0 but `0` itself), in document order.
fn zero_literals(text: &str) -> Vec<&str> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < b.len() && matches!(b[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let lit = &text[start..i];
                if lit != "0" && lit.parse::<f64>().is_ok_and(|f| f == 0.0) {
                    out.push(lit);
                }
            }
            _ => i += 1,
        }
    }
    out
}

struct Seed<'c>(&'c Ctx);

impl<'de> DeserializeSeed<'de> for Seed<'_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Seed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        if v == 0.0 {
            self.0.zeros.borrow_mut().push(self.0.path());
        }
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("number is not finite"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            self.0.path.borrow_mut().push(Seg::Index(out.len()));
            let item = seq.next_element_seed(Seed(self.0))?;
            self.0.path.borrow_mut().pop();
            match item {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let duplicate = out.contains_key(&k);
            self.0.path.borrow_mut().push(Seg::Key(k.clone()));
            if duplicate {
                self.0.duplicate.set(true);
                return Err(de::Error::custom("duplicate member name"));
            }
            let v = map.next_value_seed(Seed(self.0))?;
            self.0.path.borrow_mut().pop();
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> (String, String) {
        let e = parse(text).unwrap_err();
        (e.path, e.message)
    }

    #[test]
    fn duplicates_are_refused_with_their_path() {
        let (p, m) = err(r#"{"payload": {"scope": "global", "scope": "tenant"}}"#);
        assert_eq!(p, "payload.scope");
        assert!(m.starts_with("duplicate member name"), "{m}");
        let (p, _) = err(r#"{"a": 1, "b": [{}, {"x": 1, "y": {}, "x": 2}]}"#);
        assert_eq!(p, "b[1].x");
        let (p, _) = err(r#"{"a": 1, "a": 1}"#);
        assert_eq!(p, "a");
        // The same name in different objects is fine.
        assert!(parse(r#"{"a": {"a": 1}, "b": [{"a": 1}, {"a": 2}]}"#).is_ok());
    }

    #[test]
    fn number_and_surrogate_errors_name_their_path() {
        let (p, m) = err(r#"{"payload": {"n": [1, 1e400]}}"#);
        assert_eq!(p, "payload.n[1]");
        assert!(m.contains("number out of range"), "{m}");
        let (p, m) = err(r#"{"payload": {"s": "\ud800"}}"#);
        assert_eq!(p, "payload.s");
        assert!(m.contains("escape") || m.contains("surrogate"), "{m}");
    }

    #[test]
    fn underflow_is_refused_and_zeros_are_not() {
        for (text, path) in [
            (r#"{"payload": {"x": 1e-400}}"#, "payload.x"),
            (r#"{"a": 0.0, "b": [-0, 0e5, -2.5E-999]}"#, "b[2]"),
        ] {
            let (p, m) = err(text);
            assert_eq!(p, path, "{text}");
            assert!(m.contains("too small"), "{m}");
        }
        assert!(parse(r#"{"a": 0.0, "b": [-0, 0e5, 0, "1e-400"], "c": 1e-300}"#).is_ok());
    }
}
