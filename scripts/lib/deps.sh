# Shared by the scripts: install what building Portcullis needs on a fresh machine.
# Pingora builds zlib-ng with cmake; ring and SQLite need a C compiler; the chart checks and
# the Node, SDK and peer installs need Python's venv; the scripts wait for servers with curl.

ensure_build_deps() {
  local missing=()
  command -v cmake >/dev/null 2>&1 || missing+=(cmake)
  command -v cc >/dev/null 2>&1 || missing+=(gcc)
  # The conformance and benchmark scripts wait for servers with curl.
  command -v curl >/dev/null 2>&1 || missing+=(curl)
  # The chart checks install their tools into a Python venv (.tools/venv).
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing build dependencies: ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo is not on PATH: install Rust (https://rustup.rs) first" >&2
  exit 1
fi
