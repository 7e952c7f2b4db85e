// The one table of built-in sources and their options. Config validation, `tributary agent
// --help-sources` and docs/configuration.md are generated from it.
#include <charconv>
#include <stdexcept>

#include "tributary/core/units.h"

#include "tributary/ingest/source.h"

namespace tributary::ingest {

namespace tail {
std::unique_ptr<Source> create_tail(const OptionValues& v, SourceContext ctx);
}
std::unique_ptr<Source> create_stdin(const OptionValues& v, SourceContext ctx);
std::unique_ptr<Source> create_exec(const OptionValues& v, SourceContext ctx);
namespace net {
std::unique_ptr<Source> create_tcp(const OptionValues& v, SourceContext ctx);
std::unique_ptr<Source> create_udp(const OptionValues& v, SourceContext ctx);
std::unique_ptr<Source> create_syslog(const OptionValues& v, SourceContext ctx);
}  // namespace net

namespace {

constexpr std::string_view kStartAt[] = {"beginning", "end"};
constexpr std::string_view kOversize[] = {"split", "reject"};

constexpr OptionSpec kTailOptions[] = {
    {"paths", OptionType::kStringList, "", "Glob patterns of the files to follow", true},
    {"start_at", OptionType::kEnum, "beginning",
     "Where to start in files present at start-up that the channel has never seen", false, 0, 0, kStartAt},
    {"max_line", OptionType::kSize, "1M", "Longest line; longer ones are split or rejected (counted)", false, 16,
     64 << 20},
    {"oversize", OptionType::kEnum, "split", "What to do with a line longer than max_line", false, 0, 0, kOversize},
    {"poll_interval_ms", OptionType::kInt, "250",
     "Rescan period (inotify wakes it sooner); shorter finds new files sooner for a little CPU", false, 10, 60000},
    {"fingerprint_bytes", OptionType::kInt, "256",
     "A file is identified by its first N bytes; a shorter one by its inode and birth time until it has N",
     false, 16, 65536},
    {"read_buffer", OptionType::kSize, "1M", "Bytes read per call: larger is fewer syscalls, more memory", false,
     4096, 64 << 20},
    {"batch_bytes", OptionType::kSize, "1M",
     "Bytes per channel transaction, record headers included (capped at 1/8 of the channel)", false, 4096, 64 << 20},
    {"rotate_wait_ms", OptionType::kInt, "2000",
     "How long a rotated or deleted file is still read after its last byte", false, 0, 3600000},
    {"forget_after_ms", OptionType::kInt, "60000",
     "How long a file generation's read position is kept once its file was closed (rotate_wait_ms after "
     "its last byte) or cut (a copy found meanwhile resumes it; one found later is read again); then its "
     "source-table slots are given back",
     false, 0, 86400000},
};

constexpr OptionSpec kStdinOptions[] = {
    {"max_line", OptionType::kSize, "1M", "Longest line; longer ones are split or rejected (counted)", false, 16,
     64 << 20},
    {"oversize", OptionType::kEnum, "split", "What to do with a line longer than max_line", false, 0, 0, kOversize},
};

constexpr std::string_view kRestart[] = {"never", "on-failure", "always"};
constexpr std::string_view kStderr[] = {"log", "discard", "events"};

constexpr OptionSpec kExecOptions[] = {
    {"command", OptionType::kString, "", "Shell command (run with /bin/sh -c) whose stdout lines are collected", true},
    {"restart", OptionType::kEnum, "on-failure",
     "Run the command again when it ends: never, on-failure (non-zero status or a signal), always", false, 0, 0,
     kRestart},
    {"restart_delay_ms", OptionType::kInt, "1000",
     "Wait before a restart; doubles after each run shorter than a minute", false, 0, 3600000},
    {"max_restart_delay_ms", OptionType::kInt, "60000", "Longest wait before a restart", false, 0, 86400000},
    {"stop_timeout_ms", OptionType::kInt, "5000",
     "On stop: SIGTERM to the command's process group, its last lines collected this long, then SIGKILL", false,
     0, 600000},
    {"stderr", OptionType::kEnum, "log",
     "The command's stderr: log (to the agent's log, 20 lines per run), discard, or events (into the channel)",
     false, 0, 0, kStderr},
    {"max_line", OptionType::kSize, "1M", "Longest line; longer ones are split or rejected (counted)", false, 16,
     64 << 20},
    {"oversize", OptionType::kEnum, "split", "What to do with a line longer than max_line", false, 0, 0, kOversize},
};

constexpr OptionSpec kTcpOptions[] = {
    {"listen", OptionType::kString, "127.0.0.1:5170",
     "HOST:PORT or [V6]:PORT to listen on (loopback unless you say otherwise; port 0: any free port)"},
    {"max_line", OptionType::kSize, "64K", "Longest line; longer ones are split or rejected (counted)", false, 16,
     64 << 20},
    {"oversize", OptionType::kEnum, "split", "What to do with a line longer than max_line", false, 0, 0, kOversize},
    {"max_connections", OptionType::kInt, "256",
     "Connections open at once; more are closed at once (counted). Memory bound: this x max_line", false, 1,
     1000000},
    {"idle_timeout_ms", OptionType::kInt, "300000", "A connection silent this long is closed", false, 100,
     86400000},
};

constexpr OptionSpec kUdpOptions[] = {
    {"listen", OptionType::kString, "127.0.0.1:5170",
     "HOST:PORT or [V6]:PORT to listen on (loopback unless you say otherwise; port 0: any free port)"},
    {"max_line", OptionType::kSize, "64K",
     "Longest datagram; longer ones are rejected (counted). A datagram holds one or more lines", false, 16, 65535},
    {"socket_buffer", OptionType::kSize, "0",
     "Kernel receive buffer (0: the system default); datagrams beyond it are dropped and counted", false, 0,
     1 << 30},
};

constexpr std::string_view kProtocol[] = {"udp", "tcp"};
constexpr std::string_view kSyslogFormat[] = {"json", "raw"};

constexpr OptionSpec kSyslogOptions[] = {
    {"listen", OptionType::kString, "127.0.0.1:5140",
     "HOST:PORT or [V6]:PORT to listen on (loopback unless you say otherwise; port 0: any free port)"},
    {"protocol", OptionType::kEnum, "udp",
     "udp (a datagram per message) or tcp (RFC 6587: octet-counted or newline-framed, per message)", false, 0, 0,
     kProtocol},
    {"format", OptionType::kEnum, "json",
     "json: parsed (RFC 5424 / RFC 3164) into a JSON object; raw: the message as received", false, 0, 0,
     kSyslogFormat},
    {"max_message", OptionType::kSize, "64K", "Longest message; longer ones are rejected (counted)", false, 16,
     64 << 20},
    {"max_connections", OptionType::kInt, "256", "With tcp: connections open at once; more are closed (counted)",
     false, 1, 1000000},
    {"idle_timeout_ms", OptionType::kInt, "300000", "With tcp: a connection silent this long is closed", false,
     100, 86400000},
    {"socket_buffer", OptionType::kSize, "0", "With udp: kernel receive buffer (0: the system default)", false, 0,
     1 << 30},
};

constexpr SourceDescriptor kBuiltins[] = {
    {"tail", "Follow files (globs, rotation, truncation) exactly once, resuming from the channel", kTailOptions,
     &tail::create_tail},
    {"stdin", "Lines from standard input (a new source each run)", kStdinOptions, &create_stdin},
    {"exec", "Lines a command prints on stdout, restarted by policy (at most once: a new source each run)",
     kExecOptions, &create_exec},
    {"tcp", "Newline-terminated lines from TCP clients, bounded connections and buffers", kTcpOptions,
     &net::create_tcp},
    {"udp", "Lines in UDP datagrams; kernel drops counted", kUdpOptions, &net::create_udp},
    {"syslog", "RFC 5424 and RFC 3164 messages over UDP or TCP, as JSON or raw", kSyslogOptions,
     &net::create_syslog},
};

}  // namespace

std::span<const SourceDescriptor> builtin_sources() { return kBuiltins; }

OptionValues::Value default_value(const OptionSpec& s) {
  switch (s.type) {
    case OptionType::kString:
    case OptionType::kEnum: return std::string(s.default_value);
    case OptionType::kStringList: return std::vector<std::string>{};
    case OptionType::kBool: return s.default_value == "true";
    case OptionType::kInt: {
      std::int64_t v = 0;
      std::from_chars(s.default_value.data(), s.default_value.data() + s.default_value.size(), v);
      return v;
    }
    case OptionType::kSize: return static_cast<std::int64_t>(core::parse_size(s.default_value).value_or(0));
  }
  return std::string();
}

OptionValues defaults_of(const SourceDescriptor& d) {
  OptionValues v;
  for (const auto& o : d.options) v.set(o.name, default_value(o));
  return v;
}

const SourceDescriptor* find_source(std::string_view type) {
  for (const auto& d : kBuiltins)
    if (d.name == type) return &d;
  return nullptr;
}

namespace {
// A plug-in reading an option its table does not declare is a programming error.
template <class T>
const T& get(const std::map<std::string, OptionValues::Value, std::less<>>& values, std::string_view name) {
  const auto it = values.find(name);
  if (it == values.end() || !std::holds_alternative<T>(it->second))
    throw std::logic_error("option '" + std::string(name) + "' is not declared with this type");
  return std::get<T>(it->second);
}
}  // namespace

const std::string& OptionValues::str(std::string_view name) const { return get<std::string>(values_, name); }
const std::vector<std::string>& OptionValues::list(std::string_view name) const {
  return get<std::vector<std::string>>(values_, name);
}
std::int64_t OptionValues::integer(std::string_view name) const { return get<std::int64_t>(values_, name); }
bool OptionValues::boolean(std::string_view name) const { return get<bool>(values_, name); }

}  // namespace tributary::ingest
