#!/usr/bin/env bash
# Reading a topic of the local real Kafka, side by side in one run: the analyzer on the paper's
# experiment (parse, filter, join, labels, three group-bys, dedup) in its two exactly-once modes
# -- the checkpoint file, and Kafka transactions (outputs, changelog and offsets in one
# transaction every checkpoint_ms, the files written by its read_committed reader) -- against
# two consumers that only read: kcat -C (librdkafka, output to /dev/null) and Kafka's own
# kafka-consumer-perf-test (ConsumerPerformance, JVM). Events are Tianchi JSON lines of ~110 B,
# loaded once into a 2-partition topic by kcat -P. Each figure the median of --repeat runs, timed
# from process start: the readers and the checkpoint mode (--drain) until they exit at the end of
# the topic, the transaction mode (a group member that runs until stopped) until its status.json
# accounts for every event as committed and read back. kcat reads with the analyzer's
# fetch.wait.max.ms (25) and queued.min.messages lifted to 1 000 000 (with its default, 100 000,
# it meets the same librdkafka 2.0.2 stall on long topics).
#
#   bash bench/analyzer_kafka_bench.sh [--events N] [--repeat R] [--checkpoint-ms MS] [--fetch-queue-mb MB]
#                                      [--users U]
#
# --users: rows of the dimension table (user_info) the analyzer joins with (default 10 000; the
# real Tianchi data has 424 170; 500 000 checks the analyzer's memory bound).
#
# --fetch-queue-mb: the analyzer's read-ahead per partition ([input] fetch_queue_mb, default
# 16, in memory: analytics/src/read_ahead.h). More is fewer pauses and resumes of the fetch.
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
events=1000000
repeat=3
checkpoint_ms=1000
fetch_queue_mb=16
users=10000
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --checkpoint-ms) checkpoint_ms="$2"; shift 2 ;;
    --fetch-queue-mb) fetch_queue_mb="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    *) echo "analyzer_kafka_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin="$PWD/build/release/tools/tributary"
[ -x "$bin" ] || bash tools/setup.sh build
for tool in kcat bc /usr/bin/time; do
  command -v "$tool" > /dev/null || { echo "analyzer_kafka_bench.sh: needs $tool (apt-get install kcat bc time)" >&2; exit 2; }
done
work="$(mktemp -d /dev/shm/tributary-analyzer-bench.XXXXXX)"
job_pid=""
cleanup() {
  [ -n "$job_pid" ] && kill "$job_pid" 2> /dev/null || true
  "$bin" kafka stop --dir "$work/kafka" > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
source bench/lib.sh

"$bin" gen tianchi --users "$users" --rows "$events" --out "$work/gen" > /dev/null
"$bin" replay "$work/gen/user_log_format1.csv" --to "tail:$work/replay" --concurrency 1 > /dev/null
data="$work/replay/replay-0.log"
lines=$(wc -l < "$data")
bytes=$(stat -c %s "$data")
boot=$("$bin" kafka start --dir "$work/kafka" | tail -1)
kcat -P -b "$boot" -t bench -X enable.idempotence=true -X linger.ms=5 -X batch.size=1000000 -X compression.type=lz4 \
  -l "$data" 2> "$work/load.log" || { echo "analyzer_kafka_bench.sh: loading the topic failed: $(tail -3 "$work/load.log")" >&2; exit 1; }

all_accounted() {
  count_accounted "$1"
  [ "$accounted_n" = "$lines" ]
}
# The analyzer, in the mode $1 (checkpoint | transaction), run $2; sets $result.
run_analyzer() {
  local mode="$1" i="$2" state="$work/state-$1-$2" t0 t1 cpu hwm t u s m
  "$bin" gen tianchi-config --input "$(printf 'type = "kafka"\nbootstrap = "%s"\ntopic = "bench"\ngroup = "%s-%s"\nfetch_queue_mb = %s' \
    "$boot" "$mode" "$i" "$fetch_queue_mb")" --user-info "$work/gen/user_info_format1.csv" --state-dir "$state" \
    --checkpoint-ms "$checkpoint_ms" > "$work/analyze.toml"
  if [ "$mode" = checkpoint ]; then
    # As kcat -e: to the end of every partition, then out (after a last checkpoint).
    timeout 600 /usr/bin/time -o "$work/analyze.time" -f "%e %U %S %M" "$bin" analyze --config "$work/analyze.toml" \
      --drain 2> "$work/analyze.log" || { echo "analyzer_kafka_bench.sh: the analyzer failed: $(tail -3 "$work/analyze.log")" >&2; exit 1; }
    all_accounted "$state" || { echo "analyzer_kafka_bench.sh: the analyzer stopped at $(accounted "$state") of $lines events" >&2; exit 1; }
    read -r t u s m < "$work/analyze.time"
    result="$t $(echo "$u + $s" | bc -l) $m"
    return
  fi
  printf '[transaction]\ntopic = "counts-%s"\nid = "bench-%s"\n' "$i" "$i" >> "$work/analyze.toml"
  t0=$(now)
  "$bin" analyze --config "$work/analyze.toml" 2> "$work/analyze.log" &
  job_pid=$!
  wait_until 600 "$job_pid" "the analyzer (see $work/analyze.log)" all_accounted "$state" || exit 1
  t1=$(now)
  cpu=$(cpu_of "$job_pid"); hwm=$(hwm_of "$job_pid")
  kill "$job_pid"; wait "$job_pid" 2> /dev/null || true; job_pid=""
  result="$(echo "$t1 - $t0" | bc -l) $cpu $hwm"
}
run_checkpoint() { run_analyzer checkpoint "$1"; }
run_transaction() { run_analyzer transaction "$1"; }

run_kcat() {
  local t u s m
  timeout 600 /usr/bin/time -o "$work/kcat.time" -f "%e %U %S %M" kcat -C -b "$boot" -t bench -o beginning -e -q -X queued.min.messages=1000000 \
    -X fetch.wait.max.ms=25 > /dev/null 2> "$work/kcat.log" ||
    { echo "analyzer_kafka_bench.sh: kcat failed: $(tail -3 "$work/kcat.log")" >&2; exit 1; }
  read -r t u s m < "$work/kcat.time"
  result="$t $(echo "$u + $s" | bc -l) $m"
}

run_perf_test() {
  local t u s m jars="${TRIBUTARY_KAFKA_JARS:-$HOME/.cache/tributary/kafka-4.1.1/jars}"
  timeout 600 /usr/bin/time -o "$work/perf.time" -f "%e %U %S %M" java -Xmx512m -cp "$jars/*" \
    org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$boot" --topic bench --messages "$lines" \
    --group "perf-$1" > "$work/perf.log" 2>&1 ||
    { echo "analyzer_kafka_bench.sh: kafka-consumer-perf-test failed: $(tail -3 "$work/perf.log")" >&2; exit 1; }
  read -r t u s m < "$work/perf.time"
  result="$t $(echo "$u + $s" | bc -l) $m"
}

names=(kcat perf_test checkpoint transaction)
declare -A secs cpus mems
interleave "$repeat" "$work" "${names[@]}"
echo "events: $lines ($((bytes / 1048576)) MiB of JSON lines) in the local Kafka, median of $repeat, $(nproc) cores, checkpoint_ms $checkpoint_ms, fetch_queue_mb $fetch_queue_mb"
printf '%-12s %12s %16s %12s\n' "" "events/s" "CPU-s/M events" "peak RSS MB"
for name in "${names[@]}"; do
  printf '%-12s %12.0f %16.2f %12.1f\n' "$name" "$(echo "$lines / ${secs[$name]}" | bc -l)" \
    "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" "$(echo "${mems[$name]} / 1024" | bc -l)"
done
echo "analyzer (checkpoint) vs kcat -C: $(echo "${secs[kcat]} / ${secs[checkpoint]}" | bc -l | cut -c1-5)x;" \
     "vs kafka-consumer-perf-test: $(echo "${secs[perf_test]} / ${secs[checkpoint]}" | bc -l | cut -c1-5)x;" \
     "transaction mode vs checkpoint mode: $(echo "${secs[checkpoint]} / ${secs[transaction]}" | bc -l | cut -c1-5)x"
