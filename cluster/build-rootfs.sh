#!/usr/bin/env bash
# Builds the root file system of a zkmq image from Debian packages:
#   cluster/build-rootfs.sh SUITE JRE_PACKAGE ROOT_DIR [ZK_VERSION]   a ZooKeeper image
#   cluster/build-rootfs.sh --docker-host SUITE ROOT_DIR              a simulated swarm host
# e.g. cluster/build-rootfs.sh bookworm openjdk-17-jre-headless /tmp/zk-3.8.0 3.8.0
# With ZK_VERSION, apt must install exactly that upstream version of
# libzookeeper-java (a moving suite such as forky fails loudly instead of
# producing an image whose tag lies).
#
# `zkmq cluster images` runs this, then imports ROOT_DIR as a Docker image (a tar
# stream through the Docker API; no registry involved); `zkmq cluster hosts up`
# does the same with --docker-host: Debian's docker.io, whose dockerd runs inside
# each host container (Docker in Docker; cluster/host-start.sh starts it). Needs
# root and debootstrap.
#
# Why this shape:
# - `--variant=minbase` plus a chroot `apt-get install` rather than debootstrap
#   `--include`: debootstrap's own resolver fails on the JRE's dependency tree,
#   apt's does not.
# - `libzookeeper-java`, not `zookeeper`: the latter pulls a full desktop JRE on
#   trixie that fails to configure in a minimal root. We only need the jar and the
#   libraries it names in its manifest class path.
# - iptables and iproute2 are the tools of the network faults (partition, loss,
#   slow); procps gives `ps` and `pkill` for debugging a node by hand. Changing
#   what goes in means bumping RECIPE_VERSION in src/cluster/images.rs, so images
#   built before are rebuilt.
# - the clock-skew fault's shim, zkmq-clock.c (beside this script), is compiled
#   in the root with its own gcc, which is then removed: a library built against
#   the image's own C library loads in it whatever the host runs.
# - a policy-rc.d that refuses to start services, and /proc mounted only while a
#   package's postinst needs it (the JRE's does), unmounted on every exit path.
set -euo pipefail

usage() {
  echo "usage: $0 SUITE JRE_PACKAGE ROOT_DIR [ZK_VERSION]" >&2
  echo "       $0 --docker-host SUITE ROOT_DIR" >&2
  exit 2
}
if [ "${1:-}" = --docker-host ]; then
  [ $# -eq 3 ] || usage
  flavour=docker-host
  suite=$2
  jre=
  root=$3
  zk_version=
else
  { [ $# -ge 3 ] && [ $# -le 4 ]; } || usage
  flavour=zookeeper
  suite=$1
  jre=$2
  root=$3
  zk_version=${4:-}
fi
mirror=${ZKMQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}

if [ "$(id -u)" != 0 ]; then
  echo "build-rootfs: building an image root needs root (debootstrap, chroot)" >&2
  exit 2
fi
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "build-rootfs: debootstrap is missing; run: apt-get install debootstrap (or ./cluster/setup-host.sh)" >&2
  exit 2
fi

step() { echo "build-rootfs[$suite]: $*"; }

cleanup() {
  # Never leave a mount behind, whatever failed.
  if mountpoint -q "$root/proc" 2>/dev/null; then umount -l "$root/proc" || true; fi
}
trap cleanup EXIT

start=$(date +%s)
rm -rf "$root"
mkdir -p "$root"

# An older debootstrap has no script for a newer suite (bookworm's knows no
# forky); every suite since buster uses the same script as sid.
script=/usr/share/debootstrap/scripts/$suite
[ -e "$script" ] || script=/usr/share/debootstrap/scripts/sid

step "debootstrap --variant=minbase $suite from $mirror"
debootstrap --variant=minbase --components=main "$suite" "$root" "$mirror" "$script" \
  >"$root.debootstrap.log" 2>&1 || {
  echo "build-rootfs: debootstrap failed; last lines of $root.debootstrap.log:" >&2
  tail -n 20 "$root.debootstrap.log" >&2
  exit 1
}
rm -f "$root.debootstrap.log"

cat >"$root/usr/sbin/policy-rc.d" <<'EOF'
#!/bin/sh
exit 101
EOF
chmod 755 "$root/usr/sbin/policy-rc.d"
mount -t proc proc "$root/proc"

step "apt-get update"
# Testing's Release file carries a Valid-Until a week ahead; a mirror or snapshot
# that lags behind would make apt refuse it. Signatures are still checked.
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
  apt-get -o Acquire::Retries=3 -o Acquire::Check-Valid-Until=false update -qq
zk_package=libzookeeper-java
if [ -n "$zk_version" ]; then
  zk_package="libzookeeper-java=$zk_version-*"
  # A moving suite (testing) drops old versions: say so plainly, not as apt's error.
  available=$(chroot "$root" apt-cache madison libzookeeper-java | awk '{print $3}' | tr '\n' ' ' | sed 's/ $//')
  case " $available" in
    *" $zk_version-"*) ;;
    *)
      echo "build-rootfs: Debian $suite has no libzookeeper-java $zk_version (it has: ${available:-none});" \
        "build another version, or update SUPPORTED_VERSIONS in src/cluster/images.rs" >&2
      exit 1
      ;;
  esac
fi
if [ "$flavour" = zookeeper ]; then
  packages=("$jre" "$zk_package" iptables iproute2 procps)
else
  # dockerd and containerd (what a swarm host runs), iptables for its networks
  packages=(docker.io iptables iproute2 procps)
fi
step "apt-get install ${packages[*]}"
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C \
  apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends \
  "${packages[@]}" >"$root.apt.log" 2>&1 || {
  echo "build-rootfs: apt-get install failed; last lines of $root.apt.log:" >&2
  tail -n 30 "$root.apt.log" >&2
  exit 1
}
rm -f "$root.apt.log"

shim=$(dirname "$0")/zkmq-clock.c
if [ "$flavour" = zookeeper ] && [ -f "$shim" ]; then
  step "compiling the clock shim (gcc installed for it, then removed)"
  cp "$shim" "$root/tmp/zkmq-clock.c"
  mkdir -p "$root/usr/lib/zkmq"
  chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive LC_ALL=C sh -c '
    apt-get -o Acquire::Retries=3 install -y -qq --no-install-recommends gcc libc6-dev &&
    gcc -O2 -Wall -Wextra -Werror -shared -fPIC -o /usr/lib/zkmq/zkmq-clock.so /tmp/zkmq-clock.c -ldl &&
    apt-get purge -y -qq --autoremove gcc libc6-dev' >"$root.shim.log" 2>&1 || {
    echo "build-rootfs: compiling the clock shim failed; last lines of $root.shim.log:" >&2
    tail -n 30 "$root.shim.log" >&2
    exit 1
  }
  rm -f "$root.shim.log" "$root/tmp/zkmq-clock.c"
fi

if [ "$flavour" = zookeeper ] && [ ! -f "$root/usr/share/java/zookeeper.jar" ]; then
  echo "build-rootfs: /usr/share/java/zookeeper.jar is missing after installing libzookeeper-java" >&2
  exit 1
fi
if [ "$flavour" = docker-host ] && [ ! -x "$root/usr/sbin/dockerd" ]; then
  echo "build-rootfs: /usr/sbin/dockerd is missing after installing docker.io" >&2
  exit 1
fi

step "trimming (apt lists, caches, docs, man pages)"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
  "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/tmp/*
rm -f "$root/usr/sbin/policy-rc.d"
umount -l "$root/proc"

if [ "$flavour" = docker-host ]; then
  step "done in $(($(date +%s) - start)) s: $(chroot "$root" dockerd --version), $(du -sh "$root" | cut -f1)"
  exit 0
fi

# The directories the containers use: /conf holds the generated zoo.cfg, /data the
# node's data directory (a Docker volume is mounted over it).
mkdir -p "$root/conf" "$root/data"

version=$(ls "$root"/usr/share/maven-repo/org/apache/zookeeper/zookeeper/ 2>/dev/null | grep -v debian | head -n 1 || true)
step "done in $(($(date +%s) - start)) s: ZooKeeper ${version:-?}, $(du -sh "$root" | cut -f1)"
