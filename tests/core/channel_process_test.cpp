// The channel across real processes: producers and consumers spawned as separate programs and
// killed with SIGKILL at the worst moments.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "internal/channel_layout.h"
#include "support/channel_util.h"
#include "support/process.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"
#include "tributary/core/error.h"

namespace tributary::core {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::drain;
using testing::payload_for;
using testing::TempDir;

const std::string kHelper = TRIBUTARY_CHANNEL_HELPER;

ChannelConfig config(std::uint64_t capacity = 1 << 20) {
  ChannelConfig c;
  c.capacity = capacity;
  c.max_payload = 4096;
  c.source_slots = 64;
  return c;
}

OpenOptions fast_abandon() {
  OpenOptions o;
  o.abandon_timeout = 200ms;
  return o;
}

// A writer (source 1) killed with SIGKILL between reserve and publish, and ten records
// (source 2) published after its claim by another process.
void leave_a_dead_claim_then_ten_records(const std::filesystem::path& path) {
  Child claimer({kHelper, "claim", path.string(), "1", "0"});
  ASSERT_EQ(claimer.read_line(10s), "claimed");
  Child after({kHelper, "produce", path.string(), "2", "10", "1", "20"});
  ASSERT_EQ(after.read_line(10s), "ready");
  ASSERT_EQ(after.read_line(10s), "done");
  claimer.kill_and_reap();
}

TEST(ChannelProcessTest, ProducerProcessesToOneConsumerEveryEventExactlyOnce) {
  TempDir dir;
  const auto path = dir / "a.chan";
  Channel ch = Channel::create(path, config(256 * 1024));
  Consumer c = ch.consumer("reader");
  constexpr int kProducers = 4;
  constexpr std::uint64_t kEach = 50'000;
  std::vector<std::unique_ptr<Child>> kids;
  for (int i = 1; i <= kProducers; ++i)
    kids.push_back(std::make_unique<Child>(std::vector<std::string>{
        kHelper, "produce", path.string(), std::to_string(i), std::to_string(kEach), std::to_string(i), "80"}));
  std::vector<std::uint64_t> next(kProducers + 1, 0);
  std::vector<Record> buf(256);
  std::uint64_t got = 0, errors = 0;
  while (got < kEach * kProducers) {
    const std::size_t n = c.poll(buf);
    if (n == 0) {
      ASSERT_TRUE(c.wait(20s)) << "stalled after " << got;
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const auto& r = buf[i];
      if (r.id.source_id < 1 || r.id.source_id > kProducers || r.id.sequence != next[r.id.source_id] ||
          testing::as_string(r.payload) != payload_for(r.id.source_id, r.id.sequence, 80)) {
        ++errors;
        continue;
      }
      ++next[r.id.source_id];
    }
    got += n;
    c.commit();
  }
  EXPECT_EQ(errors, 0u);
  for (auto& k : kids) {
    const int status = k->wait(20s);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
}

TEST(ChannelProcessTest, SlowWriterIsNeverSkippedEvenPastTheAbandonTimeout) {
  TempDir dir;
  const auto path = dir / "a.chan";
  Channel ch = Channel::create(path, config(), fast_abandon());
  Consumer c = ch.consumer("reader");
  Child claimer({kHelper, "claim", path.string(), "1", "0"});
  ASSERT_EQ(claimer.read_line(10s), "claimed");
  claimer.signal(SIGSTOP);  // descheduled, as a VM may do to it
  Producer p = ch.producer();
  ASSERT_EQ(p.append({2, 0}, "behind the claim"), AppendStatus::kOk);
  // Three abandon timeouts with the writer alive: nothing may be skipped or delivered out of order.
  std::vector<Record> buf(8);
  const auto until = std::chrono::steady_clock::now() + 3 * fast_abandon().abandon_timeout;
  while (std::chrono::steady_clock::now() < until) {
    ASSERT_EQ(c.poll(buf), 0u);
    (void)c.wait(50ms);
  }
  EXPECT_EQ(ch.stats().abandoned_records, 0u);
  claimer.signal(SIGCONT);
  claimer.signal(SIGUSR1);
  auto got = drain(c, 2, 10s);
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0].payload, payload_for(1, 0, 100));
  EXPECT_EQ(got[1].payload, "behind the claim");
  EXPECT_EQ(claimer.read_line(10s), "published");
}

TEST(ChannelProcessTest, ProducerKilledMidWriteIsSkippedWithinTheTimeout) {
  TempDir dir;
  const auto path = dir / "a.chan";
  Channel ch = Channel::create(path, config(), fast_abandon());
  Consumer c = ch.consumer("reader");
  Child claimer({kHelper, "claim", path.string(), "1", "0"});
  ASSERT_EQ(claimer.read_line(10s), "claimed");
  Producer p = ch.producer();
  for (std::uint64_t i = 0; i < 100; ++i) ASSERT_EQ(p.append({2, i}, payload_for(2, i, 50)), AppendStatus::kOk);
  claimer.kill_and_reap();
  const auto t0 = std::chrono::steady_clock::now();
  auto got = drain(c, 100, 10s);
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_EQ(got.size(), 100u);
  for (std::uint64_t i = 0; i < 100; ++i) EXPECT_EQ(got[i].id.sequence, i);
  EXPECT_LT(took, 5s) << "the channel must not stay blocked behind a dead writer";
  EXPECT_EQ(ch.stats().abandoned_records, 1u);
  // Its producer slot was given back.
  EXPECT_EQ(ch.stats().live_producers, 1u);
}

// A new channel with a consumer "reader", closed, then left by
// leave_a_dead_claim_then_ten_records.
void a_dead_claim_in_a_new_channel(const std::filesystem::path& path) {
  {
    Channel ch = Channel::create(path, config());
    (void)ch.consumer("reader");
  }
  ASSERT_NO_FATAL_FAILURE(leave_a_dead_claim_then_ten_records(path));
}

TEST(ChannelProcessTest, RecoveryClosesADeadWritersClaimWhenNobodyIsAttached) {
  TempDir dir;
  const auto path = dir / "a.chan";
  ASSERT_NO_FATAL_FAILURE(a_dead_claim_in_a_new_channel(path));
  Channel ch = Channel::open(path);  // default 1 s abandon timeout: recovery must not need it
  EXPECT_EQ(ch.stats().last_recovery.abandoned_claims, 1u);
  Consumer c = ch.consumer("reader");
  std::vector<Record> buf(16);
  ASSERT_EQ(c.poll(buf), 10u) << "readable at once, without waiting out a timeout";
}

// A dead writer's producer slot damaged so that its claim cannot be a reservation (not on a
// record boundary; the fuzzer's find): recovery does not trust it, and the scan salvages the
// records behind it as it would after any damage.
TEST(ChannelProcessTest, RecoveryDoesNotTrustADeadWritersClaimOffTheRecordBoundaries) {
  TempDir dir;
  const auto path = dir / "a.chan";
  ASSERT_NO_FATAL_FAILURE(a_dead_claim_in_a_new_channel(path));
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    const std::uint64_t first = detail::Layout::compute(0, 0).producers_off;
    int damaged = 0;
    for (std::uint32_t i = 0; i < detail::kProducerSlots; ++i) {
      const std::uint64_t at = first + i * sizeof(detail::ProducerSlot);
      std::uint32_t pid = 0;
      std::uint64_t len = 0;
      f.seekg(static_cast<std::streamoff>(at + offsetof(detail::ProducerSlot, pid)));
      f.read(reinterpret_cast<char*>(&pid), sizeof pid);
      f.seekg(static_cast<std::streamoff>(at + offsetof(detail::ProducerSlot, claim_len)));
      f.read(reinterpret_cast<char*>(&len), sizeof len);
      if (pid == 0 || len == 0) continue;
      len += 3;  // covers the unpublished record and ends off the record boundaries
      f.seekp(static_cast<std::streamoff>(at + offsetof(detail::ProducerSlot, claim_len)));
      f.write(reinterpret_cast<const char*>(&len), sizeof len);
      ++damaged;
    }
    ASSERT_TRUE(f.flush());
    ASSERT_EQ(damaged, 1) << "the dead writer's slot";
  }
  Channel ch = Channel::open(path);
  EXPECT_EQ(ch.stats().last_recovery.abandoned_claims, 0u) << "the damaged claim is not closed as one";
  Consumer c = ch.consumer("reader");
  std::vector<Record> buf(16);
  ASSERT_EQ(c.poll(buf), 10u) << "the ten records behind it are salvaged";
  for (std::size_t i = 0; i < 10; ++i) EXPECT_EQ(buf[i].id.source_id, 2u);
}

// With `ch` open here: a helper process claims one record and is killed with SIGKILL before it
// publishes it; ten records of source 2 are appended behind its claim.
void ten_records_behind_a_dead_claim(Channel& ch) {
  Child claimer({kHelper, "claim", ch.path().string(), "1", "0"});
  ASSERT_EQ(claimer.read_line(10s), "claimed");
  Producer p = ch.producer();
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_EQ(p.append({2, i}, payload_for(2, i, 50)), AppendStatus::kOk);
  claimer.kill_and_reap();
}

// A writer killed with SIGKILL leaves its producer slot behind. The process that detaches last
// after it, cleanly, must not vouch for the file: the next opener scans and closes the claim.
TEST(ChannelProcessTest, ADeadWritersSlotKeepsTheLastCloserFromMarkingTheFileClean) {
  TempDir dir;
  const auto path = dir / "a.chan";
  {
    Channel ch = Channel::create(path, config());
    (void)ch.consumer("reader");
    ASSERT_NO_FATAL_FAILURE(ten_records_behind_a_dead_claim(ch));
  }  // the last to detach, cleanly, with the dead writer's slot still in the file
  {
    Channel observer = Channel::open(path, {.read_only = true});
    EXPECT_FALSE(observer.stats().closed_cleanly);
  }
  Channel ch = Channel::open(path);
  EXPECT_FALSE(ch.stats().opened_after_clean_close);
  EXPECT_EQ(ch.stats().last_recovery.abandoned_claims, 1u);
  Consumer c = ch.consumer("reader");
  std::vector<Record> buf(16);
  ASSERT_EQ(c.poll(buf), 10u) << "readable at once, without waiting out a timeout";
}

// Once a consumer has closed the dead writer's claim and given its slot back, nothing in the
// file is half-done: a clean close is trusted, and the next open does not scan.
TEST(ChannelProcessTest, AfterADeadWritersClaimIsClosedACleanCloseIsTrusted) {
  TempDir dir;
  const auto path = dir / "a.chan";
  {
    Channel ch = Channel::create(path, config(), fast_abandon());
    Consumer c = ch.consumer("reader");
    ASSERT_NO_FATAL_FAILURE(ten_records_behind_a_dead_claim(ch));
    ASSERT_EQ(drain(c, 10, 10s).size(), 10u);
    c.commit();
    ASSERT_EQ(ch.stats().abandoned_records, 1u);
  }
  Channel ch = Channel::open(path);
  EXPECT_TRUE(ch.stats().opened_after_clean_close);
  EXPECT_EQ(ch.stats().abandoned_records, 1u);
  Producer p = ch.producer();
  ASSERT_EQ(p.append({2, 10}, payload_for(2, 10, 50)), AppendStatus::kOk);
  Consumer c = ch.consumer("reader");
  std::vector<Record> buf(16);
  ASSERT_EQ(c.poll(buf), 1u);
  EXPECT_EQ(buf[0].id.sequence, 10u);
  EXPECT_EQ(buf[0].channel_seq, 11u) << "the sequence goes on after the abandoned record and the ten";
}

// Recovery is itself killed part-way, again and again: the next one must still know the dead
// writer's claim (its slot is cleared only when recovery ends) and close it as abandoned, not
// mistake it for corruption or, for a batch published last record first, salvage half of it.
TEST(ChannelProcessTest, RecoveryKilledPartWayStillClosesTheDeadWritersClaim) {
  TempDir dir;
  const auto path = dir / "a.chan";
  constexpr std::uint64_t kBefore = 200'000;
  {
    Channel ch = Channel::create(path, config(64 << 20));
    (void)ch.consumer("reader");  // holds everything: recovery validates all of it, which takes a while
    Producer p = ch.producer();
    for (std::uint64_t i = 0; i < kBefore; ++i) ASSERT_EQ(p.append({3, i}, payload_for(3, i, 100)), AppendStatus::kOk);
  }
  ASSERT_NO_FATAL_FAILURE(leave_a_dead_claim_then_ten_records(path));
  const std::uint64_t seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937_64 rng(seed);
  int opened = 0;
  for (int k = 0; k < 20; ++k) {
    Child opener({kHelper, "open", path.string()});
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 30'000));  // a random moment of recovery
    if (opener.read_line(0ms) == "open") ++opened;
    opener.kill_and_reap();
  }
  Channel ch = Channel::open(path);
  const ChannelStats s = ch.stats();
  EXPECT_EQ(s.abandoned_records, 1u) << "the claim was closed as the dead writer's";
  EXPECT_EQ(s.corrupt_records, 0u) << "the claim was taken for damage";
  Consumer c = ch.consumer("reader");
  const auto seen = drain(c, kBefore + 10, 200ms);
  ASSERT_EQ(seen.size(), kBefore + 10);
  for (std::uint64_t i = 0; i < 10; ++i) {
    EXPECT_EQ(seen[kBefore + i].id.source_id, 2u);
    EXPECT_EQ(seen[kBefore + i].id.sequence, i);
  }
  RecordProperty("recoveries_completed_before_the_kill", opened);
}

// How the last exclusive opener left the file (the header's last_open), read as another
// process sees it.
std::uint32_t last_open_of(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::uint32_t v = 0;
  const bool ok = fd >= 0 && ::pread(fd, &v, sizeof v, offsetof(detail::Header, last_open)) == sizeof v;
  if (fd >= 0) ::close(fd);
  return ok ? v : ~0u;
}

// The flock of `path` that `pid` holds ("WRITE"/"READ") or waits for ("-> READ", say), from
// /proc/locks: "N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF", a waiter's line with "->" after
// its number.
bool in_proc_locks(pid_t pid, const std::filesystem::path& path, bool waiting, const std::string& mode) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  std::ifstream in("/proc/locks");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string n, arrow, kind, advisory, rw, who, where;
    if (!(f >> n)) continue;
    if (waiting && !(f >> arrow && arrow == "->")) continue;
    if (!(f >> kind >> advisory >> rw >> who >> where)) continue;
    if (kind == "FLOCK" && rw == mode && who == std::to_string(pid) && where.ends_with(":" + std::to_string(st.st_ino)))
      return true;
  }
  return false;
}

char process_state(pid_t pid) {  // R, S, T (stopped), ...: the field after "(comm)" in /proc/PID/stat
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  return close == std::string::npos || close + 2 >= stat.size() ? '?' : stat[close + 2];
}

// Openers wait for the lock of the process that is recovering the file. When that process dies
// part-way, a waiter must not go on with a half-recovered file (it was told nothing): one of
// them recovers it, and the other waits for that.
TEST(ChannelProcessTest, AnOpenerWaitingOnARecoveryKilledPartWayRecoversTheFileItself) {
  TempDir dir;
  const auto path = dir / "a.chan";
  constexpr std::uint64_t kBefore = 200'000;
  {
    Channel ch = Channel::create(path, config(64 << 20));
    (void)ch.consumer("reader");  // holds everything: recovery validates all of it
    Producer p = ch.producer();
    for (std::uint64_t i = 0; i < kBefore; ++i) ASSERT_EQ(p.append({3, i}, payload_for(3, i, 100)), AppendStatus::kOk);
  }
  ASSERT_NO_FATAL_FAILURE(leave_a_dead_claim_then_ten_records(path));
  // Stop the first opener while it makes the file consistent (caught in the act: it may finish
  // between the look and the stop, in which case it is killed and the next one tried; killed
  // with SIGKILL it leaves no clean close, so each of them scans the file again).
  std::unique_ptr<Child> first;
  for (int tries = 0; tries < 20 && !first; ++tries) {
    auto opener = std::make_unique<Child>(std::vector<std::string>{kHelper, "open", path.string()});
    auto in_the_act = [&] {
      return last_open_of(path) == detail::kOpening && in_proc_locks(opener->pid(), path, false, "WRITE");
    };
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    bool finished = false;  // said "open": too late for this one
    while (!in_the_act() && !(finished = opener->read_line(0ms).has_value()) && std::chrono::steady_clock::now() < deadline) {
    }
    opener->signal(SIGSTOP);
    while (process_state(opener->pid()) != 'T' && std::chrono::steady_clock::now() < deadline) {
    }
    if (!finished && process_state(opener->pid()) == 'T' && in_the_act()) first = std::move(opener);
    else opener->kill_and_reap();
  }
  ASSERT_TRUE(first) << "no opener was caught making the file consistent";
  // Two of them: both wake at once when it dies, and both find the file half-recovered.
  Child second({kHelper, "open", path.string()});
  Child third({kHelper, "open", path.string()});
  for (const Child* waiter : {&second, &third}) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!in_proc_locks(waiter->pid(), path, true, "READ") && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(1ms);  // bounded poll: /proc has no change notification
    ASSERT_TRUE(in_proc_locks(waiter->pid(), path, true, "READ")) << "an opener never waited for the lock";
  }
  timespec killed{};
  ::clock_gettime(CLOCK_REALTIME, &killed);
  first->kill_and_reap();
  ASSERT_EQ(second.read_line(60s), "open");
  ASSERT_EQ(third.read_line(60s), "open");
  Channel ch = Channel::open(path);  // the others hold it: no recovery here
  const ChannelStats s = ch.stats();
  EXPECT_TRUE(s.last_recovery.ran);
  EXPECT_GT(s.last_recovery.at_ns, killed.tv_sec * 1'000'000'000LL + killed.tv_nsec)
      << "the waiter went on without recovering the file";
  EXPECT_EQ(s.abandoned_records, 1u) << "the dead writer's claim was closed";
  EXPECT_EQ(s.corrupt_records, 0u);
  Consumer c = ch.consumer("reader");
  const auto seen = drain(c, kBefore + 10, 200ms);
  ASSERT_EQ(seen.size(), kBefore + 10);
}

TEST(ChannelProcessTest, ConsumerKilledBeforeCommitRereadsFromItsLastCommit) {
  TempDir dir;
  const auto path = dir / "a.chan";
  Channel ch = Channel::create(path, config());
  {
    Producer p = ch.producer();
    for (std::uint64_t i = 0; i < 100; ++i) ASSERT_EQ(p.append({1, i}, payload_for(1, i, 30)), AppendStatus::kOk);
  }
  Child reader({kHelper, "consume", path.string(), "uplink", "80", "50"});
  ASSERT_EQ(reader.read_line(10s), "committed 49");
  reader.kill_and_reap();  // read 80, committed 50, died
  Consumer c = ch.consumer("uplink");
  auto got = drain(c, 50, 2s);
  ASSERT_EQ(got.size(), 50u);
  EXPECT_EQ(got.front().id.sequence, 50u);
  EXPECT_EQ(got.back().id.sequence, 99u);
}

TEST(ChannelProcessTest, CollectorKilledAtRandomResumesFromTheSourceTableWithoutLossOrDuplicate) {
  TempDir dir;
  const auto path = dir / "a.chan";
  { Channel ch = Channel::create(path, config(16 << 20)); }
  constexpr std::uint64_t kCount = 60'000;
  const std::uint64_t seed = std::random_device{}();
  std::mt19937_64 rng(seed);
  SCOPED_TRACE("seed " + std::to_string(seed));
  int kills = 0;
  for (; kills < 8; ++kills) {
    Child w({kHelper, "resume", path.string(), "9", std::to_string(kCount), std::to_string(rng())});
    auto line = w.read_line(10s);
    ASSERT_TRUE(line && line->rfind("resume ", 0) == 0) << (line ? *line : "no output");
    if (std::stoull(line->substr(7)) >= kCount) break;
    // Kill at a random moment in the write loop (a random point in time is the test's
    // input here, not a wait for a condition).
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 20'000));
    w.kill_and_reap();
  }
  {
    Child w({kHelper, "resume", path.string(), "9", std::to_string(kCount), std::to_string(rng())});
    ASSERT_TRUE(w.read_line(10s).has_value());
    auto done = w.read_line(60s);
    ASSERT_EQ(done, "done");
    ASSERT_EQ(w.wait(10s), 0);
  }
  Channel ch = Channel::open(path, fast_abandon());
  Consumer c = ch.consumer("check");
  auto got = drain(c, kCount + 1, 2s);
  ASSERT_EQ(got.size(), kCount) << "lost or duplicated lines";
  for (std::uint64_t i = 0; i < kCount; ++i) {
    ASSERT_EQ(got[i].id.sequence, i);
    ASSERT_EQ(got[i].payload, payload_for(9, i, i % 100));
  }
  auto sp = ch.source_position(9);
  ASSERT_TRUE(sp.has_value());
  EXPECT_EQ(sp->next_sequence, kCount);
  EXPECT_GE(kills, 1);
}

// A file cut short under a running writer: its next write lands past the end of the file,
// which is SIGBUS. The writer must survive, refuse the append (kBroken) and say so; the next
// opener grows the file back and keeps every record before the cut.
TEST(ChannelProcessTest, AFileTruncatedUnderAWriterIsReportedNotACrash) {
  TempDir dir;
  const auto path = dir / "a.chan";
  std::uint64_t data_offset = 0;
  {
    Channel ch = Channel::create(path, config(256 * 1024));
    Consumer keep = ch.consumer("reader");  // holds every record: nothing is overwritten
    data_offset = testing::data_offset(path);
  }
  int ready[2], go[2];
  ASSERT_EQ(::pipe(ready), 0);
  ASSERT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // the writer
    int code = 0;
    {
      Channel ch = Channel::open(path);
      Producer p = ch.producer({FullPolicy::kFailFast});
      for (std::uint64_t i = 0; i < 100; ++i)
        if (p.append({1, i}, payload_for(1, i, 200)) != AppendStatus::kOk) ::_exit(10);
      char b = 'r';
      (void)!::write(ready[1], &b, 1);
      (void)!::read(go[0], &b, 1);  // the parent has cut the file
      std::uint64_t i = 100;
      for (; i < 2000; ++i)
        if (p.append({1, i}, payload_for(1, i, 200)) != AppendStatus::kOk) break;
      code = i < 2000 && p.append({1, i}, payload_for(1, i, 200)) == AppendStatus::kBroken ? 0 : 11;
      (void)!::write(ready[1], &i, sizeof i);  // the first append refused
    }
    ::_exit(code);
  }
  char b = 0;
  ASSERT_EQ(::read(ready[0], &b, 1), 1);
  // Cut at a page boundary past the 100 records (248 bytes each): a write beyond it faults.
  const std::uint64_t cut = data_offset + 7 * 4096;
  const std::uint64_t whole = 7 * 4096 / 248;  // records that fit before the cut
  std::filesystem::resize_file(path, cut);
  ASSERT_EQ(::write(go[1], &b, 1), 1);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_FALSE(WIFSIGNALED(status)) << "the writer died of signal " << WTERMSIG(status);
  ASSERT_EQ(WEXITSTATUS(status), 0) << "10: could not write before the cut; 11: no kBroken after it";
  std::uint64_t refused = 0;
  ASSERT_EQ(::read(ready[0], &refused, sizeof refused), static_cast<ssize_t>(sizeof refused));
  EXPECT_EQ(refused, whole) << "the first append that crossed the cut is the one refused";

  Channel ch = Channel::open(path);
  EXPECT_EQ(ch.stats().last_recovery.file_bytes_found, cut);
  Consumer c = ch.consumer("reader");
  const auto seen = drain(c, 2000, 200ms);
  ASSERT_EQ(seen.size(), whole) << "every acknowledged record, all before the cut";
  for (std::uint64_t i = 0; i < seen.size(); ++i) EXPECT_EQ(seen[i].payload, payload_for(1, i, 200));
}

// The SIGBUS guard catches only faults on pages a channel file no longer backs: a SIGBUS sent
// with kill() still ends the process (by the default action, or a sanitizer's handler).
TEST(ChannelProcessTest, ASigbusSentWithKillIsNotSwallowedByTheGuard) {
  TempDir dir;
  { Channel ch = Channel::create(dir / "a.chan", config(256 * 1024)); }
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    Channel ch = Channel::open(dir / "a.chan");  // installs the guard
    ::kill(::getpid(), SIGBUS);
    ::_exit(0);  // reached only if the signal was swallowed
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  EXPECT_FALSE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the SIGBUS was swallowed";
}

// The registration lock of the channel at `path` (byte 0, an OFD lock), held as a process
// registering or adopting a consumer holds it, until the returned descriptor is closed (-1: not
// taken).
int hold_byte_lock(const std::filesystem::path& path, off_t byte = 0) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  struct flock lock {};
  lock.l_type = F_WRLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = byte;
  lock.l_len = 1;
  if (fd >= 0 && ::fcntl(fd, F_OFD_SETLK, &lock) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Lets the lock go and closes `fd`. Unlocked first: a child forked meanwhile holds a copy of
// the descriptor, and an OFD lock lasts until the last copy is closed.
void release_byte_lock(int fd, off_t byte = 0) {
  struct flock lock {};
  lock.l_type = F_UNLCK;
  lock.l_whence = SEEK_SET;
  lock.l_start = byte;
  lock.l_len = 1;
  (void)::fcntl(fd, F_OFD_SETLK, &lock);
  ::close(fd);
}

// Until `pid` exits (true, its status in `status`) or waits for a lock on the file open as `fd`
// (a blocked waiter on its inode in /proc/locks: false); at most 10 s (false).
bool waits_for_lock_or_exits(pid_t pid, int fd, int& status) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return false;
  const std::string inode = fmt::format(":{} ", st.st_ino);
  for (const auto deadline = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < deadline;) {
    if (::waitpid(pid, &status, WNOHANG) == pid) return true;
    std::ifstream locks("/proc/locks");
    for (std::string line; std::getline(locks, line);)
      if (line.find("->") != std::string::npos && line.find(inode) != std::string::npos) return false;
    std::this_thread::sleep_for(1ms);  // another process's progress: polled, bounded above
  }
  return false;
}

// Forks a child that opens the channel at `path` and exits with what `body` returns for it (4 if
// the opening, or `body`, throws a core::Error). The child's pid (-1: no fork).
pid_t child_on(const std::filesystem::path& path, const std::function<int(Channel&)>& body) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 4;
    try {
      Channel ch = Channel::open(path);
      rc = body(ch);
    } catch (const Error&) {
    }
    ::_exit(rc);
  }
  return pid;
}

// How a child that needed the byte lock `fd` holds ended: `waited` if it was seen waiting for it
// (not exited first); `while_held` ran then, the lock was given back and the child reaped.
// `code`: its exit code, -1 if it did not exit normally.
struct ChildEnd {
  bool waited;
  int code;
};
ChildEnd end_after_lock(pid_t pid, int fd, off_t byte, const std::function<void()>& while_held = [] {}) {
  int status = 0;
  const bool exited = waits_for_lock_or_exits(pid, fd, status);
  while_held();
  release_byte_lock(fd, byte);
  if (!exited && ::waitpid(pid, &status, 0) != pid) return {true, -1};
  return {!exited, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
}

// A new source and a release take the source-table lock (byte 1 of the file): a release may
// empty released slots, which must not happen while another process is placing a source past
// them. Held here by hand: each waits for it.
TEST(ChannelProcessTest, ANewSourceAndAReleaseWaitForTheSourceTableLock) {
  TempDir dir;
  const auto path = dir / "a.chan";
  Channel ch = Channel::create(path, config());
  {
    Producer p = ch.producer();
    const SourcePosition first{7, 1, 7};
    ASSERT_EQ(p.append_batch({}, &first), AppendStatus::kOk);
  }
  for (const bool release : {false, true}) {
    SCOPED_TRACE(release ? "a release" : "a new source");
    const int fd = hold_byte_lock(path, 1);
    ASSERT_GE(fd, 0);
    const pid_t pid = child_on(path, [release](Channel& other) {
      if (release) return other.release_source(7) ? 0 : 3;
      Producer p = other.producer();
      const SourcePosition sp{8, 1, 8};
      return p.append_batch({}, &sp) == AppendStatus::kOk ? 0 : 3;
    });
    ASSERT_GE(pid, 0);
    const ChildEnd end = end_after_lock(pid, fd, 1);
    EXPECT_TRUE(end.waited) << "it did not wait for the source-table lock: exit code " << end.code;
    EXPECT_EQ(end.code, 0);
  }
  EXPECT_FALSE(ch.source_position(7).has_value());
  EXPECT_EQ(ch.source_position(8)->position, 8u);
}

// Removing a consumer while another process adopts it, between storing its pid and its start
// time (the slot then holds the adopter's pid beside the previous owner's start time, and the
// adopter looks dead): the removal waits for the adoption (the registration lock), then finds
// the consumer in use and refuses. The adoption under way is made here by hand, holding the
// lock as an adopting process does.
TEST(ChannelProcessTest, RemovingAConsumerWaitsForAnAdoptionUnderWayAndThenRefuses) {
  TempDir dir;
  const auto path = dir / "a.chan";
  Channel ch = Channel::create(path, config());
  Consumer adopter = ch.consumer("victim");  // this process owns it: pid and start time set
  const int fd = hold_byte_lock(path);
  ASSERT_GE(fd, 0);
  const detail::Layout layout = detail::Layout::compute(config().capacity, config().source_slots);
  const auto start_at = static_cast<off_t>(layout.consumers_off + offsetof(detail::ConsumerSlot, owner_start));
  std::uint64_t start = 0;
  ASSERT_EQ(::pread(fd, &start, sizeof start, start_at), static_cast<ssize_t>(sizeof start));
  ASSERT_NE(start, 0u);
  const std::uint64_t previous_owners = start - 1;  // the pid stored, the start time not yet
  ASSERT_EQ(::pwrite(fd, &previous_owners, sizeof previous_owners, start_at), static_cast<ssize_t>(sizeof start));
  const pid_t pid = child_on(path, [](Channel& other) {
    try {
      return other.remove_consumer("victim") ? 0 : 3;
    } catch (const Error& e) {
      return std::string_view(e.what()).find("in use by process") != std::string_view::npos ? 2 : 4;
    }
  });
  ASSERT_GE(pid, 0);
  const ChildEnd end = end_after_lock(pid, fd, 0, [&] {  // the adoption completes
    ASSERT_EQ(::pwrite(fd, &start, sizeof start, start_at), static_cast<ssize_t>(sizeof start));
  });
  EXPECT_TRUE(end.waited) << "the removal did not wait for the registration lock: exit code " << end.code;
  EXPECT_EQ(end.code, 2) << "0: removed under its owner; 3: not found; 4: another error; -1: killed";
  int slots = 0;
  for (const auto& c : ch.stats().consumers) slots += c.name == "victim";
  EXPECT_EQ(slots, 1);
}

// A process registering a consumer name while another is between taking a slot for the same
// name and making it active: it must wait (a lock on byte 0 of the file, fcntl OFD) and then
// adopt that slot, not take a second one. Two active slots with one name: the second's cursor is
// never moved again and pins the ring for good. The half-made registration is written here by
// hand, holding the lock as a registering process does.
TEST(ChannelProcessTest, ARegistrationWaitsForOneOfTheSameNameUnderWayAndAdoptsItsSlot) {
  TempDir dir;
  const auto path = dir / "a.chan";
  const Channel held = Channel::create(path, config());  // open throughout: the child's open recovers nothing
  const int fd = hold_byte_lock(path);
  ASSERT_GE(fd, 0);
  const detail::Layout layout = detail::Layout::compute(config().capacity, config().source_slots);
  auto put = [&](std::size_t field, const void* bytes, std::size_t n) {
    ASSERT_EQ(::pwrite(fd, bytes, n, static_cast<off_t>(layout.consumers_off + field)), static_cast<ssize_t>(n));
  };
  const char name[] = "twin";
  const std::uint64_t cursor = 0, cursor_copy = ~cursor;
  const std::uint32_t registering = detail::kRegistering, active = detail::kActive;
  put(offsetof(detail::ConsumerSlot, name), name, sizeof name);
  put(offsetof(detail::ConsumerSlot, cursor), &cursor, sizeof cursor);
  put(offsetof(detail::ConsumerSlot, cursor_copy), &cursor_copy, sizeof cursor_copy);
  put(offsetof(detail::ConsumerSlot, state), &registering, sizeof registering);
  const pid_t pid = child_on(path, [](Channel& ch) {
    (void)ch.consumer("twin");
    return 0;
  });
  ASSERT_GE(pid, 0);
  // Until the child waits for the lock (listed blocked in /proc/locks), or registered without it.
  const ChildEnd end = end_after_lock(pid, fd, 0, [&] {  // the registration completes
    put(offsetof(detail::ConsumerSlot, state), &active, sizeof active);
  });
  ASSERT_EQ(end.code, 0);
  int slots = 0;
  for (const auto& c : held.stats().consumers) slots += c.name == "twin";
  EXPECT_EQ(slots, 1) << "the name is in " << slots << " slots";
}

}  // namespace
}  // namespace tributary::core
