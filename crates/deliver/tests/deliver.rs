//! The delivery crate's integration tests (one binary; modules per concern).
//!
//! Channels are tested over real HTTP against loopback receivers on 127.0.0.1
//! (`deliver/support.rs`): what each kind sends, how answers are classified, rate limits shared
//! per Google Chat space; and, without the network, configuration checks, message shapes and
//! limits, webhook signatures and the retry policy. `deliver/services.rs` sends through the
//! channels to the testkit's receivers, which check requests against what each service takes.

#[path = "deliver/support.rs"]
mod support;

#[path = "deliver/channels.rs"]
mod channels;
#[path = "deliver/classify.rs"]
mod classify;
#[path = "deliver/engine.rs"]
mod engine;
#[path = "deliver/engine_faults.rs"]
mod engine_faults;
#[path = "deliver/google_chat.rs"]
mod google_chat;
#[path = "deliver/rate.rs"]
mod rate;
#[path = "deliver/retry.rs"]
mod retry;
#[path = "deliver/services.rs"]
mod services;
#[path = "deliver/slack.rs"]
mod slack;
#[path = "deliver/testkit.rs"]
mod testkit;
#[path = "deliver/watched_store.rs"]
mod watched_store;
#[path = "deliver/webhook.rs"]
mod webhook;
