// The analyzer's Kafka-transaction mode against a real Kafka (LocalKafka): outputs, changelog
// and consumed offsets commit in one transaction. Killed with SIGKILL twenty times while events
// keep arriving (every event also sent twice under its identity, and identical twins under
// their own), the committed outputs equal an independent recount and the audit is clean; two
// analyzers in one group, one killed: the other takes its partitions over, counts unchanged;
// on a 3-broker cluster, the transaction coordinator killed mid-stream: counts unchanged.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <condition_variable>
#include <fstream>
#include <iostream>
#include <sstream>
#include <functional>
#include <mutex>
#include <random>
#include <regex>
#include <set>
#include <thread>

#include "support/analyzer_status.h"
#include "support/kafka_util.h"
#include "support/local_kafka.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/tianchi_util.h"
#include "tributary/analytics/window.h"
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

// The paper's analyzer config on `topic`, in the Kafka-transaction mode of group `group`.
void write_config(const std::filesystem::path& file, const std::string& bootstrap, const std::filesystem::path& info,
                  const std::filesystem::path& state, const std::string& topic, const std::string& group,
                  const std::string& id) {
  testing::write_tianchi_analyze_config(
      file, fmt::format("type = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"{}\"\ngroup = \"{}\"\n", bootstrap, topic, group),
      info, state, 100);
  std::ofstream(file, std::ios::app) << fmt::format(
      "[transaction]\ntopic = \"{0}-counts\"\nid = \"{1}\"\ntimeout_ms = 5000\nsession_timeout_ms = 6000\n", topic, id);
}

int create_topic_at(const std::string& bootstrap, const std::string& topic, int partitions, int replication,
                    const uplink::Settings& configs = {}) {
  auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap}, {"log_level", "3"}}));
  return uplink::ensure_topic(rk.get(), topic, partitions, replication, configs);
}

class AnalyzeTransactionTest : public testing::LocalKafkaSuite {
 protected:
  static void create_topic(const std::string& topic, int partitions) {
    ASSERT_EQ(create_topic_at(bootstrap_, topic, partitions, 1), partitions);
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

using Events = std::vector<std::pair<core::EventId, std::string>>;

// Appends events [from, to) to the channel and ships them with `up`.
void ship(core::Channel& ch, uplink::Uplink& up, const Events& events, std::size_t from, std::size_t to) {
  core::Producer p = ch.producer();
  for (std::size_t i = from; i < to; ++i)
    ASSERT_EQ(p.append(events[i].first, events[i].second), core::AppendStatus::kOk);
  ASSERT_TRUE(testing::ship_all(up, ch, 60s));
}
void ship(core::Channel& ch, uplink::Uplink& up, const Feed& f, std::size_t from, std::size_t to) {
  ship(ch, up, f.events, from, to);
}

// Ships `events` on its own thread in small batches at a producer's rhythm (paced, not a wait
// for a condition), as far as release() lets it; released to the end and joined however the
// test ends.
class PacedFeeder {
 public:
  PacedFeeder(core::Channel& ch, uplink::Uplink& up, const Events& events, std::size_t batch)
      : t_([this, &ch, &up, &events, batch] {
          for (std::size_t from = 0; from < events.size() && ok_;) {
            {
              std::unique_lock lock(mu_);
              released_.wait(lock, [&] { return allowed_ > from; });
            }
            const std::size_t to = std::min({events.size(), from + batch, allowed()});
            ship(ch, up, events, from, to);
            if (::testing::Test::HasFatalFailure()) ok_ = false;
            shipped_ = from = to;
            std::this_thread::sleep_for(10ms);
          }
        }) {}
  ~PacedFeeder() { (void)join(); }
  PacedFeeder(const PacedFeeder&) = delete;
  PacedFeeder& operator=(const PacedFeeder&) = delete;

  void release(std::size_t upto) {
    {
      std::lock_guard lock(mu_);
      allowed_ = std::max(allowed_, upto);
    }
    released_.notify_one();
  }
  [[nodiscard]] std::size_t shipped() const { return shipped_; }
  // Releases everything and waits for it: true if every event was shipped.
  bool join() {
    if (t_.joinable()) {
      release(SIZE_MAX);
      t_.join();
    }
    return ok_;
  }

 private:
  std::size_t allowed() {
    std::lock_guard lock(mu_);
    return allowed_;
  }
  std::mutex mu_;
  std::condition_variable released_;
  std::size_t allowed_ = 0;
  std::atomic<std::size_t> shipped_{0};
  std::atomic<bool> ok_{true};
  std::thread t_;  // last: started once the members it uses exist
};

// `kills` runs of `tributary analyze --config CONFIG`, each SIGKILLed at a random moment while
// `feeder` ships its share of the `n` events (run k: the first half of share k released at its
// start, the second once it has committed something, so every kill lands while events arrive).
// Returns {runs that committed something, runs killed before everything shipped was counted}.
std::pair<int, int> kill_while_feeding(const std::filesystem::path& config, const std::filesystem::path& state,
                                       PacedFeeder& feeder, std::size_t n, int kills, std::mt19937_64& rng) {
  int progressed = 0, mid_stream = 0;
  for (int k = 0; k < kills; ++k) {
    const std::uint64_t before = accounted(state);
    Child job({kTributary, "analyze", "--config", config.string()});
    feeder.release(n * (2 * k + 1) / (2 * kills));
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (accounted(state) <= before && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(2ms);
    progressed += accounted(state) > before;
    feeder.release(k + 1 == kills ? n : n * (k + 1) / kills);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 300));  // a random moment
    job.kill_and_reap();
    mid_stream += accounted(state) < feeder.shipped();
  }
  return {progressed, mid_stream};
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

// What every test here feeds: a Tianchi data set (its user_info written), its events as a Feed
// in a topic of `partitions`, and a channel with two uplinks to the topic: "up" ships as the
// test says, "again" re-sends everything at the end (registered now, so the channel keeps
// every event for it).
struct Rig {
  TempDir dir;
  TianchiData d;
  Feed feed;
  core::Channel ch;
  uplink::Uplink up, again;
  std::size_t n;

  Rig(const std::string& bootstrap, const std::string& topic, int partitions, int replication, std::uint64_t seed,
      int rows, std::size_t twins)
      : d(TianchiData::make(seed, 1500, rows)),
        feed(d, twins),
        ch(make_channel(dir / "c.chan")),
        up(ch, {.name = "up", .topic = topic, .kafka = {{"bootstrap.servers", bootstrap}}}),
        again(ch, {.name = "again", .topic = topic, .kafka = {{"bootstrap.servers", bootstrap}}}),
        n(feed.events.size()) {
    d.write_info(dir / "user_info.csv");
    EXPECT_EQ(create_topic_at(bootstrap, topic, partitions, replication), partitions);
  }
  static core::Channel make_channel(const std::filesystem::path& p) {
    core::ChannelConfig cc;
    cc.capacity = 64 << 20;
    return core::Channel::create(p, cc);
  }
};

// A new topic of `partitions`, a new channel (8 MiB) at DIR/c.chan and an uplink "up" from it to
// the topic.
struct ChannelToTopic {
  core::Channel ch;
  uplink::Uplink up;
  ChannelToTopic(const std::filesystem::path& dir, const std::string& bootstrap, const std::string& topic,
                 int partitions)
      : ch(topic_and_channel(dir, bootstrap, topic, partitions)),
        up(ch, {.name = "up", .topic = topic, .kafka = {{"bootstrap.servers", bootstrap}}}) {}
  static core::Channel topic_and_channel(const std::filesystem::path& dir, const std::string& bootstrap,
                                         const std::string& topic, int partitions) {
    EXPECT_EQ(create_topic_at(bootstrap, topic, partitions, 1), partitions) << "topic " << topic;
    core::ChannelConfig cc;
    cc.capacity = 8 << 20;
    return core::Channel::create(dir / "c.chan", cc);
  }
};

// Waits (60 s at most) until `file` holds `want`, written by another process.
bool wait_for_file(const std::filesystem::path& file, const std::string& want) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (slurp(file) != want && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);  // another process's progress: polled, bounded above
  return slurp(file) == want;
}

// `tributary analyze --config CONFIG` with its log in LOG.
Child analyze_logged(const std::filesystem::path& config, const std::filesystem::path& log) {
  return Child({"/bin/sh", "-c", fmt::format("exec {} analyze --config {} 2> {}", kTributary, config.string(), log.string())});
}

// The config of a job counting key "k" of JSON events in window "w" of `size` (event time "ts",
// epoch ms) from TOPIC (group TOPIC) into STATE, a transaction every `checkpoint_ms` into
// TOPIC-counts as transactional.id TOPIC-1; `window_extra` is added to the window's lines.
std::string window_job(const std::string& bootstrap, const std::string& topic, const char* size,
                       const std::filesystem::path& state, int checkpoint_ms, const std::string& window_extra = "") {
  return fmt::format(
      "[input]\ntype = \"kafka\"\nbootstrap = \"{0}\"\ntopic = \"{1}\"\ngroup = \"{1}\"\n"
      "[fields]\nts = \"/ts\"\nk = \"/k\"\n"
      "[[windows]]\nname = \"w\"\nby = [\"k\"]\nsize = \"{2}\"\ntime = \"ts\"\ntime_format = \"epoch_ms\"\n{3}"
      "[state]\ndir = \"{4}\"\ncheckpoint_ms = {5}\n"
      "[transaction]\ntopic = \"{1}-counts\"\nid = \"{1}-1\"\ntimeout_ms = 5000\nsession_timeout_ms = 6000\n",
      bootstrap, topic, size, window_extra, state.string(), checkpoint_ms);
}

TEST_F(AnalyzeTransactionTest, KilledTwentyTimesWhileEventsArriveTheCommittedCountsEqualARecount) {
  Rig rig(bootstrap_, "orders", 3, 1, 21, 150000, 500);
  auto& [dir, d, feed, ch, up, again, n] = rig;
  write_config(dir / "analyze.toml", bootstrap_, dir / "user_info.csv", dir / "out", "orders", "kills", "kills-1");
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  // Events keep arriving through the whole kill loop.
  constexpr int kKills = 20;
  PacedFeeder feeder(ch, up, feed.events, 150);
  const auto [progressed, mid_stream] = kill_while_feeding(dir / "analyze.toml", dir / "out", feeder, n, kKills, rng);
  ASSERT_TRUE(feeder.join());
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
  Rig rig(bootstrap_, "shared", 4, 1, 22, 40000, 200);
  auto& [dir, d, feed, ch, up, again, n] = rig;
  write_config(dir / "a.toml", bootstrap_, dir / "user_info.csv", dir / "a", "shared", "pair", "pair-a");
  write_config(dir / "b.toml", bootstrap_, dir / "user_info.csv", dir / "b", "shared", "pair", "pair-b");
  ship(ch, up, feed, 0, n / 2);

  // A alone owns all four partitions and counts the first half.
  auto run = [&](const std::string& name) { return analyze_logged(dir / (name + ".toml"), dir / (name + ".log")); };
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
  std::jthread feeder([&] {
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

// Event-time windows in the transaction mode, through kills while events arrive: the closed
// rows reach the output exactly once, and the reader shows the open windows and the late
// events. Two sources, each in its own partition with its own watermark, over the same seconds:
// the reader sums their parts of a window (count, sum, min, max). The reference simulates each
// partition's windows from the events in their order.
TEST_F(AnalyzeTransactionTest, WindowRowsCommitExactlyOnceThroughKillsAndTheReaderShowsOpenLateAndFinalLateRows) {
  TempDir dir;
  create_topic("clicks", 2);
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Ev {
    std::int64_t t;
    std::string k;
    int v;
  };
  constexpr std::uint64_t kSources[2] = {1, 4};  // CRC32 of the key: partitions 1 and 0
  constexpr int kPerSource = 30000;
  std::vector<Ev> by_source[2];
  const std::int64_t t0 = 1794355200000;  // 2026-11-11T00:00:00Z
  for (int s = 0; s < 2; ++s)
    for (int i = 0; i < kPerSource; ++i) {
      // Mostly in order, some 0.6 to 2 s behind: late once their window has closed, and the
      // latest of those after their late row is final (expired), or not yet.
      const std::int64_t behind = rng() % 50 == 0 ? 600 + static_cast<std::int64_t>(rng() % 1400) : 50;
      const std::int64_t jitter = static_cast<std::int64_t>(rng() % 100) - behind;
      by_source[s].push_back({t0 + 2 * i + jitter, std::string(1, static_cast<char>('a' + rng() % 3)),
                              static_cast<int>(rng() % 1000) - 500});
    }
  Events events;  // the two sources interleaved, as they arrive at one agent
  for (int i = 0; i < kPerSource; ++i)
    for (int s = 0; s < 2; ++s) {
      const Ev& e = by_source[s][i];
      events.push_back({{kSources[s], static_cast<std::uint64_t>(i)},
                        fmt::format(R"({{"ts":{},"k":"{}","v":{}}})", e.t, e.k, e.v)});
    }
  const std::size_t n = events.size();
  core::ChannelConfig cc;
  cc.capacity = 32 << 20;
  core::Channel ch = core::Channel::create(dir / "c.chan", cc);
  uplink::Uplink up(ch, {.name = "up", .topic = "clicks", .kafka = {{"bootstrap.servers", bootstrap_}}});
  uplink::Uplink again(ch, {.name = "again", .topic = "clicks", .kafka = {{"bootstrap.servers", bootstrap_}}});
  std::ofstream(dir / "analyze.toml") << fmt::format(
      "[input]\ntype = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"clicks\"\ngroup = \"clicks\"\n"
      "[fields]\nts = \"/ts\"\nk = \"/k\"\nv = \"/v\"\n"
      "[[windows]]\nname = \"per_second\"\nby = [\"k\"]\nsize = \"1s\"\nlateness = \"500ms\"\ntime = \"ts\"\n"
      "time_format = \"epoch_ms\"\nvalue = \"v\"\nlate_retention = \"1s\"\n"
      "[state]\ndir = \"{}\"\ncheckpoint_ms = 100\n"
      "[transaction]\ntopic = \"clicks-counts\"\nid = \"clicks-1\"\ntimeout_ms = 5000\nsession_timeout_ms = 6000\n",
      bootstrap_, (dir / "out").string());

  constexpr int kKills = 6;
  PacedFeeder feeder(ch, up, events, 400);
  const auto [progressed, mid_stream] = kill_while_feeding(dir / "analyze.toml", dir / "out", feeder, n, kKills, rng);
  ASSERT_TRUE(feeder.join());
  EXPECT_GE(progressed, kKills / 2) << "most runs must commit something before they are killed";
  EXPECT_GE(mid_stream, kKills / 4) << "the kills must land while events are being analyzed";
  ASSERT_TRUE(testing::ship_all(again, ch, 60s));  // every event once more, same identity
  Child job = analyze_logged(dir / "analyze.toml", dir / "analyze.log");
  ASSERT_TRUE(wait_done(dir / "out", n, n, 120s)) << slurp(dir / "out" / "status.json") << slurp(dir / "analyze.log");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "analyze.log");

  // Each source went to one partition, the two to different ones (keyed by source id).
  std::map<std::uint64_t, std::set<int>> partitions;
  for (const auto& r : testing::read_topic(bootstrap_, "clicks", 2, 2 * n, 60s, 3s, false))
    partitions[r.id.source_id].insert(r.partition);
  ASSERT_EQ(partitions[kSources[0]].size(), 1u);
  ASSERT_EQ(partitions[kSources[1]].size(), 1u);
  ASSERT_NE(*partitions[kSources[0]].begin(), *partitions[kSources[1]].begin()) << "one partition: pick other ids";

  // The reference: per partition (one source), windows [s, s+1000) close once the largest time
  // seen minus 500 ms reaches their end; an event for a closed window is late; its late row is
  // final once that watermark is 1 s (late_retention) past the window's end, and a later event
  // of the window is expired: in no row.
  struct Agg {
    std::uint64_t count = 0;
    std::int64_t sum = 0, min = INT64_MAX, max = INT64_MIN;
  };
  std::map<std::pair<std::int64_t, std::string>, Agg> closed, open;
  std::map<std::pair<std::int64_t, std::string>, std::uint64_t> late, final_late;
  std::uint64_t late_events = 0, expired = 0;
  // The reader writes a row for good once every partition has closed its window (a late row:
  // once every partition's is final), so by the lowest of the two watermarks.
  std::int64_t lowest = INT64_MAX;
  for (const auto& evs : by_source) {
    std::int64_t watermark = INT64_MIN;
    for (const Ev& e : evs) watermark = std::max(watermark, e.t - 500);
    lowest = std::min(lowest, watermark);
  }
  for (const auto& evs : by_source) {
    std::map<std::pair<std::int64_t, std::string>, Agg> counted;
    std::map<std::pair<std::int64_t, std::string>, std::uint64_t> late_here;
    std::int64_t watermark = INT64_MIN;
    for (const Ev& e : evs) {
      const std::pair<std::int64_t, std::string> w{e.t - e.t % 1000, e.k};
      if (w.first + 1000 <= watermark) {
        ++late_events;
        if (w.first + 2000 <= watermark) ++expired;
        else ++late_here[w];
      } else {
        Agg& a = counted[w];
        ++a.count;
        a.sum += e.v;
        a.min = std::min<std::int64_t>(a.min, e.v);
        a.max = std::max<std::int64_t>(a.max, e.v);
      }
      watermark = std::max(watermark, e.t - 500);
    }
    for (const auto& [w, c] : late_here) (w.first + 2000 <= lowest ? final_late : late)[w] += c;
    for (const auto& [w, a] : counted) {
      Agg& into = (w.first + 1000 <= lowest ? closed : open)[w];
      into.count += a.count;
      into.sum += a.sum;
      into.min = std::min(into.min, a.min);
      into.max = std::max(into.max, a.max);
    }
  }
  ASSERT_GT(expired, 0u);
  ASSERT_FALSE(final_late.empty());
  ASSERT_FALSE(late.empty());
  ASSERT_FALSE(open.empty());
  auto rows = [](const std::map<std::pair<std::int64_t, std::string>, Agg>& m) {
    std::string text = "window_start,window_end,k,count,sum_v,min_v,max_v\n";
    for (const auto& [w, a] : m)
      text += fmt::format("{},{},{},{},{},{},{}\n", format_millis(w.first), format_millis(w.first + 1000), w.second,
                          a.count, a.sum, a.min, a.max);
    return text;
  };
  auto late_rows = [](const std::map<std::pair<std::int64_t, std::string>, std::uint64_t>& m) {
    std::string text = "window_start,window_end,k,late\n";
    for (const auto& [w, c] : m)
      text += fmt::format("{},{},{},{}\n", format_millis(w.first), format_millis(w.first + 1000), w.second, c);
    return text;
  };
  EXPECT_EQ(slurp(dir / "out" / "per_second.csv"), rows(closed));
  EXPECT_EQ(slurp(dir / "out" / "per_second.open.csv"), rows(open));
  EXPECT_EQ(slurp(dir / "out" / "per_second.late.csv"), late_rows(final_late));
  EXPECT_EQ(slurp(dir / "out" / "per_second.late.open.csv"), late_rows(late));
  const std::string status = slurp(dir / "out" / "status.json");
  EXPECT_NE(status.find(fmt::format(R"("late":{})", late_events)), std::string::npos) << status;
  EXPECT_NE(status.find(fmt::format(R"("late_events":{},"expired":{})", late_events, expired)), std::string::npos)
      << status;
  // Rows written for good left the reader's memory: it holds fewer rows than the window file
  // has (each of which most often has a part from either partition).
  const auto held = status.find(R"("reader_rows":)");
  ASSERT_NE(held, std::string::npos) << status;
  EXPECT_LT(std::stoull(status.substr(held + 14)), closed.size()) << status;

  // Two more readers of the output topic: one with no files of its own writes the same files
  // from the topic; one resumes from a copy of these files cut off in the middle of an append
  // (rows past what its state file accounts for), which it cuts back and does not write twice.
  // The copy's headers are marked (same length): resuming keeps what the state file accounts
  // for, where writing everything again from the topic would not.
  std::filesystem::copy(dir / "out", dir / "resumed");
  std::filesystem::remove(dir / "resumed" / "status.json");  // to wait for the reader's own
  std::filesystem::remove(dir / "resumed" / "materialized.lock");
  std::map<std::string, std::string> want;  // file -> what the resumed reader must leave
  for (const char* name : {"per_second.csv", "per_second.late.csv"}) {
    std::string text = slurp(dir / "out" / name);
    ASSERT_EQ(text.rfind("window_start,", 0), 0u) << text;
    text.replace(0, 12, "WINDOW_START");
    want[name] = text;
    std::ofstream(dir / "resumed" / name, std::ios::binary)
        << text << "2026-11-11T00:00:00Z,2026-11-11T00:00:01Z,a,1,1,1,1\n2026-11-11T00:00:01Z,half a r";
  }
  for (const char* reader_dir : {"reader", "resumed"}) {
    SCOPED_TRACE(reader_dir);
    std::string text = slurp(dir / "analyze.toml");
    const std::string from = "dir = \"" + (dir / "out").string() + "\"";
    ASSERT_NE(text.find(from), std::string::npos) << text;
    text.replace(text.find(from), from.size(), "dir = \"" + (dir / reader_dir).string() + "\"");
    std::ofstream(dir / "reader.toml") << text;
    Child reader({kTributary, "analyze", "--config", (dir / "reader.toml").string(), "--materialize"});
    ASSERT_TRUE(wait_done(dir / reader_dir, n, n, 60s)) << slurp(dir / reader_dir / "status.json");
    // One reader per state dir: a second one is refused (it would append over the first).
    Child second({kTributary, "analyze", "--config", (dir / "reader.toml").string(), "--materialize"});
    EXPECT_NE(second.wait(30s), 0) << "a second reader of " << reader_dir << " ran";
    reader.signal(SIGTERM);
    ASSERT_EQ(reader.wait(30s), 0);
    for (const char* name : {"per_second.csv", "per_second.open.csv", "per_second.late.csv", "per_second.late.open.csv"})
      EXPECT_EQ(slurp(dir / reader_dir / name),
                std::string_view(reader_dir) == "resumed" && want.contains(name) ? want[name] : slurp(dir / "out" / name))
          << name;
  }
}

// A partition of the input that has no event time yet holds every window back from the window
// file (it could still add to any of them): the rows stay in NAME.open.csv, the log says which
// partitions it waits for. Once that partition's watermark passes a window's end, the window is
// final and its rows go to the file.
TEST_F(AnalyzeTransactionTest, AnIdlePartitionHoldsWindowsBackUntilItHasAWatermark) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "held", 2);
  auto& [ch, up] = rig;
  const std::int64_t t0 = 1794355200000;  // 2026-11-11T00:00:00Z
  Events events;  // one source, so one partition: three 1 s windows of key a, the first two closed
  for (std::uint64_t i = 0; i < 300; ++i)
    events.push_back({{1, i}, fmt::format(R"({{"ts":{},"k":"a"}})", t0 + 10 * static_cast<std::int64_t>(i))});
  ship(ch, up, events, 0, events.size());
  const auto shipped = testing::read_topic(bootstrap_, "held", 2, events.size(), 60s);
  ASSERT_EQ(shipped.size(), events.size());
  const int idle = 1 - shipped.front().partition;
  std::ofstream(dir / "analyze.toml") << window_job(bootstrap_, "held", "1s", dir / "out", 100);
  Child job = analyze_logged(dir / "analyze.toml", dir / "analyze.log");
  ASSERT_TRUE(wait_done(dir / "out", events.size(), 0, 60s)) << slurp(dir / "analyze.log");
  const std::string header = "window_start,window_end,k,count\n";
  auto row = [&](std::int64_t start, const char* key, int n) {
    return fmt::format("{},{},{},{}\n", format_millis(start), format_millis(start + 1000), key, n);
  };
  EXPECT_TRUE(wait_for_file(dir / "out" / "w.open.csv", header + row(t0, "a", 100) + row(t0 + 1000, "a", 100) +
                                                       row(t0 + 2000, "a", 100)))
      << slurp(dir / "out" / "w.open.csv");
  EXPECT_EQ(slurp(dir / "out" / "w.csv"), header) << "no window is final while a partition has no watermark";
  EXPECT_NE(slurp(dir / "analyze.log").find(fmt::format("no row is final until input partitions {} of held", idle)),
            std::string::npos)
      << slurp(dir / "analyze.log");
  // Events in the idle partition (written there directly, without Tributary's identity) move
  // its watermark past the first two windows' end: those are final now.
  {
    auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap_}, {"log_level", "3"}}));
    for (int i = 0; i < 10; ++i) {
      const std::string value = fmt::format(R"({{"ts":{},"k":"b"}})", t0 + 3500);
      ASSERT_EQ(rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC("held"), RD_KAFKA_V_PARTITION(idle),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ASSERT_EQ(rd_kafka_flush(rk.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  EXPECT_TRUE(wait_for_file(dir / "out" / "w.csv", header + row(t0, "a", 100) + row(t0 + 1000, "a", 100)))
      << slurp(dir / "out" / "w.csv") << slurp(dir / "analyze.log");
  EXPECT_TRUE(wait_for_file(dir / "out" / "w.open.csv", header + row(t0 + 2000, "a", 100) + row(t0 + 3000, "b", 10)))
      << slurp(dir / "out" / "w.open.csv");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "analyze.log");
}

// A partition restored under a smaller lateness reports a watermark ahead of the windows it has
// closed (they close at its next event). The reader goes by what the partition has closed, so
// those windows are not written before their rows exist: none is missing from the file.
TEST_F(AnalyzeTransactionTest, ARestartWithASmallerLatenessLosesNoWindowRowFromTheFile) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "late", 1);
  auto& [ch, up] = rig;
  const std::int64_t t0 = 1794355200000;  // 2026-11-11T00:00:00Z
  Events events;  // three 1 s windows of key a; with lateness 1 s only the first closes
  for (std::uint64_t i = 0; i < 300; ++i)
    events.push_back({{1, i}, fmt::format(R"({{"ts":{},"k":"a"}})", t0 + 10 * static_cast<std::int64_t>(i))});
  ship(ch, up, events, 0, events.size());
  auto config = [&](const char* lateness) {
    return window_job(bootstrap_, "late", "1s", dir / "out", 100, fmt::format("lateness = \"{}\"\n", lateness));
  };
  const std::string header = "window_start,window_end,k,count\n";
  auto row = [&](std::int64_t start) {
    return fmt::format("{},{},a,100\n", format_millis(start), format_millis(start + 1000));
  };
  std::ofstream(dir / "analyze.toml") << config("1s");
  {
    Child job = analyze_logged(dir / "analyze.toml", dir / "first.log");
    ASSERT_TRUE(wait_done(dir / "out", events.size(), 0, 60s)) << slurp(dir / "first.log");
    EXPECT_TRUE(wait_for_file(dir / "out" / "w.csv", header + row(t0))) << slurp(dir / "out" / "w.csv");
    job.signal(SIGTERM);
    ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "first.log");
  }
  // Restarted with lateness 0: its watermark is now past the second and third windows' ends,
  // which stay open until an event comes.
  std::ofstream(dir / "analyze.toml") << config("0s");
  Child job = analyze_logged(dir / "analyze.toml", dir / "again.log");
  // The reader has read the restored partition's republished counters (the new watermark)...
  const std::string watermark = fmt::format(R"("watermark":"{}")", format_millis(t0 + 2990));
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (slurp(dir / "out" / "status.json").find(watermark) == std::string::npos &&
         std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);  // another process's progress: polled, bounded above
  ASSERT_NE(slurp(dir / "out" / "status.json").find(watermark), std::string::npos) << slurp(dir / "again.log");
  // ...and wrote no window whose rows do not exist yet.
  EXPECT_EQ(slurp(dir / "out" / "w.csv"), header + row(t0)) << "windows written before their rows exist";
  events.push_back({{1, 300}, fmt::format(R"({{"ts":{},"k":"b"}})", t0 + 3500)});
  ship(ch, up, events, 300, 301);
  EXPECT_TRUE(wait_for_file(dir / "out" / "w.csv", header + row(t0) + row(t0 + 1000) + row(t0 + 2000)))
      << slurp(dir / "out" / "w.csv") << slurp(dir / "again.log");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "again.log");
}

// An output topic that lacks a partition's open rows (written before the output carried them,
// or deleted: here by tombstones) gets them back when the partition is restored, with no new
// input to trigger a transaction.
TEST_F(AnalyzeTransactionTest, ARestoredPartitionRepublishesItsOpenWindowsWithoutNewInput) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "idle", 1);
  auto& [ch, up] = rig;
  const std::int64_t t0 = 1794355200000;  // 2026-11-11T00:00:00Z: one window, never closed
  const std::vector<std::string> keys = {"a", "b", "c"};
  Events events;
  for (std::uint64_t i = 0; i < 90; ++i)
    events.push_back({{1, i}, fmt::format(R"({{"ts":{},"k":"{}"}})", t0 + static_cast<std::int64_t>(i), keys[i % 3])});
  ship(ch, up, events, 0, events.size());
  auto config = [&](const std::filesystem::path& state) { return window_job(bootstrap_, "idle", "1h", state, 100); };
  std::ofstream(dir / "analyze.toml") << config(dir / "out");
  const std::string start = format_millis(t0 - t0 % 3'600'000), end = format_millis(t0 - t0 % 3'600'000 + 3'600'000);
  const std::string open = fmt::format("window_start,window_end,k,count\n{0},{1},a,30\n{0},{1},b,30\n{0},{1},c,30\n",
                                       start, end);
  {
    Child job = analyze_logged(dir / "analyze.toml", dir / "first.log");
    ASSERT_TRUE(wait_done(dir / "out", events.size(), 0, 60s)) << slurp(dir / "first.log");
    job.signal(SIGTERM);
    ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "first.log");
  }
  ASSERT_EQ(slurp(dir / "out" / "w.open.csv"), open);
  // The open rows deleted from the output topic (tombstones, outside any transaction).
  {
    auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap_}, {"log_level", "3"}}));
    for (const auto& k : keys) {
      const std::string key = fmt::format("o/w/0/{}/{}", t0 - t0 % 3'600'000, k);
      ASSERT_EQ(rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC("idle-counts"), RD_KAFKA_V_PARTITION(0),
                                  RD_KAFKA_V_KEY(key.data(), key.size()), RD_KAFKA_V_VALUE(nullptr, 0),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END),
                RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    ASSERT_EQ(rd_kafka_flush(rk.get(), 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  const std::string none = "window_start,window_end,k,count\n";
  auto wait_open = [](const std::filesystem::path& state, const std::string& want) {
    return wait_for_file(state / "w.open.csv", want);
  };
  {  // An independent reader sees the rows gone.
    std::ofstream(dir / "reader.toml") << config(dir / "reader");
    Child reader({kTributary, "analyze", "--config", (dir / "reader.toml").string(), "--materialize"});
    EXPECT_TRUE(wait_open(dir / "reader", none)) << slurp(dir / "reader" / "w.open.csv");
    reader.signal(SIGTERM);
    ASSERT_EQ(reader.wait(30s), 0);
  }
  // Restarted with no new event (the same group and transactional.id, files in a fresh
  // directory, so that only what it reads back can fill them): the restore republishes them.
  std::ofstream(dir / "again.toml") << config(dir / "again");
  Child job = analyze_logged(dir / "again.toml", dir / "again.log");
  EXPECT_TRUE(wait_open(dir / "again", open)) << slurp(dir / "again" / "w.open.csv") << slurp(dir / "again.log");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "again.log");
}

// `n` events of window_job's shape, {"ts": 2026-11-11 + i ms, "k": i % 3}, from `sources`
// sources in turn (source 1 + i % sources, its sequence i / sources).
Events window_events(std::uint64_t n, std::uint64_t sources) {
  Events events;
  for (std::uint64_t i = 0; i < n; ++i)
    events.push_back({{1 + i % sources, i / sources}, fmt::format(R"({{"ts":{},"k":"{}"}})", 1794355200000 + i, i % 3)});
  return events;
}

// Runs window_job on TOPIC (a transaction every 500 ms, state in DIR/out) until its reader
// accounts for `n` events, stops it, and returns its status.json.
std::string window_job_status(const std::filesystem::path& dir, const std::string& bootstrap, const std::string& topic,
                              std::uint64_t n) {
  std::ofstream(dir / "analyze.toml") << window_job(bootstrap, topic, "1h", dir / "out", 500);
  Child job = analyze_logged(dir / "analyze.toml", dir / "analyze.log");
  EXPECT_TRUE(wait_done(dir / "out", n, 0, 120s)) << slurp(dir / "analyze.log");
  job.signal(SIGTERM);
  EXPECT_EQ(job.wait(30s), 0) << slurp(dir / "analyze.log");
  return slurp(dir / "out" / "status.json");
}

// A partition whose ledger holds more sources than one output record can take (each exec run,
// tail file and client is a source; 30 000 audit lines are about 1.4 MB, past the producer's
// 1 MB message.max.bytes): the audit goes in chunks, the transactions commit, and the reader's
// status has every source. In one record it aborted every transaction from then on, and the job
// stopped again at every restart.
TEST_F(AnalyzeTransactionTest, AnAuditOfMoreSourcesThanOneRecordTakesIsCommittedInChunks) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "many", 1);
  auto& [ch, up] = rig;
  // One event each from 30 000 sources with ids as long as real ones (random 64-bit numbers):
  // about 40 bytes of audit line each.
  constexpr std::uint64_t kSources = 30'000, kBase = 10'000'000'000'000'000'000u;
  Events events;
  for (std::uint64_t i = 0; i < kSources; ++i)
    events.push_back({{kBase + i, 0}, fmt::format(R"({{"ts":{},"k":"{}"}})", 1794355200000 + i, i % 3)});
  ship(ch, up, events, 0, events.size());
  const std::string status = window_job_status(dir.path(), bootstrap_, "many", kSources);
  std::size_t listed = 0;
  for (std::size_t at = status.find(R"({"source":)"); at != std::string::npos; at = status.find(R"({"source":)", at + 1))
    ++listed;
  EXPECT_EQ(listed, kSources);
  EXPECT_NE(status.find(fmt::format(R"({{"source":{},"accounted":1,"gaps":0,"duplicates":0,"ranges":1}})", kBase + kSources - 1)),
            std::string::npos);
}

// One source with so many holes that its audit line alone would pass the producer's limit
// (80 000 ranges of 19-digit numbers, about 1.6 MB: a source that lost 999 of every 1 000
// events) goes on in more lines, and the reader adds them up to the one source it is.
TEST_F(AnalyzeTransactionTest, ASourceWithMoreHolesThanOneRecordTakesIsAuditedAcrossChunks) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "holes", 1);
  auto& [ch, up] = rig;
  constexpr std::uint64_t kEvents = 80'000, kSource = 10'000'000'000'000'000'000u;
  Events events;
  for (std::uint64_t i = 0; i < kEvents; ++i)  // sequences 0, 1000, 2000, ...: a hole after each
    events.push_back({{kSource, 1000 * i}, fmt::format(R"({{"ts":{},"k":"{}"}})", 1794355200000 + i, i % 3)});
  ship(ch, up, events, 0, events.size());
  const std::string status = window_job_status(dir.path(), bootstrap_, "holes", kEvents);
  EXPECT_NE(status.find(fmt::format(R"({{"source":{},"accounted":{},"gaps":{},"duplicates":0,"ranges":{}}})", kSource,
                                    kEvents, 999 * (kEvents - 1), kEvents)),
            std::string::npos)
      << status.substr(0, 400);
}

// The N of the job's last log line "stopped after N transactions", or -1 if it has none.
int transactions_in(const std::string& log) {
  unsigned n = 0;
  const auto at = log.find("stopped after ");
  if (at == std::string::npos || std::sscanf(log.c_str() + at, "stopped after %u transactions", &n) != 1) return -1;
  return static_cast<int>(n);
}

// A commit interval of 20 s, and the input read to its end and quiet: what was read commits
// (and the reader shows it) at once, a quarter of the interval after the last commit at the
// earliest, not a whole interval later; again for events that come later.
TEST_F(AnalyzeTransactionTest, TheInputReadToItsEndCommitsWellBeforeTheIntervalEnds) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "soon", 2);
  auto& [ch, up] = rig;
  const Events events = window_events(400, 4);
  ship(ch, up, events, 0, 200);
  std::ofstream(dir / "analyze.toml") << window_job(bootstrap_, "soon", "1h", dir / "out", 20000);
  Child job = analyze_logged(dir / "analyze.toml", dir / "job.log");
  EXPECT_TRUE(wait_done(dir / "out", 200, 0, 15s)) << "not committed and shown within 15 s:\n" << slurp(dir / "job.log");
  ship(ch, up, events, 200, 400);
  EXPECT_TRUE(wait_done(dir / "out", 400, 0, 15s)) << "later events not within 15 s:\n" << slurp(dir / "job.log");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "job.log");
  const std::string log = slurp(dir / "job.log");
  const int transactions = transactions_in(log);
  EXPECT_GE(transactions, 2) << log;
  EXPECT_LE(transactions, 3) << "about one per batch of input, none while idle:\n" << log;
}

// A rejected event rides in its transaction's dead-letter record, escaped (up to 6 bytes per
// byte): one of 400 KiB would make a 2.4 MB record, which Kafka refuses, and every transaction
// would abort. The record carries its first 128 KiB and says so; the stream goes on.
TEST_F(AnalyzeTransactionTest, AHugeMalformedEventIsDeadLetteredCutAndTheStreamGoesOn) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "huge", 1);
  auto& [ch, up] = rig;
  Events events = window_events(20, 1);
  events.insert(events.begin() + 10, {{2, 0}, std::string(400 << 10, '\x01')});
  ship(ch, up, events, 0, events.size());
  std::ofstream(dir / "analyze.toml") << window_job(bootstrap_, "huge", "1h", dir / "out", 1000);
  Child job = analyze_logged(dir / "analyze.toml", dir / "job.log");
  EXPECT_TRUE(wait_done(dir / "out", 21, 0, 30s)) << slurp(dir / "out" / "status.json") << slurp(dir / "job.log");
  EXPECT_NE(slurp(dir / "out" / "status.json").find(R"("rejected":1,)"), std::string::npos);
  const auto dead = testing::read_topic(bootstrap_, "huge-counts-dead-letter", 1, 1, 30s, 1s, true);
  ASSERT_EQ(dead.size(), 1u) << slurp(dir / "job.log");
  const std::string& line = dead[0].payload;
  EXPECT_LE(line.size(), (128u << 10) * 6 + 200);
  EXPECT_GE(line.size(), (128u << 10) * 6) << "128 KiB of the event, each byte escaped as \\u0001";
  EXPECT_NE(line.find(R"("reason":"not a JSON object","source":2,"seq":0,)"), std::string::npos) << line.substr(0, 200);
  EXPECT_NE(line.find(R"(","event_bytes":409600,"truncated":true})"), std::string::npos) << line.substr(line.size() - 100);
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "job.log");
}

// An input that keeps coming commits once per interval, not four times: the early commit is
// for the end of a burst. An event every ~50 ms: slower than a fetch waits (25 ms), so the
// partition is read to its end after each event, but never quiet for the 100 ms an early commit
// waits for at this interval (an eighth of 2 s, capped; without that wait: 13 transactions in
// 6 s). Each pause of the feed near that long (a slow moment of the machine) may allow one more.
TEST_F(AnalyzeTransactionTest, AnInputThatKeepsComingCommitsOncePerInterval) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "trickle", 1);
  auto& [ch, up] = rig;
  const Events events = window_events(400, 1);
  ship(ch, up, events, 0, 1);
  constexpr int kIntervalMs = 2000;  // quiet time: an eighth, capped at 100 ms
  std::ofstream(dir / "analyze.toml") << window_job(bootstrap_, "trickle", "1h", dir / "out", kIntervalMs);
  Child job = analyze_logged(dir / "analyze.toml", dir / "job.log");
  ASSERT_TRUE(wait_done(dir / "out", 1, 0, 30s)) << slurp(dir / "job.log");
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  int pauses = 0;
  std::size_t sent = 1;
  for (; sent < events.size() && std::chrono::steady_clock::now() - start < 6s; ++sent) {
    ship(ch, up, events, sent, sent + 1);
    const auto now = std::chrono::steady_clock::now();
    pauses += now - last > 75ms;  // the analyzer's view of the gaps also has delivery jitter
    last = now;
    std::this_thread::sleep_for(40ms);  // the feed's rhythm: slower than a fetch waits (25 ms)
  }
  const auto fed = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(wait_done(dir / "out", sent, 0, 30s)) << slurp(dir / "job.log");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(30s), 0) << slurp(dir / "job.log");
  const std::string log = slurp(dir / "job.log");
  const int transactions = transactions_in(log);
  ASSERT_GE(transactions, 1) << log;
  // The first event's, one per interval fed, the rest at the end: about 2 more than the
  // intervals (4 allowed), plus one per long pause.
  const auto intervals = static_cast<int>(fed / std::chrono::milliseconds(kIntervalMs));
  EXPECT_LE(transactions, intervals + 4 + pauses)
      << sent << " events fed in " << std::chrono::duration_cast<std::chrono::milliseconds>(fed).count() << " ms with "
      << pauses << " pauses over 75 ms:\n"
      << log;
}

// The checkpoint mode reading a topic whose partitions start with an aborted transaction (three
// records, then the abort marker): a read_committed consumer's first record of a partition
// comes at offset 4, not at the offset 0 the partition was assigned at. The analyzer says so,
// reads the partition again from 0 once, finds the same, and counts every committed event
// exactly once (and none of the aborted records).
TEST_F(AnalyzeTransactionTest, APartitionStartingWithAnAbortedTransactionIsReadAgainOnceAndCountedOnce) {
  TempDir dir;
  const TianchiData d = TianchiData::make(26, 100, 2000);
  d.write_info(dir / "user_info.csv");
  ChannelToTopic c(dir.path(), bootstrap_, "aborted-first", 2);
  testing::abort_a_transaction(bootstrap_, "aborted-first", 2, 3);
  const Feed feed(d, 0);
  ship(c.ch, c.up, feed, 0, feed.events.size());
  testing::write_tianchi_analyze_config(
      dir / "analyze.toml", fmt::format("type = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"aborted-first\"\n", bootstrap_),
      dir / "user_info.csv", dir / "out");
  Child job({"/bin/sh", "-c",
             fmt::format("exec {} analyze --config {} --drain 2> {}", kTributary, (dir / "analyze.toml").string(),
                         (dir / "analyze.log").string())});
  ASSERT_EQ(job.wait(60s), 0) << slurp(dir / "analyze.log");
  // The first record comes after the aborted records and the abort marker (offset 4 here, as
  // a rule; the broker decides), looked at twice: the same offset both times.
  const std::string log = slurp(dir / "analyze.log");
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m,
                                std::regex(R"(partition (\d): assigned at offset 0, its first record came at offset (\d+): )"
                                           R"(reading it again from 0)")))
      << log;
  EXPECT_GE(std::stoi(m[2]), 3) << log;
  EXPECT_NE(log.find(fmt::format("partition {}: offsets 0..{} hold no record to read (read twice)", m[1].str(),
                                 std::stoi(m[2]) - 1)),
            std::string::npos)
      << log;
  const auto v = status_counts(dir / "out");
  EXPECT_EQ(v[0] + v[1] + v[2], feed.events.size());
  EXPECT_EQ(v[3], 0u) << "the re-read counts nothing twice";
  expect_outputs(dir / "out", feed.data);
}

// Deletes the records of `topic` [`partition`] before offset `before` (Admin DeleteRecords, as
// retention would), asserting the broker did.
void delete_records_before(const std::string& bootstrap, const std::string& topic, int partition, std::int64_t before) {
  auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap}, {"log_level", "3"}}));
  rd_kafka_topic_partition_list_t* list = rd_kafka_topic_partition_list_new(1);
  rd_kafka_topic_partition_list_add(list, topic.c_str(), partition)->offset = before;
  rd_kafka_DeleteRecords_t* del = rd_kafka_DeleteRecords_new(list);
  rd_kafka_topic_partition_list_destroy(list);
  rd_kafka_queue_t* q = rd_kafka_queue_new(rk.get());
  rd_kafka_DeleteRecords(rk.get(), &del, 1, nullptr, q);
  rd_kafka_DeleteRecords_destroy(del);
  rd_kafka_event_t* ev = rd_kafka_queue_poll(q, 30000);
  rd_kafka_queue_destroy(q);
  ASSERT_NE(ev, nullptr) << "no answer to DeleteRecords";
  std::string error = rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev) : "";
  if (const rd_kafka_DeleteRecords_result_t* res = rd_kafka_event_DeleteRecords_result(ev))
    if (const rd_kafka_topic_partition_list_t* offsets = rd_kafka_DeleteRecords_result_offsets(res);
        offsets && offsets->cnt == 1 && offsets->elems[0].err)
      error = rd_kafka_err2str(offsets->elems[0].err);
  rd_kafka_event_destroy(ev);
  ASSERT_EQ(error, "");
}

// Records deleted while the checkpoint mode was down, before it read them (retention would do
// the same): restored at its checkpointed offset E, it finds the log starting at G > E. It reads
// the partition again from E once, then says as a warning that E..G-1 were deleted -- a loss
// named, not a silence -- and counts everything after them.
TEST_F(AnalyzeTransactionTest, RecordsDeletedBeforeTheCheckpointModeReadThemAreReportedAsDeleted) {
  TempDir dir;
  const TianchiData d = TianchiData::make(27, 100, 3000);
  d.write_info(dir / "user_info.csv");
  ChannelToTopic c(dir.path(), bootstrap_, "deleted-ahead", 1);
  const Feed feed(d, 0);
  const std::size_t half = feed.events.size() / 2;
  testing::write_tianchi_analyze_config(
      dir / "analyze.toml", fmt::format("type = \"kafka\"\nbootstrap = \"{}\"\ntopic = \"deleted-ahead\"\n", bootstrap_),
      dir / "user_info.csv", dir / "out");
  const std::string drain = fmt::format("exec {} analyze --config {} --drain 2>> {}", kTributary,
                                        (dir / "analyze.toml").string(), (dir / "analyze.log").string());
  ship(c.ch, c.up, feed, 0, half);
  ASSERT_EQ(Child({"/bin/sh", "-c", drain}).wait(60s), 0) << slurp(dir / "analyze.log");
  ASSERT_EQ(accounted(dir / "out"), half);
  ship(c.ch, c.up, feed, half, feed.events.size());  // one record per event: offsets half.. on
  const auto e = static_cast<std::int64_t>(half);
  delete_records_before(bootstrap_, "deleted-ahead", 0, e + 100);
  ASSERT_EQ(Child({"/bin/sh", "-c", drain}).wait(60s), 0) << slurp(dir / "analyze.log");
  const std::string log = slurp(dir / "analyze.log");
  EXPECT_NE(log.find(fmt::format("partition 0: offsets {}..{} were deleted before they were read (the log now "
                                 "starts at {})",
                                 e, e + 99, e + 100)),
            std::string::npos)
      << log;
  EXPECT_EQ(accounted(dir / "out"), feed.events.size() - 100);
}

// An output topic that exists with the delete policy would lose totals that stop changing
// after retention.ms: the analyzer refuses it at start, naming the topic and the fix, before it
// makes any topic (the changelog is not left behind).
TEST_F(AnalyzeTransactionTest, AnOutputTopicThatIsNotCompactedIsRefusedAtStart) {
  TempDir dir;
  TianchiData::make(24, 10, 10).write_info(dir / "user_info.csv");
  create_topic("plain", 1);
  create_topic("plain-counts", 1);  // cleanup.policy=delete, the broker's default
  write_config(dir / "analyze.toml", bootstrap_, dir / "user_info.csv", dir / "out", "plain", "plain", "plain-1");
  Child job = analyze_logged(dir / "analyze.toml", dir / "analyze.log");
  EXPECT_NE(job.wait(60s), 0);
  EXPECT_NE(slurp(dir / "analyze.log").find("topic plain-counts has cleanup.policy=delete"), std::string::npos)
      << slurp(dir / "analyze.log");
  auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap_}, {"log_level", "3"}}));
  EXPECT_EQ(uplink::partition_count(rk.get(), "plain-changelog"), 0) << "a refused start made its changelog";
}

// A job on input TOPIC (of `partitions`) whose changelog TOPIC-group-changelog exists already,
// made with `changelog_partitions` and `changelog_config`: it must refuse to start, saying `why`.
void expect_refused_at_start(const std::string& bootstrap, const std::string& topic, int partitions,
                             int changelog_partitions, const uplink::Settings& changelog_config, const std::string& why) {
  TempDir dir;
  TianchiData::make(24, 10, 10).write_info(dir / "user_info.csv");
  ASSERT_EQ(create_topic_at(bootstrap, topic, partitions, 1), partitions);
  ASSERT_EQ(create_topic_at(bootstrap, topic + "-group-changelog", changelog_partitions, 1, changelog_config),
            changelog_partitions);
  write_config(dir / "analyze.toml", bootstrap, dir / "user_info.csv", dir / "out", topic, topic + "-group", topic + "-1");
  Child job = analyze_logged(dir / "analyze.toml", dir / "analyze.log");
  EXPECT_NE(job.wait(60s), 0);
  EXPECT_NE(slurp(dir / "analyze.log").find(why), std::string::npos) << slurp(dir / "analyze.log");
}

// "compact,delete" is no better: a key that stops changing still expires after retention.ms (an
// idle input partition's state, a total that no longer moves).
TEST_F(AnalyzeTransactionTest, AChangelogThatIsCompactedAndDeletedIsRefusedAtStart) {
  expect_refused_at_start(bootstrap_, "both", 1, 1, {{"cleanup.policy", "compact,delete"}},
                          "topic both-group-changelog has cleanup.policy=compact,delete");
}

// An output topic with fewer partitions than the input is taken (input partitions share them),
// with a warning not to add partitions to it later.
TEST_F(AnalyzeTransactionTest, AnOutputTopicWithFewerPartitionsThanTheInputIsTakenWithAWarning) {
  TempDir dir;
  ChannelToTopic rig(dir.path(), bootstrap_, "narrow", 2);
  auto& [ch, up] = rig;
  ASSERT_EQ(create_topic_at(bootstrap_, "narrow-counts", 1, 1, {{"cleanup.policy", "compact"}}), 1);
  const Events events = window_events(200, 4);
  ship(ch, up, events, 0, events.size());
  (void)window_job_status(dir.path(), bootstrap_, "narrow", events.size());
  EXPECT_NE(slurp(dir / "analyze.log").find("output topic narrow-counts has 1 partitions, fewer than the 2 of narrow"),
            std::string::npos)
      << slurp(dir / "analyze.log");
}

// The state of input partition P lives in changelog partition P: a changelog that exists with
// fewer partitions than the input is refused at start, naming both counts.
TEST_F(AnalyzeTransactionTest, AChangelogWithFewerPartitionsThanTheInputIsRefusedAtStart) {
  expect_refused_at_start(bootstrap_, "wide", 2, 1, {{"cleanup.policy", "compact"}},
                          "topic wide-group-changelog has 1 partitions, the input has 2");
}

// A committed offset the changelog holds no state for (the state topic deleted, offsets set by
// hand): the analyzer says so and reads the changelog again until its deadline (the commit
// markers may be late), and a SIGTERM during that wait stops it at once and cleanly, with
// nothing restored and nothing counted.
TEST_F(AnalyzeTransactionTest, WhileTheChangelogDisagreesWithTheCommittedOffsetASigtermStopsTheWait) {
  TempDir dir;
  TianchiData::make(25, 10, 10).write_info(dir / "user_info.csv");
  create_topic("orphan", 1);
  {
    auto c = uplink::make_handle(RD_KAFKA_CONSUMER, uplink::make_conf({{"bootstrap.servers", bootstrap_},
                                                                      {"group.id", "orphan"},
                                                                      {"log_level", "3"}}));
    rd_kafka_topic_partition_list_t* offsets = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(offsets, "orphan", 0)->offset = 5;
    // A group coordinator that is still loading its partition of __consumer_offsets (a broker
    // started or restarted a moment ago) answers "load in progress": asked again, bounded.
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    for (const auto until = std::chrono::steady_clock::now() + 30s;;) {
      err = rd_kafka_commit(c.get(), offsets, 0);
      const bool retriable = err == RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS ||
                             err == RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE || err == RD_KAFKA_RESP_ERR_NOT_COORDINATOR;
      if (!retriable || std::chrono::steady_clock::now() > until) break;
      std::this_thread::sleep_for(100ms);  // the coordinator's load: polled, bounded above
    }
    rd_kafka_topic_partition_list_destroy(offsets);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
    rd_kafka_consumer_close(c.get());
  }
  write_config(dir / "analyze.toml", bootstrap_, dir / "user_info.csv", dir / "out", "orphan", "orphan", "orphan-1");
  Child job = analyze_logged(dir / "analyze.toml", dir / "analyze.log");
  const std::string waiting = "partition 0: group orphan committed offset 5 but changelog orphan-changelog holds no state";
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (slurp(dir / "analyze.log").find(waiting) == std::string::npos && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(50ms);  // another process's progress: polled, bounded above
  ASSERT_NE(slurp(dir / "analyze.log").find(waiting), std::string::npos) << slurp(dir / "analyze.log");
  job.signal(SIGTERM);
  // Its own deadline is 35 s away (timeout_ms + 30 s): only a stop that sees SIGTERM is this quick.
  EXPECT_EQ(job.wait(10s), 0) << slurp(dir / "analyze.log");
  const std::string log = slurp(dir / "analyze.log");
  EXPECT_NE(log.find("stopped while restoring 1 partitions"), std::string::npos) << log;
  EXPECT_EQ(log.find("refusing to count"), std::string::npos) << log;
}

// How many times `text` holds `what`.
std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// A consumer of group `group` with static membership `instance` (KIP-345), as a second process
// started with the analyzer's transactional.id would be: its join fences the member that held
// the id. It joins and keeps polling (committing nothing) until `done()` or 60 s, then leaves
// as a static member does: without a LeaveGroup. Fenced back itself (the analyzer's new
// consumer, still joining after the fence before, took the id after it), it joins again.
void join_as(const std::string& bootstrap, const std::string& topic, const std::string& group,
             const std::string& instance, const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (!done() && std::chrono::steady_clock::now() < deadline) {
    auto c = uplink::make_handle(RD_KAFKA_CONSUMER, uplink::make_conf({{"bootstrap.servers", bootstrap},
                                                                      {"group.id", group},
                                                                      {"group.instance.id", instance},
                                                                      {"enable.auto.commit", "false"},
                                                                      {"enable.auto.offset.store", "false"},
                                                                      {"session.timeout.ms", "6000"},
                                                                      {"log_level", "0"}}));
    ASSERT_EQ(testing::subscribe(c.get(), topic), RD_KAFKA_RESP_ERR_NO_ERROR);
    while (!done() && std::chrono::steady_clock::now() < deadline &&
           rd_kafka_fatal_error(c.get(), nullptr, 0) == RD_KAFKA_RESP_ERR_NO_ERROR)
      if (rd_kafka_message_t* m = rd_kafka_consumer_poll(c.get(), 100)) rd_kafka_message_destroy(m);
    rd_kafka_consumer_close(c.get());
  }
}

// The Kafka-transaction mode's consumer is a static group member (group.instance.id = its
// transactional.id). Fenced (FENCED_INSTANCE_ID: another member joined with its id), it rejoins
// with a new consumer, drops what it had not committed, and counts on exactly once; fenced a
// fourth time within ten minutes it stops and asks whether another analyzer runs with its id.
TEST_F(AnalyzeTransactionTest, AFencedStaticMemberRejoinsAndCountsOnceAndAFourthFenceStopsItNamingTheId) {
  Rig rig(bootstrap_, "fenced", 2, 1, 26, 20000, 100);
  auto& [dir, d, feed, ch, up, again, n] = rig;
  write_config(dir / "a.toml", bootstrap_, dir / "user_info.csv", dir / "a", "fenced", "fence", "fence-a");
  ship(ch, up, feed, 0, n / 2);
  Child a = analyze_logged(dir / "a.toml", dir / "a.log");
  ASSERT_TRUE(wait_done(dir / "a", n / 2, 0, 90s)) << slurp(dir / "a" / "status.json") << slurp(dir / "a.log");

  const std::string rejoin = "rejoining with a new consumer; uncommitted work is dropped and redone";
  auto fence = [&](std::size_t rejoins_before) {
    join_as(bootstrap_, "fenced", "fence", "fence-a", [&] {
      return occurrences(slurp(dir / "a.log"), rejoin) > rejoins_before || testing::process_gone(a.pid());
    });
  };
  // The first fence while the second half arrives: everything still counted exactly once.
  std::jthread feeder([&] {
    for (std::size_t from = n / 2; from < n;) {
      const std::size_t to = std::min(n, from + 500);
      ship(ch, up, feed, from, to);
      from = to;
      std::this_thread::sleep_for(5ms);  // a producer's rhythm
    }
  });
  fence(0);
  ASSERT_EQ(occurrences(slurp(dir / "a.log"), rejoin), 1u) << slurp(dir / "a.log");
  feeder.join();
  ASSERT_TRUE(testing::ship_all(again, ch, 60s));
  ASSERT_TRUE(wait_done(dir / "a", n, n, 120s)) << slurp(dir / "a" / "status.json") << slurp(dir / "a.log");
  expect_outputs(dir / "a", feed.data);
  EXPECT_NE(slurp(dir / "a" / "status.json").find(fmt::format(R"({{"source":1,"accounted":{},"gaps":0,)", d.rows.size())),
            std::string::npos)
      << slurp(dir / "a" / "status.json");

  // Two more are rejoined; the fourth within ten minutes stops the job, saying why.
  fence(1);
  ASSERT_EQ(occurrences(slurp(dir / "a.log"), rejoin), 2u) << slurp(dir / "a.log");
  fence(2);
  ASSERT_EQ(occurrences(slurp(dir / "a.log"), rejoin), 3u) << slurp(dir / "a.log");
  fence(3);
  const int status = a.wait(60s);
  ASSERT_NE(status, -1) << "the fourth fence must stop the job\n" << slurp(dir / "a.log");
  EXPECT_NE(status, 0);
  const std::string log = slurp(dir / "a.log");
  EXPECT_EQ(occurrences(log, rejoin), 3u) << log;
  EXPECT_NE(log.find("group fence member fence-a:"), std::string::npos) << log;
  EXPECT_NE(log.find("(4 times in 10 minutes: is another analyzer running with this id?)"), std::string::npos) << log;
  // What it had committed stays: the files still hold every event once.
  expect_outputs(dir / "a", feed.data);
}

// The broker that coordinates transactional.id `id`: the leader of its __transaction_state
// partition, Utils.abs(id.hashCode()) % partitions as Kafka computes it. 0 if unknown yet.
int transaction_coordinator(const std::string& bootstrap, const std::string& id) {
  std::int32_t h = 0;
  for (const unsigned char c : id) h = static_cast<std::int32_t>(31u * static_cast<std::uint32_t>(h) + c);
  const std::int32_t abs_h = h == INT32_MIN ? 0 : (h < 0 ? -h : h);
  auto rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", bootstrap}, {"log_level", "0"}}));
  const rd_kafka_metadata_t* md = nullptr;
  int leader = 0;
  if (rd_kafka_metadata(rk.get(), 1, nullptr, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int t = 0; t < md->topic_cnt; ++t) {
      if (std::string_view(md->topics[t].topic) != "__transaction_state" || md->topics[t].partition_cnt == 0) continue;
      const int want = abs_h % md->topics[t].partition_cnt;
      for (int i = 0; i < md->topics[t].partition_cnt; ++i)
        if (md->topics[t].partitions[i].id == want) leader = md->topics[t].partitions[i].leader;
    }
  }
  if (md) rd_kafka_metadata_destroy(md);
  return leader;
}

// On a real 3-broker cluster (replication 3, min.insync.replicas 2), the broker coordinating the
// analyzer's transactions is killed twice while events arrive and transactions commit every
// 100 ms, and started again: the analyzer finds the new coordinator, and the committed counts
// still equal the recount, every event once.
//
// On demand (label slow, TRIBUTARY_CLUSTER_TESTS=1): each run meets a different failure mode of
// librdkafka 2.0.2 around the coordinator's death, and not all are handled yet (see README).
TEST(AnalyzeTransactionClusterTest, TheTransactionCoordinatorKilledMidStreamTwiceTheCountsEqualARecount) {
  if (std::getenv("TRIBUTARY_CLUSTER_TESTS") == nullptr)
    GTEST_SKIP() << "on demand: TRIBUTARY_CLUSTER_TESTS=1 (ctest -L slow)";
  if (!testing::have_command("java") || !testing::have_command("mvn")) GTEST_SKIP() << "java and mvn are needed to run Kafka";
  TempDir kafka_dir;
  uplink::LocalKafkaOptions o;
  o.dir = kafka_dir / "kafka";
  o.brokers = 3;
  o.heap = "384m";
  o.port = 20000 + static_cast<int>(std::random_device{}() % 12000);
  uplink::LocalKafka kafka(o);
  struct Stop {
    uplink::LocalKafka& k;
    ~Stop() { k.stop(std::chrono::seconds(5)); }
  } stop{kafka};
  const std::string bootstrap = kafka.start(std::chrono::seconds(120));
  Rig rig(bootstrap, "orders", 3, 3, 23, 60000, 300);
  auto& [dir, d, feed, ch, up, again, n] = rig;
  write_config(dir / "analyze.toml", bootstrap, dir / "user_info.csv", dir / "out", "orders", "coord", "coord-1");
  Child job = analyze_logged(dir / "analyze.toml", dir / "analyze.log");
  std::atomic<std::size_t> shipped{0};
  std::jthread feeder([&] {  // joined however the test ends: it ships a bounded amount
    for (std::size_t from = 0; from < n;) {
      const std::size_t to = std::min(n, from + 100);
      ship(ch, up, feed, from, to);
      if (::testing::Test::HasFatalFailure()) return;
      shipped = from = to;
      std::this_thread::sleep_for(20ms);  // a producer's rhythm: events arrive across the kills
    }
  });
  // Waits (bounded) until the committed view has moved past `than`.
  auto progress = [&](std::uint64_t than, std::chrono::seconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (accounted(dir / "out") <= than && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(20ms);
    return accounted(dir / "out") > than;
  };
  ASSERT_TRUE(progress(0, 120s)) << slurp(dir / "analyze.log");
  for (int round = 0; round < 2; ++round) {
    const int coordinator = transaction_coordinator(bootstrap, "coord-1");
    ASSERT_GE(coordinator, 1) << "no coordinator found for coord-1";
    const std::uint64_t before = accounted(dir / "out");
    kafka.kill_broker(coordinator);
    EXPECT_TRUE(progress(before, 120s)) << "no commit after coordinator " << coordinator << " died\n"
                                        << slurp(dir / "analyze.log");
    kafka.start_broker(coordinator);
    ASSERT_TRUE(progress(accounted(dir / "out"), 120s)) << slurp(dir / "analyze.log");
  }
  EXPECT_LT(accounted(dir / "out"), n) << "the kills must land while events arrive";
  feeder.join();
  ASSERT_TRUE(testing::ship_all(again, ch, 120s));
  ASSERT_TRUE(wait_done(dir / "out", n, n, 180s)) << slurp(dir / "out" / "status.json") << slurp(dir / "analyze.log");
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(60s), 0) << slurp(dir / "analyze.log");
  expect_outputs(dir / "out", feed.data);
  const std::string status = slurp(dir / "out" / "status.json");
  EXPECT_NE(status.find(fmt::format(R"({{"source":1,"accounted":{},"gaps":0,)", d.rows.size())), std::string::npos)
      << status;
  // What the kills did to the transactions (aborts, replaced producers, rejoins), for the record.
  std::istringstream log(slurp(dir / "analyze.log"));
  for (std::string line; std::getline(log, line);)
    if (line.find("[warning]") != std::string::npos) std::cout << "analyzer: " << line << "\n";
}

}  // namespace
}  // namespace tributary::analytics
