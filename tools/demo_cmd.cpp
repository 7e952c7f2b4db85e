// `tributary demo`: the paper's experiment through the real path, as separate processes:
//   replay (2 writers) -> 2 log files -> agent (2 tail collectors -> channel -> uplink)
//   -> Kafka (local KRaft unless --bootstrap) -> analyzer (join user_info, exactly-once totals)
// then the tables, CSVs, SVG charts and an HTML report in OUT. It is done when the analyzer has
// accounted for every line sent, in total and per log file; after a bounded wait it names the
// shortfall instead of hanging.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstring>
#include <deque>
#include <chrono>
#include <fmt/format.h>
#include <fstream>
#include <map>
#include <optional>
#include <simdjson.h>
#include <sstream>
#include <thread>

#include "commands.h"
#include "tianchi.h"
#include "topic_audit.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/uplink/local_kafka.h"

extern char** environ;

namespace tributary::tools {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// The last `most` lines of `file` that hold any of `needles`, each on its own indented line.
std::string matching_lines(const fs::path& file, std::initializer_list<std::string_view> needles, std::size_t most) {
  std::ifstream in(file);
  std::deque<std::string> kept;
  for (std::string line; std::getline(in, line);)
    if (std::any_of(needles.begin(), needles.end(), [&](std::string_view n) { return line.find(n) != std::string::npos; })) {
      kept.push_back(std::move(line));
      if (kept.size() > most) kept.pop_front();
    }
  std::string out;
  for (const auto& l : kept) out += "\n  " + l;
  return out.empty() ? " none" : out;
}

// A child process of ours (agent, analyzer) with its output in a log file; SIGTERM on scope exit.
class Proc {
 public:
  Proc(const std::vector<std::string>& argv, const fs::path& log) {
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_t attr;  // the demo blocks its stop signals (a signalfd): the child must not
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, args[0], &fa, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) throw core::Error(fmt::format("cannot start {}: {}", argv[0], std::strerror(rc)));
  }
  Proc(const Proc&) = delete;
  Proc& operator=(const Proc&) = delete;
  ~Proc() { stop(); }
  // False once it exited (then reaped: its pid is never signalled again, it may be another's).
  [[nodiscard]] bool alive() {
    if (pid_ > 0 && ::waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
    return pid_ > 0;
  }
  [[nodiscard]] pid_t pid() const { return pid_; }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 300; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {  // reaped: its pid may be another's now
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(50ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

// CPU seconds (user + system) and peak RSS of a running process, from /proc.
struct Usage {
  double cpu_s = 0;
  std::uint64_t peak_rss_kb = 0;
};
Usage usage_of(pid_t pid) {
  Usage u;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string text((std::istreambuf_iterator<char>(stat)), {});
  const auto close = text.rfind(')');
  if (close != std::string::npos) {
    std::istringstream rest(text.substr(close + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i)
      if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    u.cpu_s = ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  std::ifstream status(fmt::format("/proc/{}/status", pid));
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) u.peak_rss_kb = std::strtoull(line.c_str() + 6, nullptr, 10);
  return u;
}

// The figures the demo reports, from the analyzer's status.json and the agent's status file.
// Both are written whole (rename into place); one that cannot be read yet gives zeros.
struct AnalyzerFigures {
  std::uint64_t counted = 0, filtered = 0, rejected = 0, duplicates = 0;
  std::vector<std::uint64_t> accounted_per_source;  // sorted
  std::string position;  // where its input is read to ("kafka 0:58 1:60")
  [[nodiscard]] std::uint64_t accounted() const { return counted + filtered + rejected; }
};

struct AgentFigures {
  std::vector<std::uint64_t> read_per_source;  // events read by each collector, in name order
  std::uint64_t records_written = 0;            // over every channel
  std::uint64_t delivered = 0, failed = 0, dead_lettered = 0;  // over every uplink
  std::string last_errors;  // "uplink: error" of every uplink that has one
};

std::uint64_t number_at(simdjson::dom::element e, std::string_view key) {
  std::uint64_t v = 0;
  return e[key].get(v) == simdjson::SUCCESS ? v : 0;
}

AnalyzerFigures analyzer_figures(const fs::path& file) {
  AnalyzerFigures f;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.load(file.string()).get(doc) != simdjson::SUCCESS) return f;
  f.counted = number_at(doc, "counted");
  f.filtered = number_at(doc, "filtered");
  f.rejected = number_at(doc, "rejected");
  f.duplicates = number_at(doc, "duplicates");
  std::string_view position;
  if (doc["position"].get(position) == simdjson::SUCCESS) f.position = position;
  simdjson::dom::array sources;
  if (doc["sources"].get(sources) == simdjson::SUCCESS)
    for (simdjson::dom::element src : sources) f.accounted_per_source.push_back(number_at(src, "accounted"));
  std::sort(f.accounted_per_source.begin(), f.accounted_per_source.end());
  return f;
}

// The topic against the analyzer's final checkpoint (topic_audit.h), or why it could not be read.
std::string checkpoint_audit(const std::string& bootstrap, const std::string& topic, const fs::path& checkpoint) {
  try {
    return " " + describe(audit_topic(bootstrap, topic, checkpoint_ledger(checkpoint), 60s));
  } catch (const std::exception& e) {
    return std::string(" ") + e.what();
  }
}

AgentFigures agent_figures(const fs::path& file) {
  AgentFigures f;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.load(file.string()).get(doc) != simdjson::SUCCESS) return f;
  simdjson::dom::object group;
  if (doc["sources"].get(group) == simdjson::SUCCESS)
    for (auto [name, src] : group) f.read_per_source.push_back(number_at(src, "events"));
  if (doc["channels"].get(group) == simdjson::SUCCESS)
    for (auto [name, ch] : group) f.records_written += number_at(ch, "records_written");
  if (doc["uplinks"].get(group) == simdjson::SUCCESS)
    for (auto [name, up] : group) {
      f.delivered += number_at(up, "delivered");
      f.failed += number_at(up, "failed");
      f.dead_lettered += number_at(up, "dead_lettered");
      std::string_view error;
      if (up["last_error"].get(error) == simdjson::SUCCESS && !error.empty())
        f.last_errors += fmt::format("{}{}: {}", f.last_errors.empty() ? "" : "; ", name, error);
    }
  return f;
}

void check_data(const fs::path& dir) {
  for (const auto& [file, header] :
       {std::pair<std::string, std::string>{"user_log_format1.csv", "user_id,item_id,cat_id,seller_id,brand_id,time_stamp,action_type"},
        {"user_info_format1.csv", "user_id,age_range,gender"}}) {
    std::ifstream f(dir / file);
    if (!f) throw core::Error(fmt::format("--data {}: {} is missing", dir.string(), file));
    std::string h;
    std::getline(f, h);
    if (!h.empty() && h.back() == '\r') h.pop_back();
    if (h != header)
      throw core::Error(fmt::format("--data {}: {} has header '{}', expected '{}'", dir.string(), file, h.substr(0, 80), header));
  }
}

struct Table {
  std::string title, header;
  std::vector<std::pair<std::string, std::uint64_t>> rows;
  std::vector<std::string> lines;  // as written
};

Table read_table(const fs::path& csv, std::string title) {
  Table t{std::move(title), {}, {}, {}};
  std::ifstream f(csv);
  std::getline(f, t.header);
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    t.lines.push_back(line);
    const auto c = line.find(',');
    t.rows.emplace_back(line.substr(0, c), std::strtoull(line.c_str() + c + 1, nullptr, 10));
  }
  return t;
}

std::string escape_xml(const std::string& s) {
  std::string o;
  for (char c : s) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return o;
}

// A horizontal bar chart, hand-written SVG (no plotting library on this path).
std::string svg_chart(const Table& t) {
  const std::size_t n = t.rows.size();
  const int row_h = 22, left = 90, width = 640, bar_w = width - left - 90;
  std::uint64_t max = 1;
  for (const auto& [k, v] : t.rows) max = std::max(max, v);
  std::string s = fmt::format(
      R"(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" font-family="sans-serif" font-size="12">)"
      "\n<text x=\"8\" y=\"18\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
      width, 34 + row_h * static_cast<int>(n), escape_xml(t.title));
  for (std::size_t i = 0; i < n; ++i) {
    const int y = 30 + row_h * static_cast<int>(i);
    const int w = static_cast<int>(double(bar_w) * double(t.rows[i].second) / double(max));
    s += fmt::format(R"(<text x="{}" y="{}" text-anchor="end">{}</text><rect x="{}" y="{}" width="{}" height="{}" fill="#3b7dd8"/><text x="{}" y="{}">{}</text>)"
                     "\n",
                     left - 6, y + 15, escape_xml(t.rows[i].first), left, y + 3, w, row_h - 6, left + w + 4, y + 15,
                     t.rows[i].second);
  }
  return s + "</svg>\n";
}

struct DemoArgs {
  std::string data, out = "tributary-demo-out", bootstrap;
  std::uint64_t rows = 200000;
  int port = 9092;
  int timeout = 600;
  int fetch_queue_mb = 16;  // the analyzer's read-ahead per partition ([input] fetch_queue_mb)
};

int run_demo(const DemoArgs& a, const std::string& self) {
  // Each step's line as it happens, also into a pipe or a file (`| tee`, a test waiting for
  // "Kafka at"): stdout there is block-buffered, and the steps came out only with the first
  // progress line, or at the end of a short run.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  // Ctrl-C, SIGTERM or SIGHUP (the terminal closed) once it has started processes: the demo
  // stops them (the analyzer, the agent, the local Kafka) on its way out instead of dying with
  // them left running. Blocked from just before Kafka starts (the data generated and Kafka's jars
  // fetched first, so that a Ctrl-C there simply ends it).
  core::Fd stop;
  auto check_stop = [&] {
    pollfd p{stop.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) > 0) throw core::Error("interrupted: stopping the analyzer, the agent and Kafka");
  };
  const fs::path out = fs::absolute(a.out);
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec || ::access(out.c_str(), W_OK) != 0) throw core::Error(fmt::format("--out {}: cannot write there", out.string()));
  const fs::path work = out / "work";
  fs::remove_all(work / "logs");
  fs::remove_all(work / "analyzer");
  fs::remove(work / "demo.chan");
  fs::create_directories(work / "logs");

  fs::path data = a.data.empty() ? out / "data" : fs::absolute(a.data);
  if (a.data.empty()) {
    GenOptions g;
    g.rows = a.rows;
    g.users = std::max<std::uint64_t>(1000, a.rows / 20);
    g.malformed = 0.001;
    g.duplicates = 0.001;
    const auto r = generate_tianchi(data, g);
    fmt::print("generated {} log rows for {} users in {} ({:.1f} M rows/s)\n", r.log_rows, g.users, data.string(),
               double(r.log_rows) / r.seconds / 1e6);
  }
  check_data(data);

  std::optional<uplink::LocalKafka> kafka;
  if (a.bootstrap.empty()) {
    uplink::LocalKafkaOptions ko;
    ko.dir = work / "kafka";
    ko.port = a.port;
    kafka.emplace(ko);
    if (!kafka->fetched()) kafka->fetch();
  }
  stop = core::Fd(stop_signal_fd(true));
  struct KafkaStop {  // also when start() throws: a broker slow to answer is running
    std::optional<uplink::LocalKafka>& k;
    ~KafkaStop() {
      if (k) k->stop();
    }
  } kafka_stop{kafka};
  std::string bootstrap = a.bootstrap;
  if (kafka) {
    fmt::print("starting a local Kafka in {} ...\n", (work / "kafka").string());
    bootstrap = kafka->start();
  }
  check_stop();
  const std::string topic = fmt::format("tianchi-{}", std::chrono::system_clock::now().time_since_epoch().count());
  fmt::print("Kafka at {}, topic {}\n", bootstrap, topic);

  std::ofstream(work / "agent.toml") << fmt::format(R"([agent]
name = "demo"
status_file = {0}
[channels.events]
path = {1}
capacity = "64M"
[sources.log0]
type = "tail"
channels = ["events"]
paths = [{2}]
[sources.log1]
type = "tail"
channels = ["events"]
paths = [{3}]
[uplinks.kafka]
channel = "events"
topic = {4}
bootstrap = {5}
packed = true
)",
                                                    toml_quoted((work / "agent.status.json").string()),
                                                    toml_quoted((work / "demo.chan").string()),
                                                    toml_quoted(glob_escaped((work / "logs" / "replay-0.log").string())),
                                                    toml_quoted(glob_escaped((work / "logs" / "replay-1.log").string())),
                                                    toml_quoted(topic), toml_quoted(bootstrap));
  std::ofstream(work / "analyze.toml") << tianchi_analyze_config(
      fmt::format("type = \"kafka\"\nbootstrap = {}\ntopic = {}\ngroup = \"tributary-demo\"\nfetch_queue_mb = {}\n",
                  toml_quoted(bootstrap), toml_quoted(topic), a.fetch_queue_mb),
      data / "user_info_format1.csv", work / "analyzer", 500);

  // The analyzer loads user_info before the stream starts; then the agent; then the replay.
  Proc analyzer({self, "analyze", "--config", (work / "analyze.toml").string()}, work / "analyzer.log");
  Proc agent({self, "agent", "--config", (work / "agent.toml").string()}, work / "agent.log");
  const auto t0 = std::chrono::steady_clock::now();
  ReplayOptions ro;
  ro.input = data / "user_log_format1.csv";
  ro.out_dir = work / "logs";
  ro.concurrency = 2;
  ro.stop_fd = stop.get();
  const ReplayResult sent = replay(ro);
  std::uint64_t total = 0;
  for (auto n : sent.lines) total += n;
  fmt::print("replayed {} lines into {} files in {:.2f} s\n", total, sent.files.size(), sent.seconds);

  const bool tty = ::isatty(1) != 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(a.timeout);
  AnalyzerFigures status;
  auto last = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < deadline) {
    status = analyzer_figures(work / "analyzer" / "status.json");
    if (status.accounted() >= total) break;
    check_stop();  // before the children's state: a terminal's Ctrl-C reaches them too
    if (!analyzer.alive() || !agent.alive())
      throw core::Error(fmt::format("the {} exited; see {}", analyzer.alive() ? "agent" : "analyzer",
                                    (work / (analyzer.alive() ? "agent.log" : "analyzer.log")).string()));
    if (std::chrono::steady_clock::now() - last >= 1s) {
      const AgentFigures agent_status = agent_figures(work / "agent.status.json");
      const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      const std::string line = fmt::format("replayed {} | shipped {} | counted {} | {:.0f} events/s", total,
                                           agent_status.delivered, status.accounted(),
                                           double(status.accounted()) / secs);
      if (tty) fmt::print("\r{:<90}", line); else fmt::print("{}\n", line);
      std::fflush(stdout);
      last = std::chrono::steady_clock::now();
    }
    pollfd p{stop.get(), POLLIN, 0};  // polling the other processes' status files, bounded by the deadline
    if (::poll(&p, 1, 100) > 0) check_stop();
  }
  if (tty) fmt::print("\n");
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // CPU and peak memory of every process of the path, read before they stop.
  std::vector<std::pair<std::string, Usage>> usage = {{"agent (tail + channel + uplink)", usage_of(agent.pid())},
                                                      {"analyzer", usage_of(analyzer.pid())}};
  if (kafka)
    for (const auto& b : kafka->status())
      if (b.pid != 0) usage.emplace_back(fmt::format("kafka broker {} (JVM)", b.node_id), usage_of(b.pid));
  analyzer.stop();  // final checkpoint and outputs
  agent.stop();
  status = analyzer_figures(work / "analyzer" / "status.json");
  std::vector<std::uint64_t> want = sent.lines;
  std::sort(want.begin(), want.end());
  const std::uint64_t accounted = status.accounted();
  const auto& per_source = status.accounted_per_source;
  if (accounted != total || per_source != want) {
    std::string files;
    for (std::size_t k = 0; k < sent.files.size(); ++k) files += fmt::format(" {}={}", sent.files[k].filename().string(), sent.lines[k]);
    std::string got;
    for (auto n : per_source) got += fmt::format(" {}", n);
    // Where the lines stopped: read by the tail collectors, written to the channel, delivered
    // to Kafka, accounted by the analyzer.
    const AgentFigures agent_status = agent_figures(work / "agent.status.json");
    std::string read;
    for (auto n : agent_status.read_per_source) read += fmt::format(" {}", n);
    const std::string& last_error = agent_status.last_errors;
    fmt::print(stderr,
               "demo: the analyzer accounted for {} of {} lines after {:.0f} s (sent per file:{}; read per tail "
               "source:{}; in the channel {}; delivered to Kafka {}, failed {}, dead-lettered {}{}; accounted per "
               "source:{}, {} copies dropped; read to {}; in Kafka against the final checkpoint:{}); see {}\n",
               accounted, total, secs, files, read, agent_status.records_written, agent_status.delivered,
               agent_status.failed, agent_status.dead_lettered, last_error.empty() ? "" : ", last error: " + last_error,
               got, status.duplicates, status.position.empty() ? "?" : status.position,
               checkpoint_audit(bootstrap, topic, work / "analyzer" / "checkpoint"), work.string());
    // What the processes said meanwhile, and what the broker did with the topic's partitions
    // (created, led, truncated, deleted): the work directory may not outlive a CI machine.
    for (const char* name : {"agent.log", "analyzer.log"})
      fmt::print(stderr, "demo: warnings and errors in {}:{}\n", name,
                 matching_lines(work / name, {"] [warning] ", "] [error] ", "] [critical] "}, 40));
    if (kafka && fs::is_directory(work / "kafka"))
      for (const auto& node : fs::directory_iterator(work / "kafka"))
        if (fs::exists(node.path() / "kafka.log"))
          fmt::print(stderr, "demo: {} about {}:{}\n", (node.path() / "kafka.log").string(), topic,
                     matching_lines(node.path() / "kafka.log", {topic}, 60));
    return 1;
  }
  for (const char* f : {"orders_by_age.csv", "orders_by_gender.csv", "orders_by_day.csv"})
    fs::copy_file(work / "analyzer" / f, out / f, fs::copy_options::overwrite_existing);
  const Table tables[] = {read_table(out / "orders_by_age.csv", "Orders by age range"),
                          read_table(out / "orders_by_gender.csv", "Orders by gender"),
                          read_table(out / "orders_by_day.csv", "Orders by day")};
  const char* svgs[] = {"orders_by_age.svg", "orders_by_gender.svg", "orders_by_day.svg"};
  std::string html = "<!doctype html><html><head><meta charset=\"utf-8\"><title>Tributary demo</title>"
                     "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 10px;text-align:right}"
                     "</style></head><body><h1>Orders by customer age range, gender and day</h1>\n";
  html += fmt::format("<p>{} lines through replay, tail, channel, uplink, Kafka and the analyzer in {:.1f} s "
                      "({:.0f} events/s); {} orders; {} rejected (malformed), {} copies dropped.</p>\n",
                      total, secs, double(total) / secs, status.counted, status.rejected, status.duplicates);
  for (int i = 0; i < 3; ++i) {
    const std::string svg = svg_chart(tables[i]);
    std::ofstream(out / svgs[i]) << svg;
    auto cells = [](const std::string& line, const char* tag) {
      std::string row = "<tr>";
      std::stringstream ss(line);
      std::string cell;
      while (std::getline(ss, cell, ',')) row += fmt::format("<{0}>{1}</{0}>", tag, escape_xml(cell));
      return row + "</tr>\n";
    };
    html += "<h2>" + tables[i].title + "</h2>\n" + svg + "<table>" + cells(tables[i].header, "th");
    if (i < 2) {
      fmt::print("\n{}\n  {}\n", tables[i].title, tables[i].header);
      for (const auto& l : tables[i].lines) fmt::print("  {}\n", l);
    }
    for (const auto& l : tables[i].lines) html += cells(l, "td");
    html += "</table>\n";
  }
  fmt::print("\n{}: {} days with orders (see orders_by_day.csv)\n", tables[2].title, tables[2].rows.size());
  fmt::print("\n  {:<34} {:>8} {:>12}\n", "process", "CPU s", "peak RSS");
  html += "<h2>Processes</h2><table><tr><th>process</th><th>CPU s</th><th>peak RSS (MB)</th></tr>\n";
  for (const auto& [name, u] : usage) {
    fmt::print("  {:<34} {:>8.2f} {:>9.1f} MB\n", name, u.cpu_s, double(u.peak_rss_kb) / 1024.0);
    html += fmt::format("<tr><td>{}</td><td>{:.2f}</td><td>{:.1f}</td></tr>\n", escape_xml(name), u.cpu_s,
                        double(u.peak_rss_kb) / 1024.0);
  }
  html += "</table>\n";
  std::ofstream(out / "report.html") << html << "</body></html>\n";
  fmt::print("\n{} lines in {:.1f} s ({:.0f} events/s end to end); orders {}; rejected {}; copies dropped {}\n", total,
             secs, double(total) / secs, status.counted, status.rejected, status.duplicates);
  fmt::print("wrote {0}/orders_by_age.csv, orders_by_gender.csv, orders_by_day.csv, the SVG charts and {0}/report.html\n",
             out.string());
  return 0;
}

}  // namespace

void add_demo_commands(CLI::App& app, int& exit_code) {
  auto a = std::make_shared<DemoArgs>();
  CLI::App* d = app.add_subcommand("demo", "The paper's experiment end to end: Tianchi logs -> orders by age, gender, day");
  d->add_option("--data", a->data, "Directory with user_log_format1.csv and user_info_format1.csv (default: generated)");
  d->add_option("--rows", a->rows, "Rows to generate without --data");
  d->add_option("--out", a->out, "Output directory");
  d->add_option("--bootstrap", a->bootstrap, "An existing Kafka cluster (default: start a local one)");
  d->add_option("--port", a->port, "Port of the local Kafka (its controller at +100)")->check(CLI::Range(1024, 65400));
  d->add_option("--timeout", a->timeout, "Seconds to wait for the analyzer to account for every line");
  d->add_option("--fetch-queue-mb", a->fetch_queue_mb, "The analyzer's read-ahead per partition, in MB")
      ->check(CLI::Range(1, 2047));
  d->callback([a, &exit_code] {
    char self[4096];
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) throw core::Error("cannot find the tributary executable (/proc/self/exe)");
    self[n] = '\0';
    exit_code = run_demo(*a, self);
  });
}

}  // namespace tributary::tools
