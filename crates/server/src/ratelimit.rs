//! Per-key token-bucket rate limit (off unless configured). Over the limit: 429 with
//! `Retry-After`, and nothing of the request is processed.

use crate::ApiError;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

pub struct Limiter {
    rps: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    pub fn new(rps: f64, burst: f64) -> Limiter {
        Limiter {
            rps,
            burst: if burst > 0.0 { burst } else { rps.max(1.0) },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(&self, key_id: &str) -> Result<(), ApiError> {
        if self.rps <= 0.0 {
            return Ok(());
        }
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        let now = Instant::now();
        let entry = b.entry(key_id.to_string()).or_insert((self.burst, now));
        entry.0 = (entry.0 + now.duration_since(entry.1).as_secs_f64() * self.rps).min(self.burst);
        entry.1 = now;
        if entry.0 >= 1.0 {
            entry.0 -= 1.0;
            Ok(())
        } else {
            let wait = ((1.0 - entry.0) / self.rps).ceil().max(1.0) as u64;
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "rate limit of {} requests/s for this key exceeded; retry after {wait}s",
                    self.rps
                ),
            );
            e.retry_after = Some(wait);
            Err(e)
        }
    }
}
