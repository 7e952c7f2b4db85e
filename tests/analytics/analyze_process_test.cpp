// `tributary analyze` as a process on the paper's experiment: from a channel and from Kafka,
// outputs equal an independent recount; killed with SIGKILL at random moments and restarted,
// the final outputs are unchanged and the audit is clean (each event accounted once).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "support/analyzer_status.h"
#include "support/channel_util.h"
#include "support/kafka_util.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "support/tianchi_util.h"
#include "tributary/analytics/window.h"
#include "tributary/uplink/uplink.h"

namespace tributary::analytics {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::TempDir;
using testing::TianchiData;
using testing::accounted;
using testing::slurp;
using testing::wait_accounted;

const std::string kTributary = TRIBUTARY_BIN;

// Fills a channel: source 1 the JSON rows, source 2 a few malformed raw lines.
std::uint64_t fill_channel(core::Channel& ch, const TianchiData& d) {
  core::Producer p = ch.producer();
  std::uint64_t seq = 0;
  for (const auto& r : d.rows) EXPECT_EQ(p.append({1, seq++}, TianchiData::json(r)), core::AppendStatus::kOk);
  EXPECT_EQ(p.append({2, 0}, "12,34,5,6,7,1111,2"), core::AppendStatus::kOk);
  EXPECT_EQ(p.append({2, 1}, R"({"user_id":"x","time_stamp":1111,"action_type":2})"), core::AppendStatus::kOk);
  return d.rows.size() + 2;
}

// Runs `tributary analyze` on DIR/analyze.toml `kills` times, each killed with SIGKILL at a
// random moment after it has made progress (waited for, bounded: the kills land mid-stream
// however slowly a sanitizer build starts). Returns how many kills landed mid-stream.
int kill_at_random(const TempDir& dir, int kills, std::uint64_t total, std::mt19937_64& rng) {
  int mid_stream = 0;
  for (int k = 0; k < kills; ++k) {
    const std::uint64_t before = accounted(dir / "out");
    Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    while (accounted(dir / "out") == before && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(2ms);
    std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 40));  // a random moment
    job.kill_and_reap();
    const std::uint64_t a = accounted(dir / "out");
    mid_stream += a > before && a < total;
  }
  return mid_stream;
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

// --drain: a batch run over what the channel holds, ending by itself after a last checkpoint.
TEST(AnalyzeProcessTest, DrainingAChannelStopsByItselfWithTheOutputsOfARecount) {
  TempDir dir;
  const auto d = TianchiData::make(4, 500, 20000);
  const std::uint64_t n = prepare_channel_job(dir, d, 16 << 20, 60000);  // checkpoints at the start and the end only
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string(), "--drain"});
  ASSERT_EQ(job.wait(60s), 0) << "it stops by itself, cleanly";
  EXPECT_EQ(accounted(dir / "out"), n);
  expect_outputs(dir / "out", d);
  // Run again: the checkpoint says everything was read; nothing is counted twice.
  Child again({kTributary, "analyze", "--config", (dir / "analyze.toml").string(), "--drain"});
  ASSERT_EQ(again.wait(60s), 0);
  expect_outputs(dir / "out", d);
}

// [state] metrics: /metrics (Prometheus) and /status serve the last checkpoint's figures; and
// `analyze --status` prints status.json and the open windows, or says there is none yet.
TEST(AnalyzeProcessTest, TheMetricsEndpointAndStatusShowTheCountsAndTheOpenWindows) {
  TempDir dir;
  const auto d = TianchiData::make(4, 300, 5000);
  const std::uint64_t n = prepare_channel_job(dir, d, 16 << 20, 100);
  {
    Child none({kTributary, "analyze", "--config", (dir / "analyze.toml").string(), "--status"});
    EXPECT_NE(none.wait(10s), 0) << "no status before the analyzer ran";
  }
  std::ofstream(dir / "analyze.toml", std::ios::app)
      << "metrics = \"127.0.0.1:0\"\n"  // still in [state]: any free loopback port
      << "[[windows]]\nname = \"per_hour\"\nby = [\"gender\"]\nsize = \"1h\"\n";  // ingest time: all open
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", n, 30s));
  const std::string status = slurp(dir / "out" / "status.json");
  const std::string_view needle = "\"metrics\":\"127.0.0.1:";
  const auto at = status.find(needle);
  ASSERT_NE(at, std::string::npos) << "status.json names the metrics address: " << status;
  httplib::Client http("127.0.0.1", std::atoi(status.c_str() + at + needle.size()));
  std::string metrics;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {  // until a scrape shows every event
    if (auto res = http.Get("/metrics"); res && res->status == 200) metrics = res->body;
    if (metrics.find(R"(tributary_analyzer_source_accounted_total{source="1"} 5000)") != std::string::npos) break;
    std::this_thread::sleep_for(50ms);  // the snapshot is refreshed at each checkpoint
  }
  EXPECT_NE(metrics.find(R"(tributary_analyzer_source_accounted_total{source="1"} 5000)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(tributary_analyzer_events_total{outcome="rejected"} 2)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find(R"(tributary_analyzer_window_open{window="per_hour"} )"), std::string::npos) << metrics;
  auto res = http.Get("/status");
  ASSERT_TRUE(res && res->status == 200);
  EXPECT_NE(res->body.find(R"("rejected":2)"), std::string::npos) << res->body;

  Child query({kTributary, "analyze", "--config", (dir / "analyze.toml").string(), "--status"});
  std::string printed;
  while (auto line = query.read_line(10s)) printed += *line + "\n";
  EXPECT_EQ(query.wait(10s), 0);
  EXPECT_NE(printed.find(R"("rejected":2)"), std::string::npos) << printed;
  EXPECT_NE(printed.find("open windows of per_hour:\nwindow_start,window_end,gender,count\n20"), std::string::npos)
      << printed;
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(10s), 0);
}

TEST(AnalyzeProcessTest, KilledAtRandomAndRestartedTheTotalsAreUnchanged) {
  TempDir dir;
  const auto d = TianchiData::make(5, 3000, 300000);
  const std::uint64_t n = prepare_channel_job(dir, d, 128 << 20, 20);
  std::map<std::uint64_t, std::uint64_t> at;  // sequence of source 2 (the malformed events) -> position
  core::Channel::open(dir / "c.chan").walk([&](const core::Record& r) {
    if (r.id.source_id == 2) at[r.id.sequence] = r.position;
    return true;
  });
  ASSERT_EQ(at.size(), 2u);
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  EXPECT_GE(kill_at_random(dir, 8, n, rng), 2) << "the kills must land while events are being analyzed";
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", n, 60s));
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(10s), 0);
  expect_outputs(dir / "out", d);
  const std::string status = slurp(dir / "out" / "status.json");
  EXPECT_NE(status.find(R"({"source":1,"accounted":300000,"gaps":0)"), std::string::npos) << status;
  // The two malformed events in the dead-letter file once each, whatever the kills cut, with
  // the channel positions they were read at.
  EXPECT_EQ(slurp(dir / "out" / "dead_letter.jsonl"),
            fmt::format(R"({{"reason":"not a JSON object","source":2,"seq":0,"input":"channel {}",)"
                        R"("event":"12,34,5,6,7,1111,2"}})"
                        "\n"
                        R"({{"reason":"field is not an integer","source":2,"seq":1,"input":"channel {}",)"
                        R"("event":"{{\"user_id\":\"x\",\"time_stamp\":1111,\"action_type\":2}}"}})"
                        "\n",
                        at[0], at[1]));
}

// Windows through crashes: events with an event-time field, some out of order and late,
// in a channel; the analyzer is killed at random moments and restarted. The closed-window
// file must hold each closed window exactly once with the count an independent reference
// computes, and the late events must be accounted for.
TEST(AnalyzeProcessTest, WindowRowsAndFinalLateRowsAreWrittenExactlyOnceAcrossKills) {
  TempDir dir;
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  struct Ev {
    std::int64_t t;
    std::string k;
  };
  std::vector<Ev> events;
  const std::int64_t t0 = 1794355200000;  // 2026-11-11T00:00:00Z
  // Enough events that the analyzer is still at them when the kills land (checkpoints every
  // 20 ms): 200,000 took under 40 ms on a fast CI machine, and one kill landed mid-stream.
  for (int i = 0; i < 1000000; ++i) {
    const std::int64_t jitter = static_cast<std::int64_t>(rng() % 100) - (rng() % 50 == 0 ? 2000 : 50);
    events.push_back({t0 + i + jitter, std::string(1, static_cast<char>('a' + rng() % 3))});
  }
  core::ChannelConfig cfg;
  cfg.capacity = 128 << 20;
  {
    auto ch = core::Channel::create(dir / "c.chan", cfg);
    auto p = ch.producer();
    for (std::size_t i = 0; i < events.size(); ++i)
      ASSERT_EQ(p.append({1, i}, fmt::format(R"({{"ts":{},"k":"{}"}})", events[i].t, events[i].k)),
                core::AppendStatus::kOk);
  }
  std::ofstream(dir / "analyze.toml") << "[input]\ntype = \"channel\"\npath = \"" << (dir / "c.chan").string()
                                      << "\"\n[fields]\nts = \"/ts\"\nk = \"/k\"\n"
                                      << "[[windows]]\nname = \"per_second\"\nby = [\"k\"]\nsize = \"1s\"\n"
                                      << "lateness = \"500ms\"\ntime = \"ts\"\ntime_format = \"epoch_ms\"\n"
                                      << "late_retention = \"1s\"\n"
                                      << "[state]\ndir = \"" << (dir / "out").string() << "\"\ncheckpoint_ms = 20\n";
  // The reference: counts per (window, key) of events that arrived before their window closed;
  // the late ones per (window, key) while the watermark is less than 1 s (late_retention) past
  // the window's end, final after that, and expired (in no row) if they come later still.
  using Rows = std::map<std::pair<std::int64_t, std::string>, std::uint64_t>;
  Rows counted, late_rows;
  std::int64_t high = INT64_MIN;
  std::uint64_t late = 0, expired = 0;
  for (const Ev& e : events) {
    const std::int64_t start = e.t - (e.t % 1000);
    if (start + 1000 > high) ++counted[{start, e.k}];
    else if (++late; start + 2000 <= high) ++expired;
    else ++late_rows[{start, e.k}];
    high = std::max(high, e.t - 500);
  }
  auto lines = [](const Rows& rows, std::int64_t below, bool want_below) {
    std::vector<std::string> out;
    for (const auto& [w, n] : rows)
      if ((w.first <= below) == want_below)
        out.push_back(fmt::format("{},{},{},{}", analytics::format_millis(w.first),
                                  analytics::format_millis(w.first + 1000), w.second, n));
    std::sort(out.begin(), out.end());
    return out;
  };
  const auto want = lines(counted, high - 1000, true);  // closed: ended by the watermark
  const auto want_final = lines(late_rows, high - 2000, true), want_open = lines(late_rows, high - 2000, false);
  ASSERT_GT(expired, 0u);
  ASSERT_FALSE(want_final.empty());
  EXPECT_GE(kill_at_random(dir, 6, events.size(), rng), 2) << "the kills must land while events are being analyzed";
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", events.size(), 60s));
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(10s), 0);
  auto rows_of = [&](const std::string& name, const std::string& header) {
    std::istringstream file(slurp(dir / "out" / name));
    std::string line;
    std::getline(file, line);
    EXPECT_EQ(line, header) << name;
    std::vector<std::string> got;
    while (std::getline(file, line)) got.push_back(line);
    std::sort(got.begin(), got.end());
    EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a row of " << name << " written twice";
    return got;
  };
  EXPECT_EQ(rows_of("per_second.csv", "window_start,window_end,k,count"), want);
  EXPECT_EQ(rows_of("per_second.late.csv", "window_start,window_end,k,late"), want_final);
  EXPECT_EQ(rows_of("per_second.late.open.csv", "window_start,window_end,k,late"), want_open);
  const std::string status = slurp(dir / "out" / "status.json");
  EXPECT_NE(status.find(fmt::format(R"("late":{})", late)), std::string::npos) << status;
  EXPECT_NE(status.find(fmt::format(R"("late_events":{},"expired":{})", late, expired)), std::string::npos) << status;
}

// The checkpoint says how far each appended file goes by the file's name: a window added in
// front of another between two runs leaves the other's window and final-late files as a
// straight run writes them (by place, the other's count would go to the new one's file and its
// own file would be cut to a stranger's length); a window removed and added back keeps what its
// file held.
TEST(AnalyzeProcessTest, AWindowAddedBetweenRunsLeavesTheOtherWindowsFilesAsAStraightRunWritesThem) {
  TempDir dir;
  const std::int64_t t0 = 1794355200000;  // 2026-11-11T00:00:00Z
  auto event = [&](std::uint64_t i) {
    const std::int64_t t = t0 + static_cast<std::int64_t>(i) * 10 - (i % 50 == 0 ? 1500 : 0);  // some late
    return fmt::format(R"({{"ts":{},"k":"{}"}})", t, static_cast<char>('a' + i % 3));
  };
  constexpr std::uint64_t kEvents = 20000;
  core::ChannelConfig cfg;
  cfg.capacity = 16 << 20;
  auto fill = [&](const std::filesystem::path& chan, std::uint64_t from, std::uint64_t to) {
    auto ch = std::filesystem::exists(chan) ? core::Channel::open(chan) : core::Channel::create(chan, cfg);
    auto p = ch.producer();
    for (std::uint64_t i = from; i < to; ++i) ASSERT_EQ(p.append({1, i}, event(i)), core::AppendStatus::kOk);
  };
  const std::string a = "[[windows]]\nname = \"a\"\nby = [\"k\"]\nsize = \"1s\"\ntime = \"ts\"\n"
                        "time_format = \"epoch_ms\"\nlate_retention = \"1s\"\n";
  const std::string b = "[[windows]]\nname = \"b\"\nsize = \"2s\"\ntime = \"ts\"\ntime_format = \"epoch_ms\"\n";
  auto config = [&](const std::string& name, const std::string& windows) {
    std::ofstream(dir / (name + ".toml")) << "[input]\ntype = \"channel\"\npath = \"" << (dir / (name + ".chan")).string()
                                          << "\"\n[fields]\nts = \"/ts\"\nk = \"/k\"\n" << windows
                                          << "[state]\ndir = \"" << (dir / name).string() << "\"\n";
    return (dir / (name + ".toml")).string();
  };
  auto drain = [&](const std::string& toml) {
    Child job({kTributary, "analyze", "--config", toml, "--drain"});
    return job.wait(60s);
  };
  fill(dir / "straight.chan", 0, kEvents);
  ASSERT_EQ(drain(config("straight", a)), 0);
  fill(dir / "twice.chan", 0, kEvents / 2);
  ASSERT_EQ(drain(config("twice", a)), 0);
  fill(dir / "twice.chan", kEvents / 2, kEvents);
  ASSERT_EQ(drain(config("twice", b + a)), 0);
  for (const std::string file : {"a.csv", "a.late.csv", "a.late.open.csv"}) {
    EXPECT_GT(slurp(dir / "straight" / file).size(), 40u) << file << " has rows";
    EXPECT_EQ(slurp(dir / "twice" / file), slurp(dir / "straight" / file)) << file;
  }
  EXPECT_GT(slurp(dir / "twice" / "b.csv").size(), 40u) << "the new window counted the second half";
  // Removed, then added back: what its files hold from before is kept, the new rows go after it.
  const std::string b_before = slurp(dir / "twice" / "b.csv");
  const std::string without = (dir / "without.log").string();
  Child removed({"/bin/sh", "-c", "exec \"$0\" analyze --config \"$1\" --drain 2> \"$2\"", kTributary,
                 config("twice", a), without});
  ASSERT_EQ(removed.wait(60s), 0) << slurp(without);
  EXPECT_NE(slurp(without).find("the checkpoint holds the state of window b, which the config no longer has: dropped"),
            std::string::npos)
      << slurp(without);
  fill(dir / "twice.chan", kEvents, kEvents + 5000);
  const std::string log = (dir / "again.log").string();
  Child again({"/bin/sh", "-c", "exec \"$0\" analyze --config \"$1\" --drain 2> \"$2\"", kTributary,
               config("twice", b + a), log});
  ASSERT_EQ(again.wait(60s), 0) << slurp(log);
  const std::string b_after = slurp(dir / "twice" / "b.csv");
  EXPECT_EQ(b_after.substr(0, b_before.size()), b_before);
  EXPECT_GT(b_after.size(), b_before.size() + 40) << "the rows of the last 5000 events";
  EXPECT_NE(slurp(log).find("b.csv is not in the checkpoint: its " + std::to_string(b_before.size()) + " bytes are kept"),
            std::string::npos)
      << slurp(log);
}

// A data set's user_info, a channel holding its rows shipped to topic "tianchi" (2 partitions)
// of `mock` by the given uplinks (each a durable consumer: a second one re-sends everything),
// and an analyzer config reading the topic into dir/out. Returns the number of events.
std::uint64_t ship_to_mock(const TempDir& dir, const TianchiData& d, uplink::MockCluster& mock,
                           const std::vector<uplink::UplinkOptions>& uplinks) {
  d.write_info(dir / "user_info.csv");
  mock.create_topic("tianchi", 2);
  core::ChannelConfig cfg;
  cfg.capacity = 16 << 20;
  auto ch = core::Channel::create(dir / "c.chan", cfg);
  const std::uint64_t n = fill_channel(ch, d);
  for (uplink::UplinkOptions o : uplinks) {
    o.kafka["bootstrap.servers"] = mock.bootstrap();
    uplink::Uplink up(ch, o);
    EXPECT_TRUE(testing::ship_all(up, ch, 30s));
  }
  testing::write_tianchi_analyze_config(dir / "analyze.toml",
                                        "type = \"kafka\"\nbootstrap = \"" + mock.bootstrap() + "\"\ntopic = \"tianchi\"\n",
                                        dir / "user_info.csv", dir / "out");
  return n;
}

// Ships a Tianchi channel to a mock Kafka with the given uplinks, runs `tributary analyze` on
// the topic until every event and every expected copy is accounted for, and checks the outputs
// against the recount.
void analyze_from_kafka(const std::vector<uplink::UplinkOptions>& uplinks) {
  TempDir dir;
  const auto d = TianchiData::make(9, 400, 20000);
  uplink::MockCluster mock(1);
  const std::uint64_t n = ship_to_mock(dir, d, mock, uplinks);
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", n, 60s));
  // Every copy read and dropped (status.json: "duplicates" reaches them), none counted twice.
  const std::uint64_t copies = n * (uplinks.size() - 1);
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  std::uint64_t c = 0, f = 0, r = 0, dups = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::sscanf(slurp(dir / "out" / "status.json").c_str(), R"({"counted":%lu,"filtered":%lu,"rejected":%lu,"duplicates":%lu)",
                    &c, &f, &r, &dups) == 4 && dups == copies)
      break;
    std::this_thread::sleep_for(50ms);  // another process's progress: polled, bounded above
  }
  EXPECT_EQ(dups, copies);
  EXPECT_EQ(c + f + r, n);
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(10s), 0);
  expect_outputs(dir / "out", d);
}

// --drain on Kafka: every partition read to its end (two partitions), then a clean stop.
TEST(AnalyzeProcessTest, DrainingATopicStopsOnceEveryPartitionIsReadToItsEnd) {
  TempDir dir;
  const auto d = TianchiData::make(5, 400, 20000);
  uplink::MockCluster mock(1);
  const std::uint64_t n = ship_to_mock(dir, d, mock, {{.name = "up", .topic = "tianchi", .kafka = {}}});
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string(), "--drain"});
  ASSERT_EQ(job.wait(60s), 0) << "it stops by itself, cleanly";
  EXPECT_EQ(accounted(dir / "out"), n);
  expect_outputs(dir / "out", d);
  // The Kafka-transaction mode runs as a group member until stopped: --drain is refused.
  std::ofstream(dir / "analyze.toml", std::ios::app) << "[transaction]\ntopic = \"counts\"\n";
  Child refused({kTributary, "analyze", "--config", (dir / "analyze.toml").string(), "--drain"});
  const int status = refused.wait(30s);
  ASSERT_NE(status, -1);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) != 0);
}

TEST(AnalyzeProcessTest, FromKafkaTheOutputsEqualARecount) {
  analyze_from_kafka({{.name = "up", .topic = "tianchi", .kafka = {}}});
}

// Packed records, and every event shipped twice (a second uplink re-sends the whole channel):
// the analyzer reads packs natively and drops the copies by identity.
TEST(AnalyzeProcessTest, FromPackedKafkaRecordsShippedTwiceTheOutputsEqualARecount) {
  uplink::UplinkOptions packed{.name = "up", .topic = "tianchi", .kafka = {}};
  packed.packed = true;
  packed.pack_bytes = 32 << 10;
  uplink::UplinkOptions again = packed;
  again.name = "again";
  analyze_from_kafka({packed, again});
}

// Kafka faults through the mock cluster's injection API while the analyzer reads: fetch errors
// and disconnects, offset-commit errors, both partition leaders moved, the group coordinator
// moved, a slow broker. The outputs must still equal the recount: nothing lost, nothing
// counted twice (and nothing was sent twice, so no copy to drop either).
TEST(AnalyzeProcessTest, FromKafkaThroughFetchAndCommitErrorsAndMovingLeadersTheOutputsEqualARecount) {
  constexpr std::int16_t kFetchApi = 1, kOffsetCommitApi = 8;
  TempDir dir;
  const auto d = TianchiData::make(21, 400, 20000);
  d.write_info(dir / "user_info.csv");
  uplink::MockCluster mock(3);
  mock.create_topic("tianchi", 2, 3);
  core::ChannelConfig cfg;
  cfg.capacity = 16 << 20;
  auto ch = core::Channel::create(dir / "c.chan", cfg);
  const std::uint64_t n = fill_channel(ch, d);
  {
    uplink::Uplink up(ch, {.name = "up", .topic = "tianchi", .kafka = {{"bootstrap.servers", mock.bootstrap()}}});
    ASSERT_TRUE(testing::ship_all(up, ch, 30s));
  }
  testing::write_tianchi_analyze_config(
      dir / "analyze.toml",
      "type = \"kafka\"\nbootstrap = \"" + mock.bootstrap() + "\"\ntopic = \"tianchi\"\ngroup = \"faults\"\n",
      dir / "user_info.csv", dir / "out", 100);
  rd_kafka_mock_push_request_errors(mock.raw(), kFetchApi, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR__TRANSPORT,
                                    RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE);
  rd_kafka_mock_push_request_errors(mock.raw(), kOffsetCommitApi, 4, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
                                    RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR__TRANSPORT,
                                    RD_KAFKA_RESP_ERR_NOT_COORDINATOR);
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  // Mid-stream: leaders and the coordinator move, one broker turns slow.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (accounted(dir / "out") == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);  // another process's progress: polled, bounded above
  rd_kafka_mock_partition_set_leader(mock.raw(), "tianchi", 0, 2);
  rd_kafka_mock_partition_set_leader(mock.raw(), "tianchi", 1, 3);
  rd_kafka_mock_coordinator_set(mock.raw(), "group", "faults", 3);
  rd_kafka_mock_broker_set_rtt(mock.raw(), 2, 200);
  rd_kafka_mock_push_request_errors(mock.raw(), kFetchApi, 2, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
                                    RD_KAFKA_RESP_ERR__TRANSPORT);
  ASSERT_TRUE(wait_accounted(dir / "out", n, 120s)) << "accounted " << accounted(dir / "out") << " of " << n;
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(20s), 0);
  expect_outputs(dir / "out", d);
  std::uint64_t c = 0, f = 0, r = 0, dups = 0;
  ASSERT_EQ(std::sscanf(slurp(dir / "out" / "status.json").c_str(),
                        R"({"counted":%lu,"filtered":%lu,"rejected":%lu,"duplicates":%lu)", &c, &f, &r, &dups),
            4);
  EXPECT_EQ(c + f + r, n);
  EXPECT_EQ(dups, 0u) << "re-fetching after an error must not count anything twice (it was sent once)";
}

// A fetch answered "offset out of range" makes librdkafka reset the partition's position (its
// auto.offset.reset). To the end would skip every event not read yet, for good: the position
// goes back to the start, the ledger drops what it counted before, and the log says so. Once
// at the first fetch (nothing read yet) and once after everything was counted.
TEST(AnalyzeProcessTest, AnOffsetResetRereadsFromTheStartAndCountsNothingTwice) {
  constexpr std::int16_t kFetchApi = 1;
  TempDir dir;
  const auto d = TianchiData::make(23, 400, 20000);
  uplink::MockCluster mock(1);
  const std::uint64_t n = ship_to_mock(dir, d, mock, {{.name = "up", .topic = "tianchi", .kafka = {}}});
  rd_kafka_mock_push_request_errors(mock.raw(), kFetchApi, 1, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE);
  const std::string log = (dir / "analyzer.log").string();
  Child job({"/bin/sh", "-c", "exec \"$0\" analyze --config \"$1\" 2> \"$2\"", kTributary,
             (dir / "analyze.toml").string(), log});
  ASSERT_TRUE(wait_accounted(dir / "out", n, 60s)) << "accounted " << accounted(dir / "out") << " of " << n;
  rd_kafka_mock_push_request_errors(mock.raw(), kFetchApi, 1, RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE);
  std::uint64_t c = 0, f = 0, r = 0, dups = 0;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::sscanf(slurp(dir / "out" / "status.json").c_str(), R"({"counted":%lu,"filtered":%lu,"rejected":%lu,"duplicates":%lu)",
                    &c, &f, &r, &dups) == 4 && dups > 0)
      break;
    std::this_thread::sleep_for(50ms);  // another process's progress: polled, bounded above
  }
  EXPECT_GT(dups, 0u) << "read again from the start after the second reset";
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(20s), 0);
  expect_outputs(dir / "out", d);
  ASSERT_EQ(std::sscanf(slurp(dir / "out" / "status.json").c_str(),
                        R"({"counted":%lu,"filtered":%lu,"rejected":%lu,"duplicates":%lu)", &c, &f, &r, &dups),
            4);
  EXPECT_EQ(c + f + r, n);
  // librdkafka's warning reaches the job's log as a line of its own ("[warning] librdkafka ..."),
  // not librdkafka's "%4|..." format on stderr.
  const std::string text = slurp(log);
  const auto at = text.find("offset reset");
  ASSERT_NE(at, std::string::npos) << text;
  const std::string line = text.substr(text.rfind('\n', at) + 1, text.find('\n', at) - text.rfind('\n', at) - 1);
  EXPECT_NE(line.find("[warning] librdkafka "), std::string::npos) << line;
  EXPECT_EQ(text.find("%4|"), std::string::npos) << text;
}

// A packed record whose bytes are damaged (a pack cut inside an entry's header): rejected
// with its reason, and no source appears in the audit for it (it has no identity of its own).
TEST(AnalyzeProcessTest, ADamagedPackIsRejectedWithItsReasonAndAddsNoSourceToTheAudit) {
  TempDir dir;
  const auto d = TianchiData::make(31, 300, 20000);
  uplink::MockCluster mock(1);
  uplink::UplinkOptions packed{.name = "up", .topic = "tianchi", .kafka = {}};
  packed.packed = true;
  const std::uint64_t n = ship_to_mock(dir, d, mock, {packed});
  {
    uplink::KafkaHandle rk = uplink::make_handle(RD_KAFKA_PRODUCER, uplink::make_conf({{"bootstrap.servers", mock.bootstrap()}}));
    const std::string damaged = std::string("TPK1") + std::string("\x10\x00\x00", 3);  // an entry's header, cut
    ASSERT_EQ(rd_kafka_producev(rk.get(), RD_KAFKA_V_TOPIC("tianchi"), RD_KAFKA_V_PARTITION(0),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                RD_KAFKA_V_VALUE(const_cast<char*>(damaged.data()), damaged.size()),
                                RD_KAFKA_V_HEADER(uplink::kPackedHeader, "1", 1), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(rk.get(), 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string(), "--drain"});
  ASSERT_EQ(job.wait(60s), 0);
  EXPECT_EQ(accounted(dir / "out"), n + 1) << "every event, and the damaged record as one rejection";
  expect_outputs(dir / "out", d);
  const std::string status = slurp(dir / "out" / "status.json");
  EXPECT_NE(status.find(R"("damaged packed record":1)"), std::string::npos) << status;
  // The audit lists the two sources of the channel and nothing else.
  std::size_t sources = 0;
  for (std::size_t at = status.find(R"("source":)"); at != std::string::npos; at = status.find(R"("source":)", at + 1))
    ++sources;
  EXPECT_EQ(sources, 2u) << status;
  EXPECT_NE(status.find(R"({"source":1,)"), std::string::npos) << status;
  EXPECT_NE(status.find(R"({"source":2,)"), std::string::npos) << status;
}

// Group keys are event text: a comma, quote or newline in one is quoted in the output CSV
// (RFC 4180), so the file still has one key per row and reads back exactly.
TEST(AnalyzeProcessTest, KeysWithCommasQuotesAndNewlinesAreQuotedInTheOutputs) {
  TempDir dir;
  core::ChannelConfig cfg;
  cfg.capacity = 1 << 20;
  cfg.max_payload = 4096;
  {
    auto ch = core::Channel::create(dir / "c.chan", cfg);
    core::Producer p = ch.producer();
    std::uint64_t seq = 0;
    for (const char* e : {R"({"k":"a,b"})", R"({"k":"plain"})", R"({"k":"say \"hi\""})", R"({"k":"two\nlines"})",
                          R"({"k":"plain"})"})
      ASSERT_EQ(p.append({1, seq++}, e), core::AppendStatus::kOk);
  }
  std::ofstream(dir / "analyze.toml") << "[input]\ntype = \"channel\"\npath = \"" << (dir / "c.chan").string()
                                      << "\"\n[fields]\nk = \"/k\"\n[[outputs]]\nname = \"by_k\"\nby = \"k\"\n"
                                      << "share = false\nheader = \"k,count\"\n[state]\ndir = \""
                                      << (dir / "out").string() << "\"\ncheckpoint_ms = 100\n";
  Child job({kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  ASSERT_TRUE(wait_accounted(dir / "out", 5, 60s));
  job.signal(SIGTERM);
  ASSERT_EQ(job.wait(20s), 0);
  EXPECT_EQ(slurp(dir / "out" / "by_k.csv"), "k,count\n\"a,b\",1\nplain,2\n\"say \"\"hi\"\"\",1\n\"two\nlines\",1\n");
}

// Kafka unreachable when the analyzer starts: it says it is waiting for the topic (not an
// error, not a crash, not a busy loop) and stops cleanly on SIGTERM, having counted nothing.
TEST(AnalyzeProcessTest, KafkaUnreachableAtStartItWaitsSaysSoAndStopsCleanly) {
  TempDir dir;
  const auto d = TianchiData::make(3, 50, 10);
  d.write_info(dir / "user_info.csv");
  testing::write_tianchi_analyze_config(dir / "analyze.toml",
                                        "type = \"kafka\"\nbootstrap = \"127.0.0.1:1\"\ntopic = \"nowhere\"\n",
                                        dir / "user_info.csv", dir / "out");
  Child job({"/bin/sh", "-c", "exec \"$0\" analyze --config \"$1\" 2>&1", kTributary, (dir / "analyze.toml").string()});
  bool waiting = false;
  while (!waiting) {
    const auto line = job.read_line(20s);
    if (!line) break;
    waiting = line->find("waiting for topic nowhere") != std::string::npos;
  }
  EXPECT_TRUE(waiting) << "no word that it waits for Kafka";
  job.signal(SIGTERM);
  const int status = job.wait(20s);
  ASSERT_TRUE(WIFEXITED(status)) << "did not stop on SIGTERM";
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(accounted(dir / "out"), 0u);
}

// A state directory the analyzer may not write: a clear error naming it at start-up, before
// any work that could not be checkpointed.
TEST(AnalyzeProcessTest, AStateDirectoryWithoutWritePermissionIsAClearErrorAtStart) {
  TempDir dir;
  const auto d = TianchiData::make(3, 50, 10);
  d.write_info(dir / "user_info.csv");
  std::filesystem::create_directories(dir / "locked" / "out");
  ::chmod(dir.path().c_str(), 0755);
  ::chmod((dir / "user_info.csv").c_str(), 0644);
  ::chmod((dir / "locked").c_str(), 0555);
  ::chmod((dir / "locked" / "out").c_str(), 0555);
  testing::write_tianchi_analyze_config(dir / "analyze.toml",
                                        "type = \"kafka\"\nbootstrap = \"127.0.0.1:1\"\ntopic = \"t\"\n",
                                        dir / "user_info.csv", dir / "locked" / "out");
  ::chmod((dir / "analyze.toml").c_str(), 0644);
  // Root writes anywhere, so the analyzer runs as an unprivileged user (setpriv, util-linux).
  if (::geteuid() == 0 && !testing::have_command("setpriv")) GTEST_SKIP() << "setpriv not installed";
  std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$@\" 2>&1", "sh"};
  if (::geteuid() == 0) argv.insert(argv.end(), {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  argv.insert(argv.end(), {kTributary, "analyze", "--config", (dir / "analyze.toml").string()});
  Child job(argv);
  std::string out;
  while (const auto line = job.read_line(20s)) out += *line + "\n";
  const int status = job.wait(20s);
  ::chmod((dir / "locked").c_str(), 0755);
  ::chmod((dir / "locked" / "out").c_str(), 0755);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1) << out;
  EXPECT_NE(out.find("the analyzer's state directory " + (dir / "locked" / "out").string() + " is not writable"),
            std::string::npos)
      << out;
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
