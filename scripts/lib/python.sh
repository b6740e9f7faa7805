# Shared by the scripts: the official MCP Python SDK in a git-ignored venv under .tools/, for
# the interop tests (examples/tests/interop_python.rs finds it there).

PYTHON_MCP_VERSION=2.3.0

ensure_python_mcp() {
  local venv=.tools/py-mcp
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import mcp, importlib.metadata as m; assert m.version('mcp') == '$PYTHON_MCP_VERSION'" 2>/dev/null; then
    echo "installing the MCP Python SDK $PYTHON_MCP_VERSION into $venv" >&2
    "$venv/bin/pip" install -q "mcp==$PYTHON_MCP_VERSION"
  fi
}

SCHEMATHESIS_VERSION=4.32.5

# schemathesis, which checks the issuer's admin API against its own OpenAPI document
# (scripts/schemathesis.sh).
ensure_schemathesis() {
  local venv=.tools/schemathesis
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('schemathesis') == '$SCHEMATHESIS_VERSION'" 2>/dev/null; then
    echo "installing schemathesis $SCHEMATHESIS_VERSION into $venv" >&2
    "$venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
  fi
}

OTELTEST_VERSION=0.49.0

# OpenTelemetry's OTLP test receiver (`oteltest`'s sink), for the traces test
# (examples/tests/traces.rs finds it in .tools/oteltest).
ensure_oteltest() {
  local venv=.tools/oteltest
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('oteltest') == '$OTELTEST_VERSION'" 2>/dev/null; then
    echo "installing oteltest $OTELTEST_VERSION into $venv" >&2
    "$venv/bin/pip" install -q "oteltest==$OTELTEST_VERSION"
  fi
}
