#!/usr/bin/env bash
# Fuzzes the JSON API of `envshare serve` with schemathesis against its own OpenAPI document
# (/api/v1/openapi.json): every operation gets generated requests, valid and invalid, and the run
# fails on any 5xx answer (and on answers that do not match the document).
#
# Usage: scripts/fuzz-api.sh [MAX_EXAMPLES]   (per operation; default 100, 13 operations)
# Needs: python3 (with venv), redis-server on PATH, cargo. Not part of CI: run it after changing
# the API. The venv is kept in target/fuzz-api-venv; a private Redis and serve run on free ports
# and are stopped on exit.
set -euo pipefail

cd "$(dirname "$0")/.."
MAX_EXAMPLES="${1:-100}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
VENV="$TARGET_DIR/fuzz-api-venv"
WORK="$(mktemp -d)"
TOKEN="fuzz-token-$(date +%s)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

if [ ! -x "$VENV/bin/st" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --upgrade pip
  "$VENV/bin/pip" install --quiet 'schemathesis>=4,<5'
fi

cargo build -q --bin envshare

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --save '' --appendonly no --dir "$WORK" >"$WORK/redis.log" 2>&1 &
pids+=($!)
SERVE_PORT="$(free_port)"
ENVSHARE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
ENVSHARE_QUEUE=fuzz \
ENVSHARE_API_TOKEN="$TOKEN" \
ENVSHARE_SERVE_ADDR="127.0.0.1:$SERVE_PORT" \
ENVSHARE_LOG=warn \
  "$TARGET_DIR/debug/envshare" serve >"$WORK/serve.log" 2>&1 &
pids+=($!)
BASE="http://127.0.0.1:$SERVE_PORT"
for _ in $(seq 1 50); do
  curl -fsS "$BASE/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done

# /events is an endless stream: schemathesis reads answers whole, so it is left out here (the
# e2e tests cover it).
set +e
"$VENV/bin/st" run "$BASE/api/v1/openapi.json" \
  --url "$BASE" \
  --header "Authorization: Bearer $TOKEN" \
  --checks all \
  --exclude-path /api/v1/events \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 30 \
  --report junit --report-dir "$WORK/report" \
  --suppress-health-check all \
  --seed 1 | tee "$WORK/st.log"
status=${PIPESTATUS[0]}
set -e
echo "--- serve log (warnings and errors) ---"
tail -n 20 "$WORK/serve.log"
if grep -q 'status="5' <(curl -s "$BASE/metrics"); then
  echo "FAIL: serve answered a 5xx:"
  curl -s "$BASE/metrics" | grep 'envshare_http_requests_total' | grep 'status="5'
  exit 1
fi
echo "--- requests served, by route and status ---"
curl -s "$BASE/metrics" | grep '^envshare_http_requests_total' | sort
total=$(curl -s "$BASE/metrics" | awk '/^envshare_http_requests_total/ {s += $NF} END {print s}')
echo "requests in all: $total"
exit "$status"
