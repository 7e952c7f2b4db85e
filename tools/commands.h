// Subcommand registration for the `tributary` executable: each group adds its subcommands
// to the CLI11 app and returns nothing; the selected one runs from its callback.
#pragma once

#include <CLI/CLI.hpp>
#include <cstddef>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace tributary::tools {

// `exit_code` receives the status of the subcommand that ran.
// Blocks SIGTERM and SIGINT (and SIGHUP, if asked) and returns a non-blocking signalfd that
// becomes readable when one of them arrives.
int stop_signal_fd(bool with_hup = false);
// Integer options of `app` and its subcommands take plain decimal only. CLI11 2.1 reads them
// with strtoull/strtoll in base 0: "-1" wrapped to 2^64-1 (`gen tianchi --users -1` wrote until
// the disk was full), "010" was 8 and "0x10" 16.
void plain_decimal_integers(CLI::App& app);
// A (level, message) log function writing to stderr through spdlog, named `name`.
std::function<void(std::string_view, const std::string&)> stderr_log(const std::string& name);

// Printable prefix of a payload (at most `max` bytes): text as is, other bytes as \xNN.
std::string printable(std::span<const std::byte> payload, std::size_t max);

void add_channel_commands(CLI::App& app, int& exit_code);
void add_tap_commands(CLI::App& app, int& exit_code);
void add_agent_commands(CLI::App& app, int& exit_code);
void add_uplink_commands(CLI::App& app, int& exit_code);
void add_analyze_commands(CLI::App& app, int& exit_code);
void add_tianchi_commands(CLI::App& app, int& exit_code);
void add_demo_commands(CLI::App& app, int& exit_code);
void add_bench_commands(CLI::App& app, int& exit_code);

}  // namespace tributary::tools
