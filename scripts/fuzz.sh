#!/usr/bin/env bash
# Runs the libFuzzer targets of a fuzz build, each for a bounded time against its
# corpus (corpus/<target>/ and corpus/<target>-crashes/). New inputs and crash
# artifacts go to a temporary directory, never into the repository; any crash,
# leak, timeout or invariant violation fails the run and keeps that directory.
#
#   scripts/fuzz.sh [--build-dir DIR] [--seconds N] [target...]
#
# WRENCH_FUZZ_SECONDS (default 60) sets the time per target when --seconds is not
# given; the targets default to all four. Reports exec/s and coverage per target.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build/fuzz
seconds=${WRENCH_FUZZ_SECONDS:-60}
targets=()
while (($#)); do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
((${#targets[@]})) || targets=(segment_parser tcp_endpoint endpoint_pair rule_parser)

# Largest input per target: scripts and verdict lists longer than this only slow
# the fuzzer down (libFuzzer turns its own length control off with a custom mutator).
max_len() {
  case "$1" in
    tcp_endpoint) echo 1024 ;;
    endpoint_pair) echo 512 ;;
    rule_parser) echo 512 ;;
    *) echo 4096 ;;
  esac
}

work=$(mktemp -d "${TMPDIR:-/tmp}/wrench-fuzz.XXXXXX")
failed=()
for t in "${targets[@]}"; do
  bin="$build/fuzz/$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz.sh: $bin not built (cmake --preset fuzz && cmake --build --preset fuzz --target fuzzers)" >&2
    exit 2
  fi
  mkdir -p "$work/$t/new" "$work/$t/artifacts"
  dirs=("$work/$t/new" "corpus/$t")
  [ -d "corpus/$t-crashes" ] && dirs+=("corpus/$t-crashes")
  status=0
  "$bin" -max_total_time="$seconds" -timeout=25 -rss_limit_mb=2560 -max_len="$(max_len "$t")" \
    -dict="fuzz/$t.dict" -artifact_prefix="$work/$t/artifacts/" -print_final_stats=1 \
    "${dirs[@]}" >"$work/$t/log" 2>&1 || status=$?
  stats=$(grep -E '^#[0-9]+\s+DONE' "$work/$t/log" | tail -1 | sed -E 's/^#([0-9]+)\s+DONE\s+/\1 runs, /')
  echo "fuzz $t: ${seconds}s, ${stats:-no DONE line}"
  grep -E '^tcp_endpoint (states|transitions)|^transitions' "$work/$t/log" | sed 's/^/    /' || true
  if ((status != 0)); then
    failed+=("$t")
    echo "fuzz $t FAILED (exit $status); log and inputs kept in $work/$t" >&2
    grep -A25 -E '=== wrench fuzz invariant|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' \
      "$work/$t/log" | head -60 >&2 || true
    ls "$work/$t/artifacts" >&2
  fi
done
if ((${#failed[@]})); then
  echo "fuzz.sh: failed: ${failed[*]} (see $work)" >&2
  exit 1
fi
rm -rf "$work"
