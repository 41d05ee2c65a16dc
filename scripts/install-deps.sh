#!/usr/bin/env bash
# Installs the Debian 12 packages wrench needs to build, test and run, skipping
# those already present. Pinned toolchain: clang 14 (Debian 12's default clang,
# with libFuzzer from libclang-rt-14-dev) and Boost 1.81 (libboost1.81-dev).
set -euo pipefail

# `build`: what building and running wrench needs (the demo); `test`: everything the
# test command needs on top (tshark, Chromium, Node.js for a Toxiproxy client...);
# `runtime`: the shared libraries the wrench binary alone needs (the container image).
# With --list, the packages are printed, one a line, instead of installed.
list=false
if [ "${1:-}" = --list ]; then list=true; shift; fi
profile=${1:-test}
packages=(
  cmake ninja-build g++ clang-14 libclang-rt-14-dev lld-14 llvm-14
  libabsl-dev libboost1.81-dev libgtest-dev libgmock-dev libbenchmark-dev
  libpcap-dev nlohmann-json3-dev libnftables-dev
  iproute2 python3 curl
)
if [ "$profile" = runtime ]; then
  # The runtime packages of the -dev ones above that wrench links (libstdc++ and libc
  # are in every Debian system).
  packages=(libabsl20220623 libpcap0.8 libnftables1)
fi
if [ "$profile" = test ]; then
  packages+=(socat tshark zip unzip)  # zip and unzip: the ClusterFuzzLite build check
  packages+=(nftables)  # tests/dnat_test lists wrench's table with nft
  packages+=(ethtool)   # scripts/loss-bench.sh turns the veth's offloads off
  packages+=(slirp4netns)  # scripts/exec-bench.sh measures wrench exec against it
  packages+=(chromium)  # renders the ladder SVG in tests/ladder_render_test
  # toxiproxy-node-client drives wrench serve in tests/toxiproxy_client_test.sh; a
  # Node.js that is already there (from any source) will do.
  command -v node >/dev/null 2>&1 || packages+=(nodejs)
  command -v npm >/dev/null 2>&1 || packages+=(npm)
  # tests/container_test.sh: the image's root file system from Debian's archive
  # (mmdebstrap), run by podman with runc and netavark's bridge (iptables in nft mode).
  packages+=(podman mmdebstrap runc uidmap netavark iptables)
fi
if $list; then
  printf '%s\n' "${packages[@]}"
  exit 0
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  # tshark asks whether non-root users may capture; the default (no) is fine.
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
