// tributary: node agent and stream-analysis engine. Parse -> run the chosen subcommand.
// Start-up errors (core::Error) are caught once here and printed as one clear line.
#include <cstdio>
#include <exception>

#include "commands.h"
#include "tributary/core/error.h"

int main(int argc, char** argv) {
  CLI::App app{"Tributary: collect, ship and analyse event streams on small machines"};
  app.require_subcommand(1);
  int exit_code = 0;
  tributary::tools::add_channel_commands(app, exit_code);
  tributary::tools::add_tap_commands(app, exit_code);
  tributary::tools::add_agent_commands(app, exit_code);
  tributary::tools::add_uplink_commands(app, exit_code);
  tributary::tools::add_analyze_commands(app, exit_code);
  tributary::tools::add_tianchi_commands(app, exit_code);
  tributary::tools::add_demo_commands(app, exit_code);
  tributary::tools::add_bench_commands(app, exit_code);
  tributary::tools::plain_decimal_integers(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const tributary::core::Error& e) {
    std::fprintf(stderr, "tributary: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tributary: unexpected error: %s\n", e.what());
    return 2;
  }
  return exit_code;
}
