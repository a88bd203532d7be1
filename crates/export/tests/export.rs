//! The export crate's integration tests: one binary (see the workspace's `autotests = false`).
