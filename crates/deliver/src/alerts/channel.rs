//! One configured alert channel (`[[alerts.channels]]`): its configuration, checked, and the
//! [`Channel`] that sends one [`Alert`] through it.
//!
//! # The model
//!
//! A channel is an incoming-webhook URL of one kind ([`ChannelKind`]): a Google Chat space, a
//! Slack channel, or any HTTPS endpoint that verifies trailkeep's signature (`webhook`). Each
//! kind builds its own request ([`super::google_chat`], [`super::slack`], [`super::webhook`]);
//! this module does what they share:
//!
//! - [`ChannelConfig::check`] refuses a bad configuration at start, naming the key
//!   (`alerts.channels[ops-chat].url: …`);
//! - [`Channel::send`] waits for the channel's rate limit ([`super::rate`]), makes one HTTP POST
//!   bounded by the channel's timeout, and classifies the answer into an [`Attempt`]: 2xx
//!   delivered; 408, 429, 5xx, timeouts and connection errors worth retrying (with the
//!   receiver's `Retry-After`, capped at [`MAX_RETRY_AFTER`]); any other status refused.
//!
//! # Secrets
//!
//! Webhook URLs are credentials: a Google Chat URL carries `key` and `token` in its query, a
//! Slack URL carries its token in the path, and a webhook channel has an HMAC `secret`. None of
//! them is ever written to an error, a log line or a `Debug` output: [`ChannelConfig::redacted_url`]
//! shows the URL without them, [`ChannelConfig`] serialises redacted, and every error text a
//! channel produces (including what a receiver sent back) has those values scrubbed.

use super::{google_chat, rate, slack, webhook, Alert, Attempt};
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT as USER_AGENT_HEADER};
use reqwest::Url;
use serde::{Deserialize, Serialize, Serializer};
use std::borrow::Cow;
use std::time::{Duration, SystemTime};
use trailkeep_core::{StoredEvent, Timestamp};

/// A channel's timeout when it sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest timeout a channel may set.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest `Retry-After` honoured; a receiver asking for more is tried again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of a refusing receiver's body an error keeps.
pub const MAX_ERROR_BODY_BYTES: usize = 200;
/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("trailkeep/", env!("CARGO_PKG_VERSION"));
/// What a redacted secret is written as.
pub const REDACTED: &str = "(redacted)";

/// The kinds of channel.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ChannelKind {
    /// A Google Chat space's incoming webhook (`https://chat.googleapis.com/v1/spaces/…`).
    GoogleChat,
    /// A Slack incoming webhook (`https://hooks.slack.com/services/…`).
    Slack,
    /// Any endpoint; requests are signed with the channel's secret ([`super::webhook`]).
    Webhook,
}

impl ChannelKind {
    /// The configuration name: `google_chat`, `slack` or `webhook`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChannelKind::GoogleChat => "google_chat",
            ChannelKind::Slack => "slack",
            ChannelKind::Webhook => "webhook",
        }
    }
}

impl std::fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `[[alerts.channels]]` table as configured.
///
/// `Debug` and `Serialize` are redacted (the URL by [`ChannelConfig::redacted_url`], the secret
/// as `"(redacted)"`), so the configuration can be shown (`GET /v1/alerts/channels`, logs)
/// without giving away a credential.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    /// Referenced by rules; `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.
    pub name: String,
    pub kind: ChannelKind,
    /// The incoming-webhook URL (a credential: never shown whole).
    pub url: String,
    /// The HMAC-SHA256 key of a `webhook` channel (required there, refused elsewhere).
    #[serde(default)]
    pub secret: Option<String>,
    /// Longest wait for one request (`500ms`, `10s`, `1m`; default 10 s, at most 60 s).
    #[serde(default)]
    pub timeout: Option<String>,
}

impl std::fmt::Debug for ChannelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelConfig")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.redacted_url())
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl Serialize for ChannelConfig {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("ChannelConfig", 5)?;
        st.serialize_field("name", &self.name)?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("url", &self.redacted_url())?;
        st.serialize_field("secret", &self.secret.as_ref().map(|_| REDACTED))?;
        st.serialize_field("timeout", &self.timeout)?;
        st.end()
    }
}

/// Whether `name` can name a channel: `^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`.
pub fn is_channel_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// Parses a timeout: a whole number followed by `ms`, `s` or `m` (`500ms`, `10s`, `2m`), more
/// than zero and at most [`MAX_TIMEOUT`].
pub fn parse_timeout(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let (num, unit) = t.split_at(digits);
    let n: u64 = num.parse().map_err(|_| {
        format!("{t:?} is not a duration: expected a whole number with ms, s or m (e.g. 10s)")
    })?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        _ => {
            return Err(format!(
                "{t:?} is not a duration: expected a whole number with ms, s or m (e.g. 10s)"
            ))
        }
    };
    if d.is_zero() {
        return Err(format!("{t:?}: must be more than zero"));
    }
    if d > MAX_TIMEOUT {
        return Err(format!(
            "{t:?} is longer than the longest timeout, 60s; give 60s or less"
        ));
    }
    Ok(d)
}

/// `10s`, `500ms`, `2m`, `24h`: a duration as configuration writes it (the largest unit that
/// divides it).
pub fn describe_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, n) in [("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= n && ms.is_multiple_of(n) {
            return format!("{}{unit}", ms / n);
        }
    }
    format!("{ms}ms")
}

impl ChannelConfig {
    /// The configuration key of one of this channel's fields, for errors:
    /// `alerts.channels[ops-chat].url`.
    pub fn key(&self, field: &str) -> String {
        if is_channel_name(&self.name) {
            format!("alerts.channels[{}].{field}", self.name)
        } else {
            let shown: String = self.name.chars().take(64).collect();
            format!("alerts.channels[{shown:?}].{field}")
        }
    }

    /// Checks the configuration; the error names the key and says what is expected. Never
    /// shows the URL's query or path secrets, nor the secret.
    pub fn check(&self) -> Result<(), String> {
        self.parsed().map(|_| ())
    }

    /// The channel's timeout, checked ([`parse_timeout`]; [`DEFAULT_TIMEOUT`] when unset).
    pub fn timeout(&self) -> Result<Duration, String> {
        match &self.timeout {
            None => Ok(DEFAULT_TIMEOUT),
            Some(t) => parse_timeout(t).map_err(|e| format!("{}: {e}", self.key("timeout"))),
        }
    }

    /// The URL without its credentials: no user or password, the query replaced with `?…`, and
    /// for Slack everything after the first path segment replaced with `…`
    /// (`https://hooks.slack.com/services/…`). `(invalid URL)` when it does not parse.
    pub fn redacted_url(&self) -> String {
        match Url::parse(&self.url) {
            Ok(u) => redact(&u, self.kind),
            Err(_) => "(invalid URL)".to_string(),
        }
    }

    /// The checked parts a [`Channel`] is built from.
    fn parsed(&self) -> Result<(Url, Duration), String> {
        if !is_channel_name(&self.name) {
            return Err(format!(
                "{}: {:?} is not a channel name: 1 to 64 letters, digits, _, . or -, starting with a letter or digit",
                self.key("name"),
                self.name.chars().take(64).collect::<String>()
            ));
        }
        let url_key = self.key("url");
        let example = match self.kind {
            ChannelKind::GoogleChat => {
                "https://chat.googleapis.com/v1/spaces/SPACE/messages?key=…&token=…"
            }
            ChannelKind::Slack => "https://hooks.slack.com/services/T…/B…/…",
            ChannelKind::Webhook => "https://alerts.example.com/trailkeep",
        };
        let url = Url::parse(self.url.trim())
            .map_err(|e| format!("{url_key}: not a valid URL ({e}); expected e.g. {example}"))?;
        if url.scheme() != "https" && url.scheme() != "http" {
            return Err(format!(
                "{url_key}: the scheme must be https (or http), not {:?}; expected e.g. {example}",
                url.scheme()
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{url_key}: the URL has no host; expected e.g. {example}"
            ));
        }
        if self.kind == ChannelKind::GoogleChat && google_chat::space_of(url.as_str()).is_none() {
            return Err(format!(
                "{url_key}: a Google Chat webhook URL has the path /v1/spaces/SPACE/messages, not {:?} \
                 (copy the URL from the space's Apps & integrations → Webhooks); expected e.g. {example}",
                url.path()
            ));
        }
        let secret = self.secret.as_deref().map(str::trim);
        match (self.kind, secret) {
            (ChannelKind::Webhook, None | Some("")) => {
                return Err(format!(
                    "{}: a webhook channel needs a secret, the HMAC-SHA256 key its receiver verifies \
                     X-Trailkeep-Signature with (e.g. the output of `openssl rand -hex 32`)",
                    self.key("secret")
                ))
            }
            (ChannelKind::Webhook, Some(_)) | (_, None) => {}
            (kind, Some(_)) => {
                return Err(format!(
                    "{}: only webhook channels are signed; a {kind} channel takes no secret (remove the key)",
                    self.key("secret")
                ))
            }
        }
        let timeout = self.timeout()?;
        Ok((url, timeout))
    }
}

/// See [`ChannelConfig::redacted_url`].
fn redact(u: &Url, kind: ChannelKind) -> String {
    let mut s = format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
    if let Some(port) = u.port() {
        s.push_str(&format!(":{port}"));
    }
    match kind {
        ChannelKind::Slack => {
            let mut segs = u.path_segments().into_iter().flatten();
            if let Some(first) = segs.next() {
                s.push('/');
                s.push_str(first);
                if segs.any(|p| !p.is_empty()) {
                    s.push_str("/…");
                }
            }
        }
        _ => s.push_str(u.path()),
    }
    if u.query().is_some() {
        s.push_str("?…");
    }
    s
}

/// The strings that must never appear in an error: the secret, the URL's password, its query
/// (whole and each value) and, for Slack, its path segments after the first.
fn secrets_of(u: &Url, kind: ChannelKind, secret: Option<&str>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    out.extend(secret.map(str::to_string));
    out.extend(u.password().map(str::to_string));
    if let Some(q) = u.query() {
        out.push(q.to_string());
        for (_, v) in u.query_pairs() {
            out.push(v.into_owned());
        }
        for part in q.split('&') {
            out.extend(part.split_once('=').map(|(_, v)| v.to_string()));
        }
    }
    if kind == ChannelKind::Slack {
        out.extend(
            u.path_segments()
                .into_iter()
                .flatten()
                .skip(1)
                .map(String::from),
        );
    }
    // Short values would mangle ordinary words; they are not credentials anyway.
    out.retain(|s| s.len() >= 4);
    // Longest first, so that a value containing another is replaced whole.
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}

/// A channel ready to send: its configuration checked, its HTTP client and rate limit attached.
#[derive(Clone)]
pub struct Channel {
    name: String,
    kind: ChannelKind,
    url: Url,
    redacted_url: String,
    secret: Option<Vec<u8>>,
    timeout: Duration,
    rate_key: String,
    public_url: Option<String>,
    http: reqwest::Client,
    limits: rate::Limits,
    secrets: Vec<String>,
}

impl std::fmt::Debug for Channel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("url", &self.redacted_url)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("timeout", &self.timeout)
            .field("rate_key", &self.rate_key)
            .field("public_url", &self.public_url)
            .finish()
    }
}

impl Channel {
    /// Builds a channel from its configuration ([`ChannelConfig::check`] first).
    /// `public_url` is where trailkeep's API is reachable (`https://audit.example.com`), for
    /// links to the event; `limits` is the process's one rate-limit handle.
    pub fn new(
        cfg: &ChannelConfig,
        public_url: Option<&str>,
        http: reqwest::Client,
        limits: &rate::Limits,
    ) -> Result<Channel, String> {
        let (url, timeout) = cfg.parsed()?;
        let public_url = match public_url.map(str::trim).filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let ok = Url::parse(p)
                    .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host());
                if !ok {
                    return Err(format!(
                        "public_url: {p:?} is not an http(s) URL; give where trailkeep's API is reachable, e.g. https://audit.example.com"
                    ));
                }
                Some(p.trim_end_matches('/').to_string())
            }
        };
        let rate_key = match cfg.kind {
            ChannelKind::GoogleChat => {
                let space = google_chat::space_of(url.as_str()).unwrap_or_default();
                format!("google_chat:{space}")
            }
            kind => format!("{kind}:{}", cfg.name),
        };
        let secret = cfg.secret.as_deref().map(str::trim);
        Ok(Channel {
            name: cfg.name.clone(),
            kind: cfg.kind,
            redacted_url: redact(&url, cfg.kind),
            secrets: secrets_of(&url, cfg.kind, secret),
            secret: secret.map(|s| s.as_bytes().to_vec()),
            url,
            timeout,
            rate_key,
            public_url,
            http,
            limits: limits.clone(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> ChannelKind {
        self.kind
    }

    /// The URL without its credentials ([`ChannelConfig::redacted_url`]).
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    /// The longest one request may take.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The rate-limit key the channel waits on ([`rate::Limits::wait`]):
    /// `google_chat:<space>` (shared by every channel posting to that space), otherwise
    /// `<kind>:<channel name>`.
    pub fn rate_key(&self) -> &str {
        &self.rate_key
    }

    /// Sends one alert: waits for the rate limit, then one POST bounded by the timeout.
    pub async fn send(&self, alert: &Alert) -> Attempt {
        self.limits.wait(&self.rate_key).await;
        let request = self.request(alert);
        match tokio::time::timeout(self.timeout, self.exchange(request)).await {
            Ok(attempt) => attempt,
            Err(_) => Attempt::Retry {
                status: None,
                after: None,
                error: format!(
                    "timed out: no complete answer from {} within {}",
                    self.redacted_url,
                    describe_duration(self.timeout)
                ),
            },
        }
    }

    /// Sends a test alert ([`Channel::test_alert`]): what `trailkeep alerts test CHANNEL` does.
    pub async fn send_test(&self) -> Attempt {
        self.send(&self.test_alert()).await
    }

    /// A clearly marked test alert, built from a synthetic event that is not in any log:
    /// type `alert.test`, actor `trailkeep`, tenant `_global`, rule `alerts test`, a note saying
    /// it is a test, and a fresh delivery id (so that receivers do not drop a second test as a
    /// repeat).
    pub fn test_alert(&self) -> Alert {
        let now = Timestamp::now_millis();
        let payload = serde_json::json!({
            "message": "Test alert from trailkeep. No event caused it; it checks that this channel is configured and reachable.",
            "test": true,
        });
        let event = StoredEvent {
            tenant_id: trailkeep_core::GLOBAL_TENANT.to_string(),
            seq: 0,
            event_id: uuid::Uuid::new_v4(),
            event_type: TEST_EVENT_TYPE.to_string(),
            actor: "trailkeep".to_string(),
            timestamp: now,
            timestamp_assigned: true,
            received_at: now,
            source_ip: None,
            impersonation_session: None,
            approval_id: None,
            payload: Some(serde_json::to_vec(&payload).unwrap_or_default()),
            payload_salt: None,
            payload_commitment: None,
            leaf_hash: [0; 32],
        };
        Alert {
            delivery_id: uuid::Uuid::new_v4().simple().to_string(),
            rule: TEST_RULE.to_string(),
            channel: self.name.clone(),
            event,
            note: Some(format!(
                "TEST: trailkeep test alert for channel {} (no event caused it)",
                self.name
            )),
        }
    }

    /// The request for one alert, as this channel's kind builds it.
    fn request(&self, alert: &Alert) -> reqwest::RequestBuilder {
        let public_url = self.public_url.as_deref();
        let builder = match self.kind {
            ChannelKind::GoogleChat => {
                let body = serde_json::to_vec(&google_chat::message(alert, public_url))
                    .unwrap_or_default();
                self.http
                    .post(google_chat::request_url(self.url.as_str(), alert))
                    .header(
                        CONTENT_TYPE,
                        HeaderValue::from_static("application/json; charset=UTF-8"),
                    )
                    .body(body)
            }
            ChannelKind::Slack => {
                let body =
                    serde_json::to_vec(&slack::message(alert, public_url)).unwrap_or_default();
                self.http
                    .post(self.url.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .body(body)
            }
            ChannelKind::Webhook => {
                let body = webhook::body(alert);
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                let signature =
                    webhook::signature(self.secret.as_deref().unwrap_or_default(), now, &body);
                self.http
                    .post(self.url.clone())
                    .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                    .header(webhook::SIGNATURE_HEADER, signature)
                    .header(webhook::DELIVERY_HEADER, alert.delivery_id.as_str())
                    .body(body)
            }
        };
        builder
            .header(USER_AGENT_HEADER, HeaderValue::from_static(USER_AGENT))
            .timeout(self.timeout)
    }

    /// Sends the request and classifies the answer.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Attempt {
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                return Attempt::Retry {
                    status: None,
                    after: None,
                    error: self.scrub(self.describe_error(e)),
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Delivered {
                status: status.as_u16(),
            };
        }
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let body = read_prefix(&mut response, MAX_ERROR_BODY_BYTES).await;
        let reason = status.canonical_reason().unwrap_or("");
        let error = self.scrub(if body.is_empty() {
            format!("HTTP {} {reason} (empty body)", status.as_u16())
        } else {
            format!("HTTP {} {reason}: {body}", status.as_u16())
        });
        let code = status.as_u16();
        if is_retryable_status(code) {
            Attempt::Retry {
                status: Some(code),
                after,
                error,
            }
        } else {
            Attempt::Refused {
                status: code,
                error,
            }
        }
    }

    /// What went wrong with a request that got no answer, without the URL's credentials.
    fn describe_error(&self, e: reqwest::Error) -> String {
        let what = if e.is_timeout() {
            format!(
                "timed out: no answer within {}",
                describe_duration(self.timeout)
            )
        } else if e.is_connect() {
            "could not connect".to_string()
        } else {
            "request failed".to_string()
        };
        let e = e.without_url();
        let mut chain = vec![e.to_string()];
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            let text = s.to_string();
            if chain.last().is_none_or(|l| !l.contains(&text)) {
                chain.push(text);
            }
            source = s.source();
        }
        format!("{what} to {}: {}", self.redacted_url, chain.join(": "))
    }

    /// Replaces every credential of the channel in `text` with `…`.
    fn scrub(&self, mut text: String) -> String {
        for s in &self.secrets {
            if text.contains(s.as_str()) {
                text = text.replace(s.as_str(), "…");
            }
        }
        text
    }
}

/// The event type of [`Channel::test_alert`].
pub const TEST_EVENT_TYPE: &str = "alert.test";
/// The rule name of [`Channel::test_alert`].
pub const TEST_RULE: &str = "alerts test";

/// Whether a non-2xx status is worth trying again: 408, 429 and 5xx.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (relative to `now`; a date in the past
/// is zero), capped at [`MAX_RETRY_AFTER`]. `None` when it is neither.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    let d = if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
        // More digits than a u64 holds is still "a long time".
        Duration::from_secs(v.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(v).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(d.min(MAX_RETRY_AFTER))
}

/// At most `max` bytes of the response body, as one line of text (control characters become
/// spaces, cut on a character boundary). Stops reading once it has enough.
async fn read_prefix(response: &mut reqwest::Response, max: usize) -> String {
    let mut buf: Vec<u8> = Vec::new();
    while buf.len() < max {
        match response.chunk().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    let more = buf.len() > max;
    let text = String::from_utf8_lossy(&buf);
    let mut out: String = one_line(truncate_bytes(&text, max));
    if more {
        out.push('…');
    }
    out.trim().to_string()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` on one line: control characters (newlines, tabs, …) become spaces.
pub(crate) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Marks text cut to fit a limit.
pub const TRUNCATED: &str = "… (truncated)";

/// `s` cut to at most `max` characters, followed by [`TRUNCATED`] if anything was cut.
pub(crate) fn truncate_chars(s: &str, max: usize) -> Cow<'_, str> {
    match s.char_indices().nth(max) {
        None => Cow::Borrowed(s),
        Some((i, _)) => Cow::Owned(format!("{}{TRUNCATED}", &s[..i])),
    }
}

/// Builds with every part whole if that fits; otherwise with every part cut to the largest
/// common number of characters ([`truncate_chars`]) that fits (found by bisection: `fits` must
/// be monotone in the parts' length). If nothing fits, the parts cut to nothing.
pub(crate) fn fit_parts<T>(
    parts: &[String],
    build: impl Fn(&[Cow<'_, str>]) -> T,
    fits: impl Fn(&T) -> bool,
) -> T {
    let with_cap = |cap: usize| -> T {
        let cut: Vec<Cow<'_, str>> = parts.iter().map(|p| truncate_chars(p, cap)).collect();
        build(&cut)
    };
    let longest = parts.iter().map(|p| p.chars().count()).max().unwrap_or(0);
    let whole = with_cap(longest);
    if fits(&whole) {
        return whole;
    }
    // Invariant: cap `lo` fits (or is 0), cap `hi` does not.
    let (mut lo, mut hi) = (0usize, longest);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if fits(&with_cap(mid)) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    with_cap(lo)
}

/// What an alert message says, shared by the Google Chat and Slack messages.
pub(crate) struct Facts {
    /// `admin:alice`
    pub who: String,
    /// `prompt.update`
    pub what: String,
    /// `t_0042`
    pub tenant: String,
    /// RFC 3339
    pub time: String,
    /// A short title: the note, or `prompt.update in t_0042`.
    pub title: String,
    /// One plain line: who did what in which tenant (and the note first, if any).
    pub fallback: String,
    /// The change: labelled parts (`before`/`after`, or `payload`), compact JSON.
    pub change: Vec<(&'static str, String)>,
    /// `{public_url}/v1/events/{event_id}`, when the public URL is known.
    pub link: Option<String>,
}

impl Facts {
    pub fn of(alert: &Alert, public_url: Option<&str>) -> Facts {
        let e = &alert.event;
        let who = one_line(&e.actor);
        let what = one_line(&e.event_type);
        let tenant = one_line(&e.tenant_id);
        let note = alert.note.as_deref().map(one_line);
        let title = note
            .clone()
            .unwrap_or_else(|| format!("{what} in {tenant}"));
        let mut fallback = format!("trailkeep alert: {who} did {what} in tenant {tenant}");
        if let Some(n) = &note {
            fallback = format!("{n} ({who} did {what} in tenant {tenant})");
        }
        Facts {
            who,
            what,
            tenant,
            time: e.timestamp.to_rfc3339(),
            title,
            fallback,
            change: change_of(e),
            link: public_url.map(|p| {
                format!(
                    "{}/v1/events/{}",
                    p.trim_end_matches('/'),
                    e.event_id.hyphenated()
                )
            }),
        }
    }
}

/// The change an event records: `before` and `after` of its payload when it has either (the
/// missing one as `(none)`), else the whole payload; compact JSON.
fn change_of(e: &StoredEvent) -> Vec<(&'static str, String)> {
    let Some(bytes) = &e.payload else {
        return vec![("payload", "(purged)".to_string())];
    };
    let value: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(_) => return vec![("payload", String::from_utf8_lossy(bytes).into_owned())],
    };
    let compact = |v: Option<&serde_json::Value>| match v {
        Some(v) => serde_json::to_string(v).unwrap_or_default(),
        None => "(none)".to_string(),
    };
    match value.as_object() {
        Some(o) if o.contains_key("before") || o.contains_key("after") => vec![
            ("before", compact(o.get("before"))),
            ("after", compact(o.get("after"))),
        ],
        _ => vec![("payload", compact(Some(&value)))],
    }
}
