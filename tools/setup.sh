#!/usr/bin/env bash
# One entry point for a fresh Debian 12 machine: installs the Debian packages Tributary
# builds with, configures and builds one flavour, and runs the demo or the tests.
#
#   bash tools/setup.sh demo                     install, build (release), run `tributary demo`
#   bash tools/setup.sh test                     install, build (release, -Werror), run all tests but `slow`
#   bash tools/setup.sh test --sanitize address  ... the same under ASan+UBSan (build/asan)
#   bash tools/setup.sh test --sanitize thread --labels 'concurrent|unit'   TSan leg (build/tsan)
#   bash tools/setup.sh build                    install and build only
#   bash tools/setup.sh fuzz [--seconds N]       clang + libFuzzer: build every fuzzer (build/fuzz)
#                                                and run each N seconds (default 30) on its corpus
#   bash tools/setup.sh gate [--quick]           the throughput-regression gate: hot loops' instruction
#                                                counts (callgrind) and same-run ratios, compared with
#                                                bench/baselines/ for this CPU model, else
#                                                bench/baseline.json (fails on a >10% regression)
#
# Options: --labels REGEX (CTest label regex, default 'unit|concurrent|crash|kafka'),
#          --jobs N (default: nproc), --no-install (skip apt-get), --seconds N (fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libboost-dev libcli11-dev libfmt-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  librdkafka-dev libconcurrentqueue-dev libsimdjson-dev libtomlplusplus-dev libre2-dev
  libcpp-httplib-dev liblz4-dev libzstd-dev libjemalloc-dev nlohmann-json3-dev rapidjson-dev
  kcat python3-kafka python3-lz4 valgrind
  chromium libpng-dev
)

action="${1:-}"
[ -n "$action" ] && shift || true
sanitize=""
labels="unit|concurrent|crash|kafka"
jobs="$(nproc)"
install=1
seconds=30
quick=""
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize="$2"; shift 2 ;;
    --labels) labels="$2"; shift 2 ;;
    --jobs) jobs="$2"; shift 2 ;;
    --no-install) install=0; shift ;;
    --seconds) seconds="$2"; shift 2 ;;
    --quick) quick="--quick"; shift ;;
    *) echo "setup.sh: unknown option '$1'" >&2; exit 2 ;;
  esac
done

install_packages() {
  local missing=()
  # Java and Maven only run and fetch the local Kafka broker (tests, demo, benchmarks).
  if [ "$action" != fuzz ]; then
    command -v java > /dev/null || PACKAGES+=(openjdk-17-jre-headless)
    command -v mvn > /dev/null || PACKAGES+=(maven)
  fi
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup.sh: installing ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
}

build_dir() {
  case "$sanitize" in
    "") echo build/release ;;
    address) echo build/asan ;;
    thread) echo build/tsan ;;
    *) echo "setup.sh: --sanitize must be address or thread" >&2; exit 2 ;;
  esac
}

build() {
  local dir type=RelWithDebInfo bench=ON
  dir="$(build_dir)"
  [ -n "$sanitize" ] && { type=Debug; bench=OFF; }
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE="$type" -DTRIBUTARY_WERROR=ON \
    -DTRIBUTARY_SANITIZE="$sanitize" -DTRIBUTARY_BUILD_BENCH="$bench" >/dev/null
  cmake --build "$dir" -j "$jobs"
}

run_tests() {
  local dir
  dir="$(build_dir)"
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1 suppressions=$PWD/tests/tsan.supp"
  # Per-test budgets come from each label's TIMEOUT (tests/CMakeLists.txt).
  (cd "$dir" && ctest --output-on-failure --no-tests=error -j "$jobs" -L "$labels")
}

# Each fuzzer on a scratch copy of its corpus (tests/fuzz/corpus/NAME): new inputs stay out of
# the tree; a crash leaves its input in build/fuzz/crashes/ and fails.
fuzz() {
  local dir=build/fuzz
  CC=clang CXX=clang++ cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRIBUTARY_WERROR=ON \
    -DTRIBUTARY_SANITIZE=fuzz >/dev/null
  cmake --build "$dir" -j "$jobs" --target fuzzers
  mkdir -p "$dir/crashes"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  local f name work status=0
  for f in "$dir"/tests/fuzz/fuzz_*; do
    name="${f##*/fuzz_}"
    work="$(mktemp -d)"
    [ -d "tests/fuzz/corpus/$name" ] && cp -r "tests/fuzz/corpus/$name/." "$work/"
    echo "fuzz: $name for ${seconds}s"
    if ! "$f" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$dir/crashes/$name-" "$work" > "$dir/crashes/$name.log" 2>&1; then
      echo "fuzz: $name FAILED (input in $dir/crashes/, log $dir/crashes/$name.log)"
      grep -E "ERROR|runtime error|SUMMARY" "$dir/crashes/$name.log" | head -5
      status=1
    else
      grep -E "^stat::number_of_executed_units" "$dir/crashes/$name.log" | sed "s/^/fuzz: $name /"
    fi
    rm -rf "$work"
  done
  return $status
}

if [ "$action" = fuzz ]; then
  # Everything the top-level CMakeLists.txt finds (cpp-httplib included: the metrics endpoint is
  # core), without the test, bench and peer packages.
  PACKAGES=(clang libclang-rt-14-dev cmake ninja-build ccache pkg-config libboost-dev libfmt-dev libspdlog-dev
            librdkafka-dev libsimdjson-dev libtomlplusplus-dev libre2-dev libcli11-dev libcpp-httplib-dev
            libconcurrentqueue-dev)
fi
[ "$install" -eq 1 ] && install_packages
case "$action" in
  fuzz) fuzz ;;
  build) build ;;
  gate)
    build
    # The baseline of this CPU model if bench/baselines/ has one (wall-time ratios depend on
    # the CPU), else bench/baseline.json: instruction counts are exact for one binary; ratios
    # carry their own noise (see `tributary bench compare --help`).
    ./build/release/tools/tributary bench --suite gate $quick --json build/release/bench-gate.json
    ./build/release/tools/tributary bench compare bench/baseline.json build/release/bench-gate.json --max-regression 10% \
      --per-cpu bench/baselines ;;
  test) build; run_tests ;;
  demo)
    build
    # The paper's experiment end to end (a local Kafka is fetched and started on first use).
    ./build/release/tools/tributary demo --out "${TRIBUTARY_DEMO_OUT:-tributary-demo-out}" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
