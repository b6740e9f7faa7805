#!/usr/bin/env bash
# Runs the whole Portcullis stack on this machine (issuer on SQLite, the example MCP server,
# the gateway) and narrates an agent's allowed and denied tool calls.
# Options are passed to portcullis-demo: --keep-running, --data-dir DIR, --database-url URL.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
ensure_build_deps
cargo build --quiet -p portcullis-examples --bin portcullis-demo
exec target/debug/portcullis-demo "$@"
