//! End-to-end tests of the `trailkeep` binary: real processes, real sockets, real fsyncs.
//!
//! One test binary for the root package (compile time on two cores). The server is started with
//! `--listen 127.0.0.1:0` and its address read from its stderr.

mod abuse;
mod cli;
mod client;
mod crash;
mod docs;
mod postgres;
mod quickstart;
mod serve;
mod standalone;
mod support;
mod verify;
