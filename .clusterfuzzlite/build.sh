#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build of wrench's fuzz targets: each one into $OUT,
# with <target>_seed_corpus.zip (corpus/<target>/ and its -crashes/ inputs),
# <target>.dict and <target>.options. Honours $CC $CXX $CFLAGS $CXXFLAGS
# $LIB_FUZZING_ENGINE $OUT (and $SRC, $WORK). Only stack/, proxy/fault/rule.cc and fuzz/
# are compiled, so abseil is the one library needed: built from $SRC/abseil-cpp
# when the Dockerfile fetched it, else the system's (found with pkg-config).

if [ -f fuzz/targets.h ]; then
  src=$PWD
else
  src=$(cd "$(dirname "$0")/.." && pwd)
fi
: "${OUT:?set OUT to the output directory}"
: "${CC:=clang}" "${CXX:=clang++}" "${CFLAGS:=}" "${CXXFLAGS:=}"
: "${LIB_FUZZING_ENGINE:=-fsanitize=fuzzer}"
work=${WORK:-$(mktemp -d)}
mkdir -p "$OUT" "$work/wrench-obj"

absl_modules="absl_status absl_statusor absl_strings absl_str_format absl_time absl_span
  absl_hash absl_flat_hash_map absl_inlined_vector absl_random_random"
if [ -d "${SRC:-/nonexistent}/abseil-cpp" ]; then
  # Built with the fuzzing flags (and OSS-Fuzz's libc++), so it links with the targets.
  if [ ! -f "$work/absl-install/lib/pkgconfig/absl_status.pc" ]; then
    cmake -S "$SRC/abseil-cpp" -B "$work/absl-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" -DCMAKE_C_FLAGS="$CFLAGS" \
      -DCMAKE_CXX_FLAGS="$CXXFLAGS" -DCMAKE_CXX_STANDARD=20 -DABSL_PROPAGATE_CXX_STD=ON \
      -DBUILD_TESTING=OFF -DCMAKE_INSTALL_PREFIX="$work/absl-install" -DCMAKE_INSTALL_LIBDIR=lib
    cmake --build "$work/absl-build" --target install
  fi
  export PKG_CONFIG_PATH="$work/absl-install/lib/pkgconfig"
  absl_libs=$(pkg-config --static --libs $absl_modules)
else
  absl_libs=$(pkg-config --libs $absl_modules)
fi
absl_cflags=$(pkg-config --cflags $absl_modules)

# The target bodies and what they test, compiled once.
objs=()
for f in "$src"/stack/*.cc "$src"/proxy/fault/rule.cc "$src"/fuzz/check.cc "$src"/fuzz/endpoint_script.cc \
         "$src"/fuzz/segment_mutator.cc "$src"/fuzz/*_target.cc; do
  o="$work/wrench-obj/$(basename "$(dirname "$f")")_$(basename "$f" .cc).o"
  $CXX $CXXFLAGS -std=c++20 -I"$src" $absl_cflags -c "$f" -o "$o"
  objs+=("$o")
done

for t in segment_parser tcp_endpoint endpoint_pair rule_parser; do
  mains=("$src/fuzz/$t.cc")
  # segment_parser's custom mutator has an entry file of its own.
  [ -f "$src/fuzz/${t}_mutator.cc" ] && mains+=("$src/fuzz/${t}_mutator.cc")
  main_objs=()
  for f in "${mains[@]}"; do
    o="$work/wrench-obj/main_$(basename "$f" .cc).o"
    $CXX $CXXFLAGS -std=c++20 -I"$src" $absl_cflags -c "$f" -o "$o"
    main_objs+=("$o")
  done
  $CXX $CXXFLAGS "${main_objs[@]}" "${objs[@]}" $LIB_FUZZING_ENGINE $absl_libs -o "$OUT/$t"
  cp "$src/fuzz/$t.dict" "$OUT/$t.dict"
  rm -f "$OUT/${t}_seed_corpus.zip"
  seeds=("$src/corpus/$t"/*)
  [ -d "$src/corpus/$t-crashes" ] && seeds+=("$src/corpus/$t-crashes"/*)
  zip -q -j "$OUT/${t}_seed_corpus.zip" "${seeds[@]}"
done

# Input sizes past which scripts and verdict lists only slow a target down.
printf '[libfuzzer]\nmax_len = 1024\n' >"$OUT/tcp_endpoint.options"
printf '[libfuzzer]\nmax_len = 512\n' >"$OUT/endpoint_pair.options"
printf '[libfuzzer]\nmax_len = 512\n' >"$OUT/rule_parser.options"
printf '[libfuzzer]\nmax_len = 4096\n' >"$OUT/segment_parser.options"
