//! End-to-end tests of the `trailkeep` binary: real processes, real sockets, real fsyncs.
//!
//! One test binary for the root package (compile time on two cores). The server is started with
//! `--listen 127.0.0.1:0` and its address read from its stderr.

mod abuse;
mod alerts;
mod cli;
mod client;
mod control;
mod control_cli;
mod crash;
mod docs;
mod export;
mod postgres;
/// The fault proxy of the store's tests.
#[allow(dead_code)]
#[path = "../../crates/store/tests/conformance/proxy.rs"]
mod proxy;
mod quickstart;
mod serve;
mod standalone;
mod support;
mod tamper;
mod verify;
mod viewer;
