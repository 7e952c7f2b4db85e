// Subcommand registration for the `tributary` executable: each group adds its subcommands
// to the CLI11 app and returns nothing; the selected one runs from its callback.
#pragma once

#include <CLI/CLI.hpp>

namespace tributary::tools {

// `exit_code` receives the status of the subcommand that ran.
void add_channel_commands(CLI::App& app, int& exit_code);
void add_agent_commands(CLI::App& app, int& exit_code);
void add_uplink_commands(CLI::App& app, int& exit_code);
void add_analyze_commands(CLI::App& app, int& exit_code);
void add_tianchi_commands(CLI::App& app, int& exit_code);
void add_demo_commands(CLI::App& app, int& exit_code);

}  // namespace tributary::tools
