#!/usr/bin/env bash
# Prepares a fresh Debian machine for zkmq: the Docker daemon answering, and
# debootstrap (the ZooKeeper images are built from Debian packages, no registry).
# Idempotent: does nothing that is already done. Needs root for apt-get and dockerd.
set -euo pipefail

need_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "setup-host: $1 needs root; run: sudo $0" >&2
    exit 2
  fi
}

if ! command -v debootstrap >/dev/null 2>&1; then
  need_root "installing debootstrap"
  echo "setup-host: installing debootstrap (builds the ZooKeeper images from Debian packages)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi

if ! command -v docker >/dev/null 2>&1; then
  echo "setup-host: no docker command; install Docker Engine (Debian: apt-get install docker.io)" >&2
  exit 2
fi

if ! timeout 10 docker info >/dev/null 2>&1; then
  need_root "starting the Docker daemon"
  echo "setup-host: the Docker daemon does not answer; starting it"
  if command -v systemctl >/dev/null 2>&1 && systemctl start docker 2>/dev/null; then
    :
  elif command -v service >/dev/null 2>&1 && service docker start >/dev/null 2>&1; then
    :
  else
    nohup dockerd >/var/log/zkmq-dockerd.log 2>&1 &
  fi
  for _ in $(seq 1 60); do
    timeout 5 docker info >/dev/null 2>&1 && break
    sleep 1
  done
  if ! timeout 10 docker info >/dev/null 2>&1; then
    echo "setup-host: the Docker daemon did not start within 60 s; see /var/log/zkmq-dockerd.log" >&2
    exit 2
  fi
fi
echo "setup-host: docker answers, debootstrap is installed"
