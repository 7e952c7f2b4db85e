// Field extraction: JSON by pointer (simdjson), CSV by header name, and every kind of
// malformed event rejected with its reason.
#include "tributary/analytics/extract.h"

#include <gtest/gtest.h>

#include <fmt/format.h>

#include <random>

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

TEST(FieldExtractorTest, TellsApartTopLevelNamesThatShareTheirFirstBytes) {
  // Prefixes of one another, one-letter names, the empty name, a name longer than 16 bytes,
  // and keys in the event that agree with a wanted name on their first two bytes only.
  const std::string long_name = "a_name_longer_than_sixteen";
  auto x = FieldExtractor::json({"/ab", "/a", "/abc", "/", "/" + long_name, "/b"});
  Views out;
  const std::string event = R"({"abd": 0, "a_": 0, "abc": 3, "a_name_longer_than_sixteeN": 0, "a": 1, "": 4, "ab": 2, ")" +
                            long_name + R"(": 5, "bb": 0, "b": 6})";
  ASSERT_EQ(x.extract(event, out), Reject::kNone);
  EXPECT_EQ(out, (Views{"2", "1", "3", "4", "5", "6"}));
  std::size_t bad = 99;
  EXPECT_EQ(x.extract(R"({"ab": 2, "a": 1, "abc": 3, "": 4, "a_name_longer_than_sixteeN": 5, "b": 6})", out, &bad),
            Reject::kMissingField);
  EXPECT_EQ(bad, 4u) << "a key that differs from the long name in its last byte is not it";
}

// Two fields may name one key (one as a window's time, one for a label): both get its value,
// one by one and in batches (every event was "missing field" before).
TEST(FieldExtractorTest, TwoFieldsNamingOneKeyBothGetIt) {
  auto x = FieldExtractor::json({"/time_stamp", "/user_id", "/time_stamp"});
  Views out;
  ASSERT_EQ(x.extract(R"({"user_id": 7, "time_stamp": 1111})", out), Reject::kNone);
  EXPECT_EQ(out, (Views{"1111", "7", "1111"}));
  std::vector<std::string_view> events = {R"({"time_stamp": 1, "user_id": 2})", R"({"user_id": 3, "time_stamp": 4})"};
  std::vector<Views> got;
  x.extract_batch(events, out, [&](std::size_t, Reject r, std::size_t) {
    EXPECT_EQ(r, Reject::kNone);
    got.push_back(out);
  });
  EXPECT_EQ(got, (std::vector<Views>{{"1", "2", "1"}, {"4", "3", "4"}}));
  // One optional, its twin required: the key may not be null, whatever the order of the two.
  for (const std::vector<bool>& optional : {std::vector<bool>{true, false, false}, {false, false, true}}) {
    auto y = FieldExtractor::json({"/coupon", "/user_id", "/coupon"});
    y.set_optional(optional);
    std::size_t bad = 99;
    EXPECT_EQ(y.extract(R"({"user_id": 7, "coupon": null})", out, &bad), Reject::kMissingField);
  }
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

// On-Demand types a value by its first byte and checks only what it walks: an event is taken
// only if it is one whole JSON object and the values it gives are JSON tokens.
TEST(FieldExtractorTest, AnEventThatIsNotExactlyOneObjectOrHasABadTokenIsRejected) {
  auto x = FieldExtractor::json({"/user_id", "/action_type"});
  Views out;
  for (const char* event : {
           R"({"user_id":1,"action_type":2}{"user_id":3,"action_type":4})",  // two objects
           R"({"user_id":1,"action_type":2} {"x":1})",
           R"({"user_id":1,"action_type":2,"rest":{})",                    // unclosed, ends in '}'
           R"({"user_id":1,"action_type":2,"x":1 "y":2})",                 // a comma missing after them
           R"({"user_id":1,"action_type":2,"x"})",
           R"({"user_id":12abc,"action_type":2})", R"({"user_id":-,"action_type":2})",
           R"({"user_id":01,"action_type":2})", R"({"user_id":1.,"action_type":2})",
           R"({"user_id":.5,"action_type":2})", R"({"user_id":1e,"action_type":2})",
           R"({"user_id":1e+,"action_type":2})", R"({"user_id":123456789x,"action_type":2})",
           R"({"user_id":1,"action_type":trueish})", R"({"user_id":1,"action_type":fals})",
           R"({"user_id":1,"action_type":nul})", R"({"user_id":1,"action_type":nullx})"}) {
    std::size_t bad = 0;
    EXPECT_EQ(x.extract(event, out, &bad), Reject::kNotJson) << event;
    EXPECT_EQ(bad, 2u) << event;
  }
  auto deep = FieldExtractor::json({"/user/id", "/action_type"});  // a nested field: the pointer walk
  for (const char* event : {R"({"user":{"id":1},"action_type":2}{"x":1})", R"({"user":{"id":1},"action_type":2,"r":{})",
                            R"({"user":{"id":1},"action_type":2,"x":1 "y":2})", R"({"user":{"id":12abc},"action_type":2})"})
    EXPECT_EQ(deep.extract(event, out), Reject::kNotJson) << event;
  ASSERT_EQ(deep.extract(R"({"user":{"id":1},"action_type":2,"more":[1,{"a":null}]})", out), Reject::kNone);
  EXPECT_EQ(out, (Views{"1", "2"}));
  x.set_optional({false, true});
  for (const auto& [event, want] : std::initializer_list<std::pair<const char*, const char*>>{
           {R"({"user_id":0,"action_type":1})", "0"}, {R"({"user_id":-0,"action_type":1})", "-0"},
           {R"({"user_id":12345678,"action_type":1})", "12345678"},
           {R"({"user_id":123456789012,"action_type":1})", "123456789012"},
           {R"({"user_id":-1.5e+10,"action_type":1})", "-1.5e+10"}, {R"({"user_id":2E-3,"action_type":1})", "2E-3"},
           {R"({"user_id":true,"action_type":null})", "true"}, {R"({"user_id" : 7 , "action_type":1 })", "7"},
           {"{\"user_id\":\t8\n,\"action_type\":false}\n", "8"}}) {
    ASSERT_EQ(x.extract(event, out), Reject::kNone) << event;
    EXPECT_EQ(out[0], want) << event;
  }
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

TEST(FieldExtractorTest, CsvFieldsMayBeQuotedAndBrokenQuotesAreRejected) {
  auto x = FieldExtractor::csv({"id", "city", "note"}, {"city", "id", "note"});
  Views out;
  ASSERT_EQ(x.extract(R"(7,"Beijing, China","say ""hi""")", out), Reject::kNone);
  EXPECT_EQ(out, (Views{"Beijing, China", "7", R"(say "hi")"}));
  ASSERT_EQ(x.extract(R"("8",,"")", out), Reject::kNone);
  EXPECT_EQ(out, (Views{"", "8", ""}));
  std::size_t bad = 0;
  for (const char* event : {R"(7,"Beijing, China,x)", R"(7,"Bei"jing,x)"}) {
    EXPECT_EQ(x.extract(event, out, &bad), Reject::kBadQuote) << event;
    EXPECT_EQ(bad, 3u);
  }
  EXPECT_EQ(x.extract(R"(7,"a,b",c,d)", out), Reject::kFieldCount) << "the quoted separator is not a separator";
  ASSERT_EQ(x.extract(R"(7,5'7",x)", out), Reject::kNone) << "a quote inside a plain field is a character";
  EXPECT_EQ(out[0], R"(5'7")");
  ASSERT_EQ(x.extract(std::string_view(), out), Reject::kFieldCount) << "an empty event is one empty field";
}

// The batch form (iterate_many over one copy of many events) must give every event exactly
// what extract() gives it: the same reason, the same bad field, the same field texts, also
// when the batch holds events that are not one document each.
struct Outcome {
  Reject reject;
  std::size_t bad;
  std::vector<std::string> fields;
  bool operator==(const Outcome&) const = default;
};

std::vector<Outcome> one_by_one(FieldExtractor& x, const std::vector<std::string>& events) {
  std::vector<Outcome> v;
  Views out;
  for (const auto& e : events) {
    std::size_t bad = 0;
    const Reject r = x.extract(e, out, &bad);
    v.push_back({r, r == Reject::kNone ? 0 : bad, r == Reject::kNone ? std::vector<std::string>(out.begin(), out.end())
                                                                     : std::vector<std::string>{}});
  }
  return v;
}

std::vector<Outcome> batched(FieldExtractor& x, const std::vector<std::string>& events) {
  std::vector<Outcome> v;
  const std::vector<std::string_view> views(events.begin(), events.end());
  Views out;
  std::size_t expect = 0;
  x.extract_batch(views, out, [&](std::size_t i, Reject r, std::size_t bad) {
    EXPECT_EQ(i, expect++) << "events are handed out once each, in order";
    v.push_back({r, r == Reject::kNone ? 0 : bad, r == Reject::kNone ? std::vector<std::string>(out.begin(), out.end())
                                                                     : std::vector<std::string>{}});
  });
  return v;
}

TEST(FieldExtractorBatchTest, EveryEventGetsWhatItGetsAloneWhateverItsNeighbours) {
  const std::vector<std::string> kinds = {
      R"({"user_id":1,"item_id":2,"time_stamp":1111,"action_type":2})",
      R"({"action_type":0,"time_stamp":511,"user_id":"u\"7"})",  // another order, an escaped string
      R"({"user_id":3,"user_id":4,"time_stamp":5,"action_type":1})",  // a duplicate key: the first wins
      R"({"user_id":3,"time_stamp":5})",                               // a missing field
      R"({"user_id":[1],"time_stamp":5,"action_type":1})",             // a wrong type
      R"({"user_id":1,"time_stamp":null,"action_type":1})",            // null
      R"({"a":{"b":[1,{"c":2}]},"user_id":9,"time_stamp":8,"action_type":7})",
      "328862,1,2,3,4,1111,2",                                         // a raw CSV line
      R"({"user_id":1,"time_stamp":2,"action_type":3}{"user_id":4})",  // two documents in one event
      R"({"user_id":1,"time_stamp":)",                                 // half a document ...
      R"(2,"action_type":3})",                                         // ... and its other half
      R"( {"user_id":1,"time_stamp":2,"action_type":3})",              // leading blank
      "{\"user_id\":1,\n\"time_stamp\":2,\"action_type\":3}\n",      // newlines of its own
      "[1,2]", "17", "\"text\"", "", "{}", "{", "}", "nul", R"({"user_id":1e999,"time_stamp":2,"action_type":3})",
      R"({"user_id":-0.5e3,"time_stamp":true,"action_type":false})",
      R"({"user_id":1,"time_stamp":2,"action_type":3,"rest":[1,2,)",  // broken after the fields
      R"({"user_id":1,"time_stamp":2,"action_type":3,"y":"a"=)",      // found by libFuzzer: parsed
      R"({"user_id":2,:2})",                                          // alone, rejected for its end
      R"({"user_id":1,"time_stamp":2,"action_type":3,"x":1 "y":2})",  // bad after the fields
      R"({"user_id":1,"time_stamp":2,"action_type":3,"r":{})",        // unclosed
      R"({"user_id":12abc,"time_stamp":2,"action_type":3})",          // not a number
      R"({"user_id":1,"time_stamp":tru,"action_type":3})",            // not a boolean
  };
  auto x = FieldExtractor::json({"user_id", "time_stamp", "action_type"});
  auto y = FieldExtractor::json({"user_id", "time_stamp", "action_type"});
  {
    const std::vector<std::string> good(50, kinds[0]);
    ASSERT_EQ(batched(x, good), one_by_one(y, good));
    EXPECT_EQ(x.parsed_in_batches(), 50u) << "well-formed events are parsed together";
  }
  std::mt19937_64 rng(5);
  for (int round = 0; round < 300; ++round) {
    std::vector<std::string> events(1 + rng() % 40);
    for (auto& e : events) e = kinds[rng() % (rng() % 4 == 0 ? kinds.size() : 1)];  // mostly well-formed
    ASSERT_EQ(batched(x, events), one_by_one(y, events)) << "round " << round;
  }
  {  // found by libFuzzer: the second event's fields come before its broken end
    auto p = FieldExtractor::json({"user_id", "time_stamp", "note"});
    auto q = FieldExtractor::json({"user_id", "time_stamp", "note"});
    p.set_optional({false, false, true});
    q.set_optional({false, false, true});
    const std::vector<std::string> events = {R"({"user_id":0,"time_stammp":3})", R"({"user_id":3,"time_stamp":4,"note":"a\"b"=)",
                                             R"({"user_id":2,:2})", R"({"user_id":3,"time_stamp":2,"note":"a\"b"})", R"({"user_id":5,)"};
    ASSERT_EQ(batched(p, events), one_by_one(q, events));
  }
  // Each kind alone among well-formed neighbours, in every position.
  for (std::size_t k = 0; k < kinds.size(); ++k)
    for (std::size_t at = 0; at < 3; ++at) {
      std::vector<std::string> events(3, kinds[0]);
      events[at] = kinds[k];
      ASSERT_EQ(batched(x, events), one_by_one(y, events)) << "kind " << k << " at " << at;
    }
  EXPECT_GT(x.parsed_in_batches(), 3000u) << "the mixed rounds were mostly parsed in batches";
}

TEST(FieldExtractorBatchTest, OptionalFieldsAndBatchesLargerThanOneParsePass) {
  auto x = FieldExtractor::json({"user_id", "note"});
  auto y = FieldExtractor::json({"user_id", "note"});
  x.set_optional({false, true});
  y.set_optional({false, true});
  std::vector<std::string> events;
  for (int i = 0; i < 3000; ++i)  // ~200 KiB: cut into several iterate_many passes
    events.push_back(i % 7 == 0 ? fmt::format(R"({{"user_id":{},"pad":"{}"}})", i, std::string(40, 'x'))
                                : fmt::format(R"({{"user_id":{},"note":"n{}","pad":"{}"}})", i, i, std::string(20, 'y')));
  events[1500] = std::string(100000, ' ') + "{}";  // one event larger than a pass, alone
  ASSERT_EQ(batched(x, events), one_by_one(y, events));
  EXPECT_GT(x.parsed_in_batches(), 2900u);
}

TEST(FieldExtractorBatchTest, CsvBatchesAreExtractedOneByOne) {
  auto x = FieldExtractor::csv({"a", "b", "c"}, {"c", "a"});
  auto y = FieldExtractor::csv({"a", "b", "c"}, {"c", "a"});
  const std::vector<std::string> events = {"1,2,3", "4,5", "6,7,8\r", ",,"};
  ASSERT_EQ(batched(x, events), one_by_one(y, events));
}

}  // namespace
}  // namespace tributary::analytics
