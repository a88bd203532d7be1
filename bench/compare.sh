#!/usr/bin/env bash
# trailkeep vs PostgreSQL, side by side in one run (BENCHMARKS.md).
#
# usage: bench/compare.sh [N]          N events (default 1000000; e.g. 200000 for a quick run)
#
# Steps: generate N events once (cached by N and seed), build `trailkeep` and `trailkeep-bench`
# in release, then
#   1. server A on a fresh data dir: batched ingest of all N events (1,000 a request, 4 clients);
#      stop A; disk use of A's data dir in bytes per event;
#   2. PostgreSQL: binary COPY of the same file into a fresh indexed table, one transaction;
#      steps 1 and 2 alternate RUNS times (default 3); each side's figures are its median run's,
#      and every run's rate is listed in the summary; before each timed load the machine is
#      quiesced (COPY ends with an untimed CHECKPOINT, then `sync`), so neither side pays for
#      the other's deferred disk writes;
#   3. server B on another fresh data dir: single-event ingest (64 clients, SINGLE_EVENTS events);
#   4. server A restarted on its data: stored-event count check, then the filtered first page
#      (tenant t_0000 + billing.* + a few days) over HTTP, and the same query on PostgreSQL;
#   5. a Markdown summary for BENCHMARKS.md (also saved beside the cached data).
#
# Environment (all optional):
#   SEED=1                 generator seed
#   SINGLE_EVENTS=100000   events for the single-event run (at most N)
#   RUNS=3                 batched-ingest and COPY runs, interleaved; each side reports its median
#   QUERY_CLIENTS=4  QUERY_REQUESTS=10000   query load, both sides
#   QUERY_SINCE / QUERY_UNTIL   RFC 3339 range (default: 3 days around the middle of the data)
#   PG_URL=postgres://postgres@127.0.0.1:5432/test
#   CARGO_TARGET_DIR       where cargo builds (default: <repo>/target)
#   SKIP_BUILD=1           use the binaries already in $CARGO_TARGET_DIR/release
#   BENCH_CACHE_DIR        generated data and saved summaries (default: ${TMPDIR:-/tmp}/trailkeep-bench-cache)
#   KEEP_DATA=1            keep the temporary data dirs and logs (path printed at exit)
#
# Exit status: 0 if every step ran and every request was answered correctly (goals missed or
# met alike), 1 otherwise.

set -euo pipefail

die() { echo "compare.sh: error: $*" >&2; exit 1; }
section() { printf '\n=== %s\n' "$*"; }

N=${1:-1000000}
[[ $N =~ ^[0-9]+$ ]] && (( N > 0 )) || die "N must be a positive integer, got '$N' (usage: bench/compare.sh [N])"
(( $# <= 1 )) || die "usage: bench/compare.sh [N]"
SEED=${SEED:-1}
BATCH=1000
BATCH_CLIENTS=4
SINGLE_CLIENTS=64
SINGLE_EVENTS=${SINGLE_EVENTS:-100000}
RUNS=${RUNS:-3}
[[ $RUNS =~ ^[0-9]+$ ]] && (( RUNS > 0 )) || die "RUNS must be a positive integer, got '$RUNS'"
(( SINGLE_EVENTS > N )) && SINGLE_EVENTS=$N
QUERY_CLIENTS=${QUERY_CLIENTS:-4}
QUERY_REQUESTS=${QUERY_REQUESTS:-10000}
QUERY_TENANT=t_0000
QUERY_PREFIX=billing.
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
CACHE_DIR=${BENCH_CACHE_DIR:-${TMPDIR:-/tmp}/trailkeep-bench-cache}
CMDLINE="bench/compare.sh $*"
STARTED_AT=$(date -u '+%Y-%m-%d %H:%M UTC')
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')

GEN=$ROOT/scripts/gen_events.py
[[ -f $GEN ]] || die "$GEN not found (it is part of the repository)"
for tool in python3 du awk; do
    command -v "$tool" >/dev/null || die "'$tool' is needed and not on PATH"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/trailkeep-compare.XXXXXX")
SERVER_PID=""
SERVER_URL=""
SERVER_LOG=""
NOTES=()      # anything suspicious, printed with the summary
FAILED=()     # steps that failed

note() { NOTES+=("$*"); echo "NOTE: $*"; }

stop_server() {
    [[ -n $SERVER_PID ]] || return 0
    local pid=$SERVER_PID rc=0 i
    SERVER_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 300; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            note "trailkeep serve (pid $pid) did not exit within 30 s of SIGTERM; killed"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || rc=$?
    if (( rc != 0 )); then
        note "trailkeep serve exited with status $rc after SIGTERM (log: $(basename "$SERVER_LOG"))"
    fi
}

cleanup() {
    local rc=$?
    stop_server || true
    if [[ ${KEEP_DATA:-0} == 1 ]]; then
        echo "data dirs and logs kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# start_server DATA_DIR LABEL: starts `trailkeep serve`, waits for /healthz (300 s: the embedded
# store replays its log at open); sets START_SECS to the time from launch to /healthz.
start_server() {
    local dir=$1 label=$2 port rc=0
    port=$(free_port)
    SERVER_URL="http://127.0.0.1:$port"
    SERVER_LOG="$WORK/server-$label.log"
    echo "starting trailkeep serve --data-dir $dir --listen 127.0.0.1:$port (log $SERVER_LOG)"
    local t0
    t0=$(date +%s.%N)
    TRAILKEEP_ADMIN_KEY="$KEY" "$TK" serve --data-dir "$dir" --listen "127.0.0.1:$port" \
        >>"$SERVER_LOG" 2>&1 &
    SERVER_PID=$!
    local deadline=$((SECONDS + 300))
    until "$BENCH" wait-healthy --url "$SERVER_URL" --timeout-secs 1 >/dev/null 2>&1; do
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            wait "$SERVER_PID" 2>/dev/null || rc=$?
            SERVER_PID=""
            echo "error: trailkeep serve exited with status $rc before answering /healthz; last lines of its log:" >&2
            tail -n 20 "$SERVER_LOG" | sed 's/^/    /' >&2
            return 1
        fi
        if (( SECONDS > deadline )); then
            echo "error: trailkeep serve did not answer GET $SERVER_URL/healthz with 200 within 300 s; last lines of its log:" >&2
            tail -n 20 "$SERVER_LOG" | sed 's/^/    /' >&2
            stop_server
            return 1
        fi
    done
    START_SECS=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    echo "server up at $SERVER_URL after $START_SECS s"
}

# rss_mb PID: resident memory of a process in MB.
rss_mb() {
    awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo "?"
}

# run_step NAME CMD...: runs a bench subcommand, output to the terminal and $WORK/NAME.log.
run_step() {
    local name=$1
    shift
    if "$@" 2>&1 | tee "$WORK/$name.log"; then
        return 0
    fi
    FAILED+=("$name")
    echo "step '$name' FAILED (see output above)" >&2
    return 0
}

# field STEP KEY: a value from the RESULT line of a step's log, or empty.
field() {
    local log="$WORK/$1.log"
    [[ -f $log ]] || return 0
    { grep '^RESULT ' "$log" || true; } | tail -n 1 | tr ' ' '\n' | sed -n "s/^$2=//p"
}

step_failed() {
    local f
    for f in "${FAILED[@]+"${FAILED[@]}"}"; do [[ $f == "$1" ]] && return 0; done
    return 1
}

# disk_report DIR EVENTS: prints the data dir's size; sets DISK (bytes per event).
disk_report() {
    local b alloc
    b=$(du -sb "$1" | cut -f1)
    alloc=$(du -s -B1 "$1" | cut -f1)
    DISK=$(awk -v b="$b" -v n="$2" 'BEGIN { printf "%.1f", (n > 0 ? b / n : 0) }')
    echo "data dir $1 after stop: $b bytes (du -sb; $alloc bytes allocated) for $2 events = $DISK bytes per stored event"
    (cd "$1" && find . -type f -printf '%s %p\n' | sort -rn | head -n 5 | sed 's/^/    largest: /')
}

# proc_cpu PID: CPU seconds (user + sys) the process has used, or empty.
proc_cpu() {
    awk -v hz="$(getconf CLK_TCK 2>/dev/null || echo 100)" \
        '{ sub(/^.*\) /, ""); printf "%.2f", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || true
}

# cpu_report CPU_BEFORE EVENTS: prints the server's CPU use since CPU_BEFORE; sets CPU_US (µs/event).
cpu_report() {
    local now
    CPU_US=""
    now=$(proc_cpu "$SERVER_PID")
    [[ -n $1 && -n $now ]] || return 0
    CPU_US=$(awk -v a="$1" -v b="$now" -v n="$2" 'BEGIN { printf "%.1f", (b - a) * 1e6 / n }')
    echo "server CPU (user+sys) during the step: $(awk -v a="$1" -v b="$now" 'BEGIN { printf "%.2f", b - a }') s = $CPU_US µs per event"
}

num() {  # thousands separators; "—" when empty
    if [[ -z ${1:-} ]]; then echo "—"; return; fi
    LC_ALL=C awk -v x="$1" 'BEGIN {
        s = sprintf("%.0f", x); o = ""
        while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) }
        print s o }'
}

# timed_stop: stops the server and prints how long the graceful shutdown took.
timed_stop() {
    local t0=$SECONDS
    stop_server
    echo "server stopped in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------------------------
section "data: $N events, seed $SEED"
mkdir -p "$CACHE_DIR"
DATA="$CACHE_DIR/events-$N-seed$SEED.ndjson"
if [[ -s $DATA ]]; then
    echo "using cached $DATA"
else
    echo "generating $DATA with $GEN"
    python3 "$GEN" "$N" --seed "$SEED" >"$DATA.tmp.$$" || { rm -f "$DATA.tmp.$$"; die "gen_events.py failed"; }
    mv "$DATA.tmp.$$" "$DATA"
fi
LINES=$(grep -c . "$DATA" || true)
(( LINES == N )) || die "$DATA holds $LINES events, expected $N (delete it to regenerate)"
echo "$(du -h "$DATA" | cut -f1) in $DATA"

# Query range: 3 days around the middle of the data, clamped to the data (QUERY_SINCE/UNTIL win).
read -r AUTO_SINCE AUTO_UNTIL < <(python3 - "$DATA" <<'PY'
import datetime as dt, json, os, sys
path = sys.argv[1]
def ts(line):
    return dt.datetime.strptime(json.loads(line)["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
with open(path, "rb") as f:
    first = ts(f.readline())
    f.seek(max(0, os.path.getsize(path) - 4096))
    last = ts(f.read().splitlines()[-1])
mid = first + (last - first) / 2
since = max(first, mid - dt.timedelta(days=1.5)).replace(microsecond=0)
until = min(last, mid + dt.timedelta(days=1.5)).replace(microsecond=0) + dt.timedelta(seconds=1)
fmt = "%Y-%m-%dT%H:%M:%SZ"
print(since.strftime(fmt), until.strftime(fmt))
PY
) || die "cannot read the first and last timestamps of $DATA"
QUERY_SINCE=${QUERY_SINCE:-$AUTO_SINCE}
QUERY_UNTIL=${QUERY_UNTIL:-$AUTO_UNTIL}
echo "query range: [$QUERY_SINCE, $QUERY_UNTIL)"

# ---------------------------------------------------------------------------------------------
section "build (release, CARGO_TARGET_DIR=$TARGET_DIR)"
if [[ ${SKIP_BUILD:-0} == 1 ]]; then
    echo "SKIP_BUILD=1: using existing binaries"
else
    (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p trailkeep -p trailkeep-bench) \
        || die "cargo build --release -p trailkeep -p trailkeep-bench failed"
fi
TK="$TARGET_DIR/release/trailkeep"
BENCH="$TARGET_DIR/release/trailkeep-bench"
[[ -x $TK ]] || die "$TK not found"
[[ -x $BENCH ]] || die "$BENCH not found"
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git -C "$ROOT" status --porcelain 2>/dev/null | head -n 1) ]]; then REV="$REV+dirty"; fi

# ---------------------------------------------------------------------------------------------
section "PostgreSQL"
if ! pg_isready -d "$PG_URL" -q 2>/dev/null; then
    command -v pg_ctlcluster >/dev/null || die "PostgreSQL is not answering at $PG_URL and pg_ctlcluster is not installed"
    PG_VER=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
    [[ -n $PG_VER ]] || die "PostgreSQL is not answering at $PG_URL and no cluster is configured in /etc/postgresql"
    echo "starting PostgreSQL $PG_VER/main"
    pg_ctlcluster --skip-systemctl-redirect "$PG_VER" main start || die "pg_ctlcluster $PG_VER main start failed"
    for ((i = 0; i < 60; i++)); do pg_isready -d "$PG_URL" -q 2>/dev/null && break; sleep 0.5; done
    pg_isready -d "$PG_URL" -q 2>/dev/null || die "PostgreSQL did not become ready at $PG_URL within 30 s"
fi
if command -v psql >/dev/null && ! psql "$PG_URL" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    DB=${PG_URL##*/}
    DB=${DB%%\?*}
    echo "creating database $DB"
    psql "${PG_URL%/*}/postgres" -qc "CREATE DATABASE \"$DB\"" || die "cannot connect to $PG_URL nor create its database"
fi
echo "PostgreSQL ready at $PG_URL"

KEY="bench-$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')"
export TRAILKEEP_KEY=$KEY   # read by trailkeep-bench's --key
DIR_B="$WORK/data-single"
TK_OK=1

# ---------------------------------------------------------------------------------------------
# quiesce: no timed step shares the disk with the previous step's leftovers. PostgreSQL's COPY
# ends with an untimed CHECKPOINT (pg-copy); this writes back whatever else is dirty (the data
# dir of the run before, the table dropped by the next COPY) before the clock starts.
quiesce() {
    local t0=$SECONDS
    sync
    echo "sync before the timed step: $((SECONDS - t0)) s (not timed)"
}

# Steps 1 and 2 run RUNS times, interleaved (trailkeep, PostgreSQL, trailkeep, …), so that both
# sides sample the same stretches of this machine's speed, which drifts by ±15% over minutes.
# Each side's figures are those of its median run (by events/s); every run is listed too.
declare -a RUN_TK=() RUN_PG=() RUN_CPU=() RUN_RSS=() RUN_DISK=() RUN_DIR=()
for ((run = 1; run <= RUNS; run++)); do
    section "1. trailkeep batched ingest: $N events, $BATCH a request, $BATCH_CLIENTS clients (run $run of $RUNS)"
    quiesce
    dir="$WORK/data-batch-$run"
    mkdir -p "$dir"
    if start_server "$dir" "batch-$run"; then
        CPU0=$(proc_cpu "$SERVER_PID")
        run_step "ingest_batch_$run" "$BENCH" ingest-batch --url "$SERVER_URL" --file "$DATA" \
            --clients "$BATCH_CLIENTS" --batch "$BATCH"
        cpu_report "$CPU0" "$N"
        RUN_CPU[run]=$CPU_US
        RUN_RSS[run]=$(rss_mb "$SERVER_PID")
        echo "server resident memory after loading $N events: ${RUN_RSS[run]} MB"
        timed_stop
        disk_report "$dir" "$N"
        RUN_DISK[run]=$DISK
        RUN_DIR[run]=$dir
        RUN_TK[run]=$(field "ingest_batch_$run" events_per_s)
    else
        TK_OK=0
        FAILED+=(ingest_batch)
        note "trailkeep serve could not be started: every trailkeep figure is missing"
    fi

    section "2. PostgreSQL binary COPY of the same $N events (run $run of $RUNS)"
    quiesce
    run_step "pg_copy_$run" "$BENCH" pg-copy --pg "$PG_URL" --file "$DATA"
    RUN_PG[run]=$(field "pg_copy_$run" rows_per_s)
done
for ((run = 1; run <= RUNS; run++)); do
    step_failed "ingest_batch_$run" && FAILED+=(ingest_batch)
    step_failed "pg_copy_$run" && FAILED+=(pg_copy)
done

# median_run VALUES...: the run number (1-based) holding the median of the values (the lower
# middle for an even count); empty values count as 0.
median_run() {
    local i=0 v
    for v in "$@"; do i=$((i + 1)); echo "${v:-0} $i"; done | sort -g | awk -v n=$# 'NR == int((n + 1) / 2) { print $2 }'
}
TK_LIST=() PG_LIST=()
for ((run = 1; run <= RUNS; run++)); do TK_LIST+=("${RUN_TK[run]:-}"); PG_LIST+=("${RUN_PG[run]:-}"); done
M_TK=$(median_run "${TK_LIST[@]}")
M_PG=$(median_run "${PG_LIST[@]}")
cp "$WORK/ingest_batch_$M_TK.log" "$WORK/ingest_batch.log" 2>/dev/null || true
cp "$WORK/pg_copy_$M_PG.log" "$WORK/pg_copy.log" 2>/dev/null || true
DIR_A=${RUN_DIR[M_TK]:-$WORK/data-batch-1}
CPU_BATCH=${RUN_CPU[M_TK]:-}
RSS_BATCH=${RUN_RSS[M_TK]:-}
DISK_A=${RUN_DISK[M_TK]:-}
RUNS_LINE=""
for ((run = 1; run <= RUNS; run++)); do
    RUNS_LINE+="${RUNS_LINE:+; }run $run: $(num "${RUN_TK[run]:-}") vs $(num "${RUN_PG[run]:-}")"
done
echo "batched ingest vs COPY, events/s by run: $RUNS_LINE (medians: trailkeep run $M_TK, PostgreSQL run $M_PG)"
# Only the median run's data dir is used from here on.
for ((run = 1; run <= RUNS; run++)); do
    [[ $run == "$M_TK" ]] || rm -rf "$WORK/data-batch-$run"
done

section "3. trailkeep single-event ingest: $SINGLE_EVENTS events, $SINGLE_CLIENTS clients"
if (( TK_OK )); then
    mkdir -p "$DIR_B"
    if start_server "$DIR_B" single; then
        CPU0=$(proc_cpu "$SERVER_PID")
        run_step ingest_single "$BENCH" ingest-single --url "$SERVER_URL" --file "$DATA" \
            --clients "$SINGLE_CLIENTS" --events "$SINGLE_EVENTS"
        cpu_report "$CPU0" "$SINGLE_EVENTS"
        CPU_SINGLE=$CPU_US
        timed_stop
        disk_report "$DIR_B" "$SINGLE_EVENTS"
        DISK_B=$DISK
    else
        FAILED+=(ingest_single)
    fi
else
    echo "skipped: trailkeep serve does not start"
fi

section "4. filtered first page: tenant $QUERY_TENANT, ${QUERY_PREFIX}*, [$QUERY_SINCE, $QUERY_UNTIL), $QUERY_CLIENTS clients"
if (( TK_OK )) && ! step_failed ingest_batch; then
    if start_server "$DIR_A" query; then
        RESTART_SECS=$START_SECS
        RSS_RESTART=$(rss_mb "$SERVER_PID")
        echo "restarted on $N events in $RESTART_SECS s, resident memory $RSS_RESTART MB"
        if run_step count "$BENCH" count --url "$SERVER_URL"; then
            STORED=$(field count events)
            if [[ -n $STORED && $STORED != "$N" ]]; then
                note "after a restart the server reports $STORED stored events (sum of GET /v1/tenants event_count), expected $N"
            fi
        fi
        run_step query "$BENCH" query --url "$SERVER_URL" --tenant "$QUERY_TENANT" \
            --type-prefix "$QUERY_PREFIX" --since "$QUERY_SINCE" --until "$QUERY_UNTIL" \
            --clients "$QUERY_CLIENTS" --requests "$QUERY_REQUESTS"
        timed_stop
        # The same data after a restart (the store may have replayed and dropped its journals).
        disk_report "$DIR_A" "$N"
        DISK_A2=$DISK
    else
        FAILED+=(query)
        note "trailkeep serve did not come back up on the batch-loaded data dir"
    fi
else
    echo "skipped trailkeep side: no loaded data"
fi
run_step pg_query "$BENCH" pg-query --pg "$PG_URL" --tenant "$QUERY_TENANT" \
    --type-prefix "$QUERY_PREFIX" --since "$QUERY_SINCE" --until "$QUERY_UNTIL" \
    --clients "$QUERY_CLIENTS" --requests "$QUERY_REQUESTS"

QR=$(field query rows)
PR=$(field pg_query rows)
if [[ -n $QR && -n $PR && $QR != "$PR" ]]; then
    note "first page sizes differ: trailkeep returned $QR events, PostgreSQL $PR rows"
fi

# Server logs: anything that looks like a panic or an error.
for log in "$WORK"/server-*.log; do
    [[ -f $log ]] || continue
    c=$(grep -ciE 'panick|error' "$log" || true)
    if (( c > 0 )); then
        note "$(basename "$log"): $c line(s) mentioning panic/error, first: $(grep -iE 'panick|error' "$log" | head -n 1 | cut -c1-200)"
    fi
done

# ---------------------------------------------------------------------------------------------
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')

val() { if [[ -z ${1:-} ]]; then echo "—"; else echo "$1"; fi; }
calc() { awk "BEGIN { print ($1) }"; }
mark() {  # STEP CONDITION(awk expression, empty values make it "—")
    if step_failed "$1"; then echo "FAILED"; return; fi
    if awk "BEGIN { exit !($2) }" 2>/dev/null; then echo "yes"; else echo "no"; fi
}

B_EPS=$(field ingest_batch events_per_s)
B_P50=$(field ingest_batch p50_ms)
B_P99=$(field ingest_batch p99_ms)
PG_RPS=$(field pg_copy rows_per_s)
PG_BPR=$(field pg_copy bytes_per_row)
PG_CPU_US=$(field pg_copy backend_cpu_s)
if [[ -n $PG_CPU_US ]] && awk "BEGIN { exit !($PG_CPU_US > 0) }"; then
    PG_CPU_US=$(awk -v c="$PG_CPU_US" -v n="$N" 'BEGIN { printf "%.1f", c * 1e6 / n }')
else
    PG_CPU_US=""
fi
S_EPS=$(field ingest_single events_per_s)
S_P50=$(field ingest_single p50_ms)
S_P99=$(field ingest_single p99_ms)
S_MAX=$(field ingest_single max_ms)
Q_QPS=$(field query qps)
Q_P50=$(field query p50_ms)
Q_P99=$(field query p99_ms)
PQ_QPS=$(field pg_query qps)
PQ_P50=$(field pg_query p50_ms)
PQ_P99=$(field pg_query p99_ms)

RATIO_INGEST="—"; MET_INGEST="—"
if [[ -n $B_EPS && -n $PG_RPS ]]; then
    RATIO_INGEST="$(calc "sprintf(\"%.1f\", $B_EPS / $PG_RPS)")×"
    MET_INGEST=$(mark ingest_batch "$B_EPS >= 10 * $PG_RPS")
fi
MET_SINGLE="—"
[[ -n $S_EPS ]] && MET_SINGLE=$(mark ingest_single "$S_EPS >= 10000")
MET_SINGLE_P99="—"
[[ -n $S_P99 ]] && MET_SINGLE_P99=$(mark ingest_single "$S_P99 < 50")
MET_DISK="—"
DISK_CELL=$(val "${DISK_A:-}")
if [[ -n ${DISK_A:-} ]]; then
    DISK_WORST=$DISK_A
    if [[ -n ${DISK_A2:-} ]]; then
        DISK_CELL="$DISK_A / $DISK_A2"
        DISK_WORST=$(awk -v a="$DISK_A" -v b="$DISK_A2" 'BEGIN { print (a > b ? a : b) }')
    fi
    MET_DISK=$(mark ingest_batch "$DISK_WORST < 300")
fi
RATIO_QPS="—"; MET_QPS="—"
if [[ -n $Q_QPS && -n $PQ_QPS ]]; then
    RATIO_QPS="$(calc "sprintf(\"%.2f\", $Q_QPS / $PQ_QPS)")×"
    MET_QPS=$(mark query "$Q_QPS >= $PQ_QPS")
fi
MET_QP99="—"
[[ -n $Q_P99 ]] && MET_QP99=$(mark query "$Q_P99 < 5")
for s in ingest_batch ingest_single query; do
    if step_failed "$s"; then
        case $s in
            ingest_batch) MET_INGEST=FAILED; MET_DISK=FAILED ;;
            ingest_single) MET_SINGLE=FAILED; MET_SINGLE_P99=FAILED ;;
            query) MET_QPS=FAILED; MET_QP99=FAILED ;;
        esac
    fi
done

SUMMARY="$WORK/summary.md"
{
    echo "### $STARTED_AT — \`$CMDLINE\`"
    echo
    echo "N = $N events from \`gen_events.py $N --seed $SEED\` ($(du -h "$DATA" | cut -f1)), rev \`$REV\`, $(nproc) cores, load average at start $LOAD_START, at end $LOAD_END."
    echo "PostgreSQL: $(psql "$PG_URL" -Atqc 'SHOW server_version' 2>/dev/null | cut -d' ' -f1 || echo '?'), stock settings (fsync on, synchronous_commit on), table with primary key + 3 indexes; COPY in one transaction; queries with plan_cache_mode=force_custom_plan."
    echo "Query: tenant \`$QUERY_TENANT\`, \`event_type=${QUERY_PREFIX}*\`, [$QUERY_SINCE, $QUERY_UNTIL), limit 100, newest first; first page holds $(val "$QR") events (PostgreSQL: $(val "$PR") rows)."
    echo
    echo "| measurement | trailkeep | PostgreSQL | trailkeep / PG | goal (BENCHMARKS.md) | met |"
    echo "|---|---:|---:|---:|---|:-:|"
    echo "| durable batched ingest, $BATCH events/request, $BATCH_CLIENTS clients (events/s; median of $RUNS interleaved runs) | $(num "$B_EPS") | $(num "$PG_RPS") (COPY) | $RATIO_INGEST | ≥ 10× PG | $MET_INGEST |"
    echo "| batched ingest request latency p50 / p99 (ms) | $(val "$B_P50") / $(val "$B_P99") | — | | | |"
    echo "| durable single-event ingest, $SINGLE_CLIENTS clients, $(num "$SINGLE_EVENTS") events (events/s) | $(num "$S_EPS") | — | | ≥ 10,000 | $MET_SINGLE |"
    echo "| single-event latency p50 / p99 / max (ms) | $(val "$S_P50") / $(val "$S_P99") / $(val "$S_MAX") | — | | p99 < 50 | $MET_SINGLE_P99 |"
    echo "| disk, bytes per stored event (du -sb of the batch-loaded data dir: after its first stop / after a restart and stop) | $DISK_CELL | $(val "$PG_BPR") (table + indexes) | | < 300 | $MET_DISK |"
    echo "| CPU per event during ingest, server process user+sys (µs): batched / single | $(val "${CPU_BATCH:-}") / $(val "${CPU_SINGLE:-}") | $(val "$PG_CPU_US") (COPY backend only) | | | |"
    echo "| filtered first page, $QUERY_CLIENTS clients (queries/s) | $(num "$Q_QPS") | $(num "$PQ_QPS") | $RATIO_QPS | ≥ PG | $MET_QPS |"
    echo "| filtered first page latency p50 / p99 (ms) | $(val "$Q_P50") / $(val "$Q_P99") | $(val "$PQ_P50") / $(val "$PQ_P99") | | p99 < 5 (goal at 10M events) | $MET_QP99 |"
    echo
    echo "Batched ingest vs COPY by run (events/s): $RUNS_LINE."
    if [[ -n ${DISK_B:-} ]]; then
        echo "Single-event data dir: ${DISK_B} bytes per stored event."
    fi
    if [[ -n ${RSS_BATCH:-} ]]; then
        echo "Server resident memory: ${RSS_BATCH} MB after the batched load, ${RSS_RESTART:-?} MB after a restart on the same data (which took ${RESTART_SECS:-?} s to answer /healthz)."
    fi
    if (( ${#NOTES[@]} > 0 )); then
        echo
        echo "Notes:"
        for n in "${NOTES[@]}"; do echo "- $n"; done
    fi
    if (( ${#FAILED[@]} > 0 )); then
        echo
        echo "FAILED steps: ${FAILED[*]} (no figure is given for them)."
    fi
} >"$SUMMARY"

section "summary (paste into BENCHMARKS.md)"
echo
cat "$SUMMARY"
SAVED="$CACHE_DIR/summary-$(date -u +%Y%m%dT%H%M%SZ)-N$N.md"
cp "$SUMMARY" "$SAVED"
echo
echo "(saved to $SAVED)"

(( ${#FAILED[@]} == 0 )) || exit 1
