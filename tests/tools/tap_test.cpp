// `tributary tap` as a user runs it: follows a channel live, filters, and never moves or adds
// a consumer cursor; paused while writers reclaim what it had not read, it skips ahead.
#include <gtest/gtest.h>
#include <signal.h>

#include <fstream>

#include "support/process.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"

namespace tributary::tools {
namespace {

using namespace std::chrono_literals;
using testing::Child;
using testing::TempDir;

const std::string kTributary = TRIBUTARY_BIN;

core::ChannelConfig cfg(std::uint64_t cap) {
  core::ChannelConfig c;
  c.capacity = cap;
  c.max_payload = 4096;
  c.source_slots = 16;
  return c;
}

void append(core::Producer& p, std::uint64_t seq, const std::string& text) {
  ASSERT_EQ(p.append({7, seq}, text), core::AppendStatus::kOk);
}

TEST(TapTest, FollowsNewEventsAndMovesNoCursor) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg(1 << 20));
  auto prod = ch.producer();
  auto consumer = ch.consumer("uplink");
  append(prod, 0, "before the tap");
  std::vector<core::Record> r(8);
  ASSERT_EQ(consumer.poll(r), 1u);
  consumer.commit();
  const auto committed = consumer.committed();
  Child tap({kTributary, "tap", (dir / "c.chan").string(), "--follow", "--count", "3"});
  // The tap starts at the latest position once it runs: wait until it is ready by appending
  // probes until one shows up.
  std::uint64_t seq = 1;
  std::optional<std::string> first;
  for (int i = 0; i < 500 && !first; ++i) {
    append(prod, seq++, "probe");
    first = tap.read_line(20ms);
  }
  ASSERT_EQ(first, "probe");
  append(prod, seq++, "live one");
  append(prod, seq++, "live two");
  // Probes appended before the tap saw the first one may show up too; then the live ones.
  std::vector<std::string> lines;
  while (auto l = tap.read_line(10s)) lines.push_back(*l);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(tap.wait(10s), 0) << "--count 3 ends the tap";
  std::vector<std::string> live;
  for (const auto& l : lines)
    if (l != "probe") live.push_back(l);
  EXPECT_LE(live.size(), 2u);
  if (!live.empty()) {
    EXPECT_EQ(live[0], "live one");
  }
  const auto st = ch.stats();
  ASSERT_EQ(st.consumers.size(), 1u) << "the tap registers no consumer";
  EXPECT_EQ(consumer.committed(), committed);
}

TEST(TapTest, PrintsRetainedEventsMatchingTheFilterAndExits) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg(1 << 20));
  auto prod = ch.producer();
  for (int i = 0; i < 100; ++i) append(prod, i, (i % 10 == 0 ? "keep " : "skip ") + std::to_string(i));
  Child tap({kTributary, "tap", (dir / "c.chan").string(), "--filter", "^keep"});
  std::vector<std::string> lines;
  while (auto l = tap.read_line(10s)) lines.push_back(*l);
  EXPECT_EQ(tap.wait(10s), 0);
  ASSERT_EQ(lines.size(), 10u);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(lines[i], "keep " + std::to_string(i * 10));
}

TEST(TapTest, APausedTapSkipsWhatWasReclaimedAndGoesOn) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg(64 << 10));
  auto prod = ch.producer();
  auto fast = ch.consumer("uplink");  // a real consumer keeps up and lets writers reclaim
  std::vector<core::Record> recs(64);
  auto keep_up = [&] {
    while (fast.poll(recs) != 0) fast.commit();
  };
  Child tap({kTributary, "tap", (dir / "c.chan").string(), "--follow", "--from", "oldest"});
  std::uint64_t seq = 0;
  append(prod, seq++, "first");
  ASSERT_EQ(tap.read_line(10s), "first");
  tap.signal(SIGSTOP);
  const std::string filler(1000, 'f');
  for (int i = 0; i < 300; ++i) {  // ~300 KiB through a 64 KiB ring
    append(prod, seq++, filler);
    keep_up();
  }
  append(prod, seq++, "after the gap");
  tap.signal(SIGCONT);
  std::size_t fillers = 0;
  std::optional<std::string> l;
  while ((l = tap.read_line(10s)) && *l != "after the gap") {
    ASSERT_EQ(*l, filler) << "only whole, valid events";
    ++fillers;
  }
  ASSERT_EQ(l, "after the gap");
  EXPECT_LT(fillers, 300u) << "most were reclaimed while the tap was stopped";
  tap.signal(SIGTERM);
  EXPECT_EQ(tap.wait(10s), 0);
}

// A tap behind its producers always has records to print: SIGTERM must stop it all the same,
// not once it caught up. Here its backlog is half a million events; the signal comes as soon as
// the tap is ready for it.
TEST(TapTest, AFollowingTapStopsOnSigtermWhileItHasABacklog) {
  TempDir dir;
  auto ch = core::Channel::create(dir / "c.chan", cfg(64 << 20));
  {
    auto prod = ch.producer();
    const std::string text(64, 'x');
    std::vector<core::Event> batch(64);
    for (std::uint64_t seq = 0; seq < 500'000;) {
      for (auto& e : batch) e = {{7, seq++}, std::as_bytes(std::span(text.data(), text.size()))};
      ASSERT_EQ(prod.append_batch(batch), core::AppendStatus::kOk);
    }
  }
  Child tap({"/bin/sh", "-c", "exec \"$0\" tap \"$1\" --follow --from oldest -v > \"$2\"", kTributary,
             (dir / "c.chan").string(), (dir / "out.txt").string()});
  tap.signal(SIGTERM);  // once the tap blocks it for its signalfd
  EXPECT_EQ(tap.wait(30s), 0);
  std::ifstream out(dir / "out.txt");
  std::size_t lines = 0;
  for (std::string l; std::getline(out, l);) ++lines;
  EXPECT_LT(lines, 400'000u) << "the tap printed its backlog before it looked at the signal";
}

}  // namespace
}  // namespace tributary::tools
