//! Validation of JSON bodies and query parameters against a Google API discovery document.
//!
//! A discovery document describes each request body as a schema (`type`, `format`,
//! `properties`, `items`, `additionalProperties`, `$ref`, `enum`) and each method's query
//! parameters. Google's front end decodes a body with the proto3 JSON mapping, so the rules
//! [`Schemas::validate`] applies follow it:
//!
//! - an unknown field name is an error (Google answers 400 "Unknown name");
//! - `type: integer` (`int32`, `uint32`) is a JSON number without a fraction, in range;
//! - `type: string` with `format: int64`/`uint64` is a decimal string, or a JSON integer;
//! - `type: number` is a JSON number (or `"NaN"`, `"Infinity"`, `"-Infinity"`);
//! - `format: google-datetime` is an RFC 3339 timestamp, `format: byte` is base64;
//! - an `enum` value is one of the listed names;
//! - `null` for a field means the field's default and is accepted; `null` inside an array
//!   or as a map value is not.
//!
//! Two rules are stricter than Google, because a sender that breaks them has a bug even when
//! Google lets it pass: fields marked output only (`readOnly`) and fields or parameters
//! marked `deprecated` are reported.
//!
//! Problems are reported with a JSON path (`$.cardsV2[0].card.header.title`) and say what
//! was expected.

use serde_json::{Map, Value};
use std::sync::OnceLock;
use time::format_description::well_known::Rfc3339;

/// The Google Chat API discovery document (`chat:v1`), trimmed to the `Message` schema and
/// the `spaces.messages.create` method (see `testdata/NOTICE`).
const CHAT_V1: &str = include_str!("../../testdata/chat.v1.json");

/// The id of the method that posts a message to a Chat space (what an incoming webhook is).
pub const CHAT_CREATE_MESSAGE: &str = "chat.spaces.messages.create";

/// The schemas and methods of one discovery document.
#[derive(Debug, Clone)]
pub struct Schemas {
    doc: Value,
}

impl Schemas {
    /// The vendored Google Chat discovery document (`testdata/chat.v1.json`), parsed once.
    pub fn chat() -> &'static Schemas {
        static CHAT: OnceLock<Schemas> = OnceLock::new();
        CHAT.get_or_init(|| {
            Schemas::from_discovery(CHAT_V1)
                .unwrap_or_else(|e| panic!("testdata/chat.v1.json is broken: {e}"))
        })
    }

    /// Schemas from the text of a discovery document (the whole document or a trimmed one:
    /// `schemas` is needed, `resources` and `parameters` for [`Schemas::validate_query`]).
    pub fn from_discovery(json: &str) -> Result<Schemas, String> {
        let doc: Value =
            serde_json::from_str(json).map_err(|e| format!("not a JSON document: {e}"))?;
        if !doc.get("schemas").is_some_and(Value::is_object) {
            return Err("the document has no `schemas` object".into());
        }
        Ok(Schemas { doc })
    }

    /// The document's `revision` (a date, `20261107`), to say which schema a check used.
    pub fn revision(&self) -> &str {
        self.doc["revision"].as_str().unwrap_or("")
    }

    /// Problems of `value` as the body of type `schema` (`"Message"`), each with its JSON
    /// path; empty when Google would take it.
    pub fn validate(&self, schema: &str, value: &Value) -> Vec<String> {
        let mut out = Vec::new();
        self.check_ref(schema, value, "$", &mut out);
        out
    }

    /// Problems of the query parameters of a call to the method `method_id`
    /// ([`CHAT_CREATE_MESSAGE`]): names neither the method nor the API's standard
    /// parameters (`key`, `alt`, ...) declare, values of the wrong type or outside an
    /// `enum`, a parameter given twice that is not `repeated`, a missing `required` query
    /// parameter, and deprecated parameters (Chat's `threadKey`: use the body's
    /// `thread.threadKey`).
    pub fn validate_query(&self, method_id: &str, query: &[(String, String)]) -> Vec<String> {
        let Some(method) = self.method(method_id) else {
            return vec![format!("the discovery document has no method {method_id}")];
        };
        let empty = Map::new();
        let own = method["parameters"].as_object().unwrap_or(&empty);
        let standard = self.doc["parameters"].as_object().unwrap_or(&empty);
        let mut out = Vec::new();
        let mut seen: Vec<&str> = Vec::new();
        for (name, value) in query {
            let param = own
                .get(name)
                .filter(|p| p["location"] == "query")
                .or_else(|| standard.get(name));
            let Some(param) = param else {
                out.push(format!(
                    "query parameter `{name}`: unknown to {method_id} (Google rejects unknown parameters)"
                ));
                continue;
            };
            if seen.contains(&name.as_str()) && param["repeated"] != Value::Bool(true) {
                out.push(format!("query parameter `{name}`: given more than once"));
            }
            seen.push(name);
            if param["deprecated"] == Value::Bool(true) {
                out.push(format!("query parameter `{name}`: deprecated"));
            }
            if let Some(problem) = check_param_value(param, value) {
                out.push(format!("query parameter `{name}`: {problem}"));
            }
        }
        for (name, param) in own {
            if param["location"] == "query"
                && param["required"] == Value::Bool(true)
                && !seen.contains(&name.as_str())
            {
                out.push(format!("query parameter `{name}`: required, missing"));
            }
        }
        out
    }

    /// The method with this `id`, anywhere under `resources`.
    fn method(&self, id: &str) -> Option<&Value> {
        fn find<'a>(resources: &'a Value, id: &str) -> Option<&'a Value> {
            for resource in resources.as_object()?.values() {
                if let Some(methods) = resource["methods"].as_object() {
                    if let Some(m) = methods.values().find(|m| m["id"] == id) {
                        return Some(m);
                    }
                }
                if let Some(m) = find(&resource["resources"], id) {
                    return Some(m);
                }
            }
            None
        }
        find(&self.doc["resources"], id)
    }

    fn check_ref(&self, name: &str, value: &Value, path: &str, out: &mut Vec<String>) {
        match self.doc["schemas"].get(name) {
            Some(schema) => self.check_node(schema, name, value, path, out),
            None => out.push(format!(
                "{path}: the schema names an unknown type {name} (the discovery document is incomplete)"
            )),
        }
    }

    /// Checks `value` against one schema node; `within` is the name of the schema the node
    /// belongs to, for messages.
    fn check_node(
        &self,
        node: &Value,
        within: &str,
        value: &Value,
        path: &str,
        out: &mut Vec<String>,
    ) {
        if let Some(name) = node["$ref"].as_str() {
            return self.check_ref(name, value, path, out);
        }
        let format = node["format"].as_str();
        match node["type"].as_str() {
            Some("object") => self.check_object(node, within, value, path, out),
            Some("array") => {
                let Some(items) = value.as_array() else {
                    return out.push(format!("{path}: expected an array, got {}", kind(value)));
                };
                let item_schema = &node["items"];
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    if item.is_null() {
                        out.push(format!("{item_path}: null is not allowed in an array"));
                    } else if item_schema.is_object() {
                        self.check_node(item_schema, within, item, &item_path, out);
                    }
                }
            }
            Some("string") => {
                if let Some(problem) = check_string(format, value) {
                    return out.push(format!("{path}: {problem}"));
                }
                if let (Some(allowed), Some(s)) = (node["enum"].as_array(), value.as_str()) {
                    if !allowed.iter().any(|a| a == s) {
                        out.push(format!(
                            "{path}: {s:?} is not one of {}",
                            list(allowed.iter().filter_map(Value::as_str))
                        ));
                    }
                }
            }
            Some("integer") => {
                if let Some(problem) = check_integer(format, value) {
                    out.push(format!("{path}: {problem}"));
                }
            }
            Some("number") => {
                let special = matches!(value.as_str(), Some("NaN" | "Infinity" | "-Infinity"));
                if !value.is_number() && !special {
                    out.push(format!("{path}: expected a number, got {}", kind(value)));
                }
            }
            Some("boolean") if !value.is_boolean() => {
                out.push(format!(
                    "{path}: expected true or false, got {}",
                    kind(value)
                ));
            }
            // `any`, or a node without a type: anything goes.
            _ => {}
        }
    }

    fn check_object(
        &self,
        node: &Value,
        within: &str,
        value: &Value,
        path: &str,
        out: &mut Vec<String>,
    ) {
        let Some(fields) = value.as_object() else {
            return out.push(format!(
                "{path}: expected an object ({within}), got {}",
                kind(value)
            ));
        };
        let properties = node["properties"].as_object();
        let additional = node["additionalProperties"]
            .as_object()
            .map(|_| &node["additionalProperties"]);
        for (name, field) in fields {
            let field_path = format!("{path}.{name}");
            if let Some(prop) = properties.and_then(|p| p.get(name)) {
                if prop["readOnly"] == Value::Bool(true) {
                    out.push(format!(
                        "{field_path}: output only; a client does not send it"
                    ));
                }
                if prop["deprecated"] == Value::Bool(true) {
                    out.push(format!("{field_path}: deprecated"));
                }
                if !field.is_null() {
                    self.check_node(prop, within, field, &field_path, out);
                }
            } else if let Some(additional) = additional {
                let entry_path = format!("{path}[{name:?}]");
                if field.is_null() {
                    out.push(format!("{entry_path}: null is not allowed as a map value"));
                } else {
                    self.check_node(additional, within, field, &entry_path, out);
                }
            } else {
                let mut problem = format!(
                    "{field_path}: unknown field of {within} (Google rejects unknown field names)"
                );
                let camel = lower_camel(name);
                if camel != *name && properties.is_some_and(|p| p.contains_key(&camel)) {
                    problem.push_str(&format!("; the JSON name is `{camel}`"));
                }
                out.push(problem);
            }
        }
    }
}

/// Problems of a query parameter's value for its declared type, if any.
fn check_param_value(param: &Value, value: &str) -> Option<String> {
    match param["type"].as_str() {
        Some("boolean") if value != "true" && value != "false" => {
            Some(format!("expected true or false, got {value:?}"))
        }
        Some("integer") => match value.parse::<i64>() {
            Ok(n) => check_integer(param["format"].as_str(), &Value::from(n)),
            Err(_) => Some(format!("expected an integer, got {value:?}")),
        },
        _ => {
            let allowed = param["enum"].as_array()?;
            (!allowed.iter().any(|a| a == value)).then(|| {
                format!(
                    "{value:?} is not one of {}",
                    list(allowed.iter().filter_map(Value::as_str))
                )
            })
        }
    }
}

fn check_string(format: Option<&str>, value: &Value) -> Option<String> {
    if let (Some(f @ ("int64" | "uint64")), Some(n)) = (format, value.as_number()) {
        let ok = if f == "int64" {
            n.as_i64().is_some()
        } else {
            n.as_u64().is_some()
        };
        return (!ok).then(|| format!("expected an {f}, got {n}"));
    }
    let Some(s) = value.as_str() else {
        return Some(match format {
            Some(f @ ("int64" | "uint64")) => {
                format!(
                    "expected an {f} (a decimal string or a number), got {}",
                    kind(value)
                )
            }
            _ => format!("expected a string, got {}", kind(value)),
        });
    };
    match format {
        Some("int64") if s.parse::<i64>().is_err() => {
            Some(format!("expected an int64 as a decimal string, got {s:?}"))
        }
        Some("uint64") if s.parse::<u64>().is_err() => {
            Some(format!("expected a uint64 as a decimal string, got {s:?}"))
        }
        Some("google-datetime") if time::OffsetDateTime::parse(s, &Rfc3339).is_err() => Some(
            format!("expected an RFC 3339 timestamp (2024-05-01T12:00:00Z), got {s:?}"),
        ),
        Some("byte") if !is_base64(s) => Some(format!("expected base64, got {s:?}")),
        _ => None,
    }
}

fn check_integer(format: Option<&str>, value: &Value) -> Option<String> {
    let expected = format.unwrap_or("integer");
    let Some(n) = value.as_number() else {
        return Some(format!(
            "expected an {expected} number, got {}",
            kind(value)
        ));
    };
    let Some(i) = n.as_i64().map(i128::from).or(n.as_u64().map(i128::from)) else {
        return Some(format!(
            "expected an {expected}, got {n} (not a whole number)"
        ));
    };
    let (lo, hi) = match format {
        Some("uint32") => (0, u32::MAX as i128),
        Some("int64") => (i64::MIN as i128, i64::MAX as i128),
        Some("uint64") => (0, u64::MAX as i128),
        _ => (i32::MIN as i128, i32::MAX as i128),
    };
    (!(lo..=hi).contains(&i)).then(|| format!("{n} is out of range for {expected}"))
}

/// Base64 in the standard or URL-safe alphabet, padded or not (Google takes both).
fn is_base64(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    s.len() - body.len() <= 2
        && body.len() % 4 != 1
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_'))
}

/// `cards_v2` → `cardsV2`: the proto field name's JSON name.
fn lower_camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    items.collect::<Vec<_>>().join(", ")
}
