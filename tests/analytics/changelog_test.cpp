// The Kafka-transaction mode's changelog records: a state cut into chunks comes back whole;
// from a log with several snapshots, compacted or not, the newest complete one wins and an
// incomplete newer one never replaces it.
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

}  // namespace
}  // namespace tributary::analytics::detail
