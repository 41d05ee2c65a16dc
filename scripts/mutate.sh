#!/usr/bin/env bash
# Mutation testing of stack/ and the fault engine: plants one operator change at a
# time and reports whether the unit and simulation tests notice (docs/testing.md).
#   scripts/mutate.sh                      every mutant of the default files
#   scripts/mutate.sh --sample 200 --seed 7 --files stack/tcp_wire.cc
#   scripts/mutate.sh --fuzz 5             survivors also face the stateful fuzzers 5 s each
#   scripts/mutate.sh --ci                 20 mutants the last full run killed must still die
# Builds in build/mutate (its own directory); sources are put back on every exit.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/mutate.py "$@"
