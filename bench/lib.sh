# Shared helpers of the bench/ scripts: `source "$(dirname "$0")/lib.sh"` (bash).
hz=$(getconf CLK_TCK)
now() { date +%s.%N; }
# nap SECONDS: a pause without starting a process. The waits below poll every 10 ms beside what
# is measured; `sleep` (a fork and an exec) each time, with a status check in grep and bc, took
# half a core of a 2-core machine from it. (A read with a timeout on a pipe that never has data.)
exec {nap_fd}<> <(:)
nap() { read -r -t "$1" -u "$nap_fd" _ || true; }
# wait_until SECONDS PID WHAT CMD...: runs CMD every 10 ms until it succeeds, while process PID
# lives ("-": no process to watch); fails, naming WHAT, once PID is gone or SECONDS have passed.
# Every wait of the bench scripts is bounded by it. CMD runs in this shell: a polled check that
# starts no process (count_accounted) takes no CPU from what is measured.
wait_until() {
  local limit="$1" pid="$2" what="$3" deadline=$((SECONDS + $1))
  shift 3
  until "$@"; do
    if [ "$pid" != - ] && ! kill -0 "$pid" 2> /dev/null; then
      "$@" && return 0  # it got there, then ended
      echo "$(basename "$0"): $what: the process died" >&2
      return 1
    fi
    [ "$SECONDS" -lt "$deadline" ] || { echo "$(basename "$0"): $what: not done within $limit s" >&2; return 1; }
    nap 0.01
  done
}
# CPU seconds, peak RSS (kB) and anonymous RSS (kB) of a running process.
cpu_of() { awk -v hz="$hz" '{print ($14 + $15) / hz}' "/proc/$1/stat"; }
hwm_of() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
anon_of() { awk '/^RssAnon:/ {print $2}' "/proc/$1/status"; }
# anon_into PID: anon_of into $anon_kb (0 if the process is gone), with builtins only (polled).
anon_into() {
  local k v _
  anon_kb=0
  while read -r k v _; do
    [ "$k" = RssAnon: ] && { anon_kb=$v; return 0; }
  done 2> /dev/null < "/proc/$1/status" || true
}
# The median of the numbers on stdin, one per line.
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
# channel_has CHANNEL N: the channel file holds at least N records; file_has FILE N: at least N bytes.
channel_has() { [ "$(records_in "$1")" -ge "$2" ]; }
file_has() { [ "$(stat -c %s "$1" 2> /dev/null || echo 0)" -ge "$2" ]; }
# Events an analyzer accounted for (counted + filtered + rejected) in STATE_DIR/status.json:
# count_accounted sets $accounted_n with builtins only (it is polled), accounted prints it.
count_accounted() {
  local s=""
  accounted_n=0
  [ -r "$1/status.json" ] || return 0
  IFS= read -r -d '' s < "$1/status.json" || true
  if [[ $s =~ \"counted\":([0-9]+),\"filtered\":([0-9]+),\"rejected\":([0-9]+) ]]; then
    accounted_n=$((BASH_REMATCH[1] + BASH_REMATCH[2] + BASH_REMATCH[3]))
  fi
}
accounted() {
  count_accounted "$1"
  echo "$accounted_n"
}
# interleave REPEAT WORKDIR NAME...: for each repetition I, runs `run_NAME I` for every NAME in
# turn (a slow moment of the machine hits them all), each setting $result to "seconds
# cpu-seconds memory-kB"; logs every run on stderr and leaves the medians in the associative
# arrays secs, cpus and mems (declare -A them first).
interleave() {
  local repeat="$1" dir="$2" i name t cpu mem
  shift 2
  for i in $(seq 1 "$repeat"); do
    for name in "$@"; do
      "run_$name" "$i"
      read -r t cpu mem <<< "$result"
      echo "  $name run $i: ${t}s, ${cpu} CPU-s, ${mem} kB" >&2
      echo "$t" >> "$dir/secs.$name"; echo "$cpu" >> "$dir/cpus.$name"; echo "$mem" >> "$dir/mems.$name"
    done
  done
  for name in "$@"; do
    secs[$name]=$(median < "$dir/secs.$name"); cpus[$name]=$(median < "$dir/cpus.$name"); mems[$name]=$(median < "$dir/mems.$name")
  done
}
# make_lines FILE N [FIRST]: N lines of 100 bytes (newline included), numbered from FIRST.
make_lines() {
  python3 - "$1" "$2" "${3:-0}" <<'PY'
import sys
path, n, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
with open(path, "w") as f:
    for i in range(first, first + n):
        head = f"{i} GET /item/{i * 7919 % 100000} user={i % 5000} "
        f.write(head + "x" * (99 - len(head)) + "\n")
PY
}
# records_in CHANNEL: records written into a channel file so far (0 if it cannot be read yet).
# Needs $bin, the tributary executable.
records_in() {
  local n
  n=$("$bin" channel stat --json "$1" 2> /dev/null | grep -o '"records_written":[0-9]*' | cut -d: -f2) || true
  echo "${n:-0}"
}
# free_port: a free loopback port (the kernel picks it; a race with another program is
# possible, not likely). wait_listening PORT: until something accepts on PORT (at most 5 s).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_listening() {
  local i
  for i in $(seq 1 500); do
    (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return 0
    sleep 0.01
  done
  echo "$(basename "$0"): nothing listens on $1" >&2
  return 1
}
# stat_field CHANNEL FIELD: a number of `channel stat --json`; committed_of CHANNEL: the cursor
# of its consumer "uplink". Need $bin.
stat_field() { "$bin" channel stat --json "$1" | grep -o "\"$2\":[0-9]*" | head -1 | cut -d: -f2; }
committed_of() { "$bin" channel stat --json "$1" | grep -o '"name":"uplink","committed":[0-9]*' | cut -d: -f3; }
# tail_agent_toml FILE NAME CHANNEL INPUT [MAX_LINE]: an agent NAME tailing INPUT into CHANNEL.
tail_agent_toml() {
  cat > "$1" <<EOF
[agent]
name = "$2"
[channels.c]
path = "$3"
[sources.log]
type = "tail"
channels = ["c"]
paths = ["$4"]
${5:+max_line = \"$5\"}
EOF
}
