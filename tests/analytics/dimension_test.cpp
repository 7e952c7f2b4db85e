// The join table: keys, interned columns, repeated keys and short rows counted, clear errors.
#include "tributary/analytics/dimension.h"

#include <gtest/gtest.h>

#include <fstream>

#include "support/temp_dir.h"
#include "tributary/core/error.h"

namespace tributary::analytics {
namespace {

TEST(DimensionTableTest, LoadsKeysAndInternedColumnsAndNamesAMissingColumn) {
  testing::TempDir dir;
  std::ofstream(dir / "t.csv") << "user_id,age_range,gender\n1,3,0\n2,,1\nbad,row\n3,8,\n1,9,9\n";
  const auto t = DimensionTable::load(dir / "t.csv", "user_id", {"gender", "age_range"});
  EXPECT_EQ(t.rows(), 3u);
  EXPECT_EQ(t.rejected_rows(), 2u) << "a short row and a repeated key";
  EXPECT_EQ(t.get("1", 1), "3") << "the first row of a repeated key wins";
  EXPECT_EQ(t.get("2", 1), "");
  EXPECT_FALSE(t.get("4", 0).has_value());
  EXPECT_THROW((void)DimensionTable::load(dir / "t.csv", "user_id", {"city"}), core::Error);
  EXPECT_THROW((void)DimensionTable::load(dir / "missing.csv", "user_id", {}), core::Error);
}

// Keys are identities: "007" and "7" are two keys (they were one, the second row dropped as a
// repeat and an event's "007" joined row 7). A header with a UTF-8 byte-order mark (a
// spreadsheet's export) names its first column as it reads.
TEST(DimensionTableTest, KeysAreTheirTextAndAByteOrderMarkIsNotPartOfTheHeader) {
  testing::TempDir dir;
  std::ofstream(dir / "t.csv") << "\xEF\xBB\xBFuser_id,age_range\r\n7,3\r\n007,5\r\n0,1\r\n";
  const auto t = DimensionTable::load(dir / "t.csv", "user_id", {"age_range"});
  EXPECT_EQ(t.rows(), 3u);
  EXPECT_EQ(t.rejected_rows(), 0u);
  EXPECT_EQ(t.get("7", 0), "3");
  EXPECT_EQ(t.get("007", 0), "5");
  EXPECT_EQ(t.get("0", 0), "1");
  EXPECT_FALSE(t.get("07", 0).has_value());
}

}  // namespace
}  // namespace tributary::analytics
