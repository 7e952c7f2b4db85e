// Agent configuration: every error is reported with file, line and key; nothing unknown is
// silently ignored.
#include <gtest/gtest.h>

#include <fstream>

#include "support/temp_dir.h"
#include "tributary/ingest/agent.h"

namespace tributary::ingest {
namespace {

using testing::TempDir;

ConfigResult load(const TempDir& dir, const std::string& text) {
  std::ofstream(dir / "agent.toml") << text;
  return load_agent_config(dir / "agent.toml");
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += e + "\n";
  return s;
}

TEST(AgentConfigTest, AcceptsAValidConfigWithDefaults) {
  TempDir dir;
  auto r = load(dir, R"(
[channels.main]
path = "/tmp/x.chan"
capacity = "1M"
sync = "interval"

[sources.web]
type = "tail"
channels = ["main"]
paths = ["/var/log/*.log"]
)");
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  ASSERT_EQ(r.config.channels.size(), 1u);
  EXPECT_EQ(r.config.channels[0].create.capacity, 1u << 20);
  EXPECT_EQ(r.config.channels[0].open.sync, core::SyncPolicy::kInterval);
  ASSERT_EQ(r.config.sources.size(), 1u);
  EXPECT_EQ(r.config.sources[0].options.str("start_at"), "beginning");
  EXPECT_EQ(r.config.sources[0].options.integer("max_line"), 1 << 20);
}

TEST(AgentConfigTest, ListsEveryErrorWithFileLineAndKey) {
  TempDir dir;
  auto r = load(dir, R"([channels.main]
path = "/tmp/x.chan"
capacity = "lots"

[sources.web]
type = "tail"
channels = ["main", "nope"]
paths = ["/var/log/*.log"]
start_at = "middle"
colour = "blue"

[sources.other]
type = "carrier-pigeon"
channels = "main"
)");
  const std::string all = joined(r.errors);
  EXPECT_EQ(r.errors.size(), 5u) << all;
  EXPECT_NE(all.find("agent.toml:3: channels.main.capacity: must be a size"), std::string::npos) << all;
  EXPECT_NE(all.find("agent.toml:7: sources.web.channels: no channel named 'nope'"), std::string::npos) << all;
  EXPECT_NE(all.find("agent.toml:9: sources.web.start_at: must be one of: beginning, end"), std::string::npos) << all;
  EXPECT_NE(all.find("agent.toml:10: sources.web.colour: unknown key"), std::string::npos) << all;
  EXPECT_NE(all.find("agent.toml:13: sources.other.type: unknown source type 'carrier-pigeon'"), std::string::npos) << all;
}

// on_full and max_wait_ms chose how a collector waited inside the agent for room; it no longer
// does. A file that still has them is told so, with what to do.
TEST(AgentConfigTest, TheRemovedFullPolicyKeysAreNamedAsRemoved) {
  TempDir dir;
  auto r = load(dir, R"([channels.main]
path = "/tmp/x.chan"
on_full = "block"
max_wait_ms = 100
)");
  const std::string all = joined(r.errors);
  ASSERT_EQ(r.errors.size(), 2u) << all;
  EXPECT_NE(all.find("agent.toml:3: channels.main.on_full: no longer an option: a collector never waits inside the "
                     "agent"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("agent.toml:4: channels.main.max_wait_ms: no longer an option"), std::string::npos) << all;
  EXPECT_NE(all.find("(delete the line)"), std::string::npos) << all;
}

TEST(AgentConfigTest, ReportsMissingRequiredKeysAndSyntaxErrorsByLine) {
  TempDir dir;
  auto r = load(dir, "[sources.web]\ntype = \"tail\"\nchannels = []\n");
  const std::string all = joined(r.errors);
  EXPECT_NE(all.find("sources.web.paths: required key is missing"), std::string::npos) << all;
  EXPECT_NE(all.find("sources.web.channels: must name at least one channel"), std::string::npos) << all;
  auto bad = load(dir, "[channels.main]\npath = \"x\"\ncapacity = = 3\n");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_NE(bad.errors[0].find("agent.toml:3:"), std::string::npos) << bad.errors[0];
}

// Sections that are each fine but wrong together: found at load (--validate), not as a
// misleading error at start, a loop at run time, or events written twice.
TEST(AgentConfigTest, RefusesWiringThatWouldLoseDuplicateOrLoopEvents) {
  TempDir dir;
  auto r = load(dir, R"(
[channels.logs]
path = "/tmp/logs.chan"
[channels.again]
path = "/tmp/./logs.chan"
[channels.dlq]
path = "/tmp/dlq.chan"
mode = "0644"
[sources.s]
type = "stdin"
channels = ["logs", "logs"]
[uplinks.a]
channel = "logs"
topic = "a"
bootstrap = "b:9092"
[uplinks.b]
channel = "logs"
topic = "b"
bootstrap = "b:9092"
[uplinks.self]
channel = "again"
consumer = "self"
topic = "s"
bootstrap = "b:9092"
dead_letter = "again"
[uplinks.x]
channel = "dlq"
consumer = "x"
topic = "x"
bootstrap = "b:9092"
dead_letter = "logs"
[uplinks.y]
channel = "logs"
consumer = "y"
topic = "y"
bootstrap = "b:9092"
dead_letter = "dlq"
)");
  const std::string all = joined(r.errors);
  for (const std::string want : {
           "channels.dlq.mode: '0644': an octal mode with read and write for the owner and nothing for others",
           "sources.s.channels: 'logs' is listed twice",
           "agent.toml:2: channels.logs.path: the same file as channels.again (/tmp/logs.chan)",
           "agent.toml:16: uplinks.b.consumer: reads channel 'logs' as the same consumer 'uplink' as uplinks.a",
           "agent.toml:20: uplinks.self.dead_letter: 'again' leads back to its own channel 'again'",
           "agent.toml:26: uplinks.x.dead_letter: 'logs' leads back to its own channel 'dlq'",
           "agent.toml:32: uplinks.y.dead_letter: 'dlq' leads back to its own channel 'logs'"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\nin:\n" << all;
  for (const std::string mode : {"rw", "0o600", "", "0600x", "1777", "0400"})
    EXPECT_FALSE(load(dir, "[channels.c]\npath = \"/tmp/c\"\nmode = \"" + mode +
                               "\"\n[sources.s]\ntype = \"stdin\"\nchannels = \"c\"\n")
                     .errors.empty())
        << "mode " << mode;
  EXPECT_TRUE(load(dir, "[channels.c]\npath = \"/tmp/c\"\nmode = \"0660\"\n[sources.s]\ntype = \"stdin\"\n"
                        "channels = \"c\"\n")
                  .errors.empty());
}

TEST(AgentConfigTest, RejectsUnknownSections) {
  TempDir dir;
  auto r = load(dir, "[sinks.x]\na = 1\n[sources.s]\ntype = \"stdin\"\nchannels = \"c\"\n[channels.c]\npath = \"/tmp/c\"\n");
  const std::string all = joined(r.errors);
  EXPECT_NE(all.find("sinks: unknown section"), std::string::npos) << all;
}

TEST(AgentConfigTest, ParsesInterceptorsInOrder) {
  TempDir dir;
  auto r = load(dir, R"(
[channels.main]
path = "/tmp/x.chan"
[sources.web]
type = "tcp"
channels = ["main"]
[[sources.web.interceptors]]
type = "grep"
exclude = "GET /health"
[[sources.web.interceptors]]
type = "fields"
add = { env = "prod", dc = "eu-1" }
host = "host"
timestamp = "ts"
)");
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  const auto& ic = r.config.sources.at(0).interceptors;
  ASSERT_EQ(ic.size(), 2u);
  EXPECT_EQ(ic[0].type, "grep");
  EXPECT_EQ(ic[0].exclude, "GET /health");
  EXPECT_EQ(ic[1].add.size(), 2u);
  EXPECT_EQ(ic[1].host_key, "host");
  EXPECT_EQ(ic[1].timestamp_key, "ts");
  EXPECT_EQ(ic[1].wrap_key, "message");
}

TEST(AgentConfigTest, InterceptorErrorsNameTheLineAndKey) {
  TempDir dir;
  auto r = load(dir, R"(
[channels.main]
path = "/tmp/x.chan"
[sources.web]
type = "tcp"
channels = ["main"]
[[sources.web.interceptors]]
type = "grep"
include = "unclosed("
[[sources.web.interceptors]]
type = "sed"
[[sources.web.interceptors]]
type = "fields"
add = { n = 1 }
hots = "host"
)");
  const std::string all = joined(r.errors);
  EXPECT_NE(all.find("agent.toml:9: sources.web.interceptors[0].include: grep: include: bad regular expression 'unclosed('"),
            std::string::npos) << all;
  EXPECT_NE(all.find("agent.toml:11: sources.web.interceptors[1].type: must be one of: grep, fields"),
            std::string::npos) << all;
  EXPECT_NE(all.find("sources.web.interceptors[2].add.n: must be a string"), std::string::npos) << all;
  EXPECT_NE(all.find("sources.web.interceptors[2].hots: unknown key"), std::string::npos) << all;
}

}  // namespace
}  // namespace tributary::ingest
