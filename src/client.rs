//! A small HTTP client for the CLI's server commands, with retries on 429/503 and connection
//! failures (honouring `Retry-After`).

use crate::ServerArgs;
use anyhow::{anyhow, bail, Context, Result};
use std::time::Duration;

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// A failed request whose status says retrying will not help.
#[derive(Debug)]
pub struct Refused {
    pub status: u16,
    pub body: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server answered {}: {}", self.status, self.body)
    }
}
impl std::error::Error for Refused {}

impl Client {
    pub fn new(args: &ServerArgs) -> Result<Client> {
        let key = args
            .key
            .clone()
            .ok_or_else(|| anyhow!("no API key: pass --key or set TRAILKEEP_KEY"))?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()?;
        Ok(Client {
            http,
            base: args.url.trim_end_matches('/').to_string(),
            key,
        })
    }

    /// Sends with up to `attempts` tries; retries 429, 502–504 and transport errors.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> Result<Vec<u8>> {
        let attempts = 8;
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=attempts {
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
            match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let retry_after = resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<u64>().ok());
                    let bytes = resp.bytes().await.context("reading the response")?.to_vec();
                    if (200..300).contains(&status) {
                        return Ok(bytes);
                    }
                    let retryable = matches!(status, 429 | 502 | 503 | 504);
                    if !retryable || attempt == attempts {
                        bail!(Refused {
                            status,
                            body: String::from_utf8_lossy(&bytes).into_owned()
                        });
                    }
                    if let Some(s) = retry_after {
                        delay = delay.max(Duration::from_secs(s));
                    }
                }
                Err(e) if attempt == attempts => {
                    return Err(anyhow!(e).context(format!("cannot reach {}", self.base)))
                }
                Err(_) => {}
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        bail!("gave up after {attempts} attempts")
    }

    pub async fn get_json(&self, path: &str) -> Result<serde_json::Value> {
        let b = self.send(reqwest::Method::GET, path, None, None).await?;
        serde_json::from_slice(&b).context("the server's answer is not JSON")
    }
}
