// Agent: channels + sources from an AgentConfig, one loop on one thread. Sources do bounded
// work; when none has any, the loop sleeps in poll() on their descriptors and the stop fd.
#include "tributary/ingest/agent.h"

#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fmt/format.h>
#include <atomic>
#include <map>
#include <thread>

#include "tributary/core/error.h"
#include "tributary/core/json.h"
#include "internal/intercept.h"
#include "tributary/uplink/uplink.h"

namespace tributary::ingest {

using Clock = std::chrono::steady_clock;

namespace {
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
  Clock::time_point next_status{};

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
          ctx.producer_options = config.channels[i].producer;
        }
      }
    }
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
    if (!u.dead_letter.empty()) o.dead_letter = impl_->channel(u.dead_letter);
    auto log_fn = [log = impl_->log, name = u.name](std::string_view level, const std::string& msg) {
      if (log) log(level, fmt::format("[{}] {}", name, msg));
    };
    impl_->uplinks.emplace_back(u.name, std::make_unique<uplink::Uplink>(*impl_->channel(u.channel), o, log_fn));
  }
}

Agent::~Agent() {
  impl_->stop_uplinks = true;
  for (auto& t : impl_->uplink_threads)
    if (t.joinable()) t.join();
}

int Agent::run(int stop_fd) {
  Impl& a = *impl_;
  if (a.log) a.log("info", fmt::format("agent '{}' running {} sources into {} channels", a.cfg.name, a.sources.size(),
                                       a.channels.size()));
  for (auto& [name, u] : a.uplinks) a.uplink_threads.emplace_back([&a, up = u.get()] { up->run(a.stop_uplinks); });
  std::vector<pollfd> fds;
  for (;;) {
    std::size_t work = 0;
    bool all_finished = !a.sources.empty() && a.uplinks.empty();
    for (auto& [name, src] : a.sources) {
      work += src->do_work();
      all_finished = all_finished && src->finished();
    }
    const auto now = Clock::now();
    if (now >= a.next_status) {
      a.write_status(status_json());
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
  for (auto& [name, src] : a.sources) src->drain();
  a.stop_uplinks = true;  // each uplink flushes what is in flight (bounded) before it returns
  for (auto& t : a.uplink_threads) t.join();
  a.uplink_threads.clear();
  a.write_status(status_json());
  if (a.log) a.log("info", fmt::format("agent '{}' stopped", a.cfg.name));
  return 0;
}

std::string Agent::status_json() const {
  const Impl& a = *impl_;
  std::string out = fmt::format(R"({{"agent":"{}","sources":{{)", a.cfg.name);
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
        R"({}"{}":{{"sent":{},"delivered":{},"failed":{},"in_flight":{},"rewinds":{},"dead_lettered":{},"committed":{},"last_error":"{}"}})",
        first ? "" : ",", name, m.sent, m.delivered, m.failed, m.in_flight, m.rewinds, m.dead_lettered, m.committed,
        esc(m.last_error));
    first = false;
  }
  out += R"(},"channels":{)";
  first = true;
  for (const auto& [name, ch] : a.channels) {
    const core::ChannelStats s = ch->stats();
    out += fmt::format(R"({}"{}":{{"path":"{}","capacity":{},"used_bytes":{},"records_written":{},"consumers":{}}})",
                       first ? "" : ",", name, esc(ch->path().string()), s.capacity, s.used_bytes, s.records_written,
                       s.consumers.size());
    first = false;
  }
  out += "}}\n";
  return out;
}

}  // namespace tributary::ingest
