// The analyzer engine on the paper's experiment: Tianchi-shaped shopping logs as JSON events,
// joined with user_info, orders counted by age range, gender and day; with malformed rows,
// re-sent copies (same identity) and identical twins (different identity). The totals must
// equal an independent recount of the rows, also across a checkpoint and restore.
#include "tributary/analytics/analyzer.h"

#include <gtest/gtest.h>

#include <fmt/format.h>
#include <fstream>
#include <map>
#include <random>

#include "support/rss.h"
#include "support/temp_dir.h"
#include "tributary/core/error.h"

namespace tributary::analytics {
namespace {

struct Row {
  std::string user, item, time, action;
};

LabelMap age_labels() {
  LabelMap m;
  m.labels = {{"1", "<18"}, {"2", "18-24"}, {"3", "25-29"}, {"4", "30-34"}, {"5", "35-39"}, {"6", "40-49"},
              {"7", ">=50"}, {"8", ">=50"}};
  return m;
}
LabelMap gender_labels() {
  LabelMap m;
  m.labels = {{"0", "female"}, {"1", "male"}};
  return m;
}

class AnalyzerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::mt19937_64 rng(11);
    std::ofstream info(dir_ / "user_info_format1.csv");
    info << "user_id,age_range,gender\n";
    for (int u = 1; u <= 300; ++u) {
      if (u % 10 == 0) continue;  // users missing from user_info
      const std::string age = u % 13 == 0 ? "" : std::to_string(rng() % 9);       // 0..8, empty
      const std::string gender = u % 17 == 0 ? "" : std::to_string(rng() % 3);    // 0,1,2, empty
      info << u << "," << age << "," << gender << "\n";
      ages_[std::to_string(u)] = age;
      genders_[std::to_string(u)] = gender;
    }
    info.close();
    for (int i = 0; i < 5000; ++i) {
      const int month = 1 + static_cast<int>(rng() % 12), day = 1 + static_cast<int>(rng() % 28);
      rows_.push_back({std::to_string(1 + rng() % 320), std::to_string(rng() % 1000),
                       std::to_string(month * 100 + day), std::to_string(rng() % 5)});  // 4: valid, not an order
    }
    table_ = DimensionTable::load(dir_ / "user_info_format1.csv", "user_id", {"age_range", "gender"});
  }

  Analyzer make() {
    AnalyzerSpec s;
    s.integer_fields = {0, 1, 2};  // user_id, time_stamp, action_type
    s.filters = {{2, {"2"}}};      // an order is action_type 2
    s.table = &table_;
    s.join_field = 0;
    s.groupings = {{"age", {{KeyPart::From::kJoined, 0, &age_, 0}}},
                   {"gender", {{KeyPart::From::kJoined, 1, &gender_, 0}}},
                   {"day", {{KeyPart::From::kEvent, 1, nullptr, 4}}}};
    return Analyzer(s, FieldExtractor::json({"/user_id", "/time_stamp", "/action_type"}));
  }

  static std::string json(const Row& r) {
    return fmt::format(R"({{"user_id":{},"item_id":{},"time_stamp":{},"action_type":{}}})", r.user, r.item, r.time,
                       r.action);
  }

  // The independent recount: straight from the rows and the user_info maps.
  std::map<std::string, std::uint64_t> recount(int which) {
    std::map<std::string, std::uint64_t> m;
    for (const auto& r : rows_) {
      if (r.action != "2") continue;
      if (which == 2) {
        m[std::string(4 - std::min<std::size_t>(4, r.time.size()), '0') + r.time]++;
        continue;
      }
      const auto& src = which == 0 ? ages_ : genders_;
      const auto it = src.find(r.user);
      m[(which == 0 ? age_ : gender_).apply(it == src.end() ? std::nullopt : std::optional<std::string_view>(it->second))]++;
    }
    return m;
  }

  testing::TempDir dir_;
  std::map<std::string, std::string> ages_, genders_;
  std::vector<Row> rows_;
  DimensionTable table_;
  LabelMap age_ = age_labels(), gender_ = gender_labels();
};

TEST_F(AnalyzerTest, CountsOrdersByAgeGenderAndDayExactlyLikeARecount) {
  Analyzer a = make();
  std::uint64_t seq = 0;
  for (const auto& r : rows_) ASSERT_NE(a.process({1, seq++}, json(r)), Outcome::kDuplicate);
  for (int g = 0; g < 3; ++g) EXPECT_EQ(a.totals(static_cast<std::size_t>(g)), recount(g)) << "grouping " << g;
  EXPECT_EQ(a.stats().counted + a.stats().filtered, rows_.size());
}

TEST_F(AnalyzerTest, DropsCopiesByIdentityCountsTwinsAndRejectsMalformedRows) {
  Analyzer a = make();
  std::uint64_t seq = 0;
  const Row order{"5", "1", "1111", "2"};
  rows_.push_back(order);  // an identical twin of the next one: two orders
  rows_.push_back(order);
  for (const auto& r : rows_) ASSERT_NE(a.process({1, seq++}, json(r)), Outcome::kDuplicate);
  for (std::uint64_t s = 100; s < 200; ++s) EXPECT_EQ(a.process({1, s}, json(rows_[s])), Outcome::kDuplicate);
  // Malformed rows travel as the raw lines they are, on their own source.
  EXPECT_EQ(a.process({2, 0}, "328862,323294,833,2882,2661,829,2"), Outcome::kRejected);
  EXPECT_EQ(a.process({2, 1}, R"({"user_id":"abc","time_stamp":1111,"action_type":2})"), Outcome::kRejected);
  EXPECT_EQ(a.process({2, 2}, R"({"user_id":5,"time_stamp":11.5,"action_type":2})"), Outcome::kRejected);
  EXPECT_EQ(a.process({2, 3}, R"({"user_id":5,"action_type":2})"), Outcome::kRejected);
  EXPECT_EQ(a.process({2, 3}, R"({"user_id":5,"action_type":2})"), Outcome::kDuplicate) << "a re-sent reject";
  for (int g = 0; g < 3; ++g) EXPECT_EQ(a.totals(static_cast<std::size_t>(g)), recount(g));
  EXPECT_EQ(a.stats().rejected, 4u);
  EXPECT_EQ(a.stats().duplicates, 101u);
  EXPECT_EQ(a.stats().rejected_by_reason.at("not a JSON object"), 1u);
  EXPECT_EQ(a.stats().rejected_by_reason.at("field is not an integer"), 2u);
  EXPECT_EQ(a.stats().samples.at("not a JSON object").front(), "328862,323294,833,2882,2661,829,2");
  // The audit: per source, everything counted once, no gaps.
  for (const auto& s : a.ledger().audit()) EXPECT_EQ(s.gaps, 0u);
}

TEST_F(AnalyzerTest, BatchesCountExactlyWhatOneByOneCounts) {
  // One stream with copies (same identity), twins, malformed rows and reordered sources, fed
  // one by one to one engine and in batches of random sizes to another: the same state, the
  // same rejects handed to the sink in the same order with the caller's positions.
  std::mt19937_64 rng(3);
  std::vector<Event> events;
  std::vector<std::string> payloads;
  payloads.reserve(rows_.size() * 2);
  const std::vector<std::string> bad = {"328862,323294,833,2882,2661,829,2", R"({"user_id":"abc","time_stamp":1,"action_type":2})",
                                        R"({"user_id":5,"action_type":2})", R"({"user_id":5,"time_stamp":1,)", "[]"};
  std::uint64_t seq[3] = {};
  for (std::size_t i = 0; i < rows_.size(); ++i) {
    const std::uint64_t src = rng() % 3;
    if (i % 97 == 0) payloads.push_back(bad[i % bad.size()]);
    else payloads.push_back(json(rows_[i]));
    events.push_back({{src, seq[src]++}, payloads.back(), 0, static_cast<std::int64_t>(i)});
    if (i % 50 == 0 && i > 0) events.push_back(events[events.size() - 1 - rng() % 10]);  // a re-sent copy
  }
  Analyzer one = make(), many = make();
  std::vector<std::string> rejects_one, rejects_many;
  one.on_reject([&](const Event& e, std::string_view reason) {
    rejects_one.push_back(fmt::format("{}/{} at {}: {}", e.id.source_id, e.id.sequence, e.where, reason));
  });
  many.on_reject([&](const Event& e, std::string_view reason) {
    rejects_many.push_back(fmt::format("{}/{} at {}: {}", e.id.source_id, e.id.sequence, e.where, reason));
  });
  for (const Event& e : events) (void)one.process(e);
  for (std::size_t at = 0; at < events.size();) {
    const std::size_t n = std::min<std::size_t>(events.size() - at, 1 + rng() % 300);
    many.process_batch(std::span<const Event>(events).subspan(at, n));
    at += n;
  }
  EXPECT_EQ(many.serialize("p"), one.serialize("p"));
  EXPECT_EQ(rejects_many, rejects_one);
  EXPECT_GT(one.stats().duplicates, 90u);
  EXPECT_GT(one.stats().rejected, 40u);
}

TEST_F(AnalyzerTest, ResumesFromACheckpointWithTheSameTotals) {
  Analyzer a = make();
  for (std::uint64_t s = 0; s < 2500; ++s) (void)a.process({1, s}, json(rows_[s]));
  const std::string state = a.serialize("channel=12345");
  Analyzer b = make();
  EXPECT_EQ(b.restore(state), "channel=12345");
  // The input is replayed from an older position: the copies are dropped, the rest counted.
  for (std::uint64_t s = 2000; s < rows_.size(); ++s) (void)b.process({1, s}, json(rows_[s]));
  for (int g = 0; g < 3; ++g) EXPECT_EQ(b.totals(static_cast<std::size_t>(g)), recount(g));
  EXPECT_EQ(b.stats().duplicates, 500u);
  EXPECT_THROW((void)make().restore("garbage"), core::Error);
}

// 1 M distinct group keys against max_groups = 10,000: the first 10,000 keys get their rows,
// every later new key is counted under "(other)", the total stays exact, and memory stays
// near what 10,000 keys cost (1 M map entries would be about 100 MB).
// Feeds `a` a million events of distinct user ids (ingest time 1000), each to be counted;
// returns how much the RSS grew meanwhile, in KiB.
long feed_a_million_distinct_users(Analyzer& a) {
  const long before = testing::rss_kb();
  std::string ev;
  for (std::uint64_t i = 0; i < 1'000'000; ++i) {
    ev.clear();
    fmt::format_to(std::back_inserter(ev), R"({{"user_id":{}}})", i);
    const Outcome o = a.process(Event{{1, i}, ev, 1000});
    if (o != Outcome::kCounted) {
      ADD_FAILURE() << "event " << i << " not counted";
      break;
    }
  }
  return testing::rss_kb() - before;
}

TEST(AnalyzerBoundsTest, AMillionDistinctKeysStayWithinMaxGroupsAndTheTotalStaysExact) {
  AnalyzerSpec s;
  s.groupings = {{"user", {{KeyPart::From::kEvent, 0, nullptr, 0}}, 10'000}};
  Analyzer a(s, FieldExtractor::json({"/user_id"}));
  const long grown = feed_a_million_distinct_users(a);
  const auto& totals = a.totals(0);
  EXPECT_EQ(totals.size(), 10'001u);
  EXPECT_EQ(totals.at(std::string(kOtherKey)), 990'000u);
  EXPECT_EQ(totals.at("9999"), 1u);
  EXPECT_EQ(totals.count("10000"), 0u);
  EXPECT_EQ(a.stats().counted, 1'000'000u);
  EXPECT_EQ(a.stats().overflowed, 990'000u);
  EXPECT_LT(grown, 32 * 1024) << "RSS grew by " << grown << " KiB";
  // The bound and the overflow survive a checkpoint.
  Analyzer b(s, FieldExtractor::json({"/user_id"}));
  b.restore(a.serialize("pos"));
  EXPECT_EQ(b.totals(0), totals);
  EXPECT_EQ(b.stats().overflowed, 990'000u);
}

// The same bound for windows: a million distinct keys in one window cost what max_keys do;
// the window's total stays exact, and the overflow is in the stats.
TEST(AnalyzerBoundsTest, AMillionDistinctKeysInOneWindowStayWithinItsBound) {
  AnalyzerSpec s;
  AnalyzerSpec::Window w;
  w.name = "w";
  w.key = {{KeyPart::From::kEvent, 0, nullptr, 0}};
  w.size_ms = w.slide_ms = 3'600'000;  // ingest time: every event in one open window
  w.max_keys = 10'000;
  s.windows = {w};
  Analyzer a(s, FieldExtractor::json({"/user_id"}));
  const long grown = feed_a_million_distinct_users(a);
  const auto& open = a.window(0).open();
  EXPECT_EQ(open.size(), 10'001u);
  EXPECT_EQ(open.at({0, std::string(kOtherWindowKey)}).count, 990'000u);
  std::uint64_t total = 0;
  for (const auto& [k, agg] : open) total += agg.count;
  EXPECT_EQ(total, 1'000'000u);
  EXPECT_EQ(a.stats().overflowed, 990'000u);
  EXPECT_LT(grown, 32 * 1024) << "RSS grew by " << grown << " KiB";
}

// An event time the windows cannot place (not a number, before 1970, past 9999, overflowing)
// rejects the event with its reason before anything counts it: no total, no window, no late.
// A one-second window per field 1, its time field 0 in epoch milliseconds.
AnalyzerSpec::Window epoch_ms_window() {
  AnalyzerSpec::Window w;
  w.name = "w";
  w.key = {{KeyPart::From::kEvent, 1, nullptr, 0}};
  w.size_ms = w.slide_ms = 1000;
  w.time_field = 0;
  w.time_format.kind = TimeFormat::Kind::kEpochMillis;
  return w;
}

// A checkpoint names each output's totals and each window's state: restored into a config with
// an output and a window added in front, a removed one, each keeps its own; nothing moves to a
// neighbour's place.
TEST(AnalyzerCheckpointTest, RestoresTotalsAndWindowsByNameWhateverTheirPlaceInTheConfig) {
  AnalyzerSpec before;
  before.groupings = {{"by_key", {{KeyPart::From::kEvent, 1, nullptr, 0}}}, {"gone", {{KeyPart::From::kEvent, 1, nullptr, 0}}}};
  const AnalyzerSpec::Window w = epoch_ms_window();
  before.windows = {w};
  Analyzer a(before, FieldExtractor::json({"/t", "/k"}));
  for (std::uint64_t i = 0; i < 30; ++i)
    ASSERT_EQ(a.process({1, i}, fmt::format(R"({{"t":{},"k":"{}"}})", 1000 + i, i % 2 ? "x" : "y")), Outcome::kCounted);
  AnalyzerSpec after;
  after.groupings = {{"new", {{KeyPart::From::kEvent, 1, nullptr, 0}}}, before.groupings[0]};
  AnalyzerSpec::Window fresh = w;
  fresh.name = "fresh";
  after.windows = {fresh, w};
  Analyzer b(after, FieldExtractor::json({"/t", "/k"}));
  EXPECT_EQ(b.restore(a.serialize("here")), "here");
  EXPECT_TRUE(b.totals(0).empty()) << "the new output starts empty";
  EXPECT_EQ(b.totals(1), a.totals(0));
  EXPECT_TRUE(b.window(0).open().empty()) << "the new window starts empty";
  EXPECT_EQ(b.window(1).open(), a.window(0).open());
  EXPECT_EQ(b.stats().counted, 30u);
  EXPECT_EQ(b.dropped_on_restore(), std::vector<std::string>{"output gone"}) << "said, not silent";
}

// A window's rows are keyed by where its windows start and end: restored into a config where
// the window of that name has another size or slide, they would be counted as other windows.
// The restore refuses, saying what to do; the same shape, or a checkpoint from before shapes
// were kept, restores.
TEST(AnalyzerCheckpointTest, AWindowWhoseSizeOrSlideChangedIsRefusedAtRestoreNamingTheRemedy) {
  AnalyzerSpec before;
  before.windows = {epoch_ms_window()};
  Analyzer a(before, FieldExtractor::json({"/t", "/k"}));
  for (std::uint64_t i = 0; i < 10; ++i)
    ASSERT_EQ(a.process({1, i}, fmt::format(R"({{"t":{},"k":"x"}})", 1000 + i)), Outcome::kCounted);
  const std::string state = a.serialize("here");
  for (const auto& [size, slide] : {std::pair<std::int64_t, std::int64_t>{before.windows[0].size_ms * 2, 0},
                                    {0, before.windows[0].slide_ms / 2}}) {
    AnalyzerSpec after = before;
    if (size != 0) after.windows[0].size_ms = after.windows[0].slide_ms = size;
    if (slide != 0) after.windows[0].slide_ms = slide;
    Analyzer b(after, FieldExtractor::json({"/t", "/k"}));
    try {
      (void)b.restore(state);
      ADD_FAILURE() << "restored into windows of another shape";
    } catch (const core::Error& e) {
      EXPECT_NE(std::string(e.what()).find("window '" + before.windows[0].name + "': the saved state is of windows of"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("give the window another name"), std::string::npos) << e.what();
    }
  }
  Analyzer same(before, FieldExtractor::json({"/t", "/k"}));
  EXPECT_EQ(same.restore(state), "here");
  EXPECT_EQ(same.window(0).open(), a.window(0).open());
  // Format 4 had no shape: taken as it is.
  std::string old = state;
  old.replace(0, old.find('\n'), "tributary-analyzer 4");
  const auto at = old.find("\tstate\t");
  ASSERT_NE(at, std::string::npos);
  const auto start = old.rfind('\n', at) + 1, eol = old.find('\n', at);
  std::string line = old.substr(start, eol - start);
  line.erase(line.rfind('\t'));  // the slide
  line.erase(line.rfind('\t'));  // the size
  old.replace(start, eol - start, line);
  AnalyzerSpec bigger = before;
  bigger.windows[0].size_ms = bigger.windows[0].slide_ms = before.windows[0].size_ms * 2;
  Analyzer from_old(bigger, FieldExtractor::json({"/t", "/k"}));
  EXPECT_EQ(from_old.restore(old), "here");
}

TEST(AnalyzerBoundsTest, AnAbsurdEventTimeIsRejectedWithItsReasonAndCountsNowhere) {
  AnalyzerSpec s;
  s.groupings = {{"k", {{KeyPart::From::kEvent, 1, nullptr, 0}}}};
  s.windows = {epoch_ms_window()};
  Analyzer a(s, FieldExtractor::json({"/ts", "/k"}));
  std::uint64_t seq = 0;
  for (const char* ts : {"\"nan\"", "-5", "1e300", "9223372036854775807", "253402300800001", "\"soon\""})
    EXPECT_EQ(a.process({1, seq++}, fmt::format(R"({{"ts":{},"k":"x"}})", ts)), Outcome::kRejected) << ts;
  EXPECT_EQ(a.stats().rejected_by_reason.at("bad event time"), 6u);
  EXPECT_EQ(a.stats().counted, 0u);
  EXPECT_TRUE(a.totals(0).empty());
  EXPECT_TRUE(a.window(0).open().empty());
  EXPECT_EQ(a.process({1, seq++}, R"({"ts":1000,"k":"x"})"), Outcome::kCounted) << "a sane time still counts";
}

// Group-by values longer than kMaxKeyValue, one or a key's parts added up, reject the event with
// its reason, in a grouping and in a window alike: as a key they would be a row that size in
// every output and, in the Kafka-transaction mode, a record over the producer's limit that
// stopped the job at every restart. A labelled field is not judged by its raw length (its key
// is the label).
TEST(AnalyzerBoundsTest, AGroupByKeyTooLongIsRejectedWithItsReasonAndCountsNowhere) {
  AnalyzerSpec s;
  s.groupings = {{"k", {{KeyPart::From::kEvent, 1, nullptr, 0}}}};
  AnalyzerSpec::Window w = epoch_ms_window();
  w.key = {{KeyPart::From::kEvent, 2, nullptr, 0}, {KeyPart::From::kEvent, 3, nullptr, 0}};
  s.windows = {w};
  Analyzer a(s, FieldExtractor::json({"/ts", "/k", "/w", "/v"}));
  const std::string big(kMaxKeyValue + 1, 'k'), half(kMaxKeyValue / 2 + 1, 'h');
  EXPECT_EQ(a.process({1, 0}, fmt::format(R"({{"ts":1000,"k":"{}","w":"x","v":"y"}})", big)), Outcome::kRejected);
  EXPECT_EQ(a.process({1, 1}, fmt::format(R"({{"ts":1000,"k":"x","w":"{}","v":"y"}})", big)), Outcome::kRejected);
  EXPECT_EQ(a.process({1, 2}, fmt::format(R"({{"ts":1000,"k":"x","w":"{0}","v":"{0}"}})", half)), Outcome::kRejected);
  EXPECT_EQ(a.stats().rejected_by_reason.at("group-by key too long"), 3u);
  EXPECT_TRUE(a.totals(0).empty());
  EXPECT_TRUE(a.window(0).open().empty());
  const std::string edge(kMaxKeyValue, 'k');
  EXPECT_EQ(a.process({1, 3}, fmt::format(R"({{"ts":1000,"k":"{}","w":"x","v":"y"}})", edge)), Outcome::kCounted);
  EXPECT_EQ(a.totals(0).at(edge), 1u);
  // A field twice in a key is there twice.
  AnalyzerSpec twice;
  AnalyzerSpec::Window tw = epoch_ms_window();
  tw.key = {{KeyPart::From::kEvent, 1, nullptr, 0}, {KeyPart::From::kEvent, 1, nullptr, 0}};
  twice.windows = {tw};
  Analyzer b(twice, FieldExtractor::json({"/ts", "/k"}));
  EXPECT_EQ(b.process({1, 0}, fmt::format(R"({{"ts":1000,"k":"{}"}})", half)), Outcome::kRejected);
}

// A window's key joins its parts with kKeySeparator: a value holding it would make its row
// another key's (("a\x1fb", "c") and ("a", "b\x1fc") alike) or give it a column more in the
// window's file. Such an event is rejected with its reason; an output's key is one value, and
// takes it as it is.
TEST(AnalyzerBoundsTest, AWindowKeyValueHoldingTheSeparatorIsRejectedWithItsReason) {
  AnalyzerSpec s;
  s.groupings = {{"k", {{KeyPart::From::kEvent, 1, nullptr, 0}}}};
  AnalyzerSpec::Window w = epoch_ms_window();
  w.key = {{KeyPart::From::kEvent, 1, nullptr, 0}, {KeyPart::From::kEvent, 2, nullptr, 0}};
  s.windows = {w};
  Analyzer a(s, FieldExtractor::json({"/ts", "/k", "/w"}));
  EXPECT_EQ(a.process({1, 0}, R"({"ts":1000,"k":"a\u001fb","w":"c"})"), Outcome::kRejected);
  EXPECT_EQ(a.stats().rejected_by_reason.at("group-by value holds the key separator"), 1u);
  EXPECT_EQ(a.process({1, 1}, R"({"ts":1000,"k":"a","w":"b,c"})"), Outcome::kCounted);
  EXPECT_TRUE(a.totals(0).contains("a"));
  ASSERT_EQ(a.window(0).open().size(), 1u);
  EXPECT_EQ(a.window(0).open().begin()->first.second, std::string("a") + kKeySeparator + "b,c");
  AnalyzerSpec one_value;
  one_value.groupings = s.groupings;
  Analyzer outputs_only(one_value, FieldExtractor::json({"/ts", "/k"}));
  EXPECT_EQ(outputs_only.process({1, 0}, R"({"ts":1000,"k":"a\u001fb"})"), Outcome::kCounted);
}

// A window's value that is not a finite number ("nan", "inf", text) rejects the event with its
// reason: one NaN would make the window's sum NaN for good.
TEST(AnalyzerBoundsTest, AValueThatIsNotAFiniteNumberIsRejectedAndTheSumStaysExact) {
  AnalyzerSpec s;
  AnalyzerSpec::Window w = epoch_ms_window();
  w.value_field = 2;
  s.windows = {w};
  Analyzer a(s, FieldExtractor::json({"/ts", "/k", "/v"}));
  std::uint64_t seq = 0;
  for (const char* v : {"\"nan\"", "\"inf\"", "\"-infinity\"", "\"NaN\"", "\"12x\"", "1e999"})
    EXPECT_EQ(a.process({1, seq++}, fmt::format(R"({{"ts":1000,"k":"x","v":{}}})", v)), Outcome::kRejected) << v;
  EXPECT_EQ(a.stats().rejected_by_reason.at("value is not a number"), 6u);
  EXPECT_EQ(a.process({1, seq++}, R"({"ts":1000,"k":"x","v":2.5})"), Outcome::kCounted);
  EXPECT_EQ(a.process({1, seq++}, R"({"ts":1000,"k":"x","v":"-1"})"), Outcome::kCounted);
  const Aggregate& agg = a.window(0).open().at({1000, "x"});
  EXPECT_EQ(agg.count, 2u);
  EXPECT_DOUBLE_EQ(agg.sum, 1.5);
}

// One event stamped ten days ahead of when it was ingested (a skewed clock, a mistyped year):
// rejected with its reason, it moves no watermark, so the events after it are not late. Within
// max_future it counts (clocks are a little apart); without an ingest time it is not judged.
TEST(AnalyzerBoundsTest, AnEventTimeFarAheadOfItsIngestTimeIsRejectedAndClosesNoWindow) {
  AnalyzerSpec s;
  AnalyzerSpec::Window w = epoch_ms_window();
  w.max_future_ms = 3'600'000;
  s.windows = {w};
  Analyzer a(s, FieldExtractor::json({"/ts", "/k"}));
  const std::int64_t ingest = 1'700'000'000'000;
  std::uint64_t seq = 0;
  auto at = [&](std::int64_t ts, std::int64_t ingest_ms) {
    const std::string payload = fmt::format(R"({{"ts":{},"k":"x"}})", ts);
    return a.process(Event{{1, seq++}, payload, ingest_ms});
  };
  EXPECT_EQ(at(ingest - 5000, ingest), Outcome::kCounted);
  EXPECT_EQ(at(ingest + 10LL * 86'400'000, ingest), Outcome::kRejected);
  EXPECT_EQ(a.stats().rejected_by_reason.at("event time in the future"), 1u);
  EXPECT_EQ(a.window(0).watermark(), ingest - 5000) << "the rejected event moved the watermark";
  EXPECT_EQ(at(ingest - 4500, ingest + 10), Outcome::kCounted);
  EXPECT_EQ(a.stats().late, 0u);
  EXPECT_EQ(at(ingest + 1'800'000, ingest), Outcome::kCounted) << "half an hour ahead: within max_future";
  EXPECT_EQ(at(ingest + 10LL * 86'400'000, 0), Outcome::kCounted) << "no ingest time: nothing to judge it by";
}

// retire_sources_after: a source idle that long in ingest time, with nothing missing, leaves the
// ledger (and the per-source audit) for good, its totals kept under `retired`; the counts do not
// change, and a checkpoint keeps the decision.
TEST(AnalyzerBoundsTest, SourcesIdlePastRetireSourcesAfterLeaveTheLedgerAndTheirTotalsStay) {
  AnalyzerSpec s;
  s.groupings = {{"user", {{KeyPart::From::kEvent, 0, nullptr, 0}}, 1000}};
  s.retire_sources_after_ms = 60'000;
  Analyzer a(s, FieldExtractor::json({"/user_id"}));
  const std::string ev = R"({"user_id":"7"})";
  // 1 000 file generations of 10 events each, one after the other, a second apart.
  for (std::uint64_t src = 1; src <= 1000; ++src)
    for (std::uint64_t i = 0; i < 10; ++i)
      ASSERT_EQ(a.process(Event{{src, i}, ev, static_cast<std::int64_t>(src * 1000)}), Outcome::kCounted);
  EXPECT_EQ(a.stats().counted, 10'000u);
  EXPECT_EQ(a.totals(0).at("7"), 10'000u);
  // Idle for 60 s or more at the clock's 1 000 000: sources 1..940; scans run every 3.75 s,
  // so the last one (at 999 000 or later) has taken the sources idle since 939 000 at least.
  const Ledger::Retired r = a.ledger().retired();
  EXPECT_GE(r.sources, 930u);
  EXPECT_LE(r.sources, 940u);
  EXPECT_EQ(r.events, 10 * r.sources);
  EXPECT_EQ(a.ledger().sources() + r.sources, 1000u) << "every source is either kept or retired";
  Analyzer b(s, FieldExtractor::json({"/user_id"}));
  b.restore(a.serialize("pos"));
  EXPECT_EQ(b.ledger().retired().sources, r.sources);
  EXPECT_EQ(b.ledger().sources(), a.ledger().sources());
  EXPECT_EQ(b.process(Event{{1000, 5}, ev, 1'000'000}), Outcome::kDuplicate) << "a kept source's copy";
}

}  // namespace
}  // namespace tributary::analytics
