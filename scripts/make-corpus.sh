#!/usr/bin/env bash
# Regenerates the seed corpora corpus/<target>/ from fuzz/make_corpus.cc: the
# generated seeds are minimised with libFuzzer's -merge=1 (keeping only those that
# add coverage) and keep their descriptive names. Needs the fuzz build; review the
# diff before committing. Crash inputs in corpus/<target>-crashes/ are not touched.
#
#   scripts/make-corpus.sh [--build-dir DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

build=build/fuzz
[ "${1:-}" = "--build-dir" ] && build=$2
if [ ! -x "$build/fuzz/make_corpus" ] || [ ! -x "$build/fuzz/segment_parser" ]; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz --target fuzzers make_corpus
fi

gen=$(mktemp -d "${TMPDIR:-/tmp}/wrench-corpus.XXXXXX")
trap 'rm -rf "$gen"' EXIT
"$build/fuzz/make_corpus" "$gen/all"
for t in segment_parser tcp_endpoint endpoint_pair rule_parser; do
  mkdir -p "$gen/merged-$t"
  "$build/fuzz/$t" -merge=1 -max_len=65536 "$gen/merged-$t" "$gen/all/$t" >"$gen/merge-$t.log" 2>&1 || {
    cat "$gen/merge-$t.log" >&2
    exit 1
  }
  # -merge=1 names what it keeps by SHA-1; give each its generated name back.
  declare -A name_of=()
  for f in "$gen/all/$t"/*; do name_of[$(sha1sum <"$f" | cut -d' ' -f1)]=$(basename "$f"); done
  rm -rf "corpus/$t"
  mkdir -p "corpus/$t"
  for f in "$gen/merged-$t"/*; do
    cp "$f" "corpus/$t/${name_of[$(basename "$f")]}"
  done
  unset name_of
  echo "corpus/$t: kept $(ls "corpus/$t" | wc -l) of $(ls "$gen/all/$t" | wc -l) generated seeds"
done
