// The exactly-once ledger: duplicates dropped by identity, holes filled, audit, round trip.
#include "tributary/analytics/ledger.h"

#include <gtest/gtest.h>

#include <algorithm>
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

}  // namespace
}  // namespace tributary::analytics
