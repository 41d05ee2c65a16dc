#!/usr/bin/env bash
# serve benchmark (docs/benchmarks.md "wrench serve against Toxiproxy"): `wrench serve`
# and toxiproxy-server as their users run them, in one run. The proxies run in a network
# namespace of their own, each made through its tool's HTTP API (POST /proxies) to
# listen on 0.0.0.0:PORT toward a server on that namespace's loopback; the client is in
# a second namespace across a veth at MTU 1500. Measures bulk throughput each way (one
# connection), connections per second (connect, one byte each way, close) and the round
# trip of one byte (p50/p99), for direct, socat, Toxiproxy and wrench; prints the
# medians and the ratios wrench/Toxiproxy. Needs root, ip, nft, python3, curl and socat
# (scripts/install-deps.sh). Without -x, the Toxiproxy rows are skipped. Creates and
# deletes its own namespaces.
#
#   scripts/serve-bench.sh [-b WRENCH_BINARY] [-x TOXIPROXY_SERVER_BINARY] [-n REPS] [-s BYTES] [-d CONN_SECONDS] [-t TIMEOUT_S]
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/bench-lib.sh"
wrench=$here/../build/default/proxy/wrench
toxiproxy=
reps=3
size=$((256 * 1024 * 1024))
conn_seconds=2
timeout=120
while getopts "b:x:n:s:d:t:h" opt; do
  case $opt in
    b) wrench=$OPTARG ;;
    x) toxiproxy=$OPTARG ;;
    n) reps=$OPTARG ;;
    s) size=$OPTARG ;;
    d) conn_seconds=$OPTARG ;;
    t) timeout=$OPTARG ;;
    *) sed -n '2,13p' "$0"; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "serve-bench: needs root (network namespaces)" >&2; exit 1; }
for tool in ip nft python3 curl socat; do
  command -v $tool >/dev/null || { echo "serve-bench: $tool is missing (scripts/install-deps.sh)" >&2; exit 1; }
done
[ -x "$wrench" ] || { echo "serve-bench: no wrench binary at $wrench (build first, or -b)" >&2; exit 1; }
[ -z "$toxiproxy" ] || [ -x "$toxiproxy" ] || { echo "serve-bench: no toxiproxy-server at $toxiproxy" >&2; exit 1; }
((reps >= 1 && reps <= 50)) || { echo "serve-bench: -n must be 1..50" >&2; exit 2; }

xfer=$here/loss-bench-transfer.py
small=$here/serve-bench-client.py
tag=$$
ns_px=wsb-px-$tag    # the proxies and the servers
ns_cli=wsb-cli-$tag  # the client
px_addr=10.91.0.1
cli_addr=10.91.0.2
pids=()      # servers and proxies, running until the end
wrench_pid=
client_pid=
workdir=$(mktemp -d)
# wrench's host record (what it changed, to undo it) lives with the run, not in /run.
export WRENCH_RUN_DIR=$workdir/run

# Only processes still running are signalled (pids are not reused while their
# process is a child that was not waited for).
cleanup() {
  [ -z "$client_pid" ] || kill -TERM "$client_pid" 2>/dev/null || true
  # wrench first, with SIGTERM, so it removes its nftables table and TUN itself.
  if [ -n "$wrench_pid" ]; then
    kill -TERM "$wrench_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$wrench_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  bench_stop_pids "${pids[@]}"
  for ns in $ns_px $ns_cli; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$workdir"
}
trap cleanup EXIT
trap "exit 130" INT TERM  # exit, and so clean up through the EXIT trap

wait_listen() { bench_wait_listen serve-bench "$@"; }

# Waits (at most 10 s) for an HTTP API on 127.0.0.1:$1 in the proxies' namespace.
wait_api() {
  for _ in $(seq 100); do
    in_ns $ns_px curl -sf -m 1 "http://127.0.0.1:$1/version" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "serve-bench: no API on 127.0.0.1:$1" >&2
  return 1
}

# POST /proxies on the API at 127.0.0.1:$1: name $2, listen 0.0.0.0:$3, upstream 127.0.0.1:$4.
add_proxy() {
  local body="{\"name\":\"$2\",\"listen\":\"0.0.0.0:$3\",\"upstream\":\"127.0.0.1:$4\"}"
  if ! in_ns $ns_px curl -sf -m 5 -XPOST "http://127.0.0.1:$1/proxies" -d "$body" >"$workdir/post" 2>&1; then
    echo "serve-bench: POST /proxies $body on port $1 failed: $(head -c 300 "$workdir/post")" >&2
    return 1
  fi
  wait_listen $ns_cli $px_addr "$3"
}

# ---- the namespaces, joined by a veth at MTU 1500 (offloads as veths have them) ----
ip netns add $ns_px
ip netns add $ns_cli
ip link add wsb-p$tag type veth peer name wsb-c$tag
ip link set wsb-p$tag netns $ns_px
ip link set wsb-c$tag netns $ns_cli
in_ns $ns_px ip addr add $px_addr/24 dev wsb-p$tag
in_ns $ns_cli ip addr add $cli_addr/24 dev wsb-c$tag
in_ns $ns_px ip link set lo up
in_ns $ns_cli ip link set lo up
in_ns $ns_px ip link set wsb-p$tag mtu 1500 up
in_ns $ns_cli ip link set wsb-c$tag mtu 1500 up
# The client leaves a TIME-WAIT socket per connection; the kernel reuses those ports
# toward loopback only (tcp_tw_reuse=2), so across the veth connect() would end up
# searching the ephemeral range. Every path gets the same reuse.
in_ns $ns_cli sysctl -qw net.ipv4.tcp_tw_reuse=1

# ---- the servers, on 0.0.0.0 (the direct path) and so on loopback ----
# Started with `ip netns exec` itself (it execs the program), so $! is the program.
ip netns exec $ns_px python3 "$xfer" serve 0.0.0.0 9000 &
pids+=($!)
ip netns exec $ns_px python3 "$small" echo 0.0.0.0 9001 &
pids+=($!)
wait_listen $ns_cli $px_addr 9000
wait_listen $ns_cli $px_addr 9001

# ---- the proxies: bulk on port P, echo on P+1 ----
paths=(direct socat)
declare -A port=([direct]=9000 [socat]=9100 [toxiproxy]=9200 [wrench]=9300)

for p in 9100 9101; do
  ip netns exec $ns_px socat TCP4-LISTEN:$p,fork,reuseaddr,backlog=1024,nodelay TCP4:127.0.0.1:$((p - 100)),nodelay \
    2>>"$workdir/socat.err" &
  pids+=($!)
  wait_listen $ns_cli $px_addr $p
done

if [ -n "$toxiproxy" ]; then
  toxiproxy_version=$("$toxiproxy" -version 2>&1 | head -1)
  ip netns exec $ns_px "$toxiproxy" -host 127.0.0.1 -port 8475 >"$workdir/toxiproxy.log" 2>&1 &
  pids+=($!)
  wait_api 8475 || { tail -5 "$workdir/toxiproxy.log" >&2; exit 1; }
  add_proxy 8475 bulk 9200 9000
  add_proxy 8475 echo 9201 9001
  paths+=(toxiproxy)
else
  echo "serve-bench: no -x TOXIPROXY_SERVER_BINARY: the Toxiproxy rows are skipped"
fi

ip netns exec $ns_px "$wrench" serve --api 127.0.0.1:8474 --tun wsb0 2>"$workdir/wrench.err" &
wrench_pid=$!
for _ in $(seq 100); do
  grep -q "wrench: ready" "$workdir/wrench.err" 2>/dev/null && break
  sleep 0.1
done
if ! grep -q "TUN wsb0" "$workdir/wrench.err"; then
  echo "serve-bench: wrench serve did not start with its TUN:" >&2
  cat "$workdir/wrench.err" >&2
  exit 1
fi
add_proxy 8474 bulk 9300 9000
add_proxy 8474 echo 9301 9001
# The 0.0.0.0 proxies must be steered into the TUN (nftables DNAT), not kernel sockets.
# (The listing is read whole first: `grep -q` would stop reading, and nft's SIGPIPE
# fail the pipeline.)
table=$(in_ns $ns_px nft list table ip wrench_wsb0 2>&1 || true)
if ! grep -q 9300 <<<"$table"; then
  echo "serve-bench: wrench did not DNAT 0.0.0.0:9300 into its TUN:" >&2
  cat "$workdir/wrench.err" >&2
  exit 1
fi
paths+=(wrench)

# ---- measuring ----

# Runs one client in the client's namespace, in the background and waited for, so a
# signal stops the script at once; `out` gets its first line.
run_client() {
  ip netns exec $ns_cli "$@" >"$workdir/out" 2>&1 &
  client_pid=$!
  wait $client_pid || true
  client_pid=
  out=$(head -1 "$workdir/out" | head -c 200)
}

median() {  # the median of the figures given, or "-" when half or more are not numbers
  local xs=() fails=0 m
  for x in "$@"; do
    if [[ $x =~ ^[0-9.]+$ ]]; then xs+=("$x"); else fails=$((fails + 1)); fi
  done
  m=$(bench_median - "$fails" "${xs[@]}")
  [[ $m == ">"* ]] && m=-
  echo "$m"
}

declare -A up down cps p50 p99  # per path, the repetitions' figures, space-separated
echo "serve-bench: $((size >> 20)) MiB a transfer, connections for ${conn_seconds} s, 10,000 round trips;" \
  "medians of $reps; client across a veth at MTU 1500"
[ -z "$toxiproxy" ] || echo "serve-bench: Toxiproxy $toxiproxy_version"
for rep in $(seq "$reps"); do
  for path in "${paths[@]}"; do
    bp=${port[$path]}
    # send, not put: Toxiproxy closes the whole upstream connection when the client
    # shuts its side down, so the upload is timed to the server's answer without a FIN.
    run_client python3 "$xfer" send $px_addr "$bp" "$size" "$timeout"
    [[ $out =~ ^[0-9.]+$ ]] && out=$(python3 -c "print('%.1f' % ($size/1e6/$out))") || echo "  ($path up: $out)" >&2
    up[$path]+="$out "
    run_client python3 "$xfer" get $px_addr "$bp" "$size" "$timeout"
    [[ $out =~ ^[0-9.]+$ ]] && out=$(python3 -c "print('%.1f' % ($size/1e6/$out))") || echo "  ($path down: $out)" >&2
    down[$path]+="$out "
    run_client python3 "$small" conns $px_addr $((bp + 1)) "$conn_seconds" 100000
    [[ $out =~ ^[0-9.]+$ ]] || echo "  ($path conns: $out)" >&2
    cps[$path]+="$out "
    run_client python3 "$small" rtt $px_addr $((bp + 1)) 10000 "$timeout"
    if [[ $out =~ ^([0-9.]+)\ ([0-9.]+)$ ]]; then
      p50[$path]+="${BASH_REMATCH[1]} "; p99[$path]+="${BASH_REMATCH[2]} "
    else
      echo "  ($path rtt: $out)" >&2; p50[$path]+="x "; p99[$path]+="x "
    fi
  done
  echo "serve-bench: repetition $rep of $reps done"
done

declare -A m
printf '%-16s %10s %10s %10s %16s\n' path up_MB/s down_MB/s conns/s rtt_p50/p99_us
for path in "${paths[@]}"; do
  for f in up down cps p50 p99; do
    declare -n arr=$f
    # shellcheck disable=SC2086  # the figures are split on purpose
    m[$path.$f]=$(median ${arr[$path]})
    unset -n arr
  done
  printf '%-16s %10s %10s %10s %16s\n' "$path" "${m[$path.up]}" "${m[$path.down]}" "${m[$path.cps]}" \
    "${m[$path.p50]} / ${m[$path.p99]}"
done
ratio() {  # $1/$2, or "-" when either has no figure
  if [ "$1" = - ] || [ "$2" = - ]; then echo -; else bench_ratio "$2" "$1"; fi
}
for ref in toxiproxy socat; do
  [[ " ${paths[*]} " == *" $ref "* ]] || continue
  printf '%-16s %10s %10s %10s %16s\n' "wrench/$ref" "$(ratio "${m[wrench.up]}" "${m[$ref.up]}")" \
    "$(ratio "${m[wrench.down]}" "${m[$ref.down]}")" "$(ratio "${m[wrench.cps]}" "${m[$ref.cps]}")" \
    "$(ratio "${m[wrench.p50]}" "${m[$ref.p50]}") / $(ratio "${m[wrench.p99]}" "${m[$ref.p99]}")"
done
echo "(ratios over 1: wrench moves more, or its round trip is longer)"
