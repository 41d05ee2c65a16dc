#!/usr/bin/env bash
# The container image as Testcontainers uses it. No registry is needed: the image's
# root file system is built from Debian's archive with mmdebstrap (the runtime packages
# of deploy/Dockerfile, from scripts/install-deps.sh --list runtime) plus the wrench
# binary just built, imported into podman with the Dockerfile's CMD and EXPOSE, and
# driven by @testcontainers/toxiproxy (npm) through podman's Docker-compatible socket:
# tests/toxiproxy/testcontainers_test.js. podman runs inside a network namespace this
# script creates, with its storage, configuration and socket in a temporary directory
# removed at exit, so the host is left as it was. (Rootful podman shares two files
# among all its instances whatever the configuration: its IPAM database, from which
# the test's addresses are released when its containers go, and its blob-info cache.)
#
# podman's defaults do not run here (Debian 12's podman 4.3 with crun on a hybrid
# cgroup hierarchy); containers.conf below picks runc and cgroupfs, and lowers the
# containers' nproc and nofile limits (raising them past the caller's fails with
# EPERM). Port publishing uses netavark's bridge, whose iptables (nft) rules stay in
# this script's namespace.
#
# Exit 77 (CTest's SKIP_RETURN_CODE) with "SKIPPED: reason" when it cannot run: no
# root, no podman, mmdebstrap, runc or node/npm, no Debian archive or npm registry, or
# a podman that cannot run a container here.
# Usage: container_test.sh PATH/TO/wrench [CACHE_DIR]
# CACHE_DIR keeps the Debian root file system between runs (it changes only with the
# package list); the wrench binary is added to a copy each run.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
skip() { echo "SKIPPED: $*"; exit 77; }

# ---- inside the namespace: podman, the image, the Node test ----
if [ "${1:-}" = --inside ]; then
  work=$2
  export CONTAINERS_CONF="$work/containers.conf" CONTAINERS_STORAGE_CONF="$work/storage.conf"
  ip link set lo up
  service_pid=
  cleanup() {
    timeout 60 podman rm --all --force --time 0 >/dev/null 2>&1 || true
    timeout 60 podman rmi --all --force >/dev/null 2>&1 || true
    if [ -n "$service_pid" ]; then
      kill "$service_pid" 2>/dev/null || true
      for _ in $(seq 100); do kill -0 "$service_pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$service_pid" 2>/dev/null || true
      wait "$service_pid" 2>/dev/null || true
    fi
    # Overlay mounts the storage may still hold, innermost first.
    { grep -o " $work/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m" || true; done
  }
  trap cleanup EXIT

  echo "importing the root file system as localhost/wrench:test"
  changes=(--change 'CMD=["wrench","serve","--api","0.0.0.0:8474"]' --change EXPOSE=8474)
  for port in $(seq 8666 8697); do changes+=(--change "EXPOSE=$port"); done
  timeout 120 podman import "${changes[@]}" "$work/rootfs.tar" localhost/wrench:test >"$work/import.log" 2>&1 ||
    { cat "$work/import.log"; echo "podman import failed"; exit 1; }
  if ! timeout 60 podman run --rm --pull=never localhost/wrench:test wrench --help >"$work/run.log" 2>&1; then
    cat "$work/run.log"
    echo "SKIPPED: podman cannot run a container on this machine (above)"
    exit 77
  fi

  podman system service --time=0 "unix://$work/podman.sock" >"$work/service.log" 2>&1 &
  service_pid=$!
  for _ in $(seq 100); do
    [ -S "$work/podman.sock" ] && break
    kill -0 "$service_pid" 2>/dev/null || { cat "$work/service.log"; echo "podman system service ended"; exit 1; }
    sleep 0.1
  done
  [ -S "$work/podman.sock" ] || { echo "podman's socket did not appear in 10 s"; exit 1; }

  # Containers reach this namespace (the echo server's) at the bridge's gateway.
  gateway=$(podman network inspect podman --format '{{range .Subnets}}{{.Gateway}}{{end}}')
  status=0
  DOCKER_HOST="unix://$work/podman.sock" TESTCONTAINERS_RYUK_DISABLED=true \
    TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 WRENCH_IMAGE=localhost/wrench:test WRENCH_UPSTREAM_HOST="$gateway" \
    NODE_PATH="$work/node_modules" timeout 300 node "$here/toxiproxy/testcontainers_test.js" || status=$?
  if [ $status -ne 0 ]; then echo "--- podman system service said:"; tail -20 "$work/service.log"; fi
  exit $status
fi

# ---- outside: what needs the host's network, then the namespace ----
wrench=$(realpath "${1:?usage: $0 PATH/TO/wrench [CACHE_DIR]}")
cache=${2:-}
[ "$(id -u)" -eq 0 ] || skip "needs root: podman runs rootful containers with NET_ADMIN and /dev/net/tun"
unshare -n true 2>/dev/null || skip "cannot create a network namespace (unshare -n)"
for tool in podman mmdebstrap runc node npm; do
  command -v "$tool" >/dev/null || skip "$tool is not installed (scripts/install-deps.sh installs it)"
done
[ -c /dev/net/tun ] || skip "no /dev/net/tun on this machine to hand to the container"

work=$(mktemp -d /tmp/wrench-container.XXXXXX)
trap 'rm -rf "$work"' EXIT

cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nproc=1000:1000", "nofile=1000:1000"]
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
events_logfile_path = "$work/events.log"
tmp_dir = "$work/libpod"
[network]
network_backend = "netavark"
network_config_dir = "$work/networks"
EOF
cat >"$work/storage.conf" <<EOF
[storage]
driver = "overlay"
graphroot = "$work/storage"
runroot = "$work/run"
EOF

# The Debian root file system: Essential, apt's dependencies and wrench's runtime
# libraries. Kept in CACHE_DIR under a name that changes with the package list.
mapfile -t runtime < <("$here/../scripts/install-deps.sh" --list runtime)
packages=$(IFS=,; echo "${runtime[*]}")
base="$work/base.tar"
[ -n "$cache" ] && base="$cache/container-rootfs-$(echo "$packages" | sha256sum | cut -c1-12).tar"
if [ ! -s "$base" ]; then
  echo "building the root file system from Debian's archive with mmdebstrap: $packages"
  if ! timeout 600 mmdebstrap --variant=apt --format=tar --include="$packages" \
         --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
         --dpkgopt='path-exclude=/usr/share/locale/*' \
         bookworm "$base.part" http://deb.debian.org/debian >"$work/mmdebstrap.log" 2>&1; then
    tail -5 "$work/mmdebstrap.log"
    rm -f "$base.part"
    skip "mmdebstrap cannot build the root file system (is Debian's archive reachable?)"
  fi
  mv "$base.part" "$base"
fi
mkdir -p "$work/add/usr/local/bin"
cp "$wrench" "$work/add/usr/local/bin/wrench"
strip --strip-debug "$work/add/usr/local/bin/wrench" 2>/dev/null || true
cp "$base" "$work/rootfs.tar"
tar --append -f "$work/rootfs.tar" --owner=0 --group=0 -C "$work/add" ./usr/local/bin/wrench

# testcontainers 12 asks for Node.js 22.22 through undici 8 alone; on Node.js 20
# (NodeSource's, many CI images') it runs with undici 7, which npm is told to use.
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || skip "@testcontainers/toxiproxy needs Node.js 20 or later (this is $(node --version))"
if [ "$node_major" -lt 22 ]; then
  echo '{"private": true, "overrides": {"undici": "^7.16.0"}}' >"$work/package.json"
else
  echo '{"private": true}' >"$work/package.json"
fi
echo "installing @testcontainers/toxiproxy from the npm registry into $work"
if ! (cd "$work" && timeout 300 npm install --no-audit --no-fund --loglevel=error \
        @testcontainers/toxiproxy >"$work/npm.log" 2>&1); then
  tail -5 "$work/npm.log"
  skip "npm cannot install @testcontainers/toxiproxy (is the registry reachable?)"
fi
echo "@testcontainers/toxiproxy $(node -p "require('$work/node_modules/@testcontainers/toxiproxy/package.json').version")"

status=0
unshare -n "$0" --inside "$work" || status=$?
exit $status
