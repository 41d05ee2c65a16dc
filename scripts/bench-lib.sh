# Shared by the benchmark scripts (sourced): medians, throughput and ratios of
# times in seconds, where a time of ">N" stands for a run that timed out.

# bench_median TIMEOUT FAILS TIME...: the median of the times, or ">TIMEOUT" when
# half or more of the runs (FAILS of them failed) gave none.
bench_median() {
  local timeout=$1 fails=$2
  shift 2
  if (($# == 0)) || ((fails * 2 >= fails + $#)); then echo ">$timeout"; return; fi
  printf '%s\n' "$@" | sort -g |
    awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'
}

# bench_mbps BYTES SECONDS: MB/s, or "-" for a timeout.
bench_mbps() {
  python3 -c "import sys; t=sys.argv[2]; print('-' if t.startswith('>') else '%.1f' % (int(sys.argv[1])/1e6/float(t)))" "$1" "$2"
}

# bench_ratio A B: B/A to two decimals, or "-" when either timed out.
bench_ratio() {
  python3 -c "import sys; a,b=sys.argv[1:]; print('-' if '>' in a+b else '%.2f' % (float(b)/float(a)))" "$1" "$2"
}

# bench_stop_pids PID...: TERM, then after 0.2 s KILL, then reaps each (only
# processes still running are signalled: a pid is not reused while its process is
# a child that was not waited for).
bench_stop_pids() {
  local p
  for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.2
  for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
  for p in "$@"; do wait "$p" 2>/dev/null || true; done
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# bench_wait_listen WHO NS HOST PORT: waits (at most 10 s) until something listens
# on HOST:PORT, seen from namespace NS; says so as WHO and fails otherwise.
bench_wait_listen() {
  for _ in $(seq 100); do
    in_ns "$2" python3 -c "import socket; socket.create_connection(('$3',$4),0.2).close()" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "$1: nothing listens on $3:$4 in $2" >&2
  return 1
}
