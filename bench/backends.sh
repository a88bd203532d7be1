#!/usr/bin/env bash
# Ingest on both backends side by side with plain PostgreSQL COPY, same data, same run
# (issue 4): batched (1000 events/request, 4 clients) and single-event (64 clients).
#   bench/backends.sh [N] [SINGLE]      defaults: N=200000 batched events, SINGLE=40000
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
N=${1:-200000}
SINGLE=${2:-40000}
PG_ADMIN=${PG_ADMIN:-postgres://postgres@127.0.0.1:5432/postgres}
CACHE=${BENCH_CACHE_DIR:-/tmp/trailkeep-bench-cache}
# The admin key the server is started with (at least 32 characters, as `serve` requires).
KEY="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
mkdir -p "$CACHE"
FILE=$CACHE/events-$N-seed1.ndjson
SFILE=$CACHE/events-$SINGLE-seed7.ndjson
[ -s "$FILE" ] || python3 "$ROOT/scripts/gen_events.py" "$N" --seed 1 > "$FILE"
[ -s "$SFILE" ] || python3 "$ROOT/scripts/gen_events.py" "$SINGLE" --seed 7 > "$SFILE"
pg_isready -q -h 127.0.0.1 -p 5432 || pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
cargo build --release -q -p trailkeep -p trailkeep-bench
T=${CARGO_TARGET_DIR:-$ROOT/target}/release
WORK=$(mktemp -d)
DB=trailkeep_bench_$$
PID=
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  psql -q "$PG_ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

serve() { # args… ; sets URL and PID
  local port=$((20000 + RANDOM % 20000))
  TRAILKEEP_ADMIN_KEY=$KEY TRAILKEEP_LOG=warn "$T/trailkeep" serve --listen "127.0.0.1:$port" "$@" 2>"$WORK/server.log" &
  PID=$!
  URL=http://127.0.0.1:$port
  "$T/trailkeep-bench" wait-healthy --url "$URL" >/dev/null
}
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }
result() { grep ^RESULT | grep -oE '(events_per_s|p99_ms)=[0-9.]*' | tr '\n' ' '; }

row() { # name, then serve args
  local name=$1; shift
  serve "$@"
  local b s
  b=$("$T/trailkeep-bench" ingest-batch --url "$URL" --key "$KEY" --file "$FILE" --clients 4 --batch 1000 | result)
  s=$("$T/trailkeep-bench" ingest-single --url "$URL" --key "$KEY" --file "$SFILE" --clients 64 --events "$SINGLE" | result)
  stop
  echo "| $name | $b | $s |"
}

echo "backends: $N events batched, $SINGLE single, $(date -u +%FT%TZ), $(git rev-parse --short HEAD)"
echo "| store | batched (4 clients × 1000) | single (64 clients) |"
echo "|---|---|---|"
row embedded --data-dir "$WORK/data"
psql -q "$PG_ADMIN" -c "CREATE DATABASE $DB" >/dev/null
row postgres --data-dir "$WORK/pgkey" --postgres "postgres://postgres@127.0.0.1:5432/$DB"
copy=$("$T/trailkeep-bench" pg-copy --pg "postgres://postgres@127.0.0.1:5432/$DB" --file "$FILE" | grep ^RESULT | grep -oE 'rows_per_s=[0-9.]*')
echo "| plain COPY into the indexed table (bench_events) | $copy | — |"
