// Process identity from /proc and shared futex waits.
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/membarrier.h>
#include <signal.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "internal/os.h"

namespace tributary::core::detail {

namespace {
enum class StartTime : std::uint8_t { kRead, kNoEntry, kZombie, kHidden };

// The start time (field 22 of /proc/PID/stat) into `out`. kNoEntry: no such process, or one
// /proc makes invisible to us (hidepid=invisible); kZombie: it has exited; kHidden: it exists
// but we may not read it (hidepid=noaccess, ProtectProc).
StartTime read_start_time(std::uint32_t pid, std::uint64_t& out) noexcept {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/%u/stat", pid);
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT || errno == ESRCH ? StartTime::kNoEntry : StartTime::kHidden;
  char buf[1024];
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return n == 0 || errno == ESRCH ? StartTime::kNoEntry : StartTime::kHidden;
  buf[n] = '\0';
  // The command name (field 2) may contain spaces and parentheses: fields resume after the
  // last ')'. Field 3 is the state; the start time is field 22.
  const char* p = std::strrchr(buf, ')');
  if (p == nullptr) return StartTime::kHidden;
  ++p;
  for (int field = 3; field < 22 && p != nullptr; ++field) {
    p = std::strchr(p + 1, ' ');
  }
  if (p == nullptr) return StartTime::kHidden;
  // A zombie (state Z) has exited: treat it as dead.
  const char* state = std::strrchr(buf, ')') + 2;
  if (*state == 'Z' || *state == 'X') return StartTime::kZombie;
  out = std::strtoull(p + 1, nullptr, 10);
  return StartTime::kRead;
}
}  // namespace

std::uint64_t process_start_time(std::uint32_t pid) noexcept {
  std::uint64_t t = 0;
  return read_start_time(pid, t) == StartTime::kRead ? t : 0;
}

ProcessIdentity self_identity() noexcept {
  const auto pid = static_cast<std::uint32_t>(::getpid());
  return {pid, process_start_time(pid)};
}

std::uint64_t boot_id_digest() noexcept {
  const int fd = ::open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[64];
  const ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n < 32) return 0;  // a UUID is 36 characters and a newline
  std::uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a: enough to tell boots apart, not a secret
  for (ssize_t i = 0; i < n; ++i) h = (h ^ static_cast<unsigned char>(buf[i])) * 0x100000001b3ull;
  return h == 0 ? 1 : h;
}

bool process_alive(std::uint32_t pid, std::uint64_t start_time) noexcept {
  if (pid == 0) return false;
  // EPERM: it exists, as another user's process (a channel shared by group).
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
  std::uint64_t now = 0;
  switch (read_start_time(pid, now)) {
    case StartTime::kRead: return now == start_time;  // else a later process with the pid
    case StartTime::kZombie: return false;
    case StartTime::kNoEntry:  // exited since kill() found it, or invisible: kill() tells which
      if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) return false;
      break;
    case StartTime::kHidden: break;
  }
  // It exists and /proc hides it: whether it is the same process cannot be told. Taken as alive,
  // since skipping a live writer's claim loses its records (a dead writer's recycled pid then
  // keeps its claim until that process ends).
  return true;
}

void futex_wait(std::atomic<std::uint32_t>* word, std::uint32_t expected, std::chrono::nanoseconds timeout) noexcept {
  if (timeout.count() <= 0) return;
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(timeout.count() / 1'000'000'000);
  ts.tv_nsec = static_cast<long>(timeout.count() % 1'000'000'000);
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAIT, expected, &ts, nullptr, 0);
}

void futex_wake_all(std::atomic<std::uint32_t>* word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

bool membarrier_supported() noexcept {
  const long cmds = ::syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  return cmds > 0 && (cmds & MEMBARRIER_CMD_GLOBAL_EXPEDITED) != 0 &&
         (cmds & MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) != 0;
}

void membarrier_register() noexcept { ::syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED, 0, 0); }

void membarrier_heavy() noexcept { ::syscall(SYS_membarrier, MEMBARRIER_CMD_GLOBAL_EXPEDITED, 0, 0); }

std::int64_t realtime_ns(bool precise) noexcept {
  timespec ts{};
  ::clock_gettime(precise ? CLOCK_REALTIME : CLOCK_REALTIME_COARSE, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

}  // namespace tributary::core::detail
