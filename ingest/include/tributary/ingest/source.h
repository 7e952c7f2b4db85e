// Collectors ("sources") as plug-ins. A plug-in is one SourceDescriptor: a name, a one-line
// description, its options table (name, type, default, range, doc) and a create function.
// All built-ins are listed in one table (ingest/src/registry.cpp); config validation,
// `tributary agent --help-sources` and docs/ come from those tables.
//
// A source is driven by the agent's loop like an Aeron agent: do_work() does a bounded unit
// of work and returns how much it did (0 = idle); the agent then sleeps in poll() on the
// sources' wait_fd()s, at most until the earliest next_deadline().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tributary/core/channel.h"

namespace tributary::ingest {

enum class OptionType : std::uint8_t { kString, kStringList, kInt, kBool, kSize, kEnum };

struct OptionSpec {
  std::string_view name;
  OptionType type;
  std::string_view default_value;  // as written in TOML; empty + required = must be given
  std::string_view doc;
  bool required = false;
  std::int64_t min = 0;  // kInt / kSize
  std::int64_t max = INT64_MAX;
  std::span<const std::string_view> choices = {};  // kEnum
};

// Parsed, validated option values of one source (immutable once built).
class OptionValues {
 public:
  using Value = std::variant<std::string, std::vector<std::string>, std::int64_t, bool>;
  void set(std::string_view name, Value v) { values_[std::string(name)] = std::move(v); }
  [[nodiscard]] const std::string& str(std::string_view name) const;
  [[nodiscard]] const std::vector<std::string>& list(std::string_view name) const;
  [[nodiscard]] std::int64_t integer(std::string_view name) const;
  [[nodiscard]] bool boolean(std::string_view name) const;
  [[nodiscard]] const std::map<std::string, Value, std::less<>>& all() const { return values_; }

 private:
  std::map<std::string, Value, std::less<>> values_;
};

// Counters every source reports (agent --status, metrics endpoint).
struct SourceMetrics {
  std::uint64_t events = 0;     // events appended to the channel(s)
  std::uint64_t bytes = 0;      // payload bytes appended
  std::uint64_t rejected = 0;   // events refused (oversize with reject, channel refused)
  std::uint64_t oversize = 0;   // lines longer than max_line (split or rejected)
  std::uint64_t rotations = 0;  // new file generations seen (tail)
  std::uint64_t open_files = 0; // tail
  std::uint64_t errors = 0;     // I/O errors (logged once per state change); tail: also inotify queue overflows
  std::uint64_t restarts = 0;   // exec: runs of the command after the first
  std::uint64_t connections = 0;          // tcp, syslog: open now
  std::uint64_t refused_connections = 0;  // tcp, syslog: closed at once, max_connections reached
  std::uint64_t malformed = 0;  // syslog: messages that do not parse (kept, as the raw message)
  std::uint64_t dropped = 0;    // udp, syslog: datagrams the kernel dropped (receive buffer full)
  std::uint64_t filtered = 0;   // events an interceptor dropped on purpose
};

// [[sources.NAME.interceptors]]: steps every event of a source passes, in order (see
// ingest/src/internal/intercept.h): `grep` keeps or drops events by regular expression
// (counted as `filtered`), `fields` adds static fields, the host name and the ingest time.
struct InterceptorSpec {
  std::string type;  // "grep" | "fields"
  std::string include, exclude;                             // grep: RE2 patterns
  std::vector<std::pair<std::string, std::string>> add;     // fields: static key = value
  std::string host_key, timestamp_key, wrap_key = "message";  // fields: "" = none
};

namespace detail {
class InterceptorChain;
}

// What a source may touch: its channels and a logger. Nothing else of the agent.
struct SourceContext {
  std::string name;                      // the [sources.NAME] key
  std::vector<core::Channel*> channels;  // replicating: every event goes to each
  core::ProducerOptions producer_options;
  std::function<void(std::string_view level, const std::string& message)> log;
  std::shared_ptr<const detail::InterceptorChain> interceptors;  // null: none
};

class Source {
 public:
  virtual ~Source() = default;
  // One bounded unit of work; returns the number of events handled (0 = idle).
  virtual std::size_t do_work() = 0;
  // A descriptor to poll for readiness (inotify, stdin, socket), or -1.
  [[nodiscard]] virtual int wait_fd() const { return -1; }
  // When do_work() must run again even without readiness (polling fallback, retries).
  [[nodiscard]] virtual std::chrono::steady_clock::time_point next_deadline() const {
    return std::chrono::steady_clock::time_point::max();
  }
  // A stop (SIGTERM, a reload) is run by stop_sources() below, for all sources at once.
  // begin_stop(): the input is asked to end (an exec source's command gets SIGTERM, a tcp
  // source stops accepting). drain_step(): one step of making every handled event durable
  // (checkpoints live in the channel) and reading what remains, bounded; it does not wait for
  // input or room (the caller waits on wait_fd() and next_deadline() between steps; an exec
  // source reaps its SIGKILLed command); true once done: all appended, or `deadline` passed with
  // the channel still full (an exec source has its own deadline: stop_timeout_ms after
  // begin_stop, and counts what it gives up in its last step). end_stop(): what is left is
  // counted as rejected and logged, connections are closed. A tail gives nothing up: it reads
  // again from its committed position.
  virtual void begin_stop() {}
  virtual bool drain_step(std::chrono::steady_clock::time_point deadline) {
    (void)deadline;
    return true;
  }
  virtual void end_stop() {}
  // True once the source has nothing more to read ever (stdin at EOF).
  [[nodiscard]] virtual bool finished() const { return false; }
  [[nodiscard]] virtual SourceMetrics metrics() const = 0;
  // Where the source listens ("127.0.0.1:5170"), once bound; empty for others.
  [[nodiscard]] virtual std::string endpoint() const { return {}; }
};

// Stops `sources` together: begin_stop() on each, then their drain steps, interleaved and
// waiting between rounds for the first of their descriptors or deadlines (at most 20 ms), until
// every one is done, then end_stop() on each. A stop waits for room in a full channel for all
// of them at once, up to `deadline`: not once per source.
void stop_sources(std::span<Source* const> sources, std::chrono::steady_clock::time_point deadline);

struct SourceDescriptor {
  std::string_view name;
  std::string_view description;
  std::span<const OptionSpec> options;
  std::unique_ptr<Source> (*create)(const OptionValues& options, SourceContext context);
};

// The built-in table.
[[nodiscard]] std::span<const SourceDescriptor> builtin_sources();
[[nodiscard]] const SourceDescriptor* find_source(std::string_view type);
// An option's default as a value; every option of a descriptor at its default (embedding a
// source without a config file; required options still have to be set).
[[nodiscard]] OptionValues::Value default_value(const OptionSpec& spec);
[[nodiscard]] OptionValues defaults_of(const SourceDescriptor& descriptor);

}  // namespace tributary::ingest
