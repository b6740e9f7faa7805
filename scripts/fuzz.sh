#!/usr/bin/env bash
# Runs the libFuzzer targets in fuzz/ (cargo-fuzz, nightly toolchain), one at a time, and prints
# the executions and executions per second of each. docs/FUZZING.md says what each one checks.
#
#   scripts/fuzz.sh                      # long: 10,000,000 runs each, at most 6 h in all
#   scripts/fuzz.sh --runs 500000 limits # some runs of one target
#   scripts/fuzz.sh --time 20            # 20 s each (what scripts/test.sh runs)
#   scripts/fuzz.sh --max-total 3600     # a bound on the whole run, shared by the targets
#
# Each target starts from its committed seeds (fuzz/seeds/<target>) and its git-ignored corpus
# (fuzz/corpus/<target>), where libFuzzer adds what reaches new code. A crash stops the run
# with a non-zero status; the input is kept in fuzz/artifacts/<target>/ and can be replayed
# with `fuzz/target/*/release/<target> <file>`. FUZZ_SANITIZER=none builds without
# AddressSanitizer (about twice as fast; the code fuzzed forbids `unsafe`).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/fuzz.sh

runs=10000000
time_each=""
max_total=$((6 * 3600))
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --time) time_each=$2; runs=""; shift 2 ;;
    --max-total) max_total=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

ensure_cargo_fuzz
sanitizer=${FUZZ_SANITIZER:-address}
started=$(date +%s)
(cd fuzz && cargo +nightly fuzz build --sanitizer "$sanitizer")
echo "fuzz build ($sanitizer): $(( $(date +%s) - started )) s" >&2
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cd fuzz && cargo +nightly fuzz list)
fi
bin_dir=fuzz/target/$(rustc +nightly -vV | sed -n 's/^host: //p')/release

summary=()
for i in "${!targets[@]}"; do
  target=${targets[$i]}
  # What is left of the bound, shared by the targets still to run.
  left=$(( max_total - ($(date +%s) - started) ))
  budget=$(( left / (${#targets[@]} - i) ))
  [ "$budget" -ge 1 ] || { echo "no time left for $target" >&2; exit 1; }
  if [ -n "$time_each" ] && [ "$time_each" -lt "$budget" ]; then budget=$time_each; fi
  corpus=fuzz/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=$(mktemp)
  echo "== $target: ${runs:-unbounded} runs, at most $budget s" >&2
  status=0
  "$bin_dir/$target" "$corpus" "fuzz/seeds/$target" \
    ${runs:+-runs=$runs} -max_total_time="$budget" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  tail -n 30 "$log" | grep -vE '^stat::(slowest|peak|new_units|number_of_executed|average)' >&2 || true
  executed=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
  per_second=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
  seconds=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$log")
  rm -f "$log"
  summary+=("$(printf '%-30s %12s runs %8s exec/s %6s s' "$target" "${executed:-?}" "${per_second:-?}" "${seconds:-?}")")
  if [ "$status" -ne 0 ]; then
    printf '%s\n' "${summary[@]}" >&2
    echo "$target failed (status $status); the input is in $artifacts/" >&2
    exit 1
  fi
done
printf '%s\n' "${summary[@]}"
