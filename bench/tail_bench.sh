#!/usr/bin/env bash
# Tail of a file of 100-byte lines, side by side in one run: Tributary's agent (tail source
# into a channel), rsyslog (imfile inotify -> Direct-queue ruleset -> async omfile), and
# `cat file > /dev/null` as the I/O ceiling. Everything in /dev/shm (this measures CPU, not the
# disk); each figure the median of --repeat runs; ratios against rsyslog and cat of the same run.
# Timed two ways: from the collector's start, and with the collector already running when the
# file appears (the *_running figures).
#
#   bash bench/tail_bench.sh [--lines N] [--repeat R] [--json FILE]   (needs a release build and rsyslog)
# --json writes the figures for `tributary bench --suite ingest`, which runs this script.
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin"  # printf %f and bc agree on '.'; rsyslogd is in /usr/sbin
cd "$(dirname "$0")/.."
lines=2000000
repeat=3
json=""
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    --json) json="$2"; shift 2 ;;
    *) echo "tail_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin="$PWD/build/release/tools/tributary"
[ -x "$bin" ] || bash tools/setup.sh build
command -v rsyslogd > /dev/null || { echo "tail_bench.sh: needs rsyslog (apt-get install rsyslog)" >&2; exit 2; }
work="$(mktemp -d /dev/shm/tributary-tail-bench.XXXXXX)"
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

source bench/lib.sh  # now, cpu_of, anon_of (peak anonymous RSS, kB), median, make_lines, records_in
make_lines "$work/in.log" "$lines"
bytes=$(stat -c %s "$work/in.log")

run_cat() {
  local t0 t1
  t0=$(now); cat "$work/in.log" > /dev/null; t1=$(now)
  echo "$(echo "$t1 - $t0" | bc -l) 0 0"
}

# agent_toml DIR PATH PRETOUCH and rsyslog_conf DIR PATH: each collector's configuration,
# reading PATH (a file or a glob) into DIR.
agent_toml() {
  cat > "$1/agent.toml" <<EOF
[agent]
name = "bench"
[channels.c]
path = "$1/c.chan"
capacity = "512M"
max_payload = "64K"
pretouch = $3
[sources.log]
type = "tail"
channels = ["c"]
paths = ["$2"]
max_line = "64K"
EOF
}
rsyslog_conf() {
  cat > "$1/rsyslog.conf" <<EOF
global(workDirectory="$1" maxMessageSize="64k")
module(load="imfile" mode="inotify")
template(name="msgonly" type="string" string="%msg%\n")
ruleset(name="out" queue.type="Direct") {
  action(type="omfile" file="$1/out.log" template="msgonly" asyncWriting="on" ioBufferSize="1m"
         flushOnTXEnd="off")
}
input(type="imfile" file="$2" tag="bench" ruleset="out" readMode="0" persistStateInterval="0")
EOF
}

# pretouch = true: the ring is faulted in at start (steady state, as after its first lap);
# run_tributary_cold leaves it to fault page by page during the run.
run_tributary() { tributary_with true; }
run_tributary_cold() { tributary_with false; }
tributary_with() {
  local d="$work/t" t0 t1 pid cpu rss
  rm -rf "$d"; mkdir -p "$d"
  agent_toml "$d" "$work/in.log" "$1"
  "$bin" channel create "$d/c.chan" --capacity 512M --max-payload 64K > /dev/null  # not timed
  t0=$(now)
  "$bin" agent --config "$d/agent.toml" 2> "$d/agent.log" &
  pid=$!
  wait_until 300 $pid "the agent reading $lines lines (see $d/agent.log)" channel_has "$d/c.chan" "$lines" || return 1
  t1=$(now)
  cpu=$(cpu_of $pid); rss=$(anon_of $pid)
  kill -TERM $pid; wait $pid || true
  echo "$(echo "$t1 - $t0" | bc -l) $cpu $rss"
}

run_rsyslog() {
  local d="$work/r" t0 t1 pid cpu rss want
  rm -rf "$d"; mkdir -p "$d"
  rsyslog_conf "$d" "$work/in.log"
  want=$bytes
  t0=$(now)
  rsyslogd -n -f "$d/rsyslog.conf" -i "$d/pid" 2> "$d/rsyslog.log" &
  pid=$!
  wait_until 300 $pid "rsyslogd writing $want bytes (see $d/rsyslog.log)" file_has "$d/out.log" "$want" || return 1
  t1=$(now)
  cpu=$(cpu_of $pid); rss=$(anon_of $pid)
  kill -TERM $pid; wait $pid || true
  echo "$(echo "$t1 - $t0" | bc -l) $cpu $rss"
}


# The collectors already running, as on a node: each watches a directory holding a probe file of
# 3 lines (300 B: a tail reads no file shorter than its 256-byte fingerprint); once the probe is
# through (a readiness condition, not a sleep), the clock starts and the log file is hard-linked
# into the directory (the file appears whole at once). Start-up and the ring's pre-faulting are
# outside these figures.
make_lines "$work/probe.log" 3 900000000  # first bytes unlike the log's: not taken for a copy of it
link_and_wait() {  # link_and_wait PID DIR DONE: $result as "seconds cpu-seconds anon-kB" of PID
  local pid="$1" dir="$2" done="$3" cpu0 t0 t1
  cpu0=$(cpu_of "$pid"); t0=$(now)
  ln "$work/in.log" "$dir/a.log"
  wait_until 300 "$pid" "the collector reading the log (see $dir/..)" $done || return 1
  t1=$(now)
  local figures
  figures="$(echo "$t1 - $t0" | bc -l) $(echo "$(cpu_of "$pid") - $cpu0" | bc -l) $(anon_of "$pid")"
  kill -TERM "$pid"; wait "$pid" || true  # gone before the caller reads the figures and goes on
  echo "$figures"
}
agent_has() { channel_has "$work/tr/c.chan" "$1"; }
run_tributary_running() {
  local d="$work/tr" pid
  rm -rf "$d"; mkdir -p "$d/in"
  cp "$work/probe.log" "$d/in/0.log"
  agent_toml "$d" "$d/in/*.log" true
  "$bin" agent --config "$d/agent.toml" 2> "$d/agent.log" &
  pid=$!
  wait_until 60 $pid "the agent reading the probe file" agent_has 3 || return 1
  link_and_wait $pid "$d/in" "agent_has $((lines + 3))"
}
rsyslog_has() { file_has "$work/rr/out.log" "$1"; }
run_rsyslog_running() {
  local d="$work/rr" pid
  rm -rf "$d"; mkdir -p "$d/in"
  cp "$work/probe.log" "$d/in/0.log"
  rsyslog_conf "$d" "$d/in/*.log"
  rsyslogd -n -f "$d/rsyslog.conf" -i "$d/pid" 2> "$d/rsyslog.log" &
  pid=$!
  wait_until 60 $pid "rsyslogd reading the probe file" rsyslog_has 300 || return 1
  link_and_wait $pid "$d/in" "rsyslog_has $((bytes + 300))"
}

declare -A secs cpus rsss
for name in cat tributary tributary_cold rsyslog tributary_running rsyslog_running; do
  s=(); c=(); r=()
  for i in $(seq 1 "$repeat"); do
    read -r t cpu rss < <("run_$name")
    s+=("$t"); c+=("$cpu"); r+=("$rss")
    echo "  $name run $i: ${t}s, ${cpu} CPU-s, ${rss} kB anon RSS" >&2
  done
  secs[$name]=$(printf '%s\n' "${s[@]}" | median)
  cpus[$name]=$(printf '%s\n' "${c[@]}" | median)
  rsss[$name]=$(printf '%s\n' "${r[@]}" | median)
done

echo "lines: $lines x 100 B ($((bytes / 1048576)) MiB), median of $repeat, $(nproc) cores, $(uname -r)"
printf '%-18s %12s %10s %14s %12s\n' "" "lines/s" "MB/s" "CPU-s/M lines" "anon RSS MB"
for name in cat tributary tributary_cold rsyslog tributary_running rsyslog_running; do
  t=${secs[$name]}
  printf '%-18s %12.0f %10.1f %14.2f %12.1f\n' "$name" "$(echo "$lines / $t" | bc -l)" \
    "$(echo "$bytes / $t / 1000000" | bc -l)" "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" \
    "$(echo "${rsss[$name]} / 1024" | bc -l)"
done
echo "tributary / rsyslog, lines/s: $(echo "${secs[rsyslog]} / ${secs[tributary]}" | bc -l | cut -c1-5)x;" \
     "CPU per line: $(echo "${cpus[tributary]} / ${cpus[rsyslog]}" | bc -l | cut -c1-5) of rsyslog's;" \
     "tributary / cat: $(echo "${secs[cat]} / ${secs[tributary]}" | bc -l | cut -c1-5)"
echo "already running: tributary / rsyslog, lines/s: $(echo "${secs[rsyslog_running]} / ${secs[tributary_running]}" | bc -l | cut -c1-5)x;" \
     "CPU per line: $(echo "${cpus[tributary_running]} / ${cpus[rsyslog_running]}" | bc -l | cut -c1-5) of rsyslog's"
if [ -n "$json" ]; then
  {
    echo '{"benchmarks": ['
    sep=""
    for name in cat tributary tributary_cold rsyslog tributary_running rsyslog_running; do
      printf '%s  {"name": "%s", "items_per_second": %.0f, "cpu_us_per_line": %.4f, "anon_rss_kb": %s, "repetitions": %s}' \
        "$sep" "$name" "$(echo "$lines / ${secs[$name]}" | bc -l)" "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" \
        "${rsss[$name]}" "$repeat"
      sep=$',\n'
    done
    printf '\n], "ratios": [\n'
    printf '  {"name": "tail: tributary vs rsyslog (lines/s)", "value": %.4f},\n' "$(echo "${secs[rsyslog]} / ${secs[tributary]}" | bc -l)"
    printf '  {"name": "tail: rsyslog CPU per line vs tributary", "value": %.4f},\n' "$(echo "${cpus[rsyslog]} / ${cpus[tributary]}" | bc -l)"
    printf '  {"name": "tail, already running: tributary vs rsyslog (lines/s)", "value": %.4f},\n' \
      "$(echo "${secs[rsyslog_running]} / ${secs[tributary_running]}" | bc -l)"
    printf '  {"name": "tail, already running: rsyslog CPU per line vs tributary", "value": %.4f}\n]}\n' \
      "$(echo "${cpus[rsyslog_running]} / ${cpus[tributary_running]}" | bc -l)"
  } > "$json"
fi
