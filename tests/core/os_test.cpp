// The liveness check behind skipping a dead writer's claim and adopting a dead consumer's name:
// a live process is never taken for dead, also one that /proc hides from the checker (hidepid:
// another user's process, in a channel shared by group); an exited one is.
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>

#include "internal/os.h"

namespace tributary::core::detail {
namespace {

TEST(ProcessAliveTest, AnExitedProcessIsDeadAndALiveOneWithAnotherStartTimeIsAnother) {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  const std::uint64_t start = process_start_time(static_cast<std::uint32_t>(child));
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_FALSE(process_alive(static_cast<std::uint32_t>(child), start));
  const ProcessIdentity me = self_identity();
  EXPECT_TRUE(process_alive(me.pid, me.start_time));
  EXPECT_FALSE(process_alive(me.pid, me.start_time + 1)) << "a later process with a recycled pid";
}

TEST(ProcessAliveTest, AProcessThatProcHidesIsNeverTakenForDead) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: a private /proc mount with hidepid, then another uid";
  const ProcessIdentity me = self_identity();
  const pid_t child = ::fork();
  if (child == 0) {
    // In a mount namespace of its own: /proc with hidepid=2 (others' processes invisible),
    // then as nobody, to which this test's (root's) process is another user's.
    if (::unshare(CLONE_NEWNS) != 0) ::_exit(10);
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) ::_exit(11);
    if (::mount("proc", "/proc", "proc", 0, "hidepid=2") != 0) ::_exit(12);
    if (::setgid(65534) != 0 || ::setuid(65534) != 0) ::_exit(13);
    char path[64];
    std::snprintf(path, sizeof path, "/proc/%u/stat", me.pid);
    if (::access(path, F_OK) == 0) ::_exit(14);  // not hidden after all: the test shows nothing
    ::_exit(process_alive(me.pid, me.start_time) ? 0 : 1);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << status;
  if (WEXITSTATUS(status) >= 10) GTEST_SKIP() << "cannot hide a process here (step " << WEXITSTATUS(status) << ")";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a live process that /proc hides was taken for dead";
}

}  // namespace
}  // namespace tributary::core::detail
