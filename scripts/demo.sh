#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: installs what is missing, builds
# wrench, and runs a demonstration. A local web server (python3 -m http.server)
# serves a file; a real client (curl) fetches it through `wrench exec` with the
# fin-lost teardown scenario; the ladder of that connection is printed, and the
# files wrench wrote (pcap, JSON log, SVG ladder) are listed at the end.
# Everything runs inside a throwaway network namespace: the host's interfaces,
# routes and addresses are never touched. Needs root (it re-runs itself with sudo).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
  exec sudo -E "$0" "$@"
fi
./scripts/install-deps.sh build
cmake --preset default >/dev/null
cmake --build --preset default -j"$(nproc)" --target wrench

scenario=${1:-fin-lost}
out=${WRENCH_DEMO_DIR:-$PWD/demo-out}
mkdir -p "$out"
rm -f "$out"/*
wrench=$PWD/build/default/proxy/wrench

echo
echo "== the scenario: $scenario"
"$wrench" scenario show "$scenario"
echo
echo "== curl fetches a file from a local server, through wrench exec"
unshare -n bash -euo pipefail -s "$wrench" "$scenario" "$out" <<'INNER'
wrench=$1 scenario=$2 out=$3
ip link set lo up
www=$(mktemp -d)
head -c 20000 /dev/urandom | base64 > "$www/hello.txt"
(cd "$www" && exec timeout 60 python3 -m http.server 8000 --bind 127.0.0.1 >/dev/null 2>&1) &
server=$!
for _ in $(seq 50); do curl -s -o /dev/null http://127.0.0.1:8000/ && break; sleep 0.1; done
"$wrench" exec --scenario "$scenario" --msl=1s --log "$out/demo.jsonl" --pcap "$out/demo.pcap" -- \
  sh -c 'curl -sS -o /tmp/got.txt -w "curl: HTTP %{http_code}, %{size_download} bytes in %{time_total} s\n" http://10.89.0.1:8000/hello.txt; sleep 2.5'
cmp -s "$www/hello.txt" /tmp/got.txt && echo "the file arrived intact"
kill "$server" 2>/dev/null || true
rm -rf "$www" /tmp/got.txt
INNER

echo
echo "== the ladder of that connection (wrench ladder)"
"$wrench" ladder "$out/demo.jsonl"
"$wrench" ladder --format=svg --out "$out/demo.svg" "$out/demo.jsonl"
"$wrench" ladder --format=html --out "$out/demo.html" "$out/demo.jsonl"
echo
echo "== files written"
ls -l "$out"
