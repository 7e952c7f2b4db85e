// AnalyzeJob in-process, as a library caller runs it: what it leaves behind when run() returns.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>

#include "support/temp_dir.h"
#include "support/tianchi_util.h"
#include "tributary/analytics/job.h"
#include "tributary/core/channel.h"
#include "tributary/core/error.h"

namespace tributary::analytics {
namespace {

using testing::TempDir;
using testing::TianchiData;

std::uint64_t committed_cursor(const core::Channel& ch, std::string_view consumer) {
  const auto stats = ch.stats();
  const auto it = std::find_if(stats.consumers.begin(), stats.consumers.end(),
                               [&](const core::ConsumerInfo& c) { return c.name == consumer; });
  return it == stats.consumers.end() ? 0 : it->committed;
}

// A channel DIR/c.chan holding the rows of `d` as JSON events of source 1, and d's user_info in
// DIR/user_info.csv.
core::Channel channel_of(const TempDir& dir, const TianchiData& d) {
  d.write_info(dir / "user_info.csv");
  core::ChannelConfig cc;
  cc.capacity = 16 << 20;
  auto ch = core::Channel::create(dir / "c.chan", cc);
  core::Producer p = ch.producer();
  std::uint64_t seq = 0;
  for (const auto& r : d.rows)
    if (p.append({1, seq++}, TianchiData::json(r)) != core::AppendStatus::kOk) {
      ADD_FAILURE() << "the channel refused row " << seq - 1;
      break;
    }
  return ch;
}

// The experiment's job on the channel DIR/c.chan, its state in DIR/out, as loaded from the
// generated DIR/analyze.toml.
AnalyzeConfig channel_job(const TempDir& dir) {
  testing::write_tianchi_analyze_config(dir / "analyze.toml",
                                        "type = \"channel\"\npath = \"" + (dir / "c.chan").string() + "\"\n",
                                        dir / "user_info.csv", dir / "out");
  auto loaded = load_analyze_config(dir / "analyze.toml");
  EXPECT_TRUE(loaded.errors.empty());
  return loaded.config;
}

// A drained run has made its last checkpoint and the channel commit behind it by the time run()
// returns, with the job still alive: a caller (or `tributary channel stat`) reading the channel
// then sees the cursor at the end of what was read, not one checkpoint behind.
TEST(AnalyzeJobTest, ADrainedRunHasCommittedTheChannelCursorWhenItReturns) {
  TempDir dir;
  auto ch = channel_of(dir, TianchiData::make(5, 300, 5000));
  // One checkpoint interval longer than any test: only the checkpoints at the start and the end.
  testing::write_tianchi_analyze_config(dir / "analyze.toml",
                                        "type = \"channel\"\npath = \"" + (dir / "c.chan").string() + "\"\n",
                                        dir / "user_info.csv", dir / "out", 600'000);
  auto loaded = load_analyze_config(dir / "analyze.toml");
  ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front();
  AnalyzeJob job(std::move(loaded.config), nullptr);
  ASSERT_EQ(job.run(-1, /*drain=*/true), 0);
  const std::uint64_t end = ch.stats().write_position;
  ASSERT_GT(end, 0u);
  EXPECT_EQ(committed_cursor(ch, "analyzer"), end);
}

// The experiment's generated configuration (the demo's, `gen tianchi-config`'s) quotes its
// paths as TOML strings: a directory named with a quote, a backslash or a tab reads back as
// itself instead of breaking the file.
TEST(AnalyzeJobTest, TheGeneratedConfigurationKeepsPathsWithQuotesAndBackslashes) {
  TempDir dir;
  const auto odd = dir / "a \"quoted\" \\ dir\twith tab";
  testing::write_tianchi_analyze_config(dir / "analyze.toml", "type = \"channel\"\npath = \"c.chan\"\n",
                                        odd / "user_info.csv", odd / "out", 1000);
  auto loaded = load_analyze_config(dir / "analyze.toml");
  ASSERT_TRUE(loaded.errors.empty()) << loaded.errors.front();
  EXPECT_EQ(loaded.config.join_file, odd / "user_info.csv");
  EXPECT_EQ(loaded.config.state_dir, odd / "out");
}

// Two jobs on one state directory would write over each other's checkpoint and files: the
// second is refused, naming the directory; once the first is gone, the directory is free.
TEST(AnalyzeJobTest, ASecondJobOnTheSameStateDirectoryIsRefusedNamingIt) {
  TempDir dir;
  TianchiData::make(5, 50, 100).write_info(dir / "user_info.csv");
  const auto config = [&] { return channel_job(dir); };
  auto first = std::make_unique<AnalyzeJob>(config(), nullptr);
  try {
    AnalyzeJob second(config(), nullptr);
    FAIL() << "a second job was let in";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("another analyzer runs on the state directory " + (dir / "out").string()),
              std::string::npos)
        << e.what();
  }
  first.reset();
  EXPECT_NO_THROW(AnalyzeJob(config(), nullptr));
}

// Output files in directories of their own under the state directory get them made at the
// start, as the state directory does; one that cannot be made is an error at the start naming
// the output, not one at the first checkpoint after the work was done.
TEST(AnalyzeJobTest, OutputFilesInSubdirectoriesGetThemAtTheStartOrAnErrorNamingTheOutput) {
  TempDir dir;
  const auto ch = channel_of(dir, TianchiData::make(5, 300, 2000));
  auto config = [&] {
    AnalyzeConfig c = channel_job(dir);
    c.outputs.at(0).file = "by/age/" + c.outputs.at(0).file;
    c.dead_letter = "dead/letters.jsonl";
    return c;
  };
  {
    AnalyzeJob job(config(), nullptr);
    ASSERT_EQ(job.run(-1, /*drain=*/true), 0);
  }
  EXPECT_TRUE(std::filesystem::exists(dir / "out/by/age/orders_by_age.csv"));
  EXPECT_TRUE(std::filesystem::is_directory(dir / "out/dead"));
  std::filesystem::remove_all(dir / "out");
  std::filesystem::create_directories(dir / "out");
  std::ofstream(dir / "out/by") << "a file where the directory would be";
  try {
    AnalyzeJob job(config(), nullptr);
    FAIL() << "the job started without the directory of its output";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("output 'orders_by_age'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tributary::analytics
