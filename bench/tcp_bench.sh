#!/usr/bin/env bash
# The TCP source: lines of 100 B from 4 loopback clients at once, side by side in one run with
# rsyslog (imptcp -> Direct-queue ruleset -> async omfile, raw lines out) and, as the ceiling of
# loopback TCP on this machine, socat accepting the same clients and discarding what it reads.
# Each figure is the median of --repeat runs, interleaved; ratios against rsyslog of the same
# run. The receivers listen before the clock starts: this times the transfer, from the
# clients' start until the last line is in the channel / the output file.
#
#   bash bench/tcp_bench.sh [--lines N] [--clients C] [--repeat R]   (needs a release build, rsyslog, socat)
set -euo pipefail
export LC_ALL=C PATH="$PATH:/usr/sbin"
cd "$(dirname "$0")/.."
lines=4000000
clients=4
repeat=3
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines="$2"; shift 2 ;;
    --clients) clients="$2"; shift 2 ;;
    --repeat) repeat="$2"; shift 2 ;;
    *) echo "tcp_bench.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin="$PWD/build/release/tools/tributary"
[ -x "$bin" ] || bash tools/setup.sh build
for tool in rsyslogd socat bc; do
  command -v "$tool" > /dev/null || { echo "tcp_bench.sh: needs $tool (apt-get install rsyslog socat bc)" >&2; exit 2; }
done
work="$(mktemp -d /dev/shm/tributary-tcp-bench.XXXXXX)"
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT
source bench/lib.sh  # now, cpu_of, anon_of, median, interleave, make_lines, records_in

each=$((lines / clients))
lines=$((each * clients))
for c in $(seq 1 "$clients"); do make_lines "$work/in.$c" "$each" $(((c - 1) * each)); done
bytes=$((lines * 100))

# The clients: one bash process per file, writing it whole into its own connection.
send_all() {
  local port="$1" c pids=()
  for c in $(seq 1 "$clients"); do
    bash -c 'cat "$1" > "/dev/tcp/127.0.0.1/$2"' _ "$work/in.$c" "$port" &
    pids+=($!)
  done
  wait "${pids[@]}"
}

# The ceiling: socat accepting every connection and discarding what it reads.
run_socat() {
  local port pid t0 t1
  port=$(free_port)
  socat -u "TCP-LISTEN:$port,bind=127.0.0.1,fork,reuseaddr" OPEN:/dev/null &
  pid=$!
  wait_listening "$port"
  t0=$(now); send_all "$port"; t1=$(now)
  kill $pid; wait $pid 2> /dev/null || true
  result="$(echo "$t1 - $t0" | bc -l) 0 0"
}

# timed_transfer PID PORT DONE: the clients send everything to PORT, where process PID listens;
# the clock runs until the command DONE succeeds (bounded at 120 s). Sets $result to
# "seconds cpu-seconds anon-RSS-kB" of PID over the transfer, then stops PID.
timed_transfer() {
  local pid="$1" port="$2" done="$3" cpu0 t0 t1
  wait_listening "$port"
  cpu0=$(cpu_of "$pid"); t0=$(now)
  send_all "$port"
  wait_until 120 "$pid" "the receiver: '$done' (see $work)" $done || return 1
  t1=$(now)
  result="$(echo "$t1 - $t0" | bc -l) $(echo "$(cpu_of "$pid") - $cpu0" | bc -l) $(anon_of "$pid")"
  kill -TERM "$pid"; wait "$pid" || true
}

agent_has_all() { [ "$(records_in "$work/t/c.chan")" -ge "$lines" ]; }
run_tributary() {
  local d="$work/t" port
  rm -rf "$d"; mkdir -p "$d"
  port=$(free_port)
  cat > "$d/agent.toml" <<EOF
[agent]
name = "bench"
[channels.c]
path = "$d/c.chan"
capacity = "1G"
pretouch = true
[sources.net]
type = "tcp"
channels = ["c"]
listen = "127.0.0.1:$port"
EOF
  "$bin" agent --config "$d/agent.toml" 2> "$d/agent.log" &
  timed_transfer $! "$port" agent_has_all
}

rsyslog_has_all() { [ "$(stat -c %s "$work/r/out.log" 2> /dev/null || echo 0)" -ge "$bytes" ]; }
run_rsyslog() {
  local d="$work/r" port
  rm -rf "$d"; mkdir -p "$d"
  port=$(free_port)
  cat > "$d/rsyslog.conf" <<EOF
global(workDirectory="$d" maxMessageSize="64k")
module(load="imptcp" threads="2")
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="out" queue.type="Direct") {
  action(type="omfile" file="$d/out.log" template="raw" asyncWriting="on" ioBufferSize="1m" flushOnTXEnd="off")
}
input(type="imptcp" port="$port" address="127.0.0.1" ruleset="out" supportOctetCountedFraming="off")
EOF
  rsyslogd -n -f "$d/rsyslog.conf" -i "$d/pid" 2> "$d/rsyslog.log" &
  timed_transfer $! "$port" rsyslog_has_all
}

declare -A secs cpus mems
interleave "$repeat" "$work" socat tributary rsyslog

echo "lines: $lines x 100 B from $clients loopback clients, median of $repeat, $(nproc) cores, $(uname -r)"
printf '%-12s %12s %10s %14s %12s\n' "" "lines/s" "MB/s" "CPU-s/M lines" "anon RSS MB"
for name in socat tributary rsyslog; do
  t=${secs[$name]}
  printf '%-12s %12.0f %10.1f %14.2f %12.1f\n' "$name" "$(echo "$lines / $t" | bc -l)" \
    "$(echo "$bytes / $t / 1000000" | bc -l)" "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" \
    "$(echo "${mems[$name]} / 1024" | bc -l)"
done
echo "tributary / rsyslog, lines/s: $(echo "${secs[rsyslog]} / ${secs[tributary]}" | bc -l | cut -c1-5)x;" \
     "CPU per line: $(echo "${cpus[tributary]} / ${cpus[rsyslog]}" | bc -l | cut -c1-5) of rsyslog's;" \
     "tributary / socat: $(echo "${secs[socat]} / ${secs[tributary]}" | bc -l | cut -c1-5)"
