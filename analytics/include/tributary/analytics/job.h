// `tributary analyze --config analyze.toml`: the analyzer process. Reads a Kafka topic or a
// local channel, runs the Analyzer engine, and keeps one commit point: a checkpoint file
// (write, fsync, rename) holding the engine state and the input position. The outputs (CSV per
// grouping, a status JSON) are rewritten after each checkpoint, idempotently, and the input's
// own committed position (the channel cursor, the Kafka group offsets) only trails the
// checkpoint: it bounds retention, it is not the truth. On restart the job restores the
// checkpoint and seeks its input there, so a crash anywhere neither loses nor double-counts.
// In this mode the job assigns itself every partition of the topic: taking a partition over
// from another node is not offered (that is the Kafka-transaction mode, still to come).
//
//   [input]
//   type = "kafka"                 # or "channel" (path, consumer)
//   bootstrap = "127.0.0.1:9092"
//   topic = "tianchi"
//   format = "json"                # or "csv" with csv_header = [...]
//   [fields]                       # name = JSON pointer (json) or column name (csv)
//   user_id = "/user_id"
//   [checks]
//   integers = ["user_id"]         # rejected (counted, sampled) if not an integer
//   [filter]
//   action_type = ["2"]            # counted only if the field is one of these
//   where = 'x > 5 and exists(y)'  # top-level key: the filter language (filter.h)
//   [join]
//   file = "user_info_format1.csv" # key_column, key_field, columns = [...]
//   [labels.age_range]             # map = { "1" = "<18" }, otherwise = "unknown", order = [...]
//   [[outputs]]                    # name, by (a field or joined column), file, header, pad, share
//   [[windows]]                    # name, by = [...], size = "1h", slide, lateness, time (a field
//                                  # or "ingest"), time_format (epoch_s|epoch_ms|rfc3339|"%m%d"),
//                                  # year, value (sum/min/max), file
//   [state]
//   dir = "out"                    # checkpoint, outputs, status.json; checkpoint_ms = 1000
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tributary/analytics/analyzer.h"

namespace tributary::analytics {

struct OutputSpec {
  std::string name;
  std::string by;      // field or joined column
  std::string file;    // relative to the state dir
  std::string header;  // first line
  std::size_t pad = 0;
  bool share = true;   // a third column: count / all counted, %.4f
  std::size_t max_groups = 100'000;  // more keys are counted under "(other)" (memory bound)
};

// [[windows]]: closed windows are appended to `file` exactly once (the checkpoint records its
// length; a restart truncates it back and the replay appends the same rows again); late
// events go to NAME.late.csv and the open windows to NAME.open.csv, both rewritten at each
// checkpoint.
struct WindowOutputSpec {
  std::string name;
  std::vector<std::string> by;  // fields or joined columns
  std::int64_t size_ms = 0, slide_ms = 0, lateness_ms = 0;
  std::string time = "ingest";  // a field, or "ingest"
  TimeFormat time_format;
  std::string value;  // a field, or empty
  std::string file;
};

struct AnalyzeConfig {
  std::string input_type = "kafka";
  std::string bootstrap, topic, group = "tributary-analyzer";
  std::filesystem::path channel;
  std::string consumer = "analyzer";
  bool csv = false;
  std::vector<std::string> csv_header;
  std::vector<std::pair<std::string, std::string>> fields;  // name -> pointer/column, in order
  std::vector<std::string> integers;
  std::vector<std::pair<std::string, std::vector<std::string>>> filters;
  std::string where;  // the filter language, empty: none
  std::filesystem::path join_file;
  std::string join_key_column, join_key_field;
  std::vector<std::string> join_columns;
  std::map<std::string, LabelMap> labels;
  std::map<std::string, std::vector<std::string>> label_order;
  std::vector<OutputSpec> outputs;
  std::vector<WindowOutputSpec> windows;
  std::filesystem::path state_dir = "analyzer-state";
  int checkpoint_ms = 1000;
};

struct AnalyzeConfigResult {
  AnalyzeConfig config;
  std::vector<std::string> errors;  // "FILE:LINE: KEY: what"
};
[[nodiscard]] AnalyzeConfigResult load_analyze_config(const std::filesystem::path& file);

using JobLog = std::function<void(std::string_view level, const std::string& message)>;

class AnalyzeJob {
 public:
  AnalyzeJob(AnalyzeConfig config, JobLog log);
  ~AnalyzeJob();
  // Opens the input (waiting for a Kafka topic to exist), then runs until `stop_fd` is
  // readable; checkpoints on the way and at the end. Exit status.
  int run(int stop_fd);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary::analytics
