#!/usr/bin/env bash
# Compares the proxied tools/call figures of two builds in one run: the load generator (with
# the whole stack in its process, as ./scripts/bench.sh runs it) is built at REV and at the
# working tree, and their `calls` scenarios run alternately, ROUNDS times each, so both see
# the same machine. Prints the medians of each build's figures; JSON in target/bench/builds/.
#
#   ./scripts/bench-builds.sh REV [ROUNDS]     # e.g. ./scripts/bench-builds.sh HEAD~3 3
#
# With BENCH_REDIS_URL (e.g. redis://127.0.0.1:6379) every run adds the `gateway+redis` lane (a
# replica with shared_state there, under a grant with a rate) and the summary its figures.
#
# About 70 s per round and build. Each run compares the gateway with a bare Pingora hop
# (`passthrough`) and with the server called directly, so the ratios carry across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/deps.sh
ensure_build_deps
rev=${1:?usage: $0 REV [ROUNDS]}
rounds=${2:-3}
out=target/bench/builds
mkdir -p "$out"

base=$(mktemp -d)
trap 'git worktree remove --force "$base" >/dev/null 2>&1 || true' EXIT
git worktree add --detach "$base" "$rev" >/dev/null
# One target directory: the dependencies are built once for both.
(cd "$base" && CARGO_TARGET_DIR="$OLDPWD/target" cargo build --release --quiet -p portcullis-loadtest)
cp target/release/portcullis-loadtest "$out/loadtest-base"
cargo build --release --quiet -p portcullis-loadtest
cp target/release/portcullis-loadtest "$out/loadtest-current"

redis=()
if [ -n "${BENCH_REDIS_URL:-}" ]; then
  redis=(--redis-url "$BENCH_REDIS_URL")
fi
for round in $(seq 1 "$rounds"); do
  for build in base current; do
    echo "== round $round/$rounds: $build" >&2
    timeout --kill-after=10 300 "$out/loadtest-$build" --json calls --tool submit_expense \
      --clients 8 --duration 15 --warmup 2 "${redis[@]}" >"$out/$build-closed-$round.json"
    timeout --kill-after=10 300 "$out/loadtest-$build" --json calls --tool submit_expense \
      --clients 8 --duration 10 --warmup 1 --rate 1000 "${redis[@]}" >"$out/$build-paced-$round.json"
  done
done

python3 - "$out" "$rounds" "$rev" <<'PY'
import json, statistics, sys
out, rounds, rev = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(build, kind):
    return [json.load(open(f"{out}/{build}-{kind}-{r}.json")) for r in range(1, rounds + 1)]
def scenario(report, name):
    return next(s for s in report["scenarios"] if s["scenario"] == name)
def med(values):
    return statistics.median(values)
print(f"medians of {rounds} alternating runs per build; base = {rev}")
print("| build | closed loop: gateway req/s | gateway ÷ passthrough | paced 1 000/s: gateway p50 / p99 µs | gateway − passthrough p50 / p99 µs |")
print("|---|---|---|---|---|")
for build in ("base", "current"):
    closed, paced = load(build, "closed"), load(build, "paced")
    rps = med([scenario(r, "gateway")["throughput_rps"] for r in closed])
    ratio = med([r["gateway_vs_passthrough"]["throughput_ratio"] for r in closed])
    p50 = med([scenario(r, "gateway")["latency"]["p50_us"] for r in paced])
    p99 = med([scenario(r, "gateway")["latency"]["p99_us"] for r in paced])
    a50 = med([r["gateway_vs_passthrough"]["p50_added_us"] for r in paced])
    a99 = med([r["gateway_vs_passthrough"]["p99_added_us"] for r in paced])
    print(f"| {build} | {rps:,.0f} | {ratio:.2f} | {p50:,.0f} / {p99:,.0f} | +{a50:,.0f} / +{a99:,.0f} |")
if any(s["scenario"] == "gateway+redis" for s in load("base", "closed")[0]["scenarios"]):
    print()
    print("| build | closed loop: gateway+redis req/s | paced 1 000/s: gateway+redis p50 / p99 µs | gateway+redis − gateway p50 / p99 µs |")
    print("|---|---|---|---|")
    for build in ("base", "current"):
        closed, paced = load(build, "closed"), load(build, "paced")
        rps = med([scenario(r, "gateway+redis")["throughput_rps"] for r in closed])
        p50 = med([scenario(r, "gateway+redis")["latency"]["p50_us"] for r in paced])
        p99 = med([scenario(r, "gateway+redis")["latency"]["p99_us"] for r in paced])
        d50 = med([scenario(r, "gateway+redis")["latency"]["p50_us"] - scenario(r, "gateway")["latency"]["p50_us"] for r in paced])
        d99 = med([scenario(r, "gateway+redis")["latency"]["p99_us"] - scenario(r, "gateway")["latency"]["p99_us"] for r in paced])
        print(f"| {build} | {rps:,.0f} | {p50:,.0f} / {p99:,.0f} | {d50:+,.0f} / {d99:+,.0f} |")
PY
