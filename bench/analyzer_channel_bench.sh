#!/usr/bin/env bash
# The single-node path: the analyzer reading a local channel (no Kafka), on the paper's
# experiment (parse, filter, join, labels, three group-bys, dedup), with `analyze --drain` so
# that each run ends by itself once the channel is read. Two settings side by side, interleaved:
# checkpoints every second (the default) and checkpoints off (one at the start and one at the
# end: the interval at its maximum, an hour), for the cost of checkpointing. The channel is
# filled once by an agent tailing the replayed log (not timed).
# Each figure the median of --repeat runs, timed from process start to exit (dimension-table
# load included).
#
#   bash bench/analyzer_channel_bench.sh [--events N] [--repeat R] [--users U]
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
source bench/lib.sh
events=2000000
repeat=3
users=100000
while [ $# -gt 0 ]; do
  case "$1" in
    --events) events="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --users) users="$2"; shift 2 ;;
    *) echo "analyzer_channel_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin="$PWD/build/release/tools/tributary"
[ -x "$bin" ] || bash tools/setup.sh build
for tool in bc /usr/bin/time; do
  command -v "$tool" > /dev/null || { echo "analyzer_channel_bench.sh: needs $tool (apt-get install bc time)" >&2; exit 2; }
done
work="$(mktemp -d /dev/shm/tributary-analyzer-channel.XXXXXX)"
agent_pid=""
cleanup() {
  [ -n "$agent_pid" ] && kill "$agent_pid" 2> /dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" gen tianchi --users "$users" --rows "$events" --out "$work/gen" > /dev/null
"$bin" replay "$work/gen/user_log_format1.csv" --to "tail:$work/replay" --concurrency 1 > /dev/null
data="$work/replay/replay-0.log"
lines=$(wc -l < "$data")
bytes=$(stat -c %s "$data")
# Room for every record (48-byte header each) and slack, as a power of two.
need_mb=$(( (bytes + lines * 64) / 1048576 + 64 ))
capacity_mb=64
while [ "$capacity_mb" -lt "$need_mb" ]; do capacity_mb=$((capacity_mb * 2)); done
cat > "$work/agent.toml" << EOF
[channels.events]
path = "$work/events.chan"
capacity = "${capacity_mb}M"
[sources.log]
type = "tail"
channels = ["events"]
paths = ["$data"]
EOF
"$bin" agent --config "$work/agent.toml" 2> "$work/agent.log" &
agent_pid=$!
filled() { "$bin" channel stat "$work/events.chan" 2> /dev/null | grep -q "written *$lines records"; }
wait_until 300 "$agent_pid" "the agent filling the channel (see $work/agent.log)" filled || exit 1
kill "$agent_pid"; wait "$agent_pid" 2> /dev/null || true; agent_pid=""

# One drained run of the analyzer with checkpoints every $2 ms, on a fresh copy of the filled
# channel (a channel frees what every registered consumer has read, so a second consumer of
# the same file would find it empty); sets $result to "seconds cpu-seconds peak-anon-kB".
run_analyzer() {
  local name="$1" interval="$2" state="$work/state-$1" pid child="" anon=0 a deadline=$((SECONDS + 600))
  rm -f "$work/run.chan"
  cp "$work/events.chan" "$work/run.chan"
  "$bin" gen tianchi-config --input "$(printf 'type = "channel"\npath = "%s"' "$work/run.chan")" \
    --user-info "$work/gen/user_info_format1.csv" --state-dir "$state" --checkpoint-ms "$interval" > "$work/analyze.toml"
  /usr/bin/time -o "$work/analyze.time" -f "%e %U %S" "$bin" analyze --config "$work/analyze.toml" --drain \
    2> "$work/analyze.log" &
  pid=$!
  # Peak anonymous memory, sampled: the process's RSS also counts the pages of the channel it
  # maps (shared, file-backed), which are the channel's, not the analyzer's.
  while kill -0 "$pid" 2> /dev/null; do
    [ -n "$child" ] || child=$(pgrep -P "$pid" 2> /dev/null | head -1 || true)
    if [ -n "$child" ]; then
      anon_into "$child"
      [ "$anon_kb" -gt "$anon" ] && anon=$anon_kb
    fi
    [ $SECONDS -lt $deadline ] || { kill ${child:+"$child"} "$pid"; echo "analyzer_channel_bench.sh: no end in 600 s" >&2; exit 1; }
    nap 0.02
  done
  wait "$pid" || { echo "analyzer_channel_bench.sh: the analyzer failed: $(tail -3 "$work/analyze.log")" >&2; exit 1; }
  [ "$(accounted "$state")" = "$lines" ] ||
    { echo "analyzer_channel_bench.sh: $name accounted for $(accounted "$state") of $lines events" >&2; exit 1; }
  read -r t u s < "$work/analyze.time"
  result="$t $(echo "$u + $s" | bc -l) $anon"
}

run_checkpoints_1s() { run_analyzer "checkpoints_1s-$1" 1000; }
run_checkpoints_off() { run_analyzer "checkpoints_off-$1" 3600000; }  # the interval's maximum: one at the end
names=(checkpoints_1s checkpoints_off)
declare -A secs cpus mems
interleave "$repeat" "$work" "${names[@]}"
echo "events: $lines ($((bytes / 1048576)) MiB of JSON lines) in a channel on /dev/shm, $users users, median of $repeat, $(nproc) cores"
printf '%-16s %12s %16s %16s\n' "" "events/s" "CPU-s/M events" "peak anon RSS MB"
for name in "${names[@]}"; do
  printf '%-16s %12.0f %16.2f %16.1f\n' "$name" "$(echo "$lines / ${secs[$name]}" | bc -l)" \
    "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" "$(echo "${mems[$name]} / 1024" | bc -l)"
done
echo "checkpoints every second vs off: $(echo "${secs[checkpoints_off]} / ${secs[checkpoints_1s]}" | bc -l | cut -c1-5)x"
