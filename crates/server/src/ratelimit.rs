//! Rate limits, token buckets over a monotonic clock. Over a limit: 429 with `Retry-After`, and
//! nothing of the request is processed.
//!
//! - Per API key ([`Limiter`], checked once a key is known): on by default, high enough never to
//!   bind a busy legitimate client (`limits.requests_per_second`, `limits.burst`).
//! - Per client address, on failed authentication ([`failed_auth_guard`]): every `401` takes a
//!   token from the address's bucket; an address without tokens gets `429` before its key is
//!   even looked at, so guessing keys is slow (`limits.failed_auth_per_second`,
//!   `limits.failed_auth_burst`).

use crate::{ApiError, AppState};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

/// Buckets are forgotten once full again, when the map holds more than this many.
const PRUNE_ABOVE: usize = 10_000;

/// Token buckets, one per `K`; `rate <= 0` turns them off.
pub struct Buckets<K> {
    rate: f64,
    burst: f64,
    map: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: Hash + Eq> Buckets<K> {
    pub fn new(rate: f64, burst: f64) -> Self {
        Buckets {
            rate,
            burst: if burst > 0.0 { burst } else { rate.max(1.0) },
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.rate > 0.0
    }

    /// Refills `key`'s bucket; then, with `take`, takes a token if there is one. `Err(wait)`
    /// (whole seconds until a token is back) when the bucket is empty.
    fn step<Q>(&self, key: &Q, take: bool) -> Result<(), u64>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if !self.enabled() {
            return Ok(());
        }
        let Ok(mut map) = self.map.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        if map.len() > PRUNE_ABOVE && !map.contains_key(key) {
            let (rate, burst) = (self.rate, self.burst);
            map.retain(|_, (level, at)| {
                *level + now.duration_since(*at).as_secs_f64() * rate < burst
            });
        }
        // Looked up by reference: no allocation for a known key.
        if !map.contains_key(key) {
            map.insert(key.to_owned(), (self.burst, now));
        }
        let Some(entry) = map.get_mut(key) else {
            return Ok(());
        };
        entry.0 = (entry.0 + now.duration_since(entry.1).as_secs_f64() * self.rate).min(self.burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            if take {
                entry.0 -= 1.0;
            }
            Ok(())
        } else {
            Err(((1.0 - entry.0) / self.rate).ceil().max(1.0) as u64)
        }
    }

    /// Takes a token.
    pub fn take<Q>(&self, key: &Q) -> Result<(), u64>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.step(key, true)
    }

    /// Whether a token is there, without taking it.
    pub fn peek<Q>(&self, key: &Q) -> Result<(), u64>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        self.step(key, false)
    }
}

/// The per-key request limit.
pub struct Limiter {
    buckets: Buckets<String>,
}

impl Limiter {
    pub fn new(rps: f64, burst: f64) -> Limiter {
        Limiter {
            buckets: Buckets::new(rps, burst),
        }
    }

    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        self.buckets.take(key_id).map_err(|wait| {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "rate limit of {} requests/s for this key exceeded; retry after {wait}s",
                    self.buckets.rate
                ),
            );
            e.retry_after = Some(wait);
            e
        })
    }
}

/// Middleware: refuses requests from an address that failed authentication too often, and
/// counts its `401` answers. Requests without a known peer address (in-process tests) pass.
pub async fn failed_auth_guard(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let limit = &state.failed_auth;
    let ip: Option<IpAddr> = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let Some(ip) = ip.filter(|_| limit.enabled()) else {
        return next.run(req).await;
    };
    if let Err(wait) = limit.peek(&ip) {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "too many requests with a missing or wrong API key from this address; retry after {wait}s"
            ),
        );
        e.retry_after = Some(wait);
        return e.into_response();
    }
    let resp = next.run(req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        let _ = limit.take(&ip);
    }
    resp
}
