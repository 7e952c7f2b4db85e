// Checkpoint files: round trip, atomic replacement, damage detected and named.
#include "tributary/analytics/checkpoint.h"

#include <gtest/gtest.h>

#include <fstream>

#include "support/temp_dir.h"
#include "tributary/core/error.h"

namespace tributary::analytics {
namespace {

using testing::TempDir;

TEST(CheckpointTest, RoundTripsAndReplacesAtomically) {
  TempDir dir;
  EXPECT_FALSE(read_checkpoint(dir / "state").has_value());
  write_checkpoint(dir / "state", "first");
  write_checkpoint(dir / "state", std::string("second\0with nul", 15));
  EXPECT_EQ(read_checkpoint(dir / "state"), std::string("second\0with nul", 15));
  EXPECT_FALSE(std::filesystem::exists(dir / "state.tmp"));
}

TEST(CheckpointTest, ADamagedOrTruncatedCheckpointIsAnErrorNotAReset) {
  TempDir dir;
  write_checkpoint(dir / "state", std::string(1000, 's'));
  {
    std::fstream f(dir / "state", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(500);
    f.put('X');
  }
  try {
    (void)read_checkpoint(dir / "state");
    FAIL() << "damage not detected";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
  }
  write_checkpoint(dir / "state", std::string(1000, 's'));
  std::filesystem::resize_file(dir / "state", 300);
  EXPECT_THROW((void)read_checkpoint(dir / "state"), core::Error);
  std::ofstream(dir / "other") << "not a checkpoint at all";
  EXPECT_THROW((void)read_checkpoint(dir / "other"), core::Error);
}

}  // namespace
}  // namespace tributary::analytics
