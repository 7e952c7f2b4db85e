// `tributary uplink`: ship one channel to a Kafka topic until SIGTERM (or, with --drain, until
// caught up).
// `tributary broker`: librdkafka's mock Kafka cluster on loopback (no JVM) until SIGTERM.
#include <unistd.h>

#include <poll.h>
#include <sys/eventfd.h>

#include <atomic>
#include <exception>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fmt/format.h>
#include <thread>

#include "commands.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/core/units.h"
#include "tributary/uplink/local_kafka.h"
#include "tributary/uplink/uplink.h"

namespace tributary::tools {
namespace {

uplink::Settings parse_settings(const std::vector<std::string>& kv) {
  uplink::Settings s;
  for (const auto& e : kv) {
    const auto eq = e.find('=');
    if (eq == std::string::npos || eq == 0) throw core::Error(fmt::format("-X '{}': expected key=value", e));
    s[e.substr(0, eq)] = e.substr(eq + 1);
  }
  return s;
}

}  // namespace

void add_uplink_commands(CLI::App& app, int& exit_code) {
  struct Args {
    std::string channel, topic, bootstrap, name = "uplink", dead_letter;
    std::vector<std::string> settings;
    bool packed = false;
    bool drain = false;
    std::string pack_bytes = "256K";
    int regrow_after_s = 600;
    std::size_t max_in_flight = uplink::UplinkOptions{}.max_in_flight;
  };
  auto a = std::make_shared<Args>();
  CLI::App* up = app.add_subcommand("uplink", "Ship a channel to a Kafka topic (commits only what Kafka acknowledged)");
  up->add_option("--channel", a->channel, "Channel file")->required();
  up->add_option("--topic", a->topic, "Kafka topic")->required();
  up->add_option("--bootstrap", a->bootstrap, "bootstrap.servers")->required();
  up->add_option("--name", a->name, "Durable consumer name in the channel");
  up->add_option("--dead-letter", a->dead_letter, "Channel for events Kafka refuses for good (created if missing)");
  up->add_option("-X", a->settings, "librdkafka setting key=value (repeatable)");
  up->add_flag("--packed", a->packed, "Many events of one source per Kafka record (the analyzer reads them natively)");
  up->add_flag("--drain", a->drain,
               "Exit once caught up: every event written to the channel until then acknowledged by Kafka and "
               "committed (as kcat -P exits at the end of its input); exit code 4 if stopped before that");
  up->add_option("--pack-bytes", a->pack_bytes, "Largest packed record")->capture_default_str();
  up->add_option("--regrow-after", a->regrow_after_s,
                 "Seconds without a refusal for size after which halved batches and packs are tried twice as large")
      ->check(CLI::Range(1, 86400))
      ->capture_default_str();
  up->add_option("--max-in-flight", a->max_in_flight, "Events handed to librdkafka and not yet acknowledged, at most")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
      ->capture_default_str();
  up->callback([a, &exit_code] {
    const int stop_fd = stop_signal_fd();
    const auto log = stderr_log("uplink");
    core::Channel ch = core::Channel::open(a->channel);
    std::optional<core::Channel> dlq;
    uplink::UplinkOptions o;
    o.name = a->name;
    o.topic = a->topic;
    o.kafka = parse_settings(a->settings);
    o.kafka["bootstrap.servers"] = a->bootstrap;
    o.packed = a->packed;
    const auto pack_bytes = core::parse_size(a->pack_bytes);
    if (!pack_bytes || *pack_bytes < 4096 || *pack_bytes > 900000)
      throw core::Error(fmt::format("--pack-bytes '{}': expected a size from 4K to 900000 bytes", a->pack_bytes));
    o.pack_bytes = static_cast<std::size_t>(*pack_bytes);
    o.regrow_after = std::chrono::seconds(a->regrow_after_s);
    o.max_in_flight = a->max_in_flight;
    if (!a->dead_letter.empty()) {
      // It must take every event this channel holds (see Uplink: checked there).
      core::ChannelConfig cfg;
      cfg.max_payload = ch.stats().max_payload;
      cfg.capacity = 16 << 20;
      while (cfg.capacity / 4 - core::kRecordHeaderSize < cfg.max_payload) cfg.capacity *= 2;
      dlq.emplace(core::Channel::open_or_create(a->dead_letter, cfg));
      o.dead_letter = &*dlq;
    }
    uplink::Uplink u(ch, o, log);
    std::atomic<bool> stop{false};
    std::atomic<int> watch_error{0};
    const core::Fd done(::eventfd(0, EFD_CLOEXEC));  // the watcher's wake-up once the work ends
    if (!done.valid()) core::throw_errno("eventfd", errno);
    std::thread watcher([&] {
      pollfd p[2] = {{stop_fd, POLLIN, 0}, {done.get(), POLLIN, 0}};
      int r = 0;
      while ((r = ::poll(p, 2, -1)) < 0 && errno == EINTR) {
      }
      if (r < 0) watch_error = errno;  // said below: the uplink stops rather than run unstoppable
      stop = true;
    });
    log("info", fmt::format("shipping {} to topic {} at {}", a->channel, a->topic, a->bootstrap));
    bool drained = false;
    std::exception_ptr failed;  // (a channel truncated under it): said once the watcher is joined
    try {
      if (a->drain) {
        while (!stop) {
          if (u.do_work() != 0) continue;
          const auto m = u.metrics();
          if (m.in_flight == 0 && m.committed >= ch.stats().write_position) {
            drained = true;
            break;
          }
          u.wait(std::chrono::milliseconds(20));
        }
        if (!drained) (void)u.flush(std::chrono::seconds(10));  // stopped first: as run() does
      } else {
        u.run(stop);
      }
    } catch (...) {
      failed = std::current_exception();
    }
    stop = true;
    const std::uint64_t one = 1;
    (void)!::write(done.get(), &one, sizeof one);
    watcher.join();
    if (failed) std::rethrow_exception(failed);
    if (const int e = watch_error.load(); e != 0)
      log("error", fmt::format("waiting for a stop signal failed: {}; stopping", std::strerror(e)));
    const auto m = u.metrics();
    log("info", fmt::format("{}: {} delivered, {} in flight, {} dead-lettered, {} dropped, {} rewinds",
                            drained ? "drained" : "stopped", m.delivered, m.in_flight, m.dead_lettered, m.dropped,
                            m.rewinds));
    // 3: events still in flight (sent again by the next run, identity kept); 4: --drain stopped
    // before everything written was shipped.
    exit_code = m.in_flight != 0 ? 3 : (a->drain && !drained) ? 4 : 0;
  });

  auto k = std::make_shared<uplink::LocalKafkaOptions>();
  CLI::App* kafka = app.add_subcommand("kafka", "A local Apache Kafka (KRaft) on loopback: fetch, start, stop, status");
  kafka->require_subcommand(1);
  for (CLI::App* sub : {kafka->add_subcommand("fetch", "Fetch the jars from Maven Central into the cache"),
                        kafka->add_subcommand("start", "Start the broker(s) and wait until they answer"),
                        kafka->add_subcommand("stop", "Stop the broker(s)"),
                        kafka->add_subcommand("status", "Show whether each broker runs and answers")}) {
    sub->add_option("--dir", k->dir, "Storage, configs and logs");
    sub->add_option("--port", k->port, "Port of broker 1 (others follow; controllers at +100)")
        ->check(CLI::Range(1024, 65400));
    sub->add_option("--brokers", k->brokers, "1, or 3 for replication and failover tests")->check(CLI::IsMember({1, 3}));
    sub->add_option("--version", k->version, "Apache Kafka version");
    sub->add_option("--heap", k->heap, "JVM heap per broker");
    sub->callback([k, sub, &exit_code] {
      uplink::LocalKafka lk(*k);
      const std::string what = sub->get_name();
      exit_code = 0;
      if (what == "fetch") {
        lk.fetch();
      } else if (what == "start") {
        fmt::print("{}\n", lk.start());
      } else if (what == "stop") {
        lk.stop();
      } else {
        for (const auto& b : lk.status()) {
          fmt::print("broker {} 127.0.0.1:{} {}\n", b.node_id, b.port,
                     b.pid == 0 ? "stopped" : b.answering ? fmt::format("running (pid {})", b.pid)
                                                          : fmt::format("not answering (pid {})", b.pid));
          if (!b.answering) exit_code = 1;
        }
      }
    });
  }

  struct BrokerArgs {
    int brokers = 1;
    std::vector<std::string> topics;
  };
  auto b = std::make_shared<BrokerArgs>();
  CLI::App* br = app.add_subcommand("broker", "librdkafka's mock Kafka cluster on loopback, for tests and fault injection");
  br->add_option("--brokers", b->brokers, "Number of brokers")->check(CLI::Range(1, 9));
  br->add_option("--topics", b->topics, "name:partitions, repeatable or comma-separated")->delimiter(',');
  br->callback([b, &exit_code] {
    const int stop_fd = stop_signal_fd();
    uplink::MockCluster mock(b->brokers);
    for (const auto& t : b->topics) {
      const auto colon = t.find(':');
      const std::string name = t.substr(0, colon);
      int parts = 1;
      if (colon != std::string::npos) {
        const std::string_view n = std::string_view(t).substr(colon + 1);
        const auto [end, ec] = std::from_chars(n.data(), n.data() + n.size(), parts);
        if (ec != std::errc{} || end != n.data() + n.size() || parts < 1 || parts > 1024)
          throw core::Error(fmt::format("broker --topics {}: the partitions after ':' must be 1 to 1024", t));
      }
      mock.create_topic(name, parts, std::min(b->brokers, 3));
    }
    fmt::print("bootstrap {}\n", mock.bootstrap());
    std::fflush(stdout);
    pollfd p{stop_fd, POLLIN, 0};
    while (::poll(&p, 1, -1) <= 0) {
    }
    exit_code = 0;
  });
}

}  // namespace tributary::tools
