#!/usr/bin/env bash
# One batched-ingest run against a fresh server, with the server's CPU per event, per-thread
# busy time and fsync totals: for A/B comparisons of two builds on the same data.
#
# usage: bench/ingest_ab.sh BIN_DIR FILE [N]
#   BIN_DIR  holds `trailkeep` and `trailkeep-bench` (e.g. target/release, or a copy of an older build)
#   FILE     NDJSON events (e.g. from scripts/gen_events.py); N = events to send (default: all)
# Environment: CLIENTS=4 (connections, 1000 events a request), PERF=1 (perf record -g of the
# server into ./perf.data), CONFIG=FILE (serve --config FILE, e.g. with alert rules),
# HOLD=SECONDS (keep the server up this long after the load, e.g. for alerts to drain; the
# figures above cover the load only).
#
# Alternate the builds (A B A B …): this machine's fsync latency drifts from run to run, and
# events/s follows it at 4 clients; server µs/event is the steadier figure.
set -euo pipefail
BIN=${1:?usage: bench/ingest_ab.sh BIN_DIR FILE [N]}
FILE=${2:?usage: bench/ingest_ab.sh BIN_DIR FILE [N]}
N=${3:-0}
CLIENTS=${CLIENTS:-4}
D=$(mktemp -d "${TMPDIR:-/tmp}/trailkeep-ab.XXXXXX")
PORT=$((20000 + RANDOM % 10000))
KEY="ab-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
TRAILKEEP_ADMIN_KEY=$KEY "$BIN/trailkeep" serve ${CONFIG:+--config "$CONFIG"} --data-dir "$D/data" --listen "127.0.0.1:$PORT" >"$D/server.log" 2>&1 &
SP=$!
cleanup() { kill "$SP" 2>/dev/null || true; wait "$SP" 2>/dev/null || true; rm -rf "$D"; }
trap cleanup EXIT
"$BIN/trailkeep-bench" wait-healthy --url "http://127.0.0.1:$PORT" >/dev/null
[[ -n ${PERF:-} ]] && { perf record -e cpu-clock -F 1999 -g -p "$SP" -o perf.data 2>/dev/null & PP=$!; sleep 0.5; }
snap() { for t in /proc/"$SP"/task/*; do echo "$(cat "$t/comm") $(awk '{print $14+$15}' "$t/stat")"; done; }
snap >"$D/t0"; T0=$(date +%s.%N)
"$BIN/trailkeep-bench" ingest-batch --url "http://127.0.0.1:$PORT" --key "$KEY" --file "$FILE" \
    --clients "$CLIENTS" --events "$N" 2>&1 | grep -E "events/s|latency|RESULT"
snap >"$D/t1"; T1=$(date +%s.%N)
awk '/^VmRSS:/ { printf "server resident memory after the load: %.0f MB\n", $2 / 1024 }' "/proc/$SP/status"
[[ -n ${PERF:-} ]] && { kill -INT "$PP"; wait "$PP" || true; }
[[ -n ${HOLD:-} ]] && sleep "$HOLD"
curl -s "http://127.0.0.1:$PORT/metrics" -H "Authorization: Bearer $KEY" >"$D/metrics"
python3 - "$T0" "$T1" "$D" "$(getconf CLK_TCK)" <<'PY'
import collections, re, sys
t0, t1, d, hz = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def load(p):
    c = collections.Counter()
    for line in open(p):
        name, v = line.rsplit(' ', 1)
        c[name] += int(v)
    return c
a, b = load(d + '/t0'), load(d + '/t1')
busy = {k: b[k] - a[k] for k in b if b[k] - a[k] > 0}
print('server CPU: %.2f s; busy %% of one core by thread name: %s' % (
    sum(busy.values()) / hz, ', '.join(f'{k} {100 * v / hz / (t1 - t0):.0f}' for k, v in sorted(busy.items()))))
m = open(d + '/metrics').read()
def metric(name):
    x = re.search(r'^' + name + r' ([0-9.e+-]+)$', m, re.M)
    return float(x.group(1)) if x else float('nan')
stored = metric('trailkeep_events_stored_total')
print('events stored %d, server µs/event %.2f, fsyncs %d taking %.2f s in all' % (
    stored, sum(busy.values()) / hz / max(stored, 1) * 1e6,
    metric('trailkeep_fsync_seconds_count'), metric('trailkeep_fsync_seconds_sum')))
PY
