// The exec source with real commands: lines collected, exit statuses logged, restart policy
// (each run a new source), stderr modes, stop by SIGTERM to the process group with the last
// lines collected, and no process left behind.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>

#include <fstream>
#include <mutex>
#include <thread>

#include "support/fd_limit.h"
#include "support/process.h"
#include "support/tail_util.h"
#include "support/temp_dir.h"

namespace tributary::ingest {
namespace {

using namespace std::chrono_literals;
using testing::all_records;
using testing::pump_until;
using testing::TempDir;
using testing::wait_gone;
using Strings = std::vector<std::string>;

struct Log {
  std::mutex mu;
  std::vector<std::string> lines;
  bool contains(const std::string& text) {
    std::lock_guard lock(mu);
    for (const auto& l : lines)
      if (l.find(text) != std::string::npos) return true;
    return false;
  }
};

struct Fixture {
  TempDir dir;
  core::Channel ch = core::Channel::create(dir / "c.chan", [] {
    core::ChannelConfig c;
    c.capacity = 4 << 20;
    c.max_payload = 64 << 10;
    c.source_slots = 64;
    return c;
  }());
  Log log;

  std::unique_ptr<Source> make(const std::map<std::string, OptionValues::Value>& opts) {
    const SourceDescriptor* d = find_source("exec");
    OptionValues v = defaults_of(*d);
    v.set("max_line", std::int64_t{64 << 10});
    v.set("restart_delay_ms", std::int64_t{10});
    for (const auto& [k, val] : opts) v.set(k, val);
    SourceContext ctx;
    ctx.name = "exec";
    ctx.channels = {&ch};
    ctx.log = [this](std::string_view level, const std::string& m) {
      std::lock_guard lock(log.mu);
      log.lines.push_back(std::string(level) + ": " + m);
    };
    return d->create(v, std::move(ctx));
  }

  Strings payloads() {
    Strings out;
    for (const auto& r : all_records(ch)) out.push_back(r.payload);
    return out;
  }
};

// max_line above what the channel takes (the 1 MiB default beside a small ring) is cut to the
// channel's max_payload with a warning, as the tail does: a longer line is split there. It used
// to stop the agent at start-up, with every line-based source but the tail.
TEST(ExecSourceTest, AMaxLineAboveTheChannelsMaxPayloadIsCutToItAndLongerLinesAreSplit) {
  Fixture f;
  auto src = f.make({{"command", std::string("head -c 100000 /dev/zero | tr '\\0' x; echo; echo after")},
                     {"restart", std::string("never")},
                     {"max_line", std::int64_t{1 << 20}}});
  EXPECT_TRUE(f.log.contains("max_line = 1048576 is larger than the max_payload (65536)"));
  ASSERT_TRUE(pump_until(*src, [&] { return src->finished(); }));
  const Strings got = f.payloads();
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[0].size(), std::size_t{64 << 10});
  EXPECT_EQ(got[0] + got[1], std::string(100000, 'x'));
  EXPECT_EQ(got[2], "after");
  EXPECT_EQ(src->metrics().oversize, 1u);
}

TEST(ExecSourceTest, CollectsStdoutLinesIncludingAnUnterminatedLastOne) {
  Fixture f;
  auto src = f.make({{"command", std::string("printf 'a\\nb\\nlast'")}, {"restart", std::string("never")}});
  ASSERT_TRUE(pump_until(*src, [&] { return src->finished(); }));
  EXPECT_EQ(f.payloads(), (Strings{"a", "b", "last"}));
  EXPECT_EQ(src->metrics().events, 3u);
  EXPECT_EQ(src->metrics().errors, 0u);
  EXPECT_TRUE(f.log.contains("exited with status 0"));
}

// Short lines are mostly record headers in the ring: a batch budgeted by payload bytes (as many
// as 65 536 numbers of the framer's 1 MB, up to 3.6 MB of records) could take more than the
// quarter of this 4 MiB ring a transaction may; the source then appended one by one and counted
// as rejected every line that met a full ring. Batches are budgeted by record bytes: a full ring
// holds them back, nothing is dropped.
TEST(ExecSourceTest, ManyShortLinesIntoASmallChannelAreHeldWhileItIsFullNotDropped) {
  TempDir dir;
  core::ChannelConfig c;
  c.capacity = 4 << 20;
  c.max_payload = 1'000'000;
  auto ch = core::Channel::create(dir / "c.chan", c);
  core::Consumer reader = ch.consumer("reader");  // reads only between the source's turns
  const SourceDescriptor* d = find_source("exec");
  OptionValues v = defaults_of(*d);
  v.set("command", std::string("seq 1 600000"));
  v.set("restart", std::string("never"));
  v.set("max_line", std::int64_t{1'000'000});
  SourceContext ctx;
  ctx.name = "exec";
  ctx.channels = {&ch};
  ctx.producer_options = {.on_full = core::FullPolicy::kFailFast};
  auto src = d->create(v, std::move(ctx));
  std::uint64_t next = 1;
  bool in_order = true;
  std::vector<core::Record> batch(2048);
  ASSERT_TRUE(pump_until(*src, [&] {
    const std::size_t n = reader.poll(batch);
    for (std::size_t i = 0; i < n; ++i)
      in_order = in_order && testing::as_string(batch[i].payload) == std::to_string(next++);
    if (n != 0) reader.commit();
    return src->finished() && ch.stats().records_written == next - 1;
  }, std::chrono::seconds(60))) << next - 1 << " lines read";
  EXPECT_TRUE(in_order);
  EXPECT_EQ(next, 600001u);
  EXPECT_EQ(src->metrics().rejected, 0u);
}

TEST(ExecSourceTest, RestartsOnFailureAsANewSourceEachRunAndLogsTheStatus) {
  Fixture f;
  auto src = f.make({{"command", std::string("echo one; echo two; exit 3")}});
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().restarts >= 2 && f.ch.stats().records_written >= 6; }));
  const auto recs = all_records(f.ch);
  std::set<std::uint64_t> sources;
  for (std::size_t i = 0; i + 1 < recs.size(); i += 2) {
    EXPECT_EQ(recs[i].payload, "one");
    EXPECT_EQ(recs[i].id.sequence, 0u) << "each run starts its own sequence";
    EXPECT_EQ(recs[i + 1].payload, "two");
    EXPECT_EQ(recs[i + 1].id.source_id, recs[i].id.source_id);
    sources.insert(recs[i].id.source_id);
  }
  EXPECT_EQ(sources.size(), recs.size() / 2) << "a run is a new source";
  EXPECT_TRUE(f.log.contains("exited with status 3"));
  EXPECT_GE(src->metrics().errors, 2u);
}

TEST(ExecSourceTest, OnFailureDoesNotRestartACleanExitButAlwaysDoes) {
  Fixture f;
  auto once = f.make({{"command", std::string("echo ok")}});
  ASSERT_TRUE(pump_until(*once, [&] { return once->finished(); }));
  EXPECT_EQ(once->metrics().restarts, 0u);
  auto always = f.make({{"command", std::string("echo again")}, {"restart", std::string("always")}});
  ASSERT_TRUE(pump_until(*always, [&] { return always->metrics().restarts >= 3; }));
  EXPECT_FALSE(always->finished());
}

TEST(ExecSourceTest, ABrokenCommandIsLoggedWithItsStatus) {
  Fixture f;
  auto src = f.make({{"command", std::string("/no/such/program")}, {"restart", std::string("never")}});
  ASSERT_TRUE(pump_until(*src, [&] { return src->finished(); }));
  EXPECT_TRUE(f.log.contains("exited with status 127")) << "sh: command not found";
  EXPECT_TRUE(f.log.contains("stderr:")) << "the shell's complaint reaches the log";
  EXPECT_EQ(src->metrics().errors, 1u);
}

// A command that cannot even be started (no descriptor for its pipe, no process) is a failure:
// with restart = on-failure it is tried again, and runs once it can (it used to give up for good).
TEST(ExecSourceTest, ACommandThatCannotBeStartedIsTriedAgainOnFailure) {
  if (testing::kSanitizerNeedsDescriptors) GTEST_SKIP() << "the sanitizer runtime needs descriptors of its own";
  Fixture f;
  auto src = f.make({{"command", std::string("echo started")}, {"restart", std::string("on-failure")}});
  testing::NoNewDescriptors starved;  // pipe2 fails: EMFILE
  ASSERT_TRUE(starved.active());
  (void)src->do_work();
  starved.restore();
  EXPECT_TRUE(f.log.contains("cannot start `echo started`: pipe")) << "the failure is logged";
  EXPECT_FALSE(src->finished()) << "gave up after one failed start";
  ASSERT_TRUE(pump_until(*src, [&] { return !f.payloads().empty(); }));
  EXPECT_EQ(f.payloads(), (Strings{"started"}));
}

// Where pidfd_open is refused (a kernel before 5.3, a container's seccomp profile), the exit is
// looked for without it: the child is reaped and, failed, started again. Run in a child process
// whose seccomp filter makes pidfd_open fail with ENOSYS; it exits 0 if the source restarted.
TEST(ExecSourceTest, WithoutPidfdTheChildIsReapedAndRestartedAllTheSame) {
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_pidfd_open, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    sock_fprog prog{static_cast<unsigned short>(sizeof code / sizeof code[0]), code};
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0)
      ::_exit(2);
    if (::syscall(SYS_pidfd_open, ::getpid(), 0) >= 0 || errno != ENOSYS) ::_exit(3);
    Fixture f;
    auto src = f.make({{"command", std::string("exit 3")}, {"restart", std::string("on-failure")}});
    const bool restarted = pump_until(*src, [&] { return src->metrics().restarts >= 2; }, std::chrono::seconds(20));
    ::_exit(restarted && f.log.contains("exited with status 3") ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_NE(WEXITSTATUS(status), 2) << "could not install the seccomp filter";
  ASSERT_NE(WEXITSTATUS(status), 3) << "the filter did not refuse pidfd_open";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "not reaped and restarted within 20 s without a pidfd";
}

TEST(ExecSourceTest, StderrCanBeEventsOrDiscarded) {
  Fixture f;
  auto events = f.make({{"command", std::string("echo out; echo err >&2")},
                        {"restart", std::string("never")},
                        {"stderr", std::string("events")}});
  ASSERT_TRUE(pump_until(*events, [&] { return events->finished(); }));
  Strings got = f.payloads();
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (Strings{"err", "out"}));
  auto discard = f.make({{"command", std::string("echo hidden >&2")},
                         {"restart", std::string("never")},
                         {"stderr", std::string("discard")}});
  ASSERT_TRUE(pump_until(*discard, [&] { return discard->finished(); }));
  EXPECT_FALSE(f.log.contains("stderr: hidden"));
  EXPECT_EQ(f.ch.stats().records_written, 2u);
}

TEST(ExecSourceTest, SplitsOrRejectsOversizeLines) {
  Fixture f;
  auto src = f.make({{"command", std::string("head -c 100 /dev/zero | tr '\\0' x; echo; echo small")},
                     {"restart", std::string("never")},
                     {"max_line", std::int64_t{40}},
                     {"oversize", std::string("reject")}});
  ASSERT_TRUE(pump_until(*src, [&] { return src->finished(); }));
  EXPECT_EQ(f.payloads(), (Strings{"small"}));
  EXPECT_EQ(src->metrics().rejected, 1u);
  EXPECT_EQ(src->metrics().oversize, 1u);
}

TEST(ExecSourceTest, StopSendsSigtermToTheGroupAndCollectsTheLastLines) {
  Fixture f;
  // The shell traps SIGTERM, then starts a background child (a grandchild of the agent) and
  // says so: once its line is read, the trap is in place (set after it, a SIGTERM landing in
  // between killed the shell before it could say "bye").
  auto src = f.make({{"command", std::string("trap 'echo bye; exit 0' TERM; sleep 1000 & echo child $!; "
                                             "while :; do sleep 0.02; done")}});
  ASSERT_TRUE(pump_until(*src, [&] { return f.ch.stats().records_written >= 1; }));
  const std::string first = f.payloads().at(0);
  ASSERT_EQ(first.rfind("child ", 0), 0u) << first;
  const pid_t grandchild = std::stoi(first.substr(6));
  stop_sources(std::array<Source*, 1>{src.get()}, std::chrono::steady_clock::now() + 2s);
  EXPECT_EQ(f.payloads(), (Strings{first, "bye"}));
  EXPECT_TRUE(wait_gone(grandchild, 5s)) << "the background child must not outlive the source";
  EXPECT_TRUE(src->finished());
}

TEST(ExecSourceTest, ACommandThatIgnoresSigtermIsKilledAfterTheTimeout) {
  Fixture f;
  auto src = f.make({{"command", std::string("trap '' TERM; echo $$; while :; do sleep 0.02; done")},
                     {"stop_timeout_ms", std::int64_t{200}}});
  ASSERT_TRUE(pump_until(*src, [&] { return f.ch.stats().records_written >= 1; }));
  const pid_t shell = std::stoi(f.payloads().at(0));
  const auto t0 = std::chrono::steady_clock::now();
  stop_sources(std::array<Source*, 1>{src.get()}, std::chrono::steady_clock::now() + 2s);
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 200ms);
  EXPECT_TRUE(wait_gone(shell, 5s));
  EXPECT_TRUE(f.log.contains("killed by signal 9"));
}

}  // namespace
}  // namespace tributary::ingest
