//! The delivery crate's integration tests (one binary; modules per concern).

#[path = "deliver/testkit.rs"]
mod testkit;
