//! Query-string parsing with errors that name the parameter.

use crate::ApiError;
use std::collections::HashMap;
use trailkeep_core::validate::{is_event_type, is_tenant_id};
use trailkeep_core::Timestamp;
use trailkeep_store::{Cursor, EventQuery, Order, TypeFilter};

pub type Params = HashMap<String, String>;

/// The query string as sent: every pair, in order (so a repeated parameter can be refused).
pub type RawParams = Vec<(String, String)>;

/// Parameters of `GET /v1/events`.
pub const EVENT_PARAMS: &[&str] = &[
    "tenant_id",
    "event_type",
    "actor",
    "since",
    "until",
    "session",
    "q",
    "limit",
    "cursor",
    "order",
    "from_seq",
];

/// Parameters of `GET /v1/stats`.
pub const STATS_PARAMS: &[&str] = &["tenant_id", "since", "until"];
/// Parameters of `GET /v1/tenants/{tenant}/proof/inclusion`.
pub const INCLUSION_PARAMS: &[&str] = &["seq", "tree_size"];
/// Parameters of `GET /v1/tenants/{tenant}/proof/consistency`.
pub const CONSISTENCY_PARAMS: &[&str] = &["from", "to"];
/// Parameters of `GET /v1/tenants/{tenant}/leaves`.
pub const LEAVES_PARAMS: &[&str] = &["start", "end"];

/// Checks a request's query string against the parameters its route takes (the route table's
/// `params`), before the handler runs: on every endpoint, a parameter it does not know or one
/// given twice is a 400 (see [`query_params`]).
pub fn check_query(uri: &axum::http::Uri, allowed: &[&str]) -> Result<(), ApiError> {
    if uri.query().is_none() {
        return Ok(());
    }
    query_params(axum::extract::Query::try_from_uri(uri), allowed).map(|_| ())
}

/// The query string, refusing parameters the endpoint does not know (a typo such as
/// `tenantid=` must not silently widen a listing to every tenant) and parameters given more
/// than once (docs/api.md#errors: which one would count is anyone's guess).
pub fn query_params(
    p: Result<axum::extract::Query<RawParams>, axum::extract::rejection::QueryRejection>,
    allowed: &[&str],
) -> Result<Params, ApiError> {
    let axum::extract::Query(pairs) =
        p.map_err(|_| ApiError::bad_request("the query string could not be parsed"))?;
    let mut params = Params::with_capacity(pairs.len());
    for (k, v) in pairs {
        if !allowed.contains(&k.as_str()) {
            let takes = if allowed.is_empty() {
                "this endpoint takes no query parameters".to_string()
            } else {
                format!("this endpoint takes: {}", allowed.join(", "))
            };
            return Err(ApiError::bad_request(format!(
                "unknown query parameter {:?}; {takes}",
                crate::audit::bounded(&k, 64).0
            )));
        }
        if params.contains_key(&k) {
            return Err(ApiError::bad_request(format!(
                "query parameter {k:?} is given more than once; give it once"
            )));
        }
        params.insert(k, v);
    }
    Ok(params)
}

/// A path segment, with a JSON error when it is not valid UTF-8.
pub fn path_param(
    p: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<String, ApiError> {
    p.map(|axum::extract::Path(s)| s)
        .map_err(|_| ApiError::bad_request("invalid path parameter: expected UTF-8 text"))
}

pub fn opt<'a>(p: &'a Params, k: &str) -> Option<&'a str> {
    p.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

pub fn time(p: &Params, k: &str) -> Result<Option<Timestamp>, ApiError> {
    opt(p, k)
        .map(|v| {
            Timestamp::parse(v).map_err(|m| ApiError::bad_request(format!("invalid {k}: {m}")))
        })
        .transpose()
}

/// `since` and `until`; `since` must come before `until` (the range `[since, until)` is
/// otherwise empty, most likely swapped by mistake).
pub fn time_range(p: &Params) -> Result<(Option<Timestamp>, Option<Timestamp>), ApiError> {
    let since = time(p, "since")?;
    let until = time(p, "until")?;
    if let (Some(s), Some(u)) = (since, until) {
        if s.nanos >= u.nanos {
            return Err(ApiError::bad_request(format!(
                "since ({}) must be before until ({}): the range [since, until) is empty",
                s.to_rfc3339(),
                u.to_rfc3339()
            )));
        }
    }
    Ok((since, until))
}

pub fn tenant(p: &Params) -> Result<Option<String>, ApiError> {
    match opt(p, "tenant_id") {
        Some(t) if !is_tenant_id(t) => {
            Err(ApiError::bad_request(format!("invalid tenant_id {t:?}")))
        }
        t => Ok(t.map(str::to_string)),
    }
}

pub fn u64_param(p: &Params, k: &str) -> Result<Option<u64>, ApiError> {
    opt(p, k)
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid {k}: expected a non-negative integer"))
            })
        })
        .transpose()
}

/// The filters of docs/api.md (tenant scope applied by the caller).
pub fn event_query(p: &Params) -> Result<EventQuery, ApiError> {
    let limit = match opt(p, "limit") {
        None => 100,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(
                    "invalid limit: expected an integer from 1 to 1000",
                ))
            }
        },
    };
    let order = match opt(p, "order") {
        None | Some("desc") => Order::Desc,
        Some("asc") => Order::Asc,
        Some(_) => return Err(ApiError::bad_request("invalid order: expected asc or desc")),
    };
    let event_type = match opt(p, "event_type") {
        None => None,
        Some(t) => match t.strip_suffix('*') {
            Some("") => None,
            Some(prefix) if prefix.ends_with('.') && is_event_type(&prefix[..prefix.len() - 1]) => {
                Some(TypeFilter::Prefix(prefix.to_string()))
            }
            None if is_event_type(t) => Some(TypeFilter::Exact(t.to_string())),
            _ => {
                return Err(ApiError::bad_request(
                    "invalid event_type: expected a type (prompt.update) or a prefix wildcard (billing.*)",
                ))
            }
        },
    };
    let cursor = opt(p, "cursor")
        .map(Cursor::decode)
        .transpose()
        .map_err(ApiError::bad_request)?;
    if let Some(c) = &cursor {
        if c.order != order {
            return Err(ApiError::bad_request("the cursor belongs to a listing in the other order; keep order unchanged while paging"));
        }
    }
    let (since, until) = time_range(p)?;
    Ok(EventQuery {
        tenant_id: tenant(p)?,
        event_type,
        actor: opt(p, "actor").map(str::to_string),
        session: opt(p, "session").map(str::to_string),
        since,
        until,
        q: opt(p, "q").map(|q| q.to_lowercase()),
        limit,
        order,
        cursor,
    })
}
