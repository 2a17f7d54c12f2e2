#!/usr/bin/env bash
# A real, single-node Apache Kafka broker (KRaft, broker+controller in one JVM) without Docker.
#
#   deploy/kafka/local-kafka.sh start  [--port N] [--controller-port N] [--data DIR] [--timeout S]
#   deploy/kafka/local-kafka.sh stop   [--data DIR]
#   deploy/kafka/local-kafka.sh status [--data DIR]
#   deploy/kafka/local-kafka.sh fetch             # only download the jars into the cache
#
# Needs java (17+) and, the first time only, mvn (jars come from Maven Central via pom.xml).
# Defaults: --port 9092, --controller-port 9093, --data ${METASIGNAL_KAFKA_DATA:-/tmp/metasignal-kafka}
# Environment:
#   METASIGNAL_KAFKA_CACHE      jar cache (default ~/.cache/metasignal/kafka-<version>; jars in lib/)
#   METASIGNAL_KAFKA_DATA       default data dir
#   METASIGNAL_KAFKA_VERSION    Kafka version to fetch (default 4.3.1)
#   METASIGNAL_KAFKA_HEAP       JVM heap flags (default "-Xms256m -Xmx512m")
#   METASIGNAL_KAFKA_LOG_LEVEL  broker log level in <data>/kafka.log (default WARN)
#   METASIGNAL_KAFKA_PYTHON     python with kafka-python for the readiness check
#                               (default: <repo>/.venv/bin/python, else python3)
# Exit codes: 0 ok / running, 1 error / stopped, 2 usage, 3 port busy, 4 broker did not start,
#             5 jar fetch failed, 6 java or mvn missing.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"
KAFKA_VERSION="${METASIGNAL_KAFKA_VERSION:-4.3.1}"
CACHE_DIR="${METASIGNAL_KAFKA_CACHE:-$HOME/.cache/metasignal/kafka-$KAFKA_VERSION}"
LIB_DIR="$CACHE_DIR/lib"
HEAP_OPTS="${METASIGNAL_KAFKA_HEAP:--Xms256m -Xmx512m}"

PORT=9092
CPORT=9093
DATA_DIR="${METASIGNAL_KAFKA_DATA:-/tmp/metasignal-kafka}"
TIMEOUT=60

die() { # die CODE MESSAGE
    echo "local-kafka: error: $2" >&2
    exit "$1"
}
die_with_log() { # die_with_log CODE MESSAGE: error line, then the broker log tail
    echo "local-kafka: error: $2" >&2
    log_tail
    exit "$1"
}
info() { echo "local-kafka: $*" >&2; }

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }

CMD="${1:-}"
[[ -n "$CMD" ]] || usage
shift
while [[ $# -gt 0 ]]; do
    case "$1" in
        --port) [[ $# -ge 2 ]] || usage; PORT="$2"; shift 2 ;;
        --port=*) PORT="${1#*=}"; shift ;;
        --controller-port) [[ $# -ge 2 ]] || usage; CPORT="$2"; shift 2 ;;
        --controller-port=*) CPORT="${1#*=}"; shift ;;
        --data) [[ $# -ge 2 ]] || usage; DATA_DIR="$2"; shift 2 ;;
        --data=*) DATA_DIR="${1#*=}"; shift ;;
        --timeout) [[ $# -ge 2 ]] || usage; TIMEOUT="$2"; shift 2 ;;
        --timeout=*) TIMEOUT="${1#*=}"; shift ;;
        -h|--help) usage ;;
        *) echo "local-kafka: unknown argument: $1" >&2; usage ;;
    esac
done
if ! is_uint "$PORT" || ! is_uint "$CPORT" || ! is_uint "$TIMEOUT"; then
    die 2 "ports and timeout must be integers"
fi
[[ "$PORT" != "$CPORT" ]] || die 2 "--port and --controller-port must differ"

[[ "$DATA_DIR" == /* ]] || DATA_DIR="$PWD/$DATA_DIR"
DATA_DIR="${DATA_DIR%/}"
PID_FILE="$DATA_DIR/kafka.pid"
LOG_FILE="$DATA_DIR/kafka.log"
PROPS="$DATA_DIR/server.properties"
LOG_DIRS="$DATA_DIR/logs"
BOOTSTRAP_FILE="$DATA_DIR/bootstrap"

find_java() {
    if [[ -n "${JAVA_HOME:-}" && -x "$JAVA_HOME/bin/java" ]]; then
        JAVA="$JAVA_HOME/bin/java"
    elif command -v java >/dev/null 2>&1; then
        JAVA="$(command -v java)"
    else
        die 6 "java not found (install a JDK/JRE 17+, e.g. apt-get install openjdk-17-jre-headless)"
    fi
}

# ---------------------------------------------------------------- jar cache
lib_ready() { [[ -f "$LIB_DIR/.complete" ]]; }

fetch_jars() {
    lib_ready && return 0
    command -v mvn >/dev/null 2>&1 || die 6 "mvn not found and no jar cache at $LIB_DIR (install maven)"
    mkdir -p "$CACHE_DIR"
    # Serialise concurrent fetches (e.g. parallel test sessions) when flock is available.
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$CACHE_DIR/.fetch.lock"
        flock 9
        lib_ready && { exec 9>&-; return 0; }
        rm -rf "$CACHE_DIR"/lib.tmp.*  # leftovers of interrupted fetches (we hold the lock)
    fi
    local tmp="$CACHE_DIR/lib.tmp.$$" flog="$CACHE_DIR/fetch.log" t0=$SECONDS
    rm -rf "$tmp"
    info "fetching Kafka $KAFKA_VERSION jars into $LIB_DIR (one time) ..."
    if ! mvn -B -q -Dstyle.color=never -f "$SCRIPT_DIR/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$tmp" >"$flog" 2>&1; then
        rm -rf "$tmp"
        echo "local-kafka: error: mvn failed to fetch Kafka $KAFKA_VERSION jars (full log: $flog)" >&2
        sed 's/\x1b\[[0-9;]*m//g' "$flog" | grep -m 1 '\[ERROR\] .' >&2 || tail -n 10 "$flog" >&2 || true
        exit 5
    fi
    compgen -G "$tmp/kafka_2.13-$KAFKA_VERSION.jar" >/dev/null \
        || { rm -rf "$tmp"; die 5 "mvn succeeded but kafka_2.13-$KAFKA_VERSION.jar is missing in $tmp"; }
    touch "$tmp/.complete"
    # Atomic publish: a half-written lib/ is never visible (a stale incomplete one is replaced).
    rm -rf "$LIB_DIR"
    mv -T "$tmp" "$LIB_DIR"
    info "fetched $(find "$LIB_DIR" -name '*.jar' | wc -l) jars in $((SECONDS - t0)) s"
    if command -v flock >/dev/null 2>&1; then exec 9>&-; fi
}

# ---------------------------------------------------------------- process helpers
# Prints the broker pid if the pid file points at *this* data dir's running broker.
running_pid() {
    [[ -f "$PID_FILE" ]] || return 1
    local pid cmd
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    is_uint "${pid:-x}" || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    cmd="$(ps -p "$pid" -o args= 2>/dev/null || true)"
    [[ "$cmd" == *kafka.Kafka* && "$cmd" == *"$PROPS"* ]] || return 1
    echo "$pid"
}

port_busy() { # true if something accepts connections on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# stop_pid PID GRACE_S: SIGTERM (clean shutdown), SIGKILL after GRACE_S seconds.
# A SIGKILLed broker restarts ~9 s slower (the controller waits for the old broker session).
stop_pid() {
    local pid="$1" deadline=$((SECONDS + $2))
    kill -TERM "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        info "broker (pid $pid) still running ${2}s after SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$PID_FILE"
}

log_tail() {
    if [[ -f "$LOG_FILE" ]]; then
        echo "---- last 30 lines of $LOG_FILE ----" >&2
        tail -n 30 "$LOG_FILE" >&2 || true
        echo "----" >&2
    fi
}

# Kafka cluster ids are 16 random bytes in unpadded base64url (22 chars), not starting with '-'.
new_cluster_id() {
    local id
    while :; do
        id="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
        [[ "$id" == -* ]] || { echo "$id"; return; }
    done
}

write_properties() {
    cat >"$PROPS" <<EOF
# Generated by deploy/kafka/local-kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CPORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$LOG_DIRS
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

wait_ready() { # wait_ready PID -> 0 when the broker answers a metadata request
    local pid="$1" py="${METASIGNAL_KAFKA_PYTHON:-}"
    if [[ -z "$py" ]]; then
        if [[ -x "$REPO_DIR/.venv/bin/python" ]]; then py="$REPO_DIR/.venv/bin/python"; else py=python3; fi
    fi
    if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import kafka' >/dev/null 2>&1; then
        "$py" - "$pid" "127.0.0.1:$PORT" "$TIMEOUT" <<'PYEOF'
import logging, os, socket, sys, time
logging.disable(logging.CRITICAL)
from kafka import KafkaAdminClient
pid, bootstrap, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
host, port = bootstrap.rsplit(":", 1)
deadline = time.monotonic() + timeout
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit(2)  # broker process died
    try:
        # Cheap port probe first: a client built against a closed port backs off for seconds.
        socket.create_connection((host, int(port)), timeout=0.5).close()
    except OSError:
        time.sleep(0.1)
        continue
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000,
                                 client_id="local-kafka-ready")
        try:
            admin.list_topics()
            if admin.describe_cluster().get("brokers"):
                sys.exit(0)
        finally:
            admin.close()
    except Exception:
        pass
    time.sleep(0.2)
sys.exit(1)
PYEOF
        return $?
    fi
    # Fallback without kafka-python: the listener only accepts connections once the broker has
    # caught up with the metadata log and is unfenced, so an open port is a fair readiness signal.
    local deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        kill -0 "$pid" 2>/dev/null || return 2
        port_busy "$PORT" && return 0
        sleep 0.25
    done
    return 1
}

# ---------------------------------------------------------------- commands
cmd_start() {
    local pid
    if pid="$(running_pid)"; then
        info "already running (pid $pid, data $DATA_DIR)"
        echo "bootstrap=$(cat "$BOOTSTRAP_FILE" 2>/dev/null || echo "127.0.0.1:$PORT")"
        return 0
    fi
    rm -f "$PID_FILE"
    find_java
    port_busy "$PORT" && die 3 "port $PORT is already in use (choose another with --port)"
    port_busy "$CPORT" && die 3 "controller port $CPORT is already in use (choose another with --controller-port)"
    fetch_jars

    mkdir -p "$LOG_DIRS"
    write_properties
    if [[ ! -f "$LOG_DIRS/meta.properties" ]]; then
        local cid
        cid="$(new_cluster_id)"
        if ! "$JAVA" -cp "$LIB_DIR/*" -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.yaml" \
            kafka.tools.StorageTool format --ignore-formatted -t "$cid" -c "$PROPS" \
            >>"$LOG_FILE" 2>&1; then
            die_with_log 1 "formatting $LOG_DIRS failed"
        fi
    fi

    echo "==== $(date '+%F %T') local-kafka start: 127.0.0.1:$PORT (controller $CPORT) ====" >>"$LOG_FILE"
    local t0=$SECONDS
    # setsid: detach from the caller's session so Ctrl-C in the calling terminal does not kill
    # the broker; stdin/stdout/stderr are redirected so callers that capture output (subprocess
    # pipes) are not kept open by the JVM.
    # shellcheck disable=SC2086,SC2016  # HEAP_OPTS is word-split; $$ expands in the child
    setsid bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
        "$JAVA" $HEAP_OPTS -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$SCRIPT_DIR/log4j2.yaml" \
        -cp "$LIB_DIR/*" kafka.Kafka "$PROPS" \
        </dev/null >>"$LOG_FILE" 2>&1 &
    local _
    for _ in $(seq 50); do [[ -s "$PID_FILE" ]] && break; sleep 0.05; done
    pid="$(cat "$PID_FILE" 2>/dev/null || true)"
    is_uint "${pid:-x}" || die_with_log 4 "broker did not start (no pid file)"

    local rc=0
    wait_ready "$pid" || rc=$?
    if [[ $rc -ne 0 ]]; then
        if kill -0 "$pid" 2>/dev/null; then
            stop_pid "$pid" 10
            die_with_log 4 "broker did not become ready on 127.0.0.1:$PORT within ${TIMEOUT}s (stopped it)"
        fi
        rm -f "$PID_FILE"
        die_with_log 4 "broker did not start: the process exited (log: $LOG_FILE)"
    fi
    echo "127.0.0.1:$PORT" >"$BOOTSTRAP_FILE"
    info "running (pid $pid, ready in $((SECONDS - t0)) s, data $DATA_DIR, log $LOG_FILE)"
    echo "bootstrap=127.0.0.1:$PORT"
}

cmd_stop() {
    local pid
    if ! pid="$(running_pid)"; then
        rm -f "$PID_FILE"
        info "not running (data $DATA_DIR)"
        return 0
    fi
    stop_pid "$pid" "${METASIGNAL_KAFKA_STOP_TIMEOUT:-30}"
    info "stopped (pid $pid)"
}

cmd_status() {
    local pid
    if pid="$(running_pid)"; then
        echo "running pid=$pid bootstrap=$(cat "$BOOTSTRAP_FILE" 2>/dev/null || echo '?') data=$DATA_DIR"
        return 0
    fi
    echo "stopped data=$DATA_DIR"
    return 1
}

case "$CMD" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    fetch) fetch_jars; echo "lib=$LIB_DIR" ;;
    -h|--help|help) usage ;;
    *) echo "local-kafka: unknown command: $CMD" >&2; usage ;;
esac
