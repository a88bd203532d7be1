//! Loopback alert receivers for tests: local stand-ins for a Google Chat space, a Slack
//! incoming webhook and a generic signed webhook that check every request they get against
//! the receiving side's published rules and answer with scripted failures.
//!
//! Compiled with the crate feature `testkit` only. There is no emulator for Google Chat, so
//! the Google Chat receiver validates bodies against Google's own discovery document for
//! the Chat API (vendored in `testdata/chat.v1.json`, see [`discovery`]).
//!
//! ```no_run
//! # async fn example() {
//! use std::time::Duration;
//! use trailkeep_deliver::testkit::{Behaviour, Receiver, ReceiverKind};
//!
//! let chat = Receiver::start(ReceiverKind::GoogleChat);
//! // The first request gets a 503, the second a 429 with `Retry-After: 1`, then 200s.
//! chat.script([
//!     Behaviour::Status(503),
//!     Behaviour::TooMany { retry_after: Some("1".into()) },
//! ]);
//! // ... configure a channel with `chat.url()` and let trailkeep send ...
//! let delivered = chat.wait_for(1, Duration::from_secs(10)).await;
//! assert_eq!(delivered.len(), 1);
//! assert!(chat.problems().is_empty(), "{:#?}", chat.problems());
//! # }
//! ```
//!
//! How a receiver answers a request:
//!
//! 1. It records the request ([`Received`], in arrival order) with the problems its kind's
//!    checks found ([`google_chat`], [`slack`], [`signature`]).
//! 2. It takes the next scripted [`Behaviour`] ([`Receiver::script`]), or
//!    [`Behaviour::Ok`] when the script is used up.
//! 3. `Ok` answers like the real service: 2xx when the request has no problems, 400 with
//!    the problems in the body when it has (the real services refuse most of them too; the
//!    rest are sender bugs all the same). Any other behaviour answers as it says, whatever
//!    the request's problems, as a failing front end would.
//!
//! The receivers are stricter than the real services in a few documented places (output
//! only and deprecated fields, unknown Slack fields): a request the receiver takes, the
//! service takes.

pub mod discovery;
pub mod google_chat;
mod listener;
mod receiver;
pub mod signature;
pub mod slack;

pub use receiver::Receiver;

use std::time::{Duration, Instant};

/// Which service a [`Receiver`] stands in for, and so how it checks requests and answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiverKind {
    /// A Google Chat incoming webhook (`POST /v1/spaces/{space}/messages?key=..&token=..`):
    /// see [`google_chat`].
    GoogleChat,
    /// A Slack incoming webhook (`POST /hook`): see [`slack`].
    Slack,
    /// A trailkeep signed webhook (`POST /hook`) whose signatures verify with `secret`:
    /// see [`signature`].
    Webhook { secret: Vec<u8> },
}

/// How a receiver answers one request (see [`Receiver::script`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer as the service would: 2xx, or 400 if the request has problems.
    Ok,
    /// Answer with this status (and the service's usual error body).
    Status(u16),
    /// Answer 429, with this `Retry-After` header value if given (any text, so tests can
    /// send malformed values too).
    TooMany { retry_after: Option<String> },
    /// Answer as [`Behaviour::Ok`] does, but only after this long: for timeouts. The
    /// request counts as answered when the time is up, even if the sender stopped waiting
    /// (Google would have posted the message all the same).
    Hang(Duration),
    /// Drop the connection without answering, after reading the whole request.
    Close,
}

/// What a receiver answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// A response with this status.
    Status(u16),
    /// The connection was dropped ([`Behaviour::Close`]).
    Closed,
}

/// One request a receiver got, with what it answered and what was wrong with it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When the request arrived (its body read).
    pub at: Instant,
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body, if it is JSON.
    pub json: Option<serde_json::Value>,
    /// The behaviour the request got.
    pub behaviour: Behaviour,
    /// What was answered; `None` while a [`Behaviour::Hang`] is still waiting.
    pub answer: Option<Answer>,
    /// What is wrong with the request; empty when the real service would take it.
    pub problems: Vec<String>,
}

impl Received {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The first value of a query parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the receiver answered 2xx.
    pub fn accepted(&self) -> bool {
        matches!(self.answer, Some(Answer::Status(s)) if (200..300).contains(&s))
    }

    /// Google Chat's `requestId` query parameter: the same for every attempt of one alert.
    pub fn request_id(&self) -> Option<&str> {
        self.param("requestId")
    }

    /// The space of a Google Chat request (`AAAA` in `/v1/spaces/AAAA/messages`).
    pub fn space(&self) -> Option<&str> {
        google_chat::space_of(&self.path)
    }

    /// The body as text (lossy), for messages.
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// One line about the request, for failure messages.
    pub fn summary(&self) -> String {
        let answer = match self.answer {
            Some(Answer::Status(s)) => s.to_string(),
            Some(Answer::Closed) => "closed".into(),
            None => "no answer yet".into(),
        };
        let mut body = self.body_text();
        if body.len() > 300 {
            let cut = (0..=300)
                .rev()
                .find(|&i| body.is_char_boundary(i))
                .unwrap_or(0);
            body.truncate(cut);
            body.push('…');
        }
        format!(
            "{} {} ({:?}) -> {answer}; problems {:?}; body {body}",
            self.method, self.path, self.behaviour, self.problems
        )
    }
}
