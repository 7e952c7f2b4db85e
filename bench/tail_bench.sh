#!/usr/bin/env bash
# Tail of a file of 100-byte lines, side by side in one run: Tributary's agent (tail source
# into a channel), rsyslog (imfile inotify -> Direct-queue ruleset -> async omfile), syslog-ng
# (file source, no parsing, a flow-control window of 100,000 -> file destination), and
# `cat file > /dev/null` as the I/O ceiling. Everything in /dev/shm (this measures CPU, not the
# disk); each figure the median of --repeat runs; ratios against each peer and cat of the same run.
# Timed two ways: from the collector's start, and with the collector already running when the
# file appears (the *_running figures).
#
#   bash bench/tail_bench.sh [--lines N] [--repeat R] [--json FILE]   (needs a release build and rsyslog or
#                                                                      syslog-ng; the peers found run)
# Debian's syslog-ng-core conflicts with rsyslog: unless it is installed, it is unpacked beside
# rsyslog (apt-get download + dpkg -x, into $TRIBUTARY_SYSLOG_NG, default
# ~/.cache/tributary/syslog-ng) and run from there.
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
peers=()
command -v rsyslogd > /dev/null && peers+=(rsyslog)
sng_root="${TRIBUTARY_SYSLOG_NG:-$HOME/.cache/tributary/syslog-ng}"
sng=()
if command -v syslog-ng > /dev/null; then
  sng=(syslog-ng)
else
  if [ ! -x "$sng_root/usr/sbin/syslog-ng" ] && command -v apt-get > /dev/null; then
    mkdir -p "$sng_root"
    (cd "$sng_root" && apt-get download syslog-ng-core > /dev/null 2>&1 &&
      dpkg -x "$(ls -t syslog-ng-core_*.deb | head -1)" .) || true
  fi
  if [ -x "$sng_root/usr/sbin/syslog-ng" ]; then
    sng_modules=$(find "$sng_root/usr/lib/syslog-ng" -mindepth 1 -maxdepth 1 -type d -name '[0-9]*' | head -1)
    sng=(env LD_LIBRARY_PATH="$sng_root/usr/lib/syslog-ng" "$sng_root/usr/sbin/syslog-ng" --module-path="$sng_modules")
  fi
fi
# Usable: it parses a config with a file source and destination (its affile module loads).
sng_check="$(mktemp /tmp/tributary-syslog-ng-check.XXXXXX)"
printf '@version: 3.38\nsource s { file("/dev/null"); };\ndestination d { file("/dev/null"); };\nlog { source(s); destination(d); };\n' > "$sng_check"
if [ ${#sng[@]} -gt 0 ] && "${sng[@]}" --syntax-only -f "$sng_check" > /dev/null 2>&1; then
  peers+=(syslogng)
else
  echo "tail_bench.sh: no syslog-ng (unpack syslog-ng-core into $sng_root, and apt-get install the libraries" \
       "ldd names): its figures are left out" >&2
fi
rm -f "$sng_check"
[ ${#peers[@]} -gt 0 ] ||
  { echo "tail_bench.sh: needs rsyslog or syslog-ng (apt-get install rsyslog, or syslog-ng-core)" >&2; exit 2; }
names=(cat tributary tributary_cold "${peers[@]}" tributary_running)
[ "${peers[0]}" = rsyslog ] && names+=(rsyslog_running)
work="$(mktemp -d /dev/shm/tributary-tail-bench.XXXXXX)"
trap 'pkill -f "$work" 2>/dev/null || true; rm -rf "$work"' EXIT

source bench/lib.sh  # now, cpu_of, anon_of (peak anonymous RSS, kB), median, make_lines, records_in
make_lines "$work/in.log" "$lines"
bytes=$(stat -c %s "$work/in.log")

# timed PID T0 WHAT CMD...: waits (300 s at most) until CMD succeeds, then prints "seconds
# cpu-seconds anon-kB" of collector PID since T0, and stops it.
timed() {
  local pid="$1" t0="$2" what="$3" t1 cpu rss
  shift 3
  wait_until 300 "$pid" "$what" "$@" || return 1
  t1=$(now)
  cpu=$(cpu_of "$pid"); rss=$(anon_of "$pid")
  kill -TERM "$pid"; wait "$pid" || true
  echo "$(echo "$t1 - $t0" | bc -l) $cpu $rss"
}

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
  local d="$work/t" t0
  rm -rf "$d"; mkdir -p "$d"
  agent_toml "$d" "$work/in.log" "$1"
  "$bin" channel create "$d/c.chan" --capacity 512M --max-payload 64K > /dev/null  # not timed
  t0=$(now)
  "$bin" agent --config "$d/agent.toml" 2> "$d/agent.log" &
  timed $! "$t0" "the agent reading $lines lines (see $d/agent.log)" channel_has "$d/c.chan" "$lines"
}

run_rsyslog() {
  local d="$work/r" t0
  rm -rf "$d"; mkdir -p "$d"
  rsyslog_conf "$d" "$work/in.log"
  t0=$(now)
  rsyslogd -n -f "$d/rsyslog.conf" -i "$d/pid" 2> "$d/rsyslog.log" &
  timed $! "$t0" "rsyslogd writing $bytes bytes (see $d/rsyslog.log)" file_has "$d/out.log" "$bytes"
}

# syslog-ng 3.38: the file read from its start (no persist state yet), each line the message
# as it is (no-parse), written back with a newline; flow control (flags(flow-control): nothing
# dropped when the destination lags) with a source window of 100,000 messages (its default of
# 100 would throttle it to the destination's every write).
run_syslogng() {
  local d="$work/s" t0
  rm -rf "$d"; mkdir -p "$d"
  cat > "$d/syslog-ng.conf" <<CONF
@version: 3.38
options { log-msg-size(65536); log-fifo-size(200000); flush-lines(1000); stats-freq(0); };
source s { file("$work/in.log" flags(no-parse) follow-freq(1) log-iw-size(100000) log-fetch-limit(1000)); };
destination d { file("$d/out.log" template("\${MESSAGE}\n")); };
log { source(s); destination(d); flags(flow-control); };
CONF
  t0=$(now)
  "${sng[@]}" -F --no-caps -f "$d/syslog-ng.conf" -R "$d/persist" -p "$d/pid" -c "$d/ctl" 2> "$d/syslog-ng.log" &
  timed $! "$t0" "syslog-ng writing $bytes bytes (see $d/syslog-ng.log)" file_has "$d/out.log" "$bytes"
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
for name in "${names[@]}"; do
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
for name in "${names[@]}"; do
  t=${secs[$name]}
  printf '%-18s %12.0f %10.1f %14.2f %12.1f\n' "$name" "$(echo "$lines / $t" | bc -l)" \
    "$(echo "$bytes / $t / 1000000" | bc -l)" "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" \
    "$(echo "${rsss[$name]} / 1024" | bc -l)"
done
ratio_lines=()  # "name|value" of each same-run ratio, for the terminal and the JSON
ratio() { ratio_lines+=("$1|$2"); echo "$1: $(echo "$2" | cut -c1-6)"; }
ratio "tail: tributary vs cat (lines/s)" "$(echo "${secs[cat]} / ${secs[tributary]}" | bc -l)"
for peer in "${peers[@]}"; do
  label=$([ "$peer" = syslogng ] && echo syslog-ng || echo "$peer")
  ratio "tail: tributary vs $label (lines/s)" "$(echo "${secs[$peer]} / ${secs[tributary]}" | bc -l)"
  ratio "tail: $label CPU per line vs tributary" "$(echo "${cpus[$peer]} / ${cpus[tributary]}" | bc -l)"
done
if [ "${peers[0]}" = rsyslog ]; then
  ratio "tail, already running: tributary vs rsyslog (lines/s)" "$(echo "${secs[rsyslog_running]} / ${secs[tributary_running]}" | bc -l)"
  ratio "tail, already running: rsyslog CPU per line vs tributary" "$(echo "${cpus[rsyslog_running]} / ${cpus[tributary_running]}" | bc -l)"
fi
if [ -n "$json" ]; then
  {
    echo '{"benchmarks": ['
    sep=""
    for name in "${names[@]}"; do
      printf '%s  {"name": "%s", "items_per_second": %.0f, "cpu_us_per_line": %.4f, "anon_rss_kb": %s, "repetitions": %s}' \
        "$sep" "$name" "$(echo "$lines / ${secs[$name]}" | bc -l)" "$(echo "${cpus[$name]} * 1000000 / $lines" | bc -l)" \
        "${rsss[$name]}" "$repeat"
      sep=$',\n'
    done
    printf '\n], "ratios": [\n'
    sep=""
    for r in "${ratio_lines[@]}"; do
      printf '%s  {"name": "%s", "value": %.4f}' "$sep" "${r%%|*}" "${r#*|}"
      sep=$',\n'
    done
    printf '\n]}\n'
  } > "$json"
fi
