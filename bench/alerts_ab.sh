#!/usr/bin/env bash
# Batched ingest with and without alerting, alternated (A B A B …) on fresh servers, and the
# alert latency under that load: B runs with ten alert rules (docs/alerts.md) delivering to one
# webhook channel, a loopback receiver (bench/alert_receiver.py) that records, per alert, the
# time from the event's receipt by trailkeep to its arrival.
#
# usage: bench/alerts_ab.sh BIN_DIR FILE [ROUNDS]
#   BIN_DIR  holds `trailkeep` and `trailkeep-bench` (a release build)
#   FILE     NDJSON events from scripts/gen_events.py; ROUNDS alternations (default 3)
# The rules read nearly every event type of the reference mix back from the log (crawl runs
# and logins included), so B pays the delivery loop's full reading cost; about 0.7% of the
# events match.
set -euo pipefail
BIN=${1:?usage: bench/alerts_ab.sh BIN_DIR FILE [ROUNDS]}
FILE=${2:?usage: bench/alerts_ab.sh BIN_DIR FILE [ROUNDS]}
ROUNDS=${3:-3}
HERE=$(cd "$(dirname "$0")" && pwd)
D=$(mktemp -d "${TMPDIR:-/tmp}/trailkeep-alerts-ab.XXXXXX")
trap 'rm -rf "$D"' EXIT
PORT=$((30000 + RANDOM % 10000))
cat >"$D/alerts.toml" <<TOML
[[alerts.channels]]
name = "siem"
kind = "webhook"
url = "http://127.0.0.1:$PORT/hook"
secret = "bench-secret"

[[alerts.rules]]
name = "global-kill-switch"
event_types = ["killswitch.*"]
where = 'payload.scope == "global"'
channels = ["siem"]

[[alerts.rules]]
name = "kill-switch-vip"
event_types = ["killswitch.embed.disable"]
tenants = ["t_0001", "t_0002"]
channels = ["siem"]

[[alerts.rules]]
name = "quota-override-vip"
event_types = ["billing.quota.override"]
actors = ["admin:*"]
tenants = ["t_0003", "t_0004"]
channels = ["siem"]

[[alerts.rules]]
name = "pii-filter"
event_types = ["policy.update"]
where = 'payload.setting == "pii_filter" and tenant_id in ["t_0001", "t_0005"]'
channels = ["siem"]

[[alerts.rules]]
name = "thresholds"
event_types = ["threshold.update"]
where = 'payload.setting == "answer_confidence_threshold" and tenant_id == "t_0002"'
channels = ["siem"]

[[alerts.rules]]
name = "impersonation-vip"
event_types = ["impersonation.start"]
tenants = ["t_0006", "t_0007"]
channels = ["siem"]

[[alerts.rules]]
name = "enterprise-grace"
event_types = ["billing.grace.*"]
where = 'payload.after.plan == "enterprise"'
channels = ["siem"]

[[alerts.rules]]
name = "prompt-vip"
event_types = ["prompt.update"]
tenants = ["t_0009"]
channels = ["siem"]

[[alerts.rules]]
name = "manual-crawl-failure"
event_types = ["crawl.run"]
where = 'payload.status == "failure" and payload.trigger == "manual" and tenant_id == "t_0000"'
channels = ["siem"]

[[alerts.rules]]
name = "api-key-login-failure"
event_types = ["auth.login"]
where = 'payload.success == false and payload.method == "api_key" and tenant_id == "t_0001"'
channels = ["siem"]
TOML
for r in $(seq 1 "$ROUNDS"); do
  echo "== round $r: A (no alerting)"
  "$HERE/ingest_ab.sh" "$BIN" "$FILE"
  echo "== round $r: B (10 rules, one webhook channel)"
  python3 "$HERE/alert_receiver.py" "$PORT" "$D/latency-$r.json" &
  RP=$!
  sleep 0.5
  CONFIG="$D/alerts.toml" HOLD=${HOLD:-5} "$HERE/ingest_ab.sh" "$BIN" "$FILE"
  kill -TERM "$RP"; wait "$RP" || true
  echo "alert latency (receipt to receiver): $(cat "$D/latency-$r.json")"
done
