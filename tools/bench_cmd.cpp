// `tributary bench`: runs the benchmark suites of a release build side by side with their peers,
// writes one report (bench_report.h), compares two reports for the regression gate, and draws
// the throughput chart.
//
//   tributary bench [--suite gate|channel|ingest|uplink|analyze|scaling|e2e|all]... [--json FILE] [--svg FILE] [--quick]
//                   [--kafka mock|real]
//   tributary bench compare BASE.json NEW.json [--max-regression 10%]
//   tributary bench chart REPORT.json --svg FILE
#include <fcntl.h>
#include <spawn.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <set>
#include <sstream>

#include "bench_report.h"
#include "commands.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"

extern char** environ;

namespace tributary::tools {
namespace fs = std::filesystem;

namespace {

using bench::Metric;
using bench::Report;

// Runs argv (PATH searched) to completion. Output goes to `log` (stdout and stderr) when
// given, else to ours; `capture` (if given) receives stdout instead. Returns the exit status
// (128 + signal if killed); throws if the program cannot be started.
int run(const std::vector<std::string>& argv, const fs::path* log = nullptr, std::string* capture = nullptr) {
  core::Fd read_end, write_end;
  if (capture != nullptr) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) throw core::Error(fmt::format("pipe: {}", std::strerror(errno)));
    read_end.reset(p[0]);
    write_end.reset(p[1]);
  }
  posix_spawn_file_actions_t fa;
  if (posix_spawn_file_actions_init(&fa) != 0) throw core::Error("posix_spawn_file_actions_init failed");
  int rc = 0;
  if (capture != nullptr) {
    rc = posix_spawn_file_actions_adddup2(&fa, write_end.get(), 1);
  } else if (log != nullptr) {
    rc = posix_spawn_file_actions_addopen(&fa, 1, log->c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (rc == 0) rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (rc == 0) rc = ::posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  write_end.reset();
  if (rc != 0) throw core::Error(fmt::format("cannot start {}: {}", argv[0], std::strerror(rc)));
  // Reap the child whatever happens below (a throw while reading included).
  struct Reaper {
    pid_t pid;
    int status = 0;
    bool done = false;
    int wait() {
      while (!done && ::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      done = true;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    ~Reaper() {
      if (!done) (void)wait();
    }
  } child{pid};
  if (capture != nullptr) {
    char buf[4096];
    ssize_t n;
    while ((n = ::read(read_end.get(), buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
      if (n > 0) capture->append(buf, static_cast<std::size_t>(n));
    read_end.reset();
  }
  return child.wait();
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

std::map<std::string, std::string> machine_context(const fs::path& bench_dir) {
  std::map<std::string, std::string> c;
  std::ifstream cpu("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpu, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto key = trim(line.substr(0, colon));
    auto value = line.substr(colon + 1);
    if (!value.empty() && value[0] == ' ') value.erase(0, 1);
    if (key.rfind("model name", 0) == 0 && c.count("cpu_model") == 0) c["cpu_model"] = value;
    if (key.rfind("cpu MHz", 0) == 0 && c.count("mhz_per_cpu") == 0) c["mhz_per_cpu"] = value;
  }
  c["num_cpus"] = std::to_string(::sysconf(_SC_NPROCESSORS_ONLN));
  utsname u{};
  if (::uname(&u) == 0) {
    c["kernel"] = u.release;
    c["host_name"] = u.nodename;
  }
  c["build_type"] = TRIBUTARY_BUILD_TYPE;
  c["bench_dir"] = bench_dir.string();
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char date[32];
  std::strftime(date, sizeof date, "%FT%TZ", std::gmtime(&now));
  c["date"] = date;
  return c;
}

simdjson::dom::element load_json(simdjson::dom::parser& p, const fs::path& file) {
  simdjson::dom::element e;
  if (const auto err = p.load(file.string()).get(e); err != simdjson::SUCCESS)
    throw core::Error(fmt::format("{}: {}", file.string(), simdjson::error_message(err)));
  return e;
}

// A number field, or 0 when it is absent or not a number (Google Benchmark omits
// items_per_second for benchmarks that count only bytes).
double num(simdjson::simdjson_result<simdjson::dom::element> r) {
  simdjson::dom::element e;
  if (r.get(e) != simdjson::SUCCESS) return 0;
  double d = 0;
  if (e.get(d) == simdjson::SUCCESS) return d;
  std::int64_t i = 0;
  if (e.get(i) == simdjson::SUCCESS) return static_cast<double>(i);
  std::uint64_t u = 0;
  if (e.get(u) == simdjson::SUCCESS) return static_cast<double>(u);
  return 0;
}

bool is_peer_name(std::string_view n) {
  return n.find("peer/") != std::string_view::npos || n.find("baseline/") != std::string_view::npos;
}

struct Options {
  std::vector<std::string> suites;
  std::string json;
  std::string svg;
  bool quick = false;
  bool no_callgrind = false;
  std::string bench_dir;
  std::string kafka = "mock";  // the uplink suite's broker: mock, or real (+ kafka-producer-perf-test)
};

class Runner {
 public:
  Runner(const Options& o, fs::path bench_dir, fs::path work) : o_(o), dir_(std::move(bench_dir)), work_(std::move(work)) {}

  Report& report() { return r_; }

  // Hot loops: wall-time ratios (gated, with their noise) and instruction counts (gated).
  void gate() {
    timed_loops({}, true);
    if (!o_.no_callgrind) instruction_counts();
  }

  // The analyzer's loops and its JSON peers alone, reported (gate has them too, gated).
  void analyze() {
    timed_loops({"analyze/extract_json", "peer/nlohmann_json", "peer/rapidjson", "analyze/window_count", "baseline/hashmap_count"},
                false);
  }

  void timed_loops(const std::vector<std::string>& only, bool gated) {
    const fs::path bin = tool("hotloop_bench");
    stage("hot loops, wall time ({} repetitions, interleaved)", o_.quick ? 5 : 9);
    const fs::path tj = work_ / "hotloops_time.json";
    std::vector<std::string> args = {bin.string(), "--time", "--reps", o_.quick ? "5" : "9", "--scale", o_.quick ? "0.5" : "1",
                                     "--json", tj.string()};
    for (const auto& l : only) {
      args.push_back("--loop");
      args.push_back(l);
    }
    check(run(args), "hotloop_bench --time");
    simdjson::dom::parser p;
    const auto doc = load_json(p, tj);
    for (auto b : doc["benchmarks"].get_array()) {
      const std::string name(b["name"].get_string().value());
      add({"time/" + name, "ns/event", num(b["real_time"]), num(b["spread"]), false, false, is_peer_name(name)});
      add({name, "events/s", num(b["items_per_second"]), num(b["spread"]), true, false, is_peer_name(name)});
    }
    // Between runs these ratios move more than their spread within a run says (the VM's speed
    // shifts hit memory-bound and compute-bound loops differently: framer vs memchr moved 25%
    // between two runs whose within-run spreads were under 10%), so their noise has a floor:
    // the margin is then at least 3 x (0.08 + 0.08) = 48%, i.e. a loop must become ~1.5x
    // slower against its peer to fail. The tight gate is the instruction counts.
    constexpr double kRatioNoiseFloor = 0.08;
    for (auto x : doc["ratios"].get_array()) {
      bool pair_gated = true;  // a pair the hot loops mark "gate": false is reported only
      if (bool g = true; x["gate"].get(g) == simdjson::SUCCESS) pair_gated = g;
      add({"ratio/" + std::string(x["name"].get_string().value()), "x", num(x["value"]),
           std::max(kRatioNoiseFloor, num(x["spread"])), true, gated && pair_gated, false});
    }
    append_raw(doc["benchmarks"]);
  }

  void instruction_counts() {
    const fs::path bin = tool("hotloop_bench");
    std::string version;
    try {
      run({"valgrind", "--version"}, nullptr, &version);
    } catch (const core::Error&) {
      throw core::Error("instruction counts need valgrind (apt-get install valgrind), or pass --no-callgrind");
    }
    std::string list;
    check(run({bin.string(), "--list"}, nullptr, &list), "hotloop_bench --list");
    std::vector<std::pair<std::string, std::string>> loops;  // name, events
    std::istringstream in(list);
    std::string line;
    while (std::getline(in, line)) {
      std::vector<std::string> f;
      std::istringstream cols(line);
      std::string c;
      while (std::getline(cols, c, '\t')) f.push_back(c);
      if (f.size() == 4) loops.emplace_back(f[0], f[3]);
    }
    r_.context["valgrind"] = trim(version);
    stage("hot loops, instructions per event (callgrind, {} loops)", loops.size());
    std::size_t k = 0;
    for (const auto& [name, events] : loops) {
      const fs::path out = work_ / fmt::format("callgrind.{}", k);
      const fs::path log = work_ / fmt::format("callgrind.{}.log", k++);
      check(run({"valgrind", "--tool=callgrind", "--collect-atstart=no", "--callgrind-out-file=" + out.string(), bin.string(),
                 "--loop", name, "--events", events},
                &log),
            fmt::format("valgrind --tool=callgrind on {} (log: {})", name, log.string()));
      const double total = callgrind_total(out);
      const double per = total / std::stod(events);
      std::printf("  [%zu/%zu] %-32s %10.1f instructions/event\n", k, loops.size(), name.c_str(), per);
      std::fflush(stdout);
      add({"instructions/" + name, "instructions/event", per, 0, false, !is_peer_name(name), is_peer_name(name)});
    }
  }

  // Threads of one process (Google Benchmark) and processes through /dev/shm: reported only.
  void channel() {
    stage("channel: Google Benchmark, threads of one process{}", o_.quick ? " (quick)" : "");
    const fs::path gj = work_ / "channel_bench.json";
    std::vector<std::string> args = {tool("channel_bench").string(), "--benchmark_out=" + gj.string(), "--benchmark_out_format=json",
                                     "--benchmark_repetitions=" + std::string(o_.quick ? "3" : "5"),
                                     "--benchmark_report_aggregates_only=true"};
    if (o_.quick) args.push_back("--benchmark_min_time=0.05");
    check(run(args), "channel_bench");
    simdjson::dom::parser p;
    const auto doc = load_json(p, gj);
    std::map<std::string, double> mean, stddev;
    for (auto b : doc["benchmarks"].get_array()) {
      std::string_view agg;
      if (b["aggregate_name"].get(agg) != simdjson::SUCCESS) continue;
      const std::string run_name(b["run_name"].get_string().value());
      const double ips = num(b["items_per_second"]);
      if (agg == "mean") mean[run_name] = ips;
      if (agg == "stddev") stddev[run_name] = ips;
      if (agg != "median" || ips == 0) continue;
      const bool ours = run_name.rfind("BM_Channel", 0) == 0 || run_name.rfind("BM_Crc32c", 0) == 0;
      add({"channel/" + gbench_label(run_name), "events/s", ips, 0, true, false, !ours});
    }
    for (auto& m : r_.metrics)  // spread from the aggregates: stddev / mean
      for (const auto& [name, sd] : stddev)
        if (m.name == "channel/" + gbench_label(name) && mean[name] > 0) m.spread = sd / mean[name];
    append_raw(doc["benchmarks"]);
    stage("channel: processes through /dev/shm beside pipes, sockets, message_queue{}", o_.quick ? " (quick)" : "");
    const fs::path ij = work_ / "channel_ipc.json";
    check(run({tool("channel_ipc_bench").string(), "--repeat", o_.quick ? "1" : "5", "--scale", o_.quick ? "0.1" : "1", "--json",
               ij.string()}),
          "channel_ipc_bench");
    const auto ipc = load_json(p, ij);
    for (auto b : ipc["benchmarks"].get_array()) {
      const std::string name(b["name"].get_string().value());
      const double ips = num(b["items_per_second"]);
      if (ips == 0) continue;
      const double lo = num(b["min"]), hi = num(b["max"]);
      add({"channel-ipc/" + name, "events/s", ips, ips > 0 ? (hi - lo) / 2 / ips : 0, true, false,
           name.find("tributary") == std::string::npos});
    }
  }

  // Tail of a file against rsyslog, syslog-ng and cat (cross-process, reported only; the
  // script runs the peers it finds).
  void ingest() {
    stage("ingest: tail against rsyslog imfile, syslog-ng and cat{}", o_.quick ? " (quick)" : "");
    std::string where;
    try {
      run({fs::exists("/usr/sbin/rsyslogd") ? "/usr/sbin/rsyslogd" : "rsyslogd", "-v"}, nullptr, &where);
    } catch (const core::Error&) {
      std::printf("  skipped: rsyslog is not installed (apt-get install rsyslog)\n");
      r_.context["ingest"] = "skipped: no rsyslog";
      return;
    }
    const fs::path tj = work_ / "tail.json";
    check(run({"bash", (fs::path(TRIBUTARY_SOURCE_DIR) / "bench/tail_bench.sh").string(), "--lines", o_.quick ? "300000" : "2000000",
               "--repeat", o_.quick ? "1" : "3", "--json", tj.string()}),
          "bench/tail_bench.sh");
    simdjson::dom::parser p;
    const auto doc = load_json(p, tj);
    for (auto b : doc["benchmarks"].get_array()) {
      const std::string name(b["name"].get_string().value());
      add({"tail/" + name, "events/s", num(b["items_per_second"]), num(b["spread"]), true, false, name.rfind("tributary", 0) != 0});
      add({"tail-cpu/" + name, "CPU us/line", num(b["cpu_us_per_line"]), 0, false, false, name.rfind("tributary", 0) != 0});
    }
    for (auto x : doc["ratios"].get_array())
      add({"ratio/" + std::string(x["name"].get_string().value()), "x", num(x["value"]), 0, true, false, false});
  }

  // Channel -> Kafka against kcat -P from a file and rsyslog imfile -> omkafka, same librdkafka
  // settings; on the real local Kafka also Kafka's kafka-producer-perf-test (reported only).
  void uplink() {
    stage("uplink: channel -> {} Kafka beside kcat -P, rsyslog omkafka{}{}", o_.kafka,
          o_.kafka == "real" ? " and kafka-producer-perf-test" : "", o_.quick ? " (quick)" : "");
    const fs::path uj = work_ / "uplink.json";
    check(run({"bash", (fs::path(TRIBUTARY_SOURCE_DIR) / "bench/uplink_bench.sh").string(), "--events",
               o_.quick ? "200000" : "1000000", "--repeat", o_.quick ? "1" : "3", "--kafka", o_.kafka, "--json", uj.string()}),
          "bench/uplink_bench.sh");
    simdjson::dom::parser p;
    const auto doc = load_json(p, uj);
    for (auto b : doc["benchmarks"].get_array()) {
      const std::string name(b["name"].get_string().value());
      const bool peer = name.rfind("tributary", 0) != 0;
      add({"uplink/" + name, "events/s", num(b["items_per_second"]), 0, true, false, peer});
      add({"uplink-cpu/" + name, "CPU us/event", num(b["cpu_us_per_event"]), 0, false, false, peer});
      add({"uplink-rss/" + name, peer ? "kB peak RSS" : "kB RSS (anon)", num(b["peak_rss_kb"]), 0, false, false, peer});
    }
    for (auto x : doc["ratios"].get_array())
      add({"ratio/" + std::string(x["name"].get_string().value()), "x", num(x["value"]), 0, true, false, false});
  }

  // The cost curves: ingest, uplink and analyze as the payload grows (16 B -> 64 KiB) and as
  // producers grow (1 -> 8), each point beside its peer of the same run (reported only).
  void scaling() {
    stage("scaling: ingest, uplink, analyze by payload size and producers{}", o_.quick ? " (quick)" : "");
    const fs::path sj = work_ / "scaling.json";
    std::vector<std::string> args = {"bash", (fs::path(TRIBUTARY_SOURCE_DIR) / "bench/scaling.sh").string(), "--repeat",
                                     o_.quick ? "1" : "3", "--json", sj.string()};
    if (o_.quick) args.emplace_back("--quick");
    check(run(args), "bench/scaling.sh");
    simdjson::dom::parser p;
    const auto doc = load_json(p, sj);
    for (auto b : doc["benchmarks"].get_array()) {
      const std::string name(b["name"].get_string().value());
      const std::string peer(b["peer"].get_string().value());
      add({"scaling/" + name, "events/s", num(b["items_per_second"]), 0, true, false, false});
      add({"scaling/" + name + " (" + peer + ")", "events/s", num(b["peer_items_per_second"]), 0, true, false, true});
      add({"ratio/scaling/" + name + " vs " + peer, "x", num(b["ratio"]), 0, true, false, false});
    }
  }

  // The paper's experiment end to end on a local real Kafka (`tributary demo`; reported only).
  void e2e() {
    const char* rows = o_.quick ? "200000" : "2000000";
    stage("e2e: tributary demo, {} rows, local Kafka (first use fetches its jars)", rows);
    std::string out;
    const int st = run({(fs::read_symlink("/proc/self/exe")).string(), "demo", "--rows", rows, "--out", (work_ / "demo").string()},
                       nullptr, &out);
    std::fputs(out.c_str(), stdout);
    check(st, "tributary demo");
    // "N lines in X s (Y events/s end to end); ..."
    const auto at = out.find(" events/s end to end");
    const auto open = at == std::string::npos ? at : out.rfind('(', at);
    if (open == std::string::npos) throw core::Error("tributary demo: no 'events/s end to end' line in its output");
    add({"e2e/tributary demo (replay, 2 tails, channel, uplink, Kafka, analyzer)", "events/s",
         std::stod(out.substr(open + 1, at - open - 1)), 0, true, false, false});
  }

 private:
  template <typename... A>
  void stage(fmt::format_string<A...> f, A&&... a) {
    std::printf("== %s\n", fmt::format(f, std::forward<A>(a)...).c_str());
    std::fflush(stdout);
  }
  fs::path tool(const char* name) const {
    fs::path p = dir_ / name;
    if (!fs::exists(p))
      throw core::Error(fmt::format("{} not found: build the benchmarks first (bash tools/setup.sh build, which "
                                    "configures -DTRIBUTARY_BUILD_BENCH=ON), or point --bench-dir at them",
                                    p.string()));
    return p;
  }
  static void check(int status, const std::string& what) {
    if (status != 0) throw core::Error(fmt::format("{} failed (exit status {})", what, status));
  }
  static double callgrind_total(const fs::path& out) {
    std::ifstream f(out);
    std::string line;
    double total = -1;
    while (std::getline(f, line)) {
      if (line.rfind("summary:", 0) == 0 || line.rfind("totals:", 0) == 0) total = std::stod(line.substr(line.find(':') + 1));
    }
    if (total <= 0)
      throw core::Error(fmt::format("{}: no instructions counted (not a callgrind output file, or a hotloop_bench "
                                    "built without valgrind's client requests?)",
                                    out.string()));
    return total;
  }
  static std::string gbench_label(std::string_view run_name) {
    std::string s(run_name);
    for (const char* suffix : {"/real_time", "/manual_time"}) {
      const auto pos = s.find(suffix);
      if (pos != std::string::npos) s.erase(pos, std::strlen(suffix));
    }
    return s;
  }
  void add(Metric m) { r_.metrics.push_back(std::move(m)); }
  void append_raw(simdjson::dom::element arr) {
    const std::string a = simdjson::minify(arr);
    if (a.size() <= 2) return;  // "[]" or nothing
    if (r_.benchmarks_json.empty()) {
      r_.benchmarks_json = a;
    } else {
      r_.benchmarks_json.pop_back();
      r_.benchmarks_json += "," + a.substr(1);
    }
  }

  const Options& o_;
  fs::path dir_;
  fs::path work_;
  Report r_;
};

int run_suites(const Options& o) {
  static const std::set<std::string> kKnown = {"gate", "channel", "ingest", "uplink", "analyze", "scaling", "e2e", "all"};
  std::set<std::string> want(o.suites.begin(), o.suites.end());
  if (want.empty()) want.insert("gate");
  for (const auto& s : want)
    if (kKnown.count(s) == 0)
      throw core::Error(fmt::format("unknown suite '{}' (gate, channel, ingest, uplink, analyze, scaling, e2e, all)", s));
  if (want.count("all") != 0) want = {"gate", "channel", "ingest", "uplink", "scaling", "e2e"};  // gate has analyze's loops
  fs::path dir = o.bench_dir;
  if (dir.empty()) dir = fs::read_symlink("/proc/self/exe").parent_path().parent_path() / "bench";
  char tmpl[] = "/tmp/tributary-bench.XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) throw core::Error(fmt::format("mkdtemp: {}", std::strerror(errno)));
  const fs::path work = tmpl;
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{work};
  Runner r(o, dir, work);
  r.report().context = machine_context(dir);
  r.report().context["suites"] = fmt::format("{}", fmt::join(want, ","));
  r.report().context["quick"] = o.quick ? "yes" : "no";
  const auto t0 = std::chrono::steady_clock::now();
  // A benchmark's JSON without a field we need is an error naming the suite, not a crash.
  const auto suite = [&](const char* name, void (Runner::*fn)()) {
    if (want.count(name) == 0) return;
    try {
      (r.*fn)();
    } catch (const simdjson::simdjson_error& e) {
      throw core::Error(fmt::format("suite {}: unexpected benchmark output ({})", name, e.what()));
    }
  };
  suite("gate", &Runner::gate);
  suite("channel", &Runner::channel);
  suite("ingest", &Runner::ingest);
  suite("uplink", &Runner::uplink);
  if (want.count("gate") == 0) suite("analyze", &Runner::analyze);
  suite("scaling", &Runner::scaling);
  suite("e2e", &Runner::e2e);
  std::printf("== done in %.0f s\n", std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  const auto& rep = r.report();
  std::printf("%-62s %14s  %s\n", "metric", "value", "spread");
  for (const auto& m : rep.metrics)
    std::printf("%-62s %14.6g %-18s %5.1f%%%s\n", m.name.c_str(), m.value, m.unit.c_str(), 100 * m.spread, m.gate ? "  gated" : "");
  if (!o.json.empty()) {
    bench::write_report(o.json, rep);
    std::printf("report: %s\n", o.json.c_str());
  }
  if (!o.svg.empty()) {
    std::ofstream f(o.svg);
    f << bench::throughput_svg(rep, "Tributary: throughput per stage beside its peers");
    if (!f.flush()) throw core::Error(fmt::format("cannot write {}", o.svg));
    std::printf("chart: %s\n", o.svg.c_str());
  }
  return 0;
}

void compare_reports(const std::string& base_arg, const std::string& new_file, const std::string& max_regression,
                     double noise_factor, const std::string& per_cpu, int& exit_code) {
  const auto frac = bench::parse_fraction(max_regression);
  if (!frac) throw core::Error(fmt::format("--max-regression '{}': expected a percentage like 10%", max_regression));
  bench::CompareOptions opt;
  opt.max_regression = *frac;
  opt.noise_factor = noise_factor;
  const auto now = bench::read_report(new_file);
  const std::string base_file = per_cpu.empty() ? base_arg : bench::pick_baseline(base_arg, per_cpu, now).string();
  if (!per_cpu.empty())
    std::printf("baseline: %s (%s)\n", base_file.c_str(),
                base_file != base_arg ? "measured on this CPU model" : "none of this CPU model in --per-cpu");
  const auto base = bench::read_report(base_file);
  const auto cpu = [](const Report& r) {
    const auto it = r.context.find("cpu_model");
    return it == r.context.end() ? std::string("?") : it->second;
  };
  opt.gate_ratios = cpu(base) == cpu(now);
  const auto v = bench::compare(base, now, opt);
  std::fputs(bench::format_verdicts(v, opt).c_str(), stdout);
  if (!opt.gate_ratios)
    std::printf("note: the baseline was measured on '%s', this run on '%s': wall-time ratios are reported, not gated\n",
                cpu(base).c_str(), cpu(now).c_str());
  exit_code = bench::failed(v) ? 1 : 0;
}

}  // namespace

void add_bench_commands(CLI::App& app, int& exit_code) {
  auto o = std::make_shared<Options>();
  CLI::App* b = app.add_subcommand("bench", "Benchmark suites beside their peers; the regression gate");
  b->add_option("--suite", o->suites,
                "gate (hot loops of every stage: time ratios + instruction counts), channel, ingest (tail vs rsyslog, "
                "syslog-ng), uplink (vs kcat, rsyslog omkafka), analyze (JSON vs nlohmann, RapidJSON; windows), scaling (payload "
                "16 B-64 KiB and 1-8 producers: ingest vs socat, uplink vs kcat, analyze vs iterate_many), e2e (the demo), all")
      ->take_all();
  b->add_option("--json", o->json, "Write the report here (compare it with `tributary bench compare`)");
  b->add_option("--svg", o->svg, "Also draw the throughput chart here");
  b->add_flag("--quick", o->quick, "Fewer repetitions and events: a smoke run");
  b->add_flag("--no-callgrind", o->no_callgrind, "Skip the instruction counts (no valgrind)");
  b->add_option("--bench-dir", o->bench_dir, "Where the benchmark binaries are (default: ../bench beside this program)");
  b->add_option("--kafka", o->kafka,
                "The uplink suite's broker: mock (librdkafka's mock cluster) or real (the local Kafka, first use fetches "
                "its jars; adds Kafka's kafka-producer-perf-test as a peer)")
      ->check(CLI::IsMember({"mock", "real"}))
      ->capture_default_str();
  b->require_subcommand(0, 1);

  auto c = std::make_shared<std::tuple<std::string, std::string, std::string, double, std::string>>("", "", "10%", 3.0, "");
  CLI::App* cmp = b->add_subcommand("compare", "Compare two reports: exit 1 on a regression of a gated metric, 2 on a report it cannot read");
  cmp->add_option("BASE", std::get<0>(*c), "The baseline report (bench/baseline.json)")->required();
  cmp->add_option("NEW", std::get<1>(*c), "The report to judge")->required();
  cmp->add_option("--max-regression", std::get<2>(*c), "Largest tolerated worsening of a gated metric")->capture_default_str();
  cmp->add_option("--noise-factor", std::get<3>(*c), "Margin in spreads: max(max-regression, F x (spread BASE + spread NEW))")
      ->capture_default_str();
  cmp->add_option("--per-cpu", std::get<4>(*c),
                  "A directory of baselines: the one measured on NEW's CPU model is used instead of BASE "
                  "(wall-time ratios depend on the CPU)");
  cmp->callback([c, &exit_code] {
    try {
      compare_reports(std::get<0>(*c), std::get<1>(*c), std::get<2>(*c), std::get<3>(*c), std::get<4>(*c), exit_code);
    } catch (const core::Error& e) {  // 2, not 1: a broken report is not a regression
      std::fprintf(stderr, "tributary bench compare: %s\n", e.what());
      exit_code = 2;
    }
  });

  auto ch = std::make_shared<std::tuple<std::string, std::string, std::string>>("", "", "Tributary: throughput per stage");
  CLI::App* chart = b->add_subcommand("chart", "Draw a report's throughput figures as an SVG bar chart");
  chart->add_option("REPORT", std::get<0>(*ch), "A report from `tributary bench --json`")->required();
  chart->add_option("--svg", std::get<1>(*ch), "Output file")->required();
  chart->add_option("--title", std::get<2>(*ch), "Chart title")->capture_default_str();
  chart->callback([ch, &exit_code] {
    const auto r = bench::read_report(std::get<0>(*ch));
    std::ofstream f(std::get<1>(*ch));
    f << bench::throughput_svg(r, std::get<2>(*ch));
    if (!f.flush()) throw core::Error(fmt::format("cannot write {}", std::get<1>(*ch)));
    exit_code = 0;
  });

  b->callback([o, b, &exit_code] {
    if (!b->get_subcommands().empty()) return;
    exit_code = run_suites(*o);
  });
}

}  // namespace tributary::tools
