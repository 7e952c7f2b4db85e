// Shared by the subcommands: stop signals as a descriptor, a log function that forwards a
// component's (level, message) lines to spdlog on stderr, printable payloads.
#include <signal.h>
#include <sys/signalfd.h>

#include <fmt/format.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "commands.h"

namespace tributary::tools {

int stop_signal_fd(bool with_hup) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  if (with_hup) sigaddset(&set, SIGHUP);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  return ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
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
