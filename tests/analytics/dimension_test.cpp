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

// A header with a UTF-8 byte-order mark (a spreadsheet's export) names its first column as it
// reads. Integer keys are numbers: a zero-padded export joins events' JSON numbers, and "007"
// after "7" is a repeat of it (counted).
TEST(DimensionTableTest, AByteOrderMarkIsNotPartOfTheHeaderAndIntegerKeysAreNumbers) {
  testing::TempDir dir;
  std::ofstream(dir / "t.csv") << "\xEF\xBB\xBFuser_id,age_range\r\n007,3\r\n7,5\r\n0,1\r\nab,2\r\n";
  const auto t = DimensionTable::load(dir / "t.csv", "user_id", {"age_range"});
  EXPECT_EQ(t.rows(), 3u);
  EXPECT_EQ(t.rejected_rows(), 1u) << "7 repeats 007";
  EXPECT_EQ(t.get("7", 0), "3");
  EXPECT_EQ(t.get("0", 0), "1");
  EXPECT_EQ(t.get("ab", 0), "2");
}

// RFC 4180: a quoted field may hold the separator, a doubled quote and line breaks; a quote in
// a field that does not start with one is a character (as Python's csv reads it); a row whose
// quotes are broken is counted with its line, and the rows after it load.
TEST(DimensionTableTest, QuotedFieldsHoldSeparatorsQuotesAndLineBreaksAndBrokenOnesAreCountedWithTheirLine) {
  testing::TempDir dir;
  std::ofstream(dir / "t.csv") << "\"user_id\",city,note\r\n"
                                  "1,\"Beijing, China\",\"say \"\"hi\"\"\"\r\n"
                                  "2,\"two\nlines\",\"\"\n"
                                  "3,5'7\",x\n"          // a quote inside a plain field
                                  "4,\"Wuhan\"x,y\n"    // text after a closing quote
                                  "5,Xi'an,\n"
                                  "6,\"never closed,z\n7,after,it\n";
  const auto t = DimensionTable::load(dir / "t.csv", "user_id", {"city", "note"});
  EXPECT_EQ(t.rows(), 4u);
  EXPECT_EQ(t.get("1", 0), "Beijing, China");
  EXPECT_EQ(t.get("1", 1), "say \"hi\"");
  EXPECT_EQ(t.get("2", 0), "two\nlines");
  EXPECT_EQ(t.get("2", 1), "");
  EXPECT_EQ(t.get("5", 0), "Xi'an");
  EXPECT_EQ(t.get("3", 0), "5'7\"");
  EXPECT_FALSE(t.get("4", 0).has_value());
  EXPECT_FALSE(t.get("6", 0).has_value()) << "an open quote takes the rest of the file, which is rejected";
  EXPECT_FALSE(t.get("7", 0).has_value());
  EXPECT_EQ(t.rejected_rows(), 2u);
  EXPECT_EQ(t.first_rejected(), (dir / "t.csv").string() + ":6: text after a closing quote");
  std::ofstream(dir / "open.csv") << "user_id,city\n1,\"open\n2,x\n3,y\n";
  const auto o = DimensionTable::load(dir / "open.csv", "user_id", {"city"});
  EXPECT_EQ(o.rows(), 0u);
  EXPECT_EQ(o.first_rejected(), (dir / "open.csv").string() + ":2: a quoted field is never closed (lines 2 to 4 skipped)");
}

TEST(DimensionTableTest, TheFirstRejectedRowIsNamedWithItsLineAndReason) {
  testing::TempDir dir;
  std::ofstream(dir / "t.csv") << "user_id,age_range\n1,3\n\n2,4,5\n1,6\n";
  const auto t = DimensionTable::load(dir / "t.csv", "user_id", {"age_range"});
  EXPECT_EQ(t.rejected_rows(), 2u);
  EXPECT_EQ(t.first_rejected(), (dir / "t.csv").string() + ":4: 3 fields, the header has 2");
}

}  // namespace
}  // namespace tributary::analytics
