// The exactly-once ledger: duplicates dropped by identity, holes filled, audit, round trip.
#include "tributary/analytics/ledger.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <set>

#include "tributary/core/error.h"

namespace tributary::analytics {
namespace {

TEST(LedgerTest, CountsInOrderEventsOnceAndDropsRepeats) {
  Ledger l;
  for (std::uint64_t i = 0; i < 1000; ++i) EXPECT_TRUE(l.mark({1, i}));
  for (std::uint64_t i = 500; i < 600; ++i) EXPECT_FALSE(l.mark({1, i}));
  EXPECT_EQ(l.duplicates(), 100u);
  const auto a = l.audit();
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].ranges.size(), 1u) << "one range per source in the normal case";
  EXPECT_EQ(a[0].counted, 1000u);
  EXPECT_EQ(a[0].gaps, 0u);
}

TEST(LedgerTest, FillsAHoleBelowTheHighWaterMarkInsteadOfDroppingIt) {
  Ledger l;
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(l.mark({7, i}));
  for (std::uint64_t i = 20; i < 30; ++i) ASSERT_TRUE(l.mark({7, i}));  // 10..19 timed out, re-sent later
  auto a = l.audit();
  EXPECT_EQ(a[0].gaps, 10u);
  EXPECT_EQ(a[0].ranges.size(), 2u);
  for (std::uint64_t i = 10; i < 20; ++i) EXPECT_TRUE(l.mark({7, i})) << i;
  a = l.audit();
  EXPECT_EQ(a[0].ranges, (std::vector<std::pair<std::uint64_t, std::uint64_t>>{{0, 29}}));
  EXPECT_EQ(a[0].gaps, 0u);
}

TEST(LedgerTest, MatchesASetOnRandomArrivalsWithCopies) {
  std::mt19937_64 rng(1);
  Ledger l;
  std::set<std::pair<std::uint64_t, std::uint64_t>> reference;
  for (int i = 0; i < 200000; ++i) {
    const core::EventId id{1 + rng() % 5, rng() % 3000};
    EXPECT_EQ(l.mark(id), reference.insert({id.source_id, id.sequence}).second);
  }
  std::uint64_t counted = 0;
  for (const auto& a : l.audit()) counted += a.counted;
  EXPECT_EQ(counted, reference.size());
}

TEST(LedgerTest, SurvivesSerializationExactly) {
  Ledger l;
  for (std::uint64_t i = 0; i < 100; ++i) (void)l.mark({3, i * 2});
  (void)l.mark({3, 4});
  (void)l.mark({9, 0});
  Ledger back = Ledger::parse(l.serialize());
  EXPECT_EQ(back.serialize().size(), l.serialize().size());
  EXPECT_EQ(back.duplicates(), 1u);
  EXPECT_FALSE(back.mark({3, 10}));
  EXPECT_TRUE(back.mark({3, 11}));
  EXPECT_THROW(Ledger::parse("12 0 5-x\n"), core::Error);
}

// The lines of a serialized ledger (its sources come in no particular order).
std::multiset<std::string> lines(const std::string& text) {
  std::multiset<std::string> out;
  for (std::size_t at = 0; at < text.size();) {
    const std::size_t nl = text.find('\n', at);
    out.insert(text.substr(at, nl - at));
    at = nl == std::string::npos ? text.size() : nl + 1;
  }
  return out;
}

// Retirement: only a source idle for the whole time (of the ledger's clock, the highest ingest
// time marked) whose sequences counted have no hole is forgotten; its totals stay.
TEST(LedgerTest, RetiresOnlySourcesIdleLongEnoughWithNoHole) {
  Ledger l;
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(l.mark({1, i}, 1000));  // whole, idle
  (void)l.mark({1, 3}, 1000);                                                   // a copy: counted as such
  for (std::uint64_t i = 0; i < 10; ++i) {
    if (i != 5) {
      ASSERT_TRUE(l.mark({2, i}, 1000));  // idle, with a hole: 5 may still come
    }
  }
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(l.mark({3, i}, 1000 + i));
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(l.mark({4, i}, 50'000));  // active
  EXPECT_EQ(l.clock_ms(), 50'000);
  EXPECT_EQ(l.retire_idle(49'000, 0), 1u) << "source 1 only (source 3 was active until 1009)";
  EXPECT_EQ(l.retired().sources, 1u);
  EXPECT_EQ(l.retired().events, 10u);
  EXPECT_EQ(l.retired().duplicates, 1u);
  EXPECT_EQ(l.duplicates(), 1u) << "the total of copies dropped stays";
  std::set<std::uint64_t> left;
  for (const auto& a : l.audit()) left.insert(a.source_id);
  EXPECT_EQ(left, (std::set<std::uint64_t>{2, 3, 4}));
  // The hole filled: source 2 is whole, and retired at the next scan once idle long enough.
  ASSERT_TRUE(l.mark({2, 5}, 1000));  // an event of source 2 now (at the clock's 50 000), however old its time
  ASSERT_TRUE(l.mark({4, 10}, 99'010));
  EXPECT_EQ(l.retire_idle(49'000, 0), 2u) << "sources 2 (idle since 50 000) and 3 (since 1 009)";
  EXPECT_EQ(l.retired().sources, 3u);
  EXPECT_EQ(l.retired().events, 30u);
  ASSERT_EQ(l.audit().size(), 1u);
  EXPECT_EQ(l.audit()[0].source_id, 4u);
  // The trade-off, as documented: a retired source's copy is not known any more.
  EXPECT_TRUE(l.mark({1, 3}, 50'000));
}

// A scan walks every source: at most once per `every_ms` of the clock.
TEST(LedgerTest, ScansForIdleSourcesAtMostOncePerInterval) {
  Ledger l;
  ASSERT_TRUE(l.mark({1, 0}, 1000));
  ASSERT_TRUE(l.mark({2, 0}, 10'000));
  EXPECT_EQ(l.retire_idle(5000, 8000), 1u) << "the first scan, at 10 000";
  ASSERT_TRUE(l.mark({3, 0}, 17'000));
  EXPECT_EQ(l.retire_idle(5000, 8000), 0u) << "source 2 is idle for 7 s, but the last scan was 7 s ago";
  ASSERT_TRUE(l.mark({3, 1}, 18'000));
  EXPECT_EQ(l.retire_idle(5000, 8000), 1u) << "source 2, at 18 000";
}

// The clock, each source's last activity and the retired totals survive a checkpoint: the
// restored ledger retires what the original would have.
TEST(LedgerTest, RetirementStateSurvivesSerialization) {
  Ledger l;
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(l.mark({1, i}, 1000));
  (void)l.mark({1, 0}, 1000);
  for (std::uint64_t i = 0; i < 5; ++i) ASSERT_TRUE(l.mark({2, i}, 4000));
  ASSERT_TRUE(l.mark({3, 0}, 9000));
  ASSERT_EQ(l.retire_idle(6000, 0), 1u);  // source 1
  Ledger back = Ledger::parse(l.serialize());
  EXPECT_EQ(lines(back.serialize()), lines(l.serialize()));
  EXPECT_EQ(back.clock_ms(), 9000);
  EXPECT_EQ(back.retired().sources, 1u);
  EXPECT_EQ(back.retired().events, 5u);
  EXPECT_EQ(back.retired().duplicates, 1u);
  EXPECT_EQ(back.duplicates(), 1u);
  ASSERT_TRUE(back.mark({3, 1}, 10'500));
  ASSERT_TRUE(l.mark({3, 1}, 10'500));
  EXPECT_EQ(back.retire_idle(6000, 0), 1u) << "source 2, idle since 4000";
  EXPECT_EQ(l.retire_idle(6000, 0), 1u);
  EXPECT_EQ(lines(back.serialize()), lines(l.serialize()));
  // The form without a clock (before retirement existed) still reads.
  const Ledger old = Ledger::parse("7 2 0-9 20-29\n");
  EXPECT_EQ(old.duplicates(), 2u);
  EXPECT_EQ(old.clock_ms(), 0);
  EXPECT_THROW(Ledger::parse("clock 5 x\n"), core::Error);
}

// A checkpoint from before the clock knows no source's last activity: the first event after the
// upgrade (today's time) must not make them all look idle since 1970. They count as active from
// the first scan on.
TEST(LedgerTest, SourcesRestoredWithoutTheirActivityAreActiveFromTheFirstScan) {
  Ledger l = Ledger::parse("7 0 0-9\n8 0 0-4\n");
  constexpr std::int64_t kNow = 1'700'000'000'000;
  ASSERT_TRUE(l.mark({9, 0}, kNow));
  EXPECT_EQ(l.retire_idle(6000, 0), 0u) << "retired at once: false gaps, copies counted twice";
  ASSERT_TRUE(l.mark({9, 1}, kNow + 7000));
  EXPECT_EQ(l.retire_idle(6000, 0), 2u) << "sources 7 and 8, idle since the first scan";
}

// The clock is the highest ingest time, but a record stamped far ahead of the wall clock (a
// skewed host) moves it no further than an hour past it: it does not make every source idle.
constexpr std::int64_t kWall = 1'700'000'000'000, kDay = 86'400'000;
std::int64_t fixed_wall() noexcept { return kWall; }

TEST(LedgerTest, ARecordFromTheFarFutureDoesNotMakeEverySourceIdle) {
  Ledger l;
  l.set_wall_clock(&fixed_wall);
  for (std::uint64_t s = 1; s <= 3; ++s) ASSERT_TRUE(l.mark({s, 0}, kWall - 1000));
  ASSERT_TRUE(l.mark({4, 0}, kWall + 30 * kDay));
  EXPECT_LE(l.clock_ms(), kWall + Ledger::kClockAheadMs);
  EXPECT_EQ(l.retire_idle(7 * kDay, 60'000), 0u);
  // The skewed host sends on: the clock stays an hour past the wall clock, and no scan runs per
  // event (each scan walks every source).
  for (std::uint64_t i = 1; i < 100; ++i) {
    ASSERT_TRUE(l.mark({4, i}, kWall + 30 * kDay));
    ASSERT_FALSE(l.sweep_due(60'000)) << "a scan due again at event " << i;
  }
  EXPECT_EQ(l.clock_ms(), kWall + Ledger::kClockAheadMs);
  // Replayed later (the wall clock far past the data), one such record moves the clock an hour.
  Ledger replay;
  ASSERT_TRUE(replay.mark({1, 0}, 1'000'000));
  ASSERT_TRUE(replay.mark({2, 0}, 1'000'000 + 30 * kDay));
  EXPECT_EQ(replay.clock_ms(), 1'000'000 + Ledger::kClockAheadMs);
  EXPECT_EQ(replay.retire_idle(7 * kDay, 0), 0u);
}

// A checkpoint restored while the wall clock is far behind its clock (a node booted without its
// time, before NTP) keeps its clock: pulled back to the wall clock, it stamped a source marked
// then weeks in the past, and once the wall clock was right and the records moved the clock back
// up (an hour each), that source looked idle and was retired, so a re-sent copy of its events
// would have been counted again.
constexpr std::int64_t kFar = 4'000'000'000'000;  // 2096: ahead of any test machine's wall clock
std::int64_t far_wall() noexcept { return kFar; }

TEST(LedgerTest, ARestoreBeforeTheWallClockIsRightKeepsTheClockAndRetiresNothingEarly) {
  const std::string at = std::to_string(kFar);
  Ledger back = Ledger::parse("clock " + at + " " + at + " 0 0 0\n1 0 @" + at + " 0-9\n2 0 @" + at + " 0-9\n");
  EXPECT_EQ(back.clock_ms(), kFar);
  ASSERT_TRUE(back.mark({2, 10}, kFar));  // source 2 sends once more, while the wall clock is behind
  back.set_wall_clock(&far_wall);         // then the wall clock is right again
  for (std::uint64_t i = 10; i < 210; ++i) ASSERT_TRUE(back.mark({1, i}, kFar + 1000));
  EXPECT_EQ(back.retire_idle(7 * kDay, 0), 0u) << "source 2, active a moment ago, was retired";
  EXPECT_FALSE(back.mark({2, 10}, kFar + 1000)) << "a re-sent copy was counted again";
}

// A source whose backlog arrives late (old ingest times, the clock far ahead) is active while
// it is read, not retired in the middle of it.
TEST(LedgerTest, ASourceReadLateIsActiveWhileItIsRead) {
  Ledger l;
  ASSERT_TRUE(l.mark({1, 0}, 100'000'000));
  for (std::uint64_t i = 0; i < 10; ++i) ASSERT_TRUE(l.mark({2, i}, 1000 + static_cast<std::int64_t>(i)));
  EXPECT_EQ(l.retire_idle(50'000, 0), 0u);
  ASSERT_EQ(l.audit().size(), 2u);
}

}  // namespace
}  // namespace tributary::analytics
