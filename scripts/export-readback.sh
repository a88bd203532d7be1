#!/usr/bin/env bash
# Reads exports back with independent readers: starts `trailkeep serve` (debug build) on a free
# loopback port over a fresh data dir, stores the reference event mix (scripts/gen_events.py)
# plus edge cases (formula-like cells, nanosecond timestamps, Unicode, sessions), exports every
# event as NDJSON, Parquet and CSV with `trailkeep export`, and checks the Parquet (pyarrow and
# DuckDB) and the CSV against the NDJSON field by field (scripts/export_readback.py). Also checks
# that `trailkeep export --bigquery-schema` is what a BigQuery table schema allows.
#
# Usage: scripts/export-readback.sh [N events, default 20000]
# pyarrow and duckdb are installed (pinned) into ${XDG_CACHE_HOME:-$HOME/.cache}/trailkeep/venv-export.
set -euo pipefail
cd "$(dirname "$0")/.."

PYARROW_VERSION=26.0.1
DUCKDB_VERSION=2.0.1
N="${1:-20000}"
VENV="${XDG_CACHE_HOME:-$HOME/.cache}/trailkeep/venv-export"
say() { echo "export-readback.sh: $*" >&2; }

if ! "$VENV/bin/python" -c "import pyarrow, duckdb, sys; sys.exit(not (pyarrow.__version__ == '$PYARROW_VERSION' and duckdb.__version__ == '$DUCKDB_VERSION'))" 2>/dev/null; then
  say "installing pyarrow $PYARROW_VERSION and duckdb $DUCKDB_VERSION into $VENV"
  rm -rf "$VENV"
  mkdir -p "$(dirname "$VENV")"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    "pyarrow==$PYARROW_VERSION" "duckdb==$DUCKDB_VERSION"
fi

cargo build --locked --quiet --bin trailkeep
TARGET_DIR="$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
BIN="$TARGET_DIR/debug/trailkeep"

WORK="$(mktemp -d)"
SERVER_PID=
cleanup() {
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT

export TRAILKEEP_KEY="readback-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
env -u TRAILKEEP_URL TRAILKEEP_ADMIN_KEY="$TRAILKEEP_KEY" TRAILKEEP_LOG=warn \
  "$BIN" serve --listen 127.0.0.1:0 --data-dir "$WORK/data" 2>"$WORK/serve.log" &
SERVER_PID=$!
URL=
for _ in $(seq 1 300); do
  URL="$(grep -o 'listening on http://[0-9.:]*' "$WORK/serve.log" | head -n1 | sed 's/listening on //')" || true
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$URL" ] || { say "the server did not start"; cat "$WORK/serve.log" >&2; exit 1; }
export TRAILKEEP_URL="$URL"

python3 scripts/gen_events.py "$N" > "$WORK/events.ndjson"
cat >> "$WORK/events.ndjson" <<'EDGE'
{"event_type":"edge.case","actor":"=cmd|' /C calc'!A0","tenant_id":"t_edge","payload":{"note":"+1","x":-5},"timestamp":"2026-01-01T00:00:00.123456789Z"}
{"event_type":"edge.case","actor":"@sum(1,2)","tenant_id":"t_edge","payload":{"tab":"\tlead","cr":"\rlead","quote":"a \"b\", c\nd"},"timestamp":"2026-01-01T00:00:00.000000001Z","source_ip":"2001:db8::1","impersonation_session":"-imp_1"}
{"event_type":"edge.case","actor":"user:zoë@例え.example","tenant_id":"t_edge","payload":{"emoji":"🔒","big":9007199254740991,"neg":-9007199254740991,"f":1.5e-7},"timestamp":"1969-12-31T23:59:59.999999Z","approval_id":"APPROVAL_ID"}
EDGE
# The last edge case carries an approval_id: ingest accepts it only with an approved approval
# of exactly that action (two approver keys), so one is made through the API first.
APPROVAL_ID="$(python3 - "$URL" "$TRAILKEEP_KEY" "$(tail -n1 "$WORK/events.ndjson")" <<'PY'
import json, sys, urllib.request
url, admin, line = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
def post(path, body, key):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": "Bearer " + key,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)
a = post("/v1/approvals", {"tenant_id": line["tenant_id"], "requested_by": "svc:readback",
                           "reason": "export read-back",
                           "action": {"event_type": line["event_type"], "payload": line["payload"]}},
         admin)
for n in range(2):
    key = post("/v1/keys", {"role": "approver"}, admin)["key"]
    post(f"/v1/approvals/{a['id']}/approve", {"approver": f"user:readback{n}"}, key)
print(a["id"])
PY
)"
sed -i "s/APPROVAL_ID/$APPROVAL_ID/" "$WORK/events.ndjson"
"$BIN" ingest "$WORK/events.ndjson" >/dev/null

for f in ndjson parquet csv; do
  "$BIN" export --format "$f" -o "$WORK/export.$f" 2>/dev/null
done
"$VENV/bin/python" scripts/export_readback.py "$WORK/export.ndjson" "$WORK/export.parquet" "$WORK/export.csv"

# The BigQuery schema: the types and modes a table schema allows, one field per Parquet column.
"$BIN" export --bigquery-schema > "$WORK/bq.json"
"$VENV/bin/python" - "$WORK/bq.json" "$WORK/export.parquet" <<'PY'
import json, sys
import pyarrow.parquet as pq
fields = json.load(open(sys.argv[1]))
cols = pq.read_schema(sys.argv[2]).names
names = [f["name"] for f in fields]
assert names == cols, f"BigQuery schema {names} != Parquet columns {cols}"
for f in fields:
    assert set(f) <= {"name", "type", "mode", "description"}, f
    assert f["type"] in {"STRING", "INTEGER", "TIMESTAMP", "BOOLEAN"}, f
    assert f["mode"] in {"REQUIRED", "NULLABLE"}, f
print(f"bigquery schema: {len(fields)} fields, one per Parquet column, in order")
PY
