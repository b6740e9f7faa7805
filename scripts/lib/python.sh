# Shared by the scripts: Python tools the tests need, each in a git-ignored venv of its own under
# .tools/, where the tests find them.

PYTHON_MCP_VERSION=2.3.0
SCHEMATHESIS_VERSION=4.32.5
OTELTEST_VERSION=0.49.0
MCP_SERVER_TIME_VERSION=2026.10.19
FASTMCP_VERSION=4.2.3

# Installs PACKAGE==VERSION into the venv .tools/VENV unless it is there already; WHAT says what
# it is for.
ensure_venv_package() {
  local venv=".tools/$1" package=$2 version=$3 what=$4
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('$package') == '$version'" 2>/dev/null; then
    echo "installing $what ($package $version) into $venv" >&2
    "$venv/bin/pip" install -q "$package==$version"
  fi
}

# The official MCP Python SDK, for the interop tests (examples/tests/interop_python.rs).
ensure_python_mcp() {
  ensure_venv_package py-mcp mcp "$PYTHON_MCP_VERSION" "the MCP Python SDK"
}

# schemathesis, which checks the issuer's admin API against its own OpenAPI document
# (scripts/schemathesis.sh).
ensure_schemathesis() {
  ensure_venv_package schemathesis schemathesis "$SCHEMATHESIS_VERSION" "schemathesis"
}

# OpenTelemetry's OTLP test receiver (oteltest's sink), for examples/tests/traces.rs.
ensure_oteltest() {
  ensure_venv_package oteltest oteltest "$OTELTEST_VERSION" "OpenTelemetry's test receiver"
}

# The reference MCP time server (stdio), for the stdio upstream tests (examples/tests/stdio.rs).
ensure_mcp_server_time() {
  ensure_venv_package mcp-server-time mcp-server-time "$MCP_SERVER_TIME_VERSION" "the MCP time server"
}

# FastMCP, whose JWT verification protects the upstream MCP server of the per-person upstream
# OAuth test (examples/interop/oauth_mcp_server.py, examples/tests/upstream_oauth.rs).
ensure_fastmcp() {
  ensure_venv_package fastmcp fastmcp "$FASTMCP_VERSION" "FastMCP"
}
