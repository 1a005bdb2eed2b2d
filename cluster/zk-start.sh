# The command of every zkmq ZooKeeper container (run by `sh -c`). Environment:
#   ZKMQ_ZOO_CFG  the rendered cluster/zoo.cfg.template
#   ZKMQ_MYID     this node's id
#   ZKMQ_HEAP_MB  Java heap
# Works with our Debian images (libzookeeper-java) and with images that ship
# zkServer.sh on PATH, such as the official `zookeeper` image.
set -e
mkdir -p /conf /data
printf '%s\n' "$ZKMQ_ZOO_CFG" >/conf/zoo.cfg
# myid is written once: it survives wipes (which keep it) and upgrades.
[ -s /data/myid ] || echo "$ZKMQ_MYID" >/data/myid
# Small JVM on purpose: 5 nodes, a gateway and the tests share 2 cores.
jvm="-Xmx${ZKMQ_HEAP_MB:-96}m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData"
if [ -f /usr/share/java/zookeeper.jar ]; then
  cp=/usr/share/java/zookeeper.jar
  # Debian's jar names slf4j-api but no backend; slf4j-simple logs to stderr.
  if [ -f /usr/share/java/slf4j-simple.jar ]; then
    cp="$cp:/usr/share/java/slf4j-simple.jar"
  fi
  # shellcheck disable=SC2086
  # The harness polls `srvr` several times a second: keep those lines out of the log.
  exec java $jvm -Dorg.slf4j.simpleLogger.showDateTime=true \
    -Dorg.slf4j.simpleLogger.dateTimeFormat=HH:mm:ss.SSS \
    -Dorg.slf4j.simpleLogger.log.org.apache.zookeeper.server.NIOServerCnxn=warn \
    -cp "$cp" org.apache.zookeeper.server.quorum.QuorumPeerMain /conf/zoo.cfg
elif command -v zkServer.sh >/dev/null 2>&1; then
  export SERVER_JVMFLAGS="$jvm" ZOO_LOG_DIR=/tmp ZOOCFGDIR=/conf
  exec zkServer.sh start-foreground /conf/zoo.cfg
else
  echo "zk-start: no ZooKeeper in this image (neither /usr/share/java/zookeeper.jar nor zkServer.sh)" >&2
  exit 1
fi
