#!/usr/bin/env bash
# Loss benchmark (docs/benchmarks.md "Loss benchmark"): the same bulk transfer, download and
# upload, at several loss rates of data segments, (a) Linux to Linux across a veth
# between two network namespaces, with nftables dropping data segments, and (b)
# through `wrench proxy`, with the equivalent drop rule on the client leg. Prints
# the median time of each and the ratio wrench/Linux. Needs root, ip, nft, ethtool
# and python3 (scripts/install-deps.sh). Creates and deletes its own namespaces.
# The kernel's senders use its default congestion control, or the one -c names, and
# wrench's endpoint the same (--tcp-congestion: bbr, cubic, or newreno for reno;
# cubic for any other).
#
#   scripts/loss-bench.sh [-b WRENCH_BINARY] [-c CONGESTION_CONTROL] [-n REPS] [-s BYTES] [-l "0 1 3 10"] [-t TIMEOUT_S]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
wrench=$here/../build/default/proxy/wrench
reps=5
size=$((5 * 1024 * 1024))
losses="0 1 3 10"
timeout=120
cc=
while getopts "b:c:n:s:l:t:h" opt; do
  case $opt in
    b) wrench=$OPTARG ;;
    c) cc=$OPTARG ;;
    n) reps=$OPTARG ;;
    s) size=$OPTARG ;;
    l) losses=$OPTARG ;;
    t) timeout=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "loss-bench: needs root (network namespaces)" >&2; exit 1; }
for tool in ip nft ethtool python3; do
  command -v $tool >/dev/null || { echo "loss-bench: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
[ -x "$wrench" ] || { echo "loss-bench: no wrench binary at $wrench (build first, or -b)" >&2; exit 1; }
((reps >= 1 && reps <= 50)) || { echo "loss-bench: -n must be 1..50" >&2; exit 2; }

xfer=$here/loss-bench-transfer.py
export LOSS_BENCH_CC=$cc  # read by both ends of each transfer
tag=$$
ns_srv=wlb-srv-$tag   # (a) the server's namespace
ns_cli=wlb-cli-$tag   # (a) the client's namespace
ns_px=wlb-px-$tag     # (b) wrench, its client and its server
pids=()        # the two servers, running until the end
wrench_pid=
client_pid=
workdir=$(mktemp -d)

# Only processes still running are signalled (pids are not reused while their
# process is a child that was not waited for).
cleanup() {
  [ -z "$client_pid" ] || kill -TERM "$client_pid" 2>/dev/null || true
  if declare -F stop_wrench >/dev/null; then stop_wrench; fi
  bench_stop_pids "${pids[@]}"
  for ns in $ns_srv $ns_cli $ns_px; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT
trap "exit 130" INT TERM  # exit, and so clean up through the EXIT trap

wait_listen() { bench_wait_listen loss-bench "$@"; }

# ---- (a) Linux to Linux across a veth ----
ip netns add $ns_srv
ip netns add $ns_cli
ip link add wlb-s type veth peer name wlb-c
ip link set wlb-s netns $ns_srv
ip link set wlb-c netns $ns_cli
in_ns $ns_srv ip addr add 10.90.0.1/24 dev wlb-s
in_ns $ns_cli ip addr add 10.90.0.2/24 dev wlb-c
for pair in "$ns_srv wlb-s" "$ns_cli wlb-c"; do
  set -- $pair
  in_ns "$1" ip link set lo up
  in_ns "$1" ip link set "$2" mtu 1500 up
  # Whole MSS-sized segments on the wire, as the TUN carries them.
  in_ns "$1" ethtool -K "$2" tso off gso off gro off >/dev/null 2>&1
  # The drop table: data segments (IPv4 length over 100 bytes: pure ACKs with SACK
  # blocks stay under it) are dropped at the receiver's input.
  in_ns "$1" nft add table inet wlb
  in_ns "$1" nft add chain inet wlb in '{ type filter hook input priority 0; }'
done
# Started with `ip netns exec` itself (it execs the program), so $! is the program.
ip netns exec $ns_srv python3 "$xfer" serve 10.90.0.1 9000 &
pids+=($!)
wait_listen $ns_cli 10.90.0.1 9000

set_linux_loss() {  # $1 = percent, $2 = get|put (the receiver drops)
  for ns in $ns_srv $ns_cli; do in_ns $ns nft flush chain inet wlb in; done
  [ "$1" = 0 ] && return 0
  local rx=$ns_cli
  [ "$2" = put ] && rx=$ns_srv
  in_ns $rx nft add rule inet wlb in ip length \> 100 numgen random mod 100 \< "$1" drop
}

# ---- (b) through wrench proxy ----
ip netns add $ns_px
in_ns $ns_px ip link set lo up
ip netns exec $ns_px python3 "$xfer" serve 127.0.0.1 9000 &
pids+=($!)
wait_listen $ns_px 127.0.0.1 9000

start_wrench() {  # $1 = percent, $2 = get|put
  if declare -F stop_wrench >/dev/null; then stop_wrench; fi
  local rule=()
  if [ "$1" != 0 ]; then
    local p
    p=$(python3 -c "print($1/100)")
    # Download: the data leaves wrench's endpoint toward the client (to-client).
    # Upload: the data comes from the client (from-client), before wrench's endpoint.
    if [ "$2" = get ]; then rule=(--rule "drop p=$p on=to-client len>0")
    else rule=(--rule "drop p=$p on=from-client len>0"); fi
  fi
  ip netns exec $ns_px "$wrench" proxy --tun wlb0 --map 10.89.0.2:80=127.0.0.1:9000 --seed "$RANDOM" \
    --tcp-congestion "$wrench_cc" "${rule[@]}" 2>"$workdir/wrench.err" &
  wrench_pid=$!
  for _ in $(seq 100); do
    grep -q "wrench: ready" "$workdir/wrench.err" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "loss-bench: wrench did not start:" >&2
  cat "$workdir/wrench.err" >&2
  return 1
}
# SIGTERM (a background job of a script ignores SIGINT); SIGKILL after 5 s.
stop_wrench() {
  [ -n "$wrench_pid" ] || return 0
  kill -TERM "$wrench_pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$wrench_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$wrench_pid" 2>/dev/null || true
  wait "$wrench_pid" 2>/dev/null || true
  wrench_pid=
}

# ---- measuring ----

# Runs `reps` transfers; sets `median` to the median seconds, or ">TIMEOUT" when
# half or more failed. Each client runs in the background and is waited for, so a
# signal stops the script at once (a trapped signal interrupts `wait`).
median_of() {  # $1 = namespace, $2 = get|put, $3 = host, $4 = port
  local times=() fails=0
  for _ in $(seq "$reps"); do
    ip netns exec "$1" python3 "$xfer" "$2" "$3" "$4" "$size" "$timeout" >"$workdir/t" 2>&1 &
    client_pid=$!
    wait $client_pid || true
    client_pid=
    local t
    t=$(head -c 200 "$workdir/t")
    if [[ $t =~ ^[0-9.]+$ ]]; then times+=("$t"); else fails=$((fails + 1)); echo "  ($2 $3: $t)" >&2; fi
  done
  median=$(bench_median "$timeout" "$fails" "${times[@]}")
}

mbps() { bench_mbps "$size" "$1"; }
ratio() { bench_ratio "$1" "$2"; }

linux_cc=${cc:-$(in_ns $ns_srv sysctl -n net.ipv4.tcp_congestion_control)}
# wrench's endpoint runs the same algorithm as Linux's senders where it has it.
case $linux_cc in
  bbr | cubic) wrench_cc=$linux_cc ;;
  reno) wrench_cc=newreno ;;
  *) wrench_cc=cubic ;;
esac
[ -n "$cc" ] || cc="$linux_cc (the kernel's default)"
echo "loss-bench: $size bytes, $reps repetitions each, median seconds (timeout $timeout s)"
echo "loss-bench: Linux's senders use $cc; wrench's endpoint uses $wrench_cc"
printf '%-9s %-6s %10s %10s %10s %9s %9s\n' direction loss linux_s wrench_s wrench/lnx linux_MB/s wrench_MB/s
for dir in get put; do
  for loss in $losses; do
    set_linux_loss "$loss" "$dir"
    median_of $ns_cli $dir 10.90.0.1 9000
    l=$median
    start_wrench "$loss" "$dir"
    median_of $ns_px $dir 10.89.0.2 80
    w=$median
    stop_wrench
    name=download; [ $dir = put ] && name=upload
    printf '%-9s %-6s %10s %10s %10s %9s %9s\n' $name "$loss%" "$l" "$w" "$(ratio "$l" "$w")" "$(mbps "$l")" "$(mbps "$w")"
  done
done
