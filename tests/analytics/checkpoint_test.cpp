// Checkpoint files: round trip, atomic replacement, damage detected and named.
#include "tributary/analytics/checkpoint.h"

#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

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
  // The length field is not under the CRC: a flipped high bit in it claims gigabytes, which must
  // be an error naming the file, not an allocation of them (an OOM kill on a small node).
  write_checkpoint(dir / "state", std::string(1000, 's'));
  {
    std::fstream f(dir / "state", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8 + 4);  // the length's fifth byte: 1000 + 2^32
    f.put('\x01');
  }
  try {
    (void)read_checkpoint(dir / "state");
    FAIL() << "a damaged length was believed";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("damaged or truncated (it claims 4294968296 bytes, the file holds 1000)"),
              std::string::npos)
        << e.what();
  }
}

// A checkpoint that is there but cannot be read (here: a user without permission) must stop
// the analyzer with the cause, not let it start over from nothing and count everything again.
TEST(CheckpointTest, AnUnreadableCheckpointIsAnErrorNotAReset) {
  TempDir dir;
  ::chmod(dir.path().c_str(), 0755);
  write_checkpoint(dir / "state", "totals");
  ::chmod((dir / "state").c_str(), 0);  // unreadable to its owner too (root ignores it: see below)
  // Root reads anything, so the attempt runs in a child as an unprivileged user.
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (::geteuid() == 0 && (::setgid(65534) != 0 || ::setuid(65534) != 0)) ::_exit(3);
    try {
      (void)read_checkpoint(dir / "state");
    } catch (const core::Error& e) {
      const std::string m = e.what();
      ::_exit(m.find("cannot read the checkpoint") != std::string::npos && m.find("Permission denied") != std::string::npos
                  ? 0
                  : 1);
    }
    ::_exit(2);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: wrong message, 2: read as if absent or readable, 3: could not drop privileges";
}

}  // namespace
}  // namespace tributary::analytics
