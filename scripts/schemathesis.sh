#!/usr/bin/env bash
# Checks the live API against its own description: starts `trailkeep serve` (debug build) on a
# free loopback port over a fresh data dir, seeds a few events, and runs schemathesis against
# /openapi.json with a bounded number of examples per operation. Fails on any server error (5xx),
# or any answer whose status, content type, headers or body the document does not describe.
#
# Usage: scripts/schemathesis.sh [extra schemathesis run args]
# Env:   TRAILKEEP_ADMIN_KEY   admin key for the test server (>= 32 characters; random if unset)
#        SCHEMATHESIS_EXAMPLES examples per operation (default 40)
#        CARGO_TARGET_DIR      as for cargo
# schemathesis is installed (pinned) into ${XDG_CACHE_HOME:-$HOME/.cache}/trailkeep/venv.
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/trailkeep/venv"
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-40}"

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

# Port 0: the server picks a free port and prints it.
env -u TRAILKEEP_POSTGRES_URL -u TRAILKEEP_DATA_DIR TRAILKEEP_LOG=warn \
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" 2>"$WORK/server.log" &
SERVER_PID=$!
BASE=""
for _ in $(seq 1 100); do
  BASE="$(sed -n 's/^trailkeep listening on \(http:\/\/[0-9.:]*\).*/\1/p' "$WORK/server.log" | head -n1)"
  [ -n "$BASE" ] && break
  if ! kill -0 "$SERVER_PID" 2>/dev/null; then
    say "the server did not start:"
    cat "$WORK/server.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [ -z "$BASE" ]; then
  say "the server did not report its address in 10 s:"
  cat "$WORK/server.log" >&2
  exit 1
fi
say "server at $BASE"

# Seed events (the document's example event id and tenant among them), then wait for the first
# checkpoint so that the proof endpoints have something to answer with.
python3 - "$BASE" <<'PY'
import json, sys, time, urllib.request, urllib.error
base, key = sys.argv[1], __import__("os").environ["TRAILKEEP_ADMIN_KEY"]
def call(method, path, body=None, ctype="application/json"):
    req = urllib.request.Request(base + path, method=method, data=body,
        headers={"Authorization": "Bearer " + key, "Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
h = "sha256:" + "ab" * 32
events = [
    {"event_id": "0192f0c4-7d1e-7a53-8f0e-3c1d2b4a5e6f", "event_type": "prompt.update",
     "actor": "user:ana3@acme.example", "tenant_id": "t_0042",
     "payload": {"before": {"prompt_hash": h}, "after": {"prompt_hash": h},
                 "editor": "user:ana3@acme.example", "reason": "tone fix", "prompt_id": "pr_7"},
     "timestamp": "2026-11-23T10:15:00.123Z", "source_ip": "203.0.113.7",
     "impersonation_session": "imp_8812"},
    {"event_type": "crawl.run", "actor": "svc:crawler", "tenant_id": "t_0042",
     "payload": {"domain": "acme.example", "run_id": "r1", "pages_crawled": 10,
                 "pages_failed": 0, "status": "success", "trigger": "schedule"}},
    {"event_type": "billing.plan.change", "actor": "admin:ops", "tenant_id": "t_0043",
     "payload": {"before": {"plan": "free"}, "after": {"plan": "pro"}, "reason": "upgrade"}},
    {"event_type": "killswitch.embed.disable", "actor": "admin:ops", "tenant_id": "_global",
     "payload": {"target": "embed", "scope": "global", "reason": "incident"}},
    {"event_type": "custom.thing", "actor": "svc:x", "tenant_id": "t_0042", "payload": {"n": 1}},
]
status, body = call("POST", "/v1/events", json.dumps(events).encode())
if status != 200:
    sys.exit(f"seeding events failed: {status} {body[:500]!r}")
status, body = call("POST", "/v1/keys", json.dumps({"role": "reader", "tenant_id": "t_0042"}).encode())
if status != 201:
    sys.exit(f"creating a key failed: {status} {body[:500]!r}")
for _ in range(100):
    if call("GET", "/v1/tenants/t_0042/checkpoint")[0] == 200:
        break
    time.sleep(0.1)
else:
    sys.exit("no checkpoint for t_0042 within 10 s")
PY

say "running schemathesis $SCHEMATHESIS_VERSION ($EXAMPLES examples per operation)"
set +e
# From the temp dir: schemathesis keeps a cache of crashes in the working directory.
(cd "$WORK" && "$VENV/bin/schemathesis" run "$BASE/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $TRAILKEEP_ADMIN_KEY" \
  --checks "${SCHEMATHESIS_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance}" \
  --phases examples,coverage,fuzzing \
  --max-examples "$EXAMPLES" \
  --seed "${SCHEMATHESIS_SEED:-1}" \
  --workers 1 \
  --request-timeout 20 \
  --generation-database none \
  --no-color \
  "$@")
rc=$?
set -e
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
