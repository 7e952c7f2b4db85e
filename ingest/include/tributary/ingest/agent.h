// The node agent (Flume's agent, readable): one process runs the channels and collectors that
// a TOML file declares, routing each collector to one or more channels (replicating).
//
//   [agent]
//   name = "web-1"
//   status_file = "/run/tributary/web-1.status.json"   # optional: `tributary agent --status`
//   metrics = "127.0.0.1:9464"                         # optional: Prometheus /metrics, /status
//
//   [channels.logs]
//   path = "/var/lib/tributary/logs.chan"    # created if missing
//   capacity = "64M"
//   sync = "interval"                        # none | interval | every-commit
//
//   [sources.weblog]
//   type = "tail"
//   channels = ["logs"]
//   paths = ["/var/log/app/*.log"]
//
//   [[sources.weblog.interceptors]]         # optional, in order
//   type = "grep"
//   exclude = "GET /health"
//   [[sources.weblog.interceptors]]
//   type = "fields"
//   add = { env = "prod" }
//   host = "host"
//
//   [uplinks.kafka]
//   channel = "logs"
//   topic = "weblogs"
//   bootstrap = "127.0.0.1:9092"
//   kafka = { "linger.ms" = "10" }          # any librdkafka setting (TLS, SASL, ...)
//
// A full channel never stops the agent: the collectors writing to it hold what they read and
// stop reading (back-pressure: the tail reads on later, a TCP sender or a command blocks on its
// socket or pipe, UDP datagrams wait in the kernel's buffer and what it drops is counted as
// `dropped`), retry every few milliseconds, and meanwhile every other collector, the uplinks,
// the metrics and signals are served as before. Nothing is dropped for want of room, except at
// a stop or reload that finds the channel still full: the collectors then wait for room for
// what they read, all at once and for a bounded time (2 s in all; an exec source up to its
// stop_timeout_ms), and count as rejected and log what they give up.
//
// Errors name the file, the line and the key; unknown keys are errors. The option tables of
// the sources (ingest/src/registry.cpp) and of channels (below) are the reference.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tributary/core/channel.h"
#include "tributary/ingest/source.h"

namespace tributary::ingest {

struct ChannelSpec {
  std::string name;
  int line = 0;  // of its section in the file, for errors
  std::filesystem::path path;
  core::ChannelConfig create;       // used only when the file does not exist
  core::OpenOptions open;
};

struct SourceSpec {
  std::string name;
  const SourceDescriptor* descriptor = nullptr;
  OptionValues options;
  std::vector<std::string> channels;
  std::vector<InterceptorSpec> interceptors;  // [[sources.NAME.interceptors]], in order
};

// [uplinks.NAME]: ship a channel to a Kafka topic (tributary::uplink), on its own thread.
struct UplinkSpec {
  std::string name;
  int line = 0;  // of its section in the file, for errors
  std::string channel;      // a [channels.X] name
  std::string topic;
  std::string consumer;     // durable consumer name in the channel
  std::string dead_letter;  // a [channels.X] name, or empty
  std::int64_t max_in_flight = 15000;  // as uplink::UplinkOptions and the config's default
  bool packed = false;             // many events of one source per Kafka record
  std::uint64_t pack_bytes = 256 << 10;
  std::int64_t regrow_after_s = 600;  // halved batches and packs tried larger again after this
  std::map<std::string, std::string> kafka;  // bootstrap.servers and librdkafka settings
};

struct AgentConfig {
  std::string name = "tributary";
  std::filesystem::path status_file;  // empty: none
  std::string metrics;                // HOST:PORT of the /metrics endpoint; empty: none
  std::vector<ChannelSpec> channels;
  std::vector<SourceSpec> sources;
  std::vector<UplinkSpec> uplinks;
};

// The option table of [channels.NAME] (for docs and --help).
[[nodiscard]] std::span<const OptionSpec> channel_options();
// The options of an interceptor type ("grep", "fields"); empty for an unknown type.
[[nodiscard]] std::span<const OptionSpec> interceptor_options(std::string_view type);

// Parses and validates; every problem is listed as "FILE:LINE: KEY: what is wrong".
struct ConfigResult {
  AgentConfig config;
  std::vector<std::string> errors;
};
[[nodiscard]] ConfigResult load_agent_config(const std::filesystem::path& file);

using LogFn = std::function<void(std::string_view level, const std::string& message)>;

class Agent {
 public:
  // Opens (or creates) the channels, builds the sources and binds the metrics endpoint.
  // Throws core::Error.
  Agent(const AgentConfig& config, LogFn log);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Runs the sources until `stop_fd` becomes readable (e.g. a signalfd for SIGTERM) or every
  // source has finished; then drains. Returns the process exit status.
  int run(int stop_fd);

  // JSON: per-source counters and per-channel fill, as written to the status file.
  [[nodiscard]] std::string status_json() const;
  // The same counters in the Prometheus text format (what /metrics serves).
  [[nodiscard]] std::string prometheus() const;
  // The port of the metrics endpoint once it listens (0: none).
  [[nodiscard]] int metrics_port() const;

 private:
  void publish();  // status file + the metrics endpoint's snapshot
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary::ingest
