// In-process channel benchmarks (Google Benchmark): a producer thread and a consumer thread
// moving N events per iteration, beside boost::lockfree::spsc_queue, moodycamel
// ConcurrentQueue and memcpy measured by the same harness. Cross-process figures, latency
// and the sync cost are in channel_ipc_bench (bench/run.sh runs both).
#include <benchmark/benchmark.h>
#include <unistd.h>

#include <boost/lockfree/spsc_queue.hpp>
#include <concurrentqueue/concurrentqueue.h>
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
BENCHMARK(BM_MoodycamelConcurrentQueue<1024>)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_Memcpy(benchmark::State& state) {
  const auto size = static_cast<std::size_t>(state.range(0));
  std::vector<std::byte> src(size, std::byte{1}), ring(32ull << 20);
  const std::uint64_t slots = ring.size() / size;
  for (auto _ : state) {
    for (std::uint64_t i = 0; i < kEventsPerIteration; ++i) {
      std::memcpy(ring.data() + (i % slots) * size, src.data(), size);
      benchmark::ClobberMemory();
    }
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration));
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * kEventsPerIteration * size));
}
BENCHMARK(BM_Memcpy)->Arg(64)->Arg(1024)->Unit(benchmark::kMillisecond);

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
