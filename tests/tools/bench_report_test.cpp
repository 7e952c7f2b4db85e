// The regression gate's judgement: which metric fell, by how much, and when noise excuses it.
#include "bench_report.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "support/temp_dir.h"
#include "tributary/core/error.h"

namespace tributary::tools::bench {
namespace {

Metric instructions(std::string name, double v) { return {std::move(name), "instructions/event", v, 0, false, true, false}; }
Metric ratio(std::string name, double v, double spread) { return {std::move(name), "x", v, spread, true, true, false}; }
Metric reported(std::string name, double v) { return {std::move(name), "events/s", v, 0.3, true, false, false}; }

const Verdict& find(const std::vector<Verdict>& v, const std::string& name) {
  for (const auto& x : v)
    if (x.name == name) return x;
  throw std::runtime_error("no verdict for " + name);
}

TEST(BenchCompare, InstructionCountTwentyPercentHigherIsARegressionNamedInTheMessage) {
  Report base, now;
  base.metrics = {instructions("instructions/core/crc32c_1KiB", 440), instructions("instructions/analyze/extract_json", 2000)};
  now.metrics = {instructions("instructions/core/crc32c_1KiB", 528), instructions("instructions/analyze/extract_json", 2010)};
  CompareOptions o;
  const auto v = compare(base, now, o);
  EXPECT_TRUE(failed(v));
  EXPECT_EQ(find(v, "instructions/core/crc32c_1KiB").status, Status::kRegressed);
  EXPECT_NEAR(find(v, "instructions/core/crc32c_1KiB").worse_by, 0.20, 1e-9);
  EXPECT_EQ(find(v, "instructions/analyze/extract_json").status, Status::kOk);
  const auto text = format_verdicts(v, o);
  EXPECT_NE(text.find("REGRESSION: instructions/core/crc32c_1KiB (instructions/event) is 20.0% worse: 440 -> 528"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("REGRESSION: instructions/analyze"), std::string::npos) << text;
}

TEST(BenchCompare, WithinTheThresholdPassesAndAnImprovementIsSaidNotFailed) {
  Report base, now;
  base.metrics = {instructions("a", 1000), instructions("b", 1000)};
  now.metrics = {instructions("a", 1090), instructions("b", 700)};
  const auto v = compare(base, now, {});
  EXPECT_FALSE(failed(v));
  EXPECT_EQ(find(v, "a").status, Status::kOk);
  EXPECT_EQ(find(v, "b").status, Status::kImproved);
}

TEST(BenchCompare, AHigherIsBetterRatioFailsWhenItFalls) {
  Report base, now;
  base.metrics = {ratio("ratio/json vs nlohmann", 10.0, 0.01)};
  now.metrics = {ratio("ratio/json vs nlohmann", 7.5, 0.01)};
  const auto v = compare(base, now, {});
  ASSERT_TRUE(failed(v));
  EXPECT_NEAR(v[0].worse_by, 10.0 / 7.5 - 1, 1e-9);  // 1.33x slower against its peer
  now.metrics[0].value = 12;  // faster than the baseline: fine
  EXPECT_FALSE(failed(compare(base, now, {})));
}

// A wall-time ratio depends on the CPU model: judged against a baseline of another CPU (the
// command turns gate_ratios off then), a ratio is reported, never a failure; instruction
// counts are still gated.
TEST(BenchCompare, AgainstAnotherCpusBaselineRatiosAreReportedAndInstructionsStillGated) {
  Report base, now;
  base.metrics = {ratio("ratio/json vs nlohmann", 10.0, 0.01), instructions("instructions/a", 1000),
                  ratio("ratio/gone", 2.0, 0.01)};
  now.metrics = {ratio("ratio/json vs nlohmann", 5.0, 0.01), instructions("instructions/a", 1300)};
  CompareOptions o;
  o.gate_ratios = false;
  const auto v = compare(base, now, o);
  EXPECT_EQ(find(v, "ratio/json vs nlohmann").status, Status::kReported);
  EXPECT_EQ(find(v, "ratio/gone").status, Status::kReported) << "a missing ratio is not a failure either";
  EXPECT_EQ(find(v, "instructions/a").status, Status::kRegressed);
  now.metrics[1].value = 1000;
  EXPECT_FALSE(failed(compare(base, now, o)));
}

TEST(BenchCompare, ANoisyRatioWidensItsOwnMarginInsteadOfCryingWolf) {
  Report base, now;
  base.metrics = {ratio("r", 1.0, 0.05)};
  now.metrics = {ratio("r", 0.8, 0.05)};  // 20% worse, but each run measured +-5%
  const auto v = compare(base, now, {});  // margin: max(10%, 3 x (5% + 5%)) = 30%
  EXPECT_FALSE(failed(v));
  EXPECT_NEAR(v[0].allowed, 0.30, 1e-9);
  now.metrics[0].value = 0.6;  // 40% worse: beyond even the noise
  EXPECT_TRUE(failed(compare(base, now, {})));
}

TEST(BenchCompare, SlowerAndFasterByTheSameFactorAreTheSameDistance) {
  Report base, now;
  base.metrics = {ratio("r", 1.0, 0.0)};
  now.metrics = {ratio("r", 0.5, 0.0)};
  EXPECT_NEAR(compare(base, now, {})[0].worse_by, 1.0, 1e-9);  // half the ratio: 2x worse
  now.metrics[0].value = 2.0;
  EXPECT_NEAR(compare(base, now, {})[0].worse_by, -1.0, 1e-9);
}

TEST(BenchCompare, ANewRunCannotExcuseItsSlowdownByBeingNoisier) {
  Report base, now;
  base.metrics = {ratio("r", 1.0, 0.08)};
  now.metrics = {ratio("r", 0.4, 0.60)};  // 2.5x worse, and all over the place
  const auto v = compare(base, now, {});  // margin: 3 x (0.08 + min(0.60, 0.16)) = 0.72
  EXPECT_NEAR(v[0].allowed, 0.72, 1e-9);
  EXPECT_TRUE(failed(v));
}

TEST(BenchCompare, AGatedValueOfZeroOrAChangedUnitFailsInsteadOfPassing) {
  Report base, now;
  base.metrics = {instructions("a", 400), instructions("b", 400), instructions("c", 0)};
  now.metrics = {instructions("a", 0), instructions("b", 400), instructions("c", 400)};
  now.metrics[1].unit = "instructions/batch";
  const auto v = compare(base, now, {});
  EXPECT_EQ(find(v, "a").status, Status::kInvalid);  // nothing measured is no improvement
  EXPECT_EQ(find(v, "b").status, Status::kInvalid);
  EXPECT_EQ(find(v, "c").status, Status::kInvalid);
  EXPECT_TRUE(failed(v));
  EXPECT_NE(format_verdicts(v, {}).find("REGRESSION: gated metric a cannot be compared"), std::string::npos);
}

TEST(BenchCompare, UngatedFiguresAreReportedNeverFailed) {
  Report base, now;
  base.metrics = {reported("channel-ipc/64B tributary", 26e6)};
  now.metrics = {reported("channel-ipc/64B tributary", 5e6)};
  const auto v = compare(base, now, {});
  EXPECT_FALSE(failed(v));
  EXPECT_EQ(v[0].status, Status::kReported);
}

TEST(BenchCompare, AGatedMetricMissingFromTheNewRunFailsAndANewOneIsListed) {
  Report base, now;
  base.metrics = {instructions("gone", 100)};
  now.metrics = {instructions("added", 100)};
  const auto v = compare(base, now, {});
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(find(v, "gone").status, Status::kMissing);
  EXPECT_EQ(find(v, "added").status, Status::kAdded);
  EXPECT_TRUE(failed(v));
  EXPECT_NE(format_verdicts(v, {}).find("gated metric gone is missing"), std::string::npos);
}

TEST(BenchCompare, MaxRegressionIsTheUsersThreshold) {
  Report base, now;
  base.metrics = {instructions("a", 1000)};
  now.metrics = {instructions("a", 1060)};
  CompareOptions strict;
  strict.max_regression = 0.05;
  EXPECT_TRUE(failed(compare(base, now, strict)));
  EXPECT_FALSE(failed(compare(base, now, {})));
}

TEST(BenchReport, RoundTripsThroughJsonWithContextAndRawBenchmarks) {
  testing::TempDir dir;
  Report r;
  r.context = {{"cpu_model", "AMD EPYC \"test\""}, {"num_cpus", "2"}};
  r.metrics = {instructions("instructions/x", 377.955), ratio("ratio/a vs b", 2.5, 0.014), reported("tail/rsyslog", 4.2e5)};
  r.metrics[2].peer = true;
  r.benchmarks_json = R"([{"name":"BM_X","real_time":1.5}])";
  write_report(dir / "r.json", r);
  const auto back = read_report(dir / "r.json");
  EXPECT_EQ(back.context, r.context);
  ASSERT_EQ(back.metrics.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(back.metrics[i].name, r.metrics[i].name);
    EXPECT_EQ(back.metrics[i].unit, r.metrics[i].unit);
    EXPECT_NEAR(back.metrics[i].value, r.metrics[i].value, 1e-3 * r.metrics[i].value);
    EXPECT_NEAR(back.metrics[i].spread, r.metrics[i].spread, 1e-4);
    EXPECT_EQ(back.metrics[i].higher_is_better, r.metrics[i].higher_is_better);
    EXPECT_EQ(back.metrics[i].gate, r.metrics[i].gate);
    EXPECT_EQ(back.metrics[i].peer, r.metrics[i].peer);
  }
  EXPECT_EQ(back.benchmarks_json, r.benchmarks_json);
  EXPECT_FALSE(failed(compare(r, back, {})));
}

TEST(BenchReport, ABadFileIsAnErrorNamingFileAndField) {
  testing::TempDir dir;
  auto expect_error = [&](const std::string& text, const std::string& wanted) {
    std::ofstream(dir / "bad.json") << text;
    try {
      (void)read_report(dir / "bad.json");
      ADD_FAILURE() << "accepted: " << text;
    } catch (const core::Error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find((dir / "bad.json").string()), std::string::npos) << what;
      EXPECT_NE(what.find(wanted), std::string::npos) << what;
    }
  };
  expect_error("{", "");
  expect_error("[]", "not a JSON object");
  expect_error(R"({"context":{}})", "no \"metrics\" array");
  expect_error(R"({"metrics":[{"name":"a","unit":"x","better":"higher"}]})", "metrics[0]: 'value'");
  expect_error(R"({"metrics":[{"name":"a","unit":"x","value":1,"better":"up"}]})", "'better' is 'up'");
  expect_error(R"({"metrics":[{"name":"a","unit":"x","value":1,"better":"up"}]})", "metrics[0]");
  expect_error(R"({"metrics":[{"name":"a","unit":"x","value":1,"better":"lower"},{"name":"a","unit":"x","value":2,"better":"lower"}]})",
               "metric 'a' appears twice");
  EXPECT_THROW((void)read_report(dir / "absent.json"), core::Error);
}

TEST(BenchReport, ParseFractionTakesPercentagesAndFractions) {
  EXPECT_NEAR(*parse_fraction("10%"), 0.10, 1e-12);
  EXPECT_NEAR(*parse_fraction("12.5 %"), 0.125, 1e-12);
  EXPECT_NEAR(*parse_fraction("0.2"), 0.2, 1e-12);
  EXPECT_FALSE(parse_fraction("ten"));
  EXPECT_FALSE(parse_fraction("-5%"));
  EXPECT_FALSE(parse_fraction("%"));
  EXPECT_FALSE(parse_fraction("5%%"));
  EXPECT_FALSE(parse_fraction("10")) << "a bare 10 would be 1000%";
  EXPECT_NEAR(*parse_fraction("1"), 1.0, 1e-12);
}

// A directory of baselines, one per CPU model: the one of the new run's CPU is used, else the
// default; a file there that is not a report is an error naming it.
TEST(BenchCompare, TheBaselineOfTheRunsCpuModelIsPickedElseTheDefault) {
  testing::TempDir dir;
  std::filesystem::create_directories(dir / "per-cpu");
  auto report_on = [](const std::string& cpu) {
    Report r;
    if (!cpu.empty()) r.context["cpu_model"] = cpu;
    r.metrics = {instructions("instructions/x", 10)};
    return r;
  };
  write_report(dir / "per-cpu" / "a.json", report_on("AMD EPYC"));
  write_report(dir / "per-cpu" / "b.json", report_on("Intel(R) Xeon(R) Processor"));
  const auto fallback = dir / "baseline.json";
  EXPECT_EQ(pick_baseline(fallback, dir / "per-cpu", report_on("Intel(R) Xeon(R) Processor")), dir / "per-cpu" / "b.json");
  EXPECT_EQ(pick_baseline(fallback, dir / "per-cpu", report_on("AMD EPYC")), dir / "per-cpu" / "a.json");
  EXPECT_EQ(pick_baseline(fallback, dir / "per-cpu", report_on("Some Other CPU")), fallback);
  EXPECT_EQ(pick_baseline(fallback, dir / "per-cpu", report_on("")), fallback) << "a run that does not say its CPU";
  EXPECT_EQ(pick_baseline(fallback, dir / "none", report_on("AMD EPYC")), fallback) << "no such directory";
  std::ofstream(dir / "per-cpu" / "0-broken.json") << "{ not json";
  try {
    (void)pick_baseline(fallback, dir / "per-cpu", report_on("AMD EPYC"));
    FAIL() << "a broken report in the directory was passed over";
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("0-broken.json"), std::string::npos) << e.what();
  }
}

TEST(BenchChart, DrawsOneBarPerThroughputFigureGroupedByStage) {
  Report r;
  r.metrics = {reported("tail/tributary", 2.7e6), reported("tail/rsyslog <imfile>", 4.2e5), instructions("instructions/x", 10)};
  r.metrics[1].peer = true;
  const auto svg = throughput_svg(r, "T & co");
  EXPECT_EQ(svg.rfind("<svg", 0), 0u);
  EXPECT_NE(svg.find("T &amp; co"), std::string::npos);
  EXPECT_NE(svg.find("rsyslog &lt;imfile&gt;"), std::string::npos);
  EXPECT_NE(svg.find(">2.7M<"), std::string::npos);
  EXPECT_EQ(svg.find("instructions"), std::string::npos);  // only events/s figures are drawn
  std::size_t bars = 0;
  for (std::size_t p = 0; (p = svg.find("<rect x=", p)) != std::string::npos; ++p) ++bars;
  EXPECT_EQ(bars, 2u);
}

}  // namespace
}  // namespace tributary::tools::bench
