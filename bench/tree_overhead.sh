#!/usr/bin/env bash
# Ingest with and without the Merkle tree, side by side, alternating runs (issue 3: the tree may
# cost at most 15%). Builds the release binary of two revisions in git worktrees:
#   bench/tree_overhead.sh [REV_WITHOUT_TREE] [REV_WITH_TREE] [ROUNDS]
# Defaults: bb44f9f (the last commit before trees were written) and HEAD, 2 rounds.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
A=${1:-bb44f9f}
B=${2:-HEAD}
ROUNDS=${3:-2}
CACHE=${BENCH_CACHE_DIR:-/tmp/trailkeep-bench-cache}
# The admin key the server is started with (at least 32 characters, as `serve` requires).
KEY="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
mkdir -p "$CACHE"
BATCH_FILE=$CACHE/events-200000-seed1.ndjson
SINGLE_FILE=$CACHE/events-40000-seed7.ndjson
[ -s "$BATCH_FILE" ] || python3 "$ROOT/scripts/gen_events.py" 200000 --seed 1 > "$BATCH_FILE"
[ -s "$SINGLE_FILE" ] || python3 "$ROOT/scripts/gen_events.py" 40000 --seed 7 > "$SINGLE_FILE"

WORK=$(mktemp -d)
cleanup() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null || true
  for w in "$WORK"/wt-*; do [ -d "$w" ] && git -C "$ROOT" worktree remove --force "$w" >/dev/null 2>&1 || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

build() { # rev name
  git -C "$ROOT" worktree add -q "$WORK/wt-$2" "$1"
  (cd "$WORK/wt-$2" && CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}-$2 cargo build --release -q --bin trailkeep)
  echo "${CARGO_TARGET_DIR:-$ROOT/target}-$2/release/trailkeep"
}
BIN_A=$(build "$A" notree)
BIN_B=$(build "$B" tree)
cargo build --release -q -p trailkeep-bench
BENCH=${CARGO_TARGET_DIR:-$ROOT/target}/release/trailkeep-bench

run() { # name bin
  local d port
  d=$(mktemp -d "$WORK/data.XXXX"); port=$((20000 + RANDOM % 20000))
  TRAILKEEP_ADMIN_KEY=$KEY TRAILKEEP_LOG=warn "$2" serve --data-dir "$d" --listen "127.0.0.1:$port" 2>/dev/null &
  PID=$!
  "$BENCH" wait-healthy --url "http://127.0.0.1:$port" >/dev/null
  local b s
  b=$("$BENCH" ingest-batch --url "http://127.0.0.1:$port" --key "$KEY" --file "$BATCH_FILE" --clients 4 --batch 1000 | grep ^RESULT | grep -o 'events_per_s=[0-9.]*')
  s=$("$BENCH" ingest-single --url "http://127.0.0.1:$port" --key "$KEY" --file "$SINGLE_FILE" --clients 64 --events 40000 | grep ^RESULT | grep -oE '(events_per_s|p99_ms)=[0-9.]*' | tr '\n' ' ')
  kill "$PID"; wait "$PID" 2>/dev/null || true; PID=
  echo "| $1 | batched $b | single $s |"
}
echo "tree overhead: $A (no tree) vs $B (tree), $(date -u +%FT%TZ)"
for r in $(seq 1 "$ROUNDS"); do
  run "round $r, $A (no tree)" "$BIN_A"
  run "round $r, $B (tree)" "$BIN_B"
done
