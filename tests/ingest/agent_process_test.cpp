// The agent as a real process: SIGTERM drains and exits 0; SIGHUP reloads its configuration;
// stdin to a channel; and kill -9 at random moments while tailing files that are still being
// written: after restarts, every line is in the channel exactly once, in order.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/stat.h>

#include <fmt/format.h>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "support/channel_util.h"
#include "support/process.h"
#include "support/tail_util.h"
#include "support/temp_dir.h"
#include "net/socket.h"
#include "tributary/core/error.h"

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
      try {
        if (core::Channel::open(chan, ro).stats().records_written >= n) return true;
      } catch (const core::Error&) {  // cut short, not yet grown back by the agent
      }
    }
    std::this_thread::sleep_for(20ms);  // polling another process's progress, bounded above
  }
  return false;
}

// Waits (bounded) until the channel has refused appends for want of room `n` times (a held batch
// counts once per retry) or had a producer asleep on it.
bool wait_full(const std::filesystem::path& chan, std::uint64_t n, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (; std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
    if (!std::filesystem::exists(chan)) continue;
    try {
      const core::ChannelStats st = core::Channel::open(chan, {.read_only = true}).stats();
      if (st.full_rejections + st.producer_waits >= n) return true;
    } catch (const core::Error&) {  // being created by the agent
    }
  }
  return false;
}

// Every record of the channel, by the file its line came from, must be that file's lines
// 0..n-1 in order, once each.
void expect_lines_once(const std::filesystem::path& chan, const std::map<char, int>& want) {
  auto ch = core::Channel::open(chan, {.read_only = true});
  std::map<char, int> next;
  ch.walk([&](const core::Record& r) {
    const std::string p = testing::as_string(r.payload);
    EXPECT_EQ(p, testing::line_text(std::string(1, p[0]), next[p[0]])) << "lost or repeated line";
    ++next[p[0]];
    return true;
  });
  EXPECT_EQ(next, want);
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

// The channel file cut short under a running agent: its next write past the cut is a SIGBUS,
// caught; the agent stops with exit 1 and says what happened and what to do, instead of dying
// of the signal or spinning on retries. Started again, it grows the file back and every line
// ends up in the channel exactly once.
TEST(AgentProcessTest, AChannelTruncatedUnderTheAgentStopsItWithTheCauseAndARestartRecovers) {
  TempDir dir;
  write_config(dir, "[sources.t]\ntype = \"tail\"\nchannels = [\"main\"]\npaths = [\"" + (dir / "*.log").string() +
                        "\"]\n");
  testing::append_lines(dir / "a.log", "a", 0, 500);
  const std::vector<std::string> run = {"/bin/sh", "-c", "exec \"$0\" agent --config \"$1\" 2>&1", kTributary,
                                        (dir / "agent.toml").string()};
  {
    Child agent(run);
    ASSERT_TRUE(wait_records(dir / "main.chan", 500, 10s));
    // Cut 64 KiB into the data region: past the 500 lines, before what comes next.
    std::filesystem::resize_file(dir / "main.chan", testing::data_offset(dir / "main.chan") + 64 * 1024);
    testing::append_lines(dir / "a.log", "a", 500, 3000);
    bool said = false;
    while (!said) {
      const auto line = agent.read_line(20s);
      if (!line) break;
      said = line->find("was truncated under this process") != std::string::npos;
    }
    EXPECT_TRUE(said) << "no error naming the cause";
    const int status = agent.wait(20s);
    ASSERT_TRUE(WIFEXITED(status)) << "died of signal " << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
    EXPECT_EQ(WEXITSTATUS(status), 1);
  }
  {
    Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
    ASSERT_TRUE(wait_records(dir / "main.chan", 3000, 30s));
    agent.signal(SIGTERM);
    ASSERT_EQ(agent.wait(10s), 0);
  }
  core::OpenOptions ro;
  ro.read_only = true;
  auto ch = core::Channel::open(dir / "main.chan", ro);
  int next = 0;
  ch.walk([&](const core::Record& r) {
    EXPECT_EQ(testing::as_string(r.payload), testing::line_text("a", next)) << "lost or repeated line";
    ++next;
    return true;
  });
  EXPECT_EQ(next, 3000);
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
  expect_lines_once(dir / "main.chan", {{'a', kLines}, {'b', kLines}});
}

// A log rotated under load, by rename and by copytruncate in turn, while the agent is killed at
// random and restarted: every line lands in the channel exactly once, under one identity, but for
// the lines written between a copytruncate's copy and its truncation: read once if the tail got
// to them before the truncation (the copy, shorter than what was read, is then not read again),
// else lost, as for any tail. The test writes such lines on purpose and counts both (the window).
TEST(AgentProcessTest, ALogRotatedUnderLoadWhileKilledAtRandomLosesOnlyTheCopytruncateWindow) {
  TempDir dir;
  // A copy found spent is remembered, across the kills, in its file's instance slot.
  if (!testing::birth_times(dir.path())) GTEST_SKIP() << "no birth times in " << dir.path();
  write_config(dir, "[sources.t]\ntype = \"tail\"\nchannels = [\"main\"]\npaths = [\"" + (dir / "app.log*").string() +
                        "\"]\nbatch_bytes = \"64K\"\n");
  const auto app = dir / "app.log";
  constexpr int kChunks = 240, kChunk = 1000, kWindow = 10;
  std::set<int> window;  // written after a copy, before its truncation
  int lines = 0, renames = 0, copytruncates = 0;
  std::atomic<bool> written{false};
  std::thread writer([&] {
    for (int chunk = 0; chunk < kChunks; ++chunk) {  // ~10 MB paced over ~2 s
      testing::append_lines(app, "a", lines, lines + kChunk);
      lines += kChunk;
      // Every 30 chunks (1.2 MB: the tail sees the cut before the file grows past it again).
      if (chunk % 30 == 29) {
        const auto rotated = dir / ("app.log." + std::to_string(renames + copytruncates + 1));
        if ((renames + copytruncates) % 2 == 0) {
          std::filesystem::rename(app, rotated);
          ++renames;
        } else {
          std::filesystem::copy_file(app, rotated);
          testing::append_lines(app, "a", lines, lines + kWindow);
          for (int i = lines; i < lines + kWindow; ++i) window.insert(i);
          lines += kWindow;
          std::filesystem::resize_file(app, 0);
          ++copytruncates;
        }
      }
      std::this_thread::sleep_for(7ms);
    }
    written = true;
  });
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  int mid_stream = 0;
  for (int kills = 0; kills < 12; ++kills) {
    Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
    std::this_thread::sleep_for(std::chrono::milliseconds(20 + rng() % 150));  // a random moment
    agent.kill_and_reap();
    if (!written) ++mid_stream;
  }
  writer.join();
  ASSERT_EQ(renames, 4);
  ASSERT_EQ(copytruncates, 4);
  EXPECT_GE(mid_stream, 5) << "most kills must land while lines are still being written";
  const auto want = static_cast<std::uint64_t>(lines) - window.size();
  {
    std::filesystem::remove(dir / "status.json");
    Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
    ASSERT_TRUE(wait_records(dir / "main.chan", want, 60s));
    const auto deadline = std::chrono::steady_clock::now() + 10s;  // running (signals handled)
    while (!std::filesystem::exists(dir / "status.json") && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(10ms);
    agent.signal(SIGTERM);
    ASSERT_EQ(agent.wait(10s), 0);
  }
  auto ch = core::Channel::open(dir / "main.chan", {.read_only = true});
  std::vector<int> seen(static_cast<std::size_t>(lines), 0);
  std::set<std::pair<std::uint64_t, std::uint64_t>> ids;
  std::uint64_t records = 0, repeated_ids = 0;
  ch.walk([&](const core::Record& r) {
    ++records;
    const std::string p = testing::as_string(r.payload);
    const int n = std::atoi(p.c_str() + 2);
    EXPECT_EQ(p, testing::line_text("a", n)) << "a damaged line";
    if (n >= 0 && n < lines) ++seen[static_cast<std::size_t>(n)];
    if (!ids.insert({r.id.source_id, r.id.sequence}).second) ++repeated_ids;
    return true;
  });
  int lost = 0, repeated = 0, window_read = 0;
  for (int i = 0; i < lines; ++i) {
    const int n = seen[static_cast<std::size_t>(i)];
    repeated += n > 1;
    if (window.count(i) != 0) {
      window_read += n == 1;
    } else {
      lost += n == 0;
    }
  }
  EXPECT_EQ(lost, 0);
  EXPECT_EQ(repeated, 0);
  EXPECT_EQ(repeated_ids, 0u);
  EXPECT_EQ(records, want + static_cast<std::uint64_t>(window_read));
  std::printf("copytruncate window: %zu lines of %d written between a copy and its truncation, %d of them read "
              "before it, the rest lost as no tail can see them; 12 kills\n",
              window.size(), lines, window_read);
}

// The agent with its log (stderr) on the child's stdout, to wait for what it says.
std::unique_ptr<Child> agent_with_log(const TempDir& dir) {
  return std::make_unique<Child>(std::vector<std::string>{"/bin/sh", "-c", "exec \"$0\" agent --config \"$1\" 2>&1",
                                                          kTributary, (dir / "agent.toml").string()});
}

// Reads the agent's log until a line contains `what` (bounded); the lines read are appended to `log`.
bool wait_log(Child& agent, const std::string& what, std::string& log) {
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (std::chrono::steady_clock::now() < deadline) {
    const auto line = agent.read_line(1s);
    if (!line) continue;
    log += *line + "\n";
    if (line->find(what) != std::string::npos) return true;
  }
  return false;
}

std::string tail_source(const std::string& name, const std::filesystem::path& file) {
  return "[sources." + name + "]\ntype = \"tail\"\nchannels = [\"main\"]\npaths = [\"" + file.string() + "\"]\n";
}

// SIGHUP while a file is being written at speed: the new file's source is added, the running
// one goes on from its channel's source table, no line is lost or repeated, and the counters
// of the status file are the new agent's.
TEST(AgentProcessTest, SighupReloadsTheConfigurationWithoutLosingOrRepeatingALine) {
  TempDir dir;
  write_config(dir, tail_source("a", dir / "a.log"));
  testing::append_lines(dir / "a.log", "a", 0, 1000);
  auto agent = agent_with_log(dir);
  ASSERT_TRUE(wait_records(dir / "main.chan", 1000, 10s));
  constexpr int kLines = 40'000;
  std::thread writer([&] {
    for (int i = 1000; i < kLines; i += 500) {  // paced over ~0.6 s: the reload lands mid-stream
      testing::append_lines(dir / "a.log", "a", i, i + 500);
      std::this_thread::sleep_for(8ms);
    }
  });
  write_config(dir, tail_source("a", dir / "a.log") + tail_source("b", dir / "b.log"));
  testing::append_lines(dir / "b.log", "b", 0, 300);
  agent->signal(SIGHUP);
  std::string log;
  const bool reloaded = wait_log(*agent, "reloaded", log);
  writer.join();
  ASSERT_TRUE(reloaded) << log;
  ASSERT_TRUE(wait_records(dir / "main.chan", kLines + 300, 30s));
  agent->signal(SIGTERM);
  const int status = agent->wait(10s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  expect_lines_once(dir / "main.chan", {{'a', kLines}, {'b', 300}});
  std::ifstream st(dir / "status.json");
  const std::string json((std::istreambuf_iterator<char>(st)), {});
  EXPECT_NE(json.find("\"b\":{\"events\":300,"), std::string::npos) << json;
}

// A file with an error on SIGHUP: every error is logged and the agent goes on as it ran; a
// corrected file on the next SIGHUP is taken.
TEST(AgentProcessTest, AnInvalidConfigurationOnSighupIsRefusedAndTheAgentGoesOn) {
  TempDir dir;
  write_config(dir, tail_source("a", dir / "a.log"));
  testing::append_lines(dir / "a.log", "a", 0, 100);
  auto agent = agent_with_log(dir);
  ASSERT_TRUE(wait_records(dir / "main.chan", 100, 10s));
  write_config(dir, tail_source("a", dir / "a.log") + "colour = \"blue\"\n");
  agent->signal(SIGHUP);
  std::string log;
  ASSERT_TRUE(wait_log(*agent, "the agent goes on with the configuration it runs", log)) << log;
  EXPECT_NE(log.find("colour"), std::string::npos) << "the error names the key:\n" << log;
  testing::append_lines(dir / "a.log", "a", 100, 200);
  ASSERT_TRUE(wait_records(dir / "main.chan", 200, 10s)) << "still collecting";
  write_config(dir, tail_source("a", dir / "a.log") + tail_source("b", dir / "b.log"));
  testing::append_lines(dir / "b.log", "b", 0, 50);
  agent->signal(SIGHUP);
  ASSERT_TRUE(wait_log(*agent, "reloaded", log)) << log;
  ASSERT_TRUE(wait_records(dir / "main.chan", 250, 10s));
  agent->signal(SIGTERM);
  const int status = agent->wait(10s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  expect_lines_once(dir / "main.chan", {{'a', 200}, {'b', 50}});
}

// A reload to a configuration that cannot start (its metrics address is taken): the agent says
// so and starts the configuration it ran again; nothing is lost, it still exits 0 on SIGTERM.
TEST(AgentProcessTest, AReloadThatCannotStartFallsBackToTheRunningConfiguration) {
  TempDir dir;
  const core::Fd taken = net::listen_tcp("127.0.0.1:0", "the port the reload asks for");
  auto config = [&](const std::string& metrics) {
    std::ofstream(dir / "agent.toml") << "[agent]\nname = \"t\"\nmetrics = \"" << metrics << "\"\n[channels.main]\npath = \""
                                      << (dir / "main.chan").string() << "\"\ncapacity = \"64M\"\n"
                                      << tail_source("a", dir / "a.log");
  };
  config("127.0.0.1:0");
  testing::append_lines(dir / "a.log", "a", 0, 100);
  auto agent = agent_with_log(dir);
  ASSERT_TRUE(wait_records(dir / "main.chan", 100, 10s));
  config(net::local_address(taken.get()));
  agent->signal(SIGHUP);
  std::string log;
  ASSERT_TRUE(wait_log(*agent, "starting again with the configuration it ran", log)) << log;
  EXPECT_NE(log.find("cannot listen on"), std::string::npos) << log;
  testing::append_lines(dir / "a.log", "a", 100, 200);
  ASSERT_TRUE(wait_records(dir / "main.chan", 200, 10s)) << "collecting again under the previous configuration";
  agent->signal(SIGTERM);
  const int status = agent->wait(10s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  expect_lines_once(dir / "main.chan", {{'a', 200}});
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

// A reload replaces the stdin source with a new one on the same stdin: a line the old one had
// begun reading is read to its end and appended whole; the new one goes on from the next line.
TEST(AgentProcessTest, SighupWhileStdinIsMidLineLosesAndSplitsNothing) {
  TempDir dir;
  write_config(dir, "[sources.in]\ntype = \"stdin\"\nchannels = [\"main\"]\n");
  ASSERT_EQ(::mkfifo((dir / "in").c_str(), 0600), 0);
  auto agent = std::make_unique<Child>(std::vector<std::string>{
      "/bin/sh", "-c", "exec \"$0\" agent --config \"$1\" < \"$2\" 2>&1", kTributary, (dir / "agent.toml").string(),
      (dir / "in").string()});
  const int in = ::open((dir / "in").c_str(), O_WRONLY | O_CLOEXEC);  // meets the agent's shell opening it
  ASSERT_GE(in, 0);
  auto send = [&](const std::string& text) { ASSERT_EQ(::write(in, text.data(), text.size()), ssize_t(text.size())); };
  std::string first;
  for (int i = 0; i < 100; ++i) first += testing::line_text("a", i) + "\n";
  send(first + "half of a ");
  ASSERT_TRUE(wait_records(dir / "main.chan", 100, 10s));
  agent->signal(SIGHUP);
  std::string log;
  // The rest of the line only once the reload is under way: the old source's drain must take it.
  ASSERT_TRUE(wait_log(*agent, "stopping the agent to start it again", log)) << log;
  send("line\n");
  ASSERT_TRUE(wait_log(*agent, "reloaded", log)) << log;
  std::string second;
  for (int i = 100; i < 200; ++i) second += testing::line_text("a", i) + "\n";
  send(second);
  ::close(in);  // the end of stdin: the agent finishes
  const int status = agent->wait(10s);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  auto ch = core::Channel::open(dir / "main.chan", {.read_only = true});
  const auto all = testing::all_records(ch);
  ASSERT_EQ(all.size(), 201u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(all[i].payload, testing::line_text("a", i));
  EXPECT_EQ(all[100].payload, "half of a line");
  for (int i = 100; i < 200; ++i) EXPECT_EQ(all[i + 1].payload, testing::line_text("a", i));
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

// One thread serves every source: a collector whose channel is full (nothing consumes it) must
// neither hold up the others nor keep the agent from stopping.
TEST(AgentProcessTest, AFullChannelHoldsUpNeitherTheOtherSourcesNorTheStop) {
  TempDir dir;
  write_config(dir, "[channels.small]\npath = \"" + (dir / "small.chan").string() +
                        "\"\ncapacity = \"64K\"\n"
                        "[sources.flood]\ntype = \"exec\"\nchannels = [\"small\"]\ncommand = \"exec yes flood\"\n"
                        "max_line = \"1K\"\nstop_timeout_ms = 100\n"
                        "[sources.t]\ntype = \"tail\"\nchannels = [\"main\"]\npaths = [\"" +
                        (dir / "*.log").string() + "\"]\n");
  Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
  ASSERT_TRUE(wait_full(dir / "small.chan", 1, 10s)) << "the flood never filled its channel";
  testing::append_lines(dir / "a.log", "a", 0, 100);
  EXPECT_TRUE(wait_records(dir / "main.chan", 100, 2s)) << "the tail waited on another source's full channel";
  agent.signal(SIGTERM);
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(agent.wait(10s), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 2s) << "the stop waited on a full channel";
  expect_lines_once(dir / "main.chan", {{'a', 100}});
}

// A stop waits for room for what each source holds, but all of them at once: four commands
// flooding a full channel, each given 1 s to end and be appended, stop the agent in about 1 s,
// not 4 (their SIGTERMs go out together, and the waits overlap).
TEST(AgentProcessTest, SourcesOnAFullChannelDrainAtOnceNotOneAfterAnother) {
  TempDir dir;
  std::string sources = "[channels.small]\npath = \"" + (dir / "small.chan").string() + "\"\ncapacity = \"64K\"\n";
  for (int i = 0; i < 4; ++i)
    sources += fmt::format(
        "[sources.flood{}]\ntype = \"exec\"\nchannels = [\"small\"]\ncommand = \"exec yes flood\"\n"
        "max_line = \"1K\"\nstop_timeout_ms = 1000\n",
        i);
  write_config(dir, sources);
  Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
  // Until the channel has refused the floods many times over (each retries every 20 ms while
  // it holds a refused batch; they all read `yes` as fast as they can, so each holds one).
  ASSERT_TRUE(wait_full(dir / "small.chan", 100, 20s)) << "the floods never all met the full channel";
  agent.signal(SIGTERM);
  const auto asked = std::chrono::steady_clock::now();
  EXPECT_EQ(agent.wait(20s), 0);
  const auto took = std::chrono::steady_clock::now() - asked;
  EXPECT_GE(took, 900ms) << "each flood waits out its stop_timeout_ms for room";
  EXPECT_LT(took, 2500ms) << "the floods drained one after another";
}

// While one source waits for room in its full channel, the others are served: a command that
// prints 100 000 lines when told to stop (more than its pipe holds: it blocks until they are
// read) gets them all into its own channel within its stop_timeout_ms, although the flood
// stopped before it holds the agent's stop for 2 s.
TEST(AgentProcessTest, ACommandsLastLinesAreReadWhileAnotherSourceWaitsForRoom) {
  TempDir dir;
  write_config(dir, "[channels.small]\npath = \"" + (dir / "small.chan").string() +
                        "\"\ncapacity = \"64K\"\n"
                        "[sources.a_flood]\ntype = \"exec\"\nchannels = [\"small\"]\ncommand = \"exec yes flood\"\n"
                        "max_line = \"1K\"\nstop_timeout_ms = 2000\n"
                        "[sources.b_bye]\ntype = \"exec\"\nchannels = [\"main\"]\n"
                        "command = \"trap 'seq 1 100000; exit 0' TERM; echo ready; while :; do sleep 0.02; done\"\n"
                        "stop_timeout_ms = 1000\n");
  Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
  ASSERT_TRUE(wait_records(dir / "main.chan", 1, 10s)) << "the command never said it was ready";
  ASSERT_TRUE(wait_full(dir / "small.chan", 25, 20s)) << "the flood never met its full channel";
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.wait(20s), 0);
  const auto records = testing::all_records(core::Channel::open(dir / "main.chan", {.read_only = true}));
  ASSERT_EQ(records.size(), 100'001u) << "lines of the command's last words were lost";
  EXPECT_EQ(records[0].payload, "ready");
  for (std::size_t i = 1; i < records.size(); ++i) ASSERT_EQ(records[i].payload, std::to_string(i));
}

// The metrics endpoint as a scraper sees it: Prometheus text whose counters follow the
// agent's work, and the JSON status; the status file names the port picked.
TEST(AgentProcessTest, TheMetricsEndpointServesPrometheusAndStatus) {
  TempDir dir;
  write_config(dir, "[sources.cmd]\ntype = \"exec\"\nchannels = [\"main\"]\nrestart = \"never\"\n"
                    "command = \"seq 1 250; exec sleep 1000\"\n");
  {  // metrics on any free loopback port
    std::string text;
    {
      std::ifstream in(dir / "agent.toml");
      text.assign(std::istreambuf_iterator<char>(in), {});
    }
    text.insert(text.find("[channels.main]"), "metrics = \"127.0.0.1:0\"\n");
    std::ofstream(dir / "agent.toml") << text;
  }
  Child agent({kTributary, "agent", "--config", (dir / "agent.toml").string()});
  ASSERT_TRUE(wait_records(dir / "main.chan", 250, 10s));
  int port = 0;
  std::string metrics;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (std::chrono::steady_clock::now() < deadline) {  // until a scrape shows all 250
    std::ifstream st(dir / "status.json");
    const std::string json((std::istreambuf_iterator<char>(st)), {});
    const std::string_view needle = "\"metrics\":\"127.0.0.1:";
    const auto at = json.find(needle);
    if (at != std::string::npos) port = std::atoi(json.c_str() + at + needle.size());
    if (port > 0) {
      httplib::Client http("127.0.0.1", port);
      if (auto res = http.Get("/metrics"); res && res->status == 200) {
        metrics = res->body;
        if (metrics.find(R"(tributary_source_events_total{agent="t",source="cmd"} 250)") != std::string::npos) break;
      }
    }
    std::this_thread::sleep_for(50ms);  // the agent refreshes its snapshot every second
  }
  ASSERT_GT(port, 0) << "the status file names the metrics port";
  EXPECT_NE(metrics.find(R"(tributary_source_events_total{agent="t",source="cmd"} 250)"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("# TYPE tributary_channel_records_written_total counter"), std::string::npos);
  EXPECT_NE(metrics.find(R"(tributary_channel_records_written_total{agent="t",channel="main"} 250)"), std::string::npos);
  EXPECT_NE(metrics.find(R"(tributary_channel_source_slots_in_use{agent="t",channel="main"} 0)"), std::string::npos)
      << "an exec source keeps no position";
  EXPECT_NE(metrics.find("# TYPE tributary_channel_source_slots gauge"), std::string::npos);
  EXPECT_NE(metrics.find(R"(tributary_channel_source_slots{agent="t",channel="main"} 4096)"), std::string::npos)
      << metrics;
  // Every sample line is NAME{LABELS} VALUE.
  std::istringstream lines(metrics);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    EXPECT_TRUE(line.rfind("tributary_", 0) == 0 && line.find("} ") != std::string::npos) << line;
  }
  httplib::Client http("127.0.0.1", port);
  auto status = http.Get("/status");
  ASSERT_TRUE(status);
  EXPECT_EQ(status->get_header_value("Content-Type"), "application/json");
  EXPECT_NE(status->body.find(R"("events":250)"), std::string::npos) << status->body;
  EXPECT_EQ(http.Get("/nothing")->status, 404);
  agent.signal(SIGTERM);
  EXPECT_EQ(agent.wait(10s), 0);
}

}  // namespace
}  // namespace tributary::ingest
