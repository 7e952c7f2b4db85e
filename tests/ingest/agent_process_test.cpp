// The agent as a real process: SIGTERM drains and exits 0; stdin to a channel; and kill -9 at
// random moments while tailing files that are still being written: after restarts, every line
// is in the channel exactly once, in order.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "support/process.h"
#include "support/tail_util.h"
#include "support/temp_dir.h"

namespace tributary::ingest {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::TempDir;

const std::string kTributary = TRIBUTARY_BIN;

void write_config(const TempDir& dir, const std::string& sources) {
  std::ofstream(dir / "agent.toml") << "[agent]\nname = \"t\"\nstatus_file = \"" << (dir / "status.json").string()
                                    << "\"\n[channels.main]\npath = \"" << (dir / "main.chan").string()
                                    << "\"\ncapacity = \"64M\"\n" << sources;
}

// Waits (bounded) until the channel holds `n` records.
bool wait_records(const std::filesystem::path& chan, std::uint64_t n, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (std::filesystem::exists(chan)) {
      core::OpenOptions ro;
      ro.read_only = true;
      if (core::Channel::open(chan, ro).stats().records_written >= n) return true;
    }
    std::this_thread::sleep_for(20ms);  // polling another process's progress, bounded above
  }
  return false;
}

TEST(AgentProcessTest, SigtermDrainsAndExitsZero) {
  TempDir dir;
  testing::append_lines(dir / "a.log", "a", 0, 500);
  write_config(dir, "[sources.t]\ntype = \"tail\"\nchannels = [\"main\"]\npaths = [\"" + (dir / "*.log").string() + "\"]\n");
  Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
  ASSERT_TRUE(wait_records(dir / "main.chan", 500, 10s));
  agent.signal(SIGTERM);
  const int status = agent.wait(10s);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  std::ifstream st(dir / "status.json");
  std::string json((std::istreambuf_iterator<char>(st)), {});
  EXPECT_NE(json.find("\"events\":500"), std::string::npos) << json;
}

TEST(AgentProcessTest, ValidateListsErrorsAndExitsNonZero) {
  TempDir dir;
  write_config(dir, "[sources.t]\ntype = \"tail\"\nchannels = [\"main\"]\nbogus = 1\n");
  Child v({kTributary, "agent", "--config", (dir / "agent.toml").string(), "--validate"});
  const int status = v.wait(10s);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 1);
}

TEST(AgentProcessTest, KilledAtRandomWhileTailingEveryLineLandsExactlyOnce) {
  TempDir dir;
  write_config(dir, "[sources.t]\ntype = \"tail\"\nchannels = [\"main\"]\npaths = [\"" + (dir / "*.log").string() +
                        "\"]\nbatch_bytes = \"64K\"\n");
  const int kLines = 200'000;
  std::atomic<bool> written{false};
  std::thread writer([&] {
    for (int i = 0; i < kLines; i += 1000) {  // paced over ~1.5 s so the kills land mid-stream
      testing::append_lines(dir / "a.log", "a", i, i + 1000);
      testing::append_lines(dir / "b.log", "b", i, i + 1000);
      std::this_thread::sleep_for(7ms);
    }
    written = true;
  });
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  int kills = 0, mid_stream = 0;
  for (; kills < 12; ++kills) {
    Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 150));  // a random moment
    agent.kill_and_reap();
    if (!written) ++mid_stream;
  }
  writer.join();
  EXPECT_GE(mid_stream, 5) << "most kills must land while lines are still being written";
  {
    std::filesystem::remove(dir / "status.json");
    Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
    ASSERT_TRUE(wait_records(dir / "main.chan", 2 * kLines, 60s));
    // Its first status file means it runs (signals handled): only then ask it to stop.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!std::filesystem::exists(dir / "status.json") && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    agent.signal(SIGTERM);
    ASSERT_EQ(agent.wait(10s), 0);
  }
  core::OpenOptions ro;
  ro.read_only = true;
  auto ch = core::Channel::open(dir / "main.chan", ro);
  std::map<char, int> next;
  std::uint64_t n = 0;
  ch.walk([&](const core::Record& r) {
    const std::string p = testing::as_string(r.payload);
    const char file = p[0];
    EXPECT_EQ(p, testing::line_text(std::string(1, file), next[file])) << "lost or repeated line";
    ++next[file];
    ++n;
    return true;
  });
  EXPECT_EQ(n, 2u * kLines);
  EXPECT_EQ(next['a'], kLines);
  EXPECT_EQ(next['b'], kLines);
}

TEST(AgentProcessTest, StdinLinesReachTheChannelAndTheAgentExitsAtEof) {
  TempDir dir;
  {
    std::ofstream in(dir / "input.txt");
    for (int i = 0; i < 1000; ++i) in << "stdin line " << i << "\n";
    in << "last line without newline";
  }
  write_config(dir, "[sources.in]\ntype = \"stdin\"\nchannels = [\"main\"]\n");
  const std::string cmd = kTributary + " agent --config " + (dir / "agent.toml").string() + " < " + (dir / "input.txt").string();
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  core::OpenOptions ro;
  ro.read_only = true;
  auto ch = core::Channel::open(dir / "main.chan", ro);
  auto all = testing::all_records(ch);
  ASSERT_EQ(all.size(), 1001u);
  EXPECT_EQ(all[999].payload, "stdin line 999");
  EXPECT_EQ(all[1000].payload, "last line without newline");
}

// The command of an exec source dies with the agent, even when the agent is SIGKILLed and
// cannot clean up (PR_SET_PDEATHSIG); a SIGTERMed agent stops it and exits 0.
TEST(AgentProcessTest, AnExecCommandDoesNotOutliveItsAgent) {
  for (const int sig : {SIGKILL, SIGTERM}) {
    TempDir dir;
    write_config(dir, "[sources.cmd]\ntype = \"exec\"\nchannels = [\"main\"]\ncommand = \"echo $$; exec sleep 1000\"\n");
    Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
    ASSERT_TRUE(wait_records(dir / "main.chan", 1, 10s));
    core::OpenOptions ro;
    ro.read_only = true;
    const pid_t command = std::stoi(testing::all_records(core::Channel::open(dir / "main.chan", ro)).at(0).payload);
    ASSERT_EQ(::kill(command, 0), 0) << "the command runs";
    agent.signal(sig);
    const int status = agent.wait(10s);
    if (sig == SIGTERM) {
      ASSERT_TRUE(WIFEXITED(status)) << status;
      EXPECT_EQ(WEXITSTATUS(status), 0);
    }
    // The command was re-parented to init (or a subreaper) and killed.
    const bool gone = testing::wait_gone(command, 10s);
    EXPECT_TRUE(gone) << "signal " << sig << ": command " << command << " still runs";
  }
}

}  // namespace
}  // namespace tributary::ingest
