# The command of every simulated swarm host (`zkmq cluster hosts up`), run by
# `sh -c` in a zkmq/swarm-host container: a Docker engine inside a container.
# Environment:
#   ZKMQ_API_PORT  where the inner engine's API listens (published on the
#                  machine's 127.0.0.1 at the same number)
#
# Why this shape (found on a cgroup v1 machine whose capability bounding set
# lacks CAP_SYS_RESOURCE, so --privileged fails; the container gets every other
# capability, no seccomp/AppArmor confinement, the machine's cgroup namespace and
# /sys/fs/cgroup read-write, a tmpfs /run and a volume at /var/lib/docker):
# - the inner containers' cgroups go under this container's own (read from
#   /proc/self/cgroup), so removing this container removes them: nothing is left
#   in the machine's cgroup tree, not even after a SIGKILL;
# - --tls=false: the API is published on 127.0.0.1 only, and without the flag
#   dockerd waits 15 s to warn about an unauthenticated TCP socket;
# - overlay2 on the volume (an overlayfs cannot be the upper layer of another);
# - no userland proxy: published ports are iptables rules, not a process each.
set -e
rm -f /var/run/docker.pid /var/run/docker/containerd/containerd.pid
parent=$(sed -n 's/^[0-9]*:[^:]*memory[^:]*:\(.*\)$/\1/p' /proc/self/cgroup | head -n 1)
exec dockerd \
  --host=unix:///var/run/docker.sock \
  --host="tcp://0.0.0.0:${ZKMQ_API_PORT:-2375}" \
  --tls=false \
  --storage-driver=overlay2 \
  --userland-proxy=false \
  --cgroup-parent="${parent:-}/inner"
