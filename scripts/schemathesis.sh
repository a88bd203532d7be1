#!/usr/bin/env bash
# Checks the live API against its own description: starts `trailkeep serve` (debug build) on a
# free loopback port over a fresh data dir, seeds a few events, and runs schemathesis against
# /openapi.json with a bounded number of examples per operation. Fails on any server error (5xx),
# or any answer whose status, content type, headers or body the document does not describe.
#
# Usage: scripts/schemathesis.sh [extra `schemathesis run` args; paths in them must be absolute]
# Env:   TRAILKEEP_ADMIN_KEY   admin key for the test server (>= 32 characters; random if unset)
#        SCHEMATHESIS_EXAMPLES examples per operation (default 100)
#        SCHEMATHESIS_SEED     random seed (default 1: the same cases each run)
#        SCHEMATHESIS_CHECKS   comma-separated checks (default: see CHECKS below)
#        CARGO_TARGET_DIR      as for cargo
# schemathesis is installed (pinned) into ${XDG_CACHE_HOME:-$HOME/.cache}/trailkeep/venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/trailkeep/venv"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-100}"
# Everything the document promises about answers, plus auth and method handling. Not
# positive_data_acceptance / negative_data_rejection: several refusals depend on more than one
# parameter or on the data (seq < tree_size, from_seq needs tenant_id, timestamps within
# 1678..2261), which a schema cannot express, and empty query values count as absent. Not
# ensure_resource_availability: an event's proofs exist only once a checkpoint covers it (within
# a second; until then a documented 404 with Retry-After), and the stateful phase fetches
# `GET /v1/events/{event_id}/proof` right after creating the event; the check cannot be turned
# off for one operation while the checks are chosen on the command line.
CHECKS="${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,ignored_auth,missing_required_header,unsupported_method,allow_header_conformance,use_after_free}"

say() { echo "schemathesis.sh: $*" >&2; }

ensure_schemathesis() {
  if [ -x "$VENV/bin/schemathesis" ] &&
    "$VENV/bin/schemathesis" --version 2>/dev/null | grep -q "version $SCHEMATHESIS_VERSION\$"; then
    return 0
  fi
  say "installing schemathesis $SCHEMATHESIS_VERSION into $VENV"
  if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
      say "installing python3-venv (Debian)"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    else
      say "python3's venv module is missing: install python3-venv (Debian/Ubuntu) and retry"
      return 1
    fi
  fi
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
}

ensure_schemathesis

cargo build --locked --quiet --bin trailkeep
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/debug/trailkeep"

if [ -z "${TRAILKEEP_ADMIN_KEY:-}" ]; then
  TRAILKEEP_ADMIN_KEY="schemathesis-$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
fi
if [ "${#TRAILKEEP_ADMIN_KEY}" -lt 32 ]; then
  say "TRAILKEEP_ADMIN_KEY must be at least 32 characters"
  exit 2
fi
export TRAILKEEP_ADMIN_KEY

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A free loopback port (asked of the kernel, then given to the server).
PORT="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
BASE="http://127.0.0.1:$PORT"
# schemathesis sends wrong keys on purpose (its invalid-authentication checks expect 401/403
# every time), far beyond the per-address failed-authentication limit: that limit, which has
# tests of its own (tests/e2e/abuse.rs), is off for this server.
env -u TRAILKEEP_POSTGRES_URL -u TRAILKEEP_DATA_DIR TRAILKEEP_LOG=warn \
  TRAILKEEP_LIMITS__FAILED_AUTH_PER_SECOND=0 \
  "$BIN" serve --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" 2>"$WORK/server.log" &
SERVER_PID=$!
ready=""
for _ in $(seq 1 100); do
  if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' \
    "$BASE/readyz" 2>/dev/null; then
    ready=1
    break
  fi
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the server did not start:"
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  say "the server was not ready within 10 s:"
  cat "$WORK/server.log" >&2
  exit 1
fi
say "server at $BASE"

# Seed events (the document's example event id and tenant among them), then wait for the first
# checkpoint so that the proof endpoints have something to answer with.
python3 - "$BASE" "$WORK/reader-key" <<'PY'
import json, os, sys, time, urllib.request, urllib.error
base, reader_key_file = sys.argv[1], sys.argv[2]
key = os.environ["TRAILKEEP_ADMIN_KEY"]
def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(base + path, method=method, data=body,
        headers={"Authorization": "Bearer " + key, "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
# The document's own example event first, so that the examples phase finds it.
with urllib.request.urlopen(base + "/openapi.json", timeout=10) as r:
    doc = json.load(r)
example = doc["components"]["schemas"]["NewEvent"]["example"]
events = [
    example,
    {"event_type": "crawl.run", "actor": "svc:crawler", "tenant_id": example["tenant_id"],
     "payload": {"domain": "acme.example", "run_id": "r1", "pages_crawled": 10,
                 "pages_failed": 0, "status": "success", "trigger": "schedule"}},
    {"event_type": "billing.plan.change", "actor": "admin:ops", "tenant_id": "t_0043",
     "payload": {"before": {"plan": "free"}, "after": {"plan": "pro"}, "reason": "upgrade"}},
    {"event_type": "killswitch.embed.disable", "actor": "admin:ops", "tenant_id": "_global",
     "payload": {"target": "embed", "scope": "global", "reason": "incident"}},
    {"event_type": "custom.thing", "actor": "svc:x", "tenant_id": example["tenant_id"],
     "payload": {"n": 1}},
]
status, body = call("POST", "/v1/events", json.dumps(events).encode())
if status != 200:
    sys.exit(f"seeding events failed: {status} {body[:500]!r}")
status, body = call("POST", "/v1/keys",
    json.dumps({"role": "reader", "tenant_id": example["tenant_id"]}).encode())
if status != 201:
    sys.exit(f"creating a key failed: {status} {body[:500]!r}")
with open(reader_key_file, "w") as f:
    f.write(json.loads(body)["key"])
for _ in range(100):
    if call("GET", "/v1/tenants/%s/checkpoint" % example["tenant_id"])[0] == 200:
        break
    time.sleep(0.1)
else:
    sys.exit("no checkpoint for the example tenant within 10 s")
PY

# One run per key: a reader key bound to the example tenant (403s and filtered reads), then the
# admin key. One worker: with more, hypothesis trips over a CPython 3.11 bug ("AST
# constructor recursion depth mismatch") when threads parse source at the same time.
run_schemathesis() { # KEY PHASES EXAMPLES [extra args]
  local key="$1" phases="$2" examples="$3"
  shift 3
  # From the temp dir: schemathesis keeps a cache of crashes in the working directory.
  (cd "$WORK" && "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
    --url "$BASE" \
    --header "Authorization: Bearer $key" \
    --checks "$CHECKS" \
    --phases "$phases" \
    --max-examples "$examples" \
    --seed "${SCHEMATHESIS_SEED:-1}" \
    --workers 1 \
    --request-timeout 20 \
    --generation-database none \
    --no-color \
    "$@")
}

rc=0
# The reader first: the admin run's stateful phase revokes the keys it lists. (Its warning that
# the key management and ingest operations answer only 403 is expected: a reader may not.)
say "schemathesis $SCHEMATHESIS_VERSION with a tenant-bound reader key"
run_schemathesis "$(cat "$WORK/reader-key")" examples,coverage,fuzzing "$(((EXAMPLES + 1) / 2))" "$@" || rc=$?
say "schemathesis $SCHEMATHESIS_VERSION with the admin key ($EXAMPLES examples per operation)"
run_schemathesis "$TRAILKEEP_ADMIN_KEY" examples,coverage,fuzzing,stateful "$EXAMPLES" "$@" || rc=$?
if ! kill -0 "$SERVER_PID" 2>/dev/null; then
  say "the server exited during the run:"
  tail -n 50 "$WORK/server.log" >&2
  exit 1
fi
if [ "$rc" -ne 0 ]; then
  say "schemathesis found problems (exit $rc); server log tail:"
  tail -n 30 "$WORK/server.log" >&2
fi
exit "$rc"
