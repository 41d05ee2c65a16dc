#!/usr/bin/env bash
# A Toxiproxy client nobody here wrote drives wrench unchanged: installs
# toxiproxy-node-client from the npm registry into a temporary directory, starts
# `wrench serve` inside a network namespace this script creates (only loopback and the
# namespace's TUN addresses are used), and runs tests/toxiproxy/client_test.js against it.
# Exit 77 (CTest's SKIP_RETURN_CODE) with the reason when it cannot run: no root, no
# node/npm, or no registry. Usage: toxiproxy_client_test.sh PATH/TO/wrench
set -euo pipefail

wrench=${1:?usage: $0 PATH/TO/wrench}
wrench=$(realpath "$wrench")
here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIP: $*"; exit 77; }

[ "$(id -u)" -eq 0 ] || skip "needs root: it creates a network namespace and a TUN device"
unshare -n true 2>/dev/null || skip "cannot create a network namespace (unshare -n)"
command -v node >/dev/null || skip "node is not installed (scripts/install-deps.sh installs nodejs and npm)"
command -v npm >/dev/null || skip "npm is not installed (scripts/install-deps.sh installs nodejs and npm)"

work=$(mktemp -d /tmp/wrench-toxiproxy-client.XXXXXX)
trap 'rm -rf "$work"' EXIT
echo "installing toxiproxy-node-client from the npm registry into $work"
if ! (cd "$work" && timeout 180 npm install --no-audit --no-fund --loglevel=error \
        toxiproxy-node-client >"$work/npm.log" 2>&1); then
  tail -5 "$work/npm.log"
  skip "npm cannot install toxiproxy-node-client (is the registry reachable?)"
fi
version=$(node -p "require('$work/node_modules/toxiproxy-node-client/package.json').version")
echo "toxiproxy-node-client $version"

# Inside the namespace: loopback up, wrench serve on Toxiproxy's port, then the client.
export WRENCH="$wrench" WORK="$work" TEST_JS="$here/toxiproxy/client_test.js"
exec unshare -n bash -euo pipefail -c '
  ip link set lo up
  "$WRENCH" serve --api 127.0.0.1:8474 --tun wrtoxi0 2>"$WORK/wrench.log" &
  pid=$!
  trap "kill $pid 2>/dev/null; wait $pid 2>/dev/null || true" EXIT
  for _ in $(seq 100); do
    grep -q "wrench: ready" "$WORK/wrench.log" && break
    kill -0 $pid 2>/dev/null || { cat "$WORK/wrench.log"; echo "wrench serve did not start"; exit 1; }
    sleep 0.05
  done
  status=0
  NODE_PATH="$WORK/node_modules" timeout 120 node "$TEST_JS" || status=$?
  if [ $status -ne 0 ]; then echo "--- wrench serve said:"; cat "$WORK/wrench.log"; fi
  exit $status
'
