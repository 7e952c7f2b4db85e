#!/usr/bin/env bash
# Proves the throughput-regression gate on this machine, both ways:
#   1. false alarms: the CI gate (`tributary bench --suite gate --quick` compared with
#      bench/baselines/ for this CPU model, else bench/baseline.json) run --runs times on the
#      unchanged tree; target 0 failures.
#   2. detection: a test build with a planted slower CRC32C (a fifth more work) (-DTRIBUTARY_PLANTED_SLOWDOWN=ON,
#      core/src/crc32c.cpp) must fail the gate, naming the metrics that fell.
#
#   bash bench/gate_selftest.sh [--runs N]      (default 10; about a minute per run)
# Reports are kept in build/gate-selftest/. Exits non-zero unless 0 false alarms and caught.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=10
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift 2 ;;
    *) echo "gate_selftest.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done
out=build/gate-selftest
mkdir -p "$out"
bash tools/setup.sh build --no-install > "$out/build.log" 2>&1 || { cat "$out/build.log"; exit 1; }
bin=build/release/tools/tributary

alarms=0
for i in $(seq 1 "$runs"); do
  "$bin" bench --suite gate --quick --json "$out/run-$i.json" > "$out/run-$i.log" 2>&1 ||
    { echo "run $i/$runs: the gate suite failed to run:"; tail -5 "$out/run-$i.log"; exit 1; }
  status=0
  "$bin" bench compare bench/baseline.json "$out/run-$i.json" --per-cpu bench/baselines > "$out/compare-$i.txt" || status=$?
  case $status in
    0) echo "run $i/$runs: pass" ;;
    1) alarms=$((alarms + 1))
       echo "run $i/$runs: FALSE ALARM"
       grep "^REGRESSION" "$out/compare-$i.txt" | sed 's/^/    /' || true ;;
    *) echo "run $i/$runs: compare could not read the reports (status $status)"; exit 1 ;;
  esac
done

echo "planted slowdown: building build/planted (-DTRIBUTARY_PLANTED_SLOWDOWN=ON)"
cmake -S . -B build/planted -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRIBUTARY_PLANTED_SLOWDOWN=ON \
  -DTRIBUTARY_BUILD_TESTS=OFF > "$out/planted-build.log" 2>&1
cmake --build build/planted --target tributary hotloop_bench >> "$out/planted-build.log" 2>&1 ||
  { echo "planted build failed:"; tail -20 "$out/planted-build.log"; exit 1; }
build/planted/tools/tributary bench --suite gate --quick --json "$out/planted.json" > "$out/planted.log" 2>&1 ||
  { echo "planted gate run failed:"; tail -5 "$out/planted.log"; exit 1; }
caught=0
if build/planted/tools/tributary bench compare bench/baseline.json "$out/planted.json" --per-cpu bench/baselines \
  > "$out/planted-compare.txt"; then
  echo "planted slowdown: NOT CAUGHT"
else
  caught=1
  echo "planted slowdown: caught"
fi
grep -E "^(REGRESSION|instructions/core)" "$out/planted-compare.txt" | sed 's/^/    /' || true
echo "false alarms: $alarms of $runs unchanged runs; planted CRC32C slowdown: $([ $caught -eq 1 ] && echo caught || echo missed)"
[ "$alarms" -eq 0 ] && [ "$caught" -eq 1 ]
