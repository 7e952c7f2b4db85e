#!/usr/bin/env bash
# The demo at scale, inside a memory limit: `tributary demo --rows N` (Kafka's JVM, the agent,
# the analyzer and the replay all inside one cgroup v1 memory group of --limit, the size of the
# paper's smaller nodes), then the three outputs checked against a plain awk recount of the
# generated CSV files (join + counts by age range, gender and day). Prints the demo's own
# report, the group's peak memory (memory.max_usage_in_bytes: every process plus the page cache
# charged to the group), and whether the counts are exact. Needs root (it creates the group).
#
#   bash bench/demo_scale.sh [--rows N] [--limit 2G] [--out DIR]
set -euo pipefail
export LC_ALL=C
cd "$(dirname "$0")/.."
rows=55000000
limit=2G
out=""
while [ $# -gt 0 ]; do
  case "$1" in
    --rows) rows="$2"; shift 2 ;;
    --limit) limit="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    *) echo "demo_scale.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
bin="$PWD/build/release/tools/tributary"
[ -x "$bin" ] || bash tools/setup.sh build
mem=/sys/fs/cgroup/memory
[ -w "$mem" ] || { echo "demo_scale.sh: needs a writable cgroup v1 memory hierarchy at $mem (run as root)" >&2; exit 2; }
group="$mem/tributary-demo-$$"
[ -n "$out" ] || out="$(mktemp -d /var/tmp/tributary-demo-scale.XXXXXX)"
cleanup() {
  echo $$ > "$mem/cgroup.procs" 2> /dev/null || true
  rmdir "$group" 2> /dev/null || true
}
trap cleanup EXIT
mkdir "$group"
echo "$limit" > "$group/memory.limit_in_bytes"
echo $$ > "$group/cgroup.procs"  # this shell and everything it starts from now on
t0=$(date +%s.%N)
"$bin" demo --rows "$rows" --out "$out" --timeout 3600 | grep -v '^replayed [0-9]* | shipped'
t1=$(date +%s.%N)
peak=$(cat "$group/memory.max_usage_in_bytes")
failcnt=$(cat "$group/memory.failcnt")
echo $$ > "$mem/cgroup.procs"
echo "memory group: limit $limit, peak $((peak / 1048576)) MiB (processes and their page cache), limit reached $failcnt times"
echo "whole run (generation, Kafka start, replay, analysis, report): $(echo "$t1 - $t0" | bc -l | cut -c1-6) s"

# The plain recount: the same joins and labels as the experiment's configuration.
data="$out/data"
awk -F, -v OFS=, '
  NR == FNR { if (FNR > 1) { age[$1] = $2; gender[$1] = $3; known[$1] = 1 } next }
  FNR == 1 { next }
  NF == 7 && $1 ~ /^-?[0-9]+$/ && $6 ~ /^-?[0-9]+$/ && $7 ~ /^-?[0-9]+$/ && $7 == 2 {
    a = "unknown"; g = "unknown"
    if ($1 in known) {
      split("<18,18-24,25-29,30-34,35-39,40-49,>=50,>=50", L, ",")
      if (age[$1] >= 1 && age[$1] <= 8 && age[$1] ~ /^[0-9]$/) a = L[age[$1]]
      if (gender[$1] == "0") g = "female"; else if (gender[$1] == "1") g = "male"
    }
    by_age[a]++; by_gender[g]++; by_day[sprintf("%04d", $6)]++
  }
  END {
    for (k in by_age) print "age", k, by_age[k]
    for (k in by_gender) print "gender", k, by_gender[k]
    for (k in by_day) print "day", k, by_day[k]
  }' "$data/user_info_format1.csv" "$data/user_log_format1.csv" | sort > "$out/recount.txt"
{
  tail -n +2 "$out/orders_by_age.csv" | awk -F, -v OFS=, '{print "age", $1, $2}'
  tail -n +2 "$out/orders_by_gender.csv" | awk -F, -v OFS=, '{print "gender", $1, $2}'
  tail -n +2 "$out/orders_by_day.csv" | awk -F, -v OFS=, '{print "day", $1, $2}'
} | awk -F, '$3 != 0' | sort > "$out/analyzer.txt"
if diff -q "$out/recount.txt" "$out/analyzer.txt" > /dev/null; then
  echo "counts: exact ($(awk -F, '$1 == "gender" {n += $3} END {print n}' "$out/recount.txt") orders, equal to the awk recount)"
else
  echo "counts: DIFFER from the awk recount (see diff $out/recount.txt $out/analyzer.txt)" >&2
  exit 1
fi
