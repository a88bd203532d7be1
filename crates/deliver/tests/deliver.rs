//! The delivery crate's integration tests (one binary; modules per concern).

#[path = "deliver/engine.rs"]
mod engine;
#[path = "deliver/testkit.rs"]
mod testkit;
