// The Kafka-transaction mode's changelog records: a state cut into chunks comes back whole;
// from a log with several snapshots, compacted or not, the newest complete one wins and an
// incomplete newer one never replaces it. The output topic's reader shows an input partition's
// rows only once its part of a transaction was read whole.
#include <gtest/gtest.h>

#include "changelog.h"

namespace tributary::analytics::detail {
namespace {

std::string state_of(std::size_t bytes, char c) {
  std::string s(bytes, c);
  for (std::size_t i = 0; i < bytes; i += 7) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

TEST(ChangelogTest, AStateCutIntoChunksComesBackWhole) {
  const std::string state = state_of(2500, 'x');
  const auto chunks = state_chunks(state, 42, 1000);
  ASSERT_EQ(chunks.size(), 3u);
  SnapshotAssembler a;
  for (const auto& c : chunks) {
    EXPECT_FALSE(a.latest()) << "no snapshot before its last chunk";
    ASSERT_TRUE(a.feed(c));
  }
  ASSERT_TRUE(a.latest());
  EXPECT_EQ(*a.latest(), state);
  SnapshotAssembler empty;  // an empty state is one chunk, and comes back empty
  ASSERT_TRUE(empty.feed(state_chunks("", 7, 1000).at(0)));
  EXPECT_EQ(empty.latest(), std::string());
}

TEST(ChangelogTest, AnIncompleteNewerSnapshotNeverReplacesTheLastCompleteOne) {
  const std::string older = state_of(2500, 'o'), newer = state_of(1500, 'n');
  SnapshotAssembler a;
  for (const auto& c : state_chunks(older, 1, 1000)) ASSERT_TRUE(a.feed(c));
  const auto n = state_chunks(newer, 2, 1000);
  ASSERT_TRUE(a.feed(n[0]));
  EXPECT_EQ(*a.latest(), older);
  ASSERT_TRUE(a.feed(n[1]));
  EXPECT_EQ(*a.latest(), newer);
}

// Compaction keeps the newest record per key ("pP/I"): after snapshots of 3 chunks then 2, the
// log holds the old chunk 2 (its key was never written again) before the new chunks 0 and 1.
TEST(ChangelogTest, FromACompactedLogTheNewestCompleteSnapshotWins) {
  const std::string older = state_of(2500, 'o'), newer = state_of(1500, 'n');
  const auto o = state_chunks(older, 11, 1000), n = state_chunks(newer, 12, 1000);
  SnapshotAssembler a;
  ASSERT_TRUE(a.feed(o[2]));
  ASSERT_TRUE(a.feed(n[0]));
  ASSERT_TRUE(a.feed(n[1]));
  ASSERT_TRUE(a.latest());
  EXPECT_EQ(*a.latest(), newer);
  // Chunks of one snapshot in any order still make it.
  SnapshotAssembler b;
  ASSERT_TRUE(b.feed(o[1]));
  ASSERT_TRUE(b.feed(o[2]));
  ASSERT_TRUE(b.feed(o[0]));
  EXPECT_EQ(*b.latest(), older);
}

TEST(ChangelogTest, ARecordThatIsNotAChunkIsRefused) {
  SnapshotAssembler a;
  for (const std::string bad : {"", "hello", "tributary-state 1 0\nx", "tributary-state 1 2 2\nx",
                                "tributary-state x 0 1\nx", "tributary-state 1 0 0\nx"})
    EXPECT_FALSE(a.feed(bad)) << bad;
  EXPECT_FALSE(a.latest());
}

using Table = std::map<std::string, std::string>;
const OutputView::Clock::time_point t0{};  // the view takes the reader's times as given

TEST(OutputViewTest, AnInputPartitionsRowsShowOnlyWithTheStatsRecordThatEndsItsPartOfATransaction) {
  OutputView v;
  EXPECT_FALSE(v.add(0, "t/by_age/0/a", "5", t0));
  EXPECT_FALSE(v.add(0, "w/per_second/0/1000/a", "2000\t1\t0\t0\t0\t0", t0));
  EXPECT_TRUE(v.latest().empty()) << "half of a transaction is not shown";
  EXPECT_EQ(v.held_back(), 2u);
  EXPECT_TRUE(v.add(0, "s/0", "stats", t0));
  EXPECT_EQ(v.latest(), (Table{{"t/by_age/0/a", "5"}, {"w/per_second/0/1000/a", "2000\t1\t0\t0\t0\t0"}, {"s/0", "stats"}}));
  EXPECT_EQ(v.held_back(), 0u);
  // The next transaction: a tombstone and a new value, held back together.
  EXPECT_FALSE(v.add(0, "w/per_second/0/1000/a", std::nullopt, t0));
  EXPECT_FALSE(v.add(0, "t/by_age/0/a", "9", t0));
  EXPECT_EQ(v.latest().at("t/by_age/0/a"), "5");
  EXPECT_TRUE(v.add(0, "s/0", "stats 2", t0));
  EXPECT_EQ(v.latest(), (Table{{"t/by_age/0/a", "9"}, {"s/0", "stats 2"}}));
}

TEST(OutputViewTest, TwoInputPartitionsInterleavedInOneOutputPartitionShowEachWhenItsOwnPartEnds) {
  OutputView v;  // input partitions 0 and 2 write to output partition 0 (another member's transaction)
  EXPECT_FALSE(v.add(0, "t/o/0/a", "1", t0));
  EXPECT_FALSE(v.add(0, "t/o/2/b", "1", t0));
  EXPECT_FALSE(v.add(0, "l/w/2/0/b", "3", t0));
  EXPECT_TRUE(v.add(0, "s/0", "x", t0));
  EXPECT_EQ(v.latest(), (Table{{"t/o/0/a", "1"}, {"s/0", "x"}})) << "partition 2's rows wait for s/2";
  EXPECT_TRUE(v.add(0, "s/2", "y", t0));
  EXPECT_EQ(v.latest().size(), 5u);
  EXPECT_EQ(v.latest().at("l/w/2/0/b"), "3");
}

// The end of an output partition is no proof that no transaction is cut there: another
// member's open transaction holds the last stable offset below the rest of a committed one.
TEST(OutputViewTest, AtTheEndOfAPartitionRowsShowAsTheyAreOnlyOnceNoTransactionCanStillBeOpen) {
  using namespace std::chrono_literals;
  OutputView v;
  EXPECT_FALSE(v.add(0, "t/o/0/a", "1", t0));       // a committed transaction's first part
  EXPECT_FALSE(v.add(1, "o/w/1/0/b", "1", t0 + 5s));  // a row by hand: no s/1 follows
  EXPECT_FALSE(v.release(0, t0)) << "held since t0, not before";
  EXPECT_FALSE(v.release(1, t0 + 5s));
  EXPECT_TRUE(v.latest().empty());
  EXPECT_TRUE(v.release(0, t0 + 1ms)) << "held for longer than any transaction can stay open";
  EXPECT_EQ(v.latest(), (Table{{"t/o/0/a", "1"}}));
  EXPECT_EQ(v.held_back(), 1u) << "partition 1's row is younger";
  EXPECT_FALSE(v.release(2, t0 + 1h)) << "nothing held there";
  EXPECT_TRUE(v.release(1, t0 + 1h));
  EXPECT_EQ(v.latest(), (Table{{"t/o/0/a", "1"}, {"o/w/1/0/b", "1"}}));
}

TEST(OutputViewTest, ARowByHandReleasedDoesNotTakeTheYoungerRowsOfATransactionWithIt) {
  using namespace std::chrono_literals;
  OutputView v;
  EXPECT_FALSE(v.add(0, "o/w/0/0/a", std::nullopt, t0));  // by hand, long ago
  EXPECT_FALSE(v.add(0, "t/o/0/x", "7", t0 + 1h));        // a transaction's first part, just read
  EXPECT_TRUE(v.release(0, t0 + 1min));
  EXPECT_EQ(v.held_back(), 1u) << "the transaction's row waits for its s/0";
  EXPECT_TRUE(v.latest().empty());
  EXPECT_TRUE(v.add(0, "s/0", "x", t0 + 1h));
  EXPECT_EQ(v.latest(), (Table{{"t/o/0/x", "7"}, {"s/0", "x"}}));
}

TEST(OutputViewTest, ARewoundOutputPartitionDropsOnlyWhatItHeldBack) {
  OutputView v;
  EXPECT_FALSE(v.add(0, "t/o/0/a", "1", t0));
  EXPECT_FALSE(v.add(1, "t/o/1/b", "1", t0));
  v.rewind(0);  // read again from an earlier offset: t/o/0/a comes again
  EXPECT_EQ(v.held_back(), 1u);
  EXPECT_TRUE(v.add(0, "s/0", "x", t0));
  EXPECT_EQ(v.latest(), (Table{{"s/0", "x"}}));
  EXPECT_TRUE(v.add(1, "s/1", "y", t0));
  EXPECT_EQ(v.latest(), (Table{{"s/0", "x"}, {"t/o/1/b", "1"}, {"s/1", "y"}}));
}

TEST(OutputViewTest, AKeyOfNoKnownShapeIsShownAsItIs) {
  OutputView v;
  EXPECT_TRUE(v.add(0, "plain", "1", t0));
  EXPECT_TRUE(v.add(0, "t/o/x/a", "2", t0)) << "no partition number";
  EXPECT_EQ(v.latest(), (Table{{"plain", "1"}, {"t/o/x/a", "2"}}));
}

}  // namespace
}  // namespace tributary::analytics::detail
