// Interceptors: grep keeps or drops by RE2 pattern, fields adds static fields, host and time
// to JSON objects and wraps other events; in a tail source a dropped line takes no sequence
// number and still moves the read position.
#include <gtest/gtest.h>
#include <unistd.h>

#include <simdjson.h>

#include "internal/intercept.h"
#include "support/tail_util.h"
#include "support/temp_dir.h"
#include "tributary/core/error.h"

namespace tributary::ingest::detail {
namespace {

using Strings = std::vector<std::string>;

InterceptorSpec grep(std::string include, std::string exclude) {
  InterceptorSpec s;
  s.type = "grep";
  s.include = std::move(include);
  s.exclude = std::move(exclude);
  return s;
}

Strings run(const InterceptorChain& chain, const Strings& in) {
  Arena arena;
  Strings out;
  for (const auto& e : in)
    if (auto kept = chain.apply(e, arena)) out.emplace_back(*kept);
  return out;
}

TEST(InterceptorTest, GrepIncludesThenExcludes) {
  InterceptorChain chain({grep("ERROR|WARN", "heartbeat")});
  EXPECT_EQ(run(chain, {"INFO start", "ERROR disk", "WARN heartbeat late", "WARN slow"}),
            (Strings{"ERROR disk", "WARN slow"}));
}

TEST(InterceptorTest, FieldsAddToJsonObjectsAndWrapTheRest) {
  InterceptorSpec f;
  f.type = "fields";
  f.add = {{"env", "prod"}, {"q", "a\"b"}};
  InterceptorChain chain({f});
  EXPECT_EQ(run(chain, {R"({"a":1})", "  {}  ", "plain \"line\""}),
            (Strings{R"({"env":"prod","q":"a\"b","a":1})", R"({"env":"prod","q":"a\"b"})",
                     R"({"env":"prod","q":"a\"b","message":"plain \"line\""})"}));
  InterceptorSpec only_wrap;
  only_wrap.type = "fields";
  InterceptorChain wrap_only({only_wrap});
  EXPECT_EQ(run(wrap_only, {"{}", "x"}), (Strings{"{}", R"({"message":"x"})"}));
  f.wrap_key.clear();
  InterceptorChain no_wrap({f});
  EXPECT_EQ(run(no_wrap, {"plain"}), (Strings{"plain"})) << "without wrap a non-object passes unchanged";
}

// A line shaped like an object that is not JSON is text: wrapped (valid JSON out), never
// spliced into an object that would come out invalid.
TEST(InterceptorTest, FieldsTreatAnObjectShapedLineThatIsNotJsonAsText) {
  InterceptorSpec f;
  f.type = "fields";
  f.add = {{"env", "prod"}};
  InterceptorChain chain({f});
  const Strings out = run(chain, {"{oops}", R"({"a":1}})", "{\"a\":\xff}", R"({"ok":true})"});
  EXPECT_EQ(out, (Strings{R"({"env":"prod","message":"{oops}"})", R"({"env":"prod","message":"{\"a\":1}}"})",
                          "{\"env\":\"prod\",\"message\":\"{\\\"a\\\":\xef\xbf\xbd}\"}",
                          R"({"env":"prod","ok":true})"}));
  simdjson::dom::parser p;
  for (const auto& o : out) EXPECT_FALSE(p.parse(o).error()) << "invalid JSON out: " << o;
}

TEST(InterceptorTest, FieldsAddHostAndAnRfc3339Timestamp) {
  InterceptorSpec f;
  f.type = "fields";
  f.host_key = "host";
  f.timestamp_key = "ts";
  InterceptorChain chain({f});
  const Strings out = run(chain, {"x"});
  ASSERT_EQ(out.size(), 1u);
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  ASSERT_EQ(p.parse(out[0]).get(doc), simdjson::SUCCESS) << out[0];
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  EXPECT_EQ(std::string_view(doc["host"].get_string().value()), host);
  const std::string_view ts = doc["ts"].get_string().value();
  ASSERT_EQ(ts.size(), 24u) << ts;  // 2026-11-26T10:00:00.123Z
  EXPECT_EQ(ts[10], 'T');
  EXPECT_EQ(ts[19], '.');
  EXPECT_EQ(ts.back(), 'Z');
  EXPECT_EQ(std::string_view(doc["message"].get_string().value()), "x");
}

TEST(InterceptorTest, StepsRunInOrder) {
  InterceptorSpec f;
  f.type = "fields";
  f.add = {{"tag", "keep"}};
  // Wrapped first, then filtered on the wrapped text: the grep sees the added field.
  InterceptorChain chain({f, grep("\"tag\":\"keep\".*ok", "")});
  EXPECT_EQ(run(chain, {"ok", "no"}), (Strings{R"({"tag":"keep","message":"ok"})"}));
}

TEST(InterceptorTest, BadSpecsAreClearErrors) {
  EXPECT_THROW(InterceptorChain({grep("(", "")}), core::Error);
  EXPECT_THROW(InterceptorChain({grep("", "")}), core::Error);
  InterceptorSpec bad;
  bad.type = "sed";
  try {
    InterceptorChain chain({bad});
    FAIL();
  } catch (const core::Error& e) {
    EXPECT_NE(std::string(e.what()).find("interceptor 1: unknown type 'sed'"), std::string::npos) << e.what();
  }
}

TEST(InterceptorTest, ATailSourceGivesDroppedLinesNoSequenceAndMovesPastThem) {
  testing::TempDir dir;
  {
    std::ofstream f(dir / "a.log");
    for (int i = 0; i < 10000; ++i) f << (i % 100 == 0 ? "keep " : "noise ") << i << "\n";
  }
  core::ChannelConfig c;
  c.capacity = 4 << 20;
  c.max_payload = 64 << 10;
  auto ch = core::Channel::create(dir / "c.chan", c);
  const SourceDescriptor* d = find_source("tail");
  OptionValues v = defaults_of(*d);
  v.set("paths", std::vector<std::string>{(dir / "*.log").string()});
  SourceContext ctx;
  ctx.name = "t";
  ctx.channels = {&ch};
  ctx.interceptors = std::make_shared<const InterceptorChain>(std::vector<InterceptorSpec>{grep("^keep", "")});
  auto src = d->create(v, ctx);
  ASSERT_TRUE(testing::pump_until(*src, [&] { return src->metrics().filtered == 9900; }));
  const auto recs = testing::all_records(ch);
  ASSERT_EQ(recs.size(), 100u);
  for (std::size_t i = 0; i < recs.size(); ++i) {
    EXPECT_EQ(recs[i].id.sequence, i) << "dense: a filter is not a loss";
    EXPECT_EQ(recs[i].payload, "keep " + std::to_string(i * 100));
  }
  // The read position passed the dropped lines: a restarted source reads nothing again.
  src.reset();
  auto again = d->create(v, ctx);
  { std::ofstream(dir / "a.log", std::ios::app) << "keep last\nnoise last\n"; }
  ASSERT_TRUE(testing::pump_until(*again, [&] { return ch.stats().records_written == 101; }));
  for (int i = 0; i < 20; ++i) (void)again->do_work();
  EXPECT_EQ(ch.stats().records_written, 101u);
  EXPECT_EQ(again->metrics().filtered, 1u);
  EXPECT_EQ(testing::all_records(ch).back().payload, "keep last");
}

// An interceptor can make a line longer than the channel takes (wrapped in a JSON object): that
// line is rejected and counted, and the lines after it go on.
TEST(InterceptorTest, ALineAnInterceptorMakesTooLargeIsRejectedAndTheRestGoOn) {
  testing::TempDir dir;
  const auto log = dir / "a.log";
  core::ChannelConfig c;
  c.capacity = 1 << 20;
  c.max_payload = (1 << 18) - 64;
  testing::append_lines(log, "pre", 0, 5);
  { std::ofstream(log, std::ios::app) << std::string(c.max_payload - 4, 'W') << "\n"; }  // fits, but not wrapped
  testing::append_lines(log, "post", 0, 5);
  auto ch = core::Channel::create(dir / "c.chan", c);
  const SourceDescriptor* d = find_source("tail");
  OptionValues v = defaults_of(*d);
  v.set("paths", std::vector<std::string>{log.string()});
  v.set("max_line", std::int64_t{c.max_payload});
  SourceContext ctx;
  ctx.name = "t";
  ctx.channels = {&ch};
  InterceptorSpec wrap;
  wrap.type = "fields";
  ctx.interceptors = std::make_shared<const InterceptorChain>(std::vector<InterceptorSpec>{wrap});
  auto src = d->create(v, ctx);
  ASSERT_TRUE(testing::pump_until(*src, [&] { return ch.stats().records_written == 10; }, std::chrono::seconds(10)))
      << ch.stats().records_written << " records";
  for (int i = 0; i < 10; ++i) (void)src->do_work();
  EXPECT_EQ(ch.stats().records_written, 10u);
  EXPECT_EQ(src->metrics().rejected, 1u);
  EXPECT_EQ(src->metrics().oversize, 1u);
  EXPECT_EQ(testing::all_records(ch).back().payload, R"({"message":")" + testing::line_text("post", 4) + R"("})");
  const auto seqs = testing::all_records(ch);
  EXPECT_EQ(seqs.back().id.sequence, 9u) << "a rejected line takes no sequence number";
}

}  // namespace
}  // namespace tributary::ingest::detail
