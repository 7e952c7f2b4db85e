#!/usr/bin/env bash
# Tributary beside the paper's own stack (Flume -> Kafka -> Spark Streaming), on one data set and one
# local Kafka, in one command (issue 8):
#
#   tributary gen tianchi  -> ONE data set; exact_counts.py recounts it independently
#   tributary kafka start  -> ONE local Kafka (KRaft, loopback, its own --dir under the work dir)
#   each pipeline in turn, on its own topic (2 partitions each):
#     tributary : tributary replay (2 writers) -> tributary agent (2 tail sources -> channel -> uplink)
#                 -> Kafka -> tributary analyze (the demo's configs) -> the 3 CSVs
#     paper-stack: tributary replay (2 writers) -> Flume collector1, collector2 (exec `tail -F`, file
#                 channel, Avro sink) -> Flume aggregator (Avro source, file channel, Kafka sink)
#                 -> Kafka -> Spark Streaming DStreams job (local[2]) -> the 3 CSVs
#   clean run of each: events/s end to end, time until the final counts are complete, CPU s and peak
#   RSS of every process, the 3 CSVs checked byte for byte against the exact recount;
#   fault run of each (--faults, the default): kill -9 of the collector (Tributary's agent; both
#   Flume collecting agents) mid-run, restart with the same config; orders lost / double-counted.
#
# usage: bench/paper_vs_tributary.sh [--rows N] [--users U] [--seed S] [--faults|--no-faults]
#          [--json FILE] [--svg FILE] [--keep] [--work DIR] [--kafka-port P] [--avro-port P]
#          [--flume-source exec|exec+1|taildir] [--fault-rate R] [--kill-at F] [--down S] [--quiet S]
#          [--timeout S]
#   --rows N          log rows to generate (default 1000000); --users (default max(1000, N/20)); --seed (7)
#   --faults          also run the kill -9 comparison (default); --no-faults: clean runs only
#   --json FILE       summary as JSON; --svg FILE: bar chart (events/s, CPU s, total RSS) of the two
#   --keep            keep the work dir (default: removed after a successful run, kept on failure)
#   --work DIR        work dir (default: a new /tmp/paper-vs-tributary.XXXXXX); an earlier work dir of
#                     this script is wiped, any other non-empty directory is refused
#   --kafka-port P    the local Kafka's port (default 19092; its controller takes P+100)
#   --avro-port P     Flume's Avro hop (default 41414; the fault run uses P+1)
#   --flume-source    exec (default: the paper's `tail -F FILE`), exec+1 (`tail -n +1 -F FILE`, as the
#                     committed collectorN-exec.conf), taildir (Flume's TAILDIR source)
#   --fault-rate R    replay rate of the fault runs, rows/s (default: rows/30, at least 500: ~30 s of
#                     writing, so the collector dies while the log is still being written)
#   --kill-at F       kill -9 at F x rows/rate seconds after the fault replay starts (default 0.4)
#   --down S          seconds the collector stays dead (default 3)
#   --quiet S         a fault run is over when its counts have not changed for S s after the replay
#                     and the restart (default 20: Flume's idle back-off is up to 5 s per hop)
#   --timeout S       longest wait for a run's counts (default 900)
# env: TRIBUTARY (default build/release/tools/tributary), JAVA (default java).
# Machine etiquette (not enforced here): run it under `flock /tmp/machine.lock` on a shared machine.
# Every process it starts (Kafka, JVMs, agents, tails) is stopped on exit, error or Ctrl-C, by session id.
set -euo pipefail
BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
PS=$BENCH/peers/paper-stack
TRIB=${TRIBUTARY:-$ROOT/build/release/tools/tributary}
JAVA=${JAVA:-java}

ROWS=1000000 USERS="" SEED=7 FAULTS=1 JSON_OUT="" SVG_OUT="" KEEP=0 WORK="" KAFKA_PORT=19092 AVRO_PORT=41414
FLUME_SOURCE=exec FAULT_RATE="" KILL_AT=0.4 DOWN_S=3 QUIET_S=20 TIMEOUT_S=900
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) ROWS=$2; shift 2 ;;
    --users) USERS=$2; shift 2 ;;
    --seed) SEED=$2; shift 2 ;;
    --faults) FAULTS=1; shift ;;
    --no-faults) FAULTS=0; shift ;;
    --json) JSON_OUT=$2; shift 2 ;;
    --svg) SVG_OUT=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --work) WORK=$2; shift 2 ;;
    --kafka-port) KAFKA_PORT=$2; shift 2 ;;
    --avro-port) AVRO_PORT=$2; shift 2 ;;
    --flume-source) FLUME_SOURCE=$2; shift 2 ;;
    --fault-rate) FAULT_RATE=$2; shift 2 ;;
    --kill-at) KILL_AT=$2; shift 2 ;;
    --down) DOWN_S=$2; shift 2 ;;
    --quiet) QUIET_S=$2; shift 2 ;;
    --timeout) TIMEOUT_S=$2; shift 2 ;;
    -h|--help) usage 0 ;;
    *) echo "unknown option $1" >&2; usage 2 ;;
  esac
done
[[ $ROWS =~ ^[0-9]+$ && $ROWS -gt 0 ]] || { echo "--rows: a positive integer" >&2; exit 2; }
[ -n "$USERS" ] || USERS=$(( ROWS / 20 > 1000 ? ROWS / 20 : 1000 ))
[ -n "$FAULT_RATE" ] || FAULT_RATE=$(( ROWS / 30 > 500 ? ROWS / 30 : 500 ))
for v in USERS SEED FAULT_RATE DOWN_S QUIET_S TIMEOUT_S KAFKA_PORT AVRO_PORT; do
  [[ ${!v} =~ ^[0-9]+$ ]] || { echo "${v}: a non-negative integer, not '${!v}'" >&2; exit 2; }
done
[ "$FAULT_RATE" -gt 0 ] || { echo "--fault-rate: at least 1" >&2; exit 2; }
KILL_AFTER_US=$(awk -v f="$KILL_AT" -v r="$ROWS" -v rate="$FAULT_RATE" 'BEGIN { if (f + 0 <= 0 || f + 0 >= 1) exit 1; printf "%.0f", f * r / rate * 1e6 }') \
  || { echo "--kill-at: a fraction between 0 and 1" >&2; exit 2; }
case "$FLUME_SOURCE" in exec|exec+1|taildir) ;; *) echo "--flume-source: exec, exec+1 or taildir" >&2; exit 2 ;; esac
[ -x "$TRIB" ] || { echo "no tributary binary at $TRIB (set TRIBUTARY)" >&2; exit 2; }
command -v python3 >/dev/null || { echo "python3 is needed (exact_counts.py, the report)" >&2; exit 2; }
command -v setsid >/dev/null || { echo "setsid (util-linux) is needed" >&2; exit 2; }
for p in "$KAFKA_PORT" $(( KAFKA_PORT + 100 )) "$AVRO_PORT" $(( AVRO_PORT + 1 )); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p on 127.0.0.1 is in use (choose others with --kafka-port / --avro-port)" >&2; exit 2
  fi
done

# The paper stack's jars (once): Flume's into flume/lib, the Spark job against ~/.m2.
if [ ! -f "$PS/flume/lib/flume-ng-node-1.11.0.jar" ]; then
  (cd "$PS/flume" && mvn -B -q -T1 dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=lib)
fi
if [ ! -f "$PS/spark/target/paper-stack-spark.jar" ] || [ ! -f "$PS/spark/target/classpath.txt" ]; then
  (cd "$PS/spark" && mvn -B -q -T1 package)
fi

[ -n "$WORK" ] || WORK=$(mktemp -d /tmp/paper-vs-tributary.XXXXXX)
if [ -d "$WORK" ] && [ -n "$(ls -A "$WORK")" ] && [ ! -f "$WORK/procs.txt" ]; then
  echo "--work $WORK: not empty and not an earlier work dir of this script; not wiping it" >&2; exit 2
fi
rm -rf "$WORK"
mkdir -p "$WORK/runs"
WORK=$(cd "$WORK" && pwd)
: > "$WORK/procs.txt"   # "label sid|pid id" of every process to sample
echo setup > "$WORK/phase"
BOOTSTRAP=127.0.0.1:$KAFKA_PORT
RUNID=$(date +%s)
TCK=$(getconf CLK_TCK)
declare -A SESS=()      # label -> session id (== pid of the session leader we started)
KAFKA_UP=0 KAFKA_PID="" SAMPLER_PID="" OK=0

# ---------------------------------------------------------------- processes and cleanup
# A process in a new session of its own (setsid execs in place: our $! is the program's pid and its
# session id), so it and its children (Flume's `tail`) can be sampled and stopped together.
start_bg() {  # label log command...   (sampled under the label)
  start_quiet "$@"
  echo "${1// /_} sid ${SESS[$1]}" >> "$WORK/procs.txt"
}
start_quiet() {  # label log command...  (not sampled: the load generator, measured by /usr/bin/time)
  local label=$1 log=$2; shift 2
  setsid "$@" > "$log" 2>&1 < /dev/null &
  SESS[$label]=$!
}
# A process runs (not gone, not a zombie). No fork: it is called in the polling loops.
alive() { local s; read -r s 2>/dev/null < "/proc/$1/stat" || return 1; s=${s##*) }; [ "${s%% *}" != Z ]; }
stop_sess() {  # label [grace seconds]: SIGTERM to the session's group, SIGKILL after the grace
  local label=$1 grace=${2:-10} sid
  sid=${SESS[$label]:-}
  [ -n "$sid" ] || return 0
  kill -TERM -- "-$sid" 2>/dev/null || true
  for _ in $(seq $(( grace * 10 ))); do alive "$sid" || break; sleep 0.1; done
  kill -KILL -- "-$sid" 2>/dev/null || true
  wait "$sid" 2>/dev/null || true
  unset "SESS[$label]"
}
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  for label in "${!SESS[@]}"; do kill -TERM -- "-${SESS[$label]}" 2>/dev/null; done
  for label in "${!SESS[@]}"; do stop_sess "$label" 10; done
  if [ -n "$SAMPLER_PID" ]; then kill "$SAMPLER_PID" 2>/dev/null; wait "$SAMPLER_PID" 2>/dev/null; fi
  if [ "$KAFKA_UP" = 1 ]; then
    "$TRIB" kafka stop --dir "$WORK/kafka" --port "$KAFKA_PORT" > /dev/null 2>&1
    if [ -n "$KAFKA_PID" ] && alive "$KAFKA_PID"; then kill -KILL "$KAFKA_PID" 2>/dev/null; fi
  fi
  if [ "$KEEP" = 1 ] || [ "$OK" != 1 ]; then
    echo "work dir kept: $WORK" >&2
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

# "ticks hwm_kb" of a live process (utime + stime in clock ticks, VmHWM), empty if gone.
proc_usage() {
  local line rest hwm=0 k v
  read -r line 2>/dev/null < "/proc/$1/stat" || return 0
  rest=${line##*) }
  local -a f; read -r -a f <<< "$rest"
  while read -r k v _; do [ "$k" = VmHWM: ] && { hwm=$v; break; }; done 2>/dev/null < "/proc/$1/status"
  echo "$(( f[11] + f[12] )) $hwm"
}
# One sample of every registered process (and every process in a registered session) into
# samples.txt: "time phase label pid ticks hwm_kb rss_anon_kb". Pure bash (no forks) over /proc.
sample_once() {
  local -A bysid=() bypid=()
  local label mode id phase f line rest pid sid hwm anon k v t
  while read -r label mode id; do
    if [ "$mode" = sid ]; then bysid[$id]=$label; else bypid[$id]=$label; fi
  done < "$WORK/procs.txt"
  read -r phase < "$WORK/phase" || phase=unknown
  t=$EPOCHREALTIME
  local out=""
  for f in /proc/[0-9]*/stat; do
    read -r line 2>/dev/null < "$f" || continue
    pid=${line%% *}
    rest=${line##*) }
    set -f; set -- $rest; set +f
    sid=$4
    label=${bypid[$pid]:-${bysid[$sid]:-}}
    [ -n "$label" ] || continue
    hwm=0 anon=0
    while read -r k v _; do
      case "$k" in VmHWM:) hwm=$v ;; RssAnon:) anon=$v; break ;; esac
    done 2>/dev/null < "/proc/$pid/status" || true
    out+="$t $phase $label $pid $(( ${12} + ${13} )) $hwm $anon"$'\n'
  done
  printf '%s' "$out" >> "$WORK/samples.txt"
}
sampler() { set +e; trap 'exit 0' TERM; while :; do sample_once; sleep 0.5; done; }

wait_log() {  # file pattern seconds
  for _ in $(seq $(( $3 * 10 ))); do grep -q -- "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; tail -20 "$1" >&2; return 1
}
# counted+filtered+rejected of a status.json (Tributary's analyzer or the Spark job), and the raw line.
STATUS_LINE="" ACCOUNTED=0
read_status() {
  STATUS_LINE=""; ACCOUNTED=0
  [ -f "$1" ] || return 0
  read -r STATUS_LINE 2>/dev/null < "$1" || true
  local c=0 fl=0 r=0
  [[ $STATUS_LINE =~ \"counted\":([0-9]+) ]] && c=${BASH_REMATCH[1]}
  [[ $STATUS_LINE =~ \"filtered\":([0-9]+) ]] && fl=${BASH_REMATCH[1]}
  [[ $STATUS_LINE =~ \"rejected\":([0-9]+) ]] && r=${BASH_REMATCH[1]}
  ACCOUNTED=$(( c + fl + r ))
}
kafka_tool() { "$JAVA" -Xmx128m -cp "$KJARS" "$@"; }
create_topic() {
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" --create --topic "$1" \
    --partitions 2 --replication-factor 1 > "$WORK/runs/topic-$1.log" 2>&1
}
# Every record value of a topic, one per line (to compare what reached Kafka with what was sent).
dump_topic() {  # topic file
  local n
  kafka_tool org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$BOOTSTRAP" --topic "$1" > "$2.offsets" 2> "$2.offsets.err" || true
  n=$(awk -F: '{ s += $3 } END { printf "%.0f", s + 0 }' "$2.offsets")
  if [ "$n" -gt 0 ]; then
    kafka_tool org.apache.kafka.tools.consumer.ConsoleConsumer --bootstrap-server "$BOOTSTRAP" --topic "$1" \
      --from-beginning --max-messages "$n" --timeout-ms 30000 > "$2" 2> "$2.err" || true
  else
    : > "$2"
  fi
}
# Times are integer microseconds since the epoch (EPOCHREALTIME without its dot): no forks, no floats.
now_us() { NOW=${EPOCHREALTIME/./}; }
set_phase() { echo "$1" > "$WORK/phase.tmp"; mv "$WORK/phase.tmp" "$WORK/phase"; }
kafka_reset_peak() { echo 5 > "/proc/$KAFKA_PID/clear_refs" 2>/dev/null || echo "note: cannot reset Kafka's VmHWM (clear_refs)" >&2; }

# ---------------------------------------------------------------- data, exact recount, Kafka
echo "== data: $ROWS rows, $USERS users, seed $SEED (work dir $WORK)"
"$TRIB" gen tianchi --rows "$ROWS" --users "$USERS" --seed "$SEED" --malformed 0.001 --duplicates 0.001 \
  --out "$WORK/data" | sed 's/^/   /'
python3 "$PS/exact_counts.py" --data "$WORK/data" --out "$WORK/expected" > "$WORK/expected.json"
echo "   exact recount (exact_counts.py): $(cat "$WORK/expected.json")"
TOTAL=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lines"])' "$WORK/expected.json")

echo "== Kafka on $BOOTSTRAP (dir $WORK/kafka)"
# Never let kafka-storage read a cluster id that starts with '-' as an option (an older binary drew one 1 in 64).
mkdir -p "$WORK/kafka"
python3 -c 'import base64,os
while True:
    s = base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
    if s[0] != "-": break
print(s)' > "$WORK/kafka/cluster.id"
KAFKA_UP=1
"$TRIB" kafka start --dir "$WORK/kafka" --port "$KAFKA_PORT" | sed 's/^/   /'
KAFKA_PID=$(cat "$WORK/kafka/node-1/kafka.pid")
echo "kafka pid $KAFKA_PID" >> "$WORK/procs.txt"
KJARS=$(tr '\0' '\n' < "/proc/$KAFKA_PID/cmdline" | grep '/jars/\*$' | head -1)
[ -n "$KJARS" ] || { echo "cannot find the Kafka jars from the broker's command line" >&2; exit 1; }
read -r t h <<< "$(proc_usage "$KAFKA_PID")"
echo "{\"kafka_startup_ticks\":$t,\"kafka_startup_hwm_kb\":$h,\"clk_tck\":$TCK}" > "$WORK/runs/kafka-startup.json"
sampler &
SAMPLER_PID=$!

# ---------------------------------------------------------------- run metadata
# Each run writes runs/<run>.json for the report.
write_meta() {  # run pipeline fault dir out status_file topic_dump t0 t_replayed t_done complete t_kill t_restart acc_kill k0 k1 khwm rate
  python3 - "$@" <<'PY'
import json, sys
a = sys.argv[1:]
keys = ["run", "pipeline", "fault", "dir", "out", "status_file", "topic_dump", "t0", "t_replayed", "t_done",
        "complete", "t_kill", "t_restart", "accounted_at_kill", "kafka_ticks_start", "kafka_ticks_end",
        "kafka_hwm_kb", "replay_rate"]
m = dict(zip(keys, a))
for k in ("t0", "t_replayed", "t_done", "t_kill", "t_restart"):
    m[k] = int(m[k]) / 1e6 if m[k] else None  # microseconds since the epoch -> seconds
for k in ("accounted_at_kill", "kafka_ticks_start", "kafka_ticks_end", "kafka_hwm_kb"):
    m[k] = int(m[k]) if m[k] else None
m["fault"] = m["fault"] == "1"
m["complete"] = m["complete"] == "1"
m["replay_rate"] = float(m["replay_rate"] or 0)
with open(f"{m['dir']}/../runs/{m['run']}.json", "w") as f:
    json.dump(m, f)
PY
}
# Waits for a run's counts. Clean: until counted+filtered+rejected >= TOTAL (T_DONE = that moment).
# Fault: also kills -9 and restarts the collector (callbacks), then waits until the replay has ended,
# the restart is done and status.json has not changed for QUIET_S s (T_DONE = its last change).
T_DONE="" COMPLETE=0 T_KILL="" T_RESTART="" ACC_KILL=""
secs() { printf '%d.%02d' $(( ($1 - T0) / 1000000 )) $(( ($1 - T0) % 1000000 / 10000 )); }
wait_counts() {  # status_file fault replay_session_label kill_fn restart_fn
  local st=$1 fault=$2 rlabel=$3 kill_fn=$4 restart_fn=$5
  local deadline last_line="" last_change killed=0 restarted=0 kill_t=0 replay_done=0
  T_DONE="" COMPLETE=0 T_KILL="" T_RESTART="" ACC_KILL=""
  deadline=$(( T0 + TIMEOUT_S * 1000000 ))
  if [ "$fault" = 1 ]; then kill_t=$(( T0 + KILL_AFTER_US )); fi
  last_change=$T0
  while :; do
    now_us
    read_status "$st"
    if [ "$STATUS_LINE" != "$last_line" ]; then last_line=$STATUS_LINE; last_change=$NOW; fi
    if [ "$fault" = 0 ]; then
      if [ "$ACCOUNTED" -ge "$TOTAL" ]; then T_DONE=$NOW; COMPLETE=1; return 0; fi
    else
      if [ "$replay_done" = 0 ] && ! alive "${SESS[$rlabel]}"; then replay_done=1; fi
      if [ "$killed" = 0 ] && [ "$NOW" -ge "$kill_t" ]; then
        ACC_KILL=$ACCOUNTED; "$kill_fn"; now_us; T_KILL=$NOW; killed=1
        echo "   kill -9 at $(secs "$T_KILL") s; the counts then accounted for $ACC_KILL of $TOTAL lines"
      fi
      if [ "$killed" = 1 ] && [ "$restarted" = 0 ] && [ "$NOW" -ge $(( T_KILL + DOWN_S * 1000000 )) ]; then
        "$restart_fn"; now_us; T_RESTART=$NOW; restarted=1; last_change=$NOW
        echo "   restarted at $(secs "$T_RESTART") s"
      fi
      if [ "$replay_done" = 1 ] && [ "$restarted" = 1 ] && [ "$NOW" -ge $(( last_change + QUIET_S * 1000000 )) ]; then
        T_DONE=$last_change; COMPLETE=1; return 0
      fi
    fi
    if [ "$NOW" -ge "$deadline" ]; then echo "   TIMEOUT after $TIMEOUT_S s: $ACCOUNTED of $TOTAL accounted" >&2; T_DONE=$NOW; return 0; fi
    if [ -n "${WATCH_PID:-}" ] && ! alive "$WATCH_PID"; then
      read_status "$st"; now_us
      if [ "$fault" = 0 ] && [ "$ACCOUNTED" -ge "$TOTAL" ]; then T_DONE=$NOW; COMPLETE=1; return 0; fi
      echo "   the counting process exited before its counts were complete ($ACCOUNTED of $TOTAL)" >&2; T_DONE=$NOW; return 0
    fi
    sleep 0.1
  done
}
# The load generator, in a session of its own (label "replay"), under /usr/bin/time for its CPU and peak RSS.
start_replay() {  # logs_dir rate(0: as fast as possible) time_file log
  local rate=()
  [ "$2" = 0 ] || rate=(--rate "$2")
  start_quiet replay "$4" /usr/bin/time -f '%e %U %S %M' -o "$3" \
    "$TRIB" replay "$WORK/data/user_log_format1.csv" --to "tail:$1" --concurrency 2 "${rate[@]}"
}
finish_replay() {  # -> T_REPLAYED (for a rate-limited replay: from its own elapsed time)
  local rc=0
  wait "${SESS[replay]}" || rc=$?
  unset 'SESS[replay]'
  [ "$rc" = 0 ] || { echo "the replay failed (exit $rc): $(tail -3 "$1")" >&2; return 1; }
}

# ---------------------------------------------------------------- Tributary
trib_kill() { sample_once; kill -KILL "${SESS[agent]}"; wait "${SESS[agent]}" 2>/dev/null || true; unset 'SESS[agent]'; }
trib_restart() { start_bg "agent (restarted)" "$D/agent.restarted.log" "$TRIB" agent --config "$D/agent.toml"; }
run_tributary() {  # fault(0|1)
  local fault=$1 run topic rate
  run=tributary-$([ "$fault" = 1 ] && echo fault || echo clean)
  D=$WORK/$run
  mkdir -p "$D/logs" "$D/analyzer"
  topic=$run-$RUNID
  rate=$([ "$fault" = 1 ] && echo "$FAULT_RATE" || echo 0)
  echo "== $run: replay -> tributary agent (2 tail sources -> channel -> uplink) -> Kafka topic $topic -> tributary analyze"
  create_topic "$topic"
  # The demo's configurations: its agent (tools/demo_cmd.cpp) and its analyzer (tributary gen tianchi-config).
  cat > "$D/agent.toml" <<EOF
[agent]
name = "demo"
status_file = "$D/agent.status.json"
[channels.events]
path = "$D/demo.chan"
capacity = "64M"
[sources.log0]
type = "tail"
channels = ["events"]
paths = ["$D/logs/replay-0.log"]
[sources.log1]
type = "tail"
channels = ["events"]
paths = ["$D/logs/replay-1.log"]
[uplinks.kafka]
channel = "events"
topic = "$topic"
bootstrap = "$BOOTSTRAP"
EOF
  "$TRIB" gen tianchi-config --user-info "$WORK/data/user_info_format1.csv" --state-dir "$D/analyzer" \
    --checkpoint-ms 500 --input "$(printf 'type = "kafka"\nbootstrap = "%s"\ntopic = "%s"\ngroup = "%s"' \
      "$BOOTSTRAP" "$topic" "tributary-bench-$run-$RUNID")" > "$D/analyze.toml"
  set_phase "$run"
  kafka_reset_peak
  local k0 k1 khwm
  read -r k0 _ <<< "$(proc_usage "$KAFKA_PID")"
  # As the demo: the analyzer (loads user_info) first, then the agent; the replay once the agent runs.
  start_bg analyzer "$D/analyzer.log" "$TRIB" analyze --config "$D/analyze.toml"
  start_bg agent "$D/agent.log" "$TRIB" agent --config "$D/agent.toml"
  for _ in $(seq 100); do [ -f "$D/agent.status.json" ] && break; sleep 0.1; done
  [ -f "$D/agent.status.json" ] || { echo "the agent wrote no status in 10 s:" >&2; tail -20 "$D/agent.log" >&2; return 1; }
  sleep 1
  WATCH_PID=${SESS[analyzer]}
  sample_once  # the CPU every process has used before the replay starts (start-up, idle waiting)
  now_us; T0=$NOW
  start_replay "$D/logs" "$rate" "$D/replay.time" "$D/replay.log"
  wait_counts "$D/analyzer/status.json" "$fault" replay trib_kill trib_restart
  sample_once
  read -r k1 khwm <<< "$(proc_usage "$KAFKA_PID")"
  finish_replay "$D/replay.log"
  T_REPLAYED=$(awk -v a="$T0" -v e="$(tail -1 "$D/replay.time" | cut -d' ' -f1)" 'BEGIN { printf "%.0f", a + e * 1e6 }')
  WATCH_PID=""
  sed 's/^/   replay: /' "$D/replay.log"
  # SIGTERM: the analyzer's final checkpoint and outputs (as the demo stops it), then the agent.
  stop_sess analyzer 15
  for l in agent "agent (restarted)"; do stop_sess "$l" 15; done
  read_status "$D/analyzer/status.json"
  echo "   analyzer status: $STATUS_LINE" | cut -c1-400
  dump_topic "$topic" "$D/topic.txt"
  write_meta "$run" tributary "$fault" "$D" "$D/analyzer" "$D/analyzer/status.json" "$D/topic.txt" \
    "$T0" "$T_REPLAYED" "$T_DONE" "$COMPLETE" "$T_KILL" "$T_RESTART" "$ACC_KILL" "$k0" "$k1" "$khwm" "$rate"
}

# ---------------------------------------------------------------- the paper stack
read -r -a SPARK_OPENS <<< "$(echo -XX:+IgnoreUnrecognizedVMOptions \
 --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.lang.invoke=ALL-UNNAMED \
 --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
 --add-opens=java.base/java.net=ALL-UNNAMED --add-opens=java.base/java.nio=ALL-UNNAMED \
 --add-opens=java.base/java.util=ALL-UNNAMED --add-opens=java.base/java.util.concurrent=ALL-UNNAMED \
 --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED \
 --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/sun.nio.cs=ALL-UNNAMED \
 --add-opens=java.base/sun.security.action=ALL-UNNAMED --add-opens=java.base/sun.util.calendar=ALL-UNNAMED \
 -Djdk.reflect.useDirectMethodHandle=false)"
flume_conf() {  # name -> the conf file to use (collectors per --flume-source; written into $D/conf)
  local name=$1
  case "$name" in
    aggregator) echo "$PS/flume/conf/aggregator.conf" ;;
    *)
      case "$FLUME_SOURCE" in
        taildir) echo "$PS/flume/conf/$name.conf" ;;
        exec+1) echo "$PS/flume/conf/$name-exec.conf" ;;
        exec)  # the paper's command: tail -F FILE (a file that appears later is read from its start)
          sed 's/^\([a-z0-9]*\.sources\.r1\.command = \)tail -n +1 -F /\1tail -F /' "$PS/flume/conf/$name-exec.conf" > "$D/conf/$name.conf"
          grep -q 'command = tail -F ' "$D/conf/$name.conf" || { echo "could not derive $D/conf/$name.conf" >&2; return 1; }
          echo "$D/conf/$name.conf" ;;
      esac ;;
  esac
}
flume_start() {  # label agent_name log
  local conf
  conf=$(flume_conf "$2")
  start_bg "$1" "$3" env WORK="$D" AVRO_PORT="$AVRO" KAFKA_BOOTSTRAP="$BOOTSTRAP" TOPIC="$TOPIC" \
    "$JAVA" -Xmx256m -Dlog4j.configurationFile="$PS/flume/conf/log4j2.xml" \
    -DpropertiesImplementation=org.apache.flume.node.EnvVarResolverProperties \
    -cp "$PS/flume/lib/*" org.apache.flume.node.Application -f "$conf" -n "$2"
}
paper_kill() {
  sample_once
  kill -KILL "${SESS[collector1]}" "${SESS[collector2]}"
  wait "${SESS[collector1]}" "${SESS[collector2]}" 2>/dev/null || true
  # The JVMs' `tail` children are left as a real kill -9 leaves them (they die of SIGPIPE on their next line);
  # their sessions stay registered for sampling and are stopped at the end.
  SESS[collector1 tails]=${SESS[collector1]}; SESS[collector2 tails]=${SESS[collector2]}
  unset 'SESS[collector1]' 'SESS[collector2]'
}
paper_restart() {
  flume_start "collector1 (restarted)" collector1 "$D/flume/collector1.restarted.log"
  flume_start "collector2 (restarted)" collector2 "$D/flume/collector2.restarted.log"
}
run_paper() {  # fault(0|1)
  local fault=$1 run rate
  run=paper-stack-$([ "$fault" = 1 ] && echo fault || echo clean)
  D=$WORK/$run
  TOPIC=$run-$RUNID
  AVRO=$(( AVRO_PORT + fault ))
  rate=$([ "$fault" = 1 ] && echo "$FAULT_RATE" || echo 0)
  mkdir -p "$D/logs" "$D/flume" "$D/spark-out" "$D/conf"
  echo "== $run: replay -> Flume collector1+2 ($FLUME_SOURCE) -> aggregator (Avro :$AVRO) -> Kafka topic $TOPIC -> Spark Streaming (DStreams, local[2])"
  create_topic "$TOPIC"
  set_phase "$run"
  kafka_reset_peak
  local k0 k1 khwm spark_args
  read -r k0 _ <<< "$(proc_usage "$KAFKA_PID")"
  if [ "$fault" = 0 ]; then spark_args=(--expect "$TOTAL"); else spark_args=(--idle-s $(( QUIET_S * 3 ))); fi
  start_bg "spark job" "$D/spark.log" env SPARK_LOCAL_IP=127.0.0.1 \
    "$JAVA" -Xmx1g "${SPARK_OPENS[@]}" -cp "$PS/spark/target/paper-stack-spark.jar:$(cat "$PS/spark/target/classpath.txt")" \
    io.tributary.bench.paperstack.OrdersJob --bootstrap "$BOOTSTRAP" --topic "$TOPIC" \
    --user-info "$WORK/data/user_info_format1.csv" --out "$D/spark-out" --batch-ms 1000 \
    --group "paper-stack-$run-$RUNID" "${spark_args[@]}" --timeout-s "$TIMEOUT_S"
  flume_start aggregator aggregator "$D/flume/aggregator.log"
  wait_log "$D/flume/aggregator.log" "Avro source r1 started" 120
  flume_start collector1 collector1 "$D/flume/collector1.log"
  flume_start collector2 collector2 "$D/flume/collector2.log"
  wait_log "$D/flume/collector1.log" "Starting Source r1" 120
  wait_log "$D/flume/collector2.log" "Starting Source r1" 120
  wait_log "$D/spark.log" "streaming started" 180
  sleep 2  # the Avro sinks connect, Spark's first (empty) batches run
  WATCH_PID=${SESS[spark job]}
  sample_once  # the CPU every process has used before the replay starts (start-up, idle waiting)
  now_us; T0=$NOW
  start_replay "$D/logs" "$rate" "$D/replay.time" "$D/replay.log"
  wait_counts "$D/spark-out/status.json" "$fault" replay paper_kill paper_restart
  sample_once
  read -r k1 khwm <<< "$(proc_usage "$KAFKA_PID")"
  finish_replay "$D/replay.log"
  T_REPLAYED=$(awk -v a="$T0" -v e="$(tail -1 "$D/replay.time" | cut -d' ' -f1)" 'BEGIN { printf "%.0f", a + e * 1e6 }')
  WATCH_PID=""
  sed 's/^/   replay: /' "$D/replay.log"
  for l in "collector1" "collector2" "collector1 (restarted)" "collector2 (restarted)" "collector1 tails" "collector2 tails" aggregator; do
    stop_sess "$l" 10
  done
  stop_sess "spark job" 20
  read_status "$D/spark-out/status.json"
  echo "   spark status: $STATUS_LINE"
  dump_topic "$TOPIC" "$D/topic.txt"
  write_meta "$run" paper-stack "$fault" "$D" "$D/spark-out" "$D/spark-out/status.json" "$D/topic.txt" \
    "$T0" "$T_REPLAYED" "$T_DONE" "$COMPLETE" "$T_KILL" "$T_RESTART" "$ACC_KILL" "$k0" "$k1" "$khwm" "$rate"
}

# ---------------------------------------------------------------- the runs
run_tributary 0
run_paper 0
if [ "$FAULTS" = 1 ]; then
  echo "== fault runs: replay at $FAULT_RATE rows/s; kill -9 of the collector at ${KILL_AT} of the replay, down ${DOWN_S} s, restarted with the same config"
  run_tributary 1
  run_paper 1
fi
set_phase done
kill "$SAMPLER_PID" 2>/dev/null || true; wait "$SAMPLER_PID" 2>/dev/null || true; SAMPLER_PID=""

# ---------------------------------------------------------------- report, JSON, SVG
set +e
python3 - "$WORK" "$TOTAL" "$TCK" "$FLUME_SOURCE" "$JSON_OUT" "$SVG_OUT" "$ROWS" "$USERS" "$SEED" <<'PY'
import collections, glob, json, os, sys

work, total, tck, flume_source, json_out, svg_out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
rows, users, seed = int(sys.argv[7]), int(sys.argv[8]), int(sys.argv[9])
FILES = ("orders_by_age.csv", "orders_by_gender.csv", "orders_by_day.csv")
expected_totals = json.load(open(f"{work}/expected.json"))

def read_csv_counts(path):
    out = collections.OrderedDict()
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for l in lines[1:]:
        p = l.split(",")
        if len(p) >= 2 and p[1].lstrip("-").isdigit():
            out[p[0]] = int(p[1])
    return out

# Samples: per phase, per label, per pid: [last ticks, max VmHWM, [(time, ticks), ...]].
samples = collections.defaultdict(lambda: collections.defaultdict(dict))  # phase -> label -> pid -> [...]
try:
    for line in open(f"{work}/samples.txt"):
        p = line.split()
        if len(p) not in (6, 7):
            continue
        t, phase, label, pid, ticks, hwm, anon = (p + ["0"])[:7]
        label = label.replace("_", " ")
        d = samples[phase][label].setdefault(pid, [0, 0, [], 0])
        d[0] = max(d[0], int(ticks)); d[1] = max(d[1], int(hwm)); d[2].append((float(t), int(ticks))); d[3] = max(d[3], int(anon))
except OSError:
    pass

def ticks_before(series, t0):
    """CPU ticks a process had used at t0 (its last sample at or before t0; 0 if it started later)."""
    before = [k for t, k in series if t <= t0]
    return max(before) if before else 0

def time_file(path):
    try:
        e, u, s, m = open(path).read().split("\n")[-2].split()[:4]
        return float(u) + float(s), int(m)
    except Exception:
        return None, None

def proc_name(pipeline, label):
    names = {"agent": "tributary agent (2 tail sources, channel, uplink)",
             "agent (restarted)": "tributary agent, restarted",
             "analyzer": "tributary analyze",
             "collector1": "Flume collector1 (JVM + its tail)", "collector2": "Flume collector2 (JVM + its tail)",
             "collector1 (restarted)": "Flume collector1, restarted", "collector2 (restarted)": "Flume collector2, restarted",
             "aggregator": "Flume aggregator", "spark job": "Spark job (driver + local[2] executor)"}
    return names.get(label, label)

def cell_diff(exp_dir, got_dir):
    per, lost_max, dup_max = {}, 0, 0
    for name in FILES:
        e, g = read_csv_counts(f"{exp_dir}/{name}"), read_csv_counts(f"{got_dir}/{name}")
        if g is None:
            per[name] = None
            continue
        keys = list(e) + [k for k in g if k not in e]
        lost = sum(max(0, e.get(k, 0) - g.get(k, 0)) for k in keys)
        dup = sum(max(0, g.get(k, 0) - e.get(k, 0)) for k in keys)
        per[name] = {"lost": lost, "double_counted": dup}
        lost_max, dup_max = max(lost_max, lost), max(dup_max, dup)
    return per, lost_max, dup_max

def is_order(line):
    try:
        o = json.loads(line)
    except ValueError:
        return False
    return isinstance(o, dict) and o.get("action_type") == 2 and isinstance(o.get("user_id"), int) and isinstance(o.get("time_stamp"), int)

def record_level(logs_dir, dump):
    """What reached the Kafka topic against what was sent (the replayed log files), as multisets of lines:
    missing lines per file (and their contiguous runs), extra copies, and the same for orders."""
    got, records = collections.Counter(), 0
    try:
        with open(dump) as fh:
            for l in fh:
                l = l.rstrip("\n")
                if l:
                    records += 1
                    got[l] += 1
    except OSError:
        return None
    files, orders_sent, orders_missing = [], 0, 0
    for f in sorted(glob.glob(f"{logs_dir}/replay-*.log")):
        n, missing, runs = 0, 0, []
        with open(f) as fh:
            for i, l in enumerate(fh, 1):
                l = l.rstrip("\n")
                if not l:
                    continue
                n += 1
                order = is_order(l)
                orders_sent += order
                if got[l] > 0:
                    got[l] -= 1
                    continue
                missing += 1
                orders_missing += order
                if runs and runs[-1][1] == i - 1:
                    runs[-1][1] = i
                else:
                    runs.append([i, i])
        files.append({"file": os.path.basename(f), "lines": n, "missing": missing, "missing_runs": len(runs),
                      "first_runs": runs[:3]})
    extra = {l: k for l, k in got.items() if k > 0}
    orders_extra = sum(k for l, k in extra.items() if is_order(l))
    return {"records_in_topic": records, "orders_sent": orders_sent, "orders_in_topic": orders_sent - orders_missing + orders_extra,
            "orders_missing_from_topic": orders_missing, "orders_extra_in_topic": orders_extra,
            "lines_missing_from_topic": sum(x["missing"] for x in files), "extra_copies_in_topic": sum(extra.values()), "files": files}

runs = {}
for f in sorted(glob.glob(f"{work}/runs/*.json")):
    m = json.load(open(f))
    if "run" in m:
        runs[m["run"]] = m

def analyse(m):
    r = {"run": m["run"], "pipeline": m["pipeline"], "fault": m["fault"], "complete": m["complete"]}
    t0 = m["t0"]
    r["replay_s"] = (m["t_replayed"] - t0) if m["t_replayed"] else None
    r["time_to_complete_s"] = (m["t_done"] - t0) if m["t_done"] else None
    r["events_per_s"] = total / r["time_to_complete_s"] if r["time_to_complete_s"] and m["complete"] and not m["fault"] else None
    try:
        r["status"] = json.loads(open(m["status_file"]).read())
    except Exception:
        r["status"] = None
    procs = []
    for label, pids in samples.get(m["run"], {}).items():
        if label == "kafka":
            continue
        procs.append({"name": proc_name(m["pipeline"], label), "label": label, "pids": len(pids),
                      "cpu_s": sum(v[0] for v in pids.values()) / tck,
                      "cpu_s_during_run": sum(v[0] - ticks_before(v[2], t0) for v in pids.values()) / tck,
                      "peak_rss_kb": sum(v[1] for v in pids.values()),
                      "peak_rss_anon_kb": sum(v[3] for v in pids.values())})
    order = ["agent", "agent (restarted)", "analyzer", "collector1", "collector1 tails", "collector1 (restarted)",
             "collector2", "collector2 tails", "collector2 (restarted)", "aggregator", "spark job"]
    procs.sort(key=lambda p: order.index(p["label"]) if p["label"] in order else 99)
    # Flume's `tail` children left running after the kill -9 belong to the killed collector (same session).
    r["processes"] = procs
    r["cpu_s"] = sum(p["cpu_s"] for p in procs)
    r["cpu_s_during_run"] = sum(p["cpu_s_during_run"] for p in procs)
    r["peak_rss_kb_total"] = sum(p["peak_rss_kb"] for p in procs)
    k0, k1 = m["kafka_ticks_start"], m["kafka_ticks_end"]
    r["kafka_cpu_s"] = (k1 - k0) / tck if k0 is not None and k1 is not None else None
    kh = [v[1] for v in samples.get(m["run"], {}).get("kafka", {}).values()] + [m["kafka_hwm_kb"] or 0]
    r["kafka_peak_rss_kb"] = max(kh) if kh else None
    rc, rm = time_file(f"{m['dir']}/replay.time")
    r["replay_cpu_s"], r["replay_peak_rss_kb"] = rc, rm
    # The three CSVs against the exact recount, byte for byte.
    eq = {}
    for name in FILES:
        try:
            eq[name] = open(f"{m['out']}/{name}").read() == open(f"{work}/expected/{name}").read()
        except OSError:
            eq[name] = False
    r["csv_equal"] = eq
    r["all_csv_equal"] = all(eq.values())
    per, lost, dup = cell_diff(f"{work}/expected", m["out"])
    r["cells"] = per
    r["lost_orders_cell_lower_bound"], r["double_counted_orders_cell_lower_bound"] = lost, dup
    got_orders = None
    if r["status"] is not None:
        got_orders = r["status"].get("counted")
    r["orders_counted"] = got_orders
    r["orders_exact"] = expected_totals["orders"]
    r["record_level"] = record_level(f"{m['dir']}/logs", m["topic_dump"])
    r["kill_at_s"] = (m["t_kill"] - t0) if m["t_kill"] else None
    r["restart_at_s"] = (m["t_restart"] - t0) if m["t_restart"] else None
    r["accounted_at_kill"] = m["accounted_at_kill"]
    r["replay_rate"] = m["replay_rate"]
    return r

res = {k: analyse(m) for k, m in runs.items()}
mb = lambda kb: kb / 1024.0
out = []
def P(s=""):
    out.append(s)

P(f"\n==================== results: {rows} rows, {users} users, seed {seed}; {total} lines sent, "
  f"{expected_totals['orders']} orders, {expected_totals['filtered']} filtered, {expected_totals['rejected']} rejected (exact recount)")
try:
    ks = json.load(open(f"{work}/runs/kafka-startup.json"))
    P(f"Kafka broker start-up (shared, before the runs): {ks['kafka_startup_ticks']/tck:.2f} CPU s, {mb(ks['kafka_startup_hwm_kb']):.1f} MB peak RSS")
except Exception:
    pass
for run in ("tributary-clean", "paper-stack-clean", "tributary-fault", "paper-stack-fault"):
    r = res.get(run)
    if not r:
        continue
    P()
    head = f"--- {run}" + (f" (Flume source: {flume_source})" if r["pipeline"] == "paper-stack" else "")
    P(head)
    if r["fault"]:
        P(f"replay with --rate {r['replay_rate']:.0f} took {r['replay_s']:.2f} s ({total / r['replay_s']:.0f} rows/s achieved); kill -9 of the collector at {r['kill_at_s']:.2f} s "
          f"(the counts then accounted for {r['accounted_at_kill']} of {total} lines), restarted at {r['restart_at_s']:.2f} s; "
          f"counts last changed {r['time_to_complete_s']:.2f} s after the replay started" if r["kill_at_s"] is not None else "the kill did not happen")
    else:
        if r["complete"]:
            P(f"replay took {r['replay_s']:.2f} s; final counts complete {r['time_to_complete_s']:.2f} s after the replay started: "
              f"{r['events_per_s']:.0f} events/s end to end")
        else:
            P(f"replay took {r['replay_s']:.2f} s; the final counts were NOT complete after {r['time_to_complete_s']:.2f} s")
    P(f"  {'process':<52} {'pids':>4} {'CPU s':>8} {'of which in run':>15} {'peak RSS MB':>12} {'(anon MB)':>10}")
    for p in r["processes"]:
        P(f"  {p['name']:<52} {p['pids']:>4} {p['cpu_s']:>8.2f} {p['cpu_s_during_run']:>15.2f} {mb(p['peak_rss_kb']):>12.1f} {mb(p['peak_rss_anon_kb']):>10.1f}")
    P(f"  {'TOTAL (' + r['pipeline'] + ', without Kafka)':<52} {'':>4} {r['cpu_s']:>8.2f} {r['cpu_s_during_run']:>15.2f} {mb(r['peak_rss_kb_total']):>12.1f}")
    if r["kafka_cpu_s"] is not None:
        P(f"  {'Kafka broker (shared), during this run':<52} {1:>4} {r['kafka_cpu_s']:>8.2f} {'':>15} {mb(r['kafka_peak_rss_kb']):>12.1f}")
        P(f"  {'TOTAL with Kafka':<52} {'':>4} {r['cpu_s'] + r['kafka_cpu_s']:>8.2f} {'':>15} {mb(r['peak_rss_kb_total'] + r['kafka_peak_rss_kb']):>12.1f}")
    if r["replay_cpu_s"] is not None:
        P(f"  {'(load generator: tributary replay, not in totals)':<52} {1:>4} {r['replay_cpu_s']:>8.2f} {'':>15} {mb(r['replay_peak_rss_kb']):>12.1f}")
    P("  CSVs vs exact recount: " + ", ".join(f"{n}: {'EQUAL' if ok else 'DIFFERS'}" for n, ok in r["csv_equal"].items()))
    st = r["status"] or {}
    srcs = st.get("sources")
    extra = ""
    if r["pipeline"] == "tributary":
        extra = f"; duplicates dropped by identity {st.get('duplicates')}"
        if srcs:
            extra += "; per source: " + ", ".join(f"accounted {s['accounted']} gaps {s['gaps']} dups {s['duplicates']}" for s in srcs)
    else:
        extra = f"; records {st.get('records')}"
    P(f"  counts: orders {st.get('counted')} (exact {expected_totals['orders']}), filtered {st.get('filtered')}, rejected {st.get('rejected')}{extra}")
    rl = r["record_level"]
    if rl:
        P(f"  Kafka topic: {rl['records_in_topic']} records for {total} lines sent ({rl['lines_missing_from_topic']} lines missing, "
          f"{rl['extra_copies_in_topic']} extra copies); orders: {rl['orders_in_topic']} in the topic for "
          f"{rl['orders_sent']} sent, {rl['orders_missing_from_topic']} missing, {rl['orders_extra_in_topic']} extra copies")
        for fl in rl["files"]:
            if fl["missing"]:
                P(f"    {fl['file']}: {fl['missing']} of {fl['lines']} lines missing, in {fl['missing_runs']} contiguous run(s): "
                  + ", ".join(f"lines {a}-{b}" for a, b in fl["first_runs"]) + (" ..." if fl["missing_runs"] > 3 else ""))
    if r["fault"] or not r["all_csv_equal"]:
        cells = r["cells"]
        P("  orders lost / double-counted vs the exact recount, per cell (sum of max(0, exact-got) / max(0, got-exact)): "
          + "; ".join(f"{n.replace('orders_by_', '').replace('.csv', '')}: {c['lost']} / {c['double_counted']}" if c else f"{n}: missing" for n, c in cells.items()))
        counted = st.get("counted")
        diff = (counted - expected_totals["orders"]) if counted is not None else None
        P(f"  => at least {r['lost_orders_cell_lower_bound']} orders lost and at least {r['double_counted_orders_cell_lower_bound']} double-counted "
          f"(the largest per-cell sums over the three tables; total orders counted {counted} vs {expected_totals['orders']}: "
          f"{'+' if diff is not None and diff >= 0 else ''}{diff})")
        if r["pipeline"] == "paper-stack" and rl:
            exact_spark = (rl["orders_in_topic"] == counted)
            P(f"  => record level (Spark counts every record of the topic{'; its count equals the topic' + chr(39) + 's orders' if exact_spark else ', but its count ' + str(counted) + ' differs from the topic' + chr(39) + 's ' + str(rl['orders_in_topic'])}): "
              f"{rl['orders_missing_from_topic']} orders lost, {rl['orders_extra_in_topic']} double-counted")
        if r["pipeline"] == "tributary" and srcs is not None:
            gaps = sum(s["gaps"] for s in srcs)
            P(f"  => the analyzer's per-source audit: {gaps} gaps (lost), {st.get('duplicates')} copies dropped (re-sent after the kill, not counted); "
              f"lines accounted {sum(s['accounted'] for s in srcs)} of {total}")
P()
P("CPU s: each process's whole life (start-up and idle waiting included) up to the final counts; 'of which in run': from the replay's "
  "start to the final counts. Peak RSS: VmHWM, sampled from /proc every 0.5 s and at the end; a label's pids (a JVM and its `tail`) are summed; "
  "(anon MB): the largest sampled RssAnon, i.e. without file-backed pages such as Tributary's mmap'd channel file. "
  "Kafka's peak is reset (clear_refs) at the start of each run.")
P("Note: a per-cell comparison nets a lost order against a double-counted one in the same cell, so its sums are lower bounds; "
  "the record-level line (orders sent vs orders in the Kafka topic, as a multiset of lines) and Tributary's per-source audit do not net.")

tc, pc = res.get("tributary-clean"), res.get("paper-stack-clean")
summary = {"context": {"rows": rows, "users": users, "seed": seed, "lines": total, "orders": expected_totals["orders"],
                       "flume_source": flume_source, "kafka": "local KRaft broker, shared, listed separately"},
           "benchmarks": [], "ratios": [], "runs": res}
for r in (tc, pc):
    if r:
        summary["benchmarks"].append({"name": r["pipeline"], "items_per_second": r["events_per_s"], "time_to_complete_s": r["time_to_complete_s"],
                                      "cpu_s": round(r["cpu_s"], 3), "cpu_s_during_run": round(r["cpu_s_during_run"], 3),
                                      "peak_rss_kb_total": r["peak_rss_kb_total"],
                                      "kafka_cpu_s": r["kafka_cpu_s"], "kafka_peak_rss_kb": r["kafka_peak_rss_kb"],
                                      "csv_equal": r["all_csv_equal"], "complete": r["complete"]})
P()
if tc and pc:
    def ratio(name, a, b):
        v = (a / b) if a and b else None
        summary["ratios"].append({"name": name, "value": v})
        P(f"{name}: {v:.2f}" if v is not None else f"{name}: n/a")
    ratio("e2e: tributary vs paper stack (events/s)", tc["events_per_s"], pc["events_per_s"])
    ratio("e2e: paper stack RSS vs tributary", pc["peak_rss_kb_total"], tc["peak_rss_kb_total"])
    ratio("e2e: paper stack CPU s vs tributary", pc["cpu_s"], tc["cpu_s"])
    ratio("e2e: paper stack CPU s from replay start to final counts vs tributary", pc["cpu_s_during_run"], tc["cpu_s_during_run"])
def lost_and_doubled(r):
    """The best account of lost / double-counted orders, and how it was obtained."""
    st, rl = r["status"] or {}, r["record_level"]
    if r["pipeline"] == "paper-stack" and rl and rl["orders_in_topic"] == st.get("counted"):
        return rl["orders_missing_from_topic"], rl["orders_extra_in_topic"], \
            "record level: orders sent vs orders in the Kafka topic (Spark counts every record; its count equals the topic's orders)"
    srcs = st.get("sources")
    if r["pipeline"] == "tributary" and srcs is not None and r["all_csv_equal"] and sum(x["gaps"] for x in srcs) == 0 \
            and sum(x["accounted"] for x in srcs) == total:
        return 0, 0, "the analyzer's per-source audit (no gaps, every line accounted once, copies dropped by identity) and CSVs equal to the exact recount"
    return r["lost_orders_cell_lower_bound"], r["double_counted_orders_cell_lower_bound"], "per-cell lower bounds (netting possible)"

for name in ("tributary-fault", "paper-stack-fault"):
    r = res.get(name)
    if r:
        rl = r["record_level"] or {}
        lost, doubled, how = lost_and_doubled(r)
        summary.setdefault("faults", []).append({
            "name": r["pipeline"], "orders_lost": lost, "orders_double_counted": doubled, "method": how,
            "orders_lost_cell_lower_bound": r["lost_orders_cell_lower_bound"],
            "orders_double_counted_cell_lower_bound": r["double_counted_orders_cell_lower_bound"],
            "orders_counted": r["orders_counted"], "orders_exact": r["orders_exact"], "csv_equal": r["all_csv_equal"],
            "orders_missing_from_topic": rl.get("orders_missing_from_topic"),
            "order_copies_in_topic_beyond_sent": rl.get("orders_extra_in_topic")})
        P(f"fault, {r['pipeline']}: {lost} orders lost, {doubled} double-counted of {r['orders_exact']} ({how})")
print("\n".join(out))
if json_out:
    with open(json_out, "w") as f:
        json.dump(summary, f, indent=1)
    print(f"wrote {json_out}")
if svg_out and tc and pc:
    panels = [("end-to-end events/s (higher is better)", tc["events_per_s"] or 0, pc["events_per_s"] or 0, "{:,.0f}"),
              ("CPU seconds, all pipeline processes (lower is better)", tc["cpu_s"], pc["cpu_s"], "{:,.1f} s"),
              ("total peak RSS, MB (lower is better)", mb(tc["peak_rss_kb_total"]), mb(pc["peak_rss_kb_total"]), "{:,.0f} MB")]
    W, ph, left, barw = 720, 92, 120, 470
    H = 50 + ph * len(panels) + 30
    s = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
         f'<text x="10" y="22" font-size="15" font-weight="bold">Tributary vs the paper stack (Flume, Kafka, Spark Streaming): {rows:,} rows</text>']
    for i, (title, a, b, fmtv) in enumerate(panels):
        y = 44 + i * ph
        mx = max(a, b) or 1
        s.append(f'<text x="10" y="{y + 12}" font-weight="bold">{title}</text>')
        for j, (name, v, col) in enumerate((("Tributary", a, "#3b7dd8"), ("paper stack", b, "#d8813b"))):
            yy = y + 20 + j * 30
            w = max(1, int(barw * v / mx))
            s.append(f'<text x="{left - 6}" y="{yy + 16}" text-anchor="end">{name}</text>'
                     f'<rect x="{left}" y="{yy}" width="{w}" height="22" fill="{col}"/>'
                     f'<text x="{left + w + 5}" y="{yy + 16}">{fmtv.format(v)}</text>')
    s.append(f'<text x="10" y="{H - 10}" font-size="10" fill="#555">Kafka broker (shared) not included; same machine, same data, same local Kafka; '
             f'CSVs equal to the exact recount: Tributary {"yes" if tc["all_csv_equal"] else "NO"}, paper stack {"yes" if pc["all_csv_equal"] else "NO"}</text>')
    s.append("</svg>")
    text = "\n".join(s) + "\n"
    import xml.etree.ElementTree as ET
    ET.fromstring(text)  # well-formed, or fail loudly
    with open(svg_out, "w") as f:
        f.write(text)
    print(f"wrote {svg_out}")
# Exit status: 1 if a clean run was incomplete or wrong, or Tributary's fault run is not exact.
bad = any(not r["complete"] or not r["all_csv_equal"] for r in (tc, pc) if r)
tf = res.get("tributary-fault")
if tf and not tf["all_csv_equal"]:
    bad = True
sys.exit(1 if bad else 0)
PY
RC=$?
set -e
OK=1
[ "$RC" = 0 ] || OK=0
exit "$RC"
