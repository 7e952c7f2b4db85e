// `tributary analyze --config analyze.toml`: the analyzer process. Reads a Kafka topic or a
// local channel, runs the Analyzer engine, and keeps one commit point: a checkpoint file
// (write, fsync, rename) holding the engine state and the input position. The outputs (CSV per
// grouping, a status JSON) are rewritten after each checkpoint, idempotently, and the input's
// own committed position (the channel cursor, the Kafka group offsets) only trails the
// checkpoint: it bounds retention, it is not the truth. On restart the job restores the
// checkpoint and seeks its input there, so a crash anywhere neither loses nor double-counts.
// In this mode the job assigns itself every partition of the topic: taking a partition over
// from another node is not offered (use the Kafka-transaction mode for that).
//
// Kafka-transaction mode ([transaction] topic = "..."; Kafka input only): Kafka Streams' design.
// The job is a member of the consumer group `input.group`, so several analyzers share the
// input's partitions and take over each other's. State is per input partition. Every
// checkpoint_ms (and sooner once every assigned partition is read to its end and quiet for an
// eighth of the interval, 10 to 100 ms; at most 4 times per interval), in one Kafka
// transaction, for each partition that
// consumed anything:
//   - the output topic gets the changes (compacted: the latest record per key is the value):
//       key "t/OUTPUT/P/KEY"          value "COUNT"                  running total
//       key "w/WINDOW/P/START_MS/KEY" value "END_MS\tCOUNT\tVALUED\tSUM\tMIN\tMAX"  closed window
//       key "o/WINDOW/P/START_MS/KEY" the same value                 open window (a tombstone
//                                                                    once it closes)
//       key "l/WINDOW/P/START_MS/KEY" value "COUNT"                  late events of a window
//                                                                    (a tombstone once final)
//       key "f/WINDOW/P/START_MS/KEY" value "COUNT"                  final late events of a
//                                                                    window (late_retention)
//       key "a/sources/P/I"           value lines of the partition's per-source audit, in
//                                                                    chunks of 512 KiB at most
//                                                                    (a source's lines add up)
//       key "s/P"                     value the partition's counters (lines), "audit N": its
//                                                                    audit is chunks 0 .. N-1
//     (P is the input partition; KEY the group-by key, parts joined with '\x1f'; a reader sums
//     over P);
//   - the changelog topic (compacted, partition P) gets the partition's whole state, in chunks;
//   - the dead-letter topic (OUTPUT-dead-letter, unless [state] dead_letter = "") gets each
//     rejected event as a dead-letter line (see [state]);
//   - the consumed offsets are sent to the transaction (send_offsets_to_transaction).
// Either all three are committed or none: on restart or takeover a partition's state is read
// back from the changelog (read_committed) and its input resumes at the committed offset, which
// must be the state's own; a zombie is fenced by the group generation (KIP-447). Copies are
// recognised within an input partition (the uplink keys by source, so a source's copies share
// its partition); a copy that lands in another partition, after the topic gained partitions or
// from a producer keyed otherwise, is counted there. The files of
// [state] dir are written by a separate read_committed reader of the output topic (`materialize`,
// also `tributary analyze --materialize`), never by the transaction; there is no checkpoint file.
// The reader appends a window's rows to its file once every input partition has closed it (and
// a late row once every partition's is final), records how far in STATE_DIR/materialized, and
// forgets them: it holds only the rows that can still change.
//
//   [input]
//   type = "kafka"                 # or "channel" (path, consumer)
//   bootstrap = "127.0.0.1:9092"
//   topic = "tianchi"
//   fetch_queue_mb = 16            # read ahead per partition, in memory (the analyzer's own, not librdkafka's)
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
//                                  # year, value (sum/min/max), file, max_future = "1h",
//                                  # max_groups = 100000 (keys per window; beyond: "(other)"),
//                                  # late_retention = "1h" (then a late row is final, 0: never)
//   [state]
//   dir = "out"                    # checkpoint, outputs, status.json; checkpoint_ms = 1000
//   metrics = "127.0.0.1:9465"     # optional: Prometheus /metrics and /status (status.json)
//   dead_letter = "dead_letter.jsonl"  # rejected events, one JSON line each: reason, identity,
//                                  # where read, the raw event; appended exactly once like a
//                                  # window file; "" for none; dead_letter_max_mb = 64 (beyond:
//                                  # counted in status.json "skipped", not written)
//   retire_sources_after = "7d"    # the ledger forgets a source idle this long (ingest time)
//                                  # with no hole in its sequences, keeping its totals
//                                  # (Ledger: memory bound); "0": never
//   [transaction]                  # the Kafka-transaction mode: topic (output), changelog
//                                  # (default GROUP-changelog), id (transactional.id, default
//                                  # GROUP-HOST-hash of the state dir), timeout_ms = 30000,
//                                  # session_timeout_ms = 10000, materialize = true
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
  std::string file;    // relative to the state dir; its directories are made at the start
  std::string header;  // first line
  std::size_t pad = 0;
  bool share = true;   // a third column: count / all counted, %.4f
  std::size_t max_groups = 100'000;  // more keys are counted under "(other)" (memory bound)
};

// [[windows]]: closed windows are appended to `file` exactly once (the checkpoint records its
// length; a restart truncates it back and the replay appends the same rows again), and so are
// the final late rows to NAME.late.csv; the late rows that can still grow go to
// NAME.late.open.csv and the open windows to NAME.open.csv, both rewritten at each checkpoint.
struct WindowOutputSpec {
  std::string name;
  std::vector<std::string> by;  // fields or joined columns
  std::int64_t size_ms = 0, slide_ms = 0, lateness_ms = 0;
  std::int64_t max_future_ms = 3'600'000;  // with a time field (AnalyzerSpec::Window); 0: none
  std::string time = "ingest";  // a field, or "ingest"
  TimeFormat time_format;
  std::string value;  // a field, or empty
  std::string file;
  std::size_t max_groups = 100'000;  // keys per window; more are counted under "(other)" (memory bound)
  // A late row can grow for this long after its window closed, then it is appended to
  // NAME.late.csv and leaves memory; later events of that window are expired (counted only).
  // 0: late rows stay in memory, in NAME.late.open.csv, for the whole run.
  std::int64_t late_retention_ms = 3'600'000;
};

struct AnalyzeConfig {
  std::string input_type = "kafka";
  std::string bootstrap, topic, group = "tributary-analyzer";
  int fetch_queue_mb = 16;  // the read-ahead per partition (MB of memory), ahead of the parser
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
  std::string metrics;       // HOST:PORT of the metrics endpoint (port 0: any); empty: none
  std::string dead_letter = "dead_letter.jsonl";  // in the state dir; empty: none
  std::uint64_t dead_letter_max_bytes = 64ull << 20;
  int checkpoint_ms = 1000;  // in the Kafka-transaction mode: how often a transaction commits
  std::int64_t retire_sources_after_ms = 7 * 86'400'000;  // AnalyzerSpec::retire_sources_after_ms
  struct Transaction {
    std::string topic;      // the output topic; empty: the checkpoint-file mode
    std::string changelog;  // the state topic
    std::string id;         // transactional.id: stable across restarts of this instance, unique
    int timeout_ms = 30000;           // transaction.timeout.ms: how long a dead member's open
                                      // transaction holds its partitions back
    int session_timeout_ms = 10000;   // how soon the group notices a dead member
    bool materialize = true;          // run the reader that writes the [state] dir files
  } transaction;
  [[nodiscard]] bool transactional() const noexcept { return !transaction.topic.empty(); }
};

struct AnalyzeConfigResult {
  AnalyzeConfig config;
  std::vector<std::string> errors;  // "FILE:LINE: KEY: what"
};
[[nodiscard]] AnalyzeConfigResult load_analyze_config(const std::filesystem::path& file);

// The engine of a job without its input and outputs: the dimension table loaded and the spec
// built from the configuration, exactly as `AnalyzeJob` runs them, so that benchmarks and tests
// drive the same pipeline from memory. Throws core::Error for an unreadable dimension table.
class AnalyzeEngine {
 public:
  explicit AnalyzeEngine(AnalyzeConfig config);
  AnalyzeEngine(const AnalyzeEngine&) = delete;  // the spec points into the table and labels
  AnalyzeEngine& operator=(const AnalyzeEngine&) = delete;
  ~AnalyzeEngine();
  // A fresh Analyzer (the Kafka-transaction mode keeps one per input partition).
  [[nodiscard]] std::unique_ptr<Analyzer> make() const;
  [[nodiscard]] const DimensionTable* table() const noexcept { return table_.get(); }

 private:
  AnalyzeConfig cfg_;  // the labels the spec points at live here
  std::vector<std::string> pointers_;
  std::unique_ptr<DimensionTable> table_;
  AnalyzerSpec spec_;
};

// The job's log: level "info", "warn" or "error", and a line. Called from librdkafka's threads
// too (its own log lines): it must be thread-safe.
using JobLog = std::function<void(std::string_view level, const std::string& message)>;

class AnalyzeJob {
 public:
  AnalyzeJob(AnalyzeConfig config, JobLog log);
  ~AnalyzeJob();
  // Opens the input (waiting for a Kafka topic to exist), then runs until `stop_fd` is
  // readable; checkpoints on the way and at the end. Exit status. With `drain`, it also stops
  // by itself once the input has nothing more to read (the channel read up to its write
  // position, every Kafka partition at its end): a batch run over what is there, like kcat -e.
  // A partition that never reaches its end (its leader gone) keeps it running until stopped.
  // The checkpoint mode only (throws core::Error in the Kafka-transaction mode).
  int run(int stop_fd, bool drain = false);
  // Kafka-transaction mode only: just the reader of the output topic that writes the files of
  // the state dir (read_committed), until `stop_fd` is readable.
  int materialize(int stop_fd);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tributary::analytics
