#!/usr/bin/env bash
# Runs the official MCP conformance suite's authorization checks
# (@modelcontextprotocol/conformance `authorization`) against a real issuer on loopback.
#
# The suite prints an authorization URL and waits for its callback; a person would sign in and
# approve. Here this script is that person: it fetches the sign-in page, signs in as a user of
# the built-in store, approves the consent page, and follows the redirect to the suite's
# callback. Results land in target/conformance/issuer/ (one checks.json per scenario).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
. scripts/lib/node.sh
ensure_build_deps
ensure_node
CONFORMANCE_DIR=$(ensure_npm_package @modelcontextprotocol/conformance "$CONFORMANCE_VERSION")

cargo build -q -p portcullis-issuer
ISSUER_BIN=target/debug/portcullis-issuer

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
PORT=$(free_port)
CALLBACK_PORT=$(free_port)
ISSUER="http://127.0.0.1:$PORT"
RESOURCE="https://gateway.example/mcp/expenses"
WORK=$(mktemp -d)
OUT=target/conformance/issuer
rm -rf "$OUT" && mkdir -p "$OUT"
export PORTCULLIS_DATA_DIR="$WORK/data" PORTCULLIS_ISSUER_URL="$ISSUER"
export PORTCULLIS_USER_PASSWORD="conformance-password-1"
cleanup() { [ -n "${ISSUER_PID:-}" ] && kill "$ISSUER_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

"$ISSUER_BIN" users create alice --resource "$RESOURCE" \
  --allow '[{"type":"mcp_tools","tools":["expenses/list_expenses","expenses/submit_expense"]}]' >/dev/null
"$ISSUER_BIN" clients create --id conformance-client --name "MCP conformance suite" --public \
  --redirect-uri "http://127.0.0.1:$CALLBACK_PORT/callback" >/dev/null
"$ISSUER_BIN" serve --listen "127.0.0.1:$PORT" >"$WORK/issuer.log" 2>&1 &
ISSUER_PID=$!
for _ in $(seq 1 100); do curl -sf "$ISSUER/healthz" >/dev/null && break; sleep 0.1; done

# The person: sign in and approve whatever authorization URL the suite prints.
approve() {
  local url="" jar="$WORK/cookies" page
  for _ in $(seq 1 300); do
    url=$(grep -m1 -E '^https?://.*response_type=code' "$WORK/suite.log" 2>/dev/null || true)
    [ -n "$url" ] && break
    sleep 0.2
  done
  [ -n "$url" ] || { echo "the suite printed no authorization URL" >&2; return 1; }
  field() { sed -n "s/.*name=\"$1\" value=\"\([^\"]*\)\".*/\1/p" <<<"$page" | head -n1; }
  page=$(curl -sS -c "$jar" -b "$jar" "$url")
  local request csrf
  request=$(field request) csrf=$(field csrf)
  [ -n "$request" ] || { echo "no sign-in form: $page" >&2; return 1; }
  page=$(curl -sS -c "$jar" -b "$jar" --data-urlencode "request=$request" --data-urlencode "csrf=$csrf" \
    --data-urlencode username=alice --data-urlencode "password=$PORTCULLIS_USER_PASSWORD" \
    "$ISSUER/authorize/sign-in")
  grep -q 'name="decision"' <<<"$page" || { echo "no consent form: $page" >&2; return 1; }
  local location
  location=$(curl -sS -o /dev/null -w '%{redirect_url}' -c "$jar" -b "$jar" \
    --data-urlencode "request=$request" --data-urlencode "csrf=$csrf" --data-urlencode decision=approve \
    --data-urlencode tool=expenses/list_expenses "$ISSUER/authorize/consent")
  [ -n "$location" ] || { echo "consent did not redirect" >&2; return 1; }
  curl -sS -o /dev/null "$location"
}

node "$CONFORMANCE_DIR/node_modules/@modelcontextprotocol/conformance/dist/index.js" authorization \
  --url "$ISSUER" --client-id conformance-client --resource "$RESOURCE" \
  -p "$CALLBACK_PORT" -o "$OUT" >"$WORK/suite.log" 2>&1 &
SUITE_PID=$!
approve || { kill "$SUITE_PID" 2>/dev/null; cat "$WORK/suite.log" "$WORK/issuer.log" >&2; exit 1; }
status=0
wait "$SUITE_PID" || status=$?
cat "$WORK/suite.log"
# Each check, with its status (warnings and failures with their message).
python3 - "$OUT" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/checks.json")):
    for check in json.loads(path.read_text()):
        message = f" — {check['errorMessage']}" if check.get("errorMessage") else ""
        print(f"{check['status']:>8}  {path.parent.name.rsplit('-', 6)[0]}: {check['id']}{message}")
PY
if [ "$status" -ne 0 ]; then
  echo "conformance authorization checks FAILED" >&2
  cat "$WORK/issuer.log" >&2
fi
exit "$status"
