// The channel driven by threads of one process: what TSan can see. Many producers, several
// consumers, a small ring so that wrap-around and full-channel waits happen all the time.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "support/channel_util.h"
#include "support/temp_dir.h"
#include "tributary/core/channel.h"

namespace tributary::core {
namespace {

using testing::payload_for;
using testing::TempDir;

ChannelConfig ring(std::uint64_t capacity) {
  ChannelConfig c;
  c.capacity = capacity;
  c.max_payload = 2048;
  c.source_slots = 64;
  return c;
}

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr std::uint64_t kPerProducer = 20'000;
#else
constexpr std::uint64_t kPerProducer = 200'000;
#endif

// Reads until `total` records, checking per-source density and content; returns errors.
std::uint64_t consume_checked(Consumer& c, std::uint64_t total, std::uint64_t sources, bool check_payload,
                              std::uint32_t commit_every) {
  std::vector<std::uint64_t> next(sources + 1, 0);
  std::vector<Record> buf(97);
  std::uint64_t got = 0, errors = 0, since_commit = 0;
  while (got < total) {
    const std::size_t n = c.poll(buf);
    if (n == 0) {
      c.commit();  // before sleeping: producers may be waiting for this space
      since_commit = 0;
      if (!c.wait(std::chrono::milliseconds(10'000))) return errors + (total - got);
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const Record& r = buf[i];
      if (r.id.source_id == 0 || r.id.source_id > sources || r.id.sequence != next[r.id.source_id]) {
        ++errors;
        continue;
      }
      if (check_payload &&
          testing::as_string(r.payload) != payload_for(r.id.source_id, r.id.sequence, r.id.sequence % 200))
        ++errors;
      ++next[r.id.source_id];
    }
    got += n;
    since_commit += n;
    if (since_commit >= commit_every) {
      c.commit();
      since_commit = 0;
    }
  }
  c.commit();
  return errors;
}

// Sources that end and sources that start, in threads of their own, through a table barely
// larger than what is live at once: each thread's sources keep their own state throughout.
TEST(ChannelConcurrentTest, SourcesReleasedAndTakenByManyThreadsKeepTheirOwnState) {
  TempDir dir;
  ChannelConfig cfg = ring(1 << 20);
  cfg.source_slots = 32;
  Channel ch = Channel::create(dir / "c.chan", cfg);
  constexpr int kThreads = 4, kLive = 6;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr std::uint64_t kRounds = 2'000;
#else
  constexpr std::uint64_t kRounds = 20'000;
#endif
  std::atomic<std::uint64_t> errors{0};
  std::atomic<bool> done{false};
  std::thread reader([&] {  // keeps the ring from filling
    Consumer c = ch.consumer("reader");
    std::vector<Record> buf(256);
    while (!done.load()) {
      if (c.poll(buf) != 0) c.commit();
      else (void)c.wait(std::chrono::milliseconds(10));
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t)
    threads.emplace_back([&, t] {
      // Blocked on a full ring as long as it takes: the reader may be starved for seconds on a
      // busy 2-core machine (a kTimeout would count as an error).
      Producer p = ch.producer({.on_full = FullPolicy::kBlock, .max_wait = std::chrono::milliseconds(60'000)});
      const std::string line = "x";
      std::vector<std::uint64_t> live;  // this thread's sources; id = thread + 1 + kThreads * n
      std::uint64_t next_id = static_cast<std::uint64_t>(t) + 1;
      for (std::uint64_t r = 0; r < kRounds; ++r) {
        if (live.size() == kLive) {  // the oldest ends: its slot goes back
          if (!ch.release_source(live.front())) errors.fetch_add(1);
          if (ch.source_position(live.front()).has_value()) errors.fetch_add(1);
          live.erase(live.begin());
        }
        live.push_back(next_id);
        next_id += kThreads;
        for (const std::uint64_t id : live) {
          const std::vector<Event> ev{{{id, r}, std::as_bytes(std::span(line.data(), line.size()))}};
          const SourcePosition sp{id, r + 1, id * 1000 + r};
          if (p.append_batch(ev, &sp) != AppendStatus::kOk) errors.fetch_add(1);
          const auto got = ch.source_position(id);
          if (!got || got->position != id * 1000 + r || got->next_sequence != r + 1) errors.fetch_add(1);
        }
      }
    });
  for (auto& th : threads) th.join();
  done = true;
  reader.join();
  EXPECT_EQ(errors.load(), 0u);
}

// Released slots are emptied while other threads take slots and look sources up without a lock:
// a source that lives throughout is found at every lookup, whatever was emptied around it.
TEST(ChannelConcurrentTest, ReleasedSlotsAreEmptiedWithoutALookupMissingALiveSource) {
  TempDir dir;
  ChannelConfig cfg = ring(1 << 20);
  cfg.source_slots = 64;  // mostly empty: releases empty slots all the time
  Channel ch = Channel::create(dir / "c.chan", cfg);
  constexpr std::uint64_t kPinned = 8;
#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
  constexpr std::uint64_t kRounds = 2'000;
#else
  constexpr std::uint64_t kRounds = 20'000;
#endif
  {
    Producer p = ch.producer();
    for (std::uint64_t id = 1; id <= kPinned; ++id) {
      const SourcePosition sp{id, 1, id};
      ASSERT_EQ(p.append_batch({}, &sp), AppendStatus::kOk);
    }
  }
  std::atomic<std::uint64_t> errors{0};
  std::atomic<bool> done{false};
  std::thread looker([&] {  // the pinned sources, looked up without pause
    while (!done.load())
      for (std::uint64_t id = 1; id <= kPinned; ++id)
        if (const auto sp = ch.source_position(id); !sp || sp->position != id) errors.fetch_add(1);
  });
  // Each thread keeps 8 of its own ids live, the oldest given back as a new one comes: 24 live
  // ids in 64 slots probe past one another's released slots, and each is looked up after every
  // change.
  std::vector<std::thread> churn;
  for (std::uint64_t t = 0; t < 2; ++t)
    churn.emplace_back([&, t] {
      Producer p = ch.producer();
      std::vector<std::uint64_t> live;
      for (std::uint64_t r = 0; r < kRounds; ++r) {
        if (live.size() == 8) {
          if (!ch.release_source(live.front())) errors.fetch_add(1);
          live.erase(live.begin());
        }
        const std::uint64_t id = 1000 + t + 2 * r;
        const SourcePosition sp{id, 1, id};
        if (p.append_batch({}, &sp) != AppendStatus::kOk) errors.fetch_add(1);
        live.push_back(id);
        for (const std::uint64_t l : live)
          if (const auto got = ch.source_position(l); !got || got->position != l) errors.fetch_add(1);
      }
    });
  for (auto& th : churn) th.join();
  done = true;
  looker.join();
  EXPECT_EQ(errors.load(), 0u);
  EXPECT_EQ(ch.source_table().in_use, kPinned + 16);
}

TEST(ChannelConcurrentTest, ManyProducerThreadsOneConsumerEveryEventExactlyOnceInOrder) {
  TempDir dir;
  Channel ch = Channel::create(dir / "a.chan", ring(64 * 1024));
  Consumer c = ch.consumer("reader");
  constexpr int kProducers = 4;
  std::vector<std::thread> threads;
  for (int t = 1; t <= kProducers; ++t) {
    threads.emplace_back([&ch, t] {
      Producer p = ch.producer({FullPolicy::kBlock, std::chrono::milliseconds(30'000)});
      for (std::uint64_t i = 0; i < kPerProducer; ++i) {
        const std::string pl = payload_for(static_cast<std::uint64_t>(t), i, i % 200);
        ASSERT_EQ(p.append({static_cast<std::uint64_t>(t), i}, pl), AppendStatus::kOk);
      }
    });
  }
  EXPECT_EQ(consume_checked(c, kPerProducer * kProducers, kProducers, true, 50), 0u);
  for (auto& t : threads) t.join();
  const auto s = ch.stats();
  EXPECT_EQ(s.records_written, kPerProducer * kProducers);
  EXPECT_EQ(s.next_channel_seq, kPerProducer * kProducers);
  EXPECT_GT(s.write_position, 64u * 1024 * 10) << "the ring wrapped many times";
}

TEST(ChannelConcurrentTest, BatchesFromManyThreadsAreAtomicAndDense) {
  TempDir dir;
  Channel ch = Channel::create(dir / "a.chan", ring(128 * 1024));
  Consumer c = ch.consumer("reader");
  constexpr int kProducers = 3;
  std::vector<std::thread> threads;
  for (int t = 1; t <= kProducers; ++t) {
    threads.emplace_back([&ch, t] {
      Producer p = ch.producer({FullPolicy::kBlock, std::chrono::milliseconds(30'000)});
      std::vector<std::string> pls;
      std::vector<Event> ev;
      for (std::uint64_t i = 0; i < kPerProducer;) {
        const std::uint64_t n = std::min<std::uint64_t>(1 + i % 37, kPerProducer - i);
        pls.clear();
        ev.clear();
        for (std::uint64_t k = 0; k < n; ++k) pls.push_back(payload_for(static_cast<std::uint64_t>(t), i + k, (i + k) % 200));
        for (std::uint64_t k = 0; k < n; ++k)
          ev.push_back({{static_cast<std::uint64_t>(t), i + k}, std::as_bytes(std::span(pls[k].data(), pls[k].size()))});
        SourcePosition sp{static_cast<std::uint64_t>(t), i + n, (i + n) * 10};
        ASSERT_EQ(p.append_batch(ev, &sp), AppendStatus::kOk);
        i += n;
      }
    });
  }
  // A batch is visible all at once: a poll never ends inside one (checked by density per
  // source, and the channel sequence is dense across the whole channel).
  EXPECT_EQ(consume_checked(c, kPerProducer * kProducers, kProducers, true, 1000), 0u);
  for (auto& t : threads) t.join();
  for (std::uint64_t t = 1; t <= kProducers; ++t) {
    auto sp = ch.source_position(t);
    ASSERT_TRUE(sp.has_value());
    EXPECT_EQ(sp->next_sequence, kPerProducer);
    EXPECT_EQ(sp->position, kPerProducer * 10);
  }
}

TEST(ChannelConcurrentTest, TwoConsumersEachSeeEverythingWhileProducersRun) {
  TempDir dir;
  Channel ch = Channel::create(dir / "a.chan", ring(64 * 1024));
  Consumer a = ch.consumer("a");
  Consumer b = ch.consumer("b");
  constexpr int kProducers = 2;
  std::vector<std::thread> threads;
  for (int t = 1; t <= kProducers; ++t) {
    threads.emplace_back([&ch, t] {
      Producer p = ch.producer({FullPolicy::kBlock, std::chrono::milliseconds(30'000)});
      for (std::uint64_t i = 0; i < kPerProducer / 2; ++i)
        ASSERT_EQ(p.append({static_cast<std::uint64_t>(t), i}, payload_for(static_cast<std::uint64_t>(t), i, i % 200)),
                  AppendStatus::kOk);
    });
  }
  std::uint64_t errors_b = 0;
  std::thread tb([&] { errors_b = consume_checked(b, kPerProducer / 2 * kProducers, kProducers, true, 10); });
  EXPECT_EQ(consume_checked(a, kPerProducer / 2 * kProducers, kProducers, true, 300), 0u);
  tb.join();
  EXPECT_EQ(errors_b, 0u);
  for (auto& t : threads) t.join();
}

TEST(ChannelConcurrentTest, BlockedProducerWakesWhenTheConsumerCommits) {
  TempDir dir;
  Channel ch = Channel::create(dir / "a.chan", ring(64 * 1024));
  Consumer c = ch.consumer("reader");
  Producer p = ch.producer({FullPolicy::kBlock, std::chrono::milliseconds(20'000)});
  const std::string pl(1500, 'w');
  std::uint64_t i = 0;
  {
    Producer probe = ch.producer({FullPolicy::kFailFast});
    while (probe.append({2, i}, pl) == AppendStatus::kOk) ++i;
  }
  std::atomic<int> result{-1};
  std::thread t([&] { result = static_cast<int>(p.append({1, 0}, pl)); });
  // The producer must be asleep on the futex, not done: wait until it registers as a waiter.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (ch.stats().producer_waits == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_GE(ch.stats().producer_waits, 1u);
  EXPECT_EQ(result.load(), -1);
  std::vector<Record> buf(8);
  ASSERT_GT(c.poll(buf), 0u);
  c.commit();
  t.join();
  EXPECT_EQ(result.load(), static_cast<int>(AppendStatus::kOk));
}

TEST(ChannelConcurrentTest, WaitingConsumerWakesOnPublish) {
  TempDir dir;
  Channel ch = Channel::create(dir / "a.chan", ring(64 * 1024));
  Consumer c = ch.consumer("reader");
  std::atomic<bool> woke{false};
  std::thread t([&] { woke = c.wait(std::chrono::milliseconds(20'000)); });
  Producer p = ch.producer();
  ASSERT_EQ(p.append({1, 0}, "ping"), AppendStatus::kOk);
  t.join();
  EXPECT_TRUE(woke.load());
}

TEST(ChannelConcurrentTest, AnInterruptEndsAWaitAtOnceAndOnlyThatConsumers) {
  TempDir dir;
  Channel ch = Channel::create(dir / "a.chan", ring(64 * 1024));
  Consumer c = ch.consumer("reader");
  Consumer other = ch.consumer("other");
  std::atomic<int> ended{0};  // 1: the interrupted wait returned false
  const auto t0 = std::chrono::steady_clock::now();
  std::thread t([&] { ended = c.wait(std::chrono::milliseconds(60'000)) ? 2 : 1; });
  std::atomic<bool> other_read{false};
  std::thread o([&] { other_read = other.wait(std::chrono::milliseconds(60'000)); });
  c.interrupt();  // before or during its wait: that wait ends either way
  t.join();
  EXPECT_EQ(ended.load(), 1);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
  // The other consumer woke with it, found nothing and sleeps on, until a record comes.
  Producer p = ch.producer();
  ASSERT_EQ(p.append({1, 0}, "ping"), AppendStatus::kOk);
  o.join();
  EXPECT_TRUE(other_read.load()) << "the other consumer's wait ended without a record";
  // Used once: the next wait on an empty channel lasts its whole timeout.
  std::vector<Record> buf(4);
  ASSERT_EQ(c.poll(buf), 1u);
  const auto t1 = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.wait(std::chrono::milliseconds(300)));
  EXPECT_GE(std::chrono::steady_clock::now() - t1, std::chrono::milliseconds(300));
}

}  // namespace
}  // namespace tributary::core
