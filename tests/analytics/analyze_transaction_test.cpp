// The analyzer's Kafka-transaction mode against a real Kafka (LocalKafka): outputs, changelog
// and consumed offsets commit in one transaction. Killed with SIGKILL twenty times while events
// keep arriving (every event also sent twice under its identity, and identical twins under
// their own), the committed outputs equal an independent recount and the audit is clean; two
// analyzers in one group, one killed: the other takes its partitions over, counts unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <random>
#include <thread>

#include "support/analyzer_status.h"
#include "support/kafka_util.h"
#include "support/local_kafka.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/tianchi_util.h"
#include "tributary/uplink/local_kafka.h"
#include "tributary/uplink/uplink.h"

namespace tributary::analytics {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::TempDir;
using testing::TianchiData;
using testing::accounted;
using testing::slurp;

const std::string kTributary = TRIBUTARY_BIN;

class AnalyzeTransactionTest : public testing::LocalKafkaSuite {
 protected:
  static void create_topic(const std::string& topic, int partitions) {
    auto rk = uplink::make_handle(RD_KAFKA_PRODUCER,
                                  uplink::make_conf({{"bootstrap.servers", bootstrap_}, {"log_level", "3"}}));
    ASSERT_EQ(uplink::ensure_topic(rk.get(), topic, partitions, 1), partitions);
  }

  // The paper's analyzer config on `topic`, in the Kafka-transaction mode of group `group`.
  static void write_config(const std::filesystem::path& file, const std::filesystem::path& info,
                           const std::filesystem::path& state, const std::string& topic, const std::string& group,
                           const std::string& id) {
    testing::write_tianchi_analyze_config(
        file,
        fmt::format("type = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"{}\"\ngroup = \"{}\"\n", bootstrap_, topic, group),
        info, state, 100);
    std::ofstream(file, std::ios::app) << fmt::format(
        "[transaction]\ntopic = \"{0}-counts\"\nid = \"{1}\"\ntimeout_ms = 5000\nsession_timeout_ms = 6000\n", topic, id);
  }
};

// The rows of `d` in source 1, identical twins of the first `twins` rows in source 3 (other
// events that look the same: they count), and two malformed lines in source 2.
struct Feed {
  TianchiData data;          // what must be counted: the rows and their twins
  std::vector<std::pair<core::EventId, std::string>> events;

  Feed(const TianchiData& d, std::size_t twins) : data(d) {
    std::uint64_t seq = 0;
    for (const auto& r : d.rows) events.push_back({{1, seq++}, TianchiData::json(r)});
    for (std::size_t i = 0; i < twins; ++i) {
      events.push_back({{3, i}, TianchiData::json(d.rows[i])});
      data.rows.push_back(d.rows[i]);
    }
    events.push_back({{2, 0}, "12,34,5,6,7,1111,2"});
    events.push_back({{2, 1}, R"({"user_id":"x","time_stamp":1111,"action_type":2})"});
  }
};

// Appends events [from, to) of the feed to the channel and ships them with `up`.
void ship(core::Channel& ch, uplink::Uplink& up, const Feed& f, std::size_t from, std::size_t to) {
  core::Producer p = ch.producer();
  for (std::size_t i = from; i < to; ++i)
    ASSERT_EQ(p.append(f.events[i].first, f.events[i].second), core::AppendStatus::kOk);
  ASSERT_TRUE(testing::ship_all(up, ch, 60s));
}

// counted, filtered, rejected, duplicates of STATE/status.json (zeros before it exists).
std::array<std::uint64_t, 4> status_counts(const std::filesystem::path& state) {
  std::array<std::uint64_t, 4> v{};
  if (std::sscanf(slurp(state / "status.json").c_str(), R"({"counted":%lu,"filtered":%lu,"rejected":%lu,"duplicates":%lu)",
                  &v[0], &v[1], &v[2], &v[3]) != 4)
    return {};
  return v;
}

// Waits (bounded) until STATE/status.json accounts for `n` events and `copies` dropped copies.
bool wait_done(const std::filesystem::path& state, std::uint64_t n, std::uint64_t copies, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto v = status_counts(state);
    if (v[0] + v[1] + v[2] == n && v[3] == copies) return true;
    std::this_thread::sleep_for(50ms);  // another process's progress: polled, bounded above
  }
  return false;
}

void expect_outputs(const std::filesystem::path& state, const TianchiData& d) {
  for (const auto& [file, text] : d.expected_outputs()) EXPECT_EQ(slurp(state / file), text) << file;
}

TEST_F(AnalyzeTransactionTest, KilledTwentyTimesWhileEventsArriveTheCommittedCountsEqualARecount) {
  TempDir dir;
  const auto d = TianchiData::make(21, 2000, 150000);
  const Feed feed(d, 500);
  d.write_info(dir / "user_info.csv");
  create_topic("orders", 3);
  write_config(dir / "analyze.toml", dir / "user_info.csv", dir / "out", "orders", "kills", "kills-1");
  core::ChannelConfig cc;
  cc.capacity = 64 << 20;
  auto ch = core::Channel::create(dir / "c.chan", cc);
  uplink::Uplink up(ch, {.name = "up", .topic = "orders", .kafka = {{"bootstrap.servers", bootstrap_}}});
  // Registered now, so that the channel keeps every event for it: at the end it re-sends all.
  uplink::Uplink again(ch, {.name = "again", .topic = "orders", .kafka = {{"bootstrap.servers", bootstrap_}}});
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  const std::size_t n = feed.events.size();
  // Events keep arriving through the whole kill loop: a feeder ships them in small batches,
  // paced (a producer's rhythm, not a wait for a condition), each run's share released as the
  // run goes, so every kill lands while events are arriving and being analyzed.
  constexpr int kKills = 20;
  std::mutex mu;
  std::condition_variable released;
  std::size_t allowed = 0;
  std::atomic<std::size_t> shipped{0};
  std::atomic<bool> feeder_ok{true};
  std::thread feeder([&] {
    for (std::size_t from = 0; from < n && feeder_ok;) {
      {
        std::unique_lock lock(mu);
        released.wait(lock, [&] { return allowed > from; });
      }
      const std::size_t to = std::min({n, from + 150, allowed});
      ship(ch, up, feed, from, to);
      if (::testing::Test::HasFatalFailure()) feeder_ok = false;
      shipped = from = to;
      std::this_thread::sleep_for(10ms);
    }
  });
  int progressed = 0, mid_stream = 0;
  for (int k = 0; k < kKills; ++k) {
    const std::uint64_t before = accounted(dir / "out");
    Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
    auto release = [&](std::size_t upto) {
      {
        std::lock_guard lock(mu);
        allowed = upto;
      }
      released.notify_one();
    };
    // The first half of this run's share now, the second once it has committed something:
    // however long a start takes, the kill lands while the second half is arriving.
    release(n * (2 * k + 1) / (2 * kKills));
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (accounted(dir / "out") <= before && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(2ms);
    progressed += accounted(dir / "out") > before;
    release(k + 1 == kKills ? n : n * (k + 1) / kKills);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));  // a random moment
    job.kill_and_reap();
    mid_stream += accounted(dir / "out") < shipped;
  }
  feeder.join();
  ASSERT_TRUE(feeder_ok);
  ASSERT_EQ(shipped, n);
  EXPECT_GE(progressed, kKills / 2) << "most runs must commit something before they are killed";
  EXPECT_GE(mid_stream, kKills / 4) << "the kills must land while events are being analyzed";
  // Every event once more, under the same identity (an uplink that re-sends everything).
  ASSERT_TRUE(testing::ship_all(again, ch, 60s));

  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_done(dir / "out", n, n, 120s)) << slurp(dir / "out" / "status.json");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0);
  expect_outputs(dir / "out", feed.data);
  const std::string status = slurp(dir / "out" / "status.json");
  for (const std::string& want : {fmt::format(R"({{"source":1,"accounted":{},"gaps":0,"duplicates":{},"ranges":1}})",
                                             d.rows.size(), d.rows.size()),
                                 std::string(R"({"source":3,"accounted":500,"gaps":0,"duplicates":500,"ranges":1})"),
                                 std::string(R"("rejected":2)")})
    EXPECT_NE(status.find(want), std::string::npos) << want << "\nin " << status;

  // The two malformed events are in the dead-letter topic once each, with their reasons,
  // through every kill (the lines commit with the transactions that counted them).
  const auto dead = testing::read_topic(bootstrap_, "orders-counts-dead-letter", 3, 100, 30s, 3s, true);
  ASSERT_EQ(dead.size(), 2u);
  std::vector<std::string> lines;
  for (const auto& r : dead) lines.push_back(r.payload);
  std::sort(lines.begin(), lines.end());
  EXPECT_NE(lines[0].find(R"("reason":"field is not an integer","source":2,"seq":1,"input":"kafka orders )"), std::string::npos)
      << lines[0];
  EXPECT_NE(lines[1].find(R"("reason":"not a JSON object","source":2,"seq":0,"input":"kafka orders )"), std::string::npos)
      << lines[1];
  EXPECT_NE(lines[1].find(R"("event":"12,34,5,6,7,1111,2")"), std::string::npos) << lines[1];

  // An independent reader of the output topic (read_committed) writes the same files.
  {
    std::string text = slurp(dir / "analyze.toml");
    const std::string from = "dir = \"" + (dir / "out").string() + "\"";
    ASSERT_NE(text.find(from), std::string::npos) << text;
    text.replace(text.find(from), from.size(), "dir = \"" + (dir / "reader").string() + "\"");
    std::ofstream(dir / "reader.toml") << text;
  }
  Child reader({kTributary, "analyze", "--config", (dir / "reader.toml").string(), "--materialize"});
  ASSERT_TRUE(wait_done(dir / "reader", n, n, 60s)) << slurp(dir / "reader" / "status.json");
  reader.signal(SIGTERM);
  ASSERT_EQ(reader.wait(30s), 0);
  expect_outputs(dir / "reader", feed.data);
}

TEST_F(AnalyzeTransactionTest, TwoAnalyzersInOneGroupOneKilledTheOtherTakesItsPartitionsOver) {
  TempDir dir;
  const auto d = TianchiData::make(22, 1500, 40000);
  const Feed feed(d, 200);
  d.write_info(dir / "user_info.csv");
  create_topic("shared", 4);
  write_config(dir / "a.toml", dir / "user_info.csv", dir / "a", "shared", "pair", "pair-a");
  write_config(dir / "b.toml", dir / "user_info.csv", dir / "b", "shared", "pair", "pair-b");
  core::ChannelConfig cc;
  cc.capacity = 64 << 20;
  auto ch = core::Channel::create(dir / "c.chan", cc);
  uplink::Uplink up(ch, {.name = "up", .topic = "shared", .kafka = {{"bootstrap.servers", bootstrap_}}});
  uplink::Uplink again(ch, {.name = "again", .topic = "shared", .kafka = {{"bootstrap.servers", bootstrap_}}});
  const std::size_t n = feed.events.size();
  ship(ch, up, feed, 0, n / 2);

  // A alone owns all four partitions and counts the first half.
  auto run = [&](const char* name) {
    return Child({"/bin/sh", "-c",
                  fmt::format("exec {} analyze --config {} 2> {}", kTributary, (dir / name).string() + ".toml",
                              (dir / name).string() + ".log")});
  };
  Child a = run("a");
  ASSERT_TRUE(wait_done(dir / "a", n / 2, 0, 90s)) << slurp(dir / "a" / "status.json") << slurp(dir / "a.log");
  // B joins: the group splits the partitions between them.
  Child b = run("b");
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (slurp(dir / "b.log").find("assigned 2 partitions") == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  ASSERT_NE(slurp(dir / "b.log").find("assigned 2 partitions"), std::string::npos) << slurp(dir / "b.log");
  // The second half arrives on all four partitions while A dies: two of them only A owned, with
  // a transaction of A's likely open. B must take them over from A's last committed state.
  std::atomic<std::size_t> shipped{n / 2};
  std::thread feeder([&] {
    for (std::size_t from = n / 2; from < n;) {
      const std::size_t to = std::min(n, from + 200);
      ship(ch, up, feed, from, to);
      shipped = from = to;
      std::this_thread::sleep_for(5ms);  // a producer's rhythm
    }
  });
  const auto midway = std::chrono::steady_clock::now() + 60s;
  while (shipped < n / 2 + n / 8 && std::chrono::steady_clock::now() < midway) std::this_thread::sleep_for(2ms);
  a.kill_and_reap();
  EXPECT_LT(shipped, n) << "A must die while the second half is arriving";
  feeder.join();
  ASSERT_TRUE(testing::ship_all(again, ch, 60s));
  ASSERT_TRUE(wait_done(dir / "b", n, n, 120s)) << slurp(dir / "b" / "status.json") << slurp(dir / "b.log");
  EXPECT_NE(slurp(dir / "b.log").find("assigned 4 partitions"), std::string::npos) << slurp(dir / "b.log");
  b.signal(SIGTERM);
  ASSERT_EQ(b.wait(30s), 0);
  expect_outputs(dir / "b", feed.data);
  const std::string status = slurp(dir / "b" / "status.json");
  EXPECT_NE(status.find(fmt::format(R"({{"source":1,"accounted":{},"gaps":0,)", d.rows.size())), std::string::npos)
      << status;
}

}  // namespace
}  // namespace tributary::analytics
