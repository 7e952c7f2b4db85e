// The analyzer's read-ahead of a channel input (analytics/src/channel_read_ahead.h): a thread
// polls while the job processes. Every record handed over once and in order while producers
// write and the ring wraps, commits made by the thread (and the last one by stop()), a drain's
// end told only once everything written was handed over, and a prompt stop.
#include "channel_read_ahead.h"

#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <thread>
#include <vector>

#include "support/channel_util.h"
#include "support/rss.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"
#include "tributary/core/error.h"

namespace tributary::analytics::detail {
namespace {

using Clock = std::chrono::steady_clock;
using testing::payload_for;
using std::chrono::milliseconds;

// By default a few thousand records: producers wrap it many times.
core::ChannelConfig small_ring(std::uint64_t capacity = 256 * 1024) {
  core::ChannelConfig c;
  c.capacity = capacity;
  c.max_payload = 1024;
  return c;
}

std::uint64_t committed(const core::Channel& ch) { return ch.stats().consumers.at(0).committed; }

template <class Pred>
bool eventually(Pred pred, milliseconds limit = milliseconds(5000)) {
  for (const auto end = Clock::now() + limit; Clock::now() < end;) {
    if (pred()) return true;
    std::this_thread::sleep_for(milliseconds(2));
  }
  return pred();
}

void append(core::Producer& p, std::uint64_t source, std::uint64_t from, std::uint64_t n) {
  for (std::uint64_t i = from; i < from + n; ++i) {
    const std::string s = payload_for(source, i, 40 + i % 90);
    ASSERT_EQ(p.append({source, i}, std::as_bytes(std::span(s))), core::AppendStatus::kOk);
  }
}

TEST(ChannelReadAheadTest, HandsOverEveryRecordOnceInOrderWhileProducersWrapTheRing) {
  testing::TempDir dir;
  core::Channel ch = core::Channel::create(dir.path() / "c.chan", small_ring());
  core::Consumer con = ch.consumer("job");
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr std::uint64_t kPerSource = 20'000;
#else
  constexpr std::uint64_t kPerSource = 100'000;
#endif
  std::vector<std::thread> producers;
  for (std::uint64_t s = 1; s <= 2; ++s)
    producers.emplace_back([&ch, s] {
      core::Producer p = ch.producer({core::FullPolicy::kBlock, milliseconds(30'000)});
      append(p, s, 0, kPerSource);
    });
  std::map<std::uint64_t, std::uint64_t> next;  // source -> next sequence
  std::uint64_t got = 0, bad = 0, since = 0, records_since = 0, position = 0;
  {
    ChannelReadAhead ahead(ch, con, false);
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (got < 2 * kPerSource && Clock::now() < deadline) {
      const auto batch = ahead.next(milliseconds(100));
      for (const core::Record& r : batch) {
        if (r.id.sequence != next[r.id.source_id]++ ||
            testing::as_string(r.payload) != payload_for(r.id.source_id, r.id.sequence, 40 + r.id.sequence % 90))
          ++bad;
        position = r.next;
      }
      got += batch.size();
      records_since += batch.size();
      // The producers wait for space: only the thread's commits free it.
      if (++since % 4 == 0) {
        ahead.commit(position, records_since);
        records_since = 0;
      }
    }
    ahead.commit(position, records_since);
    ahead.stop();
    EXPECT_GT(ahead.batches(), 2 * kPerSource / ChannelReadAhead::kBatch);
  }
  for (auto& t : producers) t.join();
  EXPECT_EQ(got, 2 * kPerSource);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(next[1], kPerSource);
  EXPECT_EQ(next[2], kPerSource);
  EXPECT_EQ(committed(ch), position);  // stop() made the last commit asked for
  EXPECT_EQ(ch.stats().consumers.at(0).records_committed, 2 * kPerSource);
}

TEST(ChannelReadAheadTest, ADrainIsAtItsEndOnlyOnceEverythingWrittenWasHandedOver) {
  testing::TempDir dir;
  core::Channel ch = core::Channel::create(dir.path() / "c.chan", small_ring());
  core::Consumer con = ch.consumer("job");
  core::Producer p = ch.producer();
  append(p, 1, 0, 3 * ChannelReadAhead::kBatch + 7);
  ChannelReadAhead ahead(ch, con, true);
  std::uint64_t got = 0;
  // Not at its end while batches wait to be handed over, however long the thread has had.
  EXPECT_TRUE(eventually([&] {
    const auto b = ahead.next(milliseconds(100));
    got += b.size();
    return b.empty() && ahead.at_end();
  }));
  EXPECT_EQ(got, 3 * ChannelReadAhead::kBatch + 7);
  // More written: no longer at its end until that is handed over too.
  append(p, 1, got, 5);
  std::uint64_t more = 0;
  EXPECT_TRUE(eventually([&] {
    more += ahead.next(milliseconds(100)).size();
    return more == 5;
  }));
  EXPECT_TRUE(eventually([&] { return ahead.next(milliseconds(10)).empty() && ahead.at_end(); }));
}

TEST(ChannelReadAheadTest, ThePagesBehindWhatTheJobIsDoneWithLeaveTheProcess) {
  testing::TempDir dir;
  core::Channel ch = core::Channel::create(dir.path() / "c.chan", small_ring(32 << 20));
  core::Consumer con = ch.consumer("job");
  core::Producer p = ch.producer();
  constexpr std::uint64_t kEvents = 24'000;  // about 24 MiB
  for (std::uint64_t i = 0; i < kEvents; ++i) {
    const std::string s = payload_for(1, i, 1000);
    ASSERT_EQ(p.append({1, i}, std::as_bytes(std::span(s))), core::AppendStatus::kOk);
  }
  const std::uint64_t written = testing::mapped_rss_kb(dir.path() / "c.chan");
  EXPECT_GT(written, 23u * 1024);  // the producer touched them all, in this process's mapping
  ChannelReadAhead ahead(ch, con, true);
  std::uint64_t got = 0;
  bool same = true;
  ASSERT_TRUE(eventually([&] {
    for (const core::Record& r : ahead.next(milliseconds(100)))
      same = same && testing::as_string(r.payload) == payload_for(1, r.id.sequence, 1000), ++got;
    return got == kEvents && ahead.at_end();
  }));
  EXPECT_TRUE(same);
  // Still mapped once stopped: the header's pages (272 KiB), under 2 MiB not given back yet and
  // the batch the job held last, if it did (0.5 MiB).
  ahead.stop();
  EXPECT_LT(testing::mapped_rss_kb(dir.path() / "c.chan"), 4u * 1024) << "of " << written << " kB";
}

// A read-ahead whose idle waits last a minute (only an interrupted wait lets a commit or a stop
// happen within the tests' bounds), and `n` events written after its thread started (which
// finds them through the producer's wake-up).
struct IdleRig {
  explicit IdleRig(std::uint64_t n) { append(producer, 1, 0, n); }
  // Takes batches until `n` records came; returns the position after the last.
  std::uint64_t take(std::uint64_t n) {
    std::uint64_t position = 0, got = 0;
    EXPECT_TRUE(eventually([&] {
      for (const core::Record& r : ahead.next(milliseconds(100))) position = r.next, ++got;
      return got == n;
    }));
    return position;
  }
  testing::TempDir dir;
  core::Channel ch = core::Channel::create(dir.path() / "c.chan", small_ring(4 << 20));  // n, unread
  core::Consumer con = ch.consumer("job");
  core::Producer producer = ch.producer();
  ChannelReadAhead ahead{ch, con, false, milliseconds(60'000)};
};

// Someone truncates the channel file under the analyzer: the read-ahead finds nothing more and
// ends with an error naming the file, instead of waking from its wait at once again and again
// (the wait returns at once on a truncated file) and the job seeing an idle channel forever.
TEST(ChannelReadAheadTest, AChannelTruncatedUnderItEndsTheReadWithAnErrorNamingTheFile) {
  testing::TempDir dir;
  const auto path = dir.path() / "c.chan";
  core::Channel ch = core::Channel::create(path, small_ring(4 << 20));
  core::Consumer con = ch.consumer("job");
  {
    core::Producer p = ch.producer();
    append(p, 1, 0, 10);
  }
  ChannelReadAhead ahead{ch, con, false, milliseconds(50)};
  std::uint64_t got = 0;
  ASSERT_TRUE(eventually([&] {
    got += ahead.next(milliseconds(100)).size();
    return got == 10;
  }));
  std::filesystem::resize_file(path, testing::data_offset(path) + 64 * 1024);
  std::string error;
  for (const auto end = Clock::now() + milliseconds(10'000); error.empty() && Clock::now() < end;) {
    try {
      EXPECT_TRUE(ahead.next(milliseconds(100)).empty());
    } catch (const core::Error& e) {
      error = e.what();
    }
  }
  EXPECT_NE(error.find(path.string() + " was truncated"), std::string::npos) << error;
}

TEST(ChannelReadAheadTest, ACommitAskedForWhileTheThreadWaitsOnAnEmptyChannelIsMadeAtOnce) {
  IdleRig rig(10);
  const std::uint64_t position = rig.take(10);
  EXPECT_EQ(committed(rig.ch), 0u);
  rig.ahead.commit(position, 10);
  EXPECT_TRUE(eventually([&] { return committed(rig.ch) == position; }, milliseconds(10'000)));
  EXPECT_EQ(rig.ch.stats().consumers.at(0).records_committed, 10u);
}

TEST(ChannelReadAheadTest, StopsPromptlyWhileWaitingOnAnEmptyChannelThenCommitsAtOnce) {
  IdleRig rig(3);
  const std::uint64_t position = rig.take(3);
  const auto t0 = Clock::now();
  rig.ahead.stop();  // no commit asked for: only the stop's own interrupt ends the wait
  EXPECT_LT(Clock::now() - t0, milliseconds(10'000));
  EXPECT_EQ(committed(rig.ch), 0u);
  // Stopped: a commit is made at once, by the caller.
  rig.ahead.commit(position, 3);
  EXPECT_EQ(committed(rig.ch), position);
  EXPECT_EQ(rig.ch.stats().consumers.at(0).records_committed, 3u);
}

TEST(ChannelReadAheadTest, ACommitAskedForWhileEveryBatchIsFullIsMadeBeforeTheJobTakesOne) {
  IdleRig rig((ChannelReadAhead::kBatches + 2) * ChannelReadAhead::kBatch);
  // One batch taken and released (the next call), then none: the thread fills every batch.
  std::uint64_t position = 0;
  for (const core::Record& r : rig.ahead.next(milliseconds(10'000))) position = r.next;
  ASSERT_NE(position, 0u);
  ASSERT_FALSE(rig.ahead.next(milliseconds(10'000)).empty());  // held: the thread fills the rest
  ASSERT_TRUE(eventually([&] { return rig.ahead.waiting_for_room(); }));
  rig.ahead.commit(position, ChannelReadAhead::kBatch);
  EXPECT_TRUE(eventually([&] { return committed(rig.ch) == position; }, milliseconds(10'000)));
}

}  // namespace
}  // namespace tributary::analytics::detail
