#!/usr/bin/env bash
# Checks the issuer's admin API against its own OpenAPI document (/openapi.json) with
# schemathesis: every operation is called with generated valid and invalid input, and any
# server error, undocumented status, wrong content type or response outside its schema fails
# the run. The issuer runs on a fresh SQLite database with one person, agent and grant, so
# lookups also find something.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/python.sh
ensure_schemathesis
cargo build -q -p portcullis-issuer

work=$(mktemp -d)
issuer_pid=
cleanup() {
  if [ -n "$issuer_pid" ]; then kill "$issuer_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url="http://127.0.0.1:$port"
token=$(head -c 24 /dev/urandom | base64 | tr -d '+/=')
printf '%s' "$token" > "$work/admin-token"
export PORTCULLIS_DATA_DIR="$work/data" PORTCULLIS_ISSUER_URL="$url"
issuer=./target/debug/portcullis-issuer

PORTCULLIS_USER_PASSWORD=correct-horse-battery \
  "$issuer" users create alice --resource https://mcp.example.com/mcp \
  --allow '[{"type":"mcp_tools","tools":["*"]}]' --operator >/dev/null
"$issuer" clients create --name "Expense agent" --id expense-agent >/dev/null
"$issuer" grants create --user alice --client expense-agent \
  --resource https://mcp.example.com/mcp --details '[{"type":"mcp_tools","tools":["*"]}]' >/dev/null

"$issuer" serve --listen "127.0.0.1:$port" --admin-token-file "$work/admin-token" \
  >"$work/issuer.log" 2>&1 &
issuer_pid=$!
for _ in $(seq 100); do
  if curl -fsS "$url/healthz" >/dev/null 2>&1; then break; fi
  sleep 0.1
done

# Key rotation is left out: each call would make a key, which is all it does. Registering an
# upstream is left out: it fetches the URLs it is given, and generated ones may leave loopback.
status=0
(cd "$work" && NO_COLOR=1 TERM=dumb timeout 600 "$OLDPWD/.tools/schemathesis/bin/st" run \
  "$url/openapi.json" \
  --header "Authorization: Bearer $token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
  --exclude-name "POST /admin/keys/rotate" \
  --exclude-name "POST /admin/upstreams" \
  --generation-database none --seed 7 --no-color) || status=$?
if [ "$status" -ne 0 ]; then
  echo "schemathesis failed; the issuer's log:" >&2
  tail -n 50 "$work/issuer.log" >&2
fi
exit "$status"
