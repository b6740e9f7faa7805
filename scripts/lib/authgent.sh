# Shared by the scripts: the peer issuer authgent-server (PyPI, Apache-2.0), in a git-ignored
# venv under .tools/, started on a loopback port for side-by-side benchmarks.

AUTHGENT_VERSION=0.3.4

# Starts authgent-server on 127.0.0.1:$1 with a SQLite database in $2; sets AUTHGENT_PID.
start_authgent() {
  local port=$1 dir=$2 venv=.tools/authgent-venv
  if [ ! -x "$venv/bin/authgent-server" ]; then
    echo "installing authgent-server $AUTHGENT_VERSION into $venv" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "authgent-server==$AUTHGENT_VERSION"
  fi
  mkdir -p "$dir"
  # Its settings also read ./.env: run it from its own directory. The secret key seals its
  # signing key; the rate limit (100 per minute by default) would otherwise cap the benchmark;
  # open registration lets the benchmark register its two agents.
  (
    cd "$dir"
    unset REDIS_URL AUTHGENT_REDIS_URL
    AUTHGENT_SECRET_KEY="bench-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
    AUTHGENT_DATABASE_URL="sqlite+aiosqlite:///$dir/authgent.db" \
    AUTHGENT_SERVER_URL="http://127.0.0.1:$port" \
    AUTHGENT_TOKEN_RATE_LIMIT=100000000 \
    AUTHGENT_REGISTRATION_POLICY=open \
      exec "$OLDPWD/$venv/bin/authgent-server" run --host 127.0.0.1 --port "$port"
  ) >"$dir/server.log" 2>&1 &
  AUTHGENT_PID=$!
  for _ in $(seq 1 150); do
    curl -sf "http://127.0.0.1:$port/health" >/dev/null && return 0
    sleep 0.2
  done
  echo "authgent-server did not start; its log:" >&2
  cat "$dir/server.log" >&2
  return 1
}
