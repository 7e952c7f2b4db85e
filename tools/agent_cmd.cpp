// `tributary agent --config F [--validate | --status]`: run the collectors and channels a TOML
// file declares; SIGTERM or SIGINT drains and exits 0. SIGHUP does not reload the config (it
// is logged and ignored): restart the agent instead; nothing is lost, tail resumes from the
// channel's source table.
#include <unistd.h>

#include <fmt/format.h>
#include <fstream>
#include <iostream>
#include <sstream>

#include "commands.h"
#include "tributary/core/error.h"
#include "tributary/ingest/agent.h"

namespace tributary::tools {

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
    const int stop_fd = stop_signal_fd(true);  // SIGHUP: no reload (see the file comment)
    ingest::Agent agent(r.config, stderr_log("agent"));
    exit_code = agent.run(stop_fd);
    ::close(stop_fd);
  });
}

}  // namespace tributary::tools
