// `tributary demo` end to end (generated data with malformed rows, identical duplicate rows,
// users missing from user_info and empty codes) against a local real Kafka: the three CSV
// outputs equal an independent recount of the CSV files done here; bad inputs give the
// documented errors.
#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "support/analyzer_status.h"
#include "support/net_util.h"
#include "support/process.h"
#include "support/temp_dir.h"

namespace tributary::tools {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::slurp;
using testing::TempDir;

const std::string kTributary = TRIBUTARY_BIN;

bool is_int(const std::string& s) {
  if (s.empty()) return false;
  std::size_t i = s[0] == '-' ? 1 : 0;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string cell;
  while (std::getline(ss, cell, ',')) out.push_back(cell);
  if (!line.empty() && line.back() == ',') out.emplace_back();
  return out;
}

// The recount: the brief's rules applied to the files, nothing shared with Tributary's code.
std::map<std::string, std::string> recount(const std::filesystem::path& data) {
  std::map<std::string, std::pair<std::string, std::string>> info;
  std::ifstream fi(data / "user_info_format1.csv");
  std::string line;
  std::getline(fi, line);
  while (std::getline(fi, line)) {
    const auto c = split(line);
    if (c.size() == 3) info[std::to_string(std::stoull(c[0]))] = {c[1], c[2]};
  }
  const std::map<std::string, std::string> age_label = {{"1", "<18"},   {"2", "18-24"}, {"3", "25-29"}, {"4", "30-34"},
                                                        {"5", "35-39"}, {"6", "40-49"}, {"7", ">=50"},  {"8", ">=50"}};
  std::map<std::string, std::uint64_t> age, gender;
  std::map<std::string, std::uint64_t> day;
  std::uint64_t total = 0;
  std::ifstream fl(data / "user_log_format1.csv");
  std::getline(fl, line);
  while (std::getline(fl, line)) {
    if (line.empty()) continue;
    const auto c = split(line);
    if (c.size() != 7 || !is_int(c[0]) || !is_int(c[5]) || !is_int(c[6])) continue;  // malformed: rejected
    if (c[6] != "2") continue;
    ++total;
    const auto it = info.find(std::to_string(std::stoull(c[0])));
    const std::string a = it == info.end() ? "" : it->second.first, g = it == info.end() ? "" : it->second.second;
    ++age[age_label.count(a) ? age_label.at(a) : "unknown"];
    ++gender[g == "0" ? "female" : g == "1" ? "male" : "unknown"];
    ++day[fmt::format("{:04d}", std::stoi(c[5]))];
  }
  auto share = [&](std::uint64_t n) { return fmt::format("{:.4f}", total ? double(n) / double(total) : 0.0); };
  std::string a = "age_range,orders,share\n", g = "gender,orders,share\n", d = "day,orders\n";
  for (const char* l : {"<18", "18-24", "25-29", "30-34", "35-39", "40-49", ">=50", "unknown"})
    a += fmt::format("{},{},{}\n", l, age[l], share(age[l]));
  for (const char* l : {"female", "male", "unknown"}) g += fmt::format("{},{},{}\n", l, gender[l], share(gender[l]));
  for (const auto& [k, n] : day) d += fmt::format("{},{}\n", k, n);
  return {{"orders_by_age.csv", a}, {"orders_by_gender.csv", g}, {"orders_by_day.csv", d}};
}


// The bars a screenshot shows: runs of pixel rows holding the bars' colour (#3b7dd8, the
// inside of a bar, never anti-aliased). 0 if the file is not a PNG.
std::size_t bars_in_screenshot(const std::filesystem::path& png) {
  png_image img{};
  img.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_file(&img, png.c_str()) == 0) return 0;
  img.format = PNG_FORMAT_RGB;
  std::vector<std::uint8_t> px(PNG_IMAGE_SIZE(img));
  if (png_image_finish_read(&img, nullptr, px.data(), 0, nullptr) == 0) return 0;
  std::size_t runs = 0;
  bool in_bar = false;
  for (std::uint32_t y = 0; y < img.height; ++y) {
    bool bar = false;
    for (std::uint32_t x = 0; x < img.width && !bar; ++x) {
      const std::uint8_t* p = &px[(std::size_t{y} * img.width + x) * 3];
      bar = p[0] == 0x3b && p[1] == 0x7d && p[2] == 0xd8;
    }
    if (bar && !in_bar) ++runs;
    in_bar = bar;
  }
  return runs;
}

// The bars the three charts must show: one per output row whose bar is at least a pixel wide
// (a chart is 460 px wide at its largest value).
std::size_t bars_expected(const std::filesystem::path& out) {
  std::size_t n = 0;
  for (const char* file : {"orders_by_age.csv", "orders_by_gender.csv", "orders_by_day.csv"}) {
    std::ifstream f(out / file);
    std::string line;
    std::getline(f, line);  // header
    std::vector<std::uint64_t> v;
    while (std::getline(f, line)) {
      std::stringstream ss(line);
      std::string key, orders;  // every file's second column is the orders
      std::getline(ss, key, ',');
      std::getline(ss, orders, ',');
      v.push_back(std::stoull(orders));
    }
    const std::uint64_t max = std::max<std::uint64_t>(1, v.empty() ? 1 : *std::max_element(v.begin(), v.end()));
    for (const std::uint64_t x : v) n += static_cast<int>(460.0 * double(x) / double(max)) > 0;
  }
  return n;
}

TEST(DemoTest, OutputsEqualAnIndependentRecountOfTheFiles) {
  if (!testing::have_command("java") || !testing::have_command("mvn")) GTEST_SKIP() << "java and mvn run the local Kafka (apt-get install openjdk-17-jre-headless maven)";
  TempDir dir;
  ASSERT_EQ(std::system(fmt::format("{} gen tianchi --users 8000 --rows 200000 --seed 5 --malformed 0.002 "
                                    "--duplicates 0.002 --out {} > /dev/null",
                                    kTributary, (dir / "data").string())
                            .c_str()),
            0);
  const int port = 20000 + static_cast<int>(std::random_device{}() % 12000);
  // Its progress (a line a second) goes to a file, not into a pipe nobody reads.
  Child demo({"/bin/sh", "-c", "out=$1; shift; exec \"$0\" \"$@\" > \"$out\"", kTributary, (dir / "demo.out").string(),
              "demo", "--data", (dir / "data").string(), "--out", (dir / "out").string(), "--port",
              std::to_string(port), "--timeout", "240"});
  const int status = demo.wait(300s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  ASSERT_EQ(WEXITSTATUS(status), 0) << slurp(dir / "demo.out") << "\nanalyzer.log:\n"
                                    << slurp(dir / "out" / "work" / "analyzer.log") << "\nagent.log:\n"
                                    << slurp(dir / "out" / "work" / "agent.log");
  const auto expected = recount(dir / "data");
  for (const auto& [file, text] : expected) EXPECT_EQ(slurp(dir / "out" / file), text) << file;
  // The summary's figures come from the analyzer's status: the orders are the files' total.
  std::uint64_t orders = 0;
  std::stringstream by_gender(expected.at("orders_by_gender.csv"));
  std::string row;
  std::getline(by_gender, row);  // header
  while (std::getline(by_gender, row)) orders += std::stoull(row.substr(row.find(',') + 1));
  EXPECT_GT(orders, 0u);
  EXPECT_NE(slurp(dir / "demo.out").find(fmt::format(" events/s end to end); orders {}; rejected ", orders)),
            std::string::npos)
      << slurp(dir / "demo.out");
  for (const char* f : {"orders_by_age.svg", "orders_by_gender.svg", "orders_by_day.svg", "report.html"})
    EXPECT_TRUE(std::filesystem::file_size(dir / "out" / f) > 100) << f;
  // The report as a person opens it: headless Chromium renders it with the three charts.
  if (!testing::have_command("chromium")) GTEST_SKIP() << "chromium not installed (apt-get install chromium): report not rendered";
  const std::string flags = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run "
                            "--disable-background-networking --disable-component-update --disable-sync --user-data-dir=" +
                            (dir / "chromium").string();
  const std::string url = "file://" + (dir / "out" / "report.html").string();
  ASSERT_EQ(std::system(("timeout 120 chromium " + flags + " --dump-dom " + url + " > " + (dir / "dom.html").string() +
                         " 2> /dev/null").c_str()),
            0);
  const std::string dom = slurp(dir / "dom.html");
  std::size_t svgs = 0;
  for (std::size_t at = dom.find("<svg"); at != std::string::npos; at = dom.find("<svg", at + 1)) ++svgs;
  EXPECT_EQ(svgs, 3u) << "the three charts";
  EXPECT_NE(dom.find("Orders by customer age range, gender and day"), std::string::npos);
  // Tall enough for the whole page (the day chart has a bar per day, 22 px each).
  ASSERT_EQ(std::system(("timeout 120 chromium " + flags + " --window-size=1000,14000 --screenshot=" +
                         (dir / "report.png").string() + " " + url + " > /dev/null 2>&1")
                            .c_str()),
            0);
  const std::size_t want = bars_expected(dir / "out");
  EXPECT_GT(want, 10u);
  EXPECT_EQ(bars_in_screenshot(dir / "report.png"), want) << "every bar of the three charts, drawn";
}

// Processes whose command line names `dir` (the demo's agent, analyzer and Kafka broker all do).
std::vector<std::string> processes_under(const std::filesystem::path& dir) {
  std::vector<std::string> found;
  for (const auto& e : std::filesystem::directory_iterator("/proc")) {
    const std::string pid = e.path().filename();
    if (pid.find_first_not_of("0123456789") != std::string::npos || pid == std::to_string(::getpid())) continue;
    std::string cmdline = slurp(e.path() / "cmdline");
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(dir.string()) != std::string::npos) found.push_back(pid + ": " + cmdline);
  }
  return found;
}

// Ctrl-C in the middle of the demo: it stops what it started, the local Kafka included, and
// says why, instead of dying with a 512 MB JVM, the agent and the analyzer left running.
TEST(DemoTest, InterruptedItStopsTheAgentTheAnalyzerAndKafka) {
  if (!testing::have_command("java") || !testing::have_command("mvn")) GTEST_SKIP() << "java and mvn run the local Kafka (apt-get install openjdk-17-jre-headless maven)";
  TempDir dir;
  const int port = 20000 + static_cast<int>(std::random_device{}() % 12000);
  Child demo({"/bin/sh", "-c", "out=$1; shift; exec \"$0\" \"$@\" > \"$out\" 2>&1", kTributary,
              (dir / "demo.out").string(), "demo", "--rows", "2000000", "--out", (dir / "out").string(), "--port",
              std::to_string(port), "--timeout", "240"});
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (slurp(dir / "demo.out").find("Kafka at") == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(100ms);  // another process's progress: polled, bounded above
  ASSERT_NE(slurp(dir / "demo.out").find("Kafka at"), std::string::npos) << slurp(dir / "demo.out");
  ASSERT_FALSE(processes_under(dir.path()).empty()) << "the demo's processes are not running:\n" << slurp(dir / "demo.out");
  demo.signal(SIGINT);  // once the demo blocks it for its signalfd
  const int status = demo.wait(90s);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status << "\n" << slurp(dir / "demo.out");
  EXPECT_EQ(WEXITSTATUS(status), 1);
  EXPECT_NE(slurp(dir / "demo.out").find("interrupted"), std::string::npos) << slurp(dir / "demo.out");
  const auto left = processes_under(dir.path());
  EXPECT_TRUE(left.empty()) << "left running: " << fmt::format("{}", fmt::join(left, "\n"));
}

TEST(DemoTest, BadDataGivesTheDocumentedErrors) {
  TempDir dir;
  auto run = [&](const std::string& args) {
    const std::string cmd = kTributary + " demo " + args + " > " + (dir / "err.txt").string() + " 2>&1";
    const int rc = std::system(cmd.c_str());
    return std::make_pair(rc, slurp(dir / "err.txt"));
  };
  std::filesystem::create_directories(dir / "empty");
  auto [rc1, e1] = run("--data " + (dir / "empty").string() + " --out " + (dir / "o1").string());
  EXPECT_NE(rc1, 0);
  EXPECT_NE(e1.find("user_log_format1.csv is missing"), std::string::npos) << e1;
  std::filesystem::create_directories(dir / "bad");
  std::ofstream(dir / "bad" / "user_log_format1.csv") << "a,b,c\n1,2,3\n";
  std::ofstream(dir / "bad" / "user_info_format1.csv") << "user_id,age_range,gender\n";
  auto [rc2, e2] = run("--data " + (dir / "bad").string() + " --out " + (dir / "o2").string());
  EXPECT_NE(rc2, 0);
  EXPECT_NE(e2.find("has header 'a,b,c'"), std::string::npos) << e2;
  std::ofstream(dir / "file") << "x";
  auto [rc3, e3] = run("--out " + (dir / "file" / "sub").string());
  EXPECT_NE(rc3, 0);
  EXPECT_NE(e3.find("cannot write there"), std::string::npos) << e3;
  // The local Kafka's port taken by someone else: said before anything starts.
  const testing::LoopbackListener taken;
  const int port = taken.port();
  auto [rc4, e4] = run(fmt::format("--rows 1000 --port {} --out {}", port, (dir / "o4").string()));
  EXPECT_NE(rc4, 0);
  EXPECT_NE(e4.find(fmt::format("port {} is in use: pick another with --port", port)), std::string::npos) << e4;
}

}  // namespace
}  // namespace tributary::tools
