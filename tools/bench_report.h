// Benchmark reports and the regression gate behind `tributary bench`:
//
//   Report    what one run measured: its context (CPU, cores, build type, date) and a flat
//             list of named metrics, each with a unit, a direction (higher or lower is
//             better), a relative spread over its repetitions, and whether CI gates on it.
//             Stored as JSON; the raw Google Benchmark entries ride along under "benchmarks".
//   compare   BASE against NEW, metric by metric. Only gated metrics can fail: instruction
//             counts of single-threaded loops (deterministic for one binary) and same-run
//             ratios (a slow moment of the machine hits both sides). A gated metric fails when
//             it became worse by a factor above 1 + margin, margin = max(--max-regression,
//             noise_factor x (spread in BASE + spread in NEW, the latter counted at most twice
//             BASE's)): a noisy ratio widens its margin instead of crying wolf, but a change
//             cannot excuse itself by adding noise. A gated value of 0, or a changed unit or
//             direction, fails too. Everything else is reported, never failed on.
#pragma once

#include <filesystem>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tributary::tools::bench {

struct Metric {
  std::string name;   // "instructions/core/crc32c_1KiB", "ratio/analyze/extract_json vs peer/rapidjson"
  std::string unit;   // "instructions/event", "x", "ns/event", "events/s"
  double value = 0;
  double spread = 0;  // relative: median absolute deviation / median over the repetitions
  bool higher_is_better = true;
  bool gate = false;  // CI fails on a regression of this metric
  bool peer = false;  // a peer's or a naive baseline's figure, not Tributary's
};

struct Report {
  std::map<std::string, std::string> context;  // cpu_model, num_cpus, build_type, date, ...
  std::vector<Metric> metrics;
  std::string benchmarks_json;  // a JSON array of raw entries (Google Benchmark's format), or ""
};

// Throws core::Error naming the file and what is wrong with it.
[[nodiscard]] Report read_report(const std::filesystem::path& file);
void write_report(const std::filesystem::path& file, const Report& r);

struct CompareOptions {
  double max_regression = 0.10;  // fraction
  double noise_factor = 3;       // margin >= noise_factor * (spread in BASE + capped spread in NEW)
  // Same-run wall-time ratios (metrics "ratio/...") gated too. A ratio depends on the CPU
  // model: against a baseline of another one they are reported, not gated (instruction counts
  // still are).
  bool gate_ratios = true;
};

enum class Status : std::uint8_t { kOk, kRegressed, kImproved, kMissing, kInvalid, kAdded, kReported };

struct Verdict {
  std::string name, unit;
  double base = 0, now = 0;
  double worse_by = 0;  // worse by a factor of 1 + worse_by; negative: better by 1 - worse_by
  double allowed = 0;   // the margin this metric had
  bool gate = false;
  Status status = Status::kOk;
};

// The baseline to judge `now` by: of the reports in `dir` (its *.json files, by name), the first
// measured on `now`'s CPU model (context "cpu_model"), else `fallback`. A wall-time ratio
// depends on the CPU (1 KiB CRC32C against memcpy is 0.43 on one VM and 1.25 on another), so a
// baseline of another CPU can hide a regression or call noise one. Throws core::Error naming a
// file of `dir` it cannot read.
[[nodiscard]] std::filesystem::path pick_baseline(const std::filesystem::path& fallback, const std::filesystem::path& dir,
                                                  const Report& now);

// Every metric of BASE and NEW, in BASE's order then NEW's additions. A gated metric missing
// from NEW is kMissing (a failure: retiring a metric is a deliberate baseline update).
[[nodiscard]] std::vector<Verdict> compare(const Report& base, const Report& now, const CompareOptions& o);
[[nodiscard]] bool failed(const std::vector<Verdict>& v);
// The table for a terminal, then one line per failure saying which metric fell and by how much.
[[nodiscard]] std::string format_verdicts(const std::vector<Verdict>& v, const CompareOptions& o);
// "10%", "0.1", "12.5 %" -> fraction; nullopt if not a percentage, or a bare number above 1.
[[nodiscard]] std::optional<double> parse_fraction(std::string_view text);

// An SVG bar chart (log scale) of the throughput metrics (unit "events/s") of `r`, grouped by
// stage (the part of the name before the first '/').
[[nodiscard]] std::string throughput_svg(const Report& r, const std::string& title);

}  // namespace tributary::tools::bench
