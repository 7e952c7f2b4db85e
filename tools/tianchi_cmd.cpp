// `tributary gen tianchi` and `tributary replay`: the paper's data and its event streams.
#include <fmt/format.h>

#include "commands.h"
#include "tianchi.h"
#include "tributary/core/error.h"

namespace tributary::tools {

void add_tianchi_commands(CLI::App& app, int& exit_code) {
  CLI::App* gen = app.add_subcommand("gen", "Generate data sets");
  gen->require_subcommand(1);
  auto g = std::make_shared<std::pair<GenOptions, std::string>>();
  CLI::App* t = gen->add_subcommand("tianchi", "Tianchi-shaped shopping logs: user_log_format1.csv, user_info_format1.csv");
  t->add_option("--users", g->first.users, "Users");
  t->add_option("--rows", g->first.rows, "user_log rows");
  t->add_option("--seed", g->first.seed, "Seed (same seed, same files)");
  t->add_option("--malformed", g->first.malformed, "Fraction of malformed rows")->check(CLI::Range(0.0, 1.0));
  t->add_option("--duplicates", g->first.duplicates, "Fraction of rows repeating the previous one")->check(CLI::Range(0.0, 1.0));
  t->add_option("--out", g->second, "Output directory")->required();
  t->callback([g, &exit_code] {
    const GenResult r = generate_tianchi(g->second, g->first);
    fmt::print("wrote {} user_log rows and {} user_info rows to {} in {:.2f} s ({:.1f} M rows/s)\n", r.log_rows,
               r.info_rows, g->second, r.seconds, double(r.log_rows) / r.seconds / 1e6);
    exit_code = 0;
  });

  // The experiment's analyzer configuration, for scripts that run the pieces themselves
  // (bench/paper_vs_tributary.sh): one definition, the one `tributary demo` uses.
  struct ConfigArgs {
    std::string input, user_info, state_dir;
    int checkpoint_ms = 1000;
  };
  auto ca = std::make_shared<ConfigArgs>();
  CLI::App* cfg = gen->add_subcommand("tianchi-config", "Print the experiment's analyzer configuration (TOML)");
  cfg->add_option("--input", ca->input, "Body of its [input] section, e.g. 'type = \"kafka\"' lines")->required();
  cfg->add_option("--user-info", ca->user_info, "user_info_format1.csv to join")->required();
  cfg->add_option("--state-dir", ca->state_dir, "The analyzer's state and output directory")->required();
  cfg->add_option("--checkpoint-ms", ca->checkpoint_ms, "Checkpoint interval")->capture_default_str();
  cfg->callback([ca, &exit_code] {
    std::string input = ca->input;
    if (!input.empty() && input.back() != '\n') input += '\n';
    fmt::print("{}", tianchi_analyze_config(input, ca->user_info, ca->state_dir, ca->checkpoint_ms));
    exit_code = 0;
  });

  auto ro = std::make_shared<ReplayOptions>();
  auto to = std::make_shared<std::string>();
  CLI::App* rp = app.add_subcommand("replay", "Turn user_log rows into JSON event streams written by concurrent writers");
  rp->add_option("file", ro->input, "user_log CSV (with its header)")->required();
  rp->add_option("--to", *to, "tail:DIR (log files that tail collectors watch) or tcp:HOST:PORT (an agent's tcp source)")
      ->required();
  rp->add_option("--rate", ro->rate, "Rows per second in total (0: as fast as possible)");
  rp->add_option("--concurrency", ro->concurrency, "Writers (one file or connection each)")->check(CLI::Range(1, 64));
  rp->callback([ro, to, &exit_code] {
    if (to->rfind("tail:", 0) == 0) {
      ro->out_dir = to->substr(5);
    } else if (to->rfind("tcp:", 0) == 0) {
      ro->tcp = to->substr(4);
    } else {
      throw core::Error(fmt::format("--to {}: expected tail:DIR or tcp:HOST:PORT", *to));
    }
    const ReplayResult r = replay(*ro);
    std::uint64_t total = 0;
    for (std::size_t k = 0; k < r.destinations.size(); ++k) {
      fmt::print("{}: {} lines ({} sent raw as malformed)\n", r.destinations[k], r.lines[k], r.malformed[k]);
      total += r.lines[k];
    }
    fmt::print("sent {} lines in {:.2f} s\n", total, r.seconds);
    exit_code = 0;
  });
}

}  // namespace tributary::tools
