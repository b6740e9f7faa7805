#!/usr/bin/env bash
# Runs every test of the workspace. The issuer's suite also runs on PostgreSQL when
# PORTCULLIS_TEST_POSTGRES_URL is set (e.g. postgres://postgres@127.0.0.1:5432/test).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
. scripts/lib/python.sh
ensure_build_deps
ensure_python_mcp
# The interop tests skip without the SDK when run by hand; here its absence is a failure.
export PORTCULLIS_REQUIRE_INTEROP=1
if [ -n "${PORTCULLIS_TEST_POSTGRES_URL:-}" ]; then
  echo "issuer tests run on SQLite and on PostgreSQL ($PORTCULLIS_TEST_POSTGRES_URL)" >&2
else
  echo "issuer tests run on SQLite only (set PORTCULLIS_TEST_POSTGRES_URL to add PostgreSQL)" >&2
fi
./scripts/check-chart.sh
./scripts/conformance-issuer.sh
cargo test --workspace --all-targets "$@"
cargo test --workspace --doc
