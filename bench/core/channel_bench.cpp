// In-process channel benchmarks (Google Benchmark): a producer thread and a consumer thread
// moving N events per iteration, beside boost::lockfree::spsc_queue, moodycamel
// ConcurrentQueue and memcpy measured by the same harness. Cross-process figures, latency
// and the sync cost are in channel_ipc_bench (bench/run.sh runs both).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <boost/lockfree/spsc_queue.hpp>
#include <concurrentqueue/concurrentqueue.h>
#include <algorithm>
#include <array>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <thread>
#include <vector>

#include "tributary/core/channel.h"
#include "tributary/core/crc32c.h"

namespace {

using namespace tributary::core;

constexpr std::uint64_t kEventsPerIteration = 1 << 20;

std::filesystem::path bench_path(const char* tag) {
  return fmt::format("/dev/shm/tributary-gbench-{}-{}.chan", ::getpid(), tag);
}

// Moves kEventsPerIteration events of `size` bytes through a channel in /dev/shm.
void BM_ChannelThreads(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const auto batch = static_cast<std::uint32_t>(state.range(1));
  const auto path = bench_path("thr");
  std::filesystem::remove(path);
  ChannelConfig cfg;
  cfg.capacity = 64ull << 20;
  Channel ch = Channel::create(path, cfg);
  Consumer con = ch.consumer("bench");
  std::vector<std::byte> msg(size, std::byte{0x42}), out(size);
  for (auto _ : state) {
    std::thread prod([&] {
      Producer p = ch.producer();
      if (batch == 1) {
        for (std::uint64_t i = 0; i < kEventsPerIteration; ++i) (void)p.append({1, i}, msg);
      } else {
        std::vector<Event> ev(batch, Event{{1, 0}, msg});
        for (std::uint64_t i = 0; i < kEventsPerIteration; i += batch) (void)p.append_batch(ev);
      }
    });
    std::array<Record, 256> recs;
    std::uint64_t got = 0;
    while (got < kEventsPerIteration) {
      const std::size_t k = con.poll(recs);
      for (std::size_t i = 0; i < k; ++i) std::memcpy(out.data(), recs[i].payload.data(), size);
      if (k != 0) con.commit();
      got += k;
    }
    prod.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration * size));
  std::filesystem::remove(path);
}
BENCHMARK(BM_ChannelThreads)->ArgNames({"bytes", "batch"})->Args({64, 1})->Args({64, 64})->Args({1024, 1})->Args({1024, 64})->UseRealTime()->Unit(benchmark::kMillisecond);

// Scaling, payload size: 16 B -> 64 KiB through one producer and one consumer thread, batches
// of 64 (fewer events per iteration as they grow: 256 MiB of payload per iteration).
void BM_ChannelPayloadScaling(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::uint64_t events = std::max<std::uint64_t>(4096, (256ull << 20) / size) / 64 * 64;
  const auto path = bench_path("size");
  std::filesystem::remove(path);
  ChannelConfig cfg;
  cfg.capacity = 64ull << 20;
  cfg.max_payload = 64u << 10;
  Channel ch = Channel::create(path, cfg);
  Consumer con = ch.consumer("bench");
  std::vector<std::byte> msg(size, std::byte{0x42}), out(size);
  for (auto _ : state) {
    std::thread prod([&] {
      Producer p = ch.producer();
      std::vector<Event> ev(64, Event{{1, 0}, msg});
      for (std::uint64_t i = 0; i < events; i += 64) (void)p.append_batch(ev);
    });
    std::array<Record, 256> recs;
    for (std::uint64_t got = 0; got < events;) {
      const std::size_t k = con.poll(recs);
      for (std::size_t i = 0; i < k; ++i) std::memcpy(out.data(), recs[i].payload.data(), size);
      if (k != 0) con.commit();
      got += k;
    }
    prod.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * events));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * events * size));
  std::filesystem::remove(path);
}
BENCHMARK(BM_ChannelPayloadScaling)->ArgName("bytes")->RangeMultiplier(4)->Range(16, 64 << 10)->UseRealTime()->Unit(benchmark::kMillisecond);

// Scaling, producers: 1 -> 8 producer threads (64 B, batches of 64) into one consumer thread,
// on however many cores the machine has (2 here: the curve shows the cost of oversubscription).
void BM_ChannelProducerScaling(benchmark::State& state) {
  const auto producers = static_cast<std::uint64_t>(state.range(0));
  const std::uint64_t per = kEventsPerIteration / producers / 64 * 64;
  const auto path = bench_path("mp");
  std::filesystem::remove(path);
  ChannelConfig cfg;
  cfg.capacity = 64ull << 20;
  Channel ch = Channel::create(path, cfg);
  Consumer con = ch.consumer("bench");
  std::vector<std::byte> msg(64, std::byte{0x42}), out(64);
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (std::uint64_t t = 0; t < producers; ++t)
      threads.emplace_back([&] {
        Producer p = ch.producer();
        std::vector<Event> ev(64, Event{{1, 0}, msg});
        for (std::uint64_t i = 0; i < per; i += 64) (void)p.append_batch(ev);
      });
    std::array<Record, 256> recs;
    for (std::uint64_t got = 0; got < per * producers;) {
      const std::size_t k = con.poll(recs);
      for (std::size_t i = 0; i < k; ++i) std::memcpy(out.data(), recs[i].payload.data(), 64);
      if (k != 0) con.commit();
      got += k;
      if (k == 0) std::this_thread::yield();  // oversubscribed: let the producers run
    }
    for (auto& t : threads) t.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * per * producers));
  std::filesystem::remove(path);
}
BENCHMARK(BM_ChannelProducerScaling)->ArgName("producers")->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime()->Unit(benchmark::kMillisecond);

template <std::size_t Size>
struct Msg {
  std::array<std::byte, Size> b;
};

template <std::size_t Size>
void BM_BoostLockfreeSpsc(benchmark::State& state) {
  auto q = std::make_unique<boost::lockfree::spsc_queue<Msg<Size>, boost::lockfree::capacity<65536>>>();
  Msg<Size> m{};
  for (auto _ : state) {
    std::thread prod([&] {
      for (std::uint64_t i = 0; i < kEventsPerIteration; ++i)
        while (!q->push(m)) {
        }
    });
    Msg<Size> out;
    for (std::uint64_t got = 0; got < kEventsPerIteration;)
      if (q->pop(out)) ++got;
    benchmark::DoNotOptimize(out);
    prod.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration * Size));
}
BENCHMARK(BM_BoostLockfreeSpsc<64>)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_BoostLockfreeSpsc<1024>)->UseRealTime()->Unit(benchmark::kMillisecond);

template <std::size_t Size>
void BM_MoodycamelConcurrentQueue(benchmark::State& state) {
  moodycamel::ConcurrentQueue<Msg<Size>> q(65536);
  Msg<Size> m{};
  for (auto _ : state) {
    std::thread prod([&] {
      moodycamel::ProducerToken tok(q);
      for (std::uint64_t i = 0; i < kEventsPerIteration; ++i) q.enqueue(tok, m);
    });
    Msg<Size> out;
    moodycamel::ConsumerToken ctok(q);
    for (std::uint64_t got = 0; got < kEventsPerIteration;)
      if (q.try_dequeue(ctok, out)) ++got;
    benchmark::DoNotOptimize(out);
    prod.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration * Size));
}
BENCHMARK(BM_MoodycamelConcurrentQueue<64>)->UseRealTime()->Unit(benchmark::kMillisecond);

// The producer-scaling peer: moodycamel's MPMC queue, 1 -> 8 producers (tokens) into one consumer.
void BM_MoodycamelProducerScaling(benchmark::State& state) {
  const auto producers = static_cast<std::uint64_t>(state.range(0));
  const std::uint64_t per = kEventsPerIteration / producers;
  moodycamel::ConcurrentQueue<Msg<64>> q(65536);
  Msg<64> m{};
  for (auto _ : state) {
    std::vector<std::thread> threads;
    for (std::uint64_t t = 0; t < producers; ++t)
      threads.emplace_back([&] {
        moodycamel::ProducerToken tok(q);
        for (std::uint64_t i = 0; i < per; ++i) q.enqueue(tok, m);
      });
    Msg<64> out;
    moodycamel::ConsumerToken ctok(q);
    for (std::uint64_t got = 0; got < per * producers;) {
      if (q.try_dequeue(ctok, out)) ++got;
      else std::this_thread::yield();
    }
    benchmark::DoNotOptimize(out);
    for (auto& t : threads) t.join();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * per * producers));
}
BENCHMARK(BM_MoodycamelProducerScaling)->ArgName("producers")->Arg(1)->Arg(2)->Arg(4)->Arg(8)->UseRealTime()->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MoodycamelConcurrentQueue<1024>)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Memcpy(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const std::uint64_t events = std::max<std::uint64_t>(4096, (256ull << 20) / size);  // as the scaling runs
  std::vector<std::byte> src(size, std::byte{1}), ring(32ull << 20);
  const std::uint64_t slots = ring.size() / size;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < events; ++i) {
      std::memcpy(ring.data() + (i % slots) * size, src.data(), size);
      benchmark::ClobberMemory();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * events));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * events * size));
}
BENCHMARK(BM_Memcpy)->RangeMultiplier(4)->Range(16, 64 << 10)->Unit(benchmark::kMillisecond);

// Opening a full 256 MiB ring (1.3 M records of 150 B): after a clean close (the mark is
// trusted, no scan) against the full recovery scan (`trust_clean_close = false`, what every
// open did before the mark, and what `tributary channel recover` does), in the same run.
void BM_ChannelOpen(benchmark::State& state) {
  const bool trust = state.range(0) != 0;
  const auto path = bench_path("open");
  std::filesystem::remove(path);
  ChannelConfig cfg;
  cfg.capacity = 256ull << 20;
  std::uint64_t records = 0;
  {
    Channel ch = Channel::create(path, cfg);
    (void)ch.consumer("never-commits");
    Producer p = ch.producer({FullPolicy::kFailFast});
    const std::string payload(150, 'x');
    while (p.append({1, records}, payload) == AppendStatus::kOk) ++records;
  }
  for (auto _ : state) {
    Channel ch = Channel::open(path, {.trust_clean_close = trust});
    benchmark::DoNotOptimize(ch.stats().write_position);
  }
  state.counters["records"] = static_cast<double>(records);
  std::filesystem::remove(path);
}
BENCHMARK(BM_ChannelOpen)->ArgName("trust_clean_close")->Arg(1)->Arg(0)->UseRealTime()->Unit(benchmark::kMillisecond);

// CRC32C alone, hardware vs portable: what the checksum costs per record.
void BM_Crc32c(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  const bool hw = state.range(1) != 0;
  std::vector<std::byte> buf(size, std::byte{7});
  for (auto _ : state) {
    benchmark::DoNotOptimize(hw ? crc32c(buf.data(), size) : crc32c_extend_portable(0, buf.data(), size));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * size));
}
BENCHMARK(BM_Crc32c)->ArgNames({"bytes", "hw"})->Args({64, 1})->Args({1024, 1})->Args({1024, 0})->Args({65536, 1});

}  // namespace

BENCHMARK_MAIN();
