#!/usr/bin/env bash
# Runs the benchmark suites of a release build and writes their JSON under bench/out/.
#   bash bench/run.sh [--quick]        (--quick: smaller counts, 1 repeat: a smoke run)
# Figures in bench/RESULTS.md come from this script; each section there names its command.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[ "${1:-}" = "--quick" ] && quick=1
build=build/release
[ -x "$build/bench/channel_ipc_bench" ] || bash tools/setup.sh build
mkdir -p bench/out
{
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "cores: $(nproc)  build: $(grep CMAKE_BUILD_TYPE:STRING "$build/CMakeCache.txt" | cut -d= -f2)"
  echo "kernel: $(uname -r)  date: $(date -u +%FT%TZ)"
} | tee bench/out/context.txt
if [ "$quick" -eq 1 ]; then
  "$build/bench/channel_ipc_bench" --repeat 1 --scale 0.1 --json bench/out/channel_ipc.json
  "$build/bench/channel_bench" --benchmark_min_time=0.1 --benchmark_out=bench/out/channel_bench.json --benchmark_out_format=json
else
  "$build/bench/channel_ipc_bench" --repeat 5 --scale 1 --json bench/out/channel_ipc.json
  "$build/bench/channel_bench" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
    --benchmark_out=bench/out/channel_bench.json --benchmark_out_format=json
fi
