// The paper's experiment data: a generator of Tianchi-shaped shopping logs and the replayer
// that turns CSV rows into JSON event streams written by concurrent writers (the paper's
// "script that transforms data into high-concurrency streams").
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::tools {

struct GenOptions {
  std::uint64_t users = 10000;
  std::uint64_t rows = 1000000;
  std::uint64_t seed = 1;
  double malformed = 0.0;   // fraction of rows written malformed (wrong field count, non-integers)
  double duplicates = 0.0;  // fraction of rows that repeat the previous row exactly (two orders)
};
struct GenResult {
  std::uint64_t info_rows = 0, log_rows = 0;
  double seconds = 0;
};
// Writes DIR/user_log_format1.csv and DIR/user_info_format1.csv. Deterministic for a seed.
GenResult generate_tianchi(const std::filesystem::path& dir, const GenOptions& o);

struct ReplayOptions {
  std::filesystem::path input;  // a user_log CSV with its header
  std::filesystem::path out_dir;  // log files appear here: replay-<k>.log (tail collectors watch)
  std::string tcp;                // or HOST:PORT: each writer sends over its own TCP connection
                                  // (an agent's tcp source) instead of writing a file
  int concurrency = 2;            // writers, one file or connection each
  double rate = 0;                // rows per second in total; 0 = as fast as possible
  int stop_fd = -1;               // readable (a signalfd): the writers stop, replay() throws
};
struct ReplayResult {
  std::vector<std::filesystem::path> files;  // the log files (not with tcp)
  std::vector<std::string> destinations;     // per writer: its file, or "HOST:PORT connection k"
  std::vector<std::uint64_t> lines;          // per writer: non-empty data lines written
  std::vector<std::uint64_t> malformed;      // per writer: of which sent raw (not convertible)
  double seconds = 0;
};
// Converts each data row to a JSON event (malformed rows go as the raw line they are) and
// appends it to one of `concurrency` files, or sends it over one of `concurrency` TCP
// connections, written by as many threads. Over TCP, a writer ends by shutting its sending
// side and waiting for the receiver to close (it has read everything). Throws core::Error for
// a missing input, a header that is not the user_log header, a file that cannot be written, a
// connection refused, lost, or taking nothing for 60 s (naming the file or the address; one
// writer's failure stops the others); an out_dir that cannot be created throws
// std::filesystem::filesystem_error naming it.
ReplayResult replay(const ReplayOptions& o);

// `text` as a TOML basic string, quotes included: `"`, `\` and control characters escaped, so
// that a path or a name holding them reads back as itself (the generated configurations). TOML
// takes only UTF-8: other bytes pass through and the file is refused when read.
std::string toml_quoted(std::string_view text);
// `path` as a glob pattern that matches only itself (a tail source's `paths`): `\`, `*`, `?`
// and `[` escaped with a backslash.
std::string glob_escaped(std::string_view path);

// The analyzer configuration of the paper's experiment (orders by age range, gender and day,
// user_info joined, labels of the design brief). `input` is the body of its [input] section.
std::string tianchi_analyze_config(const std::string& input, const std::filesystem::path& user_info,
                                   const std::filesystem::path& state_dir, int checkpoint_ms);

}  // namespace tributary::tools
