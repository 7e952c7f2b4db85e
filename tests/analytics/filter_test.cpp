// The filter language: comparisons (numeric and text), in, exists, and/or/not with
// precedence and parentheses, absent fields, errors with their column; and in the analyzer,
// an event missing a field tested with exists() is filtered or counted, not rejected.
#include "tributary/analytics/filter.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <map>

#include "tributary/analytics/analyzer.h"
#include "tributary/core/error.h"

namespace tributary::analytics {
namespace {

const std::vector<std::string> kNames = {"a", "b", "name", "age"};

FilterExpr parse(std::string_view text) {
  return FilterExpr::parse(text, [](std::string_view n) -> std::optional<FieldRef> {
    for (std::size_t i = 0; i < kNames.size(); ++i)
      if (kNames[i] == n) return FieldRef{n == "age", i};
    return std::nullopt;
  });
}

bool eval(const FilterExpr& e, const std::map<std::string, std::string>& event) {
  return e.eval([&](const FieldRef& r) -> std::optional<std::string_view> {
    const auto it = event.find(kNames[r.index]);
    if (it == event.end()) return std::nullopt;
    return std::string_view(it->second);
  });
}

TEST(FilterTest, ComparesNumbersNumericallyAndTextByBytes) {
  const std::map<std::string, std::string> ev = {{"a", "10"}, {"b", "9"}, {"name", "bob"}};
  EXPECT_TRUE(eval(parse("a > 9"), ev)) << "10 > 9 as numbers";
  EXPECT_FALSE(eval(parse("a > \"9\""), ev)) << "\"10\" < \"9\" as text";
  EXPECT_TRUE(eval(parse("a == 10.0"), ev));
  EXPECT_TRUE(eval(parse("a >= 10 and b <= 9 and b < 9.5 and a != 11"), ev));
  EXPECT_TRUE(eval(parse("name == 'bob'"), ev));
  EXPECT_FALSE(eval(parse("name > 5"), ev)) << "not a number: the comparison fails";
  EXPECT_TRUE(eval(parse("name in [\"alice\", \"bob\"]"), ev));
  EXPECT_TRUE(eval(parse("a in [1, 10, 100]"), ev));
  EXPECT_FALSE(eval(parse("a in [1, 100]"), ev));
}

TEST(FilterTest, AndBindsTighterThanOrAndNotAppliesToWhatFollows) {
  const std::map<std::string, std::string> ev = {{"a", "1"}, {"b", "2"}};
  EXPECT_TRUE(eval(parse("a == 1 or a == 5 and b == 7"), ev)) << "a==1 or (a==5 and b==7)";
  EXPECT_FALSE(eval(parse("(a == 1 or a == 5) and b == 7"), ev));
  EXPECT_FALSE(eval(parse("not a == 1"), ev));
  EXPECT_TRUE(eval(parse("not (a == 1 and b == 3)"), ev));
  EXPECT_TRUE(eval(parse("not not a == 1"), ev));
}

TEST(FilterTest, AComparisonOnAnAbsentFieldIsFalse) {
  const std::map<std::string, std::string> ev = {{"a", "1"}};
  EXPECT_FALSE(eval(parse("b == 1"), ev));
  EXPECT_FALSE(eval(parse("b != 1"), ev));
  EXPECT_TRUE(eval(parse("not b == 1"), ev));
  EXPECT_FALSE(eval(parse("exists(b)"), ev));
  EXPECT_TRUE(eval(parse("exists(a) and not exists(b)"), ev));
}

TEST(FilterTest, ErrorsSayWhereAndWhat) {
  auto error = [](std::string_view text) {
    try {
      (void)parse(text);
    } catch (const core::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(error("a =="), "column 5: expected a number or a \"quoted\" text");
  EXPECT_EQ(error("zz == 1"), "column 1: 'zz' is neither a field nor a joined column");
  EXPECT_EQ(error("a == 1 and"), "column 11: expected a field name");
  EXPECT_EQ(error("(a == 1"), "column 8: expected ')'");
  EXPECT_EQ(error("a = 1"), "column 3: expected a comparison (== != < <= > >=), in [...], or exists(...)");
  EXPECT_EQ(error("a == 'x"), "column 8: unterminated string");
  EXPECT_EQ(error("a == 1 b"), "column 8: unexpected 'b'");
  EXPECT_EQ(error("a in [1, 2"), "column 11: expected ']'");
}

// Found by the fuzzer: 3000 nested parentheses overflowed the stack. Nesting and size are
// bounded, with the column where the bound is passed; what is within them still parses.
TEST(FilterTest, NestingAndSizeAreBoundedWithAnErrorNotAStackOverflow) {
  auto error = [](const std::string& text) {
    try {
      (void)parse(text);
    } catch (const core::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const auto nested = [](int n, const std::string& open) {
    std::string s;
    for (int i = 0; i < n; ++i) s += open;
    s += "a == 1";
    if (open == "(") s += std::string(static_cast<std::size_t>(n), ')');
    return s;
  };
  EXPECT_EQ(error(nested(64, "(")), "no error");
  EXPECT_EQ(error(nested(65, "(")), "column 65: nested deeper than 64 levels of parentheses and not");
  EXPECT_EQ(error(nested(100000, "(")), "column 65: nested deeper than 64 levels of parentheses and not");
  EXPECT_EQ(error(nested(64, "not ")), "no error");
  EXPECT_EQ(error(nested(100000, "not ")), "column 257: nested deeper than 64 levels of parentheses and not");
  std::string chain = "a == 1";
  for (int i = 0; i < 2047; ++i) chain += " or a == 2";  // 2048 comparisons, 2047 "or": 4095 nodes
  EXPECT_EQ(error(chain), "no error");
  EXPECT_TRUE(eval(parse(chain), {{"a", "1"}}));
  EXPECT_FALSE(eval(parse(chain), {{"a", "3"}}));
  chain += " or a == 2";
  EXPECT_EQ(error(chain), fmt::format("column {}: the expression has more than 4096 terms and operators (a list "
                                      "of values is one `in [...]`)",
                                      chain.size() + 1));
}

TEST(FilterTest, TheAnalyzerCountsEventsMissingAFieldTestedWithExists) {
  AnalyzerSpec spec;
  spec.where = FilterExpr::parse("not exists(coupon) or coupon == 0", [](std::string_view n) -> std::optional<FieldRef> {
    if (n == "coupon") return FieldRef{false, 1};
    return std::nullopt;
  });
  spec.groupings.push_back({"all", {KeyPart{KeyPart::From::kEvent, 0, nullptr, 0}}});
  Analyzer a(std::move(spec), FieldExtractor::json({"/user", "/coupon"}));
  EXPECT_EQ(a.process({1, 0}, R"({"user":"u1"})"), Outcome::kCounted) << "absent: not rejected";
  EXPECT_EQ(a.process({1, 1}, R"({"user":"u2","coupon":null})"), Outcome::kCounted);
  EXPECT_EQ(a.process({1, 2}, R"({"user":"u3","coupon":0})"), Outcome::kCounted);
  EXPECT_EQ(a.process({1, 3}, R"({"user":"u4","coupon":5})"), Outcome::kFiltered);
  EXPECT_EQ(a.process({1, 4}, R"({"coupon":0})"), Outcome::kRejected) << "user is not optional";
  EXPECT_EQ(a.totals(0).size(), 3u);
}

}  // namespace
}  // namespace tributary::analytics
