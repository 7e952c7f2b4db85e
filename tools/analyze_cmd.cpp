// `tributary analyze --config analyze.toml [--validate | --status | --materialize]`: the
// analyzer process (see analytics/job.h). SIGTERM or SIGINT writes a last checkpoint (commits a
// last transaction) and exits 0.
#include <unistd.h>

#include <fmt/format.h>

#include <fstream>
#include <iterator>

#include "commands.h"
#include "tributary/analytics/job.h"
#include "tributary/core/error.h"

namespace tributary::tools {

void add_analyze_commands(CLI::App& app, int& exit_code) {
  struct Args {
    std::string config;
    bool validate = false;
    bool drain = false;
    bool materialize = false;
    bool status = false;
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("analyze", "Analyze a topic or channel into exactly-once totals");
  cmd->add_option("--config,-c", a->config, "Analyzer configuration (TOML)")->required();
  cmd->add_flag("--validate", a->validate, "Check the configuration, list every error, do not run");
  cmd->add_flag("--drain", a->drain,
                "Stop once the input has nothing more to read (checkpoint mode): a batch run over what is there");
  cmd->add_flag("--status", a->status,
                "Print the analyzer's last status (status.json) and its open windows (NAME.open.csv)");
  cmd->add_flag("--materialize", a->materialize,
                "Kafka-transaction mode: only write the state dir's files from the output topic (read_committed)");
  cmd->callback([a, &exit_code] {
    auto r = analytics::load_analyze_config(a->config);
    if (!r.errors.empty()) {
      for (const auto& e : r.errors) fmt::print(stderr, "{}\n", e);
      fmt::print(stderr, "{}: {} error{}\n", a->config, r.errors.size(), r.errors.size() == 1 ? "" : "s");
      exit_code = 1;
      return;
    }
    if (a->validate) {
      fmt::print("{}: ok ({} outputs)\n", a->config, r.config.outputs.size());
      exit_code = 0;
      return;
    }
    if (a->status) {
      const auto& c = r.config;
      std::ifstream st(c.state_dir / "status.json");
      if (!st)
        throw core::Error(fmt::format("no status at {} (has the analyzer run?)", (c.state_dir / "status.json").string()));
      fmt::print("{}", std::string(std::istreambuf_iterator<char>(st), {}));
      for (const auto& w : c.windows) {
        std::ifstream open(c.state_dir / (w.name + ".open.csv"));
        if (!open) continue;
        fmt::print("\nopen windows of {}:\n{}", w.name, std::string(std::istreambuf_iterator<char>(open), {}));
      }
      exit_code = 0;
      return;
    }
    const int stop_fd = stop_signal_fd();
    analytics::AnalyzeJob job(std::move(r.config), stderr_log("analyze"));
    exit_code = a->materialize ? job.materialize(stop_fd) : job.run(stop_fd, a->drain);
    ::close(stop_fd);
  });
}

}  // namespace tributary::tools
