//! A lean HTTP/1.1 keep-alive client: one TCP connection per simulated client, requests sent
//! one after another on it (no pipelining, no pool), TCP_NODELAY on. A connection the server
//! closed is re-opened before the next request; the failed request counts as an error.

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use std::time::Duration;
use tokio::net::TcpStream;

/// Where requests go: `http://host:port[/base]`.
#[derive(Clone, Debug)]
pub struct Target {
    /// `host:port` to connect to.
    pub addr: String,
    /// Value of the `Host` header.
    pub authority: HeaderValue,
    /// Path prefix (no trailing slash), usually empty.
    pub base: String,
    pub auth: Option<HeaderValue>,
}

impl Target {
    pub fn new(url: &str, key: Option<&str>) -> Result<Self> {
        let rest = url
            .strip_prefix("http://")
            .with_context(|| format!("--url {url:?}: only http:// URLs are supported"))?;
        let (hostport, base) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            bail!("--url {url:?} has no host");
        }
        let addr = if hostport.starts_with('[') {
            // [::1]:port or [::1]
            if hostport.contains("]:") {
                hostport.to_string()
            } else {
                format!("{hostport}:80")
            }
        } else if hostport.contains(':') {
            hostport.to_string()
        } else {
            format!("{hostport}:80")
        };
        let auth = match key {
            Some(k) => Some(
                HeaderValue::from_str(&format!("Bearer {k}"))
                    .context("API key is not a valid header value")?,
            ),
            None => None,
        };
        Ok(Target {
            addr,
            authority: HeaderValue::from_str(hostport).context("bad host in --url")?,
            base: base.to_string(),
            auth,
        })
    }

    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&'static str>,
        body: Bytes,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path_and_query))
            .header(HOST, self.authority.clone());
        if let Some(a) = &self.auth {
            b = b.header(AUTHORIZATION, a.clone());
        }
        if let Some(ct) = content_type {
            b = b.header(CONTENT_TYPE, ct);
        }
        b.body(Full::new(body)).expect("valid request")
    }
}

/// One keep-alive connection.
pub struct Conn {
    target: Target,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// Connections opened (1 = never re-opened).
    pub opened: u64,
}

impl Conn {
    pub async fn open(target: &Target) -> Result<Self> {
        let mut c = Conn {
            target: target.clone(),
            sender: None,
            opened: 0,
        };
        c.connect().await?;
        Ok(c)
    }

    async fn connect(&mut self) -> Result<()> {
        let stream = TcpStream::connect(&self.target.addr)
            .await
            .with_context(|| format!("connecting to {}", self.target.addr))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.opened += 1;
        Ok(())
    }

    /// Sends one request and reads the whole response body.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> Result<(StatusCode, Bytes)> {
        let needs_connect = match &self.sender {
            None => true,
            Some(s) => s.is_closed(),
        };
        if needs_connect {
            self.sender = None;
            self.connect().await?;
        }
        let sender = self.sender.as_mut().expect("connected");
        let result = async {
            sender.ready().await.context("connection not ready")?;
            let resp = sender.send_request(req).await.context("sending request")?;
            let status = resp.status();
            let body = resp
                .into_body()
                .collect()
                .await
                .context("reading response body")?
                .to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        if result.is_err() {
            // Drop the connection; the next request opens a new one.
            self.sender = None;
        }
        result
    }
}

/// Waits until `GET /healthz` answers 200, or fails after `timeout`.
pub async fn wait_healthy(target: &Target, timeout: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let last_err;
        match Conn::open(target).await {
            Ok(mut c) => {
                match c
                    .send(target.request(Method::GET, "/healthz", None, Bytes::new()))
                    .await
                {
                    Ok((s, _)) if s == StatusCode::OK => return Ok(()),
                    Ok((s, b)) => last_err = format!("status {s}: {}", snippet(&b)),
                    Err(e) => last_err = format!("{e:#}"),
                }
            }
            Err(e) => last_err = format!("{e:#}"),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!(
                "{} did not become healthy within {timeout:?}: {last_err}",
                target.addr
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// First bytes of a body, for error messages.
pub fn snippet(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned();
    if b.len() > 300 {
        format!("{s}…")
    } else {
        s
    }
}

/// Percent-encodes a query parameter value.
pub fn encode(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'*' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
