#!/usr/bin/env bash
# Scaling: the cost curve of each stage as the payload grows (16 B -> 64 KiB) and as producers
# grow (1 -> 8 on this machine's cores), each point beside a peer doing the same job in the
# same run, so that the curve is read as ratios, not as this VM's speed of the moment.
#
#   ingest   the agent's TCP source into a channel, beside socat accepting the same clients and
#            appending what it reads to a file in /dev/shm (about the ceiling of loopback TCP);
#            payload: one client, lines of S bytes; producers: P clients, lines of 100 B.
#   uplink   files -> Kafka (librdkafka's mock cluster, `tributary broker`), beside kcat -P with
#            the same producer settings;
#            payload: a channel of lines of S bytes shipped by `tributary uplink`, kcat -P -l
#            of the same file; producers: P agents tailing P files into one channel while one
#            uplink ships it, beside P kcat -P processes at once (lines of 100 B).
#   analyze  payload: the paper's pipeline from memory (hotloop_bench analyze/pipeline), events
#            padded to S bytes with a string member between the fields it reads, beside
#            simdjson's bare iterate_many over the same bytes; producers: `tributary analyze`
#            on a channel that P agents write live (each tailing one of P replayed logs),
#            beside the same analyzer draining the same events from a channel filled before.
# Each figure is the median of --repeat runs, the two sides interleaved; wall time from the
# first byte sent (ingest) or the process start (uplink) until the last event is in the
# channel / acknowledged.
#
# MB/s counts the lines' bytes, newline included.
#
#   bash bench/scaling.sh [--stage ingest|uplink|analyze|all] [--repeat R] [--quick] [--json FILE]
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin"
cd "$(dirname "$0")/.."
stage=all
repeat=3
quick=no
json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --stage) stage="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --quick) quick=yes; shift ;;
    --json) json="$2"; shift 2 ;;
    *) echo "scaling.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
case "$stage" in ingest|uplink|analyze|all) ;; *) echo "scaling.sh: unknown stage '$stage'" >&2; exit 2 ;; esac
bin="$PWD/build/release/tools/tributary"
hotloop="$PWD/build/release/bench/hotloop_bench"
[ -x "$bin" ] && [ -x "$hotloop" ] || bash tools/setup.sh build
need=(bc python3)
case "$stage" in ingest) need+=(socat) ;; uplink | analyze) need+=(kcat /usr/bin/time) ;; all) need+=(socat kcat /usr/bin/time) ;; esac
for tool in "${need[@]}"; do
  command -v "$tool" > /dev/null ||
    { echo "scaling.sh: needs $tool (apt-get install bc socat kcat time)" >&2; exit 2; }
done
work="$(mktemp -d /dev/shm/tributary-scaling.XXXXXX)"
pids=()  # the long-running processes started and not yet reaped
untrack() { local keep=() p; for p in "${pids[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done; pids=("${keep[@]}"); }
stop() { kill "$@" 2> /dev/null || true; wait "$@" 2> /dev/null || true; local p; for p in "$@"; do untrack "$p"; done; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2> /dev/null || true; done
  pkill -f "$work" 2> /dev/null || true  # clients, kcats and agents: each names a file in $work
  rm -rf "$work"
}
trap cleanup EXIT
source bench/lib.sh

sizes=(16 64 256 1024 4096 16384 65536)
producers=(1 2 4 8)
budget=$((64 << 20))  # bytes per payload point (at least 2 000 events, at most 1 M)
total_p=1000000        # events per producer point
if [ "$quick" = yes ]; then budget=$((8 << 20)); total_p=100000; fi
events_for() { local n=$((budget / $1)); [ "$n" -lt 2000 ] && n=2000; [ "$n" -gt 1000000 ] && n=1000000; echo "$n"; }
rows=()  # "stage|dimension|point|tributary events/s|peer events/s|tributary MB/s|peer name|bytes per event"

# sized_lines FILE N BYTES FIRST: N lines of BYTES bytes each, newline included, numbered from FIRST.
sized_lines() {
  python3 - "$@" <<'PY'
import sys
path, n, size, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(path, "w") as f:
    for i in range(first, first + n):
        head = f"{i} "
        f.write(head + "x" * (size - 1 - len(head)) + "\n")
PY
}
# split_lines P: the producer points' input, $total_p lines of 100 B numbered across P files
# (work/lines.1 .. lines.P, listed in $split_files).
split_lines() {
  local i
  split_files=()
  for i in $(seq 1 "$1"); do
    sized_lines "$work/lines.$i" $((total_p / $1)) 100 $(((i - 1) * (total_p / $1)))
    split_files+=("$work/lines.$i")
  done
}
# run_pair R A B: interleaves run_A and run_B R times (each sets $result to "seconds cpu"), and
# leaves their median seconds in $sec_a and $sec_b and CPU seconds in $cpu_a and $cpu_b.
run_pair() {
  local r="$1" a="$2" b="$3" i ta=() tb=() ca=() cb=() t c
  for i in $(seq 1 "$r"); do
    "run_$a"; read -r t c <<< "$result"; ta+=("$t"); ca+=("$c"); echo "    $a run $i: ${t}s, ${c} CPU-s" >&2
    "run_$b"; read -r t c <<< "$result"; tb+=("$t"); cb+=("$c"); echo "    $b run $i: ${t}s, ${c} CPU-s" >&2
  done
  sec_a=$(printf '%s\n' "${ta[@]}" | median); sec_b=$(printf '%s\n' "${tb[@]}" | median)
  cpu_a=$(printf '%s\n' "${ca[@]}" | median); cpu_b=$(printf '%s\n' "${cb[@]}" | median)
}
# The channel capacity (a power of two, MiB) for N events of S bytes: 48-byte header and
# alignment each, and slack.
capacity_for() {
  local need=$((($1 * ($2 + 64)) / 1048576 + 64)) c=64
  while [ "$c" -lt "$need" ]; do c=$((c * 2)); done
  echo "${c}M"
}

# ---- ingest: TCP source -> channel, beside socat

# send_files PORT FILE...: one client per file, each writing it whole into its own connection.
send_files() {
  local port="$1" f ps=()
  shift
  for f in "$@"; do
    bash -c 'cat "$1" > "/dev/tcp/127.0.0.1/$2"' _ "$f" "$port" &
    ps+=($!)
  done
  local bad=0 q
  for q in "${ps[@]}"; do wait "$q" || bad=1; done
  [ "$bad" = 0 ] || { echo "scaling.sh: a client could not send its lines to port $port" >&2; exit 1; }
}
ingest_files=() ingest_lines=0 ingest_bytes=0
# socat appends what it reads to a file in /dev/shm (the agent too writes every line to
# memory), and its clock stops when the file holds every byte, not when the clients are done.
run_socat() {
  local port pid t0 t1
  port=$(free_port)
  rm -f "$work/socat.out"
  socat -u "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr,backlog=128" "OPEN:$work/socat.out,creat,append" &
  pid=$!; pids+=("$pid")
  wait_listening "$port"
  t0=$(now); send_files "$port" "${ingest_files[@]}"
  wait_until 300 "$pid" "socat writing $ingest_bytes bytes" file_has "$work/socat.out" "$ingest_bytes" || exit 1
  t1=$(now)
  stop "$pid"
  rm -f "$work/socat.out"
  result="$(echo "$t1 - $t0" | bc -l) 0"
}
run_tcp_agent() {
  local d="$work/agent" port pid cpu0 t0 t1
  rm -rf "$d"; mkdir -p "$d"
  port=$(free_port)
  cat > "$d/agent.toml" <<EOF
[agent]
name = "scaling"
[channels.c]
path = "$d/c.chan"
capacity = "$(capacity_for "$ingest_lines" "$((ingest_bytes / ingest_lines))")"
max_payload = "128K"
pretouch = true
[sources.net]
type = "tcp"
channels = ["c"]
listen = "127.0.0.1:$port"
max_line = "128K"
EOF
  "$bin" agent --config "$d/agent.toml" 2> "$d/agent.log" &
  pid=$!; pids+=("$pid")
  wait_listening "$port"
  cpu0=$(cpu_of "$pid"); t0=$(now)
  send_files "$port" "${ingest_files[@]}"
  wait_until 300 "$pid" "the agent's tcp source (see $d/agent.log)" channel_has "$d/c.chan" "$ingest_lines" || exit 1
  t1=$(now)
  result="$(echo "$t1 - $t0" | bc -l) $(echo "$(cpu_of "$pid") - $cpu0" | bc -l)"
  stop "$pid"
}
ingest_point() {  # DIMENSION POINT BYTES-PER-LINE
  run_pair "$repeat" tcp_agent socat
  echo "  ingest $1 $2: tributary $(echo "$ingest_lines / $sec_a" | bc -l | cut -d. -f1) lines/s," \
       "socat $(echo "$ingest_lines / $sec_b" | bc -l | cut -d. -f1) lines/s" >&2
  rows+=("ingest|$1|$2|$(echo "$ingest_lines / $sec_a" | bc -l)|$(echo "$ingest_lines / $sec_b" | bc -l)|$(echo "$ingest_bytes / $sec_a / 1000000" | bc -l)|socat|$3")
}
ingest() {
  echo "ingest: the TCP source into a channel beside socat (payload: 1 client; producers: P clients, 100 B lines)" >&2
  local s n p
  for s in "${sizes[@]}"; do
    n=$(events_for "$s")
    sized_lines "$work/lines" "$n" "$s" 0
    ingest_files=("$work/lines") ingest_lines=$n ingest_bytes=$((n * s))
    ingest_point payload "$s" "$s"
  done
  for p in "${producers[@]}"; do
    split_lines "$p"
    ingest_files=("${split_files[@]}") ingest_lines=$((total_p / p * p)) ingest_bytes=$((total_p / p * p * 100))
    ingest_point producers "$p" 100
    rm -f "$work"/lines.*
  done
}

# ---- uplink: files -> mock Kafka, beside kcat -P

broker_pid="" boot=""
settings=(-X enable.idempotence=true -X acks=all -X compression.type=lz4 -X linger.ms=5 -X batch.size=1000000)
start_broker() {
  "$bin" broker --brokers 1 --topics "bench:4" > "$work/broker.out" 2> "$work/broker.log" &
  broker_pid=$!; pids+=("$broker_pid")
  wait_until 60 "$broker_pid" "tributary broker (see $work/broker.log)" grep -q '^bootstrap ' "$work/broker.out" || exit 1
  boot=$(awk '/^bootstrap / {print $2}' "$work/broker.out")
  # The first producer of a fresh mock cluster waits about a second for the topic's metadata:
  # one message first, so that neither side of the first run pays for it.
  echo warm | timeout 60 kcat -P -b "$boot" -t bench "${settings[@]}" ||
    { echo "scaling.sh: the mock cluster at $boot does not take a message" >&2; exit 1; }
}
stop_broker() { stop "$broker_pid"; }
shipped() {  # CHANNEL N: N records written and the uplink's cursor at the write position
  [ "$(stat_field "$1" records_written || echo 0)" -ge "$2" ] &&
    [ "$(committed_of "$1" || echo 0)" = "$(stat_field "$1" write_position)" ]
}
up_files=() up_lines=0 up_bytes=0
# fill_agent NAME CHANNEL FILE: an agent tailing FILE into CHANNEL (started, pid in $agent_pid).
fill_agent() {
  tail_agent_toml "$work/$1.toml" "$1" "$2" "$3" 128K
  "$bin" agent --config "$work/$1.toml" 2> "$work/$1.log" &
  agent_pid=$!; pids+=("$agent_pid")
}
# The payload points ship a channel filled beforehand (not timed): the uplink's own cost, timed
# to its exit (--drain: everything acknowledged and committed) as kcat is, with no poll beside it.
run_uplink_full() {
  local t0 t1 u s
  cp "$work/full.chan" "$work/run.chan"
  t0=$(now)  # (as run_kcat: /usr/bin/time's wall clock has 10 ms steps, too coarse for --quick)
  timeout 300 /usr/bin/time -o "$work/uplink.time" -f "%U %S" "$bin" uplink --channel "$work/run.chan" \
    --topic bench --bootstrap "$boot" --drain 2> "$work/uplink.log" ||
    { echo "scaling.sh: the uplink failed: $(tail -3 "$work/uplink.log")" >&2; exit 1; }
  t1=$(now)
  shipped "$work/run.chan" "$up_lines" || { echo "scaling.sh: the uplink exited before shipping everything" >&2; exit 1; }
  read -r u s < "$work/uplink.time"
  rm -f "$work/run.chan"
  result="$(echo "$t1 - $t0" | bc -l) $(echo "$u + $s" | bc -l)"
}
# The producer points run the whole path live: P agents tail P files into one channel while one
# uplink ships it; CPU is the uplink's and the agents'. (Timed by a poll of the channel, which
# runs `tributary channel stat` every 10 ms: a small cost taken from the processes measured.)
run_uplink_live() {
  local t0 t1 pid cpu i agents=()
  rm -f "$work/live.chan"
  "$bin" channel create "$work/live.chan" --capacity "$(capacity_for "$up_lines" 100)" --max-payload 128K > /dev/null
  t0=$(now)
  "$bin" uplink --channel "$work/live.chan" --topic bench --bootstrap "$boot" 2> "$work/uplink.log" &
  pid=$!; pids+=("$pid")
  for i in "${!up_files[@]}"; do fill_agent "live$i" "$work/live.chan" "${up_files[$i]}"; agents+=("$agent_pid"); done
  wait_until 300 "$pid" "tributary uplink (see $work/uplink.log)" shipped "$work/live.chan" "$up_lines" || exit 1
  t1=$(now); cpu=$(cpu_of "$pid")
  for i in "${agents[@]}"; do cpu=$(echo "$cpu + $(cpu_of "$i")" | bc -l); done
  stop "$pid" "${agents[@]}"
  result="$(echo "$t1 - $t0" | bc -l) $cpu"
}
run_kcat() {  # one kcat -P per file, at once
  local t0 t1 f ps=() cpu=0 i=0
  t0=$(now)
  for f in "${up_files[@]}"; do
    /usr/bin/time -o "$work/kcat.$i.time" -f "%U %S" kcat -P -b "$boot" -t bench "${settings[@]}" -l "$f" 2> "$work/kcat.$i.log" &
    ps+=($!); i=$((i + 1))
  done
  for i in "${!ps[@]}"; do
    wait "${ps[$i]}" || { echo "scaling.sh: kcat failed: $(tail -3 "$work/kcat.$i.log")" >&2; exit 1; }
  done
  t1=$(now)
  for i in "${!ps[@]}"; do cpu=$(echo "$cpu + $(awk '{print $1 + $2}' "$work/kcat.$i.time")" | bc -l); done
  result="$(echo "$t1 - $t0" | bc -l) $cpu"
}
uplink_point() {  # DIMENSION POINT BYTES-PER-EVENT TRIBUTARY-RUN
  run_pair "$repeat" "$4" kcat
  echo "  uplink $1 $2: tributary $(echo "$up_lines / $sec_a" | bc -l | cut -d. -f1) events/s ($cpu_a CPU-s)," \
       "kcat $(echo "$up_lines / $sec_b" | bc -l | cut -d. -f1) events/s ($cpu_b CPU-s)" >&2
  rows+=("uplink|$1|$2|$(echo "$up_lines / $sec_a" | bc -l)|$(echo "$up_lines / $sec_b" | bc -l)|$(echo "$up_bytes / $sec_a / 1000000" | bc -l)|kcat -P|$3|$(echo "$cpu_a / $cpu_b" | bc -l)")
}
uplink() {
  echo "uplink: to librdkafka's mock cluster beside kcat -P (payload: a filled channel; producers: P agents live)" >&2
  local s n p
  for s in "${sizes[@]}"; do
    n=$(events_for "$s")
    sized_lines "$work/lines" "$n" "$s" 0
    up_files=("$work/lines") up_lines=$n up_bytes=$((n * s))
    rm -f "$work/full.chan"
    "$bin" channel create "$work/full.chan" --capacity "$(capacity_for "$n" "$s")" --max-payload 128K > /dev/null
    fill_agent fill "$work/full.chan" "$work/lines"
    wait_until 300 "$agent_pid" "the agent filling the channel (see $work/fill.log)" channel_has "$work/full.chan" "$n" || exit 1
    stop "$agent_pid"
    start_broker  # a fresh one per point: the mock cluster keeps every message in memory
    uplink_point payload "$s" "$s" uplink_full
    stop_broker
    rm -f "$work/full.chan"
  done
  for p in "${producers[@]}"; do
    split_lines "$p"
    up_files=("${split_files[@]}") up_lines=$((total_p / p * p)) up_bytes=$((total_p / p * p * 100))
    start_broker
    uplink_point producers "$p" 100 uplink_live
    stop_broker
    rm -f "$work"/lines.*
  done
}

# ---- analyze: the pipeline from memory, beside bare iterate_many

analyze() {
  echo "analyze: the paper's pipeline from memory beside bare iterate_many, events padded to S bytes" >&2
  local s scale j reps=5 ours peer
  [ "$quick" = yes ] && reps=3
  for s in 0 256 1024 4096 16384 65536; do
    # about the same bytes per repetition at every size (the natural events are ~110 B)
    scale=$(echo "x = 256 / ($s + 110); if (x > 1) x = 1; x" | bc -l)
    [ "$quick" = yes ] && scale=$(echo "$scale / 4" | bc -l)
    j="$work/analyze.$s.json"
    "$hotloop" --time --reps "$reps" --scale "$scale" --event-bytes "$s" --loop analyze/pipeline \
      --loop baseline/simdjson_iterate_many --json "$j" > "$work/analyze.$s.log" 2>&1 ||
      { echo "scaling.sh: hotloop_bench failed: $(tail -3 "$work/analyze.$s.log")" >&2; exit 1; }
    ours=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print({b["name"]: b["items_per_second"] for b in d["benchmarks"]}[sys.argv[2]])' "$j" analyze/pipeline)
    peer=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print({b["name"]: b["items_per_second"] for b in d["benchmarks"]}[sys.argv[2]])' "$j" baseline/simdjson_iterate_many)
    local bytes=$s
    [ "$s" = 0 ] && bytes=110
    echo "  analyze payload $bytes: pipeline $(echo "$ours" | cut -d. -f1) events/s, iterate_many $(echo "$peer" | cut -d. -f1)" >&2
    rows+=("analyze|payload|$bytes|$ours|$peer|$(echo "$ours * $bytes / 1000000" | bc -l)|iterate_many|$bytes")
  done
  # Producers: the paper's analyzer reading a channel live while P agents tail P replayed logs
  # into it, against the same analyzer draining the same events from a channel filled before
  # (no producer running): what P concurrent producers on the same 2 cores cost the stage.
  # status.json is written every 50 ms (the checkpoint interval) and the clock stops at the
  # first one that accounts for every event: the live figure is low by at most 50 ms.
  echo "analyze: the paper's analyzer on a channel, P agents writing it live vs a drained filled channel" >&2
  local p
  "$bin" gen tianchi --users 10000 --rows "$total_p" --out "$work/agen" > /dev/null
  for p in "${producers[@]}"; do
    rm -rf "$work/areplay"
    "$bin" replay "$work/agen/user_log_format1.csv" --to "tail:$work/areplay" --concurrency "$p" > /dev/null
    an_files=("$work"/areplay/replay-*.log)
    an_lines=$(cat "${an_files[@]}" | wc -l)
    an_bytes=$(cat "${an_files[@]}" | wc -c)
    run_pair "$repeat" analyze_live analyze_drained
    echo "  analyze producers $p: live $(echo "$an_lines / $sec_a" | bc -l | cut -d. -f1) events/s," \
         "drained $(echo "$an_lines / $sec_b" | bc -l | cut -d. -f1) events/s" >&2
    rows+=("analyze|producers|$p|$(echo "$an_lines / $sec_a" | bc -l)|$(echo "$an_lines / $sec_b" | bc -l)|$(echo "$an_bytes / $sec_a / 1000000" | bc -l)|drained|$((an_bytes / an_lines))")
  done
}
an_files=() an_lines=0 an_bytes=0
# analyze_config CHANNEL STATE: the paper's analyzer on CHANNEL, checkpoints every 50 ms.
analyze_config() {
  "$bin" gen tianchi-config --input "$(printf 'type = "channel"\npath = "%s"' "$1")" \
    --user-info "$work/agen/user_info_format1.csv" --state-dir "$2" --checkpoint-ms 50 > "$work/analyze.toml"
}
# fill_channel_with_agents CHANNEL: one agent per file of an_files (pids in $agents).
fill_channel_with_agents() {
  local i
  agents=()
  "$bin" channel create "$1" --capacity "$(capacity_for "$an_lines" $((an_bytes / an_lines)))" > /dev/null
  for i in "${!an_files[@]}"; do fill_agent "an$i" "$1" "${an_files[$i]}"; agents+=("$agent_pid"); done
}
all_accounted() { [ "$(accounted "$1")" = "$an_lines" ]; }
run_analyze_live() {
  local t0 t1 pid cpu i
  rm -rf "$work/an.chan" "$work/astate"
  analyze_config "$work/an.chan" "$work/astate"
  t0=$(now)
  fill_channel_with_agents "$work/an.chan"
  "$bin" analyze --config "$work/analyze.toml" 2> "$work/analyze.log" &
  pid=$!; pids+=("$pid")
  wait_until 300 "$pid" "the analyzer reading live (see $work/analyze.log)" all_accounted "$work/astate" || exit 1
  t1=$(now); cpu=$(cpu_of "$pid")
  for i in "${agents[@]}"; do cpu=$(echo "$cpu + $(cpu_of "$i")" | bc -l); done
  stop "$pid" "${agents[@]}"
  result="$(echo "$t1 - $t0" | bc -l) $cpu"
}
run_analyze_drained() {
  local t0 t1 u s
  rm -rf "$work/an.chan" "$work/astate"
  fill_channel_with_agents "$work/an.chan"
  wait_until 300 - "the agents filling the channel" channel_has "$work/an.chan" "$an_lines" || exit 1
  stop "${agents[@]}"
  analyze_config "$work/an.chan" "$work/astate"
  t0=$(now)
  /usr/bin/time -o "$work/an.time" -f "%U %S" "$bin" analyze --config "$work/analyze.toml" --drain 2> "$work/analyze.log" ||
    { echo "scaling.sh: analyze --drain failed (see $work/analyze.log)" >&2; exit 1; }
  t1=$(now)
  all_accounted "$work/astate" || { echo "scaling.sh: the drained analyzer accounted for $(accounted "$work/astate") of $an_lines" >&2; exit 1; }
  read -r u s < "$work/an.time"
  result="$(echo "$t1 - $t0" | bc -l) $(echo "$u + $s" | bc -l)"
}

case "$stage" in
  all) ingest; uplink; analyze ;;
  *) "$stage" ;;
esac

echo
echo "Scaling, median of $repeat, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
printf '%-8s %-10s %7s %14s %14s %9s %8s %-13s\n' stage dimension point "events/s" "peer events/s" "MB/s" ratio peer
for r in "${rows[@]}"; do
  IFS='|' read -r st dim pt ours peer mbs pname _ <<< "$r"
  printf '%-8s %-10s %7s %14.0f %14.0f %9.1f %8.2f %-13s\n' "$st" "$dim" "$pt" "$ours" "$peer" "$mbs" \
    "$(echo "$ours / $peer" | bc -l)" "$pname"
done
if [ -n "$json" ]; then
  {
    echo '{"context": {"cores": '"$(nproc)"', "repetitions": '"$repeat"', "quick": "'"$quick"'"}, "benchmarks": ['
    sep=""
    for r in "${rows[@]}"; do
      IFS='|' read -r st dim pt ours peer mbs pname bpe cpu <<< "$r"
      printf '%s  {"name": "%s/%s/%s", "items_per_second": %.0f, "peer": "%s", "peer_items_per_second": %.0f, "mb_per_second": %.2f, "bytes_per_event": %s, "ratio": %.4f%s}' \
        "$sep" "$st" "$dim" "$pt" "$ours" "$pname" "$peer" "$mbs" "$bpe" "$(echo "$ours / $peer" | bc -l)" \
        "$([ -n "${cpu:-}" ] && printf ', "cpu_vs_peer": %.4f' "$cpu")"
      sep=$',\n'
    done
    printf '\n]}\n'
  } > "$json"
fi
