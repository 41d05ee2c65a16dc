#!/usr/bin/env bash
# The whole test suite, from a fresh Debian 12 machine: installs what is missing,
# builds and runs every test in the default build and again under ASan + UBSan,
# then fuzzes each libFuzzer target for WRENCH_FUZZ_SECONDS (default 60) and
# checks the ClusterFuzzLite build.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
jobs=$(nproc)

echo "== default build (RelWithDebInfo)"
cmake --preset default >/dev/null
cmake --build --preset default -j"$jobs"
ctest --preset default -j"$jobs"

echo "== mutation sample: 20 mutants the last full run killed must still be killed"
./scripts/mutate.sh --ci --jobs "$jobs"

echo "== ASan + UBSan build (clang)"
cmake --preset asan >/dev/null
cmake --build --preset asan -j"$jobs"
ctest --preset asan -j"$jobs"

echo "== fuzz build (clang, libFuzzer, ASan + UBSan): ${WRENCH_FUZZ_SECONDS:-60}s per target"
cmake --preset fuzz >/dev/null
cmake --build --preset fuzz -j"$jobs" --target fuzzers
# The corpus replay already ran in both builds above; here the fuzzers run.
ctest --test-dir build/fuzz -L fuzz -R '^(fuzz_run|cflite_build)' -j"$jobs" --output-on-failure
