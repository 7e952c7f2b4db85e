// The framer and the emitter under the stream sources: lines and syslog framing, oversize
// handling, transactional retries, bounded buffers, and no duplicate after a refusal.
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "internal/stream.h"
#include "support/tail_util.h"
#include "support/temp_dir.h"

namespace tributary::ingest::detail {
namespace {

using Strings = std::vector<std::string>;

void feed(Framer& f, std::string_view bytes) {
  while (!bytes.empty()) {
    const std::span<char> room = f.space();
    ASSERT_FALSE(room.empty()) << "framer full";
    const std::size_t n = std::min(room.size(), bytes.size());
    std::memcpy(room.data(), bytes.data(), n);
    f.filled(n);
    bytes.remove_prefix(n);
  }
}

// Scans and accepts everything; returns the events.
Strings take(Framer& f, bool eof = false, Framer::Scan* last = nullptr) {
  std::vector<std::span<const char>> v;
  const Framer::Scan s = f.scan(eof, v, SIZE_MAX, SIZE_MAX);
  Strings out;
  for (const auto& e : v) out.emplace_back(e.data(), e.size());
  f.accept(s);
  if (last != nullptr) *last = s;
  return out;
}

// A stream larger than the buffer: as much as fits, then a scan, until all is in.
Strings stream(Framer& f, std::string_view bytes, std::uint64_t* oversize = nullptr,
               std::uint64_t* rejected = nullptr) {
  Strings out;
  while (!bytes.empty()) {
    const std::span<char> room = f.space();
    const std::size_t n = std::min(room.size(), bytes.size());
    std::memcpy(room.data(), bytes.data(), n);
    f.filled(n);
    bytes.remove_prefix(n);
    Framer::Scan s;
    for (auto& e : take(f, false, &s)) out.push_back(e);
    if (oversize != nullptr) *oversize += s.oversize;
    if (rejected != nullptr) *rejected += s.rejected;
  }
  return out;
}

TEST(FramerTest, CutsLinesAndHoldsAPartialOneUntilItsNewline) {
  Framer f(100, true);
  feed(f, "one\ntwo\nthr");
  EXPECT_EQ(take(f), (Strings{"one", "two"}));
  EXPECT_EQ(f.buffered(), 3u);
  feed(f, "ee\n\nfour");
  EXPECT_EQ(take(f), (Strings{"three", ""}));
  EXPECT_EQ(take(f, true), (Strings{"four"})) << "at EOF the unterminated line is an event";
  EXPECT_EQ(f.buffered(), 0u);
}

// A scan's byte budget is what its events take in a channel (record headers included), and no
// event takes the batch past it, except a batch's first one when allowed.
TEST(FramerTest, BudgetsAScanByTheRecordBytesItsEventsTake) {
  Framer f(1000, true);
  std::string lines;
  for (int i = 0; i < 100; ++i) lines += "x\n";
  lines += std::string(500, 'L') + "\n";
  feed(f, lines);
  std::vector<std::span<const char>> v;
  const std::size_t budget = 10 * core::record_bytes(1);
  Framer::Scan s = f.scan(false, v, SIZE_MAX, budget);
  EXPECT_EQ(v.size(), 10u) << "100 one-byte events are 200 bytes of text but 10 records' room";
  EXPECT_FALSE(s.complete);
  f.accept(s);
  v.clear();
  s = f.scan(false, v, SIZE_MAX, SIZE_MAX);  // the rest of the short ones
  f.accept(s);
  ASSERT_EQ(v.size(), 91u);
  EXPECT_EQ(v.back().size(), 500u);
  // The long line alone is past a small budget: taken first in a batch, never after others.
  feed(f, "y\n" + std::string(500, 'L') + "\n");
  v.clear();
  s = f.scan(false, v, SIZE_MAX, 2 * core::record_bytes(1));
  ASSERT_EQ(v.size(), 1u) << "the long line would take the batch past its budget";
  f.accept(s);
  v.clear();
  s = f.scan(false, v, SIZE_MAX, 2 * core::record_bytes(1), /*first_may_exceed=*/false);
  EXPECT_EQ(v.size(), 0u) << "not even first, when another scan began the batch";
  v.clear();
  s = f.scan(false, v, SIZE_MAX, 2 * core::record_bytes(1));
  EXPECT_EQ(v.size(), 1u) << "first in its batch";
}

TEST(FramerTest, SplitsAnOversizeLineAndCountsItOnce) {
  Framer f(4, true);
  std::uint64_t oversize = 0, rejected = 0;
  EXPECT_EQ(stream(f, "abcdefghij\nok\nabcd\n", &oversize, &rejected), (Strings{"abcd", "efgh", "ij", "ok", "abcd"}));
  EXPECT_EQ(oversize, 1u);
  EXPECT_EQ(rejected, 0u);
}

TEST(FramerTest, RejectsAnOversizeLineAcrossReadsWithoutGrowingPastTheLimit) {
  Framer f(8, false);
  std::uint64_t oversize = 0, rejected = 0;
  const std::string input = "short\n" + std::string(900, 'x') + "tail\nnext\n";
  EXPECT_EQ(stream(f, input, &oversize, &rejected), (Strings{"short", "next"}));
  EXPECT_LE(f.capacity(), 9u);
  EXPECT_EQ(oversize, 1u);
  EXPECT_EQ(rejected, 1u);
}

TEST(FramerTest, AScanNotAcceptedChangesNothing) {
  Framer f(16, false);
  feed(f, "0123456789abcdefg");  // more than max_event bytes without a newline
  std::vector<std::span<const char>> v;
  const auto s1 = f.scan(false, v, SIZE_MAX, SIZE_MAX);  // refused downstream: not accepted
  v.clear();
  const auto s2 = f.scan(false, v, SIZE_MAX, SIZE_MAX);
  EXPECT_EQ(s1.consumed, s2.consumed);
  EXPECT_EQ(s2.rejected, 1u);
  EXPECT_TRUE(v.empty());
  f.accept(s2);
  feed(f, "rest of it\nab\n");
  EXPECT_EQ(take(f), (Strings{"ab"}));
}

TEST(FramerTest, StopsAtTheEventAndByteLimitsAndResumes) {
  Framer f(100, true);
  feed(f, "a\nb\nc\nd\n");
  std::vector<std::span<const char>> v;
  auto s = f.scan(false, v, 2, SIZE_MAX);
  EXPECT_FALSE(s.complete);
  EXPECT_EQ(v.size(), 2u);
  f.accept(s);
  v.clear();
  s = f.scan(false, v, SIZE_MAX, 1);
  EXPECT_EQ(v.size(), 1u);
  EXPECT_EQ(std::string(v[0].data(), 1), "c");
  f.accept(s);
  EXPECT_EQ(take(f), (Strings{"d"}));
}

TEST(FramerTest, ShrinksItsBufferBackAfterALongEvent) {
  Framer f(1 << 20, true, Framing::kLines, 4096);
  feed(f, std::string(300000, 'x') + "\n");
  EXPECT_GT(f.capacity(), 300000u);
  EXPECT_EQ(take(f).size(), 1u);
  EXPECT_EQ(f.capacity(), 4096u);
}

TEST(FramerTest, SyslogFramingMixesOctetCountedAndNewlineTerminatedMessages) {
  Framer f(100, false, Framing::kSyslog);
  feed(f, "11 <13>1 a b c4 <1>x\n<14>line one\r\n\n10 <13>has\nnl\n");
  EXPECT_EQ(take(f), (Strings{"<13>1 a b c", "<1>x", "<14>line one", "<13>has\nnl"}));
  feed(f, "20 <13>split across");
  EXPECT_TRUE(take(f).empty()) << "a counted frame waits for all its bytes";
  feed(f, " reads");
  EXPECT_EQ(take(f), (Strings{"<13>split across rea"}));
  EXPECT_EQ(take(f, true), (Strings{"ds"}));
}

TEST(FramerTest, SyslogFramingSkipsAnOversizeCountedFrameExactly) {
  Framer f(10, false, Framing::kSyslog);
  std::uint64_t oversize = 0, rejected = 0;
  EXPECT_EQ(stream(f, "30 <13>012345678901234567890123455 <1>ok", &oversize, &rejected), (Strings{"<1>ok"}));
  EXPECT_EQ(rejected, 1u);
}

TEST(FramerTest, SyslogFramingCountsAFrameCutShortAtEof) {
  Framer f(100, false, Framing::kSyslog);
  feed(f, "50 <13>only part");
  Framer::Scan s;
  EXPECT_TRUE(take(f, true, &s).empty());
  EXPECT_EQ(s.rejected, 1u);
  EXPECT_EQ(f.buffered(), 0u);
}

core::ChannelConfig small(std::uint64_t cap) {
  core::ChannelConfig c;
  c.capacity = cap;
  c.max_payload = 1024;
  c.source_slots = 16;
  return c;
}

TEST(EmitterTest, AfterARefusalTheRetryGoesOnlyWhereItIsMissing) {
  testing::TempDir dir;
  auto roomy = core::Channel::create(dir / "a.chan", small(1 << 20));
  auto tight = core::Channel::create(dir / "b.chan", small(64 << 10));
  auto reader = tight.consumer("r", core::StartAt::kOldest);  // retains what it has not read
  SourceContext ctx;
  ctx.name = "t";
  ctx.channels = {&roomy, &tight};
  ctx.producer_options.on_full = core::FullPolicy::kFailFast;
  Emitter em(ctx);
  SourceMetrics m;
  const std::string payload(1000, 'p');
  std::vector<std::span<const char>> batch{{payload.data(), payload.size()}};
  int accepted = 0;
  while (em.emit(batch, m) == Emitter::Result::kOk) ++accepted;
  EXPECT_TRUE(em.refused());
  EXPECT_LT(accepted, 64);
  // The roomy channel got the refused event; it must not get it again on the retries. Passed
  // again before retry_at(), the batch is refused without a try (a busy loop does not spin).
  const std::uint64_t tries = tight.stats().full_rejections;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(em.emit(batch, m), Emitter::Result::kRefused);
  if (std::chrono::steady_clock::now() < em.retry_at()) {
    EXPECT_EQ(tight.stats().full_rejections, tries) << "tried again before its retry time";
  }
  for (int i = 0; i < 2; ++i) {
    std::this_thread::sleep_until(em.retry_at());  // the retry time, then a real try: still full
    EXPECT_EQ(em.emit(batch, m), Emitter::Result::kRefused);
  }
  EXPECT_GT(tight.stats().full_rejections, tries);
  EXPECT_EQ(roomy.stats().records_written, static_cast<std::uint64_t>(accepted) + 1);
  std::vector<core::Record> recs(1000);
  const std::size_t n = reader.poll(recs);
  ASSERT_GT(n, 0u);
  reader.commit();
  std::this_thread::sleep_until(em.retry_at());
  EXPECT_EQ(em.emit(batch, m), Emitter::Result::kOk);
  EXPECT_FALSE(em.refused());
  EXPECT_EQ(roomy.stats().records_written, static_cast<std::uint64_t>(accepted) + 1);
  EXPECT_EQ(tight.stats().records_written, static_cast<std::uint64_t>(accepted) + 1);
  EXPECT_EQ(m.events, static_cast<std::uint64_t>(accepted) + 1);
  EXPECT_EQ(em.next_sequence(), static_cast<std::uint64_t>(accepted) + 1);
}

// Interceptors (and syslog shaping) make events larger than what the framer budgeted: the
// emitter appends them in transactions of at most an eighth of the ring, so a full ring holds the
// rest back (kRefused, then on from where it stopped) instead of refusing the whole batch as
// too large and dropping, one by one, every event that met the full ring.
TEST(EmitterTest, EventsInterceptorsEnlargedAreAppendedInPiecesAndHeldWhenTheRingIsFull) {
  testing::TempDir dir;
  core::ChannelConfig c = small(1 << 20);
  auto ch = core::Channel::create(dir / "a.chan", c);
  auto reader = ch.consumer("r", core::StartAt::kOldest);  // retains what it has not read
  {
    core::Producer filler = ch.producer();
    for (std::uint64_t i = 0; i < 600; ++i) ASSERT_EQ(filler.append({99, i}, std::string(1000, 'f')), core::AppendStatus::kOk);
  }
  SourceContext ctx;
  ctx.name = "t";
  ctx.channels = {&ch};
  ctx.producer_options.on_full = core::FullPolicy::kFailFast;
  InterceptorSpec grow;
  grow.type = "fields";
  grow.add = {{"note", std::string(200, 'n')}};
  ctx.interceptors = std::make_shared<const InterceptorChain>(std::vector<InterceptorSpec>{grow});
  Emitter em(ctx);
  SourceMetrics m;
  const std::string x = "x";
  std::vector<std::span<const char>> batch(2000, std::span<const char>(x.data(), 1));  // 2 000 x ~270 B: 540 KB
  std::size_t refusals = 0;
  std::vector<core::Record> recs(4096);
  std::vector<std::uint64_t> seqs;
  while (em.emit(batch, m) != Emitter::Result::kOk) {
    ASSERT_LT(++refusals, 100u) << "never got through";
    const std::size_t n = reader.poll(recs);  // room, as a consumer makes it
    for (std::size_t i = 0; i < n; ++i)
      if (recs[i].id.source_id == em.source_id()) seqs.push_back(recs[i].id.sequence);
    if (n != 0) reader.commit();
    std::this_thread::sleep_until(em.retry_at());
  }
  EXPECT_GE(refusals, 1u) << "the ring had room for all of it: the test shows nothing";
  EXPECT_EQ(m.rejected, 0u);
  EXPECT_EQ(m.events, 2000u);
  for (std::size_t n = 0; (n = reader.poll(recs)) != 0; reader.commit())
    for (std::size_t i = 0; i < n; ++i)
      if (recs[i].id.source_id == em.source_id()) seqs.push_back(recs[i].id.sequence);
  ASSERT_EQ(seqs.size(), 2000u) << "each event once";
  for (std::size_t i = 0; i < seqs.size(); ++i) ASSERT_EQ(seqs[i], i);
}

TEST(EmitterTest, ANewIdentityStartsItsSequenceAtZero) {
  testing::TempDir dir;
  auto ch = core::Channel::create(dir / "a.chan", small(1 << 20));
  SourceContext ctx;
  ctx.channels = {&ch};
  Emitter em(ctx);
  SourceMetrics m;
  const std::string p = "x";
  std::vector<std::span<const char>> batch{{p.data(), 1}, {p.data(), 1}};
  ASSERT_EQ(em.emit(batch, m), Emitter::Result::kOk);
  const std::uint64_t first = em.source_id();
  em.new_identity();
  ASSERT_EQ(em.emit(batch, m), Emitter::Result::kOk);
  EXPECT_NE(em.source_id(), first);
  const auto recs = testing::all_records(ch);
  ASSERT_EQ(recs.size(), 4u);
  EXPECT_EQ(recs[2].id.source_id, em.source_id());
  EXPECT_EQ(recs[2].id.sequence, 0u);
  EXPECT_EQ(recs[3].id.sequence, 1u);
}

TEST(EmitterTest, InterceptorsDropWithoutSequenceGapsAndCountOnceAcrossRetries) {
  testing::TempDir dir;
  auto ch = core::Channel::create(dir / "a.chan", small(64 << 10));
  auto reader = ch.consumer("r");
  InterceptorSpec g;
  g.type = "grep";
  g.exclude = "^drop";
  SourceContext ctx;
  ctx.channels = {&ch};
  ctx.producer_options.on_full = core::FullPolicy::kFailFast;
  ctx.interceptors = std::make_shared<const InterceptorChain>(std::vector<InterceptorSpec>{g});
  Emitter em(ctx);
  SourceMetrics m;
  const std::string keep(900, 'k');
  const std::string drop = "drop me";
  std::vector<std::span<const char>> batch{{keep.data(), keep.size()}, {drop.data(), drop.size()},
                                           {keep.data(), keep.size()}};
  int rounds = 0;
  while (em.emit(batch, m) == Emitter::Result::kOk) ++rounds;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(em.emit(batch, m), Emitter::Result::kRefused);
  EXPECT_EQ(m.filtered, static_cast<std::uint64_t>(rounds));
  std::vector<core::Record> recs(1000);
  ASSERT_GT(reader.poll(recs), 0u);
  reader.commit();
  std::this_thread::sleep_until(em.retry_at());
  ASSERT_EQ(em.emit(batch, m), Emitter::Result::kOk);
  EXPECT_EQ(m.filtered, static_cast<std::uint64_t>(rounds) + 1) << "a retried batch is filtered once";
  EXPECT_EQ(m.events, 2u * (static_cast<std::uint64_t>(rounds) + 1));
  const auto left = testing::all_records(ch);  // what the reader has not committed
  ASSERT_FALSE(left.empty());
  std::uint64_t seq = left.front().id.sequence;
  for (const auto& r : left) EXPECT_EQ(r.id.sequence, seq++);
  EXPECT_EQ(seq, em.next_sequence()) << "no gaps up to the last event";
}

}  // namespace
}  // namespace tributary::ingest::detail
