//! `GET /openapi.json`: the document covers every route the router is built from, is OpenAPI
//! 3.1, and documents each operation's error answers with the error body. (The live server's
//! answers are checked against it by `scripts/schemathesis.sh`.)

use crate::common::*;
use axum::http::Method;
use serde_json::Value;
use std::collections::BTreeSet;

async fn document(api: &Api) -> Value {
    let r = api
        .request(Method::GET, "/openapi.json", None, None, Vec::new())
        .await;
    r.expect(200);
    let ct = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert_eq!(ct, "application/json");
    r.json()
}

/// Whether an operation asks for a credential: an API key (`bearer`) or a viewer token
/// (`viewer_token`, the `token` query parameter of the viewer's endpoints).
fn secured(op: &Value) -> bool {
    op["security"].as_array().is_some_and(|s| {
        s.iter()
            .any(|r| r.get("bearer").is_some() || r.get("viewer_token").is_some())
    })
}

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// Every `(method, path)` operation of the document.
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths is an object") {
        for (method, op) in item.as_object().expect("a path item is an object") {
            if METHODS.contains(&method.as_str()) {
                out.push((method.clone(), path.clone(), op));
            }
        }
    }
    out
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            let target = doc
                .pointer(pointer)
                .unwrap_or_else(|| panic!("dangling $ref {r}"));
            resolve(doc, target)
        }
        None => v,
    }
}

/// Every `$ref` anywhere in `v`.
fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match (k.as_str(), x) {
                    ("$ref", Value::String(s)) => out.push(s),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_route_of_the_router_is_documented_and_nothing_else() {
    let api = Api::new().await;
    let doc = document(&api).await;
    let documented: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(m, p, _)| (m, p))
        .collect();
    let routed: BTreeSet<(String, String)> = trailkeep_server::routes()
        .iter()
        .map(|r| (r.method.as_str().to_ascii_lowercase(), r.path.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "routes of the router missing from /openapi.json (add #[utoipa::path] to the handler \
         and list it in ApiDoc's paths): {missing:?}"
    );
    let stale: Vec<_> = documented.difference(&routed).collect();
    assert!(
        stale.is_empty(),
        "documented operations that are no route: {stale:?}"
    );
    assert!(routed.len() >= 18, "{routed:?}");
}

#[tokio::test]
async fn document_is_openapi_3_1_with_bearer_auth_and_resolvable_refs() {
    let api = Api::new().await;
    let doc = document(&api).await;
    let version = doc["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "{version}");
    assert_eq!(doc["info"]["title"], "trailkeep");
    assert!(doc["info"]["version"]
        .as_str()
        .is_some_and(|v| !v.is_empty()));
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    let viewer = &doc["components"]["securitySchemes"]["viewer_token"];
    assert_eq!(viewer["type"], "apiKey", "{viewer}");
    assert_eq!(viewer["in"], "query", "{viewer}");
    assert_eq!(viewer["name"], "token", "{viewer}");
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        resolve(&doc, &serde_json::json!({ "$ref": r }));
    }
    // Operation ids are unique (client generators name methods after them).
    let ids: Vec<&str> = operations(&doc)
        .iter()
        .map(|(m, p, op)| {
            op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{m} {p} has no operationId"))
        })
        .collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
}

#[tokio::test]
async fn every_operation_documents_its_error_answers_with_the_error_body() {
    let api = Api::new().await;
    let doc = document(&api).await;
    let error_schema = serde_json::json!({"$ref": "#/components/schemas/Error"});
    let error = resolve(&doc, &error_schema);
    assert_eq!(
        error["required"],
        serde_json::json!(["error"]),
        "the error body: {error}"
    );
    let inner = resolve(&doc, &error["properties"]["error"]);
    let mut required: Vec<&str> = inner["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    required.sort();
    assert_eq!(required, ["code", "details", "message"], "{inner}");

    for (method, path, op) in operations(&doc) {
        let what = format!("{} {path}", method.to_uppercase());
        let responses = op["responses"].as_object().expect("responses");
        let statuses: BTreeSet<u16> = responses
            .keys()
            .map(|s| s.parse().unwrap_or_else(|_| panic!("{what}: status {s}")))
            .collect();
        assert!(
            statuses.iter().any(|s| (200..300).contains(s)),
            "{what}: no success answer"
        );
        let secured = secured(op);
        let mut needed = BTreeSet::new();
        if secured {
            needed.extend([401, 403, 429, 503]);
        }
        // Every operation refuses unknown or repeated query parameters.
        needed.insert(400);
        if op.get("requestBody").is_some() {
            needed.extend([413, 422]);
        }
        if path.contains("{event_id}") || path.contains("{session_id}") {
            needed.insert(404);
        }
        let absent: Vec<_> = needed.difference(&statuses).collect();
        assert!(
            absent.is_empty(),
            "{what}: undocumented statuses {absent:?}"
        );

        for (status, resp) in responses {
            let resp = resolve(&doc, resp);
            let code: u16 = status.parse().unwrap_or(0);
            if code < 400 {
                continue;
            }
            let content = resp["content"].as_object().unwrap_or_else(|| {
                panic!("{what} {status}: no content (every error has a JSON body)")
            });
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                ["application/json"],
                "{what} {status}"
            );
            assert_eq!(
                content["application/json"]["schema"], error_schema,
                "{what} {status}: not the error body"
            );
            if code == 429 {
                assert!(
                    resp["headers"].get("Retry-After").is_some(),
                    "{what} 429 without Retry-After"
                );
            }
        }
    }
}

/// The document's security matches the handlers: an operation that asks for a key answers 401
/// without one, and one that does not, does not.
#[tokio::test]
async fn documented_security_matches_what_the_routes_require() {
    let api = Api::new().await;
    let doc = document(&api).await;
    for (method, path, op) in operations(&doc) {
        let uri = path
            .replace("{event_id}", "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f")
            .replace("{tenant}", "t_0042")
            .replace("{session_id}", "imp_8812")
            .replace("{id}", "key_000000000000");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = api.request(m, &uri, None, Some(JSON), Vec::new()).await;
        let secured = secured(op);
        if secured {
            assert_error(&r, 401, "unauthorized");
        } else {
            assert_ne!(
                r.status.as_u16(),
                401,
                "{method} {path} wants a credential: {r:?}"
            );
        }
    }
}

#[tokio::test]
async fn unknown_endpoint_points_to_the_api_description() {
    let api = Api::new().await;
    let r = api.get(ADMIN, "/v1/nope").await;
    assert_error(&r, 404, "not_found");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("/openapi.json"), "{message}");
    assert!(!message.contains("SPEC"), "{message}");
}

/// Every `(name, schema)` of a parameter or object property anywhere in `v`.
fn named_schemas<'a>(v: &'a Value, out: &mut Vec<(&'a str, &'a Value)>) {
    match v {
        Value::Object(m) => {
            if let (Some(Value::String(name)), Some(schema)) = (m.get("name"), m.get("schema")) {
                out.push((name, schema));
            }
            if let Some(Value::Object(props)) = m.get("properties") {
                for (name, schema) in props {
                    out.push((name, schema));
                }
            }
            m.values().for_each(|x| named_schemas(x, out));
        }
        Value::Array(a) => a.iter().for_each(|x| named_schemas(x, out)),
        _ => {}
    }
}

/// The patterns written out in the attributes are the ones the code names, and the tenant
/// pattern accepts what the server accepts (spot checks against the validator).
#[tokio::test]
async fn tenant_and_event_type_patterns_are_one_and_match_the_validator() {
    use trailkeep_core::validate::is_tenant_id;
    use trailkeep_server::openapi::{EVENT_TYPE_PATTERN, TENANT_PATTERN};
    let api = Api::new().await;
    let doc = document(&api).await;
    let mut all = Vec::new();
    named_schemas(&doc, &mut all);
    let mut tenants = 0;
    for (name, schema) in &all {
        let Some(pattern) = schema.get("pattern").and_then(Value::as_str) else {
            continue;
        };
        match *name {
            "tenant" | "tenant_id" => {
                assert_eq!(pattern, TENANT_PATTERN, "{name}");
                tenants += 1;
            }
            "event_type" if !pattern.contains('*') => assert_eq!(pattern, EVENT_TYPE_PATTERN),
            _ => {}
        }
    }
    assert!(tenants >= 6, "tenant patterns found: {tenants}");
    // The pattern's shape: `_global` or a leading letter/digit then up to 127 of [A-Za-z0-9_.:-].
    for (t, ok) in [
        ("t_0042", true),
        ("_global", true),
        ("0", true),
        ("a:b.c-d_e", true),
        (&"a".repeat(128), true),
        (&"a".repeat(129), false),
        ("_other", false),
        ("-a", false),
        ("a b", false),
        ("", false),
    ] {
        assert_eq!(is_tenant_id(t), ok, "{t:?}");
    }
    assert!(TENANT_PATTERN.contains("{0,127}") && TENANT_PATTERN.contains("_global"));
}

/// The query parameters each operation documents are exactly the ones its route takes (the
/// others are refused), and a keyless route is documented without security.
#[tokio::test]
async fn documented_query_parameters_and_keyless_routes_match_the_route_table() {
    let api = Api::new().await;
    let doc = document(&api).await;
    for r in trailkeep_server::routes() {
        let method = r.method.as_str().to_ascii_lowercase();
        let op = &doc["paths"][r.path][&method];
        assert!(op.is_object(), "{method} {} undocumented", r.path);
        let documented: BTreeSet<String> = op["parameters"]
            .as_array()
            .map(|ps| {
                ps.iter()
                    .map(|p| resolve(&doc, p))
                    .filter(|p| p["in"] == "query")
                    .map(|p| p["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default();
        let taken: BTreeSet<String> = r.params.iter().map(|p| p.to_string()).collect();
        assert_eq!(documented, taken, "{method} {}", r.path);
        let secured = op["security"]
            .as_array()
            .is_some_and(|s| s.iter().any(|r| r.get("bearer").is_some()));
        // A keyless route reads no tenant's data (and is not audited); a route authenticated
        // otherwise than by a bearer key may be documented without security and still not be
        // keyless.
        assert!(
            !(secured && r.keyless),
            "{method} {}: keyless but documented with security",
            r.path
        );
    }
}
