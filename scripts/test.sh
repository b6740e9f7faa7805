#!/usr/bin/env bash
# Runs every test of the workspace. The issuer's suite also runs on PostgreSQL when
# PORTCULLIS_TEST_POSTGRES_URL is set (e.g. postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
. scripts/lib/python.sh
. scripts/lib/node.sh
. scripts/lib/fuzz.sh
. scripts/lib/browser.sh
ensure_build_deps
ensure_chromium
ensure_python_mcp
ensure_oteltest
ensure_mcp_server_time
ensure_fastmcp
ensure_node
ensure_cargo_fuzz
ts_client_dir=$(ensure_npm_package @modelcontextprotocol/client 2.4.0)
conformance_dir=$(ensure_npm_package @modelcontextprotocol/conformance "$CONFORMANCE_VERSION")
everything_dir=$(ensure_npm_package @modelcontextprotocol/server-everything 2026.8.31)
# A published stdio server with state of its own (examples/tests/stdio.rs).
memory_dir=$(ensure_npm_package @modelcontextprotocol/server-memory 2026.8.31)
# An upstream's own authorization server (examples/tests/upstream_oauth.rs).
oidc_dir=$(ensure_npm_package oidc-provider 9.13.3)
# A third-party DPoP client library (examples/tests/dpop.rs).
oauth4webapi_dir=$(ensure_npm_package oauth4webapi 3.8.9)
PORTCULLIS_NODE=$(command -v node)
PORTCULLIS_TS_CLIENT="$PWD/$ts_client_dir/node_modules/@modelcontextprotocol/client/dist/index.mjs"
PORTCULLIS_CONFORMANCE="$PWD/$conformance_dir/node_modules/@modelcontextprotocol/conformance/dist/index.js"
PORTCULLIS_EVERYTHING="$PWD/$everything_dir/node_modules/@modelcontextprotocol/server-everything/dist/index.js"
PORTCULLIS_OAUTH4WEBAPI="$PWD/$oauth4webapi_dir/node_modules/oauth4webapi/build/index.js"
PORTCULLIS_SERVER_MEMORY="$PWD/$memory_dir/node_modules/@modelcontextprotocol/server-memory/dist/index.js"
PORTCULLIS_OIDC_PROVIDER="$PWD/$oidc_dir/node_modules/oidc-provider/lib/index.js"
export PORTCULLIS_NODE PORTCULLIS_TS_CLIENT PORTCULLIS_CONFORMANCE PORTCULLIS_EVERYTHING \
  PORTCULLIS_OAUTH4WEBAPI PORTCULLIS_SERVER_MEMORY PORTCULLIS_OIDC_PROVIDER
# The interop and conformance tests skip without their tools when run by hand; here their
# absence is a failure.
export PORTCULLIS_REQUIRE_INTEROP=1
if [ -n "${PORTCULLIS_TEST_POSTGRES_URL:-}" ]; then
  echo "issuer tests run on SQLite and on PostgreSQL ($PORTCULLIS_TEST_POSTGRES_URL)" >&2
else
  echo "issuer tests run on SQLite only (set PORTCULLIS_TEST_POSTGRES_URL to add PostgreSQL)" >&2
fi
# The multi-replica tests count in a real Redis: the machine's (a service on this kind of
# machine), or PORTCULLIS_TEST_REDIS_URL. Say so now rather than in a test's panic later.
if [ -z "${PORTCULLIS_TEST_REDIS_URL:-}" ] && ! timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/6379' 2>/dev/null; then
  echo "test.sh: no Redis on 127.0.0.1:6379 (start redis-server, or set PORTCULLIS_TEST_REDIS_URL)" >&2
  exit 1
fi
./scripts/check-chart.sh
./scripts/conformance-issuer.sh
./scripts/schemathesis.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
# A short pass of every fuzz target (docs/FUZZING.md) from its committed seeds: any crash or
# broken property fails the run. scripts/fuzz.sh alone runs them long.
./scripts/fuzz.sh --time 20
