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
