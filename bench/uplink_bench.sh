#!/usr/bin/env bash
# Shipping events to Kafka, side by side in one run: Tributary's uplink (a channel -> a topic,
# committing only what Kafka acknowledged; per-event records, and packed mode: many events of
# one source per Kafka record), kcat -P (a file -> a topic; and with a 16-byte header per
# message, as the uplink's records carry the event identity) and rsyslog's omkafka (imfile
# reading the file -> omkafka), all librdkafka with the same producer settings (idempotent,
# acks=all, lz4, linger.ms=5, batch.size=1000000), to the same broker. Events are Tianchi JSON lines of ~110 B. Each figure the median of
# --repeat runs, timed from process start until every event is acknowledged (the uplink: it
# exited with --drain, its cursor committed at the end of the channel; kcat: it exited after
# delivering everything; rsyslog:
# the topic's end offsets grew by the number of lines, polled every 50 ms by one Python
# kafka client, as omkafka says nothing when a message is acknowledged).
# Memory: the uplink's highest RssAnon sampled while it runs (its own heap: the channel's pages
# are shared data in /dev/shm), kcat's and rsyslog's peak RSS (their input file is page cache,
# not RSS). Wall and CPU times from /usr/bin/time have 10 ms steps (about 2% of a 0.5 s run).
# rsyslog runs when its omkafka module is installed (apt-get install rsyslog rsyslog-kafka,
# and python3-kafka for the offsets); else its figures are left out, said on stderr.
#
#   bash bench/uplink_bench.sh [--events N] [--repeat R] [--kafka mock|real] [--json FILE]
#                              [--baseline BIN] [--uplink-arg ARG]...
#
# --baseline BIN: also ship the events one record per event with another build of tributary
# (say, main's before a change), as one more peer; the runs of every peer are interleaved
# round by round, so a change is measured against its baseline under the same noise. (BIN must
# know `uplink --drain`: a build from commit cd1d3d0 on; checked at the start.)
#
# --uplink-arg ARG (repeatable): one more argument for this build's `tributary uplink` runs (both
# modes, not the baseline's), e.g. `--uplink-arg --max-in-flight=100000` to measure a setting.
#
# mock: librdkafka's mock cluster (`tributary broker`, in memory: measures the producers);
# real: the local Apache Kafka (`tributary kafka start`, first use fetches its jars), with
# Kafka's own kafka-producer-perf-test (ProducerPerformance, same lines and settings) as a third
# peer; its wall time includes the JVM's start, as the uplink's includes its own start.
set -euo pipefail
export LC_ALL=C  # printf %f and bc agree on '.'
cd "$(dirname "$0")/.."
events=1000000
repeat=3
kafka=mock
json=""
baseline=""
uplink_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --kafka) kafka="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    --baseline) baseline="$2"; shift 2 ;;
    --uplink-arg) uplink_args+=("$2"); shift 2 ;;
    *) echo "uplink_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin="$PWD/build/release/tools/tributary"
[ -x "$bin" ] || bash tools/setup.sh build
[ -z "$baseline" ] || [ -x "$baseline" ] || { echo "uplink_bench.sh: --baseline $baseline is not an executable" >&2; exit 2; }
[ -z "$baseline" ] || "$baseline" uplink --help 2>&1 | grep -q -- --drain ||
  { echo "uplink_bench.sh: --baseline $baseline has no 'uplink --drain' (a build from commit cd1d3d0 on)" >&2; exit 2; }
export PATH="$PATH:/usr/sbin"  # rsyslogd
command -v kcat > /dev/null || { echo "uplink_bench.sh: needs kcat (apt-get install kcat)" >&2; exit 2; }
omkafka=no
if command -v rsyslogd > /dev/null && [ -n "$(find /usr/lib -name omkafka.so -path '*rsyslog*' 2> /dev/null | head -1)" ] &&
   /usr/bin/python3 -c 'import kafka' 2> /dev/null; then
  omkafka=yes
else
  echo "uplink_bench.sh: no rsyslog omkafka peer (apt-get install rsyslog rsyslog-kafka python3-kafka): left out" >&2
fi
work="$(mktemp -d /dev/shm/tributary-uplink-bench.XXXXXX)"
broker_pid="" fill_pid="" uplink_pid="" uplink_child="" rsyslog_pid=""
cleanup() {
  for p in $fill_pid $uplink_child $uplink_pid $rsyslog_pid $broker_pid; do kill "$p" 2> /dev/null || true; done
  [ "$kafka" = real ] && "$bin" kafka stop --dir "$work/kafka" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
source bench/lib.sh

# The events: `tributary gen tianchi` rows through `tributary replay` (the demo's JSON lines).
"$bin" gen tianchi --users 10000 --rows "$events" --out "$work/gen" > /dev/null
"$bin" replay "$work/gen/user_log_format1.csv" --to "tail:$work/replay" --concurrency 1 > /dev/null
data="$work/replay/replay-0.log"
lines=$(wc -l < "$data")
bytes=$(stat -c %s "$data")

# A channel holding them, filled once by a tail source (not timed); each run ships it again
# under a fresh consumer name... a consumer name is durable, so each run copies the full file.
"$bin" channel create "$work/full.chan" --capacity 512M --max-payload 64K > /dev/null
tail_agent_toml "$work/fill.toml" fill "$work/full.chan" "$data"
filled() { [ "$(stat_field "$work/full.chan" records_written || echo 0)" -ge "$lines" ]; }
"$bin" agent --config "$work/fill.toml" 2> "$work/fill.log" &
fill_pid=$!
wait_until 300 "$fill_pid" "the agent filling the channel (see $work/fill.log)" filled || exit 1
kill "$fill_pid"; wait "$fill_pid" 2> /dev/null || true; fill_pid=""

if [ "$kafka" = mock ]; then
  "$bin" broker --brokers 1 --topics "bench:4" > "$work/broker.out" 2> "$work/broker.log" &
  broker_pid=$!
  wait_until 300 "$broker_pid" "tributary broker (see $work/broker.log)" grep -q '^bootstrap ' "$work/broker.out" || exit 1
  boot=$(awk '/^bootstrap / {print $2}' "$work/broker.out")
else
  boot=$("$bin" kafka start --dir "$work/kafka" | tail -1)
fi
settings=(-X enable.idempotence=true -X acks=all -X compression.type=lz4 -X linger.ms=5 -X batch.size=1000000)
# One message first: the topic is created (real Kafka: auto-created on first use, about a second
# of leader election) and its metadata is ready before any timed run, not inside the first.
echo warm | timeout 120 kcat -P -b "$boot" -t bench "${settings[@]}" ||
  { echo "uplink_bench.sh: Kafka at $boot does not take a message to topic bench" >&2; exit 1; }

# Runs in the main shell (not a subshell) so that cleanup can stop the uplink; sets $result.
run_tributary() { uplink_with "$bin" "${uplink_args[@]}"; }
run_tributary_packed() { uplink_with "$bin" --packed "${uplink_args[@]}"; }
run_baseline() { uplink_with "$baseline"; }
# The uplink with --drain: it exits once every event is acknowledged and committed, timed to its
# exit by /usr/bin/time as kcat is (a poll of the channel's cursor by `tributary channel stat`
# every 10 ms, as before, took CPU from it). Its own memory: the highest RssAnon sampled (with
# builtins) while it runs; VmHWM counts the channel pages it read, which live in /dev/shm
# whoever maps them (kcat's input file is in the page cache, not in its RSS, either).
uplink_with() {
  local t u s exe="$1" anon=0 deadline=$((SECONDS + 300))
  shift
  cp "$work/full.chan" "$work/run.chan"  # the same channel, its uplink cursor at the start
  /usr/bin/time -o "$work/uplink.time" -f "%e %U %S" "$exe" uplink --channel "$work/run.chan" --topic bench \
    --bootstrap "$boot" --drain "$@" 2> "$work/uplink.log" &
  uplink_pid=$!
  while kill -0 "$uplink_pid" 2> /dev/null; do
    [ -n "$uplink_child" ] || uplink_child=$(pgrep -P "$uplink_pid" 2> /dev/null | head -1 || true)
    if [ -n "$uplink_child" ]; then
      anon_into "$uplink_child"
      [ "$anon_kb" -gt "$anon" ] && anon=$anon_kb
    fi
    [ "$SECONDS" -lt "$deadline" ] || { echo "uplink_bench.sh: the uplink did not drain in 300 s (see $work/uplink.log)" >&2; exit 1; }
    nap 0.01
  done
  wait "$uplink_pid" || { echo "uplink_bench.sh: the uplink failed: $(tail -3 "$work/uplink.log")" >&2; exit 1; }
  uplink_pid="" uplink_child=""
  [ "$(committed_of "$work/run.chan" || echo 0)" = "$(stat_field "$work/run.chan" write_position)" ] ||
    { echo "uplink_bench.sh: the uplink exited with events not committed (see $work/uplink.log)" >&2; exit 1; }
  read -r t u s < "$work/uplink.time"
  rm -f "$work/run.chan"
  result="$t $(echo "$u + $s" | bc -l) $anon"
}

run_kcat() { kcat_with; }
# kcat with a 16-byte header on every message, as each of the uplink's records carries the
# event's identity ("tributary-id"): librdkafka allocates a header list per message, which
# plain kcat does not pay. The same settings otherwise.
run_kcat_headers() { kcat_with -H "tributary-id=0123456789abcdef"; }
kcat_with() {
  local t u s m
  timeout 300 /usr/bin/time -o "$work/kcat.time" -f "%e %U %S %M" kcat -P -b "$boot" -t bench "${settings[@]}" "$@" \
    -l "$data" 2> "$work/kcat.log" || { echo "uplink_bench.sh: kcat failed: $(tail -3 "$work/kcat.log")" >&2; exit 1; }
  read -r t u s m < "$work/kcat.time"
  result="$t $(echo "$u + $s" | bc -l) $m"
}
[ -x /usr/bin/time ] || { echo "uplink_bench.sh: needs /usr/bin/time (apt-get install time)" >&2; exit 2; }

# Kafka's own producer benchmark (real broker only: it is a JVM client from the broker's jars),
# sending the same lines (--payload-file) with the same settings.
run_perf_test() {
  local t u s m jars="${TRIBUTARY_KAFKA_JARS:-$HOME/.cache/tributary/kafka-4.1.1/jars}"
  timeout 300 /usr/bin/time -o "$work/perf.time" -f "%e %U %S %M" java -Xmx512m -cp "$jars/*" \
    org.apache.kafka.tools.ProducerPerformance --topic bench --num-records "$lines" --throughput -1 \
    --payload-file "$data" --producer-props bootstrap.servers="$boot" enable.idempotence=true acks=all \
    compression.type=lz4 linger.ms=5 batch.size=1000000 > "$work/perf.log" 2>&1 ||
    { echo "uplink_bench.sh: kafka-producer-perf-test failed: $(tail -3 "$work/perf.log")" >&2; exit 1; }
  read -r t u s m < "$work/perf.time"
  result="$t $(echo "$u + $s" | bc -l) $m"
}
# rsyslog: imfile (inotify, from the file's start) -> a Direct-queue ruleset -> omkafka, the
# message text alone (no syslog header), the same producer settings.
# end_offsets READY: prints the sum of the topic's end offsets, writes READY once connected,
# then waits (polling every 50 ms, at most 300 s) until the sum has grown by $lines; exit 1 if
# it did not. Started before the clock, so that its start-up is not in rsyslog's time.
end_offsets() {
  /usr/bin/python3 - "$boot" bench "$lines" "$1" <<'PY'  # Debian's, with python3-kafka
import sys, time
from kafka import KafkaConsumer, TopicPartition
boot, topic, grow, ready = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = KafkaConsumer(bootstrap_servers=boot)
parts = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or [])]
base = sum(c.end_offsets(parts).values())
open(ready, "w").write(f"{base}\n")
deadline = time.time() + 300
while time.time() < deadline:
    if sum(c.end_offsets(parts).values()) >= base + grow:
        sys.exit(0)
    time.sleep(0.05)
sys.exit(1)
PY
}
run_rsyslog() {
  local d="$work/rsyslog" t0 t1 cpu rss
  rm -rf "$d"; mkdir -p "$d"
  cat > "$d/rsyslog.conf" <<CONF
global(workDirectory="$d" maxMessageSize="64k")
module(load="imfile" mode="inotify")
module(load="omkafka")
template(name="msgonly" type="string" string="%msg%")
ruleset(name="out" queue.type="Direct") {
  action(type="omkafka" broker=["$boot"] topic="bench" template="msgonly" partitions.auto="on"
         confParam=["enable.idempotence=true", "acks=all", "compression.type=lz4", "linger.ms=5",
                    "batch.size=1000000"])
}
input(type="imfile" file="$data" tag="bench" ruleset="out" readMode="0" persistStateInterval="0")
CONF
  end_offsets "$d/ready" &
  local poller=$!
  wait_until 60 "$poller" "the offsets poller connecting" test -s "$d/ready" || exit 1
  t0=$(now)
  rsyslogd -n -f "$d/rsyslog.conf" -i "$d/pid" 2> "$d/rsyslog.log" &
  rsyslog_pid=$!
  wait "$poller" ||
    { echo "uplink_bench.sh: rsyslog did not deliver $lines lines within 300 s (see $d/rsyslog.log)" >&2; exit 1; }
  t1=$(now)
  cpu=$(cpu_of "$rsyslog_pid"); rss=$(hwm_of "$rsyslog_pid")  # peak, as for kcat (imfile reads, it maps nothing)
  kill -TERM "$rsyslog_pid"; wait "$rsyslog_pid" 2> /dev/null || true; rsyslog_pid=""
  result="$(echo "$t1 - $t0" | bc -l) $cpu $rss"
}
peers=(kcat kcat_headers)
[ "$omkafka" = yes ] && peers+=(rsyslog)
[ "$kafka" = real ] && peers+=(perf_test)
[ -n "$baseline" ] && peers+=(baseline)

# Round by round: each round runs every one once, so slow spells of the machine fall on all.
declare -A secs cpus hwms all_s all_c all_r
for i in $(seq 1 "$repeat"); do
  for name in tributary tributary_packed "${peers[@]}"; do
    "run_$name"
    read -r t cpu hwm <<< "$result"
    all_s[$name]+="$t "; all_c[$name]+="$cpu "; all_r[$name]+="$hwm "
    echo "  $name run $i: ${t}s, ${cpu} CPU-s, peak RSS ${hwm} kB" >&2
  done
done
for name in tributary tributary_packed "${peers[@]}"; do
  secs[$name]=$(printf '%s\n' ${all_s[$name]} | median)
  cpus[$name]=$(printf '%s\n' ${all_c[$name]} | median)
  hwms[$name]=$(printf '%s\n' ${all_r[$name]} | median)
done

echo "events: $lines ($((bytes / 1048576)) MiB of JSON lines) to $kafka Kafka, median of $repeat, $(nproc) cores"
printf '%-17s %12s %10s %16s %12s\n' "" "events/s" "MB/s" "CPU-s/M events" "RSS MB"
for name in tributary tributary_packed "${peers[@]}"; do
  t=${secs[$name]}
  printf '%-17s %12.0f %10.1f %16.2f %12.1f\n' "$name" "$(echo "$lines / $t" | bc -l)" \
    "$(echo "$bytes / $t / 1000000" | bc -l)" "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" \
    "$(echo "${hwms[$name]} / 1024" | bc -l)"
done
echo "tributary / kcat, events/s: $(echo "${secs[kcat]} / ${secs[tributary]}" | bc -l | cut -c1-5)x;" \
     "CPU per event: $(echo "${cpus[tributary]} / ${cpus[kcat]}" | bc -l | cut -c1-5) of kcat's;" \
     "packed: $(echo "${secs[kcat]} / ${secs[tributary_packed]}" | bc -l | cut -c1-5)x kcat's events/s at" \
     "$(echo "${cpus[tributary_packed]} / ${cpus[kcat]}" | bc -l | cut -c1-5) of its CPU per event"
echo "tributary / kcat with a 16-byte header per message, events/s:" \
     "$(echo "${secs[kcat_headers]} / ${secs[tributary]}" | bc -l | cut -c1-5)x; CPU per event:" \
     "$(echo "${cpus[tributary]} / ${cpus[kcat_headers]}" | bc -l | cut -c1-5) of its"
[ -n "$baseline" ] && echo "tributary / baseline ($baseline), one record per event: events/s" \
     "$(echo "${secs[baseline]} / ${secs[tributary]}" | bc -l | cut -c1-5)x; CPU per event:" \
     "$(echo "${cpus[tributary]} / ${cpus[baseline]}" | bc -l | cut -c1-5) of the baseline's"
[ "$omkafka" = yes ] && echo "tributary / rsyslog omkafka, events/s: $(echo "${secs[rsyslog]} / ${secs[tributary]}" | bc -l | cut -c1-5)x;" \
     "CPU per event: $(echo "${cpus[tributary]} / ${cpus[rsyslog]}" | bc -l | cut -c1-5) of rsyslog's;" \
     "packed: $(echo "${secs[rsyslog]} / ${secs[tributary_packed]}" | bc -l | cut -c1-5)x its events/s at" \
     "$(echo "${cpus[tributary_packed]} / ${cpus[rsyslog]}" | bc -l | cut -c1-5) of its CPU per event"
if [ -n "$json" ]; then
  {
    echo '{"benchmarks": ['
    sep=""
    for name in tributary tributary_packed "${peers[@]}"; do
      printf '%s  {"name": "%s", "items_per_second": %.0f, "cpu_us_per_event": %.4f, "peak_rss_kb": %s, "repetitions": %s}' \
        "$sep" "$name" "$(echo "$lines / ${secs[$name]}" | bc -l)" "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" \
        "${hwms[$name]}" "$repeat"
      sep=$',\n'
    done
    printf '\n], "ratios": [\n'
    printf '  {"name": "uplink (%s Kafka): tributary vs kcat (events/s)", "value": %.4f},\n' "$kafka" "$(echo "${secs[kcat]} / ${secs[tributary]}" | bc -l)"
    printf '  {"name": "uplink (%s Kafka): kcat CPU per event vs tributary", "value": %.4f},\n' "$kafka" "$(echo "${cpus[kcat]} / ${cpus[tributary]}" | bc -l)"
    printf '  {"name": "uplink (%s Kafka): tributary packed vs kcat (events/s)", "value": %.4f},\n' "$kafka" "$(echo "${secs[kcat]} / ${secs[tributary_packed]}" | bc -l)"
    printf '  {"name": "uplink (%s Kafka): kcat CPU per event vs tributary packed", "value": %.4f},\n' "$kafka" "$(echo "${cpus[kcat]} / ${cpus[tributary_packed]}" | bc -l)"
    printf '  {"name": "uplink (%s Kafka): kcat with a header CPU per event vs tributary", "value": %.4f}' "$kafka" "$(echo "${cpus[kcat_headers]} / ${cpus[tributary]}" | bc -l)"
    if [ "$omkafka" = yes ]; then
      printf ',\n  {"name": "uplink (%s Kafka): tributary vs rsyslog omkafka (events/s)", "value": %.4f},\n' "$kafka" "$(echo "${secs[rsyslog]} / ${secs[tributary]}" | bc -l)"
      printf '  {"name": "uplink (%s Kafka): rsyslog omkafka CPU per event vs tributary", "value": %.4f}' "$kafka" "$(echo "${cpus[rsyslog]} / ${cpus[tributary]}" | bc -l)"
    fi
    printf '\n]}\n'
  } > "$json"
fi
