// `tributary broker` is a real Kafka endpoint: independent clients (kcat, built on librdkafka,
// and kafka-python, a pure-Python implementation of the protocol) produce to it and consume
// from it. And the whole node path as processes: tail -> channel -> uplink -> broker, with the
// agent killed by SIGKILL mid-stream: every line reaches the topic, copies only with the same
// identity.
#include <sys/wait.h>

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <fstream>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "support/analyzer_status.h"
#include "support/channel_util.h"
#include "support/kafka_util.h"
#include "support/process.h"
#include "support/tail_util.h"
#include "support/temp_dir.h"

namespace tributary::uplink {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::TempDir;

const std::string kTributary = TRIBUTARY_BIN;

std::string start_broker(Child& broker) {
  auto line = broker.read_line(10s);
  EXPECT_TRUE(line && line->rfind("bootstrap ", 0) == 0) << (line ? *line : "no output");
  return line ? line->substr(10) : "";
}

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

// dir/agent.toml: a tail of dir/*.log into channel main (16 MiB), shipped to topic `logs` at
// `bootstrap`; `tail_extra` and `uplink_extra` are more lines of those sections.
void write_agent_config(const TempDir& dir, const std::string& bootstrap, const std::string& tail_extra = "",
                        const std::string& uplink_extra = "") {
  std::ofstream(dir / "agent.toml") << "[agent]\nstatus_file = \"" << (dir / "status.json").string() << "\"\n"
                                    << "[channels.main]\npath = \"" << (dir / "main.chan").string() << "\"\n"
                                    << "capacity = \"16M\"\n"
                                    << "[sources.t]\ntype = \"tail\"\nchannels = [\"main\"]\npaths = [\""
                                    << (dir / "*.log").string() << "\"]\n" << tail_extra
                                    << "[uplinks.k]\nchannel = \"main\"\ntopic = \"logs\"\nbootstrap = \"" << bootstrap
                                    << "\"\n" << uplink_extra;
}

TEST(BrokerProcessTest, KcatProducesAndConsumesThroughTheMockBroker) {
  if (!testing::have_command("kcat")) GTEST_SKIP() << "kcat not installed (apt-get install kcat)";
  TempDir dir;
  Child broker({kTributary, "broker", "--topics", "words:1"});
  const std::string bs = start_broker(broker);
  { std::ofstream(dir / "in.txt") << "alpha\nbeta\ngamma\n"; }
  ASSERT_EQ(run("kcat -P -b " + bs + " -t words -l " + (dir / "in.txt").string()), 0);
  ASSERT_EQ(run("kcat -C -b " + bs + " -t words -o beginning -c 3 -e -q > " + (dir / "out.txt").string()), 0);
  std::ifstream out(dir / "out.txt");
  std::string all((std::istreambuf_iterator<char>(out)), {});
  EXPECT_EQ(all, "alpha\nbeta\ngamma\n");
}

TEST(BrokerProcessTest, KafkaPythonProducesAndConsumesThroughTheMockBroker) {
  if (run("/usr/bin/python3 -c 'import kafka' 2> /dev/null") != 0)
    GTEST_SKIP() << "kafka-python not installed (apt-get install python3-kafka)";
  TempDir dir;
  Child broker({kTributary, "broker", "--topics", "py:1"});
  const std::string bs = start_broker(broker);
  std::ofstream(dir / "check.py") << R"(
import sys
from kafka import KafkaProducer, KafkaConsumer
bs = sys.argv[1]
p = KafkaProducer(bootstrap_servers=bs, api_version=(2, 5))
for i in range(100):
    p.send("py", ("msg %d" % i).encode())
p.flush()
c = KafkaConsumer("py", bootstrap_servers=bs, auto_offset_reset="earliest", consumer_timeout_ms=10000,
                  api_version=(2, 5))
got = []
for m in c:
    got.append(m.value.decode())
    if len(got) == 100:
        break
assert got == ["msg %d" % i for i in range(100)], got[:5]
print("ok")
)";
  ASSERT_EQ(run("/usr/bin/python3 " + (dir / "check.py").string() + " " + bs), 0);
}

// `tributary uplink --drain` ships what the channel holds, exits 0 once Kafka acknowledged all of
// it and the cursor is committed (every event in the topic), and says so: a run that ends, as
// kcat -P does at the end of its input, for benchmarks and one-shot transfers.
TEST(BrokerProcessTest, UplinkDrainExitsOnceEveryEventIsAcknowledgedAndCommitted) {
  TempDir dir;
  Child broker({kTributary, "broker", "--topics", "drained:1"});
  const std::string bs = start_broker(broker);
  core::ChannelConfig cc;
  cc.capacity = 8 << 20;
  {
    core::Channel ch = core::Channel::create(dir / "c.chan", cc);
    core::Producer p = ch.producer();
    for (std::uint64_t i = 0; i < 5000; ++i)
      ASSERT_EQ(p.append({3, i}, testing::payload_for(3, i, 60)), core::AppendStatus::kOk);
  }
  const std::string cmd = fmt::format("exec {} uplink --channel {} --topic drained --bootstrap {} --drain 2> {}",
                                      kTributary, (dir / "c.chan").string(), bs, (dir / "uplink.log").string());
  Child up({"/bin/sh", "-c", cmd});
  ASSERT_EQ(up.wait(60s), 0) << testing::slurp(dir / "uplink.log");
  EXPECT_NE(testing::slurp(dir / "uplink.log").find("drained: 5000 delivered, 0 in flight"), std::string::npos)
      << testing::slurp(dir / "uplink.log");
  core::Channel ch = core::Channel::open(dir / "c.chan");
  const auto stats = ch.stats();
  ASSERT_EQ(stats.consumers.size(), 1u);
  EXPECT_EQ(stats.consumers[0].committed, stats.write_position) << "exited before its cursor was committed";
  std::set<std::uint64_t> seqs;
  for (const auto& r : testing::read_topic(bs, "drained", 1, 5000, 30s)) seqs.insert(r.id.sequence);
  EXPECT_EQ(seqs.size(), 5000u);
  // With Kafka gone, a drain does not end (the events stay in the channel); stopped, it says so
  // with exit code 4 (or 3 if events were in flight), never 0.
  {
    core::Producer p = ch.producer();
    for (std::uint64_t i = 5000; i < 5100; ++i)
      ASSERT_EQ(p.append({3, i}, testing::payload_for(3, i, 60)), core::AppendStatus::kOk);
  }
  broker.signal(SIGKILL);
  (void)broker.wait(10s);
  Child again({"/bin/sh", "-c", cmd});
  EXPECT_EQ(again.wait(2s), -1) << "a drain ended with Kafka gone: " << testing::slurp(dir / "uplink.log");
  again.signal(SIGTERM);
  const int status = again.wait(30s);
  ASSERT_TRUE(WIFEXITED(status)) << "wait status " << status;
  EXPECT_TRUE(WEXITSTATUS(status) == 4 || WEXITSTATUS(status) == 3)
      << "exit code " << WEXITSTATUS(status) << ": " << testing::slurp(dir / "uplink.log");
  EXPECT_LT(ch.stats().consumers[0].committed, ch.stats().write_position);
}

// The agent's channel cut short under it while nothing new is read: its uplink finds nothing
// more, says why, and the agent stops with the cause (its uplink used to wake from a wait that
// returns at once on a truncated file, again and again, and the agent ran on, saying nothing).
TEST(BrokerProcessTest, AChannelTruncatedUnderTheAgentsUplinkStopsTheAgentWithTheCause) {
  TempDir dir;
  Child broker({kTributary, "broker", "--topics", "logs:1"});
  const std::string bs = start_broker(broker);
  write_agent_config(dir, bs);
  testing::append_lines(dir / "a.log", "a", 0, 100);
  Child agent({"/bin/sh", "-c", "exec \"$0\" agent --config \"$1\" 2>&1", kTributary, (dir / "agent.toml").string()});
  bool shipped = false;  // every line in the channel, and committed by the uplink
  for (const auto deadline = std::chrono::steady_clock::now() + 30s; !shipped && std::chrono::steady_clock::now() < deadline;
       std::this_thread::sleep_for(50ms)) {  // another process's progress: polled, bounded above
    if (!std::filesystem::exists(dir / "main.chan")) continue;
    const auto s = core::Channel::open(dir / "main.chan", {.read_only = true}).stats();
    shipped = s.records_written == 100 && !s.consumers.empty() && s.consumers[0].committed == s.write_position;
  }
  ASSERT_TRUE(shipped);
  // The cut keeps every record and the cursor (the uplink learns of it from the file's size).
  ASSERT_LT(core::Channel::open(dir / "main.chan", {.read_only = true}).stats().write_position, 64u * 1024);
  std::filesystem::resize_file(dir / "main.chan", testing::data_offset(dir / "main.chan") + 64 * 1024);
  bool said = false;
  for (const auto until = std::chrono::steady_clock::now() + 30s; !said && std::chrono::steady_clock::now() < until;) {
    const auto line = agent.read_line(std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()));
    if (!line) break;
    said = line->find("was truncated under it") != std::string::npos;
  }
  EXPECT_TRUE(said) << "no error naming the cause";
  const int status = agent.wait(20s);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST(BrokerProcessTest, AgentKilledMidStreamShipsEveryLineCopiesOnlyWithTheSameIdentity) {
  TempDir dir;
  Child broker({kTributary, "broker", "--topics", "logs:2"});
  const std::string bs = start_broker(broker);
  write_agent_config(dir, bs, "batch_bytes = \"64K\"\n", "kafka = { \"message.timeout.ms\" = \"5000\" }\n");
  const int kLines = 50'000;
  std::atomic<bool> written{false};
  std::thread writer([&] {
    for (int i = 0; i < kLines; i += 500) {
      testing::append_lines(dir / "a.log", "a", i, i + 500);
      std::this_thread::sleep_for(10ms);
    }
    written = true;
  });
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  for (int k = 0; k < 6; ++k) {
    Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
    std::this_thread::sleep_for(std::chrono::milliseconds(50 + rng() % 150));
    agent.kill_and_reap();
  }
  writer.join();
  std::filesystem::remove(dir / "status.json");
  Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
  // Done when every line is in the channel and the uplink committed the channel to its end.
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  bool shipped = false;
  std::string state;
  while (!shipped && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);  // polling another process's progress, bounded above
    if (!std::filesystem::exists(dir / "main.chan")) continue;  // a slow (sanitizer) start
    core::OpenOptions ro;
    ro.read_only = true;
    const auto ch = core::Channel::open(dir / "main.chan", ro);
    const auto s = ch.stats();
    std::uint64_t lines = 0;
    ch.walk([&](const core::Record&) { return ++lines, true; }, 0);
    const std::uint64_t committed = s.consumers.empty() ? 0 : s.consumers[0].committed;
    shipped = lines == static_cast<std::uint64_t>(kLines) && committed == s.write_position;
    state = fmt::format("{} lines in the channel, committed {} of {}, records_written {}", lines, committed,
                        s.write_position, s.records_written);
  }
  ASSERT_TRUE(shipped) << "the uplink did not commit the whole channel: " << state;
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.wait(20s), 0);
  const auto got = testing::read_topic(bs, "logs", 2, kLines * 2, 30s, 1500ms);
  std::map<std::uint64_t, std::string> by_seq;
  std::size_t copies = 0;
  for (const auto& r : got) {
    auto [it, fresh] = by_seq.emplace(r.id.sequence, r.payload);
    if (!fresh) {
      ++copies;
      EXPECT_EQ(it->second, r.payload) << "a copy with the same identity but other content";
    }
  }
  ASSERT_EQ(by_seq.size(), static_cast<std::size_t>(kLines)) << "lines missing from Kafka";
  for (int i = 0; i < kLines; ++i) ASSERT_EQ(by_seq[static_cast<std::uint64_t>(i)], testing::line_text("a", i));
  RecordProperty("copies", static_cast<int>(copies));
}

}  // namespace
}  // namespace tributary::uplink
