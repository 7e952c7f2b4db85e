// Agent: channels + sources from an AgentConfig, one loop on one thread. Sources do bounded
// work; when none has any, the loop sleeps in poll() on their descriptors and the stop fd.
#include "tributary/ingest/agent.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <exception>
#include <fmt/format.h>
#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "tributary/core/error.h"
#include "tributary/core/json.h"
#include "tributary/core/metrics.h"
#include "internal/intercept.h"
#include "tributary/uplink/uplink.h"

namespace tributary::ingest {

using Clock = std::chrono::steady_clock;

namespace {
// How long a stop or a reload waits for room in a full channel for what the sources read
// already, before they give that up (logged and counted as rejected): one deadline for all of
// them (stop_sources, Source::drain_step).
constexpr std::chrono::milliseconds kDrainWait{2000};

// A JSON string's contents (without the quotes) for the status file.
std::string esc(std::string_view in) {
  std::string out = core::json_string(in);
  return out.substr(1, out.size() - 2);
}
}  // namespace

struct Agent::Impl {
  AgentConfig cfg;
  LogFn log;
  std::vector<std::pair<std::string, std::unique_ptr<core::Channel>>> channels;
  std::vector<std::pair<std::string, std::unique_ptr<Source>>> sources;
  std::vector<std::pair<std::string, std::unique_ptr<uplink::Uplink>>> uplinks;
  std::atomic<bool> stop_uplinks{false};
  std::vector<std::thread> uplink_threads;
  // An uplink that fails (its channel truncated) stops the agent, as a source that throws does.
  std::atomic<bool> uplink_failed{false};
  std::mutex uplink_error_mu;
  std::exception_ptr uplink_error;
  Clock::time_point next_status{};
  // What the metrics endpoint serves: refreshed by the agent's loop every second, read by the
  // server's thread (sources and uplink counters are the loop's, not shared).
  mutable std::mutex snapshot_mu;
  std::string snapshot_json, snapshot_prom;
  // The channels' source-table use, a scan of every slot (64 bytes each, up to 2^20 of them):
  // refreshed every 10 s, not at every status.
  mutable std::mutex tables_mu;
  mutable std::vector<core::SourceTableUse> tables;
  mutable Clock::time_point tables_at{};
  std::vector<core::SourceTableUse> source_tables() const {
    const std::lock_guard lock(tables_mu);
    const auto now = Clock::now();
    if (tables.size() != channels.size() || now - tables_at >= std::chrono::seconds(10)) {
      tables.clear();
      for (const auto& [name, ch] : channels) tables.push_back(ch->source_table());
      tables_at = now;
    }
    return tables;
  }
  std::unique_ptr<core::MetricsServer> metrics;

  core::Channel* channel(const std::string& name) const {
    for (const auto& [n, ch] : channels)
      if (n == name) return ch.get();
    return nullptr;
  }

  void write_status(const std::string& json) const {
    if (cfg.status_file.empty()) return;
    // Write then rename: a reader never sees half a file.
    const auto tmp = cfg.status_file.string() + ".tmp";
    if (FILE* f = std::fopen(tmp.c_str(), "w")) {
      std::fputs(json.c_str(), f);
      std::fclose(f);
      std::rename(tmp.c_str(), cfg.status_file.c_str());
    }
  }
};

void stop_sources(std::span<Source* const> sources, Clock::time_point deadline) {
  for (Source* s : sources) s->begin_stop();
  std::vector<Source*> left(sources.begin(), sources.end());
  std::vector<pollfd> fds;
  for (;;) {
    std::erase_if(left, [deadline](Source* s) { return s->drain_step(deadline); });
    if (left.empty()) break;
    fds.clear();
    auto wake = Clock::now() + std::chrono::milliseconds(20);
    for (Source* s : left) {
      if (const int fd = s->wait_fd(); fd >= 0) fds.push_back({fd, POLLIN, 0});
      wake = std::min(wake, s->next_deadline());
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(wake - Clock::now()).count();
    ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(wait + 1, 0, 20)));
  }
  for (Source* s : sources) s->end_stop();
}

Agent::Agent(const AgentConfig& config, LogFn log) : impl_(std::make_unique<Impl>()) {
  impl_->cfg = config;
  impl_->log = std::move(log);
  for (const ChannelSpec& c : config.channels) {
    std::error_code ec;
    if (c.path.has_parent_path()) std::filesystem::create_directories(c.path.parent_path(), ec);
    impl_->channels.emplace_back(c.name,
                                 std::make_unique<core::Channel>(core::Channel::open_or_create(c.path, c.create, c.open)));
  }
  for (const SourceSpec& s : config.sources) {
    SourceContext ctx;
    ctx.name = s.name;
    for (const auto& want : s.channels) {
      for (std::size_t i = 0; i < impl_->channels.size(); ++i) {
        if (impl_->channels[i].first == want) {
          ctx.channels.push_back(impl_->channels[i].second.get());
        }
      }
    }
    // One thread serves every source, the signals and the reloads: a source must never wait
    // inside an append. It holds what a full channel refused and retries (agent.h).
    ctx.producer_options.on_full = core::FullPolicy::kFailFast;
    ctx.log = [log = impl_->log, name = s.name](std::string_view level, const std::string& msg) {
      if (log) log(level, fmt::format("[{}] {}", name, msg));
    };
    if (!s.interceptors.empty()) ctx.interceptors = std::make_shared<const detail::InterceptorChain>(s.interceptors);
    impl_->sources.emplace_back(s.name, s.descriptor->create(s.options, std::move(ctx)));
  }
  for (const UplinkSpec& u : config.uplinks) {
    uplink::UplinkOptions o;
    o.name = u.consumer;
    o.topic = u.topic;
    o.kafka = u.kafka;
    o.max_in_flight = static_cast<std::size_t>(u.max_in_flight);
    o.packed = u.packed;
    o.pack_bytes = static_cast<std::size_t>(u.pack_bytes);
    o.regrow_after = std::chrono::seconds(u.regrow_after_s);
    if (!u.dead_letter.empty()) o.dead_letter = impl_->channel(u.dead_letter);
    auto log_fn = [log = impl_->log, name = u.name](std::string_view level, const std::string& msg) {
      if (log) log(level, fmt::format("[{}] {}", name, msg));
    };
    impl_->uplinks.emplace_back(u.name, std::make_unique<uplink::Uplink>(*impl_->channel(u.channel), o, log_fn));
  }
  // The endpoint is bound here, not in run(): an address in use is a construction error, which
  // a reload (tools/agent_cmd.cpp) answers by starting the previous configuration again.
  Impl& a = *impl_;
  if (!a.cfg.metrics.empty()) {
    publish();
    a.metrics = std::make_unique<core::MetricsServer>(
        a.cfg.metrics,
        [&a] {
          const std::lock_guard lock(a.snapshot_mu);
          return a.snapshot_prom;
        },
        [&a] {
          const std::lock_guard lock(a.snapshot_mu);
          return a.snapshot_json;
        });
    if (a.log) a.log("info", fmt::format("metrics on http://{}:{}/metrics", a.cfg.metrics.substr(0, a.cfg.metrics.rfind(':')),
                                         a.metrics->port()));
    publish();  // the status file now names the endpoint's port
  }
}

Agent::~Agent() {
  impl_->stop_uplinks = true;
  for (auto& t : impl_->uplink_threads)
    if (t.joinable()) t.join();
}

void Agent::publish() {
  Impl& a = *impl_;
  std::string json = status_json();
  std::string prom = prometheus();
  a.write_status(json);
  const std::lock_guard lock(a.snapshot_mu);
  a.snapshot_json = std::move(json);
  a.snapshot_prom = std::move(prom);
}

int Agent::metrics_port() const { return impl_->metrics ? impl_->metrics->port() : 0; }

int Agent::run(int stop_fd) {
  Impl& a = *impl_;
  if (a.log) a.log("info", fmt::format("agent '{}' running {} sources into {} channels", a.cfg.name, a.sources.size(),
                                       a.channels.size()));
  for (auto& [name, u] : a.uplinks)
    a.uplink_threads.emplace_back([&a, up = u.get()] {
      try {
        up->run(a.stop_uplinks);
      } catch (...) {
        const std::lock_guard lock(a.uplink_error_mu);
        if (!a.uplink_error) a.uplink_error = std::current_exception();
        a.uplink_failed = true;
      }
    });
  // A source that throws (a channel cut short under us) stops the agent: the uplinks flush
  // what is in flight and are joined first, then the error goes up to the caller.
  struct StopUplinks {
    Impl& a;
    ~StopUplinks() {
      a.stop_uplinks = true;
      for (auto& t : a.uplink_threads)
        if (t.joinable()) t.join();
      a.uplink_threads.clear();
    }
  } stop_uplinks_on_exit{a};
  std::vector<pollfd> fds;
  for (;;) {
    if (a.uplink_failed.load()) break;  // noticed within the loop's longest wait (1 s)
    std::size_t work = 0;
    bool all_finished = !a.sources.empty() && a.uplinks.empty();
    for (auto& [name, src] : a.sources) {
      work += src->do_work();
      all_finished = all_finished && src->finished();
    }
    const auto now = Clock::now();
    if (now >= a.next_status) {
      publish();
      a.next_status = now + std::chrono::seconds(1);
    }
    if (all_finished) break;
    if (work != 0) {
      // Still busy: only check whether we were asked to stop.
      pollfd p{stop_fd, POLLIN, 0};
      if (stop_fd >= 0 && ::poll(&p, 1, 0) > 0) break;
      continue;
    }
    fds.clear();
    fds.push_back({stop_fd, POLLIN, 0});
    auto deadline = a.next_status;
    for (auto& [name, src] : a.sources) {
      if (const int fd = src->wait_fd(); fd >= 0) fds.push_back({fd, POLLIN, 0});
      deadline = std::min(deadline, src->next_deadline());
    }
    const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    ::poll(fds.data(), fds.size(), static_cast<int>(std::clamp<long long>(wait + 1, 0, 1000)));
    if (stop_fd >= 0 && (fds[0].revents & POLLIN) != 0) break;
  }
  std::vector<Source*> all;
  for (auto& [name, src] : a.sources) all.push_back(src.get());
  stop_sources(all, Clock::now() + kDrainWait);
  a.stop_uplinks = true;  // each uplink flushes what is in flight (bounded) before it returns
  for (auto& t : a.uplink_threads) t.join();
  a.uplink_threads.clear();
  publish();
  if (a.uplink_error) std::rethrow_exception(a.uplink_error);  // (the threads are joined)
  if (a.log) a.log("info", fmt::format("agent '{}' stopped", a.cfg.name));
  return 0;
}

std::string Agent::status_json() const {
  const Impl& a = *impl_;
  const std::string metrics =
      a.metrics ? fmt::format("{}:{}", a.cfg.metrics.substr(0, a.cfg.metrics.rfind(':')), a.metrics->port()) : "";
  std::string out = fmt::format(R"({{"agent":"{}","metrics":"{}","sources":{{)", esc(a.cfg.name), esc(metrics));
  bool first = true;
  for (const auto& [name, src] : a.sources) {
    const SourceMetrics m = src->metrics();
    out += fmt::format(
        R"({}"{}":{{"events":{},"bytes":{},"rejected":{},"oversize":{},"rotations":{},"open_files":{},"errors":{},)"
        R"("restarts":{},"connections":{},"refused_connections":{},"malformed":{},"dropped":{},"filtered":{},)"
        R"("endpoint":"{}"}})",
        first ? "" : ",", name, m.events, m.bytes, m.rejected, m.oversize, m.rotations, m.open_files, m.errors,
        m.restarts, m.connections, m.refused_connections, m.malformed, m.dropped, m.filtered,
        esc(src->endpoint()));
    first = false;
  }
  out += R"(},"uplinks":{)";
  first = true;
  for (const auto& [name, u] : a.uplinks) {
    const uplink::UplinkMetrics m = u->metrics();
    out += fmt::format(
        R"({}"{}":{{"sent":{},"delivered":{},"failed":{},"in_flight":{},"rewinds":{},"dead_lettered":{},)"
        R"("dead_letter_waiting":{},"committed":{},"batch_bytes":{},"pack_bytes":{},"last_error":"{}"}})",
        first ? "" : ",", name, m.sent, m.delivered, m.failed, m.in_flight, m.rewinds, m.dead_lettered,
        m.dead_letter_waiting, m.committed, m.batch_bytes, m.pack_bytes, esc(m.last_error));
    first = false;
  }
  out += R"(},"channels":{)";
  first = true;
  const std::vector<core::SourceTableUse> tables = a.source_tables();
  for (std::size_t i = 0; i < a.channels.size(); ++i) {
    const auto& [name, ch] = a.channels[i];
    const core::ChannelStats s = ch->stats();
    const core::SourceTableUse& t = tables[i];
    out += fmt::format(
        R"({}"{}":{{"path":"{}","capacity":{},"used_bytes":{},"records_written":{},"consumers":{},"source_slots":{},)"
        R"("source_slots_in_use":{}}})",
        first ? "" : ",", name, esc(ch->path().string()), s.capacity, s.used_bytes, s.records_written,
        s.consumers.size(), t.slots, t.in_use);
    first = false;
  }
  out += "}}\n";
  return out;
}

std::string Agent::prometheus() const {
  const Impl& a = *impl_;
  core::PrometheusText p;
  const std::string_view agent = a.cfg.name;
  struct SourceFamily {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t SourceMetrics::*field;
  };
  static constexpr SourceFamily kSource[] = {
      {"tributary_source_events_total", "counter", "Events appended to the channels", &SourceMetrics::events},
      {"tributary_source_bytes_total", "counter", "Payload bytes appended", &SourceMetrics::bytes},
      {"tributary_source_rejected_total", "counter", "Events refused (oversize with reject, channel refused)",
       &SourceMetrics::rejected},
      {"tributary_source_oversize_total", "counter", "Lines or messages longer than the limit",
       &SourceMetrics::oversize},
      {"tributary_source_filtered_total", "counter", "Events an interceptor dropped", &SourceMetrics::filtered},
      {"tributary_source_errors_total", "counter", "I/O errors and failed command runs", &SourceMetrics::errors},
      {"tributary_source_rotations_total", "counter", "New file generations seen (tail)", &SourceMetrics::rotations},
      {"tributary_source_open_files", "gauge", "Files open (tail)", &SourceMetrics::open_files},
      {"tributary_source_restarts_total", "counter", "Command restarts (exec)", &SourceMetrics::restarts},
      {"tributary_source_connections", "gauge", "Connections open (tcp, syslog)", &SourceMetrics::connections},
      {"tributary_source_refused_connections_total", "counter", "Connections closed at max_connections",
       &SourceMetrics::refused_connections},
      {"tributary_source_malformed_total", "counter", "Syslog messages that did not parse", &SourceMetrics::malformed},
      {"tributary_source_kernel_drops_total", "counter", "Datagrams the kernel dropped (udp, syslog)",
       &SourceMetrics::dropped},
  };
  std::vector<std::pair<std::string, SourceMetrics>> sources;
  for (const auto& [name, src] : a.sources) sources.emplace_back(name, src->metrics());
  for (const SourceFamily& f : kSource) {
    p.family(f.name, f.type, f.help);
    for (const auto& [name, m] : sources)
      p.sample(f.name, {{"agent", agent}, {"source", name}}, static_cast<double>(m.*(f.field)));
  }
  struct UplinkFamily {
    const char* name;
    const char* type;
    const char* help;
    std::uint64_t uplink::UplinkMetrics::*field;
  };
  static constexpr UplinkFamily kUplink[] = {
      {"tributary_uplink_sent_total", "counter", "Events handed to librdkafka", &uplink::UplinkMetrics::sent},
      {"tributary_uplink_delivered_total", "counter", "Events Kafka acknowledged", &uplink::UplinkMetrics::delivered},
      {"tributary_uplink_failed_total", "counter", "Delivery failures (each re-sent or dead-lettered)",
       &uplink::UplinkMetrics::failed},
      {"tributary_uplink_in_flight", "gauge", "Events sent and not yet acknowledged", &uplink::UplinkMetrics::in_flight},
      {"tributary_uplink_rewinds_total", "counter", "Rewinds to the first unacknowledged event",
       &uplink::UplinkMetrics::rewinds},
      {"tributary_uplink_resent_refused_total", "counter", "Events of batches Kafka refused for good, sent again",
       &uplink::UplinkMetrics::resent_refused},
      {"tributary_uplink_dead_lettered_total", "counter", "Events Kafka refused for good",
       &uplink::UplinkMetrics::dead_lettered},
      {"tributary_uplink_dropped_total", "counter", "Events Kafka refused for good, with no dead-letter channel",
       &uplink::UplinkMetrics::dropped},
      {"tributary_uplink_dead_letter_waiting", "gauge",
       "1 while a refused event waits for room in a full dead-letter channel (and the cursor with it)",
       &uplink::UplinkMetrics::dead_letter_waiting},
      {"tributary_uplink_committed_position", "gauge", "Channel position (bytes) committed after acknowledgement",
       &uplink::UplinkMetrics::committed},
      {"tributary_uplink_batch_bytes", "gauge", "librdkafka batch.size in use (halved by refusals for size)",
       &uplink::UplinkMetrics::batch_bytes},
      {"tributary_uplink_pack_bytes", "gauge", "Largest pack in use in packed mode (halved by refusals for size)",
       &uplink::UplinkMetrics::pack_bytes},
  };
  std::vector<std::pair<std::string, uplink::UplinkMetrics>> ups;
  for (const auto& [name, u] : a.uplinks) ups.emplace_back(name, u->metrics());
  for (const UplinkFamily& f : kUplink) {
    p.family(f.name, f.type, f.help);
    for (const auto& [name, m] : ups)
      p.sample(f.name, {{"agent", agent}, {"uplink", name}}, static_cast<double>(m.*(f.field)));
  }
  std::vector<std::pair<std::string, core::ChannelStats>> chans;
  for (const auto& [name, ch] : a.channels) chans.emplace_back(name, ch->stats());
  auto channel_family = [&](const char* name, const char* type, const char* help, auto get) {
    p.family(name, type, help);
    for (const auto& [cname, st] : chans)
      p.sample(name, {{"agent", agent}, {"channel", cname}}, static_cast<double>(get(st)));
  };
  channel_family("tributary_channel_capacity_bytes", "gauge", "Ring size",
                 [](const core::ChannelStats& st) { return st.capacity; });
  channel_family("tributary_channel_used_bytes", "gauge", "Bytes written and not yet consumed by every consumer",
                 [](const core::ChannelStats& st) { return st.used_bytes; });
  channel_family("tributary_channel_records_written_total", "counter", "Records written",
                 [](const core::ChannelStats& st) { return st.records_written; });
  channel_family("tributary_channel_full_rejections_total", "counter",
                 "Appends refused or timed out: channel full (a held batch counts once per retry)",
                 [](const core::ChannelStats& st) { return st.full_rejections; });
  channel_family("tributary_channel_producer_waits_total", "counter", "Producer sleeps on a full channel",
                 [](const core::ChannelStats& st) { return st.producer_waits; });
  channel_family("tributary_channel_corrupt_records_total", "counter", "Records found corrupt and never delivered",
                 [](const core::ChannelStats& st) { return st.corrupt_records; });
  channel_family("tributary_channel_sync_failures_total", "counter",
                 "msync calls that failed: what they covered is not known to be on disk",
                 [](const core::ChannelStats& st) { return st.sync_failures; });
  // The source table: collectors that keep a position (tail) wait for a slot once it is full.
  const std::vector<core::SourceTableUse> tables = a.source_tables();
  auto table_family = [&](const char* name, const char* help, std::uint32_t core::SourceTableUse::*field) {
    p.family(name, "gauge", help);
    for (std::size_t i = 0; i < tables.size(); ++i)
      p.sample(name, {{"agent", agent}, {"channel", a.channels[i].first}}, static_cast<double>(tables[i].*field));
  };
  table_family("tributary_channel_source_slots", "Slots of the per-source state table", &core::SourceTableUse::slots);
  table_family("tributary_channel_source_slots_in_use",
               "Slots held by sources (a tail: two per file followed or recently ended): at source_slots, new files wait",
               &core::SourceTableUse::in_use);
  return p.text();
}

}  // namespace tributary::ingest
