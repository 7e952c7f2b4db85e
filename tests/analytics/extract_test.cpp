// Field extraction: JSON by pointer (simdjson), CSV by header name, and every kind of
// malformed event rejected with its reason.
#include "tributary/analytics/extract.h"

#include <gtest/gtest.h>

#include "tributary/core/error.h"

namespace tributary::analytics {
namespace {

using Views = std::vector<std::string_view>;

TEST(FieldExtractorTest, ReadsJsonFieldsByPointerAsText) {
  auto x = FieldExtractor::json({"user_id", "/time_stamp", "/item/cat", "/ok", "/name"});
  Views out;
  ASSERT_EQ(x.extract(R"({"user_id": 328862, "time_stamp": 1111, "item": {"cat": "a\"b"}, "ok": true, "name": "x\u00e9"})", out),
            Reject::kNone);
  EXPECT_EQ(out[0], "328862");
  EXPECT_EQ(out[1], "1111");
  EXPECT_EQ(out[2], "a\"b") << "strings are unescaped";
  EXPECT_EQ(out[3], "true");
  EXPECT_EQ(out[4], "x\xc3\xa9");
}

TEST(FieldExtractorTest, RejectsMalformedEventsWithTheirReason) {
  auto x = FieldExtractor::json({"/user_id", "/action_type"});
  Views out;
  std::size_t bad = 99;
  EXPECT_EQ(x.extract("328862,1,2,3,4,1111,2", out, &bad), Reject::kNotJson) << "a raw CSV line";
  EXPECT_EQ(bad, 2u);
  EXPECT_EQ(x.extract("", out), Reject::kNotJson);
  EXPECT_EQ(x.extract("[1,2]", out), Reject::kNotJson);
  EXPECT_EQ(x.extract(R"({"user_id": 1})", out, &bad), Reject::kMissingField);
  EXPECT_EQ(bad, 1u);
  EXPECT_EQ(x.extract(R"({"user_id": 1, "action_type": null})", out), Reject::kMissingField);
  EXPECT_EQ(x.extract(R"({"user_id": {"a": 1}, "action_type": 2})", out, &bad), Reject::kWrongType);
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(x.extract(R"({"user_id": 5, "action_type": 2})", out), Reject::kNone) << "usable after rejects";
  EXPECT_EQ(out[0], "5");
}

TEST(FieldExtractorTest, ReadsCsvFieldsByHeaderNameAndChecksTheFieldCount) {
  auto x = FieldExtractor::csv({"user_id", "item_id", "cat_id", "seller_id", "brand_id", "time_stamp", "action_type"},
                               {"user_id", "time_stamp", "action_type"});
  Views out;
  ASSERT_EQ(x.extract("328862,323294,833,2882,2661,829,0\r", out), Reject::kNone);
  EXPECT_EQ(out, (Views{"328862", "829", "0"}));
  EXPECT_EQ(x.extract("328862,323294,833", out), Reject::kFieldCount);
  EXPECT_EQ(x.extract("1,2,3,4,5,6,7,8", out), Reject::kFieldCount);
  EXPECT_THROW((void)FieldExtractor::csv({"a", "b"}, {"c"}), core::Error);
}

}  // namespace
}  // namespace tributary::analytics
