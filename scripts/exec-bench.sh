#!/usr/bin/env bash
# exec benchmark (docs/benchmarks.md "wrench exec against slirp4netns"): a program in a
# network namespace of its own fetches from and sends to a server on the caller's
# loopback, (a) through `wrench exec` (no rules; the caller's 127.0.0.1 is 10.89.0.1
# inside) and (b) through slirp4netns (the caller's 127.0.0.1 is 10.0.2.2 inside), both
# at MTU 1500, in one run. Prints the median time and throughput of each and the ratio.
# Needs root, slirp4netns, python3 and util-linux's unshare/nsenter
# (scripts/install-deps.sh). Everything runs in a network namespace the script creates
# and deletes.
#
#   scripts/exec-bench.sh [-b WRENCH_BINARY] [-n REPS] [-s BYTES] [-t TIMEOUT_S]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
wrench=$here/../build/default/proxy/wrench
reps=5
size=$((256 * 1024 * 1024))
timeout=120
while getopts "b:n:s:t:h" opt; do
  case $opt in
    b) wrench=$OPTARG ;;
    n) reps=$OPTARG ;;
    s) size=$OPTARG ;;
    t) timeout=$OPTARG ;;
    *) sed -n '2,11p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "exec-bench: needs root (network namespaces)" >&2; exit 1; }
for tool in ip python3 slirp4netns unshare nsenter; do
  command -v $tool >/dev/null || { echo "exec-bench: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
[ -x "$wrench" ] || { echo "exec-bench: no wrench binary at $wrench (build first, or -b)" >&2; exit 1; }
((reps >= 1 && reps <= 50)) || { echo "exec-bench: -n must be 1..50" >&2; exit 2; }

xfer=$here/loss-bench-transfer.py
ns=wxb-$$
pids=()  # the server, the slirp namespace's holder and slirp4netns
workdir=$(mktemp -d)

cleanup() {
  bench_stop_pids "${pids[@]}"
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$workdir"
}
trap cleanup EXIT
trap "exit 130" INT TERM

ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ip netns exec "$ns" python3 "$xfer" serve 127.0.0.1 9000 &
pids+=($!)
for _ in $(seq 100); do
  ip netns exec "$ns" python3 -c "import socket; socket.create_connection(('127.0.0.1',9000),0.2).close()" \
    2>/dev/null && break
  sleep 0.1
done

# slirp4netns: a child namespace held open by `sleep`, its tap wired to the script's
# namespace by slirp4netns (which gives it 10.0.2.100 and a default route).
ip netns exec "$ns" unshare --net sleep 100000 &
holder=$!
pids+=($holder)
sleep 0.2
ip netns exec "$ns" slirp4netns --configure --mtu=1500 "$holder" tap0 >"$workdir/slirp.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  nsenter -t "$holder" -n ip -4 route show default 2>/dev/null | grep -q tap0 && break
  sleep 0.1
done

# Runs `reps` transfers with the command prefix given; `median` gets the median seconds.
median_of() {  # $1 = get|put, $2 = host, then the command that runs the client
  local kind=$1 host=$2 times=() fails=0
  shift 2
  for _ in $(seq "$reps"); do
    local t
    t=$("$@" python3 "$xfer" "$kind" "$host" 9000 "$size" "$timeout" 2>"$workdir/err" | tail -1) || true
    if [[ $t =~ ^[0-9.]+$ ]]; then times+=("$t"); else fails=$((fails + 1)); echo "  ($kind via $host: $t $(head -c 300 "$workdir/err"))" >&2; fi
  done
  median=$(bench_median "$timeout" "$fails" "${times[@]}")
}
mbps() { bench_mbps "$size" "$1"; }
ratio() { bench_ratio "$1" "$2"; }

echo "exec-bench: $((size >> 20)) MiB a transfer, $reps repetitions each, median seconds"
printf '%-9s %10s %10s %12s %12s %14s\n' direction slirp_s wrench_s slirp_MB/s wrench_MB/s wrench/slirp
for kind in get put; do
  median_of $kind 10.0.2.2 nsenter -t "$holder" -n
  s=$median
  median_of $kind 10.89.0.1 ip netns exec "$ns" "$wrench" exec --tun wxb0 --
  w=$median
  name=download; [ $kind = put ] && name=upload
  printf '%-9s %10s %10s %12s %12s %14s\n' $name "$s" "$w" "$(mbps "$s")" "$(mbps "$w")" "$(ratio "$w" "$s")"
done
