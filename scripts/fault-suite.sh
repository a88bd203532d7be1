#!/usr/bin/env bash
# The long variant of the fault-injection suite (tests/e2e/crash.rs,
# fault_suite_sigkill_during_ingest_and_replay): ROUNDS rounds (default 100) of ingest from
# several writers into one data directory, each ended by SIGKILL, alternately while requests
# are in flight and while the restarted server replays its log. After every fault the log must
# hold every acknowledged event unchanged, every request wholly or not at all, nothing else,
# gap-free seq per tenant, and verify (`trailkeep verify --url`) against every checkpoint the
# server ever issued. A fresh data directory every 20 rounds keeps each check quick.
# scripts/test.sh runs a few rounds (cargo test); this runs many.
# Usage: scripts/fault-suite.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
TRAILKEEP_FAULT_ROUNDS="${1:-100}" cargo test --locked --test e2e fault_suite -- --nocapture
