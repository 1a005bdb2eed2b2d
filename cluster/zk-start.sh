# The command of every zkmq ZooKeeper container (run by `sh -c`). Environment:
#   ZKMQ_ZOO_CFG  the rendered cluster/zoo.cfg.template
#   ZKMQ_MYID     this node's id
#   ZKMQ_HEAP_MB  Java heap
#   ZKMQ_NET_SETUP  a shell script run first, if set: a swarm member started during
#                 a partition gets its side of it here, before it sends a packet
#   ZKMQ_CLOCK_FAULTS 1: preload the clock shim into the JVM, its wall clock
#                 stepped at run time through /tmp/zkmq-clock (the clock-skew
#                 fault; cluster/zkmq-clock.c)
# Works with our Debian images (libzookeeper-java) and with images that ship
# zkServer.sh on PATH, such as the official `zookeeper` image.
set -e
mkdir -p /conf /data
printf '%s\n' "$ZKMQ_ZOO_CFG" >/conf/zoo.cfg
if [ -n "${ZKMQ_NET_SETUP:-}" ]; then
  sh -c "$ZKMQ_NET_SETUP"
fi
# myid is written once: it survives wipes (which keep it) and upgrades.
[ -s /data/myid ] || echo "$ZKMQ_MYID" >/data/myid
# Small JVM on purpose: 5 nodes, a gateway and the tests share 2 cores.
jvm="-Xmx${ZKMQ_HEAP_MB:-96}m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData"

# Only the JVM sees the stepped clock, and every start begins with the true time
# (a fault's skew lives as long as the process, like a network rule; the
# harness applies it again to a node restarted inside the fault's window).
if [ "${ZKMQ_CLOCK_FAULTS:-0}" = 1 ]; then
  if [ -f /usr/lib/zkmq/zkmq-clock.so ]; then
    printf '0\n' >/tmp/zkmq-clock
    export LD_PRELOAD=/usr/lib/zkmq/zkmq-clock.so ZKMQ_CLOCK_FILE=/tmp/zkmq-clock
  else
    echo "zk-start: no clock shim in this image; clock faults will be refused" >&2
  fi
fi

# java runs as a child of this shell, not as the container's first process: the
# kernel ignores a SIGKILL sent to that one from inside the container, and the
# weak-window faults kill the JVM from inside, at the instant its own files say
# the window opened. The shell passes a graceful stop on and exits as java did;
# `docker kill` still kills everything at once.
run() {
  "$@" &
  pid=$!
  trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
  while :; do
    status=0
    wait "$pid" || status=$?
    kill -0 "$pid" 2>/dev/null || exit "$status"
  done
}
if [ -f /usr/share/java/zookeeper.jar ]; then
  cp=/usr/share/java/zookeeper.jar
  # Debian's jar names slf4j-api but no backend; slf4j-simple logs to stderr.
  if [ -f /usr/share/java/slf4j-simple.jar ]; then
    cp="$cp:/usr/share/java/slf4j-simple.jar"
  fi
  # shellcheck disable=SC2086
  # The harness polls `srvr` several times a second: keep those lines out of the log.
  run java $jvm -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
    -Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn \
    -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg
elif command -v zkServer.sh >/dev/null 2>&1; then
  export SERVER_JVMFLAGS="$jvm" ZOO_LOG_DIR=/tmp ZOOCFGDIR=/conf
  run zkServer.sh start-foreground /conf/zoo.cfg
else
  echo "zk-start: no ZooKeeper in this image (neither /usr/share/java/zookeeper.jar nor zkServer.sh)" >&2
  exit 1
fi
