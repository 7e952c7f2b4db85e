// I/O errors, injected the way SQLite's test VFS does: the test binary is linked with
// -Wl,--wrap for open, posix_fallocate, mmap, msync and flock, and the Nth of those calls fails
// with the error a real system gives there (EMFILE, ENOSPC, ENOMEM, EIO, ENOLCK). N grows from 1
// until a whole run completes without reaching it. A run creates a channel, appends, consumes
// and closes it; then, as after a crash that also cut the file's last page, opens it again:
// the lock, growing the file back, mapping it and the recovery scan all run under the same
// plan. The clean run at the end must have gone through every wrapped function (a call that
// bypasses a wrapper, say open64, would otherwise go untested). Every run must end in a
// consistent channel: an operation either works or fails with an error naming the file and the cause;
// no half-created file is left behind; an append whose msync failed under every-commit is
// not acknowledged (kSyncFailed) and is counted; after reopening, every acknowledged record
// is there, exactly as written.
#include <fcntl.h>
#include <sys/mman.h>

#include <gtest/gtest.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include "support/channel_util.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"
#include "tributary/core/error.h"

// The fault plan. Test-only state: the wrappers below have no other way in.
namespace {
enum Wrapped { kOpen, kFallocate, kMmap, kFlock, kMsync, kWrappedCount };
constexpr const char* kWrappedName[kWrappedCount] = {"open", "posix_fallocate", "mmap", "flock", "msync"};
struct FaultPlan {
  long countdown = 0;  // fail the call that brings it to 0; <= 0 before arming: no faults
  long calls = 0;      // intercepted calls while armed
  long hits[kWrappedCount] = {};  // the same, per function
  const char* failed = nullptr;  // the call that failed, once it did
};
FaultPlan g_plan;

// True if this call is the one to fail.
bool fail_now(Wrapped fn) {
  const char* what = kWrappedName[fn];
  if (g_plan.countdown <= 0) return false;
  ++g_plan.calls;
  ++g_plan.hits[fn];
  if (--g_plan.countdown != 0) return false;
  g_plan.failed = what;
  return true;
}
}  // namespace

extern "C" {
int __real_open(const char* path, int flags, ...);
int __wrap_open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if ((flags & O_CREAT) != 0) {
    va_list ap;
    va_start(ap, flags);
    mode = static_cast<mode_t>(va_arg(ap, int));
    va_end(ap);
  }
  if (fail_now(kOpen)) {
    errno = EMFILE;
    return -1;
  }
  return __real_open(path, flags, mode);
}
int __real_posix_fallocate(int fd, off_t offset, off_t len);
int __wrap_posix_fallocate(int fd, off_t offset, off_t len) {
  if (fail_now(kFallocate)) return ENOSPC;
  return __real_posix_fallocate(fd, offset, len);
}
void* __real_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off);
void* __wrap_mmap(void* addr, size_t len, int prot, int flags, int fd, off_t off) {
  if (fail_now(kMmap)) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  return __real_mmap(addr, len, prot, flags, fd, off);
}
int __real_flock(int fd, int op);
int __wrap_flock(int fd, int op) {
  if (fail_now(kFlock)) {
    errno = ENOLCK;
    return -1;
  }
  return __real_flock(fd, op);
}
int __real_msync(void* addr, size_t len, int flags);
int __wrap_msync(void* addr, size_t len, int flags) {
  if (fail_now(kMsync)) {
    errno = EIO;
    return -1;
  }
  return __real_msync(addr, len, flags);
}
}

namespace tributary::core {
namespace {

using testing::as_string;
using testing::payload_for;
using testing::TempDir;

constexpr std::uint64_t kEvents = 120;

ChannelConfig config() {
  ChannelConfig c;
  c.capacity = 64 * 1024;
  c.max_payload = 1024;
  c.source_slots = 16;
  return c;
}

// One run with the Nth intercepted call failing. Returns false once N was never reached; then
// `hits` holds the clean run's calls per wrapped function.
bool run_with_fault_at(long n, const std::filesystem::path& dir, long (&hits)[kWrappedCount]) {
  const auto path = dir / "a.chan";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::map<std::uint64_t, std::string> acknowledged;  // sequence -> payload
  std::uint64_t sync_failed = 0;
  std::map<std::uint64_t, int> appended_again;  // kSyncFailed: the record is there, and again
  bool failed_in_commit = false;
  bool failed_before_close = false;  // else the final msync of closing the channel failed
  std::string error;

  g_plan = {};
  g_plan.countdown = n;
  try {
    Channel ch = Channel::create(path, config(), {.sync = SyncPolicy::kEveryCommit});
    Producer p = ch.producer({FullPolicy::kFailFast});
    Consumer c = ch.consumer("reader");
    for (std::uint64_t i = 0; i < kEvents; ++i) {
      const std::string pl = payload_for(1, i, 40 + (i * 37) % 300);
      // A collector's loop: an append that was not made durable is appended again.
      for (int attempt = 0;; ++attempt) {
        const AppendStatus st = p.append({1, i}, pl);
        if (st == AppendStatus::kOk) break;
        if (st != AppendStatus::kSyncFailed || attempt == 3) {
          ADD_FAILURE() << "fault at call " << n << " (" << (g_plan.failed ? g_plan.failed : "none")
                        << "): append " << i << " returned " << to_string(st);
          std::copy(std::begin(g_plan.hits), std::end(g_plan.hits), std::begin(hits));
          g_plan = {};
          return false;
        }
        ++sync_failed;
        ++appended_again[i];
      }
      acknowledged[i] = pl;
      if (i % 10 == 9) {
        std::vector<Record> buf(16);
        while (c.poll(buf) != 0) {
        }
        const bool before = g_plan.failed != nullptr;
        c.commit();  // a failed msync here is counted; it only means re-reading after a power loss
        failed_in_commit |= !before && g_plan.failed != nullptr;
      }
    }
    EXPECT_EQ(ch.stats().sync_failures, g_plan.failed != nullptr && std::strcmp(g_plan.failed, "msync") == 0 ? 1u : 0u)
        << "fault at call " << n;
    failed_before_close = g_plan.failed != nullptr;
  } catch (const Error& e) {
    error = e.what();
  }
  if (error.empty()) {
    // A crash (no clean close) that also lost the file's last page, beyond the records: the
    // next opener takes the lock, grows the file back, maps it and scans, all under the plan.
    const long countdown = g_plan.countdown;
    g_plan.countdown = 0;  // the test's own file edits are not the channel's calls
    testing::forget_clean_close(path);
    std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4096);
    g_plan.countdown = countdown;
    try {
      Channel ch = Channel::open(path, {.sync = SyncPolicy::kEveryCommit});
      if (ch.stats().last_recovery.file_bytes_found == 0 && g_plan.failed == nullptr)
        ADD_FAILURE() << "fault at call " << n << ": reopening the cut file did not grow it back";
    } catch (const Error& e) {
      error = e.what();
    }
  }
  const bool reached = g_plan.failed != nullptr;
  const std::string failed = reached ? g_plan.failed : "none";
  std::copy(std::begin(g_plan.hits), std::end(g_plan.hits), std::begin(hits));
  g_plan = {};

  const std::string where = "fault at call " + std::to_string(n) + " (" + failed + ")";
  if (!error.empty()) {
    EXPECT_TRUE(reached) << where << ": an error without a fault: " << error;
    EXPECT_NE(error.find(path.string()), std::string::npos) << where << ": the error does not name the file: " << error;
    const std::string cause = failed == "open"              ? std::strerror(EMFILE)
                              : failed == "posix_fallocate" ? std::strerror(ENOSPC)
                              : failed == "mmap"            ? std::string("cannot map")
                              : failed == "flock"           ? std::strerror(ENOLCK)
                                                            : std::strerror(EIO);
    EXPECT_NE(error.find(cause), std::string::npos) << where << ": the error does not say why: " << error;
  }
  if (reached && failed == "msync" && error.empty() && failed_before_close) {
    EXPECT_EQ(sync_failed, failed_in_commit ? 0u : 1u) << where << ": the append it covered said so";
  }

  // Whatever happened, the directory holds no half-made file and the channel, if it exists,
  // opens and holds every acknowledged record.
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    EXPECT_EQ(entry.path(), path) << where << ": left behind " << entry.path();
  if (!std::filesystem::exists(path)) {
    EXPECT_TRUE(acknowledged.empty()) << where;
    return reached;
  }
  Channel ch = Channel::open(path);  // recovery runs
  // The counter lives in the file: a failure while closing is still on record.
  EXPECT_EQ(ch.stats().sync_failures, failed == "msync" ? 1u : 0u) << where;
  std::map<std::uint64_t, std::string> seen;
  std::map<std::uint64_t, int> copies;
  ch.walk([&](const Record& r) {  // the run never laps the ring: everything is still there
    seen[r.id.sequence] = as_string(r.payload);
    ++copies[r.id.sequence];
    return true;
  }, 0);
  for (const auto& [seq, k] : copies) {
    auto again = appended_again.find(seq);
    EXPECT_EQ(k, 1 + (again == appended_again.end() ? 0 : again->second))
        << where << ": record " << seq << " is in the channel " << k << " times";
  }
  for (const auto& [seq, pl] : acknowledged) {
    auto it = seen.find(seq);
    EXPECT_TRUE(it != seen.end() && it->second == pl) << where << ": acknowledged record " << seq << " is missing or wrong";
  }
  return reached;
}

// A full msync that fails may leave the pages it did not write clean (a later one does not
// write them again): after it, a producer takes no state as durable, even once a later sync
// succeeds. After a power loss such a source keeps its state (it has no checkpoint), rather
// than go back to one whose records may be lost as well. A producer made since starts afresh.
TEST(ChannelIoFaults, AfterAFailedSyncNoStateBecomesACheckpointUntilANewProducer) {
  TempDir dir;
  ChannelConfig cfg;
  cfg.capacity = 1 << 20;
  cfg.max_payload = 4096;
  Channel ch = Channel::create(dir / "a.chan", cfg);
  Producer p = ch.producer();
  auto commit = [&](std::uint64_t seq, std::uint64_t position) {
    static const std::string line = "line";
    const std::vector<Event> ev{{{5, seq}, std::as_bytes(std::span(line.data(), line.size()))}};
    const SourcePosition sp{5, seq + 1, position};
    return p.append_batch(ev, &sp);
  };
  ASSERT_EQ(commit(0, 100), AppendStatus::kOk);
  g_plan = FaultPlan{.countdown = 1};  // the next wrapped call, the sync's msync, fails with EIO
  EXPECT_FALSE(ch.sync());
  ASSERT_STREQ(g_plan.failed, "msync");
  g_plan = FaultPlan{};
  ASSERT_TRUE(ch.sync());
  ASSERT_EQ(commit(1, 200), AppendStatus::kOk);
  p.settle_checkpoints();
  EXPECT_EQ(testing::reopened(testing::crash_copy(dir / "a.chan", "power.chan", true), 5), std::make_tuple(2u, 200u, 0u));
  ASSERT_TRUE(ch.sync());
  ASSERT_EQ(commit(2, 300), AppendStatus::kOk);
  EXPECT_EQ(testing::reopened(testing::crash_copy(dir / "a.chan", "power2.chan", true), 5), std::make_tuple(3u, 300u, 0u));
  // The collector started again: its producer's states become checkpoints again.
  p = ch.producer();
  ASSERT_EQ(commit(3, 400), AppendStatus::kOk);
  ASSERT_TRUE(ch.sync());
  ASSERT_EQ(commit(4, 500), AppendStatus::kOk);
  EXPECT_EQ(testing::reopened(testing::crash_copy(dir / "a.chan", "power3.chan", true), 5), std::make_tuple(4u, 400u, 1u));
}

TEST(ChannelIoFaults, EveryInjectedErrorEndsInAConsistentChannel) {
  TempDir dir(std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp");
  long n = 1;
  long hits[kWrappedCount] = {};
  for (; n < 2000 && run_with_fault_at(n, dir / "run", hits); ++n) {
  }
  EXPECT_LT(n, 2000) << "the run never completed";
  EXPECT_GT(n, 100) << "few calls intercepted: is the test linked with the wrappers?";
  for (int fn = 0; fn < kWrappedCount; ++fn)
    EXPECT_GT(hits[fn], 0) << kWrappedName[fn] << " was never intercepted: the channel calls it another way";
  std::printf("io faults: %ld runs, one failing call each, then a clean run\n", n);
}

}  // namespace
}  // namespace tributary::core
