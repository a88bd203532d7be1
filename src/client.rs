//! A small HTTP client for the CLI's server commands, with retries on 429/503 and connection
//! failures (honouring `Retry-After`).
//!
//! When the server cannot be reached the client says so on stderr at the first failure (where,
//! why, and for how long it keeps trying), and again when the server answers after that. It
//! gives up after [`REACH_FOR`], except in [`Client::persistent`] mode (`tail`), which keeps
//! trying.

use crate::ServerArgs;
use anyhow::{anyhow, bail, Context, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long a request keeps trying to reach a server that does not answer.
pub const REACH_FOR: Duration = Duration::from_secs(20);
/// The longest wait between two connection attempts.
const REACH_EVERY: Duration = Duration::from_secs(2);
/// Attempts for a request the server answers with 429 or 502–504.
const BUSY_ATTEMPTS: u32 = 8;

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    /// Keep trying to reach the server forever (`tail`).
    persistent: bool,
    /// The server could not be reached at the last attempt (and the user was told).
    down: AtomicBool,
}

/// A failed request whose status says retrying will not help.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

impl Refused {
    /// The error envelope (`{"error": {"code", "message", "details"}}`), if the body is one.
    pub fn envelope(&self) -> Option<serde_json::Value> {
        let v: serde_json::Value = serde_json::from_str(&self.body).ok()?;
        v.get("error").filter(|e| e.is_object()).cloned()
    }

    /// The server's message, without the details.
    pub fn message(&self) -> String {
        match self.envelope() {
            Some(e) => e["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| format!("server answered {}", self.status)),
            None if self.body.trim().is_empty() => format!("server answered {}", self.status),
            None => format!(
                "server answered {}: {}",
                self.status,
                self.body.trim().chars().take(500).collect::<String>()
            ),
        }
    }

    /// The envelope's details (`index`, `path`, `message`).
    pub fn details(&self) -> Vec<serde_json::Value> {
        self.envelope()
            .and_then(|e| e["details"].as_array().cloned())
            .unwrap_or_default()
    }
}

/// `path: message` of one error detail.
pub fn detail_text(d: &serde_json::Value) -> String {
    let path = d["path"].as_str().unwrap_or("");
    let msg = d["message"].as_str().unwrap_or("");
    if path.is_empty() {
        msg.to_string()
    } else {
        format!("{path}: {msg}")
    }
}

impl std::fmt::Display for Refused {
    /// `<message> (HTTP <status> <code>)`, then one `  path: message` line per detail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let code = self
            .envelope()
            .and_then(|e| e["code"].as_str().map(str::to_string));
        write!(f, "{}", self.message())?;
        if self.envelope().is_some() {
            match code {
                Some(c) => write!(f, " (HTTP {} {c})", self.status)?,
                None => write!(f, " (HTTP {})", self.status)?,
            }
        }
        for d in self.details().iter().take(50) {
            write!(f, "\n  {}", detail_text(d))?;
        }
        Ok(())
    }
}
impl std::error::Error for Refused {}

/// The server could not be reached for [`REACH_FOR`].
#[derive(Debug)]
pub struct Unreachable {
    pub base: String,
    /// The last transport error's innermost cause.
    pub why: String,
    pub attempts: u32,
    pub secs: f64,
    /// Some attempt failed after the connection was made: the server may have received (and
    /// acted on) the request.
    pub maybe_delivered: bool,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cannot reach the server at {} ({}); gave up after {} attempts in {:.0} s. Is \
             `trailkeep serve` running there? Check --url (or TRAILKEEP_URL)",
            self.base, self.why, self.attempts, self.secs
        )
    }
}
impl std::error::Error for Unreachable {}

/// The innermost cause of a transport error (e.g. "Connection refused (os error 111)").
fn root_cause(e: &reqwest::Error) -> String {
    let mut cur: &dyn std::error::Error = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Client> {
        let key = args.key.clone().ok_or_else(|| {
            anyhow!("no API key: set TRAILKEEP_KEY (preferred: a --key value is visible in `ps`) or pass --key")
        })?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(5))
            .build()?;
        Ok(Client {
            http,
            base: args.url.trim_end_matches('/').to_string(),
            key,
            persistent: false,
            down: AtomicBool::new(false),
        })
    }

    /// Keep trying to reach the server for as long as it takes (saying so once).
    pub fn persistent(mut self) -> Client {
        self.persistent = true;
        self
    }

    /// Sends, retrying 429 and 502–504 (up to [`BUSY_ATTEMPTS`] tries) and transport errors
    /// (for [`REACH_FOR`], or forever when persistent).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let mut busy = 0u32;
        let mut busy_delay = Duration::from_millis(200);
        let mut unreachable_since: Option<Instant> = None;
        let mut reach_delay = Duration::from_millis(250);
        let mut reach_attempts = 0u32;
        let mut maybe_delivered = false;
        loop {
            let mut req = self
                .http
                .request(method.clone(), format!("{}{}", self.base, path))
                .bearer_auth(&self.key);
            if let Some(ct) = content_type {
                req = req.header("content-type", ct);
            }
            if let Some(b) = &body {
                req = req.body(b.clone());
            }
            let result = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    resp.bytes()
                        .await
                        .map(|b| (status, retry_after, b.to_vec()))
                }
                Err(e) => Err(e),
            };
            let delay = match result {
                Ok((status, retry_after, bytes)) => {
                    if self.down.swap(false, Ordering::Relaxed) {
                        eprintln!("the server at {} answers again", self.base);
                    }
                    unreachable_since = None;
                    if (200..300).contains(&status) {
                        return Ok(bytes);
                    }
                    busy += 1;
                    let retryable = matches!(status, 429 | 502 | 503 | 504);
                    if !retryable || busy >= BUSY_ATTEMPTS {
                        bail!(Refused {
                            status,
                            body: String::from_utf8_lossy(&bytes).into_owned()
                        });
                    }
                    if let Some(s) = retry_after {
                        busy_delay = busy_delay.max(Duration::from_secs(s));
                    }
                    let d = busy_delay;
                    busy_delay = (busy_delay * 2).min(Duration::from_secs(10));
                    d
                }
                Err(e) => {
                    reach_attempts += 1;
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    let why = root_cause(&e);
                    if !self.down.swap(true, Ordering::Relaxed) {
                        if self.persistent {
                            eprintln!(
                                "cannot reach the server at {} ({why}); retrying every {} s until \
                                 it answers (Ctrl-C to stop)",
                                self.base,
                                REACH_EVERY.as_secs()
                            );
                        } else {
                            eprintln!(
                                "cannot reach the server at {} ({why}); retrying for up to {} s",
                                self.base,
                                REACH_FOR.as_secs()
                            );
                        }
                    }
                    maybe_delivered |= !e.is_connect();
                    if !self.persistent && since.elapsed() + reach_delay > REACH_FOR {
                        bail!(Unreachable {
                            base: self.base.clone(),
                            why,
                            attempts: reach_attempts,
                            secs: since.elapsed().as_secs_f64(),
                            maybe_delivered,
                        });
                    }
                    let d = reach_delay;
                    reach_delay = (reach_delay * 2).min(REACH_EVERY);
                    d
                }
            };
            tokio::time::sleep(delay).await;
        }
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let b = self.send(reqwest::Method::GET, path, None, None).await?;
        serde_json::from_slice(&b).context("the server's answer is not JSON")
    }

    /// POSTs `body` as JSON and reads the JSON answer.
    pub async fn post_json(
        &self,
        path: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value> {
        let b = self
            .send(
                reqwest::Method::POST,
                path,
                Some("application/json"),
                Some(serde_json::to_vec(body)?),
            )
            .await?;
        serde_json::from_slice(&b).context("the server's answer is not JSON")
    }
}

/// The single-threaded runtime a client command runs its requests on.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

/// `s` as one path segment: every byte but the unreserved ones (RFC 3986: letters, digits,
/// `-._~`) percent-encoded, so an id typed by a user cannot reach another path or add a query.
/// Empty, `.` and `..` are refused: URL parsing drops or climbs them (encoded or not).
pub fn path_segment(s: &str) -> Result<String> {
    if matches!(s, "" | "." | "..") {
        bail!("{s:?} is not an id");
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_read_as_message_and_details() {
        let r = Refused {
            status: 422,
            body: r#"{"error":{"code":"validation_failed","message":"2 problem(s) found","details":[{"index":0,"path":"actor","message":"expected a string"},{"index":1,"path":"","message":"not an object"}]}}"#.into(),
        };
        assert_eq!(
            r.to_string(),
            "2 problem(s) found (HTTP 422 validation_failed)\n  actor: expected a string\n  not an object"
        );
        let r = Refused {
            status: 502,
            body: "<html>bad gateway</html>".into(),
        };
        assert_eq!(
            r.to_string(),
            "server answered 502: <html>bad gateway</html>"
        );
        assert!(r.details().is_empty());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(
            path_segment("apr_0192f0c4-x.y~").unwrap(),
            "apr_0192f0c4-x.y~"
        );
        assert_eq!(path_segment("../keys?x=1").unwrap(), "..%2Fkeys%3Fx%3D1");
        assert_eq!(path_segment("a b/é").unwrap(), "a%20b%2F%C3%A9");
        for bad in ["", ".", ".."] {
            assert!(path_segment(bad).is_err(), "{bad:?}");
        }
    }
}
