#!/usr/bin/env bash
# Smoke run of the paper's stack on the local real Kafka:
#   tributary gen tianchi (ROWS rows) -> tributary replay (2 writers, 2 log files)
#   -> Flume: 2 collecting agents (TAILDIR or exec, file channel, Avro sink)
#             -> 1 aggregating agent (Avro source, file channel, Kafka sink)
#   -> Kafka (tributary kafka start, KRaft, loopback) -> Spark Streaming job (DStreams, local[2])
#   -> orders_by_age.csv, orders_by_gender.csv, orders_by_day.csv, checked against exact_counts.py.
#
# usage: bench/peers/paper-stack/smoke.sh [ROWS]        (default 10000)
# env:   WORK (default /tmp/paper-stack-smoke; wiped), SOURCE=taildir|exec (default taildir),
#        KAFKA_PORT (19092; its controller takes +100), AVRO_PORT (41414), BATCH_MS (1000),
#        TIMEOUT_S (300), TRIBUTARY (default build/release/tools/tributary), JAVA (default java).
# Stops every process it started (Flume agents, Spark job, Kafka) on exit, by pid.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../../.." && pwd)
ROWS=${1:-10000}
WORK=${WORK:-/tmp/paper-stack-smoke}
SOURCE=${SOURCE:-taildir}
KAFKA_PORT=${KAFKA_PORT:-19092}
AVRO_PORT=${AVRO_PORT:-41414}
BATCH_MS=${BATCH_MS:-1000}
TIMEOUT_S=${TIMEOUT_S:-300}
TRIB=${TRIBUTARY:-$ROOT/build/release/tools/tributary}
JAVA=${JAVA:-java}
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
TOPIC=paper-stack-$(date +%s)
# Spark 3.5 on Java 17 needs these opens (spark-submit adds them; we start the JVM ourselves).
SPARK_OPENS="-XX:+IgnoreUnrecognizedVMOptions --add-opens=java.base/java.lang=ALL-UNNAMED
 --add-opens=java.base/java.lang.invoke=ALL-UNNAMED --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
 --add-opens=java.base/java.io=ALL-UNNAMED --add-opens=java.base/java.net=ALL-UNNAMED
 --add-opens=java.base/java.nio=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED
 --add-opens=java.base/java.util.concurrent=ALL-UNNAMED --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED
 --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
 --add-opens=java.base/sun.nio.cs=ALL-UNNAMED --add-opens=java.base/sun.security.action=ALL-UNNAMED
 --add-opens=java.base/sun.util.calendar=ALL-UNNAMED -Djdk.reflect.useDirectMethodHandle=false"

case "$SOURCE" in taildir) SUFFIX="" ;; exec) SUFFIX="-exec" ;; *) echo "SOURCE is taildir or exec" >&2; exit 2 ;; esac
[ -x "$TRIB" ] || { echo "no tributary binary at $TRIB (set TRIBUTARY)" >&2; exit 2; }

# The jars: Flume's into flume/lib, the Spark job built against ~/.m2 (both once).
if [ ! -f "$HERE/flume/lib/flume-ng-node-1.11.0.jar" ]; then
  (cd "$HERE/flume" && mvn -B -q -T1 dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib)
fi
if [ ! -f "$HERE/spark/target/paper-stack-spark.jar" ] || [ ! -f "$HERE/spark/target/classpath.txt" ]; then
  (cd "$HERE/spark" && mvn -B -q -T1 package)
fi

rm -rf "$WORK"
mkdir -p "$WORK/logs" "$WORK/flume" "$WORK/spark-out"
now() { date +%s.%N; }
declare -A PIDS=()
KAFKA_UP=0
cleanup() {
  for name in "${!PIDS[@]}"; do
    pid=${PIDS[$name]}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for name in "${!PIDS[@]}"; do
    pid=${PIDS[$name]}
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  if [ "$KAFKA_UP" = 1 ]; then "$TRIB" kafka stop --dir "$WORK/kafka" --port "$KAFKA_PORT" >/dev/null 2>&1 || true; fi
}
trap cleanup EXIT
# "CPU_s peak_RSS_MB" of a live process, from /proc.
usage_of() {
  local pid=$1 tck; tck=$(getconf CLK_TCK)
  awk -v t="$tck" '{ sub(/^.*\) /, ""); printf "%.2f ", ($12 + $13) / t }' "/proc/$pid/stat"
  awk '/^VmHWM:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$pid/status"
}

echo "== data: $ROWS rows"
"$TRIB" gen tianchi --rows "$ROWS" --users $(( ROWS / 20 > 1000 ? ROWS / 20 : 1000 )) --seed 7 \
  --malformed 0.001 --duplicates 0.001 --out "$WORK/data"
EXACT=$(python3 "$HERE/exact_counts.py" --data "$WORK/data" --out "$WORK/expected")
echo "exact recount: $EXACT"
TOTAL=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["lines"])' "$EXACT")

echo "== Kafka on $BOOTSTRAP"
# Workaround: `tributary kafka start` draws a random cluster id that starts with '-' one time in 64,
# and kafka-storage then reads it as an option and fails; give it one that does not.
mkdir -p "$WORK/kafka"
python3 -c 'import base64,os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if s[0] != "-": break
print(s)' > "$WORK/kafka/cluster.id"
"$TRIB" kafka start --dir "$WORK/kafka" --port "$KAFKA_PORT"
KAFKA_UP=1
KAFKA_PID=$(cat "$WORK/kafka/node-1/kafka.pid")
KJARS=$(tr '\0' '\n' < /proc/"$KAFKA_PID"/cmdline | grep '/jars/\*$' | head -1)
"$JAVA" -Xmx128m -cp "$KJARS" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
  --create --topic "$TOPIC" --partitions 2 --replication-factor 1 > "$WORK/topic.log" 2>&1
echo "topic $TOPIC (2 partitions)"

echo "== Spark Streaming job (local[2], batch ${BATCH_MS} ms)"
read -r -a OPENS <<< "$(echo $SPARK_OPENS)"
SPARK_LOCAL_IP=127.0.0.1 /usr/bin/time -f '%e %U %S %M' -o "$WORK/spark.time" \
  "$JAVA" -Xmx1g "${OPENS[@]}" -cp "$HERE/spark/target/paper-stack-spark.jar:$(cat "$HERE/spark/target/classpath.txt")" \
  io.tributary.bench.paperstack.OrdersJob --bootstrap "$BOOTSTRAP" --topic "$TOPIC" \
  --user-info "$WORK/data/user_info_format1.csv" --out "$WORK/spark-out" --batch-ms "$BATCH_MS" \
  --expect "$TOTAL" --timeout-s "$TIMEOUT_S" > "$WORK/spark.log" 2>&1 &
PIDS[spark]=$!

echo "== Flume agents (${SOURCE} sources)"
flume() {  # name conf
  WORK="$WORK" AVRO_PORT="$AVRO_PORT" KAFKA_BOOTSTRAP="$BOOTSTRAP" TOPIC="$TOPIC" \
    "$JAVA" -Xmx256m -Dlog4j.configurationFile="$HERE/flume/conf/log4j2.xml" \
    -DpropertiesImplementation=org.apache.flume.node.EnvVarResolverProperties \
    -cp "$HERE/flume/lib/*" org.apache.flume.node.Application -f "$HERE/flume/conf/$2" -n "$1" \
    > "$WORK/flume/$1.log" 2>&1 &
  PIDS[$1]=$!
}
wait_log() {  # file pattern seconds
  for _ in $(seq $(( $3 * 10 ))); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; tail -20 "$1" >&2; return 1
}
flume aggregator aggregator.conf
wait_log "$WORK/flume/aggregator.log" "Avro source r1 started" 60
flume collector1 "collector1$SUFFIX.conf"
flume collector2 "collector2$SUFFIX.conf"
wait_log "$WORK/flume/collector1.log" "Starting Source r1" 60
wait_log "$WORK/flume/collector2.log" "Starting Source r1" 60
wait_log "$WORK/spark.log" "streaming started" 120
sleep 2  # the Avro sinks connect and Spark's first batches run

echo "== replay: $TOTAL lines into 2 files, as fast as possible"
T0=$(now)
"$TRIB" replay "$WORK/data/user_log_format1.csv" --to "tail:$WORK/logs" --concurrency 2
T_REPLAYED=$(now)

# Complete when Spark's status.json accounts for every line sent (or the job stops).
T_DONE=""
while kill -0 "${PIDS[spark]}" 2>/dev/null; do
  if [ -f "$WORK/spark-out/status.json" ]; then
    acc=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["counted"]+s["filtered"]+s["rejected"])' "$WORK/spark-out/status.json" 2>/dev/null || echo 0)
    if [ "$acc" -ge "$TOTAL" ] && [ -z "$T_DONE" ]; then T_DONE=$(now); fi
  fi
  # Peak RSS and CPU of the Flume agents and Kafka, read while they run.
  for name in aggregator collector1 collector2; do usage_of "${PIDS[$name]}" > "$WORK/$name.usage" 2>/dev/null || true; done
  usage_of "$KAFKA_PID" > "$WORK/kafka.usage" 2>/dev/null || true
  sleep 0.2
done
set +e; wait "${PIDS[spark]}"; SPARK_RC=$?; set -e
unset 'PIDS[spark]'
T_EXIT=$(now)
for name in aggregator collector1 collector2; do usage_of "${PIDS[$name]}" > "$WORK/$name.usage" 2>/dev/null || true; done
usage_of "$KAFKA_PID" > "$WORK/kafka.usage" 2>/dev/null || true

# What reached Kafka (Flume's delivery, independent of Spark).
"$JAVA" -Xmx128m -cp "$KJARS" org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BOOTSTRAP" \
  --topic "$TOPIC" > "$WORK/offsets.txt" 2>"$WORK/offsets.err" || true
IN_KAFKA=$(awk -F: '{ s += $3 } END { print s + 0 }' "$WORK/offsets.txt")
# When Flume's Kafka sink produced the first and the last record (their CreateTime).
"$JAVA" -Xmx128m -cp "$KJARS" org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" \
  --topic "$TOPIC" --from-beginning --max-messages "$IN_KAFKA" --timeout-ms 20000 \
  --property print.timestamp=true --property print.value=false > "$WORK/kafka-timestamps.txt" 2>"$WORK/kafka-timestamps.err" || true
KAFKA_TS=$(awk -F: '/CreateTime/ { t = $2 + 0; if (min == "" || t < min) min = t; if (t > max) max = t } END { printf "%.0f %.0f\n", min, max }' "$WORK/kafka-timestamps.txt")

echo
echo "== results ($SOURCE sources, $ROWS rows)"
tail -1 "$WORK/spark.log"
echo "spark exit code $SPARK_RC; status: $(cat "$WORK/spark-out/status.json" 2>/dev/null)"
echo "records in Kafka topic: $IN_KAFKA (lines sent: $TOTAL)"
python3 - "$T0" "$T_REPLAYED" "${T_DONE:-}" "$T_EXIT" "$TOTAL" $KAFKA_TS <<'PY'
import sys
t0, rep, done, ex, total = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
t0, rep, ex = float(t0), float(rep), float(ex)
print(f"replay took {rep - t0:.2f} s")
if len(sys.argv) > 7:
    first, last = int(sys.argv[6]) / 1000, int(sys.argv[7]) / 1000
    print(f"Flume produced the first record to Kafka {first - t0:.2f} s and the last {last - t0:.2f} s after the replay started"
          f" ({total / (last - t0):.0f} lines/s replay -> Kafka)")
if done:
    d = float(done) - t0
    print(f"final counts complete {d:.2f} s after the replay started: {total / d:.0f} events/s end to end")
else:
    print("the final counts were NOT complete when the Spark job stopped")
print(f"spark job exited {ex - t0:.2f} s after the replay started")
PY
printf '%-22s %8s %10s\n' process "CPU s" "peak RSS"
for name in collector1 collector2 aggregator kafka; do
  read -r cpu rss < "$WORK/$name.usage" || true
  printf '%-22s %8s %7s MB\n' "$name" "${cpu:-?}" "${rss:-?}"
done
read -r _ su ss srss < <(tail -1 "$WORK/spark.time") || true
printf '%-22s %8.2f %7.1f MB\n' "spark job" "$(echo "$su + $ss" | bc)" "$(echo "scale=1; $srss / 1024" | bc)"
echo
set +e
python3 "$HERE/exact_counts.py" --data "$WORK/data" --check "$WORK/spark-out" | tail -n +2
CHECK=$?
set -e
echo "outputs and logs in $WORK"
exit $(( CHECK != 0 || SPARK_RC != 0 ))
