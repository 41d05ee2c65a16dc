#!/usr/bin/env bash
# Runs .clusterfuzzlite/build.sh as OSS-Fuzz would (CC, CXX, CFLAGS, CXXFLAGS,
# LIB_FUZZING_ENGINE, OUT set; clang 14 and the system abseil here) and checks that
# every target lands in $OUT, runs, and has its seed corpus zip and dictionary (and,
# where it has one, its custom mutator).
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/wrench-cflite.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

for tool in zip unzip; do
  command -v $tool >/dev/null || { echo "$tool is needed (scripts/install-deps.sh installs it)"; exit 1; }
done

export CC=clang-14 CXX=clang++-14
export CFLAGS="-O1 -fno-omit-frame-pointer -gline-tables-only -fsanitize=address,undefined -fsanitize-address-use-after-scope -fsanitize=fuzzer-no-link"
export CXXFLAGS="$CFLAGS"
export LIB_FUZZING_ENGINE=-fsanitize=fuzzer
export OUT="$tmp/out" WORK="$tmp/work"
mkdir -p "$OUT" "$WORK"
(cd "$src" && SRC="$tmp/no-src" ./.clusterfuzzlite/build.sh)

fail=0
for t in segment_parser tcp_endpoint endpoint_pair rule_parser; do
  if [ ! -x "$OUT/$t" ]; then echo "missing $OUT/$t"; fail=1; continue; fi
  [ -s "$OUT/$t.dict" ] || { echo "missing $OUT/$t.dict"; fail=1; }
  n=$(unzip -Z1 "$OUT/${t}_seed_corpus.zip" 2>/dev/null | wc -l)
  want=$(ls "$src/corpus/$t" | wc -l)
  ((n >= want && n > 0)) || { echo "$t: seed corpus zip has $n files, corpus/$t has $want"; fail=1; }
  # The binary runs its seeds with its dictionary, as ClusterFuzzLite would start it.
  mkdir -p "$tmp/seeds/$t"
  unzip -q -o "$OUT/${t}_seed_corpus.zip" -d "$tmp/seeds/$t"
  if ! "$OUT/$t" -runs=0 -dict="$OUT/$t.dict" "$tmp/seeds/$t" >"$tmp/$t.log" 2>&1; then
    echo "$t does not run its seed corpus:"; tail -20 "$tmp/$t.log"; fail=1
    continue
  fi
  case $t in
    segment_parser | tcp_endpoint)
      grep -q ' T LLVMFuzzerCustomMutator$' <(nm "$OUT/$t") ||
        { echo "$t has lost its custom mutator"; fail=1; } ;;
  esac
  echo "$t: binary, dict, $n seeds, runs them: ok"
done
exit $fail
