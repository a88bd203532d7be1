//! The export crate's integration tests: one binary (see the workspace's `autotests = false`).

#[path = "export/bundle.rs"]
mod bundle;
#[path = "export/bundle_log.rs"]
mod bundle_log;
