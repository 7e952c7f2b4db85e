// The tail source against real files: following, partial lines, rotation by rename and by
// copytruncate, truncation, deletion, oversize lines, raw bytes, many files, restarts.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <thread>

#include "support/tail_util.h"
#include "support/temp_dir.h"

namespace tributary::ingest {
namespace {

using testing::all_records;
using testing::append_lines;
using testing::birth_times;
using testing::line_text;
using testing::make_source;
using testing::pump_until;
using testing::TempDir;
using Strings = std::vector<std::string>;

core::ChannelConfig cfg(std::uint64_t cap = 16 << 20) {
  core::ChannelConfig c;
  c.capacity = cap;
  c.max_payload = static_cast<std::uint32_t>(cap / 4 - 64);
  c.source_slots = 4096;
  return c;
}

// Payloads per source id, in channel order.
std::map<std::uint64_t, Strings> by_source(const core::Channel& ch) {
  std::map<std::uint64_t, Strings> m;
  std::map<std::uint64_t, std::uint64_t> next;
  for (const auto& r : all_records(ch)) {
    EXPECT_EQ(r.id.sequence, next[r.id.source_id]) << "sequence gap or repeat in source " << r.id.source_id;
    next[r.id.source_id] = r.id.sequence + 1;
    m[r.id.source_id].push_back(r.payload);
  }
  return m;
}

Strings all_payloads(const core::Channel& ch) {
  Strings out;
  for (const auto& r : all_records(ch)) out.push_back(r.payload);
  return out;
}

// Reads what is there as consumer `c` and commits it: the ring's room back. Returns the records read.
std::size_t read_and_commit(core::Consumer& c) {
  std::vector<core::Record> batch(4096);
  const std::size_t n = c.poll(batch);
  if (n != 0) c.commit();
  return n;
}

#define SKIP_WITHOUT_BIRTH_TIMES(dir) \
  if (!birth_times((dir).path())) GTEST_SKIP() << "no birth times (statx) in " << (dir).path() << ": short files wait there"

// A tail of one file with a 64-byte fingerprint: short files in a few lines.
std::map<std::string, ingest::OptionValues::Value> short_fingerprint(const std::filesystem::path& log) {
  return {{"paths", Strings{log.string()}}, {"fingerprint_bytes", std::int64_t{64}}};
}

// What most short-file tests start from: a file holding `first`, a channel beside it, and the
// options of a tail on the file with a 64-byte fingerprint.
struct ShortFile {
  explicit ShortFile(const std::string& first, const std::string& name = "short.log")
      : log(dir / name), ch(core::Channel::create(dir / "c.chan", cfg())) {
    std::ofstream(log) << first;
  }
  TempDir dir;
  std::filesystem::path log;
  core::Channel ch;
  std::map<std::string, ingest::OptionValues::Value> opts = short_fingerprint(log);
};

// The first key of the content chain of `file`'s first 256 bytes for collector `name` (what an
// earlier build took as the generation's id): their FNV-1a hashes, mixed. The format of the
// tables a tail leaves, spelled out here on purpose.
std::uint64_t mix64(std::uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
std::uint64_t content_key(const std::string& name, const std::filesystem::path& file) {
  auto fnv1a = [](const void* data, std::size_t n) {
    std::uint64_t h = 0xcbf29ce484222325ull;
    const auto* p = static_cast<const unsigned char*>(data);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
  };
  std::string head(256, '\0');
  { std::ifstream(file, std::ios::binary).read(head.data(), 256); }
  return mix64(fnv1a(name.data(), name.size()) ^ fnv1a(head.data(), head.size())) | 1;
}
// The key after `key` in its chain.
std::uint64_t next_key(std::uint64_t key) { return mix64(key ^ 0x7472756e63617465ull) | 1; }

Strings expected(const std::string& prefix, int from, int to, std::size_t pad = 40) {
  Strings s;
  for (int i = from; i < to; ++i) s.push_back(line_text(prefix, i, pad));
  return s;
}

// What the tests of a short file that grew start from: short.log, two channels, the options of a
// tail with a 64-byte fingerprint; read_then_grown(): "tiny" read into both, then 3 lines more
// (past the 64 bytes: it moves to its content's identity), by a collector that then stops.
struct TinyIntoTwoChannels {
  void read_then_grown() {
    { std::ofstream(log) << "tiny\n"; }
    auto src = make_source("tail", {&c1, &c2}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return c1.stats().records_written == 1 && c2.stats().records_written == 1; }));
    append_lines(log, "more", 0, 3);
    ASSERT_TRUE(pump_until(*src, [&] { return c1.stats().records_written == 4 && c2.stats().records_written == 4; }));
  }
  // Then 2 lines more while no collector runs, and a collector started again: each channel holds
  // every line once, in two sources (the short file's identity, then its content's).
  void grown_again_and_resumed() {
    append_lines(log, "after", 0, 2);
    auto src = make_source("tail", {&c1, &c2}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return c1.stats().records_written == 6 && c2.stats().records_written == 6; }));
    for (int i = 0; i < 10; ++i) (void)src->do_work();
    Strings want{"tiny"};
    for (auto& l : expected("more", 0, 3)) want.push_back(l);
    for (auto& l : expected("after", 0, 2)) want.push_back(l);
    for (const core::Channel* ch : {&c1, &c2}) {
      EXPECT_EQ(all_payloads(*ch), want);
      EXPECT_EQ(by_source(*ch).size(), 2u);
    }
  }
  TempDir dir;
  std::filesystem::path log = dir / "short.log";
  core::Channel c1 = core::Channel::create(dir / "1.chan", cfg());
  core::Channel c2 = core::Channel::create(dir / "2.chan", cfg());
  std::map<std::string, ingest::OptionValues::Value> opts = short_fingerprint(log);
};

// What the tests of files cut again and again start from: status.log holding 10 lines of 100
// bytes that start alike (any rewrite of it has the same first bytes), and a channel.
struct StatusFile {
  StatusFile() : ch(core::Channel::create(dir / "c.chan", cfg())), log(dir / "status.log") {
    append_lines(log, "same", 0, 10, 100);
  }
  // A copy of it made as copy.tmp (outside the patterns), then a collector with `opts` reads the
  // 10 lines, sees status.log cut to nothing, and stops.
  void copied_read_and_cut(const std::map<std::string, ingest::OptionValues::Value>& opts) {
    std::filesystem::copy_file(log, dir / "copy.tmp");
    auto src = make_source("tail", {&ch}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
    std::filesystem::resize_file(log, 0);
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().rotations == 1; }));
  }
  TempDir dir;
  core::Channel ch;
  std::filesystem::path log;
};

// What the restart tests start from: app.log's 10 lines read by a collector named "test" that
// then stopped, and the pointer it left at the file's key (its id, and its position's bits).
struct ReadThenStopped {
  ReadThenStopped() : log(dir / "app.log"), ch(core::Channel::create(dir / "c.chan", cfg())) {
    append_lines(log, "a", 0, 10);
    key = content_key("test", log);
    auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
    EXPECT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
    pointer = ch.source_position(key).value_or(core::SourcePosition{});
  }
  // A collector on app.log again, with forget_after_ms `forget_after`.
  std::unique_ptr<ingest::Source> restart(std::int64_t forget_after) {
    return make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"forget_after_ms", forget_after}});
  }
  TempDir dir;
  std::filesystem::path log;
  core::Channel ch;
  std::uint64_t key = 0;
  core::SourcePosition pointer;
};

// A pattern whose directory is named with glob characters, escaped (as the demo writes it):
// the directory is still watched, so a new file is found at once, not at the next rescan.
TEST(TailSourceTest, ADirectoryNamedWithGlobCharactersIsWatchedThroughItsEscapedPattern) {
  TempDir dir;
  const auto odd = dir / "logs [1] *x? \\ y";
  std::filesystem::create_directories(odd);
  std::string pattern;
  for (const char c : odd.string()) {
    if (c == '\\' || c == '*' || c == '?' || c == '[') pattern += '\\';
    pattern += c;
  }
  pattern += "/*.log";
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{pattern}}, {"poll_interval_ms", std::int64_t{60000}}});
  (void)src->do_work();  // the start's scan: nothing there yet
  append_lines(odd / "a.log", "a", 0, 10);  // a new file: only the directory's watch tells, for a minute
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }, std::chrono::milliseconds(10000)));
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 10));
}

// A file renamed out of the patterns before the tail ever opened it is followed under its new
// name and read to its end, also for a pattern without a directory (the current one): its
// events' paths are spelled as the glob spells them ("a.log", not "./a.log").
TEST(TailSourceTest, AFileRenamedAwayBeforeItWasOpenedIsReadAlsoForAPatternWithoutADirectory) {
  TempDir dir;
  const auto here = std::filesystem::absolute(dir.path());  // (a relative TMPDIR: before the chdir)
  testing::InDirectory in(here);
  auto ch = core::Channel::create(here / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{"*.log"}}, {"poll_interval_ms", std::int64_t{60000}}});
  (void)src->do_work();  // the start's scan: nothing there yet
  append_lines(here / "a.log", "a", 0, 10);
  std::filesystem::rename(here / "a.log", here / "a.log.1");  // before the tail looked again
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }, std::chrono::milliseconds(10000)));
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 10));
}

// One directory spelled two ways by two patterns ("logs" and "./logs") is one inotify watch:
// a rename in it is matched against each spelling, not only the last one configured.
TEST(TailSourceTest, ADirectorySpelledTwoWaysFollowsRenamesForEitherPattern) {
  TempDir dir;
  const auto here = std::filesystem::absolute(dir.path());
  testing::InDirectory in(here);
  std::filesystem::create_directories(here / "logs");
  auto ch = core::Channel::create(here / "c.chan", cfg());
  auto src = make_source("tail", {&ch},
                         {{"paths", Strings{"logs/*.log", "./logs/*.err"}}, {"poll_interval_ms", std::int64_t{60000}}});
  (void)src->do_work();
  append_lines(here / "logs" / "a.log", "a", 0, 10);
  std::filesystem::rename(here / "logs" / "a.log", here / "logs" / "a.log.1");  // before the tail looked again
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }, std::chrono::milliseconds(10000)));
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 10));
}

// More changes than the kernel queues for the tail's inotify descriptor: the overflow is counted
// as an error (renames in it are not seen) and the files the patterns match are still found.
TEST(TailSourceTest, AnInotifyQueueOverflowIsCountedAndTheFilesAreStillFound) {
  std::uint64_t queue = 0;
  std::ifstream("/proc/sys/fs/inotify/max_queued_events") >> queue;
  if (queue == 0 || queue > 200'000) GTEST_SKIP() << "fs.inotify.max_queued_events is " << queue << ": too many files to overflow it";
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "*.log").string()}}, {"poll_interval_ms", std::int64_t{60000}}});
  (void)src->do_work();
  for (std::uint64_t i = 0; i < queue / 2 + 100; ++i)  // IN_CREATE and IN_CLOSE_WRITE each
    std::ofstream(dir / ("f" + std::to_string(i) + ".tmp")).put('x');
  append_lines(dir / "a.log", "a", 0, 10);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }, std::chrono::milliseconds(10000)));
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 10));
  EXPECT_EQ(src->metrics().errors, 1u);
}

TEST(TailSourceTest, ReadsExistingLinesThenFollowsAppends) {
  TempDir dir;
  append_lines(dir / "a.log", "a", 0, 100);
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "*.log").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
  append_lines(dir / "a.log", "a", 100, 150);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 150; }));
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 150));
  EXPECT_EQ(src->metrics().events, 150u);
}

// Short lines are mostly record headers in the ring: a batch budgeted by payload bytes alone
// (60 KB of 10 000 lines, under an eighth of this 1 MiB ring) took 560 KB of records, more than
// the quarter one transaction may take, and the tail retried the same refused batch forever.
TEST(TailSourceTest, ShortLinesIntoASmallChannelAreBatchedByTheRecordBytesTheyTake) {
  TempDir dir;
  append_lines(dir / "a.log", "a", 0, 10000, 0);
  auto ch = core::Channel::create(dir / "c.chan", cfg(1 << 20));
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "*.log").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10000; }, std::chrono::seconds(10)))
      << ch.stats().records_written << " records";
  EXPECT_EQ(src->metrics().events, 10000u);
  EXPECT_EQ(all_payloads(ch).back(), line_text("a", 9999, 0));
}

TEST(TailSourceTest, HoldsAPartialLastLineUntilItsNewlineArrives) {
  TempDir dir;
  append_lines(dir / "a.log", "a", 0, 10);
  { std::ofstream(dir / "a.log", std::ios::app) << "half a li"; }
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "a.log").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
  for (int i = 0; i < 20; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 10u) << "the partial line must not be emitted";
  { std::ofstream(dir / "a.log", std::ios::app) << "ne\n"; }
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 11; }));
  EXPECT_EQ(all_payloads(ch).back(), "half a line");
}

TEST(TailSourceTest, StartAtEndSkipsWhatFilesPresentAtStartupAlreadyHold) {
  TempDir dir;
  append_lines(dir / "a.log", "old", 0, 50);
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "*.log").string()}}, {"start_at", std::string("end")}});
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  append_lines(dir / "a.log", "new", 0, 5);
  append_lines(dir / "b.log", "b", 0, 10);  // appeared later: read from its beginning
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 15; }));
  const auto m = by_source(ch);
  ASSERT_EQ(m.size(), 2u);
  Strings all = all_payloads(ch);
  EXPECT_EQ(std::count_if(all.begin(), all.end(), [](const std::string& s) { return s.rfind("old", 0) == 0; }), 0);
}

TEST(TailSourceTest, ResumesAfterARestartWithoutLosingOrRepeatingALine) {
  TempDir dir;
  append_lines(dir / "a.log", "a", 0, 1000);
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  {
    auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "*.log").string()}}});
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1000; }));
  }
  append_lines(dir / "a.log", "a", 1000, 1200);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "*.log").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1200; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 1200));
  EXPECT_EQ(by_source(ch).size(), 1u) << "one file generation is one source";
}

// A power loss under interval sync: the channel's source table reached the disk with the
// position after the last lines read, but their records, written after the last completed sync,
// did not. The first opener after the reboot puts the source back at the state that sync wrote
// out, and the collector reads those lines again, under the same identities: none is lost, none
// is there twice.
TEST(TailSourceTest, APowerLossUnderIntervalSyncLosesNoLineReadSinceTheLastSync) {
  TempDir dir;
  const auto log = dir / "app.log";
  append_lines(log, "a", 0, 100);
  const std::uint64_t data_off = [&] {
    auto ch = core::Channel::create(dir / "c.chan", cfg());
    return testing::data_offset(dir / "c.chan");
  }();
  std::uint64_t synced_to = 0, end = 0;
  {
    auto ch = core::Channel::open(dir / "c.chan");
    auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
    ASSERT_TRUE(ch.sync());  // the syncer's tick: the 100 lines and their position are on disk
    synced_to = ch.stats().write_position;
    append_lines(log, "a", 100, 150);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 150; }));
    end = ch.stats().write_position;
    // The power fails with the collector running: the file as the disk has it, the records of
    // the last 50 lines lost (zeros), the source table as it was in memory.
    std::filesystem::copy_file(dir / "c.chan", dir / "power.chan");
  }
  {
    std::fstream f(dir / "power.chan", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(data_off + synced_to));
    const std::string zeros(end - synced_to, '\0');
    f.write(zeros.data(), static_cast<std::streamsize>(zeros.size()));
  }
  testing::last_written_on_another_boot(dir / "power.chan");
  auto ch = core::Channel::open(dir / "power.chan");
  EXPECT_EQ(ch.stats().records_written - ch.stats().last_recovery.records_dropped, 100u);
  EXPECT_GE(ch.stats().last_recovery.sources_rolled_back, 1u);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return all_records(ch).size() == 150; }, std::chrono::seconds(10)))
      << all_records(ch).size() << " records";
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 150));
  EXPECT_EQ(by_source(ch).size(), 1u) << "the lines read again keep their source";
}

// A file gone quiet: once a sync has written its last lines out, its collector makes that
// state the checkpoint while idle, so a power loss after it reads nothing again.
TEST(TailSourceTest, AFileGoneQuietIsNotReadAgainAfterAPowerLossOnceSynced) {
  TempDir dir;
  const auto log = dir / "app.log";
  append_lines(log, "a", 0, 50);
  {
    auto ch = core::Channel::create(dir / "c.chan", cfg());
    auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 50; }));
    ASSERT_TRUE(ch.sync());
    append_lines(log, "a", 50, 100);  // committed after that sync: the checkpoint is the 50 lines
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
    ASSERT_TRUE(ch.sync());
    for (int i = 0; i < 3; ++i) (void)src->do_work();  // idle
    std::filesystem::copy_file(dir / "c.chan", dir / "power.chan");
  }
  testing::last_written_on_another_boot(dir / "power.chan");
  auto ch = core::Channel::open(dir / "power.chan");
  EXPECT_EQ(ch.stats().last_recovery.sources_rolled_back, 0u);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  for (int i = 0; i < 20; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 100));
}

TEST(TailSourceTest, RotationByRenameWhileWritingLosesAndRepeatsNothing) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg(64 << 20));
  const auto log = dir / "app.log";
  append_lines(log, "w", 0, 1);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"rotate_wait_ms", std::int64_t{200}}});
  constexpr int kLines = 60000;
  std::atomic<bool> done{false};
  std::thread writer([&] {
    int rot = 0;
    for (int i = 1; i < kLines; i += 500) {
      append_lines(log, "w", i, std::min(i + 500, kLines));
      if ((i / 500) % 20 == 19) std::filesystem::rename(log, dir / ("app.log." + std::to_string(rot++)));
    }
    done = true;
  });
  const bool all = pump_until(*src, [&] { return done && ch.stats().records_written >= kLines; }, std::chrono::seconds(20));
  writer.join();
  if (!all) {
    std::set<std::string> have;
    for (const auto& r : all_records(ch)) have.insert(r.payload);
    int missing = 0;
    for (int i = 0; i < kLines; ++i)
      if (!have.count(line_text("w", i)) && missing++ < 5) ADD_FAILURE() << "missing line " << i;
    FAIL() << missing << " lines missing; open files " << src->metrics().open_files;
  }
  for (int i = 0; i < 20; ++i) (void)src->do_work();
  Strings got = all_payloads(ch);
  std::sort(got.begin(), got.end());
  Strings want = expected("w", 0, kLines);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(got, want);
  by_source(ch);  // per-source sequences dense
}

TEST(TailSourceTest, CopytruncateStartsANewGenerationOfTheSameFile) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  append_lines(log, "first", 0, 100);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
  std::filesystem::copy_file(log, dir / "app.log.1");
  std::filesystem::resize_file(log, 0);
  append_lines(log, "second", 0, 30);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 130; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  const auto m = by_source(ch);
  EXPECT_EQ(m.size(), 2u) << "the truncated file is a new generation, a new source";
  Strings all = all_payloads(ch);
  Strings want = expected("first", 0, 100);
  for (auto& s : expected("second", 0, 30)) want.push_back(s);
  EXPECT_EQ(all, want);
  EXPECT_GE(src->metrics().rotations, 1u);
}

// copytruncate with a glob that matches the copy: the copy, seen while it is being written
// (shorter than what was read of the original), is the original's bytes, not a new file; it
// used to be read from its start as a new source, every line of it twice. Then the original is
// truncated: the copy's lines past the read position (written between the copy and the
// truncate) are read from it, and the truncated file is a new generation. Each line once.
TEST(TailSourceTest, CopytruncatesCopyMatchedByTheGlobWhileBeingWrittenIsNotReadTwice) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  append_lines(log, "first", 0, 100);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "app.log*").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
  std::string bytes;
  {
    std::ifstream in(log, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  { std::ofstream(dir / "app.log.1", std::ios::binary) << bytes.substr(0, bytes.size() / 2); }  // half copied
  for (int i = 0; i < 20; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 100u) << "the copy being written was read as a new file";
  append_lines(log, "late", 0, 5);  // written before the truncate: in the copy only, unread
  {
    std::ifstream in(log, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  { std::ofstream(dir / "app.log.1", std::ios::binary) << bytes; }  // the copy done
  std::filesystem::resize_file(log, 0);
  append_lines(log, "second", 0, 30);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 135; }))
      << ch.stats().records_written << " records";
  for (int i = 0; i < 20; ++i) (void)src->do_work();
  Strings all = all_payloads(ch);
  std::sort(all.begin(), all.end());
  Strings want = expected("first", 0, 100);
  for (auto& s : expected("late", 0, 5)) want.push_back(s);
  for (auto& s : expected("second", 0, 30)) want.push_back(s);
  std::sort(want.begin(), want.end());
  EXPECT_EQ(all, want);
}

// A new file that only starts like one still open (the same header line, then other lines),
// shorter than what was read of it: a new generation, read at once, not taken for a copy.
TEST(TailSourceTest, ANewFileStartingLikeAnOpenOneIsReadNotTakenForItsCopy) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  const std::string header(300, 'H');
  { std::ofstream(log) << header << "\n"; }
  append_lines(log, "a", 0, 100);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "app.log*").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 101; }));
  std::filesystem::rename(log, dir / "app.log.1");  // still matched, still open
  { std::ofstream(log) << header << "\n"; }
  append_lines(log, "b", 0, 10);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 112; }))
      << ch.stats().records_written << " records";
  EXPECT_EQ(all_payloads(ch).back(), line_text("b", 9));
  EXPECT_EQ(by_source(ch).size(), 2u);
}

// Every file followed holds two slots of the channel's source table (its key and its
// generation's id) until forget_after after it ends: once the table is full, a new file waits,
// and the error says why and what to do (once).
TEST(TailSourceTest, AFullSourceTableIsAnErrorNamingTheRemedy) {
  TempDir dir;
  auto c = cfg();
  c.source_slots = 16;
  auto ch = core::Channel::create(dir / "c.chan", c);
  for (int f = 0; f < 9; ++f) append_lines(dir / ("f" + std::to_string(f) + ".log"), "file" + std::to_string(f), 0, 10);
  const ingest::SourceDescriptor* d = ingest::find_source("tail");
  ingest::OptionValues v = ingest::defaults_of(*d);
  v.set("paths", Strings{(dir / "*.log").string()});
  std::vector<std::string> errors;
  ingest::SourceContext ctx;
  ctx.name = "t";
  ctx.channels = {&ch};
  ctx.log = [&errors](std::string_view level, const std::string& m) {
    if (level == "error") errors.push_back(m);
  };
  auto src = d->create(v, std::move(ctx));
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 80; }));
  for (int i = 0; i < 20; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 80u) << "8 files, two slots each (the content key and the generation's id)";
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("its source table is full"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("larger source_slots"), std::string::npos) << errors[0];
}

// The copy met before its original (at a restart, in the order of the patterns): still a copy.
TEST(TailSourceTest, ACopyMetBeforeItsOriginalAtARestartIsNotReadTwice) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log", copy = dir / "app.log.1";
  append_lines(log, "first", 0, 100);
  const Strings paths{copy.string(), log.string()};  // the copy's pattern first
  {
    auto src = make_source("tail", {&ch}, {{"paths", paths}});
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
  }
  std::string bytes;
  {
    std::ifstream in(log, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  { std::ofstream(copy, std::ios::binary) << bytes.substr(0, bytes.size() / 2); }  // being copied
  auto src = make_source("tail", {&ch}, {{"paths", paths}});
  for (int i = 0; i < 20; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 100u) << "the copy was read as a new file";
}

// Short files that go away with the same content (a daily "backup done") are each read: the
// second is not taken for the first and skipped as read.
TEST(TailSourceTest, ShortFilesThatGoAwayWithTheSameContentAreEachRead) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "job.log";
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"rotate_wait_ms", std::int64_t{50}}});
  for (int day = 1; day <= 3; ++day) {
    { std::ofstream(log) << "backup done\n"; }
    for (int i = 0; i < 5; ++i) (void)src->do_work();
    std::filesystem::rename(log, dir / ("job.log." + std::to_string(day)));
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; })) << "day " << day;
  }
  EXPECT_EQ(all_payloads(ch), (Strings{"backup done", "backup done", "backup done"}));
}

TEST(TailSourceTest, TruncatedToTheSameFirstBytesIsStillANewGeneration) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  append_lines(log, "same", 0, 100);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
  std::filesystem::resize_file(log, 0);
  append_lines(log, "same", 0, 10);  // identical first bytes, shorter than before
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 110; }));
  EXPECT_EQ(by_source(ch).size(), 2u);
  // And after a restart, the chain of generations resumes the right one.
  src.reset();
  append_lines(log, "same", 10, 15);
  auto again = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  ASSERT_TRUE(pump_until(*again, [&] { return ch.stats().records_written == 115; }));
  for (int i = 0; i < 10; ++i) (void)again->do_work();
  EXPECT_EQ(ch.stats().records_written, 115u);
}

// forget_after = 0: the first generation is forgotten at once, while the second is read. The
// second moves to the chain's first key (given back, the first key would leave a restart with no
// way to it), and a restart resumes it there.
TEST(TailSourceTest, ARestartResumesTheGenerationReadAfterAnEarlierOneOfItsChainWasForgotten) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  const std::map<std::string, ingest::OptionValues::Value> opts = {
      {"paths", Strings{log.string()}}, {"forget_after_ms", std::int64_t{0}}, {"rotate_wait_ms", std::int64_t{0}}};
  append_lines(log, "same", 0, 100);
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
  std::filesystem::resize_file(log, 0);
  append_lines(log, "same", 0, 10);  // identical first bytes: the chain's second generation
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 110; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();  // the first generation's forget_after is over
  src.reset();
  append_lines(log, "same", 10, 15);
  auto again = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*again, [&] { return ch.stats().records_written == 115; }));
  for (int i = 0; i < 10; ++i) (void)again->do_work();
  EXPECT_EQ(ch.stats().records_written, 115u) << "the second generation resumed, not read again";
}

// A file cut and written again with the same first bytes, as long as before or longer, is a new
// generation: not resumed where the old one stopped (its lines would be skipped).
TEST(TailSourceTest, AFileCutAndWrittenAgainAsLongWithTheSameStartIsReadWhole) {
  StatusFile t;
  auto& [dir, ch, log] = t;
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
  std::filesystem::resize_file(log, 0);
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().rotations == 1; }));
  append_lines(log, "same", 0, 12, 100);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 22; }));
  const auto sources = by_source(ch);
  ASSERT_EQ(sources.size(), 2u);
  for (const auto& [id, lines] : sources)
    EXPECT_TRUE(lines == expected("same", 0, 10, 100) || lines == expected("same", 0, 12, 100));
}

// ...after a restart too: its cut is in the generation's slot. A copy of the generation (another
// inode: copytruncate's, met after the restart) still resumes it where it was.
TEST(TailSourceTest, ACutGenerationIsResumedByItsCopyNotByItsFileAfterARestart) {
  StatusFile t;
  auto& [dir, ch, log] = t;
  const std::map<std::string, ingest::OptionValues::Value> opts = {{"paths", Strings{(dir / "status.log*").string()}}};
  ASSERT_NO_FATAL_FAILURE(t.copied_read_and_cut(opts));
  append_lines(log, "same", 0, 12, 100);  // as long as its old generation, and longer
  append_lines(dir / "copy.tmp", "copy", 10, 12, 100);
  std::filesystem::rename(dir / "copy.tmp", dir / "status.log.1");
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 24; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 24u);
  const auto sources = by_source(ch);
  ASSERT_EQ(sources.size(), 2u);
  Strings resumed = expected("same", 0, 10, 100);
  for (const auto& line : expected("copy", 10, 12, 100)) resumed.push_back(line);
  for (const auto& [id, lines] : sources) EXPECT_TRUE(lines == resumed || lines == expected("same", 0, 12, 100));
}

// A copy that resumed a cut generation, cut in turn and written again as long: after a restart it
// is read whole too (the slot names the last file the generation was cut from).
TEST(TailSourceTest, ACopyThatResumedACutGenerationAndWasCutInTurnIsReadWholeAfterARestart) {
  StatusFile t;
  auto& [dir, ch, log] = t;
  const auto copy = dir / "status.log.1";
  const std::map<std::string, ingest::OptionValues::Value> opts = {{"paths", Strings{(dir / "status.log*").string()}}};
  ASSERT_NO_FATAL_FAILURE(t.copied_read_and_cut(opts));
  append_lines(dir / "copy.tmp", "copy", 10, 12, 100);
  std::filesystem::rename(dir / "copy.tmp", copy);
  {
    auto src = make_source("tail", {&ch}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 12; })) << "the copy resumed it";
    std::filesystem::resize_file(copy, 0);
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().rotations == 1; }));
  }
  append_lines(copy, "same", 0, 12, 100);  // the copy's inode, as long as the generation, same start
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 24; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 24u);
  EXPECT_EQ(by_source(ch).size(), 2u);
}

// copytruncate while the application writes: the tail read past the copy's end before the
// truncation, so the copy (matched by the patterns) holds nothing unread. It is not read again,
// whether it shows up before or after the truncation is seen, nor after a restart (its instance
// slot says so: birth times needed; the new file's 5 lines are short, too).
TEST(TailSourceTest, ACopytruncateCopyShorterThanWhatWasReadIsNotReadAgain) {
  for (const bool copy_first : {true, false}) {
    SCOPED_TRACE(copy_first ? "copy seen before the truncation" : "copy seen after the truncation");
    TempDir dir;
    SKIP_WITHOUT_BIRTH_TIMES(dir);
    auto ch = core::Channel::create(dir / "c.chan", cfg());
    const auto log = dir / "app.log";
    auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "app.log*").string()}}});
    append_lines(log, "a", 0, 100);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 100; }));
    std::filesystem::copy_file(log, dir / "copy.tmp");  // the copy
    append_lines(log, "a", 100, 103);                  // written meanwhile, read by the tail
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 103; }));
    if (copy_first) {
      std::filesystem::rename(dir / "copy.tmp", dir / "app.log.1");
      ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 2; }));
      for (int i = 0; i < 3; ++i) (void)src->do_work();
      ASSERT_EQ(ch.stats().records_written, 103u) << "the copy, while its original is whole, read";
    }
    std::filesystem::resize_file(log, 0);  // the truncation
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().rotations == 1; }));
    if (!copy_first) std::filesystem::rename(dir / "copy.tmp", dir / "app.log.1");
    append_lines(log, "b", 0, 5);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 108; }));
    for (int i = 0; i < 10; ++i) (void)src->do_work();
    EXPECT_EQ(ch.stats().records_written, 108u) << "the copy was read again";
    Strings want = expected("a", 0, 103);
    for (const auto& l : expected("b", 0, 5)) want.push_back(l);
    EXPECT_EQ(all_payloads(ch), want);
    EXPECT_EQ(src->metrics().open_files, 2u) << "the copy is still followed, should it grow";
    src.reset();  // a restart knows it too
    src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "app.log*").string()}}});
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 2; }));
    for (int i = 0; i < 10; ++i) (void)src->do_work();
    EXPECT_EQ(ch.stats().records_written, 108u) << "the copy was read again after a restart";
    // Written to (nobody does that): no longer a copy of what was read, read as a new file.
    append_lines(dir / "app.log.1", "c", 0, 2);
    EXPECT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 108 + 102; }));
  }
}

// A file cut again and again to the same first bytes (a status file written with `>`) makes a
// chain of generations; those forgotten make room, the one read moves to the chain's first key:
// the table does not fill, the chain does not grow, and a restart resumes the one read.
TEST(TailSourceTest, AChainOfGenerationsCutOneAfterAnotherDoesNotGrow) {
  TempDir dir;
  auto c = cfg();
  c.source_slots = 16;
  auto ch = core::Channel::create(dir / "c.chan", c);
  const auto log = dir / "status.log";
  const std::map<std::string, ingest::OptionValues::Value> opts = {
      {"paths", Strings{log.string()}}, {"forget_after_ms", std::int64_t{0}}, {"rotate_wait_ms", std::int64_t{0}}};
  append_lines(log, "same", 0, 10, 100);
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
  std::uint64_t written = 10;
  for (int cut = 1; cut <= 30; ++cut) {
    std::filesystem::resize_file(log, 0);
    append_lines(log, "same", 0, 5, 100);  // shorter than the generation before: cut, seen so
    written += 5;
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == written; })) << "cut " << cut;
    append_lines(log, "same", 5, 10, 100);
    written += 5;
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == written; })) << "cut " << cut;
    for (int i = 0; i < 3; ++i) (void)src->do_work();
    EXPECT_LE(ch.source_table().in_use, 2u) << "cut " << cut << ": the generation read, and its key";
  }
  src.reset();
  append_lines(log, "same", 10, 12, 100);
  auto again = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*again, [&] { return ch.stats().records_written == written + 2; }));
  for (int i = 0; i < 10; ++i) (void)again->do_work();
  EXPECT_EQ(ch.stats().records_written, written + 2) << "the generation read was resumed, not read again";
  const auto sources = by_source(ch);
  EXPECT_EQ(sources.size(), 31u);
}

// What a collector left behind when it stopped (a file deleted while it did not run) is found by
// the next one and forgotten forget_after later.
TEST(TailSourceTest, AGenerationWhoseFileWentAwayWhileNoCollectorRanIsForgottenByTheNextOne) {
  ReadThenStopped t;
  ASSERT_EQ(t.ch.source_table().in_use, 2u);
  std::filesystem::remove(t.log);
  auto src = t.restart(0);
  EXPECT_TRUE(pump_until(*src, [&] { return t.ch.source_table().in_use == 0; }));
}

// ...and said ended from then in its key, so that restarts more often than forget_after still
// forget it.
TEST(TailSourceTest, AGenerationFoundWithoutItsFileAtAStartIsSaidEndedFromThen) {
  ReadThenStopped t;
  ASSERT_EQ(t.pointer.position & 0xFFFF'FFFFu, 0u) << "read when it stopped";
  std::filesystem::remove(t.log);
  auto src = t.restart(3600000);
  EXPECT_TRUE(pump_until(*src, [&] { return (t.ch.source_position(t.key)->position & 0xFFFF'FFFFu) != 0; }));
  EXPECT_EQ(t.ch.source_table().in_use, 2u);
}

// A key of this collector's whose release was killed part-way (a pointer to no id) is given back
// by the next one.
TEST(TailSourceTest, AKeyWhoseReleaseWasKilledPartWayIsGivenBackAtTheNextStart) {
  ReadThenStopped t;
  {
    core::Producer p = t.ch.producer();
    const core::SourcePosition torn{t.key, 0, t.pointer.position};
    ASSERT_EQ(p.append_batch({}, &torn), core::AppendStatus::kOk);
  }
  std::filesystem::remove(t.log);
  auto src = t.restart(3600000);
  EXPECT_TRUE(pump_until(*src, [&] { return !t.ch.source_position(t.key).has_value(); }));
  EXPECT_EQ(t.ch.source_table().in_use, 1u) << "the id whose key is gone stays (a leak, not a loss)";
}

// A collector forgets only what it left: another's generations in the same channel are its own.
TEST(TailSourceTest, ACollectorDoesNotForgetAnotherCollectorsGenerations) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  append_lines(dir / "a.log", "a", 0, 10);
  append_lines(dir / "b.log", "b", 0, 10);
  auto b = make_source("tail", {&ch}, {{"paths", Strings{(dir / "b.log").string()}}}, "b");
  ASSERT_TRUE(pump_until(*b, [&] { return ch.stats().records_written == 10; }));
  auto a = make_source("tail", {&ch}, {{"paths", Strings{(dir / "a.log").string()}}, {"forget_after_ms", std::int64_t{0}}},
                       "a");
  ASSERT_TRUE(pump_until(*a, [&] { return ch.stats().records_written == 20; }));
  for (int i = 0; i < 10; ++i) (void)a->do_work();
  EXPECT_EQ(ch.source_table().in_use, 4u) << "a's file and key, and b's";
}

// Two keys naming one generation (a forget killed between moving a generation to an earlier key
// and giving the later one back): the later key is forgotten, and the generation's id is kept
// while the earlier key still names it.
TEST(TailSourceTest, AGenerationNamedByTwoKeysKeepsItsIdWhileEitherIsKept) {
  ReadThenStopped t;
  auto& ch = t.ch;
  const std::uint64_t k0 = t.key;
  const std::uint64_t id = t.pointer.next_sequence;
  const std::uint64_t live = t.pointer.position & ~std::uint64_t{0xFFFF'FFFFu};
  const auto now = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count());
  {
    core::Producer p = ch.producer();
    const core::SourcePosition recent{k0, id, live | now};              // ended just now
    const core::SourcePosition old{next_key(k0), id, live | (now - 7200)};  // ended two hours ago
    ASSERT_EQ(p.append_batch({}, &recent), core::AppendStatus::kOk);
    ASSERT_EQ(p.append_batch({}, &old), core::AppendStatus::kOk);
  }
  ASSERT_EQ(ch.source_table().in_use, 3u);
  std::filesystem::remove(t.log);
  auto src = t.restart(3600000);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 2; })) << "the later key forgotten";
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(ch.source_table().in_use, 2u);
  EXPECT_TRUE(ch.source_position(id).has_value()) << "the earlier key still names it";
}

// A generation ended before a restart is forgotten forget_after after it ended, as its key's
// slot says, not forget_after after the restart.
TEST(TailSourceTest, AGenerationEndedBeforeARestartIsForgottenByWhenItEnded) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  append_lines(log, "a", 0, 10);
  const std::uint64_t key = content_key("test", log);
  const std::map<std::string, ingest::OptionValues::Value> hour = {
      {"paths", Strings{log.string()}}, {"rotate_wait_ms", std::int64_t{0}}, {"forget_after_ms", std::int64_t{3600000}}};
  {
    auto src = make_source("tail", {&ch}, hour);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
    std::filesystem::remove(log);
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; }));
  }
  const std::optional<core::SourcePosition> ended = ch.source_position(key);
  ASSERT_TRUE(ended.has_value());
  {  // restarted within the hour: kept
    auto src = make_source("tail", {&ch}, hour);
    for (int i = 0; i < 10; ++i) (void)src->do_work();
    EXPECT_EQ(ch.source_table().in_use, 2u);
  }
  {  // as if it had ended two hours ago
    core::Producer p = ch.producer();
    const core::SourcePosition earlier{key, ended->next_sequence, ended->position - 7200};
    ASSERT_EQ(p.append_batch({}, &earlier), core::AppendStatus::kOk);
  }
  auto src = make_source("tail", {&ch}, hour);
  EXPECT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 0; }));
}

// A chain left with an ended generation before the one read: after a restart the ended one is
// forgotten, and the one read moves to the chain's first key.
TEST(TailSourceTest, AChainLeftWithAnEndedGenerationIsShortenedAfterARestart) {
  StatusFile t;
  auto& [dir, ch, log] = t;
  {
    auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
    std::filesystem::resize_file(log, 0);
    append_lines(log, "same", 0, 5, 100);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 15; }));
  }
  ASSERT_EQ(ch.source_table().in_use, 4u) << "two generations, each with its key";
  const std::map<std::string, ingest::OptionValues::Value> opts = {{"paths", Strings{log.string()}},
                                                                   {"forget_after_ms", std::int64_t{0}}};
  {
    auto src = make_source("tail", {&ch}, opts);
    EXPECT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 2; }));
  }
  append_lines(log, "same", 5, 7, 100);
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 17; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 17u) << "the generation read was resumed at its first key";
}

// Files rotated out of the patterns or deleted give their slots back after forget_after: a
// long-running agent on rotating logs does not fill the source table.
TEST(TailSourceTest, RotatedAndDeletedFilesGiveTheirSourceSlotsBackAfterForgetAfter) {
  TempDir dir;
  auto c = cfg();
  c.source_slots = 16;  // 8 generations at a time
  auto ch = core::Channel::create(dir / "c.chan", c);
  const auto log = dir / "app.log";
  std::vector<std::string> errors;
  const ingest::SourceDescriptor* d = ingest::find_source("tail");
  ingest::OptionValues v = ingest::defaults_of(*d);
  v.set("paths", Strings{log.string()});
  v.set("rotate_wait_ms", std::int64_t{0});
  v.set("forget_after_ms", std::int64_t{0});
  ingest::SourceContext ctx;
  ctx.name = "t";
  ctx.channels = {&ch};
  ctx.log = [&errors](std::string_view level, const std::string& m) {
    if (level == "error") errors.push_back(m);
  };
  auto src = d->create(v, std::move(ctx));
  Strings want;
  for (int run = 0; run < 40; ++run) {
    const std::string prefix = "run" + std::to_string(run);
    append_lines(log, prefix, 0, 10);
    const Strings lines = expected(prefix, 0, 10);
    want.insert(want.end(), lines.begin(), lines.end());
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == want.size(); }))
        << "run " << run << ": " << (errors.empty() ? "" : errors.front());
    if (run % 2 == 0) {
      std::filesystem::remove(log);
    } else {
      std::filesystem::rename(log, dir / ("app.log." + std::to_string(run)));
    }
    ASSERT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 0; })) << "run " << run;
  }
  EXPECT_EQ(all_payloads(ch), want);
  EXPECT_EQ(by_source(ch).size(), 40u);
  EXPECT_TRUE(errors.empty()) << errors.front();
}

// Once forgotten, a file starting with the same bytes is new: read whole under an id of its own,
// so that a consumer deduplicating by identity does not drop its lines as the old file's.
TEST(TailSourceTest, AFileStartingLikeAForgottenOneIsReadUnderANewIdentity) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  const std::map<std::string, ingest::OptionValues::Value> opts = {
      {"paths", Strings{log.string()}}, {"forget_after_ms", std::int64_t{0}}, {"rotate_wait_ms", std::int64_t{0}}};
  append_lines(log, "same", 0, 10);
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
  std::filesystem::remove(log);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 0; }));
  append_lines(log, "same", 0, 15);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 25; }));
  const auto sources = by_source(ch);  // also checks each source's sequences run from 0 without a gap
  ASSERT_EQ(sources.size(), 2u) << "the new file took the forgotten one's identity";
  for (const auto& [id, lines] : sources) EXPECT_TRUE(lines == expected("same", 0, 10) || lines == expected("same", 0, 15));
}

// Within forget_after, a copy of a file gone meanwhile (renamed out of the patterns, then copied
// back in) resumes it: only the lines the copy has beyond are read. Its key says it is read
// again (a stop followed by the copy's going would otherwise be forgotten by the next start from
// when the first file went, not from when the copy did).
TEST(TailSourceTest, ACopyOfAGoneFileFoundWithinForgetAfterResumesIt) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"rotate_wait_ms", std::int64_t{0}}});
  append_lines(log, "a", 0, 10);
  const std::uint64_t key = content_key("test", log);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
  std::filesystem::rename(log, dir / "app.old");
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; }));
  ASSERT_NE(ch.source_position(key)->position & 0xFFFF'FFFFu, 0u) << "said ended once gone";
  std::filesystem::copy_file(dir / "app.old", dir / "app.tmp");
  append_lines(dir / "app.tmp", "a", 10, 12);
  std::filesystem::rename(dir / "app.tmp", log);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 12; }));
  EXPECT_EQ(ch.source_position(key)->position & 0xFFFF'FFFFu, 0u) << "still said ended while read again";
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), expected("a", 0, 12));
  EXPECT_EQ(by_source(ch).size(), 1u);
}

// When an ended generation of a chain is forgotten, the one read moves to the chain's first key;
// its end, when its file goes in turn, is said there, and the key it left is not made again.
TEST(TailSourceTest, AGenerationMovedUpItsChainSaysItsEndAtTheKeyItMovedTo) {
  StatusFile t;
  auto& [dir, ch, log] = t;
  const std::uint64_t k0 = content_key("test", log);
  auto src = make_source("tail", {&ch},
                         {{"paths", Strings{log.string()}},
                          {"forget_after_ms", std::int64_t{2000}},
                          {"rotate_wait_ms", std::int64_t{0}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
  std::filesystem::resize_file(log, 0);
  append_lines(log, "same", 0, 5, 100);  // cut: a second generation, at the chain's second key
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 15; }));
  ASSERT_TRUE(ch.source_position(next_key(k0)).has_value());
  ASSERT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 2; })) << "the cut generation forgotten";
  const std::optional<core::SourcePosition> moved = ch.source_position(k0);
  ASSERT_TRUE(moved.has_value());
  ASSERT_FALSE(ch.source_position(next_key(k0)).has_value());
  std::filesystem::remove(log);
  // The pass that closes it says its end; forgetting it is two seconds later.
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; }));
  const std::optional<core::SourcePosition> ended = ch.source_position(k0);
  ASSERT_TRUE(ended.has_value());
  EXPECT_EQ(ended->next_sequence, moved->next_sequence);
  EXPECT_NE(ended->position & 0xFFFF'FFFFu, 0u) << "its end said at the key it moved to";
  EXPECT_FALSE(ch.source_position(next_key(k0)).has_value()) << "the key it left was made again";
  EXPECT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 0; }));
}

// Forgetting a chain keeps an ended generation whose forget_after has not passed, though an
// earlier one is forgotten: it moves up the chain with the one read, and a restart still finds
// where each is.
TEST(TailSourceTest, AChainForgetsOnlyTheGenerationsWhoseTimeHasCome) {
  StatusFile t;
  auto& [dir, ch, log] = t;
  const std::uint64_t k0 = content_key("test", log), k1 = next_key(k0), k2 = next_key(k1);
  const std::map<std::string, ingest::OptionValues::Value> hour = {{"paths", Strings{log.string()}},
                                                                   {"forget_after_ms", std::int64_t{3600000}}};
  {
    auto src = make_source("tail", {&ch}, hour);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
    std::filesystem::resize_file(log, 0);
    append_lines(log, "same", 0, 5, 100);  // cut: generation B at k1
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 15; }));
    std::filesystem::resize_file(log, 0);
    append_lines(log, "same", 0, 3, 100);  // cut again: generation C at k2
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 18; }));
  }
  ASSERT_EQ(ch.source_table().in_use, 6u) << "three generations, each with its key";
  const std::uint64_t b = ch.source_position(k1)->next_sequence, c = ch.source_position(k2)->next_sequence;
  {  // the first generation as if it had ended two hours ago; B ended within the hour
    const core::SourcePosition a = *ch.source_position(k0);
    ASSERT_NE(a.position & 0xFFFF'FFFFu, 0u);
    core::Producer p = ch.producer();
    const core::SourcePosition earlier{k0, a.next_sequence, a.position - 7200};
    ASSERT_EQ(p.append_batch({}, &earlier), core::AppendStatus::kOk);
  }
  ASSERT_NE(ch.source_position(k1)->position & 0xFFFF'FFFFu, 0u);
  {
    auto src = make_source("tail", {&ch}, hour);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.source_table().in_use == 4; })) << "the first generation forgotten";
    for (int i = 0; i < 10; ++i) (void)src->do_work();
    EXPECT_EQ(ch.source_table().in_use, 4u) << "B, within its hour, kept";
    EXPECT_EQ(ch.source_position(k0)->next_sequence, b);
    EXPECT_EQ(ch.source_position(k1)->next_sequence, c);
    EXPECT_FALSE(ch.source_position(k2).has_value());
  }
  append_lines(log, "same", 3, 6, 100);
  auto src = make_source("tail", {&ch}, hour);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 21; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 21u) << "C resumed where it was, at its new key";
  EXPECT_EQ(by_source(ch).size(), 3u);
}

// A channel an earlier build wrote names a content generation by its key alone (no pointer):
// it is resumed, not read again.
TEST(TailSourceTest, AGenerationAnEarlierBuildStartedIsResumed) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  append_lines(log, "a", 0, 10);
  const std::string name = "test";
  const std::uint64_t old_id = content_key(name, log);
  const auto size = static_cast<std::uint64_t>(std::filesystem::file_size(log));
  {
    core::Producer p = ch.producer();
    const core::SourcePosition at{old_id, 10, size};
    ASSERT_EQ(p.append_batch({}, &at), core::AppendStatus::kOk);
  }
  append_lines(log, "a", 10, 15);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}}, name);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 5; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  const auto records = all_records(ch);
  ASSERT_EQ(records.size(), 5u);
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].id.source_id, old_id);
    EXPECT_EQ(records[i].id.sequence, 10 + i);
    EXPECT_EQ(records[i].payload, line_text("a", 10 + static_cast<int>(i)));
  }
}

// A key slot a release killed part-way left (its fields cleared one by one: a pointer to no id,
// or nothing at offset 0) is no generation: the file is read whole, under a new id.
TEST(TailSourceTest, AKeySlotAKilledReleaseLeftHalfClearedIsTakenForNone) {
  constexpr std::uint64_t kPointer = 0xFE00'0000'0000'0000ull;  // a pointer (its tag does not matter here)
  for (const std::uint64_t position : {kPointer, std::uint64_t{0}}) {
    TempDir dir;
    auto ch = core::Channel::create(dir / "c.chan", cfg());
    const auto log = dir / "app.log";
    append_lines(log, "a", 0, 10);
    const std::uint64_t key = content_key("test", log);
    {
      core::Producer p = ch.producer();
      const core::SourcePosition torn{key, 0, position};
      ASSERT_EQ(p.append_batch({}, &torn), core::AppendStatus::kOk);
    }
    auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; })) << position;
    const auto sources = by_source(ch);
    ASSERT_EQ(sources.size(), 1u);
    EXPECT_NE(sources.begin()->first, key) << position;
    EXPECT_EQ(sources.begin()->second, expected("a", 0, 10));
  }
}

TEST(TailSourceTest, DeletedAndRecreatedFileIsReadAsNewContent) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const auto log = dir / "app.log";
  append_lines(log, "before", 0, 20);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"rotate_wait_ms", std::int64_t{0}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 20; }));
  std::filesystem::remove(log);
  for (int i = 0; i < 5; ++i) (void)src->do_work();
  append_lines(log, "after", 0, 20);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 40; }));
  EXPECT_EQ(all_payloads(ch).back(), line_text("after", 19));
}

TEST(TailSourceTest, OversizeLinesAreSplitOrRejectedAndCountedNeverFatal) {
  TempDir dir;
  const auto log = dir / "big.log";
  append_lines(log, "pre", 0, 5);
  { std::ofstream(log, std::ios::app) << std::string(10 << 20, 'X') << "\n"; }  // a 10 MB line
  append_lines(log, "post", 0, 5);
  {
    auto ch = core::Channel::create(dir / "split.chan", cfg(64 << 20));
    auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"max_line", std::int64_t{1 << 20}}});
    // Ten pieces of 1 MiB: nine cut at max_line, the tenth ends at the newline.
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 5 + 10 + 5; }));
    EXPECT_EQ(src->metrics().oversize, 1u) << "one oversize line";
    Strings all = all_payloads(ch);
    for (int i = 5; i < 15; ++i) EXPECT_EQ(all[static_cast<std::size_t>(i)], std::string(1 << 20, 'X'));
    EXPECT_EQ(all[15], line_text("post", 0));
    EXPECT_EQ(all.back(), line_text("post", 4));
  }
  {
    auto ch = core::Channel::create(dir / "reject.chan", cfg());
    auto src = make_source("tail", {&ch},
                           {{"paths", Strings{log.string()}}, {"max_line", std::int64_t{1 << 20}},
                            {"oversize", std::string("reject")}});
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
    for (int i = 0; i < 10; ++i) (void)src->do_work();
    EXPECT_EQ(src->metrics().rejected, 1u);
    EXPECT_EQ(src->metrics().oversize, 1u);
    Strings want = expected("pre", 0, 5);
    for (auto& s : expected("post", 0, 5)) want.push_back(s);
    EXPECT_EQ(all_payloads(ch), want);
  }
}

TEST(TailSourceTest, PassesInvalidUtf8AndNulBytesThrough) {
  TempDir dir;
  const auto log = dir / "bin.log";
  std::string weird = std::string("pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad pad\n") +
                      std::string("nul\0inside\xff\xfe", 12) + "\n";
  weird += std::string(300, 'z') + "\n";
  { std::ofstream(log, std::ios::binary) << weird; }
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3; }));
  EXPECT_EQ(all_payloads(ch)[1], std::string("nul\0inside\xff\xfe", 12));
}

TEST(TailSourceTest, FollowsAThousandFilesInOneGlob) {
  TempDir dir;
  std::filesystem::create_directories(dir / "many");
  for (int f = 0; f < 1000; ++f) append_lines(dir / "many" / ("f" + std::to_string(f) + ".log"), "file" + std::to_string(f), 0, 10);
  auto ch = core::Channel::create(dir / "c.chan", cfg(64 << 20));
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "many" / "*.log").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10000; }, std::chrono::seconds(60)));
  EXPECT_EQ(by_source(ch).size(), 1000u);
  EXPECT_EQ(src->metrics().open_files, 1000u);
}

// A file shorter than fingerprint_bytes is read at once (by its inode and birth time); once it
// holds them it goes on as a source of its content's identity, from the offset it had reached:
// every line once, each source dense from sequence 0, into every channel.
TEST(TailSourceTest, AShortFileIsReadAtOnceAndGoesOnUnderItsContentsIdentityOnceLongEnough) {
  TinyIntoTwoChannels t;
  SKIP_WITHOUT_BIRTH_TIMES(t.dir);
  ASSERT_NO_FATAL_FAILURE(t.read_then_grown());
  ASSERT_NO_FATAL_FAILURE(t.grown_again_and_resumed());
  for (const core::Channel* ch : {&t.c1, &t.c2}) {
    const auto sources = by_source(*ch);  // checks each source's sequences
    std::vector<std::size_t> sizes;
    for (const auto& [id, lines] : sources) sizes.push_back(lines.size());
    std::sort(sizes.begin(), sizes.end());
    EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 5})) << "the short part, then the rest";
  }
}

// A move to the content's identity marked in one channel only (a crash, or a full table, cut the
// marking short): a restart takes it as moved in every channel, finishes the mark, and resumes
// the content generation in both; nothing is read again under the short file's identity.
TEST(TailSourceTest, AMoveMarkedInOnlyOneChannelIsFinishedAtTheNextStart) {
  TinyIntoTwoChannels t;
  SKIP_WITHOUT_BIRTH_TIMES(t.dir);
  ASSERT_NO_FATAL_FAILURE(t.read_then_grown());
  auto& [dir, log, c1, c2, opts] = t;
  auto moved_mark = [](const core::Channel& ch) -> std::optional<core::SourcePosition> {
    for (const core::SourcePosition& sp : ch.sources())
      if (sp.position == ~std::uint64_t{0}) return sp;
    return std::nullopt;
  };
  const std::optional<core::SourcePosition> mark = moved_mark(c2);
  ASSERT_TRUE(mark.has_value()) << "the short file's identity says where it moved";
  ASSERT_TRUE(moved_mark(c1).has_value());
  {  // the second channel's mark undone: its slot as before the move (one event, 5 bytes)
    core::Producer p = c2.producer();
    const core::SourcePosition before{mark->source_id, 1, 5};
    ASSERT_EQ(p.append_batch({}, &before), core::AppendStatus::kOk);
  }
  ASSERT_NO_FATAL_FAILURE(t.grown_again_and_resumed());
  const std::optional<core::SourcePosition> again = moved_mark(c2);
  ASSERT_TRUE(again.has_value()) << "the mark finished in the second channel";
  EXPECT_EQ(again->source_id, mark->source_id);
  EXPECT_EQ(again->next_sequence, mark->next_sequence);
}

// Followed while short, stopped, grown past fingerprint_bytes meanwhile: the restart resumes it
// where it was (by its instance), not from the start under its content's identity.
TEST(TailSourceTest, AShortFileThatGrewWhileNoCollectorRanIsResumedWhereItWas) {
  ShortFile file("first\n");
  SKIP_WITHOUT_BIRTH_TIMES(file.dir);
  auto& [dir, log, ch, opts] = file;
  {
    auto src = make_source("tail", {&ch}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
  }
  { std::ofstream(log, std::ios::app) << "second\n"; }
  {
    auto src = make_source("tail", {&ch}, opts);  // still short
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 2; }));
  }
  append_lines(log, "long", 0, 5);
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 7; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  Strings want{"first", "second"};
  for (auto& l : expected("long", 0, 5)) want.push_back(l);
  EXPECT_EQ(all_payloads(ch), want);
  EXPECT_EQ(by_source(ch).size(), 2u);
}

// A short file truncated while followed starts a new generation of its inode; after a restart
// with the file grown past where the old generation ended, the new one is resumed, not the old.
TEST(TailSourceTest, AShortFileTruncatedThenGrownPastItsOldEndResumesItsNewGenerationAfterARestart) {
  ShortFile file("first line\n");
  SKIP_WITHOUT_BIRTH_TIMES(file.dir);
  auto& [dir, log, ch, opts] = file;
  {
    auto src = make_source("tail", {&ch}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
    std::filesystem::resize_file(log, 0);
    { std::ofstream(log, std::ios::app) << "x\n"; }
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 2; }));
  }
  { std::ofstream(log, std::ios::app) << "abcdefghijkl\n"; }  // now longer than the first generation
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), (Strings{"first line", "x", "abcdefghijkl"}));
  EXPECT_EQ(by_source(ch).size(), 2u);
}

// Cut to nothing, then written again past where it was: the new line is read whole, from the
// start, not from the old generation's end.
TEST(TailSourceTest, AShortFileCutToNothingThenWrittenPastItsOldEndIsReadFromTheStart) {
  ShortFile file("started ok\n");
  SKIP_WITHOUT_BIRTH_TIMES(file.dir);
  auto& [dir, log, ch, opts] = file;
  for (const bool restart : {false, true}) {
    std::unique_ptr<ingest::Source> src = make_source("tail", {&ch}, opts);
    const std::uint64_t before = ch.stats().records_written;
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == before + 1; }));
    std::filesystem::resize_file(log, 0);
    for (int i = 0; i < 5; ++i) (void)src->do_work();  // it sees the file empty
    if (restart) src = make_source("tail", {&ch}, opts);
    for (int i = 0; i < 5; ++i) (void)src->do_work();
    { std::ofstream(log, std::ios::app) << "a longer line than the first one\n"; }
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == before + 2; }));
    for (int i = 0; i < 10; ++i) (void)src->do_work();
    std::filesystem::resize_file(log, 0);
    { std::ofstream(log, std::ios::app) << "started ok\n"; }
  }
  EXPECT_EQ(all_payloads(ch), (Strings{"started ok", "a longer line than the first one", "started ok",
                                       "a longer line than the first one"}));
}

// Rewritten (`>`) with a longer line while no collector ran: the restart does not resume the old
// generation in the middle of the new line (its position does not follow a line's end there).
TEST(TailSourceTest, AShortFileRewrittenLongerWhileNoCollectorRanIsReadFromItsStart) {
  ShortFile file("status: ok\n", "status.log");
  SKIP_WITHOUT_BIRTH_TIMES(file.dir);
  auto& [dir, log, ch, opts] = file;
  {
    auto src = make_source("tail", {&ch}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
  }
  { std::ofstream(log) << "status: degraded since noon\n"; }
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 2; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), (Strings{"status: ok", "status: degraded since noon"}));
}

// start_at = "end" is for files the channel has never seen: a short file followed before and
// cut while no collector ran is read from its start, as a new generation of a known file.
TEST(TailSourceTest, StartAtEndDoesNotSkipANewGenerationOfAShortFileFollowedBefore) {
  ShortFile file("old line\n");
  SKIP_WITHOUT_BIRTH_TIMES(file.dir);
  auto& [dir, log, ch, opts] = file;
  opts["start_at"] = std::string("end");
  {
    auto src = make_source("tail", {&ch}, opts);
    for (int i = 0; i < 5; ++i) (void)src->do_work();
    { std::ofstream(log, std::ios::app) << "new 1\n"; }
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
  }
  { std::ofstream(log) << "x\n"; }
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 2; }));
  EXPECT_EQ(all_payloads(ch), (Strings{"new 1", "x"}));
}

// A file picked up short whose next line is longer than max_line and still being written (no
// newline yet) when the collector stops: its pieces were committed inside the line. The restart
// goes on from the last piece, not from the start (the file is long now: the check that a short
// one's position ends a line does not apply).
TEST(TailSourceTest, AFileStoppedInsideASplitLineGoesOnFromItsLastPieceAfterARestart) {
  ShortFile file("a\n");
  SKIP_WITHOUT_BIRTH_TIMES(file.dir);
  auto& [dir, log, ch, opts] = file;
  opts["max_line"] = std::int64_t{16};
  {
    auto src = make_source("tail", {&ch}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 1; }));
    { std::ofstream(log, std::ios::app) << std::string(40, 'x'); }  // short still, no newline yet
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3; }));  // 2 pieces of 16
    { std::ofstream(log, std::ios::app) << std::string(60, 'x'); }  // past 64 bytes, inside the line
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 7; }));  // 4 more
    for (int i = 0; i < 5; ++i) (void)src->do_work();
  }
  { std::ofstream(log, std::ios::app) << "yyyy\n"; }
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 8; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  Strings want{"a"};
  for (int i = 0; i < 6; ++i) want.push_back(std::string(16, 'x'));
  want.push_back("xxxxyyyy");
  EXPECT_EQ(all_payloads(ch), want);
}

// Two channels, one refusing the short file's batches for a while (full): the file grows past
// fingerprint_bytes meanwhile. It moves to its content's identity only once the lagging channel
// has caught up: the channel ahead does not get those lines again under the new identity.
TEST(TailSourceTest, AShortFileMovesToItsContentsIdentityOnlyOnceEveryChannelHasCaughtUp) {
  TempDir dir;
  SKIP_WITHOUT_BIRTH_TIMES(dir);
  const auto log = dir / "short.log";
  auto big = core::Channel::create(dir / "big.chan", cfg());
  auto small = core::Channel::create(dir / "small.chan", cfg(64 << 10));
  core::Consumer reader = small.consumer("reader");  // not reading yet: the small ring fills
  auto src = make_source("tail", {&big, &small},
                         {{"paths", Strings{log.string()}}, {"fingerprint_bytes", std::int64_t{65536}}}, "test",
                         {.on_full = core::FullPolicy::kFailFast});
  Strings want;
  for (int i = 0; i < 600; ++i) {  // about 60 KB of 100-byte lines: short still, more than the ring takes
    std::ofstream(log, std::ios::app) << std::string(95, 'a') << " " << std::to_string(1000 + i) << "\n";
    want.push_back(std::string(95, 'a') + " " + std::to_string(1000 + i));
  }
  // The small channel refuses a batch the big one took (the tail commits to them in order).
  ASSERT_TRUE(pump_until(*src, [&] { return small.stats().full_rejections != 0; }));
  ASSERT_GT(big.stats().records_written, small.stats().records_written) << "nothing lags";
  append_lines(log, "long", 0, 300);  // past 64 KiB now
  ASSERT_GT(std::filesystem::file_size(log), 65536u);
  for (auto& l : expected("long", 0, 300)) want.push_back(l);
  for (int i = 0; i < 5; ++i) (void)src->do_work();
  std::uint64_t read = 0;
  ASSERT_TRUE(pump_until(*src, [&] {
    read += read_and_commit(reader);
    return read == want.size() && big.stats().records_written == want.size();
  })) << read << " in the small channel, " << big.stats().records_written << " in the big one";
  append_lines(log, "after", 0, 10);  // read under the content's identity
  for (auto& l : expected("after", 0, 10)) want.push_back(l);
  ASSERT_TRUE(pump_until(*src, [&] {
    read += read_and_commit(reader);
    return read == want.size() && big.stats().records_written == want.size();
  })) << read << " in the small channel, " << big.stats().records_written << " in the big one";
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(big), want);
  EXPECT_EQ(by_source(big).size(), 2u);
}

// A file that starts like one followed before (the same first fingerprint_bytes) moves to a later
// generation of that content than the other took; a restart, with the file grown past where the
// other one ended, resumes the generation it moved to, not the other's.
TEST(TailSourceTest, AMovedFileResumesTheGenerationItMovedToNotAnEarlierOneWithTheSameStart) {
  TempDir dir;
  SKIP_WITHOUT_BIRTH_TIMES(dir);
  const std::string header(100, 'H');
  const auto first = dir / "first.log", second = dir / "second.log";
  { std::ofstream(first) << header << "\nfirst 0\nfirst 1\n"; }  // shorter lines than the second's
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  const std::map<std::string, ingest::OptionValues::Value> opts{
      {"paths", Strings{(dir / "*.log").string()}}, {"fingerprint_bytes", std::int64_t{64}}, {"rotate_wait_ms", std::int64_t{0}}};
  {
    auto src = make_source("tail", {&ch}, opts);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3; }));
    std::filesystem::rename(first, dir / "first.old");  // gone: read to its end and closed
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; }));
    { std::ofstream(second) << header.substr(0, 20); }  // short: identified by its instance
    for (int i = 0; i < 5; ++i) (void)src->do_work();
    { std::ofstream(second, std::ios::app) << header.substr(20) << "\n"; }
    append_lines(second, "second", 0, 2);
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 6; }));
  }
  append_lines(second, "second", 2, 10);  // now longer than the first file was
  auto src = make_source("tail", {&ch}, opts);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 14; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  Strings want{header, "first 0", "first 1", header};
  for (auto& l : expected("second", 0, 10)) want.push_back(l);
  EXPECT_EQ(all_payloads(ch), want);
  std::vector<std::size_t> sizes;
  for (const auto& [id, lines] : by_source(ch)) sizes.push_back(lines.size());
  std::sort(sizes.begin(), sizes.end());
  EXPECT_EQ(sizes, (std::vector<std::size_t>{3, 11})) << "each file's lines in a source of their own";
}

// Short files that come and go (a job's log per run, deleted or rotated away) hold a slot of the
// source table only while they are followed: many more of them than the table has slots are all
// read.
TEST(TailSourceTest, ShortFilesThatAreGoneGiveTheirSourceSlotsBack) {
  TempDir dir;
  SKIP_WITHOUT_BIRTH_TIMES(dir);
  auto c = cfg();
  c.source_slots = 16;
  auto ch = core::Channel::create(dir / "c.chan", c);
  std::vector<std::string> errors;
  const ingest::SourceDescriptor* d = ingest::find_source("tail");
  ingest::OptionValues v = ingest::defaults_of(*d);
  v.set("paths", Strings{(dir / "*.log").string()});
  v.set("rotate_wait_ms", std::int64_t{0});
  ingest::SourceContext ctx;
  ctx.name = "t";
  ctx.channels = {&ch};
  ctx.log = [&errors](std::string_view level, const std::string& m) {
    if (level == "error") errors.push_back(m);
  };
  auto src = d->create(v, std::move(ctx));
  Strings want;
  for (int run = 0; run < 40; ++run) {
    const auto log = dir / ("job" + std::to_string(run) + ".log");
    { std::ofstream(log) << "run " << run << " done\n"; }
    want.push_back("run " + std::to_string(run) + " done");
    ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == want.size(); }))
        << "run " << run << ": " << (errors.empty() ? "" : errors.front());
    if (run % 2 == 0) {
      std::filesystem::remove(log);
    } else {  // rotated out of the patterns: deleted later, when nobody follows it
      std::filesystem::rename(log, dir / ("job" + std::to_string(run) + ".old"));
    }
    ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; })) << "run " << run;
  }
  EXPECT_EQ(all_payloads(ch), want);
  EXPECT_TRUE(errors.empty()) << errors.front();
}

TEST(TailSourceTest, ReplicatesToEveryChannelAndResumesFromTheSlowestOne) {
  TempDir dir;
  append_lines(dir / "a.log", "a", 0, 100);
  auto c1 = core::Channel::create(dir / "1.chan", cfg());
  {
    auto src = make_source("tail", {&c1}, {{"paths", Strings{(dir / "a.log").string()}}});
    ASSERT_TRUE(pump_until(*src, [&] { return c1.stats().records_written == 100; }));
  }
  // A second channel joins: it gets everything; the first gets only what is new.
  auto c2 = core::Channel::create(dir / "2.chan", cfg());
  append_lines(dir / "a.log", "a", 100, 120);
  auto src = make_source("tail", {&c1, &c2}, {{"paths", Strings{(dir / "a.log").string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return c2.stats().records_written == 120; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(c1), expected("a", 0, 120));
  EXPECT_EQ(all_payloads(c2), expected("a", 0, 120));
}

// A batch goes to every channel of the source in one transaction each, so it is sized for the
// smallest ring, whichever channel is listed last (the last one used to set the limit: here
// batches of 1 MiB of records, four times what the 1 MiB ring takes, retried forever).
TEST(TailSourceTest, BatchesFitTheSmallestChannelWhereverItIsListed) {
  TempDir dir;
  append_lines(dir / "a.log", "a", 0, 20000);  // 800 KB of lines: more than one batch of either ring
  auto small = core::Channel::create(dir / "small.chan", cfg(1 << 20));
  auto big = core::Channel::create(dir / "big.chan", cfg(64 << 20));
  core::Consumer reader = small.consumer("reader");  // frees the small ring as the tail fills it
  std::uint64_t read = 0;
  auto src = make_source("tail", {&small, &big}, {{"paths", Strings{(dir / "a.log").string()}}}, "test",
                         {.on_full = core::FullPolicy::kFailFast});
  ASSERT_TRUE(pump_until(*src, [&] {
    read += read_and_commit(reader);
    return read == 20000 && big.stats().records_written == 20000;
  })) << read << " in the small channel, " << big.stats().records_written << " in the big one";
  EXPECT_EQ(all_payloads(big), expected("a", 0, 20000));
}

// Lines that fill most of a batch, then one line near the largest event: the batch is
// committed before that line, not after it (together they were more than a quarter of the
// ring, refused for good).
TEST(TailSourceTest, ALongLineAfterABatchOfShortOnesStartsTheNextBatch) {
  TempDir dir;
  const auto log = dir / "a.log";
  append_lines(log, "a", 0, 2400);  // 98 KB of records: most of the 128 KiB batch of a 1 MiB ring
  const std::string longline(200'000, 'L');  // under max_payload (256 KiB - 64)
  { std::ofstream(log, std::ios::app) << longline << "\n"; }
  append_lines(log, "b", 0, 10);
  auto ch = core::Channel::create(dir / "c.chan", cfg(1 << 20));
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 2411; }, std::chrono::seconds(10)))
      << ch.stats().records_written << " records";
  const Strings all = all_payloads(ch);
  EXPECT_EQ(all[2400], longline);
  EXPECT_EQ(all.back(), line_text("b", 9));
}

// max_line above what the channel takes (the default 1 MiB against a 1 MiB ring's 256 KiB):
// lines are cut at the channel's max_payload instead, and a longer line is split like any
// oversize line, not refused by the channel forever.
TEST(TailSourceTest, MaxLineAboveTheChannelsMaxPayloadIsCutToIt) {
  TempDir dir;
  const auto log = dir / "a.log";
  const std::string big(600'000, 'B');
  append_lines(log, "pre", 0, 10);
  { std::ofstream(log, std::ios::app) << big << "\n"; }
  append_lines(log, "post", 0, 3);
  const auto c = cfg(1 << 20);
  auto ch = core::Channel::create(dir / "c.chan", c);
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}});  // max_line: 1 MiB
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10 + 3 + 3; }, std::chrono::seconds(10)))
      << ch.stats().records_written << " records";
  const Strings all = all_payloads(ch);
  std::string joined;
  for (int i = 10; i < 13; ++i) {
    EXPECT_LE(all[static_cast<std::size_t>(i)].size(), c.max_payload);
    joined += all[static_cast<std::size_t>(i)];
  }
  EXPECT_EQ(joined, big);
  EXPECT_EQ(all.back(), line_text("post", 2));
  EXPECT_EQ(src->metrics().oversize, 1u);
}

// A file renamed away while the channel is full keeps its unread lines: it is closed only once
// read to its end (it used to be closed rotate_wait after its last read, the lines lost).
TEST(TailSourceTest, AFileRotatedAwayWhileTheChannelIsFullIsReadToItsEndBeforeItIsClosed) {
  TempDir dir;
  const auto log = dir / "app.log";
  auto ch = core::Channel::create(dir / "c.chan", cfg(1 << 20));
  core::Consumer reader = ch.consumer("reader");  // reads nothing until the end: the ring fills
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"rotate_wait_ms", std::int64_t{50}}},
                         "test", {.on_full = core::FullPolicy::kFailFast});
  append_lines(log, "a", 0, 10);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 10; }));
  for (int i = 0; i < 5; ++i) (void)src->do_work();  // caught up: at its end
  append_lines(log, "a", 10, 30000);  // 1.2 MB of lines: more than the ring holds
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().full_rejections > 0; }));
  std::filesystem::rename(log, dir / "app.log.1");  // rotated away, not matched any more
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(300);
  while (std::chrono::steady_clock::now() < until) (void)src->do_work();  // rotate_wait passes, full
  std::uint64_t read = 0;
  ASSERT_TRUE(pump_until(*src, [&] {
    read += read_and_commit(reader);
    return read == 30000;
  })) << read << " lines read of 30000";
  EXPECT_EQ(all_records(ch).back().payload, line_text("a", 29999));
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; })) << "closed once read to its end";
}

// start_at = "end" is about what a file held when the agent started: a later generation of it
// (copytruncate) is read from its beginning, like any new content.
TEST(TailSourceTest, StartAtEndDoesNotSkipTheNextGenerationOfAFilePresentAtStartup) {
  TempDir dir;
  const auto log = dir / "app.log";
  append_lines(log, "old", 0, 50);
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"start_at", std::string("end")}});
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  append_lines(log, "new", 0, 5);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 5; }));
  std::filesystem::resize_file(log, 0);  // copytruncate's truncate
  append_lines(log, "next", 0, 20);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 25; }))
      << ch.stats().records_written << " records";
  Strings want = expected("new", 0, 5);
  for (auto& s : expected("next", 0, 20)) want.push_back(s);
  EXPECT_EQ(all_payloads(ch), want);
}

// A file too short to fingerprint at start-up is not "read from its end" once it is long
// enough: what it held at start-up is skipped, what came after is read.
TEST(TailSourceTest, StartAtEndOfAShortFileSkipsOnlyWhatItHeldAtStartup) {
  TempDir dir;
  const auto log = dir / "app.log";
  { std::ofstream(log) << "early line\n"; }
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"start_at", std::string("end")}});
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  append_lines(log, "late", 0, 20);  // past the 256-byte fingerprint now
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 20; }))
      << ch.stats().records_written << " records";
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), expected("late", 0, 20));
}

// A line being written when the agent starts is not read from its middle.
TEST(TailSourceTest, StartAtEndSkipsTheRestOfALineCutAtStartup) {
  TempDir dir;
  const auto log = dir / "app.log";
  append_lines(log, "old", 0, 20);
  { std::ofstream(log, std::ios::app) << "half of a li"; }
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{log.string()}}, {"start_at", std::string("end")}});
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  { std::ofstream(log, std::ios::app) << "ne\n"; }
  append_lines(log, "new", 0, 3);
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 3; }));
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(all_payloads(ch), expected("new", 0, 3));
}

// A short file is read while it is there; deleted (or rotated away), it is closed once
// rotate_wait has passed, its lines read once and its descriptor not kept for the life of the
// agent. An empty one is closed too.
TEST(TailSourceTest, AShortFileIsReadWhileThereAndClosedOnceGone) {
  TempDir dir;
  SKIP_WITHOUT_BIRTH_TIMES(dir);
  const auto log = dir / "short.log";
  { std::ofstream(log) << "one\ntwo\n"; }
  { std::ofstream(dir / "empty.log"); }
  auto ch = core::Channel::create(dir / "c.chan", cfg());
  auto src = make_source("tail", {&ch}, {{"paths", Strings{(dir / "*.log").string()}}, {"rotate_wait_ms", std::int64_t{50}}});
  ASSERT_TRUE(pump_until(*src, [&] { return ch.stats().records_written == 2; }));
  EXPECT_EQ(src->metrics().open_files, 2u);
  std::filesystem::rename(log, dir / "short.old");
  std::filesystem::remove(dir / "empty.log");
  ASSERT_TRUE(pump_until(*src, [&] { return src->metrics().open_files == 0; }))
      << src->metrics().open_files << " files open";
  EXPECT_EQ(all_payloads(ch), (Strings{"one", "two"}));
}

}  // namespace
}  // namespace tributary::ingest
