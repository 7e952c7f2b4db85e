// status.json and the Prometheus text are rendered from one set of figures: text that comes
// from configuration or input (rejection reasons, window names) is escaped, never spliced.
#include <gtest/gtest.h>

#include "render.h"

namespace tributary::analytics::render {
namespace {

TEST(RenderTest, StatusJsonEscapesReasonsAndWindowNames) {
  Figures f;
  f.stats.rejected = 2;
  f.stats.rejected_by_reason["bad \"x\"\n"] = 2;
  f.windows.push_back({"w\"1", 1, 2, 3, 1, std::nullopt});
  const std::string j = status_json(f);
  EXPECT_NE(j.find(R"("rejected_by_reason":{"bad \"x\"\n":2})"), std::string::npos) << j;
  EXPECT_NE(j.find(R"("windows":{"w\"1":{"open":1,"closed":2,"late_events":3,"expired":1,"watermark":null}})"), std::string::npos)
      << j;
  const std::string p = prometheus(f);
  EXPECT_NE(p.find(R"(tributary_analyzer_rejected_events_total{reason="bad \"x\"\n"} 2)"), std::string::npos) << p;
  EXPECT_NE(p.find(R"(tributary_analyzer_window_expired_events_total{window="w\"1"} 1)"), std::string::npos) << p;
}

// The sources the ledger retired are in both, as totals: they left the per-source figures.
TEST(RenderTest, RetiredSourcesAreReportedAsTotals) {
  Figures f;
  f.retired = {3, 120, 4};
  EXPECT_NE(status_json(f).find(R"("retired_sources":{"sources":3,"accounted":120,"duplicates":4})"), std::string::npos)
      << status_json(f);
  const std::string p = prometheus(f);
  EXPECT_NE(p.find("tributary_analyzer_retired_sources_total 3"), std::string::npos) << p;
  EXPECT_NE(p.find("tributary_analyzer_retired_source_accounted_total 120"), std::string::npos) << p;
}

// A dead-letter line can be bounded: the event is cut, and the line says how long it was.
TEST(RenderTest, ADeadLetterLineCutsALongEventAndSaysSo) {
  std::string line;
  dead_letter_line(line, {3, 9}, "not a JSON object", "kafka t 0:5", std::string(1000, '\x01'), 100);
  EXPECT_NE(line.find(R"("event":")" + [] {
              std::string s;
              for (int i = 0; i < 100; ++i) s += "\\u0001";
              return s;
            }() + R"(","event_bytes":1000,"truncated":true})"),
            std::string::npos)
      << line;
  std::string whole;
  dead_letter_line(whole, {3, 9}, "r", "i", "short", 100);
  EXPECT_EQ(whole, R"({"reason":"r","source":3,"seq":9,"input":"i","event":"short"})" "\n");
}

}  // namespace
}  // namespace tributary::analytics::render
