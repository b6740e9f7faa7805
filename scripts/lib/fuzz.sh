# Shared by the scripts: cargo-fuzz (crates.io) in a git-ignored folder under .tools/, for the
# libFuzzer targets in fuzz/ (built with the nightly toolchain).

CARGO_FUZZ_VERSION=0.13.2

# Installs cargo-fuzz (once) into .tools/cargo-fuzz and puts it first on PATH.
ensure_cargo_fuzz() {
  local root=.tools/cargo-fuzz
  if ! "$root/bin/cargo-fuzz" --version 2>/dev/null | grep -qF "$CARGO_FUZZ_VERSION"; then
    echo "installing cargo-fuzz $CARGO_FUZZ_VERSION into $root" >&2
    cargo install --locked --root "$root" --version "$CARGO_FUZZ_VERSION" cargo-fuzz >&2
  fi
  export PATH="$PWD/$root/bin:$PATH"
  if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "the fuzz targets need the nightly toolchain (rustup toolchain install nightly)" >&2
    return 1
  fi
}
