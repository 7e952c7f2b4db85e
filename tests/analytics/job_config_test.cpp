// The analyzer's configuration: [[windows]] parsed with defaults, and every mistake reported
// with file, line and key.
#include <gtest/gtest.h>

#include <fstream>

#include "support/temp_dir.h"
#include "tributary/analytics/job.h"

namespace tributary::analytics {
namespace {

AnalyzeConfigResult load(const testing::TempDir& dir, const std::string& text) {
  std::ofstream(dir / "a.toml") << text;
  return load_analyze_config(dir / "a.toml");
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& e : v) s += e + "\n";
  return s;
}

const std::string kHead = "[input]\ntype = \"channel\"\npath = \"x.chan\"\n[fields]\nts = \"/ts\"\nk = \"/k\"\n";

TEST(AnalyzeConfigTest, ParsesWindowsWithDefaults) {
  testing::TempDir dir;
  auto r = load(dir, kHead + "[[windows]]\nname = \"w\"\nby = [\"k\"]\nsize = \"1h\"\nslide = \"15m\"\n"
                             "time = \"ts\"\ntime_format = \"%m%d\"\nyear = 2015\n");
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  ASSERT_EQ(r.config.windows.size(), 1u);
  const auto& w = r.config.windows[0];
  EXPECT_EQ(w.size_ms, 3600000);
  EXPECT_EQ(w.slide_ms, 900000);
  EXPECT_EQ(w.lateness_ms, 0);
  EXPECT_EQ(w.max_future_ms, 3600000) << "an hour ahead of the ingest time, by default";
  EXPECT_EQ(w.file, "w.csv");
  EXPECT_EQ(w.max_groups, 100'000u);
  EXPECT_EQ(w.late_retention_ms, 3600000) << "late rows final an hour after their window closed, by default";
  EXPECT_EQ(w.time_format.to_millis("1111"), 1447200000000);
  auto forever = load(dir, kHead + "[[windows]]\nname = \"w\"\nsize = \"1s\"\nlate_retention = 0\n");
  ASSERT_TRUE(forever.errors.empty()) << joined(forever.errors);
  EXPECT_EQ(forever.config.windows[0].late_retention_ms, 0);
}

// A pattern without %Y takes its year from the config, never from the day the analyzer starts.
TEST(AnalyzeConfigTest, APatternWithoutAYearNeedsOne) {
  testing::TempDir dir;
  auto r = load(dir, kHead + "[[windows]]\nname = \"w\"\nsize = \"1d\"\ntime = \"ts\"\ntime_format = \"%m%d\"\n");
  EXPECT_NE(joined(r.errors).find("a.toml:11: windows[0].year: a pattern without %Y (\"%m%d\") needs year = YYYY"),
            std::string::npos)
      << joined(r.errors);
  EXPECT_TRUE(load(dir, kHead + "[[windows]]\nname = \"w\"\nsize = \"1d\"\ntime = \"ts\"\n"
                                "time_format = \"%Y%m%d\"\n").errors.empty());
  EXPECT_TRUE(load(dir, kHead + "[[windows]]\nname = \"w\"\nsize = \"1d\"\ntime_format = \"%m%d\"\n").errors.empty())
      << "ingest time: the pattern is not used";
}

TEST(AnalyzeConfigTest, WindowMistakesNameTheLineAndKey) {
  testing::TempDir dir;
  auto r = load(dir, kHead + "[[windows]]\nname = \"w\"\nby = [\"nope\"]\nsize = \"1 hour\"\nslide = \"2h\"\n"
                             "time = \"when\"\ntime_format = \"yyyy\"\nvalue = \"price\"\ncolour = 1\n"
                             "max_future = \"soon\"\nmax_groups = 0\nlateness = \"99999999999d\"\nlate_retention = -1\n"
                             "[[windows]]\nname = \"dense\"\nsize = \"1d\"\nslide = \"1s\"\n"
                             "[[windows]]\nname = \"one_over\"\nsize = 20001\nslide = 2\n");
  const std::string all = joined(r.errors);
  for (const std::string want :
       {"a.toml:9: windows[0].by: 'nope' is neither a field nor a joined column", "a.toml:10: windows[0].size: must be a duration",
        "a.toml:11: windows[0].slide: must be positive and at most the size", "a.toml:12: windows[0].time: no field named 'when'",
        "a.toml:13: windows[0].time_format: must be epoch_s", "a.toml:14: windows[0].value: no field named 'price'",
        "a.toml:15: windows[0].colour: unknown key", "a.toml:16: windows[0].max_future: must be a duration",
        "a.toml:17: windows[0].max_groups: must be",
        "a.toml:18: windows[0].lateness: must be a duration such as \"500ms\", \"10s\", \"5m\", \"1h\", \"1d\" (at most "
        "253402300799999 ms",
        "a.toml:19: windows[0].late_retention: must be a duration",
        "a.toml:23: windows[1].slide: puts each event in 86400 windows (size / slide, rounded up): at most 10000",
        "a.toml:27: windows[2].slide: puts each event in 10001 windows (size / slide, rounded up): at most 10000"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\nin:\n" << all;
}

TEST(AnalyzeConfigTest, TwoOutputsOrWindowsOfOneNameOrOneFileAreRefused) {
  testing::TempDir dir;
  auto r = load(dir, kHead + "[[outputs]]\nname = \"o\"\nby = \"k\"\n[[outputs]]\nname = \"o\"\nby = \"ts\"\nfile = \"x.csv\"\n"
                             "[[windows]]\nname = \"w\"\nsize = \"1s\"\n[[windows]]\nname = \"w\"\nsize = \"2s\"\nfile = \"y.csv\"\n"
                             "[[windows]]\nname = \"v\"\nsize = \"1s\"\nfile = \"./o.csv\"\n"
                             "[[windows]]\nname = \"u\"\nsize = \"1s\"\nfile = \"w.late.csv\"\n"
                             "[state]\ndead_letter = \"status.json\"\n");
  const std::string all = joined(r.errors);
  for (const std::string want :
       {"a.toml:10: outputs.name: 'o' names two [[outputs]]", "a.toml:17: windows[1].name: 'w' names two [[windows]]",
        "windows[2].file: window 'v' writes ./o.csv, which output 'o' writes too",
        "windows[3].file: window 'u' writes w.late.csv, which window 'w' writes too",
        "state.dead_letter: the dead-letter output writes status.json, which status.json writes too"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\nin:\n" << all;
}

TEST(AnalyzeConfigTest, AWhereExpressionIsCheckedAtLoad) {
  testing::TempDir dir;
  auto ok = load(dir, "where = 'ts > 5 and exists(k)'\n" + kHead + "[[windows]]\nname = \"w\"\nsize = \"1s\"\n");
  EXPECT_TRUE(ok.errors.empty()) << joined(ok.errors);
  EXPECT_EQ(ok.config.where, "ts > 5 and exists(k)");
  auto bad = load(dir, "where = 'ts > 5 and colour == \"red\"'\n" + kHead + "[[windows]]\nname = \"w\"\nsize = \"1s\"\n");
  EXPECT_NE(joined(bad.errors).find("a.toml:1: where: column 12: 'colour' is neither a field nor a joined column"),
            std::string::npos)
      << joined(bad.errors);
}

TEST(AnalyzeConfigTest, MaxGroupsBoundsAnOutputAndMustBePositive) {
  testing::TempDir dir;
  auto ok = load(dir, kHead + "[[outputs]]\nname = \"o\"\nby = \"k\"\nmax_groups = 500\n");
  ASSERT_TRUE(ok.errors.empty()) << joined(ok.errors);
  EXPECT_EQ(ok.config.outputs.at(0).max_groups, 500u);
  EXPECT_EQ(load(dir, kHead + "[[outputs]]\nname = \"o\"\nby = \"k\"\n").config.outputs.at(0).max_groups, 100'000u)
      << "bounded by default";
  auto bad = load(dir, kHead + "[[outputs]]\nname = \"o\"\nby = \"k\"\nmax_groups = 0\n");
  EXPECT_NE(joined(bad.errors).find("a.toml:10: outputs.max_groups: must be a whole number from 1 to"),
            std::string::npos)
      << joined(bad.errors);
}

// [state] retire_sources_after: a duration, 7 days by default, 0 for never; a mistake named.
TEST(AnalyzeConfigTest, RetireSourcesAfterIsADurationWithABoundedDefault) {
  testing::TempDir dir;
  const std::string out = "[[outputs]]\nname = \"o\"\nby = \"k\"\n";
  EXPECT_EQ(load(dir, kHead + out).config.retire_sources_after_ms, 7 * 86'400'000) << "bounded by default";
  auto r = load(dir, kHead + out + "[state]\nretire_sources_after = \"12h\"\n");
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  EXPECT_EQ(r.config.retire_sources_after_ms, 12 * 3'600'000);
  EXPECT_FALSE(load(dir, kHead + out + "[state]\nretire_sources_after = \"1h\"\n").errors.empty())
      << "shorter than re-sends may come"; 
  EXPECT_EQ(load(dir, kHead + out + "[state]\nretire_sources_after = 0\n").config.retire_sources_after_ms, 0);
  auto bad = load(dir, kHead + out + "[state]\nretire_sources_after = \"soon\"\n");
  EXPECT_NE(joined(bad.errors).find("a.toml:11: state.retire_sources_after: must be 0 (never) or a duration of at least"),
            std::string::npos)
      << joined(bad.errors);
  auto tiny = load(dir, kHead + out + "[state]\nretire_sources_after = 7\n");  // 7 ms (meant as days?)
  EXPECT_NE(joined(tiny.errors).find("state.retire_sources_after: must be 0 (never)"), std::string::npos)
      << joined(tiny.errors);
}

// A value of the wrong type is an error naming its line, never silently the default.
TEST(AnalyzeConfigTest, ValuesOfTheWrongTypeAreErrorsNotDefaults) {
  testing::TempDir dir;
  auto r = load(dir, kHead + "[[outputs]]\nname = \"o\"\nby = \"k\"\npad = \"4\"\nshare = \"no\"\n"
                             "[state]\ncheckpoint_ms = \"1s\"\n");
  const std::string all = joined(r.errors);
  for (const std::string want : {"a.toml:10: outputs.pad: must be a whole number from 0 to 64",
                                 "a.toml:11: outputs.share: must be true or false",
                                 "a.toml:13: state.checkpoint_ms: must be a whole number from 10 to 3600000"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\nin:\n" << all;
}

// [transaction]: defaults derived from the group and this instance; mistakes named.
TEST(AnalyzeConfigTest, TheTransactionModeHasStableDefaultsAndNamesItsMistakes) {
  testing::TempDir dir;
  const std::string kafka = "[input]\ntype = \"kafka\"\nbootstrap = \"b:9092\"\ntopic = \"in\"\ngroup = \"g\"\n"
                            "[fields]\nk = \"/k\"\n[[outputs]]\nname = \"o\"\nby = \"k\"\n";
  auto r = load(dir, kafka + "[transaction]\ntopic = \"out\"\n");
  ASSERT_TRUE(r.errors.empty()) << joined(r.errors);
  const auto& x = r.config.transaction;
  EXPECT_TRUE(r.config.transactional());
  EXPECT_EQ(x.changelog, "g-changelog");
  EXPECT_EQ(x.id.rfind("g-", 0), 0u) << x.id;
  EXPECT_EQ(load(dir, kafka + "[transaction]\ntopic = \"out\"\n").config.transaction.id, x.id)
      << "the transactional.id of an instance must be the same at every start";
  EXPECT_EQ(x.timeout_ms, 30000);
  EXPECT_TRUE(x.materialize);
  EXPECT_FALSE(load(dir, kafka).config.transactional());

  auto bad = load(dir, kafka + "[transaction]\ntopic = \"in\"\ntimeout_ms = 5\nfoo = 1\n");
  const std::string all = joined(bad.errors);
  for (const std::string want : {"a.toml:12: transaction.topic: must not be the input topic",
                                 "a.toml:13: transaction.timeout_ms: must be a whole number from 1000 to 900000",
                                 "a.toml:14: transaction.foo: unknown key"})
    EXPECT_NE(all.find(want), std::string::npos) << want << "\nin:\n" << all;
  // Every topic the mode writes is its own (one CreateTopics makes them, and Kafka refuses one
  // that names a topic twice): the changelog is not the output's dead-letter topic, nor is the input.
  const std::string same = joined(load(dir, kafka + "[transaction]\ntopic = \"out\"\nchangelog = \"out-dead-letter\"\n").errors);
  EXPECT_NE(same.find("a.toml:13: transaction.changelog: must differ from the input, output and dead-letter topics"),
            std::string::npos)
      << same;
  EXPECT_EQ(joined(load(dir, kafka + "[state]\ndead_letter = \"\"\n[transaction]\ntopic = \"out\"\n"
                                     "changelog = \"out-dead-letter\"\n")
                       .errors),
            "")
      << "without dead letters there is no dead-letter topic to collide with";
  const std::string loop = joined(load(dir, kafka + "[transaction]\ntopic = \"in-dead\"\n").errors);
  EXPECT_EQ(loop, "") << "only OUTPUT-dead-letter is taken";
  const std::string into_input =
      joined(load(dir, "[input]\ntype = \"kafka\"\nbootstrap = \"b:9092\"\ntopic = \"x-dead-letter\"\ngroup = \"g\"\n"
                       "[fields]\nk = \"/k\"\n[[outputs]]\nname = \"o\"\nby = \"k\"\n[transaction]\ntopic = \"x\"\n")
                 .errors);
  EXPECT_NE(into_input.find("a.toml:12: transaction.topic: its dead-letter topic (TOPIC-dead-letter) must not be the input topic"),
            std::string::npos)
      << into_input;
  auto channel = load(dir, kHead + "[[outputs]]\nname = \"o\"\nby = \"k\"\n[transaction]\ntopic = \"out\"\n");
  EXPECT_NE(joined(channel.errors).find("the Kafka-transaction mode needs input.type = \"kafka\""), std::string::npos)
      << joined(channel.errors);
}

}  // namespace
}  // namespace tributary::analytics
