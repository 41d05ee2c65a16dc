#!/usr/bin/env bash
# The benchmark scripts run as documented (docs/benchmarks.md), briefly: each prints
# its table with a figure in every cell and leaves no namespace behind. Skips (77)
# with the reason when not root or a tool a script needs is missing.
#
#   tests/bench_scripts_test.sh WRENCH_BINARY
set -uo pipefail
wrench=$1
scripts=$(cd "$(dirname "$0")/../scripts" && pwd)
[ "$(id -u)" -eq 0 ] || { echo "SKIPPED: the benchmark scripts need root (network namespaces)"; exit 77; }
for tool in ip nft ethtool python3 slirp4netns socat curl; do
  command -v $tool >/dev/null || { echo "SKIPPED: $tool is missing (scripts/install-deps.sh --profile test)"; exit 77; }
done
before=$(ip netns list | sort)
fail=0

check() {  # $1 = name, $2 = output, $3 = rows wanted
  echo "$2"
  local rows
  rows=$(echo "$2" | grep -cE '^(download|upload) ')
  if [ "$rows" -ne "$3" ]; then echo "FAIL: $1 printed $rows rows, not $3"; fail=1; fi
  if echo "$2" | grep -E '^(download|upload) ' | grep -qE '(>|[[:space:]]-[[:space:]]|[[:space:]]-$)'; then
    echo "FAIL: $1 has a row without a figure (a timeout or an error)"
    fail=1
  fi
}

out=$(timeout 300 "$scripts/loss-bench.sh" -b "$wrench" -n 1 -l "0 3" -s 300000 -t 30 2>&1)
check loss-bench "$out" 4
out=$(timeout 300 "$scripts/exec-bench.sh" -b "$wrench" -n 1 -s 2000000 -t 30 2>&1)
check exec-bench "$out" 2
# Without Toxiproxy (not a Debian package): its rows are skipped, visibly.
out=$(timeout 300 "$scripts/serve-bench.sh" -b "$wrench" -n 1 -s 2000000 -d 0.5 -t 30 2>&1)
echo "$out"
rows=$(echo "$out" | grep -E '^(direct|socat|wrench|wrench/socat) ')
if [ "$(echo "$rows" | grep -c .)" -ne 4 ]; then echo "FAIL: serve-bench printed $(echo "$rows" | grep -c .) rows, not 4"; fail=1; fi
if echo "$rows" | grep -qE '[[:space:]]-([[:space:]]|$)'; then
  echo "FAIL: serve-bench has a row without a figure (a timeout or an error)"
  fail=1
fi
echo "$out" | grep -q "Toxiproxy rows are skipped" || { echo "FAIL: serve-bench did not say it skips Toxiproxy"; fail=1; }

after=$(ip netns list | sort)
if [ "$before" != "$after" ]; then echo "FAIL: namespaces left behind: $after"; fail=1; fi
exit $fail
