#!/usr/bin/env bash
# Runs a short, bounded version of every load-generator scenario against the whole stack on
# 127.0.0.1 and writes one JSON summary per scenario into target/bench/ (the human reports go
# to the terminal). About five minutes on a 2-core machine once built.
#
# Keep figures only from a quiet machine: the load generator, the gateway, the MCP server and
# the issuer share its cores with whatever else runs. Within one run, compare the gateway with
# the direct baseline (the A/B rounds are interleaved for that); across runs, only ratios.
# See loadtest/README.md for what each figure measures.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
. scripts/lib/authgent.sh
. scripts/lib/python.sh
. scripts/lib/node.sh
ensure_build_deps
ensure_node
everything_dir=$(ensure_npm_package @modelcontextprotocol/server-everything 2026.8.31)
export PORTCULLIS_NODE="${PORTCULLIS_NODE:-$(command -v node)}"
export PORTCULLIS_EVERYTHING="$PWD/$everything_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
cargo build --release --quiet -p portcullis-loadtest -p portcullis-gateway

bin=target/release/portcullis-loadtest
out=target/bench
mkdir -p "$out"
# A thousand live sessions in one process hold about 4 000 sockets. The tool raises its soft
# open-file limit up to the hard one by itself; raise the hard one here when allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

run() {
  local name=$1
  shift
  echo "== $name: portcullis-loadtest $*" >&2
  # A hard stop on top of the tool's own time bounds.
  timeout --kill-after=10 240 "$bin" --json "$@" >"$out/$name.json"
}

run calls-submit calls --tool submit_expense --clients 8 --duration 15 --warmup 2
run calls-list calls --tool list_expenses --clients 8 --duration 10 --warmup 1
run calls-paced calls --tool submit_expense --clients 8 --duration 10 --warmup 1 --rate 1000
run tools-list tools-list --clients 8 --duration 10 --warmup 1
run tools-list-1000 tools-list --catalog 1000 --clients 8 --duration 10 --warmup 1
run kill-switch-200 kill-switch --sessions 200
run kill-switch-1000 kill-switch --sessions 1000
run memory memory --sessions 1000
run console console --rate 1000 --gateways 4 --consoles 2 --duration 10
# A pooled stdio upstream against the same server (server-everything) over HTTP.
run stdio stdio --clients 4 --rounds 10 --round-seconds 1
run large-bodies large-bodies --bodies 100 --body-mib 4 --gateway-binary target/release/portcullis-gateway
# The gateway alone in a process of its own. 10 000 sessions need 20 000 descriptors in it, more
# than a hard limit of 20 000 allows; take as many as the limit does.
hard=$(ulimit -Hn)
separate=$(( hard == 0 || hard > 21000 ? 10000 : (hard - 1000) / 2 / 1000 * 1000 ))
run "memory-gateway-$separate" memory --sessions "$separate" --gateway-binary target/release/portcullis-gateway

# Token exchange: ours on SQLite (and on PostgreSQL when PORTCULLIS_BENCH_POSTGRES_URL is set)
# against authgent-server, installed into .tools/ and run on a loopback port for this run only.
authgent_dir=$(mktemp -d)
authgent_port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start_authgent "$authgent_port" "$authgent_dir"
trap 'kill "$AUTHGENT_PID" 2>/dev/null; rm -rf "$authgent_dir"' EXIT
run exchange exchange --clients 16 --duration 15 --rounds 5 --authgent-url "http://127.0.0.1:$authgent_port"

echo "JSON summaries:" >&2
ls -1 "$out"/*.json >&2
