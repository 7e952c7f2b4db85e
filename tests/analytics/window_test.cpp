// Event-time windows: time formats, durations, tumbling and hopping windows with a watermark
// and lateness checked against an independent brute-force reference on shuffled events,
// lateness edges, late rows made final after a retention (bounded memory), sum/min/max, and a
// checkpoint in the middle changing nothing.
#include "tributary/analytics/window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>

#include "text.h"

namespace tributary::analytics {
namespace {

TEST(TimeFormatTest, ParsesEpochsRfc3339AndPatterns) {
  const auto s = TimeFormat::parse("epoch_s", 2026);
  const auto ms = TimeFormat::parse("epoch_ms", 2026);
  const auto rfc = TimeFormat::parse("rfc3339", 2026);
  const auto mmdd = TimeFormat::parse("%m%d", 2015);
  const auto full = TimeFormat::parse("%Y-%m-%d %H:%M:%S", 1970);
  ASSERT_TRUE(s && ms && rfc && mmdd && full);
  EXPECT_EQ(s->to_millis("1700000000"), 1700000000000);
  EXPECT_EQ(s->to_millis("1700000000.25"), 1700000000250);
  EXPECT_EQ(ms->to_millis("1700000000123"), 1700000000123);
  EXPECT_EQ(rfc->to_millis("2026-11-11T00:00:00Z"), 1794355200000);
  EXPECT_EQ(rfc->to_millis("2026-11-11T01:30:00.5+01:30"), 1794355200500);
  EXPECT_EQ(rfc->to_millis("2026-11-10T23:00:00-01:00"), 1794355200000);
  EXPECT_EQ(mmdd->to_millis("1111"), 1447200000000) << "2015-11-11, the Tianchi data's year";
  EXPECT_EQ(full->to_millis("2026-11-11 00:00:00"), 1794355200000);
  for (const auto& bad : {"", "x", "12a"}) EXPECT_FALSE(ms->to_millis(bad)) << bad;
  for (const auto& bad : {"2026-11-11", "2026-02-30T00:00:00Z", "2026-11-11T00:00:00", "2026-11-11T24:00:00Z",
                          "2026-11-11T00:00:00+1:00"})
    EXPECT_FALSE(rfc->to_millis(bad)) << bad;
  EXPECT_FALSE(mmdd->to_millis("1131")) << "November has 30 days";
  for (const auto& absurd : {"1e300", "nan", "-5", "9223372036854775807"})  // no overflow, no UB
    EXPECT_FALSE(s->to_millis(absurd)) << absurd;
  EXPECT_FALSE(ms->to_millis("253402300800000")) << "after 9999";
  // An integer field drops leading zeros: a shorter all-digit value is the number.
  EXPECT_EQ(mmdd->to_millis("829"), 1440806400000) << "2015-08-29: the real log's first time_stamp";
  EXPECT_EQ(mmdd->to_millis("111"), 1420934400000) << "0111: January 11";
  EXPECT_FALSE(mmdd->to_millis("1")) << "0001: no month 0";
  EXPECT_FALSE(mmdd->to_millis("11-1")) << "not all digits: as written";
  EXPECT_FALSE(full->to_millis("20261111")) << "a pattern with literals is read as written";
  EXPECT_FALSE(TimeFormat::parse("%q", 2026));
  EXPECT_FALSE(TimeFormat::parse("yyyy", 2026));
}

TEST(TimeFormatTest, DurationsAndFormatting) {
  EXPECT_EQ(parse_duration_ms("250ms"), 250);
  EXPECT_EQ(parse_duration_ms("10s"), 10000);
  EXPECT_EQ(parse_duration_ms("5m"), 300000);
  EXPECT_EQ(parse_duration_ms("1h"), 3600000);
  EXPECT_EQ(parse_duration_ms("2d"), 172800000);
  EXPECT_EQ(parse_duration_ms("42"), 42);
  EXPECT_FALSE(parse_duration_ms("5 m"));
  EXPECT_FALSE(parse_duration_ms("m"));
  EXPECT_EQ(format_millis(1794355200000), "2026-11-11T00:00:00Z");
  EXPECT_EQ(format_millis(1794355200007), "2026-11-11T00:00:00.007Z");
  EXPECT_EQ(format_millis(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_millis(951782400000), "2000-02-29T00:00:00Z");
}

struct Event {
  std::int64_t t;
  std::string key;
  double value;
};

using Rows = std::map<std::pair<std::int64_t, std::string>, std::uint64_t>;

// The reference: for each event in arrival order, the watermark before it (max time seen so
// far - lateness, over the events before it); each window holding the event counts it if the
// window's end is above the highest watermark reached so far, else it is late for that window,
// and expired (in no row) if the window's end + retention is not above it either. A late row is
// final once the highest watermark is retention past its window's end.
struct Reference {
  Rows counted, late, final_late;
  std::uint64_t late_events = 0, expired_events = 0;
};
Reference reference(const std::vector<Event>& events, std::int64_t size, std::int64_t slide, std::int64_t lateness,
                    std::int64_t retention) {
  Reference r;
  std::int64_t high = INT64_MIN;  // highest watermark so far
  for (const Event& e : events) {
    bool late = false, expired = false;
    for (std::int64_t s = -size * 4; s <= e.t; s += slide) {  // every window start, the slow way
      if (!(s <= e.t && e.t < s + size)) continue;
      if (s + size > high) {
        ++r.counted[{s, e.key}];
        continue;
      }
      late = true;
      if (retention != 0 && s + size + retention <= high) expired = true;
      else ++r.late[{s, e.key}];
    }
    r.late_events += late;
    r.expired_events += expired;
    high = std::max(high, e.t - lateness);
  }
  for (auto it = r.late.begin(); retention != 0 && it != r.late.end();) {
    if (it->first.first + size + retention > high) {
      ++it;
      continue;
    }
    r.final_late.insert(*it);
    it = r.late.erase(it);
  }
  return r;
}

void check_against_reference(std::int64_t size, std::int64_t slide, std::int64_t lateness, std::uint64_t seed,
                             std::int64_t retention = 0) {
  std::mt19937_64 rng(seed);
  std::vector<Event> events;
  for (int i = 0; i < 3000; ++i) {
    // Mostly ordered time with jitter: some events arrive a little late, some very late.
    const std::int64_t base = i * 7;
    const std::int64_t jitter =
        static_cast<std::int64_t>(rng() % 40) - (rng() % 10 == 0 ? 100 + static_cast<std::int64_t>(rng() % 300) : 20);
    events.push_back({std::max<std::int64_t>(0, base + jitter), "k" + std::to_string(rng() % 3), 1.0});
  }
  const Reference want = reference(events, size, slide, lateness, retention);
  WindowSet w(size, slide, lateness, 0, retention);
  Rows got_counted, got_final;
  std::uint64_t late_events = 0;
  for (const Event& e : events) {
    late_events += w.add(e.t, e.key, std::nullopt) != 0 ? 1 : 0;
    for (const auto& [k, n] : w.take_retired()) EXPECT_TRUE(got_final.emplace(k, n).second) << "final twice";
  }
  for (const auto& r : w.take_closed()) {
    EXPECT_EQ(r.end - r.start, size);
    EXPECT_TRUE(got_counted.emplace(std::make_pair(r.start, r.key), r.agg.count).second) << "a window closed twice";
  }
  for (const auto& [k, a] : w.open()) got_counted[k] += a.count;  // not closed yet: count so far
  EXPECT_EQ(got_counted, want.counted);
  EXPECT_EQ(w.late(), want.late);
  EXPECT_EQ(got_final, want.final_late);
  EXPECT_EQ(w.late_events(), late_events);
  EXPECT_EQ(w.late_events(), want.late_events);
  EXPECT_EQ(w.expired_events(), want.expired_events);
  EXPECT_GT(late_events, 0u) << "the data has late events";
  if (retention != 0) {
    EXPECT_GT(want.expired_events, 0u) << "the data has expired events";
    EXPECT_GT(want.final_late.size(), 0u) << "the data has final late rows";
    EXPECT_GT(want.late.size(), 0u) << "the data has late rows that can still grow";
  }
}

TEST(WindowSetTest, TumblingWindowsMatchABruteForceReference) { check_against_reference(100, 100, 50, 1); }
TEST(WindowSetTest, HoppingWindowsMatchABruteForceReference) { check_against_reference(100, 25, 30, 2); }
TEST(WindowSetTest, WithoutLatenessEveryOutOfOrderEventIsLate) { check_against_reference(50, 50, 0, 3); }
TEST(WindowSetTest, TumblingLateRowsTurnFinalAfterTheRetentionAsABruteForceReferenceSays) {
  check_against_reference(100, 100, 50, 7, 250);
}
TEST(WindowSetTest, HoppingLateRowsTurnFinalAfterTheRetentionAsABruteForceReferenceSays) {
  check_against_reference(100, 25, 30, 5, 200);
}

// A run of any length keeps the late rows of the last late_retention only: memory does not
// grow with time, and every late event is either in a row (final or not) or expired.
TEST(WindowSetTest, LateRowsStayBoundedOverALongRunAndEveryLateEventIsAccountedFor) {
  constexpr std::int64_t kSize = 1000, kRetention = 3000;
  constexpr int kKeys = 20;
  std::mt19937_64 rng(6);
  WindowSet bounded(kSize, kSize, 0, 0, kRetention), unbounded(kSize, kSize, 0);
  std::uint64_t final_sum = 0;
  std::size_t most = 0;
  for (int i = 0; i < 200000; ++i) {
    std::int64_t t = 100000 + i * 10;  // 2000 s of event time, 100 events a second
    if (rng() % 20 == 0) t -= static_cast<std::int64_t>(rng() % 6000);  // up to 6 windows late
    const std::string key = "k" + std::to_string(rng() % kKeys);
    bounded.add(t, key, std::nullopt);
    unbounded.add(t, key, std::nullopt);
    for (const auto& [k, n] : bounded.take_retired()) final_sum += n;
    most = std::max(most, bounded.late().size());
  }
  // Late rows can only be for the windows that ended within the retention: 3 of them, plus the
  // one the watermark is in, each with at most kKeys keys.
  EXPECT_LE(most, static_cast<std::size_t>((kRetention / kSize + 1) * kKeys));
  EXPECT_GT(unbounded.late().size(), 20 * most) << "without a retention the late rows grow with the run";
  std::uint64_t open_sum = 0;
  for (const auto& [k, n] : bounded.late()) open_sum += n;
  EXPECT_GT(bounded.expired_events(), 0u);
  EXPECT_EQ(bounded.late_events(), unbounded.late_events());
  EXPECT_EQ(final_sum + open_sum + bounded.expired_events(), bounded.late_events());
}

TEST(WindowSetTest, AWindowClosesWhenTheWatermarkReachesItsEnd) {
  WindowSet w(10, 10, 5);
  w.add(3, "a", std::nullopt);
  w.add(14, "a", std::nullopt);  // watermark 9: [0,10) still open
  EXPECT_TRUE(w.closed().empty());
  w.add(15, "a", std::nullopt);  // watermark 10 = the end of [0,10): closed
  ASSERT_EQ(w.closed().size(), 1u);
  EXPECT_EQ(w.closed()[0].start, 0);
  EXPECT_EQ(w.closed()[0].agg.count, 1u);
  EXPECT_EQ(w.add(9, "a", std::nullopt), 1u) << "its window is closed: late";
  EXPECT_EQ(w.add(10, "a", std::nullopt), 0u) << "[10,20) is open";
  EXPECT_EQ((w.late().at({0, "a"})), 1u);
}

// The config's largest durations with the first and last event times: no overflow (UBSan in the
// sanitizer leg), and the windows still open, close and count late as at small scale.
TEST(WindowSetTest, TheLargestDurationsAndEventTimesDoNotOverflow) {
  WindowSet w(kMaxMillis, kMaxMillis, 0);
  w.add(kMaxMillis / 2, "a", std::nullopt);
  EXPECT_TRUE(w.closed().empty()) << "[0, kMaxMillis) is open";
  w.add(kMaxMillis, "a", 1.0);
  EXPECT_EQ(w.add(0, "a", std::nullopt), 1u) << "[0, kMaxMillis) closed when the watermark reached its end: late";
  ASSERT_EQ(w.closed().size(), 1u);
  EXPECT_EQ(w.closed()[0].agg.count, 1u);
  WindowSet late(1, 1, kMaxMillis);
  late.add(kMaxMillis, "a", std::nullopt);
  EXPECT_EQ(late.add(0, "a", std::nullopt), 0u) << "within the lateness";
  EXPECT_EQ(late.watermark(), 0);
}

TEST(WindowSetTest, AggregatesSumMinMax) {
  WindowSet w(100, 100, 0);
  for (const double v : {5.0, -2.5, 10.0}) w.add(1, "k", v);
  w.add(200, "k", 1.0);
  ASSERT_EQ(w.closed().size(), 1u);
  const Aggregate& a = w.closed()[0].agg;
  EXPECT_EQ(a.count, 3u);
  EXPECT_DOUBLE_EQ(a.sum, 12.5);
  EXPECT_DOUBLE_EQ(a.min, -2.5);
  EXPECT_DOUBLE_EQ(a.max, 10.0);
  // Min and max come from the events that have a value, whatever came first.
  WindowSet n(100, 100, 0);
  n.add(1, "k", std::nullopt);
  n.add(2, "k", -5.0);
  n.add(3, "k", -7.0);
  n.add(200, "k", 1.0);
  ASSERT_EQ(n.closed().size(), 1u);
  EXPECT_EQ(n.closed()[0].agg.count, 3u);
  EXPECT_DOUBLE_EQ(n.closed()[0].agg.min, -7.0);
  EXPECT_DOUBLE_EQ(n.closed()[0].agg.max, -5.0);
}

// Parts of one window from several partitions merge into what one aggregate of all their
// events would be; a part without values leaves min and max alone, whichever side it is on.
TEST(WindowSetTest, MergedPartsEqualOneAggregateOfAllTheirEvents) {
  const std::vector<std::vector<std::optional<double>>> parts = {
      {std::nullopt}, {4.0, std::nullopt, -1.5}, {}, {9.0}, {std::nullopt, std::nullopt}, {-3.0, 2.0}};
  Aggregate all, merged;
  for (const auto& part : parts) {
    Aggregate one;
    for (const auto v : part) {
      one.add(v);
      all.add(v);
    }
    merged.merge(one);
  }
  EXPECT_EQ(merged, all);
  EXPECT_EQ(merged.count, 9u);
  EXPECT_EQ(merged.valued, 5u);
  EXPECT_DOUBLE_EQ(merged.min, -3.0);
  EXPECT_DOUBLE_EQ(merged.max, 9.0);
}

// A window holds at most max_keys keys, open and late rows each; the events of further keys
// count under "(other)" in that window, and the bound and the overflow survive a checkpoint.
// Each window start has its own keys: a new window takes new keys again.
TEST(WindowSetTest, AWindowKeepsAtMostMaxKeysAndCountsTheRestUnderOther) {
  WindowSet w(100, 100, 0, 3);
  for (const char* k : {"a", "b", "c", "d", "e", "a", "d"}) w.add(10, k, 2.0);
  const std::string other(kOtherWindowKey);
  ASSERT_EQ(w.open().size(), 4u);
  EXPECT_EQ(w.open().at({0, "a"}).count, 2u);
  EXPECT_EQ(w.open().at({0, other}).count, 3u);  // d, e, d
  EXPECT_DOUBLE_EQ(w.open().at({0, other}).sum, 6.0);
  EXPECT_FALSE(w.open().contains({0, "d"}));
  EXPECT_EQ(w.overflowed_events(), 3u);
  // A checkpoint: the bound holds after it.
  std::string text;
  w.serialize(text, "w0");
  WindowSet resumed(100, 100, 0, 3);
  for (std::size_t start = 0; start < text.size();) {
    const auto nl = text.find('\n', start);
    ASSERT_TRUE(resumed.parse_line(detail::columns(std::string_view(text).substr(start, nl - start))));
    start = nl + 1;
  }
  EXPECT_EQ(resumed.overflowed_events(), 3u);
  resumed.add(20, "f", 1.0);
  EXPECT_EQ(resumed.open().at({0, other}).count, 4u);
  // The next window takes three new keys; then [0,100) closes and its late rows are bounded too.
  for (const char* k : {"x", "y", "z", "w"}) resumed.add(150, k, 1.0);
  EXPECT_TRUE(resumed.open().contains({100, "z"}));
  EXPECT_EQ(resumed.open().at({100, other}).count, 1u);
  resumed.add(250, "x", 1.0);  // watermark 250: [0,100) and [100,200) closed
  for (const char* k : {"p", "q", "r", "s", "t"}) EXPECT_EQ(resumed.add(30, k, 1.0), 1u) << "late";
  EXPECT_EQ(resumed.late().size(), 4u);
  EXPECT_EQ(resumed.late().at({0, other}), 2u);
  EXPECT_EQ(resumed.overflowed_events(), 3u + 1 + 1 + 2);
}

void check_checkpoint_in_the_middle(std::int64_t retention) {
  std::mt19937_64 rng(9);
  std::vector<Event> events;
  for (int i = 0; i < 2000; ++i) {
    std::int64_t t = i * 3 + static_cast<std::int64_t>(rng() % 50);
    if (rng() % 20 == 0) t = std::max<std::int64_t>(0, t - static_cast<std::int64_t>(rng() % 200));
    events.push_back({t, "k\t" + std::to_string(rng() % 4), 1.5});
  }
  WindowSet straight(60, 20, 10, 0, retention);
  for (const auto& e : events) straight.add(e.t, e.key, e.value);
  WindowSet first(60, 20, 10, 0, retention);
  for (std::size_t i = 0; i < 1000; ++i) first.add(events[i].t, events[i].key, events[i].value);
  std::string text;
  first.serialize(text, "w0");  // closed and final late rows not taken yet: in the checkpoint too
  WindowSet resumed(60, 20, 10, 0, retention);
  for (std::size_t start = 0; start < text.size();) {
    const auto nl = text.find('\n', start);
    ASSERT_TRUE(resumed.parse_line(detail::columns(std::string_view(text).substr(start, nl - start))));
    start = nl + 1;
  }
  for (std::size_t i = 1000; i < events.size(); ++i) resumed.add(events[i].t, events[i].key, events[i].value);
  auto a = straight.take_closed();
  auto b = resumed.take_closed();
  ASSERT_EQ(a.size(), b.size());
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].start, b[i].start);
    EXPECT_EQ(a[i].key, b[i].key);
    EXPECT_EQ(a[i].agg.count, b[i].agg.count);
    EXPECT_DOUBLE_EQ(a[i].agg.sum, b[i].agg.sum);
  }
  EXPECT_EQ(straight.open().size(), resumed.open().size());
  EXPECT_EQ(straight.late(), resumed.late());
  EXPECT_EQ(straight.take_retired(), resumed.take_retired());
  EXPECT_EQ(straight.late_events(), resumed.late_events());
  EXPECT_EQ(straight.expired_events(), resumed.expired_events());
  if (retention != 0) {
    EXPECT_GT(straight.expired_events(), 0u);
  }
}

// A checkpoint taken with one late_retention, restored with another.
WindowSet resumed_with(const WindowSet& before, std::int64_t retention) {
  std::string text;
  before.serialize(text, "w0");
  WindowSet after(1000, 1000, 0, 0, retention);
  for (std::size_t start = 0; start < text.size();) {
    const auto nl = text.find('\n', start);
    EXPECT_TRUE(after.parse_line(detail::columns(std::string_view(text).substr(start, nl - start))));
    start = nl + 1;
  }
  after.restored();
  return after;
}

TEST(WindowSetTest, ALargerRetentionAfterARestartNeverMakesASecondRowOfAFinalWindow) {
  WindowSet w(1000, 1000, 0, 0, 1000);
  w.add(5000, "k", std::nullopt);  // watermark 5000: late rows of windows starting by 3000 are final
  w.add(4200, "k", std::nullopt);  // late, window 4000
  w.add(6000, "k", std::nullopt);  // window 4000's late row final
  ASSERT_EQ(w.take_retired(), (std::vector<LateRow>{{{4000, "k"}, 1}}));
  WindowSet wider = resumed_with(w, 5000);
  EXPECT_EQ(wider.add(4500, "k", std::nullopt), 1u);
  EXPECT_TRUE(wider.late().empty()) << "window 4000 is final: its row went out once already";
  EXPECT_EQ(wider.expired_events(), 1u);
}

TEST(WindowSetTest, AWindowRestoredBeforeItsFirstEventKeepsLateRowsAsAFreshOne) {
  WindowSet w(1000, 1000, 0, 0, 1000);  // a checkpoint taken before any event: nothing closed yet
  WindowSet resumed = resumed_with(w, 1000);
  resumed.add(5000, "k", std::nullopt);
  EXPECT_EQ(resumed.add(4200, "k", std::nullopt), 1u);
  EXPECT_EQ(resumed.late(), (std::map<WindowKey, std::uint64_t>{{{4000, "k"}, 1}})) << "late, not expired";
  EXPECT_EQ(resumed.expired_events(), 0u);
}

TEST(WindowSetTest, ASmallerRetentionAfterARestartMakesTheOlderLateRowsFinalAtOnce) {
  WindowSet w(1000, 1000, 0, 0, 10000);
  w.add(5000, "k", std::nullopt);
  w.add(3200, "k", std::nullopt);
  w.add(4200, "k", std::nullopt);
  ASSERT_EQ(w.late().size(), 2u);
  WindowSet narrower = resumed_with(w, 1000);  // final now: windows starting by 5000 - 2000
  EXPECT_EQ(narrower.retired(), (std::vector<LateRow>{{{3000, "k"}, 1}}));
  EXPECT_EQ(narrower.late(), (std::map<WindowKey, std::uint64_t>{{{4000, "k"}, 1}}));
}

TEST(WindowSetTest, ACheckpointInTheMiddleChangesNothing) { check_checkpoint_in_the_middle(0); }
TEST(WindowSetTest, ACheckpointInTheMiddleChangesNothingWithFinalLateRows) { check_checkpoint_in_the_middle(40); }

}  // namespace
}  // namespace tributary::analytics
