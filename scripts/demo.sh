#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: installs what is missing, builds
# wrench, and runs its demonstration.
set -euo pipefail
cd "$(dirname "$0")/.."

./scripts/install-deps.sh
cmake --preset default >/dev/null
cmake --build --preset default -j"$(nproc)" --target wrench
exec build/default/proxy/wrench simulate "$@"
