#!/usr/bin/env bash
# Runs trailkeep's whole test suite on a fresh machine: starts on loopback whatever the tests
# need (PostgreSQL, for the store conformance suite's PostgreSQL backend and the benchmarks),
# then runs every crate's tests, then the checks that need Python or a browser (each installs
# what it needs: schemathesis, pyarrow and DuckDB in virtualenvs, Debian's chromium). Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

ensure_postgres() {
  if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432; then
    return 0
  fi
  if [ -d /etc/postgresql ]; then
    echo "test.sh: starting PostgreSQL on 127.0.0.1:5432" >&2
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do
      pg_isready -q -h 127.0.0.1 -p 5432 && return 0
      sleep 1
    done
  fi
  echo "test.sh: PostgreSQL is not reachable on 127.0.0.1:5432 (needed by the PostgreSQL tests)" >&2
  return 1
}

ensure_postgres || true
cargo test --workspace --locked "$@"
scripts/schemathesis.sh  # the live API against its OpenAPI document
scripts/export-readback.sh  # Parquet and CSV exports read back with pyarrow and DuckDB
scripts/browser-tests.sh  # the /viewer page in headless Chromium
