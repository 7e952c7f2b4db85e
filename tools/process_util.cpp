// Shared by the subcommands: stop signals as a descriptor, a log function that forwards a
// component's (level, message) lines to spdlog on stderr, printable payloads.
#include <signal.h>
#include <sys/signalfd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "commands.h"
#include "tributary/core/error.h"

namespace tributary::tools {

int stop_signal_fd(bool with_hup) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (with_hup) sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  const int fd = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  // Without it the signals stay blocked and nothing would ever stop the process but SIGKILL.
  if (fd < 0) core::throw_errno("signalfd for SIGTERM/SIGINT", errno);
  return fd;
}

void plain_decimal_integers(CLI::App& app) {
  for (CLI::Option* o : app.get_options([](CLI::Option*) { return true; })) {
    const std::string type = o->get_type_name();
    const bool is_unsigned = type.rfind("UINT", 0) == 0, is_signed = type.rfind("INT", 0) == 0;
    if (!is_unsigned && !is_signed) continue;
    o->transform(CLI::Validator(
        [is_unsigned](std::string& s) -> std::string {
          const std::size_t digits = !is_unsigned && !s.empty() && s[0] == '-' ? 1 : 0;
          if (digits == s.size() || s.find_first_not_of("0123456789", digits) != std::string::npos)
            return fmt::format("'{}' is not a {}decimal integer", s, is_unsigned ? "non-negative " : "");
          const std::size_t first = std::min(s.find_first_not_of('0', digits), s.size() - 1);
          s.erase(digits, first - digits);  // "010" is ten, not octal eight
          // strtoull saturates: 2^64 and more would pass as 2^64-1 (narrower types CLI11 checks).
          std::uint64_t u = 0;
          std::int64_t i = 0;
          const auto [end, ec] = is_unsigned ? std::from_chars(s.data(), s.data() + s.size(), u)
                                             : std::from_chars(s.data(), s.data() + s.size(), i);
          if (ec != std::errc{} || end != s.data() + s.size()) return fmt::format("'{}' is out of range", s);
          return std::string();
        },
        ""));
  }
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) plain_decimal_integers(*sub);
}

std::function<void(std::string_view, const std::string&)> stderr_log(const std::string& name) {
  auto logger = spdlog::stderr_color_mt(name);
  return [logger](std::string_view level, const std::string& msg) {
    if (level == "error") {
      logger->error("{}", msg);
    } else if (level == "warn") {
      logger->warn("{}", msg);
    } else {
      logger->info("{}", msg);
    }
  };
}

std::string printable(std::span<const std::byte> p, std::size_t max) {
  std::string out;
  for (std::size_t i = 0; i < p.size() && i < max; ++i) {
    const auto c = static_cast<unsigned char>(p[i]);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("\\x{:02x}", c);
    }
  }
  if (p.size() > max) out += "...";
  return out;
}

}  // namespace tributary::tools
