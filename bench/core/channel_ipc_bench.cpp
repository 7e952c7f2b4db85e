// Cross-process channel benchmark, side by side with the usual ways to move messages between
// processes, all measured in the same run: Boost.Interprocess message_queue, a Unix
// socketpair (1 and 64 messages per write), a pipe, a bare SPSC ring over shared memory (no
// framing, CRC or durability: the ceiling of "just shared memory") at 1 and 64 messages per
// publication, and memcpy. Throughput in events/s and bytes/s, one-way latency percentiles
// with a busy-polling consumer, and, on a disk-backed channel, the CPU cost of interval sync.
//
// Every figure is the median of --repeat runs, with min and max; headline ratios are computed
// against baselines from the same run (the machine is a noisy 2-vCPU VM).
#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <immintrin.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <boost/interprocess/ipc/message_queue.hpp>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "tributary/core/channel.h"

namespace {

using namespace tributary;
using Clock = std::chrono::steady_clock;
namespace bip = boost::interprocess;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// ---------------------------------------------------------------------------------------------
// Shared start barrier and results, in an anonymous shared mapping created before fork.
struct Shared {
  std::atomic<int> ready;
  std::atomic<int> go;
  std::atomic<std::int64_t> t_start;
  std::atomic<std::int64_t> lat_count;
  std::int64_t lat[1];  // flexible: latency samples written by the consumer (child)
};

Shared* map_shared(std::size_t latency_samples) {
  const std::size_t size = sizeof(Shared) + latency_samples * sizeof(std::int64_t);
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
  auto* s = static_cast<Shared*>(p);
  s->ready = 0;
  s->go = 0;
  s->t_start = 0;
  s->lat_count = 0;
  return s;
}

void wait_go(Shared* s) {
  s->ready.fetch_add(1);
  while (s->go.load(std::memory_order_acquire) == 0) {
  }
}

// Runs `producers` children (each calling produce(index)) and consumes in this process;
// returns the seconds from the go signal to the last message consumed.
double run_processes(int producers, const std::function<void(int)>& produce, const std::function<void()>& consume,
                     Shared* sh) {
  std::vector<pid_t> kids;
  for (int i = 0; i < producers; ++i) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      wait_go(sh);
      produce(i);
      ::_exit(0);
    }
    kids.push_back(pid);
  }
  while (sh->ready.load() < producers) {
  }
  const std::int64_t t0 = now_ns();
  sh->go.store(1, std::memory_order_release);
  consume();
  const std::int64_t t1 = now_ns();
  for (pid_t k : kids) ::waitpid(k, nullptr, 0);
  return double(t1 - t0) / 1e9;
}

// ---------------------------------------------------------------------------------------------
// The bare ring: fixed-size slots, head and tail on their own cache lines, cached opposite
// index (rigtorp-style), no framing, no CRC, no durability. `publish_every` = 1 publishes the
// tail per message; 64 publishes once per 64 messages.
struct alignas(64) BareRing {
  alignas(64) std::atomic<std::uint64_t> tail;
  alignas(64) std::atomic<std::uint64_t> head;
  alignas(64) std::uint64_t slots;
  std::uint64_t slot_size;
  std::byte* data() { return reinterpret_cast<std::byte*>(this + 1); }
};

BareRing* map_bare_ring(std::uint64_t slots, std::uint64_t slot_size) {
  const std::size_t size = sizeof(BareRing) + slots * slot_size;
  void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  auto* r = new (p) BareRing;
  r->tail = 0;
  r->head = 0;
  r->slots = slots;
  r->slot_size = slot_size;
  return r;
}

void bare_produce(BareRing* r, std::uint64_t n, std::size_t size, std::uint64_t publish_every, bool timestamp) {
  std::vector<std::byte> msg(size, std::byte{0x5a});
  std::uint64_t tail = 0, cached_head = 0, published = 0;
  for (std::uint64_t i = 0; i < n; ++i) {
    while (tail - cached_head >= r->slots) cached_head = r->head.load(std::memory_order_acquire);
    if (timestamp) {
      const std::int64_t t = now_ns();
      std::memcpy(msg.data(), &t, sizeof t);
    }
    std::memcpy(r->data() + (tail & (r->slots - 1)) * r->slot_size, msg.data(), size);
    ++tail;
    if (tail - published >= publish_every || i + 1 == n) {
      r->tail.store(tail, std::memory_order_release);
      published = tail;
    }
  }
}

void bare_consume(BareRing* r, std::uint64_t n, std::size_t size, std::uint64_t publish_every, Shared* lat) {
  std::vector<std::byte> out(size);
  std::uint64_t head = 0, cached_tail = 0, released = 0;
  while (head < n) {
    while (head == cached_tail) {
      cached_tail = r->tail.load(std::memory_order_acquire);
      if (head == cached_tail) _mm_pause();
    }
    std::memcpy(out.data(), r->data() + (head & (r->slots - 1)) * r->slot_size, size);
    if (lat != nullptr) {
      std::int64_t t;
      std::memcpy(&t, out.data(), sizeof t);
      lat->lat[head] = now_ns() - t;
    }
    ++head;
    if (head - released >= publish_every || head == n) {
      r->head.store(head, std::memory_order_release);
      released = head;
    }
  }
}

// ---------------------------------------------------------------------------------------------
struct Result {
  std::string name;
  std::string group;  // e.g. "64B/1p"
  std::vector<double> rates;  // events/s, one per repeat
  std::size_t payload = 0;
  double median() const {
    auto v = rates;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
  double min() const { return *std::min_element(rates.begin(), rates.end()); }
  double max() const { return *std::max_element(rates.begin(), rates.end()); }
};

struct Latency {
  std::string name;
  double p50 = 0, p99 = 0, p999 = 0;
};

struct Options {
  int repeat = 3;
  double scale = 1.0;
  std::string json;
  std::string shm_dir = "/dev/shm";
  std::string disk_dir = "/var/tmp";
  bool quick = false;
  std::string only;
  std::uint64_t ring_bytes = 8ull << 20;  // channel capacity and bare-ring size: same bytes for both
};

std::string channel_path(const Options& o, const std::string& tag) {
  return fmt::format("{}/tributary-bench-{}-{}.chan", o.shm_dir, ::getpid(), tag);
}

// Tributary channel: `producers` processes x n events each; batch = 1 uses append().
double tributary_run(const Options& o, std::size_t size, std::uint64_t n, int producers, std::uint32_t batch,
                     Shared* sh, bool verify = true) {
  const auto path = channel_path(o, "tp");
  std::filesystem::remove(path);
  core::ChannelConfig cfg;
  cfg.capacity = o.ring_bytes;
  core::OpenOptions oo;
  oo.verify_on_read = verify;
  core::Channel ch = core::Channel::create(path, cfg, oo);
  core::Consumer con = ch.consumer("bench");
  const double secs = run_processes(
      producers,
      [&](int idx) {
        core::Channel c = core::Channel::open(path);
        core::Producer p = c.producer({core::FullPolicy::kBlock, std::chrono::milliseconds(60'000)});
        std::vector<std::byte> msg(size, std::byte{0x5a});
        const auto src = static_cast<std::uint64_t>(idx + 1);
        if (batch == 1) {
          for (std::uint64_t i = 0; i < n; ++i) (void)p.append({src, i}, msg);
        } else {
          std::vector<core::Event> ev(batch);
          for (std::uint64_t i = 0; i < n; i += batch) {
            const std::uint64_t k = std::min<std::uint64_t>(batch, n - i);
            for (std::uint64_t j = 0; j < k; ++j) ev[j] = {{src, i + j}, msg};
            (void)p.append_batch({ev.data(), k});
          }
        }
      },
      [&] {
        std::vector<core::Record> recs(256);
        std::vector<std::byte> out(size);
        std::uint64_t got = 0;
        const std::uint64_t total = n * static_cast<std::uint64_t>(producers);
        while (got < total) {
          const std::size_t k = con.poll(recs);
          if (k == 0) {
            for (int s = 0; s < 8; ++s) _mm_pause();  // busy-spin idle strategy, off the writer's line
            continue;
          }
          for (std::size_t i = 0; i < k; ++i) std::memcpy(out.data(), recs[i].payload.data(), recs[i].payload.size());
          con.commit();
          got += k;
        }
      },
      sh);
  std::filesystem::remove(path);
  return double(n) * producers / secs;
}

double bare_run(const Options& o, std::size_t size, std::uint64_t n, std::uint64_t publish_every, Shared* sh) {
  BareRing* r = map_bare_ring(std::max<std::uint64_t>(1024, o.ring_bytes / size), size);
  const double secs = run_processes(
      1, [&](int) { bare_produce(r, n, size, publish_every, false); },
      [&] { bare_consume(r, n, size, publish_every, nullptr); }, sh);
  ::munmap(r, sizeof(BareRing) + r->slots * r->slot_size);
  return double(n) / secs;
}

double mq_run(std::size_t size, std::uint64_t n, int producers, Shared* sh) {
  const std::string name = fmt::format("tributary-bench-mq-{}", ::getpid());
  bip::message_queue::remove(name.c_str());
  bip::message_queue mq(bip::create_only, name.c_str(), 1024, size);
  const double secs = run_processes(
      producers,
      [&](int) {
        bip::message_queue q(bip::open_only, name.c_str());
        std::vector<std::byte> msg(size, std::byte{0x5a});
        for (std::uint64_t i = 0; i < n; ++i) q.send(msg.data(), size, 0);
      },
      [&] {
        std::vector<std::byte> out(size);
        std::size_t got_size = 0;
        unsigned prio = 0;
        for (std::uint64_t i = 0; i < n * static_cast<std::uint64_t>(producers); ++i)
          mq.receive(out.data(), size, got_size, prio);
      },
      sh);
  bip::message_queue::remove(name.c_str());
  return double(n) * producers / secs;
}

// Byte stream over a socketpair or a pipe: `per_write` messages per write() call.
double stream_run(bool use_pipe, std::size_t size, std::uint64_t n, std::uint64_t per_write, Shared* sh) {
  int fds[2];
  if (use_pipe) {
    if (::pipe(fds) != 0) throw std::runtime_error("pipe");
  } else if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) {
    throw std::runtime_error("socketpair");
  }
  const int rd = fds[0], wr = fds[1];
  const double secs = run_processes(
      1,
      [&](int) {
        ::close(rd);
        std::vector<std::byte> buf(size * per_write, std::byte{0x5a});
        for (std::uint64_t i = 0; i < n; i += per_write) {
          const std::size_t bytes = size * std::min<std::uint64_t>(per_write, n - i);
          std::size_t off = 0;
          while (off < bytes) {
            const ssize_t w = ::write(wr, buf.data() + off, bytes - off);
            if (w <= 0) ::_exit(1);
            off += static_cast<std::size_t>(w);
          }
        }
      },
      [&] {
        std::vector<std::byte> buf(std::max<std::size_t>(65536, size * per_write));
        std::uint64_t total = n * size, got = 0;
        while (got < total) {
          const ssize_t r = ::read(rd, buf.data(), buf.size());
          if (r <= 0) break;
          got += static_cast<std::uint64_t>(r);
        }
      },
      sh);
  ::close(rd);
  ::close(wr);
  return double(n) / secs;
}

double memcpy_run(const Options& o, std::size_t size, std::uint64_t n) {
  std::vector<std::byte> src(size, std::byte{0x5a});
  std::vector<std::byte> ring(o.ring_bytes);  // same footprint as the rings
  const std::uint64_t slots = ring.size() / size;
  const auto t0 = Clock::now();
  for (std::uint64_t i = 0; i < n; ++i) {
    std::memcpy(ring.data() + (i % slots) * size, src.data(), size);
    asm volatile("" ::: "memory");
  }
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  return double(n) / secs;
}

// ---------------------------------------------------------------------------------------------
// One-way latency: the producer paces messages (one every `gap_ns`) so the queue is empty and
// each sample is transport latency, not queueing; the consumer busy-polls.
Latency percentiles(std::string name, std::vector<std::int64_t> v) {
  std::sort(v.begin(), v.end());
  auto at = [&](double q) { return double(v[std::min(v.size() - 1, static_cast<std::size_t>(q * double(v.size())))]); };
  return {std::move(name), at(0.50), at(0.99), at(0.999)};
}

void pace(std::int64_t& next, std::int64_t gap_ns) {
  while (now_ns() < next) {
  }
  next += gap_ns;
}

Latency latency_tributary(const Options& o, std::uint64_t n, std::int64_t gap) {
  const auto path = channel_path(o, "lat");
  std::filesystem::remove(path);
  core::ChannelConfig cfg;
  cfg.capacity = 64ull << 20;
  core::Channel ch = core::Channel::create(path, cfg);
  core::Consumer con = ch.consumer("lat");
  Shared* sh = map_shared(n);
  run_processes(
      1,
      [&](int) {
        core::Channel c = core::Channel::open(path);
        core::Producer p = c.producer();
        std::byte msg[64] = {};
        std::int64_t next = now_ns();
        for (std::uint64_t i = 0; i < n; ++i) {
          pace(next, gap);
          const std::int64_t t = now_ns();
          std::memcpy(msg, &t, sizeof t);
          (void)p.append({1, i}, std::span<const std::byte>(msg, 64));
        }
      },
      [&] {
        std::vector<core::Record> recs(64);
        std::uint64_t got = 0;
        while (got < n) {
          const std::size_t k = con.poll(recs);
          const std::int64_t t_now = now_ns();
          for (std::size_t i = 0; i < k; ++i) {
            std::int64_t t;
            std::memcpy(&t, recs[i].payload.data(), sizeof t);
            sh->lat[got + i] = t_now - t;
          }
          if (k != 0) con.commit();
          got += k;
        }
      },
      sh);
  std::filesystem::remove(path);
  std::vector<std::int64_t> v(sh->lat, sh->lat + n);
  ::munmap(sh, sizeof(Shared) + n * sizeof(std::int64_t));
  return percentiles("tributary channel", std::move(v));
}

Latency latency_bare(std::uint64_t n, std::int64_t gap) {
  BareRing* r = map_bare_ring(65536, 64);
  Shared* sh = map_shared(n);
  run_processes(
      1,
      [&](int) {
        std::vector<std::byte> msg(64);
        std::uint64_t tail = 0;
        std::int64_t next = now_ns();
        for (std::uint64_t i = 0; i < n; ++i) {
          pace(next, gap);
          const std::int64_t t = now_ns();
          std::memcpy(r->data() + (tail & (r->slots - 1)) * 64, &t, sizeof t);
          r->tail.store(++tail, std::memory_order_release);
        }
      },
      [&] { bare_consume(r, n, 64, 1, sh); }, sh);
  std::vector<std::int64_t> v(sh->lat, sh->lat + n);
  ::munmap(sh, sizeof(Shared) + n * sizeof(std::int64_t));
  return percentiles("bare shm ring", std::move(v));
}

Latency latency_mq(std::uint64_t n, std::int64_t gap) {
  const std::string name = fmt::format("tributary-bench-mql-{}", ::getpid());
  bip::message_queue::remove(name.c_str());
  bip::message_queue mq(bip::create_only, name.c_str(), 1024, 64);
  Shared* sh = map_shared(n);
  run_processes(
      1,
      [&](int) {
        bip::message_queue q(bip::open_only, name.c_str());
        std::byte msg[64] = {};
        std::int64_t next = now_ns();
        for (std::uint64_t i = 0; i < n; ++i) {
          pace(next, gap);
          const std::int64_t t = now_ns();
          std::memcpy(msg, &t, sizeof t);
          q.send(msg, 64, 0);
        }
      },
      [&] {
        std::byte out[64];
        std::size_t sz = 0;
        unsigned prio = 0;
        for (std::uint64_t i = 0; i < n; ++i) {
          while (!mq.try_receive(out, 64, sz, prio)) {
          }
          std::int64_t t;
          std::memcpy(&t, out, sizeof t);
          sh->lat[i] = now_ns() - t;
        }
      },
      sh);
  bip::message_queue::remove(name.c_str());
  std::vector<std::int64_t> v(sh->lat, sh->lat + n);
  ::munmap(sh, sizeof(Shared) + n * sizeof(std::int64_t));
  return percentiles("boost message_queue", std::move(v));
}

// ---------------------------------------------------------------------------------------------
// Disk-backed channel at a fixed offered load: machine-wide CPU seconds (all processes and
// kernel threads, from /proc/stat, so the kernel's own writeback is charged too) with sync
// `none` and with `interval` 100 ms, each run ending with an fdatasync of the file so both
// pay for getting the data to disk; and whether the load was kept up.
double machine_busy_seconds() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  std::uint64_t user = 0, nice = 0, sys = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0;
  f >> cpu >> user >> nice >> sys >> idle >> iowait >> irq >> softirq >> steal;
  return double(user + nice + sys + irq + softirq) / double(::sysconf(_SC_CLK_TCK));
}

struct SyncCost {
  std::string policy;
  double cpu_s = 0, process_cpu_s = 0, achieved = 0;
};

SyncCost sync_cost(const Options& o, core::SyncPolicy policy, double seconds, double rate) {
  const auto path = fmt::format("{}/tributary-bench-{}-sync.chan", o.disk_dir, ::getpid());
  std::filesystem::remove(path);
  core::ChannelConfig cfg;
  cfg.capacity = 64ull << 20;
  { core::Channel c = core::Channel::create(path, cfg); (void)c.consumer("sync"); }
  const std::uint64_t n = static_cast<std::uint64_t>(rate * seconds);
  Shared* sh = map_shared(0);
  const double busy_before = machine_busy_seconds();
  rusage before{};
  ::getrusage(RUSAGE_CHILDREN, &before);
  const pid_t consumer_pid = ::fork();
  if (consumer_pid == 0) {
    core::OpenOptions oo;
    oo.sync = policy;
    core::Channel c = core::Channel::open(path, oo);
    core::Consumer con = c.consumer("sync");
    std::vector<core::Record> recs(256);
    std::uint64_t got = 0;
    wait_go(sh);
    while (got < n) {
      const std::size_t k = con.poll(recs);
      if (k == 0) {
        (void)con.wait(std::chrono::milliseconds(100));
        continue;
      }
      got += k;
      con.commit();
    }
    ::_exit(0);
  }
  const std::uint64_t batch = 100;
  const double secs = run_processes(
      1,
      [&](int) {
        core::OpenOptions oo;
        oo.sync = policy;
        core::Channel c = core::Channel::open(path, oo);
        core::Producer p = c.producer();
        std::vector<std::byte> msg(100, std::byte{0x41});
        std::vector<core::Event> ev(batch);
        const auto gap = static_cast<std::int64_t>(1e9 * double(batch) / rate);
        std::int64_t next = now_ns();
        for (std::uint64_t i = 0; i < n; i += batch) {
          while (now_ns() < next) std::this_thread::sleep_for(std::chrono::microseconds(20));
          next += gap;
          for (std::uint64_t j = 0; j < batch; ++j) ev[j] = {{1, i + j}, msg};
          (void)p.append_batch(ev);
        }
      },
      [&] {
        while (sh->ready.load() < 2) {
        }
        ::waitpid(consumer_pid, nullptr, 0);
      },
      sh);
  {
    const int fd = ::open(path.c_str(), O_RDWR);
    ::fdatasync(fd);
    ::close(fd);
  }
  const double cpu = machine_busy_seconds() - busy_before;
  rusage after{};
  ::getrusage(RUSAGE_CHILDREN, &after);
  auto tv = [](const timeval& t) { return double(t.tv_sec) + double(t.tv_usec) / 1e6; };
  const double proc_cpu = tv(after.ru_utime) - tv(before.ru_utime) + tv(after.ru_stime) - tv(before.ru_stime);
  std::filesystem::remove(path);
  return {policy == core::SyncPolicy::kNone ? "none" : "interval 100ms", cpu, proc_cpu, double(n) / secs};
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Cross-process channel benchmark with same-run peers"};
  app.add_option("--repeat", o.repeat, "Runs per figure (median reported)");
  app.add_option("--scale", o.scale, "Multiply message counts (0.1 for a smoke run)");
  app.add_option("--json", o.json, "Write results as JSON here");
  app.add_option("--shm-dir", o.shm_dir, "Directory for RAM channels");
  app.add_option("--disk-dir", o.disk_dir, "Directory for the disk-backed sync test");
  app.add_option("--only", o.only, "Run only cases whose name contains this");
  app.add_option("--ring-bytes", o.ring_bytes, "Channel capacity and bare-ring size in bytes (power of two)");
  CLI11_PARSE(app, argc, argv);

  auto count = [&](double base) { return std::max<std::uint64_t>(1000, static_cast<std::uint64_t>(base * o.scale)); };
  std::vector<Result> results;
  auto measure = [&](const std::string& group, const std::string& name, std::size_t payload,
                     const std::function<double()>& f) {
    if (!o.only.empty() && (group + " " + name).find(o.only) == std::string::npos) return;
    Result r{name, group, {}, payload};
    for (int i = 0; i < o.repeat; ++i) r.rates.push_back(f());
    fmt::print("  {:<8} {:<44} {:>8.2f} M ev/s  {:>8.2f} GB/s   (min {:.2f}, max {:.2f})\n", group, name,
               r.median() / 1e6, r.median() * double(payload) / 1e9, r.min() / 1e6, r.max() / 1e6);
    std::fflush(stdout);
    results.push_back(std::move(r));
  };

  Shared* sh = nullptr;
  auto fresh = [&]() -> Shared* {
    if (sh != nullptr) ::munmap(sh, sizeof(Shared));
    sh = map_shared(0);
    return sh;
  };

  fmt::print("Throughput, 1 producer process -> 1 consumer process (median of {})\n", o.repeat);
  for (std::size_t size : {std::size_t{64}, std::size_t{1024}}) {
    const std::string g = fmt::format("{}B", size);
    const double k = size == 64 ? 1.0 : 0.25;
    measure(g, "memcpy (one thread, no transfer)", size, [&] { return memcpy_run(o, size, count(50e6 * k)); });
    measure(g, "bare shm ring, 64 msgs/publish", size, [&] { return bare_run(o, size, count(20e6 * k), 64, fresh()); });
    measure(g, "bare shm ring, 1 msg/publish", size, [&] { return bare_run(o, size, count(10e6 * k), 1, fresh()); });
    measure(g, "tributary channel, batch 64", size, [&] { return tributary_run(o, size, count(20e6 * k), 1, 64, fresh()); });
    measure(g, "tributary channel, batch 64, no read CRC", size,
            [&] { return tributary_run(o, size, count(20e6 * k), 1, 64, fresh(), false); });
    measure(g, "tributary channel, single append", size, [&] { return tributary_run(o, size, count(10e6 * k), 1, 1, fresh()); });
    measure(g, "boost message_queue", size, [&] { return mq_run(size, count(3e6 * k), 1, fresh()); });
    measure(g, "socketpair, 64 msgs/write", size, [&] { return stream_run(false, size, count(20e6 * k), 64, fresh()); });
    measure(g, "socketpair, 1 msg/write", size, [&] { return stream_run(false, size, count(1e6 * k), 1, fresh()); });
    measure(g, "pipe, 1 msg/write", size, [&] { return stream_run(true, size, count(2e6 * k), 1, fresh()); });
  }
  fmt::print("Throughput, 2 producer processes -> 1 consumer process\n");
  measure("64B/2p", "tributary channel, batch 64", 64, [&] { return tributary_run(o, 64, count(10e6), 2, 64, fresh()); });
  measure("64B/2p", "tributary channel, single append", 64, [&] { return tributary_run(o, 64, count(5e6), 2, 1, fresh()); });
  measure("64B/2p", "boost message_queue", 64, [&] { return mq_run(64, count(1.5e6), 2, fresh()); });

  std::vector<Latency> lats;
  if (o.only.empty() || o.only == "latency") {
    fmt::print("One-way latency, 64 B, one message every 5 us, busy-polling consumer (ns)\n");
    const std::uint64_t n = count(200'000);
    for (int i = 0; i < 1; ++i) {
      lats.push_back(latency_bare(n, 5000));
      lats.push_back(latency_tributary(o, n, 5000));
      lats.push_back(latency_mq(n, 5000));
    }
    for (const auto& l : lats) fmt::print("  {:<24} p50 {:>7.0f}  p99 {:>7.0f}  p99.9 {:>8.0f}\n", l.name, l.p50, l.p99, l.p999);
  }

  std::vector<SyncCost> syncs;
  if (o.only.empty() || o.only == "sync") {
    fmt::print("Disk-backed channel in {}, offered 1 M events/s of 100 B for {:.0f} s\n", o.disk_dir, 3 * o.scale < 1 ? 1.0 : 3.0);
    for (auto p : {core::SyncPolicy::kNone, core::SyncPolicy::kInterval}) {
      std::vector<SyncCost> runs;
      for (int i = 0; i < o.repeat; ++i) runs.push_back(sync_cost(o, p, 3 * o.scale < 1 ? 1.0 : 3.0, 1e6));
      std::sort(runs.begin(), runs.end(), [](auto& a, auto& b) { return a.cpu_s < b.cpu_s; });
      syncs.push_back(runs[runs.size() / 2]);
      fmt::print("  sync {:<16} machine cpu {:.3f} s   producer+consumer cpu {:.3f} s   achieved {:.3f} M ev/s\n",
                 syncs.back().policy, syncs.back().cpu_s, syncs.back().process_cpu_s, syncs.back().achieved / 1e6);
    }
  }

  // Headline ratios, each against a baseline measured in this run.
  auto find = [&](const std::string& g, const std::string& n) -> const Result* {
    for (const auto& r : results)
      if (r.group == g && r.name == n) return &r;
    return nullptr;
  };
  struct Ratio {
    std::string name;
    double value, target;
  };
  std::vector<Ratio> ratios;
  auto ratio = [&](const std::string& name, const Result* a, const Result* b, double target) {
    if (a && b) ratios.push_back({name, a->median() / b->median(), target});
  };
  ratio("64B batch vs message_queue", find("64B", "tributary channel, batch 64"), find("64B", "boost message_queue"), 8.0);
  ratio("64B batch vs socketpair 64/write", find("64B", "tributary channel, batch 64"),
        find("64B", "socketpair, 64 msgs/write"), 2.0);
  ratio("64B batch vs bare ring 64/publish", find("64B", "tributary channel, batch 64"),
        find("64B", "bare shm ring, 64 msgs/publish"), 0.5);
  ratio("64B single vs bare ring 1/publish", find("64B", "tributary channel, single append"),
        find("64B", "bare shm ring, 1 msg/publish"), 0.9);
  ratio("64B 2 producers vs 1 (batch)", find("64B/2p", "tributary channel, batch 64"),
        find("64B", "tributary channel, batch 64"), 0.7);
  ratio("1KiB batch (CRC on) vs bare ring 64/publish", find("1024B", "tributary channel, batch 64"),
        find("1024B", "bare shm ring, 64 msgs/publish"), 0.8);
  if (lats.size() == 3) {
    ratios.push_back({"latency p50 tributary / bare ring", lats[1].p50 / lats[0].p50, 1.5});
    ratios.push_back({"latency p99 tributary / bare ring", lats[1].p99 / lats[0].p99, 1.5});
    ratios.push_back({"latency p50 tributary / message_queue", lats[1].p50 / lats[2].p50, 0.2});
    ratios.push_back({"latency p99 tributary / message_queue", lats[1].p99 / lats[2].p99, 0.2});
  }
  if (syncs.size() == 2) {
    ratios.push_back({"CPU interval-sync / none (machine)", syncs[1].cpu_s / syncs[0].cpu_s, 1.1});
    ratios.push_back({"CPU interval-sync / none (processes)", syncs[1].process_cpu_s / syncs[0].process_cpu_s, 1.1});
  }
  fmt::print("Ratios (same run)\n");
  for (const auto& r : ratios) {
    const bool lower_is_better = r.name.rfind("latency", 0) == 0 || r.name.rfind("CPU", 0) == 0;
    const bool met = lower_is_better ? r.value <= r.target : r.value >= r.target;
    fmt::print("  {:<46} {:>7.2f}  (target {} {:.2f}: {})\n", r.name, r.value, lower_is_better ? "<=" : ">=", r.target,
               met ? "met" : "NOT met");
  }

  if (!o.json.empty()) {
    std::ofstream j(o.json);
    j << "{\n  \"context\": {\"cpus\": " << std::thread::hardware_concurrency() << ", \"repeat\": " << o.repeat
      << ", \"scale\": " << o.scale << "},\n  \"benchmarks\": [\n";
    for (std::size_t i = 0; i < results.size(); ++i) {
      const auto& r = results[i];
      j << fmt::format(
          R"(    {{"name": "{} {}", "items_per_second": {:.0f}, "bytes_per_second": {:.0f}, "min": {:.0f}, "max": {:.0f}, "repetitions": {}}}{})",
          r.group, r.name, r.median(), r.median() * double(r.payload), r.min(), r.max(), r.rates.size(),
          i + 1 < results.size() ? ",\n" : "\n");
    }
    j << "  ],\n  \"latency_ns\": [\n";
    for (std::size_t i = 0; i < lats.size(); ++i)
      j << fmt::format(R"(    {{"name": "{}", "p50": {:.0f}, "p99": {:.0f}, "p999": {:.0f}}}{})", lats[i].name, lats[i].p50,
                       lats[i].p99, lats[i].p999, i + 1 < lats.size() ? ",\n" : "\n");
    j << "  ],\n  \"ratios\": [\n";
    for (std::size_t i = 0; i < ratios.size(); ++i)
      j << fmt::format(R"(    {{"name": "{}", "value": {:.4f}, "target": {:.2f}}}{})", ratios[i].name, ratios[i].value,
                       ratios[i].target, i + 1 < ratios.size() ? ",\n" : "\n");
    j << "  ]\n}\n";
  }
  return 0;
}
