// `tributary analyze` as a process on the paper's experiment: from a channel and from Kafka,
// outputs equal an independent recount; killed with SIGKILL at random moments and restarted,
// the final outputs are unchanged and the audit is clean (each event accounted once).
#include <gtest/gtest.h>

#include <fstream>
#include <random>
#include <thread>

#include "support/channel_util.h"
#include "support/kafka_util.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/tianchi_util.h"
#include "tributary/uplink/uplink.h"

namespace tributary::analytics {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::TempDir;
using testing::TianchiData;

const std::string kTributary = TRIBUTARY_BIN;

std::string slurp(const std::filesystem::path& p) {
  std::ifstream f(p);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

// Fills a channel: source 1 the JSON rows, source 2 a few malformed raw lines.
std::uint64_t fill_channel(core::Channel& ch, const TianchiData& d) {
  core::Producer p = ch.producer();
  std::uint64_t seq = 0;
  for (const auto& r : d.rows) EXPECT_EQ(p.append({1, seq++}, TianchiData::json(r)), core::AppendStatus::kOk);
  EXPECT_EQ(p.append({2, 0}, "12,34,5,6,7,1111,2"), core::AppendStatus::kOk);
  EXPECT_EQ(p.append({2, 1}, R"({"user_id":"x","time_stamp":1111,"action_type":2})"), core::AppendStatus::kOk);
  return d.rows.size() + 2;
}

// counted + filtered + rejected in status.json (0 if not there yet).
std::uint64_t accounted(const std::filesystem::path& state) {
  std::uint64_t counted = 0, filtered = 0, rejected = 0;
  if (std::sscanf(slurp(state / "status.json").c_str(), R"({"counted":%lu,"filtered":%lu,"rejected":%lu)", &counted,
                  &filtered, &rejected) != 3)
    return 0;
  return counted + filtered + rejected;
}

// Waits (bounded) until status.json says every event was accounted for.
bool wait_accounted(const std::filesystem::path& state, std::uint64_t n, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string s = slurp(state / "status.json");
    std::uint64_t counted = 0, filtered = 0, rejected = 0;
    if (std::sscanf(s.c_str(), R"({"counted":%lu,"filtered":%lu,"rejected":%lu)", &counted, &filtered, &rejected) == 3 &&
        counted + filtered + rejected == n)
      return true;
    std::this_thread::sleep_for(50ms);  // another process's progress: polled, bounded above
  }
  return false;
}

void expect_outputs(const std::filesystem::path& state, const TianchiData& d) {
  for (const auto& [file, text] : d.expected_outputs()) EXPECT_EQ(slurp(state / file), text) << file;
}

// The data set's user_info, a channel holding its rows, and an analyzer config reading it.
// Returns the number of events in the channel.
std::uint64_t prepare_channel_job(const TempDir& dir, const TianchiData& d, std::uint64_t capacity, int checkpoint_ms) {
  d.write_info(dir / "user_info.csv");
  core::ChannelConfig cfg;
  cfg.capacity = capacity;
  auto ch = core::Channel::create(dir / "c.chan", cfg);
  const std::uint64_t n = fill_channel(ch, d);
  testing::write_tianchi_analyze_config(dir / "analyze.toml",
                                        "type = \"channel\"\npath = \"" + (dir / "c.chan").string() + "\"\n",
                                        dir / "user_info.csv", dir / "out", checkpoint_ms);
  return n;
}

TEST(AnalyzeProcessTest, FromAChannelTheOutputsEqualARecount) {
  TempDir dir;
  const auto d = TianchiData::make(3, 500, 20000);
  const std::uint64_t n = prepare_channel_job(dir, d, 16 << 20, 200);
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", n, 30s));
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(10s), 0);
  expect_outputs(dir / "out", d);
  EXPECT_NE(slurp(dir / "out" / "status.json").find(R"("rejected":2)"), std::string::npos);
}

TEST(AnalyzeProcessTest, KilledAtRandomAndRestartedTheTotalsAreUnchanged) {
  TempDir dir;
  const auto d = TianchiData::make(5, 3000, 300000);
  const std::uint64_t n = prepare_channel_job(dir, d, 128 << 20, 20);
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  int mid_stream = 0;
  for (int k = 0; k < 8; ++k) {
    const std::uint64_t before = accounted(dir / "out");
    Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
    // Wait (bounded) until this run has made progress, then kill it at a random moment after:
    // the kills land mid-stream however slowly the build starts (sanitizers).
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (accounted(dir / "out") == before && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(2ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 40));  // a random moment
    job.kill_and_reap();
    const std::uint64_t a = accounted(dir / "out");
    mid_stream += a > before && a < n;
  }
  EXPECT_GE(mid_stream, 2) << "the kills must land while events are being analyzed";
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", n, 60s));
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(10s), 0);
  expect_outputs(dir / "out", d);
  const std::string status = slurp(dir / "out" / "status.json");
  EXPECT_NE(status.find(R"({"source":1,"accounted":300000,"gaps":0)"), std::string::npos) << status;
}

TEST(AnalyzeProcessTest, FromKafkaTheOutputsEqualARecount) {
  TempDir dir;
  const auto d = TianchiData::make(9, 400, 20000);
  d.write_info(dir / "user_info.csv");
  uplink::MockCluster mock(1);
  mock.create_topic("tianchi", 2);
  core::ChannelConfig cfg;
  cfg.capacity = 16 << 20;
  auto ch = core::Channel::create(dir / "c.chan", cfg);
  const std::uint64_t n = fill_channel(ch, d);
  {
    uplink::Uplink up(ch, {.name = "up", .topic = "tianchi", .kafka = {{"bootstrap.servers", mock.bootstrap()}}});
    ASSERT_TRUE(testing::ship_all(up, ch, 30s));
  }
  testing::write_tianchi_analyze_config(dir / "analyze.toml",
                                        "type = \"kafka\"\nbootstrap = \"" + mock.bootstrap() + "\"\ntopic = \"tianchi\"\n",
                                        dir / "user_info.csv", dir / "out");
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", n, 60s));
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(10s), 0);
  expect_outputs(dir / "out", d);
}

TEST(AnalyzeProcessTest, ValidateListsConfigErrorsWithLines) {
  TempDir dir;
  std::ofstream(dir / "bad.toml") << "[input]\ntype = \"pigeon\"\n[fields]\nuser_id = 5\n[[outputs]]\nname = \"x\"\nby = \"nope\"\n";
  Child v({kTributary, "analyze", "--config", (dir / "bad.toml").string(), "--validate"});
  const int status = v.wait(10s);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

}  // namespace
}  // namespace tributary::analytics
