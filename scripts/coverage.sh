#!/usr/bin/env bash
# Line coverage of stack/ by the fuzz targets (clang source-based coverage, the
# `coverage` preset, llvm-profdata-14 / llvm-cov-14): first from the seed corpora
# alone, then — given a number of minutes — after fuzzing each target that long
# from its seeds. Also prints which RFC 9293 states tcp_endpoint reached.
#
#   scripts/coverage.sh [minutes-per-target] [--build-dir DIR]
#
# The grown corpora stay in a temporary directory (printed), never in corpus/.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=0
build=build/coverage
while (($#)); do
  case "$1" in
    --build-dir) build=$2; shift 2 ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) minutes=$1; shift ;;
  esac
done
targets=(segment_parser tcp_endpoint endpoint_pair rule_parser)

if [ "$build" = build/coverage ]; then
  cmake --preset coverage >/dev/null
else
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_COMPILER=clang++-14 \
    -DWRENCH_COVERAGE=ON -DWRENCH_FUZZ=ON -DWRENCH_BENCH=OFF >/dev/null
fi
cmake --build "$build" --target fuzzers

work=$(mktemp -d "${TMPDIR:-/tmp}/wrench-coverage.XXXXXX")
objects=()
for t in "${targets[@]}"; do objects+=(-object "$build/fuzz/$t"); done

# Runs every input of the given directories once through target $1, profiled into $2.
replay() {
  local t=$1 profile_dir=$2
  shift 2
  LLVM_PROFILE_FILE="$profile_dir/$t-%p.profraw" "$build/fuzz/$t" -runs=0 "$@" >"$profile_dir/$t.log" 2>&1
}

report() {
  local name=$1 profile_dir=$2
  # Each target defines its own LLVMFuzzerTestOneInput: merging the four binaries'
  # profiles warns about those few functions, harmlessly.
  llvm-profdata-14 merge -sparse "$profile_dir"/*.profraw -o "$profile_dir/all.profdata" 2>/dev/null
  echo "== line coverage of stack/, $name"
  llvm-cov-14 report "${objects[@]:1}" -instr-profile="$profile_dir/all.profdata" \
    -show-region-summary=false -show-branch-summary=false "$PWD/stack/" 2>/dev/null |
    sed -e "s|$PWD/||" -e 's/^/  /'
  grep -h -E '^tcp_endpoint states|^transitions' "$profile_dir/tcp_endpoint.log" | sed 's/^/  /' || true
}

seeds_of() {
  local t=$1
  echo "corpus/$t"
  [ -d "corpus/$t-crashes" ] && echo "corpus/$t-crashes"
  return 0
}

mkdir -p "$work/seeds"
for t in "${targets[@]}"; do
  mapfile -t dirs < <(seeds_of "$t")
  replay "$t" "$work/seeds" "${dirs[@]}"
done
report "seed corpora alone" "$work/seeds"

if [ "$minutes" != 0 ]; then
  mkdir -p "$work/fuzzed"
  for t in "${targets[@]}"; do
    mkdir -p "$work/corpus-$t"
    mapfile -t dirs < <(seeds_of "$t")
    echo "== fuzzing $t for $minutes min"
    LLVM_PROFILE_FILE="$work/discard-%p.profraw" "$build/fuzz/$t" -max_total_time=$((minutes * 60)) \
      -timeout=25 -rss_limit_mb=4096 -dict="fuzz/$t.dict" -artifact_prefix="$work/$t-" \
      -print_final_stats=1 "$work/corpus-$t" "${dirs[@]}" >"$work/fuzz-$t.log" 2>&1 || {
      echo "  $t stopped with a finding (see $work/fuzz-$t.log)"
    }
    grep -E '^#[0-9]+\s+DONE|average_exec_per_sec' "$work/fuzz-$t.log" | sed 's/^/  /' || true
    rm -f "$work"/discard-*.profraw
    replay "$t" "$work/fuzzed" "$work/corpus-$t" "${dirs[@]}"
  done
  report "after $minutes min of each target" "$work/fuzzed"
fi
echo "(profiles and corpora in $work)"
