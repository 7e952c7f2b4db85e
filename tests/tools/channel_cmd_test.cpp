// `tributary channel stat|recover` as a user runs them: stat says whether the file was closed
// cleanly, and recover runs the full scan that a clean close lets an opener skip.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include "support/channel_util.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"

namespace tributary::tools {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::TempDir;

const std::string kTributary = TRIBUTARY_BIN;

std::string output_of(Child& c) {
  std::string out;
  while (auto l = c.read_line(10s)) out += *l + "\n";
  return out;
}

void write_records(const std::filesystem::path& path, std::uint64_t n) {
  core::ChannelConfig cfg;
  cfg.capacity = 1 << 20;
  cfg.max_payload = 4096;
  cfg.source_slots = 16;
  core::Channel ch = core::Channel::create(path, cfg);
  (void)ch.consumer("reader");
  core::Producer p = ch.producer();
  for (std::uint64_t i = 0; i < n; ++i)
    ASSERT_EQ(p.append({1, i}, testing::payload_for(1, i, 30)), core::AppendStatus::kOk);
}

TEST(ChannelCommandTest, StatSaysAFileWasClosedCleanlyAndRecoverScansItAnyway) {
  TempDir dir;
  const auto path = dir / "c.chan";
  ASSERT_NO_FATAL_FAILURE(write_records(path, 20));
  Child stat({kTributary, "channel", "stat", path.string(), "--json"});
  const std::string json = output_of(stat);
  EXPECT_EQ(stat.wait(10s), 0);
  EXPECT_NE(json.find(R"("closed_cleanly":true)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("last_recovery":{"ran":false)"), std::string::npos) << json;

  Child recover({kTributary, "channel", "recover", path.string()});
  const std::string text = output_of(recover);
  EXPECT_EQ(recover.wait(10s), 0);
  EXPECT_NE(text.find("recovery     salvaged 20 records; dropped 0 records / 0 bytes"), std::string::npos) << text;
  EXPECT_EQ(text.find("last open    after a clean close"), std::string::npos) << text;

  core::Channel ch = core::Channel::open(path);
  EXPECT_TRUE(ch.stats().opened_after_clean_close) << "recover closed the file cleanly again";
}

TEST(ChannelCommandTest, RecoverRefusesAFileInUseAndSaysSo) {
  TempDir dir;
  const auto path = dir / "c.chan";
  ASSERT_NO_FATAL_FAILURE(write_records(path, 5));
  core::Channel held = core::Channel::open(path);
  Child recover({kTributary, "channel", "recover", path.string()});
  EXPECT_EQ(output_of(recover), "");
  const int status = recover.wait(10s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << "another process has it open: no scan could run";
}

}  // namespace
}  // namespace tributary::tools
