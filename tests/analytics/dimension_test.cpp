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

}  // namespace
}  // namespace tributary::analytics
