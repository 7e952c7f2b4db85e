// `tributary channel create|stat|dump|recover|remove-consumer|demo`: manage and inspect channel files, and the
// channel's own demonstration (several producer processes -> one consumer, checked exactly once).
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <string>
#include <vector>

#include "commands.h"
#include "tributary/core/channel.h"
#include "tributary/core/crc32c.h"
#include "tributary/core/error.h"
#include "tributary/core/json.h"
#include "tributary/core/units.h"

namespace tributary::tools {
namespace {

using core::Channel;

std::uint64_t size_arg(const std::string& text) {
  if (auto v = core::parse_size(text)) return *v;
  throw core::Error(fmt::format("'{}' is not a size (examples: 65536, 512K, 64M, 1G)", text));
}

using core::human_bytes;

void print_stats(const Channel& ch, bool json) {
  const core::ChannelStats s = ch.stats();
  const core::SourceTableUse sources = ch.source_table();
  if (json) {
    std::string consumers;
    for (const auto& c : s.consumers) {
      if (!consumers.empty()) consumers += ",";
      consumers += fmt::format(R"({{"name":{},"committed":{},"lag_bytes":{},"records_committed":{},"owner_pid":{}}})",
                               core::json_string(c.name), c.committed, s.write_position - c.committed,
                               c.records_committed, c.owner_pid);
    }
    fmt::print(
        R"({{"path":{},"capacity":{},"max_payload":{},"write_position":{},"next_channel_seq":{},"oldest_retained":{},"used_bytes":{},)"
        R"("records_written":{},"bytes_written":{},"abandoned_records":{},"abandoned_bytes":{},"corrupt_records":{},"corrupt_bytes":{},)"
        R"("producer_waits":{},"full_rejections":{},"oversize_rejections":{},"sync_failures":{},"live_producers":{},"consumers":[{}],)"
        R"("last_recovery":{{"ran":{},"at_ns":{},"salvaged":{},"dropped_records":{},"dropped_bytes":{},"abandoned_claims":{},"cursors_moved":{},"sources_rolled_back":{},"file_bytes_found":{}}},)"
        R"("opened_after_clean_close":{},"closed_cleanly":{},"source_slots":{},"source_slots_in_use":{},"source_slots_released":{}}})"
        "\n",
        core::json_string(ch.path().string()), s.capacity, s.max_payload, s.write_position, s.next_channel_seq, s.oldest_retained,
        s.used_bytes, s.records_written, s.bytes_written, s.abandoned_records, s.abandoned_bytes, s.corrupt_records,
        s.corrupt_bytes, s.producer_waits, s.full_rejections, s.oversize_rejections, s.sync_failures, s.live_producers, consumers,
        s.last_recovery.ran, s.last_recovery.at_ns, s.last_recovery.records_salvaged, s.last_recovery.records_dropped,
        s.last_recovery.bytes_dropped, s.last_recovery.abandoned_claims, s.last_recovery.cursors_moved,
        s.last_recovery.sources_rolled_back, s.last_recovery.file_bytes_found, s.opened_after_clean_close, s.closed_cleanly, sources.slots, sources.in_use,
        sources.released);
    return;
  }
  fmt::print("channel      {}\n", ch.path().string());
  fmt::print("capacity     {} (max payload {})\n", human_bytes(s.capacity), human_bytes(s.max_payload));
  fmt::print("fill         {} used ({:.1f}%), write position {}, next channel seq {}\n", human_bytes(s.used_bytes),
             100.0 * double(s.used_bytes) / double(s.capacity), s.write_position, s.next_channel_seq);
  fmt::print("written      {} records, {} payload\n", s.records_written, human_bytes(s.bytes_written));
  fmt::print("abandoned    {} records ({} bytes) of writers that died mid-write\n", s.abandoned_records,
             s.abandoned_bytes);
  fmt::print("corrupt      {} records ({} bytes) detected and skipped\n", s.corrupt_records, s.corrupt_bytes);
  fmt::print("full         {} producer waits, {} rejected appends; {} oversize rejected\n", s.producer_waits,
             s.full_rejections, s.oversize_rejections);
  if (s.sync_failures != 0)
    fmt::print("sync         {} msync calls FAILED: what they covered is not known to be on disk\n", s.sync_failures);
  fmt::print("producers    {} live\n", s.live_producers);
  fmt::print("sources      {} of {} slots in use ({} given back, not yet emptied){}\n", sources.in_use,
             sources.slots, sources.released,
             std::uint64_t{sources.in_use} * 4 >= std::uint64_t{sources.slots} * 3 ? ": nearly full, new sources will wait once it is (create the "
                                                        "channel with more --sources)"
                                                      : "");
  fmt::print("consumers    {}\n", s.consumers.size());
  for (const auto& c : s.consumers)
    fmt::print("  {:<24} committed {:>14}  lag {:>10}  records {:>12}  {}\n", c.name, c.committed,
               human_bytes(s.write_position - c.committed), c.records_committed,
               c.owner_pid ? fmt::format("held by pid {}", c.owner_pid) : std::string("idle"));
  if (s.last_recovery.ran)
    fmt::print("recovery     salvaged {} records; dropped {} records / {} bytes; closed {} dead claims; moved {} cursors\n",
               s.last_recovery.records_salvaged, s.last_recovery.records_dropped, s.last_recovery.bytes_dropped,
               s.last_recovery.abandoned_claims, s.last_recovery.cursors_moved);
  if (s.last_recovery.sources_rolled_back != 0)
    fmt::print("rebooted     the file was last written on another boot: {} sources put back at the state the last "
               "completed sync wrote out (their collectors read the rest again)\n",
               s.last_recovery.sources_rolled_back);
  if (s.last_recovery.file_bytes_found != 0)
    fmt::print("truncated    the file had been cut to {} bytes; grown back and recovered\n",
               s.last_recovery.file_bytes_found);
  if (s.opened_after_clean_close) fmt::print("last open    after a clean close: no recovery scan\n");
  if (s.closed_cleanly) fmt::print("closed       cleanly: the next opener skips the recovery scan\n");
  fmt::print("crc32c       {}\n", core::crc32c_is_hardware() ? "hardware (SSE4.2)" : "software");
}

struct DemoOptions {
  std::string dir;  // empty: a fresh directory under $TMPDIR, removed at the end
  int producers = 2;
  std::uint64_t events = 1'000'000;
  std::uint32_t payload = 64;
  std::uint32_t batch = 64;
};

// Child process: appends `events` records of source `source` in batches.
int demo_produce(const std::filesystem::path& path, std::uint64_t source, const DemoOptions& o) {
  Channel ch = Channel::open(path);
  core::Producer prod = ch.producer({core::FullPolicy::kBlock, std::chrono::milliseconds(10'000), false});
  std::vector<std::byte> buf(std::size_t{o.payload} * o.batch);
  std::vector<core::Event> batch(o.batch);
  for (std::uint64_t seq = 0; seq < o.events;) {
    const std::uint64_t n = std::min<std::uint64_t>(o.batch, o.events - seq);
    for (std::uint64_t i = 0; i < n; ++i) {
      std::byte* p = buf.data() + i * o.payload;
      const std::uint64_t v = seq + i;
      std::memset(p, 'a' + static_cast<int>(source % 26), o.payload);
      std::memcpy(p, &v, std::min<std::size_t>(sizeof v, o.payload));
      batch[i] = {{source, seq + i}, {p, o.payload}};
    }
    if (const auto s = prod.append_batch({batch.data(), n}); s != core::AppendStatus::kOk) {
      std::fprintf(stderr, "producer %" PRIu64 ": append failed: %s\n", source, std::string(to_string(s)).c_str());
      return 1;
    }
    seq += n;
  }
  return 0;
}

int run_demo(const DemoOptions& o) {
  // Without --dir: a directory of its own (not a fixed name in a shared /tmp), gone afterwards.
  struct OwnDir {
    std::filesystem::path path;
    ~OwnDir() {
      std::error_code ec;
      if (!path.empty()) std::filesystem::remove_all(path, ec);
    }
  } own;
  std::filesystem::path dir = o.dir;
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    std::string tmpl = (std::filesystem::path(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") / "tributary-demo-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) core::throw_errno("cannot make a directory for the demo channel: mkdtemp " + tmpl, errno);
    dir = own.path = tmpl;
  }
  std::filesystem::create_directories(dir);
  const auto path = dir / "demo.chan";
  std::filesystem::remove(path);
  core::ChannelConfig cfg;
  cfg.capacity = 16ull << 20;
  Channel ch = Channel::create(path, cfg);
  core::Consumer con = ch.consumer("demo-reader");
  fmt::print("channel {} ({} MiB ring): {} producer processes x {} events of {} B, batches of {}\n", path.string(),
             cfg.capacity >> 20, o.producers, o.events, o.payload, o.batch);
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<pid_t> kids;
  for (int i = 0; i < o.producers; ++i) {
    const pid_t pid = ::fork();
    if (pid < 0) throw core::Error("fork failed");
    if (pid == 0) {
      int rc = 1;
      try {
        rc = demo_produce(path, static_cast<std::uint64_t>(i + 1), o);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "producer: %s\n", e.what());
      }
      ::_exit(rc);
    }
    kids.push_back(pid);
  }
  // Consume and check: per source, sequences must arrive dense and in order.
  std::vector<std::uint64_t> next(static_cast<std::size_t>(o.producers) + 1, 0);
  const std::uint64_t total = o.events * static_cast<std::uint64_t>(o.producers);
  std::uint64_t got = 0, errors = 0;
  std::vector<core::Record> recs(1024);
  auto last_progress = t0;
  while (got < total) {
    const std::size_t n = con.poll(recs);
    if (n == 0) {
      if (!con.wait(std::chrono::milliseconds(5000))) {
        fmt::print(stderr, "demo: no progress for 5 s after {} of {} events\n", got, total);
        break;
      }
      continue;
    }
    for (std::size_t i = 0; i < n; ++i) {
      const auto& r = recs[i];
      if (r.id.source_id == 0 || r.id.source_id > static_cast<std::uint64_t>(o.producers) ||
          r.id.sequence != next[r.id.source_id]) {
        ++errors;
      } else {
        ++next[r.id.source_id];
      }
    }
    got += n;
    con.commit();
    const auto now = std::chrono::steady_clock::now();
    if (now - last_progress > std::chrono::seconds(1)) {
      fmt::print("  {} / {} events\n", got, total);
      last_progress = now;
    }
  }
  int failed_kids = 0;
  for (pid_t k : kids) {
    int status = 0;
    ::waitpid(k, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed_kids;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("consumed {} events in {:.3f} s: {:.2f} M events/s, {:.0f} MB/s of payload\n", got, secs,
             double(got) / secs / 1e6, double(got) * o.payload / secs / 1e6);
  fmt::print("exactly-once check: {} out-of-order or duplicate, {} missing, {} producers failed\n", errors,
             total - std::min(total, got), failed_kids);
  print_stats(ch, false);
  return (errors == 0 && got == total && failed_kids == 0) ? 0 : 1;
}

}  // namespace

void add_channel_commands(CLI::App& app, int& exit_code) {
  CLI::App* chan = app.add_subcommand("channel", "Create, inspect and demonstrate channels (durable mmap rings)");
  chan->require_subcommand(1);

  struct CreateArgs {
    std::string path, capacity = "64M", max_payload;
    std::uint32_t sources = 4096;
    std::string mode = "0600";
    int group = -1;
  };
  auto create_args = std::make_shared<CreateArgs>();
  CLI::App* create = chan->add_subcommand("create", "Create a channel file (preallocated)");
  create->add_option("path", create_args->path, "Channel file to create")->required();
  create->add_option("--capacity", create_args->capacity, "Ring size, power of two (e.g. 64M)");
  create->add_option("--max-payload", create_args->max_payload, "Largest event accepted (default: 1M, or a quarter of a smaller ring)");
  create->add_option("--sources", create_args->sources, "Per-source state slots (power of two)");
  create->add_option("--mode", create_args->mode, "File mode, 0600 or 0660");
  create->add_option("--group", create_args->group, "Group id to own the file (with --mode 0660)");
  create->callback([create_args, &exit_code] {
    core::ChannelConfig cfg;
    cfg.capacity = size_arg(create_args->capacity);
    const std::uint64_t max_payload = create_args->max_payload.empty()
                                          ? std::min<std::uint64_t>(1u << 20, cfg.capacity / 4 - 64)
                                          : size_arg(create_args->max_payload);
    if (max_payload > UINT32_MAX)
      throw core::Error(fmt::format("--max-payload {}: at most 4G (and a quarter of the ring)", create_args->max_payload));
    cfg.max_payload = static_cast<std::uint32_t>(max_payload);
    cfg.source_slots = create_args->sources;
    const std::optional<unsigned> mode = core::parse_channel_mode(create_args->mode);
    if (!mode) throw core::Error(fmt::format("--mode '{}': {}", create_args->mode, core::kChannelModeRule));
    cfg.mode = static_cast<mode_t>(*mode);
    if (create_args->group >= 0) cfg.group = static_cast<gid_t>(create_args->group);
    Channel ch = Channel::create(create_args->path, cfg);
    fmt::print("created {} ({} ring, max payload {})\n", create_args->path, human_bytes(cfg.capacity),
               human_bytes(cfg.max_payload));
    exit_code = 0;
  });

  struct StatArgs {
    std::string path;
    bool json = false;
  };
  auto stat_args = std::make_shared<StatArgs>();
  CLI::App* stat = chan->add_subcommand("stat", "Print cursors, fill level and counters");
  stat->add_option("path", stat_args->path, "Channel file")->required();
  stat->add_flag("--json", stat_args->json, "Machine-readable output");
  stat->callback([stat_args, &exit_code] {
    core::OpenOptions oo;
    oo.read_only = true;
    print_stats(Channel::open(stat_args->path, oo), stat_args->json);
    exit_code = 0;
  });

  struct DumpArgs {
    std::string path;
    std::int64_t from = -1;
    std::uint64_t limit = 20;
    std::size_t width = 80;
  };
  auto dump_args = std::make_shared<DumpArgs>();
  CLI::App* dump = chan->add_subcommand("dump", "Print records without moving any cursor");
  dump->add_option("path", dump_args->path, "Channel file")->required();
  dump->add_option("--from", dump_args->from, "Start position (default: oldest retained)");
  dump->add_option("--limit", dump_args->limit, "Records to print (0 = all)");
  dump->add_option("--width", dump_args->width, "Payload bytes to show per record");
  dump->callback([dump_args, &exit_code] {
    core::OpenOptions oo;
    oo.read_only = true;
    Channel ch = Channel::open(dump_args->path, oo);
    std::optional<std::uint64_t> from;
    if (dump_args->from >= 0) from = static_cast<std::uint64_t>(dump_args->from);
    std::uint64_t shown = 0;
    ch.walk(
        [&](const core::Record& r) {
          fmt::print("@{} seq={} ts={} source={} sseq={} len={} {}\n", r.position, r.channel_seq, r.timestamp_ns,
                     r.id.source_id, r.id.sequence, r.payload.size(), printable(r.payload, dump_args->width));
          return dump_args->limit == 0 || ++shown < dump_args->limit;
        },
        from);
    exit_code = 0;
  });

  auto recover_path = std::make_shared<std::string>();
  CLI::App* recover = chan->add_subcommand(
      "recover", "Run the full recovery scan now, even after a clean close (a file suspected damaged since)");
  recover->add_option("path", *recover_path, "Channel file")->required();
  recover->callback([recover_path, &exit_code] {
    core::OpenOptions oo;
    oo.trust_clean_close = false;
    const auto before = std::chrono::system_clock::now();
    Channel ch = Channel::open(*recover_path, oo);
    const core::ChannelStats s = ch.stats();
    if (std::chrono::system_clock::time_point(std::chrono::nanoseconds(s.last_recovery.at_ns)) < before) {
      fmt::print(stderr, "{} is open in another process: no recovery scan can run now; run this again once no process has "
                 "it open\n", *recover_path);
      exit_code = 1;
      return;
    }
    print_stats(ch, false);
    exit_code = 0;
  });

  // A consumer nobody reads any more (a renamed uplink, a retired analyzer) holds the ring's
  // floor: producers stop at full. Removing it is the operator's decision, never automatic.
  auto remove_path = std::make_shared<std::string>();
  auto remove_name = std::make_shared<std::string>();
  CLI::App* remove = chan->add_subcommand(
      "remove-consumer", "Remove a named consumer that is no longer used, so that it stops holding back producers");
  remove->add_option("path", *remove_path, "Channel file")->required();
  remove->add_option("name", *remove_name, "Consumer name (as `channel stat` lists it)")->required();
  remove->callback([remove_path, remove_name, &exit_code] {
    Channel ch = Channel::open(*remove_path);
    if (!ch.remove_consumer(*remove_name)) {
      fmt::print(stderr, "{} has no consumer named '{}'\n", *remove_path, *remove_name);
      exit_code = 1;
      return;
    }
    fmt::print("removed consumer '{}' of {}\n", *remove_name, *remove_path);
    exit_code = 0;
  });

  auto demo_args = std::make_shared<DemoOptions>();
  CLI::App* demo = chan->add_subcommand("demo", "N producer processes -> 1 consumer, checked exactly once");
  demo->add_option("--dir", demo_args->dir, "Directory for the demo channel, kept afterwards (default: a new one in $TMPDIR, removed at the end; an interrupted run leaves it)");
  demo->add_option("--producers", demo_args->producers, "Producer processes")->check(CLI::Range(1, 64));
  demo->add_option("--events", demo_args->events, "Events per producer");
  demo->add_option("--payload", demo_args->payload, "Payload bytes per event")->check(CLI::Range(8, 65536));
  demo->add_option("--batch", demo_args->batch, "Events per append_batch")->check(CLI::Range(1, 4096));
  demo->callback([demo_args, &exit_code] { exit_code = run_demo(*demo_args); });
}

}  // namespace tributary::tools
