// `tributary agent --config F [--validate | --status]`: run the collectors and channels a TOML
// file declares; SIGTERM or SIGINT drains and exits 0; SIGHUP reloads the file (Reloader).
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "commands.h"
#include "tributary/core/error.h"
#include "tributary/core/fd.h"
#include "tributary/ingest/agent.h"

namespace tributary::tools {
namespace {

using LogFn = std::function<void(std::string_view, const std::string&)>;

// SIGHUP, as Fluent Bit's hot reload does it: the file is read again and checked on a thread
// of its own while the agent runs on. An invalid file is logged, every error, and the agent
// goes on untouched. A valid one stops the agent as SIGTERM would (sources drained, uplinks
// flushed, channels closed cleanly) and starts it again from the new file in the same process.
// A tail resumes from its channel's source table: no line lost or repeated. Sources that cannot
// replay start under new source ids, as after a restart; a UDP datagram sent in the moment the
// socket is closed is lost, an exec command is restarted.
class Reloader {
 public:
  Reloader(std::filesystem::path config, LogFn log)
      : config_(std::move(config)), log_(std::move(log)), signals_(stop_signal_fd(true)),
        stop_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)), quit_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!signals_.valid() || !stop_.valid() || !quit_.valid())
      throw core::Error(fmt::format("agent: cannot set up its signal handling: {}", std::strerror(errno)));
    thread_ = std::thread([this] { watch(); });
  }
  ~Reloader() {
    const std::uint64_t one = 1;
    (void)!::write(quit_.get(), &one, sizeof one);
    thread_.join();
  }
  Reloader(const Reloader&) = delete;
  Reloader& operator=(const Reloader&) = delete;

  // What Agent::run waits on: readable once the agent is to stop (a signal, or a checked reload).
  [[nodiscard]] int stop_fd() const noexcept { return stop_.get(); }

  // After Agent::run returned: the configuration to start next, or nothing to exit (a stop
  // signal, or every source finished by itself). The stop token and what it stands for are
  // written together and taken together, under the lock: a token always has its reason.
  std::optional<ingest::AgentConfig> next() {
    const std::lock_guard lock(mu_);
    std::uint64_t n = 0;
    (void)!::read(stop_.get(), &n, sizeof n);  // re-arm
    if (exit_) return std::nullopt;
    return std::exchange(reload_, std::nullopt);
  }

 private:
  void watch() {
    for (;;) {
      pollfd p[2] = {{signals_.get(), POLLIN, 0}, {quit_.get(), POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        log_("error", fmt::format("agent: waiting for signals failed ({}): stopping", std::strerror(errno)));
        stop(std::nullopt);  // never left running with SIGTERM blocked and unread
        return;
      }
      if ((p[1].revents & POLLIN) != 0) return;
      signalfd_siginfo si{};
      if (::read(signals_.get(), &si, sizeof si) != static_cast<ssize_t>(sizeof si)) continue;
      if (si.ssi_signo != SIGHUP) {
        stop(std::nullopt);
        continue;
      }
      try {
        ingest::ConfigResult r = ingest::load_agent_config(config_);
        if (!r.errors.empty()) {
          for (const auto& e : r.errors) log_("error", e);
          log_("error", fmt::format("SIGHUP: {} has {} error{}; the agent goes on with the configuration it runs",
                                    config_.string(), r.errors.size(), r.errors.size() == 1 ? "" : "s"));
          continue;
        }
        log_("info", fmt::format("SIGHUP: {} checked; stopping the agent to start it again from it", config_.string()));
        stop(std::move(r.config));
      } catch (const std::exception& e) {
        log_("error", fmt::format("SIGHUP: {} could not be read ({}); the agent goes on", config_.string(), e.what()));
      }
    }
  }

  // Asks the agent to stop: to start again from `reload`, or (none) to exit.
  void stop(std::optional<ingest::AgentConfig> reload) {
    const std::lock_guard lock(mu_);
    if (reload) {
      reload_ = std::move(reload);
    } else {
      exit_ = true;
    }
    const std::uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof one);
  }

  const std::filesystem::path config_;
  const LogFn log_;
  core::Fd signals_, stop_, quit_;
  std::mutex mu_;
  std::optional<ingest::AgentConfig> reload_;
  bool exit_ = false;
  std::thread thread_;
};

// Runs the agent until SIGTERM/SIGINT or until every source finished; restarts it on a reload.
int run_agent(const std::filesystem::path& file, ingest::AgentConfig config) {
  const LogFn log = stderr_log("agent");
  Reloader reloader(file, log);
  std::optional<ingest::Agent> agent;
  agent.emplace(config, log);
  for (;;) {
    const int rc = agent->run(reloader.stop_fd());
    std::optional<ingest::AgentConfig> next = reloader.next();
    if (!next) return rc;
    agent.reset();  // every channel closed cleanly: reopening it does not scan
    try {
      agent.emplace(*next, log);  // opens the channels, builds the sources, binds the metrics port
      config = std::move(*next);
      log("info", fmt::format("reloaded {}: {} sources into {} channels", file.string(), config.sources.size(),
                              config.channels.size()));
    } catch (const std::exception& e) {
      log("error", fmt::format("reload of {} failed: {}; starting again with the configuration it ran", file.string(),
                               e.what()));
      agent.emplace(config, log);
    }
  }
}

}  // namespace

void add_agent_commands(CLI::App& app, int& exit_code) {
  struct Args {
    std::string config;
    bool validate = false;
    bool status = false;
    bool help_sources = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("agent", "Run collectors into channels as a TOML file declares");
  cmd->add_option("--config,-c", args->config, "Agent configuration (TOML)");
  cmd->add_flag("--validate", args->validate, "Check the configuration, list every error, do not run");
  cmd->add_flag("--status", args->status, "Print the running agent's status file");
  cmd->add_flag("--help-sources", args->help_sources, "List source types and their options");
  cmd->callback([args, &exit_code] {
    if (args->help_sources) {
      for (const auto& d : ingest::builtin_sources()) {
        fmt::print("[sources.NAME] type = \"{}\"   {}\n", d.name, d.description);
        for (const auto& o : d.options)
          fmt::print("  {:<18} {:<8} default {:<10} {}\n", o.name, o.required ? "required" : "",
                     o.default_value.empty() ? "-" : o.default_value, o.doc);
      }
      for (const std::string_view type : {"grep", "fields"}) {
        fmt::print("[[sources.NAME.interceptors]] type = \"{}\"\n", type);
        for (const auto& o : ingest::interceptor_options(type))
          fmt::print("  {:<18} {:<8} default {:<10} {}\n", o.name, "", o.default_value.empty() ? "-" : o.default_value,
                     o.doc);
        if (type == "fields") fmt::print("  {:<18} {:<8} default {:<10} {}\n", "add", "", "-", "Static fields: add = { env = \"prod\" }");
      }
      fmt::print("[channels.NAME]\n");
      for (const auto& o : ingest::channel_options())
        fmt::print("  {:<18} {:<8} default {:<10} {}\n", o.name, o.required ? "required" : "",
                   o.default_value.empty() ? "-" : o.default_value, o.doc);
      exit_code = 0;
      return;
    }
    if (args->config.empty()) throw core::Error("agent: --config FILE is required");
    ingest::ConfigResult r = ingest::load_agent_config(args->config);
    if (!r.errors.empty()) {
      for (const auto& e : r.errors) fmt::print(stderr, "{}\n", e);
      fmt::print(stderr, "{}: {} error{}\n", args->config, r.errors.size(), r.errors.size() == 1 ? "" : "s");
      exit_code = 1;
      return;
    }
    if (args->validate) {
      fmt::print("{}: ok ({} channels, {} sources)\n", args->config, r.config.channels.size(), r.config.sources.size());
      exit_code = 0;
      return;
    }
    if (args->status) {
      if (r.config.status_file.empty()) throw core::Error(fmt::format("{} sets no [agent] status_file", args->config));
      std::ifstream f(r.config.status_file);
      if (!f) throw core::Error(fmt::format("no status at {} (is the agent running?)", r.config.status_file.string()));
      std::stringstream ss;
      ss << f.rdbuf();
      fmt::print("{}", ss.str());
      exit_code = 0;
      return;
    }
    exit_code = run_agent(args->config, std::move(r.config));
  });
}

}  // namespace tributary::tools
